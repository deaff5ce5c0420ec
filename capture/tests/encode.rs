//! End-to-end checks of the video path: pattern → openh264 encoder → decoder → stamp reader.
//!
//! * `encode_decode_720p`: 60 frames at 1280×720; the first access unit is SPS, PPS, IDR; no
//!   B slices; every decoded frame differs from the one before; [`read_stamp`] recovers every
//!   frame number and capture time from the decoded (lossy) pictures.
//! * `stamps_survive_a_low_bitrate_with_noise`: the same at 1 Mbit/s with the noise band on.
//! * `python_reader_agrees`: tests/pattern_stamp.py passes its self-test and reads the same stamps from decoded Y
//!   planes saved as PNG (skipped, with a message, when no python3 with numpy is found).
//! * `ffmpeg_decodes_and_python_reads_rgb`: FFmpeg (the decoder Moonlight uses) decodes the
//!   Annex-B stream to RGB PNGs and the Python reader reads them (skipped without ffmpeg).
//!
//! No timing assertions.

use std::path::{Path, PathBuf};
use std::process::Command;

use openh264::decoder::Decoder;
use openh264::formats::YUVSource;
use punktfunk_capture::annexb::{SliceType, SpsSummary, nal_type, nal_units};
use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::pattern::TestPattern;
use punktfunk_capture::stamp::crc32;
use punktfunk_capture::{FrameKind, Stamp, VideoEncoder, VideoEncoderConfig, read_stamp};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

const W: u32 = 1280;
const H: u32 = 720;
const FRAMES: u64 = 60;
/// Capture time of frame `i`: 60 fps from an arbitrary start, as a real clock would give.
fn capture_us(i: u64) -> u64 {
    5_000_000_000 + i * 16_667
}

/// One encoded access unit.
struct Unit {
    kind: FrameKind,
    bytes: Vec<u8>,
}

fn encode_pattern(bitrate_kbps: u32, noise: bool) -> Vec<Unit> {
    let config = VideoEncoderConfig {
        width: W,
        height: H,
        fps: 60,
        bitrate_kbps,
    };
    let mut enc = OpenH264Encoder::new(config).expect("720p60 is a valid config");
    let mut pattern = TestPattern::new(W, H)
        .expect("720p is a valid pattern size")
        .with_noise(noise);
    let mut frame = pattern.new_frame();
    let mut out = vec![0u8; enc.max_encoded_len()];
    (0..FRAMES)
        .map(|i| {
            pattern
                .render(&mut frame, i, capture_us(i))
                .expect("frame comes from this pattern");
            let e = enc.encode(&frame, &mut out).expect("encode");
            assert_eq!((e.index, e.capture_us), (i, capture_us(i)));
            assert!(e.len > 0, "frame {i} is empty");
            Unit {
                kind: e.kind,
                bytes: out[..e.len].to_vec(),
            }
        })
        .collect()
}

/// Decodes every unit; returns the luma planes, tightly packed (W×H each).
fn decode_luma(units: &[Unit]) -> Vec<Vec<u8>> {
    let mut dec = Decoder::new().expect("openh264 decoder");
    let mut planes = Vec::new();
    for (i, u) in units.iter().enumerate() {
        let pic = dec
            .decode(&u.bytes)
            .expect("our own stream decodes")
            .unwrap_or_else(|| panic!("frame {i} produced no picture"));
        assert_eq!(pic.dimensions(), (W as usize, H as usize));
        let stride = pic.strides().0;
        let mut y = Vec::with_capacity((W * H) as usize);
        for row in pic.y().chunks(stride).take(H as usize) {
            y.extend_from_slice(&row[..W as usize]);
        }
        planes.push(y);
    }
    planes
}

