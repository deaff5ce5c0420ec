//! punktfunk/1: the native control plane, a QUIC connection (quinn-proto, driven sans-IO)
//! carrying one control stream and input datagrams; media flows on a separate UDP data plane
//! (`punktfunk_engine`'s pf1 module) keyed from this connection's TLS session.
//!
//! | module        | decides / acts | does                                                       |
//! |---------------|----------------|------------------------------------------------------------|
//! | [`message`]   | decides        | control-stream frames and messages (codec, fuzzed)         |
//! | [`datagram`]  | decides        | QUIC datagrams: input events (GameStream input encoding)   |
//! | [`pairing`]   | decides        | the PIN ceremony: SPAKE2 + key confirmation                |
//! | [`tls`]       | decides        | identities, fingerprints, rustls configs, key export       |
//! | [`host`]      | decides        | [`HostSession`]: the host's endpoint, many connections     |
//! | [`client`]    | decides        | [`ClientSession`]: one connection to a host                |
//! | [`live`]      | decides        | the rows `/api/sessions` lists for punktfunk/1             |
//! | [`trust`]     | acts           | identity and trust files in the state directory            |
//! | [`net`]       | acts           | blocking UDP drivers for both state machines               |
//! | [`listener`]  | acts           | `punktfunk serve`'s pf1 listener: pairing, trust, policy   |
//! | `receive`     | acts           | a client's data plane (the client core, crate `punktfunk-client`) |
//!
//! The state machines follow the house sans-IO grammar: `handle_datagram(now, from, bytes)`,
//! `handle_timeout(now)`, `poll_transmit(now, &mut buf)`, `poll_timeout()`, `poll_event()`.
//! They open no socket, read no clock and spawn no thread; quinn-proto's and the pairing's
//! random choices come from a seed in the configuration. (rustls draws its key-exchange
//! secrets from the OS through ring: the bytes on the wire differ between runs, the sequence
//! of events does not.)
//!
//! ```text
//!  client                                   host
//!   │── QUIC handshake, both certificates ──►│  Connected{fingerprint} on both sides
//!   │── Hello{version, name, caps, mode, pair?} ─►│
//!   │        [pairing: PairReady, PairStart, PairReply, PairConfirm, PairResult]
//!   │                                         │  HelloReceived{paired} → host.accept(offer)
//!   │◄──────────── Welcome{session, FEC, port, mode, key epoch, label} ──│
//!   │  Welcome(DataPlaneParams) → client.start(port)
//!   │── Start{client data port} ─────────────►│  Started(DataPlaneParams)
//!   │══ input datagrams ═════════════════════►│  Input
//!   │── Reconfigure{mode} ───────────────────►│  ReconfigureRequested → host.reconfigured(..)
//!   │◄──────────── Reconfigured{mode, epoch, first frame} ──│
//!   │── IdrRequest / LossReport / Stats ─────►│
//!   │◄─────────────── Goodbye{reason, text} ──│  (either side), then QUIC close
//! ```
//!
//! The data plane gets, per session, a [`DataPlaneParams`]: the 32 bytes of key material
//! exported from the TLS session with [`DATA_KEY_LABEL`] and the session id and key
//! generation (0; later ones after `KeyUpdate`/`KeyUpdateAck`, see [`host`]) as context
//! ([`DATA_KEY_MATERIAL_LEN`]; AES-128 key = bytes 0..16, nonce salt = bytes 16..20), the FEC
//! scheme, parity, shard size and both UDP ports. See `docs/pf1-control-plane.md`.

use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

pub mod client;
pub mod datagram;
pub mod host;
mod link;
pub mod listener;
pub mod live;
pub mod media;
pub mod message;
pub mod net;
pub mod pairing;
pub mod receive;
pub mod tls;
pub mod trust;

pub use client::{ClientConfig, ClientEvent, ClientSession, ClientStats, HostPin, HostTrust};
pub use host::{
    AdmissionStatus, AdmittedConn, AdmittedPhase, HostConfig, HostEvent, HostSession, HostStats,
    SessionOffer,
};
pub use message::{Codec, CodecSet, FecScheme, GoodbyeReason, Mode};
pub use pairing::Pin;
pub use tls::{DATA_KEY_LABEL, DATA_KEY_MATERIAL_LEN, Fingerprint, Identity};

/// Default UDP port of the punktfunk/1 control plane.
pub const DEFAULT_PORT: u16 = 47900;

/// One UDP datagram to send: `buf[..size]` from the `poll_transmit` call to `destination`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Transmit {
    /// Where to.
    pub destination: SocketAddr,
    /// Bytes of the buffer to send.
    pub size: usize,
    /// GSO segment size, if `size` holds several datagrams (never today: one per call).
    pub segment_size: Option<usize>,
    /// Earliest send time; `None`: now (quinn paces by withholding transmits instead).
    pub send_at: Option<Instant>,
}

