//! Virtual displays and frame sources: the seams real desktop capture plugs into.
//!
//! ```text
//!  session ──create_output(mode)──► VirtualDisplay (an output of a compositor, e.g. sway's
//!     │                              HEADLESS-n)  ── set_mode / remove (also on drop)
//!     └──────────next_frame()─────► FrameSource (that output's pixels, or the test pattern)
//!                                     └─► CapturedFrame { width, height, stride, format,
//!                                                         capture_us, data }
//! ```
//!
//! Pure: types and traits only. The implementations act: [`crate::wlroots`] (sway IPC and
//! wlr-screencopy) and [`crate::source::PatternSource`] (the test pattern).
#![forbid(unsafe_code)]

use std::fmt;

use thiserror::Error;

/// A display mode: size in pixels and refresh rate in millihertz (60 Hz = 60 000, as sway's
/// IPC and wlroots report it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DisplayMode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Refresh rate in mHz.
    pub refresh_mhz: u32,
}

impl DisplayMode {
    /// `width`×`height` at a whole number of Hz.
    pub const fn new(width: u32, height: u32, refresh_hz: u32) -> Self {
        Self {
            width,
            height,
            refresh_mhz: refresh_hz * 1000,
        }
    }

    /// Refuses zero sizes, sizes above 8192 and refresh rates outside 1..=1000 Hz.
    pub fn validate(self) -> Result<Self, DisplayError> {
        let ok = (1..=8192).contains(&self.width)
            && (1..=8192).contains(&self.height)
            && (1_000..=1_000_000).contains(&self.refresh_mhz);
        if ok {
            Ok(self)
        } else {
            Err(DisplayError::InvalidMode(self))
        }
    }
}

impl fmt::Display for DisplayMode {
    /// `1280x720@60Hz`, or `1280x720@59.940Hz`: the form sway's `output … mode` takes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (hz, frac) = (self.refresh_mhz / 1000, self.refresh_mhz % 1000);
        if frac == 0 {
            write!(f, "{}x{}@{hz}Hz", self.width, self.height)
        } else {
            write!(f, "{}x{}@{hz}.{frac:03}Hz", self.width, self.height)
        }
    }
}

/// Errors of virtual displays. Keeps apart what the compositor refused, what it answered
/// wrongly, and the OS-level failure to talk to it.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DisplayError {
    /// The mode is out of range (local misuse).
    #[error("invalid display mode {0}")]
    InvalidMode(DisplayMode),
    /// The compositor could not be reached or the connection broke (OS I/O, timeouts).
    #[error("compositor connection: {0}")]
    Io(#[from] std::io::Error),
    /// The compositor answered something this client does not understand.
    #[error("compositor protocol: {0}")]
    Protocol(String),
    /// The compositor refused a command, with its own reason.
    #[error("compositor refused `{command}`: {reason}")]
    Refused {
        /// The command sent.
        command: String,
        /// The compositor's error text.
        reason: String,
    },
    /// The compositor cannot do this (e.g. sway 1.7 cannot remove a headless output).
    #[error("compositor cannot: {0}")]
    Unsupported(String),
    /// The output was removed (by us or by someone else).
    #[error("output {0} is gone")]
    Gone(String),
}

/// One output of a compositor made for a session: created at a mode, changed in place, and
/// removed when the session ends. Implementations remove the output on drop too (errors there
/// are logged, not raised).
pub trait VirtualDisplay {
    /// The compositor's name for the output (e.g. `HEADLESS-2`); capture finds it by this name.
    fn name(&self) -> &str;
    /// The mode last set.
    fn mode(&self) -> DisplayMode;
    /// Changes the output's mode in place (punktfunk/1 renegotiation, a new launch).
    fn set_mode(&mut self, mode: DisplayMode) -> Result<(), DisplayError>;
    /// Removes the output. Removing twice is not an error.
    fn remove(&mut self) -> Result<(), DisplayError>;
}

/// Something that makes virtual outputs: one per session.
pub trait DisplayBackend {
    /// Creates a new output at `mode`.
    fn create_output(
        &mut self,
        mode: DisplayMode,
    ) -> Result<Box<dyn VirtualDisplay + Send>, DisplayError>;
}

