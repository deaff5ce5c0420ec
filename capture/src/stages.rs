//! This crate's sources and encoders as stages of the engine's pipeline
//! (`punktfunk_engine::pipeline`).
//!
//! ```text
//!  PatternCapture (Source) ── FrameBuf{I420 bytes, meta.index, meta.capture_ns} ──►
//!  EncodeStage<E> (Stage)  ── FrameBuf{Annex-B access unit, meta.keyframe}       ──► FEC stage
//! ```
//!
//! [`PatternCapture`] paces itself at the stream's frame rate (act: it reads the clock and
//! sleeps). [`EncodeStage`] turns keyframe requests from the pipeline (dropped frames, the
//! client's IDR requests) into [`VideoEncoder::request_idr`].

use std::sync::Mutex;
use std::time::{Duration, Instant};

use punktfunk_engine::pipeline::{Captured, Emit, Source, Stage, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

use crate::frame::{Frame, Layout};
use crate::grid::FrameGrid;
use crate::source::PatternSource;
use crate::video::{FrameKind, VideoEncoder, VideoEncoderConfig};

/// Raw I420 bytes of a `width`×`height` frame (other layouts: [`Layout::frame_len`]).
pub fn raw_frame_len(width: u32, height: u32) -> usize {
    Layout::I420.frame_len(width, height)
}

/// A video mode: picture size, rate and bitrate, numbered so frames can say which mode they
/// belong to ([`punktfunk_engine::pool::FrameMeta::mode`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoMode {
    /// Mode number (0 for the first; the changer counts up).
    pub id: u16,
    /// Width (even).
    pub width: u32,
    /// Height (even).
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Encoder bitrate, kbit/s.
    pub bitrate_kbps: u32,
}

/// Mid-stream mode changes for a running pipeline: the control plane [`ModeSwitch::set`]s a
/// new mode; [`PatternCapture`] rebuilds its source at the next frame and tags frames with
/// the mode's id; [`EncodeStage`] reconfigures its encoder (the next frame is an IDR) when
/// the first frame of the new mode reaches it. Keys, sockets and FEC downstream run on.
#[derive(Debug)]
pub struct ModeSwitch(Mutex<(VideoMode, Option<Instant>)>);

impl ModeSwitch {
    /// A switch starting in `mode`.
    pub fn new(mode: VideoMode) -> Self {
        Self(Mutex::new((mode, None)))
    }

