//! Connection budgets for everything that listens on TCP (decide): which connection to admit,
//! which half-open one to evict to make room, when a connection's time is up, and when to
//! write a one-line summary of what was refused. No sockets, clocks or threads here: time
//! comes in as `now`, and the servers ([`crate::host::listen`] for nvhttp and the management
//! API, `stream::session` for RTSP) do the I/O.
//!
//! ```text
//!  accept ─► ConnTable::handle_accept(now)
//!             ├─ under the limit ──────────────► Admit { id, deadline }
//!             ├─ full, a half-open one exists ──► AdmitEvicting { .., evicted }  (oldest first)
//!             └─ full, every one is serving ───► Refuse
//!  request complete ─► handle_request(id)   (no longer evictable; the service bounds itself)
//!  response started ─► handle_response(id, now) ─► new deadline: now + response_deadline
//!  deadline passed  ─► the server closes it, handle_closed(id, Close::TimedOut)
//!  every event/tick ─► poll_summary(now) ─► at most one line per listener per interval
//! ```
//!
//! A connection is *half-open* from accept until its first request is complete (TLS
//! handshake, headers and body): that is the state a flood can hold for free, so it is the
//! state that gets a total deadline (not one per read: a client dripping one byte a second
//! is cut off at the deadline all the same) and that gets evicted when the table is full.
//! Eviction does not look at the peer's address: floods from the real client's own address
//! (or a NAT it shares) must not lock it out, so the newest connection always gets room
//! and the oldest half-open one pays.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use punktfunk_control::limits::{Admission, ConnTable, LimitsConfig};
//!
//! let mut t = ConnTable::new(LimitsConfig { max_connections: 1, ..LimitsConfig::default() });
//! let now = Instant::now();
//! let Admission::Admit { id: first, .. } = t.handle_accept(now) else { unreachable!() };
//! let Admission::AdmitEvicting { evicted, .. } = t.handle_accept(now) else { unreachable!() };
//! assert_eq!(evicted, first);
//! assert_eq!(t.stats().evicted, 1);
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Limits of one listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitsConfig {
    /// Most connections open at once (half-open and serving together).
    pub max_connections: usize,
    /// Total time from accept until the first request is complete (TLS handshake, headers,
    /// body), however the bytes trickle in.
    pub request_deadline: Duration,
    /// Total time to write a response once it is ready.
    pub response_deadline: Duration,
    /// At most one summary line per this interval.
    pub summary_interval: Duration,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        Self {
            max_connections: 256,
            request_deadline: Duration::from_secs(5),
            response_deadline: Duration::from_secs(10),
            summary_interval: Duration::from_secs(10),
        }
    }
}

/// A connection's number in its table (never reused).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// What to do with a connection just accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Serve it; it must complete its request before `deadline`.
    Admit {
        /// Its id.
        id: ConnId,
        /// End of its request phase.
        deadline: Instant,
    },
    /// Serve it, and close `evicted` (the oldest half-open connection) to make room.
    AdmitEvicting {
        /// Its id.
        id: ConnId,
        /// End of its request phase.
        deadline: Instant,
        /// The connection to close now; it is already gone from the table.
        evicted: ConnId,
    },
    /// Close it at once: the table is full of connections that are being served.
    Refuse,
}

/// How a connection ended, as the server saw it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// Served (or the client went away): nothing to count.
    Done,
    /// Its request or response deadline passed.
    TimedOut,
    /// It sent something that is not a request of this protocol (or failed its TLS
    /// handshake).
    Malformed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No complete request yet: evictable, under the request deadline.
    HalfOpen,
    /// Request complete, being served.
    Serving,
}

#[derive(Debug)]
struct Entry {
    id: ConnId,
    phase: Phase,
}

/// Counters of one listener since start (the management API shows them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ConnStats {
    /// Connections accepted and served (including ones later evicted).
    pub accepted: u64,
    /// Connections open now.
    pub open: u64,
    /// Half-open connections closed to make room for a new one.
    pub evicted: u64,
    /// Connections closed at once because every slot was serving a request.
    pub refused: u64,
    /// Connections closed at their request or response deadline.
    pub timed_out: u64,
    /// Connections that sent garbage or failed their TLS handshake.
    pub malformed: u64,
}

