//! The state directory (default `~/.local/share/punktfunk`, `--state-dir` to change it).
//!
//! ```text
//! <state>/
//!   host-key.pem      RSA-2048 private key, PKCS#8 (0600)   } generated together on first start;
//!   host-cert.pem     self-signed certificate               } Moonlight pins the certificate
//!   uniqueid          16 hex digits, the host's stable GameStream id
//!   clients.json      paired clients (gamestream::clients), clients.json.bak = previous version
//!   settings.json     optional, written by the user: hostname, ports, apps (see `Settings`)
//!   api-token         bearer token of the management API (0600)
//!   run.json          while `serve` runs: its pid and management address, for the CLI
//!   lock              held (flock) by the running `serve`
//! ```
//!
//! Every write is atomic: a temporary file in the same directory (`.NAME.tmpPID`), `fsync`,
//! `rename` over the target, `fsync` of the directory. A reader sees the old file or the new
//! one, never a torn one, even after a crash or power loss. Before `clients.json` is replaced,
//! its current version (which must parse) is copied to `clients.json.bak` the same way. A
//! crash between writing the temporary file and the rename leaves that temporary file behind:
//! [`StateDir::lock`] removes such leftovers (and logs each) once it holds the directory, when
//! no other writer can be mid-write.
//!
//! The directory is private (0700): [`StateDir::open`] creates it so, tightens an existing
//! directory whose mode lets group or others in (logging the old mode), and refuses one owned
//! by another user ([`StateError::NotOurs`]) rather than use or change someone else's files.
//!
//! Damaged state is never papered over: a file that does not parse is a
//! [`StateError::Corrupt`] naming the file, the problem and the backup, and nothing is
//! overwritten until the user has fixed or moved it. In particular an unreadable
//! `clients.json` is not replaced by an empty list (which would unpair every client), and a
//! host key without its certificate is not silently regenerated while clients are paired.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::{
    DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _, PermissionsExt as _,
};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::gamestream::clients::{Clients, ClientsError};
use crate::gamestream::identity::{HostIdentity, IdentityError};
use crate::gamestream::nvhttp::{App, DESKTOP_APP_ID, desktop};
use crate::gamestream::query::hex_lower;

const KEY_FILE: &str = "host-key.pem";
const CERT_FILE: &str = "host-cert.pem";
const UNIQUEID_FILE: &str = "uniqueid";
const CLIENTS_FILE: &str = "clients.json";
const CLIENTS_BACKUP: &str = "clients.json.bak";
const SETTINGS_FILE: &str = "settings.json";
const TOKEN_FILE: &str = "api-token";
const RUNTIME_FILE: &str = "run.json";
const LOCK_FILE: &str = "lock";

/// Why the state directory could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StateError {
    /// OS I/O failed.
    #[error("{}: cannot {op}: {source}", .path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done ("read", "write", …).
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// A state file exists but is damaged; nothing was overwritten.
    #[error("{}: {reason}. Nothing was changed. {hint}", .path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
        /// What the user can do.
        hint: String,
    },
    /// Half of the host identity is missing while clients are paired with it.
    #[error("{}: {missing} is missing but {present} exists and clients are paired; \
             restore {missing} from a backup, or remove {present} (and clients.json) to \
             start over, after which every client must pair again", .dir.display())]
    IncompleteIdentity {
        /// The state directory.
        dir: PathBuf,
        /// The file that exists.
        present: &'static str,
        /// The file that is missing.
        missing: &'static str,
    },
    /// The key or certificate does not load.
    #[error("{}: {source}", .dir.display())]
    Identity {
        /// The state directory.
        dir: PathBuf,
        /// Why.
        source: IdentityError,
    },
    /// Another `punktfunk serve` holds the state directory.
    #[error("{}: another punktfunk serve is using this state directory", .path.display())]
    Locked {
        /// The lock file.
        path: PathBuf,
    },
    /// No home directory to put the default state directory in.
    #[error("cannot find the default state directory: set HOME or pass --state-dir")]
    NoHome,
    /// The state directory belongs to another user: it is neither used nor changed.
    #[error("{}: the state directory is owned by uid {owner}, but punktfunk runs as uid {uid}; \
             pass a --state-dir of your own, or `chown -R {uid}` it if it really is yours",
             .path.display())]
    NotOurs {
        /// The directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// The effective uid of this process.
        uid: u32,
    },
    /// The state directory path exists but is not a directory.
    #[error("{}: exists and is not a directory", .path.display())]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
}

