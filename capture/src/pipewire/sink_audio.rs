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
//! call never waits for frames from PipeWire. Before the first sound, during an underrun, and while nothing
//! plays (an idle sink sends no buffers) the packet is silence, so the client's audio stream
//! never stalls. When the capture stream fails (the session manager found no sink to link,
//! "no node available"; the daemon restarted) the packets are silence and the capture is
//! reopened once a second ([`SinkAudioStats::restarts`]): a sink that appears later is picked
//! up. Channels are captured in PipeWire's default positions for the count (FL FR;
//! FL FR FC LFE RL RR; … SL SR), which is the order the Opus encoder takes
//! (`crate::audio::config`).

use std::time::{Duration, Instant};

use super::audio::{AudioChunk, PipeWireAudioCapture};
use super::audio_format::AudioSpec;
use super::{CaptureError, Target};
use crate::audio::{FifoStats, OpusConfig, OpusEncoder, PcmFifo, Pop, SAMPLE_RATE};

/// The most frames buffered before the oldest are dropped: 100 ms at 48 kHz.
const MAX_BACKLOG_FRAMES: usize = 4_800;
/// How long after a failed capture it is reopened.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How long reopening may take (it runs on the audio thread between two packets).
const REOPEN_TIMEOUT: Duration = Duration::from_millis(200);

/// Counters of a [`SinkAudio`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkAudioStats {
    /// The jitter buffer's counters.
    pub fifo: FifoStats,
    /// Times the capture failed and was reopened.
    pub restarts: u64,
}

/// Captured desktop sound, one Opus packet per [`SinkAudio::next_packet`].
pub struct SinkAudio {
    /// `None` after a failure, until `retry_at`.
    capture: Option<PipeWireAudioCapture>,
    remote: Option<String>,
    target: Target,
    spec: AudioSpec,
    retry_at: Instant,
    restarts: u64,
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
            .field("stats", &self.stats())
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
        let capture =
            PipeWireAudioCapture::connect_to(remote.clone(), target.clone(), spec, timeout)?;
        Ok(Self {
            capture: Some(capture),
            remote,
            target,
            spec,
            retry_at: Instant::now(),
            restarts: 0,
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
    /// is the encoder's only: capture failures become silence and a reopen.
    pub fn next_packet(&mut self) -> Result<&[u8], SinkAudioError> {
        if self.capture.is_none() && Instant::now() >= self.retry_at {
            self.reopen();
        }
        while let Some(capture) = &self.capture {
            match capture.next_chunk(&mut self.chunk, Duration::ZERO) {
                Ok(()) => self.fifo.push(&self.chunk.samples),
                Err(CaptureError::Timeout(_)) => break,
                Err(e) => {
                    tracing::warn!(error = %e, target = %self.target,
                        "desktop sound capture failed; silence, reopening in 1 s");
                    self.capture = None;
                    self.retry_at = Instant::now() + RETRY_AFTER;
                }
            }
        }
        let _: Pop = self.fifo.pop(&mut self.pcm);
        self.len = self.encoder.encode_f32(&self.pcm, &mut self.out)?;
        Ok(&self.out[..self.len])
    }

    /// Counters: the jitter buffer's (sound and silent packets, underruns, frames dropped)
    /// and the capture's restarts.
    pub fn stats(&self) -> SinkAudioStats {
        SinkAudioStats {
            fifo: self.fifo.stats(),
            restarts: self.restarts,
        }
    }

    fn reopen(&mut self) {
        self.restarts += 1;
        match PipeWireAudioCapture::connect_to(
            self.remote.clone(),
            self.target.clone(),
            self.spec,
            REOPEN_TIMEOUT,
        ) {
            Ok(c) => self.capture = Some(c),
            Err(e) => {
                tracing::debug!(error = %e, "desktop sound capture not reopened; next try in 1 s");
                self.retry_at = Instant::now() + RETRY_AFTER;
            }
        }
    }
}
