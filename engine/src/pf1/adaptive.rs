//! Adaptive FEC for punktfunk/1: the client's loss reports → the host's parity percentage.
//!
//! The client counts, per reporting window, the datagrams the host sent (from the packet
//! numbers, which grow by one per datagram, so the count equals the shard counts of the frames
//! sent) and those that arrived ([`super::Pf1Receiver::take_loss_report`]), and sends a
//! [`LossReport`] over the control stream. [`FecController`] turns the reports into a parity
//! percentage in `[min_percent, max_percent]` (default 5–50 %):
//!
//! 1. A [`LossEstimator`] folds each report in with exponential forgetting and adds one
//!    standard error, so a few lucky windows do not claim a clean link.
//! 2. The percentage needed is the binomial-tail parity ([`parity_for_loss`]) of a reference
//!    block of [`FecControllerConfig::reference_data_shards`] data shards at that loss, for a
//!    block-loss target of [`FecControllerConfig::target`]. Larger frames need relatively less
//!    and get it; smaller frames are sized per frame by the sender from the same estimate.
//! 3. Fast attack, slow decay: a higher need is adopted at once, computed from the latest
//!    window alone (at its lower confidence bound) when that is worse than the smoothed
//!    estimate, and a window that lost whole frames adds [`FecControllerConfig::loss_boost`]
//!    points on top, since the estimate was evidently too low; a lower need is approached by
//!    at most
//!    [`FecControllerConfig::decay_step`] points per report, so a short lull does not strip
//!    the protection a bursty link needs.
//!
//! Pure: reports in, numbers out.

use super::Pf1Error;
use crate::fec::adaptive::{LossEstimator, parity_for_loss};

/// Probability of losing a frame that punktfunk/1's parity aims for: one frame in 10 000, about
/// one every three minutes at 60 fps. A lost frame costs a keyframe request, so this is ten
/// times stricter than GameStream's per-block [`crate::fec::adaptive::DEFAULT_TARGET`].
pub const DEFAULT_FRAME_LOSS_TARGET: f64 = 1e-4;

/// Datagrams the host sent and the client received during one reporting window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LossReport {
    /// Datagrams sent in the window (from packet numbers).
    pub expected: u32,
    /// Datagrams that arrived (authenticated, duplicates not counted).
    pub received: u32,
    /// Frames declared unrecoverable in the window.
    pub frames_lost: u32,
}

impl LossReport {
    /// Bytes of [`LossReport::to_bytes`].
    pub const LEN: usize = 12;

    /// Datagrams lost in the window.
    pub fn lost(&self) -> u32 {
        self.expected.saturating_sub(self.received)
    }

    /// Lost share of the expected datagrams (0 for an empty window).
    pub fn loss_ratio(&self) -> f64 {
        if self.expected == 0 {
            0.0
        } else {
            f64::from(self.lost()) / f64::from(self.expected)
        }
    }

    /// A fixed big-endian encoding for the control stream: expected, received, frames lost.
    pub fn to_bytes(&self) -> [u8; Self::LEN] {
        let mut b = [0u8; Self::LEN];
        b[..4].copy_from_slice(&self.expected.to_be_bytes());
        b[4..8].copy_from_slice(&self.received.to_be_bytes());
        b[8..].copy_from_slice(&self.frames_lost.to_be_bytes());
        b
    }

    /// Parses [`LossReport::to_bytes`]; `received` above `expected` is clamped.
    pub fn from_bytes(b: &[u8]) -> Result<Self, Pf1Error> {
        let b: &[u8; Self::LEN] = b
            .try_into()
            .map_err(|_| Pf1Error::Malformed("loss report is not 12 bytes"))?;
        let u = |at: usize| u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        let expected = u(0);
        Ok(Self {
            expected,
            received: u(4).min(expected),
            frames_lost: u(8),
        })
    }
}

/// Settings of the [`FecController`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FecControllerConfig {
    /// Lowest percentage ever chosen (a clean link still gets this much).
    pub min_percent: u8,
    /// Highest percentage ever chosen.
    pub max_percent: u8,
    /// Percentage before the first report.
    pub initial_percent: u8,
    /// Block size the percentage is computed for, in data shards.
    pub reference_data_shards: usize,
    /// Probability of losing a frame that the parity aims for.
    pub target: f64,
    /// Weight each report loses per later report (0.5..1).
    pub decay: f64,
    /// Most points the percentage drops per report.
    pub decay_step: u8,
    /// Points added when a report says whole frames were lost.
    pub loss_boost: u8,
}

impl Default for FecControllerConfig {
    fn default() -> Self {
        Self {
            min_percent: 5,
            max_percent: 50,
            initial_percent: 20,
            reference_data_shards: 1024,
            target: DEFAULT_FRAME_LOSS_TARGET,
            decay: 0.9,
            decay_step: 1,
            loss_boost: 5,
        }
    }
}

/// Loss reports → parity percentage (see the module docs).
#[derive(Debug, Clone)]
pub struct FecController {
    config: FecControllerConfig,
    estimator: LossEstimator,
    percent: u8,
}

impl FecController {
    /// A controller for `config`; refuses percentages outside 1–100 or out of order.
    pub fn new(config: FecControllerConfig) -> Result<Self, Pf1Error> {
        let c = &config;
        if c.min_percent == 0 || c.min_percent > c.max_percent || c.max_percent > 100 {
            return Err(Pf1Error::InvalidConfig(
                "FEC percentages must satisfy 1 ≤ min ≤ max ≤ 100",
            ));
        }
        if c.reference_data_shards == 0 {
            return Err(Pf1Error::InvalidConfig(
                "the reference block needs at least one data shard",
            ));
        }
        if !(c.target > 0.0 && c.target < 1.0 && c.decay > 0.0 && c.decay < 1.0) {
            return Err(Pf1Error::InvalidConfig(
                "target and decay must lie strictly between 0 and 1",
            ));
        }
        Ok(Self {
            estimator: LossEstimator::new(c.decay),
            percent: c.initial_percent.clamp(c.min_percent, c.max_percent),
            config,
        })
    }

