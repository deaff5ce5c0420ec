//! Headline figures of punktfunk, each against a baseline measured in the same run.
//!
//! `cargo run --release -p punktfunk-bench --bin report [-- --no-write]`
//!
//! Prints one `NAME ours=… baseline=… ratio=…` line per figure and rewrites
//! docs/benchmarks.md (unless `--no-write`).

use std::time::Duration;

use punktfunk_bench::fec::{Gf8Recovery, Gf8Workload};
use punktfunk_bench::{Line, compare, us};
use punktfunk_engine::fec::Kernel;

const SHARD: usize = 1408;

fn gf8_encode(kernel: Kernel, name: &str) -> Line {
    let mut w = Gf8Workload::new(100, 20, SHARD, kernel);
    let mut b = Gf8Workload::new(100, 20, SHARD, kernel);
    let (ours, base) = compare(
        || w.encode_ours(),
        || b.encode_baseline(),
        Duration::from_millis(100),
        9,
    );
    Line {
        name: name.into(),
        ours: us(ours),
        baseline: us(base),
        ratio: base.as_secs_f64() / ours.as_secs_f64(),
        note: format!(
            "100 data + 20 parity x {SHARD} B, our `{kernel}` kernel vs reed-solomon-erasure 6 \
             (simd-accel); time per block"
        ),
    }
}

fn gf8_reconstruct(kernel: Kernel, name: &str) -> Line {
    let mut r = Gf8Recovery::new(100, 20, SHARD, 20, kernel);
    let data = Gf8Workload::new(100, 20, SHARD, kernel).data;
    let mut rb = Gf8Recovery::new(100, 20, SHARD, 20, kernel);
    let (ours, base) = compare(
        || r.recover_ours(),
        || rb.recover_baseline(),
        Duration::from_millis(100),
        9,
    );
    assert!(
        r.verify(&data) && rb.verify(&data),
        "recovery produced wrong data"
    );
    Line {
        name: name.into(),
        ours: us(ours),
        baseline: us(base),
        ratio: base.as_secs_f64() / ours.as_secs_f64(),
        note: format!(
            "100+20 x {SHARD} B with 20 data shards lost, our `{kernel}` kernel vs \
             reed-solomon-erasure reconstruct_data"
        ),
    }
}

fn main() {
    let best = Kernel::detect();
    let mut lines = vec![
        gf8_encode(best, "gf8-encode"),
        gf8_reconstruct(best, "gf8-reconstruct"),
    ];
    for k in Kernel::available().filter(|&k| k != best) {
        lines.push(gf8_encode(k, &format!("gf8-encode-{k}")));
    }
    for l in &lines {
        println!("{l}");
    }
}
