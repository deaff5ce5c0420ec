//! GameStream input events → compositor input calls (pure).
//!
//! A compositor back end (wlroots' virtual keyboard and pointer, [`super::wlr`]) takes Linux
//! key and button codes, pointer motion and scroll; this module decides which of those calls
//! each decoded [`InputEvent`] becomes, reusing the pure helpers the uinput back end uses
//! ([`super::keymap::Keyboard`] for VK → `KEY_*` and held-key state, [`pointer::scale_abs`] and
//! [`pointer::Wheel`] for absolute positions and wheel notches). The act module only executes
//! the [`CompositorCall`]s.
//!
//! | event | calls |
//! |---|---|
//! | `Key` | `Key{code, pressed}` per [`super::keymap::KeyPlan`] action; repeats (value 2) dropped: the compositor repeats held keys itself |
//! | `MouseMove{dx, dy}` | `MotionRelative` |
//! | `MouseAbsolute{x, y, w, h}` | `MotionAbsolute` in `0..=65535` of [`pointer::ABS_MAX`] (the client's reference size scaled onto the bound output) |
//! | `MouseButton` | `Button` with `BTN_LEFT/MIDDLE/RIGHT/SIDE/EXTRA` |
//! | `Scroll{amount}` | `Scroll{Vertical, value = −amount/8, notches = −whole notches}` (GameStream: +120 per notch up; Wayland: +15 per notch down) |
//! | `HScroll{amount}` | `Scroll{Horizontal, value = amount/8, notches}` (both: positive is right) |
//! | `Touch` | the first contact only: down → `MotionAbsolute` + `Button{BTN_LEFT, pressed}`, move → `MotionAbsolute`, up/cancel → `Button{BTN_LEFT, released}` (wlroots has no virtual-touch protocol) |
//! | everything else | nothing: `Unsupported` (text, pen, gamepads: uinput's, controller extras) |

use super::keymap::Keyboard;
use super::pointer::{self, ABS_MAX, Wheel};
use super::wire::{InputEvent, MouseButton, TouchEvent, TouchKind};

/// Linux button codes (`linux/input-event-codes.h`).
pub mod button {
    /// `BTN_LEFT`.
    pub const LEFT: u32 = 0x110;
    /// `BTN_RIGHT`.
    pub const RIGHT: u32 = 0x111;
    /// `BTN_MIDDLE`.
    pub const MIDDLE: u32 = 0x112;
    /// `BTN_SIDE` (back).
    pub const SIDE: u32 = 0x113;
    /// `BTN_EXTRA` (forward).
    pub const EXTRA: u32 = 0x114;
}

/// Wayland axis units per wheel notch (libinput's convention; wl_pointer.axis).
pub const AXIS_PER_NOTCH: f64 = 15.0;
/// GameStream scroll units per notch (Windows `WHEEL_DELTA`).
const GS_PER_NOTCH: f64 = Wheel::NOTCH as f64;

/// Which scroll axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Axis {
    /// Vertical: positive is down.
    Vertical,
    /// Horizontal: positive is right.
    Horizontal,
}

/// One call into a compositor input back end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum CompositorCall {
    /// Press or release Linux key `code`.
    Key {
        /// `KEY_*`.
        code: u32,
        /// Pressed or released.
        pressed: bool,
    },
    /// Move the pointer to `(x, y)` of a `width` × `height` surface covering the output.
    MotionAbsolute {
        /// X in `0..=width`.
        x: u32,
        /// Y in `0..=height`.
        y: u32,
        /// Extent of x.
        width: u32,
        /// Extent of y.
        height: u32,
    },
    /// Move the pointer by `(dx, dy)`.
    MotionRelative {
        /// Horizontal displacement.
        dx: i32,
        /// Vertical displacement.
        dy: i32,
    },
    /// Press or release Linux button `code`.
    Button {
        /// `BTN_*`.
        code: u32,
        /// Pressed or released.
        pressed: bool,
    },
    /// Scroll by `value` axis units; `notches` whole wheel clicks completed with it (0: a
    /// partial, high-resolution step).
    Scroll {
        /// Which axis.
        axis: Axis,
        /// Wayland axis units (15 per notch), positive down/right.
        value: f64,
        /// Whole notches, positive down/right.
        notches: i32,
    },
}

