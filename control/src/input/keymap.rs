//! Win32 virtual-key codes → Linux `KEY_*` codes, and keyboard state (pure).
//!
//! Moonlight sends Win32 virtual-key codes (VK, the low byte of the key code; Moonlight-Qt sets
//! bit 15, Sunshine masks with `0xFF`). The virtual keyboard speaks Linux key codes
//! (`linux/input-event-codes.h`), so every VK needs a table entry. The table follows the US
//! layout position of each key, which is what the client normalizes to (unless the Sunshine
//! flag `NON_NORMALIZED` says otherwise; positions are still the best guess then).
//!
//! [`Keyboard`] adds the little state the host needs on top of the table:
//! - a repeated key-down (client auto-repeat) becomes an evdev repeat (value 2), because the
//!   kernel drops a second "press" of a key it believes is held;
//! - a key-up for a key that is not held is dropped;
//! - a key-down whose packet says Shift/Ctrl/Alt is held while the virtual keyboard holds no
//!   such key gets that modifier pressed before and released after it (clients that send
//!   characters with modifier flags but no modifier key events; SS `src/input.cpp` does the
//!   same);
//! - [`Keyboard::release_all`] lifts every held key at session end.

use super::wire::Modifiers;

/// Linux key codes (`linux/input-event-codes.h`) used by the table. Checked against the
/// `evdev` crate's constants in the uinput backend's tests.
#[allow(missing_docs)]
pub mod linux {
    pub const KEY_ESC: u16 = 1;
    pub const KEY_1: u16 = 2;
    pub const KEY_0: u16 = 11;
    pub const KEY_MINUS: u16 = 12;
    pub const KEY_EQUAL: u16 = 13;
    pub const KEY_BACKSPACE: u16 = 14;
    pub const KEY_TAB: u16 = 15;
    pub const KEY_Q: u16 = 16;
    pub const KEY_W: u16 = 17;
    pub const KEY_E: u16 = 18;
    pub const KEY_R: u16 = 19;
    pub const KEY_T: u16 = 20;
    pub const KEY_Y: u16 = 21;
    pub const KEY_U: u16 = 22;
    pub const KEY_I: u16 = 23;
    pub const KEY_O: u16 = 24;
    pub const KEY_P: u16 = 25;
    pub const KEY_LEFTBRACE: u16 = 26;
    pub const KEY_RIGHTBRACE: u16 = 27;
    pub const KEY_ENTER: u16 = 28;
    pub const KEY_LEFTCTRL: u16 = 29;
    pub const KEY_A: u16 = 30;
    pub const KEY_S: u16 = 31;
    pub const KEY_D: u16 = 32;
    pub const KEY_F: u16 = 33;
    pub const KEY_G: u16 = 34;
    pub const KEY_H: u16 = 35;
    pub const KEY_J: u16 = 36;
    pub const KEY_K: u16 = 37;
    pub const KEY_L: u16 = 38;
    pub const KEY_SEMICOLON: u16 = 39;
    pub const KEY_APOSTROPHE: u16 = 40;
    pub const KEY_GRAVE: u16 = 41;
    pub const KEY_LEFTSHIFT: u16 = 42;
    pub const KEY_BACKSLASH: u16 = 43;
    pub const KEY_Z: u16 = 44;
    pub const KEY_X: u16 = 45;
    pub const KEY_C: u16 = 46;
    pub const KEY_V: u16 = 47;
    pub const KEY_B: u16 = 48;
    pub const KEY_N: u16 = 49;
    pub const KEY_M: u16 = 50;
    pub const KEY_COMMA: u16 = 51;
    pub const KEY_DOT: u16 = 52;
    pub const KEY_SLASH: u16 = 53;
    pub const KEY_RIGHTSHIFT: u16 = 54;
    pub const KEY_KPASTERISK: u16 = 55;
    pub const KEY_LEFTALT: u16 = 56;
    pub const KEY_SPACE: u16 = 57;
    pub const KEY_CAPSLOCK: u16 = 58;
    pub const KEY_F1: u16 = 59;
    pub const KEY_F10: u16 = 68;
    pub const KEY_NUMLOCK: u16 = 69;
    pub const KEY_SCROLLLOCK: u16 = 70;
    pub const KEY_KP7: u16 = 71;
    pub const KEY_KP8: u16 = 72;
    pub const KEY_KP9: u16 = 73;
    pub const KEY_KPMINUS: u16 = 74;
    pub const KEY_KP4: u16 = 75;
    pub const KEY_KP5: u16 = 76;
    pub const KEY_KP6: u16 = 77;
    pub const KEY_KPPLUS: u16 = 78;
    pub const KEY_KP1: u16 = 79;
    pub const KEY_KP2: u16 = 80;
    pub const KEY_KP3: u16 = 81;
    pub const KEY_KP0: u16 = 82;
    pub const KEY_KPDOT: u16 = 83;
    pub const KEY_ZENKAKUHANKAKU: u16 = 85;
    pub const KEY_102ND: u16 = 86;
    pub const KEY_F11: u16 = 87;
    pub const KEY_F12: u16 = 88;
    pub const KEY_RO: u16 = 89;
    pub const KEY_HENKAN: u16 = 92;
    pub const KEY_KATAKANAHIRAGANA: u16 = 93;
    pub const KEY_MUHENKAN: u16 = 94;
    pub const KEY_RIGHTCTRL: u16 = 97;
    pub const KEY_KPSLASH: u16 = 98;
    pub const KEY_SYSRQ: u16 = 99;
    pub const KEY_RIGHTALT: u16 = 100;
    pub const KEY_HOME: u16 = 102;
    pub const KEY_UP: u16 = 103;
    pub const KEY_PAGEUP: u16 = 104;
    pub const KEY_LEFT: u16 = 105;
    pub const KEY_RIGHT: u16 = 106;
    pub const KEY_END: u16 = 107;
    pub const KEY_DOWN: u16 = 108;
    pub const KEY_PAGEDOWN: u16 = 109;
    pub const KEY_INSERT: u16 = 110;
    pub const KEY_DELETE: u16 = 111;
    pub const KEY_MUTE: u16 = 113;
    pub const KEY_VOLUMEDOWN: u16 = 114;
    pub const KEY_VOLUMEUP: u16 = 115;
    pub const KEY_KPEQUAL: u16 = 117;
    pub const KEY_PAUSE: u16 = 119;
    pub const KEY_KPCOMMA: u16 = 121;
    pub const KEY_HANGEUL: u16 = 122;
    pub const KEY_HANJA: u16 = 123;
    pub const KEY_LEFTMETA: u16 = 125;
    pub const KEY_RIGHTMETA: u16 = 126;
    pub const KEY_COMPOSE: u16 = 127;
    pub const KEY_STOP: u16 = 128;
    pub const KEY_HELP: u16 = 138;
    pub const KEY_CALC: u16 = 140;
    pub const KEY_SLEEP: u16 = 142;
    pub const KEY_MAIL: u16 = 155;
    pub const KEY_BOOKMARKS: u16 = 156;
    pub const KEY_COMPUTER: u16 = 157;
    pub const KEY_BACK: u16 = 158;
    pub const KEY_FORWARD: u16 = 159;
    pub const KEY_NEXTSONG: u16 = 163;
    pub const KEY_PLAYPAUSE: u16 = 164;
    pub const KEY_PREVIOUSSONG: u16 = 165;
    pub const KEY_STOPCD: u16 = 166;
    pub const KEY_HOMEPAGE: u16 = 172;
    pub const KEY_REFRESH: u16 = 173;
    pub const KEY_F13: u16 = 183;
    pub const KEY_F24: u16 = 194;
    pub const KEY_PLAY: u16 = 207;
    pub const KEY_PRINT: u16 = 210;
    pub const KEY_SEARCH: u16 = 217;
    pub const KEY_MEDIA: u16 = 226;
    pub const KEY_SELECT: u16 = 0x161;
    pub const KEY_CLEAR: u16 = 0x163;
}

