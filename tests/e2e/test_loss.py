"""The stream under 5 % random packet loss, with the client in its own network namespace.

Host and client run in two namespaces joined by a veth pair (tests/e2e/netns.sh). An nftables
`numgen random` rule in the client's prerouting chain drops 5 % of everything arriving at the
client: video, audio, ENet and TCP alike. moonlight-common-c must still decode at least 90 %
of the frames: that is the GF(2^8) FEC (nanors-compatible) doing its job with the real client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BIN, REPO, _free_base_port, wait_for

NETNS = REPO / "tests" / "e2e" / "netns.sh"
HERE = Path(__file__).resolve().parent
HOST_IP = "10.77.0.1"


def netns_available() -> bool:
    if os.geteuid() != 0:
        return False
    r = subprocess.run([str(NETNS), "up"], capture_output=True, text=True)
    return r.returncode == 0


@pytest.fixture
def namespaces():
    if not netns_available():
        pytest.skip("skip: network namespaces need root and iproute2/nftables")
    yield
    subprocess.run([str(NETNS), "down"], check=False)


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)


def test_stream_survives_5_percent_loss(tmp_path, namespaces):
    state = tmp_path / "state"
    base = _free_base_port()
    log = open(tmp_path / "host.log", "wb")
    host = subprocess.Popen(
        ["ip", "netns", "exec", "pf-host", str(BIN), "serve", "--state-dir", str(state),
         "--base-port", str(base), "--bind", HOST_IP, "--no-mdns"],
        stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info"})
    try:
        wait_for(lambda: (state / "run.json").exists(), what="host to start")
        py = sys.executable
        cert = tmp_path / "host-cert.pem"
        common = ["--config-dir", str(tmp_path / "client"), "--address", HOST_IP,
                  "--http-port", str(base), "--https-port", str(base - 5)]
        pairing = subprocess.Popen(
            ["ip", "netns", "exec", "pf-client", py, str(HERE / "pair_client.py"), *common,
             "--pin", "1357", "--cert-out", str(cert)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def pin_accepted() -> bool:
            r = in_ns("pf-host", str(BIN), "pin", "1357", "--state-dir", str(state),
                      capture_output=True, text=True, timeout=60)
            return r.returncode == 0

        wait_for(pin_accepted, timeout=60, what="the PIN to be accepted")
        out, err = pairing.communicate(timeout=90)
        assert pairing.returncode == 0, err

        match = os.environ.get("PF_LOSS_MATCH", "").split()
        subprocess.run([str(NETNS), "loss", os.environ.get("PF_LOSS", "5"), *match], check=True)
        r = in_ns("pf-client", py, str(HERE / "streaming.py"), *common, "--cert", str(cert),
                  "--seconds", "8", "--mode", "1280x720x60",
                  capture_output=True, text=True, timeout=120)
        counters = subprocess.run([str(NETNS), "counter"], capture_output=True, text=True).stdout
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout.strip().splitlines()[-1])
        print("5% loss:", result)
        print(counters)
        dropped = int(counters.split("packets")[1].split()[0])
        assert dropped > 50, "the loss rule must actually have dropped packets"
        assert result["termination_error"] == 0, result
        assert result["frames_decoded"] >= 300, result
        assert result["decoded_ratio"] >= 0.90, result
        assert result["stamps_increasing"], result
    finally:
        subprocess.run([str(NETNS), "loss", "0"], check=False)
        host.terminate()
        try:
            host.wait(timeout=10)
        except subprocess.TimeoutExpired:
            host.kill()
        log.close()
        print((tmp_path / "host.log").read_text(errors="replace")[-4000:])
