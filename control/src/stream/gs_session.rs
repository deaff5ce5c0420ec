//! The GameStream streaming session (decide): one client's stream from PLAY to its end, in the
//! sans-IO grammar punktfunk/1 uses. Control messages, pings, IDR requests, loss reports,
//! liveness and termination are decided here; the threads in `session` only feed it what
//! their sockets read and carry out what it asks for.
//!
//! ```text
//!   inputs (act → decide)                       outputs (decide → act)
//!   handle_connect(now, peer, data)   ──┐   ┌── poll_event():    Connected, KeyframeRequest,
//!   handle_control(now, peer, bytes)  ──┤   │                    LossEstimate, VideoDestination,
//!   handle_disconnect(now, peer)      ──┼──►│                    AudioDestination, Ended
//!   handle_ping(now, stream, from, b) ──┤   ├── poll_transmit(): Send{peer, sealed}, Disconnect
//!   handle_timeout(now), close(now,…) ──┘   └── poll_timeout():  the next deadline
//! ```
//!
//! **Where ENet ends.** ENet (connection, acknowledgement, retransmission, its own pings) stays
//! on the act side: rusty_enet owns its socket and timers. This module sees ENet's events as
//! calls (a connect with its data word, a received packet, a disconnect) and asks for sends and
//! disconnects as [`ControlTransmit`]s. The control-message envelope (AES-GCM, sequence
//! numbers, see docs/gamestream-protocol-notes.md "Control envelope") is decided here, through
//! [`ControlChannel`].
//!
//! **Same step.** Every signal comes out of the `handle_*` call that caused it: an IDR request
//! (or a reference invalidation) is a [`GsEvent::KeyframeRequest`] from that very
//! `handle_control`, a FEC status report is a [`GsEvent::LossEstimate`] from it, a ping from a
//! new address is a destination event from that `handle_ping`.
//!
//! **Liveness.** Anything the client sends (a control packet, a video or audio ping) renews
//! its deadline; [`GsConfig::timeout`] after the last one (or after the start, if the control
//! stream never connects) `handle_timeout` ends the session. A host-side close sends the
//! termination message (0x0109) and a graceful disconnect, then waits up to [`CLOSE_LINGER`]
//! for ENet to deliver them.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use punktfunk_engine::fec::adaptive::LossEstimator;
use punktfunk_engine::gamestream::wire::control::ControlCipher;

use super::control::{ClientMessage, ControlChannel, HdrMetadata, HostMessage, types};

/// How long a closing session waits for ENet to deliver the termination and disconnect.
pub const CLOSE_LINGER: Duration = Duration::from_millis(300);

/// A loss estimate is published again only when it moved by more than this (a fraction).
const LOSS_STEP: f64 = 0.002;

/// The ENet peer a packet came from or goes to, as the act side names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PeerKey(pub usize);

/// Which UDP stream a ping arrived on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PingStream {
    /// The video port.
    Video,
    /// The audio port.
    Audio,
}

/// What one session needs to know, fixed at PLAY.
#[derive(Clone)]
pub struct GsConfig {
    /// `rikey`: keys the control envelope.
    pub key: [u8; 16],
    /// The 16-character ping payload the RTSP handshake handed the client.
    pub ping_payload: [u8; 16],
    /// The client's address from RTSP (legacy `PING` pings are accepted from it only).
    pub client_ip: IpAddr,
    /// The ENet connect data the client must present, when it announced session IDs.
    pub connect_data: Option<u32>,
    /// Silence after which the client is gone.
    pub timeout: Duration,
    /// The stream is HDR (10-bit, BT.2020 PQ): the client is told so, with this metadata, as
    /// soon as its control stream connects (0x010e).
    pub hdr: Option<HdrMetadata>,
}

impl std::fmt::Debug for GsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GsConfig")
            .field("client_ip", &self.client_ip)
            .field("timeout", &self.timeout)
            .field("hdr", &self.hdr)
            .finish_non_exhaustive()
    }
}

