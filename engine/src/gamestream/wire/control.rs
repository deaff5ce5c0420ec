//! The AES-GCM envelope around every GameStream control message
//! (docs/gamestream-protocol-notes.md "Control envelope").
//!
//! ```text
//! 0        2        4            8                  24
//! +--------+--------+------------+------------------+-------------------------------------+
//! | 0x0001 | length | seq        | tag[16]          | AES-128-GCM( type | len | payload ) |
//! | LE16   | LE16   | LE32       |                  |   inner V2 header, LE16 + LE16      |
//! +--------+--------+------------+------------------+-------------------------------------+
//! length = 4 (seq) + 16 (tag) + 4 (inner header) + payload length
//! ```
//!
//! Key = `rikey`, no AAD, tag before the ciphertext. With `SS_ENC_CONTROL_V2` negotiated the
//! 12-byte nonce is `seq LE32 ‖ 0 × 6 ‖ dir ‖ 'C'` with `dir` = `'C'` (client → host) or `'H'`
//! (host → client). The inner payload-length field is ignored on receipt (the decrypted length
//! is what counts), as moonlight-common-c does.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};

use super::WireError;
use super::bytes::*;

/// `encryptedHeaderType` of every encrypted control packet.
pub const ENCRYPTED_HEADER_TYPE: u16 = 0x0001;
/// Bytes before the ciphertext: type, length, seq, tag.
pub const ENVELOPE_OVERHEAD: usize = 2 + 2 + 4 + 16;
/// The inner V2 header (type, length) inside the ciphertext.
pub const INNER_HEADER_LEN: usize = 4;
/// Largest control message payload accepted (the length field is 16 bits).
pub const MAX_PAYLOAD: usize = u16::MAX as usize - 4 - 16 - INNER_HEADER_LEN;

/// Who sent a control message; part of the nonce.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Moonlight → host (`'C'`).
    ClientToHost,
    /// Host → Moonlight (`'H'`).
    HostToClient,
}

impl Direction {
    fn byte(self) -> u8 {
        match self {
            Direction::ClientToHost => b'C',
            Direction::HostToClient => b'H',
        }
    }
}

/// A decrypted control message, borrowing its payload from the packet buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlMessage<'a> {
    /// Sender's sequence number.
    pub seq: u32,
    /// Inner message type (e.g. 0x0302 IDR request).
    pub msg_type: u16,
    /// Inner payload.
    pub payload: &'a [u8],
}

/// Seals and opens control messages with one session key.
pub struct ControlCipher {
    cipher: Aes128Gcm,
}

impl std::fmt::Debug for ControlCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlCipher").finish_non_exhaustive()
    }
}

fn nonce(seq: u32, dir: Direction) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&seq.to_le_bytes());
    n[10] = dir.byte();
    n[11] = b'C';
    Nonce::from(n)
}

