//! The video encoder interface the host's encode stage drives, independent of the backend
//! (openh264; libavcodec's x264, x265, SVT-AV1, and NVENC/VA-API by name, feature `libav`).
//!
//! ```text
//!  Frame (I420, index, capture_us) ──encode(frame, out)──► out[..len]: one Annex-B access unit
//!                                                          EncodedFrame { len, kind, index, capture_us }
//!  request_idr() ──► the next encode() returns kind == Idr, SPS + PPS in band before the slice
//!  reconfigure(cfg) ─► new size / rate / bitrate; the next frame is an IDR
//! ```
//!
//! Pure: types and the trait only.
#![forbid(unsafe_code)]

use thiserror::Error;

use crate::frame::{Frame, FrameError};

/// The codec an encoder produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum VideoCodec {
    /// H.264 / AVC, Annex-B byte stream.
    H264,
    /// H.265 / HEVC, Annex-B byte stream (VPS, SPS, PPS before every IRAP picture).
    Hevc,
    /// AV1, low-overhead OBU stream (a sequence header in every key frame).
    Av1,
}

impl VideoCodec {
    /// Lower-case name, as in logs and the management API.
    pub fn name(self) -> &'static str {
        match self {
            Self::H264 => "h264",
            Self::Hevc => "hevc",
            Self::Av1 => "av1",
        }
    }
}

/// What a stream's pictures are: codec, bit depth and chroma sampling. 8-bit 4:2:0 is what
/// every client decodes; 10-bit is HEVC Main10 / AV1 Main10; 4:4:4 is H.264 High 4:4:4,
/// HEVC RExt or AV1 High.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoFormat {
    /// The codec.
    pub codec: VideoCodec,
    /// 10 bits per sample instead of 8.
    pub ten_bit: bool,
    /// 4:4:4 chroma instead of 4:2:0.
    pub yuv444: bool,
    /// HDR: BT.2020 primaries and the PQ transfer in the stream's colour description (10-bit
    /// only); else BT.709 SDR, whatever the depth.
    pub hdr: bool,
}

impl VideoFormat {
    /// 8-bit 4:2:0 `codec`.
    pub const fn of(codec: VideoCodec) -> Self {
        Self {
            codec,
            ten_bit: false,
            yuv444: false,
            hdr: false,
        }
    }

    /// The sample layout of this format's pictures.
    pub const fn layout(self) -> crate::frame::Layout {
        crate::frame::Layout::of(self.ten_bit, self.yuv444)
    }
}

impl std::fmt::Display for VideoFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.codec.name())?;
        if self.ten_bit {
            f.write_str(" 10-bit")?;
        }
        if self.yuv444 {
            f.write_str(" 4:4:4")?;
        }
        if self.hdr && self.ten_bit {
            f.write_str(" HDR")?;
        }
        Ok(())
    }
}

/// What the client asked for: picture size, frame rate and bitrate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct VideoEncoderConfig {
    /// Picture width in pixels (even).
    pub width: u32,
    /// Picture height in pixels (even).
    pub height: u32,
    /// Frames per second the source delivers (1..=240).
    pub fps: u32,
    /// Target bitrate in kbit/s (100..=500 000), held constant by the rate control.
    pub bitrate_kbps: u32,
}

impl VideoEncoderConfig {
    /// Largest width accepted (openh264 and H.264 level 5.1 stop at 3840×2160).
    pub const MAX_WIDTH: u32 = 3840;
    /// Largest height accepted.
    pub const MAX_HEIGHT: u32 = 2160;

    /// Checks the ranges documented on the fields, and the picture size against
    /// 64..=[`Self::MAX_WIDTH`] × 64..=[`Self::MAX_HEIGHT`].
    pub fn validate(&self) -> Result<(), EncodeError> {
        crate::frame::check_size(
            self.width,
            self.height,
            64,
            Self::MAX_WIDTH,
            Self::MAX_HEIGHT,
        )?;
        if !(1..=240).contains(&self.fps) {
            return Err(EncodeError::InvalidConfig {
                reason: "fps must be in 1..=240",
            });
        }
        if !(100..=500_000).contains(&self.bitrate_kbps) {
            return Err(EncodeError::InvalidConfig {
                reason: "bitrate_kbps must be in 100..=500000",
            });
        }
        Ok(())
    }

    /// An upper bound on the size of one encoded access unit, for sizing output buffers: a
    /// whole raw 4:2:0 picture (what I_PCM macroblocks would take) plus headroom for headers.
    pub fn max_encoded_len(&self) -> usize {
        let raw = self.width as usize * self.height as usize * 3 / 2;
        let macroblocks = self.width.div_ceil(16) as usize * self.height.div_ceil(16) as usize;
        raw + macroblocks * 8 + 4096
    }
}

/// How an access unit was coded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FrameKind {
    /// Instantaneous decoder refresh, with SPS and PPS in band: a client can start here.
    Idr,
    /// Intra-coded, but not an IDR (clients do not accept it as a key frame).
    Intra,
    /// Predicted from earlier frames (P slices only; encoders here never emit B slices).
    Predicted,
    /// The encoder dropped the frame (rate control); `len` is 0 and nothing is to be sent.
    Skipped,
}

