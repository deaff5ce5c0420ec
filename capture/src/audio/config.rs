//! Opus stream configurations of GameStream audio (docs/gamestream-protocol-notes.md "Opus";
//! Sunshine `src/audio.cpp` `stream_configs`).
//!
//! ```text
//!  layout      channels  streams  coupled  mapping            bitrate (normal / HQ)
//!  stereo         2         1        1     0 1                 96 /  512 kbps
//!  5.1            6         4        2     0 1 2 3 4 5        256 / 1536 kbps (HQ: 6 streams, 0 coupled)
//!  7.1            8         5        3     0 1 2 3 4 5 6 7    450 / 2048 kbps (HQ: 8 streams, 0 coupled)
//!  speaker order FL FR C LFE BL BR SL SR
//! ```
//!
//! Pure: tables and arithmetic.
#![forbid(unsafe_code)]

use thiserror::Error;

/// The only sample rate GameStream audio uses.
pub const SAMPLE_RATE: u32 = 48_000;

/// Errors of the audio layer.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum AudioError {
    /// A PCM buffer does not hold exactly one frame of interleaved samples (local misuse).
    #[error("PCM buffer holds {got} samples, expected {expected}")]
    PcmLength {
        /// Samples expected (per-channel samples × channels).
        expected: usize,
        /// Samples passed.
        got: usize,
    },
    /// The configuration cannot be used (local misuse).
    #[error("invalid audio configuration: {reason}")]
    InvalidConfig {
        /// Which rule was broken.
        reason: &'static str,
    },
    /// The output buffer cannot hold a whole CBR packet (local misuse).
    #[error("a {needed}-byte packet does not fit a {capacity}-byte buffer")]
    OutputTooSmall {
        /// Bytes one packet takes.
        needed: usize,
        /// Bytes the buffer had.
        capacity: usize,
    },
    /// libopus returned an error code (`OPUS_BAD_ARG` = -1 … `OPUS_ALLOC_FAIL` = -7).
    #[error("libopus error {code} ({})", opus_error_name(*code))]
    Opus {
        /// The negative libopus return value.
        code: i32,
    },
}

/// The libopus name of an error code (`opus_defines.h`).
pub fn opus_error_name(code: i32) -> &'static str {
    match code {
        -1 => "OPUS_BAD_ARG",
        -2 => "OPUS_BUFFER_TOO_SMALL",
        -3 => "OPUS_INTERNAL_ERROR",
        -4 => "OPUS_INVALID_PACKET",
        -5 => "OPUS_UNIMPLEMENTED",
        -6 => "OPUS_INVALID_STATE",
        -7 => "OPUS_ALLOC_FAIL",
        _ => "unknown",
    }
}

/// Speaker layouts GameStream clients ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum AudioLayout {
    /// 2 channels: FL FR.
    Stereo,
    /// 6 channels: FL FR C LFE BL BR.
    Surround51,
    /// 8 channels: FL FR C LFE BL BR SL SR.
    Surround71,
}

impl AudioLayout {
    /// Number of channels.
    pub fn channels(self) -> usize {
        match self {
            Self::Stereo => 2,
            Self::Surround51 => 6,
            Self::Surround71 => 8,
        }
    }
}

/// Opus packet duration (`x-nv-aqos.packetDuration` in the client's SDP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PacketDuration {
    /// 5 ms: 240 samples per channel (the default of current clients).
    Ms5,
    /// 10 ms: 480 samples per channel.
    Ms10,
}

impl PacketDuration {
    /// Duration in milliseconds: the RTP timestamp's step per packet (notes "Audio transport").
    pub fn millis(self) -> u32 {
        match self {
            Self::Ms5 => 5,
            Self::Ms10 => 10,
        }
    }

    /// The SDP value in milliseconds, if it is one Opus and GameStream support.
    pub fn from_millis(ms: u32) -> Option<Self> {
        match ms {
            5 => Some(Self::Ms5),
            10 => Some(Self::Ms10),
            _ => None,
        }
    }
}

/// One Opus stream configuration: layout, quality and packet duration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct OpusConfig {
    /// Speaker layout.
    pub layout: AudioLayout,
    /// High quality: Sunshine's higher bitrate, and uncoupled streams for surround.
    pub high_quality: bool,
    /// Packet duration.
    pub packet_duration: PacketDuration,
}

impl OpusConfig {
    /// Normal-quality stereo, 5 ms packets: what a stock client gets by default.
    pub fn stereo() -> Self {
        Self {
            layout: AudioLayout::Stereo,
            high_quality: false,
            packet_duration: PacketDuration::Ms5,
        }
    }

    /// Channels.
    pub fn channels(&self) -> usize {
        self.layout.channels()
    }

    /// Opus streams (`streams` of the multistream API).
    pub fn streams(&self) -> usize {
        match (self.layout, self.high_quality) {
            (AudioLayout::Stereo, _) => 1,
            (AudioLayout::Surround51, false) => 4,
            (AudioLayout::Surround71, false) => 5,
            (layout, true) => layout.channels(),
        }
    }

