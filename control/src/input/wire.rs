//! GameStream input packets: decoder and encoder (pure).
//!
//! An input packet travels inside control message `0x0206` (after the 4-byte inner header
//! `u16 LE type, u16 LE length` that the control stream strips). Every packet starts with
//! `NV_INPUT_HEADER` (MCC `src/Input.h`):
//!
//! ```text
//!  0        4        8
//! +--------+--------+-------------------------------+
//! | size   | magic  | body (size - 4 bytes)          |
//! | u32 BE | u32 LE | layout depends on magic        |
//! +--------+--------+-------------------------------+
//! ```
//!
//! `size` counts everything after itself, so a packet is always `size + 4` bytes long. One
//! ENet packet carries exactly one input packet, so the decoder insists that `size` matches the
//! bytes it was given: a shorter packet is [`InputError::Truncated`], a longer one
//! [`InputError::TrailingBytes`].
//!
//! Bodies (byte offsets after the 8-byte header; sizes checked against MCC `sizeof`):
//!
//! ```text
//! magic       packet              size  body
//! 0x00000003  key down            10    u8 flags | i16 LE keyCode | u8 modifiers | u16 0
//! 0x00000004  key up              10    (same)
//! 0x00000005  mouse absolute      14    i16 BE x | y | 0 | refWidth-1 | refHeight-1
//! 0x00000007  mouse relative      8     i16 BE dx | dy
//! 0x00000008  mouse button down   5     u8 button (1 L, 2 M, 3 R, 4 X1, 5 X2)
//! 0x00000009  mouse button up     5     (same)
//! 0x0000000A  vertical scroll     10    i16 BE amount | amount (again) | 0
//! 0x0000000C  multi-controller    30    LE: 0x1A | i16 number | i16 activeMask | 0x14 |
//!                                       u16 buttons | u8 LT | u8 RT | i16 LSX LSY RSX RSY |
//!                                       0x9C | u16 buttons2 (bits 16..31) | 0x55
//! 0x0000000D  enable haptics      6     u16 LE 1
//! 0x00000017  UTF-8 text          4+n   n = 1..=32 bytes of UTF-8 (MCC sends one code point)
//! 0x55000001  horizontal scroll   6     i16 BE amount
//! 0x55000002  touch               32    LE: u8 type | 0 | u16 rotation | u32 pointerId |
//!                                       f32 x | y | pressureOrDistance | major | minor
//! 0x55000003  pen                 32    LE: u8 type | u8 tool | u8 buttons | 0 | f32 x | y |
//!                                       pressureOrDistance | u16 rotation | u8 tilt | 0 |
//!                                       f32 major | minor
//! 0x55000004  controller arrival  12    LE: u8 number | u8 type | u16 caps | u32 buttons
//! 0x55000005  controller touch    24    LE: u8 number | u8 type | 0 | u8 pad | u32 pointerId |
//!                                       f32 x | y | pressure
//! 0x55000006  controller motion   20    LE: u8 number | u8 type | 0 0 | f32 x | y | z
//! 0x55000007  controller battery  8     u8 number | u8 state | u8 percent | 0
//! ```
//!
//! Only the Gen 5+ magics are decoded: the host advertises appversion 7.1.431, so clients
//! never send the pre-Gen 5 relative-mouse (`0x06`), scroll (`0x09`) or single-controller
//! (`0x0A` with size 24) packets. The constant filler words of the multi-controller packet
//! (`0x1A`, `0x14`, `0x9C`, `0x55`) are not checked, as Sunshine does not check them either
//! (SS `src/input.cpp`). Malformed input never panics: it becomes an [`InputError`], which
//! [`InputStats::record`] counts.

use thiserror::Error;

/// Length of `NV_INPUT_HEADER`: `u32 BE size` then `u32 LE magic`.
pub const HEADER_LEN: usize = 8;

/// Packet type values (`magic`, little-endian on the wire), from MCC `src/Input.h`.
pub mod magic {
    /// Key pressed (`KEY_DOWN_EVENT_MAGIC`).
    pub const KEY_DOWN: u32 = 0x0000_0003;
    /// Key released (`KEY_UP_EVENT_MAGIC`).
    pub const KEY_UP: u32 = 0x0000_0004;
    /// Absolute mouse position (`MOUSE_MOVE_ABS_MAGIC`).
    pub const MOUSE_ABSOLUTE: u32 = 0x0000_0005;
    /// Relative mouse motion, Gen 5+ (`MOUSE_MOVE_REL_MAGIC_GEN5`).
    pub const MOUSE_RELATIVE: u32 = 0x0000_0007;
    /// Mouse button pressed, Gen 5+ (`BUTTON_ACTION_PRESS + 1`).
    pub const MOUSE_BUTTON_DOWN: u32 = 0x0000_0008;
    /// Mouse button released, Gen 5+ (`BUTTON_ACTION_RELEASE + 1`).
    pub const MOUSE_BUTTON_UP: u32 = 0x0000_0009;
    /// Vertical scroll, Gen 5+ (`SCROLL_MAGIC_GEN5`).
    pub const SCROLL: u32 = 0x0000_000A;
    /// Multi-controller state, Gen 5+ (`MULTI_CONTROLLER_MAGIC_GEN5`).
    pub const MULTI_CONTROLLER: u32 = 0x0000_000C;
    /// Enable haptics (`ENABLE_HAPTICS_MAGIC`), sent once when input starts.
    pub const ENABLE_HAPTICS: u32 = 0x0000_000D;
    /// UTF-8 text (`UTF8_TEXT_EVENT_MAGIC`).
    pub const UTF8_TEXT: u32 = 0x0000_0017;
    /// Horizontal scroll, Sunshine extension (`SS_HSCROLL_MAGIC`).
    pub const HSCROLL: u32 = 0x5500_0001;
    /// Touch, Sunshine extension (`SS_TOUCH_MAGIC`).
    pub const TOUCH: u32 = 0x5500_0002;
    /// Pen, Sunshine extension (`SS_PEN_MAGIC`).
    pub const PEN: u32 = 0x5500_0003;
    /// Controller arrival, Sunshine extension (`SS_CONTROLLER_ARRIVAL_MAGIC`).
    pub const CONTROLLER_ARRIVAL: u32 = 0x5500_0004;
    /// Controller touchpad, Sunshine extension (`SS_CONTROLLER_TOUCH_MAGIC`).
    pub const CONTROLLER_TOUCH: u32 = 0x5500_0005;
    /// Controller motion sensor, Sunshine extension (`SS_CONTROLLER_MOTION_MAGIC`).
    pub const CONTROLLER_MOTION: u32 = 0x5500_0006;
    /// Controller battery, Sunshine extension (`SS_CONTROLLER_BATTERY_MAGIC`).
    pub const CONTROLLER_BATTERY: u32 = 0x5500_0007;
}

/// Most gamepads a client can report: the active mask is 16 bits (MCC `MAX_GAMEPADS`).
pub const MAX_GAMEPADS: usize = 16;

/// Keyboard flag (Sunshine extension): the key code was not normalized to a US layout
/// (MCC `SS_KBE_FLAG_NON_NORMALIZED`).
pub const KEY_FLAG_NON_NORMALIZED: u8 = 0x01;

/// Modifier bits of a keyboard packet (MCC `MODIFIER_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct Modifiers(pub u8);

impl Modifiers {
    /// Shift held.
    pub const SHIFT: u8 = 0x01;
    /// Control held.
    pub const CTRL: u8 = 0x02;
    /// Alt held.
    pub const ALT: u8 = 0x04;
    /// Meta (Windows/Super) held.
    pub const META: u8 = 0x08;

    /// Whether every bit of `bits` is set.
    pub const fn contains(self, bits: u8) -> bool {
        self.0 & bits == bits
    }
}

/// A mouse button (MCC `BUTTON_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MouseButton {
    /// Primary button (1).
    Left,
    /// Middle button (2).
    Middle,
    /// Secondary button (3).
    Right,
    /// Back side button (4).
    X1,
    /// Forward side button (5).
    X2,
}

impl MouseButton {
    /// From its wire code (the number in the variant's doc); an unknown code is an error.
    pub fn from_wire(v: u8) -> Result<Self, InputError> {
        Ok(match v {
            1 => Self::Left,
            2 => Self::Middle,
            3 => Self::Right,
            4 => Self::X1,
            5 => Self::X2,
            _ => return Err(invalid("mouse button", v.into())),
        })
    }

