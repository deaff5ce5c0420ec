//! Packetizer group: a 1 MB frame into GameStream video datagrams (with and without FEC,
//! with encryption), against a naive copy of the same bytes into packet slots; and the same
//! frame with its 4 FEC blocks' parity on 1 and 2 threads, on the AVX2 kernel and on the
//! fastest one this CPU has (`[fec] threads`).
//!
//! `cargo bench -p punktfunk-bench --bench packetize`

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use punktfunk_bench::random_shards;
use punktfunk_engine::fec::kernel::Kernel;
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
    // Parity on several threads: 1 MB at 20 % is 4 blocks.
    let params = VideoParams {
        packet_size: 1392,
        fec_percent: 20,
        min_parity: 2,
    };
    let mut kernels = vec![Kernel::detect()];
    if Kernel::available().any(|k| k == Kernel::Avx2) && Kernel::detect() != Kernel::Avx2 {
        kernels.push(Kernel::Avx2);
    }
    for kernel in kernels {
        for threads in [1usize, 2] {
            let mut p = VideoPacketizer::with_kernel(params, kernel).expect("valid params");
            p.set_fec_threads(threads).expect("valid count");
            let mut out = vec![0u8; params.max_datagrams(frame.len()) * params.stride()];
            let mut index = 0;
            g.bench_function(format!("fec20-{kernel:?}-threads{threads}"), |b| {
                b.iter(|| {
                    index += 1;
                    let f = VideoFrame {
                        index,
                        rtp_timestamp: 0,
                        frame_type: FrameType::P,
                        host_latency: 0,
                        bitstream: &frame,
                    };
                    p.packetize(&f, &mut out).expect("sized")
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
