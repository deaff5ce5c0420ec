//! punktfunk/1 control messages: a pure, versioned codec (no I/O).
//!
//! Every message travels on the one bidirectional control stream (the client opens it) as a
//! length-prefixed frame:
//!
//! ```text
//!  0                4       5
//! +----------------+-------+------------------------------+
//! | length u32 BE  | type  | body (length - 1 bytes)      |
//! +----------------+-------+------------------------------+
//!   length counts type + body: 1..=MAX_FRAME_LEN (64 KiB)
//! ```
//!
//! Field encodings (all integers big-endian):
//!
//! ```text
//! u8/u16/u32/u64  fixed width          bool   u8, 0 or 1 (anything else is an error)
//! str             u16 length + UTF-8   bytes  u16 length + bytes
//! Mode            u16 width | u16 height | u16 fps       (6 bytes)
//! ```
//!
//! | type | message       | direction | body                                                   |
//! |------|---------------|-----------|--------------------------------------------------------|
//! | 0x01 | Hello         | C → H     | u16 version, str name, u8 codecs, Mode max, Mode want, bool pair |
//! | 0x02 | Welcome       | H → C     | u64 session, u8 codec, u8 fec, u8 parity %, u16 shard, u16 port, Mode, u32 key epoch, str label |
//! | 0x03 | Start         | C → H     | u16 client data port                                   |
//! | 0x04 | Reconfigure   | C → H     | Mode                                                   |
//! | 0x05 | Reconfigured  | H → C     | Mode, u32 epoch, u32 first frame id                    |
//! | 0x06 | IdrRequest    | C → H     | (empty)                                                |
//! | 0x07 | LossReport    | C → H     | u32 window, u32 expected, u32 received, u32 complete, u32 unrecoverable |
//! | 0x08 | Stats         | both      | u32 window, u32 decoded, u32 dropped, u32 decode µs, u32 latency µs, u32 jitter µs |
//! | 0x09 | Goodbye       | both      | u16 reason, str text                                   |
//! | 0x0a | KeyUpdate     | H → C     | u32 next key generation (≥ 1)                          |
//! | 0x0b | KeyUpdateAck  | C → H     | u32 key generation installed (≥ 1)                     |
//! | 0x10 | PairReady     | H → C     | u8 PIN digits                                          |
//! | 0x11 | PairStart     | C → H     | bytes SPAKE2 message A (33)                            |
//! | 0x12 | PairReply     | H → C     | bytes SPAKE2 message B (33), 32 bytes host MAC         |
//! | 0x13 | PairConfirm   | C → H     | 32 bytes client MAC                                    |
//! | 0x14 | PairResult    | H → C     | bool ok                                                |
//!
//! The decoder insists that a body is exactly as long as its fields: trailing bytes are an
//! error, so one message has one encoding. Everything read from the network is checked here
//! (lengths, UTF-8, ranges); a [`MessageError`] means the peer sent something malformed, never
//! a panic. The session layer decides what a well-formed message means in its phase.

use thiserror::Error;

/// Version in [`Hello::version`]; a host refuses other versions with
/// [`GoodbyeReason::VersionMismatch`].
pub const PROTOCOL_VERSION: u16 = 1;

/// Largest frame (type byte + body) a peer may send: 64 KiB.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Bytes of the frame length prefix.
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest client name, in bytes of UTF-8.
pub const MAX_NAME_LEN: usize = 64;

/// Longest Goodbye text, in bytes of UTF-8.
pub const MAX_TEXT_LEN: usize = 256;

/// Longest exporter label, in bytes.
pub const MAX_LABEL_LEN: usize = 64;

/// Length of a SPAKE2 (Ed25519 group) message: a side byte and a compressed point.
pub const SPAKE_MSG_LEN: usize = 33;

/// Length of a pairing key-confirmation MAC (HMAC-SHA256).
pub const MAC_LEN: usize = 32;

/// Largest width or height a [`Mode`] may have.
pub const MAX_DIMENSION: u16 = 16384;

/// Largest frame rate a [`Mode`] may have.
pub const MAX_FPS: u16 = 1000;

/// Message type bytes.
pub mod kind {
    /// [`super::Message::Hello`].
    pub const HELLO: u8 = 0x01;
    /// [`super::Message::Welcome`].
    pub const WELCOME: u8 = 0x02;
    /// [`super::Message::Start`].
    pub const START: u8 = 0x03;
    /// [`super::Message::Reconfigure`].
    pub const RECONFIGURE: u8 = 0x04;
    /// [`super::Message::Reconfigured`].
    pub const RECONFIGURED: u8 = 0x05;
    /// [`super::Message::IdrRequest`].
    pub const IDR_REQUEST: u8 = 0x06;
    /// [`super::Message::LossReport`].
    pub const LOSS_REPORT: u8 = 0x07;
    /// [`super::Message::Stats`].
    pub const STATS: u8 = 0x08;
    /// [`super::Message::Goodbye`].
    pub const GOODBYE: u8 = 0x09;
    /// [`super::Message::KeyUpdate`].
    pub const KEY_UPDATE: u8 = 0x0a;
    /// [`super::Message::KeyUpdateAck`].
    pub const KEY_UPDATE_ACK: u8 = 0x0b;
    /// [`super::Message::PairReady`].
    pub const PAIR_READY: u8 = 0x10;
    /// [`super::Message::PairStart`].
    pub const PAIR_START: u8 = 0x11;
    /// [`super::Message::PairReply`].
    pub const PAIR_REPLY: u8 = 0x12;
    /// [`super::Message::PairConfirm`].
    pub const PAIR_CONFIRM: u8 = 0x13;
    /// [`super::Message::PairResult`].
    pub const PAIR_RESULT: u8 = 0x14;
}

