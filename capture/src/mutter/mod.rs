//! GNOME Mutter virtual monitors and input (cargo feature `mutter`): one RemoteDesktop session
//! per stream, with a linked ScreenCast session recording a virtual monitor, captured through
//! PipeWire; input through the same RemoteDesktop session.
//!
//! ```text
//!  MutterDisplay::create(bus, W×H@Hz)
//!    RemoteDesktop.CreateSession ─► ScreenCast.CreateSession(remote-desktop-session-id)
//!    ─► RecordVirtual(cursor-mode, is-platform) ─► Start ─► PipeWireStreamAdded(node)
//!    PipeWireCapture::connect_with(node, exactly W×H, default Hz): Mutter creates the virtual
//!    monitor at the size the consumer fixes
//!  set_mode(W'×H')  ─► renegotiate (update_params, new EnumFormat); if Mutter does not fix the
//!                      new size within the timeout: stop the session and record a new one
//!  remove / drop    ─► RemoteDesktop.Session.Stop (the virtual monitor goes with it)
//!
//!  MutterFrames (FrameSource)  ◄── frames of the current capture, stamped when dequeued;
//!                                  optionally the last one again on a still desktop
//!  MutterInput                 ──► NotifyKeyboardKeycode, NotifyPointer*, NotifyTouch* on the
//!                                  session (send: reply awaited; post: no reply); absolute
//!                                  positions on the session's own stream
//! ```
//!
//! What it does not do: the xdg-desktop-portal path (a portal asks the user; this talks to
//! Mutter's private interfaces on the session bus, as gnome-remote-desktop does), DMA-BUF,
//! cursor metadata, clipboard. docs/capture.md, "Mutter (GNOME)"; docs/input.md, "Mutter
//! RemoteDesktop".
//!
//! Decide and act: [`plan`] (option dictionaries, mode → PipeWire request, input calls) is
//! pure and `#![forbid(unsafe_code)]`; [`dbus`] (the bus calls) and this module (session,
//! capture and input handles) act.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use punktfunk_capture::display::{DisplayMode, FrameSource, VirtualDisplay};
//! use punktfunk_capture::mutter::{Bus, MutterDisplay, VirtualOptions};
//!
//! let bus = Bus::connect(None, Duration::from_secs(5))?;
//! let mut display = MutterDisplay::create(&bus, None, DisplayMode::new(1280, 720, 60),
//!                                         VirtualOptions::default())?;
//! let mut frames = display.frames();
//! let frame = frames.next_frame()?;
//! println!("{}x{} at {} µs", frame.width, frame.height, frame.capture_us);
//! display.input().send(punktfunk_capture::mutter::InputCall::Keycode { code: 30, pressed: true })?;
//! display.set_mode(DisplayMode::new(1920, 1080, 60))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod dbus;
pub mod plan;

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

pub use dbus::Bus;
pub use plan::{CursorMode, InputCall, ScrollAxis, VirtualOptions};

use crate::display::{
    CaptureError as FrameError, CapturedFrame, DisplayError, DisplayMode, FrameSource,
    PixelFormat as FramePixelFormat, VirtualDisplay,
};
use crate::pipewire::{CaptureError, PipeWireCapture, PixelFormat, Target, VideoFrame};

/// Errors of the Mutter back end. Keeps apart the bus (I/O), Mutter's refusals, deadlines,
/// the PipeWire side and local misuse.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum MutterError {
    /// The session bus could not be reached or a call failed on the way (no bus, broken
    /// connection, malformed reply).
    #[error("session bus: {what}: {error}")]
    Bus {
        /// What we were doing.
        what: &'static str,
        /// zbus's error.
        error: String,
    },
    /// Mutter answered a call with a D-Bus error (e.g. `ServiceUnknown`: no Mutter on this
    /// bus; `Failed`: it refused the virtual monitor).
    #[error("{call} refused: {name}: {reason}")]
    Refused {
        /// The call.
        call: &'static str,
        /// The D-Bus error name.
        name: String,
        /// Mutter's message.
        reason: String,
    },
    /// Something awaited did not happen in time.
    #[error("no {what} within {timeout:?}")]
    Timeout {
        /// What we waited for.
        what: &'static str,
        /// How long.
        timeout: Duration,
    },
    /// The PipeWire capture of the stream failed.
    #[error("capture: {0}")]
    Capture(#[from] CaptureError),
    /// The mode is out of range (local misuse).
    #[error("invalid display mode {0}")]
    InvalidMode(DisplayMode),
    /// The session was removed.
    #[error("the Mutter session was removed")]
    Gone,
}

