//! The GameStream pairing state machine: all `/pair` phases (protocol map §1.5), one pairing
//! at a time, sans IO.
//!
//! ```text
//!  client                                   host (this machine)
//!  ── 1 getservercert(salt, clientcert) ──►  Idle ─► AwaitingPin     (request held open)
//!                          user: `punktfunk pin 1234` ─► handle_pin: K = SHA256(salt‖PIN)[..16]
//!  ◄──────── plaincert (host cert PEM) ────  ─► AwaitingClientChallenge
//!  ── 2 clientchallenge = E_K(cc) ────────►  h = SHA256(cc ‖ sig(hostcert) ‖ serversecret)
//!  ◄──── E_K(h ‖ serverchallenge) ─────────  ─► AwaitingServerChallengeResp
//!  ── 3 serverchallengeresp = E_K(hc) ────►  keep hc
//!  ◄── serversecret ‖ Sign_host(serversecret) ─► AwaitingClientPairingSecret
//!      (client checks h: a wrong PIN is caught here, and it calls /unpair)
//!  ── 4 clientpairingsecret = cs ‖ Sign_client(cs) ─►
//!        hc == SHA256(serverchallenge ‖ sig(clientcert) ‖ cs)  (constant time)
//!        and Verify_clientcert(cs, signature)  ─► Paired (the caller stores the client) / fail
//!  ── 5 pairchallenge over HTTPS: answered by the nvhttp layer from the paired store.
//! ```
//!
//! `E_K`/`D_K` are AES-128-ECB without padding. The host advertises appversion 7.x, so the
//! hash is SHA-256 throughout. Phase order is enforced; any error in phases 2–4 drops the
//! pairing (as Sunshine's `fail_pair()` does), so a client must start again from phase 1.
//!
//! One pairing at a time: phase 1 from a different client certificate while a pairing is
//! open is [`PairingError::Busy`]; the same certificate restarting replaces its own pairing
//! (a client that gave up and retried). Deadlines: the PIN wait ends after
//! [`PairingConfig::pin_timeout`], each later phase must arrive within
//! [`PairingConfig::phase_timeout`]. Time comes in as `now`; the secrets come from a ChaCha20
//! stream seeded by the caller. A pairing that ends without success is reported through
//! [`Pairing::poll_event`], so whoever supplied the PIN can be told.
//!
//! Known weakness of the protocol itself, not of this implementation: an active attacker who
//! completes phases 1–3 can test PIN guesses offline against the phase-2 reply. Pairing is
//! meant for a trusted LAN, done once, with the user watching.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use aes::Aes128;
use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use subtle::ConstantTimeEq;

use super::cert::{CertError, Certificate};
use super::identity::HostIdentity;
use super::query::{QueryError, hex_array, hex_decode};

/// Longest signature accepted in phase 4 (RSA-8192).
const MAX_SIGNATURE_LEN: usize = 1024;

/// Timeouts of a pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingConfig {
    /// How long phase 1 waits for the user to enter the PIN. Moonlight itself waits forever.
    pub pin_timeout: Duration,
    /// How long each later phase may take to arrive (clients send them back to back).
    pub phase_timeout: Duration,
}

impl Default for PairingConfig {
    fn default() -> Self {
        Self {
            pin_timeout: Duration::from_secs(120),
            phase_timeout: Duration::from_secs(30),
        }
    }
}

/// Identifies one pairing attempt, from phase 1 to its end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// A `/pair` phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// 1: `phrase=getservercert`.
    GetServerCert,
    /// The PIN arriving out of band.
    Pin,
    /// 2: `clientchallenge`.
    ClientChallenge,
    /// 3: `serverchallengeresp`.
    ServerChallengeResp,
    /// 4: `clientpairingsecret`.
    ClientPairingSecret,
}

impl std::fmt::Display for Phase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Phase::GetServerCert => "getservercert",
            Phase::Pin => "PIN",
            Phase::ClientChallenge => "clientchallenge",
            Phase::ServerChallengeResp => "serverchallengeresp",
            Phase::ClientPairingSecret => "clientpairingsecret",
        })
    }
}

