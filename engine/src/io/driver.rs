//! The shared send driver (act): one thread per send core sends the paced bursts of every
//! session on that core, instead of one thread per session waiting out its own pacing.
//!
//! ```text
//!  session A: … ─► FEC ─► SendSink ──┐ Frame{buf, dest, pacing}     ┌─► A's UdpSender (fd a)
//!  session B: … ─► FEC ─► SendSink ──┼──────────► pf-send-N ─────────┼─► B's UdpSender (fd b)
//!  session C: … ─► FEC ─► SendSink ──┘   SendQueue (deadline heap)  └─► C's UdpSender (fd c)
//!                   ▲                     sleep / spin until the earliest burst is due
//!                   └── credit back when the frame's last burst left (at most 2 in flight)
//! ```
//!
//! What goes out when is decided by the pure [`SendQueue`]; this module only waits, sends and
//! hands buffers back. A session keeps its own socket and [`UdpSender`] (its GSO size, its
//! io_uring ring and registered buffers), which the driver thread owns while the session is
//! open. The driver sleeps on its command channel until the next burst is due (less
//! [`SPIN_THRESHOLD`], then spins), or spins throughout with `[send] busy_poll`.
//!
//! A session's send stage may have [`MAX_IN_FLIGHT`] frames at the driver; it waits for a
//! credit before handing over another, so a driver that falls behind pushes back into the
//! pipeline's rings (which drop the oldest frame), never into unbounded memory.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender, SyncSender};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::send::{SPIN_THRESHOLD, wait_until};
use super::sink::{OnSent, SinkStats};
use super::{Pacing, SendStats, UdpSender};
use crate::config::ThreadPriority;
use crate::pool::FrameBuf;
use crate::send_queue::{JobId, SendQueue, SessionKey};

/// Frames one session may have at the driver at once (being sent, or queued behind it).
pub const MAX_IN_FLIGHT: usize = 2;

/// How long a send stage waits for a credit before it reports the driver stuck.
pub const CREDIT_TIMEOUT: Duration = Duration::from_secs(2);

enum Cmd {
    Open {
        key: SessionKey,
        sender: Box<UdpSender>,
        on_sent: Option<OnSent>,
        credits: SyncSender<()>,
        stats: Arc<Mutex<SinkStats>>,
    },
    Frame {
        key: SessionKey,
        frame: FrameBuf,
        dest: SocketAddr,
        pacing: Pacing,
    },
    Close {
        key: SessionKey,
    },
}

/// One driver thread (see the module docs). Cheap to clone; the thread ends when the last
/// handle and the last session are gone.
#[derive(Debug, Clone)]
pub struct SendDriver {
    tx: Sender<Cmd>,
    name: Arc<str>,
    next_key: Arc<AtomicU64>,
}

impl SendDriver {
    /// Starts a driver thread named `name`, pinned to `core` if given, at `priority` (like
    /// the pipelines' stage threads; a refusal is logged); spinning instead of sleeping
    /// between bursts with `busy_poll`.
    pub fn start(
        name: &str,
        core: Option<usize>,
        priority: ThreadPriority,
        busy_poll: bool,
    ) -> std::io::Result<Self> {
        let (tx, rx) = mpsc::channel();
        let thread = name.to_owned();
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                if let Some(core) = core {
                    super::pin::pin_current_thread(core);
                }
                let outcome = super::pin::set_current_thread_priority(priority);
                if let Some(reason) = outcome.reason() {
                    tracing::warn!(driver = %thread, priority = %priority, %reason,
                        "send driver runs at normal priority: the OS refused");
                }
                run(&rx, busy_poll);
            })?;
        tracing::debug!(driver = name, ?core, busy_poll, "send driver started");
        Ok(Self {
            tx,
            name: name.into(),
            next_key: Arc::new(AtomicU64::new(1)),
        })
    }

    /// The thread's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Hands `sender` to the driver for one session; frames go through the returned lane.
    /// `on_sent` runs on the driver thread after each frame's last burst.
    pub fn open(&self, sender: UdpSender, on_sent: Option<OnSent>) -> Result<DriverLane, String> {
        let key = SessionKey(self.next_key.fetch_add(1, Ordering::Relaxed));
        let (credit_tx, credits) = mpsc::sync_channel(MAX_IN_FLIGHT);
        for _ in 0..MAX_IN_FLIGHT {
            let _ = credit_tx.try_send(());
        }
        let stats = Arc::new(Mutex::new(SinkStats::default()));
        let pacer = sender.pacer();
        self.tx
            .send(Cmd::Open {
                key,
                sender: Box::new(sender),
                on_sent,
                credits: credit_tx,
                stats: Arc::clone(&stats),
            })
            .map_err(|_| format!("send driver {} has stopped", self.name))?;
        Ok(DriverLane {
            key,
            tx: self.tx.clone(),
            credits,
            stats,
            paced: pacer.is_paced(),
        })
    }
}

