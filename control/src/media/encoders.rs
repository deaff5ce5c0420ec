//! Which encoder makes which picture format, and so what this host advertises to clients
//! (`ServerCodecModeSupport`, the DESCRIBE markers). docs/capture.md "Encoders".
//!
//! ```text
//!  [video] h264_encoder / hevc_encoder / av1_encoder  ─┐
//!  what this build's libavcodec has (Capabilities)    ─┴─ EncoderTable::plan ─► EncoderTable
//!  EncoderTable ─► codec_modes() (serverinfo), hevc()/av1() (DESCRIBE), open(format) per stream
//! ```
//!
//! Defaults: H.264 with openh264 (built in; libx264 by name: it saves 8–17 % of the bits for
//! the same PSNR but takes 1.7× openh264's time per 1080p frame), HEVC with libx265, AV1 with
//! libaom-av1 in realtime mode (libsvtav1 where libaom is missing: it lags 2–3 frames and
//! codes worse at these speeds, docs/benchmarks.md "Encoders"), each only where this
//! libavcodec has it; Main10 where that encoder takes 10-bit
//! input; 8-bit and 10-bit 4:4:4 where it takes those (the test pattern renders 4:4:4 and
//! 10-bit pictures natively; desktop captures are 4:2:0, upsampled by the encoder stage).
//!
//! `plan`, `codec_modes` and the format choice are pure; `probe` asks libavcodec and `open`
//! builds the encoder (acts). The table is installed once per process by `serve`
//! ([`install`]); a process that did not install one probes with the defaults on first use.

use std::sync::OnceLock;

use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::video::{VideoCodec, VideoFormat};
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig};
use punktfunk_tuning::EncoderNames;

use crate::gamestream::nvhttp::{
    SCM_AV1_HIGH8_444, SCM_AV1_HIGH10_444, SCM_AV1_MAIN8, SCM_AV1_MAIN10, SCM_H264,
    SCM_H264_HIGH8_444, SCM_HEVC, SCM_HEVC_MAIN10, SCM_HEVC_REXT8_444, SCM_HEVC_REXT10_444,
};

/// The built-in H.264 encoder's name.
pub const OPENH264: &str = "openh264";
/// The name that turns a codec off.
pub const NONE: &str = "none";

/// What the encoders of this build can do.
pub trait Capabilities {
    /// An encoder called `name` exists.
    fn has(&self, name: &str) -> bool;
    /// Encoder `name` takes pictures of `format` (bit depth, chroma).
    fn supports(&self, name: &str, format: VideoFormat) -> bool;
}

/// The encoder per codec this host uses, and which 10-bit formats it offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncoderTable {
    /// H.264 (always there: every client decodes it).
    pub h264: String,
    /// HEVC, if offered.
    pub hevc: Option<String>,
    /// HEVC Main10 offered.
    pub hevc_main10: bool,
    /// AV1, if offered.
    pub av1: Option<String>,
    /// AV1 Main10 offered.
    pub av1_main10: bool,
    /// 8-bit 4:4:4 offered, per codec (H.264, HEVC, AV1): where the encoder takes it.
    pub yuv444: [bool; 3],
    /// 10-bit 4:4:4 offered, per codec (H.264, HEVC, AV1; never H.264: clients have no
    /// format for it): where the encoder takes it and the codec's 10-bit 4:2:0 is offered.
    pub yuv444_10: [bool; 3],
}

/// The index of `codec` in [`EncoderTable::yuv444`] (`None`: a codec this table has no row
/// for).
fn codec_index(codec: VideoCodec) -> Option<usize> {
    match codec {
        VideoCodec::H264 => Some(0),
        VideoCodec::Hevc => Some(1),
        VideoCodec::Av1 => Some(2),
        _ => None,
    }
}

