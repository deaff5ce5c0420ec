//! Pixel format conversion: 4-byte BGRx/BGRA (what wl_shm capture delivers) → I420 for the
//! encoders.
//!
//! ```text
//!  src: height rows × stride bytes, each pixel  B G R x  (XRGB8888 little-endian)
//!  dst: Frame (I420): Y per pixel; Cb, Cr per 2×2 block, from the block's mean R, G, B
//! ```
//!
//! BT.709, limited range (Y 16–235, Cb/Cr 16–240): what the encoder's VUI announces and what
//! the test pattern uses. Integer coefficients in 1/256 (Y: 47, 157, 16 of R, G, B; Cb: −26,
//! −86, 112; Cr: 112, −102, −10); the chroma rows sum to zero, so grey stays at Cb = Cr = 128.
//! Results are within ±1 of the exact formula (ITU-R BT.709-6, table 3).
//!
//! Pure: no I/O, the caller owns both buffers.
#![forbid(unsafe_code)]

use crate::frame::{Frame, FrameError};

/// Converts a BGRx (or BGRA; alpha ignored) image of the frame's size into `dst`.
///
/// `src` holds `height` rows of `stride` bytes (`stride ≥ 4 · width`); the frame's size is
/// the image's size (even, as every [`Frame`]). Fails with [`FrameError::SizeMismatch`] if
/// `src` is too short for `dst`'s size at that stride.
pub fn bgrx_to_i420(src: &[u8], stride: usize, dst: &mut Frame) -> Result<(), FrameError> {
    let (w, h) = (dst.width() as usize, dst.height() as usize);
    if stride < 4 * w || src.len() < stride * (h - 1) + 4 * w {
        return Err(FrameError::SizeMismatch {
            got_w: (stride / 4) as u32,
            got_h: src.len().checked_div(stride).unwrap_or(0) as u32,
            want_w: w as u32,
            want_h: h as u32,
        });
    }
    let (y_plane, u_plane, v_plane) = dst.planes_mut();
    let cw = w / 2;
    for cy in 0..h / 2 {
        let rows = [&src[2 * cy * stride..], &src[(2 * cy + 1) * stride..]];
        let y_rows = y_plane[2 * cy * w..(2 * cy + 2) * w].split_at_mut(w);
        let u_row = &mut u_plane[cy * cw..(cy + 1) * cw];
        let v_row = &mut v_plane[cy * cw..(cy + 1) * cw];
        for cx in 0..cw {
            let (mut r_sum, mut g_sum, mut b_sum) = (0i32, 0i32, 0i32);
            for (row, y_row) in rows.iter().zip([&mut *y_rows.0, &mut *y_rows.1]) {
                for dx in 0..2 {
                    let x = 2 * cx + dx;
                    let px = &row[4 * x..4 * x + 3];
                    let (b, g, r) = (i32::from(px[0]), i32::from(px[1]), i32::from(px[2]));
                    y_row[x] = rgb_to_luma(r, g, b);
                    r_sum += r;
                    g_sum += g;
                    b_sum += b;
                }
            }
            // Mean of the 2×2 block, rounded.
            let (r, g, b) = ((r_sum + 2) >> 2, (g_sum + 2) >> 2, (b_sum + 2) >> 2);
            (u_row[cx], v_row[cx]) = rgb_to_cbcr(r, g, b);
        }
    }
    Ok(())
}

/// BT.709 limited-range luma of 8-bit R, G, B.
pub fn rgb_to_luma(r: i32, g: i32, b: i32) -> u8 {
    clamp_u8(((47 * r + 157 * g + 16 * b + 128) >> 8) + 16)
}

/// BT.709 limited-range (Cb, Cr) of 8-bit R, G, B (e.g. a 2×2 block's mean).
pub fn rgb_to_cbcr(r: i32, g: i32, b: i32) -> (u8, u8) {
    (
        clamp_u8(((-26 * r - 86 * g + 112 * b + 128) >> 8) + 128),
        clamp_u8(((112 * r - 102 * g - 10 * b + 128) >> 8) + 128),
    )
}