impl From<MutterError> for DisplayError {
    fn from(e: MutterError) -> Self {
        match e {
            MutterError::InvalidMode(mode) => DisplayError::InvalidMode(mode),
            MutterError::Refused { call, name, reason } => DisplayError::Refused {
                command: call.to_owned(),
                reason: format!("{name}: {reason}"),
            },
            MutterError::Gone => DisplayError::Gone("mutter virtual monitor".into()),
            MutterError::Timeout { .. } => {
                DisplayError::Io(std::io::Error::new(std::io::ErrorKind::TimedOut, e))
            }
            other => DisplayError::Protocol(other.to_string()),
        }
    }
}

/// How set_mode changes were carried out (see the module docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModeChanges {
    /// Honoured by renegotiating the PipeWire format in place.
    pub renegotiated: u64,
    /// Carried out by stopping the session and recording a new virtual monitor.
    pub recreated: u64,
    /// Time the last change took until Mutter fixed the new size.
    pub last: Duration,
}

/// The live part of a display, shared with its frame source and input handle.
#[derive(Debug, Default)]
struct Live {
    session: Option<dbus::Session>,
    capture: Option<Arc<PipeWireCapture>>,
    mode: Option<DisplayMode>,
}

fn lock(live: &Mutex<Live>) -> MutexGuard<'_, Live> {
    // Plain data: a panic elsewhere leaves nothing half-updated that matters here.
    live.lock().unwrap_or_else(|e| e.into_inner())
}

/// A virtual monitor of Mutter made for one stream (see the module docs). Stops its session on
/// drop.
#[derive(Debug)]
pub struct MutterDisplay {
    bus: Bus,
    remote: Option<String>,
    options: VirtualOptions,
    timeout: Duration,
    name: String,
    mode: DisplayMode,
    live: Arc<Mutex<Live>>,
    changes: ModeChanges,
}

impl MutterDisplay {
    /// Records a virtual monitor of `mode` on the Mutter reachable through `bus`, captured from
    /// the PipeWire daemon `remote` (`None`: `$XDG_RUNTIME_DIR/pipewire-0`; see
    /// [`PipeWireCapture::connect_to`]); returns once Mutter fixed the monitor's size. Every
    /// wait is bounded by the bus timeout.
    pub fn create(
        bus: &Bus,
        remote: Option<String>,
        mode: DisplayMode,
        options: VirtualOptions,
    ) -> Result<Self, MutterError> {
        let mode = mode
            .validate()
            .map_err(|_| MutterError::InvalidMode(mode))?;
        let mut display = Self {
            bus: bus.clone(),
            remote,
            options,
            timeout: bus.timeout(),
            name: String::new(),
            mode,
            live: Arc::new(Mutex::new(Live::default())),
            changes: ModeChanges::default(),
        };
        display.record(mode)?;
        Ok(display)
    }

    /// A new session and capture at `mode`, replacing the current ones.
    fn record(&mut self, mode: DisplayMode) -> Result<(), MutterError> {
        self.stop_live()?;
        let session = self.bus.open_virtual(self.options)?;
        let capture = PipeWireCapture::connect_with(
            self.remote.clone(),
            Target::Id(session.node_id),
            plan::request_for(mode),
            self.timeout,
        )?;
        self.name = session.stream.clone();
        let capture = Arc::new(capture);
        {
            let mut live = lock(&self.live);
            live.session = Some(session);
            live.capture = Some(Arc::clone(&capture));
            live.mode = Some(mode);
        }
        wait_for_size(&capture, mode, self.timeout)?;
        self.mode = mode;
        Ok(())
    }