/// A malformed control message. Always the peer's fault when decoding; when encoding, the
/// caller built a message that the peer would refuse (local misuse).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum MessageError {
    /// The length prefix is larger than [`MAX_FRAME_LEN`].
    #[error("control frame of {len} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    FrameTooLong {
        /// The declared length.
        len: u32,
    },
    /// The length prefix is zero (no type byte).
    #[error("empty control frame")]
    EmptyFrame,
    /// A type byte this version does not know.
    #[error("unknown control message type {0:#04x}")]
    UnknownType(u8),
    /// The body ends inside a field.
    #[error("control message {ty:#04x} truncated in field {field}")]
    Truncated {
        /// Message type.
        ty: u8,
        /// The field being read.
        field: &'static str,
    },
    /// The body is longer than its fields.
    #[error("control message {ty:#04x} has {extra} trailing bytes")]
    TrailingBytes {
        /// Message type.
        ty: u8,
        /// Bytes left over.
        extra: usize,
    },
    /// A text field is not UTF-8.
    #[error("control message field {field} is not UTF-8")]
    NotUtf8 {
        /// The field.
        field: &'static str,
    },
    /// A variable-length field is longer than its limit.
    #[error("control message field {field} is {len} bytes, limit {max}")]
    FieldTooLong {
        /// The field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A field holds a value outside its range.
    #[error("control message field {field} has invalid value {value}")]
    InvalidValue {
        /// The field.
        field: &'static str,
        /// The value.
        value: u64,
    },
}

/// A video mode: resolution and frame rate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Mode {
    /// Width in pixels, 1..=[`MAX_DIMENSION`].
    pub width: u16,
    /// Height in pixels, 1..=[`MAX_DIMENSION`].
    pub height: u16,
    /// Frames per second, 1..=[`MAX_FPS`].
    pub fps: u16,
}

impl Mode {
    /// A mode.
    pub const fn new(width: u16, height: u16, fps: u16) -> Self {
        Self { width, height, fps }
    }

    fn check(&self, field: &'static str) -> Result<(), MessageError> {
        let bad = |value: u16| MessageError::InvalidValue {
            field,
            value: u64::from(value),
        };
        for d in [self.width, self.height] {
            if d == 0 || d > MAX_DIMENSION {
                return Err(bad(d));
            }
        }
        if self.fps == 0 || self.fps > MAX_FPS {
            return Err(bad(self.fps));
        }
        Ok(())
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}@{}", self.width, self.height, self.fps)
    }
}

/// A video codec. Its wire value is one bit of a [`CodecSet`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Codec {
    /// H.264 / AVC.
    H264,
    /// H.265 / HEVC.
    Hevc,
    /// AV1.
    Av1,
}

impl Codec {
    /// Its bit in a [`CodecSet`] (and its wire value in Welcome).
    pub const fn bit(self) -> u8 {
        match self {
            Codec::H264 => 0x01,
            Codec::Hevc => 0x02,
            Codec::Av1 => 0x04,
        }
    }

    /// The codec whose bit is `bit`.
    pub const fn from_bit(bit: u8) -> Option<Self> {
        match bit {
            0x01 => Some(Codec::H264),
            0x02 => Some(Codec::Hevc),
            0x04 => Some(Codec::Av1),
            _ => None,
        }
    }
}

/// Codecs a client decodes: a bit mask of [`Codec::bit`]s. Unknown bits are kept (a newer
/// client may know more codecs) and ignored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CodecSet(pub u8);

impl CodecSet {
    /// Whether `codec` is in the set.
    pub const fn contains(self, codec: Codec) -> bool {
        self.0 & codec.bit() != 0
    }

    /// The set plus `codec`.
    pub const fn with(self, codec: Codec) -> Self {
        Self(self.0 | codec.bit())
    }
}

/// Forward error correction scheme of the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FecScheme {
    /// Reed-Solomon over GF(2^16), Leopard-RS layout (wire value 1).
    Gf16Leopard,
}

impl FecScheme {
    /// Wire value.
    pub const fn to_u8(self) -> u8 {
        match self {
            FecScheme::Gf16Leopard => 1,
        }
    }

    /// The scheme with wire value `v`.
    pub const fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(FecScheme::Gf16Leopard),
            _ => None,
        }
    }
}

/// Why a session ends ([`Goodbye::reason`], also the QUIC application close code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum GoodbyeReason {
    /// The user or application ended the session (0).
    Normal,
    /// The host requires pairing and this client is not paired (1).
    NotPaired,
    /// The PIN ceremony failed: wrong PIN, expired or consumed PIN, or a relay (2).
    PairingFailed,
    /// The peer broke the protocol: malformed or unexpected message (3).
    ProtocolViolation,
    /// The protocol versions do not match (4).
    VersionMismatch,
    /// The host is busy with another session (5).
    Busy,
    /// The host refused the requested session (6).
    Refused,
    /// The peer stopped answering (7).
    Timeout,
    /// An internal error (8).
    Internal,
    /// The host's certificate differs from the one pinned for it (9; client side only).
    HostChanged,
    /// The client asked to pair but the operator's pairing window is closed: not armed,
    /// expired, used, or closed after too many wrong PINs (10).
    PairingClosed,
    /// The client's address failed a pairing recently and must wait; the text says how long
    /// (11).
    RetryLater,
    /// A code this version does not know.
    Other(u16),
}

