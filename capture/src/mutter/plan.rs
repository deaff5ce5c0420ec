//! Decisions for the Mutter back end: the option dictionaries of the session calls, the
//! PipeWire request for a mode, and the RemoteDesktop input calls (method, arguments).
//!
//! Pure: no D-Bus, no clock, no `unsafe`. [`super::dbus`] turns these values into messages.
//!
//! Facts used (mutter 43.8, `data/dbus-interfaces/org.gnome.Mutter.ScreenCast.xml` and
//! `org.gnome.Mutter.RemoteDesktop.xml`, checked against the running compositor's
//! introspection: ScreenCast `Version` 4, RemoteDesktop `Version` 1, `SupportedDeviceTypes` 7 =
//! keyboard | pointer | touchscreen):
//! * `ScreenCast.CreateSession(a{sv})` takes `remote-desktop-session-id` (s): the screencast is
//!   then started and stopped with that RemoteDesktop session.
//! * `ScreenCast.Session.RecordVirtual(a{sv})` takes `cursor-mode` (u: 0 hidden, 1 embedded in
//!   the frames, 2 as PipeWire metadata) and `is-platform` (b: the virtual monitor is part of
//!   the desktop layout, windows can open on it).
//! * `NotifyPointerButton(i, b)` takes evdev `BTN_*` codes, `NotifyKeyboardKeycode(u, b)` evdev
//!   `KEY_*` codes, `NotifyPointerAxis(d, d, u)` smooth deltas where 10.0 is one wheel click,
//!   `NotifyPointerAxisDiscrete(u, i)` axis 0 vertical, 1 horizontal.
#![forbid(unsafe_code)]

use crate::display::DisplayMode;
use crate::pipewire::VideoRequest;

/// How the pointer appears in the stream (`cursor-mode` of `RecordVirtual`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CursorMode {
    /// Not shown.
    Hidden,
    /// Drawn into the frames (what a GameStream client expects: it draws no cursor itself).
    #[default]
    Embedded,
    /// Sent as PipeWire `SPA_META_Cursor` (not read by our capture yet).
    Metadata,
}

impl CursorMode {
    /// The value of the `cursor-mode` option.
    pub const fn as_u32(self) -> u32 {
        match self {
            Self::Hidden => 0,
            Self::Embedded => 1,
            Self::Metadata => 2,
        }
    }
}

/// A value of an `a{sv}` option dictionary.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    /// `u`.
    U32(u32),
    /// `b`.
    Bool(bool),
    /// `s`.
    Str(String),
}

/// What a virtual monitor is asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VirtualOptions {
    /// Cursor in the frames or not.
    pub cursor: CursorMode,
    /// Whether the monitor joins the desktop layout (windows can be placed on it).
    pub is_platform: bool,
}

impl Default for VirtualOptions {
    fn default() -> Self {
        Self {
            cursor: CursorMode::Embedded,
            is_platform: true,
        }
    }
}

/// The options of `ScreenCast.CreateSession` tying it to RemoteDesktop session `session_id`.
pub fn screencast_session_options(session_id: &str) -> Vec<(&'static str, OptionValue)> {
    vec![(
        "remote-desktop-session-id",
        OptionValue::Str(session_id.to_owned()),
    )]
}

/// The options of `ScreenCast.Session.RecordVirtual`.
pub fn record_virtual_options(options: VirtualOptions) -> Vec<(&'static str, OptionValue)> {
    vec![
        ("cursor-mode", OptionValue::U32(options.cursor.as_u32())),
        ("is-platform", OptionValue::Bool(options.is_platform)),
    ]
}

/// The PipeWire request that makes Mutter's virtual monitor `mode`: the monitor takes the size
/// the consumer fixes; the rate is offered as the default of the range (rounded to whole Hz).
pub fn request_for(mode: DisplayMode) -> VideoRequest {
    VideoRequest::exact(
        mode.width,
        mode.height,
        mode.refresh_mhz.div_ceil(1000).max(1),
    )
}

/// A scroll axis of `NotifyPointerAxisDiscrete`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrollAxis {
    /// Up/down (axis 0).
    Vertical,
    /// Left/right (axis 1).
    Horizontal,
}

/// `NotifyPointerAxis` flag: the scroll came from a wheel (not a finger: no kinetic scrolling).
pub const AXIS_SOURCE_WHEEL: u32 = 2;
/// `NotifyPointerAxis` flag: the scroll motion finished.
pub const AXIS_FINISH: u32 = 1;
/// Smooth axis units per wheel click (`NotifyPointerAxis` docs: 10.0 is one discrete step).
pub const AXIS_UNITS_PER_CLICK: f64 = 10.0;

