//! The punktfunk/1 PIN ceremony (pure): SPAKE2 over Ed25519 with the PIN as password, both
//! certificate fingerprints as identities, and key confirmation in both directions.
//!
//! ```text
//! client (SPAKE2 side A)                                  host (side B)
//!   Hello{wants_pairing} ───────────────────────────────►  the operator's window must be open
//!                                                          (`punktfunk pin --pf1`)
//!                        ◄─────────────────────────────── PairReady{digits}
//!   user types the PIN
//!   X = x·G + pw·M
//!   PairStart{X} ───────────────────────────────────────►  one ceremony at a time
//!                                                          Y = y·G + pw·N, K = SPAKE2 key
//!                        ◄─────────────────────────────── PairReply{Y, MAC_h}
//!   K; check MAC_h (else abort)
//!   PairConfirm{MAC_c} ─────────────────────────────────►  check MAC_c: paired / Goodbye
//!                        ◄─────────────────────────────── PairResult{ok}
//! ```
//!
//! * SPAKE2 identities: `id_A = "punktfunk/1 client" ‖ fp_client`, `id_B = "punktfunk/1 host"
//!   ‖ fp_host`, where `fp` is the SHA-256 of the DER certificate each side presented in the
//!   QUIC/TLS handshake, as that side sees it. spake2 hashes both identities into `K`.
//! * Transcript `T = SHA-256("punktfunk/1 pairing v1" ‖ fp_client ‖ fp_host ‖ cb ‖ X ‖ Y)`,
//!   with `cb` the TLS exporter value for [`CHANNEL_BINDING_LABEL`] (32 bytes): it binds the
//!   proof to this very TLS session as well as to the certificates.
//! * `MAC_h = HMAC-SHA256(K, "host" ‖ T)`, `MAC_c = HMAC-SHA256(K, "client" ‖ T)`, compared
//!   in constant time (`ring::hmac::verify`).
//!
//! # Why an active attacker gets at most one online guess per PIN
//!
//! * Offline: `X` and `Y` are uniformly random points (the password is blinded by `x`/`y`),
//!   so a passive observer, or the TLS endpoint of a relay, learns nothing to test PINs
//!   against. A MAC is a function of `K`; computing `K` for a candidate PIN needs the
//!   discrete log `x` or `y` of the honest side's message (SPAKE2's security argument,
//!   RFC 9382 §7). So each exchange with an honest party tests exactly one PIN: the one the
//!   attacker committed to in its own SPAKE2 message.
//! * Online: the PIN belongs to the operator's pairing window (`crate::pairing_window`), and
//!   the host runs one ceremony at a time. Every ceremony that does not end in a good
//!   `PairConfirm` (wrong PIN, relay, malformed point, abandoned or timed out after
//!   `PairStart`) counts against the window: the third closes it until the operator arms a
//!   new PIN, and the client's address waits 1, 2, 4 … ≤ 300 s before its next try. So an
//!   attacker gets at most 3 guesses per PIN the operator arms: with 6 digits a success
//!   probability of 3·10⁻⁶.
//! * Relay (man in the middle): a relay terminates TLS on both sides with its own
//!   certificate, since it holds neither the host's nor the client's key. The client then
//!   computes `K` with `fp_host' = fp_relay`, the host with `fp_client' = fp_relay`, and the
//!   channel bindings of two different TLS sessions. Forwarding `X` and `Y` unchanged gives
//!   the two sides different identities and transcripts, hence different keys: both MACs
//!   fail and the PIN is spent. To succeed the relay would have to run SPAKE2 itself with the
//!   PIN, which is the one online guess above.

use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::Rng as _;
use ring::hmac;
use spake2::{Ed25519Group, Identity, Password, Spake2};
use thiserror::Error;

use super::message::{MAC_LEN, SPAKE_MSG_LEN};

