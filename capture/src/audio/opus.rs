//! Opus encoder and decoder over the system libopus (multistream API, via `audiopus_sys`,
//! found with pkg-config; Debian package `libopus-dev`).
//!
//! The encoder is set up as Sunshine's (`src/audio.cpp`, docs/gamestream-protocol-notes.md "Opus"):
//!
//! | setting      | value                                  | why                                   |
//! |--------------|----------------------------------------|---------------------------------------|
//! | API          | `opus_multistream_encoder_create`      | one path for stereo, 5.1 and 7.1      |
//! | application  | `OPUS_APPLICATION_RESTRICTED_LOWDELAY` | CELT only: 2.5 ms look-ahead          |
//! | sample rate  | 48 000 Hz                              | the only rate clients decode          |
//! | bitrate      | [`OpusConfig::bitrate_bps`]            | Sunshine's per-layout table           |
//! | VBR          | off (`OPUS_SET_VBR(0)`)                | audio FEC needs equal-size packets    |
//! | frame        | 5 ms (240) or 10 ms (480 samples)      | the client's `packetDuration`         |
//!
//! Act: FFI. Every `unsafe` block is one libopus call on a state this module owns.

use std::os::raw::c_int;
use std::ptr::NonNull;

use audiopus_sys as ffi;

use super::config::{AudioError, OpusConfig, SAMPLE_RATE};

fn check(code: c_int) -> Result<c_int, AudioError> {
    if code < 0 {
        Err(AudioError::Opus { code })
    } else {
        Ok(code)
    }
}

/// Buffer lengths passed to libopus are `opus_int32`; larger buffers are simply not used whole.
fn clamp_len(len: usize) -> i32 {
    i32::try_from(len).unwrap_or(i32::MAX)
}

/// A libopus multistream encoder for one [`OpusConfig`].
pub struct OpusEncoder {
    st: NonNull<ffi::OpusMSEncoder>,
    config: OpusConfig,
}

