//! The built-in media: the animated test pattern encoded with the host's encoders, and a test tone
//! encoded with Opus. Used when no compositor is there (or `[capture] source =
//! "test-pattern"`); its audio is every source's audio for now.

use punktfunk_capture::audio::{AudioLayout, OpusConfig, OpusEncoder, PacketDuration, ToneSource};
use punktfunk_capture::video::{VideoCodec as CaptureCodec, VideoFormat};
use std::sync::Arc;

use punktfunk_capture::stages::{
    EncodeStage, ModeSwitch, PatternCapture, VideoMode, raw_frame_len,
};
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig};

use crate::stream::sdp::{StreamConfig, VideoCodec};
use crate::stream::session::{AudioSource, MediaFactory, VideoMedia};

/// Test pattern + the encoder table's encoder, tone + Opus.
#[derive(Debug, Default, Clone, Copy)]
pub struct TestMedia {
    /// The pattern's noise band is on: encoded frames fill the bitrate (`[capture]
    /// pattern_noise`).
    pub noise: bool,
}

/// The picture format a GameStream client asked for: its codec, 10-bit when it asked for HDR
/// (`dynamicRangeMode`), 4:4:4 when it asked (`chromaSamplingType`) and the encoder table
/// offers it, else 4:2:0 (docs/capture.md "Encoders"). HDR colour (BT.2020 PQ) only from a
/// source that makes HDR pictures (`hdr_source`: the test pattern); a desktop's 10-bit stream
/// is SDR BT.709.
pub(super) fn stream_format(config: &StreamConfig, hdr_source: bool) -> VideoFormat {
    let codec = match config.codec {
        VideoCodec::Hevc => CaptureCodec::Hevc,
        VideoCodec::Av1 => CaptureCodec::Av1,
        _ => CaptureCodec::H264,
    };
    let ten_bit = config.hdr_stream();
    super::encoders::table().format_for(VideoFormat {
        codec,
        ten_bit,
        yuv444: config.chroma_444,
        hdr: ten_bit && hdr_source,
    })
}

/// The encoder a desktop source uses for `config` (the process's [`super::encoders::table`],
/// in the SDR format [`stream_format`] picks; the source delivers I420, the encoder converts),
/// and the buffer size the stages need.
pub(super) fn video_encoder(
    config: &StreamConfig,
) -> Result<(Box<dyn VideoEncoder>, usize), String> {
    open_encoder(
        stream_format(config, false),
        config.width,
        config.height,
        config.fps,
        config.bitrate_kbps,
    )
}

/// The H.264 encoder for a punktfunk/1 stream starting in `mode` (sizes and rates already
/// bounded by the caller), and the buffer size the stages need.
pub(super) fn encoder_for_mode(mode: VideoMode) -> Result<(Box<dyn VideoEncoder>, usize), String> {
    open_encoder(
        VideoFormat::of(CaptureCodec::H264),
        mode.width,
        mode.height,
        mode.fps,
        mode.bitrate_kbps,
    )
}

/// Opens the table's encoder for `format`: even width and height (the encoders want them;
/// Moonlight forces an even height already), fps in 1..=240, the bitrate within 100 kbit/s …
/// 500 Mbit/s. Also the buffer size the stages need (an encoded frame or a raw one, whichever
/// is larger).
fn open_encoder(
    format: VideoFormat,
    width: u32,
    height: u32,
    fps: u32,
    bitrate_kbps: u32,
) -> Result<(Box<dyn VideoEncoder>, usize), String> {
    let table = super::encoders::table();
    let name = table.encoder_for(format)?;
    let enc = table.open(
        format,
        VideoEncoderConfig {
            width: width & !1,
            height: height & !1,
            fps: fps.clamp(1, 240),
            bitrate_kbps: bitrate_kbps.clamp(100, 500_000),
        },
    )?;
    tracing::info!(format = %format, encoder = %name, "video encoder");
    let raw = raw_frame_len(width, height).max(format.layout().frame_len(width, height));
    let frame_capacity = enc.max_encoded_len().max(raw);
    Ok((enc, frame_capacity))
}

/// The Opus configuration for `config`'s channels, quality and packet duration.
pub(super) fn opus_config(config: &StreamConfig) -> Result<OpusConfig, String> {
    let layout = match config.audio_channels {
        2 => AudioLayout::Stereo,
        6 => AudioLayout::Surround51,
        8 => AudioLayout::Surround71,
        n => return Err(format!("{n} audio channels are not supported")),
    };
    let packet_duration = PacketDuration::from_millis(config.audio_packet_ms).ok_or_else(|| {
        format!(
            "{} ms audio packets are not supported",
            config.audio_packet_ms
        )
    })?;
    Ok(OpusConfig {
        layout,
        high_quality: config.audio_high_quality && layout != AudioLayout::Stereo,
        packet_duration,
    })
}

