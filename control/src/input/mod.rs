//! GameStream input: decode the client's input packets and inject them into the host.
//!
//! ```text
//!  control stream (0x0206, decrypted)
//!        │ input packet bytes
//!        ▼
//!  wire::decode ──► InputEvent ──► InputSink::inject
//!  (pure)                          ├─ UinputSink   /dev/uinput: keyboard, mouse, absolute
//!                                  │                pointer, touch screen, one pad per
//!                                  │                connected gamepad        (act)
//!                                  ├─ WlrSink      wlroots virtual keyboard + pointer bound
//!                                  │                to the session's output   (act)
//!                                  ├─ MutterSink   Mutter RemoteDesktop Notify* on the
//!                                  │                session's own monitor (act, feature
//!                                  │                `mutter`)
//!                                  ├─ KwinSink     KWin fake input aimed at the session's
//!                                  │                output (feature `kwin`)   (act)
//!                                  └─ CountingSink counts per kind when uinput is absent
//! ```
//!
//! Decide modules (no I/O, no clock, no threads): [`wire`] (decoder/encoder), [`gamepad`]
//! (pad arrival/removal/state tracking), [`compositor`] (events → compositor calls), [`keymap`] (Win32 VK → Linux key codes, keyboard
//! state), [`pointer`](mod@pointer) (absolute scaling, wheel notches, touch slots). Act modules: [`uinput`], [`wlr`], `mutter` (feature `mutter`).
//!
//! What this module deliberately does not do: decrypt or frame control messages (the control
//! stream hands over the input packet), synthesize Unicode text, drive pens or controller
//! touchpads/motion sensors, or send rumble back to the client. See `docs/input.md`.
//!
//! ```
//! use punktfunk_control::input::{decode, encode, CountingSink, InputEvent, InputKind, InputSink};
//! let packet = encode(&InputEvent::MouseMove { dx: 3, dy: -2 });
//! let event = decode(&packet).unwrap();
//! let mut sink = CountingSink::new();
//! sink.inject(&event).unwrap();
//! assert_eq!(sink.count(InputKind::MouseMove), 1);
//! ```

pub mod compositor;
pub mod gamepad;
pub mod keymap;
#[cfg(feature = "kwin")]
pub mod kwin;
#[cfg(feature = "mutter")]
pub mod mutter;
pub mod pointer;
pub mod uinput;
pub mod wire;
pub mod wlr;

use thiserror::Error;
use tracing::{debug, info};

pub use gamepad::{GamepadChange, Gamepads, PadInfo, PadState};
#[cfg(feature = "kwin")]
pub use kwin::KwinSink;
pub use uinput::UinputSink;
pub use wire::{
    BatteryState, ControllerArrival, ControllerBattery, ControllerKind, ControllerMotion,
    ControllerTouch, GamepadState, InputError, InputEvent, InputKind, InputStats, Modifiers,
    MotionKind, MouseButton, PenEvent, PenTool, TouchEvent, TouchKind, Utf8Text, decode, encode,
    encode_into,
};
pub use wlr::{WlrSink, WlrSinkStats};

/// Injecting an event into the host failed. Local OS trouble only: malformed peer input is an
/// [`InputError`] and never reaches a sink.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum InjectError {
    /// A uinput operation failed (open, device setup, write).
    #[error("uinput {device}: {source}")]
    Io {
        /// Which device or step.
        device: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The compositor refused or did not take an event (wlroots virtual keyboard/pointer): a
    /// dead or hung compositor, or the session's output gone.
    #[error("compositor input: {source}")]
    Compositor {
        /// What the Wayland back end reported.
        #[source]
        source: punktfunk_capture::wlroots::WlrInputError,
    },
    /// Mutter refused or did not take an event (RemoteDesktop `Notify*`): Mutter gone or hung,
    /// or the stream's session stopped.
    #[cfg(feature = "mutter")]
    #[error("mutter input: {source}")]
    Mutter {
        /// What the RemoteDesktop call reported.
        #[source]
        source: punktfunk_capture::mutter::MutterError,
    },
    /// KWin's fake input failed (cargo feature `kwin`): a dead KWin, or the output gone.
    #[cfg(feature = "kwin")]
    #[error("KWin input: {source}")]
    Kwin {
        /// What the KWin back end reported.
        #[source]
        source: punktfunk_capture::kwin::KwinError,
    },
}

/// Something that turns input events into host input.
pub trait InputSink: Send {
    /// Injects one event. An `Err` concerns this event only; the sink stays usable.
    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError>;
}

