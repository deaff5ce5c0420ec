//! The host's punktfunk/1 endpoint (pure): a quinn-proto [`Endpoint`] and its connections,
//! each running the control protocol. Sans-IO: the caller feeds datagrams and time, and
//! sends what [`HostSession::poll_transmit`] returns.
//!
//! Per connection:
//!
//! ```text
//!  ┌ pending (max_pending) ────────────────────────────────────────────────────────────┐
//!  Handshaking ──TLS done──► AwaitHello ──Hello──┬─(wants pairing)─► PairReady ──PairStart──►
//!                                                 │  backing off: Goodbye(RetryLater)
//!                                                 │  no window: Goodbye(PairingClosed)
//!                                                 │                  PairConfirm ──ok──┐
//!                                                 ├─(paired, or pairing optional)──────┤
//!                                                 └─(unpaired, pairing required)─► Goodbye(NotPaired)
//!  └ admitted (max_connections; none free: Goodbye(Busy)) ◄────────────────────────────┘
//!  AwaitDecision
//!    │ accept(offer): Welcome                  refuse(): Goodbye(Refused)
//!    ▼
//!  AwaitStart ──Start──► Streaming ◄──► Reconfigure / Reconfigured, IdrRequest, LossReport,
//!                                       Stats, input datagrams (paired clients only),
//!                                       update_key(): KeyUpdate{g} ──KeyUpdateAck{g}──►
//!                                       KeyUpdated{g, material} (the sender switches)
//!  any phase: Goodbye (either side), malformed or unexpected message → Goodbye
//!  (ProtocolViolation), setup or PIN-prompt deadline → Goodbye(Timeout), QUIC idle
//!  timeout → Closed. The setup deadline (10 s) runs from a connection's first packet to
//!  Hello: a peer that starts the QUIC/TLS handshake and never finishes it (its
//!  retransmissions keep QUIC's idle timer alive) is ended then and counted.
//! ```
//!
//! A peer's malformed input never panics and never surfaces as an error of a method: the
//! connection is ended with a Goodbye naming the problem, the event stream reports
//! [`HostEvent::Closed`], and [`HostStats`] counts it. Malformed or early input datagrams are
//! dropped and counted.
//!
//! # Key updates
//!
//! The data plane's key may seal only so many datagrams. When the sender nears that limit the
//! application calls [`HostSession::update_key`]: the host names generation `g + 1` in
//! `KeyUpdate`, the client derives it from the TLS exporter, installs it in its receiver and
//! answers `KeyUpdateAck`; only then does [`HostEvent::KeyUpdated`] hand the key material to
//! the sender, which switches at its next frame. One update is outstanding at a time. A
//! client that does not acknowledge within [`HostConfig::setup_timeout`] is ended with
//! `Goodbye(Timeout)` (the sender has a quarter of the key's limit left then, minutes at any
//! rate); an acknowledgement that names another generation, or comes unasked, is a protocol
//! violation.
//!
//! # Pairing window
//!
//! A PIN belongs to the operator's pairing window ([`crate::pairing_window`]), never to a
//! connection: the host generates no PIN of its own. [`HostSession::arm_pin`] (from
//! `punktfunk pin --pf1`) opens the window with one PIN for [`HostConfig::pin_ttl`]. While it
//! is open, a client that asks to pair gets `PairReady` and one ceremony with that PIN. The
//! window closes when a client pairs, when [`WindowConfig::failure_budget`] ceremonies failed
//! (wrong PIN, a relay, or a ceremony abandoned after `PairStart`), when its lifetime ends, or
//! with [`HostSession::disarm_pin`]; it stays closed until the operator arms it again. An
//! address whose ceremony failed waits 1 s, 2 s, 4 s … at most 300 s before it may ask to pair
//! again ([`AddressBackoff`]). One ceremony runs at a time (`PairStart` → `PairConfirm`), so
//! concurrent connections cannot test more PINs than the budget allows.
//!
//! # Admission
//!
//! Connections that are not admitted yet (handshake, Hello, the PIN prompt, a ceremony) live
//! in a pool of [`HostConfig::max_pending`]; when it is full the oldest of them (never a
//! running ceremony) is ended with `Goodbye(Busy)` to make room. Admitted connections (paired, or unpaired under
//! `require_pairing = false`) take one of [`HostConfig::max_connections`] streaming slots;
//! with none free the client is told `Busy`. A client may sit at the PIN prompt for
//! [`HostConfig::pairing_timeout`] at most, and no longer than the window is open. Every
//! refusal is a Goodbye with a true reason ([`GoodbyeReason`]) and is counted in
//! [`HostStats`]. Input datagrams are taken only from streaming connections whose
//! fingerprint is paired, whatever `require_pairing` says; others are dropped and counted.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use bytes::BytesMut;
use quinn_proto::crypto::rustls::QuicServerConfig;
use quinn_proto::{DatagramEvent, Dir, Endpoint, Event, StreamEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng as _};

use super::datagram::Datagram;
use super::link::{self, Link};
use super::message::{
    self, FecScheme, Hello, LossReport, Message, MessageError, Mode, PROTOCOL_VERSION,
    Reconfigured, Stats, Welcome,
};
use super::pairing::{HostPairing, PairingContext, Pin};
use super::tls::{self, DATA_KEY_LABEL, Fingerprint, Identity};
use super::{
    Closed, Codec, ConnId, DataPlaneParams, GoodbyeReason, KeyMaterial, SessionError, Transmit,
};
use crate::input::wire::InputEvent;
use crate::pairing_window::{
    AddressBackoff, BackoffConfig, PairingWindow, Refusal, WindowConfig, WindowStatus,
};

/// Most endpoint-generated responses (version negotiation, stateless resets, refusals)
/// queued at once; beyond it they are dropped and counted, so a flood cannot grow memory.
const MAX_RESPONSES: usize = 64;

/// The start of the Goodbye text of a connection ended at a setup deadline (the listener
/// logs those as rate-limited summaries, like refusals).
pub const SETUP_TIMED_OUT: &str = "setup timed out";

/// How long a pairing window stays open by default.
pub const DEFAULT_PIN_TTL: Duration = Duration::from_secs(120);

