"""Issue 9: `punktfunk serve` streams a real desktop to a stock Moonlight client.

A headless sway runs (as an unprivileged user); its outputs are painted red. The host runs with
`[capture] source = "wlroots"` and finds sway through $SWAYSOCK/$WAYLAND_DISPLAY. Each stream
gets its own headless output at the client's mode; moonlight-python decodes what the host sent:
every frame at the requested size, the picture red (BT.709 limited: Y 63, Cb 102, Cr 240), and
the host sent the frames the client got.
"""

from __future__ import annotations

import json
import os
import re
import signal
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


def start_wev(s, output: str, log: Path) -> subprocess.Popen:
    """`wev` on the session's output (focused first, so the new window lands and has focus
    there), as sway's user, printing every event it gets."""
    s.msg(f"focus output {output}")
    cmd = ["stdbuf", "-oL", "wev"]
    if s.root:
        cmd = ["setpriv", f"--reuid={sway_mod.NOBODY}", f"--regid={sway_mod.NOBODY}",
               "--clear-groups", *cmd]
    env = {"PATH": "/usr/bin:/bin", "XDG_RUNTIME_DIR": str(s.dir), "WAYLAND_DISPLAY": "wayland-1",
           "HOME": str(s.dir)}
    return subprocess.Popen(cmd, env=env, stdout=open(log, "wb"), stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL)


