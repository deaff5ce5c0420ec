//! Modifier state of the virtual keyboard (pure).
//!
//! A Wayland virtual keyboard sends keys as evdev codes, but clients learn the modifier state
//! only from `zwp_virtual_keyboard_v1.modifiers` (the compositor forwards it as
//! `wl_keyboard.modifiers`). So the sender must compute the xkb masks itself from the keys it
//! presses. The masks follow the `modifier_map` lines of the embedded US keymap
//! (`keymap-us.xkb`, made with `xkbcli compile-keymap --layout us`), where the real modifiers
//! have their standard indices: Shift 0, Lock 1, Control 2, Mod1 3, Mod2 4, Mod3 5, Mod4 6,
//! Mod5 7.
//!
//! | keys (evdev) | modifier |
//! |---|---|
//! | LEFTSHIFT 42, RIGHTSHIFT 54 | Shift (depressed) |
//! | LEFTCTRL 29, RIGHTCTRL 97 | Control (depressed) |
//! | LEFTALT 56, RIGHTALT 100 | Mod1 (depressed; `<RALT>` is in Mod1's map in the US layout) |
//! | LEFTMETA 125, RIGHTMETA 126 | Mod4 (depressed) |
//! | CAPSLOCK 58 | Lock (locked, toggled on press) |
//! | NUMLOCK 69 | Mod2 (locked, toggled on press) |

/// xkb real-modifier masks of the embedded keymap.
pub mod mask {
    /// Shift.
    pub const SHIFT: u32 = 1 << 0;
    /// Lock (Caps Lock).
    pub const LOCK: u32 = 1 << 1;
    /// Control.
    pub const CONTROL: u32 = 1 << 2;
    /// Mod1 (Alt).
    pub const MOD1: u32 = 1 << 3;
    /// Mod2 (Num Lock).
    pub const MOD2: u32 = 1 << 4;
    /// Mod4 (Super).
    pub const MOD4: u32 = 1 << 6;
}

/// The `modifiers` request's arguments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ModMasks {
    /// Modifiers held by a pressed key.
    pub depressed: u32,
    /// Latched modifiers (never used here: no sticky keys).
    pub latched: u32,
    /// Locked modifiers (Caps Lock, Num Lock).
    pub locked: u32,
    /// Layout group (always 0: one layout).
    pub group: u32,
}

/// Tracks which modifier keys are down and which locks are on.
#[derive(Debug, Clone, Default)]
pub struct ModState {
    /// One bit per held modifier key, indexed by [`slot`].
    held: u8,
    locked: u32,
}

/// Index of a depressed-modifier key and its mask.
fn slot(code: u32) -> Option<(u8, u32)> {
    Some(match code {
        42 => (0, mask::SHIFT),
        54 => (1, mask::SHIFT),
        29 => (2, mask::CONTROL),
        97 => (3, mask::CONTROL),
        56 => (4, mask::MOD1),
        100 => (5, mask::MOD1),
        125 => (6, mask::MOD4),
        126 => (7, mask::MOD4),
        _ => return None,
    })
}

impl ModState {
    /// No modifier held, no lock on.
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one key transition; `true` when the masks changed (send `modifiers` then).
    pub fn key(&mut self, code: u32, pressed: bool) -> bool {
        let before = self.masks();
        if let Some((i, _)) = slot(code) {
            if pressed {
                self.held |= 1 << i;
            } else {
                self.held &= !(1 << i);
            }
        } else if pressed {
            match code {
                58 => self.locked ^= mask::LOCK,
                69 => self.locked ^= mask::MOD2,
                _ => {}
            }
        }
        self.masks() != before
    }

    /// The current masks.
    pub fn masks(&self) -> ModMasks {
        let mut depressed = 0;
        for code in [42, 54, 29, 97, 56, 100, 125, 126] {
            if let Some((i, m)) = slot(code)
                && self.held & (1 << i) != 0
            {
                depressed |= m;
            }
        }
        ModMasks {
            depressed,
            latched: 0,
            locked: self.locked,
            group: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shift_pressed_and_released() {
        let mut m = ModState::new();
        assert!(!m.key(30, true), "a letter changes no modifier");
        assert!(m.key(42, true));
        assert_eq!(m.masks().depressed, mask::SHIFT);
        assert!(!m.key(42, true), "a repeated press changes nothing");
        assert!(m.key(42, false));
        assert_eq!(m.masks(), ModMasks::default());
    }

    #[test]
    fn both_shifts_keep_shift_until_the_last_is_released() {
        let mut m = ModState::new();
        assert!(m.key(42, true));
        assert!(!m.key(54, true));
        assert!(!m.key(42, false));
        assert_eq!(m.masks().depressed, mask::SHIFT);
        assert!(m.key(54, false));
        assert_eq!(m.masks().depressed, 0);
    }

    #[test]
    fn ctrl_alt_super_combine() {
        let mut m = ModState::new();
        m.key(29, true);
        m.key(100, true);
        m.key(125, true);
        assert_eq!(m.masks().depressed, mask::CONTROL | mask::MOD1 | mask::MOD4);
    }

    #[test]
    fn locks_toggle_on_press_only() {
        let mut m = ModState::new();
        assert!(m.key(58, true));
        assert!(!m.key(58, false));
        assert_eq!(m.masks().locked, mask::LOCK);
        assert!(m.key(69, true));
        assert_eq!(m.masks().locked, mask::LOCK | mask::MOD2);
        assert!(m.key(58, true));
        assert_eq!(m.masks().locked, mask::MOD2);
        assert_eq!(m.masks().depressed, 0);
    }

    #[test]
    fn embedded_keymap_has_the_assumed_modifier_map() {
        let km = include_str!("keymap-us.xkb");
        for line in [
            "modifier_map Shift { <LFSH>, <RTSH> };",
            "modifier_map Lock { <CAPS> };",
            "modifier_map Control { <LCTL>, <RCTL> };",
            "modifier_map Mod1 { <LALT>, <RALT>, <META> };",
            "modifier_map Mod2 { <NMLK> };",
            "modifier_map Mod4 { <LWIN>, <RWIN>, <SUPR>, <HYPR> };",
        ] {
            assert!(km.contains(line), "keymap lacks {line}");
        }
    }
}