impl GoodbyeReason {
    /// Wire value.
    pub const fn code(self) -> u16 {
        match self {
            GoodbyeReason::Normal => 0,
            GoodbyeReason::NotPaired => 1,
            GoodbyeReason::PairingFailed => 2,
            GoodbyeReason::ProtocolViolation => 3,
            GoodbyeReason::VersionMismatch => 4,
            GoodbyeReason::Busy => 5,
            GoodbyeReason::Refused => 6,
            GoodbyeReason::Timeout => 7,
            GoodbyeReason::Internal => 8,
            GoodbyeReason::HostChanged => 9,
            GoodbyeReason::PairingClosed => 10,
            GoodbyeReason::RetryLater => 11,
            GoodbyeReason::Other(c) => c,
        }
    }

    /// The reason with wire value `code`.
    pub const fn from_code(code: u16) -> Self {
        match code {
            0 => GoodbyeReason::Normal,
            1 => GoodbyeReason::NotPaired,
            2 => GoodbyeReason::PairingFailed,
            3 => GoodbyeReason::ProtocolViolation,
            4 => GoodbyeReason::VersionMismatch,
            5 => GoodbyeReason::Busy,
            6 => GoodbyeReason::Refused,
            7 => GoodbyeReason::Timeout,
            8 => GoodbyeReason::Internal,
            9 => GoodbyeReason::HostChanged,
            10 => GoodbyeReason::PairingClosed,
            11 => GoodbyeReason::RetryLater,
            c => GoodbyeReason::Other(c),
        }
    }
}

impl std::fmt::Display for GoodbyeReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GoodbyeReason::Normal => f.write_str("session ended"),
            GoodbyeReason::NotPaired => f.write_str("client is not paired"),
            GoodbyeReason::PairingFailed => f.write_str("pairing failed"),
            GoodbyeReason::ProtocolViolation => f.write_str("protocol violation"),
            GoodbyeReason::VersionMismatch => f.write_str("protocol version mismatch"),
            GoodbyeReason::Busy => f.write_str("host is busy"),
            GoodbyeReason::Refused => f.write_str("session refused"),
            GoodbyeReason::Timeout => f.write_str("peer timed out"),
            GoodbyeReason::Internal => f.write_str("internal error"),
            GoodbyeReason::HostChanged => f.write_str("host certificate changed"),
            GoodbyeReason::PairingClosed => f.write_str("pairing closed"),
            GoodbyeReason::RetryLater => f.write_str("try again later"),
            GoodbyeReason::Other(c) => write!(f, "reason {c}"),
        }
    }
}

/// What a client sends first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hello {
    /// Protocol version ([`PROTOCOL_VERSION`]).
    pub version: u16,
    /// The client's name, for the host's log and paired list (≤ [`MAX_NAME_LEN`] bytes).
    pub client_name: String,
    /// Codecs the client decodes.
    pub codecs: CodecSet,
    /// The largest mode the client decodes and shows.
    pub max_mode: Mode,
    /// The mode the client asks for.
    pub requested: Mode,
    /// Whether the client wants to run the PIN ceremony.
    pub wants_pairing: bool,
}

/// The host's answer to Hello: the session and its data-plane parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Welcome {
    /// Session id; the exporter context of the data-plane keys.
    pub session_id: u64,
    /// The codec the host will send.
    pub codec: Codec,
    /// FEC scheme.
    pub fec: FecScheme,
    /// Parity shards as a percentage of data shards.
    pub parity_percent: u8,
    /// Payload bytes of one FEC shard (non-zero, even: GF(2^16) symbols are 2 bytes).
    pub shard_payload: u16,
    /// The host's data-plane UDP port (non-zero).
    pub data_port: u16,
    /// The mode granted (may differ from the one requested).
    pub mode: Mode,
    /// Key epoch (0 for the keys derived at the handshake).
    pub key_epoch: u32,
    /// The TLS exporter label the data-plane keys are derived with.
    pub exporter_label: String,
}

/// The client is ready to receive the data plane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Start {
    /// The client's data-plane UDP port (at the client's control-plane address); 0: the host
    /// learns it from the client's first authenticated data-plane datagram.
    pub data_port: u16,
}

/// The host runs a new mode (answer to Reconfigure, or on its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconfigured {
    /// The mode now running.
    pub mode: Mode,
    /// Stream epoch: 0 at Start, +1 per reconfiguration.
    pub epoch: u32,
    /// The data-plane frame id of the first frame in the new mode.
    pub first_frame_id: u32,
}

/// A client's data-plane loss report for one window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LossReport {
    /// The window's sequence number.
    pub window_id: u32,
    /// Datagrams the client expected in the window.
    pub expected: u32,
    /// Datagrams received.
    pub received: u32,
    /// Frames completed (directly or after FEC recovery).
    pub frames_complete: u32,
    /// Frames FEC could not recover.
    pub frames_unrecoverable: u32,
}

/// Periodic playback statistics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stats {
    /// The window's sequence number.
    pub window_id: u32,
    /// Frames decoded.
    pub frames_decoded: u32,
    /// Frames dropped (late, undecodable).
    pub frames_dropped: u32,
    /// Average decode time, µs.
    pub decode_us: u32,
    /// Average capture-to-display latency, µs (0 unknown).
    pub latency_us: u32,
    /// Frame arrival jitter, µs.
    pub jitter_us: u32,
}

/// The end of a session, with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Goodbye {
    /// Why.
    pub reason: GoodbyeReason,
    /// Human-readable detail (≤ [`MAX_TEXT_LEN`] bytes).
    pub text: String,
}