/// Why a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum EndReason {
    /// The client disconnected the control stream.
    ClientDisconnected,
    /// The client was silent for [`GsConfig::timeout`].
    ClientSilent,
    /// The control stream never connected within [`GsConfig::timeout`].
    NeverConnected,
    /// The host closed it ([`GsSession::close`]).
    HostClosed,
}

impl EndReason {
    /// For logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientDisconnected => "client disconnected the control stream",
            Self::ClientSilent => "client silent past its deadline",
            Self::NeverConnected => "client never opened the control stream",
            Self::HostClosed => "host closed the stream",
        }
    }
}

/// What the act side must do for the session.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum GsEvent {
    /// The control stream connected (the act side may set ENet timeouts on `peer`).
    Connected(PeerKey),
    /// The encoder must make the next frame a keyframe.
    KeyframeRequest,
    /// The client's loss estimate changed (a fraction, 0..=0.5): adaptive FEC sizes parity by it.
    LossEstimate(f64),
    /// Video goes to this address (the first ping, or the client moved).
    VideoDestination(SocketAddr),
    /// Audio goes to this address.
    AudioDestination(SocketAddr),
    /// The session is over; every thread of the stream stops. Emitted once.
    Ended(EndReason),
}

/// An ENet action for the act side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ControlTransmit {
    /// Send these sealed bytes to `peer` reliably on channel 0.
    Send {
        /// Destination.
        peer: PeerKey,
        /// A sealed control message.
        bytes: Vec<u8>,
    },
    /// Disconnect `peer`: at once (`now`, a refused connect) or after queued packets
    /// (a graceful close).
    Disconnect {
        /// Peer.
        peer: PeerKey,
        /// Drop it without waiting for queued packets.
        now: bool,
    },
}

/// Counters of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GsStats {
    /// IDR requests (and reference invalidations answered with one).
    pub idr_requests: u64,
    /// Input packets passed on.
    pub input_packets: u64,
    /// FEC status reports.
    pub fec_reports: u64,
    /// Control packets dropped (bad envelope, replay, bad payload, unknown peer).
    pub control_dropped: u64,
    /// Pings ignored (wrong payload).
    pub bad_pings: u64,
    /// ENet connects refused (wrong data word, second peer).
    pub refused_connects: u64,
    /// Host messages queued for the client (HDR mode, rumble and other controller feedback).
    pub host_messages: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Before the control stream connects.
    Waiting,
    /// Connected to `peer`.
    Streaming(PeerKey),
    /// Termination sent; waiting for ENet to deliver it until `until`.
    Closing { until: Instant },
    /// Over.
    Ended,
}

/// One GameStream client's streaming session (see the module docs).
#[derive(Debug)]
pub struct GsSession {
    config: GsConfig,
    channel: ControlChannel,
    loss: LossEstimator,
    published_loss: f64,
    state: State,
    last_heard: Instant,
    video: Option<SocketAddr>,
    audio: Option<SocketAddr>,
    events: VecDeque<GsEvent>,
    transmits: VecDeque<ControlTransmit>,
    stats: GsStats,
}