fn clamp_u8(v: i32) -> u8 {
    v.clamp(0, 255) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A `w`×`h` BGRx image of one colour, with `pad` spare bytes per row.
    fn solid(w: usize, h: usize, pad: usize, [r, g, b]: [u8; 3]) -> (Vec<u8>, usize) {
        let stride = 4 * w + pad;
        let mut img = vec![0xEE; stride * h];
        for row in img.chunks_mut(stride) {
            for px in row[..4 * w].chunks_mut(4) {
                px.copy_from_slice(&[b, g, r, 0xFF]);
            }
        }
        (img, stride)
    }

    fn assert_near(got: (u8, u8, u8), want: (u8, u8, u8), what: &str) {
        let near = |a: u8, b: u8| a.abs_diff(b) <= 2;
        assert!(
            near(got.0, want.0) && near(got.1, want.1) && near(got.2, want.2),
            "{what}: got {got:?}, want {want:?} ±2"
        );
    }

    /// BT.709 limited range: the pattern's own table (docs/capture.md) for 100 % colours.
    #[test]
    fn solid_colours_give_known_yuv() {
        type Case = ([u8; 3], (u8, u8, u8), &'static str);
        let cases: [Case; 8] = [
            ([0, 0, 0], (16, 128, 128), "black"),
            ([255, 255, 255], (235, 128, 128), "white"),
            ([128, 128, 128], (126, 128, 128), "grey"),
            ([255, 0, 0], (63, 102, 240), "red"),
            ([0, 255, 0], (173, 42, 26), "green"),
            ([0, 0, 255], (32, 240, 118), "blue"),
            ([255, 255, 0], (219, 16, 138), "yellow"),
            ([0, 255, 255], (188, 154, 16), "cyan"),
        ];
        for (rgb, yuv, name) in cases {
            let mut f = Frame::new(16, 16).unwrap();
            let (img, stride) = solid(16, 16, 8, rgb); // padded rows
            bgrx_to_i420(&img, stride, &mut f).unwrap();
            assert!(f.y().iter().all(|&y| y == f.y()[0]), "{name}: uniform Y");
            assert_near((f.y()[0], f.u()[0], f.v()[0]), yuv, name);
            assert_near((f.y()[255], f.u()[63], f.v()[63]), yuv, name);
        }
    }

    #[test]
    fn each_pixel_keeps_its_own_luma_and_blocks_their_chroma() {
        // Left half red, right half blue, top row black: Y per pixel, chroma per 2×2 block.
        let (w, h) = (16usize, 16usize);
        let stride = 4 * w;
        let mut img = vec![0u8; stride * h];
        for y in 1..h {
            for x in 0..w {
                let px = if x < w / 2 {
                    [0, 0, 255, 0]
                } else {
                    [255, 0, 0, 0]
                };
                img[y * stride + 4 * x..][..4].copy_from_slice(&px);
            }
        }
        let mut f = Frame::new(16, 16).unwrap();
        bgrx_to_i420(&img, stride, &mut f).unwrap();
        assert_eq!(f.y()[3], 16, "black top row");
        assert_near((f.y()[2 * w + 3], 0, 0), (63, 0, 0), "red luma");
        assert_near((f.y()[2 * w + 12], 0, 0), (32, 0, 0), "blue luma");
        // Chroma row 1 (luma rows 2, 3): pure red block at cx 1, pure blue at cx 6.
        assert_near(
            (63, f.u()[8 + 1], f.v()[8 + 1]),
            (63, 102, 240),
            "red chroma",
        );
        assert_near(
            (32, f.u()[8 + 6], f.v()[8 + 6]),
            (32, 240, 118),
            "blue chroma",
        );
    }

    #[test]
    fn refuses_short_sources() {
        let mut f = Frame::new(16, 16).unwrap();
        let (img, stride) = solid(16, 15, 0, [1, 2, 3]);
        assert!(bgrx_to_i420(&img, stride, &mut f).is_err());
        let (img, _) = solid(16, 16, 0, [1, 2, 3]);
        assert!(bgrx_to_i420(&img, 60, &mut f).is_err());
    }
}
