//! Shared by the tests that start a real sway (`virtual_sway`, `virtual_sway_input`): a
//! headless sway per test, run as `nobody` under root (sway refuses root), with its own
//! XDG_RUNTIME_DIR; Wayland clients started as the same user; the skip helper.
//! docs/capture.md, "Virtual displays: sway".

#![allow(dead_code, unreachable_pub)] // each including test uses a part

use std::io::{BufRead as _, BufReader};
use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use punktfunk_capture::wlroots::SwayIpc;

pub mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// uid/gid sway runs as when the test is root.
pub const NOBODY: u32 = 65534;

/// A headless sway, killed (and its runtime dir removed) on drop.
pub struct Sway {
    child: Child,
    /// Its XDG_RUNTIME_DIR (also HOME).
    pub dir: PathBuf,
    /// `sway-ipc.<uid>.<pid>.sock` in `dir`.
    pub ipc_socket: PathBuf,
    /// `wayland-1` in `dir`.
    pub wayland_socket: PathBuf,
    /// Whether sway runs as [`NOBODY`] (the test is root).
    pub as_nobody: bool,
}

impl Drop for Sway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

pub fn find_in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl Sway {
    /// Starts sway headless; `None` (after a recorded skip) when sway is not installed.
    pub fn start() -> Option<Sway> {
        let Some(sway) = find_in_path("sway") else {
            skip::skip(
                "sway",
                "sway is not installed (apt-get install sway swaybg)",
            );
            return None;
        };
        if find_in_path("swaybg").is_none() {
            skip::skip("sway", "swaybg is not installed (apt-get install swaybg)");
            return None;
        }
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        // Under root the dir must be reachable by nobody: /tmp, whatever TMPDIR says.
        let base = if root {
            PathBuf::from("/tmp")
        } else {
            std::env::temp_dir()
        };
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let dir = base.join(format!(
            "pf-sway-{}-{}",
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).expect("create runtime dir");
        let mut cmd = if root {
            // sway refuses root (sway/main.c drop_permissions); run it as nobody.
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY)).expect("chown runtime dir");
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".to_owned(),
            ])
            .arg(&sway);
            c
        } else {
            Command::new(&sway)
        };
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
            .expect("chmod runtime dir");
        let log = std::fs::File::create(dir.with_extension("log")).expect("sway log");
        let child = cmd
            .args(["-c", "/dev/null"]) // no config: no bar, no keybindings, nothing spawned
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("WLR_BACKENDS", "headless")
            .env("WLR_RENDERER", "pixman")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .current_dir("/")
            .spawn()
            .expect("spawn sway");
        let mut guard = Sway {
            child,
            wayland_socket: dir.join("wayland-1"),
            ipc_socket: PathBuf::new(),
            as_nobody: root,
            dir,
        };
        guard.wait_ready();
        Some(guard)
    }

    /// Kills sway now (the guard's drop then only cleans up).
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    /// Waits (≤ 10 s) for the wayland and IPC sockets and a first IPC answer.
    fn wait_ready(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("sway exited early ({status}):\n{}", self.log());
            }
            let ipc = std::fs::read_dir(&self.dir).ok().and_then(|entries| {
                entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("sway-ipc.") && n.ends_with(".sock"))
                })
            });
            if let Some(ipc) = ipc
                && self.wayland_socket.exists()
                && SwayIpc::connect(&ipc, Duration::from_secs(2))
                    .and_then(|mut c| c.outputs())
                    .is_ok()
            {
                self.ipc_socket = ipc;
                return;
            }
            assert!(
                Instant::now() < deadline,
                "sway not ready in 10 s:\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn ipc(&self) -> SwayIpc {
        SwayIpc::connect(&self.ipc_socket, Duration::from_secs(5)).expect("IPC connect")
    }

    pub fn output_names(&self) -> Vec<String> {
        let outputs = self.ipc().outputs().expect("GET_OUTPUTS");
        outputs.into_iter().map(|o| o.name).collect()
    }
}

impl Sway {
    /// A command that runs `program` as a client of this sway: as sway's user, with a cleared
    /// environment but PATH, XDG_RUNTIME_DIR and WAYLAND_DISPLAY=wayland-1.
    pub fn client_command(&self, program: &str) -> Command {
        let mut cmd = if self.as_nobody {
            let mut c = Command::new("setpriv");
            c.args([
                format!("--reuid={NOBODY}"),
                format!("--regid={NOBODY}"),
                "--clear-groups".to_owned(),
                program.to_owned(),
            ]);
            c
        } else {
            Command::new(program)
        };
        cmd.env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &self.dir)
            .env("XDG_RUNTIME_DIR", &self.dir)
            .env("WAYLAND_DISPLAY", "wayland-1")
            .stdin(Stdio::null())
            .current_dir("/");
        cmd
    }
}

/// Bound on waiting for a line from wev.
pub const WEV_TIMEOUT: Duration = Duration::from_secs(10);

