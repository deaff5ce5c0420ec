//! The impairment relay's sans-IO core: which packets a link drops, and when it delivers the
//! others (docs/sweeps.md "Impairment relay").
//!
//! ```text
//!  packet in at now ─► loss model ──drop──► counted
//!                          │ keep
//!                          ▼
//!        release = now + delay + U(0, jitter), never before the previous release (FIFO),
//!        or, for a reordered packet, + reorder_gap outside that order
//!                          ▼
//!        queue (min-heap by release) ─► pop_due(now) ─► packet out
//! ```
//!
//! Loss models: none, Bernoulli (each packet lost with `p`), Gilbert–Elliott (a two-state
//! Markov chain: good → bad with `p_gb`, bad → good with `p_bg` per packet; a packet is lost
//! with `loss_good` in the good state and `loss_bad` in the bad one; mean burst length in the
//! bad state `1 / p_bg`, long-run loss `π_bad · loss_bad + π_good · loss_good` with
//! `π_bad = p_gb / (p_gb + p_bg)`).
//!
//! Pure: the caller passes the time (µs on any monotonic clock) and the bytes; the random
//! numbers come from a seeded xorshift generator, so a run is reproducible. The act around it
//! (a TUN device in the testbed's router namespace) is `crate::sweep::relay`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// How the link loses packets.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LossModel {
    /// No loss.
    None,
    /// Each packet lost independently with probability `p`.
    Bernoulli {
        /// Loss probability, 0..=1.
        p: f64,
    },
    /// Bursty loss (Gilbert–Elliott).
    GilbertElliott {
        /// Per-packet probability of going from the good to the bad state.
        p_gb: f64,
        /// Per-packet probability of going from the bad to the good state.
        p_bg: f64,
        /// Loss probability in the good state.
        loss_good: f64,
        /// Loss probability in the bad state.
        loss_bad: f64,
    },
}

impl LossModel {
    /// A Gilbert–Elliott model with a long-run loss of `loss` (0..1) in bursts of
    /// `mean_burst` packets on average (every packet of a burst lost, none outside one).
    pub fn bursts(loss: f64, mean_burst: f64) -> Self {
        let p_bg = 1.0 / mean_burst.max(1.0);
        let loss = loss.clamp(0.0, 0.99);
        // π_bad = p_gb / (p_gb + p_bg) = loss  ⇒  p_gb = loss · p_bg / (1 − loss).
        let p_gb = loss * p_bg / (1.0 - loss);
        Self::GilbertElliott {
            p_gb,
            p_bg,
            loss_good: 0.0,
            loss_bad: 1.0,
        }
    }

    /// Long-run loss rate of the model.
    pub fn mean_loss(&self) -> f64 {
        match *self {
            Self::None => 0.0,
            Self::Bernoulli { p } => p,
            Self::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => {
                if p_gb + p_bg == 0.0 {
                    return loss_good;
                }
                let bad = p_gb / (p_gb + p_bg);
                bad * loss_bad + (1.0 - bad) * loss_good
            }
        }
    }

    /// Whether the model's probabilities are all within 0..=1.
    pub fn is_valid(&self) -> bool {
        let ok = |p: f64| (0.0..=1.0).contains(&p);
        match *self {
            Self::None => true,
            Self::Bernoulli { p } => ok(p),
            Self::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => ok(p_gb) && ok(p_bg) && ok(loss_good) && ok(loss_bad),
        }
    }
}

/// What the relay does to one direction of a link.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ImpairConfig {
    /// Loss model.
    pub loss: LossModel,
    /// Fixed one-way delay, µs.
    pub delay_us: u64,
    /// Extra delay drawn uniformly from `0..=jitter_us` per packet (order kept).
    pub jitter_us: u64,
    /// Probability that a packet is held back `reorder_gap_us` beyond the FIFO order, so
    /// later packets overtake it.
    pub reorder: f64,
    /// How far a reordered packet falls behind, µs.
    pub reorder_gap_us: u64,
    /// Most packets queued at once; beyond it new packets are dropped (a router's buffer).
    pub queue_limit: usize,
    /// Seed of the generator.
    pub seed: u64,
}

impl Default for ImpairConfig {
    fn default() -> Self {
        Self {
            loss: LossModel::None,
            delay_us: 0,
            jitter_us: 0,
            reorder: 0.0,
            reorder_gap_us: 1_000,
            queue_limit: 65_536,
            seed: 1,
        }
    }
}

/// What happened to a packet handed to [`Impairment::push`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Lost to the loss model.
    Lost,
    /// Dropped: the queue was full.
    Overflow,
    /// Queued for release at this time (µs).
    Queued(u64),
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ImpairStats {
    /// Packets handed in.
    pub packets: u64,
    /// Lost to the loss model.
    pub lost: u64,
    /// Dropped at a full queue.
    pub overflow: u64,
    /// Held back out of order.
    pub reordered: u64,
    /// Released.
    pub released: u64,
    /// Loss bursts (runs of consecutive lost packets).
    pub bursts: u64,
}

