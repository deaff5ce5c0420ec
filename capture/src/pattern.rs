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

use crate::frame::{Frame, FrameError, Layout, check_size};
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
/// The same bars as non-linear BT.709 R'G'B' (for the HDR palette).
const BARS_RGB: [[f64; 3]; 8] = [
    [0.75, 0.75, 0.75],
    [0.75, 0.75, 0.0],
    [0.0, 0.75, 0.75],
    [0.0, 0.75, 0.0],
    [0.75, 0.0, 0.75],
    [0.75, 0.0, 0.0],
    [0.0, 0.0, 0.75],
    [1.0, 1.0, 1.0],
];
/// Box ring: 100 % white.
const BOX_RING: [u8; 3] = [235, 128, 128];
/// Box core: 100 % red, BT.709.
const BOX_CORE: [u8; 3] = [63, 102, 240];
/// Ramp luma range (grey, never black).
const RAMP_MIN: u32 = 48;
const RAMP_MAX: u32 = 235;
/// Luminance of SDR reference white in the HDR pattern (ITU-R BT.2408), cd/m².
pub const HDR_REFERENCE_WHITE_NITS: f64 = 203.0;
/// Luminance of the HDR pattern's highlight (the box ring) and the top of its ramp, cd/m².
pub const HDR_PEAK_NITS: f64 = 1000.0;
/// Chroma swing of the 4:4:4 detail stripes, ± 10-bit code values around neutral.
const STRIPE_SWING: u16 = 128;

/// The pattern's colours in 10-bit code values: SDR BT.709 (8-bit levels × 4, so 8-bit frames
/// get exactly the levels above), or HDR BT.2020 PQ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Palette {
    bars: [[u16; 3]; 8],
    ring: [u16; 3],
    core: [u16; 3],
    ramp: (u16, u16),
    stamp: (u16, u16),
}

impl Palette {
    fn sdr() -> Self {
        let ten = |c: [u8; 3]| c.map(|v| u16::from(v) << 2);
        Self {
            bars: BARS.map(ten),
            ring: ten(BOX_RING),
            core: ten(BOX_CORE),
            ramp: ((RAMP_MIN as u16) << 2, (RAMP_MAX as u16) << 2),
            stamp: (
                u16::from(crate::stamp::LEVEL_ONE) << 2,
                u16::from(crate::stamp::LEVEL_ZERO) << 2,
            ),
        }
    }

    /// BT.2100 PQ, BT.2020 primaries, limited range: the bars at their SDR brightness (100 %
    /// = reference white, 203 nits), the box ring at 1000 nits, the ramp from 0 to 1000 nits
    /// in steps of one code value, the stamp white at reference white.
    fn hdr() -> Self {
        let white = pq_code(HDR_REFERENCE_WHITE_NITS);
        Self {
            bars: BARS_RGB.map(|c| hdr_colour(c, HDR_REFERENCE_WHITE_NITS)),
            ring: hdr_colour([1.0; 3], HDR_PEAK_NITS),
            core: hdr_colour([1.0, 0.0, 0.0], HDR_REFERENCE_WHITE_NITS),
            ramp: (64, pq_code(HDR_PEAK_NITS)),
            stamp: (white, 64),
        }
    }
}

/// The PQ (SMPTE ST 2084) signal for `nits`, in 0..=1.
pub fn pq_signal(nits: f64) -> f64 {
    let (m1, m2) = (2610.0 / 16384.0, 2523.0 / 4096.0 * 128.0);
    let (c1, c2, c3) = (
        3424.0 / 4096.0,
        2413.0 / 4096.0 * 32.0,
        2392.0 / 4096.0 * 32.0,
    );
    let y = (nits / 10_000.0).clamp(0.0, 1.0).powf(m1);
    ((c1 + c2 * y) / (1.0 + c3 * y)).powf(m2)
}

/// The 10-bit limited-range luma code of a grey at `nits` in PQ.
pub fn pq_code(nits: f64) -> u16 {
    (64.0 + 876.0 * pq_signal(nits)).round() as u16
}

/// A BT.709 R'G'B' colour (display gamma 2.4) shown at `white_nits` for 1.0, as BT.2020 PQ
/// limited-range 10-bit (Y, Cb, Cr).
fn hdr_colour(rgb709: [f64; 3], white_nits: f64) -> [u16; 3] {
    let lin = rgb709.map(|v| v.powf(2.4) * white_nits);
    // BT.709 → BT.2020 primaries (ITU-R BT.2087), on linear light.
    let m = [
        [0.6274, 0.3293, 0.0433],
        [0.0691, 0.9195, 0.0114],
        [0.0164, 0.0880, 0.8956],
    ];
    let rgb = m.map(|r| pq_signal(r[0] * lin[0] + r[1] * lin[1] + r[2] * lin[2]));
    let y = 0.2627 * rgb[0] + 0.6780 * rgb[1] + 0.0593 * rgb[2];
    let cb = (rgb[2] - y) / 1.8814;
    let cr = (rgb[0] - y) / 1.4746;
    let q = |v: f64| v.round().clamp(4.0, 1019.0) as u16;
    [
        q(64.0 + 876.0 * y),
        q(512.0 + 896.0 * cb),
        q(512.0 + 896.0 * cr),
    ]
}

