"""The stream under 5 % and 10 % random packet loss, with the client in its own network namespace.

Host and client run in two namespaces joined by a veth pair (tests/e2e/netns.sh). An nftables
`numgen random` rule in the client's prerouting chain drops that share of everything arriving
at the client: video, audio, ENet and TCP alike. moonlight-common-c must still hand out at least
99 % (5 % loss) and 95 % (10 % loss) of the frames the host sent in that stream (the host's own
count, from its "stream stopped" line), and every one of them must decode: that is the GF(2^8)
FEC (nanors-compatible) with per-block adaptive parity doing its job with the real client. The
count is taken at the protocol layer, so a slow client machine does not change it
(docs/testing.md, "End-to-end harness").

Each run prints where the missing frames went (docs/streaming.md, "Loss"): frames missing before
the first frame the client handed out (the first keyframe lost), in gaps (a frame the FEC could
not repair, and the frames dropped while the client waited for the IDR it asked for) and after
the last one, with the client's own log counts (unrecoverable frames, IDR waits and requests).
`PF_LOSS=20 tests/e2e/run.sh -s -k loss` runs another rate (the 10 % bound then applies).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

import streaming
from conftest import BIN, REPO, _free_base_port, skip, wait_for

NETNS = REPO / "tests" / "e2e" / "netns.sh"
HERE = Path(__file__).resolve().parent
HOST_IP = "10.77.0.1"
# This run's namespace prefix (tests/e2e/netns.sh, PF_NETNS): runs side by side on one machine
# keep their own namespaces.
PREFIX = f"pf{os.getpid() % 100000}"
HOST_NS, CLIENT_NS = f"{PREFIX}-host", f"{PREFIX}-client"


def netns(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(NETNS), *args], env={**os.environ, "PF_NETNS": PREFIX}, **kw)


@pytest.fixture
def namespaces():
    if os.geteuid() != 0:
        skip("root", "network namespaces need root")
    r = netns("up", capture_output=True, text=True)
    if r.returncode != 0:
        skip("netns", f"could not create the namespaces (iproute2/nftables): {r.stderr.strip()}")
    yield
    netns("down", check=False)


def in_ns(ns: str, *cmd: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", "netns", "exec", ns, *cmd], **kw)


# Loss rate (percent) → share of the host's frames the client must hand out.
DELIVERY = {5: 0.99, 10: 0.95}
EXTRA = os.environ.get("PF_LOSS")


def _rates() -> list[int]:
    if EXTRA and int(EXTRA) not in DELIVERY:
        return [*DELIVERY, int(EXTRA)]
    return list(DELIVERY)


def host_pipeline_drops(log: str) -> dict:
    """The counters of the host's "video pipeline stopped" line (frames lost inside the host)."""
    for line in re.sub(r"\x1b\[[0-9;]*m", "", log).splitlines():
        if "video pipeline stopped" in line:
            return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", line)}
    return {}


def where_frames_went(result: dict, sent: int, client_log: dict) -> dict:
    """Splits the frames the host sent but the client never handed out by where they went."""
    first = result["first_number"] or 1
    last = result["last_number"] or 0
    return {
        "sent": sent,
        "received": result["frames_received"],
        "decoded": result["frames_decoded"],
        "missing_at_start": first - 1,
        "missing_in_gaps": result["frames_missing"],
        "gaps": result["gaps"],
        "missing_at_end": max(sent - last, 0),
        **{f"client_{k}": v for k, v in client_log.items()},
    }


@pytest.mark.parametrize("loss", _rates())
def test_stream_survives_loss(tmp_path, namespaces, loss):
    state = tmp_path / "state"
    base = _free_base_port()
    log = open(tmp_path / "host.log", "wb")
    host = subprocess.Popen(
        ["ip", "netns", "exec", HOST_NS, str(BIN), "serve", "--state-dir", str(state),
         "--base-port", str(base), "--bind", HOST_IP, "--no-mdns"],
        stdout=log, stderr=log, env={**os.environ, "RUST_LOG": "info"})
    try:
        wait_for(lambda: (state / "run.json").exists(), what="host to start")
        py = sys.executable
        cert = tmp_path / "host-cert.pem"
        common = ["--config-dir", str(tmp_path / "client"), "--address", HOST_IP,
                  "--http-port", str(base), "--https-port", str(base - 5)]
        pairing = subprocess.Popen(
            ["ip", "netns", "exec", CLIENT_NS, py, str(HERE / "pair_client.py"), *common,
             "--pin", "1357", "--cert-out", str(cert)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        def pin_accepted() -> bool:
            r = in_ns(HOST_NS, str(BIN), "pin", "1357", "--state-dir", str(state),
                      capture_output=True, text=True, timeout=60)
            return r.returncode == 0

        wait_for(pin_accepted, timeout=60, what="the PIN to be accepted")
        out, err = pairing.communicate(timeout=90)
        assert pairing.returncode == 0, err

        match = os.environ.get("PF_LOSS_MATCH", "").split()
        netns("loss", str(loss), *match, check=True)
        r = in_ns(CLIENT_NS, py, str(HERE / "streaming.py"), *common, "--cert", str(cert),
                  "--seconds", "8", "--mode", "1280x720x60", "--client-log",
                  capture_output=True, text=True, timeout=120)
        counters = netns("counter", capture_output=True, text=True).stdout
        (tmp_path / "client.log").write_text(r.stderr)
        assert r.returncode == 0, r.stderr[-3000:]
        result = json.loads(r.stdout.strip().splitlines()[-1])
        sent = streaming.host_sent_frames((tmp_path / "host.log").read_text(errors="replace"))
        print(f"{loss}% loss:", result, "host sent:", sent)
        print(counters)
        if sent:
            host_log = (tmp_path / "host.log").read_text(errors="replace")
            went = where_frames_went(result, sent[0][1], streaming.client_log_counts(r.stderr))
            went.update({f"host_{k}": v for k, v in host_pipeline_drops(host_log).items()})
            print(f"{loss}% loss, where frames went:", json.dumps(went))
        dropped = int(counters.split("packets")[1].split()[0])
        assert dropped > 50, "the loss rule must actually have dropped packets"
        assert result["termination_error"] == 0 and not result["terminated_early"], result
        # 8 s at 60 fps: the host sent about 480 frames in this stream.
        assert len(sent) == 1 and sent[0][1] >= 400, sent
        need = DELIVERY.get(loss, DELIVERY[10])
        assert streaming.delivery(result, sent[0][1]) >= need, (sent, result)
        assert result["decode_errors"] == 0, result
        assert result["frames_decoded"] == result["frames_received"], result
        assert result["samples_checked"] >= 10 and result["stamps_increasing"], result
    finally:
        netns("loss", "0", check=False)
        host.terminate()
        try:
            host.wait(timeout=10)
        except subprocess.TimeoutExpired:
            host.kill()
        log.close()
        print((tmp_path / "host.log").read_text(errors="replace")[-4000:])
