//! Packetizer group: a 1 MB frame into GameStream video datagrams (with and without FEC,
//! with encryption), against a naive copy of the same bytes into packet slots.
//!
//! `cargo bench -p punktfunk-bench --bench packetize`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_bench::random_shards;
use punktfunk_engine::gamestream::wire::video::{
    ENC_HEADER_LEN, FrameType, VideoCipher, VideoFrame, VideoPacketizer, VideoParams,
};

fn packetize(c: &mut Criterion) {
    let frame = random_shards(1, 1 << 20, 3).remove(0);
    let mut g = c.benchmark_group("packetize-1MB");
    g.throughput(Throughput::Bytes(frame.len() as u64));
    for pct in [0u8, 20] {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: pct,
            min_parity: 2,
        };
        let mut p = VideoPacketizer::new(params).expect("valid params");
        let mut out = vec![0u8; params.max_datagrams(frame.len()) * (params.stride() + 32)];
        let mut index = 0;
        g.bench_function(format!("fec{pct}"), |b| {
            b.iter(|| {
                index += 1;
                let f = VideoFrame {
                    index,
                    rtp_timestamp: index * 1500,
                    frame_type: FrameType::P,
                    host_latency: 0,
                    bitstream: &frame,
                };
                p.packetize(&f, &mut out)
                    .expect("buffer sized by max_datagrams")
            })
        });
        if pct == 20 {
            let mut cipher = VideoCipher::new(&[1; 16]);
            g.bench_function("fec20-encrypted", |b| {
                b.iter(|| {
                    index += 1;
                    let f = VideoFrame {
                        index,
                        rtp_timestamp: 0,
                        frame_type: FrameType::P,
                        host_latency: 0,
                        bitstream: &frame,
                    };
                    let r = p.packetize(&f, &mut out).expect("sized");
                    cipher
                        .seal_frame(&mut out, r.datagrams, r.stride, index)
                        .expect("sized")
                })
            });
        }
    }
    // Baseline: copying the frame into 1408-byte slots with no headers or FEC.
    let mut slots = vec![0u8; frame.len().div_ceil(1376) * (1408 + ENC_HEADER_LEN)];
    g.bench_function("naive-copy", |b| {
        b.iter(|| {
            for (i, chunk) in frame.chunks(1376).enumerate() {
                slots[i * 1408 + 32..i * 1408 + 32 + chunk.len()].copy_from_slice(chunk);
            }
        })
    });
    g.finish();
}

criterion_group!(benches, packetize);
criterion_main!(benches);
