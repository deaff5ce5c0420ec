//! The engine's own pipeline stage for GameStream video: encoded frame in, datagrams out.
//!
//! [`PacketizeStage`] sits between the encoder and the send stage
//! ([`crate::io::sink::SendSink`]). It takes an encoded frame ([`FrameBuf`], Annex-B), writes
//! its datagrams back to back into a second buffer from the same pool (FEC computed, optionally
//! encrypted) and hands that on with [`FrameMeta::segment_size`](crate::pool::FrameMeta::segment_size) set, so the send stage can
//! push it to the kernel as GSO trains without copying.
//!
//! ```text
//!  encoder ─► FrameBuf{Annex-B, meta.keyframe, meta.capture_ns}
//!              │  PacketizeStage::process
//!              ▼
//!             FrameBuf{d0 d1 … p0 p1 … | next block …, meta.segment_size = P+16 (+32 encrypted)}
//! ```
//!
//! GameStream needs frame indices that start at 1 and grow by exactly one per frame sent
//! (gamestream-protocol-notes.md "Frame to packets"), so the stage numbers frames itself: a
//! frame dropped before it reaches this stage leaves no gap. After a keyframe request the stage
//! holds delta frames back until a keyframe comes (they would reference the lost frame);
//! docs/streaming.md, "Loss". The RTP timestamp is the capture time on a 90 kHz clock.
//!
//! Because such a drop leaves no gap, the client could not tell that the P-frames after it
//! reference a frame it never got. So a [`KeyframeGate`] skips them, unnumbered, until the
//! next keyframe (requested where the frame was dropped): the client sees contiguous indices
//! and every frame it gets is decodable. The gate starts closed, so the first frame sent is a
//! keyframe. A frame dropped *after* this stage (the FEC → send ring) has its index already,
//! so the client sees that gap and asks for an IDR itself.
//!
//! Pure: no clock reads (time comes in `FrameMeta::capture_ns`), no sockets.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::gamestream::wire::WireError;
use crate::gamestream::wire::video::{
    ENC_HEADER_LEN, FrameType, VideoCipher, VideoFrame, VideoPacketizer, VideoParams,
};
use crate::pipeline::{
    Dropped, Emit, KeyframeGate, Stage, StageContext, StageError, write_into_pool_buf,
};
use crate::pool::FrameBuf;

/// The receiver's packet loss as the control plane estimates it, shared with the packetize
/// stage (which reads it once per frame to size parity, see [`crate::fec::adaptive`]); the
/// stage publishes back the parity it gave the last frame, for status displays.
#[derive(Debug, Default)]
pub struct LossFeedback {
    loss: AtomicU32,
    parity_percent: AtomicU32,
}

impl LossFeedback {
    /// Publishes a new estimate (a fraction, 0..=0.5).
    pub fn set(&self, loss: f64) {
        self.loss.store((loss as f32).to_bits(), Ordering::Relaxed);
    }

    /// The latest estimate.
    pub fn get(&self) -> f64 {
        f64::from(f32::from_bits(self.loss.load(Ordering::Relaxed)))
    }

    /// Parity of the last frame packetized, percent of its data shards (0 before the first).
    pub fn parity_percent(&self) -> u32 {
        self.parity_percent.load(Ordering::Relaxed)
    }
}

/// Counters of the packetize stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketizeStats {
    /// Frames packetized and passed on.
    pub frames: u64,
    /// Datagrams produced (data and parity).
    pub datagrams: u64,
    /// Frame bytes packetized (bitstream only).
    pub payload_bytes: u64,
    /// Frames sent without FEC because they needed more than 4 blocks.
    pub fec_skipped: u64,
    /// Tiny frames sent more than once because parity alone could not cover the loss.
    pub copied: u64,
    /// Frames dropped because no output buffer was free (a keyframe is requested).
    pub pool_misses: u64,
    /// Frames dropped because they did not fit the protocol or the buffer.
    pub rejected: u64,
    /// Non-keyframes skipped (unnumbered) because a frame before them was lost or the stream
    /// had not started with a keyframe yet (see the module docs).
    pub skipped_awaiting_keyframe: u64,
}