/// A summary of what a listener turned away in the last interval (only non-zero intervals
/// make one). `Display` writes the log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// The listener's name.
    pub listener: &'static str,
    /// Evicted in the interval.
    pub evicted: u64,
    /// Refused in the interval.
    pub refused: u64,
    /// Timed out in the interval.
    pub timed_out: u64,
    /// Malformed in the interval.
    pub malformed: u64,
    /// Length of the interval (time since the previous summary, or since start).
    pub interval: Duration,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} connections evicted, {} refused, {} timed out, {} malformed in the last {} s",
            self.listener,
            self.evicted,
            self.refused,
            self.timed_out,
            self.malformed,
            self.interval.as_secs()
        )
    }
}

/// The connections of one listener (see the module docs).
#[derive(Debug)]
pub struct ConnTable {
    config: LimitsConfig,
    /// In accept order: the first half-open entry is the oldest.
    entries: VecDeque<Entry>,
    next_id: u64,
    stats: ConnStats,
    reported: ConnStats,
    last_summary: Option<Instant>,
}

impl ConnTable {
    /// An empty table. A `max_connections` of 0 is taken as 1.
    pub fn new(config: LimitsConfig) -> Self {
        Self {
            config: LimitsConfig {
                max_connections: config.max_connections.max(1),
                ..config
            },
            entries: VecDeque::new(),
            next_id: 0,
            stats: ConnStats::default(),
            reported: ConnStats::default(),
            last_summary: None,
        }
    }

    /// The limits.
    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Counters since start.
    pub fn stats(&self) -> ConnStats {
        ConnStats {
            open: self.entries.len() as u64,
            ..self.stats
        }
    }

    /// Decides about a connection accepted at `now`.
    pub fn handle_accept(&mut self, now: Instant) -> Admission {
        self.last_summary.get_or_insert(now);
        let mut evicted = None;
        if self.entries.len() >= self.config.max_connections {
            let Some(pos) = self.entries.iter().position(|e| e.phase == Phase::HalfOpen) else {
                self.stats.refused += 1;
                return Admission::Refuse;
            };
            evicted = self.entries.remove(pos).map(|e| e.id);
            self.stats.evicted += 1;
        }
        let id = ConnId(self.next_id);
        self.next_id += 1;
        self.entries.push_back(Entry {
            id,
            phase: Phase::HalfOpen,
        });
        self.stats.accepted += 1;
        let deadline = now + self.config.request_deadline;
        match evicted {
            Some(evicted) => Admission::AdmitEvicting {
                id,
                deadline,
                evicted,
            },
            None => Admission::Admit { id, deadline },
        }
    }

    /// `id` has a complete request: it is no longer evictable and no longer under the
    /// request deadline (whatever serves it bounds its own waits). False if `id` is not in
    /// the table (evicted already: the server should drop the request).
    pub fn handle_request(&mut self, id: ConnId) -> bool {
        match self.entries.iter_mut().find(|e| e.id == id) {
            Some(e) => {
                e.phase = Phase::Serving;
                true
            }
            None => false,
        }
    }

    /// A connection starts writing its response at `now`: the deadline for that.
    pub fn handle_response(&self, now: Instant) -> Instant {
        now + self.config.response_deadline
    }

    /// `id` is closed. Unknown ids (evicted ones) are ignored: they were counted already.
    pub fn handle_closed(&mut self, id: ConnId, how: Close) {
        let Some(pos) = self.entries.iter().position(|e| e.id == id) else {
            return;
        };
        self.entries.remove(pos);
        match how {
            Close::Done => {}
            Close::TimedOut => self.stats.timed_out += 1,
            Close::Malformed => self.stats.malformed += 1,
        }
    }

