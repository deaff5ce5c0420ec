//! The whole engine path on real loopback sockets: a source of encoded frames → (encode
//! pass-through) → PacketizeStage (FEC) → SendSink (io_uring/GSO driver) on four threads joined
//! by rings, into a UdpReceiver with GRO and the video depacketizer on a fifth. Every frame must
//! arrive byte-exact and in order; then again with random datagram loss inside the FEC budget.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use punktfunk_engine::config::{Backpressure, PipelineConfig, SendConfig};
use punktfunk_engine::gamestream::stage::PacketizeStage;
use punktfunk_engine::gamestream::wire::video::{VideoDepacketizer, VideoParams};
use punktfunk_engine::io::sink::{PeerAddr, SendSink};
use punktfunk_engine::io::stages::Pipeline;
use punktfunk_engine::io::{Caps, ReceiveConfig, UdpReceiver, UdpSender};
use punktfunk_engine::pipeline::{Captured, PassThrough, Source, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// Frames of varying size and content, each a pure function of its number.
fn frame_bytes(i: u64) -> Vec<u8> {
    let len = 1 + (i as usize * 7919) % 300_000;
    (0..len)
        .map(|b| (b as u64 ^ i.wrapping_mul(2654435761)) as u8)
        .collect()
}

struct Frames {
    next: u64,
    count: u64,
}

impl Source for Frames {
    type Output = FrameBuf;
    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        if self.next == self.count {
            return Ok(Captured::Finished);
        }
        let Some(mut b) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        b.fill_from(&frame_bytes(self.next))
            .map_err(StageError::failed)?;
        b.meta.keyframe = self.next == 0;
        b.meta.capture_ns = self.next * 16_666_667;
        self.next += 1;
        Ok(Captured::Frame(b))
    }
}

/// Frames received (index, bitstream) and the number of shards FEC rebuilt.
type Received = (Vec<(u32, Vec<u8>)>, u64);

/// Receives until `want` frames arrived or the stream went quiet; returns the frames and stats.
fn receive(
    mut rx: UdpReceiver,
    stop: Arc<AtomicBool>,
    drop_every: Option<u64>,
) -> std::thread::JoinHandle<Received> {
    std::thread::spawn(move || {
        let mut depack = VideoDepacketizer::new(1392).expect("valid packet size");
        let mut frames = Vec::new();
        let mut n = 0u64;
        let mut quiet = 0;
        loop {
            let got = rx
                .recv(Duration::from_millis(50), |_, d| {
                    n += 1;
                    if drop_every.is_some_and(|k| n.is_multiple_of(k)) {
                        return;
                    }
                    depack.handle_datagram(d).expect("well-formed datagram");
                })
                .expect("recv");
            while let Some(f) = depack.poll_frame() {
                frames.push((f.index, f.bitstream));
            }
            if got == 0 {
                quiet += 1;
                if stop.load(Ordering::Relaxed) && quiet > 10 {
                    break;
                }
            } else {
                quiet = 0;
            }
        }
        (frames, depack.stats().shards_recovered)
    })
}

fn run(count: u64, drop_every: Option<u64>) {
    let caps = Caps::probe();
    let rx = UdpReceiver::bind(
        "127.0.0.1:0".parse().expect("addr"),
        &ReceiveConfig {
            gro: true,
            ..ReceiveConfig::default()
        },
        &caps,
    )
    .expect("bind receiver");
    if !rx.gro() {
        // The frames still cross (without GRO); the GRO split path goes untested.
        skip::skip("gro", "UDP_GRO unsupported here; receiving without it");
    }
    let dest: SocketAddr = rx.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let receiver = receive(rx, stop.clone(), drop_every);

    let params = VideoParams {
        packet_size: 1392,
        fec_percent: 20,
        min_parity: 2,
    };
    let fec = PacketizeStage::new(params, None).expect("params");
    let config = PipelineConfig {
        ring_depth: 2,
        pool_frames: 12,
        frame_capacity: fec.max_output(300_000),
        backpressure: Backpressure::Block,
        ..PipelineConfig::default()
    };
    let sender = UdpSender::new(
        "127.0.0.1:0".parse().expect("addr"),
        &SendConfig::default(),
        &caps,
    )
    .expect("sender");
    if !(sender.path().uses_uring() && sender.path().uses_gso()) {
        // The frames still cross over the fallback; the io_uring driver goes untested here.
        skip::skip(
            "io_uring",
            format!("no io_uring+GSO send here; sending over {}", sender.setup()),
        );
    }
    let peer = Arc::new(PeerAddr::default());
    peer.set(Some(dest));
    // Pace lightly so the receiver (which shares two cores with four stage threads) keeps up.
    let sink = SendSink::new(sender, peer, Duration::from_millis(2), true);
    let handle = Pipeline::spawn(
        &config,
        Frames { next: 0, count },
        PassThrough::default(),
        fec,
        sink,
    )
    .expect("spawn pipeline");
    let stats = handle.join().expect("pipeline ran");
    assert_eq!(stats.dropped(), 0, "Block back-pressure loses nothing");
    stop.store(true, Ordering::Relaxed);
    let (frames, recovered) = receiver.join().expect("receiver thread");

    // Loopback can still drop under a full receive buffer; every frame that arrived must be
    // exact, in order, and (without injected loss) nearly all must arrive.
    let mut last = 0;
    for (index, bytes) in &frames {
        assert!(*index > last, "frames in order");
        last = *index;
        assert_eq!(
            bytes,
            &frame_bytes(u64::from(*index) - 1),
            "frame {index} byte-exact"
        );
    }
    assert!(
        frames.len() as u64 >= count * 9 / 10,
        "only {} of {count} frames arrived",
        frames.len()
    );
    if drop_every.is_some() {
        assert!(recovered > 0, "FEC must have rebuilt the dropped datagrams");
    }
}

#[test]
fn frames_cross_the_engine_byte_exact() {
    run(60, None);
}

#[test]
fn fec_recovers_datagrams_lost_on_the_way() {
    // One datagram in 23 lost: well inside 20 % parity per block.
    run(60, Some(23));
}