    /// Its wire code.
    pub fn to_wire(self) -> u8 {
        match self {
            Self::Left => 1,
            Self::Middle => 2,
            Self::Right => 3,
            Self::X1 => 4,
            Self::X2 => 5,
        }
    }
}

/// Touch, pen and controller-touchpad event type (MCC `LI_TOUCH_EVENT_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TouchKind {
    /// Pointer hovers without contact (0).
    Hover,
    /// Contact starts (1).
    Down,
    /// Contact ends (2).
    Up,
    /// Contact moves (3).
    Move,
    /// Contact is cancelled (4).
    Cancel,
    /// Only the pen buttons changed (5).
    ButtonOnly,
    /// Hovering pointer left the surface (6).
    HoverLeave,
    /// Every contact is cancelled (7).
    CancelAll,
}

impl TouchKind {
    /// From its wire code (the number in the variant's doc); an unknown code is an error.
    pub fn from_wire(v: u8) -> Result<Self, InputError> {
        Ok(match v {
            0 => Self::Hover,
            1 => Self::Down,
            2 => Self::Up,
            3 => Self::Move,
            4 => Self::Cancel,
            5 => Self::ButtonOnly,
            6 => Self::HoverLeave,
            7 => Self::CancelAll,
            _ => return Err(invalid("touch event type", v.into())),
        })
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Hover => 0,
            Self::Down => 1,
            Self::Up => 2,
            Self::Move => 3,
            Self::Cancel => 4,
            Self::ButtonOnly => 5,
            Self::HoverLeave => 6,
            Self::CancelAll => 7,
        }
    }
}

/// Pen tool (MCC `LI_TOOL_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PenTool {
    /// Tool not known (0).
    Unknown,
    /// Pen tip (1).
    Pen,
    /// Eraser end (2).
    Eraser,
}

impl PenTool {
    /// From its wire code (the number in the variant's doc); an unknown code is an error.
    pub fn from_wire(v: u8) -> Result<Self, InputError> {
        Ok(match v {
            0 => Self::Unknown,
            1 => Self::Pen,
            2 => Self::Eraser,
            _ => return Err(invalid("pen tool type", v.into())),
        })
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Pen => 1,
            Self::Eraser => 2,
        }
    }
}

/// Controller family announced in an arrival packet (MCC `LI_CTYPE_*`).
///
/// Unknown future values are kept as [`ControllerKind::Other`] rather than rejected, so a new
/// client type still gets a (generic) virtual pad.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ControllerKind {
    /// Not known (0).
    Unknown,
    /// Xbox layout (1).
    Xbox,
    /// PlayStation layout (2).
    PlayStation,
    /// Nintendo layout (3).
    Nintendo,
    /// Valve Steam Controller (4).
    Steam,
    /// A value this host does not know (5..=255).
    Other(u8),
}

impl ControllerKind {
    fn from_wire(v: u8) -> Self {
        match v {
            0 => Self::Unknown,
            1 => Self::Xbox,
            2 => Self::PlayStation,
            3 => Self::Nintendo,
            4 => Self::Steam,
            other => Self::Other(other),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::Xbox => 1,
            Self::PlayStation => 2,
            Self::Nintendo => 3,
            Self::Steam => 4,
            Self::Other(v) => v,
        }
    }
}

/// Motion sensor type (MCC `LI_MOTION_TYPE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MotionKind {
    /// Accelerometer, m/s² (1).
    Accel,
    /// Gyroscope, degrees per second (2).
    Gyro,
}

impl MotionKind {
    fn from_wire(v: u8) -> Result<Self, InputError> {
        match v {
            1 => Ok(Self::Accel),
            2 => Ok(Self::Gyro),
            _ => Err(invalid("motion type", v.into())),
        }
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Accel => 1,
            Self::Gyro => 2,
        }
    }
}

/// Battery state (MCC `LI_BATTERY_STATE_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BatteryState {
    /// Not known (0).
    Unknown,
    /// No battery (1).
    NotPresent,
    /// Discharging (2).
    Discharging,
    /// Charging (3).
    Charging,
    /// On power but not charging (4).
    NotCharging,
    /// Full (5).
    Full,
}

impl BatteryState {
    fn from_wire(v: u8) -> Result<Self, InputError> {
        Ok(match v {
            0 => Self::Unknown,
            1 => Self::NotPresent,
            2 => Self::Discharging,
            3 => Self::Charging,
            4 => Self::NotCharging,
            5 => Self::Full,
            _ => return Err(invalid("battery state", v.into())),
        })
    }

    fn to_wire(self) -> u8 {
        match self {
            Self::Unknown => 0,
            Self::NotPresent => 1,
            Self::Discharging => 2,
            Self::Charging => 3,
            Self::NotCharging => 4,
            Self::Full => 5,
        }
    }
}

/// Up to [`Utf8Text::CAPACITY`] bytes of valid UTF-8, stored inline so that events stay `Copy`
/// and decoding allocates nothing.
#[derive(Clone, Copy)]
pub struct Utf8Text {
    buf: [u8; Self::CAPACITY],
    len: u8,
}

impl Utf8Text {
    /// Largest text one packet may carry (MCC `UTF8_TEXT_EVENT_MAX_COUNT`).
    pub const CAPACITY: usize = 32;

    /// Copies `text`; `None` if it is empty or longer than [`Self::CAPACITY`] bytes.
    pub fn new(text: &str) -> Option<Self> {
        Self::from_bytes(text.as_bytes())
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.is_empty() || bytes.len() > Self::CAPACITY {
            return None;
        }
        std::str::from_utf8(bytes).ok()?;
        let mut buf = [0u8; Self::CAPACITY];
        buf[..bytes.len()].copy_from_slice(bytes);
        // Fits: bytes.len() <= CAPACITY (32) was checked above.
        let len = bytes.len() as u8;
        Some(Self { buf, len })
    }

    /// The raw UTF-8 bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        // Every constructor validated the bytes as UTF-8, so this never falls back.
        std::str::from_utf8(self.as_bytes()).unwrap_or_default()
    }
}

impl PartialEq for Utf8Text {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for Utf8Text {}

impl std::fmt::Debug for Utf8Text {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self.as_str(), f)
    }
}

/// One multi-controller packet: the full state of pad `number` plus the client's mask of
/// connected pads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct GamepadState {
    /// Pad index, `0..16`.
    pub number: u8,
    /// Bit `n` set: pad `n` is connected on the client. Its own bit clear means "removed".
    pub active_mask: u16,
    /// Button bits (`buttonFlags | buttonFlags2 << 16`), see [`crate::input::gamepad::buttons`].
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

/// A touch-screen contact (Sunshine extension).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TouchEvent {
    /// What happened.
    pub kind: TouchKind,
    /// Client's identifier of the contact.
    pub pointer_id: u32,
    /// Contact rotation in degrees, `None` when unknown (`0xFFFF`).
    pub rotation: Option<u16>,
    /// X, normalized to `0.0..=1.0` of the stream surface.
    pub x: f32,
    /// Y, normalized to `0.0..=1.0` of the stream surface.
    pub y: f32,
    /// Pressure (contact) or distance (hover), `0.0..=1.0`.
    pub pressure_or_distance: f32,
    /// Contact ellipse major axis, normalized.
    pub contact_major: f32,
    /// Contact ellipse minor axis, normalized.
    pub contact_minor: f32,
}

/// A pen event (Sunshine extension).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PenEvent {
    /// What happened.
    pub kind: TouchKind,
    /// Tip or eraser.
    pub tool: PenTool,
    /// Pen button bits (0x01 primary, 0x02 secondary, 0x04 tertiary).
    pub buttons: u8,
    /// X, normalized to `0.0..=1.0`.
    pub x: f32,
    /// Y, normalized to `0.0..=1.0`.
    pub y: f32,
    /// Pressure (contact) or distance (hover), `0.0..=1.0`.
    pub pressure_or_distance: f32,
    /// Rotation in degrees, `None` when unknown (`0xFFFF`).
    pub rotation: Option<u16>,
    /// Tilt in degrees, `None` when unknown (`0xFF`).
    pub tilt: Option<u8>,
    /// Contact ellipse major axis, normalized.
    pub contact_major: f32,
    /// Contact ellipse minor axis, normalized.
    pub contact_minor: f32,
}

/// A controller announced itself (Sunshine extension), sent before its first state packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerArrival {
    /// Pad index, `0..16`.
    pub number: u8,
    /// Controller family.
    pub kind: ControllerKind,
    /// Capability bits (MCC `LI_CCAP_*`, see [`crate::input::gamepad::caps`]).
    pub capabilities: u16,
    /// Button bits the controller has.
    pub supported_buttons: u32,
}

