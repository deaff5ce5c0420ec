//! Input into KWin through `org_kde_kwin_fake_input` (act), aimed at one output.
//!
//! ```text
//!  connect: bind org_kde_kwin_fake_input (v4), find the output by name (xdg_output geometry)
//!           authenticate("punktfunk", reason)
//!  pointer: pointer_motion_absolute(global x, y) | pointer_motion(dx, dy) | button | axis
//!  keys:    keyboard_key(evdev code, state)                      (v4, KWin ≥ 5.24)
//!  touch:   touch_down(id, global x, y) | touch_motion | touch_up ─► touch_frame   (v2)
//!  every call: flush, then read what KWin sent without blocking (a hang-up is an error)
//! ```
//!
//! Coordinates: KWin takes absolute pointer and touch positions in its global (logical)
//! compositor space, not per output, so a point of the client's screen is mapped onto the
//! session's output with [`super::plan::OutputGeometry::map`] (pure), using the output's
//! `xdg_output` logical position and size. Keys use KWin's own keymap (the seat's; US unless
//! configured), so no keymap is sent. KWin shows the fake-input global only to clients a
//! `.desktop` file grants `org_kde_kwin_fake_input` (X-KDE-Wayland-Interfaces), or to every
//! client when it runs with `KWIN_WAYLAND_NO_PERMISSION_CHECKS=1`; docs/input.md, "KWin fake
//! input".

use std::path::Path;
use std::time::Duration;

use wayland_protocols_plasma::fake_input::client::org_kde_kwin_fake_input::OrgKdeKwinFakeInput;

use super::KwinError;
use super::plan::OutputGeometry;
use super::wl::Wl;

/// `wl_pointer.axis`: 0 vertical, 1 horizontal (fake_input's `axis` takes these values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KwinAxis {
    /// Vertical: positive is down.
    Vertical,
    /// Horizontal: positive is right.
    Horizontal,
}

/// Fake input into KWin aimed at one output. Dropping it releases what is held.
#[derive(Debug)]
pub struct KwinInput {
    wl: Wl,
    fake: OrgKdeKwinFakeInput,
    version: u32,
    output_name: String,
    held_keys: Vec<u32>,
    held_buttons: Vec<u32>,
    touches: Vec<u32>,
}

impl KwinInput {
    /// Connects to KWin at `socket`, authenticates for fake input and aims at the output named
    /// `output`. `timeout` bounds every wait, here and later.
    pub fn connect(socket: &Path, output: &str, timeout: Duration) -> Result<Self, KwinError> {
        let mut wl = Wl::connect(socket, timeout)?;
        let (fake, version) = wl.state.fake_input.clone().ok_or_else(|| {
            KwinError::Unsupported(
                "org_kde_kwin_fake_input (not offered to this client: KWin grants it by \
                 .desktop file, or to all with KWIN_WAYLAND_NO_PERMISSION_CHECKS=1)"
                    .into(),
            )
        })?;
        if wl.state.output(output).is_none() {
            return Err(KwinError::OutputGone(output.to_owned()));
        }
        fake.authenticate(
            "punktfunk".into(),
            "input of a remote streaming client".into(),
        );
        wl.sync()?;
        Ok(Self {
            wl,
            fake,
            version,
            output_name: output.to_owned(),
            held_keys: Vec::new(),
            held_buttons: Vec::new(),
            touches: Vec::new(),
        })
    }

    /// The output aimed at.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// The bound protocol version.
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The output's global geometry now.
    pub fn geometry(&self) -> Result<OutputGeometry, KwinError> {
        self.wl
            .state
            .output(&self.output_name)
            .map(|o| o.geometry)
            .ok_or_else(|| KwinError::OutputGone(self.output_name.clone()))
    }

    fn need(&self, version: u32, what: &str) -> Result<(), KwinError> {
        if self.version < version {
            return Err(KwinError::Unsupported(format!(
                "org_kde_kwin_fake_input v{} has no {what} (needs v{version})",
                self.version
            )));
        }
        Ok(())
    }

