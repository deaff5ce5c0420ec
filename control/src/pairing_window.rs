//! The operator's pairing window and per-address backoff, shared by both protocols (decide).
//!
//! A PIN belongs to the operator, not to a connection. The operator *arms* a window with one
//! PIN (`punktfunk pin …`); while it is open, any pairing attempt is checked against that PIN.
//! The window closes when
//!
//! * its lifetime ends (`Expired`),
//! * a pairing succeeds — a window pairs one client (`Used`),
//! * [`WindowConfig::failure_budget`] wrong PINs were tried (`Exhausted`), or
//! * the operator closes it (`Closed`).
//!
//! A closed window stays closed until the operator arms it again: a stranger cannot re-open
//! it, so guessing a PIN costs one operator action per [`WindowConfig::failure_budget`]
//! guesses instead of nothing. On top of that, [`AddressBackoff`] makes an address that just
//! failed wait 1 s, 2 s, 4 s … (at most [`BackoffConfig::max`]) before it may start another
//! pairing, so one stranger cannot use up the budget of a window the operator armed for
//! somebody else in a burst.
//!
//! ```text
//!            arm(pin)                      record_failure() × budget
//!   Closed ───────────► Open ────────────────────────────────────────► Exhausted
//!     ▲                  │ │ record_success()                              │
//!     │   close()        │ └──────────────────► Used                       │
//!     └──────────────────┘ lifetime over ─────► Expired     arm(pin) re-opens any of them
//! ```
//!
//! Pure: time comes in as `now`, nothing here reads a clock, opens a socket or logs.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use punktfunk_control::pairing_window::{PairingWindow, Refusal, WindowConfig};
//!
//! let now = Instant::now();
//! let mut window = PairingWindow::new(WindowConfig::default());
//! assert_eq!(window.pin(now), Err(Refusal::NotArmed));
//! window.arm(now, "4821".to_string(), Duration::from_secs(120));
//! assert_eq!(window.pin(now), Ok(&"4821".to_string()));
//! for _ in 0..3 {
//!     window.record_failure(now);
//! }
//! assert_eq!(window.pin(now), Err(Refusal::Exhausted));
//! ```

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// How a [`PairingWindow`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowConfig {
    /// Wrong PINs a window tolerates; the last one closes it.
    pub failure_budget: u32,
}

impl Default for WindowConfig {
    /// Three wrong PINs per window.
    fn default() -> Self {
        Self { failure_budget: 3 }
    }
}

/// Why a pairing attempt cannot use the window right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The operator has not armed a window since the host started.
    NotArmed,
    /// The operator closed the window.
    Closed,
    /// The window's lifetime ended before a client paired.
    Expired,
    /// A client paired; the window pairs one client.
    Used,
    /// The failure budget was spent on wrong PINs.
    Exhausted,
}

impl Refusal {
    /// A short reason for a log line or a client-facing message.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotArmed => "pairing closed: no PIN armed by the operator",
            Self::Closed => "pairing closed by the operator",
            Self::Expired => "pairing closed: the PIN expired",
            Self::Used => "pairing closed: the PIN was used",
            Self::Exhausted => "pairing closed: too many wrong PINs",
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator sees of a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowStatus {
    /// `Ok(remaining lifetime)` while open, else why it is closed.
    pub state: Result<Duration, Refusal>,
    /// Wrong PINs tried since the window was last armed.
    pub failures: u32,
    /// Wrong PINs still allowed before it closes (0 when closed).
    pub failures_left: u32,
}

/// The operator-armed PIN of one protocol (see the module docs). `P` is the protocol's PIN type.
#[derive(Debug, Clone)]
pub struct PairingWindow<P> {
    config: WindowConfig,
    pin: Option<P>,
    expires_at: Option<Instant>,
    closed: Option<Refusal>,
    failures: u32,
}

impl<P> PairingWindow<P> {
    /// A window that is not armed yet.
    pub fn new(config: WindowConfig) -> Self {
        Self {
            config: WindowConfig {
                failure_budget: config.failure_budget.max(1),
            },
            pin: None,
            expires_at: None,
            closed: Some(Refusal::NotArmed),
            failures: 0,
        }
    }

