"""Issue 9: `punktfunk serve` streams a GNOME Mutter desktop to a stock Moonlight client.

A private headless Mutter runs (tests/e2e/mutter.py). The host, built with the control feature
`mutter` (tests/e2e/run.sh builds it so), runs with `[capture] source = "mutter"` in that
session's environment: each stream gets its own virtual monitor at the client's mode
(ScreenCast RecordVirtual), captured through PipeWire; the client's input goes through the
stream's RemoteDesktop session. moonlight-python decodes what the host sent, and a `wev` on the
monitor prints the input it got.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import mutter as mutter_mod
import streaming
from conftest import Client, Host, skip, wait_for

HERE = Path(__file__).resolve().parent


@pytest.fixture
def mutter():
    why = mutter_mod.available()
    if why:
        skip("mutter", why)
    m = mutter_mod.Mutter().start()
    yield m
    m.stop()


def test_mutter_desktop_is_streamed_and_takes_input(mutter, tmp_path):
    if shutil.which("wev") is None or shutil.which("stdbuf") is None:
        skip("wev", "wev is not installed (scripts/setup.sh installs it)")
    profile = tmp_path / "desktop.toml"
    profile.write_text('[capture]\nsource = "mutter"\n')
    env = mutter.env()
    host = Host(tmp_path / "state", tmp_path / "host.log",
                extra_args=["--profile", str(profile)], extra_env=env)
    try:
        host.start()
    except AssertionError as e:
        if "no Mutter support" in str(e):
            skip("mutter", "the punktfunk binary was built without the `mutter` feature")
        raise
    wev = None
    try:
        c = Client(host, tmp_path / "client")
        c.pair_with_pin("4545", name="gnome")
        p = subprocess.Popen(
            [sys.executable, str(HERE / "streaming.py"), "--config-dir", str(c.identity.config_dir),
             "--address", "127.0.0.1", "--http-port", str(host.http_port),
             "--https-port", str(host.https_port), "--cert", str(host.state_dir / "host-cert.pem"),
             "--seconds", "8", "--mode", "1280x720x30", "--send-input"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "mutter: virtual monitor created for this stream" in host.log(),
                 timeout=60, what="the session's Mutter monitor")
        wev_log = tmp_path / "wev.log"
        wev = subprocess.Popen(["stdbuf", "-oL", "wev"], env=env, stdout=open(wev_log, "wb"),
                               stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        r = json.loads(out.strip().splitlines()[-1])
        log = host.log()
        assert re.search(r"capture source.*Mutter", log), log[-3000:]
        sent = host.sent_frames()
        assert len(sent) == 1, sent
        print(f"{r['frames_received']} of {sent[0][1]} frames; {r['input_rounds']} input rounds")
        assert r["shapes"] == [[720, 1280]], r["shapes"]
        assert streaming.delivery(r, sent[0][1]) >= 0.99, (r, sent)
        assert r["frames_decoded"] >= 60 and r["decode_errors"] == 0, r
        assert r["input_rounds"] > 5 and r["input_failed"] == 0, r
        seen = wev_log.read_text(errors="replace")
        print(f"wev saw {len(seen.splitlines())} lines")
        assert "wl_pointer] motion" in seen or "wl_pointer] enter" in seen, seen[-3000:]
        assert "button: 272" in seen, seen[-3000:]
        assert "sym: a" in seen, seen[-3000:]
    finally:
        if wev is not None:
            wev.kill()
            wev.wait()
        host.stop()