impl GsSession {
    /// A session that starts at `now` (PLAY answered) and waits for the control stream.
    pub fn new(now: Instant, config: GsConfig) -> Self {
        Self {
            channel: ControlChannel::new(&config.key),
            config,
            loss: LossEstimator::default(),
            published_loss: 0.0,
            state: State::Waiting,
            last_heard: now,
            video: None,
            audio: None,
            events: VecDeque::new(),
            transmits: VecDeque::new(),
            stats: GsStats::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> GsStats {
        self.stats
    }

    /// Whether the control stream is connected.
    pub fn is_connected(&self) -> bool {
        matches!(self.state, State::Streaming(_))
    }

    /// Whether the session is over.
    pub fn is_ended(&self) -> bool {
        self.state == State::Ended
    }

    /// The current loss estimate.
    pub fn loss_estimate(&self) -> f64 {
        self.loss.estimate()
    }

    /// ENet reports a new peer with its connect `data` word. A wrong data word (when the client
    /// announced session IDs) or a second peer is refused with an immediate disconnect. After
    /// the end nothing is decided any more (the driver is gone).
    pub fn handle_connect(&mut self, now: Instant, peer: PeerKey, data: u32) {
        if self.state == State::Ended {
            return;
        }
        let wrong_data = self.config.connect_data.is_some_and(|want| want != data);
        if wrong_data || self.state != State::Waiting {
            self.stats.refused_connects += 1;
            self.transmits
                .push_back(ControlTransmit::Disconnect { peer, now: true });
            return;
        }
        self.state = State::Streaming(peer);
        self.last_heard = now;
        self.events.push_back(GsEvent::Connected(peer));
        if let Some(metadata) = self.config.hdr {
            self.send(&HostMessage::HdrMode {
                enabled: true,
                metadata,
            });
        }
    }

    /// Queues `msg` for the connected client (reliable, channel 0); false when no client is
    /// connected (before ENet connects, while closing, after the end): the message is dropped.
    pub fn send(&mut self, msg: &HostMessage) -> bool {
        let State::Streaming(peer) = self.state else {
            return false;
        };
        let bytes = self.channel.seal_message(msg);
        self.stats.host_messages += 1;
        self.transmits
            .push_back(ControlTransmit::Send { peer, bytes });
        true
    }

    /// ENet reports that `peer` disconnected (or timed out).
    pub fn handle_disconnect(&mut self, _now: Instant, peer: PeerKey) {
        match self.state {
            State::Streaming(p) if p == peer => self.end(EndReason::ClientDisconnected),
            // The termination was delivered; nothing left to wait for.
            State::Closing { .. } => self.end(EndReason::HostClosed),
            _ => {}
        }
    }

    /// One ENet packet from `peer`, still sealed; decrypted in place. Returns the input packet
    /// it carried (message 0x0206), borrowed from `packet`, for the input handler.
    pub fn handle_control<'a>(
        &mut self,
        now: Instant,
        peer: PeerKey,
        packet: &'a mut [u8],
    ) -> Option<&'a [u8]> {
        if self.state != State::Streaming(peer) {
            self.stats.control_dropped += 1;
            return None;
        }
        let message = self.channel.handle_packet(packet);
        if message.is_ok() {
            // Only what the client sealed proves it is there: a stranger can spoof ENet.
            self.last_heard = now;
        }
        match message {
            Ok(ClientMessage::IdrRequest | ClientMessage::InvalidateRefs { .. }) => {
                self.stats.idr_requests += 1;
                self.events.push_back(GsEvent::KeyframeRequest);
                None
            }
            Ok(ClientMessage::FecStatus(f)) => {
                self.stats.fec_reports += 1;
                let received = u32::from(f.received_data) + u32::from(f.received_parity);
                self.loss.record(u32::from(f.missing), received);
                let estimate = self.loss.estimate();
                if (estimate - self.published_loss).abs() > LOSS_STEP {
                    self.published_loss = estimate;
                    self.events.push_back(GsEvent::LossEstimate(estimate));
                }
                None
            }
            Ok(ClientMessage::Input(p)) => {
                self.stats.input_packets += 1;
                Some(p)
            }
            Ok(_) => None,
            Err(_) => {
                self.stats.control_dropped += 1;
                None
            }
        }
    }

    /// A datagram on the video or audio port: this session's ping (the 16-character payload
    /// plus a sequence number, or the legacy `PING` from the client's address; see
    /// docs/gamestream-protocol-notes.md "Video pings") renews the
    /// deadline and, from a new address, moves that stream's destination.
    pub fn handle_ping(
        &mut self,
        now: Instant,
        stream: PingStream,
        from: SocketAddr,
        bytes: &[u8],
    ) {
        let ours = (bytes.len() >= 16 && bytes[..16] == self.config.ping_payload)
            || (bytes == b"PING" && from.ip() == self.config.client_ip);
        if !ours || matches!(self.state, State::Ended | State::Closing { .. }) {
            if !ours {
                self.stats.bad_pings += 1;
            }
            return;
        }
        self.last_heard = now;
        let (dest, event): (_, fn(SocketAddr) -> GsEvent) = match stream {
            PingStream::Video => (&mut self.video, GsEvent::VideoDestination),
            PingStream::Audio => (&mut self.audio, GsEvent::AudioDestination),
        };
        if *dest != Some(from) {
            *dest = Some(from);
            self.events.push_back(event(from));
        }
    }