/// Packetizes encoded frames into GameStream video datagrams (see the module docs).
#[derive(Debug)]
pub struct PacketizeStage {
    packetizer: VideoPacketizer,
    cipher: Option<VideoCipher>,
    loss: Option<Arc<LossFeedback>>,
    next_index: u32,
    /// Keyframe requests seen so far ([`StageContext::keyframe_requests`]).
    requests_seen: u64,
    gate: KeyframeGate,
    stats: PacketizeStats,
}

impl PacketizeStage {
    /// A stage for `params`, encrypting with `video_key` when the session negotiated
    /// `SS_ENC_VIDEO`.
    pub fn new(params: VideoParams, video_key: Option<[u8; 16]>) -> Result<Self, WireError> {
        Ok(Self {
            packetizer: VideoPacketizer::new(params)?,
            cipher: video_key.as_ref().map(VideoCipher::new),
            loss: None,
            next_index: 1,
            requests_seen: 0,
            gate: KeyframeGate::new(),
            stats: PacketizeStats::default(),
        })
    }

    /// Sizes parity from `loss` (read once per frame) instead of the fixed percentage alone.
    pub fn with_loss_feedback(mut self, loss: Arc<LossFeedback>) -> Self {
        self.loss = Some(loss);
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> PacketizeStats {
        self.stats
    }

    /// Output bytes needed for a frame of `frame_len` bytes (size pool buffers with this).
    pub fn max_output(&self, frame_len: usize) -> usize {
        let p = self.packetizer.params();
        let extra = if self.cipher.is_some() {
            ENC_HEADER_LEN
        } else {
            0
        };
        p.max_datagrams(frame_len) * (p.stride() + extra)
    }

    /// Encodes each frame's parity on up to `threads` threads (one FEC block each; see
    /// [`VideoPacketizer::set_fec_threads`]).
    pub fn with_fec_threads(mut self, threads: usize) -> Result<Self, WireError> {
        self.packetizer.set_fec_threads(threads)?;
        Ok(self)
    }

    /// Changes the FEC percentage from the next frame on.
    pub fn set_fec_percent(&mut self, pct: u8) {
        self.packetizer.set_fec_percent(pct);
    }

    /// Packetizes `input` into `out` with the next frame index, whatever the frame references
    /// (the [`Stage`] implementation decides which frames to send). On error `out` holds
    /// nothing useful.
    pub fn packetize_into(
        &mut self,
        input: &FrameBuf,
        out: &mut FrameBuf,
    ) -> Result<(), WireError> {
        if let Some(l) = &self.loss {
            self.packetizer.set_loss_estimate(l.get());
        }
        let frame = VideoFrame {
            index: self.next_index,
            // 90 kHz: ns · 9 / 100 000, wrapping like RTP timestamps do.
            rtp_timestamp: (u128::from(input.meta.capture_ns) * 9 / 100_000) as u32,
            frame_type: if input.meta.keyframe {
                FrameType::Idr
            } else {
                FrameType::P
            },
            host_latency: 0,
            bitstream: input.as_slice(),
        };
        let r = self.packetizer.packetize(&frame, out.spare_mut())?;
        let (len, stride) = match &mut self.cipher {
            Some(c) => {
                let len = c.seal_frame(out.spare_mut(), r.datagrams, r.stride, frame.index)?;
                (len, r.stride + ENC_HEADER_LEN)
            }
            None => (r.len(), r.stride),
        };
        out.set_len(len).map_err(|_| WireError::BufferTooSmall {
            needed: len,
            got: out.capacity(),
        })?;
        out.meta = input.meta;
        out.meta.index = u64::from(frame.index);
        out.meta.segment_size = stride as u16;
        if let Some(l) = &self.loss {
            let blocks = &r.layout[..r.blocks];
            let data: usize = blocks.iter().map(|b| b.data).sum();
            let parity: usize = blocks.iter().map(|b| b.parity).sum();
            let pct = (parity * 100).checked_div(data).unwrap_or(0);
            l.parity_percent
                .store(u32::try_from(pct).unwrap_or(u32::MAX), Ordering::Relaxed);
        }
        self.next_index = self.next_index.wrapping_add(1).max(1);
        self.stats.frames += 1;
        self.stats.datagrams += r.datagrams as u64;
        self.stats.payload_bytes += input.len() as u64;
        self.stats.fec_skipped += u64::from(r.fec_skipped);
        self.stats.copied += u64::from(r.copies > 1);
        Ok(())
    }
}

impl Stage for PacketizeStage {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        // A keyframe request means a frame after the encoder was lost (evicted from a ring,
        // dropped here, or lost on the way to a client that now waits for an IDR): every delta
        // frame until the next keyframe references something the client does not have, would
        // decode to garbage or nothing, and only costs bandwidth. The gate holds them back,
        // before they get a frame index, so the client sees a short pause and then the
        // keyframe; it also closes on evictions it sees itself (`input_gap`) and on its own
        // drops, and starts closed (see `KeyframeGate`).
        let requests = cx.keyframe_requests();
        if requests != self.requests_seen {
            self.requests_seen = requests;
            self.gate.handle_drop();
        }
        // The gate is `Copy`: taken out so the writer can borrow `self`, put back either way.
        let mut gate = self.gate;
        let dropped = write_into_pool_buf(&mut gate, &input, output, cx, "video frame", |i, o| {
            self.packetize_into(i, o)
        });
        self.gate = gate;
        match dropped? {
            Some(Dropped::AwaitingKeyframe) => self.stats.skipped_awaiting_keyframe += 1,
            Some(Dropped::NoBuffer) => self.stats.pool_misses += 1,
            Some(Dropped::Refused) => self.stats.rejected += 1,
            None => {}
        }
        Ok(())
    }
}

