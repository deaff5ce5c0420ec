//! A small jitter buffer between captured audio and the packet clock (pure).
//!
//! ```text
//!  capture (chunks of one PipeWire quantum, e.g. 1024 frames ≈ 21 ms, in bursts)
//!     │ push(samples)                     backlog > max: oldest frames dropped (counted)
//!     ▼
//!  [ interleaved f32 FIFO ] ──pop(packet)──► one packet (e.g. 240 frames = 5 ms) per tick of
//!                                            the stream's audio clock
//! ```
//!
//! The audio thread sends a packet every packet duration whatever the capture does, so a pop
//! always fills the packet: with sound when enough is buffered, else with silence. Playing
//! starts (and, after an underrun, restarts) only once `target` frames are buffered: one
//! capture chunk arrives at a time, so the FIFO must hold a chunk's worth plus a packet to
//! bridge the gap to the next chunk without a click. The target follows the largest chunk
//! seen. A backlog above `max` frames (the capture ran ahead, e.g. after a stall of the
//! sender) is cut back to the target by dropping the oldest frames: latency stays bounded.
//!
//! No clock, no I/O: the caller pushes what it captured and pops once per packet.
#![forbid(unsafe_code)]

use std::collections::VecDeque;

/// What one [`PcmFifo::pop`] delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pop {
    /// A packet of captured sound.
    Sound,
    /// Silence: still filling up to the target (at the start, or after an underrun).
    Filling,
    /// Silence after the buffer ran dry while playing (counted in [`FifoStats::underruns`]);
    /// playing restarts at the target.
    Underrun,
}

/// Counters of a [`PcmFifo`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FifoStats {
    /// Frames pushed.
    pub frames_in: u64,
    /// Packets of captured sound popped.
    pub packets_sound: u64,
    /// Packets of silence popped (filling or underrun).
    pub packets_silent: u64,
    /// Times the buffer ran dry while playing.
    pub underruns: u64,
    /// Frames dropped because the backlog exceeded the maximum.
    pub frames_dropped: u64,
}

/// The jitter buffer (see the module docs).
#[derive(Debug, Clone)]
pub struct PcmFifo {
    samples: VecDeque<f32>,
    channels: usize,
    packet_frames: usize,
    /// Frames to hold before playing: the largest chunk seen plus one packet.
    target: usize,
    max_frames: usize,
    playing: bool,
    stats: FifoStats,
}

impl PcmFifo {
    /// A FIFO of `channels`-channel audio popped `packet_frames` frames at a time, holding at
    /// most `max_frames` frames (at least two packets more than the target).
    pub fn new(channels: usize, packet_frames: usize, max_frames: usize) -> Self {
        let channels = channels.max(1);
        let packet_frames = packet_frames.max(1);
        Self {
            samples: VecDeque::with_capacity(max_frames * channels),
            channels,
            packet_frames,
            target: packet_frames * 2,
            max_frames: max_frames.max(packet_frames * 4),
            playing: false,
            stats: FifoStats::default(),
        }
    }

