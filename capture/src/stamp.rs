//! The frame stamp: frame number and capture time, written as big black/white blocks so that
//! they survive lossy H.264 and can be read back from a decoded picture.
//!
//! ```text
//!  (0,0) top-left of the picture, B = block size in luma pixels (see block_size)
//!  ┌────┬────┬────┬────┬─────┬────┐
//!  │ W  │ K  │ b0 │ b1 │ ... │ b15│  row 0   x = c·B .. (c+1)·B,  y = r·B .. (r+1)·B
//!  ├────┼────┼────┼────┼─────┼────┤
//!  │ W  │ K  │ b16│ b17│ ... │ b31│  row 1
//!  │ ⋮  │ ⋮  │         ⋮           │
//!  │ W  │ K  │b112│b113│ ... │b127│  row 7
//!  └────┴────┴────┴────┴─────┴────┘
//!   col0 col1 col2 ...        col17        18 × 8 cells = 18·B × 8·B pixels
//!
//!  W = guard/calibration cell, always white (Y 235)   K = guard cell, always black (Y 16)
//!  data cell: bit 1 = white (Y 235), bit 0 = black (Y 16); chroma is neutral (128) everywhere
//!  bit i = row i/16, column 2 + i%16; bits form 16 bytes, most significant bit first:
//!  bytes 0..4   frame number, u32 big-endian
//!  bytes 4..12  capture time in µs, u64 big-endian
//!  bytes 12..16 CRC-32 (IEEE 802.3 / zlib.crc32) of bytes 0..12, big-endian
//! ```
//!
//! Reading ([`read_stamp`]): for every cell, average the luma over its inner square (an inset of
//! B/4 on each side keeps out deblocking and ringing from neighbouring cells). Each row's
//! threshold is the midpoint of its own W and K cells, so brightness shifts, limited/full-range
//! conversions and quantisation drift cancel. A row whose W−K contrast is under
//! [`MIN_CONTRAST`] means "no stamp here"; a CRC mismatch means "misread". Both give `None`:
//! a stamp is either read exactly or not at all.
//!
//! Cells are aligned to 16×16 macroblocks whenever B is a multiple of 16, so each macroblock of
//! the stamp is one flat level that any H.264 encoder codes almost losslessly. The same layout
//! is described, with a Python reader, in docs/capture.md and tests/pattern_stamp.py.
//!
//! Pure: no I/O, no clock, no allocation.
#![forbid(unsafe_code)]

use crate::frame::{Frame, FrameError};

/// Number of cell rows.
pub const ROWS: u32 = 8;
/// Number of cell columns: two guard columns and 16 data columns.
pub const COLS: u32 = 18;
/// Guard columns at the start of every row (white, then black).
pub const GUARD_COLS: u32 = 2;
/// Data bits per row.
pub const BITS_PER_ROW: u32 = COLS - GUARD_COLS;
/// Total data bits (16 bytes).
pub const TOTAL_BITS: u32 = ROWS * BITS_PER_ROW;
/// Luma written for a 1 bit and for the white guard (limited-range white).
pub const LEVEL_ONE: u8 = 235;
/// Luma written for a 0 bit and for the black guard (limited-range black).
pub const LEVEL_ZERO: u8 = 16;
/// Smallest white-minus-black difference of guard-cell means (luma units) that counts as a
/// stamp. Written stamps have 219; decoded ones keep well over 150.
pub const MIN_CONTRAST: u32 = 64;

/// Frame number and capture time carried in a frame's pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Stamp {
    /// Frame number (the source's frame index, truncated to 32 bits).
    pub frame: u32,
    /// Capture time in microseconds, as passed to the pattern generator.
    pub capture_us: u64,
}

impl Stamp {
    /// The 16 payload bytes: frame (BE), capture time (BE), CRC-32 of the first 12 (BE).
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[..4].copy_from_slice(&self.frame.to_be_bytes());
        b[4..12].copy_from_slice(&self.capture_us.to_be_bytes());
        let crc = crc32(&b[..12]);
        b[12..].copy_from_slice(&crc.to_be_bytes());
        b
    }

    /// Parses the 16 payload bytes; `None` if the CRC does not match.
    pub fn from_bytes(b: &[u8; 16]) -> Option<Self> {
        let (data, crc) = b.split_at(12);
        if crc32(data).to_be_bytes() != *crc {
            return None;
        }
        let mut frame = [0u8; 4];
        frame.copy_from_slice(&data[..4]);
        let mut us = [0u8; 8];
        us.copy_from_slice(&data[4..12]);
        Some(Self {
            frame: u32::from_be_bytes(frame),
            capture_us: u64::from_be_bytes(us),
        })
    }
}

