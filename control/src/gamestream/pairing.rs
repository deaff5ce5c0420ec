//! The GameStream pairing state machine: all `/pair` phases (described in
//! docs/gamestream-host.md, "Pairing"), the operator's PIN window, several waiting clients,
//! sans IO.
//!
//! ```text
//!  client                                   host (this machine)
//!  ── 1 getservercert(salt, clientcert) ──►  backoff? window exhausted? full: evict ─► Waiting
//!                                            (request held open until a PIN is delivered)
//!        operator: `punktfunk pin 1234 [--to ID]` ─► window armed, PIN delivered to one
//!        Waiting pairing (or, armed first, to the next one that arrives) ─► Active
//!  ◄──────── plaincert (host cert PEM) ────  K = SHA256(salt‖PIN)[..16]
//!  ── 2 clientchallenge = E_K(cc) ────────►  h = SHA256(cc ‖ sig(hostcert) ‖ serversecret)
//!  ◄──── E_K(h ‖ serverchallenge) ─────────
//!  ── 3 serverchallengeresp = E_K(hc) ────►  keep hc
//!  ◄── serversecret ‖ Sign_host(serversecret)
//!      (client checks h: a wrong PIN is caught here, and it calls /unpair)
//!  ── 4 clientpairingsecret = cs ‖ Sign_client(cs) ─►
//!        hc == SHA256(serverchallenge ‖ sig(clientcert) ‖ cs)  (constant time)
//!        and Verify_clientcert(cs, signature)  ─► Paired (the caller stores the client) / fail
//!  ── 5 pairchallenge over HTTPS: answered by the nvhttp layer from the paired store.
//! ```
//!
//! `E_K`/`D_K` are AES-128-ECB without padding. The host advertises appversion 7.x, so the
//! hash is SHA-256 throughout.
//!
//! **The PIN belongs to the operator's window** ([`crate::pairing_window`]), not to a
//! connection. Moonlight makes up the PIN and shows it; the operator types it with
//! `punktfunk pin`, which arms the window with that PIN. Two orders work:
//!
//! * *client first* (Moonlight): the client waits in phase 1; `punktfunk pin PIN` arms the
//!   window *for that waiting pairing* and delivers the PIN to it (with several waiting,
//!   `--to ID` chooses; without it the PIN is refused as ambiguous). Such a window is that
//!   pairing's only: when the pairing ends, the window closes too (Moonlight shows a new PIN
//!   on its next try, so the old one is worth nothing).
//! * *operator first* (clients that let the user choose the PIN): `punktfunk pin PIN` with no
//!   client waiting arms the window for whoever comes next; each phase 1 that arrives while it
//!   is open, and no other pairing is under way, is given the PIN, until a client pairs (the
//!   window closes, single use), [`WindowConfig::failure_budget`] attempts failed (the window
//!   is *exhausted*: phase 1 is refused until the operator re-arms or closes it), or its
//!   lifetime ends.
//!
//! A pairing that had the PIN and did not pair is a wrong PIN for the window and its address:
//! phase 4's proof does not match, the client abandons with `/unpair` (what Moonlight does
//! when its phase-3 check fails), the same certificate starts over, or it stops answering
//! (an attacker who has the phase-2 reply can test PINs offline and leave). Each costs one of
//! the window's budget and makes the address wait 1, 2, 4 … ≤ 300 s
//! ([`AddressBackoff`]) before its next phase 1.
//!
//! **Several clients may wait** (a stranger's phase 1 blocks nobody): one waiting pairing per
//! certificate (the same certificate starting over replaces its own), at most
//! [`PairingConfig::max_waiting_per_address`] per address and [`PairingConfig::max_waiting`]
//! in all. A newcomer is never refused for lack of room: it *evicts* a waiting pairing
//! ([`PairingError::Replaced`], counted in [`PairingStats::evicted`]) — the oldest of its own
//! address if that address is at its limit, else (the list being full) the oldest of the
//! address that holds the most waiting slots, so a flooding address pays first and a lone
//! real client is evicted only when every address holds one slot (then the oldest overall
//! goes). The pairing that holds the PIN is not waiting and is never evicted. A waiting
//! pairing that gets no PIN ends after [`PairingConfig::pin_timeout`]; the operator can
//! cancel one ([`Pairing::cancel`]).
//! Only one pairing holds the PIN at a time ([`Pairing::status`] shows it as `active`); phases
//! 2–4 and `/unpair` are accepted only from its `uniqueid` *and* address, so nobody else can
//! disturb it. Each later phase must arrive within [`PairingConfig::phase_timeout`]; any error
//! in phases 2–4 ends the pairing (as Sunshine's `fail_pair()`), so a client must start again
//! from phase 1. Time comes in as `now`; the secrets come from a ChaCha20 stream seeded by the
//! caller. Pairings that end without success, and PINs delivered, are reported through
//! [`Pairing::poll_event`]; every refusal is counted in [`PairingStats`].
//!
//! Known weakness of the protocol itself, not of this implementation: an active attacker who
//! is given the PIN (completes phases 1–2) can test PIN guesses offline against the phase-2
//! reply. The operator choosing which waiting client gets the PIN (address and certificate
//! fingerprint are shown) is the defence; pair on a trusted LAN, watching.

use std::collections::VecDeque;
use std::net::IpAddr;
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
use crate::pairing_window::{
    AddressBackoff, BackoffConfig, PairingWindow, Refusal, WindowConfig, WindowStatus,
};

/// Longest signature accepted in phase 4 (RSA-8192).
const MAX_SIGNATURE_LEN: usize = 1024;

/// Limits and timeouts of pairing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PairingConfig {
    /// How long phase 1 waits for the operator's PIN. Moonlight itself waits forever.
    pub pin_timeout: Duration,
    /// How long each later phase may take to arrive (clients send them back to back).
    pub phase_timeout: Duration,
    /// How long a window armed with `punktfunk pin` stays open.
    pub window_lifetime: Duration,
    /// Pairings waiting for a PIN at once, in all.
    pub max_waiting: usize,
    /// Pairings waiting for a PIN at once from one address (IPv6: one /64).
    pub max_waiting_per_address: usize,
    /// The window's failure budget.
    pub window: WindowConfig,
    /// Per-address backoff after failed pairings.
    pub backoff: BackoffConfig,
}

impl Default for PairingConfig {
    fn default() -> Self {
        Self {
            pin_timeout: Duration::from_secs(120),
            phase_timeout: Duration::from_secs(30),
            window_lifetime: Duration::from_secs(120),
            max_waiting: 8,
            max_waiting_per_address: 4,
            window: WindowConfig::default(),
            backoff: BackoffConfig::default(),
        }
    }
}