impl EncoderTable {
    /// The table for the names asked (`None` = default) given what the build has. An encoder
    /// that was asked for by name and cannot be used is an error naming it.
    pub fn plan(asked: &EncoderNames, caps: &dyn Capabilities) -> Result<Self, String> {
        let pick = |codec: VideoCodec,
                    asked: Option<&str>,
                    defaults: &[&str]|
         -> Result<Option<String>, String> {
            let eight = VideoFormat::of(codec);
            match asked {
                Some(NONE) if codec == VideoCodec::H264 => {
                    Err("video.h264_encoder cannot be \"none\": every client needs H.264".into())
                }
                Some(NONE) => Ok(None),
                Some(OPENH264) if codec == VideoCodec::H264 => Ok(Some(OPENH264.into())),
                Some(name) if name.ends_with("_vaapi") => Err(format!(
                    "encoder {name}: VA-API encoders need frames in VA surfaces, which this \
                     host does not produce yet (docs/capture.md \"Encoders\")"
                )),
                Some(name) => {
                    if !caps.has(name) {
                        Err(format!("encoder {name} is not in this build's libavcodec"))
                    } else if !caps.supports(name, eight) {
                        Err(format!(
                            "encoder {name} cannot encode 8-bit 4:2:0 {}",
                            codec.name()
                        ))
                    } else {
                        Ok(Some(name.into()))
                    }
                }
                None => match defaults
                    .iter()
                    .find(|d| caps.has(d) && caps.supports(d, eight))
                {
                    Some(d) => Ok(Some((*d).into())),
                    None if codec == VideoCodec::H264 => Ok(Some(OPENH264.into())),
                    None => Ok(None),
                },
            }
        };
        let h264 =
            pick(VideoCodec::H264, asked.h264.as_deref(), &[])?.unwrap_or_else(|| OPENH264.into());
        let hevc = pick(VideoCodec::Hevc, asked.hevc.as_deref(), &["libx265"])?;
        let av1 = pick(
            VideoCodec::Av1,
            asked.av1.as_deref(),
            &["libaom-av1", "libsvtav1"],
        )?;
        let ten = |codec, name: &Option<String>| {
            name.as_deref().is_some_and(|n| {
                caps.supports(
                    n,
                    VideoFormat {
                        ten_bit: true,
                        ..VideoFormat::of(codec)
                    },
                )
            })
        };
        let full = |codec, name: Option<&str>| {
            name.is_some_and(|n| {
                caps.supports(
                    n,
                    VideoFormat {
                        yuv444: true,
                        ..VideoFormat::of(codec)
                    },
                )
            })
        };
        let full10 = |codec, name: Option<&str>| {
            name.is_some_and(|n| {
                caps.supports(
                    n,
                    VideoFormat {
                        yuv444: true,
                        ten_bit: true,
                        ..VideoFormat::of(codec)
                    },
                )
            })
        };
        let (hevc_main10, av1_main10) = (ten(VideoCodec::Hevc, &hevc), ten(VideoCodec::Av1, &av1));
        Ok(Self {
            hevc_main10,
            av1_main10,
            yuv444_10: [
                false,
                hevc_main10 && full10(VideoCodec::Hevc, hevc.as_deref()),
                av1_main10 && full10(VideoCodec::Av1, av1.as_deref()),
            ],
            yuv444: [
                full(VideoCodec::H264, Some(&h264)),
                full(VideoCodec::Hevc, hevc.as_deref()),
                full(VideoCodec::Av1, av1.as_deref()),
            ],
            h264,
            hevc,
            av1,
        })
    }

    /// `ServerCodecModeSupport`: exactly what the table can encode.
    pub fn codec_modes(&self) -> u32 {
        let mut m = SCM_H264;
        if self.hevc.is_some() {
            m |= SCM_HEVC;
        }
        if self.hevc_main10 {
            m |= SCM_HEVC_MAIN10;
        }
        if self.av1.is_some() {
            m |= SCM_AV1_MAIN8;
        }
        if self.av1_main10 {
            m |= SCM_AV1_MAIN10;
        }
        let full = self.yuv444.iter().chain(&self.yuv444_10);
        for (offered, bit) in full.zip([
            SCM_H264_HIGH8_444,
            SCM_HEVC_REXT8_444,
            SCM_AV1_HIGH8_444,
            0,
            SCM_HEVC_REXT10_444,
            SCM_AV1_HIGH10_444,
        ]) {
            if *offered {
                m |= bit;
            }
        }
        m
    }

