//! A GNOME Mutter desktop per session (act): every stream gets its own RemoteDesktop session
//! with a virtual monitor at its client's mode (ScreenCast `RecordVirtual`), captured through
//! PipeWire and encoded with openh264, and its input sent through the same RemoteDesktop
//! session (`input::mutter`); sound is the desktop's (`media::audio`). The monitor goes when the stream ends
//! (the session is stopped). docs/capture.md, "Mutter (GNOME)".

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use punktfunk_capture::VideoEncoder;
use punktfunk_capture::desktop::DesktopCapture;
use punktfunk_capture::display::{DisplayMode, VirtualDisplay as _};
use punktfunk_capture::mutter::{
    Bus, InputCall, MutterDisplay, MutterFrames, MutterInput, VirtualOptions,
};
use punktfunk_capture::stages::{EncodeStage, ModeSwitch};

use super::choice::MutterEndpoint;
use super::pattern::{encoder_for_mode, video_encoder};
use crate::input::InputDispatcher;
use crate::input::mutter::MutterSink;
use crate::stream::sdp::StreamConfig;
use crate::stream::session::{AudioSource, InputHandler, MediaFactory, VideoMedia};

/// How long one D-Bus call, the monitor's creation or one frame may take.
const TIMEOUT: Duration = Duration::from_secs(2);