/// How a host runs its punktfunk/1 endpoint.
#[derive(Debug, Clone)]
pub struct HostConfig {
    /// The host's certificate and key.
    pub identity: Identity,
    /// Refuse clients that are not paired (unless they pair on this connection). `false` is
    /// the lab opt-out `serve --allow-unpaired`: unpaired clients may then stream, but their
    /// input is dropped all the same.
    pub require_pairing: bool,
    /// How long the pairing window stays open after [`HostSession::arm_pin`].
    pub pin_ttl: Duration,
    /// How long a client may sit at the PIN prompt (from PairReady to PairStart).
    pub pairing_timeout: Duration,
    /// The pairing window's failure budget.
    pub window: WindowConfig,
    /// Per-address backoff after failed ceremonies.
    pub backoff: BackoffConfig,
    /// How long a client may take from its first packet to Hello (QUIC/TLS handshake
    /// included, one total deadline), from PairStart to PairConfirm, from Welcome to Start,
    /// and to acknowledge a key update.
    pub setup_timeout: Duration,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive: Option<Duration>,
    /// Most admitted connections (streaming slots); a client admitted beyond it is told
    /// `Busy`.
    pub max_connections: usize,
    /// Most connections not admitted yet (handshake, Hello, pairing); beyond it the oldest is
    /// evicted.
    pub max_pending: usize,
    /// Seed of every random choice (session ids, PINs, SPAKE2 scalars, QUIC ids). Draw it
    /// from the OS in production, fix it in simulations.
    pub seed: [u8; 32],
}

impl HostConfig {
    /// Defaults: pairing required, a window open 120 s with 3 wrong PINs, 60 s at the PIN
    /// prompt, 10 s setup, 8 s idle timeout, 1 s keep-alive, 8 streaming and 16 pending
    /// connections.
    pub fn new(identity: Identity, seed: [u8; 32]) -> Self {
        Self {
            identity,
            require_pairing: true,
            pin_ttl: DEFAULT_PIN_TTL,
            pairing_timeout: Duration::from_secs(60),
            window: WindowConfig::default(),
            backoff: BackoffConfig::default(),
            setup_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(8),
            keep_alive: Some(Duration::from_secs(1)),
            max_connections: 8,
            max_pending: 16,
            seed,
        }
    }
}

/// What the host grants a client in Welcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionOffer {
    /// Codec of the stream.
    pub codec: Codec,
    /// FEC scheme.
    pub fec: FecScheme,
    /// Parity shards as a percentage of data shards.
    pub parity_percent: u8,
    /// Payload bytes per FEC shard (non-zero, even).
    pub shard_payload: u16,
    /// The host's data-plane UDP port.
    pub data_port: u16,
    /// The mode granted.
    pub mode: Mode,
}

/// Something the host application should know or act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum HostEvent {
    /// A QUIC/TLS handshake completed.
    Connected {
        /// The connection.
        conn: ConnId,
        /// The client's address.
        peer: SocketAddr,
        /// SHA-256 of the client's certificate.
        fingerprint: Fingerprint,
    },
    /// The pairing window closed on its own (a client paired, or the failure budget is
    /// spent): tell the operator, who must arm a new PIN for the next pairing.
    PairingClosed {
        /// Why.
        why: Refusal,
    },
    /// A PIN ceremony ended. On success the fingerprint is trusted from now on; persist it.
    PairingResult {
        /// The connection.
        conn: ConnId,
        /// The client's certificate fingerprint.
        fingerprint: Fingerprint,
        /// The name the client gave.
        client_name: String,
        /// Paired.
        ok: bool,
    },
    /// A client said Hello (after pairing, if it asked to pair): answer with
    /// [`HostSession::accept`] or [`HostSession::refuse`].
    HelloReceived {
        /// The connection.
        conn: ConnId,
        /// What the client asked for.
        hello: Hello,
        /// The client's certificate fingerprint.
        fingerprint: Fingerprint,
        /// Whether the fingerprint is trusted (paired).
        paired: bool,
    },
    /// The client sent Start: begin sending media with these parameters.
    Started {
        /// The connection.
        conn: ConnId,
        /// What the data plane needs.
        params: DataPlaneParams,
    },
    /// The client asks for another mode: rebuild source and encoder, then call
    /// [`HostSession::reconfigured`].
    ReconfigureRequested {
        /// The connection.
        conn: ConnId,
        /// The mode asked for.
        mode: Mode,
    },
    /// The client asks for a key frame.
    IdrRequested {
        /// The connection.
        conn: ConnId,
    },
    /// The client's data-plane loss report.
    LossReport {
        /// The connection.
        conn: ConnId,
        /// The report.
        report: LossReport,
    },
    /// The client's playback statistics.
    Stats {
        /// The connection.
        conn: ConnId,
        /// The statistics.
        stats: Stats,
    },
    /// The client installed key generation `generation` (it acknowledged
    /// [`HostSession::update_key`]): the data-plane sender switches to it at its next frame.
    KeyUpdated {
        /// The connection.
        conn: ConnId,
        /// The new generation.
        generation: u32,
        /// Its exported key material.
        key_material: KeyMaterial,
    },
    /// An input event from a streaming client.
    Input {
        /// The connection.
        conn: ConnId,
        /// The event.
        event: InputEvent,
    },
    /// A client through Hello found every streaming slot taken: it is told `Goodbye(Busy)`
    /// with [`slots_full_text`] (its [`HostEvent::Closed`] follows). Tell the operator, who
    /// may raise the limit ([`HostConfig::max_connections`]).
    SlotsFull {
        /// The refused connection.
        conn: ConnId,
        /// Its client's certificate fingerprint.
        fingerprint: Fingerprint,
        /// Connections holding a slot.
        streaming: usize,
        /// The limit.
        max: usize,
    },
    /// The connection ended; no more events for it.
    Closed {
        /// The connection.
        conn: ConnId,
        /// How.
        closed: Closed,
    },
}

/// Counters of the host endpoint, peer misbehaviour included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostStats {
    /// Connections accepted at the QUIC level.
    pub connections: u64,
    /// Connections refused at the QUIC level: both pools full.
    pub refused_connections: u64,
    /// Admissions refused with `Busy`: every streaming slot taken.
    pub refused_busy: u64,
    /// Unpaired clients refused with `NotPaired`.
    pub refused_not_paired: u64,
    /// Requests to pair refused with `PairingClosed` (no window open).
    pub refused_pairing_closed: u64,
    /// Requests to pair refused with `RetryLater` (the address is backing off).
    pub refused_backoff: u64,
    /// `PairStart`s refused with `Busy` because another ceremony was running.
    pub refused_concurrent_pairing: u64,
    /// Pending connections ended to make room for a new one.
    pub evicted_pending: u64,
    /// Connections ended at a setup or pairing deadline.
    pub expired_pending: u64,
    /// Of `expired_pending`: connections still in the QUIC/TLS handshake at the setup
    /// deadline (a peer that starts handshakes and never finishes them).
    pub expired_handshakes: u64,
    /// Input datagrams from a connection whose client is not paired (dropped).
    pub unpaired_input_datagrams: u64,
    /// Control frames that did not decode (connection ended).
    pub malformed_messages: u64,
    /// Control frames over the size limit (connection ended; also in `malformed_messages`).
    pub oversized_frames: u64,
    /// Well-formed messages out of place: wrong direction, wrong phase, replays.
    pub unexpected_messages: u64,
    /// Datagrams that did not decode (dropped).
    pub malformed_datagrams: u64,
    /// Well-formed datagrams outside a streaming session (dropped).
    pub dropped_datagrams: u64,
    /// PIN ceremonies started (`PairStart` received).
    pub pairing_attempts: u64,
    /// PIN ceremonies that failed (they count against the window and the address).
    pub pairing_failures: u64,
    /// Clients paired.
    pub pairings: u64,
    /// Endpoint responses dropped because too many were queued.
    pub dropped_responses: u64,
    /// Key updates proposed (`KeyUpdate` sent).
    pub key_updates_proposed: u64,
    /// Key updates acknowledged by the client.
    pub key_updates: u64,
    /// Connections ended because the client did not acknowledge a key update in time.
    pub key_update_timeouts: u64,
}

