//! Support code for punktfunk's benchmarks.
//!
//! Two consumers: the criterion benches under `benches/` (one group per component) and the
//! `report` binary, which measures each headline figure against a baseline **in the same run**
//! and prints `NAME ours=… baseline=… ratio=…` lines (also written to docs/benchmarks.md).
//!
//! Everything here is deterministic given its seed; only the timing differs between runs.

// `unsafe` only in the sweep's TUN device (`sweep::tun`: one ioctl, two fcntl calls).
#![deny(unsafe_code)]

use std::time::{Duration, Instant};

use rand::{RngExt, SeedableRng};

pub mod codecs;
pub mod desktop;
pub mod fec;
pub mod impair;
pub mod pf1;
pub mod send;
pub mod serve;
pub mod sweep;

/// The machine a figure was measured on: CPU model, cores, the CPU flags the FEC and codec
/// paths depend on (docs/benchmarks.md), kernel.
pub fn machine() -> String {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let line = |key: &str| {
        cpuinfo
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split(':').nth(1))
    };
    let cpu = line("model name")
        .map_or("unknown CPU", str::trim)
        .to_owned();
    let flags: Vec<&str> = line("flags")
        .map(|l| {
            l.split_whitespace()
                .filter(|f| ["avx2", "avx512f", "avx512bw", "gfni", "vaes"].contains(f))
                .collect()
        })
        .unwrap_or_default();
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!(
        "{cpu}, {cores} cores, CPU flags {}, Linux {kernel}",
        flags.join(" ")
    )
}

/// A seeded generator for bench inputs.
pub fn rng(seed: u64) -> rand_chacha::ChaCha8Rng {
    rand_chacha::ChaCha8Rng::seed_from_u64(seed)
}

/// `count` shards of `len` random bytes.
pub fn random_shards(count: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
    let mut r = rng(seed);
    (0..count)
        .map(|_| (0..len).map(|_| r.random()).collect())
        .collect()
}

/// Time per call of `f`: the median over `rounds` rounds, each running `f` enough times to
/// last about `round` (at least once), after one warm-up round.
///
/// The median of rounds rejects the rounds a noisy neighbour disturbed better than a mean.
pub fn time_per_call(mut f: impl FnMut(), round: Duration, rounds: usize) -> Duration {
    // Calibrate: how many calls fill a round.
    let start = Instant::now();
    let mut calls = 0u64;
    while start.elapsed() < round / 4 || calls == 0 {
        f();
        calls += 1;
    }
    let per_round = ((calls as f64) * 4.0).max(1.0) as u64;
    let mut samples: Vec<f64> = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        let t = Instant::now();
        for _ in 0..per_round {
            f();
        }
        samples.push(t.elapsed().as_secs_f64() / per_round as f64);
    }
    samples.sort_by(f64::total_cmp);
    Duration::from_secs_f64(samples[samples.len() / 2])
}

/// Interleaves measurements of two closures so that both see the same machine state, and
/// returns their medians `(a, b)`.
pub fn compare(
    mut a: impl FnMut(),
    mut b: impl FnMut(),
    round: Duration,
    rounds: usize,
) -> (Duration, Duration) {
    let mut sa = Vec::with_capacity(rounds);
    let mut sb = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(1) {
        sa.push(time_per_call(&mut a, round, 1));
        sb.push(time_per_call(&mut b, round, 1));
    }
    sa.sort();
    sb.sort();
    (sa[sa.len() / 2], sb[sb.len() / 2])
}

/// One headline line of the report.
#[derive(Debug, Clone)]
pub struct Line {
    /// Short id, e.g. `gf8-encode`.
    pub name: String,
    /// Our figure, formatted with its unit.
    pub ours: String,
    /// The baseline's figure, formatted with its unit.
    pub baseline: String,
    /// Ratio (how many times better ours is; > 1 is better).
    pub ratio: f64,
    /// What was measured and against what.
    pub note: String,
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ours={} baseline={} ratio={:.2}",
            self.name, self.ours, self.baseline, self.ratio
        )
    }
}

/// Formats a duration as microseconds with two decimals.
pub fn us(d: Duration) -> String {
    format!("{:.2}us", d.as_secs_f64() * 1e6)
}