/// One control message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// C → H, first message.
    Hello(Hello),
    /// H → C, answer to Hello.
    Welcome(Welcome),
    /// C → H, ready for media.
    Start(Start),
    /// C → H, asks for a new mode.
    Reconfigure(Mode),
    /// H → C, a new mode runs.
    Reconfigured(Reconfigured),
    /// C → H, asks for a key frame.
    IdrRequest,
    /// C → H, data-plane loss.
    LossReport(LossReport),
    /// Either way, statistics.
    Stats(Stats),
    /// Either way, the end.
    Goodbye(Goodbye),
    /// H → C, the host is ready for the PIN ceremony; `digits` long PIN.
    PairReady {
        /// Digits of the PIN the user must type.
        digits: u8,
    },
    /// C → H, SPAKE2 message A.
    PairStart {
        /// The SPAKE2 message.
        spake: [u8; SPAKE_MSG_LEN],
    },
    /// H → C, SPAKE2 message B and the host's key confirmation.
    PairReply {
        /// The SPAKE2 message.
        spake: [u8; SPAKE_MSG_LEN],
        /// HMAC proving the host derived the same key.
        mac: [u8; MAC_LEN],
    },
    /// C → H, the client's key confirmation.
    PairConfirm {
        /// HMAC proving the client derived the same key.
        mac: [u8; MAC_LEN],
    },
    /// H → C, outcome of the ceremony.
    PairResult {
        /// Paired.
        ok: bool,
    },
    /// H → C, derive data-plane key generation `generation` from the TLS exporter and install
    /// it beside the one in use; answer with [`Message::KeyUpdateAck`].
    KeyUpdate {
        /// The next generation: the one in use plus one.
        generation: u32,
    },
    /// C → H, generation `generation` is installed: the host may seal with it.
    KeyUpdateAck {
        /// The generation of the [`Message::KeyUpdate`] answered.
        generation: u32,
    },
}

impl Message {
    /// Its type byte.
    pub fn kind(&self) -> u8 {
        match self {
            Message::Hello(_) => kind::HELLO,
            Message::Welcome(_) => kind::WELCOME,
            Message::Start(_) => kind::START,
            Message::Reconfigure(_) => kind::RECONFIGURE,
            Message::Reconfigured(_) => kind::RECONFIGURED,
            Message::IdrRequest => kind::IDR_REQUEST,
            Message::LossReport(_) => kind::LOSS_REPORT,
            Message::Stats(_) => kind::STATS,
            Message::Goodbye(_) => kind::GOODBYE,
            Message::PairReady { .. } => kind::PAIR_READY,
            Message::PairStart { .. } => kind::PAIR_START,
            Message::PairReply { .. } => kind::PAIR_REPLY,
            Message::PairConfirm { .. } => kind::PAIR_CONFIRM,
            Message::PairResult { .. } => kind::PAIR_RESULT,
            Message::KeyUpdate { .. } => kind::KEY_UPDATE,
            Message::KeyUpdateAck { .. } => kind::KEY_UPDATE_ACK,
        }
    }

