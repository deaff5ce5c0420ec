//! SDP: the client's ANNOUNCE body parsed into a typed [`StreamConfig`], and the DESCRIBE
//! payload the host answers with (docs/gamestream-protocol-notes.md "DESCRIBE", "ANNOUNCE").
//!
//! The ANNOUNCE body is a list of `a=<name>:<value> ` lines (note the trailing space) from
//! moonlight-common-c's `SdpGenerator.c`. Only the attributes the host acts on are typed; the
//! rest are ignored. Missing mandatory attributes (resolution, frame rate, packet size) are an
//! error; everything else has the default Sunshine uses.

use std::collections::HashMap;

/// `x-ss-general.encryptionSupported` / `encryptionEnabled` bits (MCC `Limelight-internal.h`).
pub mod enc {
    /// Control stream V2 envelope.
    pub const CONTROL_V2: u32 = 0x01;
    /// Video AES-GCM.
    pub const VIDEO: u32 = 0x02;
    /// Audio AES-CBC.
    pub const AUDIO: u32 = 0x04;
}

/// `x-nv-general.featureFlags` bit that asks for audio encryption.
const NVFF_AUDIO_ENCRYPTION: u32 = 0x20;
/// `x-ml-general.featureFlags` bit: session matched by ping payload and connect data.
pub const ML_FF_SESSION_ID_V1: u32 = 0x02;

/// Video codec asked for in `x-nv-vqos[0].bitStreamFormat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum VideoCodec {
    /// H.264 (0).
    H264,
    /// HEVC (1).
    Hevc,
    /// AV1 (2).
    Av1,
}

/// Which streams are encrypted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Encryption {
    /// Control messages use the V2 envelope nonces.
    pub control_v2: bool,
    /// Video packets are AES-GCM encrypted.
    pub video: bool,
    /// Audio payloads are AES-CBC encrypted.
    pub audio: bool,
}

impl Encryption {
    /// Whether every stream named in `bits` (`enc::*` flags) is encrypted.
    pub fn covers(&self, bits: u32) -> bool {
        (bits & enc::CONTROL_V2 == 0 || self.control_v2)
            && (bits & enc::VIDEO == 0 || self.video)
            && (bits & enc::AUDIO == 0 || self.audio)
    }
}

/// Everything the host needs to know to stream, from the ANNOUNCE SDP.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamConfig {
    /// Encode width.
    pub width: u32,
    /// Encode height.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
    /// Video bitrate the user chose, kbps (`configuredBitrateKbps`, else `initialBitrateKbps`).
    pub bitrate_kbps: u32,
    /// `x-nv-video[0].packetSize` (`P`; already reduced by 32 when video is encrypted).
    pub packet_size: usize,
    /// `fec.minRequiredFecPackets`.
    pub min_fec_packets: u8,
    /// Codec to encode.
    pub codec: VideoCodec,
    /// Encoder slices per frame (≥ 1).
    pub slices_per_frame: u32,
    /// Reference frames the decoder allows (0 = no limit).
    pub max_ref_frames: u32,
    /// 10-bit / HDR requested.
    pub hdr: bool,
    /// `(colorSpace << 1) | colorRange`.
    pub encoder_csc_mode: u32,
    /// 4:4:4 requested.
    pub chroma_444: bool,
    /// Encryption actually enabled.
    pub encryption: Encryption,
    /// Audio channels (2, 6, 8).
    pub audio_channels: u32,
    /// Audio channel mask.
    pub audio_channel_mask: u32,
    /// High-quality surround requested.
    pub audio_high_quality: bool,
    /// Opus packet duration in ms (5 or 10).
    pub audio_packet_ms: u32,
    /// `x-ml-general.featureFlags`.
    pub ml_feature_flags: u32,
}

/// Why an SDP body was refused (hostile or broken client input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SdpError {
    /// A mandatory attribute is missing.
    #[error("SDP lacks {0}")]
    Missing(&'static str),
    /// An attribute's value is not what the protocol allows.
    #[error("SDP attribute {name} has an invalid value: {reason}")]
    Invalid {
        /// Attribute name.
        name: &'static str,
        /// What is wrong.
        reason: &'static str,
    },
    /// The body is not text.
    #[error("SDP body is not UTF-8")]
    NotText,
}

/// Largest SDP body accepted.
pub const MAX_SDP_LEN: usize = 64 * 1024;

impl StreamConfig {
    /// Whether this stream is HDR: 10-bit BT.2020 PQ. The client asked for HDR and a codec
    /// with a 10-bit profile (HEVC Main10, AV1 Main 10); H.264 streams stay 8-bit SDR.
    pub fn hdr_stream(&self) -> bool {
        self.hdr && self.codec != VideoCodec::H264
    }