/// Why a pairing step was refused or a pairing ended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PairingError {
    // Hostile or malformed peer input.
    /// A field is missing or has the wrong form or length.
    #[error("malformed pairing request: {0}")]
    Malformed(#[from] QueryError),
    /// The client certificate does not parse or has an unsupported key.
    #[error("bad client certificate: {0}")]
    BadCertificate(CertError),
    /// A phase arrived before the one expected.
    #[error("pairing phase {got} out of order (expected {expected})")]
    OutOfOrder {
        /// The phase the pairing is waiting for.
        expected: Phase,
        /// The phase that arrived.
        got: Phase,
    },
    /// No pairing is open for this client (`uniqueid`).
    #[error("no pairing in progress for this client")]
    NoSession,
    /// The client's phase-3 hash does not match phase 4: it used a different PIN.
    #[error("the client's pairing proof does not match: wrong PIN")]
    WrongPin,
    /// The client's signature over its secret does not verify with its certificate.
    #[error("the client's pairing signature does not verify")]
    BadSignature,
    /// The client gave up (`/unpair` during pairing), typically after seeing a wrong PIN.
    #[error("the client abandoned the pairing (wrong PIN?)")]
    Abandoned,
    /// The same client started over with a new phase 1.
    #[error("the client restarted pairing")]
    Superseded,

    // Local misuse.
    /// The PIN is not 4 decimal digits.
    #[error("the PIN must be 4 digits")]
    InvalidPin,
    /// A PIN was supplied but no client is waiting for one.
    #[error("no client is waiting for a PIN")]
    NoPinRequested,

    // Resources.
    /// Another client's pairing is open.
    #[error("another pairing is in progress")]
    Busy,
    /// A deadline passed.
    #[error("pairing timed out")]
    TimedOut,
    /// The host stopped waiting (the request went away or the server shut down).
    #[error("pairing cancelled by the host")]
    Cancelled,
}

/// Something that happened without a request to return it to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairingEvent {
    /// The pairing `ticket` ended without a paired client.
    Failed {
        /// Which pairing.
        ticket: Ticket,
        /// Why.
        error: PairingError,
    },
}

/// What [`Pairing::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairingStatus {
    /// No pairing open.
    Idle,
    /// A client waits for the user to enter the PIN.
    AwaitingPin {
        /// The pairing.
        ticket: Ticket,
        /// The `uniqueid` the client sent.
        uniqueid: String,
        /// The `devicename` the client sent (Moonlight sends the constant "roth").
        device_name: String,
    },
    /// The PIN was entered; the cryptographic phases are under way.
    InProgress {
        /// The pairing.
        ticket: Ticket,
        /// The `uniqueid` the client sent.
        uniqueid: String,
    },
}

/// A client that completed phase 4. The caller stores it; from then on its certificate is
/// authorized on HTTPS (phase 5 and everything else).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paired {
    /// Which pairing.
    pub ticket: Ticket,
    /// The client's certificate.
    pub cert: Certificate,
    /// The name given with the PIN, else the client's `devicename` if it is not Moonlight's
    /// placeholder "roth", else "Moonlight client".
    pub name: String,
    /// The client's `uniqueid`.
    pub uniqueid: String,
}

/// The PIN was accepted: the held phase-1 request of `ticket` may now be answered with the
/// host certificate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PinAccepted {
    /// Which pairing.
    pub ticket: Ticket,
}

type Key = [u8; 16];

#[allow(clippy::enum_variant_names)] // each step is "awaiting" its phase, by design
enum Step {
    AwaitingPin,
    AwaitingClientChallenge {
        key: Key,
    },
    AwaitingServerChallengeResp {
        key: Key,
        server_secret: [u8; 16],
        server_challenge: [u8; 16],
    },
    AwaitingClientPairingSecret {
        server_challenge: [u8; 16],
        client_hash: [u8; 32],
    },
}