    /// A short name for logs and counters.
    pub fn name(&self) -> &'static str {
        match self {
            Message::Hello(_) => "Hello",
            Message::Welcome(_) => "Welcome",
            Message::Start(_) => "Start",
            Message::Reconfigure(_) => "Reconfigure",
            Message::Reconfigured(_) => "Reconfigured",
            Message::IdrRequest => "IdrRequest",
            Message::LossReport(_) => "LossReport",
            Message::Stats(_) => "Stats",
            Message::Goodbye(_) => "Goodbye",
            Message::PairReady { .. } => "PairReady",
            Message::PairStart { .. } => "PairStart",
            Message::PairReply { .. } => "PairReply",
            Message::PairConfirm { .. } => "PairConfirm",
            Message::PairResult { .. } => "PairResult",
            Message::KeyUpdate { .. } => "KeyUpdate",
            Message::KeyUpdateAck { .. } => "KeyUpdateAck",
        }
    }

    /// Checks every field against the limits the decoder enforces.
    pub fn validate(&self) -> Result<(), MessageError> {
        let text = |field, s: &str, max| {
            if s.len() > max {
                Err(MessageError::FieldTooLong {
                    field,
                    len: s.len(),
                    max,
                })
            } else {
                Ok(())
            }
        };
        match self {
            Message::Hello(h) => {
                text("client_name", &h.client_name, MAX_NAME_LEN)?;
                h.max_mode.check("max_mode")?;
                h.requested.check("requested")
            }
            Message::Welcome(w) => {
                if w.shard_payload == 0 || w.shard_payload % 2 != 0 {
                    return Err(MessageError::InvalidValue {
                        field: "shard_payload",
                        value: u64::from(w.shard_payload),
                    });
                }
                if w.data_port == 0 {
                    return Err(MessageError::InvalidValue {
                        field: "data_port",
                        value: 0,
                    });
                }
                w.mode.check("mode")?;
                text("exporter_label", &w.exporter_label, MAX_LABEL_LEN)
            }
            Message::Reconfigure(m) => m.check("mode"),
            Message::Reconfigured(r) => r.mode.check("mode"),
            Message::Goodbye(g) => text("text", &g.text, MAX_TEXT_LEN),
            Message::PairReady { digits } => {
                if (4..=10).contains(digits) {
                    Ok(())
                } else {
                    Err(MessageError::InvalidValue {
                        field: "digits",
                        value: u64::from(*digits),
                    })
                }
            }
            Message::KeyUpdate { generation } | Message::KeyUpdateAck { generation } => {
                if *generation == 0 {
                    // Generation 0 is the key of Welcome; an update names a later one.
                    Err(MessageError::InvalidValue {
                        field: "generation",
                        value: 0,
                    })
                } else {
                    Ok(())
                }
            }
            Message::Start(_)
            | Message::IdrRequest
            | Message::LossReport(_)
            | Message::Stats(_)
            | Message::PairStart { .. }
            | Message::PairReply { .. }
            | Message::PairConfirm { .. }
            | Message::PairResult { .. } => Ok(()),
        }
    }

    /// Appends the framed message to `out`. Fails (and appends nothing) if a field is out of
    /// range, as the peer would refuse it.
    pub fn encode(&self, out: &mut Vec<u8>) -> Result<(), MessageError> {
        self.validate()?;
        let start = out.len();
        out.extend_from_slice(&[0; FRAME_HEADER_LEN]);
        out.push(self.kind());
        let mut w = Writer(out);
        match self {
            Message::Hello(h) => {
                w.u16(h.version);
                w.str(&h.client_name);
                w.u8(h.codecs.0);
                w.mode(h.max_mode);
                w.mode(h.requested);
                w.u8(u8::from(h.wants_pairing));
            }
            Message::Welcome(m) => {
                w.u64(m.session_id);
                w.u8(m.codec.bit());
                w.u8(m.fec.to_u8());
                w.u8(m.parity_percent);
                w.u16(m.shard_payload);
                w.u16(m.data_port);
                w.mode(m.mode);
                w.u32(m.key_epoch);
                w.str(&m.exporter_label);
            }
            Message::Start(s) => w.u16(s.data_port),
            Message::Reconfigure(m) => w.mode(*m),
            Message::Reconfigured(r) => {
                w.mode(r.mode);
                w.u32(r.epoch);
                w.u32(r.first_frame_id);
            }
            Message::IdrRequest => {}
            Message::LossReport(l) => {
                for v in [
                    l.window_id,
                    l.expected,
                    l.received,
                    l.frames_complete,
                    l.frames_unrecoverable,
                ] {
                    w.u32(v);
                }
            }
            Message::Stats(s) => {
                for v in [
                    s.window_id,
                    s.frames_decoded,
                    s.frames_dropped,
                    s.decode_us,
                    s.latency_us,
                    s.jitter_us,
                ] {
                    w.u32(v);
                }
            }
            Message::Goodbye(g) => {
                w.u16(g.reason.code());
                w.str(&g.text);
            }
            Message::PairReady { digits } => w.u8(*digits),
            Message::PairStart { spake } => w.bytes(spake),
            Message::PairReply { spake, mac } => {
                w.bytes(spake);
                w.0.extend_from_slice(mac);
            }
            Message::PairConfirm { mac } => w.0.extend_from_slice(mac),
            Message::PairResult { ok } => w.u8(u8::from(*ok)),
            Message::KeyUpdate { generation } | Message::KeyUpdateAck { generation } => {
                w.u32(*generation);
            }
        }
        let len = out.len() - start - FRAME_HEADER_LEN;
        // Every field is bounded by `validate`: the largest message (Welcome/Hello with
        // maximal strings) is a few hundred bytes, far below MAX_FRAME_LEN and u32::MAX.
        let len = u32::try_from(len).unwrap_or(u32::MAX);
        out[start..start + FRAME_HEADER_LEN].copy_from_slice(&len.to_be_bytes());
        Ok(())
    }

    /// Decodes one frame body: the type byte then the fields (no length prefix).
    pub fn decode(frame: &[u8]) -> Result<Self, MessageError> {
        let (&ty, body) = frame.split_first().ok_or(MessageError::EmptyFrame)?;
        if frame.len() > MAX_FRAME_LEN {
            return Err(MessageError::FrameTooLong {
                len: u32::try_from(frame.len()).unwrap_or(u32::MAX),
            });
        }
        let mut r = Reader { ty, rest: body };
        let msg = match ty {
            kind::HELLO => Message::Hello(Hello {
                version: r.u16("version")?,
                client_name: r.str("client_name", MAX_NAME_LEN)?,
                codecs: CodecSet(r.u8("codecs")?),
                max_mode: r.mode("max_mode")?,
                requested: r.mode("requested")?,
                wants_pairing: r.bool("wants_pairing")?,
            }),
            kind::WELCOME => {
                let session_id = r.u64("session_id")?;
                let codec = r.u8("codec")?;
                let codec = Codec::from_bit(codec).ok_or(MessageError::InvalidValue {
                    field: "codec",
                    value: u64::from(codec),
                })?;
                let fec = r.u8("fec")?;
                let fec = FecScheme::from_u8(fec).ok_or(MessageError::InvalidValue {
                    field: "fec",
                    value: u64::from(fec),
                })?;
                Message::Welcome(Welcome {
                    session_id,
                    codec,
                    fec,
                    parity_percent: r.u8("parity_percent")?,
                    shard_payload: r.u16("shard_payload")?,
                    data_port: r.u16("data_port")?,
                    mode: r.mode("mode")?,
                    key_epoch: r.u32("key_epoch")?,
                    exporter_label: r.str("exporter_label", MAX_LABEL_LEN)?,
                })
            }
            kind::START => Message::Start(Start {
                data_port: r.u16("data_port")?,
            }),
            kind::RECONFIGURE => Message::Reconfigure(r.mode("mode")?),
            kind::RECONFIGURED => Message::Reconfigured(Reconfigured {
                mode: r.mode("mode")?,
                epoch: r.u32("epoch")?,
                first_frame_id: r.u32("first_frame_id")?,
            }),
            kind::IDR_REQUEST => Message::IdrRequest,
            kind::LOSS_REPORT => Message::LossReport(LossReport {
                window_id: r.u32("window_id")?,
                expected: r.u32("expected")?,
                received: r.u32("received")?,
                frames_complete: r.u32("frames_complete")?,
                frames_unrecoverable: r.u32("frames_unrecoverable")?,
            }),
            kind::STATS => Message::Stats(Stats {
                window_id: r.u32("window_id")?,
                frames_decoded: r.u32("frames_decoded")?,
                frames_dropped: r.u32("frames_dropped")?,
                decode_us: r.u32("decode_us")?,
                latency_us: r.u32("latency_us")?,
                jitter_us: r.u32("jitter_us")?,
            }),
            kind::GOODBYE => Message::Goodbye(Goodbye {
                reason: GoodbyeReason::from_code(r.u16("reason")?),
                text: r.str("text", MAX_TEXT_LEN)?,
            }),
            kind::PAIR_READY => Message::PairReady {
                digits: r.u8("digits")?,
            },
            kind::PAIR_START => Message::PairStart {
                spake: r.sized_bytes("spake")?,
            },
            kind::PAIR_REPLY => Message::PairReply {
                spake: r.sized_bytes("spake")?,
                mac: r.array("mac")?,
            },
            kind::PAIR_CONFIRM => Message::PairConfirm {
                mac: r.array("mac")?,
            },
            kind::PAIR_RESULT => Message::PairResult { ok: r.bool("ok")? },
            kind::KEY_UPDATE => Message::KeyUpdate {
                generation: r.u32("generation")?,
            },
            kind::KEY_UPDATE_ACK => Message::KeyUpdateAck {
                generation: r.u32("generation")?,
            },
            other => return Err(MessageError::UnknownType(other)),
        };
        if !r.rest.is_empty() {
            return Err(MessageError::TrailingBytes {
                ty,
                extra: r.rest.len(),
            });
        }
        msg.validate()?;
        Ok(msg)
    }
}

