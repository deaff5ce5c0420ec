//! Send-path group: one 360 KB frame (256 × 1408-byte datagrams) to a GRO receiver thread on
//! loopback, per kernel path. The per-path table with CPU accounting is in docs/io.md.
//!
//! `cargo bench -p punktfunk-bench --bench send`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_bench::send::Drain;
use punktfunk_engine::config::SendConfig;
use punktfunk_engine::io::{Caps, Pacing, SendPath, UdpSender};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

fn send_paths(c: &mut Criterion) {
    let caps = Caps::probe();
    let frame = vec![0x5au8; 256 * 1408];
    let mut g = c.benchmark_group("send-paths");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    for path in SendPath::ALL {
        if let Err(why) = caps.supports(path) {
            // Listed at the end of scripts/test.sh; fatal under CI=true (docs/testing.md).
            let feature = if path.uses_uring() { "io_uring" } else { "gso" };
            skip::skip(feature, format!("bench send-paths/{path}: {why}"));
            continue;
        }
        let drain = Drain::start(&caps);
        let mut tx = UdpSender::with_path(
            "127.0.0.1:0".parse().expect("literal"),
            path,
            &SendConfig::default(),
            &caps,
        )
        .expect("supported path");
        g.bench_function(BenchmarkId::from_parameter(path), |b| {
            b.iter(|| {
                tx.send_frame(drain.dest, &frame, 1408, Pacing::Immediate)
                    .expect("send")
            })
        });
        drain.finish();
    }
    g.finish();
}

criterion_group!(benches, send_paths);
criterion_main!(benches);