/// A finger on a controller's touchpad (Sunshine extension).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerTouch {
    /// Pad index, `0..16`.
    pub number: u8,
    /// What happened.
    pub kind: TouchKind,
    /// Which touchpad (dual-touchpad controllers).
    pub touchpad: u8,
    /// Client's identifier of the contact.
    pub pointer_id: u32,
    /// X, normalized to `0.0..=1.0`.
    pub x: f32,
    /// Y, normalized to `0.0..=1.0`.
    pub y: f32,
    /// Pressure, `0.0..=1.0`.
    pub pressure: f32,
}

/// A motion-sensor sample (Sunshine extension).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ControllerMotion {
    /// Pad index, `0..16`.
    pub number: u8,
    /// Accelerometer or gyroscope.
    pub kind: MotionKind,
    /// X axis.
    pub x: f32,
    /// Y axis.
    pub y: f32,
    /// Z axis.
    pub z: f32,
}

/// Battery report (Sunshine extension).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ControllerBattery {
    /// Pad index, `0..16`.
    pub number: u8,
    /// Charging state.
    pub state: BatteryState,
    /// Charge in percent, `None` when unknown (`0xFF`).
    pub percent: Option<u8>,
}

/// One decoded input packet.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum InputEvent {
    /// Key pressed or released.
    Key {
        /// Pressed (`true`) or released.
        down: bool,
        /// Raw key code as sent; its low byte is the Win32 virtual-key code (Moonlight-Qt
        /// sends `0x8000 | VK`, Sunshine uses `code & 0xFF`).
        code: u16,
        /// Modifier keys the client believes are held.
        modifiers: Modifiers,
        /// Sunshine keyboard flags ([`KEY_FLAG_NON_NORMALIZED`]).
        flags: u8,
    },
    /// Relative mouse motion.
    MouseMove {
        /// Horizontal delta, positive right.
        dx: i16,
        /// Vertical delta, positive down.
        dy: i16,
    },
    /// Absolute mouse position in a client reference frame.
    MouseAbsolute {
        /// X within `0..=width`.
        x: i16,
        /// Y within `0..=height`.
        y: i16,
        /// Reference width minus one, as the client sends it.
        width: i16,
        /// Reference height minus one, as the client sends it.
        height: i16,
    },
    /// Mouse button pressed or released.
    MouseButton {
        /// Pressed (`true`) or released.
        down: bool,
        /// Which button.
        button: MouseButton,
    },
    /// Vertical scroll in 1/120 notch units (`WHEEL_DELTA` = 120), positive away from the user.
    Scroll {
        /// Scroll amount.
        amount: i16,
    },
    /// Horizontal scroll in 1/120 notch units, positive right.
    HScroll {
        /// Scroll amount.
        amount: i16,
    },
    /// Typed text (normally one code point).
    Text(Utf8Text),
    /// Full state of one gamepad.
    Gamepad(GamepadState),
    /// The client asks for rumble events (sent once at input start).
    EnableHaptics {
        /// Whether haptics are wanted.
        enabled: bool,
    },
    /// Touch-screen contact.
    Touch(TouchEvent),
    /// Pen event.
    Pen(PenEvent),
    /// Controller arrival.
    ControllerArrival(ControllerArrival),
    /// Controller touchpad contact.
    ControllerTouch(ControllerTouch),
    /// Controller motion sample.
    ControllerMotion(ControllerMotion),
    /// Controller battery report.
    ControllerBattery(ControllerBattery),
}

/// The kind of an [`InputEvent`], without its data: a dense index for per-kind counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum InputKind {
    /// [`InputEvent::Key`].
    Key,
    /// [`InputEvent::MouseMove`].
    MouseMove,
    /// [`InputEvent::MouseAbsolute`].
    MouseAbsolute,
    /// [`InputEvent::MouseButton`].
    MouseButton,
    /// [`InputEvent::Scroll`].
    Scroll,
    /// [`InputEvent::HScroll`].
    HScroll,
    /// [`InputEvent::Text`].
    Text,
    /// [`InputEvent::Gamepad`].
    Gamepad,
    /// [`InputEvent::EnableHaptics`].
    EnableHaptics,
    /// [`InputEvent::Touch`].
    Touch,
    /// [`InputEvent::Pen`].
    Pen,
    /// [`InputEvent::ControllerArrival`].
    ControllerArrival,
    /// [`InputEvent::ControllerTouch`].
    ControllerTouch,
    /// [`InputEvent::ControllerMotion`].
    ControllerMotion,
    /// [`InputEvent::ControllerBattery`].
    ControllerBattery,
}

impl InputKind {
    /// Number of kinds; `kind as usize` is below this.
    pub const COUNT: usize = 15;

    /// Every kind, in index order.
    pub const ALL: [InputKind; Self::COUNT] = [
        Self::Key,
        Self::MouseMove,
        Self::MouseAbsolute,
        Self::MouseButton,
        Self::Scroll,
        Self::HScroll,
        Self::Text,
        Self::Gamepad,
        Self::EnableHaptics,
        Self::Touch,
        Self::Pen,
        Self::ControllerArrival,
        Self::ControllerTouch,
        Self::ControllerMotion,
        Self::ControllerBattery,
    ];

    /// A short lowercase name for logs and stats.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Key => "key",
            Self::MouseMove => "mouse_move",
            Self::MouseAbsolute => "mouse_absolute",
            Self::MouseButton => "mouse_button",
            Self::Scroll => "scroll",
            Self::HScroll => "hscroll",
            Self::Text => "text",
            Self::Gamepad => "gamepad",
            Self::EnableHaptics => "enable_haptics",
            Self::Touch => "touch",
            Self::Pen => "pen",
            Self::ControllerArrival => "controller_arrival",
            Self::ControllerTouch => "controller_touch",
            Self::ControllerMotion => "controller_motion",
            Self::ControllerBattery => "controller_battery",
        }
    }
}

impl InputEvent {
    /// The event's kind.
    pub const fn kind(&self) -> InputKind {
        match self {
            Self::Key { .. } => InputKind::Key,
            Self::MouseMove { .. } => InputKind::MouseMove,
            Self::MouseAbsolute { .. } => InputKind::MouseAbsolute,
            Self::MouseButton { .. } => InputKind::MouseButton,
            Self::Scroll { .. } => InputKind::Scroll,
            Self::HScroll { .. } => InputKind::HScroll,
            Self::Text(_) => InputKind::Text,
            Self::Gamepad(_) => InputKind::Gamepad,
            Self::EnableHaptics { .. } => InputKind::EnableHaptics,
            Self::Touch(_) => InputKind::Touch,
            Self::Pen(_) => InputKind::Pen,
            Self::ControllerArrival(_) => InputKind::ControllerArrival,
            Self::ControllerTouch(_) => InputKind::ControllerTouch,
            Self::ControllerMotion(_) => InputKind::ControllerMotion,
            Self::ControllerBattery(_) => InputKind::ControllerBattery,
        }
    }
}

/// How an input packet from the peer was malformed. Every variant is hostile or broken peer
/// input; the caller drops the packet and counts it ([`InputStats::record`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum InputError {
    /// Fewer than [`HEADER_LEN`] bytes.
    #[error("input packet of {len} bytes is shorter than its 8-byte header")]
    TooShort {
        /// Bytes received.
        len: usize,
    },
    /// The header's `size` promises more bytes than arrived.
    #[error("input packet truncated: size field says {declared} bytes follow, {actual} do")]
    Truncated {
        /// The `size` field.
        declared: u32,
        /// Bytes after the size field.
        actual: usize,
    },
    /// Bytes follow the packet that its `size` does not cover.
    #[error("input packet oversized: size field says {declared} bytes follow, {actual} do")]
    TrailingBytes {
        /// The `size` field.
        declared: u32,
        /// Bytes after the size field.
        actual: usize,
    },
    /// A packet type this host does not know.
    #[error("unknown input packet type {0:#010x}")]
    UnknownType(u32),
    /// A known packet type with the wrong size.
    #[error("input packet type {magic:#010x} has size {size}, expected {expected}")]
    BadSize {
        /// Packet type.
        magic: u32,
        /// The `size` field.
        size: u32,
        /// What the protocol allows, for the message.
        expected: &'static str,
    },
    /// A field holds a value outside its protocol range.
    #[error("input field {field} has invalid value {value:#x}")]
    InvalidField {
        /// Field name.
        field: &'static str,
        /// The offending value (floats as their bit pattern).
        value: u32,
    },
    /// Text bytes are not UTF-8.
    #[error("text input is not valid UTF-8")]
    InvalidUtf8,
}