/// Identifies one pairing attempt, from phase 1 to its end; the operator's `ID`.
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
    /// No pairing with the PIN is open for this client (`uniqueid` and address).
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
    /// This address failed a pairing recently and must wait.
    #[error("a pairing from this address failed recently: try again in {retry_after_secs} s")]
    Backoff {
        /// Seconds until it may try again (rounded up).
        retry_after_secs: u64,
    },
    /// The window was closed by wrong PINs; the operator must re-arm or close it.
    #[error("{0}; the host's operator must re-arm it (`punktfunk pin`)")]
    WindowClosed(Refusal),

    // Local misuse.
    /// The PIN is not 4 decimal digits.
    #[error("the PIN must be 4 digits")]
    InvalidPin,
    /// The pairing the operator named does not wait for a PIN.
    #[error("no pairing with this id waits for a PIN (see `punktfunk pairing`)")]
    NoSuchPairing,
    /// Several pairings wait and the operator did not say which one gets the PIN.
    #[error(
        "{waiting} clients are waiting to pair: choose one with `--to ID` (see `punktfunk pairing`)"
    )]
    Ambiguous {
        /// How many wait.
        waiting: usize,
    },
    /// Another pairing holds the PIN right now.
    #[error("another pairing is under way; wait for it to end or cancel it")]
    InProgress,

    // Resources.
    /// No pairing may wait at all (a limit configured to 0).
    #[error("too many clients are waiting to pair; try again later")]
    Busy,
    /// This waiting pairing was evicted to make room for a newer one (the waiting list or its
    /// address's share of it was full).
    #[error(
        "pairing cancelled: replaced by a newer client's (too many clients were waiting); try again"
    )]
    Replaced,
    /// A deadline passed.
    #[error("pairing timed out")]
    TimedOut,
    /// The host stopped waiting (the request went away or the server shut down).
    #[error("pairing cancelled by the host")]
    Cancelled,
    /// The operator cancelled this pairing.
    #[error("pairing cancelled by the host's operator")]
    CancelledByOperator,
}

impl PairingError {
    /// Whether a pairing that had the PIN and ended with this error counts as a wrong PIN
    /// (against the window's budget and the address's backoff).
    fn counts_as_failure(&self) -> bool {
        !matches!(
            self,
            PairingError::Cancelled | PairingError::CancelledByOperator | PairingError::Replaced
        )
    }
}

/// Something that happened without a request to return it to.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PairingEvent {
    /// Pairing `ticket` was given the PIN: its held phase-1 request may now be answered with
    /// the host certificate.
    PinDelivered {
        /// Which pairing.
        ticket: Ticket,
    },
    /// The pairing `ticket` ended without a paired client.
    Failed {
        /// Which pairing.
        ticket: Ticket,
        /// Why.
        error: PairingError,
    },
}

/// One pairing as the operator sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingInfo {
    /// Its id.
    pub ticket: Ticket,
    /// The `uniqueid` the client sent (Moonlight often sends a constant).
    pub uniqueid: String,
    /// The `devicename` the client sent (Moonlight sends the constant "roth").
    pub device_name: String,
    /// Where phase 1 came from.
    pub address: IpAddr,
    /// SHA-256 of the client certificate's DER.
    pub fingerprint: [u8; 32],
    /// When phase 1 arrived.
    pub since: Instant,
}

impl PairingInfo {
    /// How long ago phase 1 arrived, at `now`.
    pub fn age_at(&self, now: Instant) -> Duration {
        now.saturating_duration_since(self.since)
    }
}

/// What [`Pairing::status`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairingStatus {
    /// The operator's window.
    pub window: WindowStatus,
    /// The pairing the window was armed for (`--to`, or the only one waiting), if any.
    pub armed_for: Option<Ticket>,
    /// The pairing that holds the PIN (phases 2–4), if any.
    pub active: Option<PairingInfo>,
    /// Pairings waiting for a PIN, oldest first.
    pub waiting: Vec<PairingInfo>,
    /// Counters since start.
    pub stats: PairingStats,
}

impl PairingStatus {
    /// `"in_progress"` while a pairing holds the PIN, else `"awaiting_pin"` while one waits,
    /// else `"idle"`.
    pub fn state(&self) -> &'static str {
        if self.active.is_some() {
            "in_progress"
        } else if !self.waiting.is_empty() {
            "awaiting_pin"
        } else {
            "idle"
        }
    }
}

/// Counters of pairing outcomes and refusals since start.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PairingStats {
    /// Clients paired.
    pub paired: u64,
    /// Pairings that had the PIN and failed (wrong PIN, abandoned, restarted, timed out).
    pub failed: u64,
    /// Phase-1 requests refused because their address is backing off.
    pub refused_backoff: u64,
    /// Phase-1 requests refused because the window is exhausted.
    pub refused_closed: u64,
    /// Phase-1 requests refused for lack of room (only with a limit configured to 0).
    pub refused_busy: u64,
    /// Waiting pairings evicted to make room for a newcomer (also in `ended_waiting`).
    pub evicted: u64,
    /// Requests refused as malformed, out of order or not from the pairing's client.
    pub refused_malformed: u64,
    /// Waiting pairings that ended without a PIN (timeout, request gone, operator cancel,
    /// evicted).
    pub ended_waiting: u64,
    /// Windows closed by spent failure budgets.
    pub windows_exhausted: u64,
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

/// What the operator's PIN did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinArmed {
    /// The window was armed for, and the PIN delivered to, this waiting pairing.
    Delivered(Ticket),
    /// No client was waiting: the window is armed for the next one.
    Armed,
}

type Key = [u8; 16];

#[allow(clippy::enum_variant_names)] // each step is "awaiting" its phase, by design
enum Step {
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
            Step::AwaitingClientChallenge { .. } => Phase::ClientChallenge,
            Step::AwaitingServerChallengeResp { .. } => Phase::ServerChallengeResp,
            Step::AwaitingClientPairingSecret { .. } => Phase::ClientPairingSecret,
        }
    }
}

/// A phase-1 request waiting for the operator's PIN.
struct Waiting {
    info: PairingInfo,
    client: Certificate,
    salt: [u8; 16],
    deadline: Instant,
}

/// The pairing that holds the PIN.
struct Active {
    info: PairingInfo,
    name: Option<String>,
    client: Certificate,
    /// The window generation whose PIN it holds: a failure counts against that window only.
    generation: u64,
    deadline: Instant,
    step: Step,
}

/// The pairing state machine. One per host.
pub struct Pairing {
    config: PairingConfig,
    host: Arc<HostIdentity>,
    rng: ChaCha20Rng,
    next_ticket: u64,
    waiting: Vec<Waiting>,
    active: Option<Active>,
    window: PairingWindow<String>,
    /// Bumped on every arm.
    generation: u64,
    /// The pairing the window was armed for (client-first order).
    armed_for: Option<Ticket>,
    /// The name the operator gave with the PIN.
    armed_name: Option<String>,
    backoff: AddressBackoff,
    stats: PairingStats,
    events: VecDeque<PairingEvent>,
}

impl std::fmt::Debug for Pairing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pairing")
            .field("config", &self.config)
            .field("active", &self.active.as_ref().map(|s| s.info.ticket))
            .field("waiting", &self.waiting.len())
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

/// The address key for per-address limits: IPv4 as is, IPv6 by its /64.
fn address_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

