//! mDNS: advertises `_nvstream._tcp.local.` pointing at the nvhttp HTTP port, which is how
//! Moonlight finds hosts on the LAN (docs/gamestream-protocol-notes.md "Discovery"; moonlight-qt
//! `computermanager.cpp`). Optional: users can always add the host by address, so a failure
//! here is a warning, never fatal.

use mdns_sd::{ServiceDaemon, ServiceInfo};

/// The service type Moonlight browses for.
pub const SERVICE_TYPE: &str = "_nvstream._tcp.local.";

/// A running advertisement; withdrawn on drop.
pub struct Advertisement {
    daemon: ServiceDaemon,
    fullname: String,
}

impl std::fmt::Debug for Advertisement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Advertisement")
            .field("fullname", &self.fullname)
            .finish_non_exhaustive()
    }
}

/// Starts advertising `instance` (the host name) on `http_port`, on every interface with
/// its addresses filled in automatically.
pub fn advertise(instance: &str, http_port: u16) -> Result<Advertisement, mdns_sd::Error> {
    let daemon = ServiceDaemon::new()?;
    let label: String = instance
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' {
                c
            } else {
                '-'
            }
        })
        .collect();
    let host_name = format!("{}.local.", label.trim_matches('-'));
    let info = ServiceInfo::new(
        SERVICE_TYPE,
        instance,
        &host_name,
        "",
        http_port,
        None::<std::collections::HashMap<String, String>>,
    )?
    .enable_addr_auto();
    let fullname = info.get_fullname().to_owned();
    daemon.register(info)?;
    Ok(Advertisement { daemon, fullname })
}

impl Drop for Advertisement {
    fn drop(&mut self) {
        let _ = self.daemon.unregister(&self.fullname);
        let _ = self.daemon.shutdown();
    }
}
