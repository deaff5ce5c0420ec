//! `punktfunk serve`'s punktfunk/1 listener (act): the host identity and paired list from the
//! state directory, a UDP socket, and a [`HostDriver`] on its own thread.
//!
//! It pairs clients only through the operator's pairing window (`punktfunk pin --pf1` arms
//! it), persists newly paired clients to `pf1-clients.json`, streams only to paired clients
//! unless started with `--allow-unpaired` (a lab opt-out, logged as a warning; input from
//! unpaired clients is dropped even then), answers Hello with the profile's
//! parameters, and hands every started session to [`Pf1Media`], which streams to it (engine
//! pipeline, GF(2^16) FEC, AES-GCM data plane) and rebuilds source and encoder on Reconfigure.
//!
//! Several clients stream at once, each with its own stream, up to
//! [`ListenerOptions::max_sessions`] (`[sessions] max`); the next is told `Goodbye(Busy)` with
//! the limit, and the operator gets one line per episode of full slots.
//! [`HostHandle::live_sessions`] lists the connections holding a slot ([`super::live`]).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::thread::JoinHandle;

use super::host::{HostConfig, HostEvent, HostSession, SessionOffer};
use super::live;
use super::media::{MediaOptions, Pf1Media};
use super::net::{HostApp, HostCommand, HostDriver, HostHandle, NetError};
use super::tls::Fingerprint;
use super::trust::{self, Role};
use super::{Codec, FecScheme, GoodbyeReason, Pin};
use crate::host::state::{StateDir, StateError, os_random};

/// Payload bytes per FEC shard offered to clients: fits a 1500-byte MTU with IP, UDP and the
/// data-plane header and tag.
pub const SHARD_PAYLOAD: u16 = 1344;

/// How `serve` runs punktfunk/1.
#[derive(Debug, Clone)]
pub struct ListenerOptions {
    /// UDP port of the control plane (default [`super::DEFAULT_PORT`]).
    pub port: u16,
    /// Address to bind (default: all interfaces, IPv6 and IPv4).
    pub bind: Option<IpAddr>,
    /// Stream to clients that are not paired too (`serve --allow-unpaired`, labs only; their
    /// input is still dropped). Default `false`: pairing required.
    pub allow_unpaired: bool,
    /// The data-plane UDP port announced in Welcome (default: control port + 1).
    pub data_port: u16,
    /// Parity percentage announced in Welcome (the profile's FEC percentage).
    pub parity_percent: u8,
    /// The codec the host prefers, if the client decodes it (else H.264).
    pub codec: Codec,
    /// Media settings (socket binding, send path, bitrate).
    pub media: MediaOptions,
    /// Clients streaming at once (the streaming slots, [`HostConfig::max_connections`]);
    /// `serve` takes the tuning profile's `[sessions] max`. A client beyond it is told
    /// `Goodbye(Busy)` "the host is streaming to N clients (max N)".
    pub max_sessions: usize,
}

impl ListenerOptions {
    /// Defaults for `port`: data port `port + 1`, 20 % parity, H.264, pairing required, the
    /// tuning crate's default session limit (4).
    pub fn new(port: u16) -> Self {
        Self {
            port,
            bind: None,
            allow_unpaired: false,
            data_port: port.wrapping_add(1).max(1),
            parity_percent: 20,
            codec: Codec::H264,
            media: MediaOptions::default(),
            max_sessions: punktfunk_tuning::SessionsSettings::default().max,
        }
    }

    /// Takes the tuning profile's pipeline, send, pacing and FEC settings: the parity offered
    /// in Welcome is `fec.percent`, and every stream's pipeline is built from the profile.
    pub fn apply_profile(&mut self, profile: punktfunk_engine::config::SessionProfile) {
        self.parity_percent = profile.fec.percent;
        self.media.profile = profile;
    }
}

