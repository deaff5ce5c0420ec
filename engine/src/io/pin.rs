//! Pinning the calling thread to one CPU core.
//!
//! Pinning is best effort: a core that does not exist or is outside the process's affinity
//! mask (a cgroup cpuset, `taskset`), or a refused `sched_setaffinity(2)`, is logged as a
//! warning and the thread carries on unpinned. A stream that runs a little slower is better than
//! one that does not start.
//!
//! Uses `core_affinity`, which on Linux reads the mask with `sched_getaffinity(2)` and pins with
//! `sched_setaffinity(2)` on the calling thread.

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
}