/// The surface position of a wev pointer `enter`/`motion` line (`… x, y: 638.000000, 335.000000`).
pub fn pointer_xy(l: &str) -> Option<(f64, f64)> {
    if !(pointer_line(l, "enter") || pointer_line(l, "motion")) {
        return None;
    }
    let (x, y) = l.split_once("x, y: ")?.1.split_once(", ")?;
    Some((x.trim().parse().ok()?, y.trim().parse().ok()?))
}

/// Whether a wev line is the wl_pointer event `event`.
pub fn pointer_line(l: &str, event: &str) -> bool {
    l.contains("wl_pointer]") && l.contains(event)
}

impl Sway {
    /// Starts sway for an input test, or `None` after a recorded skip when sway or wev is
    /// missing.
    pub fn start_with_wev() -> Option<Sway> {
        if find_in_path("wev").is_none() || find_in_path("stdbuf").is_none() {
            skip::skip(
                "wev",
                "wev (or coreutils' stdbuf) is not installed (apt-get install wev)",
            );
            return None;
        }
        Sway::start()
    }
}

/// A `wev` client of the sway, killed on drop; its stdout lines collected as they come.
pub struct Wev {
    child: Child,
    lines: Arc<(Mutex<Vec<String>>, Condvar)>,
    name: &'static str,
}

impl Drop for Wev {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Wev {
    /// Starts `stdbuf -oL wev` as sway's user and waits until its toplevel is configured
    /// activated (mapped and focused).
    pub fn start(sway: &Sway, name: &'static str) -> Wev {
        let mut child = sway
            .client_command("stdbuf")
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
                // A poisoned lock means the test already failed: stop reading.
                let Ok(mut lines) = m.lock() else { break };
                lines.push(line);
                cv.notify_all();
            }
        });
        let wev = Wev { child, lines, name };
        wev.wait_for("toplevel activated", |l| l.contains("activated"));
        wev
    }

    /// Waits (≤ WEV_TIMEOUT) for a line matching `pred`; returns its index. Panics with wev's
    /// whole output otherwise.
    pub fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        self.wait_for_after(0, what, pred)
    }

    /// Like `wait_for`, for lines at index `from` or later.
    pub fn wait_for_after(&self, from: usize, what: &str, pred: impl Fn(&str) -> bool) -> usize {
        let mut found = 0;
        self.wait_until(what, |lines| {
            match lines.iter().skip(from).position(|l| pred(l)) {
                Some(i) => {
                    found = from + i;
                    true
                }
                None => false,
            }
        });
        found
    }

    /// Waits (≤ WEV_TIMEOUT) until `done` holds for all lines so far. Panics with wev's whole
    /// output otherwise.
    pub fn wait_until(&self, what: &str, mut done: impl FnMut(&[String]) -> bool) {
        let deadline = Instant::now() + WEV_TIMEOUT;
        let (m, cv) = &*self.lines;
        let mut lines = m.lock().expect("wev lines lock");
        loop {
            if done(&lines) {
                return;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "{}: no {what} within {WEV_TIMEOUT:?}; wev printed:\n{}",
                self.name,
                lines.join("\n")
            );
            lines = cv.wait_timeout(lines, left).expect("wev lines lock").0;
        }
    }

    /// Waits until wev has bound the seat's keyboard (and got keyboard focus) and the
    /// pointer: it binds them when the seat's capabilities change, i.e. after virtual devices
    /// appear.
    pub fn wait_for_devices(&self) {
        self.wait_for("keyboard enter", |l| {
            l.contains("wl_keyboard]") && l.contains("enter")
        });
        self.wait_for("pointer capability", |l| {
            l.contains("capabilities") && l.contains("pointer")
        });
    }

    /// The line at `index` (after a `wait_for` returned it).
    pub fn line(&self, index: usize) -> String {
        self.lines.0.lock().expect("wev lines lock")[index].clone()
    }

    /// Waits until the pointer positions wev printed (`enter`/`motion` lines) contain, one
    /// after another, a position and then positions `steps` apart: `[(60, 40), (5, -3)]`
    /// matches p, p + (60, 40), p + (65, 37). Absolute steps are independent of where the window
    /// sits, and of any `enter` sway sends on its own (cursor warps to a focused output).
    pub fn wait_for_steps(&self, what: &str, steps: &[(f64, f64)]) {
        self.wait_until(what, |lines| {
            let xy: Vec<(f64, f64)> = lines.iter().filter_map(|l| pointer_xy(l)).collect();
            xy.windows(steps.len() + 1).any(|w| {
                w.windows(2)
                    .zip(steps)
                    .all(|(p, s)| (p[1].0 - p[0].0, p[1].1 - p[0].1) == *s)
            })
        });
    }

    pub fn len(&self) -> usize {
        self.lines.0.lock().expect("wev lines lock").len()
    }

    pub fn any(&self, pred: impl Fn(&str) -> bool) -> bool {
        self.lines
            .0
            .lock()
            .expect("wev lines lock")
            .iter()
            .any(|l| pred(l))
    }
}