    /// Frames buffered now.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels
    }

    /// Frames buffered before playing starts.
    pub fn target(&self) -> usize {
        self.target
    }

    /// Counters so far.
    pub fn stats(&self) -> FifoStats {
        self.stats
    }

    /// Appends captured interleaved samples (a trailing partial frame is ignored).
    pub fn push(&mut self, samples: &[f32]) {
        let whole = samples.len() / self.channels * self.channels;
        let frames = whole / self.channels;
        self.stats.frames_in += frames as u64;
        // The next chunk comes a chunk later: hold one chunk plus a packet before playing.
        let need = (frames + self.packet_frames).min(self.max_frames / 2);
        self.target = self.target.max(need);
        self.samples.extend(&samples[..whole]);
        if self.frames() > self.max_frames {
            let drop = self.frames() - self.target;
            self.samples.drain(..drop * self.channels);
            self.stats.frames_dropped += drop as u64;
        }
    }

    /// Fills `out` (one packet: `packet_frames × channels` samples) with the oldest sound, or
    /// with silence (see [`Pop`]).
    pub fn pop(&mut self, out: &mut [f32]) -> Pop {
        let want = self.packet_frames * self.channels;
        let len = want.min(out.len());
        let out = &mut out[..len];
        if !self.playing && self.frames() >= self.target {
            self.playing = true;
        }
        let n = out.len();
        if self.playing && self.samples.len() >= n {
            for (o, s) in out.iter_mut().zip(self.samples.drain(..n)) {
                *o = s;
            }
            self.stats.packets_sound += 1;
            return Pop::Sound;
        }
        out.fill(0.0);
        self.stats.packets_silent += 1;
        if self.playing {
            self.playing = false;
            self.stats.underruns += 1;
            Pop::Underrun
        } else {
            Pop::Filling
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ramp(start: usize, frames: usize) -> Vec<f32> {
        (start..start + frames)
            .flat_map(|i| [i as f32, -(i as f32)])
            .collect()
    }

    #[test]
    fn fills_to_one_chunk_plus_a_packet_then_plays_in_order() {
        let mut f = PcmFifo::new(2, 240, 4800);
        let mut out = vec![1.0; 480];
        assert_eq!(f.pop(&mut out), Pop::Filling);
        assert!(out.iter().all(|s| *s == 0.0));
        f.push(&ramp(0, 1024));
        assert_eq!(f.target(), 1024 + 240);
        assert_eq!(f.pop(&mut out), Pop::Filling, "1024 < 1264 buffered");
        f.push(&ramp(1024, 1024));
        let mut next = 0;
        for _ in 0..8 {
            assert_eq!(f.pop(&mut out), Pop::Sound);
            assert_eq!(out[0], next as f32);
            assert_eq!(out[1], -(next as f32));
            assert_eq!(out[478], (next + 239) as f32);
            next += 240;
        }
        assert_eq!(f.frames(), 2048 - 8 * 240);
        let s = f.stats();
        assert_eq!((s.packets_sound, s.packets_silent, s.underruns), (8, 2, 0));
    }

    #[test]
    fn an_underrun_plays_silence_and_refills_to_the_target() {
        let mut f = PcmFifo::new(2, 240, 4800);
        let mut out = vec![0.0; 480];
        f.push(&ramp(0, 600));
        assert_eq!(f.target(), 840);
        assert_eq!(f.pop(&mut out), Pop::Filling);
        f.push(&ramp(600, 300));
        for first in [0.0, 240.0, 480.0] {
            assert_eq!(f.pop(&mut out), Pop::Sound);
            assert_eq!(out[0], first);
        }
        assert_eq!(f.pop(&mut out), Pop::Underrun, "180 frames left < a packet");
        assert_eq!(f.pop(&mut out), Pop::Filling);
        f.push(&ramp(900, 600));
        assert_eq!(f.pop(&mut out), Pop::Filling, "780 < 840 target");
        f.push(&ramp(1500, 600));
        assert_eq!(f.pop(&mut out), Pop::Sound);
        assert_eq!(
            out[0], 720.0,
            "the leftover frames come first, nothing lost"
        );
        assert_eq!(f.stats().underruns, 1);
    }

    #[test]
    fn a_backlog_above_the_maximum_is_cut_to_the_target() {
        let mut f = PcmFifo::new(2, 240, 2048);
        for i in 0..4 {
            f.push(&ramp(i * 1024, 1024));
        }
        assert!(f.frames() <= 2048, "{}", f.frames());
        let mut out = vec![0.0; 480];
        assert_eq!(f.pop(&mut out), Pop::Sound);
        // The newest frames are kept: the last one pushed is 4095.
        let last_kept = out[0] as usize + f.frames() + 240 - 1;
        assert_eq!(last_kept, 4095);
        assert!(f.stats().frames_dropped > 0);
    }

    #[test]
    fn partial_frames_and_short_outputs_do_not_panic() {
        let mut f = PcmFifo::new(6, 240, 4800);
        f.push(&[0.5; 7]); // one frame and one stray sample
        assert_eq!(f.frames(), 1);
        let mut small = [0.0; 10];
        assert_eq!(f.pop(&mut small), Pop::Filling);
        let mut zero_channels = PcmFifo::new(0, 0, 0);
        zero_channels.push(&[1.0, 2.0]);
        let mut out = [0.0; 4];
        let _ = zero_channels.pop(&mut out);
    }
}