    /// The host ends the session. With `code`, the client is told why (termination message
    /// 0x0109) before a graceful disconnect; the session ends when ENet reports the disconnect
    /// or after [`CLOSE_LINGER`].
    pub fn close(&mut self, now: Instant, code: Option<u32>) {
        match self.state {
            State::Streaming(peer) => {
                if let Some(code) = code {
                    let mut out = vec![0u8; ControlCipher::sealed_len(4)];
                    if let Some(n) =
                        self.channel
                            .seal(types::TERMINATION, &code.to_be_bytes(), &mut out)
                    {
                        out.truncate(n);
                        self.transmits
                            .push_back(ControlTransmit::Send { peer, bytes: out });
                    }
                }
                self.transmits
                    .push_back(ControlTransmit::Disconnect { peer, now: false });
                self.state = State::Closing {
                    until: now + CLOSE_LINGER,
                };
            }
            State::Waiting => self.end(EndReason::HostClosed),
            State::Closing { .. } | State::Ended => {}
        }
    }

    /// Time passed: ends a silent client's session, finishes a close.
    pub fn handle_timeout(&mut self, now: Instant) {
        match self.state {
            State::Waiting | State::Streaming(_)
                if now >= self.last_heard + self.config.timeout =>
            {
                let why = if self.state == State::Waiting {
                    EndReason::NeverConnected
                } else {
                    EndReason::ClientSilent
                };
                self.end(why);
            }
            State::Closing { until } if now >= until => self.end(EndReason::HostClosed),
            _ => {}
        }
    }

    /// When [`GsSession::handle_timeout`] must next be called (`None` once ended).
    pub fn poll_timeout(&self) -> Option<Instant> {
        match self.state {
            State::Waiting | State::Streaming(_) => Some(self.last_heard + self.config.timeout),
            State::Closing { until } => Some(until),
            State::Ended => None,
        }
    }

    /// The next thing the act side must do for the session.
    pub fn poll_event(&mut self) -> Option<GsEvent> {
        self.events.pop_front()
    }

    /// The next ENet action.
    pub fn poll_transmit(&mut self) -> Option<ControlTransmit> {
        self.transmits.pop_front()
    }

