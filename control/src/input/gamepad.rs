//! Gamepad tracking (pure): multi-controller and arrival packets become per-pad changes.
//!
//! The client describes each pad with a full state snapshot (multi-controller packet) that
//! also carries `activeGamepadMask`, the set of pads connected on the client. A pad appears
//! either with a controller-arrival packet (Sunshine clients) or, for legacy clients, with its
//! first state packet whose own mask bit is set. It disappears with a final state packet whose
//! own mask bit is clear (MCC `InputStream.c`, SS `src/input.cpp` multi-controller passthrough).
//! Only the pad's *own* bit is consulted, as Sunshine does: a packet for pad 0 says nothing
//! reliable about pad 1.
//!
//! ```text
//!   arrival(n) ──────────────┐
//!   state(n, mask ∋ n) ──────┤ absent ─► Arrived(n) [+ State(n) if not neutral]
//!                            │ present ─► State(n) when anything changed
//!   state(n, mask ∌ n) ──────┘ present ─► Removed(n)      absent ─► nothing
//! ```
//!
//! [`Gamepads`] follows the sans-IO grammar: feed events with [`Gamepads::handle_event`], then
//! drain [`Gamepads::poll_change`].

use std::collections::VecDeque;

use super::wire::{ControllerKind, GamepadState, InputEvent, MAX_GAMEPADS};

/// Button bits of [`GamepadState::buttons`] (MCC `Limelight.h`).
pub mod buttons {
    /// D-pad up.
    pub const UP: u32 = 0x0001;
    /// D-pad down.
    pub const DOWN: u32 = 0x0002;
    /// D-pad left.
    pub const LEFT: u32 = 0x0004;
    /// D-pad right.
    pub const RIGHT: u32 = 0x0008;
    /// Start / Play / Menu.
    pub const START: u32 = 0x0010;
    /// Back / Select / View.
    pub const BACK: u32 = 0x0020;
    /// Left stick click.
    pub const LS_CLICK: u32 = 0x0040;
    /// Right stick click.
    pub const RS_CLICK: u32 = 0x0080;
    /// Left bumper.
    pub const LB: u32 = 0x0100;
    /// Right bumper.
    pub const RB: u32 = 0x0200;
    /// Guide / Home / PS.
    pub const GUIDE: u32 = 0x0400;
    /// A (south).
    pub const A: u32 = 0x1000;
    /// B (east).
    pub const B: u32 = 0x2000;
    /// X (west).
    pub const X: u32 = 0x4000;
    /// Y (north).
    pub const Y: u32 = 0x8000;
    /// Paddle 1 (Sunshine extension, `buttonFlags2`).
    pub const PADDLE1: u32 = 0x01_0000;
    /// Paddle 2.
    pub const PADDLE2: u32 = 0x02_0000;
    /// Paddle 3.
    pub const PADDLE3: u32 = 0x04_0000;
    /// Paddle 4.
    pub const PADDLE4: u32 = 0x08_0000;
    /// Touchpad click (PlayStation).
    pub const TOUCHPAD: u32 = 0x10_0000;
    /// Share / Mic / Capture / Mute.
    pub const MISC: u32 = 0x20_0000;
    /// The buttons of a standard Xbox 360 pad, assumed for pads that never sent an arrival.
    pub const XBOX_DEFAULT: u32 = UP
        | DOWN
        | LEFT
        | RIGHT
        | START
        | BACK
        | LS_CLICK
        | RS_CLICK
        | LB
        | RB
        | GUIDE
        | A
        | B
        | X
        | Y;
}

/// Capability bits of a controller arrival (MCC `LI_CCAP_*`).
pub mod caps {
    /// Triggers report 0..=255 rather than on/off.
    pub const ANALOG_TRIGGERS: u16 = 0x01;
    /// Main rumble motors.
    pub const RUMBLE: u16 = 0x02;
    /// Trigger rumble motors.
    pub const TRIGGER_RUMBLE: u16 = 0x04;
    /// Touchpad events.
    pub const TOUCHPAD: u16 = 0x08;
    /// Accelerometer events.
    pub const ACCEL: u16 = 0x10;
    /// Gyroscope events.
    pub const GYRO: u16 = 0x20;
    /// Battery reports.
    pub const BATTERY: u16 = 0x40;
    /// RGB LED can be set.
    pub const RGB_LED: u16 = 0x80;
    /// Two touchpads.
    pub const DUAL_TOUCHPAD: u16 = 0x100;
}