/// The host's admission state as the operator sees it (`GET /api/status`, `"pf1"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AdmissionStatus {
    /// Whether unpaired clients are refused (`false`: `serve --allow-unpaired`).
    pub require_pairing: bool,
    /// The pairing window: open (and for how long), or closed and why; failures used and
    /// left.
    pub window: WindowStatus,
    /// Addresses in the per-address backoff table.
    pub backoff_addresses: usize,
    /// Connections not admitted yet (handshake, Hello, PIN prompt, ceremony).
    pub pending: usize,
    /// Of [`HostConfig::max_pending`].
    pub max_pending: usize,
    /// Admitted connections (streaming slots taken).
    pub admitted: usize,
    /// Of [`HostConfig::max_connections`].
    pub max_connections: usize,
    /// The counters.
    pub stats: HostStats,
}

/// The Goodbye(Busy) text of a client refused because every streaming slot is taken, e.g.
/// "the host is streaming to 2 clients (max 2): try again later".
pub fn slots_full_text(streaming: usize, max: usize) -> String {
    let clients = if streaming == 1 { "client" } else { "clients" };
    format!("the host is streaming to {streaming} {clients} (max {max}): try again later")
}

/// Where an admitted connection stands ([`HostSession::admitted`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AdmittedPhase {
    /// Through Hello, waiting for the application's accept or refuse.
    AwaitDecision,
    /// Welcome sent, waiting for Start.
    AwaitStart,
    /// Start received: the data plane runs.
    Streaming,
}

/// One connection holding a streaming slot, as [`HostSession::admitted`] reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdmittedConn {
    /// The connection.
    pub conn: ConnId,
    /// SHA-256 of the client's certificate.
    pub fingerprint: Fingerprint,
    /// The client's address now (IPv4 peers of a dual-stack socket as `a.b.c.d`).
    pub peer: SocketAddr,
    /// Its phase.
    pub phase: AdmittedPhase,
    /// The mode streamed now (after renegotiation); before Start, the mode granted or asked
    /// for.
    pub mode: Mode,
    /// When it took its slot.
    pub admitted_at: Instant,
    /// What Welcome granted (codec, FEC, parity), once accepted; its mode is the one at
    /// Start (see `mode` for now).
    pub offer: Option<SessionOffer>,
}

#[derive(Debug)]
struct Live {
    params: DataPlaneParams,
    epoch: u32,
    mode: Mode,
    /// The data-plane key generation the client acknowledged last (0: Welcome's).
    key_generation: u32,
    /// A `KeyUpdate` sent and not yet acknowledged: its generation.
    key_pending: Option<u32>,
}

#[derive(Debug)]
enum Phase {
    Handshaking,
    AwaitHello,
    PairReady,
    PairConfirm(Box<HostPairing>),
    AwaitDecision,
    AwaitStart {
        session_id: u64,
        offer: SessionOffer,
    },
    Streaming(Box<Live>),
    Closed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Handshaking => "handshaking",
            Phase::AwaitHello => "waiting for Hello",
            Phase::PairReady => "waiting for PairStart",
            Phase::PairConfirm(_) => "waiting for PairConfirm",
            Phase::AwaitDecision => "waiting for accept or refuse",
            Phase::AwaitStart { .. } => "waiting for Start",
            Phase::Streaming(_) => "streaming",
            Phase::Closed => "closed",
        }
    }

    /// Not admitted yet: counts against [`HostConfig::max_pending`].
    fn is_pending(&self) -> bool {
        matches!(
            self,
            Phase::Handshaking | Phase::AwaitHello | Phase::PairReady | Phase::PairConfirm(_)
        )
    }

    /// Admitted: holds one of [`HostConfig::max_connections`].
    fn is_admitted(&self) -> bool {
        matches!(
            self,
            Phase::AwaitDecision | Phase::AwaitStart { .. } | Phase::Streaming(_)
        )
    }
}

struct HostConn {
    id: ConnId,
    link: Link,
    phase: Phase,
    fingerprint: Fingerprint,
    hello: Option<Hello>,
    /// The client's address when it connected (backoff key, logs).
    peer: SocketAddr,
    /// Setup deadline (handshake and Hello, pairing, Start).
    deadline: Option<Instant>,
    /// When it took a streaming slot.
    admitted_at: Option<Instant>,
}

/// A fixed wall clock for quinn's address-validation tokens, which this host never issues
/// (no Retry, no NEW_TOKEN): the state machine reads no clock.
#[derive(Debug)]
struct NoWallClock;

impl quinn_proto::TimeSource for NoWallClock {
    fn now(&self) -> SystemTime {
        SystemTime::UNIX_EPOCH
    }
}

/// The host's punktfunk/1 endpoint.
pub struct HostSession {
    config: HostConfig,
    endpoint: Endpoint,
    conns: BTreeMap<ConnId, HostConn>,
    by_handle: BTreeMap<quinn_proto::ConnectionHandle, ConnId>,
    next_id: u64,
    trusted: BTreeSet<Fingerprint>,
    window: PairingWindow<Pin>,
    backoff: AddressBackoff,
    rng: ChaCha20Rng,
    events: VecDeque<HostEvent>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    stats: HostStats,
    cursor: ConnId,
    scratch: Vec<u8>,
}