    fn end(&mut self, why: EndReason) {
        if self.state != State::Ended {
            self.state = State::Ended;
            self.events.push_back(GsEvent::Ended(why));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use punktfunk_engine::gamestream::wire::control::Direction;

    const KEY: [u8; 16] = [7; 16];
    const PAYLOAD: [u8; 16] = *b"0123456789ABCDEF";

    fn config() -> GsConfig {
        GsConfig {
            key: KEY,
            ping_payload: PAYLOAD,
            client_ip: "10.0.0.2".parse().unwrap(),
            connect_data: Some(0x1234),
            timeout: Duration::from_secs(8),
            hdr: None,
        }
    }

    fn sealed(seq: u32, t: u16, payload: &[u8]) -> Vec<u8> {
        let c = ControlCipher::new(&KEY);
        let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
        let n = c
            .seal(seq, Direction::ClientToHost, t, payload, &mut out)
            .unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn idr_request_is_a_keyframe_event_in_the_same_call() {
        let t0 = Instant::now();
        let mut s = GsSession::new(t0, config());
        s.handle_connect(t0, PeerKey(0), 0x1234);
        assert_eq!(s.poll_event(), Some(GsEvent::Connected(PeerKey(0))));
        let mut p = sealed(0, types::IDR_REQUEST, &[]);
        assert_eq!(s.handle_control(t0, PeerKey(0), &mut p), None);
        assert_eq!(s.poll_event(), Some(GsEvent::KeyframeRequest));
        assert_eq!(s.poll_event(), None);
    }

    fn open_host(bytes: &mut [u8]) -> (u32, u16, Vec<u8>) {
        let m = ControlCipher::new(&KEY)
            .open(bytes, Direction::HostToClient)
            .unwrap();
        (m.seq, m.msg_type, m.payload.to_vec())
    }

    #[test]
    fn hdr_streams_announce_hdr_on_connect_and_feedback_goes_to_the_client_only() {
        let t0 = Instant::now();
        let mut s = GsSession::new(
            t0,
            GsConfig {
                hdr: Some(HdrMetadata::bt2020_1000_nits()),
                ..config()
            },
        );
        let rumble = HostMessage::Rumble {
            controller: 0,
            low: 0x4000,
            high: 0x8000,
        };
        // Nobody to send to before the control stream connects.
        assert!(!s.send(&rumble));
        assert_eq!(s.poll_transmit(), None);
        s.handle_connect(t0, PeerKey(4), 0x1234);
        let Some(ControlTransmit::Send { peer, mut bytes }) = s.poll_transmit() else {
            panic!("the HDR mode message first");
        };
        assert_eq!(peer, PeerKey(4));
        let (seq, t, payload) = open_host(&mut bytes);
        assert_eq!((seq, t, payload[0]), (0, 0x010e, 1));
        assert!(s.send(&rumble));
        let Some(ControlTransmit::Send { mut bytes, .. }) = s.poll_transmit() else {
            panic!("the rumble");
        };
        let (seq, t, _) = open_host(&mut bytes);
        assert_eq!((seq, t), (1, 0x010b));
        assert_eq!(s.stats().host_messages, 2);
        // Closing: the termination goes out, feedback no longer does.
        s.close(t0, Some(0x8003_0023));
        assert!(!s.send(&rumble));
        // A session without HDR sends nothing on connect.
        let mut plain = GsSession::new(t0, config());
        plain.handle_connect(t0, PeerKey(0), 0x1234);
        assert_eq!(plain.poll_transmit(), None);
    }

    #[test]
    fn wrong_connect_data_and_second_peer_are_refused() {
        let t0 = Instant::now();
        let mut s = GsSession::new(t0, config());
        s.handle_connect(t0, PeerKey(1), 0x9999);
        assert_eq!(
            s.poll_transmit(),
            Some(ControlTransmit::Disconnect {
                peer: PeerKey(1),
                now: true
            })
        );
        s.handle_connect(t0, PeerKey(2), 0x1234);
        s.handle_connect(t0, PeerKey(3), 0x1234);
        assert_eq!(
            s.poll_transmit(),
            Some(ControlTransmit::Disconnect {
                peer: PeerKey(3),
                now: true
            })
        );
        assert_eq!(s.stats().refused_connects, 2);
        // The refused peer's packets are dropped, not decoded.
        let mut p = sealed(0, types::IDR_REQUEST, &[]);
        s.handle_control(t0, PeerKey(3), &mut p);
        assert_eq!(s.stats().control_dropped, 1);
        assert_eq!(s.stats().idr_requests, 0);
    }

    #[test]
    fn pings_set_destinations_and_strangers_are_counted() {
        let t0 = Instant::now();
        let mut s = GsSession::new(t0, config());
        let a: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let mut ping = PAYLOAD.to_vec();
        ping.extend_from_slice(&[0, 0, 0, 1]);
        s.handle_ping(t0, PingStream::Video, a, &ping);
        s.handle_ping(t0, PingStream::Video, a, &ping);
        assert_eq!(s.poll_event(), Some(GsEvent::VideoDestination(a)));
        assert_eq!(s.poll_event(), None);
        let stranger: SocketAddr = "10.0.0.9:5000".parse().unwrap();
        s.handle_ping(t0, PingStream::Audio, stranger, b"PING");
        s.handle_ping(t0, PingStream::Audio, a, b"PING");
        assert_eq!(s.poll_event(), Some(GsEvent::AudioDestination(a)));
        assert_eq!(s.stats().bad_pings, 1);
    }
}
