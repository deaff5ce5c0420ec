//! Desktop capture cost at 1080p: a private headless sway's output captured with
//! wlr-screencopy (SHM copy) and converted to I420, then encoded with openh264, against the
//! built-in test pattern rendered and encoded at the same size, in the same run.
//!
//! Per frame, the capture path (`Screencopy::next_frame`: request, compositor copy into our
//! SHM buffer, our read; then `bgrx_to_i420`) and capture→encoded (the same plus the encode)
//! are timed; rounds of desktop and pattern frames alternate so background load hits both.

use std::time::{Duration, Instant};

use punktfunk_capture::convert::bgrx_to_i420;
use punktfunk_capture::display::{DisplayMode, FrameSource, VirtualDisplay};
use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::source::PatternSource;
use punktfunk_capture::wlroots::{HeadlessSway, Screencopy, SwayDisplay};
use punktfunk_capture::{Frame, VideoEncoder, VideoEncoderConfig};

/// Per-frame times of one path, microseconds.
#[derive(Debug, Clone, Default)]
pub struct Times {
    /// Capture (or render) and conversion to I420.
    pub capture_us: Vec<f64>,
    /// Capture, conversion and encode.
    pub to_encoded_us: Vec<f64>,
}

/// What [`measure`] found.
#[derive(Debug, Clone)]
pub struct DesktopCost {
    /// The sway output's path.
    pub desktop: Times,
    /// The test pattern's path.
    pub pattern: Times,
    /// Captured frame size.
    pub size: (u32, u32),
}

/// Percentile `p` (0..=100) of `v`.
pub fn percentile(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    if s.is_empty() {
        return f64::NAN;
    }
    let i = ((s.len() - 1) as f64 * p / 100.0).round() as usize;
    s[i]
}

/// Starts a headless sway, makes a `width`×`height` output and measures `frames` frames of
/// each path (see the module docs); `Err` says why it could not run (no sway here).
pub fn measure(width: u32, height: u32, frames: usize) -> Result<DesktopCost, String> {
    let sway = HeadlessSway::start().map_err(|e| e.to_string())?;
    let mut display = SwayDisplay::create(sway.ipc_socket(), DisplayMode::new(width, height, 60))
        .map_err(|e| format!("output: {e}"))?;
    let name = VirtualDisplay::name(&display).to_owned();
    // Something to draw (swaybg paints the background); the cost does not depend on it.
    let _ = display
        .ipc()
        .run_command(&format!("output {name} bg #3366cc solid_color"));
    let mut cap = Screencopy::connect(sway.wayland_socket(), &name, Duration::from_secs(5))
        .map_err(|e| format!("screencopy: {e}"))?;
    let config = VideoEncoderConfig {
        width,
        height,
        fps: 60,
        bitrate_kbps: 20_000,
    };
    let mut enc_d = OpenH264Encoder::new(config).map_err(|e| e.to_string())?;
    let mut enc_p = OpenH264Encoder::new(config).map_err(|e| e.to_string())?;
    let mut out = vec![0u8; enc_d.max_encoded_len()];
    let mut frame = Frame::new(width, height).map_err(|e| e.to_string())?;
    let mut pattern = PatternSource::new(width, height).map_err(|e| e.to_string())?;
    // Wait for the output to have its size (the mode is applied asynchronously).
    let ready = Instant::now() + Duration::from_secs(5);
    loop {
        let f = cap.next_frame().map_err(|e| e.to_string())?;
        if (f.width, f.height) == (width, height) {
            break;
        }
        if Instant::now() > ready {
            return Err(format!("output stayed {}x{}", f.width, f.height));
        }
    }
    let mut cost = DesktopCost {
        desktop: Times::default(),
        pattern: Times::default(),
        size: (width, height),
    };
    for _ in 0..frames {
        let t0 = Instant::now();
        let f = cap.next_frame().map_err(|e| e.to_string())?;
        bgrx_to_i420(f.data, f.stride, &mut frame).map_err(|e| e.to_string())?;
        let t1 = Instant::now();
        enc_d.encode(&frame, &mut out).map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        cost.desktop.capture_us.push((t1 - t0).as_secs_f64() * 1e6);
        cost.desktop
            .to_encoded_us
            .push((t2 - t0).as_secs_f64() * 1e6);

        let t0 = Instant::now();
        let p = pattern.capture();
        let t1 = Instant::now();
        enc_p.encode(p, &mut out).map_err(|e| e.to_string())?;
        let t2 = Instant::now();
        cost.pattern.capture_us.push((t1 - t0).as_secs_f64() * 1e6);
        cost.pattern
            .to_encoded_us
            .push((t2 - t0).as_secs_f64() * 1e6);
    }
    Ok(cost)
}