    /// Asks for `mode` from the next frame on (remembering when, for rebuild timing).
    pub fn set(&self, mode: VideoMode) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = (mode, Some(Instant::now()));
    }

    /// The current mode and when it was asked for.
    pub fn get(&self) -> (VideoMode, Option<Instant>) {
        *self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A capture source's poll while no frame is due on `grid`: sleeps a little (at most 2 ms, so
/// a stop request stays visible: the runner checks between polls) and says so (the source
/// then returns `Captured::Idle`).
pub(crate) fn sleep_if_not_due(grid: &FrameGrid, now: Instant) -> bool {
    match grid.wait(now) {
        Some(wait) => {
            std::thread::sleep(wait.min(Duration::from_millis(2)));
            true
        }
        None => false,
    }
}

/// The test pattern as a pipeline source, one frame every `1/fps` seconds.
#[derive(Debug)]
pub struct PatternCapture {
    source: PatternSource,
    layout: Layout,
    hdr: bool,
    noise: bool,
    grid: FrameGrid,
    mode: u16,
    switch: Option<std::sync::Arc<ModeSwitch>>,
    /// Frames not produced because no pool buffer was free.
    pub pool_misses: u64,
}

impl PatternCapture {
    /// A `width`×`height` pattern at `fps`.
    pub fn new(width: u32, height: u32, fps: u32) -> Result<Self, crate::FrameError> {
        Ok(Self {
            source: PatternSource::new(width, height)?,
            layout: Layout::I420,
            hdr: false,
            noise: false,
            grid: FrameGrid::new(fps),
            mode: 0,
            switch: None,
            pool_misses: 0,
        })
    }

    /// The same pattern in `layout` (4:4:4, 10-bit), with the HDR palette when `hdr`
    /// ([`crate::pattern::TestPattern::with_format`]).
    pub fn with_format(mut self, layout: Layout, hdr: bool) -> Self {
        self.source = self.source.with_format(layout, hdr);
        self.layout = layout;
        self.hdr = hdr;
        self
    }

    /// The same pattern with its noise band on or off
    /// ([`crate::pattern::TestPattern::with_noise`]).
    pub fn with_noise(mut self, noise: bool) -> Self {
        self.source = self.source.with_noise(noise);
        self.noise = noise;
        self
    }

    /// A pattern that follows `switch` (starting in its current mode).
    pub fn with_switch(switch: std::sync::Arc<ModeSwitch>) -> Result<Self, crate::FrameError> {
        let (m, _) = switch.get();
        let mut c = Self::new(m.width, m.height, m.fps)?;
        c.mode = m.id;
        c.switch = Some(switch);
        Ok(c)
    }

    fn follow_switch(&mut self) -> Result<(), crate::FrameError> {
        let Some(sw) = &self.switch else {
            return Ok(());
        };
        let (m, _) = sw.get();
        if m.id != self.mode {
            self.source = PatternSource::new(m.width, m.height)?
                .with_format(self.layout, self.hdr)
                .with_noise(self.noise);
            self.grid.set_fps(m.fps);
            self.mode = m.id;
        }
        Ok(())
    }
}

impl Source for PatternCapture {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        let now = Instant::now();
        if crate::stages::sleep_if_not_due(&self.grid, now) {
            return Ok(Captured::Idle);
        }
        // A new mode's frame rate applies to the gap after its first frame already.
        self.follow_switch().map_err(StageError::failed)?;
        self.grid.advance(now);
        let Some(mut buf) = cx.take_buf() else {
            self.pool_misses += 1;
            return Ok(Captured::Idle);
        };
        let frame = self.source.capture();
        buf.fill_from(frame.as_bytes())
            .map_err(StageError::failed)?;
        buf.meta.index = frame.index;
        buf.meta.capture_ns = frame.capture_us.saturating_mul(1000);
        buf.meta.keyframe = false;
        buf.meta.mode = self.mode;
        // The send stage paces this frame over its own mode's interval.
        buf.meta.interval_ns = self.grid.interval_ns();
        Ok(Captured::Frame(buf))
    }
}

/// Counters of the encode stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EncodeStats {
    /// Access units produced.
    pub frames: u64,
    /// IDRs produced.
    pub idrs: u64,
    /// Frames the encoder skipped.
    pub skipped: u64,
    /// Frames lost to encoder errors or a full pool (an IDR follows).
    pub failed: u64,
}

/// A [`VideoEncoder`] as a pipeline stage: raw [`FrameBuf`] in (I420 unless
/// [`EncodeStage::with_layout`] says otherwise), Annex-B out.
pub struct EncodeStage<E: VideoEncoder> {
    encoder: E,
    scratch: Frame,
    mode: u16,
    switch: Option<std::sync::Arc<ModeSwitch>>,
    stats: EncodeStats,
}