use linux::*;

/// Letter VKs `A`..`Z` (0x41..0x5A) in alphabetical order.
const LETTERS: [u16; 26] = [
    KEY_A, KEY_B, KEY_C, KEY_D, KEY_E, KEY_F, KEY_G, KEY_H, KEY_I, KEY_J, KEY_K, KEY_L, KEY_M,
    KEY_N, KEY_O, KEY_P, KEY_Q, KEY_R, KEY_S, KEY_T, KEY_U, KEY_V, KEY_W, KEY_X, KEY_Y, KEY_Z,
];

/// Every VK that is not a letter, digit or function key, with its Linux code.
/// VK names from the Win32 "Virtual-Key Codes" list.
const SPECIAL: [(u8, u16); 96] = [
    (0x08, KEY_BACKSPACE),        // VK_BACK
    (0x09, KEY_TAB),              // VK_TAB
    (0x0C, KEY_CLEAR),            // VK_CLEAR
    (0x0D, KEY_ENTER),            // VK_RETURN
    (0x10, KEY_LEFTSHIFT),        // VK_SHIFT
    (0x11, KEY_LEFTCTRL),         // VK_CONTROL
    (0x12, KEY_LEFTALT),          // VK_MENU
    (0x13, KEY_PAUSE),            // VK_PAUSE
    (0x14, KEY_CAPSLOCK),         // VK_CAPITAL
    (0x15, KEY_KATAKANAHIRAGANA), // VK_KANA / VK_HANGUL (Japanese reading)
    (0x17, KEY_HANGEUL),          // VK_JUNJA (Korean; closest Linux key)
    (0x19, KEY_HANJA),            // VK_HANJA / VK_KANJI
    (0x1B, KEY_ESC),              // VK_ESCAPE
    (0x1C, KEY_HENKAN),           // VK_CONVERT
    (0x1D, KEY_MUHENKAN),         // VK_NONCONVERT
    (0x20, KEY_SPACE),            // VK_SPACE
    (0x21, KEY_PAGEUP),           // VK_PRIOR
    (0x22, KEY_PAGEDOWN),         // VK_NEXT
    (0x23, KEY_END),              // VK_END
    (0x24, KEY_HOME),             // VK_HOME
    (0x25, KEY_LEFT),             // VK_LEFT
    (0x26, KEY_UP),               // VK_UP
    (0x27, KEY_RIGHT),            // VK_RIGHT
    (0x28, KEY_DOWN),             // VK_DOWN
    (0x29, KEY_SELECT),           // VK_SELECT
    (0x2A, KEY_PRINT),            // VK_PRINT
    (0x2C, KEY_SYSRQ),            // VK_SNAPSHOT (Print Screen)
    (0x2D, KEY_INSERT),           // VK_INSERT
    (0x2E, KEY_DELETE),           // VK_DELETE
    (0x2F, KEY_HELP),             // VK_HELP
    (0x5B, KEY_LEFTMETA),         // VK_LWIN
    (0x5C, KEY_RIGHTMETA),        // VK_RWIN
    (0x5D, KEY_COMPOSE),          // VK_APPS (the Menu key)
    (0x5F, KEY_SLEEP),            // VK_SLEEP
    (0x60, KEY_KP0),              // VK_NUMPAD0
    (0x61, KEY_KP1),              // VK_NUMPAD1
    (0x62, KEY_KP2),              // VK_NUMPAD2
    (0x63, KEY_KP3),              // VK_NUMPAD3
    (0x64, KEY_KP4),              // VK_NUMPAD4
    (0x65, KEY_KP5),              // VK_NUMPAD5
    (0x66, KEY_KP6),              // VK_NUMPAD6
    (0x67, KEY_KP7),              // VK_NUMPAD7
    (0x68, KEY_KP8),              // VK_NUMPAD8
    (0x69, KEY_KP9),              // VK_NUMPAD9
    (0x6A, KEY_KPASTERISK),       // VK_MULTIPLY
    (0x6B, KEY_KPPLUS),           // VK_ADD
    (0x6C, KEY_KPCOMMA),          // VK_SEPARATOR
    (0x6D, KEY_KPMINUS),          // VK_SUBTRACT
    (0x6E, KEY_KPDOT),            // VK_DECIMAL
    (0x6F, KEY_KPSLASH),          // VK_DIVIDE
    (0x90, KEY_NUMLOCK),          // VK_NUMLOCK
    (0x91, KEY_SCROLLLOCK),       // VK_SCROLL
    (0x92, KEY_KPEQUAL),          // VK_OEM_NEC_EQUAL (numpad '=')
    (0xA0, KEY_LEFTSHIFT),        // VK_LSHIFT
    (0xA1, KEY_RIGHTSHIFT),       // VK_RSHIFT
    (0xA2, KEY_LEFTCTRL),         // VK_LCONTROL
    (0xA3, KEY_RIGHTCTRL),        // VK_RCONTROL
    (0xA4, KEY_LEFTALT),          // VK_LMENU
    (0xA5, KEY_RIGHTALT),         // VK_RMENU
    (0xA6, KEY_BACK),             // VK_BROWSER_BACK
    (0xA7, KEY_FORWARD),          // VK_BROWSER_FORWARD
    (0xA8, KEY_REFRESH),          // VK_BROWSER_REFRESH
    (0xA9, KEY_STOP),             // VK_BROWSER_STOP
    (0xAA, KEY_SEARCH),           // VK_BROWSER_SEARCH
    (0xAB, KEY_BOOKMARKS),        // VK_BROWSER_FAVORITES
    (0xAC, KEY_HOMEPAGE),         // VK_BROWSER_HOME
    (0xAD, KEY_MUTE),             // VK_VOLUME_MUTE
    (0xAE, KEY_VOLUMEDOWN),       // VK_VOLUME_DOWN
    (0xAF, KEY_VOLUMEUP),         // VK_VOLUME_UP
    (0xB0, KEY_NEXTSONG),         // VK_MEDIA_NEXT_TRACK
    (0xB1, KEY_PREVIOUSSONG),     // VK_MEDIA_PREV_TRACK
    (0xB2, KEY_STOPCD),           // VK_MEDIA_STOP
    (0xB3, KEY_PLAYPAUSE),        // VK_MEDIA_PLAY_PAUSE
    (0xB4, KEY_MAIL),             // VK_LAUNCH_MAIL
    (0xB5, KEY_MEDIA),            // VK_LAUNCH_MEDIA_SELECT
    (0xB6, KEY_COMPUTER),         // VK_LAUNCH_APP1 ("My Computer")
    (0xB7, KEY_CALC),             // VK_LAUNCH_APP2 (Calculator)
    (0xBA, KEY_SEMICOLON),        // VK_OEM_1      ;:
    (0xBB, KEY_EQUAL),            // VK_OEM_PLUS   =+
    (0xBC, KEY_COMMA),            // VK_OEM_COMMA  ,<
    (0xBD, KEY_MINUS),            // VK_OEM_MINUS  -_
    (0xBE, KEY_DOT),              // VK_OEM_PERIOD .>
    (0xBF, KEY_SLASH),            // VK_OEM_2      /?
    (0xC0, KEY_GRAVE),            // VK_OEM_3      `~
    (0xC1, KEY_RO),               // VK_ABNT_C1 (Brazilian /?)
    (0xC2, KEY_KPDOT),            // VK_ABNT_C2 (Brazilian numpad .)
    (0xDB, KEY_LEFTBRACE),        // VK_OEM_4      [{
    (0xDC, KEY_BACKSLASH),        // VK_OEM_5      \|
    (0xDD, KEY_RIGHTBRACE),       // VK_OEM_6      ]}
    (0xDE, KEY_APOSTROPHE),       // VK_OEM_7      '"
    (0xE2, KEY_102ND),            // VK_OEM_102    <> next to left Shift (ISO)
    (0xF3, KEY_ZENKAKUHANKAKU),   // VK_OEM_AUTO (Japanese half/full width)
    (0xF4, KEY_ZENKAKUHANKAKU),   // VK_OEM_ENLW (Japanese half/full width)
    (0xFA, KEY_PLAY),             // VK_PLAY
    (0xFE, KEY_CLEAR),            // VK_OEM_CLEAR
    (0x03, KEY_PAUSE),            // VK_CANCEL (Ctrl+Break)
];

