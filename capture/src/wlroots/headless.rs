//! A private headless sway (act): started for benches and tools on machines without a desktop,
//! the way the tests start one (docs/capture.md, "Virtual displays: sway"): pixman rendering,
//! no input devices, no config, its own `XDG_RUNTIME_DIR`; as `nobody` when this process is
//! root (sway refuses root). Killed, and its directory removed, on drop.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::ipc::SwayIpc;

/// uid/gid sway runs as when this process is root.
pub const NOBODY: u32 = 65534;

/// A running headless sway (see the module docs).
#[derive(Debug)]
pub struct HeadlessSway {
    child: Child,
    dir: PathBuf,
    ipc: PathBuf,
    wayland: PathBuf,
}

/// Why a headless sway could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HeadlessError {
    /// `sway` (or `setpriv` when root) is not on `$PATH`.
    #[error("{0} is not installed")]
    Missing(&'static str),
    /// Starting it failed.
    #[error("starting sway: {0}")]
    Io(#[from] std::io::Error),
    /// It exited or did not answer in time; its log.
    #[error("sway did not come up: {0}")]
    NotReady(String),
}

fn in_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

impl HeadlessSway {
    /// Starts sway and waits (≤ 15 s) until its IPC answers.
    pub fn start() -> Result<Self, HeadlessError> {
        let sway = in_path("sway").ok_or(HeadlessError::Missing("sway"))?;
        let root = std::fs::metadata("/proc/self")
            .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
            .unwrap_or(false);
        let base = if root {
            PathBuf::from("/tmp") // reachable by nobody, whatever TMPDIR says
        } else {
            std::env::temp_dir()
        };
        let dir = base.join(format!(
            "pf-headless-sway-{}-{}",
            std::process::id(),
            next_seq()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir)?;
        let mut cmd = if root {
            let setpriv = in_path("setpriv").ok_or(HeadlessError::Missing("setpriv"))?;
            std::os::unix::fs::chown(&dir, Some(NOBODY), Some(NOBODY))?;
            let mut c = Command::new(setpriv);
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
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
        let log = std::fs::File::create(dir.with_extension("log"))?;
        let child = cmd
            .args(["-c", "/dev/null"])
            .env_clear()
            .env("PATH", std::env::var_os("PATH").unwrap_or_default())
            .env("HOME", &dir)
            .env("XDG_RUNTIME_DIR", &dir)
            .env("WLR_BACKENDS", "headless")
            .env("WLR_RENDERER", "pixman")
            .env("WLR_LIBINPUT_NO_DEVICES", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .current_dir("/")
            .spawn()?;
        let mut this = Self {
            child,
            wayland: dir.join("wayland-1"),
            ipc: PathBuf::new(),
            dir,
        };
        this.wait_ready()?;
        Ok(this)
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.with_extension("log")).unwrap_or_default()
    }

    fn wait_ready(&mut self) -> Result<(), HeadlessError> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(HeadlessError::NotReady(format!(
                    "exited ({status}): {}",
                    self.log()
                )));
            }
            let ipc = std::fs::read_dir(&self.dir).ok().and_then(|entries| {
                entries.filter_map(Result::ok).map(|e| e.path()).find(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with("sway-ipc.") && n.ends_with(".sock"))
                })
            });
            if let Some(ipc) = ipc
                && self.wayland.exists()
                && SwayIpc::connect(&ipc, Duration::from_secs(2))
                    .and_then(|mut c| c.outputs())
                    .is_ok()
            {
                self.ipc = ipc;
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HeadlessError::NotReady(format!(
                    "no IPC answer in 15 s: {}",
                    self.log()
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The IPC socket (what `$SWAYSOCK` would name).
    pub fn ipc_socket(&self) -> &Path {
        &self.ipc
    }

    /// The Wayland socket.
    pub fn wayland_socket(&self) -> &Path {
        &self.wayland
    }
}

impl Drop for HeadlessSway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
        let _ = std::fs::remove_file(self.dir.with_extension("log"));
    }
}

/// Numbers the sways this process starts (with the pid, a unique directory name).
fn next_seq() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static SEQ: AtomicU64 = AtomicU64::new(0);
    SEQ.fetch_add(1, Ordering::Relaxed)
}
