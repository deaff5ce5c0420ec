//! Shared by the tests that start a real Mutter (`capture/tests/virtual_mutter.rs`,
//! `control/tests/virtual_mutter_sink.rs`): a private session (runtime dir 0700,
//! `dbus-daemon --session`, `pipewire`, `wireplumber`, `mutter --headless --wayland
//! --no-x11`), `wev` as a Wayland client of it, the skip helper. docs/capture.md, "Mutter
//! (GNOME)".

#![allow(dead_code, unreachable_pub)] // each including test uses a part

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_capture::mutter::Bus;

pub mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// The private session; children killed in reverse start order and the dir removed on drop.
pub struct Session {
    dir: PathBuf,
    children: Vec<(&'static str, Child)>,
}

pub fn find_in_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(program).is_file()))
}

impl Session {
    /// `None` (after a recorded skip) when a program is missing.
    pub fn start(extra: &[&str]) -> Option<Self> {
        for program in ["dbus-daemon", "pipewire", "wireplumber", "mutter"]
            .iter()
            .chain(extra)
        {
            if !find_in_path(program) {
                let feature = if *program == "wev" { "wev" } else { "mutter" };
                skip::skip(
                    feature,
                    format!("{program} is not installed (scripts/setup.sh)"),
                );
                return None;
            }
        }
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let dir = std::env::temp_dir().join(format!(
            "pf-mutter-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create the runtime dir");
        // XDG base-dir spec: the runtime dir is 0700 and ours; dbus and PipeWire check it.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).expect("chmod 0700");
        for sub in ["state", "config"] {
            std::fs::create_dir(dir.join(sub)).expect("create a subdir");
        }
        let mut s = Self {
            dir,
            children: Vec::new(),
        };
        let bus = s.dir.join("bus");
        s.spawn(
            "dbus-daemon",
            &[
                "--session",
                "--nofork",
                "--nopidfile",
                &format!("--address=unix:path={}", bus.display()),
            ],
        );
        s.wait_for_path(&bus);
        s.spawn("pipewire", &[]);
        s.wait_for_path(&s.dir.join("pipewire-0"));
        s.spawn("wireplumber", &[]);
        s.spawn("mutter", &["--headless", "--wayland", "--no-x11"]);
        s.wait_for_path(&s.dir.join("wayland-0"));
        Some(s)
    }

    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new(program);
        c.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("XDG_STATE_HOME", self.dir.join("state"))
            .env("XDG_CONFIG_HOME", self.dir.join("config"))
            .env("GSETTINGS_BACKEND", "memory")
            .env("DBUS_SESSION_BUS_ADDRESS", self.bus_address())
            .env("WAYLAND_DISPLAY", "wayland-0")
            .current_dir(&self.dir);
        c
    }

    pub fn spawn(&mut self, program: &'static str, args: &[&str]) {
        let log = std::fs::File::create(self.dir.join(format!("{program}.log"))).expect("log");
        let child = self
            .command(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("start {program}: {e}"));
        self.children.push((program, child));
    }

    /// Process id of a child started by the session.
    pub fn pid(&self, program: &str) -> Option<u32> {
        self.children
            .iter()
            .find(|(p, _)| *p == program)
            .map(|(_, c)| c.id())
    }

    pub fn bus_address(&self) -> String {
        format!("unix:path={}", self.dir.join("bus").display())
    }

    pub fn pipewire_socket(&self) -> String {
        self.dir.join("pipewire-0").display().to_string()
    }

    pub fn wait_for_path(&self, path: &Path) {
        let deadline = Instant::now() + Duration::from_secs(15);
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

    /// Connects to the private bus once Mutter's ScreenCast is on it.
    pub fn bus(&self) -> Bus {
        let bus = Bus::connect(Some(&self.bus_address()), Duration::from_secs(10))
            .unwrap_or_else(|e| panic!("bus: {e}; logs:\n{}", self.logs()));
        let deadline = Instant::now() + Duration::from_secs(15);
        while !bus.has_screen_cast().unwrap_or(false) {
            assert!(
                Instant::now() < deadline,
                "org.gnome.Mutter.ScreenCast never appeared; logs:\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        bus
    }

    pub fn logs(&self) -> String {
        let mut out = String::new();
        for (program, _) in &self.children {
            let text = std::fs::read_to_string(self.dir.join(format!("{program}.log")))
                .unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            out += &format!("--- {program}.log (last lines)\n");
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

/// wev's output lines, collected by a reader thread.
pub struct Wev {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Wev {
    pub fn start(session: &Session) -> Self {
        let mut child = session
            .command("stdbuf")
            .args(["-oL", "wev"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start wev");
        let stdout = child.stdout.take().expect("piped stdout");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                sink.lock().unwrap_or_else(|e| e.into_inner()).push(line);
            }
        });
        Self { child, lines }
    }

    pub fn saw(&self, needle: &str) -> bool {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .any(|l| l.contains(needle))
    }

    pub fn wait_for(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.saw(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn tail(&self) -> String {
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
        lines[lines.len().saturating_sub(40)..].join("\n")
    }
}

impl Drop for Wev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
