//! GameStream wire formats as pure functions over caller-owned buffers.
//!
//! * [`video`]: RTP + `NV_VIDEO_PACKET` packetizer (FEC blocks, SOF/EOF, the 8-byte frame
//!   header, parity-header overwrite) and the matching depacketizer, plus AES-GCM video
//!   encryption.
//! * [`audio`]: RTP payload type 97 packets with AES-128-CBC and the 4+2 FEC packets.
//! * [`control`]: the AES-GCM envelope around every ENet control message (V2 nonces).
//!
//! Everything here follows docs/gamestream-protocol-notes.md (the section is cited by name next to
//! each rule, as `notes "Video packets"`) and was checked against moonlight-common-c where the
//! notes name a vector or an end-to-end test. Nothing here touches a socket or a clock; the caller
//! hands in buffers, indices and timestamps.

pub mod audio;
pub mod control;
pub mod rtsp;
pub mod video;

/// Why a packet could not be built or parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A datagram from the peer is malformed (hostile or corrupt input).
    #[error("malformed packet: {0}")]
    Malformed(&'static str),
    /// A datagram failed authentication or decryption.
    #[error("packet failed authentication")]
    Auth,
    /// The caller's output buffer is too small.
    #[error("output buffer holds {got} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A frame does not fit the protocol's limits (4 FEC blocks of at most 1023 shards).
    #[error("frame of {bytes} bytes needs more than {max_shards} packets")]
    FrameTooLarge {
        /// Frame size.
        bytes: usize,
        /// Packets the protocol allows per frame at this packet size.
        max_shards: usize,
    },
    /// Parameters the caller chose are outside what the protocol allows.
    #[error("invalid parameter: {0}")]
    InvalidParameter(&'static str),
    /// The FEC layer refused the block.
    #[error(transparent)]
    Fec(#[from] crate::fec::FecError),
}

/// Little helpers for fixed-offset integer access; every caller checks lengths first.
pub(crate) mod bytes {
    pub(crate) fn put_u16_be(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn put_u32_be(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_be_bytes());
    }
    pub(crate) fn put_u16_le(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn put_u32_le(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub(crate) fn u16_be(b: &[u8], at: usize) -> u16 {
        u16::from_be_bytes([b[at], b[at + 1]])
    }
    pub(crate) fn u32_be(b: &[u8], at: usize) -> u32 {
        u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
    pub(crate) fn u16_le(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([b[at], b[at + 1]])
    }
    pub(crate) fn u32_le(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
    }
}