impl Step {
    fn expects(&self) -> Phase {
        match self {
            Step::AwaitingPin => Phase::Pin,
            Step::AwaitingClientChallenge { .. } => Phase::ClientChallenge,
            Step::AwaitingServerChallengeResp { .. } => Phase::ServerChallengeResp,
            Step::AwaitingClientPairingSecret { .. } => Phase::ClientPairingSecret,
        }
    }
}

struct Session {
    ticket: Ticket,
    uniqueid: String,
    device_name: String,
    name: Option<String>,
    client: Certificate,
    salt: [u8; 16],
    deadline: Instant,
    step: Step,
}

/// The pairing state machine. One per host.
pub struct Pairing {
    config: PairingConfig,
    host: Arc<HostIdentity>,
    rng: ChaCha20Rng,
    next_ticket: u64,
    session: Option<Session>,
    events: VecDeque<PairingEvent>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairing")
            .field("config", &self.config)
            .field("open", &self.session.as_ref().map(|s| s.ticket))
            .finish_non_exhaustive()
    }
}

/// `K = SHA-256(salt ‖ PIN)[..16]`.
pub fn derive_key(salt: &[u8; 16], pin: &str) -> [u8; 16] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt);
    ctx.update(pin.as_bytes());
    let d = ctx.finish();
    let mut key = [0u8; 16];
    key.copy_from_slice(&d.as_ref()[..16]);
    key
}

fn sha256(parts: &[&[u8]]) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

