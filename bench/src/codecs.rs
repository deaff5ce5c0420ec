//! Software encoders compared on the test pattern: encode time per frame, the bitrate they
//! actually produce, and the quality (luma PSNR against the source, decoded with libavcodec),
//! at several target bitrates so "bits for the same PSNR" can be read off.
//!
//! openh264 is the baseline (the encoder every build has); libx264, libx265 (8- and 10-bit) and
//! libsvtav1 (8- and 10-bit) run in the same process on the same frames, with the settings
//! `serve` uses (capture::libav). The content is the test pattern with a textured band that
//! scrolls (a fixed, smoothed noise image moved 6 px right and 2 px down per frame): motion an
//! encoder can predict, like a scrolling page or a panning game, so bitrate buys quality. (The
//! pattern's own `with_noise` band is fresh noise every frame: nothing can predict it and every
//! encoder ends at the same PSNR, which says nothing.) Each frame is timed from its `encode`
//! call to the arrival of its own access unit, so pipelined encoders (SVT-AV1 holds 2–3 frames)
//! are charged their lag.

use std::time::Instant;

use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::libav::{LibavDecoder, LibavEncoder, psnr};
use punktfunk_capture::pattern::TestPattern;
use punktfunk_capture::video::{VideoCodec, VideoFormat};
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig};

/// One encoder at one target bitrate.
#[derive(Debug, Clone)]
pub struct CodecPoint {
    /// Encoder name ("openh264", "libx264", …).
    pub encoder: String,
    /// Picture format.
    pub format: VideoFormat,
    /// Target bitrate, kbit/s.
    pub target_kbps: u32,
    /// Encode time per frame, milliseconds, sorted.
    pub encode_ms: Vec<f64>,
    /// Bitrate produced, kbit/s (bytes of all access units over the frames' duration).
    pub actual_kbps: f64,
    /// Mean luma PSNR, dB.
    pub psnr_mean: f64,
    /// Lowest luma PSNR of a frame, dB.
    pub psnr_min: f64,
    /// Frames that came out (pipelined encoders hold the last few back).
    pub frames_out: usize,
}

impl CodecPoint {
    /// Percentile `p` of the encode times.
    pub fn ms(&self, p: f64) -> f64 {
        if self.encode_ms.is_empty() {
            return f64::NAN;
        }
        let i = ((self.encode_ms.len() - 1) as f64 * p / 100.0).round() as usize;
        self.encode_ms[i]
    }
}

/// The encoders compared: (name, format).
pub fn encoders() -> Vec<(&'static str, VideoFormat)> {
    let ten = |c| VideoFormat {
        ten_bit: true,
        ..VideoFormat::of(c)
    };
    vec![
        ("openh264", VideoFormat::of(VideoCodec::H264)),
        ("libx264", VideoFormat::of(VideoCodec::H264)),
        ("libx265", VideoFormat::of(VideoCodec::Hevc)),
        ("libx265", ten(VideoCodec::Hevc)),
        ("libsvtav1", VideoFormat::of(VideoCodec::Av1)),
        ("libsvtav1", ten(VideoCodec::Av1)),
        ("libaom-av1", VideoFormat::of(VideoCodec::Av1)),
        ("libaom-av1", ten(VideoCodec::Av1)),
    ]
}

/// Encodes `frames` pattern frames of `width`×`height`@`fps` with `encoder` at `kbps`, decodes
/// every access unit and compares it with its source.
pub fn measure(
    encoder: &str,
    format: VideoFormat,
    (width, height, fps): (u32, u32, u32),
    kbps: u32,
    frames: usize,
) -> Result<CodecPoint, String> {
    let config = VideoEncoderConfig {
        width,
        height,
        fps,
        bitrate_kbps: kbps,
    };
    let mut enc: Box<dyn VideoEncoder> = if encoder == "openh264" {
        Box::new(OpenH264Encoder::new(config).map_err(|e| e.to_string())?)
    } else {
        Box::new(LibavEncoder::new(encoder, format, config, None).map_err(|e| e.to_string())?)
    };
    let mut dec = LibavDecoder::new(format.codec).map_err(|e| e.to_string())?;
    let mut pat = TestPattern::new(width, height).map_err(|e| e.to_string())?;
    let texture = Texture::new(width as usize, height as usize / 3);
    let mut sources = Vec::with_capacity(frames);
    let mut submitted = Vec::with_capacity(frames);
    let mut out = vec![0u8; enc.max_encoded_len()];
    let (mut times, mut psnrs, mut bytes) = (Vec::new(), Vec::new(), 0usize);
    for n in 0..frames as u64 {
        let mut frame = pat.new_frame();
        pat.render(&mut frame, n, n * 1_000_000 / u64::from(fps))
            .map_err(|e| e.to_string())?;
        texture.paint(&mut frame, n as usize);
        sources.push(frame);
        submitted.push(Instant::now());
        let mut aus = Vec::new();
        let e = enc
            .encode(&sources[n as usize], &mut out)
            .map_err(|e| e.to_string())?;
        if e.len > 0 {
            aus.push((e.index, out[..e.len].to_vec()));
        }
        while let Some(e) = enc.drain(&mut out).map_err(|e| e.to_string())? {
            aus.push((e.index, out[..e.len].to_vec()));
        }
        for (i, _) in &aus {
            if let Some(t) = submitted.get(*i as usize) {
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
        for (i, au) in aus {
            bytes += au.len();
            if let Some(pic) = dec.decode(&au).map_err(|e| e.to_string())? {
                psnrs.push(psnr(sources[i as usize].y(), &pic.y));
            }
        }
    }
    times.sort_by(f64::total_cmp);
    let out_frames = psnrs.len();
    Ok(CodecPoint {
        encoder: encoder.into(),
        format,
        target_kbps: kbps,
        encode_ms: times,
        actual_kbps: bytes as f64 * 8.0 / 1000.0 / (out_frames.max(1) as f64 / f64::from(fps)),
        psnr_mean: psnrs.iter().sum::<f64>() / out_frames.max(1) as f64,
        psnr_min: psnrs.iter().copied().fold(f64::INFINITY, f64::min),
        frames_out: out_frames,
    })
}

/// A smoothed noise image the size of the bottom third, painted scrolled into each frame.
struct Texture {
    width: usize,
    height: usize,
    luma: Vec<u8>,
}

impl Texture {
    fn new(width: usize, height: usize) -> Self {
        // xorshift noise, then a 4×4 box blur: detail at several scales, still compressible.
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let raw: Vec<u8> = (0..width * height)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 56) as u8
            })
            .collect();
        let mut luma = vec![0u8; width * height];
        for y in 0..height {
            for x in 0..width {
                let mut sum = 0u32;
                for dy in 0..4 {
                    for dx in 0..4 {
                        sum += u32::from(raw[((y + dy) % height) * width + (x + dx) % width]);
                    }
                }
                luma[y * width + x] = (sum / 16) as u8;
            }
        }
        Self {
            width,
            height,
            luma,
        }
    }

    /// Paints the texture, moved by frame `n`, over the bottom `height` rows' luma.
    fn paint(&self, frame: &mut punktfunk_capture::Frame, n: usize) {
        let stride = frame.y_stride();
        let rows = frame.height() as usize;
        let (y, _, _) = frame.planes_mut();
        let (dx, dy) = (n * 6, n * 2);
        for row in 0..self.height.min(rows) {
            let src = &self.luma
                [((row + self.height * 64 - dy % self.height) % self.height) * self.width..]
                [..self.width];
            let dst = &mut y[(rows - self.height + row) * stride..][..self.width];
            let shift = dx % self.width;
            dst[shift..].copy_from_slice(&src[..self.width - shift]);
            dst[..shift].copy_from_slice(&src[self.width - shift..]);
        }
    }
}

