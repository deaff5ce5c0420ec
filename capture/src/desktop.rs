//! A session's desktop as a pipeline source (act): a compositor output created at the
//! client's mode, captured at the session's frame rate, converted to I420 for the encoder.
//!
//! ```text
//!  DisplayBackend::create_output(W×H@fps) ─► VirtualDisplay (kept for the session; removed
//!                                            on drop where the compositor can)
//!  FrameSource (e.g. wlroots Screencopy of that output, BGRx)
//!        │ every 1/fps
//!        ▼
//!  convert::bgrx_to_i420 ─► pool buffer (FrameBuf, I420 W×H) ─► EncodeStage
//! ```
//!
//! A captured frame of another size than the session's (the output's mode is still being
//! applied, or the compositor scaled it) is not encoded: it is counted in
//! [`DesktopCapture::size_mismatches`] and the next one is tried. A capture error ends the
//! source with a stage error (the stream ends and says why).
//!
//! Mode changes (punktfunk/1 renegotiation): a source made [`DesktopCapture::with_switch`]
//! follows a [`ModeSwitch`]. When the switch names a new mode, the source sets the output to
//! it in place ([`VirtualDisplay::set_mode`]), resizes its frame and interval, and tags the
//! frames it captures at the new size with the mode's id, so that the encode stage
//! reconfigures itself at the first of them. Frames the compositor still delivers at the old
//! size are skipped (counted as size mismatches), never scaled.

use std::time::Instant;

use punktfunk_engine::pipeline::{Captured, Source, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

use crate::convert::bgrx_to_i420;
use crate::display::{DisplayMode, FrameSource, PixelFormat, VirtualDisplay};
use crate::frame::Frame;
use crate::grid::FrameGrid;
use crate::stages::ModeSwitch;

/// The desktop source of one session (see the module docs).
pub struct DesktopCapture<D, S> {
    /// The session's output; dropped (and removed) with the source.
    display: D,
    source: S,
    frame: Frame,
    grid: FrameGrid,
    /// The mode id frames are tagged with ([`ModeSwitch`]; 0 without one).
    mode: u16,
    switch: Option<std::sync::Arc<ModeSwitch>>,
    /// Frames not produced because no pool buffer was free.
    pub pool_misses: u64,
    /// Captured frames skipped because their size was not the session's.
    pub size_mismatches: u64,
}

impl<D, S> std::fmt::Debug for DesktopCapture<D, S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DesktopCapture")
            .field("size", &(self.frame.width(), self.frame.height()))
            .field("interval", &self.grid.interval())
            .field("pool_misses", &self.pool_misses)
            .field("size_mismatches", &self.size_mismatches)
            .finish_non_exhaustive()
    }
}

impl<D: VirtualDisplay, S: FrameSource> DesktopCapture<D, S> {
    /// Captures `source` (an output of `display`) as `width`×`height` I420 frames at `fps`.
    pub fn new(
        display: D,
        source: S,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, crate::FrameError> {
        Ok(Self {
            display,
            source,
            frame: Frame::new(width, height)?,
            grid: FrameGrid::new(fps),
            mode: 0,
            switch: None,
            pool_misses: 0,
            size_mismatches: 0,
        })
    }

    /// Captures `source` (an output of `display`) in the mode `switch` names now, and
    /// follows the switch: a new mode is set on the output in place (see the module docs).
    pub fn with_switch(
        display: D,
        source: S,
        switch: std::sync::Arc<ModeSwitch>,
    ) -> Result<Self, crate::FrameError> {
        let (m, _) = switch.get();
        let mut c = Self::new(display, source, m.width, m.height, m.fps)?;
        c.mode = m.id;
        c.switch = Some(switch);
        Ok(c)
    }

    /// Sets the output to the switch's mode when it names a new one.
    fn follow_switch(&mut self) -> Result<(), StageError> {
        let Some(sw) = &self.switch else {
            return Ok(());
        };
        let (m, _) = sw.get();
        if m.id == self.mode {
            return Ok(());
        }
        let mode = DisplayMode::new(m.width, m.height, m.fps);
        self.display.set_mode(mode).map_err(|e| {
            StageError::failed(format!(
                "setting output {} to {mode}: {e}",
                self.display.name()
            ))
        })?;
        tracing::info!(output = self.display.name(), %mode, "desktop output set to the new mode");
        self.frame = Frame::new(m.width, m.height).map_err(StageError::failed)?;
        self.grid.set_fps(m.fps);
        self.mode = m.id;
        Ok(())
    }

    /// The session's output.
    pub fn display(&self) -> &D {
        &self.display
    }
}

impl<D, S> Source for DesktopCapture<D, S>
where
    D: VirtualDisplay + Send + 'static,
    S: FrameSource + Send + 'static,
{
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        let now = Instant::now();
        if crate::stages::sleep_if_not_due(&self.grid, now) {
            return Ok(Captured::Idle);
        }
        // A new mode's frame rate applies to the gap after its first frame already.
        self.follow_switch()?;
        self.grid.advance(now);
        let captured = self.source.next_frame().map_err(StageError::failed)?;
        let (w, h) = (self.frame.width(), self.frame.height());
        if !matches!(captured.format, PixelFormat::Bgrx | PixelFormat::Bgra) {
            return Err(StageError::failed(format!(
                "desktop capture delivered {:?}; only BGRx/BGRA is converted",
                captured.format
            )));
        }
        // The output may be an odd size (the encoder's is even): the top-left even part is
        // taken when it is at most one pixel larger.
        if captured.width < w
            || captured.height < h
            || captured.width > w + 1
            || captured.height > h + 1
        {
            self.size_mismatches += 1;
            return Ok(Captured::Idle);
        }
        let (capture_us, index) = (captured.capture_us, captured.index);
        bgrx_to_i420(captured.data, captured.stride, &mut self.frame)
            .map_err(StageError::failed)?;
        let Some(mut buf) = cx.take_buf() else {
            self.pool_misses += 1;
            return Ok(Captured::Idle);
        };
        buf.fill_from(self.frame.as_bytes())
            .map_err(StageError::failed)?;
        buf.meta.index = index;
        buf.meta.capture_ns = capture_us.saturating_mul(1000);
        buf.meta.keyframe = false;
        buf.meta.mode = self.mode;
        buf.meta.interval_ns = self.grid.interval_ns();
        Ok(Captured::Frame(buf))
    }
}