// SAFETY: the encoder state is plain heap memory owned by this value; libopus keeps no
// thread-local or global references to it, so using it from another thread is sound. It is not
// `Sync`: every call takes `&mut self`.
unsafe impl Send for OpusEncoder {}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates and configures an encoder (CBR, restricted low delay, Sunshine's bitrate).
    pub fn new(config: OpusConfig) -> Result<Self, AudioError> {
        config.validate()?;
        let mapping = config.mapping();
        let mut err: c_int = 0;
        // SAFETY: `mapping` holds `channels` bytes and outlives the call (libopus copies it);
        // `err` is a valid out-pointer; the counts satisfy streams + coupled == channels ≤ 255.
        let st = unsafe {
            ffi::opus_multistream_encoder_create(
                SAMPLE_RATE as i32,
                config.channels() as c_int,
                config.streams() as c_int,
                config.coupled_streams() as c_int,
                mapping.as_ptr(),
                ffi::OPUS_APPLICATION_RESTRICTED_LOWDELAY,
                &mut err,
            )
        };
        check(err)?;
        let st = NonNull::new(st).ok_or(AudioError::Opus {
            code: ffi::OPUS_ALLOC_FAIL,
        })?;
        let enc = Self { st, config };
        enc.ctl(ffi::OPUS_SET_BITRATE_REQUEST, config.bitrate_bps() as i32)?;
        enc.ctl(ffi::OPUS_SET_VBR_REQUEST, 0)?;
        Ok(enc)
    }

    /// One `OPUS_SET_*` request with an `opus_int32` argument.
    fn ctl(&self, request: c_int, value: i32) -> Result<(), AudioError> {
        // SAFETY: `st` is a live encoder; the SET requests used here take exactly one
        // `opus_int32` vararg (opus_defines.h).
        check(unsafe { ffi::opus_multistream_encoder_ctl(self.st.as_ptr(), request, value) })?;
        Ok(())
    }

    /// One `OPUS_GET_*` request with an `opus_int32*` argument.
    fn ctl_get(&self, request: c_int) -> Result<i32, AudioError> {
        let mut value: i32 = 0;
        // SAFETY: `st` is a live encoder; the GET requests used here write one `opus_int32`
        // through the pointer, which is valid for the call.
        check(unsafe {
            ffi::opus_multistream_encoder_ctl(self.st.as_ptr(), request, &mut value as *mut i32)
        })?;
        Ok(value)
    }

    /// The configuration.
    pub fn config(&self) -> OpusConfig {
        self.config
    }

    /// Whether VBR is on, as libopus reports it (always `false` here).
    pub fn vbr(&self) -> Result<bool, AudioError> {
        Ok(self.ctl_get(ffi::OPUS_GET_VBR_REQUEST)? != 0)
    }

    /// Encoder look-ahead in samples per channel (120 = 2.5 ms in restricted low delay).
    pub fn lookahead(&self) -> Result<u32, AudioError> {
        Ok(self.ctl_get(ffi::OPUS_GET_LOOKAHEAD_REQUEST)?.max(0) as u32)
    }

    /// Checks one frame of PCM in and room for a whole CBR packet out: libopus would
    /// otherwise quietly shrink the packet to fit, and break audio FEC's equal sizes.
    fn check_buffers(&self, pcm: usize, out: usize) -> Result<(), AudioError> {
        if pcm != self.config.pcm_len() {
            return Err(AudioError::PcmLength {
                expected: self.config.pcm_len(),
                got: pcm,
            });
        }
        if out < self.config.cbr_packet_len() {
            return Err(AudioError::OutputTooSmall {
                needed: self.config.cbr_packet_len(),
                capacity: out,
            });
        }
        Ok(())
    }

    /// Encodes one frame of interleaved `f32` PCM ([`OpusConfig::pcm_len`] samples, ±1.0 full
    /// scale) into `out`; returns the packet length, which is always
    /// [`OpusConfig::cbr_packet_len`]. `out` needs at least that many bytes.
    pub fn encode_f32(&mut self, pcm: &[f32], out: &mut [u8]) -> Result<usize, AudioError> {
        self.check_buffers(pcm.len(), out.len())?;
        // SAFETY: `pcm` holds samples_per_frame × channels floats (checked above); `out` is
        // writable for `clamp_len(out.len())` bytes; `st` is a live encoder.
        let n = check(unsafe {
            ffi::opus_multistream_encode_float(
                self.st.as_ptr(),
                pcm.as_ptr(),
                self.config.samples_per_frame() as c_int,
                out.as_mut_ptr(),
                clamp_len(out.len()),
            )
        })?;
        Ok(n as usize)
    }

    /// Encodes one frame of interleaved `i16` PCM, like [`Self::encode_f32`].
    pub fn encode_i16(&mut self, pcm: &[i16], out: &mut [u8]) -> Result<usize, AudioError> {
        self.check_buffers(pcm.len(), out.len())?;
        // SAFETY: as in `encode_f32`, with `opus_int16` samples.
        let n = check(unsafe {
            ffi::opus_multistream_encode(
                self.st.as_ptr(),
                pcm.as_ptr(),
                self.config.samples_per_frame() as c_int,
                out.as_mut_ptr(),
                clamp_len(out.len()),
            )
        })?;
        Ok(n as usize)
    }
}

impl Drop for OpusEncoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from opus_multistream_encoder_create and is destroyed once, here.
        unsafe { ffi::opus_multistream_encoder_destroy(self.st.as_ptr()) }
    }
}

/// A libopus multistream decoder for one [`OpusConfig`] (identity mapping), as a client has:
/// for tests and loopback checks.
pub struct OpusDecoder {
    st: NonNull<ffi::OpusMSDecoder>,
    config: OpusConfig,
}

