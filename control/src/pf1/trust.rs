//! punktfunk/1 identity and trust files in a state directory (act: files).
//!
//! ```text
//! <state>/
//!   pf1-host-cert.pem      host: self-signed ECDSA P-256 certificate  } made together on
//!   pf1-host-key.pem       host: its PKCS#8 key (0600)                } first start
//!   pf1-clients.json       host: paired client fingerprints (+ .bak, the previous version)
//!   pf1-client-cert.pem    client: its certificate                    } made on first
//!   pf1-client-key.pem     client: its key (0600)                     } connect
//!   pf1-known-hosts.json   client: host address → pinned fingerprint (+ .bak)
//! ```
//!
//! Writes reuse [`crate::host::state::write_atomic`] (temporary file, fsync, rename, fsync of
//! the directory), and a list is backed up before it is replaced, as the GameStream
//! `clients.json` is. A file that does not parse is a [`StateError::Corrupt`] and is never
//! overwritten: an unreadable list must not silently become an empty one.
//!
//! ```json
//! {"version":1,"clients":[{"fingerprint":"3f…","name":"living-room","paired_at":1700000000}]}
//! {"version":1,"hosts":[{"host":"den-pc:47900","fingerprint":"9a…","pinned_at":1700000000}]}
//! ```

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::tls::{Fingerprint, Identity};
use crate::host::state::{StateDir, StateError, read_optional, write_atomic};

/// The host's certificate file.
pub const HOST_CERT_FILE: &str = "pf1-host-cert.pem";
/// The host's key file.
pub const HOST_KEY_FILE: &str = "pf1-host-key.pem";
/// The host's paired clients.
pub const CLIENTS_FILE: &str = "pf1-clients.json";
/// The client's certificate file.
pub const CLIENT_CERT_FILE: &str = "pf1-client-cert.pem";
/// The client's key file.
pub const CLIENT_KEY_FILE: &str = "pf1-client-key.pem";
/// The client's pinned hosts.
pub const KNOWN_HOSTS_FILE: &str = "pf1-known-hosts.json";

const FORMAT_VERSION: u32 = 1;

/// Which identity a state directory holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `punktfunk serve`.
    Host,
    /// `punktfunk client`.
    Client,
}

impl Role {
    fn files(self) -> (&'static str, &'static str) {
        match self {
            Role::Host => (HOST_CERT_FILE, HOST_KEY_FILE),
            Role::Client => (CLIENT_CERT_FILE, CLIENT_KEY_FILE),
        }
    }
}

fn corrupt(path: PathBuf, reason: String, hint: &str) -> StateError {
    StateError::Corrupt {
        path,
        reason,
        hint: hint.to_owned(),
    }
}

/// Loads the punktfunk/1 identity of `role`, generating it on first use. Half an identity
/// (certificate without key or the reverse) is an error while anyone relies on it (paired
/// clients for a host, known hosts for a client): regenerating would silently break them.
pub fn load_or_create_identity(dir: &StateDir, role: Role) -> Result<Identity, StateError> {
    let (cert_file, key_file) = role.files();
    let cert_path = dir.path().join(cert_file);
    let key_path = dir.path().join(key_file);
    let cert = read_optional(&cert_path)?;
    let key = read_optional(&key_path)?;
    match (cert, key) {
        (Some(cert), Some(key)) => Identity::from_pem(&cert, &key).map_err(|e| {
            corrupt(
                cert_path,
                e.to_string(),
                "Restore the certificate and key from a backup, or move both away to make a \
                 new identity (peers must then pair or pin again).",
            )
        }),
        (cert, key) => {
            if cert.is_some() || key.is_some() {
                let (present, missing) = if cert.is_some() {
                    (cert_file, key_file)
                } else {
                    (key_file, cert_file)
                };
                let relied_on = match role {
                    Role::Host => !load_paired_clients(dir)?.clients.is_empty(),
                    Role::Client => false,
                };
                if relied_on {
                    return Err(StateError::IncompleteIdentity {
                        dir: dir.path().to_owned(),
                        present,
                        missing,
                    });
                }
                tracing::warn!(dir = %dir.path().display(), "{missing} is missing: making a new punktfunk/1 identity");
            }
            let (name, what) = match role {
                Role::Host => ("punktfunk host", "host"),
                Role::Client => ("punktfunk client", "client"),
            };
            let id = Identity::generate(name)
                .map_err(|e| corrupt(cert_path.clone(), e.to_string(), "Generation failed."))?;
            write_atomic(&key_path, id.key_pem().as_bytes(), 0o600)?;
            write_atomic(&cert_path, id.cert_pem().as_bytes(), 0o644)?;
            tracing::info!(fingerprint = %id.fingerprint(), "made the punktfunk/1 {what} identity");
            Ok(id)
        }
    }
}