const fn build_table() -> [u16; 256] {
    let mut t = [0u16; 256];
    // Digits: VK '1'..'9' = KEY_1..KEY_9 (consecutive), '0' = KEY_0.
    let mut i = 1;
    while i <= 9 {
        t[0x30 + i] = KEY_1 + (i as u16 - 1);
        i += 1;
    }
    t[0x30] = KEY_0;
    let mut i = 0;
    while i < 26 {
        t[0x41 + i] = LETTERS[i];
        i += 1;
    }
    // F1..F10 consecutive, F11/F12 elsewhere, F13..F24 consecutive.
    let mut i = 0;
    while i < 10 {
        t[0x70 + i] = KEY_F1 + i as u16;
        i += 1;
    }
    t[0x7A] = KEY_F11;
    t[0x7B] = KEY_F12;
    let mut i = 0;
    while i < 12 {
        t[0x7C + i] = KEY_F13 + i as u16;
        i += 1;
    }
    let mut i = 0;
    while i < SPECIAL.len() {
        t[SPECIAL[i].0 as usize] = SPECIAL[i].1;
        i += 1;
    }
    t
}

/// VK → Linux code; 0 = unmapped.
static VK_TO_LINUX: [u16; 256] = build_table();

/// The Win32 virtual-key code in a key packet's `code` (its low byte).
pub const fn key_vk(code: u16) -> u8 {
    (code & 0xFF) as u8
}