// SAFETY: as for `OpusEncoder`: owned heap state, no thread affinity, `&mut self` calls only.
unsafe impl Send for OpusDecoder {}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a decoder matching `config`'s streams, coupling and mapping.
    pub fn new(config: OpusConfig) -> Result<Self, AudioError> {
        let mapping = config.mapping();
        let mut err: c_int = 0;
        // SAFETY: as in `OpusEncoder::new`.
        let st = unsafe {
            ffi::opus_multistream_decoder_create(
                SAMPLE_RATE as i32,
                config.channels() as c_int,
                config.streams() as c_int,
                config.coupled_streams() as c_int,
                mapping.as_ptr(),
                &mut err,
            )
        };
        check(err)?;
        let st = NonNull::new(st).ok_or(AudioError::Opus {
            code: ffi::OPUS_ALLOC_FAIL,
        })?;
        Ok(Self { st, config })
    }

    /// Decodes one packet into interleaved `f32` PCM; returns samples per channel. `out` must
    /// hold at least one frame ([`OpusConfig::pcm_len`]). Malformed packets give
    /// [`AudioError::Opus`] (`OPUS_INVALID_PACKET`), never undefined behaviour.
    pub fn decode_f32(&mut self, packet: &[u8], out: &mut [f32]) -> Result<usize, AudioError> {
        let channels = self.config.channels();
        if out.len() < self.config.pcm_len() {
            return Err(AudioError::PcmLength {
                expected: self.config.pcm_len(),
                got: out.len(),
            });
        }
        let frame_size = clamp_len(out.len() / channels);
        // SAFETY: `packet` is readable for its length (clamped to i32); `out` holds
        // `frame_size × channels` floats; `st` is a live decoder.
        let n = check(unsafe {
            ffi::opus_multistream_decode_float(
                self.st.as_ptr(),
                packet.as_ptr(),
                clamp_len(packet.len()),
                out.as_mut_ptr(),
                frame_size,
                0,
            )
        })?;
        Ok(n as usize)
    }
}