/// TLS exporter label of the pairing channel binding (RFC 5705 / RFC 8446 §7.5).
pub const CHANNEL_BINDING_LABEL: &[u8] = b"EXPORTER-punktfunk/1 pairing";

/// Default digits of a PIN the management API generates for the operator.
pub const DEFAULT_PIN_DIGITS: u8 = 6;

const TRANSCRIPT_LABEL: &[u8] = b"punktfunk/1 pairing v1";
const ID_CLIENT: &[u8] = b"punktfunk/1 client";
const ID_HOST: &[u8] = b"punktfunk/1 host";

/// Why pairing failed.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PairingError {
    /// A PIN that is not 4 to 10 ASCII digits (local misuse: user input).
    #[error("a PIN is 4 to 10 digits")]
    BadPin,
    /// The peer's SPAKE2 message is not a valid point or has the wrong side byte (hostile).
    #[error("malformed SPAKE2 message")]
    BadSpakeMessage,
    /// Key confirmation failed: wrong PIN, or a relay between the two (hostile or user error).
    #[error("key confirmation failed: wrong PIN, or something relays the connection")]
    Mismatch,
}

/// A pairing PIN: 4 to 10 ASCII digits. Its `Debug` hides the digits.
#[derive(Clone, PartialEq, Eq)]
pub struct Pin(String);

impl Pin {
    /// Parses user input (surrounding white space is ignored).
    pub fn parse(s: &str) -> Result<Self, PairingError> {
        let s = s.trim();
        if (4..=10).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit()) {
            Ok(Self(s.to_owned()))
        } else {
            Err(PairingError::BadPin)
        }
    }

    /// A uniformly random PIN of `digits` digits (clamped to 4..=10).
    pub fn generate(rng: &mut ChaCha20Rng, digits: u8) -> Self {
        let digits = digits.clamp(4, 10);
        let s = (0..digits)
            .map(|_| {
                // Rejection sampling keeps every digit uniform.
                loop {
                    let b = rng.next_u32() as u8;
                    if b < 250 {
                        break char::from(b'0' + b % 10);
                    }
                }
            })
            .collect();
        Self(s)
    }

    /// The digits.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Number of digits.
    pub fn digits(&self) -> u8 {
        // `parse`/`generate` keep the length within 4..=10.
        self.0.len() as u8
    }
}

impl std::fmt::Debug for Pin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pin({} digits)", self.0.len())
    }
}

/// What both sides must agree on besides the PIN: the certificate fingerprints each side
/// saw in the handshake and the TLS channel binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingContext {
    /// SHA-256 of the client certificate.
    pub client_fp: [u8; 32],
    /// SHA-256 of the host certificate.
    pub host_fp: [u8; 32],
    /// TLS exporter output for [`CHANNEL_BINDING_LABEL`], empty context, 32 bytes.
    pub channel_binding: [u8; 32],
}

impl PairingContext {
    fn identities(&self) -> (Identity, Identity) {
        (
            Identity::new(&[ID_CLIENT, &self.client_fp[..]].concat()),
            Identity::new(&[ID_HOST, &self.host_fp[..]].concat()),
        )
    }

    fn transcript(&self, x: &[u8], y: &[u8]) -> ring::digest::Digest {
        let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
        for part in [
            TRANSCRIPT_LABEL,
            &self.client_fp,
            &self.host_fp,
            &self.channel_binding,
            x,
            y,
        ] {
            ctx.update(part);
        }
        ctx.finish()
    }
}

/// Adapts the session's seeded ChaCha20 to the rand_core 0.6 traits spake2 expects.
struct Rng06<'a>(&'a mut ChaCha20Rng);

impl rand_core_06::RngCore for Rng06<'_> {
    fn next_u32(&mut self) -> u32 {
        self.0.next_u32()
    }
    fn next_u64(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.0.fill_bytes(dest);
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core_06::Error> {
        self.0.fill_bytes(dest);
        Ok(())
    }
}

// ChaCha20 is a cryptographically secure generator; its seed comes from the OS (act layer).
impl rand_core_06::CryptoRng for Rng06<'_> {}

