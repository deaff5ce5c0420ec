//! Animated test pattern: never black, different every frame, stamped with frame number and
//! capture time.
//!
//! ```text
//!  ┌──────────┬───────────────────────────────────────────────┐ y = 0
//!  │ stamp    │  8 colour bars (BT.709 75 % + 100 % white),   │
//!  │ 18B × 8B │  scrolling left by `bar_step` px per frame    │
//!  ├──────────┘                  ┌──────┐                     │
//!  │                             │ ┌──┐ │ box: white ring,    │
//!  │                             │ └──┘ │ red core, bouncing  │
//!  │                             └──────┘                     │
//!  ├──────────────────────────────────────────────────────────┤ y = bars_bottom (¾ h)
//!  │  grey luma ramp 48 → 235, scrolling right                 │
//!  │  (+ fresh ±32 luma noise every frame with `with_noise`)   │
//!  └──────────────────────────────────────────────────────────┘ y = h
//! ```
//!
//! Without noise the picture is easy to code (about 1 KiB per frame at 720p): good for
//! latency tests. With noise the encoder spends its whole bitrate on the bottom band, so
//! frames have realistic sizes for packetizer, FEC and pacing tests.
//!
//! Drawing order: bars, ramp, box, stamp (the stamp is always intact). All edges are on even
//! coordinates so every 2×2 luma quad has one chroma sample. Every row of a band is the same,
//! so a frame costs one computed row per band plus copies: well under a millisecond at 1080p.
//!
//! Pure: the caller passes the frame number and the capture time; nothing here reads a clock.
#![forbid(unsafe_code)]

use crate::frame::{Frame, FrameError, check_size};
use crate::stamp::{self, Stamp};

/// Smallest width and height the pattern supports.
pub const MIN_SIZE: u32 = 64;
/// Largest width the pattern supports (the largest picture H.264 encoders here accept).
pub const MAX_WIDTH: u32 = 3840;
/// Largest height the pattern supports.
pub const MAX_HEIGHT: u32 = 2160;

/// (Y, Cb, Cr) for the bars, BT.709 limited range: 75 % white, yellow, cyan, green, magenta,
/// red, blue, then 100 % white. The darkest (blue) has luma 28 and strong chroma: never black.
const BARS: [[u8; 3]; 8] = [
    [180, 128, 128],
    [168, 44, 136],
    [145, 147, 44],
    [133, 63, 52],
    [63, 193, 204],
    [51, 109, 212],
    [28, 212, 120],
    [235, 128, 128],
];
/// Box ring: 100 % white.
const BOX_RING: [u8; 3] = [235, 128, 128];
/// Box core: 100 % red, BT.709.
const BOX_CORE: [u8; 3] = [63, 102, 240];
/// Ramp luma range (grey, never black).
const RAMP_MIN: u32 = 48;
const RAMP_MAX: u32 = 235;

/// Generates the pattern into caller-owned [`Frame`]s. Holds three row buffers allocated once.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: u32,
    height: u32,
    row_y: Vec<u8>,
    row_u: Vec<u8>,
    row_v: Vec<u8>,
    noise: bool,
}