/// How the pixels of a captured frame are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum PixelFormat {
    /// 4 bytes per pixel in memory order B, G, R, unused (`XRGB8888` little-endian, wl_shm
    /// `xrgb8888`); one plane of `height` rows of `stride` bytes.
    Bgrx,
    /// As [`PixelFormat::Bgrx`] with alpha in the fourth byte (`ARGB8888`).
    Bgra,
    /// Y plane, then interleaved CbCr at half resolution, both with `stride` bytes per row.
    Nv12,
    /// Y, U, V planes (4:2:0); Y rows of `stride` bytes, chroma rows of `stride / 2`
    /// ([`crate::Frame`]'s layout).
    I420,
    /// A DMA-BUF descriptor (GPU memory); `data` is empty. Declared for the zero-copy path, not
    /// produced yet.
    DmaBuf,
}

impl PixelFormat {
    /// Bytes of system memory a `height`-row frame of this format with `stride` takes
    /// (0 for DMA-BUF).
    pub fn frame_len(self, stride: usize, height: usize) -> usize {
        match self {
            Self::Bgrx | Self::Bgra => stride * height,
            Self::Nv12 | Self::I420 => stride * height + stride * height.div_ceil(2),
            Self::DmaBuf => 0,
        }
    }
}

/// A frame a [`FrameSource`] handed out; borrows the source's (or the caller's) buffer.
#[derive(Debug, Clone, Copy)]
pub struct CapturedFrame<'a> {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Bytes between the starts of two rows of the first plane.
    pub stride: usize,
    /// Pixel layout of `data`.
    pub format: PixelFormat,
    /// Capture time, `CLOCK_MONOTONIC` in µs ([`crate::clock::monotonic_us`]).
    pub capture_us: u64,
    /// Frame number on this source (0 for the first).
    pub index: u64,
    /// The pixels, [`PixelFormat::frame_len`] bytes, top row first.
    pub data: &'a [u8],
}

/// Errors of frame sources.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// The named output does not exist (never did, or was removed).
    #[error("output {0} not found or gone")]
    OutputGone(String),
    /// The compositor lacks what capture needs (a protocol, a pixel format).
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The compositor reported that this frame's copy failed.
    #[error("compositor failed the frame copy")]
    Failed,
    /// No answer within the deadline.
    #[error("no frame within {0:?}")]
    Timeout(std::time::Duration),
    /// The compositor broke the protocol or closed the connection.
    #[error("compositor protocol: {0}")]
    Protocol(String),
    /// OS I/O (sockets, memfd).
    #[error("capture I/O: {0}")]
    Io(#[from] std::io::Error),
    /// A frame of the wrong size was passed in (local misuse).
    #[error(transparent)]
    Frame(#[from] crate::FrameError),
}

/// A source of frames: a compositor output or the test pattern.
pub trait FrameSource {
    /// The formats this source can hand out, preferred first.
    fn formats(&self) -> &[PixelFormat];
    /// Captures the next frame (waiting for it if the source is paced by a compositor) into
    /// the source's own reusable buffer and returns it.
    fn next_frame(&mut self) -> Result<CapturedFrame<'_>, CaptureError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_print_as_sway_takes_them() {
        assert_eq!(DisplayMode::new(1280, 720, 60).to_string(), "1280x720@60Hz");
        let ntsc = DisplayMode {
            width: 1920,
            height: 1080,
            refresh_mhz: 59_940,
        };
        assert_eq!(ntsc.to_string(), "1920x1080@59.940Hz");
        let odd = DisplayMode {
            refresh_mhz: 60_005,
            ..ntsc
        };
        assert_eq!(odd.to_string(), "1920x1080@60.005Hz");
    }

    #[test]
    fn mode_validation() {
        assert!(DisplayMode::new(1280, 720, 60).validate().is_ok());
        assert!(DisplayMode::new(0, 720, 60).validate().is_err());
        assert!(DisplayMode::new(9000, 720, 60).validate().is_err());
        assert!(DisplayMode::new(1280, 720, 0).validate().is_err());
    }

    #[test]
    fn frame_lengths() {
        assert_eq!(PixelFormat::Bgrx.frame_len(5120, 720), 5120 * 720);
        assert_eq!(PixelFormat::I420.frame_len(1280, 720), 1280 * 720 * 3 / 2);
        assert_eq!(PixelFormat::Nv12.frame_len(64, 3), 64 * 3 + 64 * 2);
        assert_eq!(PixelFormat::DmaBuf.frame_len(64, 64), 0);
    }
}
