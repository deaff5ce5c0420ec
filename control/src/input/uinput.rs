//! uinput backend (act): virtual Linux input devices that replay the client's input.
//!
//! Devices, each a separate `/dev/uinput` handle (names carry a prefix, "punktfunk" by
//! default):
//!
//! ```text
//! "<p> keyboard"          EV_KEY: every key of keymap::mapped_keys()
//! "<p> mouse"             EV_REL: X, Y, WHEEL, HWHEEL, WHEEL_HI_RES, HWHEEL_HI_RES
//!                         EV_KEY: BTN_LEFT, RIGHT, MIDDLE, SIDE (X1), EXTRA (X2)
//! "<p> absolute pointer"  EV_ABS: X, Y in 0..=65535   EV_KEY: the five mouse buttons
//! "<p> touchscreen"       INPUT_PROP_DIRECT, EV_KEY: BTN_TOUCH, EV_ABS: X, Y, PRESSURE,
//!                         MT_SLOT 0..=9, MT_TRACKING_ID, MT_POSITION_X/Y, MT_PRESSURE
//!                         (created on the first touch event)
//! "<p> pad N"             Xbox 360 ids (USB 045e:028e) so SDL and games map it; EV_KEY:
//!                         gamepad::BUTTON_MAP; EV_ABS: X Y RX RY (±32767), Z RZ (0..=255),
//!                         HAT0X HAT0Y (-1..=1). Created on arrival, destroyed on removal.
//! ```
//!
//! Mouse buttons go to whichever pointer device moved last, so a click lands where the
//! client's cursor is in both relative and absolute mode.
//!
//! Kernel facts relied on: `UI_DEV_SETUP`/`UI_ABS_SETUP` (Linux 4.5+), `REL_WHEEL_HI_RES` and
//! `REL_HWHEEL_HI_RES` (Linux 5.0+), multi-touch protocol type B. The ioctls themselves live
//! in the `evdev` crate, which keeps this crate free of `unsafe`.

use evdev::uinput::VirtualDevice;
use evdev::{
    AbsInfo, AbsoluteAxisCode, AttributeSet, BusType, EventType, InputId, KeyCode, PropType,
    RelativeAxisCode, UinputAbsSetup,
};
use tracing::debug;

use super::gamepad::{self, GamepadChange, Gamepads, PadState};
use super::keymap::{self, Keyboard};
use super::pointer::{self, TouchAction, TouchSlots, Wheel};
use super::wire::{InputEvent, MAX_GAMEPADS, MouseButton};
use super::{InjectError, InputSink};

const BTN_LEFT: u16 = 0x110;
const BTN_RIGHT: u16 = 0x111;
const BTN_MIDDLE: u16 = 0x112;
const BTN_SIDE: u16 = 0x113;
const BTN_EXTRA: u16 = 0x114;
const BTN_TOUCH: u16 = 0x14a;
const MOUSE_BUTTONS: [u16; 5] = [BTN_LEFT, BTN_RIGHT, BTN_MIDDLE, BTN_SIDE, BTN_EXTRA];

/// Xbox 360 controller USB ids (Microsoft 045e:028e): SDL's controller database and most
/// games recognise the layout from these.
const XBOX360_ID: (u16, u16, u16) = (0x045e, 0x028e, 0x0110);

/// What the uinput sink did with the events it was given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UinputStats {
    /// Events turned into device input.
    pub injected: u64,
    /// Key events whose virtual-key code has no Linux key.
    pub unmapped_keys: u64,
    /// Events this backend does not handle (text, pen, controller touch/motion/battery).
    pub unsupported: u64,
    /// Absolute positions with an unusable reference size, or events for unknown pads.
    pub dropped: u64,
}

/// Injects input through `/dev/uinput`.
pub struct UinputSink {
    prefix: String,
    keyboard: VirtualDevice,
    mouse: VirtualDevice,
    absolute: VirtualDevice,
    touch: Option<VirtualDevice>,
    pads: [Option<VirtualDevice>; MAX_GAMEPADS],
    keys: Keyboard,
    gamepads: Gamepads,
    touches: TouchSlots,
    touch_actions: Vec<TouchAction>,
    wheel: Wheel,
    hwheel: Wheel,
    last_pointer_absolute: bool,
    events: Vec<evdev::InputEvent>,
    stats: UinputStats,
}

impl std::fmt::Debug for UinputSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UinputSink")
            .field("prefix", &self.prefix)
            .field("pads", &self.gamepads.connected_mask())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn io(device: &'static str) -> impl FnOnce(std::io::Error) -> InjectError {
    move |source| InjectError::Io { device, source }
}

fn ev(kind: EventType, code: u16, value: i32) -> evdev::InputEvent {
    evdev::InputEvent::new(kind.0, code, value)
}