#[test]
fn encode_decode_720p() {
    let units = encode_pattern(6_000, false);

    // First access unit: SPS (7), PPS (8), then IDR slices (5) only.
    let first: Vec<u8> = nal_units(&units[0].bytes).map(|n| n.kind()).collect();
    assert_eq!(units[0].kind, FrameKind::Idr);
    assert_eq!(first[..2], [nal_type::SPS, nal_type::PPS], "{first:?}");
    assert!(
        first.len() > 2 && first[2..].iter().all(|&t| t == nal_type::IDR),
        "{first:?}"
    );
    let sps = SpsSummary::parse(nal_units(&units[0].bytes).next().unwrap()).unwrap();
    assert_eq!((sps.width, sps.height), (W, H));
    assert_eq!(sps.max_num_ref_frames, 1);

    // Later frames: P, no parameter sets, no IDR; no B slices anywhere.
    for (i, u) in units.iter().enumerate() {
        if i > 0 {
            assert_eq!(u.kind, FrameKind::Predicted, "frame {i}");
        }
        for nal in nal_units(&u.bytes) {
            if i > 0 {
                assert_eq!(nal.kind(), nal_type::SLICE, "frame {i}");
            }
            if let Some(t) = nal.slice_type() {
                assert_ne!(t, SliceType::B, "frame {i} has a B slice");
                let want = if i == 0 { SliceType::I } else { SliceType::P };
                assert_eq!(t, want, "frame {i}");
            }
        }
    }

    let planes = decode_luma(&units);
    for (i, y) in planes.iter().enumerate() {
        if i > 0 {
            assert_ne!(
                y,
                &planes[i - 1],
                "decoded frame {i} equals frame {}",
                i - 1
            );
        }
        let stamp = read_stamp(y, W as usize, H as usize, W as usize);
        assert_eq!(
            stamp,
            Some(Stamp {
                frame: i as u32,
                capture_us: capture_us(i as u64)
            }),
            "decoded frame {i}"
        );
    }
}

#[test]
fn stamps_survive_a_low_bitrate_with_noise() {
    // 1 Mbit/s at 720p60 is ~17 kbit per frame, and the noise band wants far more: the
    // encoder runs at its coarsest quantiser, the picture is blocky, the stamp still reads.
    let units = encode_pattern(1_000, true);
    let planes = decode_luma(&units);
    for (i, y) in planes.iter().enumerate() {
        let stamp = read_stamp(y, W as usize, H as usize, W as usize);
        assert_eq!(stamp.map(|s| s.frame), Some(i as u32), "decoded frame {i}");
    }
}

// ---------------------------------------------------------------------------------------------
// Cross-checks with the Python reader and FFmpeg.

/// A fresh scratch directory under the system temp dir, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pf-capture-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir is writable");
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A python3 that has numpy: `$PUNKTFUNK_PYTHON`, `python3` on PATH, or Debian's.
fn python_with_numpy() -> Option<String> {
    let candidates = std::env::var("PUNKTFUNK_PYTHON")
        .into_iter()
        .chain(["python3".to_string(), "/usr/bin/python3".to_string()]);
    candidates.into_iter().find(|py| {
        Command::new(py)
            .args(["-c", "import numpy"])
            .output()
            .is_ok_and(|o| o.status.success())
    })
}

fn reader_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/pattern_stamp.py")
}