    fn global(&self, x: f64, y: f64, width: u32, height: u32) -> Result<(f64, f64), KwinError> {
        self.geometry()?
            .map(x, y, width, height)
            .ok_or_else(|| KwinError::OutputGone(self.output_name.clone()))
    }

    /// Moves the pointer to `(x, y)` of a `width`×`height` surface stretched over the output.
    pub fn motion_absolute(
        &mut self,
        x: f64,
        y: f64,
        width: u32,
        height: u32,
    ) -> Result<(), KwinError> {
        self.need(3, "pointer_motion_absolute")?;
        let (gx, gy) = self.global(x, y, width, height)?;
        self.fake.pointer_motion_absolute(gx, gy);
        self.wl.flush()
    }

    /// Moves the pointer by `(dx, dy)`.
    pub fn motion_relative(&mut self, dx: f64, dy: f64) -> Result<(), KwinError> {
        self.fake.pointer_motion(dx, dy);
        self.wl.flush()
    }

    /// Presses or releases a pointer button (Linux `BTN_LEFT` = 0x110 …).
    pub fn button(&mut self, code: u32, pressed: bool) -> Result<(), KwinError> {
        self.fake.button(code, u32::from(pressed));
        track(&mut self.held_buttons, code, pressed);
        self.wl.flush()
    }

    /// Scrolls by `value` axis units (15 per wheel notch, as libinput reports a wheel).
    pub fn axis(&mut self, axis: KwinAxis, value: f64) -> Result<(), KwinError> {
        let axis = match axis {
            KwinAxis::Vertical => 0,
            KwinAxis::Horizontal => 1,
        };
        self.fake.axis(axis, value);
        self.wl.flush()
    }

    /// Presses or releases the key with Linux evdev code `code` (`KEY_A` = 30).
    pub fn key(&mut self, code: u32, pressed: bool) -> Result<(), KwinError> {
        self.need(4, "keyboard_key")?;
        self.fake.keyboard_key(code, u32::from(pressed));
        track(&mut self.held_keys, code, pressed);
        self.wl.flush()
    }

    /// Puts touch contact `id` down at `(x, y)` of a `width`×`height` surface.
    pub fn touch_down(
        &mut self,
        id: u32,
        x: f64,
        y: f64,
        width: u32,
        height: u32,
    ) -> Result<(), KwinError> {
        self.need(2, "touch")?;
        let (gx, gy) = self.global(x, y, width, height)?;
        self.fake.touch_down(id, gx, gy);
        self.fake.touch_frame();
        track(&mut self.touches, id, true);
        self.wl.flush()
    }

    /// Moves touch contact `id`.
    pub fn touch_motion(
        &mut self,
        id: u32,
        x: f64,
        y: f64,
        width: u32,
        height: u32,
    ) -> Result<(), KwinError> {
        self.need(2, "touch")?;
        let (gx, gy) = self.global(x, y, width, height)?;
        self.fake.touch_motion(id, gx, gy);
        self.fake.touch_frame();
        self.wl.flush()
    }

    /// Lifts touch contact `id`.
    pub fn touch_up(&mut self, id: u32) -> Result<(), KwinError> {
        self.need(2, "touch")?;
        self.fake.touch_up(id);
        self.fake.touch_frame();
        track(&mut self.touches, id, false);
        self.wl.flush()
    }

    /// One round trip: everything sent before has been processed by KWin; fails when the
    /// output is gone.
    pub fn sync(&mut self) -> Result<(), KwinError> {
        self.wl.sync()?;
        self.geometry().map(|_| ())
    }
}

fn track(held: &mut Vec<u32>, code: u32, pressed: bool) {
    if pressed {
        if !held.contains(&code) {
            held.push(code);
        }
    } else {
        held.retain(|&c| c != code);
    }
}

impl Drop for KwinInput {
    fn drop(&mut self) {
        // Leave nothing pressed in KWin's seat.
        for key in std::mem::take(&mut self.held_keys) {
            self.fake.keyboard_key(key, 0);
        }
        for button in std::mem::take(&mut self.held_buttons) {
            self.fake.button(button, 0);
        }
        if !self.touches.is_empty() && self.version >= 2 {
            self.fake.touch_cancel();
        }
        let _ = self.wl.flush();
    }
}