/// One RemoteDesktop input call.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum InputCall {
    /// `NotifyKeyboardKeycode(code, pressed)`: evdev `KEY_*`.
    Keycode {
        /// `KEY_*`.
        code: u32,
        /// Pressed or released.
        pressed: bool,
    },
    /// `NotifyPointerButton(code, pressed)`: evdev `BTN_*`.
    Button {
        /// `BTN_*`.
        code: i32,
        /// Pressed or released.
        pressed: bool,
    },
    /// `NotifyPointerMotionAbsolute(stream, x, y)`: monitor pixels of the session's stream.
    MotionAbsolute {
        /// X in `0..width` of the monitor.
        x: f64,
        /// Y in `0..height`.
        y: f64,
    },
    /// `NotifyPointerMotionRelative(dx, dy)`.
    MotionRelative {
        /// Horizontal.
        dx: f64,
        /// Vertical.
        dy: f64,
    },
    /// `NotifyPointerAxis(dx, dy, flags)`: smooth scroll, 10.0 per click.
    Axis {
        /// Horizontal.
        dx: f64,
        /// Vertical, positive down.
        dy: f64,
        /// `AXIS_*` flags.
        flags: u32,
    },
    /// `NotifyPointerAxisDiscrete(axis, steps)`: whole wheel clicks.
    AxisDiscrete {
        /// Which axis.
        axis: ScrollAxis,
        /// Clicks, positive down/right.
        steps: i32,
    },
    /// `NotifyTouchDown(stream, slot, x, y)`.
    TouchDown {
        /// Contact slot.
        slot: u32,
        /// X in monitor pixels.
        x: f64,
        /// Y in monitor pixels.
        y: f64,
    },
    /// `NotifyTouchMotion(stream, slot, x, y)`.
    TouchMotion {
        /// Contact slot.
        slot: u32,
        /// X in monitor pixels.
        x: f64,
        /// Y in monitor pixels.
        y: f64,
    },
    /// `NotifyTouchUp(slot)`.
    TouchUp {
        /// Contact slot.
        slot: u32,
    },
}

impl InputCall {
    /// The `org.gnome.Mutter.RemoteDesktop.Session` method.
    pub const fn method(&self) -> &'static str {
        match self {
            Self::Keycode { .. } => "NotifyKeyboardKeycode",
            Self::Button { .. } => "NotifyPointerButton",
            Self::MotionAbsolute { .. } => "NotifyPointerMotionAbsolute",
            Self::MotionRelative { .. } => "NotifyPointerMotionRelative",
            Self::Axis { .. } => "NotifyPointerAxis",
            Self::AxisDiscrete { .. } => "NotifyPointerAxisDiscrete",
            Self::TouchDown { .. } => "NotifyTouchDown",
            Self::TouchMotion { .. } => "NotifyTouchMotion",
            Self::TouchUp { .. } => "NotifyTouchUp",
        }
    }

    /// Whether the call names the stream (its first argument is the stream's object path).
    pub const fn names_stream(&self) -> bool {
        matches!(
            self,
            Self::MotionAbsolute { .. } | Self::TouchDown { .. } | Self::TouchMotion { .. }
        )
    }
}

/// A position `(x, y)` on a `width`×`height` reference surface (what the client reports), in
/// pixels of a monitor of `mode`, clamped inside the monitor. A zero reference extent maps to 0.
pub fn monitor_position(x: u32, y: u32, width: u32, height: u32, mode: DisplayMode) -> (f64, f64) {
    let scale = |v: u32, extent: u32, size: u32| {
        if extent == 0 || size == 0 {
            return 0.0;
        }
        let max = f64::from(size) - 1.0;
        (f64::from(v) * f64::from(size) / f64::from(extent)).clamp(0.0, max)
    };
    (scale(x, width, mode.width), scale(y, height, mode.height))
}

/// The calls for a scroll of `value` Wayland axis units (15 per click) with `notches` whole
/// clicks completed: whole clicks as discrete steps, a partial (high-resolution) step as a
/// smooth wheel axis event in Mutter's units (10.0 per click).
pub fn scroll(axis: ScrollAxis, value: f64, notches: i32) -> InputCall {
    if notches != 0 {
        return InputCall::AxisDiscrete {
            axis,
            steps: notches,
        };
    }
    let units = value / 15.0 * AXIS_UNITS_PER_CLICK;
    let (dx, dy) = match axis {
        ScrollAxis::Vertical => (0.0, units),
        ScrollAxis::Horizontal => (units, 0.0),
    };
    InputCall::Axis {
        dx,
        dy,
        flags: AXIS_SOURCE_WHEEL,
    }
}