    /// Parses an ANNOUNCE body.
    pub fn parse(body: &[u8]) -> Result<Self, SdpError> {
        if body.len() > MAX_SDP_LEN {
            return Err(SdpError::Invalid {
                name: "body",
                reason: "longer than 64 KiB",
            });
        }
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
        let mut attrs: HashMap<&str, &str> = HashMap::new();
        for line in text.lines() {
            let Some(rest) = line.trim().strip_prefix("a=") else {
                continue;
            };
            if let Some((k, v)) = rest.split_once(':') {
                // First occurrence wins, as in Sunshine's try_emplace.
                attrs.entry(k.trim()).or_insert(v.trim());
            }
        }
        let num = |name: &'static str| -> Result<Option<u32>, SdpError> {
            match attrs.get(name) {
                None => Ok(None),
                Some(v) => parse_u32(v).map(Some).ok_or(SdpError::Invalid {
                    name,
                    reason: "not a number",
                }),
            }
        };
        let req = |name: &'static str| num(name)?.ok_or(SdpError::Missing(name));
        let width = req("x-nv-video[0].clientViewportWd")?;
        let height = req("x-nv-video[0].clientViewportHt")?;
        let fps = req("x-nv-video[0].maxFPS")?;
        let packet_size = req("x-nv-video[0].packetSize")? as usize;
        if !(1..=16384).contains(&width) || !(1..=16384).contains(&height) {
            return Err(SdpError::Invalid {
                name: "clientViewport",
                reason: "outside 1..=16384",
            });
        }
        if !(1..=1000).contains(&fps) {
            return Err(SdpError::Invalid {
                name: "x-nv-video[0].maxFPS",
                reason: "outside 1..=1000",
            });
        }
        if !(64..=16384).contains(&packet_size) {
            return Err(SdpError::Invalid {
                name: "x-nv-video[0].packetSize",
                reason: "outside 64..=16384",
            });
        }
        let bitrate_kbps = match num("x-ml-video.configuredBitrateKbps")? {
            Some(b) if b > 0 => b,
            _ => num("x-nv-video[0].initialBitrateKbps")?
                .unwrap_or(10_000)
                .max(1),
        };
        let codec = match num("x-nv-vqos[0].bitStreamFormat")?.unwrap_or(0) {
            0 => VideoCodec::H264,
            1 => VideoCodec::Hevc,
            2 => VideoCodec::Av1,
            _ => {
                return Err(SdpError::Invalid {
                    name: "x-nv-vqos[0].bitStreamFormat",
                    reason: "unknown codec",
                });
            }
        };
        let min_fec = num("x-nv-vqos[0].fec.minRequiredFecPackets")?
            .unwrap_or(2)
            .min(8) as u8;
        let enc_enabled = num("x-ss-general.encryptionEnabled")?.unwrap_or(0);
        let nv_flags = num("x-nv-general.featureFlags")?.unwrap_or(0);
        let audio_packet_ms = num("x-nv-aqos.packetDuration")?.unwrap_or(5);
        if audio_packet_ms != 5 && audio_packet_ms != 10 {
            return Err(SdpError::Invalid {
                name: "x-nv-aqos.packetDuration",
                reason: "not 5 or 10",
            });
        }
        let audio_channels = num("x-nv-audio.surround.numChannels")?.unwrap_or(2);
        if !matches!(audio_channels, 2 | 6 | 8) {
            return Err(SdpError::Invalid {
                name: "x-nv-audio.surround.numChannels",
                reason: "not 2, 6 or 8",
            });
        }
        Ok(Self {
            width,
            height,
            fps,
            bitrate_kbps,
            packet_size,
            min_fec_packets: min_fec,
            codec,
            slices_per_frame: num("x-nv-video[0].videoEncoderSlicesPerFrame")?
                .unwrap_or(1)
                .max(1),
            max_ref_frames: num("x-nv-video[0].maxNumReferenceFrames")?.unwrap_or(0),
            hdr: num("x-nv-video[0].dynamicRangeMode")?.unwrap_or(0) != 0,
            encoder_csc_mode: num("x-nv-video[0].encoderCscMode")?.unwrap_or(0),
            chroma_444: num("x-ss-video[0].chromaSamplingType")?.unwrap_or(0) == 1,
            encryption: Encryption {
                control_v2: enc_enabled & enc::CONTROL_V2 != 0,
                video: enc_enabled & enc::VIDEO != 0,
                audio: enc_enabled & enc::AUDIO != 0 || nv_flags & NVFF_AUDIO_ENCRYPTION != 0,
            },
            audio_channels,
            audio_channel_mask: num("x-nv-audio.surround.channelMask")?.unwrap_or(3),
            audio_high_quality: num("x-nv-audio.surround.AudioQuality")?.unwrap_or(0) != 0,
            audio_packet_ms,
            ml_feature_flags: num("x-ml-general.featureFlags")?.unwrap_or(0),
        })
    }
}