    fn stop_live(&mut self) -> Result<(), MutterError> {
        let (session, capture) = {
            let mut live = lock(&self.live);
            live.mode = None;
            (live.session.take(), live.capture.take())
        };
        drop(capture); // our stream first: the node goes with the session
        match session {
            Some(mut session) => session.stop(),
            None => Ok(()),
        }
    }

    /// A frame source reading this display's stream (several may exist; each gets the newest
    /// frame when it asks). Follows the display across a recreated session.
    pub fn frames(&self) -> MutterFrames {
        MutterFrames {
            live: Arc::clone(&self.live),
            frame: VideoFrame::default(),
            index: 0,
            timeout: self.timeout,
            repeat_after: None,
            repeated: 0,
        }
    }

    /// An input handle on this display's RemoteDesktop session (follows a recreated session).
    pub fn input(&self) -> MutterInput {
        MutterInput {
            bus: self.bus.clone(),
            live: Arc::clone(&self.live),
        }
    }

    /// How mode changes were carried out so far.
    pub fn mode_changes(&self) -> ModeChanges {
        self.changes
    }

    /// The current capture's counters (frames, replaced frames, copy time), if recording.
    pub fn capture_stats(&self) -> Option<crate::pipewire::CaptureStats> {
        lock(&self.live).capture.as_ref().map(|c| c.stats())
    }

    /// The PipeWire node id of the current stream.
    pub fn node_id(&self) -> Option<u32> {
        lock(&self.live).session.as_ref().map(|s| s.node_id)
    }
}

/// Waits until `capture`'s producer fixed `mode`'s size.
fn wait_for_size(
    capture: &PipeWireCapture,
    mode: DisplayMode,
    timeout: Duration,
) -> Result<(), MutterError> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(f) = capture.format()
            && (f.width, f.height) == (mode.width, mode.height)
        {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(MutterError::Timeout {
                what: "virtual monitor of the requested size",
                timeout,
            });
        }
        // A stream that ended reports why.
        if let Some(e) = capture.ended() {
            return Err(e.into());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

impl VirtualDisplay for MutterDisplay {
    /// The ScreenCast stream's object path (e.g. `/org/gnome/Mutter/ScreenCast/Stream/u1`).
    fn name(&self) -> &str {
        &self.name
    }

    fn mode(&self) -> DisplayMode {
        self.mode
    }

    /// Renegotiates the stream's size in place; when Mutter does not take it within the
    /// timeout, records a new virtual monitor at `mode` instead.
    fn set_mode(&mut self, mode: DisplayMode) -> Result<(), DisplayError> {
        let mode = mode.validate()?;
        let started = Instant::now();
        let capture = lock(&self.live).capture.clone().ok_or(MutterError::Gone)?;
        capture
            .request(plan::request_for(mode))
            .map_err(MutterError::from)?;
        match wait_for_size(&capture, mode, self.timeout) {
            Ok(()) => {
                lock(&self.live).mode = Some(mode);
                self.mode = mode;
                self.changes.renegotiated += 1;
            }
            Err(e) => {
                tracing::warn!(%e, %mode, "mutter: renegotiation not honoured; recording anew");
                drop(capture);
                self.record(mode)?;
                self.changes.recreated += 1;
            }
        }
        self.changes.last = started.elapsed();
        tracing::info!(%mode, took = ?self.changes.last, "mutter: virtual monitor mode set");
        Ok(())
    }

    fn remove(&mut self) -> Result<(), DisplayError> {
        Ok(self.stop_live()?)
    }
}

impl Drop for MutterDisplay {
    fn drop(&mut self) {
        if let Err(e) = self.stop_live() {
            tracing::warn!(%e, "mutter: removing the virtual monitor");
        }
    }
}

/// The frames of a [`MutterDisplay`]'s stream as a [`FrameSource`].
#[derive(Debug)]
pub struct MutterFrames {
    live: Arc<Mutex<Live>>,
    frame: VideoFrame,
    index: u64,
    timeout: Duration,
    repeat_after: Option<Duration>,
    repeated: u64,
}

impl MutterFrames {
    /// How long [`FrameSource::next_frame`] waits (default: the bus timeout). Mutter sends a
    /// frame only when the monitor changes (damage), so a quiet desktop sends none.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// Makes [`FrameSource::next_frame`] hand out the last frame again, stamped now, when no
    /// new one came within `wait` (one frame interval of the session): Mutter sends frames
    /// only on damage, and a still desktop must still be streamed at the session's rate.
    /// Until the first frame it waits the full timeout. `None` (default): never repeat.
    pub fn repeat_after(&mut self, wait: Option<Duration>) {
        self.repeat_after = wait;
    }

    /// Frames handed out again because nothing changed (see [`repeat_after`](Self::repeat_after)).
    pub fn repeated(&self) -> u64 {
        self.repeated
    }

    /// The last frame taken, as the capture delivered it.
    pub fn video_frame(&self) -> &VideoFrame {
        &self.frame
    }
}

impl FrameSource for MutterFrames {
    fn formats(&self) -> &[FramePixelFormat] {
        &[FramePixelFormat::Bgrx, FramePixelFormat::Bgra]
    }

    fn next_frame(&mut self) -> Result<CapturedFrame<'_>, FrameError> {
        let capture = lock(&self.live)
            .capture
            .clone()
            .ok_or_else(|| FrameError::OutputGone("mutter virtual monitor".into()))?;
        let have_frame = !self.frame.data.is_empty();
        let wait = match self.repeat_after {
            Some(wait) if have_frame => wait,
            _ => self.timeout,
        };
        match capture.next_frame(&mut self.frame, wait) {
            Err(CaptureError::Timeout(_)) if have_frame && self.repeat_after.is_some() => {
                // No damage: the picture is still the last frame's, as of now.
                self.frame.capture_us = crate::clock::monotonic_us();
                self.repeated += 1;
                Ok(())
            }
            other => other,
        }
        .map_err(|e| match e {
            CaptureError::Timeout(t) => FrameError::Timeout(t),
            CaptureError::ProducerGone => FrameError::OutputGone("mutter virtual monitor".into()),
            other => FrameError::Protocol(other.to_string()),
        })?;
        let format = match self.frame.format {
            PixelFormat::Bgrx => FramePixelFormat::Bgrx,
            PixelFormat::Bgra => FramePixelFormat::Bgra,
            PixelFormat::I420 => FramePixelFormat::I420,
            PixelFormat::Nv12 => FramePixelFormat::Nv12,
            other => {
                return Err(FrameError::Unsupported(format!(
                    "mutter stream format {other:?}"
                )));
            }
        };
        let index = self.index;
        self.index += 1;
        Ok(CapturedFrame {
            width: self.frame.width,
            height: self.frame.height,
            stride: self.frame.stride(),
            format,
            capture_us: self.frame.capture_us,
            index,
            data: &self.frame.data,
        })
    }
}