/// Linux key code for Win32 virtual key `vk`, or `None` for keys this host does not map
/// (mouse-button VKs, IME process keys, OEM-specific codes).
pub fn vk_to_linux(vk: u8) -> Option<u16> {
    match VK_TO_LINUX[usize::from(vk)] {
        0 => None,
        code => Some(code),
    }
}

/// Every Linux key code the table can produce, without duplicates, ascending: what the
/// virtual keyboard must declare.
pub fn mapped_keys() -> impl Iterator<Item = u16> {
    let mut seen = [false; 0x200];
    let mut keys: Vec<u16> = Vec::with_capacity(160);
    for &code in VK_TO_LINUX.iter() {
        if let Some(slot) = seen.get_mut(usize::from(code))
            && code != 0
            && !*slot
        {
            *slot = true;
            keys.push(code);
        }
    }
    keys.sort_unstable();
    keys.into_iter()
}

/// One key transition for the virtual keyboard: `value` 0 = release, 1 = press, 2 = repeat
/// (evdev `EV_KEY` values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyAction {
    /// Linux key code.
    pub code: u16,
    /// 0 release, 1 press, 2 repeat.
    pub value: i32,
}

/// The actions for one key packet, in order (at most 3 synthetic presses, the key, 3
/// synthetic releases).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KeyPlan {
    actions: [Option<KeyAction>; 7],
}

