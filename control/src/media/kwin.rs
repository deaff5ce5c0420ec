//! A KWin desktop per session (act, cargo feature `kwin`): every stream gets a virtual output
//! of KWin at its client's size (`zkde_screencast_unstable_v1.stream_virtual_output`), captured
//! from the PipeWire node KWin streams it to, converted to I420 and encoded with openh264; its
//! input goes through KWin's fake input aimed at that output (`input::kwin`); sound is the
//! desktop's (`super::audio`). A punktfunk/1 renegotiation sets the output to the new mode,
//! which for KWin means a new output and stream of the same name (`KwinDisplay::set_mode`); the
//! capture follows the new node and the input finds the output again by its name.
//!
//! KWin removes the output when its stream is closed, which happens when the stream's
//! [`KwinDisplay`] is dropped with the session. KWin 5.27 runs every virtual output at 60 Hz and
//! makes them only in its DRM backend (a real session on a GPU); docs/capture.md, "KWin (KDE)".

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use punktfunk_capture::VideoEncoder;
use punktfunk_capture::desktop::DesktopCapture;
use punktfunk_capture::display::{DisplayMode, VirtualDisplay};
use punktfunk_capture::kwin::{self, KwinCapture, KwinDisplay};
use punktfunk_capture::stages::{EncodeStage, ModeSwitch};

use super::pattern::{encoder_for_mode, video_encoder};
use crate::input::InputDispatcher;
use crate::input::kwin::KwinSink;
use crate::stream::sdp::StreamConfig;
use crate::stream::session::{AudioSource, InputHandler, MediaFactory, VideoMedia};

/// How long one KWin round trip, the PipeWire connection or a first frame may take. Generous:
/// KWin 5.27 answers a new client's first round trip only after work that grows with the size
/// of the client's executable (measured here: 0.03 s for a stripped 1.4 MB binary, 0.6 s for a
/// 48 MB debug binary, over 2 s for the 173 MB debug `punktfunk`; docs/capture.md).
const TIMEOUT: Duration = Duration::from_secs(5);

/// The Wayland socket of a KWin this process can reach that offers virtual outputs: the
/// socket `$WAYLAND_DISPLAY` names (absolute, or in `$XDG_RUNTIME_DIR`), which must answer
/// with `zkde_screencast_unstable_v1` v2 or later.
pub(super) fn endpoint_from_env() -> Result<PathBuf, String> {
    let display = std::env::var_os("WAYLAND_DISPLAY")
        .filter(|d| !d.is_empty())
        .ok_or_else(|| "$WAYLAND_DISPLAY is not set".to_owned())?;
    let socket = if Path::new(&display).is_absolute() {
        PathBuf::from(display)
    } else {
        std::env::var_os("XDG_RUNTIME_DIR")
            .map(|r| PathBuf::from(r).join(&display))
            .ok_or_else(|| "$WAYLAND_DISPLAY is relative and $XDG_RUNTIME_DIR unset".to_owned())?
    };
    let offer = kwin::probe(&socket, TIMEOUT)
        .map_err(|e| format!("Wayland compositor at {}: {e}", socket.display()))?;
    if !offer.virtual_outputs() {
        return Err(format!(
            "the compositor at {} offers no zkde_screencast_unstable_v1 v2 (not KWin, or KWin \
             hides it from this program: grant it with a .desktop file's \
             X-KDE-Wayland-Interfaces, or run KWin with KWIN_WAYLAND_NO_PERMISSION_CHECKS=1)",
            socket.display()
        ));
    }
    Ok(socket)
}

/// KWin desktops, one virtual output per stream (see the module docs).
#[derive(Debug)]
pub struct KwinMedia {
    wayland: PathBuf,
    next: AtomicU32,
}

impl KwinMedia {
    /// Desktops on the KWin listening at `wayland`.
    pub fn new(wayland: PathBuf) -> Self {
        Self {
            wayland,
            next: AtomicU32::new(1),
        }
    }
}

/// A stream's desktop: its output, the capture of it, and its input (`None`: KWin refused fake
/// input; the host-wide handler takes the input).
struct Desktop {
    display: KwinDisplay,
    capture: KwinCapture,
    input: Option<Box<dyn InputHandler>>,
}

impl KwinMedia {
    /// A virtual output at `mode` for one stream, its capture and its input.
    fn desktop(&self, mode: DisplayMode) -> Result<Desktop, String> {
        // Unique per process and stream: two outputs of one name could not be told apart.
        let name = format!(
            "punktfunk-{}-{}",
            std::process::id(),
            self.next.fetch_add(1, Ordering::Relaxed)
        );
        let display = KwinDisplay::create(&self.wayland, &name, mode, TIMEOUT)
            .map_err(|e| format!("KWin virtual output: {e}"))?;
        let (output, node) = (display.name().to_owned(), display.node_id());
        tracing::info!(%output, ?node, %mode, "KWin: virtual output created for this stream");
        // KWin sends frames on damage only; an unchanged picture is repeated each interval.
        let interval = Duration::from_secs(1) / mode.refresh_mhz.div_ceil(1000).max(1);
        let capture = KwinCapture::follow(None, display.node_watch(), TIMEOUT, interval);
        let input: Option<Box<dyn InputHandler>> =
            match KwinSink::connect(&self.wayland, &output, TIMEOUT) {
                Ok(sink) => Some(Box::new(InputDispatcher::new(Box::new(sink)))),
                Err(e) => {
                    tracing::warn!(%output, error = %e,
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

impl MediaFactory for KwinMedia {
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

    /// A punktfunk/1 stream's desktop: renegotiation recreates the output at the new size.
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
}