impl MutterEndpoint {
    /// The Mutter on this process's session bus (`$DBUS_SESSION_BUS_ADDRESS`), if
    /// `org.gnome.Mutter.ScreenCast` has an owner there.
    pub fn from_env() -> Result<Self, String> {
        let bus = std::env::var("DBUS_SESSION_BUS_ADDRESS")
            .ok()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| "$DBUS_SESSION_BUS_ADDRESS is not set".to_owned())?;
        let conn =
            Bus::connect(Some(&bus), TIMEOUT).map_err(|e| format!("session bus {bus}: {e}"))?;
        match conn.has_screen_cast() {
            Ok(true) => Ok(Self {
                bus,
                pipewire: None,
            }),
            Ok(false) => Err(format!(
                "org.gnome.Mutter.ScreenCast is not on the session bus {bus} (no GNOME session)"
            )),
            Err(e) => Err(format!("session bus {bus}: {e}")),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Mutter desktops, one virtual monitor per stream (see the module docs).
#[derive(Debug)]
pub struct MutterMedia {
    bus: Bus,
    pipewire: Option<String>,
    /// Input handles of the streams' monitors, by display name (for [`MediaFactory::start_app`]).
    displays: Mutex<HashMap<String, MutterInput>>,
}

impl MutterMedia {
    /// Desktops on the Mutter at `endpoint`; the bus connection is kept (Mutter stops a
    /// session when its creator leaves the bus).
    pub fn connect(endpoint: &MutterEndpoint) -> Result<Self, String> {
        let bus = Bus::connect(Some(&endpoint.bus), TIMEOUT)
            .map_err(|e| format!("session bus {}: {e}", endpoint.bus))?;
        Ok(Self {
            bus,
            pipewire: endpoint.pipewire.clone(),
            displays: Mutex::new(HashMap::new()),
        })
    }
}

/// A stream's monitor, its frames and its input, before the pipeline stages are built.
struct Desktop {
    display: MutterDisplay,
    frames: MutterFrames,
    input: Option<Box<dyn InputHandler>>,
    name: String,
}

impl MutterMedia {
    /// A virtual monitor at `mode` with its frame source and input handler.
    fn desktop(&self, mode: DisplayMode) -> Result<Desktop, String> {
        let display = MutterDisplay::create(
            &self.bus,
            self.pipewire.clone(),
            mode,
            VirtualOptions::default(),
        )
        .map_err(|e| format!("mutter virtual monitor: {e}"))?;
        let name = display.name().to_owned();
        let node = display.node_id();
        tracing::info!(stream = %name, ?node, %mode,
            "mutter: virtual monitor created for this stream");
        let mut frames = display.frames();
        frames.set_timeout(TIMEOUT);
        // A still desktop sends no frames (Mutter sends on damage): the last one is repeated,
        // so the stream keeps its rate. `DesktopCapture` asks once per interval and a frame
        // that came since waits in the mailbox, so only a short wait (1/8 interval) is spent
        // hoping for one that is about to come.
        let fps = (mode.refresh_mhz / 1000).max(1);
        frames.repeat_after(Some(Duration::from_secs(1) / fps / 8));
        let input: Option<Box<dyn InputHandler>> = Some(Box::new(InputDispatcher::new(Box::new(
            MutterSink::new(display.input()),
        ))));
        {
            let mut displays = lock(&self.displays);
            // Streams that ended took their monitors with them.
            displays.retain(|_, input| input.mode().is_some());
            displays.insert(name.clone(), display.input());
        }
        Ok(Desktop {
            display,
            frames,
            input,
            name,
        })
    }
}

impl MediaFactory for MutterMedia {
    fn video(&self, config: &StreamConfig) -> Result<VideoMedia, String> {
        let (enc, frame_capacity) = video_encoder(config)?;
        let c = enc.config();
        let (w, h, fps) = (c.width, c.height, c.fps);
        let d = self.desktop(DisplayMode::new(w, h, fps))?;
        let source =
            DesktopCapture::new(d.display, d.frames, w, h, fps).map_err(|e| e.to_string())?;
        let encoder = EncodeStage::new(enc).map_err(|e| e.to_string())?;
        Ok(VideoMedia {
            input: d.input,
            display: Some(d.name),
            ..VideoMedia::new(Box::new(source), Box::new(encoder), frame_capacity)
        })
    }

    /// A punktfunk/1 stream: the monitor starts in the switch's mode and a renegotiation sets
    /// it in place (`MutterDisplay::set_mode`: the PipeWire format is renegotiated).
    fn switched_video(&self, switch: Arc<ModeSwitch>) -> Result<VideoMedia, String> {
        let first = switch.get().0;
        let (enc, frame_capacity) = encoder_for_mode(first)?;
        let d = self.desktop(DisplayMode::new(first.width, first.height, first.fps))?;
        let source = DesktopCapture::with_switch(d.display, d.frames, switch.clone())
            .map_err(|e| e.to_string())?;
        let encoder = EncodeStage::with_switch(enc, switch).map_err(|e| e.to_string())?;
        Ok(VideoMedia {
            input: d.input,
            display: Some(d.name),
            ..VideoMedia::new(Box::new(source), Box::new(encoder), frame_capacity)
        })
    }

    fn audio(&self, config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
        super::audio::desktop_audio(config)
    }

    /// Moves the pointer to the middle of the stream's monitor (Mutter opens a new window on
    /// the monitor under the pointer), then starts `command` as a child of this process, in
    /// its environment (`WAYLAND_DISPLAY` of the GNOME session).
    fn start_app(&self, display: &str, command: &[String]) -> Result<(), String> {
        let input = lock(&self.displays)
            .get(display)
            .cloned()
            .ok_or_else(|| format!("no Mutter monitor {display}"))?;
        let mode = input
            .mode()
            .ok_or_else(|| format!("the Mutter monitor {display} was removed"))?;
        input
            .send(InputCall::MotionAbsolute {
                x: f64::from(mode.width / 2),
                y: f64::from(mode.height / 2),
            })
            .map_err(|e| e.to_string())?;
        let (program, args) = command
            .split_first()
            .ok_or_else(|| "empty command".to_owned())?;
        let mut child = std::process::Command::new(program)
            .args(args)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("start {program}: {e}"))?;
        // Reaped when it exits (no zombie left behind).
        std::thread::Builder::new()
            .name("app-reaper".into())
            .spawn(move || {
                let _ = child.wait();
            })
            .map_err(|e| e.to_string())?;
        Ok(())
    }
}