fn abs(code: u16, min: i32, max: i32, fuzz: i32, flat: i32) -> UinputAbsSetup {
    UinputAbsSetup::new(
        AbsoluteAxisCode(code),
        AbsInfo::new(0, min, max, fuzz, flat, 0),
    )
}

/// Device names must stay below the kernel's 80-byte `UINPUT_MAX_NAME_SIZE`; `evdev` asserts
/// it, so cut long prefixes here (on a char boundary) rather than panic.
fn device_name(prefix: &str, what: &str) -> String {
    let mut name = format!("{prefix} {what}");
    while name.len() > 72 {
        name.pop();
    }
    name
}

impl UinputSink {
    /// Opens `/dev/uinput` and creates the keyboard, mouse and absolute-pointer devices, named
    /// "punktfunk …".
    pub fn open() -> Result<Self, InjectError> {
        Self::with_prefix("punktfunk")
    }

    /// Like [`Self::open`], with device names starting with `prefix` (tests use a unique one to
    /// find their devices).
    pub fn with_prefix(prefix: &str) -> Result<Self, InjectError> {
        let keyboard = {
            let keys: AttributeSet<KeyCode> = keymap::mapped_keys().map(KeyCode::new).collect();
            let name = device_name(prefix, "keyboard");
            VirtualDevice::builder()
                .map_err(io("open /dev/uinput"))?
                .name(&name)
                .input_id(InputId::new(BusType::BUS_VIRTUAL, 0, 0, 1))
                .with_keys(&keys)
                .and_then(|b| b.build())
                .map_err(io("keyboard"))?
        };
        let buttons: AttributeSet<KeyCode> = MOUSE_BUTTONS.iter().map(|&c| KeyCode(c)).collect();
        let mouse = {
            let axes: AttributeSet<RelativeAxisCode> = [
                RelativeAxisCode::REL_X,
                RelativeAxisCode::REL_Y,
                RelativeAxisCode::REL_WHEEL,
                RelativeAxisCode::REL_HWHEEL,
                RelativeAxisCode::REL_WHEEL_HI_RES,
                RelativeAxisCode::REL_HWHEEL_HI_RES,
            ]
            .into_iter()
            .collect();
            let name = device_name(prefix, "mouse");
            VirtualDevice::builder()
                .map_err(io("open /dev/uinput"))?
                .name(&name)
                .input_id(InputId::new(BusType::BUS_VIRTUAL, 0, 0, 1))
                .with_keys(&buttons)
                .and_then(|b| b.with_relative_axes(&axes))
                .and_then(|b| b.build())
                .map_err(io("mouse"))?
        };
        let absolute = {
            let name = device_name(prefix, "absolute pointer");
            VirtualDevice::builder()
                .map_err(io("open /dev/uinput"))?
                .name(&name)
                .input_id(InputId::new(BusType::BUS_VIRTUAL, 0, 0, 1))
                .with_keys(&buttons)
                .and_then(|b| b.with_absolute_axis(&abs(0x00, 0, pointer::ABS_MAX, 0, 0)))
                .and_then(|b| b.with_absolute_axis(&abs(0x01, 0, pointer::ABS_MAX, 0, 0)))
                .and_then(|b| b.build())
                .map_err(io("absolute pointer"))?
        };
        Ok(UinputSink {
            prefix: prefix.to_owned(),
            keyboard,
            mouse,
            absolute,
            touch: None,
            pads: std::array::from_fn(|_| None),
            keys: Keyboard::new(),
            gamepads: Gamepads::new(),
            touches: TouchSlots::new(),
            touch_actions: Vec::with_capacity(pointer::TOUCH_SLOTS),
            wheel: Wheel::default(),
            hwheel: Wheel::default(),
            last_pointer_absolute: false,
            events: Vec::with_capacity(32),
            stats: UinputStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> UinputStats {
        self.stats
    }

    /// Name of the device for pad `number` under `prefix`.
    pub fn pad_name(prefix: &str, number: u8) -> String {
        device_name(prefix, &format!("pad {number}"))
    }

    fn create_touch(&self) -> Result<VirtualDevice, InjectError> {
        let name = device_name(&self.prefix, "touchscreen");
        let props: AttributeSet<PropType> = [PropType::DIRECT].into_iter().collect();
        let keys: AttributeSet<KeyCode> = [KeyCode(BTN_TOUCH)].into_iter().collect();
        let max = pointer::ABS_MAX;
        let slots = (pointer::TOUCH_SLOTS - 1) as i32; // 9
        VirtualDevice::builder()
            .map_err(io("open /dev/uinput"))?
            .name(&name)
            .input_id(InputId::new(BusType::BUS_VIRTUAL, 0, 0, 1))
            .with_properties(&props)
            .and_then(|b| b.with_keys(&keys))
            .and_then(|b| b.with_absolute_axis(&abs(0x00, 0, max, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x01, 0, max, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x18, 0, pointer::PRESSURE_MAX, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x2f, 0, slots, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x39, 0, 0xFFFF, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x35, 0, max, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x36, 0, max, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(0x3a, 0, pointer::PRESSURE_MAX, 0, 0)))
            .and_then(|b| b.build())
            .map_err(io("touchscreen"))
    }

    fn create_pad(&self, number: u8) -> Result<VirtualDevice, InjectError> {
        let name = Self::pad_name(&self.prefix, number);
        let keys: AttributeSet<KeyCode> = gamepad::BUTTON_MAP
            .iter()
            .map(|&(_, c)| KeyCode(c))
            .collect();
        let (vendor, product, version) = XBOX360_ID;
        // Neutral sticks start where pad_axes puts them (Y axes flipped: !0 = -1), so the
        // first state packet's diff against the neutral state is exact.
        let stick = |code, neutral| {
            UinputAbsSetup::new(
                AbsoluteAxisCode(code),
                AbsInfo::new(
                    neutral,
                    i32::from(i16::MIN),
                    i32::from(i16::MAX),
                    16,
                    128,
                    0,
                ),
            )
        };
        let neutral = gamepad::pad_axes(&PadState::default());
        VirtualDevice::builder()
            .map_err(io("open /dev/uinput"))?
            .name(&name)
            .input_id(InputId::new(BusType::BUS_USB, vendor, product, version))
            .with_keys(&keys)
            .and_then(|b| b.with_absolute_axis(&stick(neutral[0].0, neutral[0].1)))
            .and_then(|b| b.with_absolute_axis(&stick(neutral[1].0, neutral[1].1)))
            .and_then(|b| b.with_absolute_axis(&stick(neutral[2].0, neutral[2].1)))
            .and_then(|b| b.with_absolute_axis(&stick(neutral[3].0, neutral[3].1)))
            .and_then(|b| b.with_absolute_axis(&abs(gamepad::linux::ABS_Z, 0, 255, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(gamepad::linux::ABS_RZ, 0, 255, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(gamepad::linux::ABS_HAT0X, -1, 1, 0, 0)))
            .and_then(|b| b.with_absolute_axis(&abs(gamepad::linux::ABS_HAT0Y, -1, 1, 0, 0)))
            .and_then(|b| b.build())
            .map_err(io("gamepad"))
    }

    fn flush(
        device: &mut VirtualDevice,
        events: &mut Vec<evdev::InputEvent>,
        what: &'static str,
    ) -> Result<(), InjectError> {
        if events.is_empty() {
            return Ok(());
        }
        let r = device.emit(events).map_err(io(what));
        events.clear();
        r
    }

    fn key(
        &mut self,
        down: bool,
        code: u16,
        modifiers: super::Modifiers,
    ) -> Result<(), InjectError> {
        let Some(plan) = self.keys.handle_key(down, code, modifiers) else {
            self.stats.unmapped_keys += 1;
            debug!(code = format_args!("{code:#06x}"), "input: unmapped key");
            return Ok(());
        };
        // Each transition gets its own report, so a synthetic modifier is seen as held
        // before the key (the same order a real keyboard produces).
        for a in plan.iter() {
            self.events.push(ev(EventType::KEY, a.code, a.value));
            Self::flush(&mut self.keyboard, &mut self.events, "keyboard")?;
        }
        Ok(())
    }

    fn mouse_button(&mut self, down: bool, button: MouseButton) -> Result<(), InjectError> {
        let code = match button {
            MouseButton::Left => BTN_LEFT,
            MouseButton::Middle => BTN_MIDDLE,
            MouseButton::Right => BTN_RIGHT,
            MouseButton::X1 => BTN_SIDE,
            MouseButton::X2 => BTN_EXTRA,
        };
        self.events.push(ev(EventType::KEY, code, down.into()));
        if self.last_pointer_absolute {
            Self::flush(&mut self.absolute, &mut self.events, "absolute pointer")
        } else {
            Self::flush(&mut self.mouse, &mut self.events, "mouse")
        }
    }

    fn touch(&mut self, t: &super::TouchEvent) -> Result<(), InjectError> {
        let before = self.touches.active();
        self.touch_actions.clear();
        self.touches.handle(t, &mut self.touch_actions);
        if self.touch_actions.is_empty() {
            return Ok(());
        }
        if self.touch.is_none() {
            self.touch = Some(self.create_touch()?);
        }
        const ABS: EventType = EventType::ABSOLUTE;
        for a in &self.touch_actions {
            match *a {
                TouchAction::Down {
                    slot,
                    tracking_id,
                    x,
                    y,
                    pressure,
                } => self.events.extend([
                    ev(ABS, 0x2f, slot.into()),
                    ev(ABS, 0x39, tracking_id),
                    ev(ABS, 0x35, x),
                    ev(ABS, 0x36, y),
                    ev(ABS, 0x3a, pressure),
                    ev(ABS, 0x00, x),
                    ev(ABS, 0x01, y),
                    ev(ABS, 0x18, pressure),
                ]),
                TouchAction::Move {
                    slot,
                    x,
                    y,
                    pressure,
                } => self.events.extend([
                    ev(ABS, 0x2f, slot.into()),
                    ev(ABS, 0x35, x),
                    ev(ABS, 0x36, y),
                    ev(ABS, 0x3a, pressure),
                    ev(ABS, 0x00, x),
                    ev(ABS, 0x01, y),
                    ev(ABS, 0x18, pressure),
                ]),
                TouchAction::Up { slot } => self
                    .events
                    .extend([ev(ABS, 0x2f, slot.into()), ev(ABS, 0x39, -1)]),
            }
        }
        let after = self.touches.active();
        if before == 0 && after > 0 {
            self.events.push(ev(EventType::KEY, BTN_TOUCH, 1));
        } else if before > 0 && after == 0 {
            self.events.push(ev(EventType::KEY, BTN_TOUCH, 0));
        }
        match self.touch.as_mut() {
            Some(dev) => Self::flush(dev, &mut self.events, "touchscreen"),
            None => Ok(()), // created above
        }
    }

    fn pad_changes(&mut self) -> Result<(), InjectError> {
        let mut result = Ok(());
        while let Some(change) = self.gamepads.poll_change() {
            let r = match change {
                GamepadChange::Arrived { number, info } => {
                    debug!(number, ?info, "input: gamepad arrived");
                    match self.create_pad(number) {
                        Ok(dev) => {
                            if let Some(slot) = self.pads.get_mut(usize::from(number)) {
                                *slot = Some(dev);
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                GamepadChange::Removed { number } => {
                    debug!(number, "input: gamepad removed");
                    // Dropping the handle destroys the device (the kernel releases its keys).
                    if let Some(slot) = self.pads.get_mut(usize::from(number)) {
                        *slot = None;
                    }
                    Ok(())
                }
                GamepadChange::State {
                    number,
                    state,
                    previous,
                } => self.pad_state(number, &state, &previous),
            };
            if result.is_ok() {
                result = r;
            }
        }
        result
    }

    fn pad_state(
        &mut self,
        number: u8,
        state: &PadState,
        previous: &PadState,
    ) -> Result<(), InjectError> {
        let Some(Some(dev)) = self.pads.get_mut(usize::from(number)) else {
            self.stats.dropped += 1; // its device could not be created
            return Ok(());
        };
        let changed = state.buttons ^ previous.buttons;
        for &(bit, code) in gamepad::BUTTON_MAP.iter() {
            if changed & bit != 0 {
                let down = state.buttons & bit != 0;
                self.events.push(ev(EventType::KEY, code, down.into()));
            }
        }
        let old = gamepad::pad_axes(previous);
        for (&(code, value), &(_, was)) in gamepad::pad_axes(state).iter().zip(old.iter()) {
            if value != was {
                self.events.push(ev(EventType::ABSOLUTE, code, value));
            }
        }
        Self::flush(dev, &mut self.events, "gamepad")
    }
}

impl InputSink for UinputSink {
    fn inject(&mut self, event: &InputEvent) -> Result<(), InjectError> {
        const REL: EventType = EventType::RELATIVE;
        let r = match *event {
            InputEvent::Key {
                down,
                code,
                modifiers,
                ..
            } => self.key(down, code, modifiers),
            InputEvent::MouseMove { dx, dy } => {
                self.last_pointer_absolute = false;
                self.events
                    .extend([ev(REL, 0x00, dx.into()), ev(REL, 0x01, dy.into())]);
                Self::flush(&mut self.mouse, &mut self.events, "mouse")
            }
            InputEvent::MouseAbsolute {
                x,
                y,
                width,
                height,
            } => match (pointer::scale_abs(x, width), pointer::scale_abs(y, height)) {
                (Some(x), Some(y)) => {
                    self.last_pointer_absolute = true;
                    let abs = EventType::ABSOLUTE;
                    self.events.extend([ev(abs, 0x00, x), ev(abs, 0x01, y)]);
                    Self::flush(&mut self.absolute, &mut self.events, "absolute pointer")
                }
                _ => {
                    self.stats.dropped += 1;
                    return Ok(());
                }
            },
            InputEvent::MouseButton { down, button } => self.mouse_button(down, button),
            InputEvent::Scroll { amount } => {
                let notches = self.wheel.add(amount);
                // REL_WHEEL_HI_RES (0x0b) carries the exact amount, REL_WHEEL (0x08) notches.
                self.events.push(ev(REL, 0x0b, amount.into()));
                if notches != 0 {
                    self.events.push(ev(REL, 0x08, notches));
                }
                Self::flush(&mut self.mouse, &mut self.events, "mouse")
            }
            InputEvent::HScroll { amount } => {
                let notches = self.hwheel.add(amount);
                // REL_HWHEEL_HI_RES (0x0c), REL_HWHEEL (0x06).
                self.events.push(ev(REL, 0x0c, amount.into()));
                if notches != 0 {
                    self.events.push(ev(REL, 0x06, notches));
                }
                Self::flush(&mut self.mouse, &mut self.events, "mouse")
            }
            InputEvent::Gamepad(_) | InputEvent::ControllerArrival(_) => {
                self.gamepads.handle_event(event);
                self.pad_changes()
            }
            InputEvent::Touch(ref t) => self.touch(t),
            InputEvent::EnableHaptics { .. } => Ok(()),
            InputEvent::Text(_)
            | InputEvent::Pen(_)
            | InputEvent::ControllerTouch(_)
            | InputEvent::ControllerMotion(_)
            | InputEvent::ControllerBattery(_) => {
                self.stats.unsupported += 1;
                debug!(
                    kind = event.kind().name(),
                    "input: not supported by uinput backend"
                );
                return Ok(());
            }
        };
        if r.is_ok() {
            self.stats.injected += 1;
        }
        r
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::wire::{ControllerArrival, ControllerKind, GamepadState, Modifiers};
    use crate::input::{TouchEvent, TouchKind};
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    mod skip {
        include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
    }

    /// The pure keymap's Linux codes agree with the `evdev` crate's.
    #[test]
    fn keymap_codes_match_evdev() {
        use keymap::linux as k;
        let pairs = [
            (k::KEY_ESC, KeyCode::KEY_ESC),
            (k::KEY_1, KeyCode::KEY_1),
            (k::KEY_0, KeyCode::KEY_0),
            (k::KEY_BACKSPACE, KeyCode::KEY_BACKSPACE),
            (k::KEY_Q, KeyCode::KEY_Q),
            (k::KEY_P, KeyCode::KEY_P),
            (k::KEY_ENTER, KeyCode::KEY_ENTER),
            (k::KEY_A, KeyCode::KEY_A),
            (k::KEY_L, KeyCode::KEY_L),
            (k::KEY_GRAVE, KeyCode::KEY_GRAVE),
            (k::KEY_Z, KeyCode::KEY_Z),
            (k::KEY_M, KeyCode::KEY_M),
            (k::KEY_SLASH, KeyCode::KEY_SLASH),
            (k::KEY_KPASTERISK, KeyCode::KEY_KPASTERISK),
            (k::KEY_SPACE, KeyCode::KEY_SPACE),
            (k::KEY_F1, KeyCode::KEY_F1),
            (k::KEY_F10, KeyCode::KEY_F10),
            (k::KEY_NUMLOCK, KeyCode::KEY_NUMLOCK),
            (k::KEY_KP7, KeyCode::KEY_KP7),
            (k::KEY_KPDOT, KeyCode::KEY_KPDOT),
            (k::KEY_ZENKAKUHANKAKU, KeyCode::KEY_ZENKAKUHANKAKU),
            (k::KEY_102ND, KeyCode::KEY_102ND),
            (k::KEY_F11, KeyCode::KEY_F11),
            (k::KEY_F12, KeyCode::KEY_F12),
            (k::KEY_RO, KeyCode::KEY_RO),
            (k::KEY_HENKAN, KeyCode::KEY_HENKAN),
            (k::KEY_KATAKANAHIRAGANA, KeyCode::KEY_KATAKANAHIRAGANA),
            (k::KEY_MUHENKAN, KeyCode::KEY_MUHENKAN),
            (k::KEY_RIGHTCTRL, KeyCode::KEY_RIGHTCTRL),
            (k::KEY_KPSLASH, KeyCode::KEY_KPSLASH),
            (k::KEY_SYSRQ, KeyCode::KEY_SYSRQ),
            (k::KEY_RIGHTALT, KeyCode::KEY_RIGHTALT),
            (k::KEY_HOME, KeyCode::KEY_HOME),
            (k::KEY_DELETE, KeyCode::KEY_DELETE),
            (k::KEY_MUTE, KeyCode::KEY_MUTE),
            (k::KEY_VOLUMEUP, KeyCode::KEY_VOLUMEUP),
            (k::KEY_KPEQUAL, KeyCode::KEY_KPEQUAL),
            (k::KEY_PAUSE, KeyCode::KEY_PAUSE),
            (k::KEY_KPCOMMA, KeyCode::KEY_KPCOMMA),
            (k::KEY_HANGEUL, KeyCode::KEY_HANGEUL),
            (k::KEY_HANJA, KeyCode::KEY_HANJA),
            (k::KEY_LEFTMETA, KeyCode::KEY_LEFTMETA),
            (k::KEY_RIGHTMETA, KeyCode::KEY_RIGHTMETA),
            (k::KEY_COMPOSE, KeyCode::KEY_COMPOSE),
            (k::KEY_STOP, KeyCode::KEY_STOP),
            (k::KEY_HELP, KeyCode::KEY_HELP),
            (k::KEY_CALC, KeyCode::KEY_CALC),
            (k::KEY_SLEEP, KeyCode::KEY_SLEEP),
            (k::KEY_MAIL, KeyCode::KEY_MAIL),
            (k::KEY_BOOKMARKS, KeyCode::KEY_BOOKMARKS),
            (k::KEY_COMPUTER, KeyCode::KEY_COMPUTER),
            (k::KEY_BACK, KeyCode::KEY_BACK),
            (k::KEY_FORWARD, KeyCode::KEY_FORWARD),
            (k::KEY_NEXTSONG, KeyCode::KEY_NEXTSONG),
            (k::KEY_PLAYPAUSE, KeyCode::KEY_PLAYPAUSE),
            (k::KEY_PREVIOUSSONG, KeyCode::KEY_PREVIOUSSONG),
            (k::KEY_STOPCD, KeyCode::KEY_STOPCD),
            (k::KEY_HOMEPAGE, KeyCode::KEY_HOMEPAGE),
            (k::KEY_REFRESH, KeyCode::KEY_REFRESH),
            (k::KEY_F13, KeyCode::KEY_F13),
            (k::KEY_F24, KeyCode::KEY_F24),
            (k::KEY_PLAY, KeyCode::KEY_PLAY),
            (k::KEY_PRINT, KeyCode::KEY_PRINT),
            (k::KEY_SEARCH, KeyCode::KEY_SEARCH),
            (k::KEY_MEDIA, KeyCode::KEY_MEDIA),
            (k::KEY_SELECT, KeyCode::KEY_SELECT),
            (k::KEY_CLEAR, KeyCode::KEY_CLEAR),
        ];
        for (ours, theirs) in pairs {
            assert_eq!(ours, theirs.0, "{theirs:?}");
        }
        // Every code between two checked neighbours is consecutive in both tables.
        for (vk, name) in [(b'W', KeyCode::KEY_W), (b'9', KeyCode::KEY_9)] {
            assert_eq!(keymap::vk_to_linux(vk), Some(name.0));
        }
        for n in 0..12u8 {
            assert_eq!(
                keymap::vk_to_linux(0x7C + n),
                Some(KeyCode::KEY_F13.0 + u16::from(n))
            );
        }
    }

    #[test]
    fn pad_and_pointer_codes_match_evdev() {
        use gamepad::linux as g;
        assert_eq!(g::BTN_SOUTH, KeyCode::BTN_SOUTH.0);
        assert_eq!(g::BTN_EAST, KeyCode::BTN_EAST.0);
        assert_eq!(g::BTN_NORTH, KeyCode::BTN_NORTH.0);
        assert_eq!(g::BTN_WEST, KeyCode::BTN_WEST.0);
        assert_eq!(g::BTN_TL, KeyCode::BTN_TL.0);
        assert_eq!(g::BTN_TR, KeyCode::BTN_TR.0);
        assert_eq!(g::BTN_SELECT, KeyCode::BTN_SELECT.0);
        assert_eq!(g::BTN_START, KeyCode::BTN_START.0);
        assert_eq!(g::BTN_MODE, KeyCode::BTN_MODE.0);
        assert_eq!(g::BTN_THUMBL, KeyCode::BTN_THUMBL.0);
        assert_eq!(g::BTN_THUMBR, KeyCode::BTN_THUMBR.0);
        assert_eq!(g::BTN_TRIGGER_HAPPY1, KeyCode::BTN_TRIGGER_HAPPY1.0);
        assert_eq!(g::ABS_X, AbsoluteAxisCode::ABS_X.0);
        assert_eq!(g::ABS_Y, AbsoluteAxisCode::ABS_Y.0);
        assert_eq!(g::ABS_Z, AbsoluteAxisCode::ABS_Z.0);
        assert_eq!(g::ABS_RX, AbsoluteAxisCode::ABS_RX.0);
        assert_eq!(g::ABS_RY, AbsoluteAxisCode::ABS_RY.0);
        assert_eq!(g::ABS_RZ, AbsoluteAxisCode::ABS_RZ.0);
        assert_eq!(g::ABS_HAT0X, AbsoluteAxisCode::ABS_HAT0X.0);
        assert_eq!(g::ABS_HAT0Y, AbsoluteAxisCode::ABS_HAT0Y.0);
        assert_eq!(BTN_LEFT, KeyCode::BTN_LEFT.0);
        assert_eq!(BTN_RIGHT, KeyCode::BTN_RIGHT.0);
        assert_eq!(BTN_MIDDLE, KeyCode::BTN_MIDDLE.0);
        assert_eq!(BTN_SIDE, KeyCode::BTN_SIDE.0);
        assert_eq!(BTN_EXTRA, KeyCode::BTN_EXTRA.0);
        assert_eq!(BTN_TOUCH, KeyCode::BTN_TOUCH.0);
        assert_eq!(0x08, RelativeAxisCode::REL_WHEEL.0);
        assert_eq!(0x06, RelativeAxisCode::REL_HWHEEL.0);
        assert_eq!(0x0b, RelativeAxisCode::REL_WHEEL_HI_RES.0);
        assert_eq!(0x0c, RelativeAxisCode::REL_HWHEEL_HI_RES.0);
        assert_eq!(0x18, AbsoluteAxisCode::ABS_PRESSURE.0);
        assert_eq!(0x2f, AbsoluteAxisCode::ABS_MT_SLOT.0);
        assert_eq!(0x35, AbsoluteAxisCode::ABS_MT_POSITION_X.0);
        assert_eq!(0x36, AbsoluteAxisCode::ABS_MT_POSITION_Y.0);
        assert_eq!(0x39, AbsoluteAxisCode::ABS_MT_TRACKING_ID.0);
        assert_eq!(0x3a, AbsoluteAxisCode::ABS_MT_PRESSURE.0);
    }

    #[test]
    fn long_prefixes_are_cut() {
        let name = device_name(&"é".repeat(100), "keyboard");
        assert!(name.len() <= 72);
    }

    // ---- Real devices: only where /dev/uinput exists ----

    /// `/dev/input/eventN` of the input device called `name`, waiting for it to appear.
    /// Creates the node with mknod under a temp dir when no devtmpfs/udev made one.
    fn event_node(name: &str) -> Option<PathBuf> {
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(dir) = std::fs::read_dir("/sys/class/input") {
                for entry in dir.flatten() {
                    let sys = entry.path();
                    let node = entry.file_name().to_string_lossy().into_owned();
                    if !node.starts_with("event") {
                        continue;
                    }
                    let dev_name =
                        std::fs::read_to_string(sys.join("device/name")).unwrap_or_default();
                    if dev_name.trim_end() != name {
                        continue;
                    }
                    let dev = Path::new("/dev/input").join(&node);
                    if dev.exists() {
                        return Some(dev);
                    }
                    let majmin = std::fs::read_to_string(sys.join("dev")).ok()?;
                    let (maj, min) = majmin.trim().split_once(':')?;
                    let tmp =
                        std::env::temp_dir().join(format!("pf-{}-{node}", std::process::id()));
                    let _ = std::fs::remove_file(&tmp);
                    let ok = std::process::Command::new("mknod")
                        .arg(&tmp)
                        .args(["c", maj, min])
                        .status()
                        .is_ok_and(|s| s.success());
                    if ok {
                        return Some(tmp);
                    }
                }
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    fn open_reader(name: &str) -> evdev::Device {
        let node = event_node(name).unwrap_or_else(|| panic!("no event node for {name:?}"));
        let dev = evdev::Device::open(&node).unwrap();
        dev.set_nonblocking(true).unwrap();
        dev
    }

    /// Reads `(type, code, value)` triples (without SYN) until `want` of them arrived or 2 s
    /// passed.
    fn read_events(dev: &mut evdev::Device, want: usize) -> Vec<(u16, u16, i32)> {
        let mut got = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(2);
        while got.len() < want && Instant::now() < deadline {
            match dev.fetch_events() {
                Ok(events) => got.extend(
                    events
                        .filter(|e| e.event_type() != EventType::SYNCHRONIZATION)
                        .map(|e| (e.event_type().0, e.code(), e.value())),
                ),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        got
    }

    const KEY: u16 = 1;
    const REL: u16 = 2;
    const ABS: u16 = 3;

    #[test]
    fn uinput_devices_deliver_events() {
        if !Path::new("/dev/uinput").exists() {
            skip::skip(
                "uinput",
                "/dev/uinput does not exist (kernel without CONFIG_INPUT_UINPUT or not exposed here)",
            );
            return;
        }
        let prefix = format!("pftest{}", std::process::id());
        let mut sink = match UinputSink::with_prefix(&prefix) {
            Ok(s) => s,
            Err(e) => {
                skip::skip("uinput", format!("/dev/uinput present but unusable: {e}"));
                return;
            }
        };
        let mut kbd = open_reader(&format!("{prefix} keyboard"));
        let mut mouse = open_reader(&format!("{prefix} mouse"));
        let mut abs = open_reader(&format!("{prefix} absolute pointer"));

        // Keyboard: Shift flag without a held Shift key synthesizes it around 'A'.
        sink.inject(&InputEvent::Key {
            down: true,
            code: 0x8041,
            modifiers: Modifiers(Modifiers::SHIFT),
            flags: 0,
        })
        .unwrap();
        sink.inject(&InputEvent::Key {
            down: false,
            code: 0x8041,
            modifiers: Modifiers(0),
            flags: 0,
        })
        .unwrap();
        assert_eq!(
            read_events(&mut kbd, 4),
            vec![(KEY, 42, 1), (KEY, 30, 1), (KEY, 42, 0), (KEY, 30, 0)]
        );

        // Relative mouse, scroll (hi-res + notches), button.
        sink.inject(&InputEvent::MouseMove { dx: 5, dy: -3 })
            .unwrap();
        sink.inject(&InputEvent::Scroll { amount: 120 }).unwrap();
        sink.inject(&InputEvent::HScroll { amount: -60 }).unwrap();
        sink.inject(&InputEvent::MouseButton {
            down: true,
            button: MouseButton::Right,
        })
        .unwrap();
        let got = read_events(&mut mouse, 6);
        assert_eq!(
            got,
            vec![
                (REL, 0, 5),
                (REL, 1, -3),
                (REL, 11, 120),
                (REL, 8, 1),
                (REL, 12, -60),
                (KEY, BTN_RIGHT, 1)
            ]
        );

        // Absolute pointer scaled from the reference frame; the button follows it.
        sink.inject(&InputEvent::MouseAbsolute {
            x: 1919,
            y: 0,
            width: 1919,
            height: 1079,
        })
        .unwrap();
        sink.inject(&InputEvent::MouseButton {
            down: true,
            button: MouseButton::Left,
        })
        .unwrap();
        assert_eq!(
            read_events(&mut abs, 2),
            vec![(ABS, 0, pointer::ABS_MAX), (KEY, BTN_LEFT, 1)],
            "y = 0 equals the initial value, so the kernel sends no event for it"
        );

        // Touch: the device appears with the first contact.
        let touch = |kind, x| {
            InputEvent::Touch(TouchEvent {
                kind,
                pointer_id: 9,
                rotation: None,
                x,
                y: 0.5,
                pressure_or_distance: 0.5,
                contact_major: 0.0,
                contact_minor: 0.0,
            })
        };
        sink.inject(&touch(TouchKind::Down, 0.25)).unwrap();
        let mut ts = open_reader(&format!("{prefix} touchscreen"));
        sink.inject(&touch(TouchKind::Move, 0.75)).unwrap();
        sink.inject(&touch(TouchKind::Up, 0.75)).unwrap();
        let got = read_events(&mut ts, 4);
        assert!(got.contains(&(ABS, 0x35, 49151)), "{got:?}");
        assert!(got.contains(&(ABS, 0x39, -1)), "{got:?}");
        assert!(got.contains(&(KEY, BTN_TOUCH, 0)), "{got:?}");

        // Gamepad: arrival creates "pad 2", state changes arrive, removal destroys it.
        sink.inject(&InputEvent::ControllerArrival(ControllerArrival {
            number: 2,
            kind: ControllerKind::Xbox,
            capabilities: 0,
            supported_buttons: gamepad::buttons::XBOX_DEFAULT,
        }))
        .unwrap();
        let pad_name = UinputSink::pad_name(&prefix, 2);
        let mut pad = open_reader(&pad_name);
        let pad_state = |mask, buttons, lt, lsy| {
            InputEvent::Gamepad(GamepadState {
                number: 2,
                active_mask: mask,
                buttons,
                lt,
                lsy,
                ..GamepadState::default()
            })
        };
        sink.inject(&pad_state(
            1 << 2,
            gamepad::buttons::A | gamepad::buttons::UP,
            200,
            32767,
        ))
        .unwrap();
        let got = read_events(&mut pad, 4);
        assert_eq!(
            got,
            vec![
                (KEY, gamepad::linux::BTN_SOUTH, 1),
                (ABS, gamepad::linux::ABS_Y, -32768),
                (ABS, gamepad::linux::ABS_Z, 200),
                (ABS, gamepad::linux::ABS_HAT0Y, -1)
            ]
        );
        sink.inject(&pad_state(0, 0, 0, 0)).unwrap();
        let gone = (0..100).any(|_| {
            std::thread::sleep(Duration::from_millis(20));
            event_node_now(&pad_name).is_none()
        });
        assert!(gone, "pad device destroyed on removal");
        assert_eq!(sink.stats().unmapped_keys, 0);
        println!("uinput: all virtual devices delivered their events");
    }

    fn event_node_now(name: &str) -> Option<()> {
        std::fs::read_dir("/sys/class/input")
            .ok()?
            .flatten()
            .any(|e| {
                std::fs::read_to_string(e.path().join("device/name"))
                    .is_ok_and(|n| n.trim_end() == name)
            })
            .then_some(())
    }
}
