//! Software encoders side by side on the test pattern (bench::codecs): encode ms per frame,
//! bitrate produced and luma PSNR, at several target bitrates.
//!
//! `cargo run --release -p punktfunk-bench --bin codecs -- [--size 1920x1080] [--fps 60]
//! [--frames 120] [--kbps 5000,10000,20000] [--only libx264,openh264]`
//!
//! Prints a markdown table (for docs/benchmarks.md "Encoders") and the CPU it ran on.

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let size = arg(&args, "--size").unwrap_or_else(|| "1920x1080".into());
    let (w, h) = size
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?)))
        .expect("--size WxH");
    let fps: u32 = arg(&args, "--fps").map_or(60, |v| v.parse().expect("--fps N"));
    let frames: usize = arg(&args, "--frames").map_or(120, |v| v.parse().expect("--frames N"));
    let rates: Vec<u32> = arg(&args, "--kbps")
        .unwrap_or_else(|| "5000,10000,20000".into())
        .split(',')
        .map(|v| v.parse().expect("--kbps A,B"))
        .collect();
    let only: Option<Vec<String>> =
        arg(&args, "--only").map(|v| v.split(',').map(str::to_owned).collect());
    println!(
        "{w}x{h}@{fps}, {frames} frames of the test pattern with a scrolling textured band per point; {}",
        punktfunk_bench::machine()
    );
    println!();
    let (points, table) =
        punktfunk_bench::codecs::sweep_only((w, h, fps), &rates, frames, only.as_deref());
    print!("{table}");
    if points.is_empty() || table.contains("failed:") {
        std::process::exit(1);
    }
}
