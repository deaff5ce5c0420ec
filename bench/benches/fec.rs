//! FEC group: GF(2^8) encode/recover per kernel against reed-solomon-erasure, and GF(2^16).
//!
//! `cargo bench -p punktfunk-bench --bench fec`

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_bench::fec::{Gf8Recovery, Gf8Workload};
use punktfunk_bench::random_shards;
use punktfunk_engine::fec::{FecEngine, Kernel, gf16::Gf16Code};

const SHARD: usize = 1408;

fn gf8(c: &mut Criterion) {
    for (data, parity) in [(100, 20), (200, 55)] {
        let mut g = c.benchmark_group(format!("fec-gf8-encode-{data}+{parity}"));
        g.throughput(Throughput::Bytes((data * SHARD) as u64));
        for k in Kernel::available() {
            let mut w = Gf8Workload::new(data, parity, SHARD, k);
            g.bench_function(BenchmarkId::new("ours", k), |b| b.iter(|| w.encode_ours()));
        }
        let mut w = Gf8Workload::new(data, parity, SHARD, Kernel::Scalar);
        g.bench_function("reed-solomon-erasure", |b| b.iter(|| w.encode_baseline()));
        g.finish();

        let lost = parity;
        let mut g = c.benchmark_group(format!("fec-gf8-recover-{data}+{parity}-lost{lost}"));
        g.throughput(Throughput::Bytes((data * SHARD) as u64));
        for k in Kernel::available().filter(|&k| k != Kernel::Scalar) {
            let mut r = Gf8Recovery::new(data, parity, SHARD, lost, k);
            g.bench_function(BenchmarkId::new("ours", k), |b| b.iter(|| r.recover_ours()));
        }
        let mut r = Gf8Recovery::new(data, parity, SHARD, lost, Kernel::Scalar);
        g.bench_function("reed-solomon-erasure", |b| b.iter(|| r.recover_baseline()));
        g.finish();
    }
}

fn gf16(c: &mut Criterion) {
    let (data, parity) = (1000, 200);
    let shards = random_shards(data, SHARD, 7);
    let mut parity_bufs = vec![vec![0u8; SHARD]; parity];
    let mut code = Gf16Code::new(data, parity).expect("1000+200 is supported");
    let mut g = c.benchmark_group("fec-gf16-1000+200");
    g.throughput(Throughput::Bytes((data * SHARD) as u64));
    g.bench_function("encode", |b| {
        b.iter(|| {
            let ins: Vec<&[u8]> = shards.iter().map(Vec::as_slice).collect();
            let mut outs: Vec<&mut [u8]> = parity_bufs.iter_mut().map(Vec::as_mut_slice).collect();
            code.encode(&ins, &mut outs).expect("valid shapes");
        })
    });
    let mut all: Vec<Vec<u8>> = shards.iter().chain(&parity_bufs).cloned().collect();
    g.bench_function("recover-200-lost", |b| {
        b.iter(|| {
            let mut present = vec![true; data + parity];
            for i in (0..data).step_by(5) {
                present[i] = false;
            }
            let mut refs: Vec<&mut [u8]> = all.iter_mut().map(Vec::as_mut_slice).collect();
            code.reconstruct(&mut refs, &mut present)
                .expect("enough parity");
        })
    });
    g.finish();
}

criterion_group!(benches, gf8, gf16);
criterion_main!(benches);
