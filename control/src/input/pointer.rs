//! Pointer arithmetic for the virtual devices (pure): absolute scaling, wheel notches, and
//! multi-touch slot assignment.
//!
//! - Absolute positions arrive in the client's reference frame (`x` in `0..=width`, where
//!   `width` is the reference width minus one) and leave as `0..=ABS_MAX` on a device whose
//!   axes the compositor maps onto the whole output.
//! - Scroll arrives in 1/120 notches (Win32 `WHEEL_DELTA`), which is also the unit of Linux's
//!   `REL_WHEEL_HI_RES` (kernel 5.0+, `Documentation/input/event-codes.rst`). Legacy
//!   `REL_WHEEL` must carry whole notches, so [`Wheel`] accumulates the remainder.
//! - Touch uses the evdev multi-touch protocol type B (`Documentation/input/multi-touch-protocol.rst`):
//!   each contact owns a slot and a tracking id until it lifts; [`TouchSlots`] assigns them.

use super::wire::{TouchEvent, TouchKind};

/// Upper end of every absolute axis of the pointer and touch devices (lower end 0).
pub const ABS_MAX: i32 = 65535;

/// Pressure axis range of the touch device (`0..=PRESSURE_MAX`).
pub const PRESSURE_MAX: i32 = 1023;

/// Scales `v` in `0..=extent` to `0..=ABS_MAX`, clamping. `None` when `extent <= 0` (no
/// usable reference frame).
pub fn scale_abs(v: i16, extent: i16) -> Option<i32> {
    if extent <= 0 {
        return None;
    }
    let v = i64::from(v.clamp(0, extent));
    // v <= extent, so the quotient is at most ABS_MAX and fits in i32.
    Some((v * i64::from(ABS_MAX) / i64::from(extent)) as i32)
}

/// Scales a normalized coordinate (`0.0..=1.0`, clamped) to `0..=max`.
pub fn scale_unit(v: f32, max: i32) -> i32 {
    // NaN never reaches here (decode rejects it); clamp covers the rest.
    (v.clamp(0.0, 1.0) * max as f32).round() as i32
}

/// Splits high-resolution scroll into whole notches for `REL_WHEEL`/`REL_HWHEEL`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Wheel {
    remainder: i32,
}

impl Wheel {
    /// One notch in high-resolution units.
    pub const NOTCH: i32 = 120;

    /// Adds `amount` (1/120 notches) and returns the whole notches now due. A change of
    /// direction discards the remainder, so a reversal acts at once.
    pub fn add(&mut self, amount: i16) -> i32 {
        let amount = i32::from(amount);
        if (self.remainder > 0 && amount < 0) || (self.remainder < 0 && amount > 0) {
            self.remainder = 0;
        }
        self.remainder += amount;
        let notches = self.remainder / Self::NOTCH;
        self.remainder -= notches * Self::NOTCH;
        notches
    }
}

/// Number of simultaneous contacts the touch device reports.
pub const TOUCH_SLOTS: usize = 10;

/// One multi-touch step for the touch device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TouchAction {
    /// A contact starts in `slot` with a fresh `tracking_id`.
    Down {
        /// Slot index.
        slot: u8,
        /// `ABS_MT_TRACKING_ID` value.
        tracking_id: i32,
        /// X in `0..=ABS_MAX`.
        x: i32,
        /// Y in `0..=ABS_MAX`.
        y: i32,
        /// Pressure in `0..=PRESSURE_MAX`.
        pressure: i32,
    },
    /// The contact in `slot` moves.
    Move {
        /// Slot index.
        slot: u8,
        /// X in `0..=ABS_MAX`.
        x: i32,
        /// Y in `0..=ABS_MAX`.
        y: i32,
        /// Pressure in `0..=PRESSURE_MAX`.
        pressure: i32,
    },
    /// The contact in `slot` lifts (tracking id -1).
    Up {
        /// Slot index.
        slot: u8,
    },
}

/// Assigns touch contacts (client pointer ids) to device slots.
#[derive(Debug, Clone, Default)]
pub struct TouchSlots {
    pointer: [Option<u32>; TOUCH_SLOTS],
    next_tracking_id: u16,
}

impl TouchSlots {
    /// No contacts.
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of contacts down.
    pub fn active(&self) -> usize {
        self.pointer.iter().filter(|p| p.is_some()).count()
    }

    fn find(&self, id: u32) -> Option<u8> {
        // TOUCH_SLOTS (10) fits in u8.
        (0u8..)
            .zip(self.pointer.iter())
            .find(|(_, p)| **p == Some(id))
            .map(|(i, _)| i)
    }

