//! Which session's datagrams leave next (decides; pure): the deadline queue of a shared send
//! driver ([`crate::io::driver`]).
//!
//! One driver thread per send core serves every session pinned there. Each session hands it
//! frames; each frame comes with its pacer [`Schedule`] (bursts with earliest send times). The
//! queue keeps, per session, its frames in order, and across sessions a min-heap of the *next*
//! burst of each session's oldest frame, keyed by that burst's send time:
//!
//! ```text
//!   session A: frame 7 [b0 b1 b2 …]  frame 8 [b0 …]        heap: (t_A7b1, A) (t_B3b0, B)
//!   session B: frame 3 [b0 b1 …]                            pop_due(now) → earliest due
//! ```
//!
//! So the bursts of all sessions go out in send-time order (ties: the session that queued
//! first), a session's frames never overtake each other, and the driver sleeps until
//! [`SendQueue::next_deadline`]. Nothing here reads a clock, a socket or a thread: the caller
//! passes `now`.

#![forbid(unsafe_code)]

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::ops::Range;
use std::time::Instant;

use crate::pacer::Schedule;

/// A session of the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SessionKey(pub u64);

/// A frame handed to the driver.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobId(pub u64);

/// One burst due now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueBurst {
    /// Whose.
    pub session: SessionKey,
    /// Which frame.
    pub job: JobId,
    /// When it was due (the driver waits until then).
    pub send_at: Instant,
    /// Datagram indices of the frame, half-open.
    pub datagrams: Range<usize>,
    /// Whether this is the frame's last burst (the frame is done once it is sent).
    pub last: bool,
}

#[derive(Debug)]
struct Job {
    id: JobId,
    ready: Instant,
    schedule: std::iter::Peekable<Schedule>,
}

#[derive(Debug, Default)]
struct Lane {
    jobs: VecDeque<Job>,
    /// Whether the lane's head has an entry in the heap.
    queued: bool,
}

/// The deadline queue (see the module docs).
#[derive(Debug, Default)]
pub struct SendQueue {
    lanes: HashMap<SessionKey, Lane>,
    /// (send time, arrival order, session) of each lane's next burst.
    heap: BinaryHeap<Reverse<(Instant, u64, SessionKey)>>,
    order: u64,
}