fn mac(key: &[u8], role: &[u8], transcript: &[u8]) -> [u8; MAC_LEN] {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&k);
    ctx.update(role);
    ctx.update(transcript);
    let tag = ctx.sign();
    let mut out = [0; MAC_LEN];
    out.copy_from_slice(tag.as_ref());
    out
}

fn verify(key: &[u8], role: &[u8], transcript: &[u8], tag: &[u8; MAC_LEN]) -> bool {
    let k = hmac::Key::new(hmac::HMAC_SHA256, key);
    // ring::hmac::verify compares in constant time.
    hmac::verify(&k, &[role, transcript].concat(), tag).is_ok()
}

fn to_msg(v: &[u8]) -> [u8; SPAKE_MSG_LEN] {
    let mut m = [0; SPAKE_MSG_LEN];
    // spake2's Ed25519 messages are always 1 side byte + 32 point bytes.
    m.copy_from_slice(&v[..SPAKE_MSG_LEN]);
    m
}

/// The client's half of a ceremony in progress.
pub struct ClientPairing {
    spake: Spake2<Ed25519Group>,
    msg_a: [u8; SPAKE_MSG_LEN],
    ctx: PairingContext,
}

impl std::fmt::Debug for ClientPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientPairing").finish_non_exhaustive()
    }
}

impl ClientPairing {
    /// Starts the ceremony: returns the state and `PairStart`'s SPAKE2 message.
    pub fn start(
        pin: &Pin,
        ctx: PairingContext,
        rng: &mut ChaCha20Rng,
    ) -> (Self, [u8; SPAKE_MSG_LEN]) {
        let (id_a, id_b) = ctx.identities();
        let (spake, msg) = Spake2::<Ed25519Group>::start_a_with_rng(
            &Password::new(pin.as_str()),
            &id_a,
            &id_b,
            Rng06(rng),
        );
        let msg_a = to_msg(&msg);
        (Self { spake, msg_a, ctx }, msg_a)
    }

    /// Checks the host's reply; on success returns `PairConfirm`'s MAC.
    pub fn finish(
        self,
        msg_b: &[u8; SPAKE_MSG_LEN],
        host_mac: &[u8; MAC_LEN],
    ) -> Result<[u8; MAC_LEN], PairingError> {
        let key = self
            .spake
            .finish(msg_b)
            .map_err(|_| PairingError::BadSpakeMessage)?;
        let t = self.ctx.transcript(&self.msg_a, msg_b);
        if !verify(&key, b"host", t.as_ref(), host_mac) {
            return Err(PairingError::Mismatch);
        }
        Ok(mac(&key, b"client", t.as_ref()))
    }
}

/// The host's half, waiting for the client's confirmation.
pub struct HostPairing {
    key: Vec<u8>,
    transcript: ring::digest::Digest,
}

impl std::fmt::Debug for HostPairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostPairing").finish_non_exhaustive()
    }
}

impl HostPairing {
    /// Answers `PairStart`: returns the state and `PairReply`'s SPAKE2 message and MAC.
    pub fn respond(
        pin: &Pin,
        ctx: PairingContext,
        msg_a: &[u8; SPAKE_MSG_LEN],
        rng: &mut ChaCha20Rng,
    ) -> Result<(Self, [u8; SPAKE_MSG_LEN], [u8; MAC_LEN]), PairingError> {
        let (id_a, id_b) = ctx.identities();
        let (spake, msg) = Spake2::<Ed25519Group>::start_b_with_rng(
            &Password::new(pin.as_str()),
            &id_a,
            &id_b,
            Rng06(rng),
        );
        let msg_b = to_msg(&msg);
        let key = spake
            .finish(msg_a)
            .map_err(|_| PairingError::BadSpakeMessage)?;
        let transcript = ctx.transcript(msg_a, &msg_b);
        let host_mac = mac(&key, b"host", transcript.as_ref());
        Ok((Self { key, transcript }, msg_b, host_mac))
    }

