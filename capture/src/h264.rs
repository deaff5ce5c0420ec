//! Software H.264 encoder: Cisco's openh264, built from source by the `openh264` crate.
//!
//! Settings, and why (docs/gamestream-protocol-notes.md "Bitstream", Sunshine `video.cpp`):
//!
//! | openh264 setting                 | value                  | why                                             |
//! |----------------------------------|------------------------|-------------------------------------------------|
//! | usage type                       | camera video real time | games look like camera content; real-time RC    |
//! | rate control                     | bitrate mode           | constant target from the client's `bitrate`    |
//! | frame skipping                   | off                    | every captured frame reaches the client        |
//! | intra period                     | 0 (IDR only on demand) | infinite GOP, like Sunshine                     |
//! | scene change detection           | off                    | no unrequested key frames                       |
//! | slices, threads                  | 1, 1                   | one slice per frame, no thread hand-offs        |
//! | B-frames                         | none (not supported)   | no reordering delay; clients require it         |
//! | SPS/PPS                          | constant ids, in band  | every IDR starts SPS, PPS, IDR slice            |
//! | VUI                              | BT.709, limited range  | matches the pattern and what clients assume     |
//!
//! The encoder is rebuilt on [`VideoEncoder::reconfigure`] (bitrate, rate or size change); a
//! rebuilt encoder starts with an IDR. Per frame the only copy is the access unit into the
//! caller's buffer; nothing is allocated.
//!
//! Act: calls into C++ through the `openh264` crate (which holds the `unsafe`); this module
//! has none.
#![forbid(unsafe_code)]

use openh264::OpenH264API;
use openh264::Timestamp;
use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod,
    RateControlMode, SpsPpsStrategy, UsageType, VuiConfig,
};
use openh264::formats::YUVSource;

use crate::frame::Frame;
use crate::video::{
    EncodeError, EncodedFrame, FrameKind, VideoCodec, VideoEncoder, VideoEncoderConfig,
};

/// An openh264 encoder behind [`VideoEncoder`].
pub struct OpenH264Encoder {
    config: VideoEncoderConfig,
    inner: Encoder,
    /// Frames encoded since `inner` was built (the first one is an IDR by itself).
    encoded: u64,
    idr_pending: bool,
}

impl std::fmt::Debug for OpenH264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenH264Encoder")
            .field("config", &self.config)
            .field("encoded", &self.encoded)
            .field("idr_pending", &self.idr_pending)
            .finish_non_exhaustive()
    }
}

impl OpenH264Encoder {
    /// Builds an encoder for `config`. The first frame will be an IDR.
    pub fn new(config: VideoEncoderConfig) -> Result<Self, EncodeError> {
        Ok(Self {
            config,
            inner: build(config)?,
            encoded: 0,
            idr_pending: false,
        })
    }
}

fn build(config: VideoEncoderConfig) -> Result<Encoder, EncodeError> {
    config.validate()?;
    let settings = EncoderConfig::new()
        .usage_type(UsageType::CameraVideoRealTime)
        .rate_control_mode(RateControlMode::Bitrate)
        .bitrate(BitRate::from_bps(config.bitrate_kbps * 1000))
        .max_frame_rate(FrameRate::from_hz(config.fps as f32))
        .skip_frames(false)
        .intra_frame_period(IntraFramePeriod::from_num_frames(0))
        .scene_change_detect(false)
        .background_detection(false)
        .sps_pps_strategy(SpsPpsStrategy::ConstantId)
        .num_threads(1)
        .complexity(Complexity::Low)
        .vui(VuiConfig::bt709());
    Encoder::with_api_config(OpenH264API::from_source(), settings)
        .map_err(|e| EncodeError::Backend(e.to_string()))
}

/// Borrows a [`Frame`] as openh264's input picture.
struct I420<'a>(&'a Frame);

impl YUVSource for I420<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width() as usize, self.0.height() as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        (self.0.y_stride(), self.0.uv_stride(), self.0.uv_stride())
    }

    fn y(&self) -> &[u8] {
        self.0.y()
    }

    fn u(&self) -> &[u8] {
        self.0.u()
    }

    fn v(&self) -> &[u8] {
        self.0.v()
    }
}

