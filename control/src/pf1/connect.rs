//! `punktfunk client HOST`: the reference punktfunk/1 client (act: DNS, sockets, the
//! terminal, the state directory).
//!
//! It connects, pins the host on first use (`pf1-known-hosts.json`), pairs if asked (the PIN
//! from `--pair PIN`, or typed when the host asks for it), negotiates a session, prints the
//! data-plane parameters, optionally asks for a new mode, and says Goodbye. Media is not
//! received yet: this is the control plane's end-to-end check and the place where the pf1
//! data plane and decoder will be attached ([`ClientEvent::Welcome`]).

use std::io::BufRead as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::time::Duration;

use super::client::{ClientConfig, ClientEvent, HostPin, HostTrust};
use super::net::{ClientCommand, ClientDriver, NetError};
use super::trust::{self, Role};
use super::{Codec, DEFAULT_PORT, GoodbyeReason, Mode, Pin};
use crate::host::state::{StateDir, StateError, os_random};

/// What `punktfunk client` was asked for.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// `HOST` or `HOST:PORT` (default port [`DEFAULT_PORT`]).
    pub host: String,
    /// The state directory holding the client identity and known hosts.
    pub state_dir: StateDir,
    /// `--pair`: run the PIN ceremony; `Some(pin)` if given on the command line.
    pub pair: Option<Option<Pin>>,
    /// The mode to ask for.
    pub mode: Mode,
    /// Ask for this mode once streaming (exercises renegotiation).
    pub reconfigure: Option<Mode>,
    /// The name the host shows.
    pub name: String,
    /// How long to stay in the session before saying Goodbye.
    pub hold: Duration,
}

/// Why `punktfunk client` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError {
    /// The state directory.
    #[error(transparent)]
    State(#[from] StateError),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// What was given.
        host: String,
        /// Why.
        reason: String,
    },
    /// Sockets or the session.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The session ended without reaching its goal.
    #[error("{0}")]
    Ended(String),
}

/// `HOST[:PORT]` → the known-hosts key (`host:port`) and an address.
fn resolve(host: &str) -> Result<(String, SocketAddr), ConnectError> {
    let with_port = if host.parse::<SocketAddr>().is_ok()
        || host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.contains(':') && p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| ConnectError::Resolve {
            host: host.to_owned(),
            reason: e.to_string(),
        })?
        .next()
        .ok_or_else(|| ConnectError::Resolve {
            host: host.to_owned(),
            reason: "no address".into(),
        })?;
    Ok((with_port, addr))
}

/// Runs the client; returns the report to print.
pub fn run(opts: ConnectOptions) -> Result<String, ConnectError> {
    let (key, addr) = resolve(&opts.host)?;
    let identity = trust::load_or_create_identity(&opts.state_dir, Role::Client)?;
    let known = trust::load_known_hosts(&opts.state_dir)?;
    let mut config = ClientConfig::new(identity, &opts.name, opts.mode, os_random::<32>()?);
    config.codecs = config.codecs.with(Codec::Hevc).with(Codec::Av1);
    config.host_pin = known.get(&key).map_or(HostPin::FirstUse, HostPin::Expect);
    if let Some(pin) = &opts.pair {
        config.pair = true;
        config.pin = pin.clone();
    }
    let (driver, handle) = ClientDriver::connect(config, addr)?;
    let mut report = String::new();
    let mut to_pin = None;
    let mut paired = None;
    let mut started = None;
    let state = opts.state_dir.clone();
    let pin_key = |fp| -> Result<(), StateError> {
        let mut hosts = trust::load_known_hosts(&state)?;
        hosts.pin(&key, fp, trust::unix_now());
        trust::save_known_hosts(&state, &hosts)
    };
    let prompt_handle = handle.clone();
    let goodbye_handle = handle.clone();
    let hold = opts.hold;
    let reconfigure = opts.reconfigure;
    let closed = driver.run(|s, ev| match ev {
        ClientEvent::Connected { fingerprint, trust } => {
            report.push_str(&format!(
                "connected to {addr}, host certificate {fingerprint}\n"
            ));
            match trust {
                HostTrust::FirstUse => to_pin = Some(fingerprint),
                HostTrust::Pinned => {}
                HostTrust::Changed { expected } => {
                    report.push_str(&format!(
                        "the host's certificate changed (pinned {expected}); pairing decides\n"
                    ));
                    to_pin = Some(fingerprint);
                }
            }
        }
        ClientEvent::PinNeeded { digits } => {
            eprint!("Enter the {digits}-digit PIN the host shows: ");
            let h = prompt_handle.clone();
            // Read on another thread: the driver keeps the connection alive meanwhile.
            std::thread::spawn(move || {
                let mut line = String::new();
                let _ = std::io::stdin().lock().read_line(&mut line);
                match Pin::parse(&line) {
                    Ok(pin) => h.send(ClientCommand::Pair(pin)),
                    Err(e) => h.send(ClientCommand::Goodbye(
                        GoodbyeReason::PairingFailed,
                        e.to_string(),
                    )),
                };
            });
        }
        ClientEvent::PairingResult { ok } => {
            paired = Some(ok);
            if ok {
                report.push_str("paired\n");
                if let Some(fp) = to_pin.take()
                    && let Err(e) = pin_key(fp)
                {
                    report.push_str(&format!("warning: cannot pin the host: {e}\n"));
                }
            }
        }
        ClientEvent::Welcome(_) => {
            if opts.pair.is_none()
                && let Some(fp) = to_pin.take()
            {
                match pin_key(fp) {
                    Ok(()) => report.push_str(&format!("pinned {key} on first use\n")),
                    Err(e) => report.push_str(&format!("warning: cannot pin the host: {e}\n")),
                }
            }
            match s.start(0) {
                Ok(p) => {
                    report.push_str(&format!(
                        "session {}: {} {:?}, FEC {:?} {}% parity, {}-byte shards, host data \
                         port {}, key epoch {}\n",
                        p.session_id,
                        p.mode,
                        p.codec,
                        p.fec,
                        p.parity_percent,
                        p.shard_payload,
                        p.host_data_port,
                        p.key_epoch
                    ));
                    started = Some(p);
                    if let Some(m) = reconfigure {
                        let _ = s.request_reconfigure(m);
                    }
                    let h = goodbye_handle.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(hold);
                        h.send(ClientCommand::Goodbye(GoodbyeReason::Normal, "done".into()));
                    });
                }
                Err(e) => report.push_str(&format!("cannot start: {e}\n")),
            }
        }
        ClientEvent::Reconfigured(r) => report.push_str(&format!(
            "reconfigured: {} from frame {} (epoch {})\n",
            r.mode, r.first_frame_id, r.epoch
        )),
        ClientEvent::Closed(c) => report.push_str(&format!("closed: {c}\n")),
        _ => {}
    })?;
    drop(handle);
    if opts.pair.is_some() && paired != Some(true) {
        return Err(ConnectError::Ended(format!(
            "{report}not paired ({})",
            closed.reason
        )));
    }
    if started.is_none() {
        return Err(ConnectError::Ended(format!(
            "{report}no session ({})",
            closed.reason
        )));
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(resolve("127.0.0.1").unwrap().0, "127.0.0.1:47900");
        assert_eq!(resolve("127.0.0.1:5").unwrap().1.port(), 5);
        assert_eq!(resolve("::1").unwrap().0, "[::1]:47900");
        assert_eq!(resolve("[::1]:7").unwrap().1.port(), 7);
        assert_eq!(resolve("localhost").unwrap().0, "localhost:47900");
    }
}
