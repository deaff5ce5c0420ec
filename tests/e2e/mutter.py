"""A private GNOME Mutter session for the desktop tests: a 0700 runtime dir, a session bus,
PipeWire, WirePlumber and `mutter --headless --wayland --no-x11` (root is fine; no GPU: software
rendering). Stopped by `stop()`.

The same recipe as capture/tests/mutter_session (docs/capture.md, "Mutter (GNOME)").
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

PROGRAMS = ("dbus-daemon", "pipewire", "wireplumber", "mutter", "gdbus")


def available() -> str | None:
    """Why a Mutter session cannot be started here, or None."""
    for p in PROGRAMS:
        if shutil.which(p) is None:
            return f"{p} is not installed (scripts/setup.sh installs mutter, pipewire, wireplumber, dbus)"
    return None


class Mutter:
    def __init__(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="pf-mutter-"))
        os.chmod(self.dir, 0o700)
        for sub in ("state", "config"):
            (self.dir / sub).mkdir()
        self.procs: list[tuple[str, subprocess.Popen]] = []

    @property
    def bus(self) -> str:
        return f"unix:path={self.dir / 'bus'}"

    def env(self) -> dict[str, str]:
        """The session's environment (also what the host gets: it finds Mutter on this bus
        and PipeWire in this runtime dir)."""
        return {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.dir),
            "XDG_RUNTIME_DIR": str(self.dir),
            "XDG_STATE_HOME": str(self.dir / "state"),
            "XDG_CONFIG_HOME": str(self.dir / "config"),
            "GSETTINGS_BACKEND": "memory",
            "DBUS_SESSION_BUS_ADDRESS": self.bus,
            "WAYLAND_DISPLAY": "wayland-0",
        }

    def _spawn(self, name: str, *args: str) -> None:
        log = open(self.dir / f"{name}.log", "wb")
        p = subprocess.Popen([name, *args], env=self.env(), stdout=log, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL, cwd=self.dir)
        self.procs.append((name, p))

    def _wait(self, pred, what: str, timeout: float = 15) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pred():
                return
            time.sleep(0.05)
        raise AssertionError(f"{what} not ready in {timeout} s:\n{self.logs()}")

    def start(self) -> "Mutter":
        self._spawn("dbus-daemon", "--session", "--nofork", "--nopidfile", f"--address={self.bus}")
        self._wait(lambda: (self.dir / "bus").exists(), "dbus-daemon")
        self._spawn("pipewire")
        self._wait(lambda: (self.dir / "pipewire-0").exists(), "pipewire")
        self._spawn("wireplumber")
        self._spawn("mutter", "--headless", "--wayland", "--no-x11")
        self._wait(lambda: (self.dir / "wayland-0").exists(), "mutter's Wayland socket")

        def screencast() -> bool:
            r = subprocess.run(["gdbus", "introspect", "--session", "-d", "org.gnome.Mutter.ScreenCast",
                                "-o", "/org/gnome/Mutter/ScreenCast"], env=self.env(),
                               capture_output=True, text=True)
            return r.returncode == 0 and "CreateSession" in r.stdout

        self._wait(screencast, "org.gnome.Mutter.ScreenCast")
        return self

    def logs(self) -> str:
        out = []
        for name, _ in self.procs:
            text = (self.dir / f"{name}.log").read_text(errors="replace")
            out.append(f"--- {name}.log\n" + "\n".join(text.splitlines()[-15:]))
        return "\n".join(out)

    def stop(self) -> None:
        for _, p in reversed(self.procs):
            p.kill()
            p.wait()
        self.procs.clear()
        shutil.rmtree(self.dir, ignore_errors=True)