    /// The operator arms the window with `pin` for `lifetime`, replacing any earlier PIN and
    /// resetting the failure count.
    pub fn arm(&mut self, now: Instant, pin: P, lifetime: Duration) {
        self.pin = Some(pin);
        self.expires_at = Some(now + lifetime);
        self.closed = None;
        self.failures = 0;
    }

    /// The operator closes the window; an armed PIN is forgotten.
    pub fn close(&mut self) {
        self.shut(Refusal::Closed);
    }

    /// The armed PIN, or why there is none usable at `now`.
    pub fn pin(&mut self, now: Instant) -> Result<&P, Refusal> {
        self.expire(now);
        if let Some(why) = self.closed {
            return Err(why);
        }
        self.pin.as_ref().ok_or(Refusal::NotArmed)
    }

    /// Whether a pairing attempt may use the window at `now`.
    pub fn is_open(&mut self, now: Instant) -> bool {
        self.pin(now).is_ok()
    }

    /// A wrong PIN was tried against this window. Returns `true` when this failure closed it.
    /// A failure while the window is already closed changes nothing (the attempt was against
    /// a PIN that is no longer valid) and returns `false`.
    pub fn record_failure(&mut self, now: Instant) -> bool {
        self.expire(now);
        if self.closed.is_some() {
            return false;
        }
        self.failures = self.failures.saturating_add(1);
        if self.failures >= self.config.failure_budget {
            self.shut(Refusal::Exhausted);
            return true;
        }
        false
    }

    /// A client paired with the armed PIN: the window closes.
    pub fn record_success(&mut self) {
        self.shut(Refusal::Used);
    }

    /// When the open window expires, for a driver's timer (`None` when closed).
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.closed.is_some() {
            None
        } else {
            self.expires_at
        }
    }

    /// What the operator sees at `now`.
    pub fn status(&mut self, now: Instant) -> WindowStatus {
        self.expire(now);
        let state = match (self.closed, self.expires_at) {
            (Some(why), _) => Err(why),
            (None, Some(at)) => Ok(at.saturating_duration_since(now)),
            (None, None) => Err(Refusal::NotArmed),
        };
        let failures_left = if state.is_ok() {
            self.config.failure_budget.saturating_sub(self.failures)
        } else {
            0
        };
        WindowStatus {
            state,
            failures: self.failures,
            failures_left,
        }
    }

    fn expire(&mut self, now: Instant) {
        if self.closed.is_none() && self.expires_at.is_some_and(|at| now >= at) {
            self.shut(Refusal::Expired);
        }
    }

    fn shut(&mut self, why: Refusal) {
        self.pin = None;
        self.expires_at = None;
        self.closed = Some(why);
    }
}

/// How [`AddressBackoff`] behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Wait after the first failure; doubles with each further failure.
    pub first: Duration,
    /// The longest wait.
    pub max: Duration,
    /// Addresses remembered at most; beyond it the entry whose wait ends first is forgotten.
    pub capacity: usize,
    /// An address with no failure for this long starts again from [`Self::first`].
    pub forget_after: Duration,
}

