//! Measures openh264 encode time per frame on the test pattern.
//!
//! ```text
//! cargo run --release -p punktfunk-capture --example encode_timing -- \
//!     [WIDTHxHEIGHT ...] [--frames N] [--fps N] [--kbps N] [--noise] [--dump DIR]
//! ```
//!
//! Defaults: 1280x720 and 1920x1080, 600 frames, 60 fps, 10 000 kbit/s. Prints, per size, the
//! pattern render time and the encode time (mean, median, 99th percentile, max; the first frame,
//! an IDR, is reported apart), and the mean access-unit size. `--noise` turns on the pattern's
//! noise band (frames then fill the bitrate). `--dump DIR` also writes each
//! stream as DIR/pattern-WxH.h264 (Annex-B; `ffplay` or `ffmpeg -i` read it).

use std::time::Instant;

use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::pattern::TestPattern;
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig};

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i]
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut sizes = Vec::new();
    let (mut frames, mut fps, mut kbps, mut dump) = (600u64, 60u32, 10_000u32, None);
    let mut noise = false;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        let mut value = || args.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--frames" => frames = value()?.parse()?,
            "--fps" => fps = value()?.parse()?,
            "--kbps" => kbps = value()?.parse()?,
            "--noise" => noise = true,
            "--dump" => dump = Some(std::path::PathBuf::from(value()?)),
            size => {
                let (w, h) = size.split_once('x').ok_or(format!("bad size {size}"))?;
                sizes.push((w.parse::<u32>()?, h.parse::<u32>()?));
            }
        }
    }
    if sizes.is_empty() {
        sizes = vec![(1280, 720), (1920, 1080)];
    }
    println!(
        "openh264 (software), {frames} frames, {fps} fps, {kbps} kbit/s, 1 thread, 1 slice, \
         noise {}",
        if noise { "on" } else { "off" }
    );
    for (width, height) in sizes {
        let config = VideoEncoderConfig {
            width,
            height,
            fps,
            bitrate_kbps: kbps,
        };
        let mut enc = OpenH264Encoder::new(config)?;
        let mut pattern = TestPattern::new(width, height)?.with_noise(noise);
        let mut frame = pattern.new_frame();
        let mut out = vec![0u8; enc.max_encoded_len()];
        let mut stream = Vec::new();
        let (mut render_ms, mut encode_ms, mut bytes) = (Vec::new(), Vec::new(), 0usize);
        for i in 0..frames {
            let t0 = Instant::now();
            pattern.render(&mut frame, i, i * 1_000_000 / u64::from(fps))?;
            let t1 = Instant::now();
            let e = enc.encode(&frame, &mut out)?;
            let t2 = Instant::now();
            render_ms.push((t1 - t0).as_secs_f64() * 1e3);
            encode_ms.push((t2 - t1).as_secs_f64() * 1e3);
            bytes += e.len;
            if dump.is_some() {
                stream.extend_from_slice(&out[..e.len]);
            }
        }
        let first = encode_ms[0];
        let mut steady = encode_ms[1..].to_vec();
        steady.sort_by(f64::total_cmp);
        let mean = steady.iter().sum::<f64>() / steady.len() as f64;
        let render = render_ms.iter().sum::<f64>() / render_ms.len() as f64;
        println!(
            "{width}x{height}: encode mean {mean:.2} ms, p50 {:.2}, p99 {:.2}, max {:.2} \
             (first/IDR {first:.2}); render {render:.2} ms; mean AU {:.1} KiB",
            percentile(&steady, 0.5),
            percentile(&steady, 0.99),
            steady[steady.len() - 1],
            bytes as f64 / frames as f64 / 1024.0,
        );
        if let Some(dir) = &dump {
            let path = dir.join(format!("pattern-{width}x{height}.h264"));
            std::fs::write(&path, &stream)?;
            println!("  wrote {}", path.display());
        }
    }
    Ok(())
}
