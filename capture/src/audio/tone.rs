//! Test tone: one sine per channel at 48 kHz, phase continuous across calls.
//!
//! Channel `c` of [`ToneSource::for_channels`] plays `440 + 220·c` Hz (440, 660, 880, …), so a
//! channel-mapping mistake shows up as a wrong frequency. Each channel keeps its phase as a
//! fraction of a cycle in an `f64`: the error after an hour at 48 kHz is below 10⁻⁸ cycles,
//! and the frame size does not matter (240 samples per 5 ms packet, or anything else).
//!
//! Pure: the caller owns the buffers and decides when to ask for samples.
#![forbid(unsafe_code)]

use super::config::{AudioError, SAMPLE_RATE};

/// Most channels a tone source carries (7.1).
pub const MAX_CHANNELS: usize = 8;

/// A multichannel sine generator writing interleaved samples.
#[derive(Debug, Clone)]
pub struct ToneSource {
    channels: usize,
    /// Phase of each channel in cycles, in `[0, 1)`.
    phase: [f64; MAX_CHANNELS],
    /// Phase advance per sample, in cycles.
    step: [f64; MAX_CHANNELS],
    amplitude: f32,
}

impl ToneSource {
    /// One sine per entry of `frequencies_hz` (1 to 8 channels, each in 1 Hz..24 kHz), with
    /// peak `amplitude` in `0.0..=1.0` of full scale.
    pub fn new(frequencies_hz: &[f64], amplitude: f32) -> Result<Self, AudioError> {
        if frequencies_hz.is_empty() || frequencies_hz.len() > MAX_CHANNELS {
            return Err(AudioError::InvalidConfig {
                reason: "a tone needs 1 to 8 channels",
            });
        }
        let nyquist = f64::from(SAMPLE_RATE) / 2.0;
        if frequencies_hz.iter().any(|f| !(1.0..nyquist).contains(f)) {
            return Err(AudioError::InvalidConfig {
                reason: "tone frequencies must be in 1 Hz..24 kHz",
            });
        }
        if !(0.0..=1.0).contains(&amplitude) {
            return Err(AudioError::InvalidConfig {
                reason: "tone amplitude must be in 0..=1",
            });
        }
        let mut step = [0.0; MAX_CHANNELS];
        for (s, f) in step.iter_mut().zip(frequencies_hz) {
            *s = f / f64::from(SAMPLE_RATE);
        }
        Ok(Self {
            channels: frequencies_hz.len(),
            phase: [0.0; MAX_CHANNELS],
            step,
            amplitude,
        })
    }

    /// `channels` sines at 440 + 220·c Hz, amplitude 0.5 (−6 dBFS). `channels` in 1..=8.
    pub fn for_channels(channels: usize) -> Result<Self, AudioError> {
        let mut f = [0.0; MAX_CHANNELS];
        for (c, f) in f.iter_mut().enumerate() {
            *f = 440.0 + 220.0 * c as f64;
        }
        Self::new(f.get(..channels).unwrap_or(&[]), 0.5)
    }

    /// Number of channels.
    pub fn channels(&self) -> usize {
        self.channels
    }

    /// Frequency of channel `c` in Hz.
    pub fn frequency(&self, c: usize) -> Option<f64> {
        (c < self.channels).then(|| self.step[c] * f64::from(SAMPLE_RATE))
    }

    fn check_len(&self, len: usize) -> Result<(), AudioError> {
        if !len.is_multiple_of(self.channels) {
            return Err(AudioError::PcmLength {
                expected: len / self.channels * self.channels,
                got: len,
            });
        }
        Ok(())
    }

    /// Advances every channel by one sample and yields its value in `-amplitude..=amplitude`.
    fn next_frame(&mut self, mut write: impl FnMut(usize, f32)) {
        for c in 0..self.channels {
            let v = (self.phase[c] * std::f64::consts::TAU).sin() as f32 * self.amplitude;
            write(c, v);
            self.phase[c] += self.step[c];
            if self.phase[c] >= 1.0 {
                self.phase[c] -= 1.0;
            }
        }
    }

    /// Fills `out` with interleaved `f32` samples (`out.len() / channels` per channel).
    /// `out.len()` must be a multiple of the channel count.
    pub fn fill_f32(&mut self, out: &mut [f32]) -> Result<(), AudioError> {
        self.check_len(out.len())?;
        for frame in out.chunks_exact_mut(self.channels) {
            self.next_frame(|c, v| frame[c] = v);
        }
        Ok(())
    }

    /// Fills `out` with interleaved `i16` samples, like [`Self::fill_f32`] scaled to 32767.
    pub fn fill_i16(&mut self, out: &mut [i16]) -> Result<(), AudioError> {
        self.check_len(out.len())?;
        for frame in out.chunks_exact_mut(self.channels) {
            self.next_frame(|c, v| frame[c] = (v * 32767.0).round() as i16);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_samples_fixture() {
        // 12 kHz is a quarter of the sample rate: 0, A, 0, −A, …
        let mut t = ToneSource::new(&[12_000.0], 1.0).unwrap();
        let mut out = [0i16; 5];
        t.fill_i16(&mut out).unwrap();
        assert_eq!(out, [0, 32767, 0, -32767, 0]);
    }

    #[test]
    fn phase_continuous_across_frame_sizes() {
        // 240-sample frames give the same signal as one long buffer.
        let mut a = ToneSource::for_channels(2).unwrap();
        let mut b = ToneSource::for_channels(2).unwrap();
        let mut long = vec![0f32; 2 * 240 * 10];
        a.fill_f32(&mut long).unwrap();
        let mut chunked = Vec::new();
        let mut frame = [0f32; 2 * 240];
        for _ in 0..10 {
            b.fill_f32(&mut frame).unwrap();
            chunked.extend_from_slice(&frame);
        }
        assert_eq!(long, chunked);
        // And the waveform matches the closed form sin(2π f n / 48000).
        for n in [0usize, 1, 239, 240, 241, 2399] {
            let want = (std::f64::consts::TAU * 660.0 * n as f64 / 48_000.0).sin() * 0.5;
            assert!(
                (f64::from(long[2 * n + 1]) - want).abs() < 1e-6,
                "sample {n}"
            );
        }
    }

    #[test]
    fn frequencies_and_errors() {
        let t = ToneSource::for_channels(8).unwrap();
        assert_eq!(t.frequency(0), Some(440.0));
        assert_eq!(t.frequency(7), Some(440.0 + 7.0 * 220.0));
        assert_eq!(t.frequency(8), None);
        assert!(ToneSource::for_channels(0).is_err());
        assert!(ToneSource::for_channels(9).is_err());
        assert!(ToneSource::new(&[30_000.0], 0.5).is_err());
        assert!(ToneSource::new(&[440.0], 1.5).is_err());
        let mut t = ToneSource::for_channels(2).unwrap();
        assert_eq!(
            t.fill_f32(&mut [0.0; 3]),
            Err(AudioError::PcmLength {
                expected: 2,
                got: 3
            })
        );
    }
}