impl MediaFactory for TestMedia {
    fn switched_video(&self, switch: Arc<ModeSwitch>) -> Result<VideoMedia, String> {
        let (enc, frame_capacity) = encoder_for_mode(switch.get().0)?;
        let source = PatternCapture::with_switch(switch.clone())
            .map_err(|e| e.to_string())?
            .with_noise(self.noise);
        let encoder = EncodeStage::with_switch(enc, switch).map_err(|e| e.to_string())?;
        Ok(VideoMedia::new(
            Box::new(source),
            Box::new(encoder),
            frame_capacity,
        ))
    }

    fn hdr(&self) -> bool {
        true
    }

    /// The pattern in the stream's own format: 4:4:4 and 10-bit pictures rendered as such,
    /// BT.2020 PQ for HDR streams.
    fn video(&self, config: &StreamConfig) -> Result<VideoMedia, String> {
        let format = stream_format(config, true);
        let (enc, frame_capacity) = open_encoder(
            format,
            config.width,
            config.height,
            config.fps,
            config.bitrate_kbps,
        )?;
        let c = enc.config();
        let source = PatternCapture::new(c.width, c.height, config.fps)
            .map_err(|e| e.to_string())?
            .with_format(format.layout(), format.hdr)
            .with_noise(self.noise);
        let encoder = EncodeStage::new(enc)
            .and_then(|e| e.with_layout(format.layout()))
            .map_err(|e| e.to_string())?;
        Ok(VideoMedia::new(
            Box::new(source),
            Box::new(encoder),
            frame_capacity,
        ))
    }

    fn audio(&self, config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
        let cfg = opus_config(config)?;
        let tone = ToneSource::for_channels(cfg.channels()).map_err(|e| e.to_string())?;
        let encoder = OpusEncoder::new(cfg).map_err(|e| e.to_string())?;
        Ok(Box::new(ToneOpus {
            tone,
            encoder,
            pcm: vec![0; cfg.pcm_len()],
            out: vec![0; 1400],
            len: 0,
        }))
    }
}

/// A test tone, Opus-encoded packet by packet.
struct ToneOpus {
    tone: ToneSource,
    encoder: OpusEncoder,
    pcm: Vec<i16>,
    out: Vec<u8>,
    len: usize,
}

impl AudioSource for ToneOpus {
    fn next_packet(&mut self) -> Result<&[u8], String> {
        self.tone
            .fill_i16(&mut self.pcm)
            .map_err(|e| e.to_string())?;
        self.len = self
            .encoder
            .encode_i16(&self.pcm, &mut self.out)
            .map_err(|e| e.to_string())?;
        Ok(&self.out[..self.len])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_bit_streams_are_hdr_only_from_an_hdr_source() {
        let body = crate::stream::sdp::tests::ANNOUNCE
            .replace("bitStreamFormat:0", "bitStreamFormat:1")
            .replace("dynamicRangeMode:0", "dynamicRangeMode:1");
        let config = StreamConfig::parse(body.as_bytes()).unwrap();
        assert!(config.hdr_stream(), "{config:?}");
        let desktop = stream_format(&config, false);
        let pattern = stream_format(&config, true);
        assert!(desktop.ten_bit && !desktop.hdr);
        assert!(pattern.ten_bit && pattern.hdr);
        assert!(TestMedia::default().hdr());
        // An 8-bit stream is never HDR, whatever the source.
        let sdr = StreamConfig::parse(crate::stream::sdp::tests::ANNOUNCE.as_bytes()).unwrap();
        assert!(!stream_format(&sdr, true).hdr);
    }

    #[test]
    fn builds_video_and_audio_for_a_typical_announce() {
        let body = crate::stream::sdp::tests::ANNOUNCE;
        let config = StreamConfig::parse(body.as_bytes()).unwrap();
        let v = TestMedia::default().video(&config).unwrap();
        assert!(v.frame_capacity >= 1280 * 720 * 3 / 2);
        let mut a = TestMedia::default().audio(&config).unwrap();
        let first = a.next_packet().unwrap().len();
        assert_eq!(first, 60, "96 kbit/s CBR at 5 ms");
        for _ in 0..20 {
            assert_eq!(a.next_packet().unwrap().len(), first);
        }
    }
}
