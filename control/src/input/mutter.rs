//! The Mutter input back end: decoded GameStream events into GNOME Mutter through the stream's
//! own RemoteDesktop session (act, thin).
//!
//! The decisions (which key, which position, which button, how far to scroll, what a touch
//! does) are made by [`super::compositor::CompositorInput`] (pure), as for wlroots; the call
//! shapes (absolute position in monitor pixels, scroll units) by
//! [`punktfunk_capture::mutter::plan`] (pure). This module only sends the resulting
//! `Notify*` calls on a [`MutterInput`]. Absolute motion names the session's own ScreenCast
//! stream, so clicks land on the stream's virtual monitor. Gamepads stay with uinput; text
//! and pens are counted as unsupported. docs/input.md, "Mutter RemoteDesktop".

use punktfunk_capture::mutter::plan::{monitor_position, scroll};
use punktfunk_capture::mutter::{InputCall, MutterError, MutterInput, ScrollAxis};
use tracing::debug;

use super::compositor::{Axis, CompositorCall, CompositorInput, Handled};
use super::{InjectError, InputEvent, InputSink};

/// What the sink did with the events it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MutterSinkStats {
    /// Events turned into RemoteDesktop calls.
    pub injected: u64,
    /// Key events whose VK has no Linux key.
    pub unmapped_keys: u64,
    /// Events dropped (bad reference size, touch contacts beyond the first).
    pub dropped: u64,
    /// Event kinds this back end does not inject (text, pen, gamepads, controller extras).
    pub unsupported: u64,
}

/// An [`InputSink`] into a Mutter RemoteDesktop session.
#[derive(Debug)]
pub struct MutterSink {
    input: MutterInput,
    plan: CompositorInput,
    calls: Vec<CompositorCall>,
    stats: MutterSinkStats,
}

impl MutterSink {
    /// A sink on the session of `input` (from [`punktfunk_capture::mutter::MutterDisplay`]).
    pub fn new(input: MutterInput) -> Self {
        Self {
            input,
            plan: CompositorInput::new(),
            calls: Vec::with_capacity(8),
            stats: MutterSinkStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> MutterSinkStats {
        self.stats
    }

    /// Releases every key and the touch contact still held (session end).
    pub fn release_all(&mut self) -> Result<(), InjectError> {
        self.calls.clear();
        self.plan.release_all(&mut self.calls);
        self.run_calls()
    }

    fn run_calls(&mut self) -> Result<(), InjectError> {
        for call in self.calls.drain(..) {
            let Some(call) = translate(call, &self.input) else {
                continue;
            };
            // Not waiting for Mutter's reply: with software rendering its main loop answers
            // only between frames (a 1080p round trip took 42 ms here); calls keep their order.
            self.input.post(call).map_err(mutter)?;
        }
        Ok(())
    }
}

/// The RemoteDesktop call for one compositor call; `None` when an absolute position cannot be
/// placed (the monitor was removed).
fn translate(call: CompositorCall, input: &MutterInput) -> Option<InputCall> {
    Some(match call {
        CompositorCall::Key { code, pressed } => InputCall::Keycode { code, pressed },
        CompositorCall::Button { code, pressed } => InputCall::Button {
            // BTN_* codes are below 0x300: they fit the `i` argument.
            code: i32::try_from(code).ok()?,
            pressed,
        },
        CompositorCall::MotionAbsolute {
            x,
            y,
            width,
            height,
        } => {
            let (x, y) = monitor_position(x, y, width, height, input.mode()?);
            InputCall::MotionAbsolute { x, y }
        }
        CompositorCall::MotionRelative { dx, dy } => InputCall::MotionRelative {
            dx: dx.into(),
            dy: dy.into(),
        },
        CompositorCall::Scroll {
            axis,
            value,
            notches,
        } => {
            let axis = match axis {
                Axis::Vertical => ScrollAxis::Vertical,
                Axis::Horizontal => ScrollAxis::Horizontal,
            };
            scroll(axis, value, notches)
        }
    })
}

fn mutter(source: MutterError) -> InjectError {
    InjectError::Mutter { source }
}

impl InputSink for MutterSink {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        self.calls.clear();
        match self.plan.handle(event, &mut self.calls) {
            Handled::Calls => {}
            Handled::UnmappedKey => {
                self.stats.unmapped_keys += 1;
                return Ok(());
            }
            Handled::Dropped => {
                self.stats.dropped += 1;
                return Ok(());
            }
            Handled::Unsupported => {
                self.stats.unsupported += 1;
                debug!(
                    kind = event.kind().name(),
                    "input: not supported by the Mutter back end"
                );
                return Ok(());
            }
        }
        self.run_calls()?;
        self.stats.injected += 1;
        Ok(())
    }
}