/// One paired client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedClient {
    /// SHA-256 of its certificate, 64 hex digits.
    pub fingerprint: String,
    /// The name it gave when it paired.
    pub name: String,
    /// When it paired, seconds since the Unix epoch.
    pub paired_at: u64,
}

/// `pf1-clients.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PairedClients {
    /// Format version (1).
    pub version: u32,
    /// The clients.
    pub clients: Vec<PairedClient>,
}

impl Default for PairedClients {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            clients: Vec::new(),
        }
    }
}

impl PairedClients {
    /// Every paired fingerprint (entries that do not parse were refused at load).
    pub fn fingerprints(&self) -> Vec<Fingerprint> {
        self.clients
            .iter()
            .filter_map(|c| Fingerprint::from_hex(&c.fingerprint))
            .collect()
    }

    /// Adds or renames the client with `fp`.
    pub fn add(&mut self, fp: Fingerprint, name: &str, paired_at: u64) {
        let hex = fp.to_hex();
        self.clients.retain(|c| c.fingerprint != hex);
        self.clients.push(PairedClient {
            fingerprint: hex,
            name: name.to_owned(),
            paired_at,
        });
    }

    /// Removes the client whose fingerprint starts with `prefix` (at least 8 hex digits) or
    /// whose name is `prefix`; returns it. `None` if none or several match.
    pub fn remove(&mut self, prefix: &str) -> Option<PairedClient> {
        let p = prefix.to_ascii_lowercase();
        let matches: Vec<usize> = self
            .clients
            .iter()
            .enumerate()
            .filter(|(_, c)| (p.len() >= 8 && c.fingerprint.starts_with(&p)) || c.name == prefix)
            .map(|(i, _)| i)
            .collect();
        match matches[..] {
            [i] => Some(self.clients.remove(i)),
            _ => None,
        }
    }

    fn parse(text: &str) -> Result<Self, String> {
        let list: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if list.version != FORMAT_VERSION {
            return Err(format!("unsupported version {}", list.version));
        }
        if let Some(bad) = list
            .clients
            .iter()
            .find(|c| Fingerprint::from_hex(&c.fingerprint).is_none())
        {
            return Err(format!("bad fingerprint {:?}", bad.fingerprint));
        }
        Ok(list)
    }
}

/// One pinned host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownHost {
    /// The address as the user gave it (`name:port`).
    pub host: String,
    /// SHA-256 of its certificate, 64 hex digits.
    pub fingerprint: String,
    /// When it was pinned, seconds since the Unix epoch.
    pub pinned_at: u64,
}

/// `pf1-known-hosts.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KnownHosts {
    /// Format version (1).
    pub version: u32,
    /// The hosts.
    pub hosts: Vec<KnownHost>,
}

impl Default for KnownHosts {
    fn default() -> Self {
        Self {
            version: FORMAT_VERSION,
            hosts: Vec::new(),
        }
    }
}

impl KnownHosts {
    /// The fingerprint pinned for `host`.
    pub fn get(&self, host: &str) -> Option<Fingerprint> {
        self.hosts
            .iter()
            .find(|h| h.host == host)
            .and_then(|h| Fingerprint::from_hex(&h.fingerprint))
    }

