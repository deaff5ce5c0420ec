"""A headless sway for the desktop tests: started as an unprivileged user (sway refuses root),
with its own XDG_RUNTIME_DIR, pixman rendering and no input devices; stopped by `stop()`.

The same recipe as capture/tests/virtual_sway.rs (docs/capture.md, "Virtual displays: sway").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

NOBODY = 65534


class Sway:
    def __init__(self) -> None:
        self.root = os.geteuid() == 0
        base = "/tmp" if self.root else None
        self.dir = Path(tempfile.mkdtemp(prefix="pf-sway-", dir=base))
        self.log_path = self.dir.with_suffix(".log")
        self.proc: subprocess.Popen | None = None
        self.ipc: Path | None = None
        self.wayland = self.dir / "wayland-1"

    def start(self) -> "Sway":
        cmd = ["sway", "-c", "/dev/null"]
        if self.root:
            os.chown(self.dir, NOBODY, NOBODY)
            cmd = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", *cmd]
        os.chmod(self.dir, 0o700)
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "XDG_RUNTIME_DIR": str(self.dir),
            "WLR_BACKENDS": "headless",
            "WLR_RENDERER": "pixman",
            "WLR_LIBINPUT_NO_DEVICES": "1",
        }
        log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, cwd="/",
                                     stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"sway exited ({self.proc.returncode}):\n{self.log()}")
            socks = sorted(self.dir.glob("sway-ipc.*.sock"))
            if socks and self.wayland.exists() and self.msg("-t", "get_outputs", check=False).returncode == 0:
                self.ipc = socks[0]
                return self
            self.ipc = socks[0] if socks else None
            time.sleep(0.05)
        raise AssertionError(f"sway not ready in 15 s:\n{self.log()}")

    def msg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        if self.ipc is None:
            socks = sorted(self.dir.glob("sway-ipc.*.sock"))
            if not socks:
                return subprocess.CompletedProcess(args, 1, "", "no socket yet")
            self.ipc = socks[0]
        cp = subprocess.run(["swaymsg", "-s", str(self.ipc), *args], capture_output=True,
                            text=True, timeout=10)
        if check:
            assert cp.returncode == 0, (args, cp.stdout, cp.stderr)
        return cp

    def env(self) -> dict[str, str]:
        """What a host process needs to find this sway."""
        return {"SWAYSOCK": str(self.ipc), "WAYLAND_DISPLAY": str(self.wayland),
                "XDG_RUNTIME_DIR": str(self.dir)}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-4000:]
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)
        try:
            self.log_path.unlink()
        except OSError:
            pass


def available() -> str | None:
    """Why sway cannot run here, or None."""
    for tool in ("sway", "swaybg", "swaymsg"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (scripts/setup.sh installs sway and swaybg)"
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        return "setpriv is missing (util-linux): sway refuses root"
    return None
