//! Data-plane keys, nonces and the replay window.
//!
//! # Key material
//!
//! The control plane derives [`KEY_MATERIAL_LEN`] = 20 bytes per key generation from its QUIC
//! connection's TLS 1.3 exporter (RFC 8446 §7.5; RFC 9001 §4 keeps the exporter available in
//! QUIC):
//!
//! ```text
//!  material(g) = TLS-Exporter(label   = "EXPORTER-punktfunk/1 data host->client",
//!                             context = session id (u64 BE) ‖ generation g (u32 BE),
//!                             length  = 32)[0..20]
//!  key  = material[0..16]   (AES-128-GCM)
//!  salt = material[16..20]
//! ```
//!
//! ([`DataKey::exporter_context`] builds the 12-byte context.) Generation 0 is the first key;
//! the datagram header carries the generation modulo 256 as its key id. Both ends can compute
//! every generation from the TLS session, so a key update sends nothing secret: the host
//! names the next generation on the control stream, the client derives it, installs it and
//! acknowledges, and the sender switches at its next frame (`docs/pf1-data-plane.md`, "Key
//! updates").
//!
//! # Nonces
//!
//! `nonce = salt ‖ packet number` (4 + 8 bytes, the packet number big-endian, RFC 5116 §3.2
//! style). The sender numbers datagrams 0, 1, 2, … under each key, refuses to seal once the
//! key's limit is reached, and refuses a key whose generation is not newer than the one in
//! use ([`super::Pf1Error::StaleKey`]), so no (key, nonce) pair is ever used twice; the salt
//! and key differ per generation and per session because the exporter context does.
//!
//! # Usage limit
//!
//! RFC 9001 §6.6 and Appendix B.1.1 bound AES-GCM's confidentiality margin in blocks sealed:
//! `q ≤ 2^35 / l` packets of at most `l` 16-byte blocks keep an attacker's advantage below
//! 2^-57 (2^28 packets of ≤ 2^11 bytes). [`packet_limit`] applies that to the shard length in
//! use (a configuration may lower it: `Pf1SenderConfig::key_packet_limit`);
//! [`super::Pf1Sender::key_update_due`] turns true at `key_update_percent` (75 %) of it, and
//! sealing stops with [`Pf1Error::KeyExhausted`] at the limit. At 2.5 Gbit/s in 1460-byte
//! datagrams the limit is about 20 minutes of video, so the control plane rotates keys.
//!
//! # Replay
//!
//! The replay window remembers the packet numbers of the last [`REPLAY_WINDOW`] datagrams
//! (a bitmap indexed by packet number modulo the window, like RFC 6479 / DTLS 1.3 §4.5.1):
//! a number seen before, or older than the window, is refused. Only authenticated datagrams
//! enter the window, so forged packet numbers cannot push it forward. Each key generation has
//! its own window (packet numbers restart at 0 under a new key).

use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, Tag, UnboundKey};

use super::Pf1Error;
use super::header::{HEADER_LEN, TAG_LEN};

/// Bytes the control plane exports per key: a 16-byte AES-128 key and a 4-byte salt.
pub const KEY_MATERIAL_LEN: usize = 20;

/// TLS exporter label for the host → client data-plane key.
pub const EXPORTER_LABEL: &str = "EXPORTER-punktfunk/1 data host->client";

/// Packet numbers remembered by the replay window.
pub const REPLAY_WINDOW: u64 = 16384;

/// A data-plane key: AES-128-GCM key, nonce salt and key id.
#[derive(Clone)]
pub struct DataKey {
    key: LessSafeKey,
    salt: [u8; 4],
    generation: u32,
}