struct Writer<'a>(&'a mut Vec<u8>);

impl Writer<'_> {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_be_bytes());
    }
    fn mode(&mut self, m: Mode) {
        self.u16(m.width);
        self.u16(m.height);
        self.u16(m.fps);
    }
    /// `validate` bounds every variable-length field far below 64 KiB.
    fn bytes(&mut self, b: &[u8]) {
        self.u16(u16::try_from(b.len()).unwrap_or(u16::MAX));
        self.0.extend_from_slice(b);
    }
    fn str(&mut self, s: &str) {
        self.bytes(s.as_bytes());
    }
}

struct Reader<'a> {
    ty: u8,
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, field: &'static str) -> Result<&'a [u8], MessageError> {
        if self.rest.len() < n {
            return Err(MessageError::Truncated { ty: self.ty, field });
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }
    fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], MessageError> {
        let mut a = [0; N];
        a.copy_from_slice(self.take(N, field)?);
        Ok(a)
    }
    fn u8(&mut self, field: &'static str) -> Result<u8, MessageError> {
        Ok(self.array::<1>(field)?[0])
    }
    fn u16(&mut self, field: &'static str) -> Result<u16, MessageError> {
        Ok(u16::from_be_bytes(self.array(field)?))
    }
    fn u32(&mut self, field: &'static str) -> Result<u32, MessageError> {
        Ok(u32::from_be_bytes(self.array(field)?))
    }
    fn u64(&mut self, field: &'static str) -> Result<u64, MessageError> {
        Ok(u64::from_be_bytes(self.array(field)?))
    }
    fn bool(&mut self, field: &'static str) -> Result<bool, MessageError> {
        match self.u8(field)? {
            0 => Ok(false),
            1 => Ok(true),
            v => Err(MessageError::InvalidValue {
                field,
                value: u64::from(v),
            }),
        }
    }
    fn mode(&mut self, field: &'static str) -> Result<Mode, MessageError> {
        let m = Mode {
            width: self.u16(field)?,
            height: self.u16(field)?,
            fps: self.u16(field)?,
        };
        m.check(field)?;
        Ok(m)
    }
    fn bytes(&mut self, field: &'static str, max: usize) -> Result<&'a [u8], MessageError> {
        let len = usize::from(self.u16(field)?);
        if len > max {
            return Err(MessageError::FieldTooLong { field, len, max });
        }
        self.take(len, field)
    }
    fn sized_bytes<const N: usize>(
        &mut self,
        field: &'static str,
    ) -> Result<[u8; N], MessageError> {
        let b = self.bytes(field, N)?;
        if b.len() != N {
            return Err(MessageError::InvalidValue {
                field,
                value: b.len() as u64,
            });
        }
        let mut a = [0; N];
        a.copy_from_slice(b);
        Ok(a)
    }
    fn str(&mut self, field: &'static str, max: usize) -> Result<String, MessageError> {
        let b = self.bytes(field, max)?;
        std::str::from_utf8(b)
            .map(str::to_owned)
            .map_err(|_| MessageError::NotUtf8 { field })
    }
}

/// Reassembles frames from control-stream bytes, which arrive in arbitrary pieces.
///
/// Holds at most one partial frame: a length prefix over [`MAX_FRAME_LEN`] is refused as soon
/// as its 4 bytes are in, before any body is buffered.
#[derive(Debug, Default)]
pub struct FrameDecoder {
    buf: Vec<u8>,
    pos: usize,
}

