//! `punktfunk client HOST`: the reference punktfunk/1 client (act: DNS, sockets, the
//! terminal, the state directory).
//!
//! It connects, pins the host on first use (`pf1-known-hosts.json`), pairs if asked (the PIN
//! from `--pair PIN`, or typed when the host asks for it), negotiates a session, receives the
//! stream for `--duration` seconds ([`super::receive`]: decrypt, FEC-decode, reassemble, loss
//! reports back to the host), switches mode half way with `--remode`, optionally records the
//! Annex-B stream and writes statistics as JSON, and says Goodbye.

use std::io::BufRead as _;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::client::{ClientConfig, ClientEvent, HostPin, HostTrust};
use super::net::{ClientCommand, ClientDriver, NetError};
use super::receive::{ReceiveOptions, ReceiveStats, Receiving};
use super::trust::{self, Role};
use super::{Codec, DEFAULT_PORT, GoodbyeReason, Mode, Pin};
use crate::host::state::{StateDir, StateError, os_random};
use crate::input::InputEvent;

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
    /// Ask for these modes in turn during the run (renegotiation), evenly spaced: one mode
    /// half way, two at a third and two thirds, and so on.
    pub remodes: Vec<Mode>,
    /// The name the host shows.
    pub name: String,
    /// How long to receive before saying Goodbye.
    pub duration: Duration,
    /// Write the received Annex-B stream here.
    pub record: Option<PathBuf>,
    /// Write statistics as JSON here.
    pub stats_json: Option<PathBuf>,
    /// Drop this share of data-plane datagrams on receipt (testing FEC; 0 normally).
    pub inject_loss: f64,
    /// Input events to send once 40 % of `duration` has passed, 50 ms apart (a check of
    /// the host's input path; empty normally).
    pub inputs: Vec<InputEvent>,
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
    /// The data plane (socket, recording, statistics file).
    #[error("data plane: {0}")]
    Media(String),
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
    let began = Instant::now();
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
    let receiving = Receiving::bind(
        ReceiveOptions {
            record: opts.record.clone(),
            inject_loss: opts.inject_loss,
        },
        handle.clone(),
    )
    .map_err(|e| ConnectError::Media(e.to_string()))?;
    let remode_asked: Arc<Mutex<Option<Instant>>> = Arc::default();
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
    let duration = opts.duration;
    let remodes = opts.remodes.clone();
    let inputs = opts.inputs.clone();
    let asked = remode_asked.clone();
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
            match s.start(receiving.port()) {
                Ok(p) => {
                    receiving.set_key(&p.key_material);
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
                    if !inputs.is_empty() {
                        let h = goodbye_handle.clone();
                        let inputs = inputs.clone();
                        std::thread::spawn(move || {
                            std::thread::sleep(duration * 2 / 5);
                            for ev in inputs {
                                h.send(ClientCommand::Input(ev));
                                std::thread::sleep(Duration::from_millis(50));
                            }
                        });
                    }
                    let h = goodbye_handle.clone();
                    let asked = asked.clone();
                    let remodes = remodes.clone();
                    std::thread::spawn(move || {
                        let steps = u32::try_from(remodes.len()).unwrap_or(u32::MAX - 1) + 1;
                        let step = duration / steps;
                        for (i, m) in remodes.into_iter().enumerate() {
                            std::thread::sleep(step);
                            if i == 0 {
                                // reconfigure_ms measures the first switch.
                                *asked
                                    .lock()
                                    .unwrap_or_else(std::sync::PoisonError::into_inner) =
                                    Some(Instant::now());
                            }
                            h.send(ClientCommand::Reconfigure(m));
                        }
                        std::thread::sleep(duration.saturating_sub(step * (steps - 1)));
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
        ClientEvent::KeyUpdate {
            generation,
            key_material,
        } => receiving.install_key(generation, &key_material),
        ClientEvent::Closed(c) => report.push_str(&format!("closed: {c}\n")),
        _ => {}
    })?;
    drop(handle);
    let stats = receiving.finish().map_err(ConnectError::Media)?;
    if opts.pair.is_some() && paired != Some(true) {
        return Err(ConnectError::Ended(format!(
            "{report}not paired ({closed})"
        )));
    }
    if started.is_none() {
        return Err(ConnectError::Ended(format!(
            "{report}no session ({closed})"
        )));
    }
    let asked = *remode_asked
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let reconfigure_ms = asked.and_then(|a| {
        stats
            .new_modes
            .first()
            .map(|(_, t)| t.saturating_duration_since(a).as_secs_f64() * 1e3)
    });
    report.push_str(&summary(&stats, reconfigure_ms));
    if let Some(path) = &opts.stats_json {
        let first_frame_ms = stats
            .first_frame
            .map(|t| t.saturating_duration_since(began).as_secs_f64() * 1e3);
        let json = stats_json(&stats, reconfigure_ms, first_frame_ms);
        std::fs::write(path, json + "\n")
            .map_err(|e| ConnectError::Media(format!("{}: {e}", path.display())))?;
    }
    Ok(report)
}

fn modes(stats: &ReceiveStats) -> Vec<String> {
    stats
        .modes_seen
        .iter()
        .map(|(w, h)| format!("{w}x{h}"))
        .collect()
}

fn summary(stats: &ReceiveStats, reconfigure_ms: Option<f64>) -> String {
    format!(
        "received {} frames ({} needed FEC, {} unrecoverable), {} datagrams, goodput {:.1} Mbit/s, \
         modes {}, latency p50 {} us p99 {} us{}\n",
        stats.frames_complete,
        stats.frames_recovered_by_fec,
        stats.frames_unrecoverable,
        stats.datagrams,
        stats.goodput_bps() / 1e6,
        modes(stats).join(", "),
        stats
            .latency_quantile(0.5)
            .map_or("-".into(), |v| v.to_string()),
        stats
            .latency_quantile(0.99)
            .map_or("-".into(), |v| v.to_string()),
        reconfigure_ms.map_or(String::new(), |ms| format!(
            ", new mode {ms:.1} ms after asking"
        )),
    )
}

/// The statistics file of `--stats-json`. `first_frame_ms` is the time from starting to
/// connect to the first frame (a full session set-up, the alternative to renegotiation).
pub fn stats_json(
    stats: &ReceiveStats,
    reconfigure_ms: Option<f64>,
    first_frame_ms: Option<f64>,
) -> String {
    serde_json::json!({
        "frames_complete": stats.frames_complete,
        "frames_unrecoverable": stats.frames_unrecoverable,
        "frames_recovered_by_fec": stats.frames_recovered_by_fec,
        "keyframes": stats.keyframes,
        "datagrams": stats.datagrams,
        "payload_bytes": stats.payload_bytes,
        "modes_seen": modes(stats),
        "mode_switches": stats.new_modes.len(),
        "goodput_bps": stats.goodput_bps(),
        "latency_us_p50": stats.latency_quantile(0.5),
        "latency_us_p99": stats.latency_quantile(0.99),
        "reconfigure_ms": reconfigure_ms,
        "first_frame_ms": first_frame_ms,
        "key_rotations": stats.key_rotations,
        "datagrams_per_generation": stats.datagrams_per_generation,
        "retired_key_datagrams": stats.retired_key_datagrams,
    })
    .to_string()
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
