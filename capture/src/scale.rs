//! Any captured picture → an I420 frame of the session's size (pure): the conversion for
//! sources whose size the host does not choose (a PipeWire node: a portal screencast, a
//! camera, gamescope's stream).
//!
//! ```text
//!  src (W×H): BGRx/BGRA/RGBx/RGBA (one plane), I420 (three), NV12 (two)
//!        │  nearest sample: dst pixel (x, y) ← src (x·W/w, y·H/h); per 2×2 dst block the
//!        │  chroma of the sampled pixels (RGB: from their mean; YUV: the src chroma sample)
//!        ▼
//!  dst: Frame (I420, w×h)
//! ```
//!
//! Nearest-neighbour, not filtered: cheap (one lookup per pixel, the maps computed once per
//! size pair) and exact when the sizes match; a downscale aliases fine detail. RGB → YUV is
//! the BT.709 limited-range conversion of [`crate::convert`]. Same-size BGRx/BGRA takes
//! [`crate::convert::bgrx_to_i420`] itself.
#![forbid(unsafe_code)]

use crate::convert::{bgrx_to_i420, rgb_to_cbcr, rgb_to_luma};
use crate::frame::Frame;

/// A picture to convert: its size and its planes as captured.
#[derive(Debug, Clone, Copy)]
pub struct Picture<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// The layout and the bytes.
    pub planes: PicturePlanes<'a>,
}