/// What became of one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handled {
    /// Turned into the calls pushed (possibly none, e.g. a key repeat or a key-up of a key not
    /// held).
    Calls,
    /// A key whose VK has no Linux key.
    UnmappedKey,
    /// An absolute position with a non-positive reference size, or a touch contact beyond the
    /// first: dropped.
    Dropped,
    /// An event kind a compositor back end does not inject (text, pen, gamepads, …).
    Unsupported,
}

/// The state the translation needs across events: held keys, wheel remainders, the touch
/// contact driving the pointer.
#[derive(Debug, Clone, Default)]
pub struct CompositorInput {
    keys: Keyboard,
    wheel: Wheel,
    hwheel: Wheel,
    /// Client id of the touch contact that holds the left button.
    touch: Option<u32>,
}

fn button_code(b: MouseButton) -> u32 {
    match b {
        MouseButton::Left => button::LEFT,
        MouseButton::Middle => button::MIDDLE,
        MouseButton::Right => button::RIGHT,
        MouseButton::X1 => button::SIDE,
        MouseButton::X2 => button::EXTRA,
    }
}

fn abs_unit(v: i32) -> u32 {
    // scale_abs and scale_unit return 0..=ABS_MAX.
    v.clamp(0, ABS_MAX) as u32
}

impl CompositorInput {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the calls for `event` to `out`.
    pub fn handle(&mut self, event: &InputEvent, out: &mut Vec<CompositorCall>) -> Handled {
        match *event {
            InputEvent::Key {
                down,
                code,
                modifiers,
                ..
            } => {
                let Some(plan) = self.keys.handle_key(down, code, modifiers) else {
                    return Handled::UnmappedKey;
                };
                out.extend(
                    plan.iter()
                        .filter(|a| a.value != 2)
                        .map(|a| CompositorCall::Key {
                            code: u32::from(a.code),
                            pressed: a.value == 1,
                        }),
                );
            }
            InputEvent::MouseMove { dx, dy } => out.push(CompositorCall::MotionRelative {
                dx: dx.into(),
                dy: dy.into(),
            }),
            InputEvent::MouseAbsolute {
                x,
                y,
                width,
                height,
            } => match (pointer::scale_abs(x, width), pointer::scale_abs(y, height)) {
                (Some(x), Some(y)) => out.push(CompositorCall::MotionAbsolute {
                    x: abs_unit(x),
                    y: abs_unit(y),
                    width: ABS_MAX as u32,
                    height: ABS_MAX as u32,
                }),
                _ => return Handled::Dropped,
            },
            InputEvent::MouseButton { down, button } => out.push(CompositorCall::Button {
                code: button_code(button),
                pressed: down,
            }),
            InputEvent::Scroll { amount } => {
                let notches = self.wheel.add(amount);
                out.push(CompositorCall::Scroll {
                    axis: Axis::Vertical,
                    value: -f64::from(amount) * AXIS_PER_NOTCH / GS_PER_NOTCH,
                    notches: -notches,
                });
            }
            InputEvent::HScroll { amount } => {
                let notches = self.hwheel.add(amount);
                out.push(CompositorCall::Scroll {
                    axis: Axis::Horizontal,
                    value: f64::from(amount) * AXIS_PER_NOTCH / GS_PER_NOTCH,
                    notches,
                });
            }
            InputEvent::Touch(ref t) => return self.touch(t, out),
            InputEvent::Text(_)
            | InputEvent::Gamepad(_)
            | InputEvent::EnableHaptics { .. }
            | InputEvent::Pen(_)
            | InputEvent::ControllerArrival(_)
            | InputEvent::ControllerTouch(_)
            | InputEvent::ControllerMotion(_)
            | InputEvent::ControllerBattery(_) => return Handled::Unsupported,
        }
        Handled::Calls
    }