/// What to do with an existing state directory, from its owner and mode and our uid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirVerdict {
    /// Ours and private: use it.
    Use,
    /// Ours, but group or others have access: set it to 0700 (the old mode is given).
    Tighten(u32),
    /// Someone else's: refuse.
    NotOurs,
}

/// Decides about an existing state directory. `mode` is `st_mode & 0o7777`. Root may use only
/// root's directories too: a state directory is one user's, and silently taking over another
/// user's (their host key, their paired clients) is exactly what must not happen.
pub fn dir_verdict(owner: u32, mode: u32, euid: u32) -> DirVerdict {
    if owner != euid {
        DirVerdict::NotOurs
    } else if mode & 0o077 != 0 {
        DirVerdict::Tighten(mode)
    } else {
        DirVerdict::Use
    }
}

/// The effective uid of this process, from `/proc/self/status` (`Uid:` real, effective, …);
/// `None` if that cannot be read (then the owner check is skipped, the mode still fixed).
fn effective_uid() -> Option<u32> {
    let status = fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("Uid:"))?;
    line.split_whitespace().nth(2)?.parse().ok()
}

/// Whether `name` is a temporary file [`write_atomic`] makes: `.NAME.tmpPID`.
fn is_temp_name(name: &str) -> bool {
    let Some(rest) = name.strip_prefix('.') else {
        return false;
    };
    match rest.rfind(".tmp") {
        Some(i) if i > 0 => {
            let pid = &rest[i + 4..];
            !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit())
        }
        _ => false,
    }
}

/// One configured app (besides the desktop, which is always app 1).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    /// Its id; by default 2, 3, … in order. Must be unique and not 1.
    #[serde(default)]
    pub id: Option<u32>,
    /// Title shown in Moonlight.
    pub title: String,
    /// Command to start it (argv), for the session manager. Empty: nothing to start.
    #[serde(default)]
    pub command: Vec<String>,
    /// Whether it supports HDR.
    #[serde(default)]
    pub hdr: bool,
}

/// `settings.json`: every key optional; command-line flags win.
///
/// ```json
/// { "hostname": "den-pc", "base_port": 47989, "management_addr": "127.0.0.1:47990",
///   "pin_timeout_secs": 120,
///   "apps": [ { "title": "Steam Big Picture", "command": ["steam", "-gamepadui"] } ] }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Name shown in Moonlight (default: the system host name).
    #[serde(default)]
    pub hostname: Option<String>,
    /// Base port (default 47989).
    #[serde(default)]
    pub base_port: Option<u16>,
    /// Management API address (default 127.0.0.1:base+1).
    #[serde(default)]
    pub management_addr: Option<SocketAddr>,
    /// How long a client waits for the PIN, and how long a PIN armed with `punktfunk pin`
    /// stays valid (default 120 s).
    #[serde(default)]
    pub pin_timeout_secs: Option<u64>,
    /// Apps besides the desktop.
    #[serde(default)]
    pub apps: Vec<AppConfig>,
}

impl Settings {
    /// The app list: the desktop, then the configured apps with their ids.
    pub fn app_list(&self) -> Result<Vec<App>, String> {
        Ok(self
            .numbered_apps()?
            .into_iter()
            .map(|(app, _)| app)
            .collect())
    }

    /// The command of every configured app with one, by app id (the desktop has none).
    pub fn app_commands(&self) -> Result<std::collections::HashMap<u32, Vec<String>>, String> {
        Ok(self
            .numbered_apps()?
            .into_iter()
            .filter(|(_, command)| !command.is_empty())
            .map(|(app, command)| (app.id, command))
            .collect())
    }

