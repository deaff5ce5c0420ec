//! Raw video frames: planar YUV in one caller-owned buffer, I420 (4:2:0, 8 bit) unless the
//! frame was made with another [`Layout`] (4:4:4, 10 bit).
//!
//! ```text
//!  data: Vec<u8>, allocated once by Frame::new / Frame::with_layout, reused for every frame
//!  ┌──────────────────────────────┬───────────────┬───────────────┐
//!  │ Y: height rows × y_stride    │ U: ch × cw    │ V: ch × cw    │
//!  └──────────────────────────────┴───────────────┴───────────────┘
//!  4:2:0: cw = w/2, ch = h/2; 4:4:4: cw = w, ch = h
//!  8 bit: one byte per sample; 10 bit: one little-endian u16 per sample, value 0..=1023
//!  y_stride = width × bytes per sample, uv_stride = cw × bytes per sample (no row padding)
//! ```
//!
//! Levels are given to the painting helpers ([`Frame::fill_rect`], [`Frame::pack_luma`],
//! [`Frame::pack_chroma`]) as 10-bit code values; 8-bit frames store `(v + 2) >> 2`, so an
//! 8-bit level `l` given as `l << 2` is stored exactly.
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
    /// A frame of one layout was passed to something set up for another.
    #[error("frame is {got}, expected {want}")]
    LayoutMismatch {
        /// Layout of the frame passed in.
        got: Layout,
        /// Layout expected.
        want: Layout,
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

/// How a frame's samples are laid out: chroma subsampling and bits per sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Layout {
    /// 4:2:0, 8 bit (I420): what capture and the H.264 encoders use.
    #[default]
    I420,
    /// 4:4:4, 8 bit.
    I444,
    /// 4:2:0, 10 bit (little-endian u16 samples).
    I420P10,
    /// 4:4:4, 10 bit (little-endian u16 samples).
    I444P10,
}

impl Layout {
    /// The layout of `ten_bit`/`yuv444` pictures.
    pub const fn of(ten_bit: bool, yuv444: bool) -> Self {
        match (ten_bit, yuv444) {
            (false, false) => Self::I420,
            (false, true) => Self::I444,
            (true, false) => Self::I420P10,
            (true, true) => Self::I444P10,
        }
    }

    /// 10 bits per sample.
    pub const fn ten_bit(self) -> bool {
        matches!(self, Self::I420P10 | Self::I444P10)
    }

    /// Full-resolution chroma.
    pub const fn yuv444(self) -> bool {
        matches!(self, Self::I444 | Self::I444P10)
    }

    /// Bytes per sample (1 or 2).
    pub const fn sample_bytes(self) -> usize {
        if self.ten_bit() { 2 } else { 1 }
    }

    /// Chroma plane size in samples for a `width`×`height` picture.
    pub const fn chroma_size(self, width: u32, height: u32) -> (usize, usize) {
        if self.yuv444() {
            (width as usize, height as usize)
        } else {
            (width as usize / 2, height as usize / 2)
        }
    }

    /// Bytes of a whole `width`×`height` frame (all three planes).
    pub const fn frame_len(self, width: u32, height: u32) -> usize {
        let (cw, ch) = self.chroma_size(width, height);
        (width as usize * height as usize + 2 * cw * ch) * self.sample_bytes()
    }
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::I420 => "I420",
            Self::I444 => "I444",
            Self::I420P10 => "I420 10-bit",
            Self::I444P10 => "I444 10-bit",
        })
    }
}

/// One raw frame plus the metadata a source attaches to it.
///
/// The planes live in one buffer allocated by [`Frame::new`]; sources overwrite it in place, so
/// a steady-state capture loop allocates nothing.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    width: u32,
    height: u32,
    layout: Layout,
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
            .field("layout", &self.layout)
            .field("index", &self.index)
            .field("capture_us", &self.capture_us)
            .finish_non_exhaustive()
    }
}