impl ControlCipher {
    /// A cipher keyed with the session's `rikey`.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Aes128Gcm::new(key.into()),
        }
    }

    /// Bytes [`Self::seal`] writes for a payload of `payload_len` bytes.
    pub fn sealed_len(payload_len: usize) -> usize {
        ENVELOPE_OVERHEAD + INNER_HEADER_LEN + payload_len
    }

    /// Encrypts message `msg_type` with `payload` as sequence number `seq` into `out`,
    /// returning the packet length.
    pub fn seal(
        &self,
        seq: u32,
        dir: Direction,
        msg_type: u16,
        payload: &[u8],
        out: &mut [u8],
    ) -> Result<usize, WireError> {
        if payload.len() > MAX_PAYLOAD {
            return Err(WireError::InvalidParameter(
                "control payload longer than 65507 bytes",
            ));
        }
        let len = Self::sealed_len(payload.len());
        if out.len() < len {
            return Err(WireError::BufferTooSmall {
                needed: len,
                got: out.len(),
            });
        }
        let out = &mut out[..len];
        put_u16_le(out, 0, ENCRYPTED_HEADER_TYPE);
        put_u16_le(out, 2, (len - 4) as u16);
        put_u32_le(out, 4, seq);
        let (head, body) = out.split_at_mut(ENVELOPE_OVERHEAD);
        put_u16_le(body, 0, msg_type);
        put_u16_le(body, 2, payload.len() as u16);
        body[INNER_HEADER_LEN..].copy_from_slice(payload);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(seq, dir), &[], body.into())
            .map_err(|_| WireError::InvalidParameter("control message too large for AES-GCM"))?;
        head[8..24].copy_from_slice(&tag);
        Ok(len)
    }

    /// Authenticates and decrypts `packet` in place. Anything malformed or forged is an error;
    /// the buffer's contents are then unspecified.
    pub fn open<'a>(
        &self,
        packet: &'a mut [u8],
        dir: Direction,
    ) -> Result<ControlMessage<'a>, WireError> {
        if packet.len() < ENVELOPE_OVERHEAD + INNER_HEADER_LEN {
            return Err(WireError::Malformed(
                "control packet shorter than its envelope",
            ));
        }
        if u16_le(packet, 0) != ENCRYPTED_HEADER_TYPE {
            return Err(WireError::Malformed(
                "control packet is not encrypted (type != 0x0001)",
            ));
        }
        let len = u16_le(packet, 2) as usize;
        if len < 4 + 16 + INNER_HEADER_LEN || len + 4 > packet.len() {
            return Err(WireError::Malformed(
                "control packet length field out of range",
            ));
        }
        let seq = u32_le(packet, 4);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&packet[8..24]);
        let body = &mut packet[ENVELOPE_OVERHEAD..len + 4];
        self.cipher
            .decrypt_inout_detached(&nonce(seq, dir), &[], (&mut *body).into(), &Tag::from(tag))
            .map_err(|_| WireError::Auth)?;
        let body: &'a [u8] = body;
        Ok(ControlMessage {
            seq,
            msg_type: u16_le(body, 0),
            payload: &body[INNER_HEADER_LEN..],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Notes "Control envelope" vectors: moonlight-common-c's own seal and open agree with them.
    #[test]
    fn protocol_map_vectors() {
        let c = ControlCipher::new(&KEY);
        let mut out = [0u8; 64];
        let n = c
            .seal(0, Direction::ClientToHost, 0x0302, &[0, 0], &mut out)
            .unwrap();
        assert_eq!(
            out[..n],
            hex("01001a000000000022302723537811166cb9bfead7dad4575cd629f5cafe")
        );
        let n = c.seal(
            0,
            Direction::HostToClient,
            0x0109,
            &[0x80, 0x03, 0x00, 0x23],
            &mut out,
        );
        let n = n.unwrap();
        assert_eq!(
            out[..n],
            hex("01001c0000000000b835a2b8ace857ddcbad385dce166aa9f2dd4edacf3be801")
        );
        let mut pkt = out[..n].to_vec();
        let m = c.open(&mut pkt, Direction::HostToClient).unwrap();
        assert_eq!(
            (m.seq, m.msg_type, m.payload),
            (0, 0x0109, &[0x80, 0x03, 0x00, 0x23][..])
        );
    }

    #[test]
    fn hostile_packets_are_errors() {
        let c = ControlCipher::new(&KEY);
        let mut out = [0u8; 64];
        let n = c.seal(
            7,
            Direction::ClientToHost,
            0x0200,
            &[4, 0, 0, 0, 0, 0, 0, 0],
            &mut out,
        );
        let n = n.unwrap();
        // Wrong direction (nonce), flipped bit, truncation, bad type, bad length.
        let mut p = out[..n].to_vec();
        assert_eq!(
            c.open(&mut p, Direction::HostToClient),
            Err(WireError::Auth)
        );
        let mut p = out[..n].to_vec();
        p[n - 1] ^= 1;
        assert_eq!(
            c.open(&mut p, Direction::ClientToHost),
            Err(WireError::Auth)
        );
        let mut p = out[..n - 3].to_vec();
        assert!(matches!(
            c.open(&mut p, Direction::ClientToHost),
            Err(WireError::Malformed(_))
        ));
        let mut p = out[..n].to_vec();
        p[0] = 2;
        assert!(matches!(
            c.open(&mut p, Direction::ClientToHost),
            Err(WireError::Malformed(_))
        ));
        let mut p = out[..n].to_vec();
        p[2] = 3;
        assert!(matches!(
            c.open(&mut p, Direction::ClientToHost),
            Err(WireError::Malformed(_))
        ));
        for len in 0..n {
            let mut p = out[..len].to_vec();
            assert!(c.open(&mut p, Direction::ClientToHost).is_err());
        }
        let mut p = out[..n].to_vec();
        let m = c.open(&mut p, Direction::ClientToHost).unwrap();
        assert_eq!((m.seq, m.msg_type, m.payload.len()), (7, 0x0200, 8));
        assert!(matches!(
            c.seal(0, Direction::ClientToHost, 1, &[0; 8], &mut [0u8; 10]),
            Err(WireError::BufferTooSmall { .. })
        ));
    }
}