    fn touch(&mut self, t: &TouchEvent, out: &mut Vec<CompositorCall>) -> Handled {
        let motion = CompositorCall::MotionAbsolute {
            x: abs_unit(pointer::scale_unit(t.x, ABS_MAX)),
            y: abs_unit(pointer::scale_unit(t.y, ABS_MAX)),
            width: ABS_MAX as u32,
            height: ABS_MAX as u32,
        };
        let release = CompositorCall::Button {
            code: button::LEFT,
            pressed: false,
        };
        match (t.kind, self.touch) {
            (TouchKind::Down, None) => {
                self.touch = Some(t.pointer_id);
                out.extend([
                    motion,
                    CompositorCall::Button {
                        code: button::LEFT,
                        pressed: true,
                    },
                ]);
            }
            (TouchKind::Down | TouchKind::Move, Some(id)) if id == t.pointer_id => {
                out.push(motion);
            }
            (TouchKind::Up | TouchKind::Cancel, Some(id)) if id == t.pointer_id => {
                self.touch = None;
                out.push(release);
            }
            (TouchKind::CancelAll, Some(_)) => {
                self.touch = None;
                out.push(release);
            }
            (TouchKind::Hover | TouchKind::HoverLeave | TouchKind::ButtonOnly, _)
            | (TouchKind::CancelAll, None) => {}
            // A second finger, or a move/up of a contact we never saw.
            _ => return Handled::Dropped,
        }
        Handled::Calls
    }

