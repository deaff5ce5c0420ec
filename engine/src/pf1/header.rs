//! The punktfunk/1 datagram format.
//!
//! Every datagram is one FEC shard of one frame: a fixed 36-byte header, sent in the clear and
//! authenticated as AES-GCM associated data, then the encrypted shard, then the 16-byte tag.
//! All integers are big-endian (network order).
//!
//! ```text
//!  0        1        2        3        4                                   8
//! +--------+--------+--------+--------+-----------------------------------+
//! |version | type   | flags  | key id |          frame id (u32)           |
//! +--------+--------+--------+--------+-----------------------------------+
//!  8                                                                     16
//! +-----------------------------------------------------------------------+
//! |                 packet number (u64, unique per key)                   |
//! +-----------------+-----------------+-----------------+-----------------+
//!  16               18                20                22                24
//! |  shard index    |  data shards    |  parity shards  |  mode / epoch   |
//! +-----------------+-----------------+-----------------+-----------------+
//!  24                                28                                  36
//! |       frame length (u32)          |   capture timestamp (u64, µs) …   |
//! +-----------------------------------+-----------------------------------+
//!  36                                                      36 + L   36 + L + 16
//! |  AES-128-GCM ciphertext of the shard (L bytes, L even) |  tag (16 bytes)  |
//! +--------------------------------------------------------+------------------+
//! ```
//!
//! * `version` is 1. Its top two bits are 0, so a punktfunk/1 datagram is never mistaken for
//!   QUIC (RFC 9000 §17: the fixed bit 0x40 is set in every QUIC v1 packet) or RTP (version 2:
//!   0x80).
//! * `type` 0 is a video shard; nothing else is defined yet.
//! * `flags`: 0x01 keyframe, 0x02 first frame of a new mode (resolution, codec: the decoder
//!   must be reconfigured); the other bits are reserved and must be 0.
//! * `key id` names the key generation (see [`super::crypto`]).
//! * `packet number` grows by one per datagram sealed under the key and never repeats; with
//!   the key's salt it forms the nonce, so nonces never repeat either.
//! * `frame id` grows by one per frame. `shard index` < `data shards` + `parity shards`
//!   ≤ 65535; data shards come first. Every datagram of a frame has the same length, so the
//!   shard length `L` is the datagram length minus [`OVERHEAD`]; `data shards` is exactly
//!   `⌈frame length / L⌉` (1 for an empty frame) and the last data shard is zero-padded.
//! * `mode / epoch` identifies the stream configuration the frame belongs to.
//! * `capture timestamp` is the host's capture time in µs on its clock (latency accounting).

use super::Pf1Error;
use crate::fec::gf16::{Gf16Code, MAX_SHARDS};

/// Protocol version carried in byte 0.
pub const VERSION: u8 = 1;
/// Bytes of the header.
pub const HEADER_LEN: usize = 36;
/// Bytes of the AES-GCM tag at the end of every datagram.
pub const TAG_LEN: usize = 16;
/// Bytes a datagram adds to its shard: header and tag.
pub const OVERHEAD: usize = HEADER_LEN + TAG_LEN;
/// Largest UDP payload (IPv4: 65535 − 20 − 8).
pub const MAX_DATAGRAM: usize = 65507;
/// Largest shard: the largest even length that fits [`MAX_DATAGRAM`].
pub const MAX_SHARD_LEN: usize = (MAX_DATAGRAM - OVERHEAD) & !1;

/// Datagram types (byte 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketType {
    /// One FEC shard of a video frame.
    VideoShard = 0,
}

/// Header flag bits (byte 2).
pub mod flags {
    /// The frame is a keyframe (IDR).
    pub const KEYFRAME: u8 = 0x01;
    /// First frame of a new mode: the client reconfigures its decoder.
    pub const NEW_MODE: u8 = 0x02;
    /// Every defined bit.
    pub const ALL: u8 = KEYFRAME | NEW_MODE;
}

/// A parsed or to-be-written datagram header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Datagram type.
    pub packet_type: PacketType,
    /// [`flags`] bits.
    pub flags: u8,
    /// Key generation the datagram is sealed under.
    pub key_id: u8,
    /// Frame number, +1 per frame.
    pub frame_id: u32,
    /// Packet number, +1 per datagram under one key.
    pub packet_number: u64,
    /// Shard index in the frame's block: data shards first, then parity.
    pub shard_index: u16,
    /// Data shards of the frame (≥ 1).
    pub data_shards: u16,
    /// Parity shards of the frame.
    pub parity_shards: u16,
    /// Mode / epoch id of the stream configuration.
    pub mode: u16,
    /// Frame length in bytes.
    pub frame_len: u32,
    /// Capture timestamp, µs on the host's clock.
    pub capture_us: u64,
}