impl<E: VideoEncoder> std::fmt::Debug for EncodeStage<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EncodeStage")
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl<E: VideoEncoder> EncodeStage<E> {
    /// Wraps `encoder`; its configured size decides the raw frames accepted, I420 ones
    /// ([`EncodeStage::with_layout`] for others).
    pub fn new(encoder: E) -> Result<Self, crate::FrameError> {
        let c = encoder.config();
        Ok(Self {
            scratch: Frame::new(c.width, c.height)?,
            encoder,
            mode: 0,
            switch: None,
            stats: EncodeStats::default(),
        })
    }

    /// The same stage taking raw frames in `layout` (what its source delivers).
    pub fn with_layout(mut self, layout: Layout) -> Result<Self, crate::FrameError> {
        let c = self.encoder.config();
        self.scratch = Frame::with_layout(c.width, c.height, layout)?;
        Ok(self)
    }

    /// An encode stage that reconfigures its encoder when frames of a new mode of `switch`
    /// arrive.
    pub fn with_switch(
        encoder: E,
        switch: std::sync::Arc<ModeSwitch>,
    ) -> Result<Self, crate::FrameError> {
        let mut s = Self::new(encoder)?;
        s.mode = switch.get().0.id;
        s.switch = Some(switch);
        Ok(s)
    }

    /// Follows a mode change announced by `mode` on an input frame. Returns false when the
    /// frame belongs to a mode already superseded (it is dropped).
    fn follow_mode(&mut self, mode: u16) -> Result<bool, StageError> {
        if mode == self.mode {
            return Ok(true);
        }
        let Some(sw) = &self.switch else {
            return Ok(true);
        };
        let (m, asked) = sw.get();
        if m.id != mode {
            return Ok(false);
        }
        self.encoder
            .reconfigure(VideoEncoderConfig {
                width: m.width,
                height: m.height,
                fps: m.fps,
                bitrate_kbps: m.bitrate_kbps,
            })
            .map_err(StageError::failed)?;
        self.scratch = Frame::with_layout(m.width, m.height, self.scratch.layout())
            .map_err(StageError::failed)?;
        self.mode = mode;
        if let Some(t) = asked {
            tracing::info!(
                mode,
                size = %format!("{}x{}@{}", m.width, m.height, m.fps),
                rebuild_ms = t.elapsed().as_secs_f64() * 1e3,
                "video mode changed: source and encoder rebuilt"
            );
        }
        Ok(true)
    }

    /// Counters so far.
    pub fn stats(&self) -> EncodeStats {
        self.stats
    }
}