impl FrameDecoder {
    /// An empty decoder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends stream bytes.
    pub fn push(&mut self, bytes: &[u8]) {
        if self.pos > 0 && self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        }
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes buffered and not yet decoded.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The next complete message, `Ok(None)` if more bytes are needed. After an error the
    /// stream is out of sync; the caller ends the session.
    pub fn next_message(&mut self) -> Result<Option<Message>, MessageError> {
        let avail = &self.buf[self.pos..];
        let Some(header) = avail.first_chunk::<FRAME_HEADER_LEN>() else {
            return Ok(None);
        };
        let len = u32::from_be_bytes(*header);
        if len == 0 {
            return Err(MessageError::EmptyFrame);
        }
        if len as usize > MAX_FRAME_LEN {
            return Err(MessageError::FrameTooLong { len });
        }
        let end = FRAME_HEADER_LEN + len as usize;
        let Some(frame) = avail.get(FRAME_HEADER_LEN..end) else {
            return Ok(None);
        };
        let msg = Message::decode(frame);
        self.pos += end;
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
        } else if self.pos > MAX_FRAME_LEN {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        msg.map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn framed(m: &Message) -> Vec<u8> {
        let mut v = Vec::new();
        m.encode(&mut v).unwrap();
        v
    }

    fn hello() -> Message {
        Message::Hello(Hello {
            version: 1,
            client_name: "tv".into(),
            codecs: CodecSet::default().with(Codec::H264).with(Codec::Hevc),
            max_mode: Mode::new(3840, 2160, 120),
            requested: Mode::new(1920, 1080, 60),
            wants_pairing: true,
        })
    }

    #[test]
    fn hello_fixture() {
        let bytes = framed(&hello());
        #[rustfmt::skip]
        let expected: &[u8] = &[
            0, 0, 0, 21,       // length
            0x01,              // Hello
            0, 1,              // version
            0, 2, b't', b'v',  // name
            0x03,              // codecs H.264 | HEVC
            0x0f, 0x00, 0x08, 0x70, 0, 120,   // 3840x2160@120
            0x07, 0x80, 0x04, 0x38, 0, 60,    // 1920x1080@60
            1,                 // wants pairing
        ];
        assert_eq!(bytes, expected);
        assert_eq!(Message::decode(&bytes[4..]).unwrap(), hello());
    }

    #[test]
    fn goodbye_and_empty_fixtures() {
        let g = Message::Goodbye(Goodbye {
            reason: GoodbyeReason::NotPaired,
            text: "pair".into(),
        });
        assert_eq!(
            framed(&g),
            [0, 0, 0, 9, 0x09, 0, 1, 0, 4, b'p', b'a', b'i', b'r']
        );
        assert_eq!(framed(&Message::IdrRequest), [0, 0, 0, 1, 0x06]);
        assert_eq!(
            framed(&Message::PairResult { ok: true }),
            [0, 0, 0, 2, 0x14, 1]
        );
    }

    #[test]
    fn key_update_fixtures() {
        assert_eq!(
            framed(&Message::KeyUpdate { generation: 258 }),
            [0, 0, 0, 5, 0x0a, 0, 0, 1, 2]
        );
        assert_eq!(
            framed(&Message::KeyUpdateAck { generation: 1 }),
            [0, 0, 0, 5, 0x0b, 0, 0, 0, 1]
        );
        // Generation 0 is Welcome's key: never named by an update, either way.
        for ty in [0x0a, 0x0b] {
            assert_eq!(
                Message::decode(&[ty, 0, 0, 0, 0]),
                Err(MessageError::InvalidValue {
                    field: "generation",
                    value: 0
                })
            );
            assert!(matches!(
                Message::decode(&[ty, 0, 0, 1]),
                Err(MessageError::Truncated { .. })
            ));
        }
        assert!(
            Message::KeyUpdate { generation: 0 }
                .encode(&mut Vec::new())
                .is_err()
        );
    }

    #[test]
    fn hostile_bodies_are_errors() {
        assert_eq!(Message::decode(&[]), Err(MessageError::EmptyFrame));
        assert_eq!(
            Message::decode(&[0x7f]),
            Err(MessageError::UnknownType(0x7f))
        );
        assert!(matches!(
            Message::decode(&[0x06, 0]),
            Err(MessageError::TrailingBytes { ty: 6, extra: 1 })
        ));
        assert!(matches!(
            Message::decode(&[0x03, 0]),
            Err(MessageError::Truncated { ty: 3, .. })
        ));
        // bool 2
        assert!(matches!(
            Message::decode(&[0x14, 2]),
            Err(MessageError::InvalidValue { field: "ok", .. })
        ));
        // Name length beyond the limit.
        let mut b = framed(&hello());
        b[7] = 0;
        b[8] = 65;
        assert!(matches!(
            Message::decode(&b[4..]),
            Err(MessageError::FieldTooLong { .. })
        ));
        // Non-UTF-8 name.
        let mut b = framed(&hello());
        b[9] = 0xff;
        assert_eq!(
            Message::decode(&b[4..]),
            Err(MessageError::NotUtf8 {
                field: "client_name"
            })
        );
        // Zero width.
        let mut b = framed(&Message::Reconfigure(Mode::new(1, 1, 1)));
        b[5] = 0;
        b[6] = 0;
        assert!(matches!(
            Message::decode(&b[4..]),
            Err(MessageError::InvalidValue { field: "mode", .. })
        ));
        // SPAKE message of the wrong length.
        assert!(matches!(
            Message::decode(&[0x11, 0, 1, 0]),
            Err(MessageError::InvalidValue { field: "spake", .. })
        ));
    }

    #[test]
    fn encoder_refuses_what_the_decoder_would() {
        let mut out = vec![9];
        let long = Message::Goodbye(Goodbye {
            reason: GoodbyeReason::Normal,
            text: "x".repeat(MAX_TEXT_LEN + 1),
        });
        assert!(long.encode(&mut out).is_err());
        assert_eq!(out, [9]);
        assert!(
            Message::Reconfigure(Mode::new(0, 1, 1))
                .encode(&mut out)
                .is_err()
        );
    }

    #[test]
    fn frame_decoder_limits_and_pieces() {
        let mut d = FrameDecoder::new();
        d.push(&[0, 1, 0, 1]);
        assert_eq!(
            d.next_message(),
            Err(MessageError::FrameTooLong { len: 65537 })
        );
        let mut d = FrameDecoder::new();
        d.push(&[0, 0, 0, 0]);
        assert_eq!(d.next_message(), Err(MessageError::EmptyFrame));
        // A maximal-length prefix is accepted and waits for its body.
        let mut d = FrameDecoder::new();
        d.push(&[0, 1, 0, 0, 0x06]);
        assert_eq!(d.next_message(), Ok(None));

        let mut all = framed(&hello());
        all.extend(framed(&Message::IdrRequest));
        all.extend(framed(&Message::Start(Start { data_port: 5 })));
        let mut d = FrameDecoder::new();
        let mut got = Vec::new();
        for b in &all {
            d.push(std::slice::from_ref(b));
            while let Some(m) = d.next_message().unwrap() {
                got.push(m);
            }
        }
        assert_eq!(
            got,
            [
                hello(),
                Message::IdrRequest,
                Message::Start(Start { data_port: 5 })
            ]
        );
        assert_eq!(d.buffered(), 0);
    }

    fn mode() -> impl Strategy<Value = Mode> {
        (1..=MAX_DIMENSION, 1..=MAX_DIMENSION, 1..=MAX_FPS).prop_map(|(w, h, f)| Mode::new(w, h, f))
    }

    fn name(max: usize) -> impl Strategy<Value = String> {
        proptest::string::string_regex(".{0,20}")
            .expect("valid regex")
            .prop_map(move |s| {
                let mut s = s;
                while s.len() > max {
                    s.pop();
                }
                s
            })
    }

    fn message() -> impl Strategy<Value = Message> {
        prop_oneof![
            (
                any::<u16>(),
                name(MAX_NAME_LEN),
                any::<u8>(),
                mode(),
                mode(),
                any::<bool>()
            )
                .prop_map(
                    |(version, client_name, c, max_mode, requested, wants_pairing)| {
                        Message::Hello(Hello {
                            version,
                            client_name,
                            codecs: CodecSet(c),
                            max_mode,
                            requested,
                            wants_pairing,
                        })
                    }
                ),
            (
                any::<u64>(),
                prop_oneof![Just(Codec::H264), Just(Codec::Hevc), Just(Codec::Av1)],
                any::<u8>(),
                1..=u16::MAX / 2,
                1..=u16::MAX,
                mode(),
                any::<u32>(),
                name(MAX_LABEL_LEN)
            )
                .prop_map(|(session_id, codec, p, s, port, mode, e, l)| {
                    Message::Welcome(Welcome {
                        session_id,
                        codec,
                        fec: FecScheme::Gf16Leopard,
                        parity_percent: p,
                        shard_payload: s * 2,
                        data_port: port,
                        mode,
                        key_epoch: e,
                        exporter_label: l,
                    })
                }),
            any::<u16>().prop_map(|data_port| Message::Start(Start { data_port })),
            mode().prop_map(Message::Reconfigure),
            (mode(), any::<u32>(), any::<u32>()).prop_map(|(mode, epoch, first_frame_id)| {
                Message::Reconfigured(Reconfigured {
                    mode,
                    epoch,
                    first_frame_id,
                })
            }),
            Just(Message::IdrRequest),
            any::<[u32; 5]>().prop_map(|a| Message::LossReport(LossReport {
                window_id: a[0],
                expected: a[1],
                received: a[2],
                frames_complete: a[3],
                frames_unrecoverable: a[4],
            })),
            any::<[u32; 6]>().prop_map(|a| Message::Stats(Stats {
                window_id: a[0],
                frames_decoded: a[1],
                frames_dropped: a[2],
                decode_us: a[3],
                latency_us: a[4],
                jitter_us: a[5],
            })),
            (any::<u16>(), name(MAX_TEXT_LEN)).prop_map(|(c, text)| Message::Goodbye(Goodbye {
                reason: GoodbyeReason::from_code(c),
                text
            })),
            (4u8..=10).prop_map(|digits| Message::PairReady { digits }),
            any::<[u8; SPAKE_MSG_LEN]>().prop_map(|spake| Message::PairStart { spake }),
            (any::<[u8; SPAKE_MSG_LEN]>(), any::<[u8; MAC_LEN]>())
                .prop_map(|(spake, mac)| Message::PairReply { spake, mac }),
            any::<[u8; MAC_LEN]>().prop_map(|mac| Message::PairConfirm { mac }),
            any::<bool>().prop_map(|ok| Message::PairResult { ok }),
            (1..=u32::MAX).prop_map(|generation| Message::KeyUpdate { generation }),
            (1..=u32::MAX).prop_map(|generation| Message::KeyUpdateAck { generation }),
        ]
    }

    proptest! {
        #[test]
        fn round_trip(m in message()) {
            let bytes = framed(&m);
            let mut d = FrameDecoder::new();
            d.push(&bytes);
            prop_assert_eq!(d.next_message().unwrap(), Some(m));
            prop_assert_eq!(d.buffered(), 0);
        }

        #[test]
        fn goodbye_codes_round_trip(c in any::<u16>()) {
            prop_assert_eq!(GoodbyeReason::from_code(c).code(), c);
        }

        #[test]
        fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut d = FrameDecoder::new();
            d.push(&b);
            while let Ok(Some(_)) = d.next_message() {}
            let _ = Message::decode(&b);
        }
    }
}