impl Frame {
    /// Allocates an I420 frame of `width`×`height` (even, 16..=8192), filled with mid-grey.
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        Self::with_layout(width, height, Layout::I420)
    }

    /// Allocates a frame of `width`×`height` (even, 16..=8192) in `layout`, filled with
    /// mid-grey.
    pub fn with_layout(width: u32, height: u32, layout: Layout) -> Result<Self, FrameError> {
        check_size(width, height, MIN_DIMENSION, MAX_DIMENSION, MAX_DIMENSION)?;
        let data = if layout.ten_bit() {
            512u16
                .to_le_bytes()
                .repeat(layout.frame_len(width, height) / 2)
        } else {
            vec![128; layout.frame_len(width, height)]
        };
        Ok(Self {
            width,
            height,
            layout,
            data,
            index: 0,
            capture_us: 0,
        })
    }

    /// The sample layout.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Chroma plane size in samples: `(width, height)`.
    pub fn chroma_size(&self) -> (usize, usize) {
        self.layout.chroma_size(self.width, self.height)
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Bytes between the starts of two luma rows (width × bytes per sample).
    pub fn y_stride(&self) -> usize {
        self.width as usize * self.layout.sample_bytes()
    }

    /// Bytes between the starts of two chroma rows (chroma width × bytes per sample).
    pub fn uv_stride(&self) -> usize {
        self.chroma_size().0 * self.layout.sample_bytes()
    }

    fn luma_len(&self) -> usize {
        self.y_stride() * self.height as usize
    }

    fn chroma_len(&self) -> usize {
        self.uv_stride() * self.chroma_size().1
    }

    /// The luma plane, `height` rows of [`Frame::y_stride`] bytes.
    pub fn y(&self) -> &[u8] {
        &self.data[..self.luma_len()]
    }

    /// The Cb plane, chroma-height rows of [`Frame::uv_stride`] bytes.
    pub fn u(&self) -> &[u8] {
        let (l, c) = (self.luma_len(), self.chroma_len());
        &self.data[l..l + c]
    }

    /// The Cr plane, chroma-height rows of [`Frame::uv_stride`] bytes.
    pub fn v(&self) -> &[u8] {
        let (l, c) = (self.luma_len(), self.chroma_len());
        &self.data[l + c..]
    }

    /// All three planes, writable: `(y, u, v)`.
    pub fn planes_mut(&mut self) -> (&mut [u8], &mut [u8], &mut [u8]) {
        let (l, c) = (self.luma_len(), self.chroma_len());
        let (y, uv) = self.data.split_at_mut(l);
        let (u, v) = uv.split_at_mut(c);
        (y, u, v)
    }

    /// The whole buffer (Y, then U, then V), e.g. for writing a `.yuv` file.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// The whole buffer, writable (e.g. to copy a raw frame of the same layout in).
    pub fn as_bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// Writes `samples` (10-bit code values, one per pixel of a luma row) into `out` in this
    /// frame's luma row format.
    pub fn pack_luma(&self, samples: &[u16], out: &mut Vec<u8>) {
        pack(self.layout, samples, 1, out);
    }

    /// Writes a full-width row of chroma `samples` (10-bit code values, one per luma pixel)
    /// into `out` in this frame's chroma row format: every second sample for 4:2:0.
    pub fn pack_chroma(&self, samples: &[u16], out: &mut Vec<u8>) {
        let step = if self.layout.yuv444() { 1 } else { 2 };
        pack(self.layout, samples, step, out);
    }

    /// Fills the rectangle at luma `(x, y)` of `w`×`h` pixels (even coordinates and sizes for
    /// 4:2:0) with the colour `c` = (Y, Cb, Cr) in 10-bit code values.
    pub fn fill_rect(&mut self, x: usize, y: usize, w: usize, h: usize, c: [u16; 3]) {
        let layout = self.layout;
        let n = layout.sample_bytes();
        let (sx, sy) = if layout.yuv444() { (1, 1) } else { (2, 2) };
        let (ys, uvs) = (self.y_stride(), self.uv_stride());
        let (yp, up, vp) = self.planes_mut();
        let level = |v: u16| -> [u8; 2] {
            if layout.ten_bit() {
                v.min(1023).to_le_bytes()
            } else {
                [to8(v), 0]
            }
        };
        let fill = |plane: &mut [u8], stride: usize, x: usize, y: usize, w: usize, h: usize, v| {
            let bytes: [u8; 2] = level(v);
            for row in y..y + h {
                for px in plane[row * stride + x * n..][..w * n].chunks_exact_mut(n) {
                    px.copy_from_slice(&bytes[..n]);
                }
            }
        };
        fill(yp, ys, x, y, w, h, c[0]);
        let (cx, cy, cw, ch) = (x / sx, y / sy, w / sx, h / sy);
        fill(up, uvs, cx, cy, cw, ch, c[1]);
        fill(vp, uvs, cx, cy, cw, ch, c[2]);
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

/// A 10-bit code value as an 8-bit one (rounded).
fn to8(v: u16) -> u8 {
    ((v.min(1023) + 2) >> 2).min(255) as u8
}

/// Every `step`-th sample of `samples`, stored in `layout`'s sample format into `out`.
fn pack(layout: Layout, samples: &[u16], step: usize, out: &mut Vec<u8>) {
    out.clear();
    if layout.ten_bit() {
        for v in samples.iter().step_by(step) {
            out.extend_from_slice(&v.min(&1023).to_le_bytes());
        }
    } else {
        out.extend(samples.iter().step_by(step).map(|&v| to8(v)));
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
    fn layouts_size_their_planes() {
        for (layout, cw, n) in [
            (Layout::I420, 32, 1),
            (Layout::I444, 64, 1),
            (Layout::I420P10, 32, 2),
            (Layout::I444P10, 64, 2),
        ] {
            let mut f = Frame::with_layout(64, 32, layout).unwrap();
            let ch = if layout.yuv444() { 32 } else { 16 };
            assert_eq!(f.chroma_size(), (cw, ch));
            assert_eq!((f.y_stride(), f.uv_stride()), (64 * n, cw * n));
            assert_eq!(f.y().len(), 64 * 32 * n);
            assert_eq!(f.u().len(), cw * ch * n);
            assert_eq!(f.v().len(), cw * ch * n);
            assert_eq!(f.as_bytes().len(), layout.frame_len(64, 32));
            // Mid-grey in the layout's own sample format.
            let grey: &[u8] = if n == 2 { &[0x00, 0x02] } else { &[128] };
            assert_eq!(&f.v()[f.v().len() - n..], grey);
            // Fill a 2×2 square at (2, 2): luma 4 samples, chroma 1 (4:2:0) or 4 (4:4:4).
            f.fill_rect(2, 2, 2, 2, [940, 64, 1000]);
            let y = |x: usize, r: usize| -> u16 {
                let i = r * f.y_stride() + x * n;
                if n == 2 {
                    u16::from_le_bytes([f.y()[i], f.y()[i + 1]])
                } else {
                    u16::from(f.y()[i])
                }
            };
            let want = if n == 2 { 940 } else { 235 };
            assert_eq!(
                (y(2, 2), y(3, 3), y(1, 2), y(4, 3)),
                (
                    want,
                    want,
                    if n == 2 { 512 } else { 128 },
                    if n == 2 { 512 } else { 128 }
                )
            );
        }
    }

    #[test]
    fn packing_follows_the_layout() {
        let row: Vec<u16> = vec![64, 65, 940, 1023];
        let mut out = Vec::new();
        Frame::with_layout(16, 16, Layout::I420)
            .unwrap()
            .pack_luma(&row, &mut out);
        assert_eq!(out, [16, 16, 235, 255]);
        Frame::with_layout(16, 16, Layout::I420)
            .unwrap()
            .pack_chroma(&row, &mut out);
        assert_eq!(out, [16, 235]);
        Frame::with_layout(16, 16, Layout::I444P10)
            .unwrap()
            .pack_chroma(&row, &mut out);
        assert_eq!(out, [64, 0, 65, 0, 172, 3, 255, 3]);
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
