//! The KWin input back end: decoded GameStream events into KWin through
//! `org_kde_kwin_fake_input`, aimed at the session's own output (act, thin).
//!
//! The decisions (which key, which position, which button, how far to scroll, what a touch
//! does) are made by [`super::compositor::CompositorInput`] (pure), exactly as for sway; this
//! module only executes the resulting calls on a [`punktfunk_capture::kwin::KwinInput`], which
//! maps absolute positions onto the output in KWin's global coordinates. Gamepads stay with
//! uinput; text and pens are counted as unsupported. docs/input.md, "KWin fake input".

use std::path::Path;
use std::time::Duration;

use punktfunk_capture::kwin::{KwinAxis, KwinError, KwinInput};
use tracing::debug;

use super::compositor::{Axis, CompositorCall, CompositorInput, Handled};
use super::wlr::WlrSinkStats;
use super::{InjectError, InputEvent, InputSink};

/// An [`InputSink`] into KWin.
#[derive(Debug)]
pub struct KwinSink {
    input: KwinInput,
    plan: CompositorInput,
    calls: Vec<CompositorCall>,
    stats: WlrSinkStats,
}

impl KwinSink {
    /// Connects to KWin's Wayland socket and aims at `output` (the session's virtual output);
    /// `timeout` bounds every wait.
    pub fn connect(socket: &Path, output: &str, timeout: Duration) -> Result<Self, InjectError> {
        let input = KwinInput::connect(socket, output, timeout).map_err(kwin)?;
        Ok(Self::new(input))
    }

    /// A sink over an existing connection.
    pub fn new(input: KwinInput) -> Self {
        Self {
            input,
            plan: CompositorInput::new(),
            calls: Vec::with_capacity(8),
            stats: WlrSinkStats::default(),
        }
    }

    /// Counts so far (the same counters as the sway sink's).
    pub fn stats(&self) -> WlrSinkStats {
        self.stats
    }

    /// The connection (for a round trip, or the output's geometry).
    pub fn input_mut(&mut self) -> &mut KwinInput {
        &mut self.input
    }

    /// Releases every key and the touch contact still held (session end; dropping the
    /// [`KwinInput`] releases them too).
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
                } => self
                    .input
                    .motion_absolute(x.into(), y.into(), width, height),
                CompositorCall::MotionRelative { dx, dy } => {
                    self.input.motion_relative(dx.into(), dy.into())
                }
                CompositorCall::Button { code, pressed } => self.input.button(code, pressed),
                // fake_input has no discrete (wheel click) axis event: the value carries it.
                CompositorCall::Scroll { axis, value, .. } => {
                    let axis = match axis {
                        Axis::Vertical => KwinAxis::Vertical,
                        Axis::Horizontal => KwinAxis::Horizontal,
                    };
                    self.input.axis(axis, value)
                }
            };
            r.map_err(kwin)?;
        }
        Ok(())
    }
}

fn kwin(source: KwinError) -> InjectError {
    InjectError::Kwin { source }
}

impl InputSink for KwinSink {
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
                    "input: not supported by the KWin back end"
                );
                return Ok(());
            }
        }
        self.run_calls()?;
        self.stats.injected += 1;
        Ok(())
    }
}
