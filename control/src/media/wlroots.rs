//! A sway desktop per session (act): every stream gets a headless output at its client's mode,
//! captured with wlr-screencopy and encoded with openh264, and its input injected with the
//! virtual keyboard and a virtual pointer bound to that output (`input::wlr`); sound is the
//! default PipeWire sink's monitor (`super::audio`).
//!
//! sway 1.7 (Debian 12) cannot remove a headless output, so a stream's output is kept in a
//! pool when the stream ends and the next stream takes it (at its own mode) before a new one is
//! created; with sway ≥ 1.8 the output is removed when its stream ends.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use punktfunk_capture::VideoEncoder;
use punktfunk_capture::desktop::DesktopCapture;
use punktfunk_capture::display::{DisplayError, DisplayMode, VirtualDisplay};
use punktfunk_capture::stages::{EncodeStage, ModeSwitch};
use punktfunk_capture::wlroots::{Screencopy, SwayDisplay, SwayIpc};

use super::pattern::{encoder_for_mode, video_encoder};
use crate::input::InputDispatcher;
use crate::input::wlr::WlrSink;
use crate::stream::sdp::StreamConfig;
use crate::stream::session::{AudioSource, InputHandler, MediaFactory, VideoMedia};

/// How long one capture (or the IPC) may take before the stream is told it failed.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(2);

/// Where a sway listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WlrootsEndpoint {
    /// The IPC socket (`$SWAYSOCK`).
    pub ipc: PathBuf,
    /// The Wayland socket (`$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY`).
    pub wayland: PathBuf,
}

impl WlrootsEndpoint {
    /// The sway this process's environment names, if it answers: `$SWAYSOCK` must be set and
    /// answer an IPC request; the Wayland socket is `$WAYLAND_DISPLAY` (absolute, or in
    /// `$XDG_RUNTIME_DIR`), else the first `wayland-N` socket next to the IPC socket.
    pub fn from_env() -> Result<Self, String> {
        let ipc = std::env::var_os("SWAYSOCK")
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .ok_or_else(|| "$SWAYSOCK is not set".to_owned())?;
        SwayIpc::connect(&ipc, CAPTURE_TIMEOUT)
            .and_then(|mut c| c.version())
            .map_err(|e| format!("sway at {} does not answer: {e}", ipc.display()))?;
        let wayland = match std::env::var_os("WAYLAND_DISPLAY").filter(|s| !s.is_empty()) {
            Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
            Some(d) => std::env::var_os("XDG_RUNTIME_DIR")
                .map(|r| PathBuf::from(r).join(&d))
                .ok_or_else(|| {
                    "$WAYLAND_DISPLAY is relative and $XDG_RUNTIME_DIR unset".to_owned()
                })?,
            None => first_wayland_socket(ipc.parent().unwrap_or(Path::new("/")))
                .ok_or_else(|| format!("no wayland-N socket beside {}", ipc.display()))?,
        };
        if !wayland.exists() {
            return Err(format!(
                "Wayland socket {} does not exist",
                wayland.display()
            ));
        }
        Ok(Self { ipc, wayland })
    }
}

fn first_wayland_socket(dir: &Path) -> Option<PathBuf> {
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("wayland-") && !n.ends_with(".lock"))
        })
        .collect();
    found.sort();
    found.into_iter().next()
}

type Pool = Arc<Mutex<Vec<SwayDisplay>>>;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sway desktops, one headless output per stream (see the module docs).
#[derive(Debug)]
pub struct WlrootsMedia {
    endpoint: WlrootsEndpoint,
    /// Outputs of ended streams that sway could not remove, for the next streams.
    pool: Pool,
    /// Outputs are created one at a time (sway names a new output without telling which).
    creating: Mutex<()>,
}

impl WlrootsMedia {
    /// Desktops on the sway at `endpoint`.
    pub fn new(endpoint: WlrootsEndpoint) -> Self {
        Self {
            endpoint,
            pool: Arc::default(),
            creating: Mutex::new(()),
        }
    }

    /// An output at `mode`: one from the pool (set to `mode`), else a new one.
    fn output(&self, mode: DisplayMode) -> Result<PooledDisplay, DisplayError> {
        let reused = lock(&self.pool).pop();
        let display = match reused {
            Some(mut d) => match d.set_mode(mode) {
                Ok(()) => {
                    tracing::info!(output = d.name(), %mode, "sway: output reused for this stream");
                    d
                }
                Err(e) => {
                    tracing::warn!(output = d.name(), error = %e, "sway: pooled output unusable");
                    drop(d);
                    self.create(mode)?
                }
            },
            None => self.create(mode)?,
        };
        Ok(PooledDisplay {
            display: Some(display),
            pool: Arc::clone(&self.pool),
        })
    }

    fn create(&self, mode: DisplayMode) -> Result<SwayDisplay, DisplayError> {
        let _one = lock(&self.creating);
        let d = SwayDisplay::create(&self.endpoint.ipc, mode)?;
        tracing::info!(output = d.name(), %mode, "sway: virtual output created for this stream");
        Ok(d)
    }
}

