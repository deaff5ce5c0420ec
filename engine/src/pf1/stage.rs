//! The punktfunk/1 pipeline stage: encoded frame in, sealed datagrams out.
//!
//! [`Pf1PacketizeStage`] takes the place of [`crate::gamestream::stage::PacketizeStage`] between the
//! encoder and [`SendSink`](crate::io::sink::SendSink): it packetizes each encoded frame with
//! [`Pf1Sender`] into a second buffer from the pool and hands that on with
//! [`FrameMeta::segment_size`](crate::pool::FrameMeta::segment_size) set to the datagram
//! stride, so the sink sends it as GSO trains unchanged.
//!
//! ```text
//!  encoder ─► FrameBuf{bitstream, meta.keyframe, meta.capture_ns}
//!              │  Pf1PacketizeStage::process   ◄── Pf1Feedback (parity %, loss, next key)
//!              ▼                                     written by the control plane
//!             FrameBuf{|hdr|shard|tag| × (ds + ps), meta.segment_size = L + 52}
//!              ▼
//!             SendSink ─► UdpSender::send_frame (io_uring + GSO, paced)
//! ```
//!
//! The control plane owns the [`FecController`] and publishes its output
//! through a shared [`Pf1Feedback`], which the stage reads once per frame; key updates travel
//! the same way: [`Pf1Feedback::offer_key`] hands over the generation both ends agreed on, and
//! the stage switches to it at the start of the next frame (a frame is never split across two
//! keys). After every frame the stage publishes the key state back (generation in use,
//! datagrams sealed under it, whether an update is due, rotations, frames refused at the
//! limit).
//!
//! Frame ids are given here, so a frame lost before this stage (evicted from the encode →
//! packetize ring, or dropped here for want of a buffer) leaves no gap the client could see;
//! the frames after it would reach the client referencing a picture it never got. A
//! [`KeyframeGate`] skips them, without giving them an id, until the next keyframe (requested
//! where the frame was lost); it starts closed, so the first frame sent is a keyframe. A frame
//! lost after this stage (the FEC → send ring) already has its id: the receiver sees the gap
//! and asks for recovery itself.
//!
//! Pure: no clock reads (capture time comes in `FrameMeta::capture_ns`), no sockets.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::Pf1Error;
use super::adaptive::FecController;
use super::crypto::DataKey;
use super::send::{FrameInfo, Packetized, Pf1Sender, Pf1SenderConfig};
use crate::pipeline::{
    Dropped, Emit, KeyframeGate, Stage, StageContext, StageError, write_into_pool_buf,
};
use crate::pool::FrameBuf;

/// Shared between the control plane and [`Pf1PacketizeStage`]: the FEC settings to use and the
/// next key, plus the stage's "key update due" signal back.
#[derive(Debug, Default)]
pub struct Pf1Feedback {
    /// Parity percentage; 0 = not set yet (the stage keeps its configured one).
    percent: AtomicU8,
    /// Loss estimate as `f32` bits.
    loss: AtomicU32,
    key_pending: AtomicBool,
    next_key: Mutex<Option<DataKey>>,
    update_due: AtomicBool,
    generation: AtomicU32,
    key_datagrams: AtomicU64,
    previous_key_datagrams: AtomicU64,
    rotations: AtomicU64,
    key_exhausted: AtomicU64,
    stale_keys: AtomicU64,
}

impl Pf1Feedback {
    /// Publishes a parity percentage (5–50) and loss estimate (0..=0.5).
    pub fn set_fec(&self, percent: u8, loss: f64) {
        self.percent.store(percent, Ordering::Relaxed);
        self.loss.store((loss as f32).to_bits(), Ordering::Relaxed);
    }

    /// Publishes the controller's current output.
    pub fn publish(&self, controller: &FecController) {
        self.set_fec(controller.parity_percent(), controller.loss_estimate());
    }