impl KeyPlan {
    fn push(&mut self, code: u16, value: i32) {
        if let Some(slot) = self.actions.iter_mut().find(|a| a.is_none()) {
            *slot = Some(KeyAction { code, value });
        }
    }

    /// The actions, in the order to emit them.
    pub fn iter(&self) -> impl Iterator<Item = KeyAction> + '_ {
        self.actions.iter().map_while(|a| *a)
    }

    /// Whether there is nothing to emit.
    pub fn is_empty(&self) -> bool {
        self.actions[0].is_none()
    }
}

/// Modifier flag → (left key, right key); the left one is pressed when synthesizing.
const SYNTHETIC: [(u8, u16, u16); 3] = [
    (Modifiers::SHIFT, KEY_LEFTSHIFT, KEY_RIGHTSHIFT),
    (Modifiers::CTRL, KEY_LEFTCTRL, KEY_RIGHTCTRL),
    (Modifiers::ALT, KEY_LEFTALT, KEY_RIGHTALT),
];

fn is_modifier(code: u16) -> bool {
    matches!(
        code,
        KEY_LEFTSHIFT
            | KEY_RIGHTSHIFT
            | KEY_LEFTCTRL
            | KEY_RIGHTCTRL
            | KEY_LEFTALT
            | KEY_RIGHTALT
            | KEY_LEFTMETA
            | KEY_RIGHTMETA
    )
}

