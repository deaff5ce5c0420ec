//! Pinning the calling thread to one CPU core, and raising its scheduling priority.
//!
//! Pinning is best effort: a core that does not exist or is outside the process's affinity
//! mask (a cgroup cpuset, `taskset`), or a refused `sched_setaffinity(2)`, is logged as a
//! warning and the thread carries on unpinned. A stream that runs a little slower is better than
//! one that does not start.
//!
//! Uses `core_affinity`, which on Linux reads the mask with `sched_getaffinity(2)` and pins with
//! `sched_setaffinity(2)` on the calling thread.
//!
//! Priority ([`set_current_thread_priority`]) is best effort too, but reports instead of
//! logging: the pipeline asks from every stage thread and logs one warning per pipeline
//! (`io::stages`). On Linux the nice value and the scheduling policy are per-thread attributes
//! (setpriority(2) "BUGS", sched(7)), so `setpriority(PRIO_PROCESS, gettid(), …)` and
//! `pthread_setschedparam(pthread_self(), …)` change the calling thread only. Lowering a nice
//! value or entering `SCHED_FIFO` needs `CAP_SYS_NICE` or a matching `RLIMIT_NICE` /
//! `RLIMIT_RTPRIO`; without it the kernel answers `EPERM`/`EACCES` and nothing changes.

use crate::config::ThreadPriority;

/// What became of a pin request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PinOutcome {
    /// The thread now runs only on this core.
    Pinned(usize),
    /// The core is not in the set this thread may run on; left unpinned.
    NoSuchCore {
        /// The requested core.
        core: usize,
        /// How many cores the thread may run on.
        allowed: usize,
    },
    /// The OS refused (or the platform does not support) pinning; left unpinned.
    Failed(usize),
}

/// The core ids the calling thread may run on (its affinity mask), or `None` where the platform
/// cannot tell. Allocates; call at start-up.
pub fn allowed_cores() -> Option<Vec<usize>> {
    core_affinity::get_core_ids().map(|ids| ids.into_iter().map(|c| c.id).collect())
}

/// Pins the calling thread to `core`, logging a warning and leaving it unpinned on failure.
pub fn pin_current_thread(core: usize) -> PinOutcome {
    let outcome = try_pin(core);
    let thread = std::thread::current();
    let name = thread.name().unwrap_or("unnamed");
    match outcome {
        PinOutcome::Pinned(core) => tracing::debug!(thread = name, core, "pinned thread to core"),
        PinOutcome::NoSuchCore { core, allowed } => tracing::warn!(
            thread = name,
            core,
            allowed,
            "core is not available to this process; continuing unpinned"
        ),
        PinOutcome::Failed(core) => {
            tracing::warn!(
                thread = name,
                core,
                "could not pin thread to core; continuing unpinned"
            )
        }
    }
    outcome
}

fn try_pin(core: usize) -> PinOutcome {
    let Some(allowed) = allowed_cores() else {
        return PinOutcome::Failed(core);
    };
    // Checked first: core_affinity indexes a fixed-size cpu_set_t with the id, so an id past
    // CPU_SETSIZE must never reach it.
    if !allowed.contains(&core) {
        return PinOutcome::NoSuchCore {
            core,
            allowed: allowed.len(),
        };
    }
    if core_affinity::set_for_current(core_affinity::CoreId { id: core }) {
        PinOutcome::Pinned(core)
    } else {
        PinOutcome::Failed(core)
    }
}

/// What became of a priority request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PriorityOutcome {
    /// [`ThreadPriority::Normal`]: nothing was asked.
    Unchanged,
    /// The thread now runs at this priority.
    Raised(ThreadPriority),
    /// The OS refused; the thread runs at the priority it had.
    Refused {
        /// What was asked for.
        priority: ThreadPriority,
        /// The OS error number (`EPERM`, `EACCES`, …).
        errno: i32,
    },
}

impl PriorityOutcome {
    /// Why the OS refused, in words (`None` unless refused).
    pub fn reason(&self) -> Option<String> {
        match *self {
            Self::Refused { errno, .. } => {
                Some(std::io::Error::from_raw_os_error(errno).to_string())
            }
            _ => None,
        }
    }
}