impl Drop for OpusDecoder {
    fn drop(&mut self) {
        // SAFETY: `st` came from opus_multistream_decoder_create and is destroyed once, here.
        unsafe { ffi::opus_multistream_decoder_destroy(self.st.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::{AudioLayout, PacketDuration, ToneSource};

    /// Goertzel power of `freq` in `x` (mono), normalised by the length.
    fn goertzel(x: &[f32], freq: f64) -> f64 {
        let w = std::f64::consts::TAU * freq / f64::from(SAMPLE_RATE);
        let coeff = 2.0 * w.cos();
        let (mut s1, mut s2) = (0.0f64, 0.0f64);
        for &v in x {
            let s0 = f64::from(v) + coeff * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        (s1 * s1 + s2 * s2 - coeff * s1 * s2) / (x.len() as f64).powi(2)
    }

    /// Encodes `packets` packets of the layout's tone, decodes them; returns packet sizes and
    /// the decoded PCM (interleaved).
    fn round_trip(config: OpusConfig, packets: usize) -> (Vec<usize>, Vec<f32>) {
        let mut tone = ToneSource::for_channels(config.channels()).unwrap();
        let mut enc = OpusEncoder::new(config).unwrap();
        let mut dec = OpusDecoder::new(config).unwrap();
        let mut pcm = vec![0f32; config.pcm_len()];
        let mut packet = vec![0u8; config.cbr_packet_len()];
        let mut decoded = vec![0f32; config.pcm_len()];
        let (mut sizes, mut all) = (Vec::new(), Vec::new());
        for _ in 0..packets {
            tone.fill_f32(&mut pcm).unwrap();
            let n = enc.encode_f32(&pcm, &mut packet).unwrap();
            sizes.push(n);
            let got = dec.decode_f32(&packet[..n], &mut decoded).unwrap();
            assert_eq!(got, config.samples_per_frame());
            all.extend_from_slice(&decoded);
        }
        (sizes, all)
    }

    /// The decoded tone of each channel has its own frequency and not the others'.
    fn check_tones(config: OpusConfig, pcm: &[f32]) {
        let ch = config.channels();
        let tone = ToneSource::for_channels(ch).unwrap();
        // Skip the first 20 ms (encoder/decoder start-up); analyse 200 ms.
        let skip = 960;
        for c in 0..ch {
            let mono: Vec<f32> = pcm
                .chunks_exact(ch)
                .skip(skip)
                .take(9600)
                .map(|f| f[c])
                .collect();
            let want = tone.frequency(c).unwrap();
            let on = goertzel(&mono, want);
            // A 0.5-amplitude sine has Goertzel power (0.5/2)² = 0.0625 over whole periods.
            assert!(
                on > 0.03,
                "{:?} channel {c}: power {on} at {want} Hz",
                config.layout
            );
            for other in (0..ch).filter(|&o| o != c) {
                let f = tone.frequency(other).unwrap();
                let off = goertzel(&mono, f);
                assert!(off < on / 100.0, "channel {c} leaks {f} Hz: {off} vs {on}");
            }
        }
    }

    #[test]
    fn stereo_cbr_equal_sizes_and_right_tone() {
        let config = OpusConfig::stereo();
        let enc = OpusEncoder::new(config).unwrap();
        assert!(!enc.vbr().unwrap());
        assert_eq!(enc.lookahead().unwrap(), 120);
        let (sizes, pcm) = round_trip(config, 200);
        assert!(
            sizes.iter().all(|&s| s == sizes[0]),
            "sizes differ: {sizes:?}"
        );
        assert_eq!(sizes[0], config.cbr_packet_len());
        check_tones(config, &pcm);
        // Zero crossings of the left channel over 1 s of steady signal: 2 × 440.
        let left: Vec<f32> = pcm
            .chunks_exact(2)
            .skip(960)
            .take(48_000 - 960)
            .map(|f| f[0])
            .collect();
        let crossings = left
            .windows(2)
            .filter(|w| (w[0] < 0.0) != (w[1] < 0.0))
            .count();
        let expected = 2.0 * 440.0 * left.len() as f64 / 48_000.0;
        assert!(
            (crossings as f64 - expected).abs() <= 2.0,
            "{crossings} vs {expected}"
        );
    }

    #[test]
    fn every_sunshine_config_is_cbr_and_decodes() {
        for layout in [
            AudioLayout::Stereo,
            AudioLayout::Surround51,
            AudioLayout::Surround71,
        ] {
            for high_quality in [false, true] {
                for packet_duration in [PacketDuration::Ms5, PacketDuration::Ms10] {
                    let config = OpusConfig {
                        layout,
                        high_quality,
                        packet_duration,
                    };
                    if config.validate().is_err() {
                        assert!(OpusEncoder::new(config).is_err());
                        continue;
                    }
                    let (sizes, pcm) = round_trip(config, 60);
                    assert!(
                        sizes.iter().all(|&s| s == sizes[0]),
                        "{config:?}: sizes differ: {sizes:?}"
                    );
                    assert_eq!(sizes[0], config.cbr_packet_len(), "{config:?}");
                    check_tones(config, &pcm);
                }
            }
        }
    }

    #[test]
    fn i16_input_and_length_errors() {
        let config = OpusConfig::stereo();
        let mut enc = OpusEncoder::new(config).unwrap();
        let mut tone = ToneSource::for_channels(2).unwrap();
        let mut pcm = vec![0i16; config.pcm_len()];
        tone.fill_i16(&mut pcm).unwrap();
        let mut out = [0u8; 1400];
        assert_eq!(enc.encode_i16(&pcm, &mut out).unwrap(), 60);
        assert_eq!(
            enc.encode_i16(&pcm[..10], &mut out),
            Err(AudioError::PcmLength {
                expected: 480,
                got: 10
            })
        );
        assert_eq!(
            enc.encode_f32(&[0.0; 480], &mut out[..59]),
            Err(AudioError::OutputTooSmall {
                needed: 60,
                capacity: 59
            })
        );
        assert_eq!(enc.encode_f32(&[0.0; 480], &mut out[..60]), Ok(60));
    }

    #[test]
    fn decoder_rejects_garbage() {
        let mut dec = OpusDecoder::new(OpusConfig::stereo()).unwrap();
        let mut out = vec![0f32; 480];
        assert!(dec.decode_f32(&[0xff; 3], &mut out).is_err());
        assert!(dec.decode_f32(&[0; 1], &mut out[..10]).is_err());
    }
}