impl TestPattern {
    /// A generator for `width`×`height` frames (even, 64×64 up to 3840×2160).
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        check_size(width, height, MIN_SIZE, MAX_WIDTH, MAX_HEIGHT)?;
        Ok(Self {
            width,
            height,
            row_y: vec![0; width as usize],
            row_u: vec![0; width as usize / 2],
            row_v: vec![0; width as usize / 2],
            noise: false,
        })
    }

    /// Adds fresh luma noise (±32, seeded by the frame index: still deterministic) to the
    /// bottom band of every frame, so encoded frames fill the bitrate.
    pub fn with_noise(mut self, noise: bool) -> Self {
        self.noise = noise;
        self
    }

    /// Picture width.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Picture height.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// Allocates a frame of this generator's size (do it once, then reuse it).
    pub fn new_frame(&self) -> Frame {
        // The size was checked in `new` and 64..=3840 × 64..=2160 is inside Frame's 16..=8192.
        Frame::new(self.width, self.height).expect("pattern size is a valid frame size")
    }

    /// Horizontal scroll of the bars per frame, in pixels (even, at least 2).
    fn bar_step(&self) -> u32 {
        (self.width / 160).max(2) & !1
    }

    /// Renders frame `index` into `frame`, stamped with `index as u32` and `capture_us`, and sets
    /// `frame.index` and `frame.capture_us`. Fails only if `frame` has another size.
    pub fn render(
        &mut self,
        frame: &mut Frame,
        index: u64,
        capture_us: u64,
    ) -> Result<(), FrameError> {
        frame.expect_size(self.width, self.height)?;
        let (w, h) = (self.width as usize, self.height as usize);
        let y_stride = frame.y_stride();
        let uv_stride = frame.uv_stride();
        let bars_bottom = (h * 3 / 4) & !1;

        // Bars: pixel x shows bar ((x + offset) mod w) · 8 / w, so the bars move left.
        let offset = (index % u64::from(self.width)) as usize * self.bar_step() as usize % w;
        for (x, p) in self.row_y.iter_mut().enumerate() {
            *p = BARS[(x + offset) % w * 8 / w][0];
        }
        for cx in 0..w / 2 {
            let bar = BARS[(2 * cx + offset) % w * 8 / w];
            self.row_u[cx] = bar[1];
            self.row_v[cx] = bar[2];
        }
        {
            let (y, u, v) = frame.planes_mut();
            for row in 0..bars_bottom {
                y[row * y_stride..][..w].copy_from_slice(&self.row_y);
            }
            for row in 0..bars_bottom / 2 {
                u[row * uv_stride..][..w / 2].copy_from_slice(&self.row_u);
                v[row * uv_stride..][..w / 2].copy_from_slice(&self.row_v);
            }
        }

        // Ramp: grey sawtooth over one picture width, moving right.
        let ramp_offset = w - offset;
        for (x, p) in self.row_y.iter_mut().enumerate() {
            let pos = ((x + ramp_offset) % w) as u32;
            *p = (RAMP_MIN + pos * (RAMP_MAX - RAMP_MIN) / self.width) as u8;
        }
        {
            let (y, u, v) = frame.planes_mut();
            for row in bars_bottom..h {
                let line = &mut y[row * y_stride..][..w];
                line.copy_from_slice(&self.row_y);
                if self.noise {
                    add_noise(line, index, row as u64);
                }
            }
            for row in bars_bottom / 2..h / 2 {
                u[row * uv_stride..][..w / 2].fill(128);
                v[row * uv_stride..][..w / 2].fill(128);
            }
        }

        // Box: side ⅙ of the smaller dimension, bouncing off the edges.
        let side = ((w.min(h) / 6).max(8)) & !1;
        let vx = (w / 120).max(2) & !1;
        let vy = (h / 90).max(2) & !1;
        let bx = triangle(index, vx, w - side);
        let by = triangle(index, vy, h - side);
        fill_rect(frame, bx, by, side, side, BOX_RING);
        let inset = (side / 4) & !1;
        fill_rect(
            frame,
            bx + inset,
            by + inset,
            side - 2 * inset,
            side - 2 * inset,
            BOX_CORE,
        );

        frame.index = index;
        frame.capture_us = capture_us;
        let stamp = Stamp {
            // The stamp carries 32 bits; it wraps after 2^32 frames (2.3 years at 60 fps).
            frame: index as u32,
            capture_us,
        };
        // 64×64, the smallest pattern, has room for the stamp (block_size(64, 64) == Some(2)).
        stamp::write_stamp(frame, stamp)
    }
}

/// Position at step `index` of a point moving `speed` px per frame and bouncing in
/// `0..=range`; always even.
fn triangle(index: u64, speed: usize, range: usize) -> usize {
    if range == 0 {
        return 0;
    }
    let period = 2 * range as u64;
    let t = (index.wrapping_mul(speed as u64) % period) as usize;
    let pos = if t <= range { t } else { 2 * range - t };
    pos & !1
}

/// Adds pseudo-random noise in −32..=31 to `line` (xorshift64*, seeded by frame and row).
fn add_noise(line: &mut [u8], index: u64, row: u64) {
    let mut state =
        (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
    for chunk in line.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        for (p, n) in chunk.iter_mut().zip(r) {
            *p = (i16::from(*p) + i16::from(n & 63) - 32).clamp(16, 235) as u8;
        }
    }
}

