//! GameStream video under seeded random loss, frame by frame, on a virtual clock of frame
//! numbers: the packetizer (adaptive parity, copies of tiny frames, the startup floor) →
//! independent datagram loss → the depacketizer, with the host and the client around them
//! modelled the way docs/streaming.md ("Loss") found them to behave:
//!
//! * the client reports a frame's FEC status only when the frame lost datagrams; the host
//!   feeds those reports to a [`LossEstimator`] and the estimate to the packetizer;
//! * a frame the client cannot rebuild makes it drop every frame until a keyframe, which it
//!   asks for; the frame already encoded goes out first, the keyframe one frame later.
//!
//! The frame sizes are those of the e2e test pattern at 1280x720 (a ~40-shard IDR, P-frames of
//! 1–3 shards with an occasional larger one). What counts is what the e2e loss test counts:
//! frames handed to the decoder over frames sent.

use punktfunk_engine::fec::adaptive::LossEstimator;
use punktfunk_engine::gamestream::wire::video::{
    FrameType, STARTUP_FRAMES, VideoDepacketizer, VideoFrame, VideoPacketizer, VideoParams,
};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const PARAMS: VideoParams = VideoParams {
    packet_size: 1360,
    fec_percent: 20,
    min_parity: 2,
};
const CHUNK: usize = 1360 - 16;
const IDR_SHARDS: usize = 40;

#[derive(Debug, Default)]
struct Run {
    sent: u32,
    delivered: u32,
    unrecoverable: u32,
    idr_waits: u32,
    copied: u32,
    /// Datagrams sent (data, parity and copies) and data shards among them: the overhead.
    datagrams: u64,
    data_shards: u64,
}

/// P-frame sizes: the test pattern's, or 1 shard each.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Sizes {
    Pattern,
    OneShard,
}

fn stream(loss: f64, frames: u32, seed: u64, sizes: Sizes) -> Run {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut packetizer = VideoPacketizer::new(PARAMS).expect("valid parameters");
    let mut depacketizer = VideoDepacketizer::new(PARAMS.packet_size).expect("valid packet size");
    let mut estimator = LossEstimator::default();
    let mut out = vec![0u8; PARAMS.max_datagrams(IDR_SHARDS * CHUNK) * PARAMS.stride()];
    let mut run = Run::default();
    // The client waits for a keyframe; the host sends one at `keyframe_at`.
    let mut waiting = true;
    let mut keyframe_at = Some(1);
    for index in 1..=frames {
        packetizer.set_loss_estimate(estimator.estimate());
        let key = keyframe_at == Some(index);
        if key {
            keyframe_at = None;
        }
        let shards = if key {
            IDR_SHARDS
        } else if sizes == Sizes::OneShard {
            1
        } else if rng.random_range(0..10) == 0 {
            rng.random_range(4..12)
        } else {
            rng.random_range(1..=3)
        };
        let bitstream = vec![index as u8; shards * CHUNK - 8];
        let frame = VideoFrame {
            index,
            rtp_timestamp: index * 1500,
            frame_type: if key { FrameType::Idr } else { FrameType::P },
            host_latency: 0,
            bitstream: &bitstream,
        };
        let r = packetizer
            .packetize(&frame, &mut out)
            .expect("buffer sized by max_datagrams");
        run.sent += 1;
        run.copied += u32::from(r.copies > 1);
        run.datagrams += r.datagrams as u64;
        run.data_shards += r.layout[..r.blocks]
            .iter()
            .map(|l| l.data as u64)
            .sum::<u64>();
        let (mut lost, mut received) = (0u32, 0u32);
        for dg in out[..r.len()].chunks(r.stride) {
            if rng.random_bool(loss) {
                lost += 1;
            } else {
                received += 1;
                depacketizer
                    .handle_datagram(dg)
                    .expect("our own datagrams parse");
            }
        }
        if lost > 0 {
            estimator.record(lost, received);
        }
        match depacketizer.poll_frame() {
            Some(f) => {
                assert_eq!(f.index, index);
                assert_eq!(f.bitstream, bitstream);
                if waiting && !key {
                    continue; // dropped by the client while it waits for the keyframe
                }
                waiting = false;
                run.delivered += 1;
            }
            None => {
                run.unrecoverable += 1;
                if !waiting {
                    run.idr_waits += 1;
                }
                waiting = true;
                // The request reaches the encoder after the frame it is encoding now.
                keyframe_at.get_or_insert(index + 2);
            }
        }
    }
    run
}

#[test]
fn frames_survive_random_loss_like_the_e2e_bounds() {
    // The issue asks for 99 % at 5 % and 95 % at 10 %; the model holds all three rates to
    // 99.5 % (it measures 100 %, 99.98 % and 99.97 %).
    for (loss, need) in [(0.05, 0.995), (0.10, 0.995), (0.20, 0.995)] {
        let mut sent = 0;
        let mut delivered = 0;
        let mut copied = 0;
        for seed in 0..4 {
            let r = stream(loss, 3000, seed, Sizes::Pattern);
            eprintln!("{loss} seed {seed}: {r:?}");
            sent += r.sent;
            delivered += r.delivered;
            copied += r.copied;
        }
        let ratio = f64::from(delivered) / f64::from(sent);
        eprintln!("{loss}: {delivered}/{sent} = {ratio:.4}");
        assert!(ratio >= need, "{loss}: {delivered}/{sent} = {ratio}");
        assert!(copied > 0, "{loss}: no tiny frame copied");
    }
}

#[test]
fn a_clean_link_loses_nothing_and_copies_only_at_the_start() {
    let r = stream(0.0, 1000, 7, Sizes::Pattern);
    assert_eq!((r.sent, r.delivered, r.unrecoverable), (1000, 1000, 0));
    // Before any report the first frames are sized for the profile's 20 %, which copies the
    // 1-shard ones; afterwards nothing is.
    assert!(r.copied > 0 && r.copied <= STARTUP_FRAMES, "{r:?}");
}

#[test]
fn single_shard_frames_outlive_the_255_percent_ceiling() {
    // At 20 % loss a 1-shard frame with its 3 parity shards (all the 8-bit percentage can
    // express) is lost once in 625 frames; sent twice it needs 8 losses in a row. Over 12 000
    // 1-shard frames that is ~19 losses without copies (measured: 18 with `MAX_COPIES = 1`)
    // and ~0 with them.
    let mut unrecoverable = 0;
    let mut copied = 0;
    for seed in 0..4 {
        let r = stream(0.20, 3000, 100 + seed, Sizes::OneShard);
        unrecoverable += r.unrecoverable;
        copied += r.copied;
    }
    eprintln!("1-shard frames at 20 %: {unrecoverable} unrecoverable, {copied} copied");
    assert!(
        unrecoverable <= 3,
        "{unrecoverable} of 12 000 frames unrecoverable"
    );
    assert!(copied > 11_000, "{copied}");
}
