//! The AES-GCM envelope of encrypted RTSP (`rtspenc://`, docs/gamestream-protocol-notes.md
//! "Encrypted RTSP").
//!
//! ```text
//! 0                4          8                24
//! +----------------+----------+----------------+------------------------------+
//! | 0x8000_0000|len| seq      | tag[16]        | AES-128-GCM(RTSP message)    |
//! | BE32           | BE32     |                | len bytes                    |
//! +----------------+----------+----------------+------------------------------+
//! ```
//!
//! One message per TCP connection in each direction, nothing before or after it. Key =
//! `rikey`, no AAD; nonce = `seq LE32 ‖ 0 × 6 ‖ dir ‖ 'R'` with `dir` = `'C'` for the client's
//! request and `'H'` for the host's response. The client numbers its requests 1, 2, … over the
//! whole handshake; the host picks its own sequence numbers (each only once per key).

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};

use super::WireError;
use super::bytes::*;
use super::control::Direction;

/// The bit of the first word that marks an encrypted message (plain RTSP starts with ASCII).
pub const ENCRYPTED_BIT: u32 = 0x8000_0000;
/// Bytes before the ciphertext: length word, seq, tag.
pub const HEADER_LEN: usize = 4 + 4 + 16;

/// Whether a connection's first byte starts an encrypted message (a plain request starts with
/// an ASCII method name).
pub fn is_encrypted(first_byte: u8) -> bool {
    first_byte & 0x80 != 0
}

/// How long the whole message is (header included), from its first [`HEADER_LEN`] bytes;
/// `None` while fewer have arrived. An error when the first word lacks the encrypted bit.
pub fn message_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    if buf.len() < 4 {
        return Ok(None);
    }
    let word = u32_be(buf, 0);
    if word & ENCRYPTED_BIT == 0 {
        return Err(WireError::Malformed("RTSP message lacks the encrypted bit"));
    }
    Ok(Some(HEADER_LEN + (word & !ENCRYPTED_BIT) as usize))
}

fn nonce(seq: u32, dir: Direction) -> Nonce<aes_gcm::aes::cipher::consts::U12> {
    let mut n = [0u8; 12];
    n[..4].copy_from_slice(&seq.to_le_bytes());
    n[10] = match dir {
        Direction::ClientToHost => b'C',
        Direction::HostToClient => b'H',
    };
    n[11] = b'R';
    Nonce::from(n)
}

/// Seals and opens encrypted RTSP messages with one session key.
pub struct RtspCipher {
    cipher: Aes128Gcm,
}

impl std::fmt::Debug for RtspCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RtspCipher").finish_non_exhaustive()
    }
}

impl RtspCipher {
    /// A cipher keyed with the session's `rikey`.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Aes128Gcm::new(key.into()),
        }
    }

    /// `message` sealed as sequence number `seq` from `dir`'s sender.
    pub fn seal(&self, seq: u32, dir: Direction, message: &[u8]) -> Result<Vec<u8>, WireError> {
        let len = u32::try_from(message.len())
            .ok()
            .filter(|l| l & ENCRYPTED_BIT == 0)
            .ok_or(WireError::InvalidParameter(
                "RTSP message longer than 2 GiB",
            ))?;
        let mut out = vec![0u8; HEADER_LEN + message.len()];
        put_u32_be(&mut out, 0, ENCRYPTED_BIT | len);
        put_u32_be(&mut out, 4, seq);
        let (head, body) = out.split_at_mut(HEADER_LEN);
        body.copy_from_slice(message);
        let tag = self
            .cipher
            .encrypt_inout_detached(&nonce(seq, dir), &[], body.into())
            .map_err(|_| WireError::InvalidParameter("RTSP message too large for AES-GCM"))?;
        head[8..24].copy_from_slice(&tag);
        Ok(out)
    }

    /// Authenticates and decrypts the complete message `packet` (exactly [`message_len`]
    /// bytes) in place; its sequence number and the plaintext. Anything malformed, cut short,
    /// with bytes after it, or forged is an error.
    pub fn open<'a>(
        &self,
        packet: &'a mut [u8],
        dir: Direction,
    ) -> Result<(u32, &'a [u8]), WireError> {
        match message_len(packet)? {
            Some(n) if n == packet.len() => {}
            Some(n) if n > packet.len() => {
                return Err(WireError::Malformed("encrypted RTSP message cut short"));
            }
            Some(_) => {
                return Err(WireError::Malformed(
                    "bytes after an encrypted RTSP message",
                ));
            }
            None => return Err(WireError::Malformed("encrypted RTSP header cut short")),
        }
        if packet.len() < HEADER_LEN {
            return Err(WireError::Malformed("encrypted RTSP header cut short"));
        }
        let seq = u32_be(packet, 4);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&packet[8..24]);
        let body = &mut packet[HEADER_LEN..];
        self.cipher
            .decrypt_inout_detached(&nonce(seq, dir), &[], (&mut *body).into(), &Tag::from(tag))
            .map_err(|_| WireError::Auth)?;
        Ok((seq, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [7; 16];

    #[test]
    fn round_trip_both_directions() {
        let c = RtspCipher::new(&KEY);
        let req = b"OPTIONS rtsp://10.0.0.1:48010 RTSP/1.0\r\nCSeq: 1\r\n\r\n";
        let mut sealed = c.seal(1, Direction::ClientToHost, req).unwrap();
        assert!(is_encrypted(sealed[0]));
        assert_eq!(message_len(&sealed).unwrap(), Some(sealed.len()));
        assert_eq!(u32_be(&sealed, 0), ENCRYPTED_BIT | req.len() as u32);
        let (seq, plain) = c.open(&mut sealed, Direction::ClientToHost).unwrap();
        assert_eq!((seq, plain), (1, &req[..]));
        // The host's direction is another nonce: a client message does not open as the host's.
        let mut sealed = c.seal(1, Direction::ClientToHost, req).unwrap();
        assert_eq!(
            c.open(&mut sealed, Direction::HostToClient),
            Err(WireError::Auth)
        );
    }

    #[test]
    fn hostile_messages_are_errors() {
        let c = RtspCipher::new(&KEY);
        let sealed = c
            .seal(5, Direction::ClientToHost, b"PLAY / RTSP/1.0\r\n\r\n")
            .unwrap();
        // Plain text where an encrypted message must be.
        assert!(message_len(b"OPTIONS").is_err());
        assert!(!is_encrypted(b'O'));
        // Cut short, extra bytes, a wrong key, a flipped bit.
        let mut short = sealed[..sealed.len() - 1].to_vec();
        assert!(matches!(
            c.open(&mut short, Direction::ClientToHost),
            Err(WireError::Malformed(_))
        ));
        let mut long = [sealed.as_slice(), &[0]].concat();
        assert!(matches!(
            c.open(&mut long, Direction::ClientToHost),
            Err(WireError::Malformed(_))
        ));
        let mut other = sealed.clone();
        assert_eq!(
            RtspCipher::new(&[8; 16]).open(&mut other, Direction::ClientToHost),
            Err(WireError::Auth)
        );
        let mut flipped = sealed.clone();
        flipped[30] ^= 1;
        assert_eq!(
            c.open(&mut flipped, Direction::ClientToHost),
            Err(WireError::Auth)
        );
        let mut tiny = [0x80, 0, 0, 0, 0];
        assert!(c.open(&mut tiny, Direction::ClientToHost).is_err());
    }
}