impl Default for BackoffConfig {
    /// 1 s doubling to 5 min, 4096 addresses, forgotten after an hour without failures.
    fn default() -> Self {
        Self {
            first: Duration::from_secs(1),
            max: Duration::from_secs(300),
            capacity: 4096,
            forget_after: Duration::from_secs(3600),
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    failures: u32,
    last_failure: Instant,
    blocked_until: Instant,
}

/// Per-address exponential backoff after failed pairings (see the module docs).
///
/// IPv4 addresses are keyed as they are, IPv6 addresses by their /64 prefix (one host usually
/// owns a whole /64, so keying by full address would let it rotate past the backoff). An
/// IPv4-mapped IPv6 address counts as its IPv4 address.
#[derive(Debug, Clone)]
pub struct AddressBackoff {
    config: BackoffConfig,
    entries: HashMap<IpAddr, Entry>,
}

impl Default for AddressBackoff {
    fn default() -> Self {
        Self::new(BackoffConfig::default())
    }
}

impl AddressBackoff {
    /// An empty table.
    pub fn new(config: BackoffConfig) -> Self {
        Self {
            config: BackoffConfig {
                capacity: config.capacity.max(1),
                ..config
            },
            entries: HashMap::new(),
        }
    }

    /// `Ok` when `ip` may try to pair at `now`, else `Err(how long it must still wait)`.
    pub fn check(&self, now: Instant, ip: IpAddr) -> Result<(), Duration> {
        match self.entries.get(&key(ip)) {
            Some(e) if e.blocked_until > now => Err(e.blocked_until - now),
            _ => Ok(()),
        }
    }

    /// `ip` failed a pairing at `now`: it waits `first × 2^(failures-1)`, at most `max`.
    /// Returns that wait.
    pub fn record_failure(&mut self, now: Instant, ip: IpAddr) -> Duration {
        let k = key(ip);
        if !self.entries.contains_key(&k) && self.entries.len() >= self.config.capacity {
            self.evict(now);
        }
        let forget_after = self.config.forget_after;
        let entry = self.entries.entry(k).or_insert(Entry {
            failures: 0,
            last_failure: now,
            blocked_until: now,
        });
        if now.saturating_duration_since(entry.last_failure) >= forget_after {
            entry.failures = 0;
        }
        entry.failures = entry.failures.saturating_add(1);
        entry.last_failure = now;
        let shift = entry.failures.saturating_sub(1).min(31);
        let wait = self
            .config
            .first
            .saturating_mul(1u32 << shift)
            .min(self.config.max);
        entry.blocked_until = now + wait;
        wait
    }

    /// `ip` paired: its record is cleared.
    pub fn record_success(&mut self, ip: IpAddr) {
        self.entries.remove(&key(ip));
    }

    /// Addresses currently remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no address is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Makes room for one entry: forgets entries past `forget_after` and, if still full, the
    /// one whose wait ends first.
    fn evict(&mut self, now: Instant) {
        let forget_after = self.config.forget_after;
        self.entries
            .retain(|_, e| now.saturating_duration_since(e.last_failure) < forget_after);
        if self.entries.len() >= self.config.capacity
            && let Some(k) = self
                .entries
                .iter()
                .min_by_key(|(_, e)| e.blocked_until)
                .map(|(k, _)| *k)
        {
            self.entries.remove(&k);
        }
    }
}

/// The backoff key of an address: IPv4 as is (also when IPv4-mapped), IPv6 by its /64.
fn key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let s = v6.segments();
                IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const MIN: Duration = Duration::from_secs(60);

    fn armed(now: Instant) -> PairingWindow<&'static str> {
        let mut w = PairingWindow::new(WindowConfig::default());
        w.arm(now, "1234", 2 * MIN);
        w
    }