    /// Streams that carry two coupled channels.
    pub fn coupled_streams(&self) -> usize {
        match (self.layout, self.high_quality) {
            (AudioLayout::Stereo, _) => 1,
            (AudioLayout::Surround51, false) => 2,
            (AudioLayout::Surround71, false) => 3,
            (_, true) => 0,
        }
    }

    /// Encoder channel mapping: identity (the host sends the mapping the client needs in SDP,
    /// notes "Opus").
    pub fn mapping(&self) -> &'static [u8] {
        &[0, 1, 2, 3, 4, 5, 6, 7][..self.channels()]
    }

    /// Bitrate in bit/s (Sunshine's `stream_configs`).
    pub fn bitrate_bps(&self) -> u32 {
        match (self.layout, self.high_quality) {
            (AudioLayout::Stereo, false) => 96_000,
            (AudioLayout::Stereo, true) => 512_000,
            (AudioLayout::Surround51, false) => 256_000,
            (AudioLayout::Surround51, true) => 1_536_000,
            (AudioLayout::Surround71, false) => 450_000,
            (AudioLayout::Surround71, true) => 2_048_000,
        }
    }

    /// Samples per channel in one packet: 48 × duration in ms (240 or 480).
    pub fn samples_per_frame(&self) -> usize {
        SAMPLE_RATE as usize / 1000 * self.packet_duration.millis() as usize
    }

    /// Interleaved samples in one packet's PCM (samples per frame × channels).
    pub fn pcm_len(&self) -> usize {
        self.samples_per_frame() * self.channels()
    }

    /// Bytes of every packet: bitrate × duration / 8 (60 for normal stereo at 5 ms). libopus
    /// in CBR mode produces exactly this for every configuration (tested).
    pub fn cbr_packet_len(&self) -> usize {
        (self.bitrate_bps() as usize / 8) * self.packet_duration.millis() as usize / 1000
    }

    /// Rejects configurations whose CBR packets would not fit one 1400-byte datagram with the RTP
    /// header and AES padding (notes "Audio transport", "Audio encryption"): HQ 5.1 and 7.1 at
    /// 10 ms.
    pub fn validate(&self) -> Result<(), AudioError> {
        // 12-byte RTP header + up to 16 bytes of PKCS#7 padding.
        if self.cbr_packet_len() + 12 + 16 > 1400 {
            return Err(AudioError::InvalidConfig {
                reason: "packets of this layout and duration exceed the 1400-byte datagram",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(layout: AudioLayout, high_quality: bool, ms: u32) -> OpusConfig {
        OpusConfig {
            layout,
            high_quality,
            packet_duration: PacketDuration::from_millis(ms).unwrap(),
        }
    }

    #[test]
    fn sunshine_table() {
        use AudioLayout::*;
        // (layout, hq) → channels, streams, coupled, bitrate; notes "Opus".
        let rows = [
            (Stereo, false, 2, 1, 1, 96_000),
            (Stereo, true, 2, 1, 1, 512_000),
            (Surround51, false, 6, 4, 2, 256_000),
            (Surround51, true, 6, 6, 0, 1_536_000),
            (Surround71, false, 8, 5, 3, 450_000),
            (Surround71, true, 8, 8, 0, 2_048_000),
        ];
        for (layout, hq, ch, st, co, br) in rows {
            let c = cfg(layout, hq, 5);
            assert_eq!(
                (
                    c.channels(),
                    c.streams(),
                    c.coupled_streams(),
                    c.bitrate_bps()
                ),
                (ch, st, co, br),
                "{layout:?} hq={hq}"
            );
            assert_eq!(c.mapping().len(), ch);
            // Every channel is carried: coupled streams hold 2, the rest 1.
            assert_eq!(c.streams() + c.coupled_streams(), ch);
        }
    }

    #[test]
    fn frame_sizes() {
        let s = OpusConfig::stereo();
        assert_eq!(s.samples_per_frame(), 240);
        assert_eq!(s.pcm_len(), 480);
        assert_eq!(s.cbr_packet_len(), 60);
        let s10 = cfg(AudioLayout::Stereo, false, 10);
        assert_eq!(s10.samples_per_frame(), 480);
        assert_eq!(s10.cbr_packet_len(), 120);
        assert_eq!(cfg(AudioLayout::Surround71, true, 5).cbr_packet_len(), 1280);
        assert_eq!(PacketDuration::from_millis(20), None);
    }

    #[test]
    fn datagram_limit() {
        assert!(cfg(AudioLayout::Surround71, true, 5).validate().is_ok());
        assert!(cfg(AudioLayout::Surround51, true, 10).validate().is_err());
        assert!(cfg(AudioLayout::Surround71, true, 10).validate().is_err());
        assert!(cfg(AudioLayout::Surround71, false, 10).validate().is_ok());
        assert!(cfg(AudioLayout::Stereo, true, 10).validate().is_ok());
    }

    #[test]
    fn error_names() {
        assert_eq!(
            AudioError::Opus { code: -2 }.to_string(),
            "libopus error -2 (OPUS_BUFFER_TOO_SMALL)"
        );
    }
}
