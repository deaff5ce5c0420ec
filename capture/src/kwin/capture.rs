//! Frames of a KWin screencast stream (act): a [`FrameSource`] over [`PipeWireCapture`] of the
//! stream's node, following the node when the display recreates its stream.
//!
//! KWin sends a frame when the output was repainted (`ScreencastManager::streamOutput` records
//! a frame on the output's `outputChange` with damage), so an unchanged desktop sends nothing.
//! [`KwinCapture::next_frame`] therefore waits at most `repeat_after` for a new frame and else
//! hands out the last one again, stamped with the time it was handed out (the picture is
//! known to be unchanged up to then). Only the first frame of a node must arrive within the
//! timeout. Stamps handed out strictly increase.

use std::time::Duration;

use super::KwinError;
use super::display::NodeWatch;
use crate::display::{CaptureError, CapturedFrame, FrameSource, PixelFormat};
use crate::pipewire::{self, PipeWireCapture, Target, VideoFrame};

/// Formats a KWin 5.27 stream offers in memory (its EnumFormat: BGRA, BGRx).
const FORMATS: [PixelFormat; 2] = [PixelFormat::Bgrx, PixelFormat::Bgra];

/// A [`FrameSource`] of a KWin screencast stream (see the module docs).
pub struct KwinCapture {
    remote: Option<String>,
    watch: NodeWatch,
    current: Option<(u32, PipeWireCapture)>,
    frame: VideoFrame,
    have_frame: bool,
    repeated: bool,
    /// The last stamp handed out: stamps only increase (see `next`).
    last_us: u64,
    index: u64,
    timeout: Duration,
    repeat_after: Duration,
}

impl std::fmt::Debug for KwinCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KwinCapture")
            .field("node", &self.current.as_ref().map(|(n, _)| *n))
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl KwinCapture {
    /// Captures the node `watch` names, from the PipeWire daemon at `remote` (`None`: the
    /// session's, `$XDG_RUNTIME_DIR/pipewire-0`, which is also the one KWin streams to).
    /// `timeout` bounds connecting and the first frame of each node; after that an unchanged
    /// picture is repeated every `repeat_after`.
    pub fn follow(
        remote: Option<String>,
        watch: NodeWatch,
        timeout: Duration,
        repeat_after: Duration,
    ) -> Self {
        Self {
            remote,
            watch,
            current: None,
            frame: VideoFrame::default(),
            have_frame: false,
            repeated: false,
            last_us: 0,
            index: 0,
            timeout,
            repeat_after,
        }
    }

    /// The node captured now.
    pub fn node(&self) -> Option<u32> {
        self.current.as_ref().map(|(n, _)| *n)
    }

    /// Whether the last frame handed out was the one before repeated (KWin sent no new one).
    pub fn last_was_repeat(&self) -> bool {
        self.repeated
    }

    /// Counters of the PipeWire capture of the current node.
    pub fn stats(&self) -> Option<pipewire::CaptureStats> {
        self.current.as_ref().map(|(_, c)| c.stats())
    }

    fn ensure_connected(&mut self) -> Result<(), KwinError> {
        let want = self.watch.get().ok_or(KwinError::Closed)?;
        if self.current.as_ref().is_some_and(|(n, _)| *n == want) {
            return Ok(());
        }
        self.current = None; // disconnect the old node first
        self.have_frame = false;
        let capture =
            PipeWireCapture::connect_to(self.remote.clone(), Target::Id(want), self.timeout)?;
        self.current = Some((want, capture));
        Ok(())
    }

    fn next(&mut self) -> Result<bool, KwinError> {
        self.ensure_connected()?;
        let Some((_, capture)) = &self.current else {
            return Err(KwinError::Closed);
        };
        let wait = if self.have_frame {
            self.repeat_after
        } else {
            self.timeout
        };
        // A frame the stream thread dequeued just as the wait for it timed out carries a stamp
        // older than the repeat handed out meanwhile: stamps are kept strictly increasing, which
        // moves such a frame by at most that race (microseconds).
        let fresh = match capture.next_frame(&mut self.frame, wait) {
            Ok(()) => {
                self.have_frame = true;
                true
            }
            Err(pipewire::CaptureError::Timeout(_)) if self.have_frame => {
                self.frame.capture_us = crate::clock::monotonic_us();
                false
            }
            Err(e) => {
                self.current = None;
                self.have_frame = false;
                return Err(e.into());
            }
        };
        self.frame.capture_us = self.frame.capture_us.max(self.last_us + 1);
        self.last_us = self.frame.capture_us;
        Ok(fresh)
    }
}

impl FrameSource for KwinCapture {
    fn formats(&self) -> &[PixelFormat] {
        &FORMATS
    }

    fn next_frame(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        self.repeated = !self.next().map_err(CaptureError::from)?;
        let format = match self.frame.format {
            pipewire::PixelFormat::Bgrx => PixelFormat::Bgrx,
            pipewire::PixelFormat::Bgra => PixelFormat::Bgra,
            other => {
                return Err(CaptureError::Unsupported(format!(
                    "KWin stream in {other:?}; BGRx/BGRA expected"
                )));
            }
        };
        let index = self.index;
        self.index += 1;
        Ok(CapturedFrame {
            width: self.frame.width,
            height: self.frame.height,
            stride: self.frame.stride(),
            format,
            capture_us: self.frame.capture_us,
            index,
            data: &self.frame.data,
        })
    }
}