/// One direction of an impaired link.
#[derive(Debug)]
pub struct Impairment {
    config: ImpairConfig,
    rng: u64,
    bad: bool,
    last_lost: bool,
    last_release: u64,
    seq: u64,
    queue: BinaryHeap<Reverse<(u64, u64, usize)>>,
    slots: Vec<Vec<u8>>,
    free: Vec<usize>,
    stats: ImpairStats,
}

impl Impairment {
    /// A link doing what `config` says; `None` if a probability is outside 0..=1.
    pub fn new(config: ImpairConfig) -> Option<Self> {
        let p_ok = (0.0..=1.0).contains(&config.reorder);
        (config.loss.is_valid() && p_ok && config.queue_limit > 0).then(|| Self {
            config,
            // xorshift64* must not start at zero.
            rng: config.seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            bad: false,
            last_lost: false,
            last_release: 0,
            seq: 0,
            queue: BinaryHeap::new(),
            slots: Vec::new(),
            free: Vec::new(),
            stats: ImpairStats::default(),
        })
    }

    /// A uniform number in 0..1.
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        let r = self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D);
        (r >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Decides whether the next packet is lost (advancing the loss model's state).
    fn lose(&mut self) -> bool {
        match self.config.loss {
            LossModel::None => false,
            LossModel::Bernoulli { p } => self.uniform() < p,
            LossModel::GilbertElliott {
                p_gb,
                p_bg,
                loss_good,
                loss_bad,
            } => {
                let flip = self.uniform();
                self.bad = if self.bad { flip >= p_bg } else { flip < p_gb };
                let p = if self.bad { loss_bad } else { loss_good };
                self.uniform() < p
            }
        }
    }

    /// Hands in `packet` arriving at `now_us`.
    pub fn push(&mut self, now_us: u64, packet: &[u8]) -> Verdict {
        self.stats.packets += 1;
        if self.lose() {
            self.stats.lost += 1;
            self.stats.bursts += u64::from(!self.last_lost);
            self.last_lost = true;
            return Verdict::Lost;
        }
        self.last_lost = false;
        if self.queue.len() >= self.config.queue_limit {
            self.stats.overflow += 1;
            return Verdict::Overflow;
        }
        let jitter = if self.config.jitter_us > 0 {
            (self.uniform() * (self.config.jitter_us + 1) as f64) as u64
        } else {
            0
        };
        let mut release = now_us + self.config.delay_us + jitter.min(self.config.jitter_us);
        if self.config.reorder > 0.0 && self.uniform() < self.config.reorder {
            self.stats.reordered += 1;
            release = release.max(self.last_release) + self.config.reorder_gap_us;
        } else {
            release = release.max(self.last_release);
            self.last_release = release;
        }
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i].clear();
                self.slots[i].extend_from_slice(packet);
                i
            }
            None => {
                self.slots.push(packet.to_vec());
                self.slots.len() - 1
            }
        };
        self.seq += 1;
        self.queue.push(Reverse((release, self.seq, slot)));
        Verdict::Queued(release)
    }

    /// When the next queued packet is due (µs), if any.
    pub fn next_release(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse((t, _, _))| *t)
    }

    /// The next packet due at `now_us`, copied into `out` (cleared first); false when none is
    /// due.
    pub fn pop_due(&mut self, now_us: u64, out: &mut Vec<u8>) -> bool {
        match self.queue.peek() {
            Some(Reverse((t, _, _))) if *t <= now_us => {}
            _ => return false,
        }
        let Some(Reverse((_, _, slot))) = self.queue.pop() else {
            return false;
        };
        out.clear();
        out.extend_from_slice(&self.slots[slot]);
        self.free.push(slot);
        self.stats.released += 1;
        true
    }

    /// Packets waiting.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(loss: LossModel) -> Impairment {
        Impairment::new(ImpairConfig {
            loss,
            seed: 7,
            ..ImpairConfig::default()
        })
        .unwrap()
    }

    /// Pushes `n` packets 1 µs apart and returns the loss pattern.
    fn pattern(l: &mut Impairment, n: usize) -> Vec<bool> {
        (0..n)
            .map(|i| l.push(i as u64, &[0]) == Verdict::Lost)
            .collect()
    }

    #[test]
    fn bernoulli_loses_its_rate() {
        let mut l = link(LossModel::Bernoulli { p: 0.05 });
        let lost = pattern(&mut l, 200_000).iter().filter(|x| **x).count();
        let rate = lost as f64 / 200_000.0;
        assert!((rate - 0.05).abs() < 0.003, "{rate}");
        assert_eq!(l.stats().lost as usize, lost);
    }

    #[test]
    fn gilbert_elliott_loses_in_bursts_of_the_asked_length() {
        let model = LossModel::bursts(0.05, 4.0);
        assert!((model.mean_loss() - 0.05).abs() < 1e-12);
        let mut l = link(model);
        let p = pattern(&mut l, 400_000);
        let lost = p.iter().filter(|x| **x).count();
        let rate = lost as f64 / p.len() as f64;
        assert!((rate - 0.05).abs() < 0.005, "{rate}");
        let bursts = l.stats().bursts as f64;
        let mean_burst = lost as f64 / bursts;
        assert!((mean_burst - 4.0).abs() < 0.3, "{mean_burst}");
        // Bernoulli at the same rate has bursts of ~1.05.
        let mut b = link(LossModel::Bernoulli { p: 0.05 });
        let lb = pattern(&mut b, 400_000).iter().filter(|x| **x).count() as f64;
        assert!(lb / (b.stats().bursts as f64) < 1.2);
    }

    #[test]
    fn same_seed_same_losses() {
        let model = LossModel::bursts(0.1, 3.0);
        assert_eq!(
            pattern(&mut link(model), 5000),
            pattern(&mut link(model), 5000)
        );
        let mut other = Impairment::new(ImpairConfig {
            loss: model,
            seed: 8,
            ..ImpairConfig::default()
        })
        .unwrap();
        assert_ne!(pattern(&mut link(model), 5000), pattern(&mut other, 5000));
    }

    #[test]
    fn delay_and_jitter_keep_order() {
        let mut l = Impairment::new(ImpairConfig {
            delay_us: 2_000,
            jitter_us: 500,
            ..ImpairConfig::default()
        })
        .unwrap();
        for i in 0..1000u64 {
            match l.push(i * 10, &i.to_le_bytes()) {
                Verdict::Queued(t) => {
                    assert!((i * 10 + 2_000..=i * 10 + 2_500 + 10_000).contains(&t))
                }
                v => panic!("{v:?}"),
            }
        }
        assert_eq!(l.next_release().map(|t| t >= 2_000), Some(true));
        let mut out = Vec::new();
        assert!(!l.pop_due(1_999, &mut out), "nothing before the delay");
        let mut got = Vec::new();
        let mut now = 0;
        while l.queued() > 0 {
            now += 100;
            while l.pop_due(now, &mut out) {
                got.push(u64::from_le_bytes(out[..8].try_into().unwrap()));
            }
        }
        assert_eq!(
            got,
            (0..1000).collect::<Vec<_>>(),
            "jitter alone never reorders"
        );
        assert_eq!(l.stats().released, 1000);
    }

    #[test]
    fn reordering_lets_later_packets_overtake() {
        let mut l = Impairment::new(ImpairConfig {
            reorder: 0.1,
            reorder_gap_us: 50,
            ..ImpairConfig::default()
        })
        .unwrap();
        for i in 0..10_000u64 {
            l.push(i * 10, &i.to_le_bytes());
        }
        let mut out = Vec::new();
        let mut got = Vec::new();
        while l.pop_due(u64::MAX, &mut out) {
            got.push(u64::from_le_bytes(out[..8].try_into().unwrap()));
        }
        assert_eq!(got.len(), 10_000);
        let late = got.windows(2).filter(|w| w[1] < w[0]).count();
        let r = l.stats().reordered as f64 / 10_000.0;
        assert!((r - 0.1).abs() < 0.02, "{r}");
        assert!(late > 500, "{late} packets arrived after a later one");
    }

    #[test]
    fn a_full_queue_drops_and_buffers_are_reused() {
        let mut l = Impairment::new(ImpairConfig {
            delay_us: 1_000,
            queue_limit: 4,
            ..ImpairConfig::default()
        })
        .unwrap();
        let v: Vec<Verdict> = (0..6).map(|i| l.push(i, &[1, 2, 3])).collect();
        assert_eq!(v[4], Verdict::Overflow);
        assert_eq!(l.stats().overflow, 2);
        let mut out = Vec::new();
        while l.pop_due(10_000, &mut out) {}
        for i in 0..4 {
            l.push(20_000 + i, &[9]);
        }
        assert_eq!(l.slots.len(), 4, "slots reused, not grown");
    }

    #[test]
    fn bad_probabilities_are_refused() {
        assert!(
            Impairment::new(ImpairConfig {
                loss: LossModel::Bernoulli { p: 1.5 },
                ..ImpairConfig::default()
            })
            .is_none()
        );
        assert!(
            Impairment::new(ImpairConfig {
                reorder: -0.1,
                ..ImpairConfig::default()
            })
            .is_none()
        );
        assert!(
            !LossModel::GilbertElliott {
                p_gb: 0.1,
                p_bg: f64::NAN,
                loss_good: 0.0,
                loss_bad: 1.0
            }
            .is_valid()
        );
    }
}
