//! What the host says about a live streaming session, whatever the protocol: one
//! [`LiveSession`] row per session in `/api/sessions` and `punktfunk status`.
//!
//! Pure data. Each protocol fills its rows from its own books (GameStream:
//! `SessionManager::live`; punktfunk/1: `HostHandle::live_sessions`); the management API
//! concatenates them.

use serde::Serialize;

/// Which protocol a session speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// GameStream (stock Moonlight clients).
    Gamestream,
    /// punktfunk/1.
    Pf1,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LiveState {
    /// Admitted (launched, or QUIC handshake done); the media stream has not started.
    Connecting,
    /// Media flows and the client is heard from.
    Streaming,
    /// The client went quiet or away; the session is kept for it to resume.
    Disconnected,
}

/// A video mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct LiveMode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

/// The client of a session.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveClient {
    /// GameStream: the first 16 hex digits of the certificate fingerprint; punktfunk/1: the
    /// hex fingerprint of the client certificate.
    pub id: String,
    /// The name it paired with.
    pub name: String,
}

/// One live session, as `/api/sessions` lists it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiveSession {
    /// Protocol.
    pub protocol: Protocol,
    /// The session's id within its protocol (GameStream session number, punktfunk/1
    /// connection id), as a string.
    pub id: String,
    /// Who streams.
    pub client: LiveClient,
    /// Where the client's media goes (`None` before the first packet from it).
    pub address: Option<std::net::SocketAddr>,
    /// State.
    pub state: LiveState,
    /// The mode streamed now.
    pub mode: LiveMode,
    /// `"h264"`, `"hevc"`, `"av1"`.
    pub codec: String,
    /// Encoder target, kbit/s.
    pub bitrate_kbps: u32,
    /// Video frames sent in this session (zero at its start).
    pub frames_sent: u64,
    /// Loss the client reported last, percent (0 before any report).
    pub loss_percent: f32,
    /// Parity the video FEC uses now, percent of data shards.
    pub fec_percent: u32,
    /// Seconds since the session was admitted.
    pub age_s: u64,
}

/// What a running stream reports about itself (the GameStream streaming side fills it; the
/// session table turns it into a [`LiveSession`] row).
#[derive(Debug, Clone, PartialEq)]
pub struct StreamFigures {
    /// Where the media goes (`None` before the client's first ping).
    pub address: Option<std::net::SocketAddr>,
    /// `"h264"`, `"hevc"`, `"av1"`.
    pub codec: String,
    /// Encoder target, kbit/s.
    pub bitrate_kbps: u32,
    /// Video frames sent in this stream.
    pub frames_sent: u64,
    /// Loss the client reported last, percent.
    pub loss_percent: f32,
    /// Parity of the last frame sent, percent of its data shards.
    pub fec_percent: u32,
    /// Whether the video pipeline runs (the client's first ping came).
    pub media_flowing: bool,
}