impl std::fmt::Debug for DataKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key bytes.
        f.debug_struct("DataKey")
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl DataKey {
    /// A key from exporter output, labelled generation 0 (see the module docs for the label,
    /// context and length; [`DataKey::with_generation`] labels it).
    pub fn from_key_material(material: &[u8; KEY_MATERIAL_LEN]) -> Self {
        let unbound = UnboundKey::new(&AES_128_GCM, &material[..16])
            .expect("a 16-byte slice is always a valid AES-128 key");
        let mut salt = [0u8; 4];
        salt.copy_from_slice(&material[16..]);
        Self {
            key: LessSafeKey::new(unbound),
            salt,
            generation: 0,
        }
    }

    /// The same key labelled as generation `generation` (its id is `generation mod 256`).
    pub fn with_generation(mut self, generation: u32) -> Self {
        self.generation = generation;
        self
    }

    /// The exporter context of key generation `generation` of session `session_id`: the
    /// session id (8 bytes) then the generation (4 bytes), both big-endian.
    pub fn exporter_context(session_id: u64, generation: u32) -> [u8; 12] {
        let mut c = [0u8; 12];
        c[..8].copy_from_slice(&session_id.to_be_bytes());
        c[8..].copy_from_slice(&generation.to_be_bytes());
        c
    }

    /// The key generation.
    pub fn generation(&self) -> u32 {
        self.generation
    }

    /// The key id carried in the header: the generation modulo 256.
    pub fn id(&self) -> u8 {
        // Truncation intended: the header carries the low 8 bits.
        self.generation as u8
    }

    fn nonce(&self, packet_number: u64) -> Nonce {
        let mut n = [0u8; 12];
        n[..4].copy_from_slice(&self.salt);
        n[4..].copy_from_slice(&packet_number.to_be_bytes());
        Nonce::assume_unique_for_key(n)
    }

    /// Encrypts `payload` in place under `packet_number` with `header` as associated data and
    /// returns the tag. The caller guarantees the packet number was never used with this key.
    pub(crate) fn seal(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &mut [u8],
    ) -> [u8; TAG_LEN] {
        let tag = self
            .key
            .seal_in_place_separate_tag(self.nonce(packet_number), Aad::from(header), payload)
            // ring refuses only inputs longer than AES-GCM's 2^36-byte limit; a shard is at
            // most 65454 bytes.
            .expect("a shard is far below the AES-GCM input limit");
        let mut out = [0u8; TAG_LEN];
        out.copy_from_slice(tag.as_ref());
        out
    }

    /// Decrypts `payload` in place; on failure its content is unspecified.
    pub(crate) fn open(
        &self,
        packet_number: u64,
        header: &[u8],
        payload: &mut [u8],
        tag: [u8; TAG_LEN],
    ) -> Result<(), Pf1Error> {
        self.key
            .open_in_place_separate_tag(
                self.nonce(packet_number),
                Aad::from(header),
                Tag::from(tag),
                payload,
                0..,
            )
            .map(|_| ())
            .map_err(|_| Pf1Error::Auth)
    }
}

/// Packets one key may seal when every datagram carries a `shard_len`-byte shard (see the
/// module docs): `2^35 / l`, `l` the datagram's header + shard in 16-byte blocks rounded up
/// to a power of two.
pub fn packet_limit(shard_len: usize) -> u64 {
    let blocks = (HEADER_LEN + shard_len).div_ceil(16).next_power_of_two() as u64;
    (1u64 << 35) / blocks.max(1)
}

/// Why a packet number was refused by the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ReplayVerdict {
    /// Not seen and inside (or ahead of) the window.
    Fresh,
    /// Seen before.
    Duplicate,
    /// Older than the window.
    TooOld,
}

/// Sliding replay window over packet numbers (see the module docs).
#[derive(Clone)]
pub(crate) struct ReplayWindow {
    highest: Option<u64>,
    bits: Box<[u64; (REPLAY_WINDOW / 64) as usize]>,
}