    /// The published percentage (0 if none) and loss estimate.
    pub fn fec(&self) -> (u8, f64) {
        (
            self.percent.load(Ordering::Relaxed),
            f64::from(f32::from_bits(self.loss.load(Ordering::Relaxed))),
        )
    }

    /// Hands the stage the next key generation; it switches at the next frame.
    pub fn offer_key(&self, key: DataKey) {
        // A poisoned lock only means a thread panicked while swapping an Option; the value is
        // whole either way.
        *self.next_key.lock().unwrap_or_else(|p| p.into_inner()) = Some(key);
        self.key_pending.store(true, Ordering::Release);
    }

    /// Whether the stage's key sealed its update share of the packet limit (the control
    /// plane should agree on the next generation and [`offer_key`](Self::offer_key) it).
    pub fn key_update_due(&self) -> bool {
        self.update_due.load(Ordering::Relaxed)
    }

    /// The key generation the stage sealed its last frame with.
    pub fn key_generation(&self) -> u32 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Datagrams sealed under the key in use, and under the previous generation in all.
    pub fn key_datagrams(&self) -> (u64, u64) {
        (
            self.key_datagrams.load(Ordering::Relaxed),
            self.previous_key_datagrams.load(Ordering::Relaxed),
        )
    }

    /// Key rotations the stage made.
    pub fn rotations(&self) -> u64 {
        self.rotations.load(Ordering::Relaxed)
    }

    /// Frames refused because the key reached its limit (the update came too late).
    pub fn key_exhausted(&self) -> u64 {
        self.key_exhausted.load(Ordering::Relaxed)
    }

    /// Keys offered that were not newer than the one in use (refused).
    pub fn stale_keys(&self) -> u64 {
        self.stale_keys.load(Ordering::Relaxed)
    }

    fn publish_key_state(&self, sender: &Pf1Sender) {
        let st = sender.stats();
        self.generation
            .store(sender.key_generation(), Ordering::Relaxed);
        self.key_datagrams
            .store(st.key_datagrams, Ordering::Relaxed);
        self.previous_key_datagrams
            .store(st.previous_key_datagrams, Ordering::Relaxed);
        self.rotations.store(st.key_updates, Ordering::Relaxed);
        self.key_exhausted
            .store(st.key_exhausted, Ordering::Relaxed);
        self.update_due
            .store(sender.key_update_due(), Ordering::Relaxed);
    }

    fn take_key(&self) -> Option<DataKey> {
        if !self.key_pending.swap(false, Ordering::Acquire) {
            return None;
        }
        self.next_key
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
    }
}

/// Counters of the stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pf1StageStats {
    /// Frames packetized and passed on.
    pub frames: u64,
    /// Datagrams produced.
    pub datagrams: u64,
    /// Frame bytes packetized.
    pub payload_bytes: u64,
    /// Frames dropped because no output buffer was free (a keyframe is requested).
    pub pool_misses: u64,
    /// Frames dropped because they did not fit the protocol, the buffer or the key's limit.
    pub rejected: u64,
    /// Non-keyframes skipped (no frame id given) because a frame before them was lost or the
    /// stream had not started with a keyframe yet (see the module docs).
    pub skipped_awaiting_keyframe: u64,
}

/// The punktfunk/1 packetize stage (see the module docs).
#[derive(Debug)]
pub struct Pf1PacketizeStage {
    sender: Pf1Sender,
    feedback: Option<Arc<Pf1Feedback>>,
    mode: u16,
    new_mode: bool,
    gate: KeyframeGate,
    stats: Pf1StageStats,
}

impl Pf1PacketizeStage {
    /// A stage sealing under `key` with `config` (from the control plane's negotiation).
    pub fn new(config: Pf1SenderConfig, key: DataKey) -> Result<Self, Pf1Error> {
        Ok(Self {
            sender: Pf1Sender::new(config, key)?,
            feedback: None,
            mode: 0,
            new_mode: false,
            gate: KeyframeGate::new(),
            stats: Pf1StageStats::default(),
        })
    }

