//! Adaptive FEC: how much parity a block needs for the loss the receiver reports.
//!
//! A fixed percentage is wrong at both ends: a 10-packet frame at 20 % gets 2 parity shards,
//! which 5 % random loss defeats about once in 50 frames, while a 200-packet block at the same
//! loss needs only ~10 % to be safe. So parity is chosen per block: the smallest `r` for which
//!
//! ```text
//! P[ Binomial(ds + r, p) > r ] ≤ target        (the block is lost only if more than r of its
//!                                                ds + r packets are lost)
//! ```
//!
//! with `p` the loss rate estimated from the receiver's reports ([`LossEstimator`]), then
//! bounded below by the configured floor percentage and above by the code's shard limit.
//!
//! Pure: reports and block sizes come in, numbers go out.

/// Probability that a block is lost that the parity choice aims for.
pub const DEFAULT_TARGET: f64 = 1e-3;

/// `P[Binomial(n, p) > r]`, computed by summing the lower tail (n ≤ 65535).
pub fn binomial_tail_above(n: usize, p: f64, r: usize) -> f64 {
    if r >= n || p <= 0.0 {
        return 0.0;
    }
    if p >= 1.0 {
        return 1.0;
    }
    // P[X = 0] = (1-p)^n; P[X = k+1] = P[X = k] · (n-k)/(k+1) · p/(1-p). Log domain for the
    // first term so large n does not underflow before the ratio climbs.
    let q = 1.0 - p;
    let mut log_term = n as f64 * q.ln();
    let ratio = (p / q).ln();
    let mut below = 0.0f64;
    for k in 0..=r {
        below += log_term.exp();
        log_term += ((n - k) as f64).ln() - ((k + 1) as f64).ln() + ratio;
    }
    (1.0 - below).clamp(0.0, 1.0)
}

/// The smallest parity count `r ≤ max_parity` with `P[Bin(data + r, p) > r] ≤ target`, or
/// `max_parity` if none is small enough.
pub fn parity_for_loss(data: usize, p: f64, target: f64, max_parity: usize) -> usize {
    if p <= 0.0 {
        return 0;
    }
    // The expected loss is a lower bound; start there.
    let mut r = ((data as f64 * p) as usize).min(max_parity);
    while r < max_parity && binomial_tail_above(data + r, p, r) > target {
        r += 1;
    }
    r
}

/// Estimates the packet loss rate from the receiver's per-frame reports, with exponential
/// forgetting (each report's weight decays by `decay` per later report) so the estimate follows
/// a changing link within a few dozen frames.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossEstimator {
    lost: f64,
    seen: f64,
    decay: f64,
    reports: u64,
}

impl Default for LossEstimator {
    fn default() -> Self {
        Self::new(0.98)
    }
}

impl LossEstimator {
    /// An estimator with per-report `decay` in (0, 1) (0.98: a report counts half after ~35
    /// more).
    pub fn new(decay: f64) -> Self {
        Self {
            lost: 0.0,
            seen: 0.0,
            decay: decay.clamp(0.5, 0.9999),
            reports: 0,
        }
    }

    /// One report: `lost` packets missing out of `lost + received` the receiver accounted for.
    pub fn record(&mut self, lost: u32, received: u32) {
        self.lost = self.lost * self.decay + f64::from(lost);
        self.seen = self.seen * self.decay + f64::from(lost) + f64::from(received);
        self.reports += 1;
    }

    /// Reports so far.
    pub fn reports(&self) -> u64 {
        self.reports
    }

    /// The loss estimate, made conservative while little has been seen: the observed ratio
    /// plus one standard error, so a handful of clean reports does not claim a perfect link.
    pub fn estimate(&self) -> f64 {
        if self.seen < 1.0 {
            return 0.0;
        }
        let p = self.lost / self.seen;
        (p + (p.max(1e-3) * (1.0 - p) / self.seen).sqrt()).clamp(0.0, 0.5)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_matches_direct_sums() {
        // Bin(12, 0.05): P[X > 2] = 1 - (0.95^12 + 12·0.05·0.95^11 + 66·0.05²·0.95^10)
        let direct = 1.0
            - (0.95f64.powi(12)
                + 12.0 * 0.05 * 0.95f64.powi(11)
                + 66.0 * 0.0025 * 0.95f64.powi(10));
        assert!((binomial_tail_above(12, 0.05, 2) - direct).abs() < 1e-12);
        assert_eq!(binomial_tail_above(10, 0.0, 0), 0.0);
        assert_eq!(binomial_tail_above(10, 0.3, 10), 0.0);
        assert_eq!(binomial_tail_above(10, 1.0, 3), 1.0);
        // Large n stays finite and sensible.
        let t = binomial_tail_above(60_000, 0.01, 700);
        assert!(t > 0.0 && t < 1e-3, "{t}");
    }

    #[test]
    fn parity_grows_with_loss_and_shrinks_relatively_with_block_size() {
        assert_eq!(parity_for_loss(10, 0.0, DEFAULT_TARGET, 100), 0);
        let small = parity_for_loss(10, 0.05, DEFAULT_TARGET, 100);
        let big = parity_for_loss(200, 0.05, DEFAULT_TARGET, 55);
        assert_eq!(
            small, 4,
            "10 packets at 5 % loss need 4 parity for < 0.1 % block loss"
        );
        assert!(binomial_tail_above(10 + small, 0.05, small) <= DEFAULT_TARGET);
        assert!(binomial_tail_above(10 + small - 1, 0.05, small - 1) > DEFAULT_TARGET);
        assert!((big as f64 / 200.0) < (small as f64 / 10.0));
        assert_eq!(parity_for_loss(200, 0.4, DEFAULT_TARGET, 55), 55, "capped");
        assert!(parity_for_loss(10, 0.10, DEFAULT_TARGET, 100) > small);
    }

    #[test]
    fn estimator_tracks_and_forgets() {
        let mut e = LossEstimator::default();
        assert_eq!(e.estimate(), 0.0);
        for _ in 0..200 {
            e.record(1, 19); // 5 %
        }
        let p = e.estimate();
        assert!((0.05..0.07).contains(&p), "{p}");
        for _ in 0..400 {
            e.record(0, 20);
        }
        assert!(e.estimate() < 0.01, "{}", e.estimate());
        assert_eq!(e.reports(), 600);
    }
}