/// Which Linux keys the virtual keyboard holds down.
#[derive(Debug, Clone, Default)]
pub struct Keyboard {
    held: [u64; 8], // one bit per code 0..512
}

impl Keyboard {
    /// Nothing held.
    pub fn new() -> Self {
        Self::default()
    }

    fn bit(code: u16) -> Option<(usize, u64)> {
        let i = usize::from(code);
        (i < 512).then(|| (i / 64, 1u64 << (i % 64)))
    }

    /// Whether Linux key `code` is held.
    pub fn is_held(&self, code: u16) -> bool {
        Self::bit(code).is_some_and(|(w, m)| self.held[w] & m != 0)
    }

    fn set(&mut self, code: u16, down: bool) {
        if let Some((w, m)) = Self::bit(code) {
            if down {
                self.held[w] |= m;
            } else {
                self.held[w] &= !m;
            }
        }
    }

    /// Plans the evdev actions for a key packet. `None` when the VK has no Linux key.
    pub fn handle_key(&mut self, down: bool, code: u16, modifiers: Modifiers) -> Option<KeyPlan> {
        let key = vk_to_linux(key_vk(code))?;
        let mut plan = KeyPlan::default();
        if !down {
            if self.is_held(key) {
                self.set(key, false);
                plan.push(key, 0);
            }
            return Some(plan);
        }
        if self.is_held(key) {
            plan.push(key, 2);
            return Some(plan);
        }
        let mut synthetic = [None; 3];
        if !is_modifier(key) {
            for (slot, &(flag, left, right)) in synthetic.iter_mut().zip(SYNTHETIC.iter()) {
                if modifiers.contains(flag) && !self.is_held(left) && !self.is_held(right) {
                    *slot = Some(left);
                    plan.push(left, 1);
                }
            }
        }
        self.set(key, true);
        plan.push(key, 1);
        for code in synthetic.iter().rev().flatten() {
            plan.push(*code, 0);
        }
        Some(plan)
    }

    /// Releases every held key (session end); returns the codes that were held, ascending.
    pub fn release_all(&mut self) -> Vec<u16> {
        let mut out = Vec::new();
        for (w, word) in self.held.iter_mut().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = bits.trailing_zeros() as usize;
                // w < 8 and b < 64, so the code is below 512.
                out.push((w * 64 + b) as u16);
                bits &= bits - 1;
            }
            *word = 0;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_function_keys() {
        assert_eq!(vk_to_linux(b'A'), Some(KEY_A));
        assert_eq!(vk_to_linux(b'Q'), Some(KEY_Q));
        assert_eq!(vk_to_linux(b'Z'), Some(KEY_Z));
        assert_eq!(vk_to_linux(b'0'), Some(KEY_0));
        assert_eq!(vk_to_linux(b'1'), Some(KEY_1));
        assert_eq!(vk_to_linux(b'9'), Some(10));
        assert_eq!(vk_to_linux(0x70), Some(KEY_F1));
        assert_eq!(vk_to_linux(0x79), Some(KEY_F10));
        assert_eq!(vk_to_linux(0x7A), Some(KEY_F11));
        assert_eq!(vk_to_linux(0x7B), Some(KEY_F12));
        assert_eq!(vk_to_linux(0x7C), Some(KEY_F13));
        assert_eq!(vk_to_linux(0x87), Some(KEY_F24));
    }

