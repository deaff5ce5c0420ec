"""Fixtures: a real `punktfunk serve` per test, and moonlight-python clients to talk to it.

The host runs on 127.0.0.1 with a temporary state directory, a random base port (so all
derived ports are non-default) and no mDNS. `punktfunk pin` is the real CLI, talking to the
host's management API.
"""

from __future__ import annotations

import json
import os
import random
import socket
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import pytest
from moonlight_python.http_client import NvHTTP
from moonlight_python.identity import Identity
from moonlight_python.pairing import pair

REPO = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("PUNKTFUNK_BIN", REPO / "target" / "debug" / "punktfunk"))

# Skips (docs/testing.md, "Skips"): what CI's machine provides, so that under CI=true a test
# that would skip for want of it fails instead. Everything else stays a skip, listed.
CI = os.environ.get("CI") == "true"
CI_PROVIDES = {
    "root": "CI runs as root",
    "netns": "CI runs as root with iproute2 and nftables (scripts/setup.sh installs them)",
    "mutter": "scripts/setup.sh installs mutter, pipewire, wireplumber and dbus; run.sh builds "
              "the host with the mutter feature",
}


def skip(feature: str, reason: str):
    """Skips the running test for want of `feature`, or fails it under CI=true when CI's
    machine provides `feature`. The skip is listed (pytest -rs, and $PF_SKIP_LOG)."""
    if CI and feature in CI_PROVIDES:
        pytest.fail(f"CI=true: not skipping: {feature}: {reason} ({CI_PROVIDES[feature]}; "
                    "a skip here hides a failure)")
    pytest.skip(f"{feature}: {reason}")


def pytest_runtest_logreport(report):
    """Appends every skipped test to $PF_SKIP_LOG (scripts/test.sh prints the list)."""
    log = os.environ.get("PF_SKIP_LOG")
    if not log or not report.skipped:
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    reason = reason.removeprefix("Skipped: ")
    with open(log, "a") as f:
        f.write(f"e2e::{report.nodeid}: {reason}\n")


def _port_free(port: int, kind: int = socket.SOCK_STREAM, address: str = "127.0.0.1") -> bool:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, kind) as s:
        try:
            s.bind((address, port))
            return True
        except OSError:
            return False


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


# Offsets from the base port: TCP https (-5), http (0), management (+1), RTSP (+21); UDP video,
# control, audio (+9..+11) and the punktfunk/1 listener the tests put at -10.
TCP_OFFSETS = (-5, 0, 1, 21)
UDP_OFFSETS = (-10, 9, 10, 11)


def _free_base_port() -> int:
    # Below the kernel's ephemeral range: a port that some outgoing connection (a parallel
    # flood test, say) holds as its local port cannot be listened on.
    high = max(20100, _ephemeral_low() - 50)
    for _ in range(200):
        base = random.randrange(20000, high)
        if all(_port_free(base + off) for off in TCP_OFFSETS) and all(
                _port_free(base + off, socket.SOCK_DGRAM) for off in UDP_OFFSETS):
            return base
    raise RuntimeError("no free base port")


