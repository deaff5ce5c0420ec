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

    /// Decodes one access unit; `Ok(None)` if no picture came out of it (yet).
    pub fn decode(&mut self, au: &[u8]) -> Result<Option<Decoded>, String> {
        match self {
            #[cfg(feature = "libav")]
            Decoder::Libav(d) => Ok(d.decode(au).map_err(|e| e.to_string())?.map(|p| {
                let (w, h) = (p.width as usize, p.height as usize);
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
                    Decoded {
                        width: w as u32,
                        height: h as u32,
                        stamp: read_stamp(p.y(), w, h, p.strides().0),
                    }
                }))
            }
        }
    }
}