/// Why the listener could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ListenerError {
    /// The state directory (identity, paired list).
    #[error(transparent)]
    State(#[from] StateError),
    /// The UDP socket.
    #[error("punktfunk/1: cannot listen on UDP {addr}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The session or driver.
    #[error("punktfunk/1: {0}")]
    Net(#[from] NetError),
    /// The thread.
    #[error("punktfunk/1: cannot start the listener thread: {0}")]
    Thread(std::io::Error),
}

/// A running punktfunk/1 listener.
#[derive(Debug)]
pub struct Listener {
    handle: HostHandle,
    thread: Option<JoinHandle<()>>,
    addr: SocketAddr,
    fingerprint: Fingerprint,
}

fn bind(opts: &ListenerOptions) -> Result<UdpSocket, ListenerError> {
    let candidates: Vec<IpAddr> = match opts.bind {
        Some(ip) => vec![ip],
        None => vec![
            IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        ],
    };
    let mut last = None;
    for ip in candidates {
        let addr = SocketAddr::new(ip, opts.port);
        match UdpSocket::bind(addr) {
            Ok(s) => return Ok(s),
            Err(source) => last = Some(ListenerError::Bind { addr, source }),
        }
    }
    Err(last.unwrap_or(ListenerError::Bind {
        addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port)),
        source: std::io::Error::other("no address to bind"),
    }))
}

/// How often at most a refused connection is logged.
const REFUSAL_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

/// Refusals (not paired, pairing closed, backing off, busy) and setup deadlines make one log
/// line per [`REFUSAL_LOG_EVERY`] at most, carrying how many there were: a stranger
/// reconnecting in a loop must not fill the log. (The session's [`super::HostStats`] counts each.)
#[derive(Debug, Default)]
struct RefusalLog {
    quiet_until: Option<std::time::Instant>,
    refused: u64,
}

impl RefusalLog {
    fn note(&mut self, now: std::time::Instant, conn: super::ConnId, closed: &super::Closed) {
        self.refused += 1;
        if self.quiet_until.is_some_and(|t| now < t) {
            return;
        }
        tracing::info!(
            %conn,
            %closed,
            refused = self.refused,
            "punktfunk/1 connection refused (count since the last such line)"
        );
        self.refused = 0;
        self.quiet_until = Some(now + REFUSAL_LOG_EVERY);
    }
}

/// The operator hears about full streaming slots once per episode: the first client refused
/// while every slot is taken gets a line naming the limit and the setting that raises it;
/// further refusals until a stream ends go to the rate-limited [`RefusalLog`].
#[derive(Debug, Default)]
struct SlotsLog {
    /// A line went out since the last stream ended.
    said: bool,
    /// Refused connections whose Closed that line already covers.
    covered: std::collections::BTreeSet<super::ConnId>,
}

impl SlotsLog {
    /// `conn` was refused for want of a slot: whether to say so (the first of an episode).
    fn refused(&mut self, conn: super::ConnId) -> bool {
        if self.said {
            return false;
        }
        self.said = true;
        self.covered.insert(conn);
        true
    }

    /// `conn` closed: whether its refusal was already logged (then its Closed is not).
    fn covered(&mut self, conn: super::ConnId) -> bool {
        self.covered.remove(&conn)
    }

    /// A connection that may have held a slot ended: the next refusal for lack of one is news
    /// again.
    fn slot_freed(&mut self) {
        self.said = false;
    }
}

/// The listener's side of the driver ([`HostApp`]): media, policy, logs, the paired names.
struct App {
    state: StateDir,
    opts: ListenerOptions,
    media: Pf1Media,
    refusals: RefusalLog,
    slots: SlotsLog,
    /// The name each paired client gave when it paired (`pf1-clients.json`).
    names: BTreeMap<Fingerprint, String>,
}

impl HostApp for App {
    fn on_event(&mut self, s: &mut HostSession, ev: HostEvent) {
        on_event(self, s, ev);
    }

    fn live_sessions(
        &mut self,
        s: &HostSession,
        now: std::time::Instant,
    ) -> Vec<crate::live::LiveSession> {
        s.admitted()
            .iter()
            .map(|c| {
                let name = self.names.get(&c.fingerprint).map_or("", String::as_str);
                live::row(c, self.media.status(c.conn).as_ref(), name, now)
            })
            .collect()
    }
}