    /// Releases every held key and the touch contact (session end).
    pub fn release_all(&mut self, out: &mut Vec<CompositorCall>) {
        out.extend(
            self.keys
                .release_all()
                .into_iter()
                .map(|code| CompositorCall::Key {
                    code: u32::from(code),
                    pressed: false,
                }),
        );
        if self.touch.take().is_some() {
            out.push(CompositorCall::Button {
                code: button::LEFT,
                pressed: false,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::wire::Modifiers;

    fn calls(c: &mut CompositorInput, e: InputEvent) -> (Handled, Vec<CompositorCall>) {
        let mut out = Vec::new();
        let h = c.handle(&e, &mut out);
        (h, out)
    }

    fn key(down: bool, vk: u16, modifiers: u8) -> InputEvent {
        InputEvent::Key {
            down,
            code: 0x8000 | vk,
            modifiers: Modifiers(modifiers),
            flags: 0,
        }
    }

    fn k(code: u32, pressed: bool) -> CompositorCall {
        CompositorCall::Key { code, pressed }
    }

    #[test]
    fn keys_become_linux_codes_and_repeats_are_left_to_the_compositor() {
        let mut c = CompositorInput::new();
        assert_eq!(
            calls(&mut c, key(true, 0x41, 0)),
            (Handled::Calls, vec![k(30, true)])
        );
        // Client auto-repeat: the compositor repeats held keys itself.
        assert_eq!(calls(&mut c, key(true, 0x41, 0)), (Handled::Calls, vec![]));
        assert_eq!(
            calls(&mut c, key(false, 0x41, 0)),
            (Handled::Calls, vec![k(30, false)])
        );
        assert_eq!(calls(&mut c, key(false, 0x41, 0)), (Handled::Calls, vec![]));
        assert_eq!(calls(&mut c, key(true, 0x07, 0)).0, Handled::UnmappedKey);
    }

    #[test]
    fn modifier_flags_without_modifier_keys_get_a_synthetic_shift() {
        let mut c = CompositorInput::new();
        let (_, out) = calls(&mut c, key(true, 0x41, Modifiers::SHIFT));
        assert_eq!(out, [k(42, true), k(30, true), k(42, false)]);
    }

    #[test]
    fn pointer_motion_buttons_and_absolute_scaling() {
        let mut c = CompositorInput::new();
        assert_eq!(
            calls(&mut c, InputEvent::MouseMove { dx: -3, dy: 7 }).1,
            [CompositorCall::MotionRelative { dx: -3, dy: 7 }]
        );
        assert_eq!(
            calls(
                &mut c,
                InputEvent::MouseAbsolute {
                    x: 1919,
                    y: 0,
                    width: 1919,
                    height: 1079
                }
            )
            .1,
            [CompositorCall::MotionAbsolute {
                x: 65535,
                y: 0,
                width: 65535,
                height: 65535
            }]
        );
        let dropped = InputEvent::MouseAbsolute {
            x: 1,
            y: 1,
            width: 0,
            height: 10,
        };
        assert_eq!(calls(&mut c, dropped), (Handled::Dropped, vec![]));
        for (b, code) in [
            (MouseButton::Left, 0x110),
            (MouseButton::Right, 0x111),
            (MouseButton::Middle, 0x112),
            (MouseButton::X1, 0x113),
            (MouseButton::X2, 0x114),
        ] {
            let e = InputEvent::MouseButton {
                down: true,
                button: b,
            };
            assert_eq!(
                calls(&mut c, e).1,
                [CompositorCall::Button {
                    code,
                    pressed: true
                }]
            );
        }
    }

    #[test]
    fn scroll_directions_and_notches() {
        let mut c = CompositorInput::new();
        // One notch up (GameStream +120) is Wayland −15, one discrete step up.
        assert_eq!(
            calls(&mut c, InputEvent::Scroll { amount: 120 }).1,
            [CompositorCall::Scroll {
                axis: Axis::Vertical,
                value: -15.0,
                notches: -1
            }]
        );
        // Half notches: a partial step, then the completed notch.
        assert_eq!(
            calls(&mut c, InputEvent::Scroll { amount: -60 }).1,
            [CompositorCall::Scroll {
                axis: Axis::Vertical,
                value: 7.5,
                notches: 0
            }]
        );
        assert_eq!(
            calls(&mut c, InputEvent::Scroll { amount: -60 }).1,
            [CompositorCall::Scroll {
                axis: Axis::Vertical,
                value: 7.5,
                notches: 1
            }]
        );
        assert_eq!(
            calls(&mut c, InputEvent::HScroll { amount: 240 }).1,
            [CompositorCall::Scroll {
                axis: Axis::Horizontal,
                value: 30.0,
                notches: 2
            }]
        );
    }

    fn touch(kind: TouchKind, id: u32, x: f32, y: f32) -> InputEvent {
        InputEvent::Touch(TouchEvent {
            kind,
            pointer_id: id,
            rotation: None,
            x,
            y,
            pressure_or_distance: 1.0,
            contact_major: 0.0,
            contact_minor: 0.0,
        })
    }

    #[test]
    fn one_touch_drives_the_pointer_and_the_left_button() {
        let mut c = CompositorInput::new();
        let at = |x, y| CompositorCall::MotionAbsolute {
            x,
            y,
            width: 65535,
            height: 65535,
        };
        let left = |pressed| CompositorCall::Button {
            code: 0x110,
            pressed,
        };
        assert_eq!(
            calls(&mut c, touch(TouchKind::Down, 7, 0.5, 0.0)).1,
            [at(32768, 0), left(true)]
        );
        // A second finger is dropped.
        assert_eq!(
            calls(&mut c, touch(TouchKind::Down, 8, 0.1, 0.1)),
            (Handled::Dropped, vec![])
        );
        assert_eq!(
            calls(&mut c, touch(TouchKind::Move, 7, 1.0, 1.0)).1,
            [at(65535, 65535)]
        );
        assert_eq!(
            calls(&mut c, touch(TouchKind::Up, 7, 1.0, 1.0)).1,
            [left(false)]
        );
        assert_eq!(
            calls(&mut c, touch(TouchKind::Up, 7, 1.0, 1.0)),
            (Handled::Dropped, vec![])
        );
        // CancelAll lifts a held contact.
        calls(&mut c, touch(TouchKind::Down, 9, 0.0, 0.0));
        assert_eq!(
            calls(&mut c, touch(TouchKind::CancelAll, 0, 0.0, 0.0)).1,
            [left(false)]
        );
    }

    #[test]
    fn release_all_lifts_keys_and_touch() {
        let mut c = CompositorInput::new();
        calls(&mut c, key(true, 0xA0, 0)); // left shift
        calls(&mut c, key(true, 0x41, 0));
        calls(&mut c, touch(TouchKind::Down, 1, 0.2, 0.2));
        let mut out = Vec::new();
        c.release_all(&mut out);
        assert_eq!(
            out,
            [
                k(30, false),
                k(42, false),
                CompositorCall::Button {
                    code: 0x110,
                    pressed: false
                }
            ]
        );
        out.clear();
        c.release_all(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn other_kinds_are_unsupported() {
        let mut c = CompositorInput::new();
        assert_eq!(
            calls(&mut c, InputEvent::EnableHaptics { enabled: true }),
            (Handled::Unsupported, vec![])
        );
    }
}