/// How a [`Picture`]'s pixels are laid out.
#[derive(Debug, Clone, Copy)]
pub enum PicturePlanes<'a> {
    /// 4 bytes per pixel; `rgb` gives the byte offsets of red, green and blue in a pixel
    /// (BGRx/BGRA: `[2, 1, 0]`, RGBx/RGBA: `[0, 1, 2]`).
    Packed {
        /// `height` rows of `stride` bytes.
        data: &'a [u8],
        /// Bytes per row.
        stride: usize,
        /// Offsets of R, G, B.
        rgb: [usize; 3],
    },
    /// Y, then Cb and Cr at half width and height.
    I420 {
        /// Luma plane and its stride.
        y: (&'a [u8], usize),
        /// Cb plane and its stride.
        u: (&'a [u8], usize),
        /// Cr plane and its stride.
        v: (&'a [u8], usize),
    },
    /// Y, then interleaved CbCr at half width and height.
    Nv12 {
        /// Luma plane and its stride.
        y: (&'a [u8], usize),
        /// CbCr plane and its stride.
        uv: (&'a [u8], usize),
    },
}

/// Why a picture cannot be converted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ScaleError {
    /// A plane is shorter than its size and stride say, or the size is zero.
    #[error("picture of {width}x{height}: plane {plane} too short or size zero")]
    Short {
        /// Picture width.
        width: u32,
        /// Picture height.
        height: u32,
        /// Which plane (0: the first).
        plane: usize,
    },
}

/// Nearest-sample maps for one source size → one frame size; reused across frames.
#[derive(Debug, Clone, Default)]
pub struct Scaler {
    src: (u32, u32),
    dst: (u32, u32),
    /// Source column of each destination column.
    xmap: Vec<usize>,
    /// Source row of each destination row.
    ymap: Vec<usize>,
}

fn map(dst: u32, src: u32) -> Vec<usize> {
    // The centre of destination pixel i lands in source pixel floor((i + ½)·src/dst).
    (0..u64::from(dst))
        .map(|i| ((2 * i + 1) * u64::from(src) / (2 * u64::from(dst))) as usize)
        .collect()
}

fn check(
    len: usize,
    stride: usize,
    row_bytes: usize,
    rows: usize,
    plane: usize,
    p: &Picture<'_>,
) -> Result<(), ScaleError> {
    if rows == 0 || row_bytes == 0 || stride < row_bytes || len < stride * (rows - 1) + row_bytes {
        return Err(ScaleError::Short {
            width: p.width,
            height: p.height,
            plane,
        });
    }
    Ok(())
}

/// The luma plane by nearest sample (both YUV layouts keep Y the same way).
fn sample_luma(
    (src, stride): (&[u8], usize),
    xmap: &[usize],
    ymap: &[usize],
    dst: &mut [u8],
    w: usize,
) {
    for (row, &sy) in ymap.iter().enumerate() {
        let src_row = &src[sy * stride..];
        for (x, &sx) in xmap.iter().enumerate() {
            dst[row * w + x] = src_row[sx];
        }
    }
}

impl Scaler {
    /// A scaler with no maps yet (they are made at the first frame).
    pub fn new() -> Self {
        Self::default()
    }

    /// Converts `src` into `dst` at `dst`'s size.
    pub fn convert(&mut self, src: &Picture<'_>, dst: &mut Frame) -> Result<(), ScaleError> {
        let (sw, sh) = (src.width as usize, src.height as usize);
        let (dw, dh) = (dst.width(), dst.height());
        // Validate the planes against the source size first.
        match src.planes {
            PicturePlanes::Packed { data, stride, .. } => {
                check(data.len(), stride, 4 * sw, sh, 0, src)?
            }
            PicturePlanes::I420 { y, u, v } => {
                check(y.0.len(), y.1, sw, sh, 0, src)?;
                check(u.0.len(), u.1, sw.div_ceil(2), sh.div_ceil(2), 1, src)?;
                check(v.0.len(), v.1, sw.div_ceil(2), sh.div_ceil(2), 2, src)?;
            }
            PicturePlanes::Nv12 { y, uv } => {
                check(y.0.len(), y.1, sw, sh, 0, src)?;
                check(uv.0.len(), uv.1, 2 * sw.div_ceil(2), sh.div_ceil(2), 1, src)?;
            }
        }
        if let PicturePlanes::Packed {
            data,
            stride,
            rgb: [2, 1, 0],
        } = src.planes
            && (src.width, src.height) == (dw, dh)
        {
            // Same size BGRx: the exact converter (2×2 chroma means of real pixels).
            return bgrx_to_i420(data, stride, dst).map_err(|_| ScaleError::Short {
                width: src.width,
                height: src.height,
                plane: 0,
            });
        }
        if self.src != (src.width, src.height) || self.dst != (dw, dh) {
            self.src = (src.width, src.height);
            self.dst = (dw, dh);
            self.xmap = map(dw, src.width);
            self.ymap = map(dh, src.height);
        }
        let (w, cw) = (dw as usize, dw as usize / 2);
        let (xmap, ymap) = (&self.xmap, &self.ymap);
        let (yp, up, vp) = dst.planes_mut();
        match src.planes {
            PicturePlanes::Packed {
                data,
                stride,
                rgb: [ri, gi, bi],
            } => {
                let px = |x: usize, y: usize| {
                    let o = y * stride + 4 * x;
                    (
                        i32::from(data[o + ri]),
                        i32::from(data[o + gi]),
                        i32::from(data[o + bi]),
                    )
                };
                for cy in 0..dh as usize / 2 {
                    for cx in 0..cw {
                        let mut sum = (0, 0, 0);
                        for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                            let (x, y) = (2 * cx + dx, 2 * cy + dy);
                            let (r, g, b) = px(xmap[x], ymap[y]);
                            yp[y * w + x] = rgb_to_luma(r, g, b);
                            sum = (sum.0 + r, sum.1 + g, sum.2 + b);
                        }
                        let (cb, cr) =
                            rgb_to_cbcr((sum.0 + 2) >> 2, (sum.1 + 2) >> 2, (sum.2 + 2) >> 2);
                        up[cy * cw + cx] = cb;
                        vp[cy * cw + cx] = cr;
                    }
                }
            }
            PicturePlanes::I420 { y, u, v } => {
                sample_luma(y, xmap, ymap, yp, w);
                for cy in 0..dh as usize / 2 {
                    let sy = ymap[2 * cy] / 2;
                    for cx in 0..cw {
                        let sx = xmap[2 * cx] / 2;
                        up[cy * cw + cx] = u.0[sy * u.1 + sx];
                        vp[cy * cw + cx] = v.0[sy * v.1 + sx];
                    }
                }
            }
            PicturePlanes::Nv12 { y, uv } => {
                sample_luma(y, xmap, ymap, yp, w);
                for cy in 0..dh as usize / 2 {
                    let sy = ymap[2 * cy] / 2;
                    for cx in 0..cw {
                        let sx = xmap[2 * cx] / 2;
                        up[cy * cw + cx] = uv.0[sy * uv.1 + 2 * sx];
                        vp[cy * cw + cx] = uv.0[sy * uv.1 + 2 * sx + 1];
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn packed(
        w: usize,
        h: usize,
        rgb: [usize; 3],
        colour: impl Fn(usize, usize) -> [u8; 3],
    ) -> Vec<u8> {
        let mut img = vec![0u8; 4 * w * h];
        for y in 0..h {
            for x in 0..w {
                let c = colour(x, y);
                for k in 0..3 {
                    img[4 * (y * w + x) + rgb[k]] = c[k];
                }
            }
        }
        img
    }

    #[test]
    fn same_size_bgrx_matches_the_exact_converter() {
        let img = packed(64, 32, [2, 1, 0], |x, y| [(x * 4) as u8, (y * 8) as u8, 77]);
        let mut a = Frame::new(64, 32).unwrap();
        let mut b = Frame::new(64, 32).unwrap();
        bgrx_to_i420(&img, 256, &mut a).unwrap();
        let pic = Picture {
            width: 64,
            height: 32,
            planes: PicturePlanes::Packed {
                data: &img,
                stride: 256,
                rgb: [2, 1, 0],
            },
        };
        Scaler::new().convert(&pic, &mut b).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
    }

    #[test]
    fn rgbx_downscale_keeps_solid_colours_and_quadrants() {
        // Left half red, right half blue, 640x360 → 320x180.
        let img = packed(640, 360, [0, 1, 2], |x, _| {
            if x < 320 { [255, 0, 0] } else { [0, 0, 255] }
        });
        let pic = Picture {
            width: 640,
            height: 360,
            planes: PicturePlanes::Packed {
                data: &img,
                stride: 2560,
                rgb: [0, 1, 2],
            },
        };
        let mut f = Frame::new(320, 180).unwrap();
        Scaler::new().convert(&pic, &mut f).unwrap();
        let (y, u, v) = f.planes_mut();
        // BT.709 limited: red (63, 102, 240), blue (32, 240, 118) ±1.
        assert!((62..=64).contains(&y[0]), "{}", y[0]);
        assert!((31..=33).contains(&y[319]), "{}", y[319]);
        assert!((101..=103).contains(&u[0]) && (239..=241).contains(&v[0]));
        assert!((239..=241).contains(&u[159]) && (117..=119).contains(&v[159]));
    }

    #[test]
    fn i420_and_nv12_upscale_by_nearest_sample() {
        // 4x2 source: Y = column index × 10; Cb 100/200 by chroma column; Cr 50/60.
        let y: Vec<u8> = (0..8).map(|i| (i % 4) as u8 * 10).collect();
        let (u, v) = ([100u8, 200], [50u8, 60]);
        let uv = [100u8, 50, 200, 60];
        let mut a = Frame::new(64, 64).unwrap();
        let mut b = Frame::new(64, 64).unwrap();
        let i420 = Picture {
            width: 4,
            height: 2,
            planes: PicturePlanes::I420 {
                y: (&y, 4),
                u: (&u, 2),
                v: (&v, 2),
            },
        };
        let nv12 = Picture {
            width: 4,
            height: 2,
            planes: PicturePlanes::Nv12 {
                y: (&y, 4),
                uv: (&uv, 4),
            },
        };
        Scaler::new().convert(&i420, &mut a).unwrap();
        Scaler::new().convert(&nv12, &mut b).unwrap();
        assert_eq!(a.as_bytes(), b.as_bytes());
        let (yp, up, vp) = a.planes_mut();
        // Each source pixel becomes a 16×32 block, each chroma sample 16×16 of chroma.
        let row: Vec<u8> = [0u8, 10, 20, 30].iter().flat_map(|&v| [v; 16]).collect();
        assert_eq!(&yp[..64], &row[..]);
        assert_eq!(&yp[63 * 64..], &row[..]);
        let crow: Vec<u8> = [100u8, 200].iter().flat_map(|&v| [v; 16]).collect();
        assert_eq!(&up[..32], &crow[..]);
        assert_eq!(&vp[..32], &[[50u8; 16], [60u8; 16]].concat()[..]);
    }

    #[test]
    fn short_planes_are_errors_not_panics() {
        let mut f = Frame::new(64, 64).unwrap();
        let tiny = [0u8; 10];
        let pic = Picture {
            width: 64,
            height: 64,
            planes: PicturePlanes::Packed {
                data: &tiny,
                stride: 256,
                rgb: [2, 1, 0],
            },
        };
        assert!(Scaler::new().convert(&pic, &mut f).is_err());
        let zero = Picture {
            width: 0,
            height: 0,
            planes: PicturePlanes::Nv12 {
                y: (&tiny, 0),
                uv: (&tiny, 0),
            },
        };
        assert!(Scaler::new().convert(&zero, &mut f).is_err());
        let y = vec![0u8; 64 * 64];
        let pic = Picture {
            width: 64,
            height: 64,
            planes: PicturePlanes::I420 {
                y: (&y, 64),
                u: (&tiny, 32),
                v: (&tiny, 32),
            },
        };
        assert_eq!(
            Scaler::new().convert(&pic, &mut f),
            Err(ScaleError::Short {
                width: 64,
                height: 64,
                plane: 1
            })
        );
    }
}