/// What the client told us about a pad when it arrived.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct PadInfo {
    /// Controller family.
    pub kind: ControllerKind,
    /// Capability bits ([`caps`]).
    pub capabilities: u16,
    /// Buttons the pad has ([`buttons`]).
    pub supported_buttons: u32,
}

impl PadInfo {
    /// What a pad that appeared without an arrival packet is assumed to be: an Xbox 360 pad
    /// with analog triggers and rumble.
    pub const LEGACY: PadInfo = PadInfo {
        kind: ControllerKind::Unknown,
        capabilities: caps::ANALOG_TRIGGERS | caps::RUMBLE,
        supported_buttons: buttons::XBOX_DEFAULT,
    };
}

/// Buttons, triggers and sticks of one pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct PadState {
    /// Button bits ([`buttons`]).
    pub buttons: u32,
    /// Left trigger, 0..=255.
    pub lt: u8,
    /// Right trigger, 0..=255.
    pub rt: u8,
    /// Left stick X, positive right.
    pub lsx: i16,
    /// Left stick Y, positive up.
    pub lsy: i16,
    /// Right stick X, positive right.
    pub rsx: i16,
    /// Right stick Y, positive up.
    pub rsy: i16,
}

impl From<&GamepadState> for PadState {
    fn from(g: &GamepadState) -> Self {
        PadState {
            buttons: g.buttons,
            lt: g.lt,
            rt: g.rt,
            lsx: g.lsx,
            lsy: g.lsy,
            rsx: g.rsx,
            rsy: g.rsy,
        }
    }
}

/// A change to the set of pads or to one pad's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum GamepadChange {
    /// Pad `number` connected; its state starts neutral.
    Arrived {
        /// Pad index.
        number: u8,
        /// What it is.
        info: PadInfo,
    },
    /// Pad `number` disconnected.
    Removed {
        /// Pad index.
        number: u8,
    },
    /// Pad `number` changed state.
    State {
        /// Pad index.
        number: u8,
        /// The new state.
        state: PadState,
        /// The state before, to diff buttons against.
        previous: PadState,
    },
}

#[derive(Debug, Clone, Copy)]
struct Pad {
    info: PadInfo,
    state: PadState,
}

/// Tracks up to 16 pads and turns input events into [`GamepadChange`]s.
#[derive(Debug)]
pub struct Gamepads {
    pads: [Option<Pad>; MAX_GAMEPADS],
    changes: VecDeque<GamepadChange>,
}

impl Default for Gamepads {
    fn default() -> Self {
        Self::new()
    }
}

impl Gamepads {
    /// No pads.
    pub fn new() -> Self {
        Gamepads {
            pads: [None; MAX_GAMEPADS],
            // One event yields at most two changes; room for a full remove_all besides.
            changes: VecDeque::with_capacity(2 * MAX_GAMEPADS),
        }
    }

    /// Feeds one event. Returns whether it concerned the pad set or a pad's state
    /// (multi-controller or arrival); every other event is ignored.
    pub fn handle_event(&mut self, event: &InputEvent) -> bool {
        match event {
            InputEvent::ControllerArrival(a) => {
                self.arrive(
                    a.number,
                    PadInfo {
                        kind: a.kind,
                        capabilities: a.capabilities,
                        supported_buttons: a.supported_buttons,
                    },
                );
                true
            }
            InputEvent::Gamepad(g) => {
                self.handle_state(g);
                true
            }
            _ => false,
        }
    }

    fn slot(&mut self, number: u8) -> Option<&mut Option<Pad>> {
        self.pads.get_mut(usize::from(number))
    }

    fn arrive(&mut self, number: u8, info: PadInfo) {
        // A repeated arrival for a connected pad changes nothing (as in Sunshine).
        if let Some(slot @ None) = self.slot(number) {
            *slot = Some(Pad {
                info,
                state: PadState::default(),
            });
            self.changes
                .push_back(GamepadChange::Arrived { number, info });
        }
    }