/// A session's way into a [`SendDriver`]; closing it (drop) ends the session there, dropping
/// what it still had queued.
#[derive(Debug)]
pub struct DriverLane {
    key: SessionKey,
    tx: Sender<Cmd>,
    credits: Receiver<()>,
    stats: Arc<Mutex<SinkStats>>,
    paced: bool,
}

impl DriverLane {
    /// Hands one packetized frame over, after waiting (up to [`CREDIT_TIMEOUT`]) until the
    /// session has fewer than [`MAX_IN_FLIGHT`] frames at the driver.
    pub fn submit(&self, frame: FrameBuf, dest: SocketAddr, pacing: Pacing) -> Result<(), String> {
        match self.credits.recv_timeout(CREDIT_TIMEOUT) {
            Ok(()) => {}
            Err(RecvTimeoutError::Timeout) => {
                return Err(format!(
                    "send driver took no frame for {} s",
                    CREDIT_TIMEOUT.as_secs()
                ));
            }
            Err(RecvTimeoutError::Disconnected) => return Err("send driver stopped".into()),
        }
        let pacing = if self.paced {
            pacing
        } else {
            Pacing::Immediate
        };
        self.tx
            .send(Cmd::Frame {
                key: self.key,
                frame,
                dest,
                pacing,
            })
            .map_err(|_| "send driver stopped".to_string())
    }

