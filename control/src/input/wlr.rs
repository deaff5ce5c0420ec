//! The wlroots (sway) input back end: decoded GameStream events into the compositor through
//! a virtual keyboard and a virtual pointer bound to the session's own output (act, thin).
//!
//! The decisions (which key, which position, which button, how far to scroll, what a touch
//! does) are made by [`super::compositor::CompositorInput`] (pure); this module only executes
//! the resulting calls on a [`punktfunk_capture::wlroots::WlrInput`]. Gamepads stay with
//! uinput; text and pens are counted as unsupported. docs/input.md, "Wayland (wlroots)
//! injection".

use std::path::Path;
use std::time::Duration;

use punktfunk_capture::wlroots::{ScrollAxis, WlrInput, WlrInputError};
use tracing::debug;

use super::compositor::{Axis, CompositorCall, CompositorInput, Handled};
use super::{InjectError, InputEvent, InputSink};

/// What the sink did with the events it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WlrSinkStats {
    /// Events turned into compositor calls.
    pub injected: u64,
    /// Key events whose VK has no Linux key.
    pub unmapped_keys: u64,
    /// Events dropped (bad reference size, touch contacts beyond the first).
    pub dropped: u64,
    /// Event kinds this back end does not inject (text, pen, gamepads, controller extras).
    pub unsupported: u64,
}

/// An [`InputSink`] into a wlroots compositor (sway).
#[derive(Debug)]
pub struct WlrSink {
    input: WlrInput,
    plan: CompositorInput,
    calls: Vec<CompositorCall>,
    stats: WlrSinkStats,
}

impl WlrSink {
    /// Connects to the compositor's Wayland socket and binds the pointer to `output` (the
    /// session's virtual output); `timeout` bounds every wait.
    pub fn connect(socket: &Path, output: &str, timeout: Duration) -> Result<Self, InjectError> {
        let input = WlrInput::connect(socket, output, timeout).map_err(compositor)?;
        Ok(Self::new(input))
    }

    /// A sink over an existing connection.
    pub fn new(input: WlrInput) -> Self {
        Self {
            input,
            plan: CompositorInput::new(),
            calls: Vec::with_capacity(8),
            stats: WlrSinkStats::default(),
        }
    }

    /// Counts so far.
    pub fn stats(&self) -> WlrSinkStats {
        self.stats
    }

    /// The connection (for a round trip, or the bound output's name).
    pub fn input_mut(&mut self) -> &mut WlrInput {
        &mut self.input
    }

    /// Releases every key and the touch contact still held (session end; dropping the
    /// [`WlrInput`] releases them too).
    pub fn release_all(&mut self) -> Result<(), InjectError> {
        self.calls.clear();
        self.plan.release_all(&mut self.calls);
        self.run_calls()
    }

    fn run_calls(&mut self) -> Result<(), InjectError> {
        for call in self.calls.drain(..) {
            let r = match call {
                CompositorCall::Key { code, pressed } => self.input.key(code, pressed),
                CompositorCall::MotionAbsolute {
                    x,
                    y,
                    width,
                    height,
                } => self.input.motion_absolute(x, y, width, height),
                CompositorCall::MotionRelative { dx, dy } => {
                    self.input.motion_relative(dx.into(), dy.into())
                }
                CompositorCall::Button { code, pressed } => self.input.button(code, pressed),
                CompositorCall::Scroll {
                    axis,
                    value,
                    notches,
                } => {
                    let axis = match axis {
                        Axis::Vertical => ScrollAxis::Vertical,
                        Axis::Horizontal => ScrollAxis::Horizontal,
                    };
                    if notches == 0 {
                        self.input.axis(axis, value)
                    } else {
                        self.input.axis_discrete(axis, value, notches)
                    }
                }
            };
            r.map_err(compositor)?;
        }
        Ok(())
    }
}

fn compositor(source: WlrInputError) -> InjectError {
    InjectError::Compositor { source }
}

impl InputSink for WlrSink {
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
                    "input: not supported by the wlroots back end"
                );
                return Ok(());
            }
        }
        self.run_calls()?;
        self.stats.injected += 1;
        Ok(())
    }
}