fn invalid(field: &'static str, value: u32) -> InputError {
    InputError::InvalidField { field, value }
}

/// Decode counters: how many packets were good, of unknown type, or malformed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InputStats {
    /// Packets decoded into an event.
    pub decoded: u64,
    /// Packets with an unknown magic ([`InputError::UnknownType`]).
    pub unknown_type: u64,
    /// Every other decode error.
    pub malformed: u64,
}

impl InputStats {
    /// Counts one [`decode`] result.
    pub fn record<T>(&mut self, result: &Result<T, InputError>) {
        match result {
            Ok(_) => self.decoded += 1,
            Err(InputError::UnknownType(_)) => self.unknown_type += 1,
            Err(_) => self.malformed += 1,
        }
    }
}

/// Decodes one input packet (starting at `NV_INPUT_HEADER`, i.e. after the control message's
/// `0x0206` inner header).
///
/// ```
/// use punktfunk_control::input::{decode, InputEvent};
/// // Relative mouse move dx = -1, dy = 0 (Wolf input-data.adoc byte dump, minus the 0x0206 header).
/// let packet = [0, 0, 0, 8, 7, 0, 0, 0, 0xFF, 0xFF, 0, 0];
/// assert_eq!(decode(&packet), Ok(InputEvent::MouseMove { dx: -1, dy: 0 }));
/// ```
pub fn decode(packet: &[u8]) -> Result<InputEvent, InputError> {
    let (Some(size), Some(magic)) = (packet.get(0..4), packet.get(4..8)) else {
        return Err(InputError::TooShort { len: packet.len() });
    };
    let declared = u32::from_be_bytes([size[0], size[1], size[2], size[3]]);
    let magic = u32::from_le_bytes([magic[0], magic[1], magic[2], magic[3]]);
    let actual = packet.len() - 4;
    // u32 -> u64 widening: no truncation on any target.
    match u64::from(declared).cmp(&(actual as u64)) {
        std::cmp::Ordering::Greater => return Err(InputError::Truncated { declared, actual }),
        std::cmp::Ordering::Less => return Err(InputError::TrailingBytes { declared, actual }),
        std::cmp::Ordering::Equal => {}
    }
    let body = &packet[HEADER_LEN..];
    // Each arm turns the body into a fixed-size array first (that is the size check), so every
    // field read below indexes an array with constant indices: out-of-range reads cannot compile.
    let exact = |expected: &'static str| InputError::BadSize {
        magic,
        size: declared,
        expected,
    };
    match magic {
        magic::KEY_DOWN | magic::KEY_UP => {
            let b: &[u8; 6] = body.try_into().map_err(|_| exact("10"))?;
            Ok(InputEvent::Key {
                down: magic == magic::KEY_DOWN,
                flags: b[0],
                code: u16::from_le_bytes([b[1], b[2]]),
                modifiers: Modifiers(b[3]),
            })
        }
        magic::MOUSE_RELATIVE => {
            let b: &[u8; 4] = body.try_into().map_err(|_| exact("8"))?;
            Ok(InputEvent::MouseMove {
                dx: i16::from_be_bytes([b[0], b[1]]),
                dy: i16::from_be_bytes([b[2], b[3]]),
            })
        }
        magic::MOUSE_ABSOLUTE => {
            let b: &[u8; 10] = body.try_into().map_err(|_| exact("14"))?;
            Ok(InputEvent::MouseAbsolute {
                x: i16::from_be_bytes([b[0], b[1]]),
                y: i16::from_be_bytes([b[2], b[3]]),
                width: i16::from_be_bytes([b[6], b[7]]),
                height: i16::from_be_bytes([b[8], b[9]]),
            })
        }
        magic::MOUSE_BUTTON_DOWN | magic::MOUSE_BUTTON_UP => {
            let b: &[u8; 1] = body.try_into().map_err(|_| exact("5"))?;
            Ok(InputEvent::MouseButton {
                down: magic == magic::MOUSE_BUTTON_DOWN,
                button: MouseButton::from_wire(b[0])?,
            })
        }
        magic::SCROLL => {
            let b: &[u8; 6] = body.try_into().map_err(|_| exact("10"))?;
            // amount 2 repeats amount 1; Sunshine reads only the first, and so do we.
            Ok(InputEvent::Scroll {
                amount: i16::from_be_bytes([b[0], b[1]]),
            })
        }
        magic::HSCROLL => {
            let b: &[u8; 2] = body.try_into().map_err(|_| exact("6"))?;
            Ok(InputEvent::HScroll {
                amount: i16::from_be_bytes([b[0], b[1]]),
            })
        }
        magic::UTF8_TEXT => {
            if body.is_empty() || body.len() > Utf8Text::CAPACITY {
                return Err(exact("5..=36"));
            }
            Utf8Text::from_bytes(body)
                .map(InputEvent::Text)
                .ok_or(InputError::InvalidUtf8)
        }
        magic::MULTI_CONTROLLER => {
            let b: &[u8; 26] = body.try_into().map_err(|_| exact("30"))?;
            let number = pad_number(i16::from_le_bytes([b[2], b[3]]).into())?;
            let low = u16::from_le_bytes([b[8], b[9]]);
            let high = u16::from_le_bytes([b[22], b[23]]);
            Ok(InputEvent::Gamepad(GamepadState {
                number,
                active_mask: u16::from_le_bytes([b[4], b[5]]),
                buttons: u32::from(low) | (u32::from(high) << 16),
                lt: b[10],
                rt: b[11],
                lsx: i16::from_le_bytes([b[12], b[13]]),
                lsy: i16::from_le_bytes([b[14], b[15]]),
                rsx: i16::from_le_bytes([b[16], b[17]]),
                rsy: i16::from_le_bytes([b[18], b[19]]),
            }))
        }
        magic::ENABLE_HAPTICS => {
            let b: &[u8; 2] = body.try_into().map_err(|_| exact("6"))?;
            Ok(InputEvent::EnableHaptics {
                enabled: u16::from_le_bytes([b[0], b[1]]) != 0,
            })
        }
        magic::TOUCH => {
            let b: &[u8; 28] = body.try_into().map_err(|_| exact("32"))?;
            Ok(InputEvent::Touch(TouchEvent {
                kind: TouchKind::from_wire(b[0])?,
                rotation: rotation(u16::from_le_bytes([b[2], b[3]])),
                pointer_id: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                x: float("x", [b[8], b[9], b[10], b[11]])?,
                y: float("y", [b[12], b[13], b[14], b[15]])?,
                pressure_or_distance: float("pressure", [b[16], b[17], b[18], b[19]])?,
                contact_major: float("contact major", [b[20], b[21], b[22], b[23]])?,
                contact_minor: float("contact minor", [b[24], b[25], b[26], b[27]])?,
            }))
        }
        magic::PEN => {
            let b: &[u8; 28] = body.try_into().map_err(|_| exact("32"))?;
            Ok(InputEvent::Pen(PenEvent {
                kind: TouchKind::from_wire(b[0])?,
                tool: PenTool::from_wire(b[1])?,
                buttons: b[2],
                x: float("x", [b[4], b[5], b[6], b[7]])?,
                y: float("y", [b[8], b[9], b[10], b[11]])?,
                pressure_or_distance: float("pressure", [b[12], b[13], b[14], b[15]])?,
                rotation: rotation(u16::from_le_bytes([b[16], b[17]])),
                tilt: (b[18] != 0xFF).then_some(b[18]),
                contact_major: float("contact major", [b[20], b[21], b[22], b[23]])?,
                contact_minor: float("contact minor", [b[24], b[25], b[26], b[27]])?,
            }))
        }
        magic::CONTROLLER_ARRIVAL => {
            let b: &[u8; 8] = body.try_into().map_err(|_| exact("12"))?;
            Ok(InputEvent::ControllerArrival(ControllerArrival {
                number: pad_number(b[0].into())?,
                kind: ControllerKind::from_wire(b[1]),
                capabilities: u16::from_le_bytes([b[2], b[3]]),
                supported_buttons: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            }))
        }
        magic::CONTROLLER_TOUCH => {
            let b: &[u8; 20] = body.try_into().map_err(|_| exact("24"))?;
            Ok(InputEvent::ControllerTouch(ControllerTouch {
                number: pad_number(b[0].into())?,
                kind: TouchKind::from_wire(b[1])?,
                touchpad: b[3],
                pointer_id: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
                x: float("x", [b[8], b[9], b[10], b[11]])?,
                y: float("y", [b[12], b[13], b[14], b[15]])?,
                pressure: float("pressure", [b[16], b[17], b[18], b[19]])?,
            }))
        }
        magic::CONTROLLER_MOTION => {
            let b: &[u8; 16] = body.try_into().map_err(|_| exact("20"))?;
            Ok(InputEvent::ControllerMotion(ControllerMotion {
                number: pad_number(b[0].into())?,
                kind: MotionKind::from_wire(b[1])?,
                x: float("x", [b[4], b[5], b[6], b[7]])?,
                y: float("y", [b[8], b[9], b[10], b[11]])?,
                z: float("z", [b[12], b[13], b[14], b[15]])?,
            }))
        }
        magic::CONTROLLER_BATTERY => {
            let b: &[u8; 4] = body.try_into().map_err(|_| exact("8"))?;
            let percent = match b[2] {
                0xFF => None,
                p @ 0..=100 => Some(p),
                p => return Err(invalid("battery percent", p.into())),
            };
            Ok(InputEvent::ControllerBattery(ControllerBattery {
                number: pad_number(b[0].into())?,
                state: BatteryState::from_wire(b[1])?,
                percent,
            }))
        }
        other => Err(InputError::UnknownType(other)),
    }
}