impl Header {
    /// Data plus parity shards.
    pub fn total_shards(&self) -> usize {
        usize::from(self.data_shards) + usize::from(self.parity_shards)
    }

    /// Whether the frame is a keyframe.
    pub fn keyframe(&self) -> bool {
        self.flags & flags::KEYFRAME != 0
    }

    /// Whether the frame starts a new mode.
    pub fn new_mode(&self) -> bool {
        self.flags & flags::NEW_MODE != 0
    }

    /// Whether this shard is a parity shard.
    pub fn is_parity(&self) -> bool {
        self.shard_index >= self.data_shards
    }

    /// Writes the header into `out`.
    pub fn write(&self, out: &mut [u8; HEADER_LEN]) {
        out[0] = VERSION;
        out[1] = self.packet_type as u8;
        out[2] = self.flags;
        out[3] = self.key_id;
        out[4..8].copy_from_slice(&self.frame_id.to_be_bytes());
        out[8..16].copy_from_slice(&self.packet_number.to_be_bytes());
        out[16..18].copy_from_slice(&self.shard_index.to_be_bytes());
        out[18..20].copy_from_slice(&self.data_shards.to_be_bytes());
        out[20..22].copy_from_slice(&self.parity_shards.to_be_bytes());
        out[22..24].copy_from_slice(&self.mode.to_be_bytes());
        out[24..28].copy_from_slice(&self.frame_len.to_be_bytes());
        out[28..36].copy_from_slice(&self.capture_us.to_be_bytes());
    }