    fn handle_state(&mut self, g: &GamepadState) {
        let number = g.number;
        let present = u32::from(g.active_mask)
            .checked_shr(u32::from(number))
            .is_some_and(|m| m & 1 == 1);
        if present {
            self.arrive(number, PadInfo::LEGACY);
        }
        let Some(slot) = self.slot(number) else {
            return; // decode() keeps numbers below 16; nothing to do otherwise.
        };
        match (present, slot.as_mut()) {
            (true, Some(pad)) => {
                let state = PadState::from(g);
                if state != pad.state {
                    let previous = std::mem::replace(&mut pad.state, state);
                    self.changes.push_back(GamepadChange::State {
                        number,
                        state,
                        previous,
                    });
                }
            }
            (false, Some(_)) => {
                *slot = None;
                self.changes.push_back(GamepadChange::Removed { number });
            }
            (_, None) => {}
        }
    }

    /// Removes every pad (session end), queueing a [`GamepadChange::Removed`] for each.
    pub fn remove_all(&mut self) {
        for (number, slot) in (0u8..).zip(self.pads.iter_mut()) {
            if slot.take().is_some() {
                self.changes.push_back(GamepadChange::Removed { number });
            }
        }
    }

    /// The next change, oldest first; `None` when there is nothing to do.
    pub fn poll_change(&mut self) -> Option<GamepadChange> {
        self.changes.pop_front()
    }

    /// Current state of pad `number`, if connected.
    pub fn state(&self, number: u8) -> Option<PadState> {
        self.pads.get(usize::from(number))?.map(|p| p.state)
    }

    /// Arrival information of pad `number`, if connected.
    pub fn info(&self, number: u8) -> Option<PadInfo> {
        self.pads.get(usize::from(number))?.map(|p| p.info)
    }

    /// Mask of connected pads (bit `n` = pad `n`).
    pub fn connected_mask(&self) -> u16 {
        self.pads
            .iter()
            .enumerate()
            .filter(|(_, p)| p.is_some())
            .fold(0, |m, (i, _)| m | (1 << i))
    }
}

/// Linux `input-event-codes.h` values used for the virtual Xbox-style pad. Kept here, in the
/// pure module, so the mapping is testable without a kernel.
pub mod linux {
    /// `BTN_SOUTH` (= `BTN_A`).
    pub const BTN_SOUTH: u16 = 0x130;
    /// `BTN_EAST` (= `BTN_B`).
    pub const BTN_EAST: u16 = 0x131;
    /// `BTN_NORTH` (= `BTN_X`, 0x133): the xpad driver reports the Xbox X button here.
    pub const BTN_NORTH: u16 = 0x133;
    /// `BTN_WEST` (= `BTN_Y`, 0x134): the xpad driver reports the Xbox Y button here.
    pub const BTN_WEST: u16 = 0x134;
    /// `BTN_TL`.
    pub const BTN_TL: u16 = 0x136;
    /// `BTN_TR`.
    pub const BTN_TR: u16 = 0x137;
    /// `BTN_SELECT`.
    pub const BTN_SELECT: u16 = 0x13a;
    /// `BTN_START`.
    pub const BTN_START: u16 = 0x13b;
    /// `BTN_MODE`.
    pub const BTN_MODE: u16 = 0x13c;
    /// `BTN_THUMBL`.
    pub const BTN_THUMBL: u16 = 0x13d;
    /// `BTN_THUMBR`.
    pub const BTN_THUMBR: u16 = 0x13e;
    /// `BTN_TRIGGER_HAPPY1`; 2..6 follow.
    pub const BTN_TRIGGER_HAPPY1: u16 = 0x2c0;
    /// `ABS_X`.
    pub const ABS_X: u16 = 0x00;
    /// `ABS_Y`.
    pub const ABS_Y: u16 = 0x01;
    /// `ABS_Z` (left trigger).
    pub const ABS_Z: u16 = 0x02;
    /// `ABS_RX`.
    pub const ABS_RX: u16 = 0x03;
    /// `ABS_RY`.
    pub const ABS_RY: u16 = 0x04;
    /// `ABS_RZ` (right trigger).
    pub const ABS_RZ: u16 = 0x05;
    /// `ABS_HAT0X` (d-pad).
    pub const ABS_HAT0X: u16 = 0x10;
    /// `ABS_HAT0Y` (d-pad).
    pub const ABS_HAT0Y: u16 = 0x11;
}