def wait_for(pred, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = pred()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


class Host:
    """One `punktfunk serve` process."""

    def __init__(self, state_dir: Path, log_path: Path, base_port: int | None = None,
                 extra_args: list[str] | None = None, extra_env: dict[str, str] | None = None,
                 bind: str | None = "127.0.0.1"):
        self.state_dir = state_dir
        # None: no --bind (the host's default: every interface, dual-stack where it can).
        self.bind = bind
        self.extra_args = extra_args or []
        self.extra_env = extra_env or {}
        self.base = base_port or _free_base_port()
        self.log_path = log_path
        self.proc: subprocess.Popen | None = None

    @property
    def http_port(self) -> int:
        return self.base

    @property
    def https_port(self) -> int:
        return self.base - 5

    @property
    def pf1_port(self) -> int:
        return self.base - 10

    def start(self) -> "Host":
        assert BIN.exists(), f"{BIN} not built (run tests/e2e/run.sh)"
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [str(BIN), "serve", "--state-dir", str(self.state_dir),
             "--base-port", str(self.base),
             *(["--bind", self.bind] if self.bind else []), "--no-mdns",
             # Not the default 47900: another host on this machine (a parallel test run)
             # may hold it.
             "--pf1-port", str(self.pf1_port), *self.extra_args],
            stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info,punktfunk_control=debug",
                 **self.extra_env},
        )
        # Generous: a debug build on a slow, loaded machine takes a while to start.
        def listening() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"punktfunk serve exited ({self.proc.returncode}):\n"
                                     f"{self.log()[-3000:]}")
            return (self.state_dir / "run.json").exists() and \
                not _port_free(self.base, address=self.bind or "127.0.0.1")

        wait_for(listening, timeout=60, what="punktfunk serve to listen")
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)
        self.proc = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def sent_frames(self) -> list[tuple[int, int]]:
        """(session, video frames sent) for every stream this host has stopped, in order."""
        import streaming  # the harness module, next to this file

        return streaming.host_sent_frames(self.log())

    def api(self, method: str, path: str, body: dict | None = None):
        token = (self.state_dir / "api-token").read_text().strip()
        run = json.loads((self.state_dir / "run.json").read_text())
        req = urllib.request.Request(
            f"http://{run['management_addr']}{path}", method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=40) as resp:
            return json.loads(resp.read())

    def cli(self, *args: str) -> subprocess.CompletedProcess:
        return subprocess.run([str(BIN), *args, "--state-dir", str(self.state_dir)],
                              capture_output=True, text=True, timeout=60)

    def host_cert_pem(self) -> bytes:
        return (self.state_dir / "host-cert.pem").read_bytes()


class Client:
    """A moonlight-python identity and its NvHTTP connection to the host."""

    def __init__(self, host: Host, config_dir: Path, address: str = "127.0.0.1"):
        self.host = host
        self.identity = Identity(config_dir)
        # An IPv6 address goes into URLs in brackets.
        url_host = f"[{address}]" if ":" in address else address
        self.http = NvHTTP(url_host, self.identity, http_port=host.http_port,
                           https_port=host.https_port)

    def server_info(self):
        return self.http.parse_server_info(self.http.get_server_info())

    def own_server_info(self):
        """`/serverinfo` over HTTPS, as a paired Moonlight asks: the host then knows the
        client and reports its own session (over plain HTTP it cannot tell clients apart)."""
        return self.http.parse_server_info(self.http.get_server_info(use_https=True))

    def start_pairing(self, pin: str) -> dict:
        """Runs moonlight-python's pairing in a thread; returns a dict that gets `cert` or
        `error` when it ends (and `thread`)."""
        info = self.server_info()
        result: dict = {}

        def run():
            try:
                result["cert"] = pair(self.http, self.identity, pin, info, timeout=60)
            except Exception as e:  # noqa: BLE001 - handed to the test
                result["error"] = e

        t = threading.Thread(target=run, daemon=True)
        t.start()
        result["thread"] = t
        return result

    def pair_with_pin(self, pin: str = "4711", name: str | None = None) -> subprocess.CompletedProcess:
        """Full pairing: start it, wait until the host asks for the PIN, enter it with the CLI."""
        result = self.start_pairing(pin)
        wait_awaiting_pin(self.host)
        args = ["pin", pin] + (["--name", name] if name else [])
        cp = self.host.cli(*args)
        result["thread"].join(60)
        assert "error" not in result, f"pairing failed: {result.get('error')!r}\n{self.host.log()}"
        self.http.server_cert_pem = result["cert"]
        return cp


def wait_awaiting_pin(host: Host) -> dict:
    return wait_for(
        lambda: (s := host.api("GET", "/api/status"))["pairing"]["state"] == "awaiting_pin" and s,
        what="a client waiting for the PIN")


@pytest.fixture
def host(tmp_path):
    h = Host(tmp_path / "state", tmp_path / "host.log").start()
    yield h
    h.stop()


@pytest.fixture
def client_factory(tmp_path, host):
    n = {"i": 0}

    def make() -> Client:
        n["i"] += 1
        return Client(host, tmp_path / f"client{n['i']}")

    return make