/// AES-128-ECB over whole blocks, in place. `data.len()` must be a multiple of 16 (callers
/// check lengths first; a tail shorter than a block is left as it is).
pub fn ecb_encrypt(key: &[u8; 16], data: &mut [u8]) {
    let aes = Aes128::new(&(*key).into());
    for chunk in data.chunks_exact_mut(16) {
        let mut block = aes::Block::default();
        block.copy_from_slice(chunk);
        aes.encrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
}

/// AES-128-ECB decryption, as [`ecb_encrypt`].
pub fn ecb_decrypt(key: &[u8; 16], data: &mut [u8]) {
    let aes = Aes128::new(&(*key).into());
    for chunk in data.chunks_exact_mut(16) {
        let mut block = aes::Block::default();
        block.copy_from_slice(chunk);
        aes.decrypt_block(&mut block);
        chunk.copy_from_slice(&block);
    }
}

fn valid_pin(pin: &str) -> bool {
    pin.len() == 4 && pin.bytes().all(|b| b.is_ascii_digit())
}

impl Pairing {
    /// A machine with no pairing open. `seed` feeds the server secrets and challenges; draw it
    /// from the OS outside tests.
    pub fn new(host: Arc<HostIdentity>, config: PairingConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            host,
            rng: ChaCha20Rng::from_seed(seed),
            next_ticket: 1,
            session: None,
            events: VecDeque::new(),
        }
    }

    /// Where things stand.
    pub fn status(&self) -> PairingStatus {
        match &self.session {
            None => PairingStatus::Idle,
            Some(s) if matches!(s.step, Step::AwaitingPin) => PairingStatus::AwaitingPin {
                ticket: s.ticket,
                uniqueid: s.uniqueid.clone(),
                device_name: s.device_name.clone(),
            },
            Some(s) => PairingStatus::InProgress {
                ticket: s.ticket,
                uniqueid: s.uniqueid.clone(),
            },
        }
    }

    /// The next deadline, if a pairing is open.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.session.as_ref().map(|s| s.deadline)
    }

    /// Ends a pairing whose deadline has passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.session.as_ref().is_some_and(|s| now >= s.deadline) {
            self.end(PairingError::TimedOut);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<PairingEvent> {
        self.events.pop_front()
    }

    /// Drops the open pairing, reporting `error`, and hands `error` back.
    fn end(&mut self, error: PairingError) -> PairingError {
        if let Some(s) = self.session.take() {
            self.events.push_back(PairingEvent::Failed {
                ticket: s.ticket,
                error: error.clone(),
            });
        }
        error
    }

    /// Ends pairing `ticket` if it is still open (the host stopped waiting for it).
    pub fn abort(&mut self, ticket: Ticket, error: PairingError) -> bool {
        if self.session.as_ref().is_some_and(|s| s.ticket == ticket) {
            self.end(error);
            true
        } else {
            false
        }
    }

    /// `/unpair` from `uniqueid`: Moonlight sends it after a failed pairing (for instance
    /// after detecting a wrong PIN in phase 3), so it ends that client's pairing once the PIN
    /// has been entered. A pairing still waiting for its PIN is left alone: its own client is
    /// blocked in phase 1, so the request comes from another client that was told "busy".
    pub fn handle_unpair(&mut self, uniqueid: &str) -> bool {
        let matches = self
            .session
            .as_ref()
            .is_some_and(|s| s.uniqueid == uniqueid && !matches!(s.step, Step::AwaitingPin));
        if matches {
            self.end(PairingError::Abandoned);
        }
        matches
    }

    /// Phase 1: `salt` and `clientcert` as sent (hex). Opens a pairing that waits for the PIN.
    pub fn handle_getservercert(
        &mut self,
        now: Instant,
        uniqueid: &str,
        device_name: &str,
        salt: &str,
        clientcert: &str,
    ) -> Result<Ticket, PairingError> {
        self.handle_timeout(now);
        let salt = hex_array::<16>("salt", salt)?;
        let pem = hex_decode("clientcert", clientcert)?;
        let client = Certificate::from_pem(&pem).map_err(PairingError::BadCertificate)?;
        if let Some(open) = &self.session {
            if open.client.fingerprint() == client.fingerprint() {
                self.end(PairingError::Superseded);
            } else {
                return Err(PairingError::Busy);
            }
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.session = Some(Session {
            ticket,
            uniqueid: uniqueid.to_owned(),
            device_name: device_name.to_owned(),
            name: None,
            client,
            salt,
            deadline: now + self.config.pin_timeout,
            step: Step::AwaitingPin,
        });
        Ok(ticket)
    }

    /// The user's PIN, with an optional name for the client. On success the held phase-1
    /// request is answered with the host certificate.
    pub fn handle_pin(
        &mut self,
        now: Instant,
        pin: &str,
        name: Option<&str>,
    ) -> Result<PinAccepted, PairingError> {
        self.handle_timeout(now);
        if !valid_pin(pin) {
            return Err(PairingError::InvalidPin);
        }
        let phase_timeout = self.config.phase_timeout;
        match &mut self.session {
            Some(s) if matches!(s.step, Step::AwaitingPin) => {
                s.step = Step::AwaitingClientChallenge {
                    key: derive_key(&s.salt, pin),
                };
                s.name = name.map(str::to_owned);
                s.deadline = now + phase_timeout;
                Ok(PinAccepted { ticket: s.ticket })
            }
            _ => Err(PairingError::NoPinRequested),
        }
    }

    /// The open session for `uniqueid` in the step `phase` needs; errors end the pairing
    /// (except a request from another client, which is refused without touching it).
    fn session_for(
        &mut self,
        now: Instant,
        uniqueid: &str,
        phase: Phase,
    ) -> Result<&mut Session, PairingError> {
        self.handle_timeout(now);
        match &self.session {
            None => return Err(PairingError::NoSession),
            Some(s) if s.uniqueid != uniqueid => return Err(PairingError::NoSession),
            Some(s) if s.step.expects() != phase => {
                let expected = s.step.expects();
                return Err(self.end(PairingError::OutOfOrder {
                    expected,
                    got: phase,
                }));
            }
            Some(_) => {}
        }
        // Just matched `Some` above.
        self.session.as_mut().ok_or(PairingError::NoSession)
    }

    /// Phase 2: returns the `challengeresponse` bytes, `E_K(h ‖ serverchallenge)`.
    pub fn handle_clientchallenge(
        &mut self,
        now: Instant,
        uniqueid: &str,
        clientchallenge: &str,
    ) -> Result<Vec<u8>, PairingError> {
        let phase_timeout = self.config.phase_timeout;
        let mut server_secret = [0u8; 16];
        let mut server_challenge = [0u8; 16];
        self.rng.fill_bytes(&mut server_secret);
        self.rng.fill_bytes(&mut server_challenge);
        let host = Arc::clone(&self.host);
        let s = self.session_for(now, uniqueid, Phase::ClientChallenge)?;
        let Step::AwaitingClientChallenge { key } = s.step else {
            return Err(PairingError::NoSession);
        };
        let mut challenge = match hex_array::<16>("clientchallenge", clientchallenge) {
            Ok(c) => c,
            Err(e) => return Err(self.end(e.into())),
        };
        ecb_decrypt(&key, &mut challenge);
        let hash = sha256(&[&challenge, host.certificate().signature(), &server_secret]);
        let mut reply = Vec::with_capacity(48);
        reply.extend_from_slice(&hash);
        reply.extend_from_slice(&server_challenge);
        ecb_encrypt(&key, &mut reply);
        s.step = Step::AwaitingServerChallengeResp {
            key,
            server_secret,
            server_challenge,
        };
        s.deadline = now + phase_timeout;
        Ok(reply)
    }

    /// Phase 3: returns the `pairingsecret` bytes, `serversecret ‖ Sign_host(serversecret)`.
    pub fn handle_serverchallengeresp(
        &mut self,
        now: Instant,
        uniqueid: &str,
        serverchallengeresp: &str,
    ) -> Result<Vec<u8>, PairingError> {
        let phase_timeout = self.config.phase_timeout;
        let host = Arc::clone(&self.host);
        let s = self.session_for(now, uniqueid, Phase::ServerChallengeResp)?;
        let Step::AwaitingServerChallengeResp {
            key,
            server_secret,
            server_challenge,
        } = s.step
        else {
            return Err(PairingError::NoSession);
        };
        let mut client_hash = match hex_array::<32>("serverchallengeresp", serverchallengeresp) {
            Ok(c) => c,
            Err(e) => return Err(self.end(e.into())),
        };
        ecb_decrypt(&key, &mut client_hash);
        s.step = Step::AwaitingClientPairingSecret {
            server_challenge,
            client_hash,
        };
        s.deadline = now + phase_timeout;
        let mut reply = server_secret.to_vec();
        reply.extend_from_slice(&host.sign(&server_secret));
        Ok(reply)
    }

    /// Phase 4: checks the client's proof and signature. On success the pairing is over and
    /// the caller must store [`Paired`] before answering `paired=1`; on failure the pairing is
    /// over too (answer `paired=0`).
    pub fn handle_clientpairingsecret(
        &mut self,
        now: Instant,
        uniqueid: &str,
        clientpairingsecret: &str,
    ) -> Result<Paired, PairingError> {
        let s = self.session_for(now, uniqueid, Phase::ClientPairingSecret)?;
        let Step::AwaitingClientPairingSecret {
            server_challenge,
            client_hash,
        } = s.step
        else {
            return Err(PairingError::NoSession);
        };
        let data = match hex_decode("clientpairingsecret", clientpairingsecret) {
            Ok(d) if d.len() > 16 && d.len() <= 16 + MAX_SIGNATURE_LEN => d,
            Ok(_) => {
                return Err(self.end(PairingError::Malformed(QueryError::BadValue {
                    name: "clientpairingsecret",
                    reason: "wrong length",
                })));
            }
            Err(e) => return Err(self.end(e.into())),
        };
        let (secret, signature) = data.split_at(16);
        let expected = sha256(&[&server_challenge, s.client.signature(), secret]);
        let proof_ok = bool::from(expected.ct_eq(&client_hash));
        let signature_ok = s.client.verify_pairing_signature(secret, signature).is_ok();
        if !proof_ok {
            return Err(self.end(PairingError::WrongPin));
        }
        if !signature_ok {
            return Err(self.end(PairingError::BadSignature));
        }
        let Some(s) = self.session.take() else {
            return Err(PairingError::NoSession);
        };
        let name = s
            .name
            .filter(|n| !n.trim().is_empty())
            .or_else(|| Some(s.device_name).filter(|d| !d.is_empty() && d != "roth"))
            .unwrap_or_else(|| "Moonlight client".to_owned());
        Ok(Paired {
            ticket: s.ticket,
            cert: s.client,
            name,
            uniqueid: s.uniqueid,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::gamestream::cert::tests::{CLIENT_CERT_PEM, CLIENT_KEY_PEM};
    use crate::gamestream::identity::tests::fixture;
    use crate::gamestream::query::{hex_lower, hex_upper};
    use ring::signature::RsaKeyPair;
    use rustls::pki_types::PrivatePkcs8KeyDer;
    use rustls::pki_types::pem::PemObject;

    const UID: &str = "0123456789ABCDEF";

    #[test]
    fn key_derivation_test_vector() {
        let salt: [u8; 16] = core::array::from_fn(|i| i as u8);
        assert_eq!(
            hex_lower(&derive_key(&salt, "1234")),
            "bad0b4f7cae08eb7c1b5acc763a8ed25"
        );
    }

    /// A client written from the protocol description (§1.5), the way Moonlight does it.
    pub(crate) struct TestClient {
        cert: Certificate,
        key: RsaKeyPair,
        salt: [u8; 16],
        aes: [u8; 16],
        challenge: [u8; 16],
        secret: [u8; 16],
        server_cert: Option<Certificate>,
    }

    impl TestClient {
        pub(crate) fn new(pin: &str) -> Self {
            let key = PrivatePkcs8KeyDer::from_pem_slice(CLIENT_KEY_PEM.as_bytes()).unwrap();
            let salt = [0x5a; 16];
            Self {
                cert: Certificate::from_pem(CLIENT_CERT_PEM.as_bytes()).unwrap(),
                key: RsaKeyPair::from_pkcs8(key.secret_pkcs8_der()).unwrap(),
                salt,
                aes: derive_key(&salt, pin),
                challenge: [0x11; 16],
                secret: [0x22; 16],
                server_cert: None,
            }
        }

        pub(crate) fn phase1(&self) -> (String, String) {
            (hex_lower(&self.salt), hex_upper(CLIENT_CERT_PEM.as_bytes()))
        }

        pub(crate) fn take_plaincert(&mut self, plaincert_pem: &[u8]) {
            self.server_cert = Some(Certificate::from_pem(plaincert_pem).unwrap());
        }

        pub(crate) fn phase2(&self) -> String {
            let mut c = self.challenge;
            ecb_encrypt(&self.aes, &mut c);
            hex_upper(&c)
        }

        /// Phase 3 from the phase-2 reply: returns the server's hash (checked after the
        /// phase-3 reply) and the `serverchallengeresp` hex.
        pub(crate) fn phase3(&self, challengeresponse: &[u8]) -> (Vec<u8>, String) {
            let mut r = challengeresponse.to_vec();
            ecb_decrypt(&self.aes, &mut r);
            let server_challenge = &r[32..48];
            let mut h = sha256(&[server_challenge, self.cert.signature(), &self.secret]).to_vec();
            ecb_encrypt(&self.aes, &mut h);
            (r[..32].to_vec(), hex_upper(&h))
        }

        /// After phase 3's reply: MITM check and PIN check, as the client does.
        pub(crate) fn check_server(
            &self,
            server_hash: &[u8],
            pairingsecret: &[u8],
        ) -> Result<(), &'static str> {
            let server_cert = self.server_cert.as_ref().unwrap();
            let (secret, sig) = pairingsecret.split_at(16);
            server_cert
                .verify_pairing_signature(secret, sig)
                .map_err(|_| "MITM")?;
            let expected = sha256(&[&self.challenge, server_cert.signature(), secret]);
            if expected[..] != server_hash[..] {
                return Err("wrong PIN");
            }
            Ok(())
        }

        pub(crate) fn phase4(&self) -> String {
            let mut sig = vec![0u8; self.key.public().modulus_len()];
            self.key
                .sign(
                    &ring::signature::RSA_PKCS1_SHA256,
                    &ring::rand::SystemRandom::new(),
                    &self.secret,
                    &mut sig,
                )
                .unwrap();
            let mut out = self.secret.to_vec();
            out.extend_from_slice(&sig);
            hex_upper(&out)
        }
    }

    fn machine() -> (Pairing, Instant) {
        let p = Pairing::new(Arc::new(fixture()), PairingConfig::default(), [9; 32]);
        (p, Instant::now())
    }

    /// Runs phases 1-3 with `client_pin` on the client and `host_pin` entered on the host;
    /// returns the client's verdict after phase 3.
    fn run_to_phase3(
        p: &mut Pairing,
        now: Instant,
        client: &mut TestClient,
        host_pin: &str,
    ) -> Result<(), &'static str> {
        let (salt, cert) = client.phase1();
        let ticket = p
            .handle_getservercert(now, UID, "roth", &salt, &cert)
            .unwrap();
        assert!(matches!(p.status(), PairingStatus::AwaitingPin { .. }));
        assert_eq!(
            p.handle_pin(now, host_pin, Some("Test TV")).unwrap().ticket,
            ticket
        );
        client.take_plaincert(fixture().cert_pem().as_bytes());
        let r2 = p
            .handle_clientchallenge(now, UID, &client.phase2())
            .unwrap();
        assert_eq!(r2.len(), 48);
        let (server_hash, resp) = client.phase3(&r2);
        let r3 = p.handle_serverchallengeresp(now, UID, &resp).unwrap();
        assert_eq!(r3.len(), 16 + 256);
        client.check_server(&server_hash, &r3)
    }

    #[test]
    fn full_pairing_with_the_right_pin() {
        let (mut p, now) = machine();
        let mut client = TestClient::new("4321");
        run_to_phase3(&mut p, now, &mut client, "4321").unwrap();
        let paired = p
            .handle_clientpairingsecret(now, UID, &client.phase4())
            .unwrap();
        assert_eq!(paired.name, "Test TV");
        assert_eq!(paired.cert, client.cert);
        assert_eq!(p.status(), PairingStatus::Idle);
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn wrong_pin_is_caught_by_the_client_and_by_the_host() {
        // The client notices in phase 3 and abandons with /unpair.
        let (mut p, now) = machine();
        let mut client = TestClient::new("1111");
        assert_eq!(
            run_to_phase3(&mut p, now, &mut client, "2222"),
            Err("wrong PIN")
        );
        assert!(p.handle_unpair(UID));
        assert!(matches!(
            p.poll_event(),
            Some(PairingEvent::Failed {
                error: PairingError::Abandoned,
                ..
            })
        ));
        assert_eq!(p.status(), PairingStatus::Idle);

        // A client that ignores its own check and sends phase 4 is refused by the host.
        let mut client = TestClient::new("1111");
        let _ = run_to_phase3(&mut p, now, &mut client, "2222");
        assert_eq!(
            p.handle_clientpairingsecret(now, UID, &client.phase4()),
            Err(PairingError::WrongPin)
        );
        assert_eq!(p.status(), PairingStatus::Idle);
    }

    #[test]
    fn forged_signature_is_refused() {
        let (mut p, now) = machine();
        let mut client = TestClient::new("1234");
        run_to_phase3(&mut p, now, &mut client, "1234").unwrap();
        let mut bad = client.phase4();
        // Flip a bit of the signature.
        let last = bad.pop().unwrap();
        bad.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            p.handle_clientpairingsecret(now, UID, &bad),
            Err(PairingError::BadSignature)
        );
    }

    #[test]
    fn one_pairing_at_a_time() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        let (salt, cert) = client.phase1();
        let first = p.handle_getservercert(now, UID, "", &salt, &cert).unwrap();
        let other = hex_upper(include_bytes!("../../tests/fixtures/client2-cert.pem"));
        assert_eq!(
            p.handle_getservercert(now, "other", "", &salt, &other),
            Err(PairingError::Busy)
        );
        // The busy client's /unpair leaves the waiting pairing alone.
        assert!(!p.handle_unpair("other"));
        assert!(!p.handle_unpair(UID));
        // The same client restarting replaces its own pairing.
        let second = p.handle_getservercert(now, UID, "", &salt, &cert).unwrap();
        assert_ne!(first, second);
        assert_eq!(
            p.poll_event(),
            Some(PairingEvent::Failed {
                ticket: first,
                error: PairingError::Superseded
            })
        );
    }

    #[test]
    fn pin_rules_and_timeouts() {
        let (mut p, now) = machine();
        assert_eq!(
            p.handle_pin(now, "1234", None),
            Err(PairingError::NoPinRequested)
        );
        let client = TestClient::new("1234");
        let (salt, cert) = client.phase1();
        let t = p.handle_getservercert(now, UID, "", &salt, &cert).unwrap();
        for bad in ["", "123", "12345", "12a4", "１２３４"] {
            assert_eq!(
                p.handle_pin(now, bad, None),
                Err(PairingError::InvalidPin),
                "{bad}"
            );
        }
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(120)));
        let later = now + Duration::from_secs(121);
        assert_eq!(
            p.handle_pin(later, "1234", None),
            Err(PairingError::NoPinRequested)
        );
        assert_eq!(
            p.poll_event(),
            Some(PairingEvent::Failed {
                ticket: t,
                error: PairingError::TimedOut
            })
        );
        // abort() of a ticket that is gone does nothing.
        assert!(!p.abort(t, PairingError::Cancelled));
    }

    #[test]
    fn phases_out_of_order_end_the_pairing() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        assert_eq!(
            p.handle_clientchallenge(now, UID, &client.phase2()),
            Err(PairingError::NoSession)
        );
        let (salt, cert) = client.phase1();
        p.handle_getservercert(now, UID, "", &salt, &cert).unwrap();
        p.handle_pin(now, "1234", None).unwrap();
        // Another uniqueid is refused without touching the pairing.
        assert_eq!(
            p.handle_serverchallengeresp(now, "intruder", &"00".repeat(32)),
            Err(PairingError::NoSession)
        );
        assert!(matches!(p.status(), PairingStatus::InProgress { .. }));
        assert_eq!(
            p.handle_serverchallengeresp(now, UID, &"00".repeat(32)),
            Err(PairingError::OutOfOrder {
                expected: Phase::ClientChallenge,
                got: Phase::ServerChallengeResp
            })
        );
        assert_eq!(p.status(), PairingStatus::Idle);
    }

    #[test]
    fn malformed_fields() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        let (salt, cert) = client.phase1();
        assert!(matches!(
            p.handle_getservercert(now, UID, "", "00", &cert),
            Err(PairingError::Malformed(_))
        ));
        assert!(matches!(
            p.handle_getservercert(now, UID, "", &salt, "zz"),
            Err(PairingError::Malformed(_))
        ));
        assert!(matches!(
            p.handle_getservercert(now, UID, "", &salt, &hex_upper(b"not a cert")),
            Err(PairingError::BadCertificate(_))
        ));
        p.handle_getservercert(now, UID, "", &salt, &cert).unwrap();
        p.handle_pin(now, "1234", None).unwrap();
        assert!(matches!(
            p.handle_clientchallenge(now, UID, "0011"),
            Err(PairingError::Malformed(_))
        ));
        assert_eq!(p.status(), PairingStatus::Idle);
    }
}