    /// The apps with their ids (the desktop first) and commands.
    fn numbered_apps(&self) -> Result<Vec<(App, Vec<String>)>, String> {
        let mut apps = vec![(desktop(), Vec::new())];
        let mut next = DESKTOP_APP_ID + 1;
        for a in &self.apps {
            let id = a.id.unwrap_or(next);
            if id == 0 || apps.iter().any(|(x, _)| x.id == id) {
                return Err(format!("app \"{}\": id {id} is 0 or already used", a.title));
            }
            if a.title.trim().is_empty() {
                return Err("an app has an empty title".into());
            }
            next = next.max(id.saturating_add(1));
            apps.push((
                App {
                    id,
                    title: a.title.clone(),
                    hdr: a.hdr,
                },
                a.command.clone(),
            ));
        }
        Ok(apps)
    }
}

/// What a running `serve` publishes for the CLI (`run.json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Runtime {
    /// Process id.
    pub pid: u32,
    /// Management API address.
    pub management_addr: SocketAddr,
    /// nvhttp plain HTTP port.
    pub http_port: u16,
    /// nvhttp HTTPS port.
    pub https_port: u16,
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory),
/// creating it with `mode` permissions.
pub fn write_atomic(path: &Path, bytes: &[u8], mode: u32) -> Result<(), StateError> {
    let io_err = |op, source| StateError::Io {
        path: path.to_owned(),
        op,
        source,
    };
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        drop(f);
        fs::rename(&tmp, path)?;
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| io_err("write", e))
}

/// Reads a file; `Ok(None)` if it does not exist.
pub(crate) fn read_optional(path: &Path) -> Result<Option<String>, StateError> {
    match fs::read(path) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|_| StateError::Corrupt {
                path: path.to_owned(),
                reason: "not UTF-8 text".into(),
                hint: "Restore it from a backup or move it away.".into(),
            }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(StateError::Io {
            path: path.to_owned(),
            op: "read",
            source,
        }),
    }
}

/// Random bytes from the OS.
pub fn os_random<const N: usize>() -> Result<[u8; N], StateError> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|e| StateError::Io {
        path: PathBuf::from("getrandom"),
        op: "draw random bytes",
        source: io::Error::other(e.to_string()),
    })?;
    Ok(b)
}

/// An open state directory.
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// The exclusive hold of a running `serve` on its state directory; released on drop.
#[derive(Debug)]
pub struct StateLock {
    _file: File,
}