fn pad_number(n: i32) -> Result<u8, InputError> {
    match u8::try_from(n) {
        Ok(v) if usize::from(v) < MAX_GAMEPADS => Ok(v),
        // Bit pattern of the (possibly negative) value, for the message.
        _ => Err(invalid("controller number", n as u32)),
    }
}

fn rotation(raw: u16) -> Option<u16> {
    (raw != 0xFFFF).then_some(raw)
}

fn float(field: &'static str, bytes: [u8; 4]) -> Result<f32, InputError> {
    let v = f32::from_le_bytes(bytes);
    if v.is_finite() {
        Ok(v)
    } else {
        Err(invalid(field, v.to_bits()))
    }
}

/// Encodes `event` as the client would send it (an `NV_INPUT_HEADER`-prefixed packet).
///
/// For test clients and fuzzing: `decode(&encode(e)) == Ok(e)` for every event whose fields
/// are in range (pad numbers below 16, finite floats, 1..=32 bytes of text).
pub fn encode(event: &InputEvent) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEADER_LEN + 32);
    encode_into(event, &mut out);
    out
}

/// Appends the encoding of `event` to `out`; see [`encode`].
pub fn encode_into(event: &InputEvent, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; 4]); // size, patched below
    let le16 = |out: &mut Vec<u8>, v: u16| out.extend_from_slice(&v.to_le_bytes());
    let be16 = |out: &mut Vec<u8>, v: i16| out.extend_from_slice(&v.to_be_bytes());
    let le32 = |out: &mut Vec<u8>, v: u32| out.extend_from_slice(&v.to_le_bytes());
    let f32le = |out: &mut Vec<u8>, v: f32| out.extend_from_slice(&v.to_le_bytes());
    match *event {
        InputEvent::Key {
            down,
            code,
            modifiers,
            flags,
        } => {
            le32(out, if down { magic::KEY_DOWN } else { magic::KEY_UP });
            out.push(flags);
            le16(out, code);
            out.push(modifiers.0);
            le16(out, 0);
        }
        InputEvent::MouseMove { dx, dy } => {
            le32(out, magic::MOUSE_RELATIVE);
            be16(out, dx);
            be16(out, dy);
        }
        InputEvent::MouseAbsolute {
            x,
            y,
            width,
            height,
        } => {
            le32(out, magic::MOUSE_ABSOLUTE);
            for v in [x, y, 0, width, height] {
                be16(out, v);
            }
        }
        InputEvent::MouseButton { down, button } => {
            le32(
                out,
                if down {
                    magic::MOUSE_BUTTON_DOWN
                } else {
                    magic::MOUSE_BUTTON_UP
                },
            );
            out.push(button.to_wire());
        }
        InputEvent::Scroll { amount } => {
            le32(out, magic::SCROLL);
            for v in [amount, amount, 0] {
                be16(out, v);
            }
        }
        InputEvent::HScroll { amount } => {
            le32(out, magic::HSCROLL);
            be16(out, amount);
        }
        InputEvent::Text(text) => {
            le32(out, magic::UTF8_TEXT);
            out.extend_from_slice(text.as_bytes());
        }
        InputEvent::Gamepad(g) => {
            le32(out, magic::MULTI_CONTROLLER);
            le16(out, 0x001A);
            le16(out, g.number.into());
            le16(out, g.active_mask);
            le16(out, 0x0014);
            // Low and high halves of the 32 button bits; truncation is the point.
            le16(out, g.buttons as u16);
            out.push(g.lt);
            out.push(g.rt);
            for v in [g.lsx, g.lsy, g.rsx, g.rsy] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            le16(out, 0x009C);
            le16(out, (g.buttons >> 16) as u16);
            le16(out, 0x0055);
        }
        InputEvent::EnableHaptics { enabled } => {
            le32(out, magic::ENABLE_HAPTICS);
            le16(out, enabled.into());
        }
        InputEvent::Touch(t) => {
            le32(out, magic::TOUCH);
            out.push(t.kind.to_wire());
            out.push(0);
            le16(out, t.rotation.unwrap_or(0xFFFF));
            le32(out, t.pointer_id);
            for v in [
                t.x,
                t.y,
                t.pressure_or_distance,
                t.contact_major,
                t.contact_minor,
            ] {
                f32le(out, v);
            }
        }
        InputEvent::Pen(p) => {
            le32(out, magic::PEN);
            out.extend_from_slice(&[p.kind.to_wire(), p.tool.to_wire(), p.buttons, 0]);
            for v in [p.x, p.y, p.pressure_or_distance] {
                f32le(out, v);
            }
            le16(out, p.rotation.unwrap_or(0xFFFF));
            out.extend_from_slice(&[p.tilt.unwrap_or(0xFF), 0]);
            f32le(out, p.contact_major);
            f32le(out, p.contact_minor);
        }
        InputEvent::ControllerArrival(a) => {
            le32(out, magic::CONTROLLER_ARRIVAL);
            out.extend_from_slice(&[a.number, a.kind.to_wire()]);
            le16(out, a.capabilities);
            le32(out, a.supported_buttons);
        }
        InputEvent::ControllerTouch(t) => {
            le32(out, magic::CONTROLLER_TOUCH);
            out.extend_from_slice(&[t.number, t.kind.to_wire(), 0, t.touchpad]);
            le32(out, t.pointer_id);
            for v in [t.x, t.y, t.pressure] {
                f32le(out, v);
            }
        }
        InputEvent::ControllerMotion(m) => {
            le32(out, magic::CONTROLLER_MOTION);
            out.extend_from_slice(&[m.number, m.kind.to_wire(), 0, 0]);
            for v in [m.x, m.y, m.z] {
                f32le(out, v);
            }
        }
        InputEvent::ControllerBattery(b) => {
            le32(out, magic::CONTROLLER_BATTERY);
            out.extend_from_slice(&[b.number, b.state.to_wire(), b.percent.unwrap_or(0xFF), 0]);
        }
    }
    // At most 4 + 32 bytes follow the size field, so the length fits in u32.
    let size = (out.len() - start - 4) as u32;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Strips the 4-byte control-message inner header (`u16 LE 0x0206, u16 LE len`) from a
    /// Wolf byte dump and checks it.
    fn strip_control_header(dump: &[u8]) -> &[u8] {
        assert_eq!(&dump[..2], &[0x06, 0x02], "type 0x0206, LE");
        let len = u16::from_le_bytes([dump[2], dump[3]]) as usize;
        assert_eq!(len, dump.len() - 4, "inner length covers the input packet");
        &dump[4..]
    }

    fn roundtrip(bytes: &[u8], event: InputEvent) {
        assert_eq!(decode(bytes), Ok(event), "decode");
        assert_eq!(encode(&event), bytes, "encode");
    }

    // ---- Fixtures from Wolf docs/modules/protocols/pages/input-data.adoc (d33bf6f) ----

    #[test]
    fn wolf_mouse_relative() {
        let dump = [
            0x06, 0x02, 0x0C, 0x00, 0x00, 0x00, 0x00, 0x08, 0x07, 0x00, 0x00, 0x00, 0xFF, 0xFF,
            0x00, 0x00,
        ];
        roundtrip(
            strip_control_header(&dump),
            InputEvent::MouseMove { dx: -1, dy: 0 },
        );
    }

    #[test]
    fn wolf_mouse_absolute() {
        let dump = [
            0x06, 0x02, 0x12, 0x00, 0x00, 0x00, 0x00, 0x0E, 0x05, 0x00, 0x00, 0x00, 0x05, 0xB8,
            0x02, 0x10, 0x00, 0x00, 0x07, 0x7F, 0x04, 0x37,
        ];
        // 1920x1080 reference surface, sent as (width - 1, height - 1).
        roundtrip(
            strip_control_header(&dump),
            InputEvent::MouseAbsolute {
                x: 1464,
                y: 528,
                width: 1919,
                height: 1079,
            },
        );
    }

    #[test]
    fn wolf_mouse_button() {
        let dump = [
            0x06, 0x02, 0x09, 0x00, 0x00, 0x00, 0x00, 0x05, 0x08, 0x00, 0x00, 0x00, 0x01,
        ];
        roundtrip(
            strip_control_header(&dump),
            InputEvent::MouseButton {
                down: true,
                button: MouseButton::Left,
            },
        );
    }

    #[test]
    fn wolf_key_down_left_alt() {
        let dump = [
            0x06, 0x02, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x03, 0x00, 0x00, 0x00, 0x00, 0xA4,
            0x80, 0x04, 0x00, 0x00,
        ];
        // Moonlight-Qt sends 0x8000 | VK; VK_LMENU = 0xA4 with the Alt modifier.
        roundtrip(
            strip_control_header(&dump),
            InputEvent::Key {
                down: true,
                code: 0x80A4,
                modifiers: Modifiers(Modifiers::ALT),
                flags: 0,
            },
        );
    }

    #[test]
    fn wolf_scroll() {
        let dump = [
            0x06, 0x02, 0x0E, 0x00, 0x00, 0x00, 0x00, 0x0A, 0x0A, 0x00, 0x00, 0x00, 0xFF, 0x88,
            0xFF, 0x88, 0x00, 0x00,
        ];
        roundtrip(
            strip_control_header(&dump),
            InputEvent::Scroll { amount: -120 },
        );
    }

    #[test]
    fn wolf_hscroll() {
        let dump = [
            0x06, 0x02, 0x0A, 0x00, 0x00, 0x00, 0x00, 0x06, 0x01, 0x00, 0x00, 0x55, 0x00, 0x1E,
        ];
        roundtrip(
            strip_control_header(&dump),
            InputEvent::HScroll { amount: 30 },
        );
    }

    #[test]
    fn wolf_multi_controller() {
        let dump = [
            0x06, 0x02, 0x22, 0x00, 0x00, 0x00, 0x00, 0x1E, 0x0C, 0x00, 0x00, 0x00, 0x1A, 0x00,
            0x00, 0x00, 0x01, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x98, 0xFF, 0x9C, 0x00, 0x00, 0x00, 0x55, 0x00,
        ];
        roundtrip(
            strip_control_header(&dump),
            InputEvent::Gamepad(GamepadState {
                number: 0,
                active_mask: 0x0001,
                rsy: -104,
                ..GamepadState::default()
            }),
        );
    }

    // ---- Fixtures built byte by byte from MCC src/Input.h layouts ----

    #[test]
    fn key_up_non_normalized_with_modifiers() {
        let bytes = [
            0x00, 0x00, 0x00, 0x0A, // size 10, BE
            0x04, 0x00, 0x00, 0x00, // KEY_UP, LE
            0x01, // flags: SS_KBE_FLAG_NON_NORMALIZED
            0x41, 0x00, // keyCode 'A' (0x41), LE
            0x03, // Shift | Ctrl
            0x00, 0x00,
        ];
        roundtrip(
            &bytes,
            InputEvent::Key {
                down: false,
                code: 0x0041,
                modifiers: Modifiers(Modifiers::SHIFT | Modifiers::CTRL),
                flags: KEY_FLAG_NON_NORMALIZED,
            },
        );
    }

    #[test]
    fn mouse_relative_big_endian() {
        let bytes = [0, 0, 0, 8, 7, 0, 0, 0, 0x01, 0x02, 0x80, 0x00];
        roundtrip(
            &bytes,
            InputEvent::MouseMove {
                dx: 0x0102,
                dy: i16::MIN,
            },
        );
    }

    #[test]
    fn mouse_button_up_x2() {
        let bytes = [0, 0, 0, 5, 9, 0, 0, 0, 5];
        roundtrip(
            &bytes,
            InputEvent::MouseButton {
                down: false,
                button: MouseButton::X2,
            },
        );
    }

    #[test]
    fn scroll_reads_first_amount() {
        // amount 1 = +240, amount 2 differs: only the first counts (as in Sunshine).
        let bytes = [0, 0, 0, 10, 0x0A, 0, 0, 0, 0x00, 0xF0, 0x00, 0x01, 0, 0];
        assert_eq!(decode(&bytes), Ok(InputEvent::Scroll { amount: 240 }));
    }

    #[test]
    fn utf8_text() {
        // "é" = C3 A9, size = 4 (magic) + 2.
        let bytes = [0, 0, 0, 6, 0x17, 0, 0, 0, 0xC3, 0xA9];
        roundtrip(&bytes, InputEvent::Text(Utf8Text::new("é").unwrap()));
        // A 4-byte code point.
        let bytes = [0, 0, 0, 8, 0x17, 0, 0, 0, 0xF0, 0x9F, 0x98, 0x80];
        roundtrip(&bytes, InputEvent::Text(Utf8Text::new("😀").unwrap()));
    }

    #[test]
    fn utf8_text_rejects_bad_bytes_and_sizes() {
        assert_eq!(
            decode(&[0, 0, 0, 5, 0x17, 0, 0, 0, 0xC3]),
            Err(InputError::InvalidUtf8)
        );
        assert!(matches!(
            decode(&[0, 0, 0, 4, 0x17, 0, 0, 0]),
            Err(InputError::BadSize { .. })
        ));
        let mut long = vec![0, 0, 0, 37, 0x17, 0, 0, 0];
        long.extend_from_slice(&[b'a'; 33]);
        assert!(matches!(decode(&long), Err(InputError::BadSize { .. })));
        let mut max = vec![0, 0, 0, 36, 0x17, 0, 0, 0];
        max.extend_from_slice(&[b'a'; 32]);
        assert!(matches!(decode(&max), Ok(InputEvent::Text(t)) if t.as_str().len() == 32));
    }

    #[test]
    fn multi_controller_all_fields() {
        let bytes = [
            0x00, 0x00, 0x00, 0x1E, // size 30
            0x0C, 0x00, 0x00, 0x00, // MULTI_CONTROLLER_MAGIC_GEN5
            0x1A, 0x00, // headerB
            0x03, 0x00, // controller 3
            0x09, 0x00, // mask: pads 0 and 3
            0x14, 0x00, // midB
            0x01, 0x10, // buttons: A (0x1000) | Up (0x0001)
            0x80, 0xFF, // LT 128, RT 255
            0xFF, 0x7F, // LSX 32767
            0x00, 0x80, // LSY -32768
            0x34, 0x12, // RSX 0x1234
            0xFE, 0xFF, // RSY -2
            0x9C, 0x00, // tailA
            0x11, 0x00, // buttons2: paddle 1 (0x010000) | touchpad (0x100000)
            0x55, 0x00, // tailB
        ];
        roundtrip(
            &bytes,
            InputEvent::Gamepad(GamepadState {
                number: 3,
                active_mask: 0x0009,
                buttons: 0x0011_1001,
                lt: 128,
                rt: 255,
                lsx: i16::MAX,
                lsy: i16::MIN,
                rsx: 0x1234,
                rsy: -2,
            }),
        );
    }

    #[test]
    fn multi_controller_bad_number() {
        let mut bytes = encode(&InputEvent::Gamepad(GamepadState::default()));
        bytes[10] = 16; // controller number 16
        assert_eq!(
            decode(&bytes),
            Err(InputError::InvalidField {
                field: "controller number",
                value: 16
            })
        );
        bytes[10] = 0xFF; // -1
        bytes[11] = 0xFF;
        assert!(matches!(
            decode(&bytes),
            Err(InputError::InvalidField { .. })
        ));
    }

    #[test]
    fn enable_haptics() {
        roundtrip(
            &[0, 0, 0, 6, 0x0D, 0, 0, 0, 0x01, 0x00],
            InputEvent::EnableHaptics { enabled: true },
        );
    }

    #[test]
    fn touch() {
        let bytes = [
            0x00, 0x00, 0x00, 0x20, // size 32
            0x02, 0x00, 0x00, 0x55, // SS_TOUCH_MAGIC
            0x01, 0x00, // DOWN, reserved
            0x5A, 0x00, // rotation 90
            0x07, 0x00, 0x00, 0x00, // pointer 7
            0x00, 0x00, 0x00, 0x3F, // x 0.5
            0x00, 0x00, 0x80, 0x3E, // y 0.25
            0x00, 0x00, 0x80, 0x3F, // pressure 1.0
            0x00, 0x00, 0x00, 0x00, // major 0
            0x00, 0x00, 0x00, 0x00, // minor 0
        ];
        roundtrip(
            &bytes,
            InputEvent::Touch(TouchEvent {
                kind: TouchKind::Down,
                pointer_id: 7,
                rotation: Some(90),
                x: 0.5,
                y: 0.25,
                pressure_or_distance: 1.0,
                contact_major: 0.0,
                contact_minor: 0.0,
            }),
        );
    }

    #[test]
    fn touch_rejects_nan_and_bad_type() {
        let ev = InputEvent::Touch(TouchEvent {
            kind: TouchKind::Move,
            pointer_id: 1,
            rotation: None,
            x: 0.1,
            y: 0.2,
            pressure_or_distance: 0.3,
            contact_major: 0.0,
            contact_minor: 0.0,
        });
        let mut bytes = encode(&ev);
        assert_eq!(&bytes[10..12], &[0xFF, 0xFF], "unknown rotation");
        bytes[16..20].copy_from_slice(&f32::NAN.to_le_bytes());
        assert!(matches!(
            decode(&bytes),
            Err(InputError::InvalidField { field: "x", .. })
        ));
        let mut bytes = encode(&ev);
        bytes[8] = 8;
        assert!(matches!(
            decode(&bytes),
            Err(InputError::InvalidField {
                field: "touch event type",
                value: 8
            })
        ));
    }

    #[test]
    fn pen() {
        let bytes = [
            0x00, 0x00, 0x00, 0x20, // size 32
            0x03, 0x00, 0x00, 0x55, // SS_PEN_MAGIC
            0x03, 0x02, 0x01, 0x00, // MOVE, eraser, primary button, reserved
            0x00, 0x00, 0x40, 0x3F, // x 0.75
            0x00, 0x00, 0x00, 0x3F, // y 0.5
            0x00, 0x00, 0x00, 0x3F, // pressure 0.5
            0xFF, 0xFF, // rotation unknown
            0x2D, 0x00, // tilt 45, reserved
            0x00, 0x00, 0x00, 0x00, // major
            0x00, 0x00, 0x00, 0x00, // minor
        ];
        roundtrip(
            &bytes,
            InputEvent::Pen(PenEvent {
                kind: TouchKind::Move,
                tool: PenTool::Eraser,
                buttons: 0x01,
                x: 0.75,
                y: 0.5,
                pressure_or_distance: 0.5,
                rotation: None,
                tilt: Some(45),
                contact_major: 0.0,
                contact_minor: 0.0,
            }),
        );
    }

    #[test]
    fn controller_arrival() {
        let bytes = [
            0x00, 0x00, 0x00, 0x0C, // size 12
            0x04, 0x00, 0x00, 0x55, // SS_CONTROLLER_ARRIVAL_MAGIC
            0x02, 0x02, // pad 2, PlayStation
            0x7B, 0x00, // caps: analog triggers|rumble|touchpad|accel|gyro|battery
            0xFF, 0xF7, 0x3F, 0x00, // supported buttons 0x003FF7FF
        ];
        roundtrip(
            &bytes,
            InputEvent::ControllerArrival(ControllerArrival {
                number: 2,
                kind: ControllerKind::PlayStation,
                capabilities: 0x007B,
                supported_buttons: 0x003F_F7FF,
            }),
        );
    }

    #[test]
    fn controller_arrival_unknown_type_is_kept() {
        let bytes = [0, 0, 0, 12, 4, 0, 0, 0x55, 1, 9, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            decode(&bytes),
            Ok(InputEvent::ControllerArrival(ControllerArrival {
                kind: ControllerKind::Other(9),
                ..
            }))
        ));
    }

    #[test]
    fn controller_touch() {
        let bytes = [
            0x00, 0x00, 0x00, 0x18, // size 24
            0x05, 0x00, 0x00, 0x55, // SS_CONTROLLER_TOUCH_MAGIC
            0x01, 0x03, 0x00, 0x01, // pad 1, MOVE, reserved, touchpad 1
            0x02, 0x00, 0x00, 0x00, // pointer 2
            0x00, 0x00, 0x00, 0x00, // x 0.0
            0x00, 0x00, 0x80, 0x3F, // y 1.0
            0x00, 0x00, 0x00, 0x3F, // pressure 0.5
        ];
        roundtrip(
            &bytes,
            InputEvent::ControllerTouch(ControllerTouch {
                number: 1,
                kind: TouchKind::Move,
                touchpad: 1,
                pointer_id: 2,
                x: 0.0,
                y: 1.0,
                pressure: 0.5,
            }),
        );
    }

    #[test]
    fn controller_motion() {
        let bytes = [
            0x00, 0x00, 0x00, 0x14, // size 20
            0x06, 0x00, 0x00, 0x55, // SS_CONTROLLER_MOTION_MAGIC
            0x00, 0x02, 0x00, 0x00, // pad 0, gyro
            0x00, 0x00, 0x80, 0xBF, // x -1.0
            0x00, 0x00, 0x00, 0x00, // y 0.0
            0x00, 0x00, 0x1C, 0x41, // z 9.75
        ];
        roundtrip(
            &bytes,
            InputEvent::ControllerMotion(ControllerMotion {
                number: 0,
                kind: MotionKind::Gyro,
                x: -1.0,
                y: 0.0,
                z: 9.75,
            }),
        );
    }

    #[test]
    fn controller_battery() {
        let bytes = [0, 0, 0, 8, 0x07, 0, 0, 0x55, 0x0F, 0x03, 0x50, 0x00];
        roundtrip(
            &bytes,
            InputEvent::ControllerBattery(ControllerBattery {
                number: 15,
                state: BatteryState::Charging,
                percent: Some(80),
            }),
        );
        let unknown = [0, 0, 0, 8, 0x07, 0, 0, 0x55, 0x00, 0x00, 0xFF, 0x00];
        roundtrip(
            &unknown,
            InputEvent::ControllerBattery(ControllerBattery {
                number: 0,
                state: BatteryState::Unknown,
                percent: None,
            }),
        );
        let bad = [0, 0, 0, 8, 0x07, 0, 0, 0x55, 0x00, 0x06, 0x10, 0x00];
        assert!(matches!(
            decode(&bad),
            Err(InputError::InvalidField {
                field: "battery state",
                ..
            })
        ));
    }

    // ---- Framing errors ----

    #[test]
    fn framing_errors() {
        assert_eq!(decode(&[]), Err(InputError::TooShort { len: 0 }));
        assert_eq!(
            decode(&[0, 0, 0, 4, 7, 0, 0]),
            Err(InputError::TooShort { len: 7 })
        );
        // size says 8, only 7 bytes follow.
        assert_eq!(
            decode(&[0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0]),
            Err(InputError::Truncated {
                declared: 8,
                actual: 7
            })
        );
        // size says 8, 9 bytes follow.
        assert_eq!(
            decode(&[0, 0, 0, 8, 7, 0, 0, 0, 0, 0, 0, 0, 0]),
            Err(InputError::TrailingBytes {
                declared: 8,
                actual: 9
            })
        );
        // Huge size field.
        assert!(matches!(
            decode(&[0xFF, 0xFF, 0xFF, 0xFF, 7, 0, 0, 0]),
            Err(InputError::Truncated { .. })
        ));
        // Consistent framing, but the wrong size for a relative move.
        assert_eq!(
            decode(&[0, 0, 0, 6, 7, 0, 0, 0, 0, 0]),
            Err(InputError::BadSize {
                magic: magic::MOUSE_RELATIVE,
                size: 6,
                expected: "8"
            })
        );
        // Unknown magic, pre-Gen 5 relative move included.
        assert_eq!(
            decode(&[0, 0, 0, 8, 6, 0, 0, 0, 0, 0, 0, 0]),
            Err(InputError::UnknownType(6))
        );
        assert_eq!(
            decode(&[0, 0, 0, 4, 0x08, 0, 0, 0x55]),
            Err(InputError::UnknownType(0x5500_0008))
        );
        assert_eq!(
            decode(&[0, 0, 0, 5, 8, 0, 0, 0, 6]),
            Err(InputError::InvalidField {
                field: "mouse button",
                value: 6
            })
        );
    }

    #[test]
    fn stats_count_kinds() {
        let mut s = InputStats::default();
        s.record(&decode(&[0, 0, 0, 6, 0x0D, 0, 0, 0, 1, 0]));
        s.record(&decode(&[0, 0, 0, 4, 0x99, 0, 0, 0]));
        s.record(&decode(&[1, 2]));
        assert_eq!(
            s,
            InputStats {
                decoded: 1,
                unknown_type: 1,
                malformed: 1
            }
        );
    }

    #[test]
    fn every_magic_has_a_fixture_kind() {
        let names: std::collections::BTreeSet<_> =
            InputKind::ALL.iter().map(|k| k.name()).collect();
        assert_eq!(names.len(), InputKind::COUNT);
        for (i, k) in InputKind::ALL.iter().enumerate() {
            assert_eq!(*k as usize, i);
        }
    }

    // ---- Property tests ----

    fn finite() -> impl Strategy<Value = f32> {
        prop_oneof![-1e6f32..1e6f32, Just(0.0f32), Just(1.0f32), Just(-0.0f32)]
    }

    fn touch_kind() -> impl Strategy<Value = TouchKind> {
        (0u8..8).prop_map(|v| TouchKind::from_wire(v).unwrap())
    }

    fn pad() -> impl Strategy<Value = u8> {
        0u8..16
    }

    pub(crate) fn any_event() -> impl Strategy<Value = InputEvent> {
        let text = "\\PC{1,8}"
            .prop_filter_map("fits", |s: String| Utf8Text::new(&s))
            .prop_map(InputEvent::Text);
        prop_oneof![
            (any::<bool>(), any::<u16>(), any::<u8>(), any::<u8>()).prop_map(
                |(down, code, m, flags)| InputEvent::Key {
                    down,
                    code,
                    modifiers: Modifiers(m),
                    flags
                }
            ),
            (any::<i16>(), any::<i16>()).prop_map(|(dx, dy)| InputEvent::MouseMove { dx, dy }),
            (any::<i16>(), any::<i16>(), any::<i16>(), any::<i16>()).prop_map(
                |(x, y, width, height)| InputEvent::MouseAbsolute {
                    x,
                    y,
                    width,
                    height
                }
            ),
            (any::<bool>(), 1u8..=5).prop_map(|(down, b)| InputEvent::MouseButton {
                down,
                button: MouseButton::from_wire(b).unwrap()
            }),
            any::<i16>().prop_map(|amount| InputEvent::Scroll { amount }),
            any::<i16>().prop_map(|amount| InputEvent::HScroll { amount }),
            text,
            (
                pad(),
                any::<u16>(),
                any::<u32>(),
                any::<[u8; 2]>(),
                any::<[i16; 4]>()
            )
                .prop_map(|(number, active_mask, buttons, t, s)| {
                    InputEvent::Gamepad(GamepadState {
                        number,
                        active_mask,
                        buttons,
                        lt: t[0],
                        rt: t[1],
                        lsx: s[0],
                        lsy: s[1],
                        rsx: s[2],
                        rsy: s[3],
                    })
                }),
            any::<bool>().prop_map(|enabled| InputEvent::EnableHaptics { enabled }),
            (
                touch_kind(),
                any::<u32>(),
                proptest::option::of(0u16..0xFFFF),
                [finite(), finite(), finite(), finite(), finite()]
            )
                .prop_map(|(kind, pointer_id, rotation, f)| {
                    InputEvent::Touch(TouchEvent {
                        kind,
                        pointer_id,
                        rotation,
                        x: f[0],
                        y: f[1],
                        pressure_or_distance: f[2],
                        contact_major: f[3],
                        contact_minor: f[4],
                    })
                }),
            (
                touch_kind(),
                0u8..3,
                any::<u8>(),
                proptest::option::of(0u16..0xFFFF),
                proptest::option::of(0u8..0xFF),
                [finite(), finite(), finite(), finite(), finite()]
            )
                .prop_map(|(kind, tool, buttons, rotation, tilt, f)| {
                    InputEvent::Pen(PenEvent {
                        kind,
                        tool: PenTool::from_wire(tool).unwrap(),
                        buttons,
                        x: f[0],
                        y: f[1],
                        pressure_or_distance: f[2],
                        rotation,
                        tilt,
                        contact_major: f[3],
                        contact_minor: f[4],
                    })
                }),
            (pad(), any::<u8>(), any::<u16>(), any::<u32>()).prop_map(
                |(number, kind, capabilities, supported_buttons)| {
                    InputEvent::ControllerArrival(ControllerArrival {
                        number,
                        kind: ControllerKind::from_wire(kind),
                        capabilities,
                        supported_buttons,
                    })
                }
            ),
            (
                pad(),
                touch_kind(),
                any::<u8>(),
                any::<u32>(),
                [finite(), finite(), finite()]
            )
                .prop_map(|(number, kind, touchpad, pointer_id, f)| {
                    InputEvent::ControllerTouch(ControllerTouch {
                        number,
                        kind,
                        touchpad,
                        pointer_id,
                        x: f[0],
                        y: f[1],
                        pressure: f[2],
                    })
                }),
            (pad(), 1u8..=2, [finite(), finite(), finite()]).prop_map(|(number, kind, f)| {
                InputEvent::ControllerMotion(ControllerMotion {
                    number,
                    kind: MotionKind::from_wire(kind).unwrap(),
                    x: f[0],
                    y: f[1],
                    z: f[2],
                })
            }),
            (pad(), 0u8..=5, proptest::option::of(0u8..=100)).prop_map(
                |(number, state, percent)| {
                    InputEvent::ControllerBattery(ControllerBattery {
                        number,
                        state: BatteryState::from_wire(state).unwrap(),
                        percent,
                    })
                }
            ),
        ]
    }

    proptest! {
        #[test]
        fn encode_decode_roundtrip(event in any_event()) {
            let bytes = encode(&event);
            prop_assert_eq!(decode(&bytes), Ok(event));
            // Size field agrees with the length.
            let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            prop_assert_eq!(size + 4, bytes.len());
        }

        #[test]
        fn decode_reencode_is_identity_for_valid_packets(event in any_event()) {
            // decode ∘ encode is the identity, and so is encode ∘ decode on encoder output.
            let bytes = encode(&event);
            let again = encode(&decode(&bytes).unwrap());
            prop_assert_eq!(again, bytes);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            let _ = decode(&bytes);
        }

        #[test]
        fn random_bodies_with_valid_framing_never_panic(
            magic in prop_oneof![
                Just(magic::KEY_DOWN), Just(magic::MOUSE_ABSOLUTE), Just(magic::MOUSE_RELATIVE),
                Just(magic::MOUSE_BUTTON_UP), Just(magic::SCROLL), Just(magic::MULTI_CONTROLLER),
                Just(magic::ENABLE_HAPTICS), Just(magic::UTF8_TEXT), Just(magic::HSCROLL),
                Just(magic::TOUCH), Just(magic::PEN), Just(magic::CONTROLLER_ARRIVAL),
                Just(magic::CONTROLLER_TOUCH), Just(magic::CONTROLLER_MOTION),
                Just(magic::CONTROLLER_BATTERY), any::<u32>(),
            ],
            body in proptest::collection::vec(any::<u8>(), 0..40),
        ) {
            let mut bytes = ((body.len() + 4) as u32).to_be_bytes().to_vec();
            bytes.extend_from_slice(&magic.to_le_bytes());
            bytes.extend_from_slice(&body);
            let _ = decode(&bytes);
        }

        #[test]
        fn truncating_a_valid_packet_is_an_error(event in any_event(), cut in 1usize..8) {
            let bytes = encode(&event);
            let cut = cut.min(bytes.len());
            prop_assert!(decode(&bytes[..bytes.len() - cut]).is_err());
        }
    }
}
