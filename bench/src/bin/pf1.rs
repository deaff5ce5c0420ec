//! punktfunk/1 goodput on loopback against the io_uring + GSO send ceiling, in the same run.
//!
//! `cargo run --release -p punktfunk-bench --bin pf1 [-- SECONDS LOSS SIZE_MIB…]`
//! (defaults: 3 s, 0.01, frames of 1 2 4 MiB). Environment knobs for experiments:
//! `PF1_BATCH` (recvmmsg batch), `PF1_CORES=tx,rx` (pin the threads), `PF1_NO_CEILING=1`,
//! `PF1_SHARD` (shard length), `PF1_MULTISHOT=1` (io_uring multishot receive).

use std::time::Duration;

use punktfunk_bench::pf1::{GoodputConfig, PARITY_PERCENT, goodput_with};
use punktfunk_engine::io::{Caps, RecvPathPreference};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let seconds: f64 = args.first().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let loss: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.01);
    let sizes: Vec<f64> = match args.get(2..) {
        Some(s) if !s.is_empty() => s.iter().filter_map(|v| v.parse().ok()).collect(),
        _ => vec![1.0, 2.0, 4.0],
    };
    let defaults = GoodputConfig::default();
    let env = |k: &str| std::env::var(k).ok();
    let recv_batch = env("PF1_BATCH")
        .and_then(|v| v.parse().ok())
        .unwrap_or(defaults.recv_batch);
    let cores = env("PF1_CORES").and_then(|v| {
        let (a, b) = v.split_once(',')?;
        Some((a.parse().ok()?, b.parse().ok()?))
    });
    let caps = Caps::probe();
    println!(
        "punktfunk/1 loopback goodput: GF(2^16) FEC {PARITY_PERCENT} %, AES-128-GCM, \
         {:.1} % injected loss, {seconds} s per size, recv batch {recv_batch}, cores {cores:?}",
        loss * 100.0
    );
    for mib in sizes {
        let r = goodput_with(
            &caps,
            &GoodputConfig {
                frame_len: (mib * (1 << 20) as f64) as usize,
                duration: Duration::from_secs_f64(seconds),
                loss,
                recv_batch,
                cores,
                ceiling: env("PF1_NO_CEILING").is_none(),
                recv_path: if env("PF1_MULTISHOT").is_some() {
                    RecvPathPreference::UringMultishot
                } else {
                    RecvPathPreference::Auto
                },
                shard_len: env("PF1_SHARD")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(defaults.shard_len),
            },
        );
        println!("{mib} MiB frames: {r}");
    }
}
