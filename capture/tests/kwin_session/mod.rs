//! A private KWin session for tests (`capture/tests/virtual_kwin.rs`,
//! `control/tests/virtual_kwin_sink.rs`): runtime dir (0700, also HOME), `dbus-daemon
//! --session`, `pipewire`, `wireplumber`, a copy of `kwin_wayland --virtual` with
//! `KWIN_WAYLAND_NO_PERMISSION_CHECKS=1`, and a `wev` client; everything killed on drop.
//! Why a copy and what KWin needs: docs/capture.md, "KWin (KDE)". The including test crate
//! provides `mod skip` (tests/skip.rs).

#![allow(dead_code, unreachable_pub)] // each including test uses a part

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use punktfunk_capture::kwin;

use crate::skip;

pub const SOCKET: &str = "kwin-pf";
pub const TIMEOUT: Duration = Duration::from_secs(10);
/// The output of `kwin_wayland --virtual`.
pub const BACKEND_OUTPUT: &str = "Virtual-0";

pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// The private session; children killed in reverse start order and the dir removed on drop.
pub struct Session {
    dir: PathBuf,
    children: Vec<(&'static str, Child)>,
}

impl Session {
    /// Starts the session, or `None` after a recorded skip when a program is missing.
    pub fn start(width: u32, height: u32) -> Option<Self> {
        for program in ["dbus-daemon", "pipewire", "wireplumber", "kwin_wayland"] {
            if find_in_path(program).is_none() {
                skip::skip(
                    "kwin",
                    format!("{program} is not installed (scripts/setup.sh installs it)"),
                );
                return None;
            }
        }
        // Unique per process and start: tests of one binary start in parallel.
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pf-kwin-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir); // left by an earlier process of the same pid
        std::fs::create_dir(&dir).expect("create the runtime dir");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod 0700 the runtime dir");
        std::fs::create_dir(dir.join("state")).expect("create the state dir");
        std::fs::create_dir(dir.join("bin")).expect("create the bin dir");
        // A copy without the packaged file capability (docs/capture.md, "KWin (KDE)").
        let kwin = dir.join("bin/kwin_wayland");
        std::fs::copy(find_in_path("kwin_wayland").expect("checked"), &kwin)
            .expect("copy kwin_wayland");
        let mut session = Self {
            dir,
            children: Vec::new(),
        };
        let bus = session.dir.join("bus");
        session.spawn(
            "dbus-daemon",
            Path::new("dbus-daemon"),
            &[
                "--session",
                "--nofork",
                "--nopidfile",
                &format!("--address=unix:path={}", bus.display()),
            ],
        );
        session.wait_for_path(&bus);
        session.spawn("pipewire", Path::new("pipewire"), &[]);
        session.wait_for_path(&session.dir.join("pipewire-0"));
        session.spawn("wireplumber", Path::new("wireplumber"), &[]);
        let (w, h) = (width.to_string(), height.to_string());
        let args = [
            "--virtual",
            "--socket",
            SOCKET,
            "--width",
            &w,
            "--height",
            &h,
        ];
        session.spawn("kwin_wayland", &kwin, &args);
        // KWin 5.27 on llvmpipe comes up in 1-3 s here, but once in a CI run it sat after
        // printing its OpenGL renderer for over 30 s: start it once more before failing.
        if !session.wait_ready(Duration::from_secs(20)) {
            eprintln!(
                "KWin not ready in 20 s; restarting it once; logs:\n{}",
                session.logs()
            );
            if let Some(i) = session
                .children
                .iter()
                .position(|(n, _)| *n == "kwin_wayland")
            {
                let (_, mut child) = session.children.remove(i);
                let _ = child.kill();
                let _ = child.wait();
            }
            let _ = std::fs::remove_file(session.socket());
            let _ = std::fs::remove_file(session.dir.join(format!("{SOCKET}.lock")));
            session.spawn("kwin_wayland", &kwin, &args);
            assert!(
                session.wait_ready(Duration::from_secs(30)),
                "KWin not ready in 30 s after a restart; logs:\n{}",
                session.logs()
            );
        }
        Some(session)
    }

    pub fn spawn(&mut self, name: &'static str, program: &Path, args: &[&str]) {
        let log =
            std::fs::File::create(self.dir.join(format!("{name}.log"))).expect("create a log file");
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {name}: {e}"));
        self.children.push((name, child));
    }

    /// `program` with the session's environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut command = Command::new(program);
        command
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env(
                "DBUS_SESSION_BUS_ADDRESS",
                format!("unix:path={}", self.dir.join("bus").display()),
            )
            .env("WAYLAND_DISPLAY", SOCKET)
            .env("KWIN_WAYLAND_NO_PERMISSION_CHECKS", "1")
            .current_dir(&self.dir);
        command
    }

    pub fn socket(&self) -> PathBuf {
        self.dir.join(SOCKET)
    }

    pub fn pipewire(&self) -> Option<String> {
        Some(self.dir.join("pipewire-0").display().to_string())
    }

    fn wait_for_path(&self, path: &Path) {
        let deadline = Instant::now() + TIMEOUT;
        while !path.exists() {
            assert!(
                Instant::now() < deadline,
                "{} did not appear; logs:\n{}",
                path.display(),
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits up to `limit` until KWin answers with the screencast and fake-input globals and its
    /// output; false when it did not (it still runs). Panics if KWin exited.
    fn wait_ready(&mut self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if let Some((_, child)) = self.children.iter_mut().find(|(n, _)| *n == "kwin_wayland")
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!("kwin_wayland exited ({status}); logs:\n{}", self.logs());
            }
            if self.socket().exists()
                && let Ok(offer) = kwin::probe(&self.socket(), Duration::from_secs(2))
                && offer.screencast.is_some()
                && offer.fake_input.is_some()
                && offer.outputs.iter().any(|(n, _)| n == BACKEND_OUTPUT)
            {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (name, _) in &self.children {
            let text =
                std::fs::read_to_string(self.dir.join(format!("{name}.log"))).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(20).collect();
            out += &format!("--- {name}.log (last lines)\n");
            for line in tail.iter().rev() {
                out += &format!("{line}\n");
            }
        }
        out
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        while let Some((_, mut child)) = self.children.pop() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A `stdbuf -oL wev` client of the session's KWin, killed on drop; its lines collected.
pub struct Wev {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
}

impl Drop for Wev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wev {
    pub fn start(session: &Session) -> Wev {
        let mut child = session
            .command(Path::new("stdbuf"))
            .args(["-oL", "wev"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn wev");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines: Arc<(Mutex<Vec<String>>, Condvar)> = Arc::default();
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                let (m, cv) = &*sink;
                let Ok(mut lines) = m.lock() else { break };
                lines.push(line);
                cv.notify_all();
            }
        });
        Wev { child, lines }
    }

    /// Waits up to `within` for a line matching `pred`.
    pub fn wait_for(&self, within: Duration, pred: impl Fn(&str) -> bool) -> Option<String> {
        let deadline = Instant::now() + within;
        let (m, cv) = &*self.lines;
        let mut lines = m.lock().expect("wev lines lock");
        loop {
            if let Some(l) = lines.iter().find(|l| pred(l)) {
                return Some(l.clone());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            lines = cv.wait_timeout(lines, left).expect("wev lines lock").0;
        }
    }

    pub fn all(&self) -> String {
        self.lines.0.lock().expect("wev lines lock").join("\n")
    }
}