impl std::fmt::Debug for HostSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostSession")
            .field("fingerprint", &self.config.identity.fingerprint())
            .field("connections", &self.conns.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl HostSession {
    /// A host endpoint trusting the `paired` client fingerprints.
    pub fn new(
        config: HostConfig,
        paired: impl IntoIterator<Item = Fingerprint>,
    ) -> Result<Self, SessionError> {
        let mut rng = ChaCha20Rng::from_seed(config.seed);
        let tls = tls::server_config(&config.identity)?;
        let quic_tls =
            QuicServerConfig::try_from(tls).map_err(|e| SessionError::QuicTls(e.to_string()))?;
        let mut token_key = [0u8; 64];
        rng.fill_bytes(&mut token_key);
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&token_key);
        let mut server = quinn_proto::ServerConfig::new(Arc::new(quic_tls), Arc::new(prk));
        server
            .transport_config(Arc::new(link::transport(
                config.idle_timeout,
                config.keep_alive,
                1,
            )))
            .time_source(Arc::new(NoWallClock))
            .max_incoming((config.max_connections.max(1) + config.max_pending.max(1)) * 2)
            .incoming_buffer_size(64 * 1024)
            .incoming_buffer_size_total(1024 * 1024);
        let endpoint = link::endpoint(&mut rng, Some(Arc::new(server)));
        Ok(Self {
            endpoint,
            conns: BTreeMap::new(),
            by_handle: BTreeMap::new(),
            next_id: 1,
            trusted: paired.into_iter().collect(),
            window: PairingWindow::new(config.window),
            backoff: AddressBackoff::new(config.backoff),
            rng,
            events: VecDeque::new(),
            responses: VecDeque::new(),
            stats: HostStats::default(),
            cursor: ConnId(0),
            scratch: Vec::new(),
            config,
        })
    }

    /// The host certificate's fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.config.identity.fingerprint()
    }

    /// Counters.
    pub fn stats(&self) -> &HostStats {
        &self.stats
    }

    /// Connections not yet closed.
    pub fn connections(&self) -> Vec<ConnId> {
        self.conns
            .values()
            .filter(|c| !matches!(c.phase, Phase::Closed))
            .map(|c| c.id)
            .collect()
    }

    /// Whether no connection is left, closed or draining.
    pub fn is_idle(&self) -> bool {
        self.conns.is_empty() && self.responses.is_empty()
    }

    /// Whether `fp` is trusted (paired).
    pub fn is_trusted(&self, fp: &Fingerprint) -> bool {
        self.trusted.contains(fp)
    }

    /// Trusts `fp` from now on (e.g. after the management API paired it).
    pub fn trust(&mut self, fp: Fingerprint) {
        self.trusted.insert(fp);
    }

    /// Stops trusting `fp` (unpair). Open connections are not ended. Returns whether it was
    /// trusted.
    pub fn untrust(&mut self, fp: &Fingerprint) -> bool {
        self.trusted.remove(fp)
    }

    /// The operator opens the pairing window with `pin` for [`HostConfig::pin_ttl`]:
    /// replaces an armed PIN and restores the failure budget.
    pub fn arm_pin(&mut self, now: Instant, pin: Pin) {
        self.window.arm(now, pin, self.config.pin_ttl);
    }

    /// The operator closes the pairing window; clients at the PIN prompt are told
    /// `PairingClosed`. (A ceremony already past `PairStart` finishes.)
    pub fn disarm_pin(&mut self, now: Instant) {
        self.window.close();
        self.sweep_parked(now);
    }

    /// Whether the pairing window is open.
    pub fn has_armed_pin(&mut self, now: Instant) -> bool {
        self.window.is_open(now)
    }

    /// The pairing window as the operator sees it.
    pub fn pairing_status(&mut self, now: Instant) -> WindowStatus {
        self.window.status(now)
    }

    /// The pairing window, backoff table, pools and counters at `now`.
    pub fn admission_status(&mut self, now: Instant) -> AdmissionStatus {
        AdmissionStatus {
            require_pairing: self.config.require_pairing,
            window: self.window.status(now),
            backoff_addresses: self.backoff.len(),
            pending: self.count(Phase::is_pending),
            max_pending: self.config.max_pending.max(1),
            admitted: self.count(Phase::is_admitted),
            max_connections: self.config.max_connections,
            stats: self.stats,
        }
    }

    /// The connections holding a streaming slot (closing ones excluded), in id order.
    pub fn admitted(&self) -> Vec<AdmittedConn> {
        self.conns
            .values()
            .filter(|c| !c.link.is_closing())
            .filter_map(|c| {
                let (phase, mode, offer) = match &c.phase {
                    Phase::AwaitDecision => (
                        AdmittedPhase::AwaitDecision,
                        c.hello.as_ref()?.requested,
                        None,
                    ),
                    Phase::AwaitStart { offer, .. } => {
                        (AdmittedPhase::AwaitStart, offer.mode, Some(*offer))
                    }
                    Phase::Streaming(live) => {
                        let p = &live.params;
                        let offer = SessionOffer {
                            codec: p.codec,
                            fec: p.fec,
                            parity_percent: p.parity_percent,
                            shard_payload: p.shard_payload,
                            data_port: p.host_data_port,
                            mode: p.mode,
                        };
                        (AdmittedPhase::Streaming, live.mode, Some(offer))
                    }
                    _ => return None,
                };
                let mut peer = c.link.conn.remote_address();
                peer.set_ip(peer.ip().to_canonical());
                Some(AdmittedConn {
                    conn: c.id,
                    fingerprint: c.fingerprint,
                    peer,
                    phase,
                    mode,
                    admitted_at: c.admitted_at?,
                    offer,
                })
            })
            .collect()
    }

    /// The fingerprint of a connection's client, once connected.
    pub fn peer_fingerprint(&self, conn: ConnId) -> Option<Fingerprint> {
        self.conns
            .get(&conn)
            .filter(|c| !matches!(c.phase, Phase::Handshaking))
            .map(|c| c.fingerprint)
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<HostEvent> {
        self.events.pop_front()
    }

    /// A UDP datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        let ev = self
            .endpoint
            .handle(now, from, None, None, BytesMut::from(bytes), &mut buf);
        match ev {
            Some(DatagramEvent::ConnectionEvent(ch, cev)) => {
                if let Some(&id) = self.by_handle.get(&ch) {
                    if let Some(c) = self.conns.get_mut(&id) {
                        c.link.conn.handle_event(cev);
                    }
                    self.process(id, now);
                }
            }
            Some(DatagramEvent::NewConnection(incoming)) => {
                // A new connection is pending until admitted: make room in that pool by
                // ending the oldest pending one, so parked or idle strangers cannot hold it.
                if self.count(Phase::is_pending) >= self.config.max_pending.max(1)
                    && let Some(oldest) = self
                        .conns
                        .values()
                        // A running ceremony is spared: ending it would count as a
                        // failed pairing (it has its own deadline).
                        .find(|c| {
                            c.phase.is_pending()
                                && !matches!(c.phase, Phase::PairConfirm(_))
                                && !c.link.is_closing()
                        })
                        .map(|c| c.id)
                {
                    self.stats.evicted_pending += 1;
                    self.end(
                        oldest,
                        now,
                        GoodbyeReason::Busy,
                        "too many connections are waiting to be admitted: try again",
                    );
                    self.process(oldest, now);
                }
                let open = self.count(|p| !matches!(p, Phase::Closed));
                if open >= self.config.max_connections + self.config.max_pending.max(1) {
                    self.stats.refused_connections += 1;
                    let t = self.endpoint.refuse(incoming, &mut buf);
                    self.queue_response(t, &buf);
                } else {
                    match self.endpoint.accept(incoming, now, &mut buf, None) {
                        Ok((ch, conn)) => {
                            let id = ConnId(self.next_id);
                            self.next_id += 1;
                            self.stats.connections += 1;
                            self.by_handle.insert(ch, id);
                            self.conns.insert(
                                id,
                                HostConn {
                                    id,
                                    link: Link::new(ch, conn),
                                    phase: Phase::Handshaking,
                                    fingerprint: Fingerprint([0; 32]),
                                    hello: None,
                                    peer: from,
                                    // One deadline for handshake and Hello together: a
                                    // peer dripping handshake packets keeps QUIC's idle
                                    // timer alive, not this.
                                    deadline: Some(now + self.config.setup_timeout),
                                    admitted_at: None,
                                },
                            );
                            self.process(id, now);
                        }
                        Err(e) => {
                            if let Some(t) = e.response {
                                self.queue_response(t, &buf);
                            }
                        }
                    }
                }
            }
            Some(DatagramEvent::Response(t)) => self.queue_response(t, &buf),
            None => {}
        }
        self.scratch = buf;
    }

    /// Open connections whose phase satisfies `f`.
    fn count(&self, f: impl Fn(&Phase) -> bool) -> usize {
        self.conns
            .values()
            .filter(|c| !c.link.is_closing() && f(&c.phase))
            .count()
    }

    /// Ends the connections at the PIN prompt once the window has closed.
    fn sweep_parked(&mut self, now: Instant) {
        let Err(why) = self.window.pin(now) else {
            return;
        };
        let parked: Vec<ConnId> = self
            .conns
            .values()
            .filter(|c| matches!(c.phase, Phase::PairReady) && !c.link.is_closing())
            .map(|c| c.id)
            .collect();
        for id in parked {
            self.stats.refused_pairing_closed += 1;
            self.end(id, now, GoodbyeReason::PairingClosed, why.as_str());
            self.process(id, now);
        }
    }

    fn queue_response(&mut self, t: quinn_proto::Transmit, buf: &[u8]) {
        if self.responses.len() >= MAX_RESPONSES {
            self.stats.dropped_responses += 1;
            return;
        }
        let Some(bytes) = buf.get(..t.size) else {
            return;
        };
        self.responses.push_back((
            Transmit {
                destination: t.destination,
                size: t.size,
                segment_size: t.segment_size,
                send_at: None,
            },
            bytes.to_vec(),
        ));
    }

    /// Timers: call when [`HostSession::poll_timeout`]'s instant has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.sweep_parked(now);
        let ids: Vec<ConnId> = self.conns.keys().copied().collect();
        for id in ids {
            if let Some(c) = self.conns.get_mut(&id) {
                c.link.handle_timeout(now);
                let late = c.deadline.is_some_and(|d| now >= d);
                if late {
                    c.deadline = None;
                    let text = match &c.phase {
                        Phase::Streaming(live) if live.key_pending.is_some() => {
                            self.stats.key_update_timeouts += 1;
                            format!(
                                "the client did not acknowledge data key generation {} in time",
                                live.key_pending.unwrap_or_default()
                            )
                        }
                        phase => {
                            self.stats.expired_pending += 1;
                            if matches!(phase, Phase::Handshaking) {
                                self.stats.expired_handshakes += 1;
                            }
                            format!("{SETUP_TIMED_OUT} while {}", phase.name())
                        }
                    };
                    self.end(id, now, GoodbyeReason::Timeout, &text);
                }
            }
            self.process(id, now);
        }
    }

    /// When [`HostSession::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.conns
            .values_mut()
            .flat_map(|c| [c.link.poll_timeout(), c.deadline])
            .flatten()
            .min()
    }

    /// The next datagram to send, written into `buf` (cleared first).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((t, bytes)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(t);
        }
        // Round robin from the connection after the last one that sent.
        let order: Vec<ConnId> = self
            .conns
            .range(ConnId(self.cursor.0 + 1)..)
            .chain(self.conns.range(..=self.cursor))
            .map(|(&id, _)| id)
            .collect();
        for id in order {
            let Some(c) = self.conns.get_mut(&id) else {
                continue;
            };
            if let Some(t) = c.link.poll_transmit(now, buf) {
                self.cursor = id;
                return Some(t);
            }
        }
        None
    }

    fn conn_mut(&mut self, conn: ConnId) -> Result<&mut HostConn, SessionError> {
        match self.conns.get_mut(&conn) {
            Some(c) if !matches!(c.phase, Phase::Closed) && !c.link.is_closing() => Ok(c),
            _ => Err(SessionError::UnknownConnection(conn)),
        }
    }

    /// Answers a Hello: sends Welcome with `offer` and a new session id, which it returns.
    pub fn accept(
        &mut self,
        now: Instant,
        conn: ConnId,
        offer: SessionOffer,
    ) -> Result<u64, SessionError> {
        let session_id = self.rng.next_u64();
        let setup = self.config.setup_timeout;
        let c = self.conn_mut(conn)?;
        if !matches!(c.phase, Phase::AwaitDecision) {
            return Err(SessionError::WrongPhase {
                op: "accept",
                phase: c.phase.name(),
            });
        }
        c.link.send(&Message::Welcome(Welcome {
            session_id,
            codec: offer.codec,
            fec: offer.fec,
            parity_percent: offer.parity_percent,
            shard_payload: offer.shard_payload,
            data_port: offer.data_port,
            mode: offer.mode,
            key_epoch: 0,
            exporter_label: String::from_utf8_lossy(DATA_KEY_LABEL).into_owned(),
        }))?;
        c.phase = Phase::AwaitStart { session_id, offer };
        c.deadline = Some(now + setup);
        Ok(session_id)
    }

    /// Refuses a Hello (or ends any connection): Goodbye with `reason`.
    pub fn refuse(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: GoodbyeReason,
        text: &str,
    ) -> Result<(), SessionError> {
        self.goodbye(now, conn, reason, text)
    }

    /// Ends a connection with Goodbye{reason, text}; reports [`HostEvent::Closed`].
    pub fn goodbye(
        &mut self,
        now: Instant,
        conn: ConnId,
        reason: GoodbyeReason,
        text: &str,
    ) -> Result<(), SessionError> {
        self.conn_mut(conn)?;
        self.end(conn, now, reason, text);
        Ok(())
    }

    /// Says Goodbye to every connection (host shutdown).
    pub fn close_all(&mut self, now: Instant, reason: GoodbyeReason, text: &str) {
        for id in self.connections() {
            self.end(id, now, reason, text);
        }
    }

    /// The new mode runs: sends Reconfigured{mode, epoch + 1, first_frame_id}, whether the
    /// client asked (Reconfigure) or the host changed mode on its own. Returns the epoch.
    pub fn reconfigured(
        &mut self,
        conn: ConnId,
        mode: Mode,
        first_frame_id: u32,
    ) -> Result<u32, SessionError> {
        let c = self.conn_mut(conn)?;
        let Phase::Streaming(live) = &mut c.phase else {
            return Err(SessionError::WrongPhase {
                op: "reconfigured",
                phase: c.phase.name(),
            });
        };
        let epoch = live.epoch.wrapping_add(1);
        c.link.send(&Message::Reconfigured(Reconfigured {
            mode,
            epoch,
            first_frame_id,
        }))?;
        live.epoch = epoch;
        live.mode = mode;
        Ok(epoch)
    }

    /// Proposes the next data-plane key generation to a streaming client (`KeyUpdate`, see the
    /// module docs) and returns it. While one is outstanding, returns its generation and sends
    /// nothing. The key material comes with [`HostEvent::KeyUpdated`] once the client has
    /// installed it; the client must acknowledge within [`HostConfig::setup_timeout`].
    pub fn update_key(&mut self, now: Instant, conn: ConnId) -> Result<u32, SessionError> {
        let setup = self.config.setup_timeout;
        let c = self.conn_mut(conn)?;
        let Phase::Streaming(live) = &mut c.phase else {
            return Err(SessionError::WrongPhase {
                op: "update_key",
                phase: c.phase.name(),
            });
        };
        if let Some(g) = live.key_pending {
            return Ok(g);
        }
        let Some(generation) = live.key_generation.checked_add(1) else {
            // 2^32 generations of 2^28 datagrams: never reached; refuse rather than wrap.
            return Err(SessionError::WrongPhase {
                op: "update_key",
                phase: "out of key generations",
            });
        };
        c.link.send(&Message::KeyUpdate { generation })?;
        live.key_pending = Some(generation);
        c.deadline = Some(now + setup);
        self.stats.key_updates_proposed += 1;
        Ok(generation)
    }

    /// The data-plane key generation a streaming client acknowledged last, and the one
    /// proposed and not yet acknowledged.
    pub fn key_generation(&self, conn: ConnId) -> Option<(u32, Option<u32>)> {
        match &self.conns.get(&conn)?.phase {
            Phase::Streaming(live) => Some((live.key_generation, live.key_pending)),
            _ => None,
        }
    }

    /// Sends the host's statistics to a streaming client.
    pub fn send_stats(&mut self, conn: ConnId, stats: Stats) -> Result<(), SessionError> {
        let c = self.conn_mut(conn)?;
        if !matches!(c.phase, Phase::Streaming(_)) {
            return Err(SessionError::WrongPhase {
                op: "send_stats",
                phase: c.phase.name(),
            });
        }
        c.link.send(&Message::Stats(stats))?;
        Ok(())
    }

    /// The data-plane parameters of a streaming connection.
    pub fn data_params(&self, conn: ConnId) -> Option<&DataPlaneParams> {
        match &self.conns.get(&conn)?.phase {
            Phase::Streaming(live) => Some(&live.params),
            _ => None,
        }
    }

    /// Ends `id` from this side and reports it.
    fn end(&mut self, id: ConnId, now: Instant, reason: GoodbyeReason, text: &str) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if let Some(closed) = c.link.goodbye(now, reason, text) {
            self.report_closed(id, now, closed);
        }
    }

    fn report_closed(&mut self, id: ConnId, now: Instant, closed: Closed) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if c.link.reported {
            return;
        }
        c.link.reported = true;
        c.deadline = None;
        // A ceremony cut short after its PIN was consumed is a failed attempt.
        let mid_ceremony = matches!(c.phase, Phase::PairConfirm(_));
        c.phase = Phase::Closed;
        if mid_ceremony {
            self.pairing_failed(id, now);
        }
        self.events
            .push_back(HostEvent::Closed { conn: id, closed });
    }

    /// A ceremony failed after `PairStart`: it counts against the window's budget and makes
    /// the address back off.
    fn pairing_failed(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        self.stats.pairing_failures += 1;
        self.backoff.record_failure(now, c.peer.ip());
        if self.window.record_failure(now) {
            self.events.push_back(HostEvent::PairingClosed {
                why: Refusal::Exhausted,
            });
        }
        self.events.push_back(HostEvent::PairingResult {
            conn: id,
            fingerprint: c.fingerprint,
            client_name: c
                .hello
                .as_ref()
                .map(|h| h.client_name.clone())
                .unwrap_or_default(),
            ok: false,
        });
    }

    /// Runs a connection after input: endpoint events, QUIC events, the control stream,
    /// datagrams; removes it once drained.
    fn process(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.link.drive_endpoint(&mut self.endpoint);
        while let Some(ev) = self.conns.get_mut(&id).and_then(|c| c.link.conn.poll()) {
            self.on_quic_event(id, now, ev);
        }
        self.read_stream(id, now);
        while let Some(d) = self.conns.get_mut(&id).and_then(|c| c.link.recv_datagram()) {
            self.on_datagram(id, &d);
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.link.flush();
        c.link.drive_endpoint(&mut self.endpoint);
        if c.link.conn.is_drained() {
            let closed = Closed {
                by_peer: false,
                reason: GoodbyeReason::Normal,
                text: "drained".into(),
            };
            self.report_closed(id, now, closed);
            if let Some(c) = self.conns.remove(&id) {
                self.by_handle.remove(&c.link.handle);
            }
        }
    }

    fn on_quic_event(&mut self, id: ConnId, now: Instant, ev: Event) {
        let setup = self.config.setup_timeout;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match ev {
            Event::Connected => {
                let Some(fp) = tls::peer_fingerprint(c.link.conn.crypto_session()) else {
                    // The verifier makes client certificates mandatory; be safe anyway.
                    self.end(
                        id,
                        now,
                        GoodbyeReason::NotPaired,
                        "a client certificate is required",
                    );
                    return;
                };
                c.fingerprint = fp;
                c.phase = Phase::AwaitHello;
                // The deadline set at the first packet runs on: handshake and Hello share it.
                c.deadline = c.deadline.or(Some(now + setup));
                let peer = c.link.conn.remote_address();
                self.events.push_back(HostEvent::Connected {
                    conn: id,
                    peer,
                    fingerprint: fp,
                });
            }
            Event::ConnectionLost { reason } => {
                let closed = c.link.lost(&reason);
                self.report_closed(id, now, closed);
            }
            Event::Stream(StreamEvent::Opened { dir: Dir::Bi }) => c.link.accept_stream(),
            Event::Stream(StreamEvent::Writable { .. }) => c.link.flush(),
            Event::Stream(StreamEvent::Finished { .. }) => c.link.stream_finished(now),
            Event::Stream(_)
            | Event::HandshakeDataReady
            | Event::DatagramReceived
            | Event::DatagramsUnblocked => {}
        }
    }

    fn read_stream(&mut self, id: ConnId, now: Instant) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if matches!(c.phase, Phase::Handshaking | Phase::Closed) {
            return;
        }
        c.link.accept_stream();
        let inbox = c.link.read();
        for m in inbox.messages {
            if self
                .conns
                .get(&id)
                .is_none_or(|c| matches!(c.phase, Phase::Closed))
            {
                return;
            }
            match m {
                Ok(msg) => self.on_message(id, now, msg),
                Err(e) => {
                    self.stats.malformed_messages += 1;
                    if matches!(e, MessageError::FrameTooLong { .. }) {
                        self.stats.oversized_frames += 1;
                    }
                    self.end(
                        id,
                        now,
                        GoodbyeReason::ProtocolViolation,
                        &format!("malformed control message: {e}"),
                    );
                }
            }
        }
        if inbox.ended {
            self.end(
                id,
                now,
                GoodbyeReason::ProtocolViolation,
                "the control stream ended without Goodbye",
            );
        }
    }

    fn on_datagram(&mut self, id: ConnId, bytes: &[u8]) {
        let Some(c) = self.conns.get(&id) else {
            return;
        };
        let streaming = matches!(c.phase, Phase::Streaming(_));
        // Checked per datagram: unpairing a client stops its input at once.
        let paired = self.trusted.contains(&c.fingerprint);
        match Datagram::decode(bytes) {
            Ok(Datagram::Input(event)) if streaming && paired => {
                self.events.push_back(HostEvent::Input { conn: id, event });
            }
            Ok(Datagram::Input(_)) if streaming => self.stats.unpaired_input_datagrams += 1,
            Ok(_) => self.stats.dropped_datagrams += 1,
            Err(_) => self.stats.malformed_datagrams += 1,
        }
    }

    fn unexpected(&mut self, id: ConnId, now: Instant, msg: &Message) {
        self.stats.unexpected_messages += 1;
        let phase = self.conns.get(&id).map_or("gone", |c| c.phase.name());
        self.end(
            id,
            now,
            GoodbyeReason::ProtocolViolation,
            &format!("unexpected {} while {phase}", msg.name()),
        );
    }

    fn on_message(&mut self, id: ConnId, now: Instant, msg: Message) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        match (&mut c.phase, msg) {
            (_, Message::Goodbye(g)) => {
                let closed = c.link.peer_goodbye(now, &g);
                self.report_closed(id, now, closed);
            }
            (Phase::AwaitHello, Message::Hello(h)) => self.on_hello(id, now, h),
            (Phase::PairReady, Message::PairStart { spake }) => self.on_pair_start(id, now, &spake),
            (Phase::PairConfirm(hp), Message::PairConfirm { mac }) => {
                let ok = hp.confirm(&mac).is_ok();
                let fp = c.fingerprint;
                let name = c
                    .hello
                    .as_ref()
                    .map(|h| h.client_name.clone())
                    .unwrap_or_default();
                if !ok {
                    // report_closed (through end) records the failure.
                    self.end(
                        id,
                        now,
                        GoodbyeReason::PairingFailed,
                        "key confirmation failed: wrong PIN, or the connection is relayed",
                    );
                    return;
                }
                let ip = c.peer.ip();
                self.trusted.insert(fp);
                self.stats.pairings += 1;
                self.events.push_back(HostEvent::PairingResult {
                    conn: id,
                    fingerprint: fp,
                    client_name: name,
                    ok: true,
                });
                if let Err(e) = c.link.send(&Message::PairResult { ok: true }) {
                    self.end(id, now, GoodbyeReason::Internal, &e.to_string());
                    return;
                }
                c.phase = Phase::AwaitDecision;
                c.deadline = None;
                let hello = c.hello.clone();
                // A window pairs one client.
                self.backoff.record_success(ip);
                self.window.record_success();
                self.events
                    .push_back(HostEvent::PairingClosed { why: Refusal::Used });
                self.sweep_parked(now);
                if let Some(hello) = hello {
                    self.admit(id, now, hello, fp, true);
                }
            }
            (Phase::AwaitStart { session_id, offer }, Message::Start(start)) => {
                let (session_id, offer) = (*session_id, *offer);
                let Some(key_material) =
                    tls::export_data_key(c.link.conn.crypto_session(), session_id, 0)
                else {
                    self.end(id, now, GoodbyeReason::Internal, "TLS key export failed");
                    return;
                };
                let params = DataPlaneParams {
                    session_id,
                    key_material,
                    key_epoch: 0,
                    codec: offer.codec,
                    fec: offer.fec,
                    parity_percent: offer.parity_percent,
                    shard_payload: offer.shard_payload,
                    mode: offer.mode,
                    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
                    peer_ip: c.link.conn.remote_address().ip().to_canonical(),
                    host_data_port: offer.data_port,
                    client_data_port: start.data_port,
                };
                c.phase = Phase::Streaming(Box::new(Live {
                    params: params.clone(),
                    epoch: 0,
                    mode: offer.mode,
                    key_generation: 0,
                    key_pending: None,
                }));
                c.deadline = None;
                self.events
                    .push_back(HostEvent::Started { conn: id, params });
            }
            (Phase::Streaming(_), Message::Reconfigure(mode)) => {
                self.events
                    .push_back(HostEvent::ReconfigureRequested { conn: id, mode });
            }
            (Phase::Streaming(_), Message::IdrRequest) => {
                self.events.push_back(HostEvent::IdrRequested { conn: id });
            }
            (Phase::Streaming(_), Message::LossReport(report)) => {
                self.events
                    .push_back(HostEvent::LossReport { conn: id, report });
            }
            (Phase::Streaming(_), Message::Stats(stats)) => {
                self.events.push_back(HostEvent::Stats { conn: id, stats });
            }
            (Phase::Streaming(live), Message::KeyUpdateAck { generation })
                if live.key_pending == Some(generation) =>
            {
                let Some(key_material) = tls::export_data_key(
                    c.link.conn.crypto_session(),
                    live.params.session_id,
                    generation,
                ) else {
                    self.end(id, now, GoodbyeReason::Internal, "TLS key export failed");
                    return;
                };
                live.key_generation = generation;
                live.key_pending = None;
                c.deadline = None;
                self.stats.key_updates += 1;
                self.events.push_back(HostEvent::KeyUpdated {
                    conn: id,
                    generation,
                    key_material: KeyMaterial(key_material),
                });
            }
            (_, msg) => self.unexpected(id, now, &msg),
        }
    }

    /// A client is through Hello (and pairing): it takes a streaming slot, or is told `Busy`.
    fn admit(&mut self, id: ConnId, now: Instant, hello: Hello, fp: Fingerprint, paired: bool) {
        let others = self
            .conns
            .values()
            .filter(|c| c.id != id && !c.link.is_closing() && c.phase.is_admitted())
            .count();
        let max = self.config.max_connections;
        if others >= max {
            self.stats.refused_busy += 1;
            self.events.push_back(HostEvent::SlotsFull {
                conn: id,
                fingerprint: fp,
                streaming: others,
                max,
            });
            self.end(id, now, GoodbyeReason::Busy, &slots_full_text(others, max));
            return;
        }
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        c.phase = Phase::AwaitDecision;
        c.deadline = None;
        c.admitted_at = Some(now);
        self.events.push_back(HostEvent::HelloReceived {
            conn: id,
            hello,
            fingerprint: fp,
            paired,
        });
    }

    /// Whether `id`'s address may try a ceremony now; ends the connection with `RetryLater`
    /// if not.
    fn backoff_allows(&mut self, id: ConnId, now: Instant) -> bool {
        let Some(c) = self.conns.get(&id) else {
            return false;
        };
        let Err(wait) = self.backoff.check(now, c.peer.ip()) else {
            return true;
        };
        self.stats.refused_backoff += 1;
        // Round up: "try again in 0 s" would invite an immediate retry that fails again.
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        self.end(
            id,
            now,
            GoodbyeReason::RetryLater,
            &format!("a pairing from this address failed: try again in {secs} s"),
        );
        false
    }

    /// Whether the pairing window is open; ends the connection with `PairingClosed` if not.
    fn window_allows(&mut self, id: ConnId, now: Instant) -> bool {
        let Err(why) = self.window.pin(now) else {
            return true;
        };
        self.stats.refused_pairing_closed += 1;
        self.end(
            id,
            now,
            GoodbyeReason::PairingClosed,
            &format!(
                "{why}: the host operator must arm a PIN (punktfunk pin --pf1), then pair again"
            ),
        );
        false
    }

    fn on_hello(&mut self, id: ConnId, now: Instant, hello: Hello) {
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        if hello.version != PROTOCOL_VERSION {
            let text = format!(
                "host speaks punktfunk/1 version {PROTOCOL_VERSION}, client {}",
                hello.version
            );
            self.end(id, now, GoodbyeReason::VersionMismatch, &text);
            return;
        }
        let fp = c.fingerprint;
        let trusted = self.trusted.contains(&fp);
        c.hello = Some(hello.clone());
        c.deadline = None;
        if hello.wants_pairing {
            if !self.backoff_allows(id, now) || !self.window_allows(id, now) {
                return;
            }
            let (digits, window_end) = match self.window.pin(now) {
                Ok(pin) => (pin.digits(), self.window.poll_timeout()),
                Err(_) => return, // window_allows just saw it open, at the same `now`
            };
            let Some(c) = self.conns.get_mut(&id) else {
                return;
            };
            if let Err(e) = c.link.send(&Message::PairReady { digits }) {
                self.end(id, now, GoodbyeReason::Internal, &e.to_string());
                return;
            }
            c.phase = Phase::PairReady;
            let prompt_end = now + self.config.pairing_timeout;
            c.deadline = Some(window_end.map_or(prompt_end, |w| w.min(prompt_end)));
        } else if trusted || !self.config.require_pairing {
            self.admit(id, now, hello, fp, trusted);
        } else {
            self.stats.refused_not_paired += 1;
            self.end(
                id,
                now,
                GoodbyeReason::NotPaired,
                "this host only streams to paired clients: ask its operator to run \
                 `punktfunk pin --pf1`, then connect with --pair PIN",
            );
        }
    }

    fn on_pair_start(&mut self, id: ConnId, now: Instant, spake: &[u8; message::SPAKE_MSG_LEN]) {
        self.stats.pairing_attempts += 1;
        // One ceremony at a time: with several in flight, each would test a PIN before any
        // failure is counted against the window.
        let busy = self.conns.values().any(|c| {
            c.id != id && matches!(c.phase, Phase::PairConfirm(_)) && !c.link.is_closing()
        });
        if busy {
            self.stats.refused_concurrent_pairing += 1;
            self.end(
                id,
                now,
                GoodbyeReason::Busy,
                "another client is pairing right now: try again in a few seconds",
            );
            return;
        }
        if !self.backoff_allows(id, now) || !self.window_allows(id, now) {
            return;
        }
        let Ok(pin) = self.window.pin(now).cloned() else {
            return; // window_allows just saw it open, at the same `now`
        };
        let setup = self.config.setup_timeout;
        let Some(c) = self.conns.get_mut(&id) else {
            return;
        };
        let Some(channel_binding) = tls::channel_binding(c.link.conn.crypto_session()) else {
            self.end(id, now, GoodbyeReason::Internal, "TLS key export failed");
            return;
        };
        let ctx = PairingContext {
            client_fp: c.fingerprint.0,
            host_fp: self.config.identity.fingerprint().0,
            channel_binding,
        };
        match HostPairing::respond(&pin, ctx, spake, &mut self.rng) {
            Ok((hp, y, mac)) => {
                if let Err(e) = c.link.send(&Message::PairReply { spake: y, mac }) {
                    self.end(id, now, GoodbyeReason::Internal, &e.to_string());
                    return;
                }
                // From here on, any end but a good PairConfirm is a failed attempt
                // (report_closed records it).
                c.phase = Phase::PairConfirm(Box::new(hp));
                c.deadline = Some(now + setup);
            }
            Err(e) => {
                // A malformed SPAKE2 message is an attempt too.
                self.pairing_failed(id, now);
                self.end(id, now, GoodbyeReason::PairingFailed, &e.to_string());
            }
        }
    }
}
