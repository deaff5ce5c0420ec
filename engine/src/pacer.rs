//! Pacing: spreads one frame's datagrams over a share of the frame interval in microbursts.
//!
//! A 1 MB keyframe leaves the encoder as one block; sent at line rate it overflows switch and
//! Wi-Fi queues on the way. The pacer cuts the frame's `N` datagrams into bursts of
//! [`PacingConfig::burst_datagrams`] (one GSO send each) and spreads the bursts evenly over
//! `window = frame_share × frame_interval`, starting at `now`:
//!
//! ```text
//!  now                                 now + window                 now + frame_interval
//!   |B0 ......|B1 ......|B2 ......|B3 ..|.............................|  next frame
//!   ^ send_at(B_i) = now + window · i / bursts    (B_i = datagrams [i·b, min((i+1)·b, N)))
//! ```
//!
//! `frame_share == 0` turns pacing off: one burst with every datagram, due at `now`.
//!
//! This module decides only. It reads no clock (time comes in as `now`), sleeps nowhere and
//! allocates nothing: [`Pacer::schedule`] returns an iterator. The io layer
//! ([`crate::io::UdpSender`]) waits until each burst's `send_at` and sends it.
//!
//! ```
//! use std::time::{Duration, Instant};
//! use punktfunk_engine::{config::PacingConfig, pacer::Pacer};
//!
//! let pacer = Pacer::new(&PacingConfig { frame_share: 0.5, burst_datagrams: 32 }).unwrap();
//! let now = Instant::now();
//! let bursts: Vec<_> = pacer.schedule(now, Duration::from_micros(16_667), 100).collect();
//! assert_eq!(bursts.len(), 4); // 32 + 32 + 32 + 4 datagrams
//! assert_eq!(bursts[3].datagrams, 96..100);
//! assert!(bursts[3].send_at < now + Duration::from_micros(8_334));
//! ```

#![forbid(unsafe_code)]

use std::ops::Range;
use std::time::{Duration, Instant};

use crate::config::{MAX_FRAME_INTERVAL, PacingConfig};

/// Local misuse of the pacer: a configuration outside its documented range.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PacerError {
    /// `frame_share` must be a finite number in `[0, 1]`.
    #[error("pacing frame_share {0} is outside [0, 1]")]
    FrameShare(f32),
    /// `burst_datagrams` must be at least 1.
    #[error("pacing burst_datagrams must be at least 1")]
    BurstSize,
}

/// One microburst: the datagrams `datagrams` (indices into the frame) are due at `send_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Burst {
    /// Earliest time the burst may leave.
    pub send_at: Instant,
    /// Datagram indices of the frame, half-open.
    pub datagrams: Range<usize>,
}

/// A validated pacing policy. Cheap to copy; holds no state between frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pacer {
    frame_share: f32,
    burst_datagrams: usize,
}

impl Pacer {
    /// Validates `config`.
    pub fn new(config: &PacingConfig) -> Result<Self, PacerError> {
        let share = config.frame_share;
        if !share.is_finite() || !(0.0..=1.0).contains(&share) {
            return Err(PacerError::FrameShare(share));
        }
        if config.burst_datagrams == 0 {
            return Err(PacerError::BurstSize);
        }
        Ok(Self {
            frame_share: share,
            burst_datagrams: config.burst_datagrams,
        })
    }

    /// A pacer that never paces (`frame_share == 0`).
    pub fn unpaced() -> Self {
        Self {
            frame_share: 0.0,
            burst_datagrams: 1,
        }
    }

    /// Whether frames are spread at all.
    pub fn is_paced(&self) -> bool {
        self.frame_share > 0.0
    }

    /// The window one frame is spread over: `frame_share × frame_interval`, with the interval
    /// capped at [`MAX_FRAME_INTERVAL`] so that a stalled frame clock cannot stretch a frame
    /// over seconds.
    pub fn window(&self, frame_interval: Duration) -> Duration {
        let interval = frame_interval.min(MAX_FRAME_INTERVAL);
        // f64 keeps nanosecond precision for any interval up to MAX_FRAME_INTERVAL.
        Duration::from_nanos((interval.as_nanos() as f64 * f64::from(self.frame_share)) as u64)
    }

    /// The bursts for a frame of `datagrams` datagrams that is ready at `now`.
    ///
    /// Guarantees (property-tested below): the bursts cover `0..datagrams` exactly once, in
    /// order, none is empty, none is longer than `burst_datagrams` when paced, `send_at` never
    /// decreases, and every `send_at` lies in `[now, now + window)` (`== now` when the window
    /// is zero).
    pub fn schedule(&self, now: Instant, frame_interval: Duration, datagrams: usize) -> Schedule {
        let (burst, window) = if self.is_paced() {
            (self.burst_datagrams, self.window(frame_interval))
        } else {
            (datagrams.max(1), Duration::ZERO)
        };
        Schedule {
            start: now,
            window_ns: window.as_nanos(),
            total: datagrams,
            burst,
            bursts: datagrams.div_ceil(burst),
            next: 0,
        }
    }
}