/// Block (cell) size in luma pixels for a picture of `width`×`height`, or `None` if the stamp
/// does not fit (narrower than 36 or lower than 16 pixels).
///
/// * Pictures of at least 288×128: `16 · max(1, min(width / 1280, height / 720))` — 16 up to
///   1080p, 32 at 1440p, 48 at 2160p. Macroblock-aligned, robust through lossy H.264.
/// * Smaller pictures: the largest even size with `18·B ≤ width` and `8·B ≤ height`
///   (at least 2). Such stamps read back from raw frames, but small blocks do not reliably
///   survive lossy coding.
pub fn block_size(width: u32, height: u32) -> Option<u32> {
    if width >= COLS * 16 && height >= ROWS * 16 {
        Some(16 * (width / 1280).min(height / 720).max(1))
    } else {
        let b = (width / COLS).min(height / ROWS) & !1;
        (b >= 2).then_some(b)
    }
}

/// Writes `stamp` into the top-left corner of `frame` (luma blocks, neutral chroma) at the
/// SDR levels [`LEVEL_ONE`] and [`LEVEL_ZERO`].
///
/// Fails with [`FrameError::InvalidSize`] only if the frame is too small for the stamp
/// (see [`block_size`]).
pub fn write_stamp(frame: &mut Frame, stamp: Stamp) -> Result<(), FrameError> {
    write_stamp_levels(
        frame,
        stamp,
        u16::from(LEVEL_ONE) << 2,
        u16::from(LEVEL_ZERO) << 2,
    )
}

/// [`write_stamp`] with the white and black levels given as 10-bit code values (an HDR
/// picture writes its white at reference white, not at the PQ code of 10 000 nits). The reader
/// takes its threshold from the guard cells, so any pair with enough contrast reads back.
pub fn write_stamp_levels(
    frame: &mut Frame,
    stamp: Stamp,
    one: u16,
    zero: u16,
) -> Result<(), FrameError> {
    let (width, height) = (frame.width(), frame.height());
    let b = block_size(width, height).ok_or(FrameError::InvalidSize {
        width,
        height,
        min: 2 * COLS,
        max_w: crate::frame::MAX_DIMENSION,
        max_h: crate::frame::MAX_DIMENSION,
    })? as usize;
    let bytes = stamp.to_bytes();
    for row in 0..ROWS as usize {
        for col in 0..COLS as usize {
            let level = match col {
                0 => one,
                1 => zero,
                _ => {
                    let bit = row * BITS_PER_ROW as usize + (col - GUARD_COLS as usize);
                    if bytes[bit / 8] & (0x80 >> (bit % 8)) != 0 {
                        one
                    } else {
                        zero
                    }
                }
            };
            frame.fill_rect(col * b, row * b, b, b, [level, 512, 512]);
        }
    }
    Ok(())
}