    /// Checks `PairConfirm`'s MAC (constant time).
    pub fn confirm(&self, client_mac: &[u8; MAC_LEN]) -> Result<(), PairingError> {
        if verify(&self.key, b"client", self.transcript.as_ref(), client_mac) {
            Ok(())
        } else {
            Err(PairingError::Mismatch)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;

    fn ctx() -> PairingContext {
        PairingContext {
            client_fp: [1; 32],
            host_fp: [2; 32],
            channel_binding: [3; 32],
        }
    }

    fn run(
        client_pin: &str,
        host_pin: &str,
        cctx: PairingContext,
        hctx: PairingContext,
    ) -> Result<(), PairingError> {
        let mut rng = ChaCha20Rng::from_seed([7; 32]);
        let (c, x) = ClientPairing::start(&Pin::parse(client_pin)?, cctx, &mut rng);
        let (h, y, mh) = HostPairing::respond(&Pin::parse(host_pin)?, hctx, &x, &mut rng)?;
        let mc = c.finish(&y, &mh)?;
        h.confirm(&mc)
    }

    #[test]
    fn right_pin_pairs() {
        run("123456", "123456", ctx(), ctx()).unwrap();
    }

    #[test]
    fn wrong_pin_fails_at_the_client() {
        assert_eq!(
            run("123456", "123457", ctx(), ctx()),
            Err(PairingError::Mismatch)
        );
    }

    #[test]
    fn any_context_difference_fails() {
        for f in [
            |c: &mut PairingContext| c.client_fp[0] ^= 1,
            |c: &mut PairingContext| c.host_fp[31] ^= 1,
            |c: &mut PairingContext| c.channel_binding[5] ^= 1,
        ] {
            let mut other = ctx();
            f(&mut other);
            assert_eq!(
                run("1234", "1234", ctx(), other),
                Err(PairingError::Mismatch)
            );
        }
    }

    #[test]
    fn host_rejects_forged_confirmation_and_bad_points() {
        let mut rng = ChaCha20Rng::from_seed([9; 32]);
        let pin = Pin::parse("0000").unwrap();
        let (_, x) = ClientPairing::start(&pin, ctx(), &mut rng);
        let (h, _, _) = HostPairing::respond(&pin, ctx(), &x, &mut rng).unwrap();
        assert_eq!(h.confirm(&[0; MAC_LEN]), Err(PairingError::Mismatch));
        // Wrong side byte, and a point that does not decompress.
        let mut bad = x;
        bad[0] = b'B';
        assert_eq!(
            HostPairing::respond(&pin, ctx(), &bad, &mut rng).unwrap_err(),
            PairingError::BadSpakeMessage
        );
        let mut bad = [0xff; SPAKE_MSG_LEN];
        bad[0] = b'A';
        let r = HostPairing::respond(&pin, ctx(), &bad, &mut rng);
        assert!(r.is_err() || r.unwrap().0.confirm(&[0; 32]).is_err());
    }

    #[test]
    fn pins() {
        assert!(Pin::parse("123").is_err());
        assert!(Pin::parse("12a4").is_err());
        assert!(Pin::parse("12345678901").is_err());
        assert_eq!(Pin::parse(" 1234\n").unwrap().as_str(), "1234");
        assert_eq!(
            format!("{:?}", Pin::parse("1234").unwrap()),
            "Pin(4 digits)"
        );
        let mut rng = ChaCha20Rng::from_seed([1; 32]);
        let p = Pin::generate(&mut rng, 6);
        assert_eq!(p.digits(), 6);
        assert!(Pin::parse(p.as_str()).is_ok());
        let mut again = ChaCha20Rng::from_seed([1; 32]);
        assert_eq!(Pin::generate(&mut again, 6), p);
        assert_eq!(Pin::generate(&mut rng, 2).digits(), 4);
    }
}