    /// Reads FEC settings and key updates from `feedback` once per frame.
    pub fn with_feedback(mut self, feedback: Arc<Pf1Feedback>) -> Self {
        self.feedback = Some(feedback);
        self
    }

    /// The packetizer.
    pub fn sender(&self) -> &Pf1Sender {
        &self.sender
    }

    /// Counters so far.
    pub fn stats(&self) -> Pf1StageStats {
        self.stats
    }

    /// Output bytes needed for a frame of `frame_len` bytes (size pool buffers with this).
    pub fn max_output(&self, frame_len: usize) -> usize {
        self.sender.max_output(frame_len)
    }

    /// Packetizes `input` into `out` with the next frame id, whatever the frame references (the
    /// [`Stage`] implementation decides which frames to send). On error `out` holds nothing
    /// useful.
    pub fn packetize_into(
        &mut self,
        input: &FrameBuf,
        out: &mut FrameBuf,
    ) -> Result<Packetized, Pf1Error> {
        if let Some(f) = &self.feedback {
            let (pct, loss) = f.fec();
            if pct > 0 {
                self.sender.set_parity_percent(pct);
            }
            self.sender.set_loss_estimate(loss);
            if let Some(key) = f.take_key() {
                match self.sender.update_key(key) {
                    Ok(()) => {
                        let st = self.sender.stats();
                        tracing::info!(
                            generation = st.key_generation,
                            previous_generation_datagrams = st.previous_key_datagrams,
                            rotations = st.key_updates,
                            "punktfunk/1 data key switched at a frame boundary"
                        );
                    }
                    Err(e) => {
                        f.stale_keys.fetch_add(1, Ordering::Relaxed);
                        tracing::warn!(error = %e, "punktfunk/1 key update refused");
                    }
                }
            }
        }
        // A frame of another mode than the last one starts the new mode.
        if input.meta.mode != self.mode {
            self.mode = input.meta.mode;
            self.new_mode = true;
        }
        let info = FrameInfo {
            capture_us: input.meta.capture_ns / 1000,
            keyframe: input.meta.keyframe,
            new_mode: self.new_mode,
            mode: self.mode,
        };
        let packetized = self
            .sender
            .packetize(input.as_slice(), &info, out.spare_mut());
        if let Some(f) = &self.feedback {
            f.publish_key_state(&self.sender);
        }
        let p = packetized?;
        out.set_len(p.len()).map_err(|_| Pf1Error::BufferTooSmall {
            needed: p.len(),
            got: out.capacity(),
        })?;
        out.meta = input.meta;
        out.meta.index = u64::from(p.frame_id);
        // Fits: a datagram is at most 65507 bytes.
        out.meta.segment_size = p.layout.stride as u16;
        self.new_mode = false;
        self.stats.frames += 1;
        self.stats.datagrams += p.layout.datagrams() as u64;
        self.stats.payload_bytes += input.len() as u64;
        Ok(p)
    }
}

impl Stage for Pf1PacketizeStage {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        // The gate is `Copy`: taken out so the writer can borrow `self`, put back either way.
        let mut gate = self.gate;
        let dropped = write_into_pool_buf(
            &mut gate,
            &input,
            output,
            cx,
            "punktfunk/1 frame",
            |i, o| self.packetize_into(i, o).map(|_| ()),
        );
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

impl crate::pipeline::Packetizer for Pf1PacketizeStage {
    fn max_output(&self, frame_len: usize) -> usize {
        Pf1PacketizeStage::max_output(self, frame_len)
    }

