//! The client's punktfunk/1 session (pure): one quinn-proto connection to a host.
//!
//! ```text
//!  Handshaking ──TLS done, host pin ok──► Hello sent ─┬─(pair)─► AwaitPairReady ──PairReady──►
//!        │ pin mismatch: Closed(HostChanged)          │   [PinNeeded → pair(pin)] PairStart ──►
//!        ▼                                            │   AwaitPairReply ──PairReply──► PairConfirm
//!                                                     │   AwaitPairResult ──PairResult{ok}──┐
//!                                                     └─(no pairing)───────────────────────►┤
//!  AwaitWelcome ◄───────────────────────────────────────────────────────────────────────────┘
//!    │ Welcome: ClientEvent::Welcome(params)
//!    ▼
//!  Welcomed ──start(port): Start──► Streaming: request_reconfigure, request_idr,
//!                                   send_loss_report, send_stats, send_input,
//!                                   KeyUpdate{g}: ClientEvent::KeyUpdate ─► install the key in
//!                                   the receiver ─► key_installed(g): KeyUpdateAck{g}
//! ```
//!
//! # Key updates
//!
//! The host names the next data-plane key generation (`KeyUpdate{g}`, `g` = the generation
//! in use + 1, one at a time). The session derives its key material from the TLS exporter and
//! reports [`ClientEvent::KeyUpdate`]; the application installs it in the receiver *beside*
//! the key in use and then calls [`ClientSession::key_installed`], which acknowledges. The
//! host seals with the new key only after the acknowledgement, so no datagram arrives under a
//! key the receiver lacks. Any other generation, or a second update while one is
//! unacknowledged, is a protocol violation.
//!
//! # Host pinning
//!
//! [`ClientConfig::host_pin`] is the fingerprint pinned for this host, if any (the act layer
//! keeps them in `pf1-known-hosts.json`). A different certificate ends the connection before
//! anything is sent, with [`GoodbyeReason::HostChanged`], unless the client is pairing: a
//! successful PIN ceremony authenticates the new certificate ([`HostTrust::Changed`]), and
//! the act layer re-pins it only then.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use quinn_proto::crypto::rustls::QuicClientConfig;
use quinn_proto::{DatagramEvent, Endpoint, Event, StreamEvent};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::SeedableRng as _;

use super::datagram::Datagram;
use super::link::{self, Link};
use super::message::{
    CodecSet, Hello, LossReport, Message, MessageError, Mode, PROTOCOL_VERSION, Reconfigured,
    Start, Stats,
};
use super::pairing::{ClientPairing, PairingContext, Pin};
use super::tls::{self, Fingerprint, Identity};
use super::{Closed, DataPlaneParams, GoodbyeReason, KeyMaterial, SessionError, Transmit};
use crate::input::wire::InputEvent;

/// SNI sent to the host. Certificates are never checked against names (pinning is by
/// fingerprint); the name only has to be a valid DNS name.
const SERVER_NAME: &str = "punktfunk.host";

/// What the client knows about the host's certificate before connecting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostPin {
    /// Never connected: trust the first certificate (TOFU).
    FirstUse,
    /// The fingerprint pinned for this host.
    Expect(Fingerprint),
}

/// How the host's certificate compared with the pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostTrust {
    /// No pin existed: pin this fingerprint once the session is established.
    FirstUse,
    /// It matched the pin.
    Pinned,
    /// It differs from the pin, and the client is pairing: the PIN ceremony will decide.
    Changed {
        /// The pinned fingerprint.
        expected: Fingerprint,
    },
}

/// How a client connects.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// The client's certificate and key.
    pub identity: Identity,
    /// Name shown on the host (≤ 64 bytes; longer is cut).
    pub name: String,
    /// Codecs the client decodes.
    pub codecs: CodecSet,
    /// The largest mode the client shows.
    pub max_mode: Mode,
    /// The mode to ask for.
    pub mode: Mode,
    /// The host's pinned certificate.
    pub host_pin: HostPin,
    /// Run the PIN ceremony.
    pub pair: bool,
    /// The PIN, if the user gave it up front; else [`ClientEvent::PinNeeded`] asks.
    pub pin: Option<Pin>,
    /// QUIC idle timeout.
    pub idle_timeout: Duration,
    /// QUIC keep-alive interval.
    pub keep_alive: Option<Duration>,
    /// Seed of every random choice (SPAKE2 scalar, QUIC ids).
    pub seed: [u8; 32],
}