    /// The current parity percentage.
    pub fn parity_percent(&self) -> u8 {
        self.percent
    }

    /// The current loss estimate (a fraction, 0..=0.5), for the sender's per-frame sizing of
    /// small frames.
    pub fn loss_estimate(&self) -> f64 {
        self.estimator.estimate()
    }

    /// Reports folded in so far.
    pub fn reports(&self) -> u64 {
        self.estimator.reports()
    }

    /// The percentage a loss rate `p` calls for, before clamping and smoothing.
    pub fn percent_for_loss(&self, p: f64) -> u8 {
        let n = self.config.reference_data_shards;
        let r = parity_for_loss(n, p, self.config.target, n);
        ((r * 100).div_ceil(n)).min(100) as u8
    }

    /// Folds in one report and returns the new percentage. Empty windows count as no news.
    pub fn handle_report(&mut self, report: &LossReport) -> u8 {
        if report.expected == 0 {
            return self.percent;
        }
        let c = self.config;
        self.estimator
            .record(report.lost(), report.received.min(report.expected));
        // The smoothed estimate, or the window alone when it is clearly worse: a link that
        // turns bad must not wait for the history to fade. The window's own figure is taken at
        // its lower confidence bound so that a small window's noise does not trigger this.
        let n = f64::from(report.expected);
        let p = report.loss_ratio();
        let p_window = (p - (p * (1.0 - p) / n).sqrt()).max(0.0);
        let mut need = self
            .percent_for_loss(self.estimator.estimate().max(p_window))
            .clamp(c.min_percent, c.max_percent);
        if report.frames_lost > 0 {
            need = need.max(self.percent.saturating_add(c.loss_boost));
        }
        self.percent = if need >= self.percent {
            need
        } else {
            need.max(self.percent.saturating_sub(c.decay_step))
        }
        .clamp(c.min_percent, c.max_percent);
        self.percent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{RngExt, SeedableRng};

    #[test]
    fn report_encoding() {
        let r = LossReport {
            expected: 1000,
            received: 900,
            frames_lost: 2,
        };
        let b = r.to_bytes();
        assert_eq!(b, [0, 0, 3, 0xe8, 0, 0, 3, 0x84, 0, 0, 0, 2]);
        assert_eq!(LossReport::from_bytes(&b), Ok(r));
        assert_eq!(r.lost(), 100);
        assert!((r.loss_ratio() - 0.1).abs() < 1e-12);
        assert!(LossReport::from_bytes(&b[..11]).is_err());
        let weird = LossReport::from_bytes(&[0, 0, 0, 1, 0, 0, 0, 9, 0, 0, 0, 0]).unwrap();
        assert_eq!((weird.received, weird.lost()), (1, 0));
        assert_eq!(LossReport::default().loss_ratio(), 0.0);
    }

    #[test]
    fn config_is_checked() {
        let bad = |f: &dyn Fn(&mut FecControllerConfig)| {
            let mut c = FecControllerConfig::default();
            f(&mut c);
            FecController::new(c).is_err()
        };
        assert!(bad(&|c| c.min_percent = 0));
        assert!(bad(&|c| c.min_percent = 60));
        assert!(bad(&|c| c.max_percent = 101));
        assert!(bad(&|c| c.reference_data_shards = 0));
        assert!(bad(&|c| c.target = 0.0));
        assert!(bad(&|c| c.decay = 1.0));
        assert!(!bad(&|_| {}));
    }

    /// Seeded windows of 2000 datagrams at loss `p`.
    fn window(rng: &mut rand_chacha::ChaCha8Rng, p: f64) -> LossReport {
        let expected = 2000;
        let received = (0..expected).filter(|_| rng.random::<f64>() >= p).count() as u32;
        LossReport {
            expected,
            received,
            frames_lost: 0,
        }
    }

    #[test]
    fn converges_under_steady_loss_and_decays_when_clean() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(10);
        let mut c = FecController::new(FecControllerConfig::default()).unwrap();
        assert_eq!(c.parity_percent(), 20);
        for _ in 0..100 {
            c.handle_report(&window(&mut rng, 0.10));
        }
        let at_10 = c.parity_percent();
        // 1024 data shards at 10 % loss need ~14 % for a 1e-4 frame-loss target.
        assert!((13..=18).contains(&at_10), "{at_10}");
        for _ in 0..20 {
            c.handle_report(&window(&mut rng, 0.10));
            assert!(c.parity_percent().abs_diff(at_10) <= 2, "steady");
        }
        // Clean link: decays one point per report down to the floor.
        for _ in 0..100 {
            c.handle_report(&window(&mut rng, 0.0));
        }
        assert_eq!(c.parity_percent(), 5);
        // Heavy loss: up at once, capped at 50.
        c.handle_report(&window(&mut rng, 0.45));
        assert_eq!(c.parity_percent(), 50);
    }

    #[test]
    fn lost_frames_boost_and_empty_windows_are_ignored() {
        let mut c = FecController::new(FecControllerConfig {
            initial_percent: 5,
            ..Default::default()
        })
        .unwrap();
        assert_eq!(c.handle_report(&LossReport::default()), 5);
        assert_eq!(c.reports(), 0);
        let p = c.handle_report(&LossReport {
            expected: 100,
            received: 100,
            frames_lost: 1,
        });
        assert_eq!(p, 10);
    }
}
