//! A PipeWire video node as a session's pipeline source (act): the node's newest picture,
//! sampled every 1/fps and converted to the session's size.
//!
//! ```text
//!  node (any size, BGRx/RGBx/I420/NV12…) ─► PipeWireCapture mailbox (newest wins)
//!        every 1/fps: take the newest if one came, else repeat the last
//!        ▼
//!  scale::Scaler (nearest sample, BT.709) ─► pool buffer (I420, session W×H) ─► EncodeStage
//! ```
//!
//! A screencast node sends a buffer only when its picture changed, so an unchanged desktop is
//! repeated at the session's rate (the encoder makes tiny P-frames of it) rather than
//! starving the client. Until the first picture arrives the source idles. The node's size is
//! the producer's; the session's is the client's: the picture is scaled, not cropped.
//! With a [`ModeSwitch`] (punktfunk/1) a new mode resizes the output frame in place.

use std::sync::Arc;
use std::time::{Duration, Instant};

use punktfunk_engine::pipeline::{Captured, Source, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

use super::{CaptureError, PipeWireCapture, PixelFormat, VideoFrame};
use crate::frame::Frame;
use crate::grid::FrameGrid;
use crate::scale::{Picture, PicturePlanes, Scaler};
use crate::stages::ModeSwitch;

/// Counters of a [`NodeCapture`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NodeCaptureStats {
    /// Frames sent with a picture the node delivered since the previous frame.
    pub fresh: u64,
    /// Frames that repeated the last picture (the node sent nothing new).
    pub repeated: u64,
    /// Frames not produced because no pool buffer was free.
    pub pool_misses: u64,
}

/// The source (see the module docs).
pub struct NodeCapture {
    capture: PipeWireCapture,
    picture: VideoFrame,
    have_picture: bool,
    scaler: Scaler,
    frame: Frame,
    grid: FrameGrid,
    mode: u16,
    switch: Option<Arc<ModeSwitch>>,
    stats: NodeCaptureStats,
}

impl std::fmt::Debug for NodeCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCapture")
            .field("size", &(self.frame.width(), self.frame.height()))
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl NodeCapture {
    /// Frames of `width`×`height` at `fps` from `capture`.
    pub fn new(
        capture: PipeWireCapture,
        width: u32,
        height: u32,
        fps: u32,
    ) -> Result<Self, crate::FrameError> {
        Ok(Self {
            capture,
            picture: VideoFrame::default(),
            have_picture: false,
            scaler: Scaler::new(),
            frame: Frame::new(width, height)?,
            grid: FrameGrid::new(fps),
            mode: 0,
            switch: None,
            stats: NodeCaptureStats::default(),
        })
    }

    /// Frames in the mode `switch` names now, following it.
    pub fn with_switch(
        capture: PipeWireCapture,
        switch: Arc<ModeSwitch>,
    ) -> Result<Self, crate::FrameError> {
        let (m, _) = switch.get();
        let mut c = Self::new(capture, m.width, m.height, m.fps)?;
        c.mode = m.id;
        c.switch = Some(switch);
        Ok(c)
    }

    /// Counters so far.
    pub fn stats(&self) -> NodeCaptureStats {
        self.stats
    }

    fn follow_switch(&mut self) -> Result<(), StageError> {
        let Some(sw) = &self.switch else {
            return Ok(());
        };
        let (m, _) = sw.get();
        if m.id != self.mode {
            self.frame = Frame::new(m.width, m.height).map_err(StageError::failed)?;
            self.grid.set_fps(m.fps);
            self.mode = m.id;
        }
        Ok(())
    }

    /// The captured picture's planes as the scaler takes them.
    fn planes(p: &VideoFrame) -> PicturePlanes<'_> {
        let plane = |i: usize| {
            let pl = p.planes.0[i];
            (p.data.get(pl.offset..).unwrap_or(&[]), pl.stride)
        };
        match p.format {
            PixelFormat::Rgbx | PixelFormat::Rgba => PicturePlanes::Packed {
                data: plane(0).0,
                stride: plane(0).1,
                rgb: [0, 1, 2],
            },
            PixelFormat::I420 => PicturePlanes::I420 {
                y: plane(0),
                u: plane(1),
                v: plane(2),
            },
            PixelFormat::Nv12 => PicturePlanes::Nv12 {
                y: plane(0),
                uv: plane(1),
            },
            // BGRx, BGRA (and any later 4-byte BGR layout).
            _ => PicturePlanes::Packed {
                data: plane(0).0,
                stride: plane(0).1,
                rgb: [2, 1, 0],
            },
        }
    }
}

impl Source for NodeCapture {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        let now = Instant::now();
        if crate::stages::sleep_if_not_due(&self.grid, now) {
            return Ok(Captured::Idle);
        }
        self.follow_switch()?;
        let fresh = match self.capture.next_frame(&mut self.picture, Duration::ZERO) {
            Ok(()) => {
                self.have_picture = true;
                true
            }
            Err(CaptureError::Timeout(_)) => false,
            Err(e) => return Err(StageError::failed(format!("PipeWire node: {e}"))),
        };
        if !self.have_picture {
            // Nothing to show yet: look again shortly (no frame grid before the first).
            std::thread::sleep(Duration::from_millis(2));
            return Ok(Captured::Idle);
        }
        self.grid.advance(now);
        let picture = Picture {
            width: self.picture.width,
            height: self.picture.height,
            planes: Self::planes(&self.picture),
        };
        self.scaler
            .convert(&picture, &mut self.frame)
            .map_err(StageError::failed)?;
        let Some(mut buf) = cx.take_buf() else {
            self.stats.pool_misses += 1;
            return Ok(Captured::Idle);
        };
        buf.fill_from(self.frame.as_bytes())
            .map_err(StageError::failed)?;
        let index = self.stats.fresh + self.stats.repeated;
        if fresh {
            self.stats.fresh += 1;
            buf.meta.capture_ns = self.picture.capture_us.saturating_mul(1000);
        } else {
            // The picture sampled again now: its stamp is now (latency counts from here).
            self.stats.repeated += 1;
            buf.meta.capture_ns = crate::clock::monotonic_us().saturating_mul(1000);
        }
        buf.meta.index = index;
        buf.meta.keyframe = false;
        buf.meta.mode = self.mode;
        buf.meta.interval_ns = self.grid.interval_ns();
        Ok(Captured::Frame(buf))
    }
}
