//! The pull API's frame queue (decide: what is kept, what is dropped, which buffer is reused).
//!
//! ```text
//!  receive thread: push(frame bytes, info) ─► take a spare buffer (or grow one) ─► copy
//!                  queue full: the oldest frame is dropped, the next one handed out carries
//!                  DISCONTINUITY (the decoder must wait for a keyframe) and the caller asks
//!                  the host for one
//!  application:    pop_into(caller's buffer) ─► copy out, buffer back to the spares
//! ```
//!
//! Buffers live as long as the queue: after the first few frames of the largest size no frame
//! allocates. Pure: no locks, no threads (the core wraps it in a mutex).

use std::collections::VecDeque;

use punktfunk_engine::pf1::ReceivedFrame;

/// What the queue knows of a frame besides its bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameMeta {
    /// Data-plane frame id.
    pub frame_id: u32,
    /// Mode (stream epoch) id.
    pub mode_id: u16,
    /// An IDR / keyframe.
    pub keyframe: bool,
    /// The first frame of a new mode.
    pub new_mode: bool,
    /// Frames before this one were dropped or lost: decode from a keyframe only.
    pub discontinuity: bool,
    /// Data shards FEC rebuilt.
    pub recovered_shards: u32,
    /// Host capture time, µs (host's monotonic clock).
    pub capture_us: u64,
    /// Arrival, µs (this machine's monotonic clock).
    pub received_us: u64,
}

impl FrameMeta {
    /// The metadata of a frame the receiver reassembled, arriving at `received_us`; no
    /// discontinuity (the caller knows about gaps).
    pub fn of(f: &ReceivedFrame, received_us: u64) -> Self {
        Self {
            frame_id: f.frame_id,
            mode_id: f.mode,
            keyframe: f.keyframe,
            new_mode: f.new_mode,
            discontinuity: false,
            recovered_shards: u32::try_from(f.recovered_shards).unwrap_or(u32::MAX),
            capture_us: f.capture_us,
            received_us,
        }
    }
}

/// What [`FrameQueue::pop_into`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop {
    /// Nothing queued.
    Empty,
    /// Copied `len` bytes into the caller's buffer; the frame left the queue.
    Copied {
        /// Bytes written.
        len: usize,
        /// The frame's metadata.
        meta: FrameMeta,
    },
    /// The caller's buffer holds fewer than `needed` bytes; the frame stays queued.
    TooSmall {
        /// The frame's size.
        needed: usize,
        /// The frame's metadata.
        meta: FrameMeta,
    },
}

/// A bounded queue of frames with reused buffers.
#[derive(Debug)]
pub struct FrameQueue {
    frames: VecDeque<(Vec<u8>, FrameMeta)>,
    spare: Vec<Vec<u8>>,
    capacity: usize,
    /// The next frame pushed follows a gap.
    gap: bool,
    /// Frames dropped because the application did not keep up.
    pub dropped: u64,
    /// Buffers created (the rest were reused).
    pub buffers_created: u64,
}

impl FrameQueue {
    /// A queue holding at most `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            frames: VecDeque::with_capacity(capacity),
            spare: Vec::with_capacity(capacity + 1),
            capacity,
            gap: false,
            dropped: 0,
            buffers_created: 0,
        }
    }

    /// Queues a copy of `data`. Returns `true` when an older frame had to be dropped for it
    /// (the caller should ask the host for a keyframe).
    pub fn push(&mut self, data: &[u8], mut meta: FrameMeta) -> bool {
        let mut dropped = false;
        if self.frames.len() >= self.capacity
            && let Some((buf, _)) = self.frames.pop_front()
        {
            self.spare.push(buf);
            self.dropped += 1;
            dropped = true;
            // Whatever stays queued after the drop decodes no more without a keyframe.
            if let Some((_, m)) = self.frames.front_mut() {
                m.discontinuity = true;
            } else {
                self.gap = true;
            }
        }
        let mut buf = self.spare.pop().unwrap_or_else(|| {
            self.buffers_created += 1;
            Vec::new()
        });
        buf.clear();
        buf.extend_from_slice(data);
        meta.discontinuity |= std::mem::take(&mut self.gap);
        self.frames.push_back((buf, meta));
        dropped
    }

    /// Marks the next frame pushed as following a gap (frames lost on the network).
    pub fn mark_gap(&mut self) {
        self.gap = true;
    }

    /// Moves the oldest frame into `out` if it fits.
    pub fn pop_into(&mut self, out: &mut [u8]) -> Pop {
        let Some((buf, meta)) = self.frames.front() else {
            return Pop::Empty;
        };
        let (len, meta) = (buf.len(), *meta);
        let Some(dst) = out.get_mut(..len) else {
            return Pop::TooSmall { needed: len, meta };
        };
        dst.copy_from_slice(buf);
        if let Some((buf, _)) = self.frames.pop_front() {
            self.spare.push(buf);
        }
        Pop::Copied { len, meta }
    }

    /// Frames queued.
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(id: u32) -> FrameMeta {
        FrameMeta {
            frame_id: id,
            ..FrameMeta::default()
        }
    }

    #[test]
    fn frames_come_out_in_order_and_buffers_are_reused() {
        let mut q = FrameQueue::new(4);
        let mut out = [0u8; 16];
        for round in 0..10u32 {
            assert!(!q.push(&[round as u8; 8], meta(round)));
            match q.pop_into(&mut out) {
                Pop::Copied { len: 8, meta } => assert_eq!(meta.frame_id, round),
                other => panic!("{other:?}"),
            }
            assert_eq!(out[..8], [round as u8; 8]);
        }
        assert_eq!(q.buffers_created, 1, "one buffer serves a queue kept empty");
        assert_eq!(q.pop_into(&mut out), Pop::Empty);
    }

    #[test]
    fn a_small_buffer_keeps_the_frame_queued() {
        let mut q = FrameQueue::new(2);
        q.push(&[7; 10], meta(1));
        let mut small = [0u8; 4];
        assert!(matches!(
            q.pop_into(&mut small),
            Pop::TooSmall { needed: 10, .. }
        ));
        let mut big = [0u8; 10];
        assert!(matches!(q.pop_into(&mut big), Pop::Copied { len: 10, .. }));
        assert!(q.is_empty());
    }

    #[test]
    fn a_full_queue_drops_the_oldest_and_flags_the_gap() {
        let mut q = FrameQueue::new(2);
        assert!(!q.push(&[1], meta(1)));
        assert!(!q.push(&[2], meta(2)));
        assert!(
            q.push(&[3], meta(3)),
            "third frame into a queue of two drops one"
        );
        assert_eq!(q.dropped, 1);
        let mut out = [0u8; 1];
        let Pop::Copied { meta: m, .. } = q.pop_into(&mut out) else {
            panic!()
        };
        assert_eq!((m.frame_id, m.discontinuity), (2, true));
        let Pop::Copied { meta: m, .. } = q.pop_into(&mut out) else {
            panic!()
        };
        assert_eq!((m.frame_id, m.discontinuity), (3, false));
    }

    #[test]
    fn a_network_gap_flags_the_next_frame() {
        let mut q = FrameQueue::new(1);
        q.mark_gap();
        q.push(&[1], meta(9));
        let mut out = [0u8; 1];
        let Pop::Copied { meta: m, .. } = q.pop_into(&mut out) else {
            panic!()
        };
        assert!(m.discontinuity);
        assert_eq!(q.len(), 0);
    }
}