/// Result of one [`VideoEncoder::encode`]: the bytes are in the caller's buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EncodedFrame {
    /// Bytes written to the front of the output buffer: one Annex-B access unit.
    pub len: usize,
    /// How it was coded.
    pub kind: FrameKind,
    /// [`Frame::index`] of the input.
    pub index: u64,
    /// [`Frame::capture_us`] of the input.
    pub capture_us: u64,
}

impl EncodedFrame {
    /// True for an IDR (what the GameStream frame header calls a key frame).
    pub fn is_keyframe(&self) -> bool {
        self.kind == FrameKind::Idr
    }
}

/// Errors of the video encoding layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum EncodeError {
    /// The configuration is out of range (local misuse).
    #[error("invalid encoder configuration: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The frame's size is invalid or differs from the configured one (local misuse).
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// The access unit did not fit the output buffer. It is lost; the encoder makes the next
    /// frame an IDR so the client can recover (resource exhaustion).
    #[error("encoded frame of {needed} bytes does not fit a {capacity}-byte buffer")]
    OutputTooSmall {
        /// Bytes the access unit needs.
        needed: usize,
        /// Bytes the buffer had.
        capacity: usize,
    },
    /// The encoder library failed; the next frame will be an IDR.
    #[error("encoder backend failed: {0}")]
    Backend(String),
}

/// A video encoder the host's encode stage drives: one [`Frame`] in, one Annex-B access unit
/// out, written into a caller-owned buffer so that the steady state allocates nothing.
pub trait VideoEncoder: Send {
    /// The codec produced.
    fn codec(&self) -> VideoCodec;

    /// The configuration in force.
    fn config(&self) -> VideoEncoderConfig;

    /// Makes the next encoded frame an IDR with in-band parameter sets (client IDR request,
    /// a dropped frame downstream). Idempotent until that frame is produced.
    fn request_idr(&mut self);

    /// Applies a new size, frame rate or bitrate. Backends may rebuild themselves; the next
    /// frame is then an IDR. An equal configuration is a no-op.
    fn reconfigure(&mut self, config: VideoEncoderConfig) -> Result<(), EncodeError>;

    /// Encodes `frame` (of the configured size) into the front of `out`.
    fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<EncodedFrame, EncodeError>;

    /// The next access unit that became ready after [`VideoEncoder::encode`] returned, for
    /// encoders that hand out a frame's packet later ([`FrameKind::Skipped`] from `encode`
    /// then means "not yet"). The encode stage calls it after every frame until `None`; its
    /// [`EncodedFrame::index`]/`capture_us` name the frame it encodes. Default: none.
    fn drain(&mut self, _out: &mut [u8]) -> Result<Option<EncodedFrame>, EncodeError> {
        Ok(None)
    }

    /// Whether frames were sent whose access units have not come out yet (then
    /// [`VideoEncoder::drain`] is worth calling). Default: never.
    fn has_pending(&self) -> bool {
        false
    }

    /// A buffer of this many bytes always holds one access unit
    /// ([`VideoEncoderConfig::max_encoded_len`]).
    fn max_encoded_len(&self) -> usize {
        self.config().max_encoded_len()
    }
}

/// A boxed encoder is an encoder: the host picks the backend per stream at run time.
impl VideoEncoder for Box<dyn VideoEncoder> {
    fn codec(&self) -> VideoCodec {
        (**self).codec()
    }

    fn config(&self) -> VideoEncoderConfig {
        (**self).config()
    }

    fn request_idr(&mut self) {
        (**self).request_idr();
    }

    fn reconfigure(&mut self, config: VideoEncoderConfig) -> Result<(), EncodeError> {
        (**self).reconfigure(config)
    }

    fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<EncodedFrame, EncodeError> {
        (**self).encode(frame, out)
    }

    fn drain(&mut self, out: &mut [u8]) -> Result<Option<EncodedFrame>, EncodeError> {
        (**self).drain(out)
    }

    fn has_pending(&self) -> bool {
        (**self).has_pending()
    }

    fn max_encoded_len(&self) -> usize {
        (**self).max_encoded_len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(width: u32, height: u32, fps: u32, bitrate_kbps: u32) -> VideoEncoderConfig {
        VideoEncoderConfig {
            width,
            height,
            fps,
            bitrate_kbps,
        }
    }

    #[test]
    fn validation() {
        assert!(cfg(1280, 720, 60, 10_000).validate().is_ok());
        assert!(cfg(3840, 2160, 120, 150_000).validate().is_ok());
        assert!(matches!(
            cfg(1281, 720, 60, 10_000).validate(),
            Err(EncodeError::Frame(_))
        ));
        assert!(matches!(
            cfg(4096, 2160, 60, 10_000).validate(),
            Err(EncodeError::Frame(_))
        ));
        assert!(matches!(
            cfg(1280, 720, 0, 10_000).validate(),
            Err(EncodeError::InvalidConfig { .. })
        ));
        assert!(matches!(
            cfg(1280, 720, 60, 50).validate(),
            Err(EncodeError::InvalidConfig { .. })
        ));
    }

    #[test]
    fn max_len_covers_raw_picture() {
        let c = cfg(1920, 1080, 60, 20_000);
        // 1920x1080 → 120×68 macroblocks.
        assert_eq!(
            c.max_encoded_len(),
            1920 * 1080 * 3 / 2 + 120 * 68 * 8 + 4096
        );
    }
}