impl std::fmt::Debug for ReplayWindow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplayWindow")
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl ReplayWindow {
    pub(crate) fn new() -> Self {
        Self {
            highest: None,
            bits: Box::new([0; (REPLAY_WINDOW / 64) as usize]),
        }
    }

    /// The highest packet number accepted so far.
    pub(crate) fn highest(&self) -> Option<u64> {
        self.highest
    }

    fn bit(pn: u64) -> (usize, u64) {
        let i = pn % REPLAY_WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    pub(crate) fn check(&self, pn: u64) -> ReplayVerdict {
        let Some(high) = self.highest else {
            return ReplayVerdict::Fresh;
        };
        if pn > high {
            return ReplayVerdict::Fresh;
        }
        if high - pn >= REPLAY_WINDOW {
            return ReplayVerdict::TooOld;
        }
        let (w, m) = Self::bit(pn);
        if self.bits[w] & m != 0 {
            ReplayVerdict::Duplicate
        } else {
            ReplayVerdict::Fresh
        }
    }

    /// Records `pn`, which [`ReplayWindow::check`] called fresh.
    pub(crate) fn insert(&mut self, pn: u64) {
        match self.highest {
            Some(high) if pn <= high => {}
            Some(high) if pn - high < REPLAY_WINDOW => {
                // Forget the numbers the window slides past; each is cleared once, so this
                // is O(1) per packet on average.
                for p in high + 1..pn {
                    let (w, m) = Self::bit(p);
                    self.bits[w] &= !m;
                }
                self.highest = Some(pn);
            }
            _ => {
                self.bits.fill(0);
                self.highest = Some(pn);
            }
        }
        let (w, m) = Self::bit(pn);
        self.bits[w] |= m;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn material(seed: u8) -> [u8; KEY_MATERIAL_LEN] {
        std::array::from_fn(|i| seed.wrapping_add(i as u8))
    }

    #[test]
    fn nist_gcm_test_case_2() {
        // McGrew & Viega, "The Galois/Counter Mode of Operation", test case 2: key 0^128,
        // IV 0^96, P = 0^128, no AAD. Zero material gives salt 0 and packet number 0 → IV 0.
        let key = DataKey::from_key_material(&[0; KEY_MATERIAL_LEN]);
        let mut p = [0u8; 16];
        let tag = key.seal(0, &[], &mut p);
        assert_eq!(
            p,
            [
                0x03, 0x88, 0xda, 0xce, 0x60, 0xb6, 0xa3, 0x92, 0xf3, 0x28, 0xc2, 0xb9, 0x71, 0xb2,
                0xfe, 0x78
            ]
        );
        assert_eq!(
            tag,
            [
                0xab, 0x6e, 0x47, 0xd4, 0x2c, 0xec, 0x13, 0xbd, 0xf5, 0x3a, 0x67, 0xb2, 0x12, 0x57,
                0xbd, 0xdf
            ]
        );
        key.open(0, &[], &mut p, tag).unwrap();
        assert_eq!(p, [0; 16]);
    }

    #[test]
    fn nonce_is_salt_and_packet_number() {
        // Cross-check against RustCrypto's aes-gcm, an independent implementation, with the
        // nonce built by hand.
        use aes_gcm::aead::{AeadInOut, KeyInit};
        let m = material(0);
        let key = DataKey::from_key_material(&m);
        let header = [0x5au8; HEADER_LEN];
        let payload = *b"punktfunk/1 shard!";
        let mut ours = payload;
        let tag = key.seal(7, &header, &mut ours);
        let reference = aes_gcm::Aes128Gcm::new(m[..16].try_into().unwrap());
        let mut nonce = [0u8; 12];
        nonce[..4].copy_from_slice(&m[16..]);
        nonce[4..].copy_from_slice(&7u64.to_be_bytes());
        let mut theirs = payload;
        let ref_tag = reference
            .encrypt_inout_detached(&nonce.into(), &header, (&mut theirs[..]).into())
            .unwrap();
        assert_eq!(ours, theirs, "ciphertext");
        assert_eq!(tag.as_slice(), ref_tag.as_slice(), "tag");

        let mut c = ours;
        key.open(7, &header, &mut c, tag).unwrap();
        assert_eq!(c, payload);
        // Wrong packet number, header, tag or key: refused.
        let mut c = ours;
        assert_eq!(key.open(8, &header, &mut c, tag), Err(Pf1Error::Auth));
        let mut c = ours;
        let mut h2 = header;
        h2[0] ^= 1;
        assert_eq!(key.open(7, &h2, &mut c, tag), Err(Pf1Error::Auth));
        let mut c = ours;
        let mut t2 = tag;
        t2[15] ^= 0x80;
        assert_eq!(key.open(7, &header, &mut c, t2), Err(Pf1Error::Auth));
        let other = DataKey::from_key_material(&material(1));
        let mut c = ours;
        assert_eq!(other.open(7, &header, &mut c, tag), Err(Pf1Error::Auth));
    }

    #[test]
    fn generations_and_debug() {
        let k = DataKey::from_key_material(&material(3)).with_generation(258);
        assert_eq!((k.id(), k.generation()), (2, 258));
        assert_eq!(
            DataKey::exporter_context(0x0102_0304_0506_0708, 258),
            [1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 1, 2]
        );
        assert!(!format!("{k:?}").contains("03"), "no key bytes in Debug");
    }

    #[test]
    fn packet_limits() {
        assert_eq!(packet_limit(1408), 1 << 28);
        assert_eq!(packet_limit(2), 1 << 33);
        assert_eq!(packet_limit(65454), 1 << 23);
    }

    #[test]
    fn replay_window() {
        let mut w = ReplayWindow::new();
        assert_eq!(w.check(5), ReplayVerdict::Fresh);
        w.insert(5);
        assert_eq!(w.check(5), ReplayVerdict::Duplicate);
        assert_eq!(w.check(4), ReplayVerdict::Fresh);
        w.insert(4);
        assert_eq!(w.check(4), ReplayVerdict::Duplicate);
        w.insert(100);
        assert_eq!(w.highest(), Some(100));
        assert_eq!(w.check(5), ReplayVerdict::Duplicate);
        assert_eq!(w.check(6), ReplayVerdict::Fresh);
        w.insert(5 + REPLAY_WINDOW);
        assert_eq!(w.check(5), ReplayVerdict::TooOld);
        assert_eq!(w.check(100), ReplayVerdict::Duplicate);
        // Numbers the window slid over are forgotten, not remembered as seen.
        assert_eq!(w.check(101), ReplayVerdict::Fresh);
        assert_eq!(w.check(6 + REPLAY_WINDOW), ReplayVerdict::Fresh);
        // A jump past the whole window clears it.
        w.insert(10 * REPLAY_WINDOW);
        assert_eq!(w.check(10 * REPLAY_WINDOW - 1), ReplayVerdict::Fresh);
        assert_eq!(w.check(10 * REPLAY_WINDOW), ReplayVerdict::Duplicate);
        assert_eq!(w.check(u64::MAX), ReplayVerdict::Fresh);
        w.insert(u64::MAX);
        assert_eq!(w.check(u64::MAX), ReplayVerdict::Duplicate);
    }
}
