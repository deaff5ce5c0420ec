"""Issue 9: `punktfunk serve` streams a real desktop to a stock Moonlight client.

A headless sway runs (as an unprivileged user); its outputs are painted red. The host runs with
`[capture] source = "wlroots"` and finds sway through $SWAYSOCK/$WAYLAND_DISPLAY. Each stream
gets its own headless output at the client's mode; moonlight-python decodes what the host sent:
every frame at the requested size, the picture red (BT.709 limited: Y 63, Cb 102, Cr 240), and
the host sent the frames the client got.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import streaming
import sway as sway_mod
from conftest import Client, Host, skip, wait_for

HERE = Path(__file__).resolve().parent
RED_YUV = (63, 102, 240)


@pytest.fixture
def sway():
    why = sway_mod.available()
    if why:
        skip("sway", why)
    s = sway_mod.Sway().start()
    # Every output, also the ones sessions create later, shows a red background (swaybg).
    s.msg("output * bg #ff0000 solid_color")
    yield s
    s.stop()


def stream_subprocess(host: Host, c: Client, mode: str, seconds: float) -> dict:
    p = subprocess.run(
        [sys.executable, str(HERE / "streaming.py"), "--config-dir", str(c.identity.config_dir),
         "--address", "127.0.0.1", "--http-port", str(host.http_port),
         "--https-port", str(host.https_port), "--cert", str(host.state_dir / "host-cert.pem"),
         "--seconds", str(seconds), "--mode", mode],
        capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr[-3000:]
    return json.loads(p.stdout.strip().splitlines()[-1])


def outputs_of(s) -> list[dict]:
    return json.loads(s.msg("-t", "get_outputs", "-r").stdout)


def is_red(m: list[float]) -> bool:
    return all(abs(a - b) <= 12 for a, b in zip(m, RED_YUV))


def test_desktop_of_a_virtual_output_is_streamed(sway, tmp_path):
    profile = tmp_path / "desktop.toml"
    profile.write_text('[capture]\nsource = "wlroots"\n')
    host = Host(tmp_path / "state", tmp_path / "host.log",
                extra_args=["--profile", str(profile)], extra_env=sway.env()).start()
    try:
        c = Client(host, tmp_path / "client")
        c.pair_with_pin("1212", name="desk")
        before = {o["name"] for o in outputs_of(sway)}
        r = stream_subprocess(host, c, "1280x720x30", 4)
        log = host.log()
        assert re.search(r"capture source.*Wlroots", log), log[-3000:]
        outputs = {o["name"]: o for o in outputs_of(sway)}
        made = re.findall(r"sway: virtual output (?:created|reused) for this stream", log)
        print(f"outputs before {sorted(before)}, after {sorted(outputs)}")
        assert len(made) == 1, log[-3000:]
        sent = host.sent_frames()
        assert len(sent) == 1, sent
        print(f"{r['frames_received']} of {sent[0][1]} frames; means {r['yuv_means'][-3:]}")
        assert r["shapes"] == [[720, 1280]], r["shapes"]
        assert streaming.delivery(r, sent[0][1]) >= 0.99, (r, sent)
        assert r["frames_decoded"] >= 60 and r["decode_errors"] == 0, r
        # The picture is the output's red background (the first frames may show the output
        # before swaybg painted it).
        reds = [m for m in r["yuv_means"] if is_red(m)]
        assert len(reds) >= len(r["yuv_means"]) * 0.7 and is_red(r["yuv_means"][-1]), r["yuv_means"]
        # The session's output was made at the client's mode.
        new = [outputs[n] for n in set(outputs) - before]
        assert len(new) == 1, (sorted(before), sorted(outputs))
        m = new[0]["current_mode"]
        assert (m["width"], m["height"]) == (1280, 720), new[0]
    finally:
        host.stop()