impl ClientConfig {
    /// Defaults: H.264, `mode` as both requested and largest mode, trust on first use, no
    /// pairing, 8 s idle timeout, 1 s keep-alive.
    pub fn new(identity: Identity, name: &str, mode: Mode, seed: [u8; 32]) -> Self {
        Self {
            identity,
            name: name.to_owned(),
            codecs: CodecSet::default().with(super::Codec::H264),
            max_mode: mode,
            mode,
            host_pin: HostPin::FirstUse,
            pair: false,
            pin: None,
            idle_timeout: Duration::from_secs(8),
            keep_alive: Some(Duration::from_secs(1)),
            seed,
        }
    }
}

/// Something the client application should know or act on.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum ClientEvent {
    /// The handshake completed and the host's certificate is acceptable.
    Connected {
        /// SHA-256 of the host's certificate.
        fingerprint: Fingerprint,
        /// How it compared with the pin.
        trust: HostTrust,
    },
    /// The host waits for the PIN its operator armed: ask the user, then call
    /// [`ClientSession::pair`].
    PinNeeded {
        /// Digits of the PIN.
        digits: u8,
    },
    /// The PIN ceremony ended.
    PairingResult {
        /// Paired: the host now trusts this client, and the host's certificate is proven.
        ok: bool,
    },
    /// The host granted a session: prepare the data plane, then call
    /// [`ClientSession::start`].
    Welcome(DataPlaneParams),
    /// The host runs a new mode from `first_frame_id` on.
    Reconfigured(Reconfigured),
    /// The host proposes data-plane key generation `generation`: install it in the receiver
    /// beside the key in use, then call [`ClientSession::key_installed`].
    KeyUpdate {
        /// The new generation.
        generation: u32,
        /// Its exported key material.
        key_material: KeyMaterial,
    },
    /// The host's statistics.
    Stats(Stats),
    /// The connection ended; no more events.
    Closed(Closed),
}

/// Counters of a client session, host misbehaviour included.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClientStats {
    /// Control frames that did not decode (connection ended).
    pub malformed_messages: u64,
    /// Control frames over the size limit.
    pub oversized_frames: u64,
    /// Well-formed messages out of place.
    pub unexpected_messages: u64,
    /// Datagrams received (the host sends none today; dropped).
    pub dropped_datagrams: u64,
    /// Input datagrams queued.
    pub input_sent: u64,
    /// Input datagrams quinn refused (too large, congestion).
    pub input_refused: u64,
    /// Key updates acknowledged.
    pub key_updates: u64,
}

#[derive(Debug)]
enum Phase {
    Handshaking,
    AwaitPairReady,
    AwaitPin,
    AwaitPairReply(Box<ClientPairing>),
    AwaitPairResult,
    AwaitWelcome,
    Welcomed(Box<DataPlaneParams>),
    Streaming(Box<DataPlaneParams>),
    Closed,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Handshaking => "handshaking",
            Phase::AwaitPairReady => "waiting for PairReady",
            Phase::AwaitPin => "waiting for the PIN",
            Phase::AwaitPairReply(_) => "waiting for PairReply",
            Phase::AwaitPairResult => "waiting for PairResult",
            Phase::AwaitWelcome => "waiting for Welcome",
            Phase::Welcomed(_) => "welcomed, not started",
            Phase::Streaming(_) => "streaming",
            Phase::Closed => "closed",
        }
    }

    fn pairing(&self) -> bool {
        matches!(self, Phase::AwaitPairReply(_) | Phase::AwaitPairResult)
    }
}

/// A client's punktfunk/1 session with one host.
pub struct ClientSession {
    config: ClientConfig,
    endpoint: Endpoint,
    link: Link,
    phase: Phase,
    host_fp: Option<Fingerprint>,
    rng: ChaCha20Rng,
    events: VecDeque<ClientEvent>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    stats: ClientStats,
    scratch: Vec<u8>,
    /// The data-plane key generation installed last (0: Welcome's).
    key_generation: u32,
    /// A `KeyUpdate` reported and not yet installed: its generation.
    key_pending: Option<u32>,
}