impl VideoEncoder for OpenH264Encoder {
    fn codec(&self) -> VideoCodec {
        VideoCodec::H264
    }

    fn config(&self) -> VideoEncoderConfig {
        self.config
    }

    fn request_idr(&mut self) {
        self.idr_pending = true;
    }

    fn reconfigure(&mut self, config: VideoEncoderConfig) -> Result<(), EncodeError> {
        if config == self.config {
            return Ok(());
        }
        self.inner = build(config)?;
        self.config = config;
        self.encoded = 0;
        self.idr_pending = false;
        Ok(())
    }

    fn encode(&mut self, frame: &Frame, out: &mut [u8]) -> Result<EncodedFrame, EncodeError> {
        frame.expect_size(self.config.width, self.config.height)?;
        if frame.layout() != crate::frame::Layout::I420 {
            return Err(crate::FrameError::LayoutMismatch {
                got: frame.layout(),
                want: crate::frame::Layout::I420,
            }
            .into());
        }
        if self.idr_pending && self.encoded > 0 {
            // ForceIntraFrame(true) makes the next frame an IDR, and openh264 writes SPS and PPS
            // in front of every IDR (the tests below check both).
            self.inner.force_intra_frame();
        }
        let ts = Timestamp::from_millis(frame.capture_us / 1000);
        let bs = match self.inner.encode_at(&I420(frame), ts) {
            Ok(bs) => bs,
            Err(e) => {
                // The reference chain is in an unknown state: restart it.
                self.idr_pending = true;
                return Err(EncodeError::Backend(e.to_string()));
            }
        };
        let kind = match bs.frame_type() {
            FrameType::IDR => FrameKind::Idr,
            FrameType::I => FrameKind::Intra,
            FrameType::P | FrameType::IPMixed => FrameKind::Predicted,
            FrameType::Skip => FrameKind::Skipped,
            FrameType::Invalid => {
                self.idr_pending = true;
                return Err(EncodeError::Backend(
                    "openh264 returned an invalid frame type".into(),
                ));
            }
        };
        // Two passes over the NAL list (sizes, then copy) so that a too-small buffer is
        // detected before anything is written.
        let mut needed = 0;
        for layer in (0..bs.num_layers()).filter_map(|i| bs.layer(i)) {
            for nal in (0..layer.nal_count()).filter_map(|n| layer.nal_unit(n)) {
                needed += nal.len();
            }
        }
        if needed > out.len() {
            self.idr_pending = true;
            return Err(EncodeError::OutputTooSmall {
                needed,
                capacity: out.len(),
            });
        }
        let mut len = 0;
        for layer in (0..bs.num_layers()).filter_map(|i| bs.layer(i)) {
            for nal in (0..layer.nal_count()).filter_map(|n| layer.nal_unit(n)) {
                // openh264 emits each NAL with its start code: the copy is already Annex-B.
                out[len..len + nal.len()].copy_from_slice(nal);
                len += nal.len();
            }
        }
        self.encoded += 1;
        if kind == FrameKind::Idr {
            self.idr_pending = false;
        }
        Ok(EncodedFrame {
            len,
            kind,
            index: frame.index,
            capture_us: frame.capture_us,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::annexb::{SpsSummary, nal_type, nal_units};
    use crate::pattern::TestPattern;

    fn cfg(width: u32, height: u32) -> VideoEncoderConfig {
        VideoEncoderConfig {
            width,
            height,
            fps: 60,
            bitrate_kbps: 2_000,
        }
    }

    fn kinds(stream: &[u8]) -> Vec<u8> {
        nal_units(stream).map(|n| n.kind()).collect()
    }

    #[test]
    fn first_frame_and_requested_frames_are_idr_with_parameter_sets() {
        let mut enc = OpenH264Encoder::new(cfg(320, 240)).unwrap();
        let mut pat = TestPattern::new(320, 240).unwrap();
        let mut frame = pat.new_frame();
        let mut out = vec![0u8; enc.max_encoded_len()];
        for i in 0..12u64 {
            if i == 7 {
                enc.request_idr();
                enc.request_idr(); // idempotent
            }
            pat.render(&mut frame, i, i * 16_667).unwrap();
            let e = enc.encode(&frame, &mut out).unwrap();
            assert_eq!((e.index, e.capture_us), (i, i * 16_667));
            let k = kinds(&out[..e.len]);
            if i == 0 || i == 7 {
                assert_eq!(e.kind, FrameKind::Idr, "frame {i}");
                assert_eq!(
                    k[..3],
                    [nal_type::SPS, nal_type::PPS, nal_type::IDR],
                    "frame {i}"
                );
            } else {
                assert_eq!(e.kind, FrameKind::Predicted, "frame {i}");
                assert!(k.iter().all(|&t| t == nal_type::SLICE), "frame {i}: {k:?}");
            }
        }
    }

    #[test]
    fn sps_matches_config() {
        let mut enc = OpenH264Encoder::new(cfg(640, 360)).unwrap();
        let mut pat = TestPattern::new(640, 360).unwrap();
        let mut frame = pat.new_frame();
        pat.render(&mut frame, 0, 0).unwrap();
        let mut out = vec![0u8; enc.max_encoded_len()];
        let e = enc.encode(&frame, &mut out).unwrap();
        let sps = nal_units(&out[..e.len]).next().unwrap();
        let sps = SpsSummary::parse(sps).unwrap();
        assert_eq!((sps.width, sps.height), (640, 360));
        assert_eq!(sps.max_num_ref_frames, 1);
    }

    #[test]
    fn small_buffer_fails_and_forces_idr() {
        let mut enc = OpenH264Encoder::new(cfg(320, 240)).unwrap();
        let mut pat = TestPattern::new(320, 240).unwrap();
        let mut frame = pat.new_frame();
        let mut out = vec![0u8; enc.max_encoded_len()];
        pat.render(&mut frame, 0, 0).unwrap();
        assert!(enc.encode(&frame, &mut out).unwrap().is_keyframe());
        pat.render(&mut frame, 1, 1).unwrap();
        assert!(matches!(
            enc.encode(&frame, &mut out[..8]),
            Err(EncodeError::OutputTooSmall { capacity: 8, .. })
        ));
        pat.render(&mut frame, 2, 2).unwrap();
        assert!(enc.encode(&frame, &mut out).unwrap().is_keyframe());
    }

    #[test]
    fn reconfigure_rebuilds_and_checks_size() {
        let mut enc = OpenH264Encoder::new(cfg(320, 240)).unwrap();
        let mut out = vec![0u8; cfg(640, 480).max_encoded_len()];
        let mut small = TestPattern::new(320, 240).unwrap();
        let mut f = small.new_frame();
        small.render(&mut f, 0, 0).unwrap();
        enc.encode(&f, &mut out).unwrap();
        small.render(&mut f, 1, 0).unwrap();
        assert_eq!(enc.encode(&f, &mut out).unwrap().kind, FrameKind::Predicted);
        enc.reconfigure(cfg(320, 240)).unwrap(); // same: no rebuild, no IDR
        small.render(&mut f, 2, 0).unwrap();
        assert_eq!(enc.encode(&f, &mut out).unwrap().kind, FrameKind::Predicted);

        enc.reconfigure(cfg(640, 480)).unwrap();
        assert!(matches!(
            enc.encode(&f, &mut out),
            Err(EncodeError::Frame(_))
        ));
        let mut big = TestPattern::new(640, 480).unwrap();
        let mut g = big.new_frame();
        big.render(&mut g, 3, 0).unwrap();
        let e = enc.encode(&g, &mut out).unwrap();
        assert!(e.is_keyframe());
        let sps = SpsSummary::parse(nal_units(&out[..e.len]).next().unwrap()).unwrap();
        assert_eq!((sps.width, sps.height), (640, 480));

        let bad = VideoEncoderConfig {
            fps: 0,
            ..cfg(640, 480)
        };
        assert!(enc.reconfigure(bad).is_err());
        assert_eq!(enc.config(), cfg(640, 480));
    }
}
