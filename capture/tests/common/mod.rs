//! Shared by the tests that start a real sway (`virtual_sway`, `virtual_sway_input`): a
//! headless sway per test, run as `nobody` under root (sway refuses root), with its own
//! XDG_RUNTIME_DIR; Wayland clients started as the same user; the skip helper.
//! docs/capture.md, "Virtual displays: sway".

#![allow(dead_code, unreachable_pub)] // each including test uses a part

use std::os::unix::fs::PermissionsExt as _;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
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