def test_client_input_reaches_a_wayland_client_on_the_sessions_output(sway, tmp_path):
    """Keyboard and mouse events the client sends through moonlight-common-c
    (LiSendKeyboardEvent, LiSendMousePositionEvent, LiSendMouseButtonEvent) arrive in a
    Wayland client (wev) on that session's own output."""
    import shutil

    if shutil.which("wev") is None:
        skip("wev", "wev is not installed (scripts/setup.sh installs it)")
    profile = tmp_path / "desktop.toml"
    profile.write_text('[capture]\nsource = "wlroots"\n')
    host = Host(tmp_path / "state", tmp_path / "host.log",
                extra_args=["--profile", str(profile)], extra_env=sway.env()).start()
    wev = None
    try:
        c = Client(host, tmp_path / "client")
        c.pair_with_pin("3434", name="typist")
        before = {o["name"] for o in outputs_of(sway)}
        p = subprocess.Popen(
            [sys.executable, str(HERE / "streaming.py"), "--config-dir", str(c.identity.config_dir),
             "--address", "127.0.0.1", "--http-port", str(host.http_port),
             "--https-port", str(host.https_port), "--cert", str(host.state_dir / "host-cert.pem"),
             "--seconds", "8", "--mode", "1280x720x30", "--send-input"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        wait_for(lambda: "input goes to this session's desktop" in host.log(), timeout=60,
                 what="the session's desktop input")
        new = wait_for(lambda: sorted({o["name"] for o in outputs_of(sway)} - before), timeout=10,
                       what="the session's output")
        wev_log = tmp_path / "wev.log"
        wev = start_wev(sway, new[0], wev_log)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err[-3000:]
        r = json.loads(out.strip().splitlines()[-1])
        assert r["input_rounds"] > 5 and r["input_failed"] == 0, r
        seen = wev_log.read_text(errors="replace")
        print(f"{r['input_rounds']} input rounds sent; wev saw {len(seen.splitlines())} lines")
        assert "sym: a" in seen, seen[-3000:]
        assert re.search(r"wl_pointer\] button: .*\(left\)", seen) or "button: 272" in seen, seen[-3000:]
        assert "wl_pointer] motion" in seen, seen[-3000:]
        # The window it landed in is on the session's output.
        tree = sway.msg("-t", "get_tree", "-r").stdout
        assert new[0] in tree and "wev" in tree
    finally:
        if wev is not None:
            wev.kill()
            wev.wait()
        host.stop()


def test_two_clients_get_two_outputs_at_their_own_modes(sway, tmp_path):
    """Each session has its own virtual output at its client's mode, streamed at that size."""
    profile = tmp_path / "desktop.toml"
    profile.write_text('[capture]\nsource = "wlroots"\n')
    host = Host(tmp_path / "state", tmp_path / "host.log",
                extra_args=["--profile", str(profile)], extra_env=sway.env()).start()
    try:
        a, b = Client(host, tmp_path / "a"), Client(host, tmp_path / "b")
        a.pair_with_pin("5656", name="A")
        b.pair_with_pin("7878", name="B")
        before = {o["name"] for o in outputs_of(sway)}

        def start(c, mode, seconds):
            return subprocess.Popen(
                [sys.executable, str(HERE / "streaming.py"), "--config-dir",
                 str(c.identity.config_dir), "--address", "127.0.0.1", "--http-port",
                 str(host.http_port), "--https-port", str(host.https_port), "--cert",
                 str(host.state_dir / "host-cert.pem"), "--seconds", str(seconds), "--mode", mode],
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

        pa = start(a, "1280x720x30", 6)
        wait_for(lambda: any(s["state"] == "streaming" and s["frames_sent"] > 0
                             for s in host.api("GET", "/api/sessions")),
                 timeout=60, what="A to stream")
        pb = start(b, "854x480x30", 4)
        # A new output shows sway's default mode until the host's `output NAME mode` applies:
        # wait for both sessions' modes, and say what was seen if they never come.
        want = [(854, 480), (1280, 720)]
        seen: dict = {}

        def session_modes() -> bool:
            seen["modes"] = sorted((o["current_mode"]["width"], o["current_mode"]["height"])
                                   for o in outputs_of(sway) if o["name"] not in before)
            return seen["modes"] == want

        try:
            wait_for(session_modes, timeout=60, what="two session outputs at their modes")
        except AssertionError as e:
            raise AssertionError(f"{e}: saw {seen.get('modes')}") from None
        results = []
        for p in (pa, pb):
            out, err = p.communicate(timeout=120)
            assert p.returncode == 0, err[-3000:]
            results.append(json.loads(out.strip().splitlines()[-1]))
        ra, rb = results
        assert ra["shapes"] == [[720, 1280]] and rb["shapes"] == [[480, 854]], (ra["shapes"],
                                                                              rb["shapes"])
        for r in (ra, rb):
            assert r["frames_decoded"] > 20 and is_red(r["yuv_means"][-1]), r
    finally:
        host.stop()


def test_an_app_entry_starts_its_command_in_the_sessions_display(sway, tmp_path):
    """An app of settings.json ("Events", command `wev`) shows in Moonlight's app list; launching
    it starts the command inside that session's own output."""
    import shutil

    if shutil.which("wev") is None:
        skip("wev", "wev is not installed (scripts/setup.sh installs it)")
    state = tmp_path / "state"
    state.mkdir()
    (state / "settings.json").write_text(json.dumps(
        {"apps": [{"title": "Events", "command": ["wev"]}]}))
    profile = tmp_path / "desktop.toml"
    profile.write_text('[capture]\nsource = "wlroots"\n')
    host = Host(state, tmp_path / "host.log", extra_args=["--profile", str(profile)],
                extra_env=sway.env()).start()
    try:
        c = Client(host, tmp_path / "client")
        c.pair_with_pin("9090", name="gamer")
        assert [a.name for a in c.http.get_app_list()] == ["Desktop", "Events"]
        before = {o["name"] for o in outputs_of(sway)}
        p = subprocess.run(
            [sys.executable, str(HERE / "streaming.py"), "--config-dir", str(c.identity.config_dir),
             "--address", "127.0.0.1", "--http-port", str(host.http_port),
             "--https-port", str(host.https_port), "--cert", str(host.state_dir / "host-cert.pem"),
             "--seconds", "3", "--mode", "1280x720x30", "--app", "Events"],
            capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr[-3000:]
        assert "app started in the session's display" in host.log(), host.log()[-3000:]
        new = sorted({o["name"] for o in outputs_of(sway)} - before)
        assert len(new) == 1, new

        def wev_on_new_output():
            tree = json.loads(sway.msg("-t", "get_tree", "-r").stdout)
            out = next((o for o in tree["nodes"] if o.get("name") == new[0]), None)
            return out is not None and "wev" in json.dumps(out)

        wait_for(wev_on_new_output, timeout=10, what="wev's window on the session's output")
    finally:
        # The app outlives its session (docs/STATUS.md) and a wev whose compositor is gone
        # spins on its dead socket: end the windows sway shows for it (their pids are in the
        # tree) before the fixture stops sway.
        try:
            tree = sway.msg("-t", "get_tree", "-r").stdout

            def pids(node):
                if node.get("app_id") == "wev" and node.get("pid"):
                    yield node["pid"]
                for child in node.get("nodes", []) + node.get("floating_nodes", []):
                    yield from pids(child)

            for pid in set(pids(json.loads(tree))):
                os.kill(pid, signal.SIGKILL)
        except Exception as e:  # noqa: BLE001 - cleanup must not hide the test's result
            print(f"wev cleanup: {e!r}")
        host.stop()