/// Asks for `priority` on the calling thread (see the module docs). Never panics and never
/// logs; the caller decides what a refusal is worth.
pub fn set_current_thread_priority(priority: ThreadPriority) -> PriorityOutcome {
    let result = match priority {
        ThreadPriority::Normal => return PriorityOutcome::Unchanged,
        ThreadPriority::High => {
            // SAFETY: gettid(2) has no preconditions and cannot fail.
            let tid = unsafe { libc::gettid() };
            // A thread id is positive, so the conversion to id_t never fails.
            let who = libc::id_t::try_from(tid).unwrap_or(0);
            // SAFETY: plain system call on integers; `who` names the calling thread (a
            // per-thread attribute on Linux, see the module docs).
            let r =
                unsafe { libc::setpriority(libc::PRIO_PROCESS, who, ThreadPriority::HIGH_NICE) };
            if r == 0 {
                Ok(())
            } else {
                Err(std::io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EPERM))
            }
        }
        ThreadPriority::Realtime => {
            let param = libc::sched_param {
                sched_priority: ThreadPriority::REALTIME_PRIORITY,
            };
            // SAFETY: `param` is a valid sched_param that outlives the call; pthread_self()
            // is the calling thread, which is alive. Returns an error number, sets no errno.
            let r = unsafe {
                libc::pthread_setschedparam(libc::pthread_self(), libc::SCHED_FIFO, &param)
            };
            if r == 0 { Ok(()) } else { Err(r) }
        }
    };
    match result {
        Ok(()) => PriorityOutcome::Raised(priority),
        Err(errno) => PriorityOutcome::Refused { priority, errno },
    }
}

/// The calling thread's nice value and whether it runs under `SCHED_FIFO` (tests, benches).
pub fn current_thread_priority() -> (i32, bool) {
    // SAFETY: gettid(2) has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    let who = libc::id_t::try_from(tid).unwrap_or(0);
    // SAFETY: plain system calls on integers about the calling thread. getpriority(2) may
    // return -1 as a valid nice value; a failure (impossible for our own thread) reads as -1.
    let nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, who) };
    // SAFETY: 0 is the calling thread for sched_getscheduler(2).
    let policy = unsafe { libc::sched_getscheduler(0) };
    (nice, policy == libc::SCHED_FIFO)
}

#[cfg(test)]
mod tests {
    use super::*;

    mod skip {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
    }

    #[test]
    fn pins_a_fresh_thread_to_an_allowed_core() {
        let Some(allowed) = allowed_cores() else {
            skip::skip("affinity", "this platform does not report an affinity mask");
            return;
        };
        let core = *allowed
            .first()
            .expect("a running thread may run on at least one core");
        let (outcome, after) =
            std::thread::spawn(move || (pin_current_thread(core), allowed_cores()))
                .join()
                .unwrap();
        match outcome {
            PinOutcome::Pinned(c) => {
                assert_eq!(c, core);
                assert_eq!(after, Some(vec![core]));
            }
            other => skip::skip("affinity", format!("pinning refused here ({other:?})")),
        }
    }

    #[test]
    fn missing_core_is_reported_not_fatal() {
        let outcome = std::thread::spawn(|| pin_current_thread(1 << 20))
            .join()
            .unwrap();
        assert!(
            matches!(outcome, PinOutcome::NoSuchCore { core, .. } if core == 1 << 20)
                || matches!(outcome, PinOutcome::Failed(_)),
            "{outcome:?}"
        );
    }

    #[test]
    fn asking_for_high_priority_raises_or_says_why_not() {
        let before = current_thread_priority();
        let (outcome, after) = std::thread::spawn(|| {
            let outcome = set_current_thread_priority(ThreadPriority::High);
            (outcome, current_thread_priority())
        })
        .join()
        .expect("asking for a priority never panics");
        match outcome {
            PriorityOutcome::Raised(p) => {
                assert_eq!(p, ThreadPriority::High);
                assert_eq!(after, (ThreadPriority::HIGH_NICE, false));
            }
            PriorityOutcome::Refused { priority, .. } => {
                assert_eq!(priority, ThreadPriority::High);
                let reason = outcome.reason().expect("a refusal has a reason");
                assert!(!reason.is_empty());
                skip::skip("priority", format!("nice -10 refused here: {reason}"));
            }
            PriorityOutcome::Unchanged => panic!("high asks for something"),
        }
        // The test thread itself was left alone: nice is per thread.
        assert_eq!(current_thread_priority(), before);
    }

    #[test]
    fn realtime_is_raised_or_refused_and_normal_asks_nothing() {
        let outcome = std::thread::spawn(|| {
            let o = set_current_thread_priority(ThreadPriority::Realtime);
            if o == PriorityOutcome::Raised(ThreadPriority::Realtime) {
                assert!(current_thread_priority().1, "SCHED_FIFO in effect");
            }
            o
        })
        .join()
        .expect("asking for a priority never panics");
        assert!(
            matches!(
                outcome,
                PriorityOutcome::Raised(ThreadPriority::Realtime)
                    | PriorityOutcome::Refused {
                        priority: ThreadPriority::Realtime,
                        ..
                    }
            ),
            "{outcome:?}"
        );
        assert_eq!(
            set_current_thread_priority(ThreadPriority::Normal),
            PriorityOutcome::Unchanged
        );
    }
}