/// A stream's desktop: its output, the capture of it, and its input (`None`: the compositor
/// refused a virtual keyboard/pointer; the host-wide handler takes the input).
struct Desktop {
    display: PooledDisplay,
    capture: Screencopy,
    input: Option<Box<dyn InputHandler>>,
}

impl WlrootsMedia {
    /// An output at `mode` for one stream, its capture and its input.
    fn desktop(&self, mode: DisplayMode) -> Result<Desktop, String> {
        let display = self
            .output(mode)
            .map_err(|e| format!("virtual output: {e}"))?;
        let capture = Screencopy::connect(&self.endpoint.wayland, display.name(), CAPTURE_TIMEOUT)
            .map_err(|e| format!("capturing {}: {e}", display.name()))?;
        // The stream's input goes into this compositor, the pointer bound to this output.
        let input: Option<Box<dyn InputHandler>> =
            match WlrSink::connect(&self.endpoint.wayland, display.name(), CAPTURE_TIMEOUT) {
                Ok(sink) => Some(Box::new(InputDispatcher::new(Box::new(sink)))),
                Err(e) => {
                    let output = display.name();
                    tracing::warn!(output, error = %e,
                        "no input into this desktop; the host-wide input handler takes it");
                    None
                }
            };
        Ok(Desktop {
            display,
            capture,
            input,
        })
    }
}

impl MediaFactory for WlrootsMedia {
    fn video(&self, config: &StreamConfig) -> Result<VideoMedia, String> {
        let (enc, frame_capacity) = video_encoder(config)?;
        let c = enc.config();
        let (w, h, fps) = (c.width, c.height, c.fps);
        let d = self.desktop(DisplayMode::new(w, h, fps))?;
        let output = d.display.name().to_owned();
        let source =
            DesktopCapture::new(d.display, d.capture, w, h, fps).map_err(|e| e.to_string())?;
        let encoder = EncodeStage::new(enc).map_err(|e| e.to_string())?;
        Ok(VideoMedia {
            input: d.input,
            display: Some(output),
            ..VideoMedia::new(Box::new(source), Box::new(encoder), frame_capacity)
        })
    }

    /// A punktfunk/1 stream's desktop: renegotiation sets the output's mode in place.
    fn switched_video(&self, switch: Arc<ModeSwitch>) -> Result<VideoMedia, String> {
        let first = switch.get().0;
        let (enc, frame_capacity) = encoder_for_mode(first)?;
        let d = self.desktop(DisplayMode::new(first.width, first.height, first.fps))?;
        let output = d.display.name().to_owned();
        let source = DesktopCapture::with_switch(d.display, d.capture, switch.clone())
            .map_err(|e| e.to_string())?;
        let encoder = EncodeStage::with_switch(enc, switch).map_err(|e| e.to_string())?;
        Ok(VideoMedia {
            input: d.input,
            display: Some(output),
            ..VideoMedia::new(Box::new(source), Box::new(encoder), frame_capacity)
        })
    }

    /// The desktop's sound: the default PipeWire sink's monitor, else the tone.
    fn audio(&self, config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
        super::audio::desktop_audio(config)
    }

    /// `focus output NAME; exec CMD`: sway starts the command (as its own user, in its
    /// environment), and its window opens on the session's output.
    fn start_app(&self, display: &str, command: &[String]) -> Result<(), String> {
        let mut ipc =
            SwayIpc::connect(&self.endpoint.ipc, CAPTURE_TIMEOUT).map_err(|e| e.to_string())?;
        let quoted: Vec<String> = command.iter().map(|a| shell_quote(a)).collect();
        ipc.run_command(&format!(
            "focus output {display}; exec {}",
            quoted.join(" ")
        ))
        .map_err(|e| e.to_string())?;
        Ok(())
    }
}

/// A stream's output: removed when the stream ends where sway can, else back to the pool.
struct PooledDisplay {
    display: Option<SwayDisplay>,
    pool: Pool,
}

impl PooledDisplay {
    fn get(&self) -> &SwayDisplay {
        self.display.as_ref().expect("present until drop")
    }
}

impl VirtualDisplay for PooledDisplay {
    fn name(&self) -> &str {
        self.get().name()
    }

    fn mode(&self) -> DisplayMode {
        self.get().mode()
    }

    fn set_mode(&mut self, mode: DisplayMode) -> Result<(), DisplayError> {
        self.display
            .as_mut()
            .expect("present until drop")
            .set_mode(mode)
    }

    fn remove(&mut self) -> Result<(), DisplayError> {
        self.display.as_mut().expect("present until drop").remove()
    }
}

impl Drop for PooledDisplay {
    fn drop(&mut self) {
        let Some(d) = self.display.take() else {
            return;
        };
        if d.can_remove() {
            drop(d); // removes it
        } else {
            tracing::debug!(output = d.name(), "sway: output kept for the next stream");
            lock(&self.pool).push(d);
        }
    }
}

/// `arg` as one word for `sh -c` (what sway's `exec` runs): single-quoted, quotes escaped.
fn shell_quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn arguments_stay_one_word() {
        assert_eq!(shell_quote("wev"), "'wev'");
        assert_eq!(shell_quote("it's; rm -rf /"), r"'it'\''s; rm -rf /'");
    }
}