impl<E: VideoEncoder + 'static> Stage for EncodeStage<E> {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        if !self.follow_mode(input.meta.mode)? {
            return Ok(());
        }
        let raw = input.as_slice();
        let dst = self.scratch.as_bytes_mut();
        if raw.len() != dst.len() {
            return Err(StageError::failed(format!(
                "raw frame of {} bytes does not match the encoder's size",
                raw.len()
            )));
        }
        dst.copy_from_slice(raw);
        self.scratch.index = input.meta.index;
        self.scratch.capture_us = input.meta.capture_ns / 1000;
        if cx.take_keyframe_request() {
            self.encoder.request_idr();
        }
        let Some(mut out) = cx.take_buf() else {
            self.stats.failed += 1;
            self.encoder.request_idr();
            return Ok(());
        };
        let meta = input.meta;
        match self.encoder.encode(&self.scratch, out.spare_mut()) {
            Ok(e) if e.kind == FrameKind::Skipped || e.len == 0 => {
                self.stats.skipped += 1;
            }
            Ok(e) => self.emit(e, out, meta, output)?,
            Err(err) => {
                // The encoder forces an IDR after a lost frame; the stream goes on.
                self.stats.failed += 1;
                tracing::warn!(error = %err, "frame not encoded");
                return Ok(());
            }
        }
        // Access units an encoder with a pipeline (SVT-AV1) finished since.
        while self.encoder.has_pending() {
            let Some(mut out) = cx.take_buf() else {
                return Ok(());
            };
            match self.encoder.drain(out.spare_mut()) {
                Ok(Some(e)) if e.len > 0 => self.emit(e, out, meta, output)?,
                Ok(_) => return Ok(()),
                Err(err) => {
                    self.stats.failed += 1;
                    tracing::warn!(error = %err, "frame not encoded");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

impl<E: VideoEncoder> EncodeStage<E> {
    /// Sends one access unit on, stamped with the frame it encodes (`e.index`/`capture_us`,
    /// which differ from the input's for pipelined encoders).
    fn emit(
        &mut self,
        e: crate::video::EncodedFrame,
        mut out: FrameBuf,
        meta: punktfunk_engine::pool::FrameMeta,
        output: &mut dyn Emit<FrameBuf>,
    ) -> Result<(), StageError> {
        out.set_len(e.len).map_err(StageError::failed)?;
        out.meta = meta;
        if e.index != meta.index {
            out.meta.index = e.index;
            out.meta.capture_ns = e.capture_us * 1000;
        }
        out.meta.keyframe = e.is_keyframe();
        self.stats.frames += 1;
        self.stats.idrs += u64::from(e.is_keyframe());
        output.emit(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::h264::OpenH264Encoder;
    use crate::video::VideoEncoderConfig;
    use punktfunk_engine::pipeline::{PipelineControl, StageId};
    use punktfunk_engine::pool::FramePool;

    #[test]
    fn pattern_frames_encode_with_idr_first_and_on_request() {
        let (w, h) = (320, 192);
        let enc = OpenH264Encoder::new(VideoEncoderConfig {
            width: w,
            height: h,
            fps: 60,
            bitrate_kbps: 2000,
        })
        .unwrap();
        let cap = enc.config().max_encoded_len().max(raw_frame_len(w, h));
        let pool = FramePool::new(6, cap).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(StageId::Capture, &pool, &control);
        let mut src = PatternCapture::new(w, h, 1000).unwrap();
        let mut stage = EncodeStage::new(enc).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        for i in 0..6 {
            let f = loop {
                if let Captured::Frame(f) = src.poll_frame(&mut cx).unwrap() {
                    break f;
                }
            };
            assert_eq!(f.meta.index, i);
            assert_eq!(f.len(), raw_frame_len(w, h));
            if i == 4 {
                control.keyframe().request();
            }
            stage.process(f, &mut out, &mut cx).unwrap();
            let last = out.pop().unwrap();
            assert_eq!(last.meta.keyframe, i == 0 || i == 4, "frame {i}");
            assert!(
                last.as_slice().starts_with(&[0, 0, 0, 1])
                    || last.as_slice().starts_with(&[0, 0, 1])
            );
        }
        assert_eq!(stage.stats().idrs, 2);
    }

    #[test]
    fn a_mode_switch_rebuilds_source_and_encoder_with_an_idr() {
        use crate::annexb::sps_size;
        let first = VideoMode {
            id: 0,
            width: 320,
            height: 192,
            fps: 240,
            bitrate_kbps: 1500,
        };
        let switch = std::sync::Arc::new(ModeSwitch::new(first));
        let enc = OpenH264Encoder::new(VideoEncoderConfig {
            width: 320,
            height: 192,
            fps: 240,
            bitrate_kbps: 1500,
        })
        .unwrap();
        let pool = FramePool::new(6, raw_frame_len(640, 384) * 2).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(StageId::Capture, &pool, &control);
        let mut src = PatternCapture::with_switch(switch.clone()).unwrap();
        let mut stage = EncodeStage::with_switch(enc, switch.clone()).unwrap();
        let mut out: Vec<FrameBuf> = Vec::new();
        for i in 0..8 {
            if i == 4 {
                switch.set(VideoMode {
                    id: 1,
                    width: 640,
                    height: 384,
                    fps: 200,
                    ..first
                });
            }
            let f = loop {
                if let Captured::Frame(f) = src.poll_frame(&mut cx).unwrap() {
                    break f;
                }
            };
            assert_eq!(f.meta.mode, u16::from(i >= 4));
            // The frame carries its own mode's interval, for the send stage's pacing.
            let want_ns = if i >= 4 { 5_000_000 } else { 4_166_666 };
            assert_eq!(f.meta.interval_ns, want_ns, "frame {i}");
            stage.process(f, &mut out, &mut cx).unwrap();
            let e = out.pop().unwrap();
            assert_eq!(e.meta.mode, u16::from(i >= 4));
            assert_eq!(e.meta.keyframe, i == 0 || i == 4, "frame {i}");
            if e.meta.keyframe {
                let want = if i == 0 { (320, 192) } else { (640, 384) };
                assert_eq!(sps_size(e.as_slice()), Some(want));
            }
        }
    }
}