impl std::fmt::Debug for ClientSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientSession")
            .field("phase", &self.phase.name())
            .field("host", &self.host_fp)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl ClientSession {
    /// Starts connecting to the host at `server`.
    pub fn connect(
        config: ClientConfig,
        now: Instant,
        server: SocketAddr,
    ) -> Result<Self, SessionError> {
        let mut rng = ChaCha20Rng::from_seed(config.seed);
        let tls = tls::client_config(&config.identity)?;
        let quic_tls =
            QuicClientConfig::try_from(tls).map_err(|e| SessionError::QuicTls(e.to_string()))?;
        let mut client = quinn_proto::ClientConfig::new(Arc::new(quic_tls));
        client.transport_config(Arc::new(link::transport(
            config.idle_timeout,
            config.keep_alive,
            0,
        )));
        let mut endpoint = link::endpoint(&mut rng, None);
        let (handle, conn) = endpoint.connect(now, client, server, SERVER_NAME)?;
        Ok(Self {
            config,
            endpoint,
            link: Link::new(handle, conn),
            phase: Phase::Handshaking,
            host_fp: None,
            rng,
            events: VecDeque::new(),
            responses: VecDeque::new(),
            stats: ClientStats::default(),
            scratch: Vec::new(),
            key_generation: 0,
            key_pending: None,
        })
    }

    /// This client's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.config.identity.fingerprint()
    }

    /// The host's certificate fingerprint, once connected.
    pub fn host_fingerprint(&self) -> Option<Fingerprint> {
        self.host_fp
    }

    /// Counters.
    pub fn stats(&self) -> &ClientStats {
        &self.stats
    }

    /// Whether the session has ended ([`ClientEvent::Closed`] reported).
    pub fn is_closed(&self) -> bool {
        matches!(self.phase, Phase::Closed)
    }

    /// Whether the connection is fully gone (nothing left to send or wait for).
    pub fn is_drained(&self) -> bool {
        self.link.conn.is_drained()
    }

    /// The data-plane parameters, once welcomed.
    pub fn data_params(&self) -> Option<&DataPlaneParams> {
        match &self.phase {
            Phase::Welcomed(p) | Phase::Streaming(p) => Some(p),
            _ => None,
        }
    }

    /// The QUIC round-trip time estimate.
    pub fn rtt(&self) -> Duration {
        self.link.conn.rtt()
    }

    /// The next event.
    pub fn poll_event(&mut self) -> Option<ClientEvent> {
        self.events.pop_front()
    }

    /// A UDP datagram arrived from `from`.
    pub fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let mut buf = std::mem::take(&mut self.scratch);
        buf.clear();
        match self
            .endpoint
            .handle(now, from, None, None, BytesMut::from(bytes), &mut buf)
        {
            Some(DatagramEvent::ConnectionEvent(ch, ev)) if ch == self.link.handle => {
                self.link.conn.handle_event(ev);
            }
            Some(DatagramEvent::Response(t)) if self.responses.len() < 16 => {
                if let Some(b) = buf.get(..t.size) {
                    self.responses.push_back((
                        Transmit {
                            destination: t.destination,
                            size: t.size,
                            segment_size: t.segment_size,
                            send_at: None,
                        },
                        b.to_vec(),
                    ));
                }
            }
            // A client endpoint accepts no connections.
            Some(DatagramEvent::NewConnection(incoming)) => self.endpoint.ignore(incoming),
            _ => {}
        }
        self.scratch = buf;
        self.process(now);
    }

    /// Timers: call when [`ClientSession::poll_timeout`]'s instant has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.link.handle_timeout(now);
        self.process(now);
    }

    /// When [`ClientSession::handle_timeout`] is next due.
    pub fn poll_timeout(&mut self) -> Option<Instant> {
        self.link.poll_timeout()
    }

    /// The next datagram to send, written into `buf` (cleared first).
    pub fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((t, bytes)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&bytes);
            return Some(t);
        }
        self.link.poll_transmit(now, buf)
    }

    fn wrong_phase(&self, op: &'static str) -> SessionError {
        SessionError::WrongPhase {
            op,
            phase: self.phase.name(),
        }
    }

    /// Gives the PIN the host shows, after [`ClientEvent::PinNeeded`].
    pub fn pair(&mut self, pin: Pin) -> Result<(), SessionError> {
        if !matches!(self.phase, Phase::AwaitPin) {
            return Err(self.wrong_phase("pair"));
        }
        self.start_pairing(&pin)
    }

    /// Tells the host the data plane is ready at the client's UDP `data_port` (0: let the
    /// host learn it from the first datagram). Returns the parameters with the port filled in.
    pub fn start(&mut self, data_port: u16) -> Result<DataPlaneParams, SessionError> {
        let Phase::Welcomed(params) = &self.phase else {
            return Err(self.wrong_phase("start"));
        };
        let mut params = params.clone();
        params.client_data_port = data_port;
        self.link.send(&Message::Start(Start { data_port }))?;
        let out = (*params).clone();
        self.phase = Phase::Streaming(params);
        Ok(out)
    }

    fn streaming(&self, op: &'static str) -> Result<(), SessionError> {
        if matches!(self.phase, Phase::Streaming(_)) && !self.link.is_closing() {
            Ok(())
        } else {
            Err(self.wrong_phase(op))
        }
    }

    /// Key generation `generation` (from [`ClientEvent::KeyUpdate`]) is installed in the
    /// receiver: acknowledges it, and the host switches its sender to it.
    pub fn key_installed(&mut self, generation: u32) -> Result<(), SessionError> {
        self.streaming("key_installed")?;
        if self.key_pending != Some(generation) {
            return Err(SessionError::WrongPhase {
                op: "key_installed",
                phase: "no such key update pending",
            });
        }
        self.link.send(&Message::KeyUpdateAck { generation })?;
        self.key_generation = generation;
        self.key_pending = None;
        self.stats.key_updates += 1;
        Ok(())
    }

    /// The data-plane key generation installed last, and one reported and not yet installed.
    pub fn key_generation(&self) -> (u32, Option<u32>) {
        (self.key_generation, self.key_pending)
    }

    /// Asks the host for another mode; [`ClientEvent::Reconfigured`] answers.
    pub fn request_reconfigure(&mut self, mode: Mode) -> Result<(), SessionError> {
        self.streaming("request_reconfigure")?;
        self.link.send(&Message::Reconfigure(mode))?;
        Ok(())
    }

    /// Asks the host for a key frame.
    pub fn request_idr(&mut self) -> Result<(), SessionError> {
        self.streaming("request_idr")?;
        self.link.send(&Message::IdrRequest)?;
        Ok(())
    }

    /// Reports data-plane loss.
    pub fn send_loss_report(&mut self, report: LossReport) -> Result<(), SessionError> {
        self.streaming("send_loss_report")?;
        self.link.send(&Message::LossReport(report))?;
        Ok(())
    }

    /// Sends playback statistics.
    pub fn send_stats(&mut self, stats: Stats) -> Result<(), SessionError> {
        self.streaming("send_stats")?;
        self.link.send(&Message::Stats(stats))?;
        Ok(())
    }

    /// Sends an input event as a QUIC datagram (unreliable).
    pub fn send_input(&mut self, event: &InputEvent) -> Result<(), SessionError> {
        self.streaming("send_input")?;
        self.scratch.clear();
        Datagram::Input(*event).encode(&mut self.scratch);
        match self.link.send_datagram(&self.scratch) {
            Ok(()) => {
                self.stats.input_sent += 1;
                Ok(())
            }
            Err(e) => {
                self.stats.input_refused += 1;
                Err(e.into())
            }
        }
    }

    /// Ends the session with Goodbye{reason, text}; reports [`ClientEvent::Closed`].
    pub fn goodbye(&mut self, now: Instant, reason: GoodbyeReason, text: &str) {
        if let Some(closed) = self.link.goodbye(now, reason, text) {
            self.report_closed(closed);
        }
    }

    fn report_closed(&mut self, closed: Closed) {
        if self.link.reported {
            return;
        }
        self.link.reported = true;
        if self.phase.pairing() {
            self.events
                .push_back(ClientEvent::PairingResult { ok: false });
        }
        self.phase = Phase::Closed;
        self.events.push_back(ClientEvent::Closed(closed));
    }

    fn process(&mut self, now: Instant) {
        self.link.drive_endpoint(&mut self.endpoint);
        while let Some(ev) = self.link.conn.poll() {
            self.on_quic_event(now, ev);
        }
        if !matches!(self.phase, Phase::Handshaking | Phase::Closed) {
            let inbox = self.link.read();
            for m in inbox.messages {
                if matches!(self.phase, Phase::Closed) {
                    break;
                }
                match m {
                    Ok(msg) => self.on_message(now, msg),
                    Err(e) => {
                        self.stats.malformed_messages += 1;
                        if matches!(e, MessageError::FrameTooLong { .. }) {
                            self.stats.oversized_frames += 1;
                        }
                        self.goodbye(
                            now,
                            GoodbyeReason::ProtocolViolation,
                            &format!("malformed control message: {e}"),
                        );
                    }
                }
            }
            if inbox.ended {
                self.goodbye(
                    now,
                    GoodbyeReason::ProtocolViolation,
                    "the control stream ended without Goodbye",
                );
            }
        }
        while self.link.recv_datagram().is_some() {
            self.stats.dropped_datagrams += 1;
        }
        self.link.flush();
        self.link.drive_endpoint(&mut self.endpoint);
        if self.link.conn.is_drained() {
            self.report_closed(Closed {
                by_peer: false,
                reason: GoodbyeReason::Normal,
                text: "drained".into(),
            });
        }
    }

    fn on_quic_event(&mut self, now: Instant, ev: Event) {
        match ev {
            Event::Connected => self.on_connected(now),
            Event::ConnectionLost { reason } => {
                let closed = self.link.lost(&reason);
                self.report_closed(closed);
            }
            Event::Stream(StreamEvent::Writable { .. }) => self.link.flush(),
            Event::Stream(StreamEvent::Finished { .. }) => self.link.stream_finished(now),
            Event::Stream(_)
            | Event::HandshakeDataReady
            | Event::DatagramReceived
            | Event::DatagramsUnblocked => {}
        }
    }

    fn on_connected(&mut self, now: Instant) {
        let Some(fp) = tls::peer_fingerprint(self.link.conn.crypto_session()) else {
            self.goodbye(now, GoodbyeReason::Internal, "the host sent no certificate");
            return;
        };
        self.host_fp = Some(fp);
        let trust = match self.config.host_pin {
            HostPin::FirstUse => HostTrust::FirstUse,
            HostPin::Expect(e) if e == fp => HostTrust::Pinned,
            HostPin::Expect(expected) if self.config.pair => HostTrust::Changed { expected },
            HostPin::Expect(expected) => {
                let text = format!(
                    "the host's certificate changed: pinned {expected}, presented {fp}. If the \
                     host was reinstalled, pair again (--pair); otherwise something may be \
                     intercepting the connection"
                );
                self.goodbye(now, GoodbyeReason::HostChanged, &text);
                return;
            }
        };
        self.events.push_back(ClientEvent::Connected {
            fingerprint: fp,
            trust,
        });
        if !self.link.open_stream() {
            self.goodbye(
                now,
                GoodbyeReason::Internal,
                "cannot open the control stream",
            );
            return;
        }
        let name = link::truncate(&self.config.name, super::message::MAX_NAME_LEN).to_owned();
        let hello = Hello {
            version: PROTOCOL_VERSION,
            client_name: name,
            codecs: self.config.codecs,
            max_mode: self.config.max_mode,
            requested: self.config.mode,
            wants_pairing: self.config.pair,
        };
        if let Err(e) = self.link.send(&Message::Hello(hello)) {
            self.goodbye(now, GoodbyeReason::Internal, &format!("Hello: {e}"));
            return;
        }
        self.phase = if self.config.pair {
            Phase::AwaitPairReady
        } else {
            Phase::AwaitWelcome
        };
    }

    fn start_pairing(&mut self, pin: &Pin) -> Result<(), SessionError> {
        let (Some(host_fp), Some(channel_binding)) = (
            self.host_fp,
            tls::channel_binding(self.link.conn.crypto_session()),
        ) else {
            return Err(SessionError::KeyExport);
        };
        let ctx = PairingContext {
            client_fp: self.config.identity.fingerprint().0,
            host_fp: host_fp.0,
            channel_binding,
        };
        let (state, x) = ClientPairing::start(pin, ctx, &mut self.rng);
        self.link.send(&Message::PairStart { spake: x })?;
        self.phase = Phase::AwaitPairReply(Box::new(state));
        Ok(())
    }

    fn unexpected(&mut self, now: Instant, msg: &Message) {
        self.stats.unexpected_messages += 1;
        let text = format!("unexpected {} while {}", msg.name(), self.phase.name());
        self.goodbye(now, GoodbyeReason::ProtocolViolation, &text);
    }

    fn on_message(&mut self, now: Instant, msg: Message) {
        let phase = std::mem::replace(&mut self.phase, Phase::Closed);
        match (phase, msg) {
            (phase, Message::Goodbye(g)) => {
                self.phase = phase;
                let closed = self.link.peer_goodbye(now, &g);
                self.report_closed(closed);
            }
            (Phase::AwaitPairReady, Message::PairReady { digits }) => {
                self.phase = Phase::AwaitPin;
                match self.config.pin.take() {
                    Some(pin) => {
                        if let Err(e) = self.start_pairing(&pin) {
                            self.goodbye(now, GoodbyeReason::Internal, &e.to_string());
                        }
                    }
                    None => self.events.push_back(ClientEvent::PinNeeded { digits }),
                }
            }
            (Phase::AwaitPairReply(state), Message::PairReply { spake, mac }) => {
                self.phase = Phase::AwaitPairResult;
                match state.finish(&spake, &mac) {
                    Ok(confirm) => {
                        if let Err(e) = self.link.send(&Message::PairConfirm { mac: confirm }) {
                            self.goodbye(now, GoodbyeReason::Internal, &e.to_string());
                        }
                    }
                    Err(e) => self.goodbye(now, GoodbyeReason::PairingFailed, &e.to_string()),
                }
            }
            (Phase::AwaitPairResult, Message::PairResult { ok }) => {
                if ok {
                    self.phase = Phase::AwaitWelcome;
                    self.events
                        .push_back(ClientEvent::PairingResult { ok: true });
                } else {
                    self.phase = Phase::AwaitPairResult;
                    self.goodbye(
                        now,
                        GoodbyeReason::PairingFailed,
                        "the host refused the PIN",
                    );
                }
            }
            (Phase::AwaitWelcome, Message::Welcome(w)) => {
                if w.exporter_label.as_bytes() != tls::DATA_KEY_LABEL || w.key_epoch != 0 {
                    self.stats.unexpected_messages += 1;
                    let text = format!(
                        "unsupported data key: label {:?}, epoch {}",
                        w.exporter_label, w.key_epoch
                    );
                    self.goodbye(now, GoodbyeReason::ProtocolViolation, &text);
                    return;
                }
                let Some(key_material) =
                    tls::export_data_key(self.link.conn.crypto_session(), w.session_id, 0)
                else {
                    self.goodbye(now, GoodbyeReason::Internal, "TLS key export failed");
                    return;
                };
                let params = DataPlaneParams {
                    session_id: w.session_id,
                    key_material,
                    key_epoch: w.key_epoch,
                    codec: w.codec,
                    fec: w.fec,
                    parity_percent: w.parity_percent,
                    shard_payload: w.shard_payload,
                    mode: w.mode,
                    peer_ip: self.link.conn.remote_address().ip().to_canonical(),
                    host_data_port: w.data_port,
                    client_data_port: 0,
                };
                self.phase = Phase::Welcomed(Box::new(params.clone()));
                self.events.push_back(ClientEvent::Welcome(params));
            }
            (Phase::Streaming(mut params), Message::Reconfigured(r)) => {
                params.mode = r.mode;
                self.phase = Phase::Streaming(params);
                self.events.push_back(ClientEvent::Reconfigured(r));
            }
            (phase @ Phase::Streaming(_), Message::Stats(s)) => {
                self.phase = phase;
                self.events.push_back(ClientEvent::Stats(s));
            }
            (Phase::Streaming(params), Message::KeyUpdate { generation })
                if self.key_pending.is_none()
                    && self.key_generation.checked_add(1) == Some(generation) =>
            {
                let session_id = params.session_id;
                self.phase = Phase::Streaming(params);
                let Some(material) =
                    tls::export_data_key(self.link.conn.crypto_session(), session_id, generation)
                else {
                    self.goodbye(now, GoodbyeReason::Internal, "TLS key export failed");
                    return;
                };
                self.key_pending = Some(generation);
                self.events.push_back(ClientEvent::KeyUpdate {
                    generation,
                    key_material: KeyMaterial(material),
                });
            }
            (phase, msg) => {
                self.phase = phase;
                self.unexpected(now, &msg);
            }
        }
    }
}