    fn fec(&self) -> crate::config::FecConfig {
        let c = self.sender.config();
        crate::config::FecConfig {
            percent: c.parity_percent,
            min_parity: u16::try_from(c.min_parity).unwrap_or(u16::MAX),
            threads: 1,
            // The controller that adapts lives with the session (control's `pf1::media`),
            // which follows the profile's `[fec] adaptive`.
            adaptive: true,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pf1::{KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig};
    use crate::pipeline::PipelineControl;
    use crate::pool::FramePool;

    fn material() -> [u8; KEY_MATERIAL_LEN] {
        [5; KEY_MATERIAL_LEN]
    }

    #[test]
    fn packetizes_frames_for_the_send_sink() {
        let config = Pf1SenderConfig::default();
        let key = DataKey::from_key_material(&material());
        let feedback = Arc::new(Pf1Feedback::default());
        let mut stage = Pf1PacketizeStage::new(config, key.clone())
            .unwrap()
            .with_feedback(feedback.clone());
        let pool = FramePool::new(4, stage.max_output(50_000)).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut rx = Pf1Receiver::new(Pf1ReceiverConfig::default(), key).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        for i in 0..3u8 {
            if i == 2 {
                feedback.set_fec(50, 0.0);
                feedback.offer_key(DataKey::from_key_material(&material()).with_generation(1));
            }
            let mut f = pool.take().unwrap();
            f.fill_from(&vec![i; 40_000 + usize::from(i)]).unwrap();
            f.meta.keyframe = i == 0;
            f.meta.capture_ns = 2_000_000 * u64::from(i);
            f.meta.mode = 7; // a frame of a mode other than the last starts that mode
            stage.process(f, &mut out, &mut cx).unwrap();
        }
        rx.install_key(DataKey::from_key_material(&material()).with_generation(1));
        assert_eq!(out.len(), 3);
        let now = std::time::Instant::now();
        for (i, o) in out.iter().enumerate() {
            assert_eq!(o.meta.index, i as u64);
            assert_eq!(o.meta.segment_size, 1460);
            let dgs = o.as_slice().len() / 1460;
            // 29 data shards: 20 % → 6 parity; 50 % → 15.
            assert_eq!(dgs, if i == 2 { 29 + 15 } else { 29 + 6 });
            for dg in o.as_slice().chunks(1460) {
                rx.handle_datagram(now, dg).unwrap();
            }
            let Some(Pf1Event::Frame(f)) = rx.poll_event() else {
                panic!("frame {i}");
            };
            assert_eq!(f.data, vec![i as u8; 40_000 + i]);
            assert_eq!((f.keyframe, f.new_mode, f.mode), (i == 0, i == 0, 7));
            assert_eq!(f.capture_us, 2000 * i as u64);
        }
        assert_eq!(stage.stats().frames, 3);
        assert_eq!(stage.sender().key_id(), 1);
        assert!(!feedback.key_update_due());
    }

    #[test]
    fn key_state_is_published_and_stale_keys_are_refused() {
        let config = Pf1SenderConfig {
            key_packet_limit: 20,
            key_update_percent: 50,
            ..Default::default()
        };
        let key = |g| DataKey::from_key_material(&material()).with_generation(g);
        let feedback = Arc::new(Pf1Feedback::default());
        let mut stage = Pf1PacketizeStage::new(config, key(0))
            .unwrap()
            .with_feedback(feedback.clone());
        let pool = FramePool::new(4, stage.max_output(5000)).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut out: Vec<FrameBuf> = Vec::new();
        let mut send = |stage: &mut Pf1PacketizeStage, out: &mut Vec<FrameBuf>| {
            // 4 data shards + 1 parity: 5 datagrams a frame. All keyframes: the frame refused
            // at the key's limit must not hold back the one after it.
            let mut f = pool.take().unwrap();
            f.fill_from(&[3; 5000]).unwrap();
            f.meta.keyframe = true;
            stage.process(f, out, &mut cx).unwrap();
            out.clear();
        };
        send(&mut stage, &mut out);
        assert_eq!(feedback.key_datagrams(), (5, 0));
        assert!(!feedback.key_update_due());
        send(&mut stage, &mut out);
        assert!(feedback.key_update_due(), "10 of 20 sealed");
        // The same generation again would restart packet numbers under it: refused.
        feedback.offer_key(key(0));
        send(&mut stage, &mut out);
        assert_eq!(feedback.stale_keys(), 1);
        assert_eq!((feedback.key_generation(), feedback.rotations()), (0, 0));
        send(&mut stage, &mut out);
        assert_eq!(feedback.key_datagrams(), (20, 0));
        // At the limit the frame is refused (and counted), never sealed past it.
        send(&mut stage, &mut out);
        assert_eq!(feedback.key_exhausted(), 1);
        assert_eq!(stage.stats().rejected, 1);
        assert!(control.keyframe().take(), "a keyframe is asked for");
        // The next generation: the following frame seals under it from packet number 0.
        feedback.offer_key(key(1));
        send(&mut stage, &mut out);
        assert_eq!(feedback.key_generation(), 1);
        assert_eq!(feedback.rotations(), 1);
        assert_eq!(feedback.key_datagrams(), (5, 20));
        assert!(!feedback.key_update_due());
    }

    #[test]
    fn pool_miss_and_oversized_frames_are_counted_not_fatal() {
        let key = DataKey::from_key_material(&material());
        let mut stage = Pf1PacketizeStage::new(Pf1SenderConfig::default(), key).unwrap();
        let pool = FramePool::new(1, 8 << 10).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut out: Vec<FrameBuf> = Vec::new();
        let mut f = pool.take().unwrap();
        f.fill_from(&[1; 100]).unwrap();
        f.meta.keyframe = true;
        stage.process(f, &mut out, &mut cx).unwrap();
        assert_eq!(stage.stats().pool_misses, 1);
        assert!(control.keyframe().take());
        let big = FramePool::new(2, 8 << 10).unwrap();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &big, &control);
        let mut f = big.take().unwrap();
        f.fill_from(&[1; 8000]).unwrap();
        f.meta.keyframe = true;
        stage.process(f, &mut out, &mut cx).unwrap();
        assert_eq!(stage.stats().rejected, 1);
        assert!(out.is_empty());
    }

    /// A frame lost before this stage leaves no frame-id gap, so the frames after it are
    /// skipped, without taking an id, until a keyframe; the receiver gets contiguous ids and a
    /// keyframe first.
    #[test]
    fn frames_after_a_lost_frame_wait_for_a_keyframe() {
        let key = DataKey::from_key_material(&material());
        let mut stage = Pf1PacketizeStage::new(Pf1SenderConfig::default(), key.clone()).unwrap();
        let pool = FramePool::new(4, stage.max_output(5000)).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(crate::pipeline::StageId::Fec, &pool, &control);
        let mut rx = Pf1Receiver::new(Pf1ReceiverConfig::default(), key).unwrap();
        let now = std::time::Instant::now();
        let mut got = Vec::new();
        // (input gap, keyframe): P before any keyframe; key; P; P after an eviction; P; key; P.
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
            f.fill_from(&[n as u8; 5000]).unwrap();
            f.meta.keyframe = keyframe;
            cx.set_input_gap(gap);
            let mut out: Vec<FrameBuf> = Vec::new();
            stage.process(f, &mut out, &mut cx).unwrap();
            for o in out {
                for dg in o.as_slice().chunks(usize::from(o.meta.segment_size)) {
                    rx.handle_datagram(now, dg).unwrap();
                }
                let Some(Pf1Event::Frame(f)) = rx.poll_event() else {
                    panic!("frame {n}");
                };
                got.push((o.meta.index, f.keyframe, f.data[0]));
            }
        }
        assert_eq!(
            got,
            [(0, true, 1), (1, false, 2), (2, true, 5), (3, false, 6)]
        );
        assert_eq!(stage.stats().skipped_awaiting_keyframe, 3);
        assert_eq!(stage.stats().frames, 4);
        assert_eq!(control.keyframe().requests(), 1, "only the start asked");
    }
}