/// Writes an 8-bit greyscale PNG (stored, uncompressed deflate blocks).
fn write_grey_png(path: &Path, width: u32, height: u32, pixels: &[u8]) {
    fn chunk(out: &mut Vec<u8>, kind: &[u8; 4], body: &[u8]) {
        out.extend_from_slice(&(body.len() as u32).to_be_bytes());
        let start = out.len();
        out.extend_from_slice(kind);
        out.extend_from_slice(body);
        let crc = crc32(&out[start..]);
        out.extend_from_slice(&crc.to_be_bytes());
    }
    let mut raw = Vec::new();
    for row in pixels.chunks(width as usize) {
        raw.push(0); // filter: none
        raw.extend_from_slice(row);
    }
    let mut z = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = raw.chunks(65_535).collect();
    for (i, block) in blocks.iter().enumerate() {
        z.push(u8::from(i + 1 == blocks.len()));
        let len = block.len() as u16;
        z.extend_from_slice(&len.to_le_bytes());
        z.extend_from_slice(&(!len).to_le_bytes());
        z.extend_from_slice(block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in &raw {
        a = (a + u32::from(byte)) % 65_521;
        b = (b + a) % 65_521;
    }
    z.extend_from_slice(&((b << 16) | a).to_be_bytes());
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend_from_slice(&width.to_be_bytes());
    ihdr.extend_from_slice(&height.to_be_bytes());
    ihdr.extend_from_slice(&[8, 0, 0, 0, 0]); // 8-bit grey, deflate, no interlace
    chunk(&mut png, b"IHDR", &ihdr);
    chunk(&mut png, b"IDAT", &z);
    chunk(&mut png, b"IEND", &[]);
    std::fs::write(path, png).expect("temp dir is writable");
}

/// Runs the Python reader on `files`; returns the (frame, capture_us) it printed per file.
fn run_python_reader(python: &str, files: &[PathBuf]) -> Vec<Option<(u32, u64)>> {
    let out = Command::new(python)
        .arg(reader_script())
        .args(files)
        .output()
        .expect("python3 ran a moment ago");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "pattern_stamp.py failed: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.lines()
        .map(|line| {
            let rest = line.rsplit(": ").next()?;
            let mut fields = rest.split(' ');
            let frame = fields.next()?.strip_prefix("frame=")?.parse().ok()?;
            let us = fields.next()?.strip_prefix("capture_us=")?.parse().ok()?;
            Some((frame, us))
        })
        .collect()
}

#[test]
fn python_reader_agrees() {
    let Some(python) = python_with_numpy() else {
        skip::skip(
            "python3-numpy",
            "no python3 with numpy (install python3-numpy)",
        );
        return;
    };
    // The script's own self-test first (synthetic frames, no arguments).
    let selftest = Command::new(&python)
        .arg(reader_script())
        .output()
        .expect("python3 ran a moment ago");
    assert!(
        selftest.status.success(),
        "pattern_stamp.py self-test failed: {}{}",
        String::from_utf8_lossy(&selftest.stdout),
        String::from_utf8_lossy(&selftest.stderr)
    );
    let units = encode_pattern(6_000, false);
    let planes = decode_luma(&units);
    let dir = Scratch::new("py");
    let picks = [0usize, 1, 29, 59];
    let files: Vec<PathBuf> = picks
        .iter()
        .map(|&i| {
            let path = dir.0.join(format!("y{i:02}.png"));
            write_grey_png(&path, W, H, &planes[i]);
            path
        })
        .collect();
    let got = run_python_reader(&python, &files);
    let want: Vec<_> = picks
        .iter()
        .map(|&i| Some((i as u32, capture_us(i as u64))))
        .collect();
    assert_eq!(got, want);
}

#[test]
fn ffmpeg_decodes_and_python_reads_rgb() {
    let Some(python) = python_with_numpy() else {
        skip::skip(
            "python3-numpy",
            "no python3 with numpy (install python3-numpy)",
        );
        return;
    };
    if Command::new("ffmpeg").arg("-version").output().is_err() {
        skip::skip("ffmpeg", "no ffmpeg on PATH");
        return;
    }
    let units = encode_pattern(6_000, false);
    let dir = Scratch::new("ffmpeg");
    let stream = dir.0.join("pattern.h264");
    let annexb: Vec<u8> = units.iter().flat_map(|u| u.bytes.iter().copied()).collect();
    std::fs::write(&stream, annexb).unwrap();
    let status = Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-loglevel",
            "error",
            "-y",
            "-f",
            "h264",
            "-i",
        ])
        .arg(&stream)
        .args([
            "-vf",
            "select='not(mod(n\\,20))'",
            "-fps_mode",
            "passthrough",
        ])
        .args(["-pix_fmt", "rgb24"])
        .arg(dir.0.join("rgb%02d.png"))
        .status()
        .unwrap();
    assert!(status.success(), "ffmpeg failed to decode the stream");
    let files: Vec<PathBuf> = (1..=3)
        .map(|n| dir.0.join(format!("rgb{n:02}.png")))
        .collect();
    let got = run_python_reader(&python, &files);
    let want: Vec<_> = [0u64, 20, 40]
        .iter()
        .map(|&i| Some((i as u32, capture_us(i))))
        .collect();
    assert_eq!(got, want);
}