/// Reads a stamp from a luma plane (`height` rows of `stride` bytes, `width` pixels used).
///
/// Returns `None` when the picture is too small, the slice is shorter than the geometry says,
/// there is no stamp (too little contrast in a guard pair) or the CRC fails. Never panics.
pub fn read_stamp(y_plane: &[u8], width: usize, height: usize, stride: usize) -> Option<Stamp> {
    let (w, h) = (u32::try_from(width).ok()?, u32::try_from(height).ok()?);
    let b = block_size(w, h)? as usize;
    let needed = (height - 1).checked_mul(stride)?.checked_add(width)?;
    if stride < width || y_plane.len() < needed {
        return None;
    }
    let inset = b / 4;
    let side = b - 2 * inset;
    let cell_sum = |row: usize, col: usize| -> u64 {
        let (x0, y0) = (col * b + inset, row * b + inset);
        (y0..y0 + side)
            .map(|py| {
                let start = py * stride + x0;
                y_plane[start..start + side]
                    .iter()
                    .map(|&p| u64::from(p))
                    .sum::<u64>()
            })
            .sum()
    };
    // Sums over `side²` pixels; compare sums instead of means to stay in integers (u64: no
    // overflow whatever the picture size).
    let count = (side * side) as u64;
    let mut bytes = [0u8; 16];
    for row in 0..ROWS as usize {
        let white = cell_sum(row, 0);
        let black = cell_sum(row, 1);
        if white < black || white - black < u64::from(MIN_CONTRAST) * count {
            return None;
        }
        let threshold2 = white + black; // bit is 1 when 2·sum > white + black
        for i in 0..BITS_PER_ROW as usize {
            if 2 * cell_sum(row, GUARD_COLS as usize + i) > threshold2 {
                let bit = row * BITS_PER_ROW as usize + i;
                bytes[bit / 8] |= 0x80 >> (bit % 8);
            }
        }
    }
    Stamp::from_bytes(&bytes)
}

