//! Audio: a test-tone source and an Opus encoder configured like Sunshine.
//!
//! ```text
//!  ToneSource ──fill_f32(&mut [f32; samples_per_frame × channels])──► OpusEncoder::encode_f32
//!    (pure, continuous phase)                                          (libopus multistream,
//!                                                                       CBR, restricted low delay)
//!  ──► one Opus packet per 5 or 10 ms, every packet the same size ──► RTP (engine)
//! ```
//!
//! [`config`] and [`tone`] are pure; [`opus`] is the FFI to the system libopus.

pub mod config;
#[allow(unsafe_code)]
pub mod opus;
pub mod tone;

pub use config::{AudioError, AudioLayout, OpusConfig, PacketDuration, SAMPLE_RATE};
pub use opus::{OpusDecoder, OpusEncoder};
pub use tone::ToneSource;
