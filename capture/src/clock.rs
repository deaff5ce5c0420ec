//! The capture clock: `CLOCK_MONOTONIC` in microseconds.
//!
//! The one clock read of this crate. `CLOCK_MONOTONIC` is what Python's `time.monotonic_ns()`
//! and most Linux media APIs (PipeWire buffer times, DRM vblank events) report, so a test
//! client on the same machine can subtract a decoded stamp's `capture_us` from its own reading
//! to get capture-to-display latency.
//!
//! Act: one `clock_gettime(2)` call through libc.

/// Microseconds since an arbitrary fixed point (boot, on Linux), from `CLOCK_MONOTONIC`.
pub fn monotonic_us() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_MONOTONIC is supported on every Linux kernel (clock_gettime(2)).
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0, "clock_gettime(CLOCK_MONOTONIC) cannot fail on Linux");
    // tv_sec and tv_nsec of CLOCK_MONOTONIC are never negative.
    (ts.tv_sec as u64) * 1_000_000 + (ts.tv_nsec as u64) / 1_000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn advances_across_a_sleep() {
        let a = monotonic_us();
        std::thread::sleep(std::time::Duration::from_millis(20));
        let b = monotonic_us();
        // sleep(2) waits at least as long as asked on CLOCK_MONOTONIC; no upper bound checked.
        assert!(b >= a + 20_000, "{a} → {b}");
    }
}