/// CRC-32 as in IEEE 802.3 and zlib (reflected polynomial 0xEDB88320, init and final XOR
/// 0xFFFFFFFF). Bitwise: it runs over 12 bytes per frame.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &byte in bytes {
        crc ^= u32::from(byte);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn crc32_check_value() {
        // The standard CRC-32 check value; also zlib.crc32(b"123456789").
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn payload_bytes_fixture() {
        let s = Stamp {
            frame: 0x0102_0304,
            capture_us: 0x1122_3344_5566_7788,
        };
        let b = s.to_bytes();
        assert_eq!(
            b[..12],
            [1, 2, 3, 4, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88]
        );
        // zlib.crc32(bytes.fromhex("010203041122334455667788")) == 0xfafde765
        assert_eq!(
            u32::from_be_bytes([b[12], b[13], b[14], b[15]]),
            0xfafd_e765
        );
        assert_eq!(Stamp::from_bytes(&b), Some(s));
        let mut bad = b;
        bad[5] ^= 0x10;
        assert_eq!(Stamp::from_bytes(&bad), None);
    }

    #[test]
    fn block_sizes() {
        assert_eq!(block_size(1280, 720), Some(16));
        assert_eq!(block_size(1920, 1080), Some(16));
        assert_eq!(block_size(2560, 1440), Some(32));
        assert_eq!(block_size(3840, 2160), Some(48));
        assert_eq!(block_size(288, 128), Some(16));
        assert_eq!(block_size(286, 128), Some(14));
        assert_eq!(block_size(64, 64), Some(2));
        assert_eq!(block_size(36, 16), Some(2));
        assert_eq!(block_size(34, 64), None);
        assert_eq!(block_size(64, 14), None);
    }

    #[test]
    fn cell_geometry_at_720p() {
        let mut f = Frame::new(1280, 720).unwrap();
        f.planes_mut().0.fill(100);
        // frame 0, time 0: payload is 12 zero bytes and CRC-32 0x7bd5c66f.
        write_stamp(&mut f, Stamp::default()).unwrap();
        let y = f.y();
        // Row 0: white guard at x 0..16, black guard at x 16..32, stamp ends at x 288, y 128.
        assert_eq!(y[0], 235);
        assert_eq!(y[15], 235);
        assert_eq!(y[16], 16);
        assert_eq!(y[31], 16);
        assert_eq!(y[127 * 1280], 235);
        assert_eq!(y[128 * 1280], 100);
        assert_eq!(y[288], 100);
        // frame 0 → bytes 0..4 zero → row 0 and row 1 data cells are all black.
        assert!(y[32..288].iter().all(|&p| p == 16));
        assert_eq!(read_stamp(y, 1280, 720, 1280), Some(Stamp::default()));
    }

    #[test]
    fn cell_bits_fixture() {
        // Frame 1 at 1000 µs: bytes 00000001 00000000000003e8, CRC-32 e952eba5 (zlib.crc32).
        // The same rows are printed in docs/capture.md.
        let rows = [
            "0000000000000000",
            "0000000000000001",
            "0000000000000000",
            "0000000000000000",
            "0000000000000000",
            "0000001111101000",
            "1110100101010010",
            "1110101110100101",
        ];
        let mut f = Frame::new(1280, 720).unwrap();
        write_stamp(
            &mut f,
            Stamp {
                frame: 1,
                capture_us: 1000,
            },
        )
        .unwrap();
        for (r, bits) in rows.iter().enumerate() {
            for (i, bit) in bits.chars().enumerate() {
                // Centre pixel of cell (r, 2 + i), B = 16.
                let (x, y) = ((2 + i) * 16 + 8, r * 16 + 8);
                let want = if bit == '1' { LEVEL_ONE } else { LEVEL_ZERO };
                assert_eq!(f.y()[y * 1280 + x], want, "row {r} bit {i}");
            }
        }
    }

    #[test]
    fn no_stamp_and_short_input() {
        let f = Frame::new(640, 480).unwrap(); // flat grey: no contrast
        assert_eq!(read_stamp(f.y(), 640, 480, 640), None);
        assert_eq!(read_stamp(&[], 640, 480, 640), None);
        assert_eq!(read_stamp(&[0; 100], 0, 0, 0), None);
        assert_eq!(read_stamp(f.y(), 640, 480, 320), None);
    }

    #[test]
    fn single_flipped_cell_is_rejected() {
        let mut f = Frame::new(640, 480).unwrap();
        let s = Stamp {
            frame: 77,
            capture_us: 123_456_789,
        };
        write_stamp(&mut f, s).unwrap();
        assert_eq!(read_stamp(f.y(), 640, 480, 640), Some(s));
        // Invert one data cell (row 3, column 9).
        let b = 16;
        let stride = f.y_stride();
        let y = f.planes_mut().0;
        for py in 3 * b..4 * b {
            for p in &mut y[py * stride + 9 * b..py * stride + 10 * b] {
                *p = 251 - *p;
            }
        }
        assert_eq!(read_stamp(f.y(), 640, 480, 640), None);
    }

    #[test]
    fn tolerates_noise_and_level_shift() {
        let mut f = Frame::new(1280, 720).unwrap();
        let s = Stamp {
            frame: 0xDEAD_BEEF,
            capture_us: u64::MAX - 5,
        };
        write_stamp(&mut f, s).unwrap();
        // Compress the range towards grey and add deterministic ±40 noise: means stay apart.
        let mut seed = 0x1234_5678u32;
        for p in f.planes_mut().0.iter_mut() {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (seed >> 24) as i32 % 81 - 40;
            let squeezed = 80 + (i32::from(*p) - 16) * 100 / 219;
            *p = (squeezed + noise).clamp(0, 255) as u8;
        }
        assert_eq!(read_stamp(f.y(), 1280, 720, 1280), Some(s));
    }

    #[test]
    fn strided_plane() {
        // A decoder's plane with row padding: copy a 320x240 picture into stride 384.
        let mut f = Frame::new(320, 240).unwrap();
        let s = Stamp {
            frame: 5,
            capture_us: 6,
        };
        write_stamp(&mut f, s).unwrap();
        let stride = 384;
        let mut padded = vec![0u8; stride * 240];
        for row in 0..240 {
            padded[row * stride..row * stride + 320].copy_from_slice(&f.y()[row * 320..][..320]);
        }
        assert_eq!(read_stamp(&padded, 320, 240, stride), Some(s));
    }

    proptest! {
        #[test]
        fn round_trip_raw(
            w in 18u32..=1920,
            h in 8u32..=1080,
            frame in any::<u32>(),
            capture_us in any::<u64>(),
        ) {
            let (w, h) = (w * 2, h * 2);
            let mut f = Frame::new(w.max(36), h.max(16)).unwrap();
            let s = Stamp { frame, capture_us };
            write_stamp(&mut f, s).unwrap();
            let (w, h) = (f.width() as usize, f.height() as usize);
            prop_assert_eq!(read_stamp(f.y(), w, h, w), Some(s));
        }

        #[test]
        fn never_panics(
            data in proptest::collection::vec(any::<u8>(), 0..4096),
            w in 0usize..200,
            h in 0usize..200,
            stride in 0usize..256,
        ) {
            let _ = read_stamp(&data, w, h, stride);
        }
    }
}
