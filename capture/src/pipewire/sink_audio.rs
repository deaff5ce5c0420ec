//! Desktop sound as Opus packets (act): a sink's monitor captured with
//! [`PipeWireAudioCapture`], smoothed by a [`PcmFifo`], encoded one packet per call.
//!
//! ```text
//!  default sink's monitor ─► pw-audio thread ─► chunk queue ─► next_packet(): drain queue
//!  (what games play)         F32LE 48 kHz, N ch                 (no wait) → PcmFifo → one
//!                                                               packet of sound or silence
//!                                                               → OpusEncoder (CBR)
//! ```
//!
//! The caller's clock (the stream's audio thread, one call per packet duration) paces it; a
//! call never waits for PipeWire. Before the first sound, during an underrun, and while nothing
//! plays (an idle sink sends no buffers) the packet is silence, so the client's audio stream
//! never stalls. Channels are captured in PipeWire's default positions for the count (FL FR;
//! FL FR FC LFE RL RR; … SL SR), which is the order the Opus encoder takes
//! (`crate::audio::config`).

use std::time::Duration;

use super::audio::{AudioChunk, PipeWireAudioCapture};
use super::audio_format::AudioSpec;
use super::{CaptureError, Target};
use crate::audio::{FifoStats, OpusConfig, OpusEncoder, PcmFifo, Pop, SAMPLE_RATE};

/// The most frames buffered before the oldest are dropped: 100 ms at 48 kHz.
const MAX_BACKLOG_FRAMES: usize = 4_800;

/// Captured desktop sound, one Opus packet per [`SinkAudio::next_packet`].
pub struct SinkAudio {
    capture: PipeWireAudioCapture,
    fifo: PcmFifo,
    encoder: OpusEncoder,
    chunk: AudioChunk,
    pcm: Vec<f32>,
    out: Vec<u8>,
    len: usize,
}

impl std::fmt::Debug for SinkAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SinkAudio")
            .field("capture", &self.capture)
            .field("fifo", &self.fifo.stats())
            .finish_non_exhaustive()
    }
}

/// Why desktop audio could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SinkAudioError {
    /// PipeWire: no daemon, no such node, the stream failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The Opus encoder refused the configuration.
    #[error(transparent)]
    Encoder(#[from] crate::audio::AudioError),
}

impl SinkAudio {
    /// Captures `target` (usually [`Target::DefaultSink`]) from the daemon at `remote` (`None`:
    /// this process's `PIPEWIRE_REMOTE`/`XDG_RUNTIME_DIR`) and encodes it as `config` says.
    pub fn connect(
        remote: Option<String>,
        target: Target,
        config: OpusConfig,
        timeout: Duration,
    ) -> Result<Self, SinkAudioError> {
        let encoder = OpusEncoder::new(config)?;
        let channels = config.channels();
        let spec = AudioSpec {
            rate: SAMPLE_RATE,
            channels: u32::try_from(channels).unwrap_or(2),
        };
        let capture = PipeWireAudioCapture::connect_to(remote, target, spec, timeout)?;
        Ok(Self {
            capture,
            fifo: PcmFifo::new(channels, config.samples_per_frame(), MAX_BACKLOG_FRAMES),
            encoder,
            chunk: AudioChunk::default(),
            pcm: vec![0.0; config.pcm_len()],
            // CBR packets are at most a few hundred bytes; libopus caps at 1275 per stream.
            out: vec![0; 1275 * 8],
            len: 0,
        })
    }

    /// The next packet: the oldest captured sound, or silence (see the module docs). An error
    /// means the capture ended (the daemon went away).
    pub fn next_packet(&mut self) -> Result<&[u8], SinkAudioError> {
        loop {
            match self.capture.next_chunk(&mut self.chunk, Duration::ZERO) {
                Ok(()) => self.fifo.push(&self.chunk.samples),
                Err(CaptureError::Timeout(_)) => break,
                Err(e) => return Err(e.into()),
            }
        }
        let _: Pop = self.fifo.pop(&mut self.pcm);
        self.len = self.encoder.encode_f32(&self.pcm, &mut self.out)?;
        Ok(&self.out[..self.len])
    }

    /// The jitter buffer's counters (sound and silent packets, underruns, frames dropped).
    pub fn stats(&self) -> FifoStats {
        self.fifo.stats()
    }
}