impl SendQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues frame `job` of `session`, ready at `ready`, to go out as `schedule` says, after
    /// the session's frames queued before it. A schedule without bursts (an empty frame) comes
    /// back from [`SendQueue::pop_due`] once, at `ready`, as a burst of no datagrams.
    pub fn push(&mut self, session: SessionKey, job: JobId, ready: Instant, schedule: Schedule) {
        let lane = self.lanes.entry(session).or_default();
        lane.jobs.push_back(Job {
            id: job,
            ready,
            schedule: schedule.peekable(),
        });
        self.arm(session);
    }

    /// Frames of `session` not yet fully sent.
    pub fn pending(&self, session: SessionKey) -> usize {
        self.lanes.get(&session).map_or(0, |l| l.jobs.len())
    }

    /// Frames of every session not yet fully sent.
    pub fn len(&self) -> usize {
        self.lanes.values().map(|l| l.jobs.len()).sum()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// When the earliest queued burst is due (`None` when nothing is queued).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _, _))| *at)
    }

    /// The earliest burst if it is due at `now` (its send time is not after `now`).
    pub fn pop_due(&mut self, now: Instant) -> Option<DueBurst> {
        match self.next_deadline() {
            Some(at) if at <= now => self.pop_next(),
            _ => None,
        }
    }

    /// The earliest burst, due or not (the caller waits until its `send_at`).
    pub fn pop_next(&mut self) -> Option<DueBurst> {
        let Reverse((send_at, _, session)) = self.heap.pop()?;
        let lane = self.lanes.get_mut(&session)?;
        lane.queued = false;
        let job = lane.jobs.front_mut()?;
        let id = job.id;
        let datagrams = job.schedule.next().map_or(0..0, |b| b.datagrams);
        let last = job.schedule.peek().is_none();
        if last {
            lane.jobs.pop_front();
        }
        self.arm(session);
        Some(DueBurst {
            session,
            job: id,
            send_at,
            datagrams,
            last,
        })
    }

    /// Forgets `session` and its queued frames; the frames dropped, oldest first.
    pub fn remove_session(&mut self, session: SessionKey) -> Vec<JobId> {
        let Some(lane) = self.lanes.remove(&session) else {
            return Vec::new();
        };
        self.heap.retain(|Reverse((_, _, s))| *s != session);
        lane.jobs.into_iter().map(|j| j.id).collect()
    }

    /// Puts the next burst of `session`'s oldest frame into the heap, if it has one and it
    /// is not there yet.
    fn arm(&mut self, session: SessionKey) {
        let Some(lane) = self.lanes.get_mut(&session) else {
            return;
        };
        if lane.queued {
            return;
        }
        let Some(job) = lane.jobs.front_mut() else {
            return;
        };
        // An empty schedule still gets one (empty) entry, at its ready time, so that its
        // frame completes in order.
        let at = job.schedule.peek().map_or(job.ready, |b| b.send_at);
        self.order += 1;
        lane.queued = true;
        self.heap.push(Reverse((at, self.order, session)));
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::config::PacingConfig;
    use crate::pacer::Pacer;

    fn pacer(burst: usize) -> Pacer {
        Pacer::new(&PacingConfig {
            frame_share: 0.5,
            burst_datagrams: burst,
        })
        .unwrap()
    }

    fn drain(q: &mut SendQueue) -> Vec<DueBurst> {
        std::iter::from_fn(|| q.pop_next()).collect()
    }

    #[test]
    fn bursts_of_all_sessions_leave_in_send_time_order() {
        let t0 = Instant::now();
        let frame = Duration::from_millis(16);
        let mut q = SendQueue::new();
        let (a, b) = (SessionKey(1), SessionKey(2));
        // A: 8 datagrams in bursts of 2 over 8 ms from t0; B: 6 in bursts of 3 from t0 + 1 ms.
        q.push(a, JobId(10), t0, pacer(2).schedule(t0, frame, 8));
        q.push(
            b,
            JobId(20),
            t0,
            pacer(3).schedule(t0 + Duration::from_millis(1), frame, 6),
        );
        assert_eq!(q.next_deadline(), Some(t0));
        assert_eq!(q.len(), 2);
        let out = drain(&mut q);
        assert!(q.is_empty());
        assert_eq!(q.len(), 0);
        let times: Vec<Instant> = out.iter().map(|d| d.send_at).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{out:?}");
        let of = |s| -> Vec<Range<usize>> {
            out.iter()
                .filter(|d| d.session == s)
                .map(|d| d.datagrams.clone())
                .collect()
        };
        assert_eq!(of(a), [0..2, 2..4, 4..6, 6..8]);
        assert_eq!(of(b), [0..3, 3..6]);
        let lasts: Vec<_> = out.iter().filter(|d| d.last).map(|d| d.job).collect();
        assert_eq!(lasts.len(), 2);
        assert!(lasts.contains(&JobId(10)) && lasts.contains(&JobId(20)));
    }

    #[test]
    fn a_sessions_frames_never_overtake_each_other() {
        let t0 = Instant::now();
        let mut q = SendQueue::new();
        let s = SessionKey(7);
        // Frame 1 is spread over 8 ms; frame 2 is due at once (unpaced) but waits its turn.
        q.push(
            s,
            JobId(1),
            t0,
            pacer(1).schedule(t0, Duration::from_millis(16), 4),
        );
        q.push(
            s,
            JobId(2),
            t0,
            Pacer::unpaced().schedule(t0, Duration::ZERO, 5),
        );
        assert_eq!(q.pending(s), 2);
        let jobs: Vec<(u64, Range<usize>)> = drain(&mut q)
            .into_iter()
            .map(|d| (d.job.0, d.datagrams))
            .collect();
        assert_eq!(
            jobs,
            [(1, 0..1), (1, 1..2), (1, 2..3), (1, 3..4), (2, 0..5)]
        );
        assert_eq!(q.pending(s), 0);
    }

    #[test]
    fn only_due_bursts_pop_and_sessions_can_leave() {
        let t0 = Instant::now();
        let mut q = SendQueue::new();
        let (a, b) = (SessionKey(1), SessionKey(2));
        q.push(
            a,
            JobId(1),
            t0,
            pacer(1).schedule(t0, Duration::from_millis(10), 3),
        );
        q.push(
            b,
            JobId(2),
            t0,
            pacer(1).schedule(t0 + Duration::from_millis(1), Duration::from_millis(10), 2),
        );
        q.push(
            b,
            JobId(3),
            t0,
            pacer(1).schedule(t0 + Duration::from_millis(2), Duration::from_millis(10), 2),
        );
        assert_eq!(q.pop_due(t0).unwrap().session, a);
        assert!(
            q.pop_due(t0).is_none(),
            "A's next burst is 1.7 ms later, B's 1 ms later"
        );
        assert_eq!(q.remove_session(b), [JobId(2), JobId(3)]);
        assert_eq!(q.pending(b), 0);
        let rest = drain(&mut q);
        assert!(rest.iter().all(|d| d.session == a), "{rest:?}");
        assert_eq!(rest.len(), 2);
        assert!(q.remove_session(b).is_empty());
    }

    #[test]
    fn an_empty_frame_completes_in_order() {
        let t0 = Instant::now();
        let mut q = SendQueue::new();
        let s = SessionKey(1);
        q.push(
            s,
            JobId(1),
            t0,
            pacer(1).schedule(t0, Duration::from_millis(10), 0),
        );
        q.push(
            s,
            JobId(2),
            t0,
            pacer(1).schedule(t0, Duration::from_millis(10), 1),
        );
        let out = drain(&mut q);
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].job, out[0].datagrams.clone(), out[0].last),
            (JobId(1), 0..0, true)
        );
        assert_eq!((out[1].job, out[1].last), (JobId(2), true));
    }
}