impl crate::pipeline::Packetizer for PacketizeStage {
    fn max_output(&self, frame_len: usize) -> usize {
        PacketizeStage::max_output(self, frame_len)
    }

    fn fec(&self) -> crate::config::FecConfig {
        let p = self.packetizer.params();
        crate::config::FecConfig {
            percent: p.fec_percent,
            min_parity: u16::from(p.min_parity),
            threads: u8::try_from(self.packetizer.fec_threads()).unwrap_or(u8::MAX),
            adaptive: self.loss.is_some(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::wire::video::VideoDepacketizer;
    use crate::pipeline::PipelineControl;
    use crate::pool::FramePool;

    #[test]
    fn packetizes_frames_with_contiguous_indices() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let pool = FramePool::new(4, 64 << 10).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut stage = PacketizeStage::new(params, None).unwrap();
        let mut depack = VideoDepacketizer::new(1392).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        for i in 0..3u8 {
            let mut f = pool.take().unwrap();
            f.fill_from(&vec![i; 5000 + i as usize]).unwrap();
            f.meta.keyframe = i == 0;
            f.meta.capture_ns = 1_000_000_000 * u64::from(i);
            f.meta.index = 100 + u64::from(i) * 2; // gaps upstream do not matter
            stage.process(f, &mut out, &mut cx).unwrap();
        }
        assert_eq!(out.len(), 3);
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.meta.index, i as u64 + 1);
            assert_eq!(o.meta.segment_size, 1408);
            for dg in o.as_slice().chunks(1408) {
                depack.handle_datagram(dg).unwrap();
            }
            let f = depack.poll_frame().unwrap();
            assert_eq!(f.index, i as u32 + 1);
            assert_eq!(f.bitstream, vec![i as u8; 5000 + i]);
            assert_eq!(f.rtp_timestamp, 90_000 * i as u32);
            assert_eq!(
                f.frame_type,
                Some(if i == 0 { FrameType::Idr } else { FrameType::P })
            );
        }
        assert_eq!(stage.stats().frames, 3);
    }