    /// A summary line is due: something was turned away since the last one and at least
    /// `summary_interval` has passed since it (or since the first connection).
    pub fn poll_summary(&mut self, now: Instant, listener: &'static str) -> Option<Summary> {
        let since = *self.last_summary.get_or_insert(now);
        let interval = now.saturating_duration_since(since);
        if interval < self.config.summary_interval {
            return None;
        }
        let s = Summary {
            listener,
            evicted: self.stats.evicted - self.reported.evicted,
            refused: self.stats.refused - self.reported.refused,
            timed_out: self.stats.timed_out - self.reported.timed_out,
            malformed: self.stats.malformed - self.reported.malformed,
            interval,
        };
        if s.evicted + s.refused + s.timed_out + s.malformed == 0 {
            // Nothing to say: the next line covers the time from its first event on.
            self.last_summary = Some(now);
            return None;
        }
        self.reported = self.stats;
        self.last_summary = Some(now);
        Some(s)
    }
}

/// A named listener's table, shared by its accept loop, its connections and the management
/// API.
#[derive(Debug)]
pub struct Listener {
    name: &'static str,
    table: Mutex<ConnTable>,
}

impl Listener {
    /// A listener called `name` (`http`, `https`, `rtsp`, `api`) with `config`.
    pub fn new(name: &'static str, config: LimitsConfig) -> Arc<Self> {
        Arc::new(Self {
            name,
            table: Mutex::new(ConnTable::new(config)),
        })
    }

    /// Its name.
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Its table. Every transition is one step on plain data, so a panic elsewhere leaves
    /// it consistent: keep serving.
    pub fn table(&self) -> MutexGuard<'_, ConnTable> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Counters since start.
    pub fn stats(&self) -> ConnStats {
        self.table().stats()
    }

    /// The summary line due at `now`, if any.
    pub fn poll_summary(&self, now: Instant) -> Option<Summary> {
        self.table().poll_summary(now, self.name)
    }
}

/// The listeners of a host, for `/api/status`.
#[derive(Debug, Default)]
pub struct ListenerRegistry {
    listeners: Mutex<Vec<Arc<Listener>>>,
}

impl ListenerRegistry {
    /// Adds `listener` (a second one with the same name replaces the first).
    pub fn add(&self, listener: Arc<Listener>) {
        let mut l = self
            .listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        l.retain(|x| x.name != listener.name);
        l.push(listener);
    }

