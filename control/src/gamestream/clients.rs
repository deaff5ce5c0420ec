//! The paired-client list: what `clients.json` holds, and authorization by certificate.
//!
//! A client is identified by the SHA-256 fingerprint of its certificate's DER; its `id` is the
//! first 16 hex digits of that fingerprint (stable, short enough to type in `punktfunk unpair ID`).
//! The `uniqueid` a client sends is not used for authorization: some clients send a constant
//! (`0123456789ABCDEF`, docs/gamestream-protocol-notes.md "Query parameters").
//!
//! ```json
//! { "version": 1,
//!   "clients": [ { "id": "3fa2…", "name": "Living room TV", "fingerprint": "3fa2…(64)",
//!                  "paired_at": 1732500000, "uniqueid": "0123456789ABCDEF",
//!                  "cert_pem": "-----BEGIN CERTIFICATE-----\n…" } ] }
//! ```
//!
//! Loading checks every entry (the certificate parses and matches its fingerprint), so a
//! hand-edited or damaged file is refused whole rather than silently losing clients.

use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

use super::cert::Certificate;
use super::pairing::Paired;
use super::query::hex_lower;

/// The format version written to `clients.json`.
pub const CLIENTS_FORMAT_VERSION: u32 = 1;

/// Why a clients file was refused. Local state, not peer input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientsError {
    /// Not JSON of the expected shape.
    #[error("not a valid clients file: {0}")]
    Parse(#[from] serde_json::Error),
    /// Written by a newer punktfunk.
    #[error(
        "clients file format version {0} is not supported (this build reads {CLIENTS_FORMAT_VERSION})"
    )]
    Version(u32),
    /// An entry is inconsistent.
    #[error("client entry {index} ({id}): {reason}")]
    BadEntry {
        /// Position in the list.
        index: usize,
        /// The entry's id as written.
        id: String,
        /// What is wrong.
        reason: String,
    },
}

/// One paired client, as stored and as the management API shows it (without `cert_pem`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairedClient {
    /// First 16 hex digits of the fingerprint.
    pub id: String,
    /// Name given at pairing.
    pub name: String,
    /// SHA-256 of the certificate DER, 64 lower-case hex digits.
    pub fingerprint: String,
    /// When it was paired, seconds since the Unix epoch.
    pub paired_at: u64,
    /// The `uniqueid` it sent while pairing.
    #[serde(default)]
    pub uniqueid: String,
    /// Its certificate.
    pub cert_pem: String,
}

#[derive(Serialize, Deserialize)]
struct File {
    version: u32,
    clients: Vec<PairedClient>,
}

#[derive(Clone)]
struct Entry {
    fingerprint: [u8; 32],
    info: PairedClient,
}

/// The paired clients.
#[derive(Default, Clone)]
pub struct Clients {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for Clients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.info.id))
            .finish()
    }
}

/// The id of a certificate with this fingerprint.
pub fn client_id(fingerprint: &[u8; 32]) -> String {
    hex_lower(&fingerprint[..8])
}