    #[test]
    fn pool_miss_and_oversized_frames_are_counted_not_fatal() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let pool = FramePool::new(1, 8 << 10).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut stage = PacketizeStage::new(params, Some([1; 16])).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        let mut f = pool.take().unwrap();
        f.fill_from(&[1; 100]).unwrap();
        f.meta.keyframe = true;
        // The only buffer is the input: no output buffer.
        stage.process(f, &mut out, &mut cx).unwrap();
        assert_eq!(stage.stats().pool_misses, 1);
        assert!(control.keyframe().take());
        // A frame too large for the output buffer.
        let big = FramePool::new(2, 8 << 10).unwrap();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &big, &control);
        let mut f = big.take().unwrap();
        f.fill_from(&[1; 8000]).unwrap();
        f.meta.keyframe = true; // past the keyframe wait the pool miss started
        stage.process(f, &mut out, &mut cx).unwrap();
        assert_eq!(stage.stats().rejected, 1);
        assert!(out.is_empty());
    }

    #[test]
    fn delta_frames_wait_for_the_keyframe_after_a_request() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let pool = FramePool::new(8, 16 << 10).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut stage = PacketizeStage::new(params, None).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        let mut feed = |key: bool, out: &mut Vec<FrameBuf>, cx: &mut StageContext<'_>| {
            let mut f = pool.take().unwrap();
            f.fill_from(&[u8::from(key); 3000]).unwrap();
            f.meta.keyframe = key;
            stage.process(f, out, cx).unwrap();
            let n = out.len();
            out.clear(); // back to the pool
            (n, stage.stats())
        };
        assert_eq!(feed(true, &mut out, &mut cx).0, 1);
        assert_eq!(feed(false, &mut out, &mut cx).0, 1);
        // An encoded frame was evicted upstream: the ring raised a keyframe request.
        control.keyframe().request();
        assert_eq!(
            feed(false, &mut out, &mut cx).0,
            0,
            "references the lost frame"
        );
        assert_eq!(feed(false, &mut out, &mut cx).0, 0);
        assert_eq!(
            feed(true, &mut out, &mut cx).0,
            1,
            "the keyframe ends the wait"
        );
        let (n, stats) = feed(false, &mut out, &mut cx);
        assert_eq!(n, 1);
        assert_eq!(stats.skipped_awaiting_keyframe, 2);
        // Frame indices stay contiguous: 4 frames out, numbered 1..=4.
        assert_eq!(stats.frames, 4);
        assert_eq!(stage.next_index, 5);
    }

    /// Frames lost before numbering leave no index gap, so the P-frames after them are skipped
    /// (taking no index) until a keyframe: the client gets contiguous indices, each frame
    /// decodable, and the first one an IDR.
    #[test]
    fn frames_after_a_lost_frame_wait_for_a_keyframe() {
        use FrameType::{Idr, P};
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let pool = FramePool::new(4, 64 << 10).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut stage = PacketizeStage::new(params, None).unwrap();
        let mut depack = VideoDepacketizer::new(1392).unwrap();
        let mut sent = Vec::new();
        // (input gap, keyframe): a P-frame before any keyframe; the IDR; P; a P after one
        // evicted frame and one more; the IDR asked for; P.
        let script = [
            (0, false),
            (0, true),
            (0, false),
            (1, false),
            (0, false),
            (0, true),
            (0, false),
        ];
        for (n, &(gap, keyframe)) in script.iter().enumerate() {
            let mut f = pool.take().unwrap();
            f.fill_from(&[n as u8; 3000]).unwrap();
            f.meta.keyframe = keyframe;
            cx.set_input_gap(gap);
            let mut out: Vec<FrameBuf> = Vec::new();
            stage.process(f, &mut out, &mut cx).unwrap();
            for o in out {
                for dg in o.as_slice().chunks(usize::from(o.meta.segment_size)) {
                    depack.handle_datagram(dg).unwrap();
                }
                let v = depack.poll_frame().unwrap();
                assert_eq!(o.meta.index, u64::from(v.index));
                sent.push((v.index, v.frame_type, v.bitstream[0]));
            }
        }
        assert_eq!(
            sent,
            [
                (1, Some(Idr), 1),
                (2, Some(P), 2),
                (3, Some(Idr), 5),
                (4, Some(P), 6)
            ]
        );
        assert_eq!(stage.stats().skipped_awaiting_keyframe, 3);
        // Only the start asked for a keyframe; the eviction's producer asks for its own.
        assert_eq!(control.keyframe().requests(), 1);

        // The stage's own drop (no output buffer) closes the gate as well.
        let held: Vec<FrameBuf> = (0..3).map(|_| pool.take().unwrap()).collect();
        let mut f = pool.take().unwrap();
        f.fill_from(&[7; 3000]).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        cx.set_input_gap(0);
        stage.process(f, &mut out, &mut cx).unwrap();
        assert_eq!(stage.stats().pool_misses, 1);
        drop(held);
        for keyframe in [false, true] {
            let mut f = pool.take().unwrap();
            f.fill_from(&[8; 3000]).unwrap();
            f.meta.keyframe = keyframe;
            stage.process(f, &mut out, &mut cx).unwrap();
        }
        assert_eq!(stage.stats().skipped_awaiting_keyframe, 4);
        assert_eq!(out.len(), 1);
        assert_eq!((out[0].meta.index, out[0].meta.keyframe), (5, true));
        assert_eq!(
            control.keyframe().requests(),
            2,
            "the pool miss asked for one"
        );
    }
}