/// Generates the pattern into caller-owned [`Frame`]s. Holds its row buffers, allocated once.
#[derive(Debug, Clone)]
pub struct TestPattern {
    width: u32,
    height: u32,
    layout: Layout,
    palette: Palette,
    row_y: Vec<u16>,
    row_u: Vec<u16>,
    row_v: Vec<u16>,
    packed: [Vec<u8>; 3],
    noisy: Vec<u16>,
    noise: bool,
}

impl TestPattern {
    /// A generator for `width`×`height` I420 SDR frames (even, 64×64 up to 3840×2160).
    pub fn new(width: u32, height: u32) -> Result<Self, FrameError> {
        check_size(width, height, MIN_SIZE, MAX_WIDTH, MAX_HEIGHT)?;
        let w = width as usize;
        Ok(Self {
            width,
            height,
            layout: Layout::I420,
            palette: Palette::sdr(),
            row_y: vec![0; w],
            row_u: vec![0; w],
            row_v: vec![0; w],
            packed: [
                Vec::with_capacity(2 * w),
                Vec::with_capacity(2 * w),
                Vec::with_capacity(2 * w),
            ],
            noisy: Vec::with_capacity(w),
            noise: false,
        })
    }

    /// Renders frames in `layout`: 4:4:4 layouts add chroma detail that 4:2:0 cannot carry
    /// (one-pixel stripes of alternating Cb/Cr in the ramp band); with `hdr` (10-bit layouts
    /// only) the colours are BT.2020 PQ (bars at reference white, a 1000-nit box ring, a ramp
    /// from 0 to 1000 nits in steps of one code value), else SDR BT.709.
    pub fn with_format(mut self, layout: Layout, hdr: bool) -> Self {
        self.layout = layout;
        self.palette = if hdr && layout.ten_bit() {
            Palette::hdr()
        } else {
            Palette::sdr()
        };
        self
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

    /// The layout of the frames this generator renders.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Allocates a frame of this generator's size and layout (do it once, then reuse it).
    pub fn new_frame(&self) -> Frame {
        // The size was checked in `new` and 64..=3840 × 64..=2160 is inside Frame's 16..=8192.
        Frame::with_layout(self.width, self.height, self.layout)
            .expect("pattern size is a valid frame size")
    }

    /// Horizontal scroll of the bars per frame, in pixels (even, at least 2).
    fn bar_step(&self) -> u32 {
        (self.width / 160).max(2) & !1
    }

    /// Copies the packed rows into luma rows `rows` and the chroma rows they cover.
    fn copy_band(&self, frame: &mut Frame, rows: std::ops::Range<usize>, luma: bool) {
        let (ys, uvs) = (frame.y_stride(), frame.uv_stride());
        let sy = if self.layout.yuv444() { 1 } else { 2 };
        let [py, pu, pv] = &self.packed;
        let (y, u, v) = frame.planes_mut();
        if luma {
            for row in rows.clone() {
                y[row * ys..][..py.len()].copy_from_slice(py);
            }
        }
        for row in rows.start / sy..rows.end / sy {
            u[row * uvs..][..pu.len()].copy_from_slice(pu);
            v[row * uvs..][..pv.len()].copy_from_slice(pv);
        }
    }

    /// Packs the three row buffers in the frame's sample format.
    fn pack_rows(&mut self, frame: &Frame) {
        let [py, pu, pv] = &mut self.packed;
        frame.pack_luma(&self.row_y, py);
        frame.pack_chroma(&self.row_u, pu);
        frame.pack_chroma(&self.row_v, pv);
    }

    /// Renders frame `index` into `frame`, stamped with `index as u32` and `capture_us`, and sets
    /// `frame.index` and `frame.capture_us`. Fails only if `frame` has another size or layout.
    pub fn render(
        &mut self,
        frame: &mut Frame,
        index: u64,
        capture_us: u64,
    ) -> Result<(), FrameError> {
        frame.expect_size(self.width, self.height)?;
        if frame.layout() != self.layout {
            return Err(FrameError::LayoutMismatch {
                got: frame.layout(),
                want: self.layout,
            });
        }
        let (w, h) = (self.width as usize, self.height as usize);
        let bars_bottom = (h * 3 / 4) & !1;
        let pal = self.palette;

        // Bars: pixel x shows bar ((x + offset) mod w) · 8 / w, so the bars move left.
        let offset = (index % u64::from(self.width)) as usize * self.bar_step() as usize % w;
        for x in 0..w {
            let bar = pal.bars[(x + offset) % w * 8 / w];
            self.row_y[x] = bar[0];
            self.row_u[x] = bar[1];
            self.row_v[x] = bar[2];
        }
        self.pack_rows(frame);
        self.copy_band(frame, 0..bars_bottom, true);

        // Ramp: grey sawtooth over one picture width, moving right; in 4:4:4, chroma stripes
        // one pixel wide (Cb up and Cr down on even columns, the reverse on odd ones).
        let ramp_offset = w - offset;
        let (lo, hi) = (u32::from(pal.ramp.0), u32::from(pal.ramp.1));
        let sdr = pal.ramp == Palette::sdr().ramp;
        for x in 0..w {
            let pos = ((x + ramp_offset) % w) as u32;
            self.row_y[x] = if sdr {
                // Computed in 8 bits as it always was, so 8-bit frames are unchanged.
                ((RAMP_MIN + pos * (RAMP_MAX - RAMP_MIN) / self.width) << 2) as u16
            } else {
                (lo + pos * (hi - lo) / self.width) as u16
            };
            let (up, down) = (512 + STRIPE_SWING, 512 - STRIPE_SWING);
            let (cb, cr) = match (self.layout.yuv444(), x % 2) {
                (false, _) => (512, 512),
                (true, 0) => (up, down),
                (true, _) => (down, up),
            };
            self.row_u[x] = cb;
            self.row_v[x] = cr;
        }
        self.pack_rows(frame);
        self.copy_band(frame, bars_bottom..h, !self.noise);
        if self.noise {
            let ys = frame.y_stride();
            // Limited range: 16..=235 in 8 bits; HDR noise stays under the ramp's 1000 nits.
            let range = if sdr { (64, 940) } else { (64, hi as u16) };
            for row in bars_bottom..h {
                self.noisy.clear();
                self.noisy.extend_from_slice(&self.row_y);
                add_noise(&mut self.noisy, index, row as u64, range);
                frame.pack_luma(&self.noisy, &mut self.packed[0]);
                let line = &self.packed[0];
                frame.planes_mut().0[row * ys..][..line.len()].copy_from_slice(line);
            }
        }

        // Box: side ⅙ of the smaller dimension, bouncing off the edges.
        let side = ((w.min(h) / 6).max(8)) & !1;
        let vx = (w / 120).max(2) & !1;
        let vy = (h / 90).max(2) & !1;
        let bx = triangle(index, vx, w - side);
        let by = triangle(index, vy, h - side);
        frame.fill_rect(bx, by, side, side, pal.ring);
        let inset = (side / 4) & !1;
        frame.fill_rect(
            bx + inset,
            by + inset,
            side - 2 * inset,
            side - 2 * inset,
            pal.core,
        );

        frame.index = index;
        frame.capture_us = capture_us;
        let stamp = Stamp {
            // The stamp carries 32 bits; it wraps after 2^32 frames (2.3 years at 60 fps).
            frame: index as u32,
            capture_us,
        };
        // 64×64, the smallest pattern, has room for the stamp (block_size(64, 64) == Some(2)).
        stamp::write_stamp_levels(frame, stamp, pal.stamp.0, pal.stamp.1)
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

/// Adds pseudo-random noise in −32..=31 (8-bit units; ×4 in 10-bit codes) to `line`,
/// clamped to `range` (10-bit codes) (xorshift64*, seeded by frame and row).
fn add_noise(line: &mut [u16], index: u64, row: u64, range: (u16, u16)) {
    let mut state =
        (index.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ row.wrapping_mul(0xD1B5_4A32_D192_ED03)) | 1;
    for chunk in line.chunks_mut(8) {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        let r = state.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes();
        for (p, n) in chunk.iter_mut().zip(r) {
            let v = i32::from(*p) + (i32::from(n & 63) - 32) * 4;
            *p = v.clamp(i32::from(range.0), i32::from(range.1)) as u16;
        }
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
    fn i420_pictures_are_what_they_were_before_layouts() {
        // CRC-32 of frames 0, 1, 7, 100 at 320x240, computed with the 8-bit-only generator
        // this one replaced: SDR I420 output must not change (tests and recordings rely on it).
        for (noise, want) in [(false, 0x9878_0285u32), (true, 0x4184_60ee)] {
            let mut p = TestPattern::new(320, 240).unwrap().with_noise(noise);
            let mut f = p.new_frame();
            let mut all = Vec::new();
            for i in [0u64, 1, 7, 100] {
                p.render(&mut f, i, 1234 + i).unwrap();
                all.extend_from_slice(f.as_bytes());
            }
            assert_eq!(crate::stamp::crc32(&all), want, "noise {noise}");
        }
    }

    /// Luma sample `(x, y)` of a 10-bit frame.
    fn y10(f: &Frame, x: usize, y: usize) -> u16 {
        let i = y * f.y_stride() + 2 * x;
        u16::from_le_bytes([f.y()[i], f.y()[i + 1]])
    }

    #[test]
    fn pq_matches_st2084() {
        // Reference values of the PQ inverse EOTF.
        for (nits, want) in [
            (0.0, 0.0),
            (100.0, 0.5081),
            (1000.0, 0.7518),
            (10_000.0, 1.0),
        ] {
            assert!((pq_signal(nits) - want).abs() < 5e-4, "{nits} nits");
        }
        assert_eq!(pq_code(1000.0), 723);
        assert_eq!(pq_code(HDR_REFERENCE_WHITE_NITS), 573);
        // Grey stays grey through the BT.709 → BT.2020 conversion.
        let white = hdr_colour([1.0; 3], 203.0);
        assert_eq!(white, [573, 512, 512]);
    }

    #[test]
    fn hdr_pattern_is_real_ten_bit_pq() {
        let mut p = TestPattern::new(1280, 720)
            .unwrap()
            .with_format(Layout::I420P10, true);
        let mut f = p.new_frame();
        p.render(&mut f, 30, 99).unwrap();
        assert_eq!(f.layout(), Layout::I420P10);
        // The ramp (bottom quarter, below the box at frame 0) climbs from 0 to 1000 nits in
        // steps of one code value: more levels than 8 bits have, many not multiples of 4.
        let row: Vec<u16> = (0..1280).map(|x| y10(&f, x, 700)).collect();
        let mut levels = row.clone();
        levels.sort_unstable();
        levels.dedup();
        assert!(levels.len() > 600, "{} levels", levels.len());
        assert_eq!((levels[0], *levels.last().unwrap()), (64, 722));
        assert!(row.iter().filter(|v| *v % 4 != 0).count() > 900);
        // At frame 30 the box is at (300, 240): its ring shows 1000 nits, its core is red.
        assert_eq!(y10(&f, 302, 242), pq_code(HDR_PEAK_NITS));
        assert!(y10(&f, 360, 300) < 400);
        // The stamp reads back from the top 8 bits at reference-white contrast.
        let y8: Vec<u8> = (0..1280 * 720)
            .map(|i| (y10(&f, i % 1280, i / 1280) >> 2) as u8)
            .collect();
        let s = read_stamp(&y8, 1280, 720, 1280).unwrap();
        assert_eq!((s.frame, s.capture_us), (30, 99));
    }

    #[test]
    fn every_layout_renders_the_same_picture_in_its_own_samples() {
        let mut base = TestPattern::new(320, 240).unwrap();
        let reference = render(&mut base, 5, 1);
        for layout in [Layout::I444, Layout::I420P10, Layout::I444P10] {
            let mut p = TestPattern::new(320, 240)
                .unwrap()
                .with_format(layout, false);
            let f = render(&mut p, 5, 1);
            assert_eq!(f.layout(), layout);
            // SDR luma is the 8-bit picture (× 4 in 10 bits).
            for (i, &want) in reference.y().iter().enumerate() {
                let got = if layout.ten_bit() {
                    y10(&f, i % 320, i / 320) >> 2
                } else {
                    u16::from(f.y()[i])
                };
                assert_eq!(got, u16::from(want), "{layout} luma {i}");
            }
        }
    }

    #[test]
    fn four_four_four_carries_chroma_detail_four_two_zero_cannot() {
        let mut p = TestPattern::new(320, 240)
            .unwrap()
            .with_format(Layout::I444, false);
        let f = render(&mut p, 0, 0);
        // Ramp band (bottom quarter): Cb alternates every pixel, Cr the other way round.
        let row = 235 * 320;
        let cb = &f.u()[row..row + 320];
        let cr = &f.v()[row..row + 320];
        for x in 0..319 {
            assert_eq!(
                i16::from(cb[x]) - i16::from(cb[x + 1]),
                if x % 2 == 0 { 64 } else { -64 }
            );
            assert_eq!(i16::from(cb[x]) + i16::from(cr[x]), 256);
        }
        // 4:2:0 pictures keep a neutral ramp band.
        let g = render(&mut TestPattern::new(320, 240).unwrap(), 0, 0);
        assert!(g.u()[(235 / 2) * 160..][..160].iter().all(|&c| c == 128));
    }

    #[test]
    fn a_frame_of_another_layout_is_refused() {
        let mut p = TestPattern::new(64, 64)
            .unwrap()
            .with_format(Layout::I444, false);
        let mut f = Frame::new(64, 64).unwrap();
        assert!(matches!(
            p.render(&mut f, 0, 0),
            Err(FrameError::LayoutMismatch { .. })
        ));
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