/// Fills an even-aligned rectangle with one (Y, Cb, Cr) colour.
fn fill_rect(frame: &mut Frame, x: usize, y0: usize, w: usize, h: usize, c: [u8; 3]) {
    let y_stride = frame.y_stride();
    let uv_stride = frame.uv_stride();
    let (y, u, v) = frame.planes_mut();
    for row in y0..y0 + h {
        y[row * y_stride + x..][..w].fill(c[0]);
    }
    for row in y0 / 2..(y0 + h) / 2 {
        u[row * uv_stride + x / 2..][..w / 2].fill(c[1]);
        v[row * uv_stride + x / 2..][..w / 2].fill(c[2]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stamp::read_stamp;
    use proptest::prelude::*;

    fn render(p: &mut TestPattern, index: u64, us: u64) -> Frame {
        let mut f = p.new_frame();
        p.render(&mut f, index, us).unwrap();
        f
    }

    #[test]
    fn never_black_and_moving() {
        let mut p = TestPattern::new(1280, 720).unwrap();
        let mut prev = render(&mut p, 0, 0);
        for i in 1..200u64 {
            let f = render(&mut p, i, i * 16_667);
            let mean = f.y().iter().map(|&v| u64::from(v)).sum::<u64>() / f.y().len() as u64;
            assert!(mean > 60, "frame {i} too dark: mean luma {mean}");
            // Outside the stamp the picture changes every frame.
            let below_stamp = 1280 * 128;
            assert_ne!(
                f.y()[below_stamp..],
                prev.y()[below_stamp..],
                "frame {i} did not move"
            );
            prev = f;
        }
    }

    #[test]
    fn reuses_buffer_and_sets_meta() {
        let mut p = TestPattern::new(640, 360).unwrap();
        let mut f = p.new_frame();
        for i in 0..5u64 {
            p.render(&mut f, i, 1000 + i).unwrap();
            assert_eq!((f.index, f.capture_us), (i, 1000 + i));
            let s = read_stamp(f.y(), 640, 360, 640).unwrap();
            assert_eq!((s.frame, s.capture_us), (i as u32, 1000 + i));
        }
    }

    #[test]
    fn deterministic() {
        let mut a = TestPattern::new(320, 240).unwrap();
        let mut b = TestPattern::new(320, 240).unwrap();
        assert_eq!(
            render(&mut a, 42, 7).as_bytes(),
            render(&mut b, 42, 7).as_bytes()
        );
    }

    #[test]
    fn size_checks() {
        assert!(TestPattern::new(62, 64).is_err());
        assert!(TestPattern::new(64, 64).is_ok());
        assert!(TestPattern::new(3840, 2160).is_ok());
        assert!(TestPattern::new(3842, 2160).is_err());
        assert!(TestPattern::new(65, 64).is_err());
        let mut p = TestPattern::new(64, 64).unwrap();
        let mut wrong = Frame::new(128, 64).unwrap();
        assert!(matches!(
            p.render(&mut wrong, 0, 0),
            Err(FrameError::SizeMismatch { .. })
        ));
    }

    #[test]
    fn noise_is_deterministic_and_changes() {
        let mut a = TestPattern::new(320, 240).unwrap().with_noise(true);
        let mut b = TestPattern::new(320, 240).unwrap().with_noise(true);
        let mut plain = TestPattern::new(320, 240).unwrap();
        let (f1, f2) = (render(&mut a, 3, 0), render(&mut b, 3, 0));
        assert_eq!(f1.as_bytes(), f2.as_bytes());
        let band = 320 * 180..320 * 240;
        assert_ne!(
            f1.y()[band.clone()],
            render(&mut plain, 3, 0).y()[band.clone()]
        );
        assert_eq!(read_stamp(f1.y(), 320, 240, 320).map(|s| s.frame), Some(3));
        assert!(f1.y()[band].iter().all(|&p| (16..=235).contains(&p)));
    }

    #[test]
    fn triangle_bounces() {
        let xs: Vec<usize> = (0..8).map(|i| triangle(i, 4, 10)).collect();
        assert_eq!(xs, [0, 4, 8, 8, 4, 0, 4, 8]);
        assert_eq!(triangle(5, 2, 0), 0);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn stamp_round_trip_any_size(
            w in 32u32..=1920,
            h in 32u32..=1080,
            index in any::<u64>(),
            us in any::<u64>(),
        ) {
            let (w, h) = (w * 2, h * 2);
            let mut p = TestPattern::new(w, h).unwrap();
            let f = render(&mut p, index, us);
            let s = read_stamp(f.y(), w as usize, h as usize, w as usize);
            prop_assert_eq!(s, Some(Stamp { frame: index as u32, capture_us: us }));
            // Chroma in range and the picture is not black.
            let mean = f.y().iter().map(|&v| u64::from(v)).sum::<u64>() / f.y().len() as u64;
            prop_assert!(mean > 40);
        }
    }
}
