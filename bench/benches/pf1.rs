//! punktfunk/1 group: packetize + seal (GF(2^16) FEC 20 %, AES-128-GCM) and reassembly of a
//! 1 MiB frame, without loss and with 1 % of the datagrams lost.
//!
//! `cargo bench -p punktfunk-bench --bench pf1`

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_bench::pf1::Pf1Workload;

fn pf1(c: &mut Criterion) {
    for len in [1usize << 20, 4 << 20] {
        let mut g = c.benchmark_group("pf1");
        g.throughput(Throughput::Bytes(len as u64));
        let mut w = Pf1Workload::new(len);
        g.bench_function(BenchmarkId::new("packetize-seal", len), |b| {
            b.iter(|| w.packetize())
        });
        for (name, every) in [("reassemble", usize::MAX), ("reassemble-1pct-loss", 100)] {
            g.bench_function(BenchmarkId::new(name, len), |b| {
                b.iter_custom(|iters| {
                    let mut t = Duration::ZERO;
                    for _ in 0..iters {
                        // Fresh packet numbers each round (the replay window would refuse
                        // the same datagrams twice); only the reassembly is timed.
                        w.packetize();
                        let start = Instant::now();
                        let n = w.reassemble(|i| i % every == every - 1);
                        t += start.elapsed();
                        assert_eq!(n, len, "frame recovered");
                    }
                    t
                })
            });
        }
        g.finish();
    }
}

criterion_group!(benches, pf1);
criterion_main!(benches);