    /// `asked` if the table encodes it; else the same codec and depth in 4:2:0 (a client that
    /// asks for 4:4:4 this host did not offer decodes 4:2:0 as well).
    pub fn format_for(&self, asked: VideoFormat) -> VideoFormat {
        if asked.yuv444 && self.encoder_for(asked).is_err() {
            VideoFormat {
                yuv444: false,
                ..asked
            }
        } else {
            asked
        }
    }

    /// The encoder for `format`, or why there is none.
    pub fn encoder_for(&self, format: VideoFormat) -> Result<&str, String> {
        let full = codec_index(format.codec).is_some_and(|i| {
            if format.ten_bit {
                self.yuv444_10[i]
            } else {
                self.yuv444[i]
            }
        });
        if format.yuv444 && !full {
            return Err(format!("this host does not encode {format}"));
        }
        let name = match format.codec {
            VideoCodec::H264 if !format.ten_bit => Some(self.h264.as_str()),
            VideoCodec::Hevc if !format.ten_bit || self.hevc_main10 => self.hevc.as_deref(),
            VideoCodec::Av1 if !format.ten_bit || self.av1_main10 => self.av1.as_deref(),
            _ => None,
        };
        name.ok_or_else(|| format!("this host does not encode {format}"))
    }

    /// One line for logs and `punktfunk tune`: codec → encoder.
    pub fn describe(&self) -> String {
        let opt = |i: usize, n: Option<&str>, ten: bool| {
            let Some(n) = n else {
                return "off".to_owned();
            };
            let depth = if ten { "8- and 10-bit" } else { "" };
            let full = match (self.yuv444[i], self.yuv444_10[i]) {
                (true, true) => "4:4:4",
                (true, false) if ten => "8-bit 4:4:4",
                (true, false) => "4:4:4",
                (false, true) => "10-bit 4:4:4",
                (false, false) => "",
            };
            match (depth, full) {
                ("", "") => n.to_owned(),
                (d, "") | ("", d) => format!("{n} ({d})"),
                (d, f) => format!("{n} ({d}, {f})"),
            }
        };
        format!(
            "h264={} hevc={} av1={}",
            opt(0, Some(&self.h264), false),
            opt(1, self.hevc.as_deref(), self.hevc_main10),
            opt(2, self.av1.as_deref(), self.av1_main10)
        )
    }

    /// The table for `asked` with this build's encoders.
    pub fn probe(asked: &EncoderNames) -> Result<Self, String> {
        Self::plan(asked, &BuildCapabilities)
    }

    /// Opens the encoder for `format` at `config` (acts).
    pub fn open(
        &self,
        format: VideoFormat,
        config: VideoEncoderConfig,
    ) -> Result<Box<dyn VideoEncoder>, String> {
        let name = self.encoder_for(format)?;
        if name == OPENH264 {
            return OpenH264Encoder::new(config)
                .map(|e| Box::new(e) as Box<dyn VideoEncoder>)
                .map_err(|e| e.to_string());
        }
        open_libav(name, format, config)
    }
}

#[cfg(feature = "libav")]
fn open_libav(
    name: &str,
    format: VideoFormat,
    config: VideoEncoderConfig,
) -> Result<Box<dyn VideoEncoder>, String> {
    punktfunk_capture::libav::LibavEncoder::new(name, format, config, None)
        .map(|e| Box::new(e) as Box<dyn VideoEncoder>)
        .map_err(|e| e.to_string())
}

#[cfg(not(feature = "libav"))]
fn open_libav(
    name: &str,
    _format: VideoFormat,
    _config: VideoEncoderConfig,
) -> Result<Box<dyn VideoEncoder>, String> {
    Err(format!(
        "encoder {name}: this build has no libavcodec (feature libav)"
    ))
}