/// A connection's id within a [`HostSession`]; never reused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "pf1#{}", self.0)
    }
}

/// How a connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Closed {
    /// The peer ended it (its Goodbye or close); `false`: this side did, or it timed out.
    pub by_peer: bool,
    /// Why.
    pub reason: GoodbyeReason,
    /// Detail for the log.
    pub text: String,
}

impl std::fmt::Display for Closed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let who = if self.by_peer { "peer" } else { "local" };
        if self.text.is_empty() {
            write!(f, "{} ({who})", self.reason)
        } else {
            write!(f, "{} ({who}): {}", self.reason, self.text)
        }
    }
}

/// What the data plane needs for one session, on either side.
#[derive(Clone, PartialEq, Eq)]
pub struct DataPlaneParams {
    /// The session id (exporter context, 8 bytes big-endian).
    pub session_id: u64,
    /// Exported key material: AES-128 key, nonce salt, reserved.
    pub key_material: [u8; DATA_KEY_MATERIAL_LEN],
    /// Key epoch (0: the keys exported at the handshake).
    pub key_epoch: u32,
    /// Codec of the video stream.
    pub codec: Codec,
    /// FEC scheme.
    pub fec: FecScheme,
    /// Parity shards as a percentage of data shards.
    pub parity_percent: u8,
    /// Payload bytes per FEC shard.
    pub shard_payload: u16,
    /// The mode at Start.
    pub mode: Mode,
    /// The peer's address on the control connection (the host sees the client's, the client
    /// the host's).
    pub peer_ip: IpAddr,
    /// The host's data-plane UDP port.
    pub host_data_port: u16,
    /// The client's data-plane UDP port; 0 until Start, or if the client asked the host to
    /// learn it from its first authenticated datagram.
    pub client_data_port: u16,
}

impl DataPlaneParams {
    /// The AES-128-GCM key: bytes 0..16 of the key material.
    pub fn aes_key(&self) -> [u8; 16] {
        let mut k = [0; 16];
        k.copy_from_slice(&self.key_material[..16]);
        k
    }

    /// The nonce salt: bytes 16..20 of the key material.
    pub fn nonce_salt(&self) -> [u8; 4] {
        let mut s = [0; 4];
        s.copy_from_slice(&self.key_material[16..20]);
        s
    }
}

/// The exported key material of one data-plane key generation (AES-128 key = bytes 0..16,
/// nonce salt = bytes 16..20). `Debug` never prints it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct KeyMaterial(pub [u8; DATA_KEY_MATERIAL_LEN]);

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyMaterial(<secret>)")
    }
}

impl std::fmt::Debug for DataPlaneParams {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DataPlaneParams")
            .field("session_id", &self.session_id)
            .field("key_material", &"<secret>")
            .field("key_epoch", &self.key_epoch)
            .field("codec", &self.codec)
            .field("fec", &self.fec)
            .field("parity_percent", &self.parity_percent)
            .field("shard_payload", &self.shard_payload)
            .field("mode", &self.mode)
            .field("peer_ip", &self.peer_ip)
            .field("host_data_port", &self.host_data_port)
            .field("client_data_port", &self.client_data_port)
            .finish()
    }
}

/// Why a command to a session was refused. Peer misbehaviour never shows up here: it ends
/// that connection (reported as a `Closed` event) and is counted in the session's stats.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// No such connection, or it has closed (local misuse).
    #[error("no open punktfunk/1 connection {0}")]
    UnknownConnection(ConnId),
    /// The command does not fit the connection's phase (local misuse).
    #[error("{op} is not possible while the connection is {phase}")]
    WrongPhase {
        /// The command.
        op: &'static str,
        /// The phase it met.
        phase: &'static str,
    },
    /// The message would be refused by the peer (local misuse: a field out of range).
    #[error("invalid message: {0}")]
    InvalidMessage(#[from] message::MessageError),
    /// The TLS configuration was refused (local misuse: a bad identity).
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// quinn refused the TLS configuration (no TLS 1.3 AES-128-GCM suite).
    #[error("QUIC TLS configuration: {0}")]
    QuicTls(String),
    /// The connection could not be started (bad address, or connection ids exhausted).
    #[error("connect: {0}")]
    Connect(#[from] quinn_proto::ConnectError),
    /// A datagram could not be queued (too large, or the peer does not take datagrams).
    #[error("datagram: {0}")]
    Datagram(#[from] quinn_proto::SendDatagramError),
    /// The TLS session could not export key material (handshake incomplete).
    #[error("TLS key export failed")]
    KeyExport,
}