/// Decimal, or hex with `0x` (as `strtoul(…, 0)` would accept); negative values wrap like C.
fn parse_u32(v: &str) -> Option<u32> {
    let v = v.trim();
    if let Some(h) = v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        return u32::from_str_radix(h, 16).ok();
    }
    v.parse::<u32>()
        .ok()
        .or_else(|| v.parse::<i32>().ok().map(|n| n as u32))
}

/// What the host offers in its DESCRIBE reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostOffer {
    /// `x-ss-general.featureFlags` (pen/touch 0x01, controller touch/motion 0x02).
    pub feature_flags: u32,
    /// `encryptionSupported` bits.
    pub encryption_supported: u32,
    /// `encryptionRequested` bits.
    pub encryption_requested: u32,
    /// HEVC is encodable: the `sprop-parameter-sets=AAAAAU` marker clients look for.
    pub hevc: bool,
    /// AV1 is encodable: the `a=rtpmap:98 AV1/90000` marker.
    pub av1: bool,
}

/// The DESCRIBE payload (notes "DESCRIBE"): feature and encryption lines, then Opus layouts for
/// stereo, 5.1 and 7.1 in normal and high quality, with mappings chosen so the client ends up with
/// the identity mapping after its normal-quality rewrite.
pub fn describe_payload(offer: &HostOffer) -> String {
    let mut s = String::new();
    s.push_str(&format!(
        "a=x-ss-general.featureFlags:{}\n",
        offer.feature_flags
    ));
    s.push_str(&format!(
        "a=x-ss-general.encryptionSupported:{}\n",
        offer.encryption_supported
    ));
    s.push_str(&format!(
        "a=x-ss-general.encryptionRequested:{}\n",
        offer.encryption_requested
    ));
    // Codec markers: clients search for these substrings; no parameter sets travel here
    // (docs/gamestream-protocol-notes.md "DESCRIBE").
    if offer.hevc {
        s.push_str("a=fmtp:96 sprop-parameter-sets=AAAAAU\n");
    }
    if offer.av1 {
        s.push_str("a=rtpmap:98 AV1/90000\n");
    }
    for params in [
        "21101",
        "21101",
        "642012453",
        "660012345",
        "85301245673",
        "88001234567",
    ] {
        s.push_str(&format!("a=fmtp:97 surround-params={params}\n"));
    }
    s
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// An ANNOUNCE body as moonlight-common-c 7.1.431 generates it in Sunshine mode (attribute
    /// set from `SdpGenerator.c`, values as sent for 1280x720@60, 20 Mbps, encrypted audio).
    pub(crate) const ANNOUNCE: &str = "v=0\r\n\
o=android 0 14 IN IPv4 127.0.0.1\r\n\
s=NVIDIA Streaming Client\r\n\
a=x-ml-general.featureFlags:3 \r\n\
a=x-ss-general.encryptionEnabled:5 \r\n\
a=x-ss-video[0].chromaSamplingType:0 \r\n\
a=x-nv-video[0].clientViewportWd:1280 \r\n\
a=x-nv-video[0].clientViewportHt:720 \r\n\
a=x-nv-video[0].maxFPS:60 \r\n\
a=x-nv-video[0].clientRefreshRateX100:6000 \r\n\
a=x-nv-video[0].packetSize:1392 \r\n\
a=x-nv-video[0].rateControlMode:4 \r\n\
a=x-nv-video[0].timeoutLengthMs:7000 \r\n\
a=x-nv-video[0].framesWithInvalidRefThreshold:0 \r\n\
a=x-nv-video[0].initialBitrateKbps:16000 \r\n\
a=x-nv-video[0].initialPeakBitrateKbps:16000 \r\n\
a=x-nv-vqos[0].bw.minimumBitrateKbps:16000 \r\n\
a=x-nv-vqos[0].bw.maximumBitrateKbps:16000 \r\n\
a=x-ml-video.configuredBitrateKbps:20000 \r\n\
a=x-nv-vqos[0].fec.enable:1 \r\n\
a=x-nv-vqos[0].videoQualityScoreUpdateTime:5000 \r\n\
a=x-nv-vqos[0].qosTrafficType:5 \r\n\
a=x-nv-aqos.qosTrafficType:4 \r\n\
a=x-nv-general.featureFlags:167 \r\n\
a=x-nv-general.useReliableUdp:13 \r\n\
a=x-nv-vqos[0].fec.minRequiredFecPackets:2 \r\n\
a=x-nv-vqos[0].bllFec.enable:0 \r\n\
a=x-nv-vqos[0].drc.enable:0 \r\n\
a=x-nv-general.enableRecoveryMode:0 \r\n\
a=x-nv-video[0].videoEncoderSlicesPerFrame:1 \r\n\
a=x-nv-vqos[0].bitStreamFormat:0 \r\n\
a=x-nv-video[0].dynamicRangeMode:0 \r\n\
a=x-nv-video[0].maxNumReferenceFrames:1 \r\n\
a=x-nv-video[0].encoderCscMode:2 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\n\
a=x-nv-audio.surround.channelMask:3 \r\n\
a=x-nv-audio.surround.enable:0 \r\n\
a=x-nv-audio.surround.AudioQuality:0 \r\n\
a=x-nv-aqos.packetDuration:5 \r\n\
t=0 0\r\n\
m=video 47998  \r\n";

    #[test]
    fn parses_a_moonlight_announce() {
        let c = StreamConfig::parse(ANNOUNCE.as_bytes()).unwrap();
        assert_eq!((c.width, c.height, c.fps), (1280, 720, 60));
        assert_eq!(c.bitrate_kbps, 20_000);
        assert_eq!(c.packet_size, 1392);
        assert_eq!(c.min_fec_packets, 2);
        assert_eq!(c.codec, VideoCodec::H264);
        assert_eq!(c.max_ref_frames, 1);
        assert_eq!(c.encoder_csc_mode, 2);
        assert_eq!(
            c.encryption,
            Encryption {
                control_v2: true,
                video: false,
                audio: true
            }
        );
        assert_eq!((c.audio_channels, c.audio_packet_ms), (2, 5));
        assert_eq!(
            c.ml_feature_flags & ML_FF_SESSION_ID_V1,
            ML_FF_SESSION_ID_V1
        );
    }

    #[test]
    fn audio_encryption_follows_nv_feature_flag() {
        let body = ANNOUNCE.replace("encryptionEnabled:5", "encryptionEnabled:1");
        let c = StreamConfig::parse(body.as_bytes()).unwrap();
        assert!(
            c.encryption.audio,
            "0xA7 asks for audio encryption even without 0x04"
        );
        let body = body.replace("featureFlags:167", "featureFlags:135");
        assert!(
            !StreamConfig::parse(body.as_bytes())
                .unwrap()
                .encryption
                .audio
        );
    }

    #[test]
    fn bad_sdp_is_an_error() {
        let missing = ANNOUNCE.replace("a=x-nv-video[0].packetSize:1392 \r\n", "");
        assert_eq!(
            StreamConfig::parse(missing.as_bytes()),
            Err(SdpError::Missing("x-nv-video[0].packetSize"))
        );
        for (from, to) in [
            ("maxFPS:60", "maxFPS:0"),
            ("maxFPS:60", "maxFPS:sixty"),
            ("clientViewportWd:1280", "clientViewportWd:99999"),
            ("packetSize:1392", "packetSize:8"),
            ("bitStreamFormat:0", "bitStreamFormat:7"),
            ("packetDuration:5", "packetDuration:7"),
            ("numChannels:2", "numChannels:3"),
        ] {
            let body = ANNOUNCE.replace(from, to);
            assert!(StreamConfig::parse(body.as_bytes()).is_err(), "{to}");
        }
        assert_eq!(StreamConfig::parse(&[0xff, 0xfe]), Err(SdpError::NotText));
        assert!(StreamConfig::parse(&vec![b'a'; MAX_SDP_LEN + 1]).is_err());
        assert!(StreamConfig::parse(b"").is_err());
    }

    #[test]
    fn describe_has_the_lines_the_client_searches_for() {
        let d = describe_payload(&HostOffer {
            feature_flags: 0,
            encryption_supported: enc::CONTROL_V2 | enc::AUDIO,
            encryption_requested: 0,
            hevc: false,
            av1: false,
        });
        assert!(d.contains("a=x-ss-general.encryptionSupported:5\n"));
        assert!(!d.contains("AAAAAU") && !d.contains("AV1/90000"));
        let d = describe_payload(&HostOffer {
            feature_flags: 0,
            encryption_supported: 0,
            encryption_requested: 0,
            hevc: true,
            av1: true,
        });
        assert!(d.contains("sprop-parameter-sets=AAAAAU"));
        assert!(d.contains("a=rtpmap:98 AV1/90000"));
        assert!(d.contains("surround-params=85301245673"));
        assert_eq!(d.matches("surround-params=").count(), 6);
    }

    #[test]
    fn numbers_parse_like_strtoul() {
        assert_eq!(parse_u32("0x10"), Some(16));
        assert_eq!(parse_u32("42"), Some(42));
        assert_eq!(parse_u32("-1"), Some(u32::MAX));
        assert_eq!(parse_u32("x"), None);
    }
}
