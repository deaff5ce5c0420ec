//! Audio: a test-tone source and an Opus encoder configured like Sunshine.
//!
//! ```text
//!  ToneSource ──fill_f32(&mut [f32; samples_per_frame × channels])──► OpusEncoder::encode_f32
//!    (pure, continuous phase)                                          (libopus multistream,
//!                                                                       CBR, restricted low delay)
//!  ──► one Opus packet per 5 or 10 ms, every packet the same size ──► RTP (engine)
//! ```
//!
//! [`config`], [`tone`] and [`fifo`] (the jitter buffer between captured audio and the packet
//! clock) are pure; [`opus`] is the FFI to the system libopus. Captured desktop sound (a
//! PipeWire sink's monitor) becomes packets in `crate::pipewire::SinkAudio` (feature
//! `pipewire`).

pub mod config;
pub mod fifo;
#[allow(unsafe_code)]
pub mod opus;
pub mod tone;

pub use config::{AudioError, AudioLayout, OpusConfig, PacketDuration, SAMPLE_RATE};
pub use fifo::{FifoStats, PcmFifo, Pop};
pub use opus::{OpusDecoder, OpusEncoder};
pub use tone::ToneSource;