/// What the listener does with each event (see the module docs).
fn on_event(app: &mut App, s: &mut HostSession, ev: HostEvent) {
    let App {
        state,
        opts,
        media,
        refusals,
        slots,
        names,
    } = app;
    let now = std::time::Instant::now();
    match ev {
        HostEvent::Connected {
            conn,
            peer,
            fingerprint,
        } => {
            tracing::debug!(%conn, %peer, client = %fingerprint.short(), "punktfunk/1 connection");
        }
        HostEvent::PairingClosed { why } => {
            tracing::info!(
                "punktfunk/1 pairing window closed ({why}); `punktfunk pin --pf1` opens a new one"
            );
        }
        HostEvent::PairingResult {
            conn,
            fingerprint,
            client_name,
            ok,
        } => {
            if !ok {
                let window = s.pairing_status(now);
                tracing::warn!(
                    %conn,
                    client = %client_name,
                    fingerprint = %fingerprint.short(),
                    wrong_pins_left = window.failures_left,
                    "punktfunk/1 pairing failed (wrong PIN, or a relay)"
                );
                return;
            }
            let saved = trust::load_paired_clients(state).and_then(|mut list| {
                list.add(fingerprint, &client_name, trust::unix_now());
                trust::save_paired_clients(state, &list)
            });
            match saved {
                Ok(()) => {
                    names.insert(fingerprint, client_name.clone());
                    tracing::info!(%conn, client = %client_name, fingerprint = %fingerprint.short(), "punktfunk/1 client paired");
                }
                Err(e) => {
                    // Not durable: do not let it stream as paired.
                    tracing::error!(error = %e, "punktfunk/1: cannot save the paired client");
                    s.untrust(&fingerprint);
                    let _ = s.goodbye(
                        now,
                        conn,
                        GoodbyeReason::Internal,
                        "the host could not save the pairing",
                    );
                }
            }
        }
        HostEvent::HelloReceived {
            conn,
            hello,
            fingerprint,
            paired,
        } => {
            let codec = if hello.codecs.contains(opts.codec) {
                opts.codec
            } else if hello.codecs.contains(Codec::H264) {
                Codec::H264
            } else {
                let _ = s.refuse(now, conn, GoodbyeReason::Refused, "no codec in common");
                return;
            };
            let offer = SessionOffer {
                codec,
                fec: FecScheme::Gf16Leopard,
                parity_percent: opts.parity_percent,
                shard_payload: SHARD_PAYLOAD,
                data_port: opts.data_port,
                mode: hello.requested,
            };
            match s.accept(now, conn, offer) {
                Ok(session) => tracing::info!(
                    %conn,
                    client = %hello.client_name,
                    fingerprint = %fingerprint.short(),
                    paired,
                    mode = %hello.requested,
                    session,
                    "punktfunk/1 session offered"
                ),
                Err(e) => tracing::warn!(%conn, error = %e, "punktfunk/1: cannot accept"),
            }
        }
        HostEvent::Started { conn, params } => {
            if let Err(e) = media.start(conn, &params) {
                tracing::error!(%conn, error = %e, "punktfunk/1: cannot start the stream");
                let _ = s.goodbye(
                    now,
                    conn,
                    GoodbyeReason::Internal,
                    "the host could not start the stream",
                );
            }
        }
        HostEvent::ReconfigureRequested { conn, mode } => {
            // With a stream, Reconfigured goes out with the new mode's first frame.
            if !media.reconfigure(conn, mode)
                && let Err(e) = s.reconfigured(conn, mode, 0)
            {
                tracing::warn!(%conn, error = %e, "punktfunk/1: cannot reconfigure");
            }
        }
        HostEvent::IdrRequested { conn } => media.request_idr(conn),
        HostEvent::LossReport { conn, report } => media.loss_report(conn, &report),
        HostEvent::Stats { conn, stats } => tracing::debug!(%conn, ?stats, "punktfunk/1 stats"),
        HostEvent::Input { conn, event } => media.input(conn, &event),
        HostEvent::KeyUpdated {
            conn,
            generation,
            key_material,
        } => media.key_updated(conn, generation, &key_material),
        HostEvent::SlotsFull {
            conn,
            fingerprint,
            streaming,
            max,
        } => {
            if slots.refused(conn) {
                tracing::warn!(
                    %conn,
                    client = %fingerprint.short(),
                    streaming,
                    max,
                    told = %super::host::slots_full_text(streaming, max),
                    "punktfunk/1 streaming slots full, client refused with Busy (`[sessions] max` \
                     in the tuning profile raises the limit; further refusals are summarised)"
                );
            }
        }
        HostEvent::Closed { conn, closed } => {
            media.stop(conn);
            if slots.covered(conn) {
                return;
            }
            // Refusals and setup deadlines (half-open handshakes) can come in floods.
            let refusal = !closed.by_peer
                && (matches!(
                    closed.reason,
                    GoodbyeReason::NotPaired
                        | GoodbyeReason::PairingClosed
                        | GoodbyeReason::RetryLater
                        | GoodbyeReason::Busy
                ) || (closed.reason == GoodbyeReason::Timeout
                    && closed.text.starts_with(super::host::SETUP_TIMED_OUT)));
            if refusal {
                refusals.note(now, conn, &closed);
            } else {
                slots.slot_freed();
                tracing::info!(%conn, %closed, "punktfunk/1 connection closed");
            }
        }
    }
}