impl Clients {
    /// Parses and checks `clients.json`.
    pub fn from_json(text: &str) -> Result<Self, ClientsError> {
        let file: File = serde_json::from_str(text)?;
        if file.version != CLIENTS_FORMAT_VERSION {
            return Err(ClientsError::Version(file.version));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(file.clients.len());
        for (index, info) in file.clients.into_iter().enumerate() {
            let bad = |reason: String| ClientsError::BadEntry {
                index,
                id: info.id.clone(),
                reason,
            };
            let cert = Certificate::from_pem(info.cert_pem.as_bytes())
                .map_err(|e| bad(format!("certificate: {e}")))?;
            let fingerprint = cert.fingerprint();
            if hex_lower(&fingerprint) != info.fingerprint {
                return Err(bad("fingerprint does not match the certificate".into()));
            }
            if client_id(&fingerprint) != info.id {
                return Err(bad("id does not match the fingerprint".into()));
            }
            if entries.iter().any(|e| e.fingerprint == fingerprint) {
                return Err(bad("duplicate certificate".into()));
            }
            entries.push(Entry { fingerprint, info });
        }
        Ok(Self { entries })
    }

    /// Serializes for `clients.json`.
    pub fn to_json(&self) -> String {
        let file = File {
            version: CLIENTS_FORMAT_VERSION,
            clients: self.entries.iter().map(|e| e.info.clone()).collect(),
        };
        // Serializing plain strings and integers cannot fail.
        serde_json::to_string_pretty(&file).unwrap_or_default() + "\n"
    }

    /// The paired client with this certificate fingerprint. Compares against every entry in
    /// constant time per entry, without stopping at the first match.
    pub fn authorize(&self, fingerprint: &[u8; 32]) -> Option<&PairedClient> {
        let mut found = None;
        for e in &self.entries {
            if bool::from(e.fingerprint.ct_eq(fingerprint)) {
                found = Some(&e.info);
            }
        }
        found
    }

    /// Adds a newly paired client, replacing an entry with the same certificate.
    pub fn add(&mut self, paired: &Paired, paired_at: u64) -> PairedClient {
        let fingerprint = paired.cert.fingerprint();
        self.entries.retain(|e| e.fingerprint != fingerprint);
        let info = PairedClient {
            id: client_id(&fingerprint),
            name: paired.name.clone(),
            fingerprint: hex_lower(&fingerprint),
            paired_at,
            uniqueid: paired.uniqueid.clone(),
            cert_pem: paired.cert.to_pem(),
        };
        self.entries.push(Entry {
            fingerprint,
            info: info.clone(),
        });
        info
    }

    /// Removes the client `id` (the full fingerprint is accepted too).
    pub fn remove(&mut self, id: &str) -> Option<PairedClient> {
        let id = id.to_ascii_lowercase();
        let pos = self
            .entries
            .iter()
            .position(|e| e.info.id == id || e.info.fingerprint == id)?;
        Some(self.entries.remove(pos).info)
    }

    /// Every paired client, oldest first.
    pub fn iter(&self) -> impl Iterator<Item = &PairedClient> {
        self.entries.iter().map(|e| &e.info)
    }

    /// How many.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::cert::tests::CLIENT_CERT_PEM;
    use crate::gamestream::pairing::Ticket;

    fn paired(pem: &str, name: &str) -> Paired {
        Paired {
            ticket: Ticket(1),
            cert: Certificate::from_pem(pem.as_bytes()).unwrap(),
            name: name.into(),
            uniqueid: "0123456789ABCDEF".into(),
        }
    }

    #[test]
    fn add_authorize_round_trip_remove() {
        let mut c = Clients::default();
        let a = c.add(&paired(CLIENT_CERT_PEM, "TV"), 100);
        let b = c.add(
            &paired(
                include_str!("../../tests/fixtures/client2-cert.pem"),
                "Phone",
            ),
            200,
        );
        // Re-pairing the same certificate replaces the entry.
        c.add(&paired(CLIENT_CERT_PEM, "TV again"), 300);
        assert_eq!(c.len(), 2);

        let fp = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes())
            .unwrap()
            .fingerprint();
        assert_eq!(c.authorize(&fp).unwrap().name, "TV again");
        assert!(c.authorize(&[0; 32]).is_none());

        let again = Clients::from_json(&c.to_json()).unwrap();
        assert_eq!(
            again.iter().collect::<Vec<_>>(),
            c.iter().collect::<Vec<_>>()
        );

        assert_eq!(c.remove(&b.id).unwrap().name, "Phone");
        assert!(c.remove(&b.id).is_none());
        assert!(c.remove(&a.fingerprint.to_uppercase()).is_some());
        assert!(c.is_empty());
    }

    #[test]
    fn refuses_inconsistent_files() {
        let mut c = Clients::default();
        c.add(&paired(CLIENT_CERT_PEM, "TV"), 100);
        let good = c.to_json();
        assert!(matches!(
            Clients::from_json("{"),
            Err(ClientsError::Parse(_))
        ));
        assert!(matches!(
            Clients::from_json(&good.replace("\"version\": 1", "\"version\": 9")),
            Err(ClientsError::Version(9))
        ));
        let id = c.iter().next().unwrap().id.clone();
        assert!(matches!(
            Clients::from_json(&good.replace(&format!("\"id\": \"{id}\""), "\"id\": \"x\"")),
            Err(ClientsError::BadEntry { .. })
        ));
        assert!(matches!(
            Clients::from_json(&good.replace("MII", "MIJ")),
            Err(ClientsError::BadEntry { .. })
        ));
    }
}