    #[test]
    fn not_armed_until_the_operator_arms() {
        let now = Instant::now();
        let mut w: PairingWindow<&str> = PairingWindow::new(WindowConfig::default());
        assert_eq!(w.pin(now), Err(Refusal::NotArmed));
        assert!(
            !w.record_failure(now),
            "a failure against no window closes nothing"
        );
        assert_eq!(w.status(now).failures, 0);
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn budget_closes_the_window_until_rearmed() {
        let now = Instant::now();
        let mut w = armed(now);
        assert!(!w.record_failure(now));
        assert!(!w.record_failure(now));
        assert_eq!(w.status(now).failures_left, 1);
        assert!(
            w.record_failure(now),
            "the third wrong PIN closes the window"
        );
        assert_eq!(w.pin(now), Err(Refusal::Exhausted));
        // Many more guesses change nothing and never re-open it.
        for _ in 0..1000 {
            assert!(!w.record_failure(now));
        }
        assert_eq!(w.pin(now + MIN), Err(Refusal::Exhausted));
        // The operator re-arms: fresh budget.
        w.arm(now + MIN, "5678", 2 * MIN);
        assert_eq!(w.pin(now + MIN), Ok(&"5678"));
        assert_eq!(w.status(now + MIN).failures_left, 3);
    }

    #[test]
    fn expires_after_its_lifetime() {
        let now = Instant::now();
        let mut w = armed(now);
        assert_eq!(w.poll_timeout(), Some(now + 2 * MIN));
        assert_eq!(w.status(now + MIN).state, Ok(MIN));
        assert!(w.is_open(now + 2 * MIN - Duration::from_millis(1)));
        assert_eq!(w.pin(now + 2 * MIN), Err(Refusal::Expired));
        assert_eq!(w.poll_timeout(), None);
    }

    #[test]
    fn success_and_close_end_the_window() {
        let now = Instant::now();
        let mut w = armed(now);
        w.record_success();
        assert_eq!(w.pin(now), Err(Refusal::Used));
        let mut w = armed(now);
        w.close();
        assert_eq!(w.pin(now), Err(Refusal::Closed));
        assert_eq!(w.status(now).failures_left, 0);
    }

    #[test]
    fn a_zero_budget_still_allows_one_try() {
        let now = Instant::now();
        let mut w = PairingWindow::new(WindowConfig { failure_budget: 0 });
        w.arm(now, 1u32, MIN);
        assert!(w.is_open(now));
        assert!(w.record_failure(now));
    }

    #[test]
    fn backoff_doubles_to_its_cap() {
        let t0 = Instant::now();
        let mut b = AddressBackoff::default();
        let ip = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(b.check(t0, ip), Ok(()));
        let waits: Vec<u64> = (0..12)
            .map(|_| b.record_failure(t0, ip).as_secs())
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 64, 128, 256, 300, 300, 300]);
        assert_eq!(b.check(t0, ip), Err(Duration::from_secs(300)));
        assert_eq!(b.check(t0 + Duration::from_secs(300), ip), Ok(()));
        // Another address is not affected.
        assert_eq!(b.check(t0, IpAddr::V4(Ipv4Addr::new(192, 0, 2, 8))), Ok(()));
        b.record_success(ip);
        assert_eq!(b.check(t0, ip), Ok(()));
        assert!(b.is_empty());
    }

    #[test]
    fn backoff_forgets_old_failures() {
        let t0 = Instant::now();
        let mut b = AddressBackoff::default();
        let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
        for _ in 0..5 {
            b.record_failure(t0, ip);
        }
        let later = t0 + Duration::from_secs(3600);
        assert_eq!(b.record_failure(later, ip), Duration::from_secs(1));
    }

    #[test]
    fn ipv6_is_keyed_by_prefix_and_mapped_v4_as_v4() {
        let t0 = Instant::now();
        let mut b = AddressBackoff::default();
        let a: Ipv6Addr = "2001:db8:1:2::1".parse().unwrap();
        let same_64: Ipv6Addr = "2001:db8:1:2:ffff::9".parse().unwrap();
        let other_64: Ipv6Addr = "2001:db8:1:3::1".parse().unwrap();
        b.record_failure(t0, IpAddr::V6(a));
        assert!(b.check(t0, IpAddr::V6(same_64)).is_err());
        assert!(b.check(t0, IpAddr::V6(other_64)).is_ok());
        let v4 = Ipv4Addr::new(198, 51, 100, 1);
        b.record_failure(t0, IpAddr::V4(v4));
        assert!(b.check(t0, IpAddr::V6(v4.to_ipv6_mapped())).is_err());
    }

    #[test]
    fn backoff_table_is_bounded() {
        let t0 = Instant::now();
        let mut b = AddressBackoff::new(BackoffConfig {
            capacity: 16,
            ..BackoffConfig::default()
        });
        for i in 0..10_000u32 {
            b.record_failure(t0, IpAddr::V4(Ipv4Addr::from(i)));
            assert!(b.len() <= 16);
        }
        // The newest address is remembered.
        assert!(b.check(t0, IpAddr::V4(Ipv4Addr::from(9_999u32))).is_err());
    }
}