impl Pairing {
    /// A machine with no pairing open and the window not armed. `seed` feeds the server
    /// secrets and challenges; draw it from the OS outside tests.
    pub fn new(host: Arc<HostIdentity>, config: PairingConfig, seed: [u8; 32]) -> Self {
        Self {
            config,
            host,
            rng: ChaCha20Rng::from_seed(seed),
            next_ticket: 1,
            waiting: Vec::new(),
            active: None,
            window: PairingWindow::new(config.window),
            generation: 0,
            armed_for: None,
            armed_name: None,
            backoff: AddressBackoff::new(config.backoff),
            stats: PairingStats::default(),
            events: VecDeque::new(),
        }
    }

    /// Where things stand at `now`.
    pub fn status(&mut self, now: Instant) -> PairingStatus {
        self.handle_timeout(now);
        PairingStatus {
            window: self.window.status(now),
            armed_for: self.armed_for,
            active: self.active.as_ref().map(|a| a.info.clone()),
            waiting: self.waiting.iter().map(|w| w.info.clone()).collect(),
            stats: self.stats,
        }
    }

    /// The counters.
    pub fn stats(&self) -> PairingStats {
        self.stats
    }

    /// The next deadline: a waiting or active pairing's, or the window's expiry.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.waiting
            .iter()
            .map(|w| w.deadline)
            .chain(self.active.as_ref().map(|a| a.deadline))
            .chain(self.window.poll_timeout())
            .min()
    }

    /// Ends pairings whose deadline has passed (and lets the window expire).
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.active.as_ref().is_some_and(|a| now >= a.deadline) {
            self.fail_active(now, PairingError::TimedOut);
        }
        let mut i = 0;
        while i < self.waiting.len() {
            if now >= self.waiting[i].deadline {
                let w = self.waiting.remove(i);
                self.end_waiting(w.info.ticket, PairingError::TimedOut);
            } else {
                i += 1;
            }
        }
        if !self.window.is_open(now) && self.active.is_none() {
            self.armed_for = None;
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<PairingEvent> {
        self.events.pop_front()
    }

    fn end_waiting(&mut self, ticket: Ticket, error: PairingError) {
        self.stats.ended_waiting += 1;
        if self.armed_for == Some(ticket) {
            self.armed_for = None;
        }
        self.events
            .push_back(PairingEvent::Failed { ticket, error });
    }

    /// Ends the active pairing with `error`, counting it against the window and the address
    /// unless the host or operator ended it; then hands an open window's PIN to the next
    /// waiting pairing. Hands `error` back.
    fn fail_active(&mut self, now: Instant, error: PairingError) -> PairingError {
        let Some(a) = self.active.take() else {
            return error;
        };
        if error.counts_as_failure() {
            self.stats.failed += 1;
            self.backoff.record_failure(now, a.info.address);
            if a.generation == self.generation && self.window.record_failure(now) {
                self.stats.windows_exhausted += 1;
            }
        }
        if self.armed_for == Some(a.info.ticket) {
            // A PIN typed for one waiting client is that client's only.
            self.window.close();
            self.armed_for = None;
        }
        self.events.push_back(PairingEvent::Failed {
            ticket: a.info.ticket,
            error: error.clone(),
        });
        self.hand_out(now);
        error
    }

    /// Gives an open, operator-first window's PIN to the oldest waiting pairing if no other
    /// pairing holds it.
    fn hand_out(&mut self, now: Instant) {
        if self.active.is_some() || self.armed_for.is_some() || self.waiting.is_empty() {
            return;
        }
        if self.window.is_open(now) {
            self.deliver(now, 0);
        }
    }

    /// Moves waiting pairing `index` to active with the window's PIN.
    fn deliver(&mut self, now: Instant, index: usize) {
        let Ok(pin) = self.window.pin(now) else {
            return;
        };
        let w = self.waiting.remove(index);
        let key = derive_key(&w.salt, pin);
        self.events.push_back(PairingEvent::PinDelivered {
            ticket: w.info.ticket,
        });
        self.active = Some(Active {
            info: w.info,
            name: self.armed_name.clone(),
            client: w.client,
            generation: self.generation,
            deadline: now + self.config.phase_timeout,
            step: Step::AwaitingClientChallenge { key },
        });
    }

    /// The host stopped waiting for pairing `ticket` (its phase-1 request went away, or the
    /// PIN wait timed out): a waiting pairing ends with `error`; an active one too, without
    /// counting as a wrong PIN. Returns whether it was open.
    pub fn abort(&mut self, ticket: Ticket, error: PairingError) -> bool {
        if let Some(i) = self.waiting.iter().position(|w| w.info.ticket == ticket) {
            self.waiting.remove(i);
            self.end_waiting(ticket, error);
            true
        } else if self
            .active
            .as_ref()
            .is_some_and(|a| a.info.ticket == ticket)
        {
            let Some(a) = self.active.take() else {
                return false;
            };
            if self.armed_for == Some(ticket) {
                self.window.close();
                self.armed_for = None;
            }
            self.events.push_back(PairingEvent::Failed {
                ticket: a.info.ticket,
                error,
            });
            true
        } else {
            false
        }
    }

    /// The operator cancels pairing `ticket` (waiting or active). Not a wrong PIN.
    pub fn cancel(&mut self, now: Instant, ticket: Ticket) -> bool {
        let found = self.abort(ticket, PairingError::CancelledByOperator);
        self.hand_out(now);
        found
    }

    /// The operator closes the window: no PIN is handed out until it is armed again, and an
    /// exhausted window stops refusing phase 1 (clients may wait for the operator again).
    pub fn close_window(&mut self) {
        self.window.close();
        self.armed_for = None;
        self.armed_name = None;
    }

    /// `/unpair` from `uniqueid` at `from`: Moonlight sends it after a failed pairing (for
    /// instance after detecting a wrong PIN in phase 3), so it ends that client's active
    /// pairing, as a wrong PIN. Waiting pairings are left alone: their clients are blocked in
    /// phase 1, so the request comes from someone else.
    pub fn handle_unpair(&mut self, now: Instant, from: IpAddr, uniqueid: &str) -> bool {
        let matches = self
            .active
            .as_ref()
            .is_some_and(|a| a.info.uniqueid == uniqueid && a.info.address == from.to_canonical());
        if matches {
            self.fail_active(now, PairingError::Abandoned);
        }
        matches
    }

    /// Phase 1 from `from`: `salt` and `clientcert` as sent (hex). Opens a pairing that waits
    /// for the PIN (an [`PairingEvent::PinDelivered`] for it may already be queued, if an
    /// operator-first window is open).
    pub fn handle_getservercert(
        &mut self,
        now: Instant,
        from: IpAddr,
        uniqueid: &str,
        device_name: &str,
        salt: &str,
        clientcert: &str,
    ) -> Result<Ticket, PairingError> {
        self.handle_timeout(now);
        let from = from.to_canonical();
        let parsed = hex_array::<16>("salt", salt)
            .map_err(PairingError::from)
            .and_then(|salt| {
                let pem = hex_decode("clientcert", clientcert)?;
                let client = Certificate::from_pem(&pem).map_err(PairingError::BadCertificate)?;
                Ok((salt, client))
            });
        let (salt, client) = match parsed {
            Ok(p) => p,
            Err(e) => {
                self.stats.refused_malformed += 1;
                return Err(e);
            }
        };
        if let Err(wait) = self.backoff.check(now, from) {
            self.stats.refused_backoff += 1;
            return Err(PairingError::Backoff {
                retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
            });
        }
        if let Err(Refusal::Exhausted) = self.window.pin(now) {
            self.stats.refused_closed += 1;
            return Err(PairingError::WindowClosed(Refusal::Exhausted));
        }
        let fingerprint = client.fingerprint();
        if self
            .active
            .as_ref()
            .is_some_and(|a| a.info.fingerprint == fingerprint)
        {
            self.fail_active(now, PairingError::Superseded);
            // That failure may have exhausted the window or started a backoff.
            if let Err(wait) = self.backoff.check(now, from) {
                self.stats.refused_backoff += 1;
                return Err(PairingError::Backoff {
                    retry_after_secs: wait.as_secs() + u64::from(wait.subsec_nanos() > 0),
                });
            }
        }
        if let Some(i) = self
            .waiting
            .iter()
            .position(|w| w.info.fingerprint == fingerprint)
        {
            let old = self.waiting.remove(i);
            self.end_waiting(old.info.ticket, PairingError::Superseded);
        }
        if self.config.max_waiting == 0 || self.config.max_waiting_per_address == 0 {
            self.stats.refused_busy += 1;
            return Err(PairingError::Busy);
        }
        if let Some(i) = self.eviction_victim(address_key(from)) {
            let old = self.waiting.remove(i);
            self.stats.evicted += 1;
            self.end_waiting(old.info.ticket, PairingError::Replaced);
        }
        let ticket = Ticket(self.next_ticket);
        self.next_ticket += 1;
        self.waiting.push(Waiting {
            info: PairingInfo {
                ticket,
                uniqueid: uniqueid.to_owned(),
                device_name: device_name.to_owned(),
                address: from,
                fingerprint,
                since: now,
            },
            client,
            salt,
            deadline: now + self.config.pin_timeout,
        });
        self.hand_out(now);
        Ok(ticket)
    }

    /// The waiting pairing a newcomer from address `key` must evict, if there is no room: the
    /// oldest of `key` itself if that address is at its limit; else, with the list full, the
    /// oldest of the address holding the most waiting slots (among equals, the one whose
    /// oldest waits longest; so with one slot each, the oldest overall). `waiting` is in
    /// arrival order. The active pairing is not in `waiting`, so it is never chosen.
    fn eviction_victim(&self, key: IpAddr) -> Option<usize> {
        let keys: Vec<IpAddr> = self
            .waiting
            .iter()
            .map(|w| address_key(w.info.address))
            .collect();
        let count = |k: IpAddr| keys.iter().filter(|&&x| x == k).count();
        if count(key) >= self.config.max_waiting_per_address {
            return keys.iter().position(|&k| k == key);
        }
        if self.waiting.len() < self.config.max_waiting {
            return None;
        }
        let most = keys.iter().map(|&k| count(k)).max()?;
        keys.iter().position(|&k| count(k) == most)
    }

    /// The operator's PIN, with an optional name for the client, for the waiting pairing `to`
    /// (or the only one waiting; with none waiting the window is armed for the next client).
    /// Re-arming resets the window's failure budget.
    pub fn handle_pin(
        &mut self,
        now: Instant,
        pin: &str,
        name: Option<&str>,
        to: Option<Ticket>,
    ) -> Result<PinArmed, PairingError> {
        self.handle_timeout(now);
        if !valid_pin(pin) {
            return Err(PairingError::InvalidPin);
        }
        let index = match to {
            Some(t) => Some(
                self.waiting
                    .iter()
                    .position(|w| w.info.ticket == t)
                    .ok_or(PairingError::NoSuchPairing)?,
            ),
            None if self.waiting.len() > 1 => {
                return Err(PairingError::Ambiguous {
                    waiting: self.waiting.len(),
                });
            }
            None if self.waiting.len() == 1 => Some(0),
            None => None,
        };
        if self.active.is_some() {
            return Err(PairingError::InProgress);
        }
        self.generation += 1;
        self.window
            .arm(now, pin.to_owned(), self.config.window_lifetime);
        self.armed_name = name.map(str::to_owned).filter(|n| !n.trim().is_empty());
        match index {
            Some(i) => {
                let ticket = self.waiting[i].info.ticket;
                self.armed_for = Some(ticket);
                self.deliver(now, i);
                Ok(PinArmed::Delivered(ticket))
            }
            None => {
                self.armed_for = None;
                Ok(PinArmed::Armed)
            }
        }
    }

    /// The active pairing for `uniqueid` at `from` in the step `phase` needs; errors end the
    /// pairing (except a request from another client, which is refused without touching it).
    fn session_for(
        &mut self,
        now: Instant,
        from: IpAddr,
        uniqueid: &str,
        phase: Phase,
    ) -> Result<&mut Active, PairingError> {
        self.handle_timeout(now);
        let from = from.to_canonical();
        match &self.active {
            Some(a) if a.info.uniqueid == uniqueid && a.info.address == from => {
                if a.step.expects() != phase {
                    let expected = a.step.expects();
                    self.stats.refused_malformed += 1;
                    return Err(self.fail_active(
                        now,
                        PairingError::OutOfOrder {
                            expected,
                            got: phase,
                        },
                    ));
                }
            }
            _ => {
                self.stats.refused_malformed += 1;
                return Err(PairingError::NoSession);
            }
        }
        // Just matched `Some` above.
        self.active.as_mut().ok_or(PairingError::NoSession)
    }

    /// Phase 2: returns the `challengeresponse` bytes, `E_K(h ‖ serverchallenge)`.
    pub fn handle_clientchallenge(
        &mut self,
        now: Instant,
        from: IpAddr,
        uniqueid: &str,
        clientchallenge: &str,
    ) -> Result<Vec<u8>, PairingError> {
        let phase_timeout = self.config.phase_timeout;
        let mut server_secret = [0u8; 16];
        let mut server_challenge = [0u8; 16];
        self.rng.fill_bytes(&mut server_secret);
        self.rng.fill_bytes(&mut server_challenge);
        let host = Arc::clone(&self.host);
        let s = self.session_for(now, from, uniqueid, Phase::ClientChallenge)?;
        let Step::AwaitingClientChallenge { key } = s.step else {
            return Err(PairingError::NoSession);
        };
        let mut challenge = match hex_array::<16>("clientchallenge", clientchallenge) {
            Ok(c) => c,
            Err(e) => return Err(self.fail_active(now, e.into())),
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
        from: IpAddr,
        uniqueid: &str,
        serverchallengeresp: &str,
    ) -> Result<Vec<u8>, PairingError> {
        let phase_timeout = self.config.phase_timeout;
        let host = Arc::clone(&self.host);
        let s = self.session_for(now, from, uniqueid, Phase::ServerChallengeResp)?;
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
            Err(e) => return Err(self.fail_active(now, e.into())),
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

    /// Phase 4: checks the client's proof and signature. On success the pairing is over, the
    /// window closes (single use) and the caller must store [`Paired`] before answering
    /// `paired=1`; on failure the pairing is over too (answer `paired=0`).
    pub fn handle_clientpairingsecret(
        &mut self,
        now: Instant,
        from: IpAddr,
        uniqueid: &str,
        clientpairingsecret: &str,
    ) -> Result<Paired, PairingError> {
        let s = self.session_for(now, from, uniqueid, Phase::ClientPairingSecret)?;
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
                return Err(self.fail_active(
                    now,
                    PairingError::Malformed(QueryError::BadValue {
                        name: "clientpairingsecret",
                        reason: "wrong length",
                    }),
                ));
            }
            Err(e) => return Err(self.fail_active(now, e.into())),
        };
        let (secret, signature) = data.split_at(16);
        let expected = sha256(&[&server_challenge, s.client.signature(), secret]);
        let proof_ok = bool::from(expected.ct_eq(&client_hash));
        let signature_ok = s.client.verify_pairing_signature(secret, signature).is_ok();
        if !proof_ok {
            return Err(self.fail_active(now, PairingError::WrongPin));
        }
        if !signature_ok {
            return Err(self.fail_active(now, PairingError::BadSignature));
        }
        let Some(a) = self.active.take() else {
            return Err(PairingError::NoSession);
        };
        self.stats.paired += 1;
        self.backoff.record_success(a.info.address);
        if a.generation == self.generation {
            self.window.record_success();
        }
        self.armed_for = None;
        self.armed_name = None;
        let name = a
            .name
            .filter(|n| !n.trim().is_empty())
            .or_else(|| Some(a.info.device_name).filter(|d| !d.is_empty() && d != "roth"))
            .unwrap_or_else(|| "Moonlight client".to_owned());
        Ok(Paired {
            ticket: a.info.ticket,
            cert: a.client,
            name,
            uniqueid: a.info.uniqueid,
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

    /// A client written from the protocol description, the way Moonlight does it.
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

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(198, 51, 100, 7));
    const SEC: Duration = Duration::from_secs(1);

    fn machine() -> (Pairing, Instant) {
        let p = Pairing::new(Arc::new(fixture()), PairingConfig::default(), [9; 32]);
        (p, Instant::now())
    }

    /// A client certificate of its own (ECDSA P-256: quick to make), as phase-1 hex.
    fn other_cert() -> String {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let cert = rcgen::CertificateParams::new(vec!["stranger".into()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        hex_upper(cert.pem().as_bytes())
    }

    fn events(p: &mut Pairing) -> Vec<PairingEvent> {
        std::iter::from_fn(|| p.poll_event()).collect()
    }

    /// Phase 1 of `client` from `from`.
    fn phase1(p: &mut Pairing, now: Instant, from: IpAddr, client: &TestClient) -> Ticket {
        let (salt, cert) = client.phase1();
        p.handle_getservercert(now, from, UID, "roth", &salt, &cert)
            .unwrap()
    }

    /// Phases 2 and 3 of a pairing that has the PIN; returns the client's verdict.
    fn phases_2_3(
        p: &mut Pairing,
        now: Instant,
        from: IpAddr,
        client: &mut TestClient,
    ) -> Result<(), &'static str> {
        client.take_plaincert(fixture().cert_pem().as_bytes());
        let r2 = p
            .handle_clientchallenge(now, from, UID, &client.phase2())
            .unwrap();
        assert_eq!(r2.len(), 48);
        let (server_hash, resp) = client.phase3(&r2);
        let r3 = p.handle_serverchallengeresp(now, from, UID, &resp).unwrap();
        assert_eq!(r3.len(), 16 + 256);
        client.check_server(&server_hash, &r3)
    }

    /// Runs phases 1-3 from `A` with `client_pin` on the client and `host_pin` entered by
    /// the operator for the waiting client; returns the client's verdict after phase 3.
    fn run_to_phase3(
        p: &mut Pairing,
        now: Instant,
        client: &mut TestClient,
        host_pin: &str,
    ) -> Result<(), &'static str> {
        let ticket = phase1(p, now, A, client);
        assert_eq!(p.status(now).state(), "awaiting_pin");
        assert_eq!(
            p.handle_pin(now, host_pin, Some("Test TV"), None),
            Ok(PinArmed::Delivered(ticket))
        );
        assert_eq!(events(p), [PairingEvent::PinDelivered { ticket }]);
        phases_2_3(p, now, A, client)
    }

    #[test]
    fn full_pairing_with_the_right_pin() {
        let (mut p, now) = machine();
        let mut client = TestClient::new("4321");
        run_to_phase3(&mut p, now, &mut client, "4321").unwrap();
        assert_eq!(p.status(now).state(), "in_progress");
        let paired = p
            .handle_clientpairingsecret(now, A, UID, &client.phase4())
            .unwrap();
        assert_eq!(paired.name, "Test TV");
        assert_eq!(paired.cert, client.cert);
        let st = p.status(now);
        assert_eq!(st.state(), "idle");
        // A window pairs one client.
        assert_eq!(st.window.state, Err(Refusal::Used));
        assert_eq!(st.stats.paired, 1);
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
        // /unpair from another address does not touch it.
        assert!(!p.handle_unpair(now, B, UID));
        assert!(p.handle_unpair(now, A, UID));
        assert!(matches!(
            events(&mut p)[..],
            [PairingEvent::Failed {
                error: PairingError::Abandoned,
                ..
            }]
        ));
        let st = p.status(now);
        assert_eq!(st.state(), "idle");
        assert_eq!(st.stats.failed, 1);
        // The PIN was typed for that client: the window closed with its pairing.
        assert_eq!(st.window.state, Err(Refusal::Closed));
        // The address waits 1 s before its next phase 1.
        let (salt, cert) = client.phase1();
        assert_eq!(
            p.handle_getservercert(now, A, UID, "", &salt, &cert),
            Err(PairingError::Backoff {
                retry_after_secs: 1
            })
        );
        assert_eq!(p.status(now).stats.refused_backoff, 1);

        // A client that ignores its own check and sends phase 4 is refused by the host.
        let later = now + 2 * SEC;
        let mut client = TestClient::new("1111");
        let _ = run_to_phase3(&mut p, later, &mut client, "2222");
        assert_eq!(
            p.handle_clientpairingsecret(later, A, UID, &client.phase4()),
            Err(PairingError::WrongPin)
        );
        assert_eq!(p.status(later).state(), "idle");
        // Second failure from A: 2 s now.
        assert!(matches!(
            p.handle_getservercert(
                later + SEC,
                A,
                UID,
                "",
                &client.phase1().0,
                &client.phase1().1
            ),
            Err(PairingError::Backoff {
                retry_after_secs: 1
            })
        ));
        // Another address is not affected.
        phase1(&mut p, later, B, &TestClient::new("1111"));
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
            p.handle_clientpairingsecret(now, A, UID, &bad),
            Err(PairingError::BadSignature)
        );
    }

    /// Operator first: the armed window hands its PIN to each arriving client; three wrong
    /// PINs exhaust it, after which no guess gets the PIN at all, from any address, until the
    /// operator re-arms; then the right PIN pairs.
    #[test]
    fn wrong_pins_exhaust_the_window_until_the_operator_rearms() {
        let (mut p, t0) = machine();
        assert_eq!(p.handle_pin(t0, "4321", None, None), Ok(PinArmed::Armed));
        assert_eq!(p.status(t0).window.failures_left, 3);
        let mut now = t0;
        for (i, guess) in ["0000", "1111", "2222"].into_iter().enumerate() {
            // Each guess from its own address (backoff is per address; the budget is not).
            let from = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 0, i as u8 + 1));
            let mut attacker = TestClient::new(guess);
            let t = phase1(&mut p, now, from, &attacker);
            assert_eq!(events(&mut p), [PairingEvent::PinDelivered { ticket: t }]);
            assert_eq!(
                phases_2_3(&mut p, now, from, &mut attacker),
                Err("wrong PIN")
            );
            assert!(p.handle_unpair(now, from, UID));
            assert!(matches!(
                events(&mut p)[..],
                [PairingEvent::Failed {
                    error: PairingError::Abandoned,
                    ..
                }]
            ));
            now += SEC;
        }
        let st = p.status(now);
        assert_eq!(st.window.state, Err(Refusal::Exhausted));
        assert_eq!((st.stats.failed, st.stats.windows_exhausted), (3, 1));
        // A thousand more tries, from a thousand addresses: each refused at phase 1.
        let (salt, cert) = TestClient::new("3333").phase1();
        for i in 0..1000u32 {
            let from = IpAddr::V4(std::net::Ipv4Addr::from(0x0a01_0000 + i));
            assert_eq!(
                p.handle_getservercert(now, from, UID, "", &salt, &cert),
                Err(PairingError::WindowClosed(Refusal::Exhausted))
            );
        }
        assert!(
            !events(&mut p)
                .iter()
                .any(|e| matches!(e, PairingEvent::PinDelivered { .. })),
            "no PIN was handed out"
        );
        assert_eq!(p.status(now).stats.refused_closed, 1000);
        assert!(
            PairingError::WindowClosed(Refusal::Exhausted)
                .to_string()
                .contains("too many wrong PINs")
        );
        // The operator re-arms: the right PIN pairs (from an address with no failures).
        assert_eq!(
            p.handle_pin(now, "4321", Some("Den"), None),
            Ok(PinArmed::Armed)
        );
        let mut client = TestClient::new("4321");
        let t = phase1(&mut p, now, A, &client);
        assert_eq!(events(&mut p), [PairingEvent::PinDelivered { ticket: t }]);
        phases_2_3(&mut p, now, A, &mut client).unwrap();
        let paired = p
            .handle_clientpairingsecret(now, A, UID, &client.phase4())
            .unwrap();
        assert_eq!(paired.name, "Den");
        assert_eq!(p.status(now).window.state, Err(Refusal::Used));
    }

    /// One address cannot spend the budget in a burst: after its first wrong PIN it waits
    /// 1 s, then 2 s, then 4 s.
    #[test]
    fn a_failing_address_backs_off() {
        let (mut p, t0) = machine();
        p.handle_pin(t0, "4321", None, None).unwrap();
        let mut now = t0;
        for (i, wait) in [1u64, 2].into_iter().enumerate() {
            let mut attacker = TestClient::new(["0000", "1111"][i]);
            phase1(&mut p, now, A, &attacker);
            let _ = phases_2_3(&mut p, now, A, &mut attacker);
            assert!(p.handle_unpair(now, A, UID));
            let (salt, cert) = attacker.phase1();
            assert_eq!(
                p.handle_getservercert(now, A, UID, "", &salt, &cert),
                Err(PairingError::Backoff {
                    retry_after_secs: wait
                })
            );
            now += Duration::from_secs(wait);
        }
        // The budget still has one try left.
        assert_eq!(p.status(now).window.failures_left, 1);
    }

    #[test]
    fn a_strangers_waiting_pairing_does_not_block_the_real_one() {
        let (mut p, now) = machine();
        // The stranger arrives first, with the same (constant) uniqueid Moonlight sends.
        let stranger_cert = hex_upper(include_bytes!("../../tests/fixtures/client2-cert.pem"));
        let stranger = p
            .handle_getservercert(now, B, UID, "roth", &hex_lower(&[1; 16]), &stranger_cert)
            .unwrap();
        let mut client = TestClient::new("5555");
        let real = phase1(&mut p, now + SEC, A, &client);
        let st = p.status(now + 2 * SEC);
        assert_eq!(st.waiting.len(), 2);
        assert_eq!(st.waiting[0].address, B);
        assert_eq!(st.waiting[0].age_at(now + 2 * SEC), 2 * SEC);
        assert_eq!(st.waiting[1].fingerprint, client.cert.fingerprint());
        // Which one gets the PIN is the operator's choice.
        assert_eq!(
            p.handle_pin(now, "5555", None, None),
            Err(PairingError::Ambiguous { waiting: 2 })
        );
        assert_eq!(
            p.handle_pin(now, "5555", None, Some(Ticket(999))),
            Err(PairingError::NoSuchPairing)
        );
        assert_eq!(
            p.handle_pin(now, "5555", None, Some(real)),
            Ok(PinArmed::Delivered(real))
        );
        events(&mut p);
        // The stranger cannot drive or end the real pairing, nor get a second PIN.
        client.take_plaincert(fixture().cert_pem().as_bytes());
        assert_eq!(
            p.handle_clientchallenge(now, B, UID, &client.phase2()),
            Err(PairingError::NoSession)
        );
        assert!(!p.handle_unpair(now, B, UID));
        assert_eq!(
            p.handle_pin(now, "0000", None, Some(stranger)),
            Err(PairingError::InProgress)
        );
        phases_2_3(&mut p, now, A, &mut client).unwrap();
        p.handle_clientpairingsecret(now, A, UID, &client.phase4())
            .unwrap();
        // The operator cancels the stranger.
        assert!(p.cancel(now, stranger));
        assert_eq!(
            events(&mut p),
            [PairingEvent::Failed {
                ticket: stranger,
                error: PairingError::CancelledByOperator
            }]
        );
        let st = p.status(now);
        assert_eq!((st.state(), st.stats.failed), ("idle", 0));
        assert!(!p.cancel(now, stranger));
    }

    /// The failure events in `evs`, as (ticket, error).
    fn failures(evs: &[PairingEvent]) -> Vec<(Ticket, PairingError)> {
        evs.iter()
            .filter_map(|e| match e {
                PairingEvent::Failed { ticket, error } => Some((*ticket, error.clone())),
                _ => None,
            })
            .collect()
    }

    fn ip4(a: u8, b: u8) -> IpAddr {
        IpAddr::V4(std::net::Ipv4Addr::new(203, 0, a, b))
    }

    #[test]
    fn waiting_pairings_are_bounded_and_expire() {
        let (mut p, now) = machine();
        let salt = hex_lower(&[7; 16]);
        // Four from one address; a fifth from there evicts that address's oldest.
        let mut tickets = Vec::new();
        for _ in 0..5 {
            tickets.push(
                p.handle_getservercert(now, A, UID, "", &salt, &other_cert())
                    .unwrap(),
            );
        }
        assert_eq!(
            failures(&events(&mut p)),
            [(tickets[0], PairingError::Replaced)]
        );
        // An IPv6 /64 counts as one address: its fifth evicts its own oldest too.
        let mut v6 = Vec::new();
        for i in 0..5u16 {
            let ip = IpAddr::V6(std::net::Ipv6Addr::new(0x2001, 0xdb8, 0, 1, 0, 0, 0, i + 1));
            v6.push(
                p.handle_getservercert(now, ip, UID, "", &salt, &other_cert())
                    .unwrap(),
            );
        }
        assert_eq!(failures(&events(&mut p)), [(v6[0], PairingError::Replaced)]);
        let st = p.status(now);
        assert_eq!(st.waiting.len(), 8);
        // Eight in all: a newcomer from B evicts the oldest of the busiest addresses (A and
        // the /64 hold 4 each; A's oldest waits longest).
        p.handle_getservercert(now, B, UID, "", &salt, &other_cert())
            .unwrap();
        assert_eq!(
            failures(&events(&mut p)),
            [(tickets[1], PairingError::Replaced)]
        );
        let st = p.status(now).stats;
        assert_eq!((st.evicted, st.ended_waiting, st.refused_busy), (3, 3, 0));
        assert_eq!(st.failed, 0, "an eviction is not a wrong PIN");
        assert!(PairingError::Replaced.to_string().contains("replaced"));
        // The same certificate starting over replaces its own waiting pairing.
        let client = TestClient::new("1234");
        p.cancel(now, tickets[2]);
        events(&mut p);
        let first = phase1(&mut p, now, B, &client);
        let second = phase1(&mut p, now, B, &client);
        assert_eq!(
            events(&mut p),
            [PairingEvent::Failed {
                ticket: first,
                error: PairingError::Superseded
            }]
        );
        // Unanswered, they end after the PIN timeout, reported once each; room again.
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(120)));
        let later = now + Duration::from_secs(120);
        assert_eq!(p.status(later).waiting.len(), 0);
        let ended = events(&mut p);
        assert_eq!(ended.len(), 8);
        assert!(ended.contains(&PairingEvent::Failed {
            ticket: second,
            error: PairingError::TimedOut
        }));
        p.handle_getservercert(later, B, UID, "", &salt, &other_cert())
            .unwrap();
        assert_eq!(p.status(later).stats.evicted, 3);
    }

    /// Point 5 against a flood: strangers at two addresses fill the waiting list (4 each) and
    /// keep sending phase 1. A real client from a fresh address still gets in, is never the
    /// one evicted, and pairs when the operator gives it the PIN with `--to`; the strangers'
    /// flood does not touch the pairing that holds the PIN.
    #[test]
    fn strangers_at_two_addresses_cannot_keep_the_real_client_out() {
        let (mut p, t0) = machine();
        let salt = hex_lower(&[3; 16]);
        let (s1, s2) = (ip4(1, 1), ip4(2, 2));
        let mut now = t0;
        let flood = |p: &mut Pairing, now: Instant, n: usize| {
            for i in 0..n {
                let from = if i % 2 == 0 { s1 } else { s2 };
                p.handle_getservercert(now, from, UID, "roth", &salt, &other_cert())
                    .unwrap();
            }
        };
        flood(&mut p, now, 8);
        assert_eq!(p.status(now).waiting.len(), 8);
        events(&mut p);
        now += SEC;
        let mut client = TestClient::new("2468");
        let real = phase1(&mut p, now, A, &client);
        assert_eq!(failures(&events(&mut p)).len(), 1, "one stranger made room");
        // Forty more from the strangers: each evicts one of theirs, never the real client.
        now += SEC;
        flood(&mut p, now, 40);
        let evs = events(&mut p);
        assert_eq!(failures(&evs).len(), 40);
        assert!(
            failures(&evs)
                .iter()
                .all(|(t, e)| *t != real && *e == PairingError::Replaced)
        );
        let st = p.status(now);
        assert_eq!(st.waiting.len(), 8);
        assert_eq!(st.waiting.iter().filter(|w| w.ticket == real).count(), 1);
        assert_eq!(st.stats.evicted, 41);
        // The operator sees who waits and gives the PIN to the real client.
        assert_eq!(
            p.handle_pin(now, "2468", Some("Living room"), None),
            Err(PairingError::Ambiguous { waiting: 8 })
        );
        assert_eq!(
            p.handle_pin(now, "2468", Some("Living room"), Some(real)),
            Ok(PinArmed::Delivered(real))
        );
        assert_eq!(
            events(&mut p),
            [PairingEvent::PinDelivered { ticket: real }]
        );
        // More flooding while it pairs: the active pairing is not waiting, not evicted.
        flood(&mut p, now, 40);
        assert!(failures(&events(&mut p)).iter().all(|(t, _)| *t != real));
        phases_2_3(&mut p, now, A, &mut client).unwrap();
        flood(&mut p, now, 10);
        let paired = p
            .handle_clientpairingsecret(now, A, UID, &client.phase4())
            .unwrap();
        assert_eq!((paired.ticket, paired.name.as_str()), (real, "Living room"));
        assert_eq!(paired.cert, client.cert);
        let st = p.status(now).stats;
        assert_eq!((st.paired, st.failed, st.refused_busy), (1, 0, 0));
        // 1 + 40 + (40 - 1: the PIN took the real client out of the list) + 10.
        assert_eq!(st.evicted, 90);
    }

    /// Strangers at eight addresses, one slot each: the real client from a ninth address
    /// still gets in (the oldest stranger goes). It lasts until it is the oldest of eight
    /// single-slot addresses; the operator gives it the PIN before then and it pairs.
    #[test]
    fn strangers_at_eight_addresses_cannot_keep_the_real_client_out() {
        let (mut p, t0) = machine();
        let salt = hex_lower(&[4; 16]);
        let strangers: Vec<IpAddr> = (1..=8).map(|i| ip4(8, i)).collect();
        let mut first = Vec::new();
        for (i, &from) in strangers.iter().enumerate() {
            let at = t0 + Duration::from_millis(i as u64);
            first.push(
                p.handle_getservercert(at, from, UID, "roth", &salt, &other_cert())
                    .unwrap(),
            );
        }
        events(&mut p);
        let mut now = t0 + SEC;
        let mut client = TestClient::new("1357");
        let real = phase1(&mut p, now, A, &client);
        assert_eq!(
            failures(&events(&mut p)),
            [(first[0], PairingError::Replaced)],
            "every address holds one slot: the oldest overall goes"
        );
        // Seven newcomers from the strangers' addresses evict the seven older strangers.
        for (i, &from) in strangers.iter().take(7).enumerate() {
            now += SEC;
            p.handle_getservercert(now, from, UID, "roth", &salt, &other_cert())
                .unwrap();
            assert_eq!(
                failures(&events(&mut p)),
                [(first[i + 1], PairingError::Replaced)]
            );
        }
        assert!(p.status(now).waiting.iter().any(|w| w.ticket == real));
        // The operator arms the PIN for it; then the flood goes on without touching it.
        assert_eq!(
            p.handle_pin(now, "1357", None, Some(real)),
            Ok(PinArmed::Delivered(real))
        );
        events(&mut p);
        for round in 0..3 {
            for &from in &strangers {
                now += SEC;
                p.handle_getservercert(now, from, UID, "roth", &salt, &other_cert())
                    .unwrap();
            }
            assert!(
                failures(&events(&mut p)).iter().all(|(t, _)| *t != real),
                "round {round}"
            );
        }
        assert_eq!(p.status(now).active.map(|a| a.ticket), Some(real));
        phases_2_3(&mut p, now, A, &mut client).unwrap();
        let paired = p
            .handle_clientpairingsecret(now, A, UID, &client.phase4())
            .unwrap();
        assert_eq!(paired.ticket, real);
        let st = p.status(now).stats;
        // The first newcomer after the PIN took the real client out of the list found room.
        assert_eq!((st.paired, st.evicted), (1, 1 + 7 + 23));
    }

    /// With a limit configured to 0, nobody may wait: phase 1 is refused as busy.
    #[test]
    fn no_room_at_all_is_busy() {
        let config = PairingConfig {
            max_waiting: 0,
            ..PairingConfig::default()
        };
        let mut p = Pairing::new(Arc::new(fixture()), config, [9; 32]);
        let (salt, cert) = TestClient::new("1234").phase1();
        assert_eq!(
            p.handle_getservercert(Instant::now(), A, UID, "", &salt, &cert),
            Err(PairingError::Busy)
        );
        assert_eq!(p.stats().refused_busy, 1);
    }

    #[test]
    fn pin_rules_and_timeouts() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        let t = phase1(&mut p, now, A, &client);
        for bad in ["", "123", "12345", "12a4", "１２３４"] {
            assert_eq!(
                p.handle_pin(now, bad, None, None),
                Err(PairingError::InvalidPin),
                "{bad}"
            );
        }
        assert_eq!(p.poll_timeout(), Some(now + Duration::from_secs(120)));
        let later = now + Duration::from_secs(121);
        // Nobody waits any more: the PIN arms the window for the next client.
        assert_eq!(p.handle_pin(later, "1234", None, None), Ok(PinArmed::Armed));
        assert_eq!(
            p.poll_event(),
            Some(PairingEvent::Failed {
                ticket: t,
                error: PairingError::TimedOut
            })
        );
        // abort() of a ticket that is gone does nothing.
        assert!(!p.abort(t, PairingError::Cancelled));
        // The armed window expires after its lifetime.
        assert_eq!(p.poll_timeout(), Some(later + Duration::from_secs(120)));
        let st = p.status(later + Duration::from_secs(120));
        assert_eq!(st.window.state, Err(Refusal::Expired));
        // A client that got the PIN and went silent (offline guessing) counts as a failure.
        let mut now = later + Duration::from_secs(200);
        p.handle_pin(now, "1234", None, None).unwrap();
        phase1(&mut p, now, A, &client);
        now += Duration::from_secs(31);
        let st = p.status(now);
        assert_eq!((st.stats.failed, st.window.failures_left), (1, 2));
        // The operator can close the window.
        p.close_window();
        assert_eq!(p.status(now).window.state, Err(Refusal::Closed));
    }

    #[test]
    fn an_exhausted_window_closed_by_the_operator_lets_clients_wait_again() {
        let (mut p, t0) = machine();
        p.handle_pin(t0, "9999", None, None).unwrap();
        for i in 0..3u8 {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(10, 0, 1, i));
            let mut c = TestClient::new("0000");
            phase1(&mut p, t0, from, &c);
            let _ = phases_2_3(&mut p, t0, from, &mut c);
            assert!(p.handle_unpair(t0, from, UID));
        }
        let c = TestClient::new("1234");
        let (salt, cert) = c.phase1();
        assert!(matches!(
            p.handle_getservercert(t0, A, UID, "", &salt, &cert),
            Err(PairingError::WindowClosed(_))
        ));
        p.close_window();
        events(&mut p);
        let t = phase1(&mut p, t0, A, &c);
        // It waits for the operator; no PIN is handed out by itself.
        assert!(
            events(&mut p)
                .iter()
                .all(|e| !matches!(e, PairingEvent::PinDelivered { .. }))
        );
        assert_eq!(p.status(t0).waiting[0].ticket, t);
    }

    #[test]
    fn phases_out_of_order_end_the_pairing() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        assert_eq!(
            p.handle_clientchallenge(now, A, UID, &client.phase2()),
            Err(PairingError::NoSession)
        );
        phase1(&mut p, now, A, &client);
        p.handle_pin(now, "1234", None, None).unwrap();
        // Another uniqueid is refused without touching the pairing.
        assert_eq!(
            p.handle_serverchallengeresp(now, A, "intruder", &"00".repeat(32)),
            Err(PairingError::NoSession)
        );
        assert_eq!(p.status(now).state(), "in_progress");
        assert_eq!(
            p.handle_serverchallengeresp(now, A, UID, &"00".repeat(32)),
            Err(PairingError::OutOfOrder {
                expected: Phase::ClientChallenge,
                got: Phase::ServerChallengeResp
            })
        );
        assert_eq!(p.status(now).state(), "idle");
    }

    #[test]
    fn malformed_fields() {
        let (mut p, now) = machine();
        let client = TestClient::new("1234");
        let (salt, cert) = client.phase1();
        assert!(matches!(
            p.handle_getservercert(now, A, UID, "", "00", &cert),
            Err(PairingError::Malformed(_))
        ));
        assert!(matches!(
            p.handle_getservercert(now, A, UID, "", &salt, "zz"),
            Err(PairingError::Malformed(_))
        ));
        assert!(matches!(
            p.handle_getservercert(now, A, UID, "", &salt, &hex_upper(b"not a cert")),
            Err(PairingError::BadCertificate(_))
        ));
        assert_eq!(p.status(now).stats.refused_malformed, 3);
        p.handle_getservercert(now, A, UID, "", &salt, &cert)
            .unwrap();
        p.handle_pin(now, "1234", None, None).unwrap();
        assert!(matches!(
            p.handle_clientchallenge(now, A, UID, "0011"),
            Err(PairingError::Malformed(_))
        ));
        assert_eq!(p.status(now).state(), "idle");
    }
}