    /// Name and counters of every listener, in the order they were added.
    pub fn stats(&self) -> Vec<(&'static str, ConnStats)> {
        self.listeners
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|l| (l.name, l.stats()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(max: usize) -> ConnTable {
        ConnTable::new(LimitsConfig {
            max_connections: max,
            ..LimitsConfig::default()
        })
    }

    fn admit(t: &mut ConnTable, now: Instant) -> ConnId {
        match t.handle_accept(now) {
            Admission::Admit { id, .. } => id,
            other => panic!("expected Admit, got {other:?}"),
        }
    }

    #[test]
    fn admits_up_to_the_limit_with_a_total_request_deadline() {
        let mut t = table(3);
        let now = Instant::now();
        let Admission::Admit { deadline, .. } = t.handle_accept(now) else {
            panic!()
        };
        assert_eq!(deadline, now + Duration::from_secs(5));
        admit(&mut t, now);
        admit(&mut t, now);
        assert_eq!(t.stats().open, 3);
        assert_eq!(t.stats().accepted, 3);
    }

    #[test]
    fn evicts_the_oldest_half_open_connection_never_a_serving_one() {
        let mut t = table(3);
        let now = Instant::now();
        let a = admit(&mut t, now);
        let b = admit(&mut t, now);
        let c = admit(&mut t, now);
        // a is being served: b is the oldest half-open one.
        assert!(t.handle_request(a));
        let Admission::AdmitEvicting { id: d, evicted, .. } = t.handle_accept(now) else {
            panic!()
        };
        assert_eq!(evicted, b);
        let Admission::AdmitEvicting { evicted, .. } = t.handle_accept(now) else {
            panic!()
        };
        assert_eq!(evicted, c);
        // The evicted connection's request comes too late; its close is not counted again.
        assert!(!t.handle_request(b));
        t.handle_closed(b, Close::TimedOut);
        assert_eq!(t.stats().timed_out, 0);
        assert_eq!(t.stats().evicted, 2);
        assert_eq!(t.stats().open, 3);
        assert!(t.handle_request(d));
    }

    #[test]
    fn refuses_when_every_connection_is_serving() {
        let mut t = table(2);
        let now = Instant::now();
        let a = admit(&mut t, now);
        let b = admit(&mut t, now);
        t.handle_request(a);
        t.handle_request(b);
        assert_eq!(t.handle_accept(now), Admission::Refuse);
        assert_eq!(t.stats().refused, 1);
        t.handle_closed(a, Close::Done);
        admit(&mut t, now);
        assert_eq!(t.stats().open, 2);
    }

    #[test]
    fn a_flood_never_locks_out_the_newest_connection() {
        // 10 000 half-open connections against a table of 8: each new one gets in, and a
        // real request that completes before 8 more arrive is served.
        let mut t = table(8);
        let now = Instant::now();
        let mut real = None;
        for i in 0..10_000 {
            let id = match t.handle_accept(now) {
                Admission::Admit { id, .. } | Admission::AdmitEvicting { id, .. } => id,
                Admission::Refuse => panic!("refused a connection while half-open ones exist"),
            };
            if i == 5_000 {
                real = Some(id);
            }
            if i == 5_004 {
                assert!(t.handle_request(real.unwrap()));
            }
        }
        assert_eq!(t.stats().evicted, 10_000 - 8);
        // The served one stayed.
        t.handle_closed(real.unwrap(), Close::Done);
        assert_eq!(t.stats().open, 7);
    }

    #[test]
    fn closes_are_counted_by_kind() {
        let mut t = table(4);
        let now = Instant::now();
        let a = admit(&mut t, now);
        let b = admit(&mut t, now);
        let c = admit(&mut t, now);
        t.handle_closed(a, Close::TimedOut);
        t.handle_closed(b, Close::Malformed);
        t.handle_closed(c, Close::Done);
        t.handle_closed(c, Close::TimedOut);
        let s = t.stats();
        assert_eq!((s.timed_out, s.malformed, s.open), (1, 1, 0));
    }

    #[test]
    fn summaries_are_rate_limited_and_cover_their_interval() {
        let mut t = table(1);
        let t0 = Instant::now();
        // 1000 evictions within the first second: no line before 10 s.
        for i in 0..1001u64 {
            let _ = t.handle_accept(t0 + Duration::from_millis(i));
            assert_eq!(
                t.poll_summary(t0 + Duration::from_millis(i), "nvhttp"),
                None
            );
        }
        let s = t
            .poll_summary(t0 + Duration::from_secs(10), "nvhttp")
            .unwrap();
        assert_eq!(s.evicted, 1000);
        assert_eq!(
            s.to_string(),
            "nvhttp: 1000 connections evicted, 0 refused, 0 timed out, 0 malformed in the last 10 s"
        );
        // Right after a line: silence, even with new events.
        let _ = t.handle_accept(t0 + Duration::from_secs(11));
        assert_eq!(t.poll_summary(t0 + Duration::from_secs(11), "nvhttp"), None);
        let s = t
            .poll_summary(t0 + Duration::from_secs(20), "nvhttp")
            .unwrap();
        assert_eq!(s.evicted, 1);
        // Quiet intervals make no line.
        assert_eq!(t.poll_summary(t0 + Duration::from_secs(40), "nvhttp"), None);
    }

    #[test]
    fn registry_lists_listeners_by_name() {
        let r = ListenerRegistry::default();
        r.add(Listener::new("http", LimitsConfig::default()));
        let rtsp = Listener::new("rtsp", LimitsConfig::default());
        let _ = rtsp.table().handle_accept(Instant::now());
        r.add(rtsp);
        let s = r.stats();
        assert_eq!(s.len(), 2);
        assert_eq!(s[1].0, "rtsp");
        assert_eq!(s[1].1.accepted, 1);
    }
}