impl Listener {
    /// Loads the pf1 identity and paired clients from `state`, binds the UDP port and starts
    /// the driver thread.
    pub fn start(state: &StateDir, opts: ListenerOptions) -> Result<Self, ListenerError> {
        let identity = trust::load_or_create_identity(state, Role::Host)?;
        let paired_list = trust::load_paired_clients(state)?;
        let paired = paired_list.fingerprints();
        let names: BTreeMap<Fingerprint, String> = paired_list
            .clients
            .iter()
            .filter_map(|c| Some((Fingerprint::from_hex(&c.fingerprint)?, c.name.clone())))
            .collect();
        let fingerprint = identity.fingerprint();
        let mut config = HostConfig::new(identity, os_random::<32>()?);
        config.require_pairing = !opts.allow_unpaired;
        config.max_connections = opts.max_sessions.max(1);
        if opts.allow_unpaired {
            tracing::warn!(
                "WARNING: punktfunk/1 runs with --allow-unpaired: ANY client that reaches UDP port \
                 {} may watch the stream without pairing (its input is still dropped). Use this \
                 in a lab only.",
                opts.port
            );
        }
        let max_sessions = config.max_connections;
        let session = HostSession::new(config, paired).map_err(NetError::from)?;
        let socket = bind(&opts)?;
        let addr = socket.local_addr().map_err(|source| ListenerError::Bind {
            addr: SocketAddr::from((Ipv4Addr::UNSPECIFIED, opts.port)),
            source,
        })?;
        let (driver, handle) = HostDriver::new(socket, session)?;
        let state = state.clone();
        let media_handle = handle.clone();
        let thread = std::thread::Builder::new()
            .name("punktfunk-pf1".into())
            .spawn(move || {
                let media = Pf1Media::new(
                    opts.media.clone(),
                    media_handle,
                    crate::input::open_default(),
                );
                let app = App {
                    state,
                    opts,
                    media,
                    refusals: RefusalLog::default(),
                    slots: SlotsLog::default(),
                    names,
                };
                if let Err(e) = driver.run_app(app) {
                    tracing::error!(error = %e, "punktfunk/1 listener stopped");
                }
            })
            .map_err(ListenerError::Thread)?;
        tracing::info!(%addr, fingerprint = %fingerprint, max_sessions, "punktfunk/1 listening");
        Ok(Self {
            handle,
            thread: Some(thread),
            addr,
            fingerprint,
        })
    }

    /// The bound address.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The host certificate's fingerprint (what clients pin).
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// A handle for other parts of the host (the management API arming a PIN, unpairing,
    /// listing sessions with [`HostHandle::live_sessions`]).
    pub fn handle(&self) -> HostHandle {
        self.handle.clone()
    }

    /// Opens the pairing window with `pin` (the operator's `punktfunk pin --pf1`).
    pub fn arm_pin(&self, pin: Pin) {
        self.handle.send(HostCommand::ArmPin(pin));
    }

    /// Says Goodbye to every client and waits for the thread (a few seconds at most).
    pub fn shutdown(mut self) {
        self.stop();
    }

    fn stop(&mut self) {
        self.handle.send(HostCommand::Shutdown);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pf1::ConnId;

    #[test]
    fn full_slots_are_logged_once_per_episode() {
        let mut log = SlotsLog::default();
        assert!(log.refused(ConnId(3)), "the first refusal is news");
        assert!(!log.refused(ConnId(4)), "the next ones are not");
        assert!(log.covered(ConnId(3)), "its Closed is not logged again");
        assert!(
            !log.covered(ConnId(4)),
            "this one goes to the refusal summary"
        );
        assert!(!log.covered(ConnId(3)));
        log.slot_freed();
        assert!(log.refused(ConnId(5)), "full again after a slot came free");
    }
}