/// Counts events per kind and logs each at debug level. Used when the host cannot inject
/// (no `/dev/uinput`), and in tests.
#[derive(Debug, Clone, Default)]
pub struct CountingSink {
    counts: [u64; InputKind::COUNT],
}

impl CountingSink {
    /// All counts zero.
    pub fn new() -> Self {
        Self::default()
    }

    /// Events of `kind` seen so far.
    pub fn count(&self, kind: InputKind) -> u64 {
        self.counts[kind as usize]
    }

    /// Events seen so far, all kinds.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// `(kind, count)` for every kind, in [`InputKind::ALL`] order.
    pub fn counts(&self) -> impl Iterator<Item = (InputKind, u64)> + '_ {
        InputKind::ALL
            .iter()
            .copied()
            .zip(self.counts.iter().copied())
    }
}

impl InputSink for CountingSink {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        let kind = event.kind();
        self.counts[kind as usize] += 1;
        debug!(kind = kind.name(), ?event, "input event (not injected)");
        Ok(())
    }
}

/// The best sink this host has: [`UinputSink`] when `/dev/uinput` can be opened for writing
/// and the devices can be created, else a [`CountingSink`] (with one info line saying why).
pub fn open_default() -> Box<dyn InputSink> {
    match UinputSink::open() {
        Ok(sink) => Box::new(sink),
        Err(e) => {
            info!("input: uinput unavailable ({e}); input events are counted, not injected");
            Box::new(CountingSink::new())
        }
    }
}

/// Decodes control-stream input packets and injects them into a sink, counting what it sees.
/// The streaming side hands it every 0x0206 payload.
pub struct InputDispatcher {
    sink: Box<dyn InputSink>,
    stats: InputStats,
    inject_errors: u64,
}

impl std::fmt::Debug for InputDispatcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InputDispatcher")
            .field("stats", &self.stats)
            .field("inject_errors", &self.inject_errors)
            .finish_non_exhaustive()
    }
}

impl InputDispatcher {
    /// A dispatcher feeding `sink`.
    pub fn new(sink: Box<dyn InputSink>) -> Self {
        Self {
            sink,
            stats: InputStats::default(),
            inject_errors: 0,
        }
    }

    /// Decode counters so far.
    pub fn stats(&self) -> InputStats {
        self.stats
    }

    /// Events the sink refused.
    pub fn inject_errors(&self) -> u64 {
        self.inject_errors
    }
}

impl crate::stream::session::InputHandler for InputDispatcher {
    fn handle_input(&mut self, packet: &[u8]) {
        let event = decode(packet);
        self.stats.record(&event);
        match event {
            Ok(e) => {
                if let Err(err) = self.sink.inject(&e) {
                    self.inject_errors += 1;
                    tracing::debug!(error = %err, "input event not injected");
                }
            }
            Err(err) => tracing::debug!(error = %err, "input packet dropped"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counting_sink_counts_per_kind() {
        let mut s = CountingSink::new();
        for ev in [
            InputEvent::MouseMove { dx: 1, dy: 1 },
            InputEvent::MouseMove { dx: 2, dy: 2 },
            InputEvent::Scroll { amount: 120 },
            InputEvent::EnableHaptics { enabled: true },
        ] {
            s.inject(&ev).unwrap();
        }
        assert_eq!(s.count(InputKind::MouseMove), 2);
        assert_eq!(s.count(InputKind::Scroll), 1);
        assert_eq!(s.count(InputKind::Key), 0);
        assert_eq!(s.total(), 4);
        assert_eq!(s.counts().count(), InputKind::COUNT);
    }

    #[test]
    fn open_default_always_gives_a_sink() {
        // With or without /dev/uinput, a sink comes back and accepts events.
        let mut sink = open_default();
        sink.inject(&InputEvent::EnableHaptics { enabled: true })
            .unwrap();
    }

    #[test]
    fn dispatcher_counts_good_bad_and_unknown_packets() {
        use crate::stream::session::InputHandler;
        let mut d = InputDispatcher::new(Box::new(CountingSink::new()));
        let good = encode(&InputEvent::MouseMove { dx: 1, dy: -1 });
        d.handle_input(&good);
        d.handle_input(&[]);
        d.handle_input(&[0, 0, 0, 4, 0x78, 0x56, 0x34, 0x12]);
        d.handle_input(&[0xff; 64]);
        let s = d.stats();
        assert_eq!((s.decoded, s.unknown_type, s.malformed), (1, 1, 2));
        assert_eq!(d.inject_errors(), 0);
    }
}