    /// Pins (or re-pins) `host` to `fp`.
    pub fn pin(&mut self, host: &str, fp: Fingerprint, pinned_at: u64) {
        self.hosts.retain(|h| h.host != host);
        self.hosts.push(KnownHost {
            host: host.to_owned(),
            fingerprint: fp.to_hex(),
            pinned_at,
        });
    }

    /// Forgets `host`; returns whether it was pinned.
    pub fn forget(&mut self, host: &str) -> bool {
        let before = self.hosts.len();
        self.hosts.retain(|h| h.host != host);
        self.hosts.len() != before
    }

    fn parse(text: &str) -> Result<Self, String> {
        let list: Self = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if list.version != FORMAT_VERSION {
            return Err(format!("unsupported version {}", list.version));
        }
        if let Some(bad) = list
            .hosts
            .iter()
            .find(|h| Fingerprint::from_hex(&h.fingerprint).is_none())
        {
            return Err(format!("bad fingerprint {:?}", bad.fingerprint));
        }
        Ok(list)
    }
}

fn load_list<T: Default>(
    path: &Path,
    parse: fn(&str) -> Result<T, String>,
) -> Result<T, StateError> {
    match read_optional(path)? {
        None => Ok(T::default()),
        Some(text) => parse(&text).map_err(|reason| {
            corrupt(
                path.to_owned(),
                reason,
                "Fix it, restore the .bak next to it, or move it away to start empty.",
            )
        }),
    }
}

fn save_list<T: Serialize>(
    path: &Path,
    list: &T,
    parse_current: fn(&str) -> Result<(), String>,
) -> Result<(), StateError> {
    if let Some(current) = read_optional(path)? {
        if let Err(reason) = parse_current(&current) {
            return Err(corrupt(
                path.to_owned(),
                reason,
                "Refusing to replace a damaged file: fix it or move it away first.",
            ));
        }
        let mut bak = path.as_os_str().to_owned();
        bak.push(".bak");
        write_atomic(Path::new(&bak), current.as_bytes(), 0o600)?;
    }
    let text = serde_json::to_string_pretty(list).map_err(|e| {
        corrupt(
            path.to_owned(),
            e.to_string(),
            "Serialization failed; nothing was written.",
        )
    })?;
    write_atomic(path, format!("{text}\n").as_bytes(), 0o600)
}

/// Loads the host's paired clients (empty if the file does not exist).
pub fn load_paired_clients(dir: &StateDir) -> Result<PairedClients, StateError> {
    load_list(&dir.path().join(CLIENTS_FILE), PairedClients::parse)
}

/// Writes the host's paired clients atomically, keeping the previous version as `.bak`.
pub fn save_paired_clients(dir: &StateDir, list: &PairedClients) -> Result<(), StateError> {
    save_list(&dir.path().join(CLIENTS_FILE), list, |t| {
        PairedClients::parse(t).map(drop)
    })
}

/// Loads the client's pinned hosts (empty if the file does not exist).
pub fn load_known_hosts(dir: &StateDir) -> Result<KnownHosts, StateError> {
    load_list(&dir.path().join(KNOWN_HOSTS_FILE), KnownHosts::parse)
}

/// Writes the client's pinned hosts atomically, keeping the previous version as `.bak`.
pub fn save_known_hosts(dir: &StateDir, list: &KnownHosts) -> Result<(), StateError> {
    save_list(&dir.path().join(KNOWN_HOSTS_FILE), list, |t| {
        KnownHosts::parse(t).map(drop)
    })
}