    /// Turns one touch packet into device steps, appended to `out`. Hover, hover-leave and
    /// button-only events have no effect on a touch screen; a contact beyond
    /// [`TOUCH_SLOTS`] is ignored until a slot frees.
    pub fn handle(&mut self, t: &TouchEvent, out: &mut Vec<TouchAction>) {
        let x = scale_unit(t.x, ABS_MAX);
        let y = scale_unit(t.y, ABS_MAX);
        let pressure = scale_unit(t.pressure_or_distance, PRESSURE_MAX);
        match t.kind {
            TouchKind::Down | TouchKind::Move => {
                if let Some(slot) = self.find(t.pointer_id) {
                    out.push(TouchAction::Move {
                        slot,
                        x,
                        y,
                        pressure,
                    });
                } else if t.kind == TouchKind::Down
                    && let Some((slot, free)) = (0u8..)
                        .zip(self.pointer.iter_mut())
                        .find(|(_, p)| p.is_none())
                {
                    *free = Some(t.pointer_id);
                    let tracking_id = i32::from(self.next_tracking_id);
                    // Tracking ids only need to differ from live ones; wrap well below i32.
                    self.next_tracking_id = self.next_tracking_id.wrapping_add(1) & 0x7FFF;
                    out.push(TouchAction::Down {
                        slot,
                        tracking_id,
                        x,
                        y,
                        pressure,
                    });
                }
            }
            TouchKind::Up | TouchKind::Cancel => {
                if let Some(slot) = self.find(t.pointer_id) {
                    self.pointer[usize::from(slot)] = None;
                    out.push(TouchAction::Up { slot });
                }
            }
            TouchKind::CancelAll => self.release_all(out),
            TouchKind::Hover | TouchKind::HoverLeave | TouchKind::ButtonOnly => {}
        }
    }

    /// Lifts every contact.
    pub fn release_all(&mut self, out: &mut Vec<TouchAction>) {
        for (slot, p) in (0u8..).zip(self.pointer.iter_mut()) {
            if p.take().is_some() {
                out.push(TouchAction::Up { slot });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abs_scaling() {
        // Wolf's fixture: 1464,528 in a 1920x1080 frame sent as 1919x1079.
        assert_eq!(scale_abs(0, 1919), Some(0));
        assert_eq!(scale_abs(1919, 1919), Some(ABS_MAX));
        assert_eq!(scale_abs(1464, 1919), Some(49_996));
        assert_eq!(scale_abs(-5, 1919), Some(0));
        assert_eq!(scale_abs(5000, 1919), Some(ABS_MAX));
        assert_eq!(scale_abs(1, 0), None);
        assert_eq!(scale_abs(1, -1), None);
        assert_eq!(scale_abs(i16::MAX, i16::MAX), Some(ABS_MAX));
        assert_eq!(scale_unit(0.5, 1000), 500);
        assert_eq!(scale_unit(-3.0, 1000), 0);
        assert_eq!(scale_unit(7.0, 1000), 1000);
    }

    #[test]
    fn wheel_notches() {
        let mut w = Wheel::default();
        assert_eq!(w.add(120), 1);
        assert_eq!(w.add(60), 0);
        assert_eq!(w.add(60), 1);
        assert_eq!(w.add(-30), 0, "reversal drops the remainder");
        assert_eq!(w.add(-90), -1);
        assert_eq!(w.add(i16::MIN), -273);
        assert_eq!(w.add(i16::MAX), 273);
    }

    fn touch(kind: TouchKind, id: u32, x: f32) -> TouchEvent {
        TouchEvent {
            kind,
            pointer_id: id,
            rotation: None,
            x,
            y: 0.5,
            pressure_or_distance: 1.0,
            contact_major: 0.0,
            contact_minor: 0.0,
        }
    }

    #[test]
    fn touch_slots() {
        let mut s = TouchSlots::new();
        let mut out = Vec::new();
        s.handle(&touch(TouchKind::Down, 42, 0.0), &mut out);
        s.handle(&touch(TouchKind::Down, 7, 1.0), &mut out);
        s.handle(&touch(TouchKind::Move, 42, 0.5), &mut out);
        s.handle(&touch(TouchKind::Hover, 9, 0.5), &mut out);
        s.handle(&touch(TouchKind::Move, 9, 0.5), &mut out); // unknown contact
        s.handle(&touch(TouchKind::Up, 42, 0.5), &mut out);
        s.handle(&touch(TouchKind::Down, 8, 0.25), &mut out); // reuses slot 0
        assert_eq!(
            out,
            vec![
                TouchAction::Down {
                    slot: 0,
                    tracking_id: 0,
                    x: 0,
                    y: 32768,
                    pressure: PRESSURE_MAX
                },
                TouchAction::Down {
                    slot: 1,
                    tracking_id: 1,
                    x: ABS_MAX,
                    y: 32768,
                    pressure: PRESSURE_MAX
                },
                TouchAction::Move {
                    slot: 0,
                    x: 32768,
                    y: 32768,
                    pressure: PRESSURE_MAX
                },
                TouchAction::Up { slot: 0 },
                TouchAction::Down {
                    slot: 0,
                    tracking_id: 2,
                    x: 16384,
                    y: 32768,
                    pressure: PRESSURE_MAX
                },
            ]
        );
        out.clear();
        s.handle(&touch(TouchKind::CancelAll, 0, 0.0), &mut out);
        assert_eq!(
            out,
            vec![TouchAction::Up { slot: 0 }, TouchAction::Up { slot: 1 }]
        );
        assert_eq!(s.active(), 0);
    }

    #[test]
    fn touch_slots_full() {
        let mut s = TouchSlots::new();
        let mut out = Vec::new();
        for id in 0..(TOUCH_SLOTS as u32 + 3) {
            s.handle(&touch(TouchKind::Down, id, 0.0), &mut out);
        }
        assert_eq!(out.len(), TOUCH_SLOTS);
        assert_eq!(s.active(), TOUCH_SLOTS);
    }
}