    #[test]
    fn specials() {
        assert_eq!(vk_to_linux(0x0D), Some(KEY_ENTER));
        assert_eq!(vk_to_linux(0xA4), Some(KEY_LEFTALT));
        assert_eq!(vk_to_linux(0xA5), Some(KEY_RIGHTALT));
        assert_eq!(vk_to_linux(0x5B), Some(KEY_LEFTMETA));
        assert_eq!(vk_to_linux(0x2C), Some(KEY_SYSRQ));
        assert_eq!(vk_to_linux(0xDE), Some(KEY_APOSTROPHE));
        assert_eq!(vk_to_linux(0xE2), Some(KEY_102ND));
        assert_eq!(vk_to_linux(0xB3), Some(KEY_PLAYPAUSE));
        // Mouse-button VKs and unassigned codes are unmapped.
        for vk in [
            0x00, 0x01, 0x02, 0x04, 0x05, 0x06, 0x07, 0x0A, 0x3A, 0x88, 0xFF,
        ] {
            assert_eq!(vk_to_linux(vk), None, "vk {vk:#x}");
        }
        // Moonlight-Qt sets bit 15: only the low byte counts.
        assert_eq!(key_vk(0x80A4), 0xA4);
    }

    #[test]
    fn table_has_no_duplicate_vk() {
        let mut seen = std::collections::BTreeSet::new();
        for (vk, _) in SPECIAL {
            assert!(seen.insert(vk), "vk {vk:#x} twice");
            let letter_digit_fn = (0x30..=0x39).contains(&vk)
                || (0x41..=0x5A).contains(&vk)
                || (0x70..=0x87).contains(&vk);
            assert!(!letter_digit_fn, "vk {vk:#x} overlaps a range");
        }
    }

    #[test]
    fn mapped_keys_unique_sorted() {
        let keys: Vec<u16> = mapped_keys().collect();
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert!(keys.len() > 120, "{} keys", keys.len());
        assert!(keys.contains(&KEY_CLEAR));
    }

    fn plan(k: &mut Keyboard, down: bool, vk: u8, m: u8) -> Vec<(u16, i32)> {
        k.handle_key(down, 0x8000 | u16::from(vk), Modifiers(m))
            .unwrap()
            .iter()
            .map(|a| (a.code, a.value))
            .collect()
    }

    #[test]
    fn press_repeat_release() {
        let mut k = Keyboard::new();
        assert_eq!(plan(&mut k, true, b'A', 0), vec![(KEY_A, 1)]);
        assert_eq!(plan(&mut k, true, b'A', 0), vec![(KEY_A, 2)]);
        assert_eq!(plan(&mut k, false, b'A', 0), vec![(KEY_A, 0)]);
        // A second release is dropped.
        assert!(plan(&mut k, false, b'A', 0).is_empty());
        assert!(k.handle_key(true, 0x0007, Modifiers(0)).is_none());
    }

    #[test]
    fn synthetic_modifiers() {
        let mut k = Keyboard::new();
        // Shift+Ctrl flags without modifier keys held.
        assert_eq!(
            plan(&mut k, true, b'A', Modifiers::SHIFT | Modifiers::CTRL),
            vec![
                (KEY_LEFTSHIFT, 1),
                (KEY_LEFTCTRL, 1),
                (KEY_A, 1),
                (KEY_LEFTCTRL, 0),
                (KEY_LEFTSHIFT, 0)
            ]
        );
        plan(&mut k, false, b'A', 0);
        // Right shift really held: no synthetic shift.
        plan(&mut k, true, 0xA1, Modifiers::SHIFT);
        assert_eq!(plan(&mut k, true, b'B', Modifiers::SHIFT), vec![(KEY_B, 1)]);
        // The modifier key itself never gets synthesized modifiers.
        assert_eq!(
            plan(&mut k, true, 0xA2, Modifiers::CTRL | Modifiers::ALT),
            vec![(KEY_LEFTCTRL, 1)]
        );
        assert_eq!(k.release_all(), vec![KEY_LEFTCTRL, KEY_B, KEY_RIGHTSHIFT]);
        assert!(!k.is_held(KEY_B));
    }
}