/// The bitrate (kbit/s) at which an encoder's rate–quality curve (its points at several target
/// rates) reaches luma PSNR `psnr`: log-rate interpolated linearly in PSNR between the two
/// measured points around it; `None` outside the measured range.
pub fn rate_at_psnr(points: &[CodecPoint], psnr: f64) -> Option<f64> {
    let mut curve: Vec<(f64, f64)> = points
        .iter()
        .map(|p| (p.psnr_mean, p.actual_kbps.ln()))
        .collect();
    curve.sort_by(|a, b| a.0.total_cmp(&b.0));
    curve.windows(2).find_map(|w| {
        let ((q0, r0), (q1, r1)) = (w[0], w[1]);
        (q0 <= psnr && psnr <= q1 && q1 > q0)
            .then(|| (r0 + (r1 - r0) * (psnr - q0) / (q1 - q0)).exp())
    })
}

/// Every encoder of [`encoders`] that this build can open, at each rate of `rates`: the
/// points in order, and the markdown table of them.
pub fn sweep(size: (u32, u32, u32), rates: &[u32], frames: usize) -> (Vec<CodecPoint>, String) {
    sweep_only(size, rates, frames, None)
}

/// [`sweep`] restricted to the encoders named in `only`.
pub fn sweep_only(
    size: (u32, u32, u32),
    rates: &[u32],
    frames: usize,
    only: Option<&[String]>,
) -> (Vec<CodecPoint>, String) {
    use std::fmt::Write as _;
    let mut table = String::from(
        "| encoder | format | target kbit/s | encode p50 ms | encode p99 ms | produced kbit/s | \
         PSNR-Y mean dB | PSNR-Y min dB | frames out |\n|---|---|---|---|---|---|---|---|---|\n",
    );
    let mut points = Vec::new();
    for (name, format) in encoders() {
        if only.is_some_and(|o| !o.iter().any(|x| x == name)) {
            continue;
        }
        for &kbps in rates {
            match measure(name, format, size, kbps, frames) {
                Ok(p) => {
                    let _ = writeln!(
                        table,
                        "| {name} | {format} | {kbps} | {:.2} | {:.2} | {:.0} | {:.2} | {:.2} | {} |",
                        p.ms(50.0),
                        p.ms(99.0),
                        p.actual_kbps,
                        p.psnr_mean,
                        p.psnr_min,
                        p.frames_out
                    );
                    points.push(p);
                }
                Err(e) => {
                    let _ = writeln!(
                        table,
                        "| {name} | {format} | {kbps} | failed: {e} | | | | | |"
                    );
                }
            }
        }
    }
    (points, table)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn point(kbps: f64, psnr: f64) -> CodecPoint {
        CodecPoint {
            encoder: "x".into(),
            format: VideoFormat::of(VideoCodec::H264),
            target_kbps: 0,
            encode_ms: vec![],
            actual_kbps: kbps,
            psnr_mean: psnr,
            psnr_min: psnr,
            frames_out: 1,
        }
    }

    #[test]
    fn rate_at_psnr_interpolates_inside_the_curve_only() {
        let curve = [
            point(4000.0, 30.0),
            point(16000.0, 40.0),
            point(8000.0, 35.0),
        ];
        let r = rate_at_psnr(&curve, 32.5).unwrap();
        assert!((r - 4000f64 * 2f64.sqrt()).abs() < 1.0, "{r}");
        assert!((rate_at_psnr(&curve, 40.0).unwrap() - 16000.0).abs() < 1e-6);
        assert_eq!(rate_at_psnr(&curve, 29.0), None);
        assert_eq!(rate_at_psnr(&curve, 41.0), None);
    }
}