/// Seconds since the Unix epoch (act layer: reads the wall clock).
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct TempDir(PathBuf);
    impl TempDir {
        fn new(tag: &str) -> Self {
            let p = std::env::temp_dir().join(format!(
                "punktfunk-pf1-trust-{tag}-{}-{:?}",
                std::process::id(),
                std::thread::current().id()
            ));
            let _ = std::fs::remove_dir_all(&p);
            Self(p)
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn identities_are_made_once_per_role() {
        let t = TempDir::new("id");
        let dir = StateDir::open(&t.0).unwrap();
        let host = load_or_create_identity(&dir, Role::Host).unwrap();
        let again = load_or_create_identity(&dir, Role::Host).unwrap();
        assert_eq!(host.fingerprint(), again.fingerprint());
        let client = load_or_create_identity(&dir, Role::Client).unwrap();
        assert_ne!(client.fingerprint(), host.fingerprint());
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(t.0.join(HOST_KEY_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        // Half a host identity while clients are paired is refused, and nothing is touched.
        let mut list = PairedClients::default();
        list.add(client.fingerprint(), "tv", 1);
        save_paired_clients(&dir, &list).unwrap();
        std::fs::remove_file(t.0.join(HOST_CERT_FILE)).unwrap();
        assert!(matches!(
            load_or_create_identity(&dir, Role::Host),
            Err(StateError::IncompleteIdentity { .. })
        ));
        assert!(t.0.join(HOST_KEY_FILE).exists());
        // A damaged certificate is corrupt, not regenerated.
        std::fs::write(t.0.join(CLIENT_CERT_FILE), "junk").unwrap();
        assert!(matches!(
            load_or_create_identity(&dir, Role::Client),
            Err(StateError::Corrupt { .. })
        ));
    }

    #[test]
    fn paired_clients_round_trip_with_backup_and_refuse_damage() {
        let t = TempDir::new("clients");
        let dir = StateDir::open(&t.0).unwrap();
        assert!(load_paired_clients(&dir).unwrap().clients.is_empty());
        let fp = Fingerprint([0xab; 32]);
        let mut list = PairedClients::default();
        list.add(fp, "tv", 7);
        list.add(fp, "tv2", 8);
        assert_eq!(list.clients.len(), 1);
        save_paired_clients(&dir, &list).unwrap();
        save_paired_clients(&dir, &PairedClients::default()).unwrap();
        assert!(t.0.join("pf1-clients.json.bak").exists());
        save_paired_clients(&dir, &list).unwrap();
        let loaded = load_paired_clients(&dir).unwrap();
        assert_eq!(loaded.fingerprints(), [fp]);
        assert_eq!(loaded.clients[0].name, "tv2");
        let mut l = loaded.clone();
        assert!(l.remove("abab").is_none(), "prefix too short");
        assert_eq!(l.remove("abababab").unwrap().name, "tv2");

        std::fs::write(t.0.join(CLIENTS_FILE), "{\"version\":1,\"clients\":[").unwrap();
        assert!(matches!(
            load_paired_clients(&dir),
            Err(StateError::Corrupt { .. })
        ));
        assert!(save_paired_clients(&dir, &list).is_err());
        let bad = r#"{"version":1,"clients":[{"fingerprint":"xyz","name":"a","paired_at":1}]}"#;
        std::fs::write(t.0.join(CLIENTS_FILE), bad).unwrap();
        assert!(load_paired_clients(&dir).is_err());
    }

    #[test]
    fn known_hosts() {
        let t = TempDir::new("hosts");
        let dir = StateDir::open(&t.0).unwrap();
        let mut hosts = load_known_hosts(&dir).unwrap();
        assert_eq!(hosts.get("a:1"), None);
        hosts.pin("a:1", Fingerprint([1; 32]), 5);
        hosts.pin("a:1", Fingerprint([2; 32]), 6);
        save_known_hosts(&dir, &hosts).unwrap();
        let loaded = load_known_hosts(&dir).unwrap();
        assert_eq!(loaded.get("a:1"), Some(Fingerprint([2; 32])));
        assert_eq!(loaded.hosts.len(), 1);
        let mut l = loaded;
        assert!(l.forget("a:1"));
        assert!(!l.forget("a:1"));
    }
}
