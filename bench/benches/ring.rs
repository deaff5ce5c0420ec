//! Ring group: hand-off of boxed items between two threads through our stage ring (crossbeam
//! ArrayQueue underneath, yielding while empty/full) vs `std::sync::mpsc::sync_channel` of the same depth.
//!
//! `cargo bench -p punktfunk-bench --bench ring`

use std::sync::mpsc::sync_channel;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_engine::config::Backpressure;
use punktfunk_engine::ring::{self, Pop, Push};

const ITEMS: u64 = 10_000;

fn handoff(c: &mut Criterion) {
    let mut g = c.benchmark_group("ring-handoff");
    g.throughput(Throughput::Elements(ITEMS));
    g.bench_function("stage-ring-depth4", |b| {
        b.iter(|| {
            let (mut tx, mut rx) =
                ring::bounded::<Box<u64>>(4, Backpressure::Block).expect("depth 4");
            let consumer = std::thread::spawn(move || {
                let mut sum = 0u64;
                loop {
                    match rx.pop() {
                        Pop::Item(v) => sum += *v,
                        Pop::Closed => return sum,
                        _ => std::thread::yield_now(),
                    }
                }
            });
            for i in 0..ITEMS {
                let mut item = Box::new(i);
                while let Push::Full(back) = tx.try_push(item) {
                    item = back;
                    std::thread::yield_now();
                }
            }
            drop(tx);
            consumer.join().expect("consumer")
        })
    });
    g.bench_function("std-sync-channel-depth4", |b| {
        b.iter(|| {
            let (tx, rx) = sync_channel::<Box<u64>>(4);
            let consumer = std::thread::spawn(move || rx.iter().map(|v| *v).sum::<u64>());
            for i in 0..ITEMS {
                tx.send(Box::new(i)).expect("consumer alive");
            }
            drop(tx);
            consumer.join().expect("consumer")
        })
    });
    g.finish();
}

criterion_group!(benches, handoff);
criterion_main!(benches);