impl ScrollAxis {
    /// The `axis` argument of `NotifyPointerAxisDiscrete`.
    pub const fn as_u32(self) -> u32 {
        match self {
            Self::Vertical => 0,
            Self::Horizontal => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_dicts() {
        assert_eq!(
            screencast_session_options("abc"),
            vec![("remote-desktop-session-id", OptionValue::Str("abc".into()))]
        );
        assert_eq!(
            record_virtual_options(VirtualOptions::default()),
            vec![
                ("cursor-mode", OptionValue::U32(1)),
                ("is-platform", OptionValue::Bool(true)),
            ]
        );
        let hidden = VirtualOptions {
            cursor: CursorMode::Hidden,
            is_platform: false,
        };
        assert_eq!(
            record_virtual_options(hidden)[..],
            [
                ("cursor-mode", OptionValue::U32(0)),
                ("is-platform", OptionValue::Bool(false)),
            ]
        );
        assert_eq!(CursorMode::Metadata.as_u32(), 2);
    }

    #[test]
    fn mode_requests() {
        let r = request_for(DisplayMode::new(1280, 720, 60));
        assert_eq!((r.size, r.framerate), (Some((1280, 720)), Some(60)));
        let ntsc = DisplayMode {
            width: 1920,
            height: 1080,
            refresh_mhz: 59_940,
        };
        assert_eq!(request_for(ntsc).framerate, Some(60));
        let slow = DisplayMode {
            refresh_mhz: 500,
            ..ntsc
        };
        assert_eq!(request_for(slow).framerate, Some(1));
    }

    #[test]
    fn methods_and_stream_arguments() {
        let calls = [
            (
                InputCall::Keycode {
                    code: 30,
                    pressed: true,
                },
                "NotifyKeyboardKeycode",
                false,
            ),
            (
                InputCall::Button {
                    code: 0x110,
                    pressed: true,
                },
                "NotifyPointerButton",
                false,
            ),
            (
                InputCall::MotionAbsolute { x: 1.0, y: 2.0 },
                "NotifyPointerMotionAbsolute",
                true,
            ),
            (
                InputCall::MotionRelative { dx: 1.0, dy: 2.0 },
                "NotifyPointerMotionRelative",
                false,
            ),
            (
                InputCall::Axis {
                    dx: 0.0,
                    dy: 1.0,
                    flags: 0,
                },
                "NotifyPointerAxis",
                false,
            ),
            (
                InputCall::AxisDiscrete {
                    axis: ScrollAxis::Vertical,
                    steps: 1,
                },
                "NotifyPointerAxisDiscrete",
                false,
            ),
            (
                InputCall::TouchDown {
                    slot: 0,
                    x: 1.0,
                    y: 1.0,
                },
                "NotifyTouchDown",
                true,
            ),
            (
                InputCall::TouchMotion {
                    slot: 0,
                    x: 1.0,
                    y: 1.0,
                },
                "NotifyTouchMotion",
                true,
            ),
            (InputCall::TouchUp { slot: 0 }, "NotifyTouchUp", false),
        ];
        for (call, method, stream) in calls {
            assert_eq!(
                (call.method(), call.names_stream()),
                (method, stream),
                "{call:?}"
            );
        }
        assert_eq!(ScrollAxis::Horizontal.as_u32(), 1);
    }

    #[test]
    fn positions_scale_to_the_monitor_and_clamp() {
        let mode = DisplayMode::new(1920, 1080, 60);
        assert_eq!(monitor_position(640, 360, 1280, 720, mode), (960.0, 540.0));
        assert_eq!(monitor_position(0, 0, 1280, 720, mode), (0.0, 0.0));
        // The far edge stays on the monitor (the last pixel), not one past it.
        assert_eq!(
            monitor_position(1280, 720, 1280, 720, mode),
            (1919.0, 1079.0)
        );
        assert_eq!(monitor_position(5, 5, 0, 0, mode), (0.0, 0.0));
    }

    #[test]
    fn scrolls() {
        assert_eq!(
            scroll(ScrollAxis::Vertical, 15.0, 1),
            InputCall::AxisDiscrete {
                axis: ScrollAxis::Vertical,
                steps: 1
            }
        );
        assert_eq!(
            scroll(ScrollAxis::Horizontal, -7.5, 0),
            InputCall::Axis {
                dx: -5.0,
                dy: 0.0,
                flags: AXIS_SOURCE_WHEEL
            }
        );
    }
}
