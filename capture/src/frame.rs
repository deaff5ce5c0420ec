//! Raw video frames: planar I420 (YUV 4:2:0, 8 bit) in one caller-owned buffer.
//!
//! ```text
//!  data: Vec<u8>, allocated once by Frame::new, reused for every frame
//!  ┌──────────────────────────────┬───────────────┬───────────────┐
//!  │ Y: height rows × y_stride    │ U: h/2 × w/2  │ V: h/2 × w/2  │
//!  └──────────────────────────────┴───────────────┴───────────────┘
//!  y_stride = width, uv_stride = width / 2 (tightly packed; no row padding)
//! ```
//!
//! Pure: no I/O, no clock. Sizes are even because 4:2:0 chroma covers 2×2 luma pixels.
#![forbid(unsafe_code)]

use thiserror::Error;

/// Smallest width or height a [`Frame`] accepts.
pub const MIN_DIMENSION: u32 = 16;
/// Largest width or height a [`Frame`] accepts (the H.264 level 6.2 maximum is 8192).
pub const MAX_DIMENSION: u32 = 8192;

/// Errors of the raw-frame layer (frames and the test pattern): local misuse only.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum FrameError {
    /// Width or height is odd, or outside the accepted range.
    #[error(
        "invalid frame size {width}x{height}: need even sizes in {min}..={max_w}x{min}..={max_h}"
    )]
    InvalidSize {
        /// Requested width.
        width: u32,
        /// Requested height.
        height: u32,
        /// Smallest accepted width and height.
        min: u32,
        /// Largest accepted width.
        max_w: u32,
        /// Largest accepted height.
        max_h: u32,
    },
    /// A frame of one size was passed to something set up for another.
    #[error("frame is {got_w}x{got_h}, expected {want_w}x{want_h}")]
    SizeMismatch {
        /// Size of the frame passed in.
        got_w: u32,
        /// Size of the frame passed in.
        got_h: u32,
        /// Size expected.
        want_w: u32,
        /// Size expected.
        want_h: u32,
    },
}

/// Checks that `width`×`height` is even and within `min..=max_w` × `min..=max_h`.
pub(crate) fn check_size(
    width: u32,
    height: u32,
    min: u32,
    max_w: u32,
    max_h: u32,
) -> Result<(), FrameError> {
    let ok = width.is_multiple_of(2)
        && height.is_multiple_of(2)
        && (min..=max_w).contains(&width)
        && (min..=max_h).contains(&height);
    if ok {
        Ok(())
    } else {
        Err(FrameError::InvalidSize {
            width,
            height,
            min,
            max_w,
            max_h,
        })
    }
}

/// One raw I420 frame plus the metadata a source attaches to it.
///
/// The planes live in one buffer allocated by [`Frame::new`]; sources overwrite it in place, so
/// a steady-state capture loop allocates nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    data: Vec<u8>,
    /// Frame number assigned by the source (0 for the first frame).
    pub index: u64,
    /// Capture time in microseconds on the source's clock (see [`crate::clock`]); carried, never
    /// read by this crate's pure code.
    pub capture_us: u64,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Frame")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("index", &self.index)
            .field("capture_us", &self.capture_us)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// Allocates a frame of `width`×`height` (even, 16..=8192), filled with mid-grey.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        check_size(width, height, MIN_DIMENSION, MAX_DIMENSION, MAX_DIMENSION)?;
        let luma = width as usize * height as usize;
        Ok(Self {
            width,
            height,
            data: vec![128; luma + luma / 2],
            index: 0,
            capture_us: 0,
        })
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes between the starts of two luma rows (equal to the width).
    pub fn y_stride(&self) -> usize {
        self.width as usize
    }

    /// Bytes between the starts of two chroma rows (half the width).
    pub fn uv_stride(&self) -> usize {
        self.width as usize / 2
    }

    fn luma_len(&self) -> usize {
        self.width as usize * self.height as usize
    }

    /// The luma plane, `height` rows of [`Frame::y_stride`] bytes.
    pub fn y(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    /// The Cb plane, `height / 2` rows of [`Frame::uv_stride`] bytes.
    pub fn u(&self) -> &[u8] {
        let l = self.luma_len();
        &self.data[l..l + l / 4]
    }

    /// The Cr plane, `height / 2` rows of [`Frame::uv_stride`] bytes.
    pub fn v(&self) -> &[u8] {
        let l = self.luma_len();
        &self.data[l + l / 4..]
    }

    /// All three planes, writable: `(y, u, v)`.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let l = self.luma_len();
        let (y, uv) = self.data.split_at_mut(l);
        let (u, v) = uv.split_at_mut(l / 4);
        (y, u, v)
    }

    /// The whole I420 buffer (Y, then U, then V), e.g. for writing a `.yuv` file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Fails with [`FrameError::SizeMismatch`] unless this frame is `width`×`height`.
    pub fn expect_size(&self, width: u32, height: u32) -> Result<(), FrameError> {
        if (self.width, self.height) == (width, height) {
            Ok(())
        } else {
            Err(FrameError::SizeMismatch {
                got_w: self.width,
                got_h: self.height,
                want_w: width,
                want_h: height,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plane_sizes() {
        let mut f = Frame::new(64, 32).unwrap();
        assert_eq!(f.y().len(), 64 * 32);
        assert_eq!(f.u().len(), 32 * 16);
        assert_eq!(f.v().len(), 32 * 16);
        assert_eq!(f.as_bytes().len(), 64 * 32 * 3 / 2);
        let (y, u, v) = f.planes_mut();
        y[0] = 1;
        u[0] = 2;
        v[0] = 3;
        assert_eq!((f.y()[0], f.u()[0], f.v()[0]), (1, 2, 3));
    }

    #[test]
    fn rejects_odd_and_out_of_range() {
        assert!(Frame::new(63, 64).is_err());
        assert!(Frame::new(64, 65).is_err());
        assert!(Frame::new(14, 64).is_err());
        assert!(Frame::new(8194, 64).is_err());
        assert!(Frame::new(16, 16).is_ok());
    }

    #[test]
    fn size_mismatch() {
        let f = Frame::new(64, 64).unwrap();
        assert!(f.expect_size(64, 64).is_ok());
        assert_eq!(
            f.expect_size(128, 64),
            Err(FrameError::SizeMismatch {
                got_w: 64,
                got_h: 64,
                want_w: 128,
                want_h: 64
            })
        );
    }
}
