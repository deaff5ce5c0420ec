//! punktfunk-capture: the frames and sound a GameStream host sends, and their encoders.
//!
//! What it does:
//! * [`pattern::TestPattern`]: an animated I420 test picture at any even size from 64×64 to
//!   3840×2160. It is never black, moves every frame, and carries the frame number and the
//!   capture time in big black/white blocks ([`stamp`]) that survive lossy H.264, so a client
//!   can read them back from decoded frames ([`stamp::read_stamp`], or `tests/pattern_stamp.py`
//!   from Python). [`source::PatternSource`] adds frame numbering and the clock.
//! * [`video::VideoEncoder`]: the encoder interface of the host's encode stage (Annex-B out,
//!   IDR on request, reconfigure by rebuilding), and [`h264::OpenH264Encoder`], a software
//!   H.264 encoder with low-latency settings.
//! * [`annexb`]: NAL splitting, slice types and SPS fields, to check an encoder's output.
//! * [`audio`]: a continuous-phase test tone and an Opus encoder configured like Sunshine
//!   (CBR, restricted low delay, stereo/5.1/7.1, 5 or 10 ms packets), plus a decoder.
//! * [`display`]: the [`display::VirtualDisplay`] and [`display::FrameSource`] interfaces
//!   (the pattern source is one); [`wlroots`]: headless sway outputs over sway IPC and their
//!   capture with wlr-screencopy (SHM); [`convert`]: BGRx → I420 for the encoders.
//!
//! * `pipewire` (cargo feature `pipewire`, off by default): video frames from a PipeWire node
//!   (screencast, camera, GStreamer), copied into reused buffers with a monotonic timestamp,
//!   and audio (F32LE) from a source or a sink's monitor.
//! * `mutter` (cargo feature `mutter`, implies `pipewire`): GNOME Mutter virtual monitors
//!   (RemoteDesktop + ScreenCast `RecordVirtual` over the session bus with zbus), their frames
//!   through PipeWire, and input through the RemoteDesktop session.
//! * `kwin` (cargo feature `kwin`, implies `pipewire`): KWin virtual outputs
//!   (`zkde_screencast_unstable_v1`), their PipeWire frames, and input through
//!   `org_kde_kwin_fake_input` ([`kwin`]).
//! * `gpu` (cargo features `vulkan` and `cuda`, off by default): the zero-copy path. A DMA-BUF
//!   import plan (`gpu::plan`, pure), a Vulkan device that imports DMA-BUFs, uploads
//!   system-memory frames and exports memory as an OPAQUE_FD, and the CUDA driver API that
//!   imports that fd as a device pointer. Both libraries are opened at run time.
//!
//! What it deliberately does not do: pace frames (the pipeline's capture stage asks when it
//! wants one), packetize, encrypt or send (engine), or run the screencast portal handshake yet,
//! or encode on the GPU (NVENC/VA-API plug in behind [`video::VideoEncoder`] later; the GPU
//! path ends at a CUDA device pointer). Layouts and settings are documented in docs/capture.md.
//!
//! Decide and act: `frame`, `stamp`, `pattern`, `annexb`, `video`, `display`, `convert`,
//! `wlroots::message`, `mutter::plan`, `kwin::plan`, `audio::config` and `audio::tone` are pure (no clock, no
//! I/O, `#![forbid(unsafe_code)]`). `clock` reads `CLOCK_MONOTONIC`, `source` uses it, `h264`
//! drives openh264, `wlroots::{ipc, display, screencopy}` talk to sway's sockets (no `unsafe`:
//! the SHM buffer is read with `pread`, not mapped), `kwin::{display, capture, input}` to KWin's
//! socket and its PipeWire node (no `unsafe`) and `audio::opus` is the libopus FFI (the crate's
//! only `unsafe`, besides the clock read and, with features `vulkan`/`cuda`, `gpu::vulkan` and
//! `gpu::cuda`, the Vulkan and CUDA FFI; `gpu::plan` is pure).
//!
//! # Example
//!
//! ```
//! use punktfunk_capture::h264::OpenH264Encoder;
//! use punktfunk_capture::pattern::TestPattern;
//! use punktfunk_capture::stamp::read_stamp;
//! use punktfunk_capture::video::{VideoEncoder, VideoEncoderConfig};
//!
//! let config = VideoEncoderConfig { width: 640, height: 360, fps: 60, bitrate_kbps: 4_000 };
//! let mut pattern = TestPattern::new(640, 360)?;
//! let mut frame = pattern.new_frame(); // allocated once, reused
//! let mut encoder = OpenH264Encoder::new(config)?;
//! let mut out = vec![0u8; encoder.max_encoded_len()];
//!
//! pattern.render(&mut frame, 0, 1_000)?; // frame 0, captured at t = 1000 µs
//! let stamp = read_stamp(frame.y(), 640, 360, frame.y_stride()).expect("just written");
//! assert_eq!((stamp.frame, stamp.capture_us), (0, 1_000));
//!
//! let encoded = encoder.encode(&frame, &mut out)?;
//! assert!(encoded.is_keyframe()); // the first frame is an IDR with SPS and PPS
//! let access_unit = &out[..encoded.len]; // Annex-B, ready for the packetizer
//! # assert!(access_unit.starts_with(&[0, 0, 0, 1]));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod annexb;
pub mod audio;
#[allow(unsafe_code)]
pub mod clock;
pub mod convert;
pub mod desktop;
pub mod display;
pub mod frame;
#[cfg(any(feature = "vulkan", feature = "cuda"))]
#[allow(unsafe_code)]
pub mod gpu;
pub mod grid;
pub mod h264;
#[cfg(feature = "kwin")]
pub mod kwin;
#[cfg(feature = "libav")]
#[allow(unsafe_code)]
pub mod libav;
#[cfg(feature = "mutter")]
pub mod mutter;
pub mod pattern;
#[cfg(feature = "pipewire")]
pub mod pipewire;
pub mod scale;
pub mod source;
pub mod stages;
pub mod stamp;
pub mod video;
pub mod wlroots;

pub use frame::{Frame, FrameError};
pub use stamp::{Stamp, read_stamp};
pub use video::{EncodeError, EncodedFrame, FrameKind, VideoEncoder, VideoEncoderConfig};