/// Input into a [`MutterDisplay`]'s RemoteDesktop session. Cheap to clone; usable from another
/// thread than the display's.
#[derive(Debug, Clone)]
pub struct MutterInput {
    bus: Bus,
    live: Arc<Mutex<Live>>,
}

impl MutterInput {
    /// Sends one call and waits for Mutter's answer (one D-Bus round trip: it waits for
    /// Mutter's main loop, which is busy while it renders a frame). Absolute motion and touch
    /// positions are monitor pixels of the session's own stream (see
    /// [`plan::monitor_position`]).
    pub fn send(&self, call: InputCall) -> Result<(), MutterError> {
        self.notify(call, true)
    }

    /// Sends one call without waiting for an answer (`NO_REPLY_EXPECTED`): returns once the
    /// message is queued; calls keep their order; a refusal by Mutter is not seen (a broken
    /// bus still is). What the GameStream sink uses: input must not wait for a frame render.
    pub fn post(&self, call: InputCall) -> Result<(), MutterError> {
        self.notify(call, false)
    }

    fn notify(&self, call: InputCall, reply: bool) -> Result<(), MutterError> {
        let (session, stream) = {
            let live = lock(&self.live);
            let s = live.session.as_ref().ok_or(MutterError::Gone)?;
            (s.remote_desktop.clone(), s.stream.clone())
        };
        self.bus.notify(&session, &stream, call, reply)
    }

    /// The monitor's current mode (for scaling client positions), `None` once removed.
    pub fn mode(&self) -> Option<DisplayMode> {
        lock(&self.live).mode
    }
}
