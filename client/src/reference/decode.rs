//! The reference client's video decoder (act: libavcodec or openh264): access units in,
//! picture size and the test pattern's stamp out (capture → decoded latency).
//!
//! openh264 decodes H.264 in every build; with the `libav` feature (the default) the system's
//! libavcodec decodes HEVC and AV1, without it the client offers only H.264.

use punktfunk_capture::stamp::{Stamp, read_stamp};

/// What one decoded picture showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Decoded {
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// The pattern's stamp, when the picture carries one.
    pub stamp: Option<Stamp>,
}

/// A decoded picture as 0RGB pixels (for the window).
#[derive(Debug, Default, Clone)]
pub struct Picture {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width × height` pixels, 0x00RRGGBB.
    pub pixels: Vec<u32>,
}

/// Limited-range BT.709 Y'CbCr → 0RGB, 8-bit.
fn ycbcr_to_0rgb(y: u8, cb: u8, cr: u8) -> u32 {
    let y = (i32::from(y) - 16) * 298;
    let (cb, cr) = (i32::from(cb) - 128, i32::from(cr) - 128);
    let c = |v: i32| ((v + 128) >> 8).clamp(0, 255) as u32;
    let r = c(y + 459 * cr);
    let g = c(y - 55 * cb - 136 * cr);
    let b = c(y + 541 * cb);
    (r << 16) | (g << 8) | b
}

/// Planar Y'CbCr (4:2:0, or 4:4:4 when `full_chroma`) → `out`.
#[allow(clippy::too_many_arguments)] // three planes with their strides
fn planes_to_picture(
    (w, h): (usize, usize),
    y: &[u8],
    ys: usize,
    u: &[u8],
    v: &[u8],
    cs: usize,
    full_chroma: bool,
    out: &mut Picture,
) {
    out.width = w as u32;
    out.height = h as u32;
    out.pixels.clear();
    out.pixels.reserve(w * h);
    let shift = usize::from(!full_chroma);
    for row in 0..h {
        for col in 0..w {
            let ci = (row >> shift) * cs + (col >> shift);
            out.pixels.push(ycbcr_to_0rgb(
                y.get(row * ys + col).copied().unwrap_or(16),
                u.get(ci).copied().unwrap_or(128),
                v.get(ci).copied().unwrap_or(128),
            ));
        }
    }
}

/// Codecs this build decodes, as `PF_CODEC_*` bits.
pub fn codecs() -> u32 {
    if cfg!(feature = "libav") {
        crate::abi::PF_CODEC_H264 | crate::abi::PF_CODEC_HEVC | crate::abi::PF_CODEC_AV1
    } else {
        crate::abi::PF_CODEC_H264
    }
}

/// A decoder for one stream.
pub enum Decoder {
    /// libavcodec.
    #[cfg(feature = "libav")]
    Libav(punktfunk_capture::libav::LibavDecoder),
    /// openh264.
    OpenH264(Box<openh264::decoder::Decoder>),
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            #[cfg(feature = "libav")]
            Decoder::Libav(_) => "Decoder::Libav",
            Decoder::OpenH264(_) => "Decoder::OpenH264",
        })
    }
}

impl Decoder {
    /// A decoder for the `PF_CODEC_*` bit `codec`: openh264 for H.264 (in every build),
    /// libavcodec for HEVC and AV1.
    pub fn new(codec: u32) -> Result<Self, String> {
        if codec == crate::abi::PF_CODEC_H264 {
            return openh264::decoder::Decoder::new()
                .map(|d| Decoder::OpenH264(Box::new(d)))
                .map_err(|e| e.to_string());
        }
        #[cfg(feature = "libav")]
        {
            use punktfunk_capture::video::VideoCodec;
            let c = if codec == crate::abi::PF_CODEC_AV1 {
                VideoCodec::Av1
            } else {
                VideoCodec::Hevc
            };
            punktfunk_capture::libav::LibavDecoder::new(c)
                .map(Decoder::Libav)
                .map_err(|e| e.to_string())
        }
        #[cfg(not(feature = "libav"))]
        Err("this build decodes H.264 only (feature libav is off)".into())
    }

    /// Decodes one access unit; `Ok(None)` if no picture came out of it (yet). With `rgb`,
    /// the picture is also converted into it (for presenting).
    pub fn decode(
        &mut self,
        au: &[u8],
        rgb: Option<&mut Picture>,
    ) -> Result<Option<Decoded>, String> {
        match self {
            #[cfg(feature = "libav")]
            Decoder::Libav(d) => Ok(d.decode(au).map_err(|e| e.to_string())?.map(|p| {
                let (w, h) = (p.width as usize, p.height as usize);
                if let Some(out) = rgb {
                    let cs = if p.yuv444 { w } else { w / 2 };
                    planes_to_picture((w, h), &p.y, w, &p.u, &p.v, cs, p.yuv444, out);
                }
                Decoded {
                    width: p.width,
                    height: p.height,
                    stamp: read_stamp(&p.y, w, h, w),
                }
            })),
            Decoder::OpenH264(d) => {
                use openh264::formats::YUVSource as _;
                Ok(d.decode(au).map_err(|e| e.to_string())?.map(|p| {
                    let (w, h) = p.dimensions();
                    let (ys, cs, _) = p.strides();
                    if let Some(out) = rgb {
                        planes_to_picture((w, h), p.y(), ys, p.u(), p.v(), cs, false, out);
                    }
                    Decoded {
                        width: w as u32,
                        height: h as u32,
                        stamp: read_stamp(p.y(), w, h, ys),
                    }
                }))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limited_range_black_white_and_grey() {
        assert_eq!(ycbcr_to_0rgb(16, 128, 128), 0x000000);
        assert_eq!(ycbcr_to_0rgb(235, 128, 128), 0xFFFFFF);
        assert_eq!(ycbcr_to_0rgb(126, 128, 128) & 0xFF, 128);
        // BT.709 red: Y 63, Cb 102, Cr 240.
        let red = ycbcr_to_0rgb(63, 102, 240);
        assert!(
            red >> 16 > 240 && (red >> 8) & 0xFF < 16 && red & 0xFF < 16,
            "{red:06x}"
        );
    }

    #[test]
    fn chroma_is_shared_by_2x2_blocks_in_420() {
        let mut pic = Picture::default();
        let y = [235u8; 4 * 2];
        planes_to_picture((4, 2), &y, 4, &[128, 128], &[128, 240], 2, false, &mut pic);
        assert_eq!((pic.width, pic.height, pic.pixels.len()), (4, 2, 8));
        assert_eq!(pic.pixels[0], pic.pixels[5]);
        assert_ne!(pic.pixels[0], pic.pixels[2]);
    }
}
