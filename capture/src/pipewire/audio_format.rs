//! Decisions about PipeWire audio: the format we take and which bytes of a buffer are samples.
//!
//! Pure, like [`super::format`]. We ask for interleaved 32-bit float (`F32LE`) at a fixed rate
//! and channel count (what the Opus encoder takes, `audio::OpusEncoder::encode_f32`); the
//! stream's adapter converts whatever the producer plays, so a different fixed format means
//! the daemon ignored us, and it is refused.
#![forbid(unsafe_code)]

use pipewire::spa::param::audio::AudioFormat;

use super::format::DataChunk;

/// What an audio capture asks for: F32LE interleaved at `rate` Hz with `channels` channels.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AudioSpec {
    /// Sample rate in Hz (48 000 for GameStream).
    pub rate: u32,
    /// Channels (2, 6 or 8 for GameStream's stereo, 5.1, 7.1).
    pub channels: u32,
}

impl Default for AudioSpec {
    fn default() -> Self {
        Self {
            rate: 48_000,
            channels: 2,
        }
    }
}

/// Bytes per sample of F32LE.
pub const SAMPLE_BYTES: usize = 4;

/// Why an audio format or buffer was not taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AudioFormatError {
    /// The daemon fixed a format other than the one we asked for.
    #[error("fixed format {format:?} {rate} Hz {channels} ch, asked for F32LE {want:?}")]
    Mismatch {
        /// Sample format fixed.
        format: AudioFormat,
        /// Rate fixed.
        rate: u32,
        /// Channels fixed.
        channels: u32,
        /// What we asked for.
        want: AudioSpec,
    },
    /// A spec we cannot ask for (rate 0 or above 384 kHz, 0 or more than 8 channels).
    #[error("unusable audio spec {0:?}")]
    Spec(AudioSpec),
    /// The chunk lies outside the mapping or does not hold whole sample frames.
    #[error("audio chunk {offset}+{size} of {mapped} mapped bytes, frame {frame} bytes")]
    Chunk {
        /// `spa_chunk.offset`.
        offset: usize,
        /// `spa_chunk.size`.
        size: usize,
        /// Mapped bytes.
        mapped: usize,
        /// Bytes per sample frame.
        frame: usize,
    },
}

impl AudioSpec {
    /// Checks the spec itself.
    pub fn validate(self) -> Result<Self, AudioFormatError> {
        if (1..=384_000).contains(&self.rate) && (1..=8).contains(&self.channels) {
            Ok(self)
        } else {
            Err(AudioFormatError::Spec(self))
        }
    }

    /// Takes the format the daemon fixed if it is what we asked for.
    pub fn accept(
        self,
        format: AudioFormat,
        rate: u32,
        channels: u32,
    ) -> Result<Self, AudioFormatError> {
        if format == AudioFormat::F32LE && rate == self.rate && channels == self.channels {
            Ok(self)
        } else {
            Err(AudioFormatError::Mismatch {
                format,
                rate,
                channels,
                want: self,
            })
        }
    }

    /// Bytes per sample frame (one sample of every channel).
    pub fn frame_bytes(self) -> usize {
        self.channels as usize * SAMPLE_BYTES
    }

    /// The byte range of samples in a buffer's one data block: the chunk, which must lie in
    /// the mapping and hold whole frames (an empty chunk is an empty range).
    pub fn samples(self, chunk: DataChunk) -> Result<std::ops::Range<usize>, AudioFormatError> {
        let frame = self.frame_bytes();
        let end = chunk.offset.checked_add(chunk.size);
        match end {
            Some(end) if end <= chunk.mapped && chunk.size.is_multiple_of(frame) => {
                Ok(chunk.offset..end)
            }
            _ => Err(AudioFormatError::Chunk {
                offset: chunk.offset,
                size: chunk.size,
                mapped: chunk.mapped,
                frame,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_only_what_was_asked() {
        let want = AudioSpec::default();
        assert_eq!(want.accept(AudioFormat::F32LE, 48_000, 2), Ok(want));
        assert!(want.accept(AudioFormat::S16LE, 48_000, 2).is_err());
        assert!(want.accept(AudioFormat::F32LE, 44_100, 2).is_err());
        assert!(want.accept(AudioFormat::F32LE, 48_000, 6).is_err());
        assert!(
            AudioSpec {
                rate: 48_000,
                channels: 8
            }
            .validate()
            .is_ok()
        );
        assert!(
            AudioSpec {
                rate: 0,
                channels: 2
            }
            .validate()
            .is_err()
        );
        assert!(
            AudioSpec {
                rate: 48_000,
                channels: 9
            }
            .validate()
            .is_err()
        );
    }

    #[test]
    fn sample_ranges() {
        let stereo = AudioSpec::default(); // 8-byte frames
        let c = |offset, size, mapped| DataChunk {
            offset,
            size,
            stride: 8,
            mapped,
        };
        assert_eq!(stereo.samples(c(0, 3840, 8192)), Ok(0..3840)); // 480 frames = 10 ms
        assert_eq!(stereo.samples(c(16, 0, 8192)), Ok(16..16));
        assert!(stereo.samples(c(8, 3844, 8192)).is_err()); // half a frame
        assert!(stereo.samples(c(8000, 400, 8192)).is_err()); // past the mapping
        assert!(stereo.samples(c(usize::MAX, 8, 8192)).is_err()); // overflow
        assert_eq!(
            AudioSpec {
                rate: 48_000,
                channels: 6
            }
            .frame_bytes(),
            24
        );
    }
}
