//! The paired-client store shared by the nvhttp servers and the management API: the
//! in-memory [`Clients`] behind a lock, persisted to the state directory on every change.
//!
//! A change is written to disk first and published in memory after, so a client is
//! authorized only once it is durable, and a failed write changes nothing. Writes block on
//! `fsync`: async callers run them with `spawn_blocking`.

use std::sync::{Mutex, PoisonError, RwLock};

use crate::gamestream::clients::{Clients, PairedClient};
use crate::gamestream::pairing::Paired;
use crate::gamestream::session::ClientIdentity;

use super::state::{StateDir, StateError};

/// Paired clients, persisted.
#[derive(Debug)]
pub struct ClientStore {
    dir: Option<StateDir>,
    clients: RwLock<Clients>,
    writer: Mutex<()>,
}

impl ClientStore {
    /// A store over `dir`'s `clients.json`, starting from `clients` (as loaded).
    pub fn new(dir: StateDir, clients: Clients) -> Self {
        Self {
            dir: Some(dir),
            clients: RwLock::new(clients),
            writer: Mutex::new(()),
        }
    }

    /// A store that is never written to disk (tests).
    pub fn in_memory(clients: Clients) -> Self {
        Self {
            dir: None,
            clients: RwLock::new(clients),
            writer: Mutex::new(()),
        }
    }

    /// The paired client with this certificate fingerprint.
    pub fn authorize(&self, fingerprint: &[u8; 32]) -> Option<ClientIdentity> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        clients.authorize(fingerprint).map(|c| ClientIdentity {
            id: c.id.clone(),
            name: c.name.clone(),
        })
    }

    /// Every paired client.
    pub fn list(&self) -> Vec<PairedClient> {
        let clients = self.clients.read().unwrap_or_else(PoisonError::into_inner);
        clients.iter().cloned().collect()
    }

    /// Applies `f` to a copy of the list; if it returns `Some`, persists the copy and
    /// publishes it.
    fn change<T>(
        &self,
        f: impl FnOnce(&mut Clients) -> Option<T>,
    ) -> Result<Option<T>, StateError> {
        // Serialize writers; readers keep going until the new list is durable.
        let _w = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = self
            .clients
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        let Some(out) = f(&mut next) else {
            return Ok(None);
        };
        if let Some(dir) = &self.dir {
            dir.save_clients(&next)?;
        }
        *self.clients.write().unwrap_or_else(PoisonError::into_inner) = next;
        Ok(Some(out))
    }

    /// Stores a newly paired client (blocking).
    pub fn add(&self, paired: &Paired, paired_at: u64) -> Result<PairedClient, StateError> {
        let added = self.change(|c| Some(c.add(paired, paired_at)))?;
        // `change` returns what the closure returned, which is always `Some` here.
        Ok(added.unwrap_or_else(|| unreachable!("add always changes the list")))
    }

    /// Removes client `id` (blocking). `Ok(None)` if there is no such client.
    pub fn remove(&self, id: &str) -> Result<Option<PairedClient>, StateError> {
        self.change(|c| c.remove(id))
    }
}