    /// Parses and checks the header of a whole datagram; returns it with the shard length.
    ///
    /// Checks everything that can be checked without the key: length, version, type, flags,
    /// shard counts (≤ 65535 in all, a shape the GF(2^16) code supports), shard index, and
    /// that the frame length matches the data shard count at this shard length. The
    /// datagram is not authenticated yet.
    pub fn parse(datagram: &[u8]) -> Result<(Self, usize), Pf1Error> {
        let malformed = |why| Err(Pf1Error::Malformed(why));
        if datagram.len() < HEADER_LEN {
            return malformed("shorter than the header");
        }
        if datagram.len() > MAX_DATAGRAM {
            return malformed("longer than a UDP datagram");
        }
        let b = datagram;
        if b[0] != VERSION {
            return malformed("unknown version");
        }
        let packet_type = match b[1] {
            0 => PacketType::VideoShard,
            _ => return malformed("unknown datagram type"),
        };
        if b[2] & !flags::ALL != 0 {
            return malformed("reserved flag bits set");
        }
        let u16_at = |at: usize| u16::from_be_bytes([b[at], b[at + 1]]);
        let h = Header {
            packet_type,
            flags: b[2],
            key_id: b[3],
            frame_id: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
            packet_number: u64::from_be_bytes([
                b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
            ]),
            shard_index: u16_at(16),
            data_shards: u16_at(18),
            parity_shards: u16_at(20),
            mode: u16_at(22),
            frame_len: u32::from_be_bytes([b[24], b[25], b[26], b[27]]),
            capture_us: u64::from_be_bytes([
                b[28], b[29], b[30], b[31], b[32], b[33], b[34], b[35],
            ]),
        };
        let Some(shard_len) = datagram.len().checked_sub(OVERHEAD).filter(|&l| l >= 2) else {
            return malformed("no room for a shard and the tag");
        };
        if !shard_len.is_multiple_of(2) {
            return malformed("odd shard length");
        }
        let (data, parity) = (usize::from(h.data_shards), usize::from(h.parity_shards));
        if data == 0 {
            return malformed("zero data shards");
        }
        if data + parity > MAX_SHARDS {
            return malformed("more than 65535 shards in a frame");
        }
        if parity > Gf16Code::max_parity(data) {
            return malformed("FEC shape not supported by the GF(2^16) code");
        }
        if usize::from(h.shard_index) >= data + parity {
            return malformed("shard index outside its frame");
        }
        let frame_len = h.frame_len as usize;
        if data != frame_len.div_ceil(shard_len).max(1) {
            return malformed("frame length does not match the data shard count");
        }
        Ok((h, shard_len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Header {
        Header {
            packet_type: PacketType::VideoShard,
            flags: flags::KEYFRAME,
            key_id: 2,
            frame_id: 0x0102_0304,
            packet_number: 0x1112_1314_1516_1718,
            shard_index: 0x0005,
            data_shards: 0x0003,
            parity_shards: 0x0002,
            mode: 0xbeef,
            frame_len: 3000,
            capture_us: 0x2122_2324_2526_2728,
        }
    }

    /// The header of `sample()`, byte for byte.
    const FIXTURE: [u8; HEADER_LEN] = [
        0x01, 0x00, 0x01, 0x02, // version, type, flags, key id
        0x01, 0x02, 0x03, 0x04, // frame id
        0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, // packet number
        0x00, 0x05, 0x00, 0x03, 0x00, 0x02, 0xbe, 0xef, // shard, data, parity, mode
        0x00, 0x00, 0x0b, 0xb8, // frame length 3000
        0x21, 0x22, 0x23, 0x24, 0x25, 0x26, 0x27, 0x28, // capture µs
    ];

    fn datagram(h: &Header, shard_len: usize) -> Vec<u8> {
        let mut d = vec![0u8; OVERHEAD + shard_len];
        let mut head = [0u8; HEADER_LEN];
        h.write(&mut head);
        d[..HEADER_LEN].copy_from_slice(&head);
        d
    }

    #[test]
    fn writes_the_fixture() {
        let mut out = [0u8; HEADER_LEN];
        // shard index 5 is outside 3 + 2 shards: fix it for parsing below.
        sample().write(&mut out);
        assert_eq!(out, FIXTURE);
    }

    #[test]
    fn parses_the_fixture() {
        let mut d = FIXTURE.to_vec();
        d[17] = 4; // shard 4 of 3 + 2
        d.resize(OVERHEAD + 1000, 0);
        let (h, len) = Header::parse(&d).unwrap();
        assert_eq!(len, 1000);
        assert_eq!(
            h,
            Header {
                shard_index: 4,
                ..sample()
            }
        );
        assert!(h.keyframe() && !h.new_mode() && h.is_parity());
        assert_eq!(h.total_shards(), 5);
    }

    #[test]
    fn rejects_bad_headers() {
        let good = Header {
            shard_index: 0,
            ..sample()
        };
        let ok = datagram(&good, 1000);
        assert!(Header::parse(&ok).is_ok());
        let bad = |f: &dyn Fn(&mut Header), len: usize| {
            let mut h = good;
            f(&mut h);
            Header::parse(&datagram(&h, len))
        };
        let malformed = |r: Result<(Header, usize), Pf1Error>| {
            assert!(matches!(r, Err(Pf1Error::Malformed(_))), "{r:?}");
        };
        malformed(Header::parse(&ok[..HEADER_LEN - 1]));
        malformed(Header::parse(&ok[..OVERHEAD + 1]));
        malformed(Header::parse(&ok[..ok.len() - 1])); // odd shard
        malformed(Header::parse(&vec![0; MAX_DATAGRAM + 1]));
        let mut v = ok.clone();
        v[0] = 2;
        malformed(Header::parse(&v));
        v = ok.clone();
        v[1] = 1;
        malformed(Header::parse(&v));
        v = ok.clone();
        v[2] = 0x80;
        malformed(Header::parse(&v));
        malformed(bad(&|h| h.data_shards = 0, 1000));
        malformed(bad(
            &|h| {
                h.data_shards = 40000;
                h.parity_shards = 30000;
            },
            1000,
        ));
        // 40000 + 20000 ≤ 65535 shards, but the code cannot build that shape.
        malformed(bad(
            &|h| {
                h.data_shards = 40000;
                h.parity_shards = 20000;
                h.frame_len = 40_000_000;
            },
            1000,
        ));
        malformed(bad(&|h| h.shard_index = 5, 1000));
        malformed(bad(&|h| h.frame_len = 2000, 1000)); // 2 shards, not 3
        malformed(bad(&|h| h.frame_len = 3001, 1000)); // 4 shards
        assert!(bad(&|h| h.frame_len = 2001, 1000).is_ok());
        assert!(
            bad(
                &|h| {
                    h.frame_len = 0;
                    h.data_shards = 1
                },
                2
            )
            .is_ok()
        );
    }
}
