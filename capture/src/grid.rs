//! The frame grid a capture source keeps (pure): one frame every `interval`, on the grid
//! while the source keeps up, restarted (not burst) after a stall.
//!
//! ```text
//!  due₀ = first poll      due₁ = due₀ + i      due₂ = due₁ + i  …
//!  a poll later than dueₙ + i (a stall) restarts the grid at now + i: no catch-up burst
//! ```
//!
//! The sources (test pattern, desktop capture, PipeWire node) ask [`FrameGrid::wait`] on
//! every poll and sleep (briefly, so a stop request stays visible) while a frame is not due;
//! when it is, [`FrameGrid::advance`] books the next slot. Time comes in as `now`.
#![forbid(unsafe_code)]

use std::time::{Duration, Instant};

/// A source's frame schedule (see the module docs).
#[derive(Debug, Clone, Copy)]
pub struct FrameGrid {
    interval: Duration,
    next_due: Option<Instant>,
}

impl FrameGrid {
    /// One frame per `1/fps` s (`fps` 0 counts as 1).
    pub fn new(fps: u32) -> Self {
        Self {
            interval: Self::interval_of(fps),
            next_due: None,
        }
    }

    fn interval_of(fps: u32) -> Duration {
        Duration::from_secs(1) / fps.max(1)
    }

    /// The interval between frames.
    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The interval as the frame metadata carries it (ns, saturating).
    pub fn interval_ns(&self) -> u32 {
        u32::try_from(self.interval.as_nanos()).unwrap_or(u32::MAX)
    }

    /// A new rate; it applies to the gap after the next frame.
    pub fn set_fps(&mut self, fps: u32) {
        self.interval = Self::interval_of(fps);
    }

    /// How long until the next frame is due (`None`: due now).
    pub fn wait(&self, now: Instant) -> Option<Duration> {
        self.next_due.filter(|due| now < *due).map(|due| due - now)
    }

    /// Books the slot after the frame taken at `now`: the next grid point, or `now +
    /// interval` after a stall of more than one interval.
    pub fn advance(&mut self, now: Instant) {
        self.next_due = Some(match self.next_due {
            Some(due) if now < due + self.interval => due + self.interval,
            _ => now + self.interval,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stays_on_the_grid_and_restarts_after_a_stall() {
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let mut g = FrameGrid::new(50); // 20 ms
        assert_eq!(g.wait(t0), None, "the first frame is due at once");
        g.advance(t0);
        assert_eq!(g.wait(t0 + ms(5)), Some(ms(15)));
        // Taken 3 ms late: the next is still on the grid (40 ms), not 43.
        g.advance(t0 + ms(23));
        assert_eq!(g.wait(t0 + ms(23)), Some(ms(17)));
        // A 100 ms stall: restart at now + 20, no burst of missed frames.
        g.advance(t0 + ms(140));
        assert_eq!(g.wait(t0 + ms(141)), Some(ms(19)));
        g.set_fps(100);
        assert_eq!(g.interval(), ms(10));
        assert_eq!(g.interval_ns(), 10_000_000);
        assert_eq!(FrameGrid::new(0).interval(), Duration::from_secs(1));
    }
}