/// Moonlight button bit → Linux key code of the virtual pad. D-pad bits are absent: they
/// become the hat axes ([`pad_axes`]). The face buttons follow the xpad driver, which games
/// and SDL's mapping for Xbox 360 pads (045e:028e) expect.
pub const BUTTON_MAP: [(u32, u16); 17] = [
    (buttons::A, linux::BTN_SOUTH),
    (buttons::B, linux::BTN_EAST),
    (buttons::X, linux::BTN_NORTH),
    (buttons::Y, linux::BTN_WEST),
    (buttons::LB, linux::BTN_TL),
    (buttons::RB, linux::BTN_TR),
    (buttons::BACK, linux::BTN_SELECT),
    (buttons::START, linux::BTN_START),
    (buttons::GUIDE, linux::BTN_MODE),
    (buttons::LS_CLICK, linux::BTN_THUMBL),
    (buttons::RS_CLICK, linux::BTN_THUMBR),
    (buttons::PADDLE1, linux::BTN_TRIGGER_HAPPY1),
    (buttons::PADDLE2, linux::BTN_TRIGGER_HAPPY1 + 1),
    (buttons::PADDLE3, linux::BTN_TRIGGER_HAPPY1 + 2),
    (buttons::PADDLE4, linux::BTN_TRIGGER_HAPPY1 + 3),
    (buttons::TOUCHPAD, linux::BTN_TRIGGER_HAPPY1 + 4),
    (buttons::MISC, linux::BTN_TRIGGER_HAPPY1 + 5),
];