/// The encoders of this build: libavcodec's (feature `libav`) and openh264.
#[derive(Debug, Clone, Copy)]
pub struct BuildCapabilities;

impl Capabilities for BuildCapabilities {
    #[cfg(feature = "libav")]
    fn has(&self, name: &str) -> bool {
        punktfunk_capture::libav::has_encoder(name)
    }

    #[cfg(not(feature = "libav"))]
    fn has(&self, _name: &str) -> bool {
        false
    }

    #[cfg(feature = "libav")]
    fn supports(&self, name: &str, format: VideoFormat) -> bool {
        punktfunk_capture::libav::encoder_supports(name, format)
    }

    #[cfg(not(feature = "libav"))]
    fn supports(&self, _name: &str, _format: VideoFormat) -> bool {
        false
    }
}

static TABLE: OnceLock<EncoderTable> = OnceLock::new();

/// Sets this process's encoder table (once, before the first stream); false if one was set.
pub fn install(table: EncoderTable) -> bool {
    TABLE.set(table).is_ok()
}

/// This process's encoder table: the installed one, else this build's defaults.
pub fn table() -> &'static EncoderTable {
    TABLE.get_or_init(|| {
        EncoderTable::probe(&EncoderNames::default()).unwrap_or_else(|_| EncoderTable {
            h264: OPENH264.into(),
            hevc: None,
            hevc_main10: false,
            av1: None,
            av1_main10: false,
            yuv444: [false; 3],
            yuv444_10: [false; 3],
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build with the named encoders; `ten` of them take 10-bit input.
    struct Fake {
        names: &'static [&'static str],
        ten: &'static [&'static str],
        full: &'static [&'static str],
    }

    impl Capabilities for Fake {
        fn has(&self, name: &str) -> bool {
            self.names.contains(&name)
        }
        fn supports(&self, name: &str, format: VideoFormat) -> bool {
            self.has(name)
                && (!format.yuv444 || self.full.contains(&name))
                && (!format.ten_bit || self.ten.contains(&name))
        }
    }

    const FULL: Fake = Fake {
        names: &[
            "libx264",
            "libx265",
            "libaom-av1",
            "libsvtav1",
            "hevc_nvenc",
        ],
        ten: &["libx265", "libaom-av1", "libsvtav1"],
        full: &[],
    };

    #[test]
    fn defaults_take_what_the_build_has() {
        let t = EncoderTable::plan(&EncoderNames::default(), &FULL).unwrap();
        assert_eq!(
            t.h264, OPENH264,
            "openh264 is the H.264 default even where x264 exists"
        );
        assert_eq!(t.hevc.as_deref(), Some("libx265"));
        assert_eq!(t.av1.as_deref(), Some("libaom-av1"));
        assert_eq!(
            t.codec_modes(),
            SCM_H264 | SCM_HEVC | SCM_HEVC_MAIN10 | SCM_AV1_MAIN8 | SCM_AV1_MAIN10
        );
        let svt_only = Fake {
            names: &["libx264", "libsvtav1"],
            ten: &["libsvtav1"],
            full: &[],
        };
        let t = EncoderTable::plan(&EncoderNames::default(), &svt_only).unwrap();
        assert_eq!(
            t.av1.as_deref(),
            Some("libsvtav1"),
            "the second choice where aom is missing"
        );
        assert_eq!(t.hevc, None);
        let none = Fake {
            names: &[],
            ten: &[],
            full: &[],
        };
        let t = EncoderTable::plan(&EncoderNames::default(), &none).unwrap();
        assert_eq!(t.h264, OPENH264);
        assert_eq!(t.codec_modes(), SCM_H264);
        assert!(t.encoder_for(VideoFormat::of(VideoCodec::Hevc)).is_err());
    }

    #[test]
    fn four_four_four_is_offered_where_the_encoder_takes_it() {
        let caps = Fake {
            names: &["libx264", "libx265", "libaom-av1"],
            ten: &["libx265"],
            full: &["libx264", "libx265"],
        };
        let t = EncoderTable::plan(&EncoderNames::default(), &caps).unwrap();
        // openh264 (the default) has no 4:4:4; x265 has; aom is not in `full` here.
        assert_eq!(t.yuv444, [false, true, false]);
        assert_eq!(
            t.codec_modes(),
            SCM_H264
                | SCM_HEVC
                | SCM_HEVC_MAIN10
                | SCM_HEVC_REXT8_444
                | SCM_HEVC_REXT10_444
                | SCM_AV1_MAIN8
        );
        assert_eq!(t.yuv444_10, [false, true, false]);
        let hevc444 = VideoFormat {
            yuv444: true,
            ..VideoFormat::of(VideoCodec::Hevc)
        };
        assert_eq!(t.encoder_for(hevc444), Ok("libx265"));
        assert_eq!(t.format_for(hevc444), hevc444);
        let h264_444 = VideoFormat {
            yuv444: true,
            ..VideoFormat::of(VideoCodec::H264)
        };
        assert!(t.encoder_for(h264_444).is_err());
        assert_eq!(t.format_for(h264_444), VideoFormat::of(VideoCodec::H264));
        // 10-bit 4:4:4 where the encoder takes both (x265 here); never for H.264.
        let ten444 = VideoFormat {
            ten_bit: true,
            ..hevc444
        };
        assert_eq!(t.encoder_for(ten444), Ok("libx265"));
        let h264_ten444 = VideoFormat {
            ten_bit: true,
            ..h264_444
        };
        assert!(t.encoder_for(h264_ten444).is_err());
        // A format the table lacks falls back to 4:2:0 at the same depth (the client decodes it).
        let av1_ten444 = VideoFormat {
            ten_bit: true,
            yuv444: true,
            ..VideoFormat::of(VideoCodec::Av1)
        };
        assert!(t.encoder_for(av1_ten444).is_err());
        assert_eq!(
            t.format_for(av1_ten444),
            VideoFormat {
                yuv444: false,
                ..av1_ten444
            }
        );
        let asked = EncoderNames {
            h264: Some("libx264".into()),
            ..EncoderNames::default()
        };
        let x = EncoderTable::plan(&asked, &caps).unwrap();
        assert!(x.yuv444[0]);
        assert!(x.codec_modes() & SCM_H264_HIGH8_444 != 0);
        assert!(
            x.describe()
                .starts_with("h264=libx264 (4:4:4) hevc=libx265 (8- and 10-bit, 4:4:4)")
        );
    }

    #[test]
    fn names_asked_for_are_checked() {
        let asked = |h264: Option<&str>, hevc: Option<&str>, av1: Option<&str>| EncoderNames {
            h264: h264.map(Into::into),
            hevc: hevc.map(Into::into),
            av1: av1.map(Into::into),
        };
        let t = EncoderTable::plan(
            &asked(Some("openh264"), Some("hevc_nvenc"), Some("none")),
            &FULL,
        )
        .unwrap();
        assert_eq!(t.h264, OPENH264);
        assert_eq!(t.hevc.as_deref(), Some("hevc_nvenc"));
        let x =
            EncoderTable::plan(&asked(Some("libx264"), None, Some("libsvtav1")), &FULL).unwrap();
        assert_eq!(x.h264, "libx264");
        assert_eq!(x.av1.as_deref(), Some("libsvtav1"));
        assert!(!t.hevc_main10, "the fake NVENC takes no 10-bit");
        assert_eq!(t.codec_modes(), SCM_H264 | SCM_HEVC);
        let ten = VideoFormat {
            ten_bit: true,
            ..VideoFormat::of(VideoCodec::Hevc)
        };
        assert!(t.encoder_for(ten).is_err());
        for bad in [
            asked(Some("none"), None, None),
            asked(None, Some("libkvazaar"), None),
            asked(None, Some("hevc_vaapi"), None),
        ] {
            let e = EncoderTable::plan(&bad, &FULL).unwrap_err();
            assert!(!e.is_empty());
        }
    }
}