/// Iterator over one frame's [`Burst`]s, in send order. Allocates nothing.
#[derive(Debug, Clone)]
pub struct Schedule {
    start: Instant,
    window_ns: u128,
    total: usize,
    burst: usize,
    bursts: usize,
    next: usize,
}

impl Iterator for Schedule {
    type Item = Burst;

    fn next(&mut self) -> Option<Burst> {
        if self.next >= self.bursts {
            return None;
        }
        let i = self.next;
        self.next += 1;
        let first = i * self.burst;
        let end = (first + self.burst).min(self.total);
        // i < bursts, so the offset is strictly inside the window (or 0 for an empty window).
        let offset_ns = self.window_ns * i as u128 / self.bursts as u128;
        let offset = Duration::from_nanos(u64::try_from(offset_ns).unwrap_or(u64::MAX));
        Some(Burst {
            send_at: self.start + offset,
            datagrams: first..end,
        })
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.bursts - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for Schedule {}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn cfg(frame_share: f32, burst_datagrams: usize) -> PacingConfig {
        PacingConfig {
            frame_share,
            burst_datagrams,
        }
    }

    #[test]
    fn rejects_bad_config() {
        assert_eq!(Pacer::new(&cfg(1.5, 8)), Err(PacerError::FrameShare(1.5)));
        assert!(matches!(
            Pacer::new(&cfg(f32::NAN, 8)),
            Err(PacerError::FrameShare(_))
        ));
        assert_eq!(Pacer::new(&cfg(-0.1, 8)), Err(PacerError::FrameShare(-0.1)));
        assert_eq!(Pacer::new(&cfg(0.5, 0)), Err(PacerError::BurstSize));
        assert!(Pacer::new(&cfg(0.0, 1)).is_ok());
        assert!(Pacer::new(&cfg(1.0, 1)).is_ok());
    }

    #[test]
    fn unpaced_is_one_burst_now() {
        let now = Instant::now();
        let p = Pacer::new(&cfg(0.0, 4)).expect("valid");
        let b: Vec<_> = p.schedule(now, Duration::from_millis(16), 10).collect();
        assert_eq!(
            b,
            vec![Burst {
                send_at: now,
                datagrams: 0..10
            }]
        );
        assert_eq!(
            Pacer::unpaced()
                .schedule(now, Duration::from_millis(16), 0)
                .count(),
            0
        );
    }

    /// 60 fps, half the interval, 10 datagrams in bursts of 4: offsets 0, 1/3, 2/3 of 8.333 ms.
    #[test]
    fn known_schedule() {
        let now = Instant::now();
        let p = Pacer::new(&cfg(0.5, 4)).expect("valid");
        let b: Vec<_> = p
            .schedule(now, Duration::from_nanos(16_666_666), 10)
            .collect();
        assert_eq!(b.len(), 3);
        assert_eq!(
            b[0],
            Burst {
                send_at: now,
                datagrams: 0..4
            }
        );
        assert_eq!(b[1].datagrams, 4..8);
        assert_eq!(b[1].send_at - now, Duration::from_nanos(2_777_777));
        assert_eq!(b[2].datagrams, 8..10);
        assert_eq!(b[2].send_at - now, Duration::from_nanos(5_555_555));
    }

    #[test]
    fn window_is_capped() {
        let p = Pacer::new(&cfg(1.0, 4)).expect("valid");
        assert_eq!(p.window(Duration::from_secs(5)), MAX_FRAME_INTERVAL);
    }

    proptest! {
        #[test]
        fn schedule_properties(
            share in prop_oneof![Just(0.0f32), 0.0f32..=1.0],
            burst in 1usize..100,
            n in 0usize..5000,
            interval_us in 0u64..200_000,
        ) {
            let now = Instant::now();
            let p = Pacer::new(&cfg(share, burst)).expect("valid by construction");
            let interval = Duration::from_micros(interval_us);
            let window = p.window(interval);
            let sched = p.schedule(now, interval, n);
            let expected_len = sched.len();
            let bursts: Vec<Burst> = sched.collect();
            prop_assert_eq!(bursts.len(), expected_len);
            let mut next = 0usize;
            let mut last = now;
            for b in &bursts {
                prop_assert_eq!(b.datagrams.start, next, "contiguous and in order");
                prop_assert!(b.datagrams.end > b.datagrams.start, "no empty burst");
                if p.is_paced() {
                    prop_assert!(b.datagrams.len() <= burst);
                }
                prop_assert!(b.send_at >= last, "monotone");
                prop_assert!(b.send_at >= now);
                if window.is_zero() {
                    prop_assert_eq!(b.send_at, now);
                } else {
                    prop_assert!(b.send_at < now + window, "inside the window");
                }
                next = b.datagrams.end;
                last = b.send_at;
            }
            prop_assert_eq!(next, n, "every datagram covered exactly once");
        }
    }
}