    /// The session's counters so far (frames are counted when their last burst left).
    pub fn stats(&self) -> SinkStats {
        *self.stats.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a frame dropped before it reached the driver (no destination yet).
    pub fn count_no_destination(&self) {
        self.stats
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .no_destination += 1;
    }
}

impl Drop for DriverLane {
    fn drop(&mut self) {
        let _ = self.tx.send(Cmd::Close { key: self.key });
    }
}

/// A session as the driver thread holds it.
struct Lane {
    sender: Box<UdpSender>,
    on_sent: Option<OnSent>,
    credits: SyncSender<()>,
    stats: Arc<Mutex<SinkStats>>,
}

/// A frame being sent.
struct Job {
    key: SessionKey,
    frame: FrameBuf,
    dest: SocketAddr,
    stats: SendStats,
    failed: bool,
}

struct State {
    queue: SendQueue,
    lanes: HashMap<SessionKey, Lane>,
    jobs: HashMap<JobId, Job>,
    next_job: u64,
}

fn run(rx: &Receiver<Cmd>, busy_poll: bool) {
    let mut st = State {
        queue: SendQueue::new(),
        lanes: HashMap::new(),
        jobs: HashMap::new(),
        next_job: 0,
    };
    let mut open = true;
    loop {
        // Take commands: block when idle, sleep until the next burst is due otherwise (spin
        // the last few microseconds, or all the way with busy polling).
        let first = match st.queue.next_deadline() {
            None if !open => return,
            None => match rx.recv() {
                Ok(c) => Some(c),
                Err(_) => return,
            },
            Some(at) => {
                let left = at.saturating_duration_since(Instant::now());
                if open && !busy_poll && left > SPIN_THRESHOLD {
                    match rx.recv_timeout(left - SPIN_THRESHOLD) {
                        Ok(c) => Some(c),
                        Err(RecvTimeoutError::Timeout) => None,
                        Err(RecvTimeoutError::Disconnected) => {
                            open = false;
                            None
                        }
                    }
                } else {
                    rx.try_recv().ok()
                }
            }
        };
        if let Some(c) = first {
            handle(&mut st, c);
            while let Ok(c) = rx.try_recv() {
                handle(&mut st, c);
            }
        }
        send_due(&mut st);
    }
}

fn handle(st: &mut State, cmd: Cmd) {
    match cmd {
        Cmd::Open {
            key,
            sender,
            on_sent,
            credits,
            stats,
        } => {
            st.lanes.insert(
                key,
                Lane {
                    sender,
                    on_sent,
                    credits,
                    stats,
                },
            );
        }
        Cmd::Frame {
            key,
            frame,
            dest,
            pacing,
        } => {
            let Some(lane) = st.lanes.get(&key) else {
                return; // closed meanwhile: the frame goes back to its pool
            };
            let seg = usize::from(frame.meta.segment_size).max(1);
            let n = frame.len().div_ceil(seg);
            let now = Instant::now();
            let schedule = match pacing {
                Pacing::Frame { start, interval } => {
                    lane.sender.pacer().schedule(start, interval, n)
                }
                Pacing::Immediate => {
                    crate::pacer::Pacer::unpaced().schedule(now, Duration::ZERO, n)
                }
            };
            st.next_job += 1;
            let id = JobId(st.next_job);
            st.queue.push(key, id, now, schedule);
            st.jobs.insert(
                id,
                Job {
                    key,
                    frame,
                    dest,
                    stats: SendStats::default(),
                    failed: false,
                },
            );
        }
        Cmd::Close { key } => {
            for id in st.queue.remove_session(key) {
                st.jobs.remove(&id);
            }
            st.lanes.remove(&key);
        }
    }
}

/// Sends every burst due now (waiting out the last microseconds of one that is almost due).
fn send_due(st: &mut State) {
    while let Some(at) = st.queue.next_deadline() {
        if at > Instant::now() + SPIN_THRESHOLD {
            return;
        }
        let waited = wait_until(at);
        let Some(due) = st.queue.pop_next() else {
            return;
        };
        let Some(job) = st.jobs.get_mut(&due.job) else {
            continue;
        };
        job.stats.pacing_wait_ns += waited;
        let Some(lane) = st.lanes.get_mut(&job.key) else {
            continue;
        };
        let seg = usize::from(job.frame.meta.segment_size).max(1);
        let bytes = job.frame.as_slice();
        let range = (due.datagrams.start * seg).min(bytes.len())
            ..(due.datagrams.end * seg).min(bytes.len());
        if !job.failed && !range.is_empty() {
            match lane
                .sender
                .send_frame(job.dest, &bytes[range], seg, Pacing::Immediate)
            {
                Ok(s) => job.stats += s,
                Err(e) => {
                    job.failed = true;
                    tracing::warn!(error = %e, dest = %job.dest, "video frame send failed");
                }
            }
        }
        if due.last {
            let Some(job) = st.jobs.remove(&due.job) else {
                continue;
            };
            {
                let mut s = lane.stats.lock().unwrap_or_else(|p| p.into_inner());
                if job.failed {
                    s.failed += 1;
                } else {
                    s.frames += 1;
                }
                s.send += job.stats;
            }
            if !job.failed
                && let Some(f) = &mut lane.on_sent
            {
                f(&job.frame.meta, &job.stats);
            }
            drop(job);
            let _ = lane.credits.try_send(());
        }
    }
}