/// Axis values of the virtual pad for `state`, as `(ABS_* code, value)`.
///
/// Sticks use the full `i16` range; Y axes are flipped (Moonlight: positive up, evdev:
/// positive down) with a bitwise NOT, as xpad does, which maps `i16::MIN..=i16::MAX` onto
/// itself without overflow. Triggers are `0..=255`; the d-pad is a hat, `-1..=1` per axis.
pub fn pad_axes(state: &PadState) -> [(u16, i32); 8] {
    let b = state.buttons;
    let hat = |neg: u32, pos: u32| i32::from(b & pos != 0) - i32::from(b & neg != 0);
    [
        (linux::ABS_X, state.lsx.into()),
        (linux::ABS_Y, (!state.lsy).into()),
        (linux::ABS_RX, state.rsx.into()),
        (linux::ABS_RY, (!state.rsy).into()),
        (linux::ABS_Z, state.lt.into()),
        (linux::ABS_RZ, state.rt.into()),
        (linux::ABS_HAT0X, hat(buttons::LEFT, buttons::RIGHT)),
        (linux::ABS_HAT0Y, hat(buttons::UP, buttons::DOWN)),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::wire::ControllerArrival;

    fn state(number: u8, mask: u16, buttons: u32) -> InputEvent {
        InputEvent::Gamepad(GamepadState {
            number,
            active_mask: mask,
            buttons,
            ..GamepadState::default()
        })
    }

    fn drain(g: &mut Gamepads) -> Vec<GamepadChange> {
        std::iter::from_fn(|| g.poll_change()).collect()
    }

    #[test]
    fn legacy_arrival_update_removal() {
        let mut g = Gamepads::new();
        assert!(g.handle_event(&state(0, 0b1, buttons::A)));
        let ch = drain(&mut g);
        assert_eq!(
            ch[0],
            GamepadChange::Arrived {
                number: 0,
                info: PadInfo::LEGACY
            }
        );
        assert!(matches!(
            ch[1],
            GamepadChange::State { number: 0, state, previous }
                if state.buttons == buttons::A && previous == PadState::default()
        ));
        assert_eq!(ch.len(), 2);

        // Same state again: nothing.
        g.handle_event(&state(0, 0b1, buttons::A));
        assert!(g.poll_change().is_none());

        // Release A.
        g.handle_event(&state(0, 0b1, 0));
        assert!(matches!(
            drain(&mut g)[..],
            [GamepadChange::State { number: 0, state, .. }] if state.buttons == 0
        ));

        // Final packet with the pad's own bit clear.
        g.handle_event(&state(0, 0, 0));
        assert_eq!(drain(&mut g), vec![GamepadChange::Removed { number: 0 }]);
        assert_eq!(g.connected_mask(), 0);

        // A stray packet for an absent pad with its bit clear: nothing.
        g.handle_event(&state(0, 0, buttons::B));
        assert!(g.poll_change().is_none());
    }

    #[test]
    fn arrival_packet_then_neutral_state() {
        let mut g = Gamepads::new();
        let info = PadInfo {
            kind: ControllerKind::PlayStation,
            capabilities: caps::TOUCHPAD | caps::GYRO,
            supported_buttons: buttons::XBOX_DEFAULT | buttons::TOUCHPAD,
        };
        g.handle_event(&InputEvent::ControllerArrival(ControllerArrival {
            number: 5,
            kind: info.kind,
            capabilities: info.capabilities,
            supported_buttons: info.supported_buttons,
        }));
        // Repeated arrival: ignored.
        g.handle_event(&InputEvent::ControllerArrival(ControllerArrival {
            number: 5,
            kind: ControllerKind::Xbox,
            capabilities: 0,
            supported_buttons: 0,
        }));
        // Neutral state with its bit set: no change.
        g.handle_event(&state(5, 1 << 5, 0));
        assert_eq!(
            drain(&mut g),
            vec![GamepadChange::Arrived { number: 5, info }]
        );
        assert_eq!(g.info(5), Some(info));
        assert_eq!(g.connected_mask(), 1 << 5);
    }

    #[test]
    fn sixteen_pads_and_other_bits_do_not_remove() {
        let mut g = Gamepads::new();
        for n in 0..16u8 {
            g.handle_event(&state(n, 0xFFFF, 0));
        }
        assert_eq!(g.connected_mask(), 0xFFFF);
        assert_eq!(drain(&mut g).len(), 16);
        // A packet for pad 15 whose mask lacks pad 3: pad 3 stays (only the own bit counts).
        g.handle_event(&state(15, !(1u16 << 3), buttons::Y));
        assert_eq!(g.connected_mask(), 0xFFFF);
        assert_eq!(g.state(15).map(|s| s.buttons), Some(buttons::Y));
        drain(&mut g);
        g.remove_all();
        assert_eq!(drain(&mut g).len(), 16);
        assert_eq!(g.connected_mask(), 0);
    }

    #[test]
    fn axes_and_hat() {
        let s = PadState {
            buttons: buttons::UP | buttons::RIGHT,
            lt: 255,
            rt: 1,
            lsx: i16::MIN,
            lsy: i16::MAX,
            rsx: 5,
            rsy: i16::MIN,
        };
        let axes = pad_axes(&s);
        assert_eq!(axes[0], (linux::ABS_X, -32768));
        assert_eq!(axes[1], (linux::ABS_Y, -32768), "full up -> evdev minimum");
        assert_eq!(
            axes[3],
            (linux::ABS_RY, 32767),
            "full down -> evdev maximum"
        );
        assert_eq!(axes[4], (linux::ABS_Z, 255));
        assert_eq!(axes[6], (linux::ABS_HAT0X, 1));
        assert_eq!(axes[7], (linux::ABS_HAT0Y, -1));
        let both = pad_axes(&PadState {
            buttons: buttons::LEFT | buttons::RIGHT,
            ..PadState::default()
        });
        assert_eq!(both[6], (linux::ABS_HAT0X, 0));
    }

    #[test]
    fn button_map_is_one_to_one() {
        let mut bits = 0u32;
        let mut codes = std::collections::BTreeSet::new();
        for (bit, code) in BUTTON_MAP {
            assert_eq!(bit.count_ones(), 1);
            assert_eq!(bits & bit, 0, "bit {bit:#x} twice");
            bits |= bit;
            assert!(codes.insert(code), "code {code:#x} twice");
        }
        let dpad = buttons::UP | buttons::DOWN | buttons::LEFT | buttons::RIGHT;
        assert_eq!(bits | dpad, 0x3F_F7FF, "every defined button is mapped");
    }
}
