//! A live test-pattern source: [`TestPattern`] frames stamped with the capture clock.
//!
//! The thin act around the pure generator: it numbers frames and reads
//! [`clock::monotonic_us`] once per frame. It does not pace: the
//! host's capture stage decides when to ask for the next frame (e.g. every 1/fps seconds).

use crate::clock;
use crate::display::{CaptureError, CapturedFrame, FrameSource, PixelFormat};
use crate::frame::{Frame, FrameError};
use crate::pattern::TestPattern;

/// Renders consecutive pattern frames (index 0, 1, 2, …) stamped with `CLOCK_MONOTONIC`.
#[derive(Debug, Clone)]
pub struct PatternSource {
    pattern: TestPattern,
    frame: Frame,
    next_index: u64,
}

impl PatternSource {
    /// A source of `width`×`height` frames (even, 64×64 up to 3840×2160). Allocates its frame
    /// buffer once, here.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        let pattern = TestPattern::new(width, height)?;
        let frame = pattern.new_frame();
        Ok(Self {
            pattern,
            frame,
            next_index: 0,
        })
    }

    /// The same source rendering in `layout`, with the HDR palette when `hdr` (see
    /// [`TestPattern::with_format`]).
    pub fn with_format(self, layout: crate::frame::Layout, hdr: bool) -> Self {
        let pattern = self.pattern.with_format(layout, hdr);
        let frame = pattern.new_frame();
        Self {
            pattern,
            frame,
            next_index: self.next_index,
        }
    }

    /// The same source with the pattern's noise band on or off.
    pub fn with_noise(mut self, noise: bool) -> Self {
        self.pattern = self.pattern.with_noise(noise);
        self
    }

    /// Renders the next frame into the source's own buffer and returns it.
    pub fn capture(&mut self) -> &Frame {
        let (index, now) = (self.next_index, clock::monotonic_us());
        self.next_index += 1;
        // The buffer was made by `self.pattern.new_frame()`, so its size always matches.
        self.pattern
            .render(&mut self.frame, index, now)
            .expect("own frame has the pattern's size");
        &self.frame
    }

    /// Renders the next frame into a caller-owned frame (e.g. one from a pool). Fails, without
    /// consuming a frame number, if `frame` has another size.
    pub fn capture_into(&mut self, frame: &mut Frame) -> Result<(), FrameError> {
        frame.expect_size(self.pattern.width(), self.pattern.height())?;
        self.pattern
            .render(frame, self.next_index, clock::monotonic_us())?;
        self.next_index += 1;
        Ok(())
    }

    /// The index the next captured frame will get.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }
}

/// The pattern as a [`FrameSource`]: I420 frames in the source's own buffer; never fails.
impl FrameSource for PatternSource {
    fn formats(&self) -> &[PixelFormat] {
        &[PixelFormat::I420]
    }

    fn next_frame(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        let frame = self.capture();
        Ok(CapturedFrame {
            width: frame.width(),
            height: frame.height(),
            stride: frame.y_stride(),
            format: PixelFormat::I420,
            capture_us: frame.capture_us,
            index: frame.index,
            data: frame.as_bytes(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::read_stamp;

    #[test]
    fn numbers_and_stamps_frames() {
        let mut src = PatternSource::new(320, 240).unwrap();
        let mut last_us = 0;
        for i in 0..3u64 {
            let f = src.capture();
            assert_eq!(f.index, i);
            let s = read_stamp(f.y(), 320, 240, 320).unwrap();
            assert_eq!(u64::from(s.frame), i);
            assert_eq!(s.capture_us, f.capture_us);
            assert!(s.capture_us >= last_us);
            last_us = s.capture_us;
        }
        let mut own = Frame::new(320, 240).unwrap();
        src.capture_into(&mut own).unwrap();
        assert_eq!(own.index, 3);
        let mut wrong = Frame::new(64, 64).unwrap();
        assert!(src.capture_into(&mut wrong).is_err());
        assert_eq!(src.next_index(), 4);
    }

    #[test]
    fn is_a_frame_source() {
        let mut src = PatternSource::new(320, 240).unwrap();
        let source: &mut dyn FrameSource = &mut src;
        assert_eq!(source.formats(), &[PixelFormat::I420]);
        let f = source.next_frame().unwrap();
        assert_eq!((f.width, f.height, f.stride, f.index), (320, 240, 320, 0));
        assert_eq!(f.data.len(), PixelFormat::I420.frame_len(320, 240));
        let s = read_stamp(&f.data[..320 * 240], 320, 240, 320).unwrap();
        assert_eq!(s.capture_us, f.capture_us);
        assert_eq!(source.next_frame().unwrap().index, 1);
    }
}