impl StateDir {
    /// `$XDG_DATA_HOME/punktfunk`, else `~/.local/share/punktfunk`.
    pub fn default_path() -> Result<PathBuf, StateError> {
        if let Some(xdg) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
            return Ok(PathBuf::from(xdg).join("punktfunk"));
        }
        let home = std::env::var_os("HOME")
            .filter(|v| !v.is_empty())
            .ok_or(StateError::NoHome)?;
        Ok(PathBuf::from(home).join(".local/share/punktfunk"))
    }

    /// Opens (creating with mode 0700 if needed) the state directory at `root`. An existing
    /// directory of ours that group or others can enter is set to 0700 (logged); one owned
    /// by another user is refused with [`StateError::NotOurs`].
    pub fn open(root: impl Into<PathBuf>) -> Result<Self, StateError> {
        Self::open_as(root.into(), effective_uid())
    }

    /// [`StateDir::open`] for a process with effective uid `euid` (`None`: unknown, skip
    /// the owner check).
    fn open_as(root: PathBuf, euid: Option<u32>) -> Result<Self, StateError> {
        let io_err = |op, source| StateError::Io {
            path: root.clone(),
            op,
            source,
        };
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)
            .map_err(|e| io_err("create directory", e))?;
        let meta = fs::metadata(&root).map_err(|e| io_err("inspect", e))?;
        if !meta.is_dir() {
            return Err(StateError::NotADirectory { path: root });
        }
        let mode = meta.mode() & 0o7777;
        // Without /proc the owner cannot be compared; the directory is then taken as ours.
        let euid = euid.unwrap_or(meta.uid());
        match dir_verdict(meta.uid(), mode, euid) {
            DirVerdict::Use => {}
            DirVerdict::NotOurs => {
                return Err(StateError::NotOurs {
                    path: root,
                    owner: meta.uid(),
                    uid: euid,
                });
            }
            DirVerdict::Tighten(old) => {
                fs::set_permissions(&root, fs::Permissions::from_mode(0o700))
                    .map_err(|e| io_err("set mode 0700 on", e))?;
                tracing::warn!(
                    dir = %root.display(),
                    "the state directory had mode {old:04o}; set it to 0700 (it holds the host key \
                     and the paired clients)"
                );
            }
        }
        Ok(Self { root })
    }

    /// Opens `root` without creating it (the CLI, which only reads).
    pub fn existing(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.root
    }

    fn file(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    /// Takes the directory for one `serve`.
    pub fn lock(&self) -> Result<StateLock, StateError> {
        let path = self.file(LOCK_FILE);
        let file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&path)
            .map_err(|source| StateError::Io {
                path: path.clone(),
                op: "open",
                source,
            })?;
        match file.try_lock() {
            Ok(()) => {
                self.remove_stale_temp_files();
                Ok(StateLock { _file: file })
            }
            Err(fs::TryLockError::WouldBlock) => Err(StateError::Locked { path }),
            Err(fs::TryLockError::Error(source)) => Err(StateError::Io {
                path,
                op: "lock",
                source,
            }),
        }
    }

    /// Removes the temporary files a crash between write and rename left behind. Only the
    /// holder of the lock writes, so none of them is in use. Returns the names removed.
    fn remove_stale_temp_files(&self) -> Vec<String> {
        let mut removed = Vec::new();
        let Ok(entries) = fs::read_dir(&self.root) else {
            return removed;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if !is_temp_name(&name) || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::warn!(
                        dir = %self.root.display(),
                        file = %name,
                        "removed a temporary file left by an interrupted write"
                    );
                    removed.push(name);
                }
                Err(e) => {
                    tracing::warn!(file = %name, error = %e, "cannot remove a stale temporary file")
                }
            }
        }
        removed
    }

    /// Loads the host identity, generating it on first start.
    pub fn load_or_create_identity(&self) -> Result<HostIdentity, StateError> {
        let key = read_optional(&self.file(KEY_FILE))?;
        let cert = read_optional(&self.file(CERT_FILE))?;
        let identity_err = |source| StateError::Identity {
            dir: self.root.clone(),
            source,
        };
        match (key, cert) {
            (Some(key), Some(cert)) => HostIdentity::from_pem(&cert, &key).map_err(identity_err),
            (key, cert) => {
                if key.is_some() || cert.is_some() {
                    let (present, missing) = if key.is_some() {
                        (KEY_FILE, CERT_FILE)
                    } else {
                        (CERT_FILE, KEY_FILE)
                    };
                    if !self.load_clients()?.is_empty() {
                        return Err(StateError::IncompleteIdentity {
                            dir: self.root.clone(),
                            present,
                            missing,
                        });
                    }
                    tracing::warn!(
                        dir = %self.root.display(),
                        "{missing} is missing and no client is paired: making a new host identity"
                    );
                }
                tracing::info!(dir = %self.root.display(), "generating the host's RSA-2048 key and certificate");
                let generated = HostIdentity::generate(os_random::<32>()?).map_err(identity_err)?;
                write_atomic(&self.file(KEY_FILE), generated.key_pem.as_bytes(), 0o600)?;
                write_atomic(&self.file(CERT_FILE), generated.cert_pem.as_bytes(), 0o644)?;
                HostIdentity::from_pem(&generated.cert_pem, &generated.key_pem)
                    .map_err(identity_err)
            }
        }
    }

    /// Loads the host's `uniqueid`, making one (16 random hex digits) on first start.
    pub fn load_or_create_uniqueid(&self) -> Result<String, StateError> {
        let path = self.file(UNIQUEID_FILE);
        match read_optional(&path)? {
            Some(text) => {
                let id = text.trim();
                if id.len() == 16 && id.bytes().all(|b| b.is_ascii_hexdigit()) {
                    Ok(id.to_owned())
                } else {
                    Err(StateError::Corrupt {
                        path,
                        reason: "expected 16 hex digits".into(),
                        hint: "Restore it from a backup (Moonlight knows the host by this id), \
                               or delete it to make a new one."
                            .into(),
                    })
                }
            }
            None => {
                let id = hex_lower(&os_random::<8>()?);
                write_atomic(&path, format!("{id}\n").as_bytes(), 0o644)?;
                Ok(id)
            }
        }
    }

    /// Loads the paired clients (none if the file does not exist).
    pub fn load_clients(&self) -> Result<Clients, StateError> {
        let path = self.file(CLIENTS_FILE);
        match read_optional(&path)? {
            None => Ok(Clients::default()),
            Some(text) => Clients::from_json(&text).map_err(|e| self.corrupt_clients(path, &e)),
        }
    }

    fn corrupt_clients(&self, path: PathBuf, e: &ClientsError) -> StateError {
        let backup = self.file(CLIENTS_BACKUP);
        let hint = if backup.exists() {
            format!(
                "The previous version is in {}: inspect it and move it over {}, or move {} \
                 away to start with no paired clients.",
                backup.display(),
                path.display(),
                path.display()
            )
        } else {
            format!(
                "Fix it, or move it away to start with no paired clients (every client must \
                 then pair again). No backup exists yet ({}).",
                backup.display()
            )
        };
        StateError::Corrupt {
            path,
            reason: e.to_string(),
            hint,
        }
    }

    /// Writes the paired clients, keeping the current file as `clients.json.bak`. Refuses if
    /// the current file does not parse.
    pub fn save_clients(&self, clients: &Clients) -> Result<(), StateError> {
        let path = self.file(CLIENTS_FILE);
        if let Some(current) = read_optional(&path)? {
            if let Err(e) = Clients::from_json(&current) {
                return Err(self.corrupt_clients(path, &e));
            }
            write_atomic(&self.file(CLIENTS_BACKUP), current.as_bytes(), 0o600)?;
        }
        write_atomic(&path, clients.to_json().as_bytes(), 0o600)
    }

    /// Loads `settings.json` (defaults if it does not exist).
    pub fn load_settings(&self) -> Result<Settings, StateError> {
        let path = self.file(SETTINGS_FILE);
        let Some(text) = read_optional(&path)? else {
            return Ok(Settings::default());
        };
        let settings: Settings = serde_json::from_str(&text).map_err(|e| StateError::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
            hint: "Fix the file (keys: hostname, base_port, management_addr, \
                       pin_timeout_secs, apps)."
                .into(),
        })?;
        settings.app_list().map_err(|reason| StateError::Corrupt {
            path,
            reason,
            hint: "Fix the apps list.".into(),
        })?;
        Ok(settings)
    }

    /// The management API token, made on first use.
    pub fn load_or_create_api_token(&self) -> Result<String, StateError> {
        if let Some(t) = self.read_api_token()? {
            return Ok(t);
        }
        let token = hex_lower(&os_random::<24>()?);
        write_atomic(
            &self.file(TOKEN_FILE),
            format!("{token}\n").as_bytes(),
            0o600,
        )?;
        Ok(token)
    }

    /// The management API token, if `serve` has made one.
    pub fn read_api_token(&self) -> Result<Option<String>, StateError> {
        let path = self.file(TOKEN_FILE);
        Ok(read_optional(&path)?
            .map(|t| t.trim().to_owned())
            .filter(|t| !t.is_empty()))
    }

    /// Publishes `run.json`.
    pub fn write_runtime(&self, rt: &Runtime) -> Result<(), StateError> {
        let text = serde_json::to_string_pretty(rt).unwrap_or_default();
        write_atomic(&self.file(RUNTIME_FILE), text.as_bytes(), 0o644)
    }

    /// Reads `run.json`, if a `serve` wrote one (it may be stale).
    pub fn read_runtime(&self) -> Option<Runtime> {
        let text = read_optional(&self.file(RUNTIME_FILE)).ok()??;
        serde_json::from_str(&text).ok()
    }

    /// Removes `run.json`.
    pub fn remove_runtime(&self) {
        let _ = fs::remove_file(self.file(RUNTIME_FILE));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::cert::Certificate;
    use crate::gamestream::cert::tests::CLIENT_CERT_PEM;
    use crate::gamestream::identity::tests::{HOST_CERT_PEM, HOST_KEY_PEM};
    use crate::gamestream::pairing::{Paired, Ticket};

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "punktfunk-state-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = fs::remove_dir_all(&p);
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn one_client() -> Clients {
        let mut c = Clients::default();
        c.add(
            &Paired {
                ticket: Ticket(1),
                cert: Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap(),
                name: "TV".into(),
                uniqueid: "U".into(),
            },
            1,
        );
        c
    }

    fn with_fixture_identity(dir: &StateDir) {
        fs::write(dir.file(KEY_FILE), HOST_KEY_PEM).unwrap();
        fs::write(dir.file(CERT_FILE), HOST_CERT_PEM).unwrap();
    }

    #[test]
    fn atomic_write_replaces_whole_files_and_leaves_no_temp() {
        let t = TempDir::new("atomic");
        let dir = StateDir::open(&t.0).unwrap();
        let path = dir.file("x");
        write_atomic(&path, b"first", 0o600).unwrap();
        write_atomic(&path, b"second", 0o600).unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"second");
        let names: Vec<_> = fs::read_dir(&t.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["x"]);
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        // A failed write (target is a directory) leaves the old state and no temp file.
        fs::create_dir(dir.file("d")).unwrap();
        assert!(write_atomic(&dir.file("d"), b"x", 0o600).is_err());
        assert_eq!(fs::read_dir(&t.0).unwrap().count(), 2);
    }

    #[test]
    fn identity_and_uniqueid_are_made_once() {
        let t = TempDir::new("identity");
        let dir = StateDir::open(&t.0).unwrap();
        let id = dir.load_or_create_identity().unwrap();
        let again = dir.load_or_create_identity().unwrap();
        assert_eq!(id.cert_pem(), again.cert_pem());
        let u = dir.load_or_create_uniqueid().unwrap();
        assert_eq!(u.len(), 16);
        assert_eq!(dir.load_or_create_uniqueid().unwrap(), u);
        fs::write(dir.file(UNIQUEID_FILE), "xyz").unwrap();
        assert!(matches!(
            dir.load_or_create_uniqueid(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn half_an_identity_is_refused_while_clients_are_paired() {
        let t = TempDir::new("half");
        let dir = StateDir::open(&t.0).unwrap();
        with_fixture_identity(&dir);
        dir.save_clients(&one_client()).unwrap();
        fs::remove_file(dir.file(CERT_FILE)).unwrap();
        let err = dir.load_or_create_identity().unwrap_err();
        assert!(
            matches!(err, StateError::IncompleteIdentity { .. }),
            "{err}"
        );
        // The key was not touched.
        assert_eq!(
            fs::read_to_string(dir.file(KEY_FILE)).unwrap(),
            HOST_KEY_PEM
        );
        // Mismatched halves are refused too.
        fs::write(dir.file(CERT_FILE), CLIENT_CERT_PEM).unwrap();
        assert!(matches!(
            dir.load_or_create_identity(),
            Err(StateError::Identity { .. })
        ));
    }

    #[test]
    fn clients_round_trip_with_backup() {
        let t = TempDir::new("clients");
        let dir = StateDir::open(&t.0).unwrap();
        assert!(dir.load_clients().unwrap().is_empty());
        let c = one_client();
        dir.save_clients(&c).unwrap();
        assert!(!dir.file(CLIENTS_BACKUP).exists());
        dir.save_clients(&Clients::default()).unwrap();
        // The backup holds the previous version.
        let bak =
            Clients::from_json(&fs::read_to_string(dir.file(CLIENTS_BACKUP)).unwrap()).unwrap();
        assert_eq!(bak.len(), 1);
        assert!(dir.load_clients().unwrap().is_empty());
    }

    #[test]
    fn corrupt_clients_are_never_overwritten() {
        let t = TempDir::new("corrupt");
        let dir = StateDir::open(&t.0).unwrap();
        dir.save_clients(&one_client()).unwrap();
        dir.save_clients(&one_client()).unwrap();
        // Simulate damage (a torn write by another tool, a bad edit).
        fs::write(dir.file(CLIENTS_FILE), "{\"version\": 1, \"clients\": [").unwrap();
        let err = dir.load_clients().unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("clients.json") && text.contains("clients.json.bak"),
            "{text}"
        );
        // Saving refuses to replace the damaged file, and the backup is untouched.
        assert!(matches!(
            dir.save_clients(&Clients::default()),
            Err(StateError::Corrupt { .. })
        ));
        assert_eq!(
            fs::read_to_string(dir.file(CLIENTS_FILE)).unwrap(),
            "{\"version\": 1, \"clients\": ["
        );
        assert_eq!(
            Clients::from_json(&fs::read_to_string(dir.file(CLIENTS_BACKUP)).unwrap())
                .unwrap()
                .len(),
            1
        );
        // Empty and binary files are corrupt too.
        fs::write(dir.file(CLIENTS_FILE), "").unwrap();
        assert!(dir.load_clients().is_err());
        fs::write(dir.file(CLIENTS_FILE), [0xff, 0xfe]).unwrap();
        assert!(dir.load_clients().is_err());
    }

    #[test]
    fn settings_and_apps() {
        let t = TempDir::new("settings");
        let dir = StateDir::open(&t.0).unwrap();
        assert_eq!(dir.load_settings().unwrap(), Settings::default());
        fs::write(
            dir.file(SETTINGS_FILE),
            r#"{"hostname":"den","apps":[{"title":"Steam","command":["steam"]},{"id":9,"title":"Emu"},{"title":"Next"}]}"#,
        )
        .unwrap();
        let s = dir.load_settings().unwrap();
        let ids: Vec<u32> = s.app_list().unwrap().iter().map(|a| a.id).collect();
        assert_eq!(ids, [1, 2, 9, 10]);
        fs::write(dir.file(SETTINGS_FILE), r#"{"hostnme":"typo"}"#).unwrap();
        assert!(matches!(
            dir.load_settings(),
            Err(StateError::Corrupt { .. })
        ));
        fs::write(
            dir.file(SETTINGS_FILE),
            r#"{"apps":[{"id":1,"title":"Clash"}]}"#,
        )
        .unwrap();
        assert!(matches!(
            dir.load_settings(),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_open_state_dir_is_made_private() {
        let t = TempDir::new("mode");
        fs::DirBuilder::new().mode(0o755).create(&t.0).unwrap();
        fs::set_permissions(&t.0, fs::Permissions::from_mode(0o755)).unwrap();
        StateDir::open(&t.0).unwrap();
        assert_eq!(fs::metadata(&t.0).unwrap().mode() & 0o7777, 0o700);
        // A new one is made private too, parents included only as far as we create them.
        let inner = t.0.join("a/b");
        StateDir::open(&inner).unwrap();
        assert_eq!(fs::metadata(&inner).unwrap().mode() & 0o7777, 0o700);
        // A file where the directory should be is refused.
        fs::write(t.0.join("f"), "x").unwrap();
        let err = StateDir::open(t.0.join("f")).unwrap_err();
        assert!(err.to_string().contains("/f"), "{err}");
    }

    #[test]
    fn dir_verdicts() {
        assert_eq!(dir_verdict(1000, 0o700, 1000), DirVerdict::Use);
        assert_eq!(dir_verdict(1000, 0o755, 1000), DirVerdict::Tighten(0o755));
        assert_eq!(dir_verdict(1000, 0o710, 1000), DirVerdict::Tighten(0o710));
        assert_eq!(dir_verdict(1000, 0o701, 1000), DirVerdict::Tighten(0o701));
        assert_eq!(dir_verdict(1000, 0o700, 1001), DirVerdict::NotOurs);
        // Root does not take over a user's directory either.
        assert_eq!(dir_verdict(1000, 0o700, 0), DirVerdict::NotOurs);
        assert_eq!(effective_uid(), effective_uid());
        assert!(
            effective_uid().is_some(),
            "/proc/self/status has a Uid line"
        );
    }

    #[test]
    fn another_users_state_dir_is_refused_and_left_alone() {
        let t = TempDir::new("owner");
        fs::DirBuilder::new().mode(0o755).create(&t.0).unwrap();
        let owner = fs::metadata(&t.0).unwrap().uid();
        // Opened by a process running as another uid (no chown needed, so no root).
        let other = owner.wrapping_add(1);
        let err = StateDir::open_as(t.0.clone(), Some(other)).unwrap_err();
        assert!(
            matches!(err, StateError::NotOurs { owner: o, uid: u, .. } if o == owner && u == other),
            "{err}"
        );
        assert!(
            err.to_string().contains(&format!("owned by uid {owner}")),
            "{err}"
        );
        // Its mode was not touched.
        assert_eq!(fs::metadata(&t.0).unwrap().mode() & 0o7777, 0o755);
    }

    #[test]
    fn temp_files_left_by_a_crash_are_removed_under_the_lock() {
        let t = TempDir::new("stale");
        let dir = StateDir::open(&t.0).unwrap();
        dir.save_clients(&one_client()).unwrap();
        // What a kill between write and rename leaves: a temp file named as write_atomic
        // names them, here half a clients.json.
        fs::write(dir.file(".clients.json.tmp4242"), "{\"version\": 1, \"cli").unwrap();
        fs::write(dir.file(".api-token.tmp7"), "half").unwrap();
        // Not ours to remove: other dot files and names that only look similar.
        for keep in [".hidden", ".x.tmp", "y.tmp12", ".z.tmp12a"] {
            fs::write(dir.file(keep), "keep").unwrap();
        }
        let lock = dir.lock().unwrap();
        let mut names: Vec<_> = fs::read_dir(&t.0)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                ".hidden",
                ".x.tmp",
                ".z.tmp12a",
                "clients.json",
                "lock",
                "y.tmp12"
            ]
        );
        assert_eq!(dir.load_clients().unwrap().len(), 1);
        drop(lock);
        assert!(is_temp_name(".clients.json.tmp1"));
        assert!(!is_temp_name(".tmp1"));
    }

    #[test]
    fn lock_token_runtime() {
        let t = TempDir::new("lock");
        let dir = StateDir::open(&t.0).unwrap();
        let held = dir.lock().unwrap();
        assert!(matches!(dir.lock(), Err(StateError::Locked { .. })));
        drop(held);
        dir.lock().unwrap();
        let tok = dir.load_or_create_api_token().unwrap();
        assert_eq!(dir.load_or_create_api_token().unwrap(), tok);
        assert_eq!(dir.read_api_token().unwrap().unwrap(), tok);
        let rt = Runtime {
            pid: 1,
            management_addr: "127.0.0.1:1".parse().unwrap(),
            http_port: 2,
            https_port: 3,
        };
        dir.write_runtime(&rt).unwrap();
        assert_eq!(dir.read_runtime().unwrap(), rt);
        dir.remove_runtime();
        assert_eq!(dir.read_runtime(), None);
    }
}
