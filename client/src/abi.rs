//! The C ABI (`include/punktfunk_core.h`, generated from this file by cbindgen): thin
//! `extern "C"` functions over [`crate::core::Core`]. The rules every function follows —
//! versioning, `struct_size`, pointer ownership, threads, error codes — are in
//! docs/client-abi.md; each function's comment says what is particular to it.
//!
//! Every function checks its pointers for null, catches panics (reported as
//! `PF_ERR_INTERNAL`), and on failure stores a message for
//! [`punktfunk_last_error_message`] on the calling thread.

use std::cell::RefCell;
use std::ffi::{CStr, c_char, c_void};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use punktfunk_control::input::wire::{PenEvent, PenTool, TouchEvent, TouchKind, Utf8Text};
use punktfunk_control::input::{GamepadState, InputEvent, Modifiers, MouseButton};
use punktfunk_control::pf1::message::CodecSet;
use punktfunk_control::pf1::{Codec, Fingerprint, HostTrust, Mode, Pin};

use crate::core::{Core, CoreConfig, CoreError, CoreEvent, identity_fingerprint};
use crate::queue::FrameMeta;

/// Major version of the ABI: changes only when an existing function, field or constant
/// changes meaning (clients built against another major refuse to run).
pub const PF_ABI_MAJOR: u32 = 1;
/// Minor version: grows when functions, fields at the end of a struct, or constants are added.
pub const PF_ABI_MINOR: u32 = 0;

/// Success.
pub const PF_OK: i32 = 0;
/// A pointer was null, a string not UTF-8, or a value out of range.
pub const PF_ERR_INVALID_ARGUMENT: i32 = -1;
/// A struct's `struct_size` is smaller than its version 1.0 size.
pub const PF_ERR_STRUCT_SIZE: i32 = -2;
/// The state directory (identity, known hosts) could not be read or written.
pub const PF_ERR_STATE: i32 = -3;
/// The host name did not resolve.
pub const PF_ERR_RESOLVE: i32 = -4;
/// A socket or thread could not be set up.
pub const PF_ERR_NETWORK: i32 = -5;
/// Nothing arrived within the timeout (not a failure: call again).
pub const PF_ERR_TIMEOUT: i32 = -6;
/// The session has closed (every event was taken, or a command came after the close).
pub const PF_ERR_CLOSED: i32 = -7;
/// The caller's buffer is too small for the next frame; `info->size` says how large it must
/// be and the frame stays queued.
pub const PF_ERR_BUFFER_TOO_SMALL: i32 = -8;
/// A bug inside the library (a caught panic); the handle may still be closed.
pub const PF_ERR_INTERNAL: i32 = -9;

/// `PfClientConfig::flags`: run the PIN ceremony (with `pin`, or answer `PF_EVENT_PIN_NEEDED`).
pub const PF_CONNECT_PAIR: u32 = 1;
/// `PfClientConfig::flags`: do not write the host's certificate into the state directory's
/// known hosts (the application keeps pins itself and passes `expect_host_fingerprint`).
pub const PF_CONNECT_NO_REMEMBER_HOST: u32 = 2;

/// Codec bit: H.264.
pub const PF_CODEC_H264: u32 = 1;
/// Codec bit: H.265 / HEVC.
pub const PF_CODEC_HEVC: u32 = 2;
/// Codec bit: AV1.
pub const PF_CODEC_AV1: u32 = 4;

/// Event: TLS is up (`fingerprint`, `trust`).
pub const PF_EVENT_CONNECTED: u32 = 1;
/// Event: the host waits for the PIN its operator armed (`pin_digits`); call
/// `punktfunk_client_pair`.
pub const PF_EVENT_PIN_NEEDED: u32 = 2;
/// Event: the PIN ceremony ended (`ok`).
pub const PF_EVENT_PAIRED: u32 = 3;
/// Event: streaming (`session_id`, `width`, `height`, `fps`, `codec`, `parity_percent`).
pub const PF_EVENT_STARTED: u32 = 4;
/// Event: the host runs a new mode (`width`, `height`, `fps`, `epoch`, `first_frame_id`).
pub const PF_EVENT_RECONFIGURED: u32 = 5;
/// Event: frames were lost for good (`first_frame_id`, `count`); decode from a keyframe.
pub const PF_EVENT_FRAMES_LOST: u32 = 6;
/// Event: the session ended (`reason`, `by_peer`, `text`); the last event.
pub const PF_EVENT_CLOSED: u32 = 7;

/// `PfEvent::trust`: no pin existed for this host.
pub const PF_TRUST_FIRST_USE: u32 = 0;
/// `PfEvent::trust`: the certificate matched the pin.
pub const PF_TRUST_PINNED: u32 = 1;
/// `PfEvent::trust`: the certificate differs from the pin; only pairing can accept it.
pub const PF_TRUST_CHANGED: u32 = 2;

/// `PfFrameInfo::flags`: an IDR / keyframe.
pub const PF_FRAME_KEYFRAME: u32 = 1;
/// `PfFrameInfo::flags`: the first frame of a new mode.
pub const PF_FRAME_NEW_MODE: u32 = 2;
/// `PfFrameInfo::flags`: frames before this one were lost or dropped: decode from a keyframe.
pub const PF_FRAME_DISCONTINUITY: u32 = 4;
/// `PfFrameInfo::flags`: FEC rebuilt part of this frame.
pub const PF_FRAME_RECOVERED: u32 = 8;

/// Input: a key (`down`, `code` = Win32 virtual-key code, `modifiers`).
pub const PF_INPUT_KEY: u32 = 1;
/// Input: relative pointer motion (`x`, `y` = deltas).
pub const PF_INPUT_MOUSE_MOVE: u32 = 2;
/// Input: absolute pointer position (`x`, `y` within `ref_width` × `ref_height`).
pub const PF_INPUT_MOUSE_POSITION: u32 = 3;
/// Input: a mouse button (`down`, `button` 1 left, 2 middle, 3 right, 4 back, 5 forward).
pub const PF_INPUT_MOUSE_BUTTON: u32 = 4;
/// Input: vertical scroll (`y` in 1/120 notches, positive away from the user).
pub const PF_INPUT_SCROLL: u32 = 5;
/// Input: horizontal scroll (`x` in 1/120 notches, positive right).
pub const PF_INPUT_HSCROLL: u32 = 6;
/// Input: text (`text`, `text_len` ≤ 32 bytes of UTF-8).
pub const PF_INPUT_TEXT: u32 = 7;
/// Input: touch contact (`phase`, `pointer_id`, `fx`, `fy`, `pressure`, `rotation`,
/// `contact_major`, `contact_minor`).
pub const PF_INPUT_TOUCH: u32 = 8;
/// Input: pen (`phase`, `tool`, `pen_buttons`, `fx`, `fy`, `pressure`, `rotation`, `tilt`,
/// `contact_major`, `contact_minor`).
pub const PF_INPUT_PEN: u32 = 9;
/// Input: a gamepad's full state (`pad`, `active_mask`, `buttons`, `lt`, `rt`, `lsx`, `lsy`,
/// `rsx`, `rsy`).
pub const PF_INPUT_GAMEPAD: u32 = 10;

/// How to connect. Zero-initialise it, set `struct_size = sizeof(PfClientConfig)`, fill in
/// what you need: zero means "the default" everywhere.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PfClientConfig {
    /// `sizeof(PfClientConfig)` as the caller compiled it.
    pub struct_size: u32,
    /// `PF_CONNECT_*` bits.
    pub flags: u32,
    /// `HOST` or `HOST:PORT` (default port 47900), UTF-8. Required.
    pub host: *const c_char,
    /// Directory of the client identity and known hosts (created if missing). Required.
    pub state_dir: *const c_char,
    /// Name shown on the host; null: "punktfunk client".
    pub name: *const c_char,
    /// The host's PIN when pairing and known up front; null: `PF_EVENT_PIN_NEEDED` asks.
    pub pin: *const c_char,
    /// Null, or 32 bytes: the host certificate's SHA-256 this client expects (overrides the
    /// known hosts).
    pub expect_host_fingerprint: *const u8,
    /// Requested width; 0: 1920.
    pub width: u16,
    /// Requested height; 0: 1080.
    pub height: u16,
    /// Requested frame rate; 0: 60.
    pub fps: u16,
    /// Reserved, zero.
    pub reserved0: u16,
    /// `PF_CODEC_*` bits the application decodes; 0: H.264 only.
    pub codecs: u32,
    /// Frames the pull queue holds before it drops the oldest; 0: 8.
    pub frame_queue: u32,
    /// Testing only: drop this many of every million data-plane datagrams on receipt.
    pub test_drop_per_million: u32,
}

/// An event. Which fields are meaningful depends on `kind` (see `PF_EVENT_*`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PfEvent {
    /// In: `sizeof(PfEvent)` as the caller compiled it. Out: the bytes written.
    pub struct_size: u32,
    /// `PF_EVENT_*`.
    pub kind: u32,
    /// CONNECTED: the host certificate's SHA-256.
    pub fingerprint: [u8; 32],
    /// CONNECTED: `PF_TRUST_*`.
    pub trust: u32,
    /// PIN_NEEDED: digits of the PIN.
    pub pin_digits: u32,
    /// PAIRED: 1 paired, 0 refused.
    pub ok: u32,
    /// STARTED, RECONFIGURED: the mode.
    pub width: u16,
    /// STARTED, RECONFIGURED: the mode.
    pub height: u16,
    /// STARTED, RECONFIGURED: the mode.
    pub fps: u16,
    /// STARTED: FEC parity in percent of data shards.
    pub parity_percent: u16,
    /// STARTED: one `PF_CODEC_*` bit.
    pub codec: u32,
    /// STARTED: the session id.
    pub session_id: u64,
    /// RECONFIGURED: stream epoch (1 for the first switch).
    pub epoch: u32,
    /// RECONFIGURED: first frame in the new mode; FRAMES_LOST: first frame lost.
    pub first_frame_id: u32,
    /// FRAMES_LOST: frames lost.
    pub count: u32,
    /// CLOSED: the Goodbye reason code (0 normal, 1 not paired, 2 pairing failed, 3 protocol
    /// violation, 4 version mismatch, 5 busy, 6 refused, 7 timeout, 8 internal, 9 host
    /// certificate changed, 10 pairing window closed, 11 retry later).
    pub reason: u32,
    /// CLOSED: 1 if the host ended the session.
    pub by_peer: u32,
    /// CLOSED: detail, UTF-8, NUL-terminated (cut to fit).
    pub text: [c_char; 256],
    /// KEY_UPDATE, and STARTED from `punktfunk_session_start`: the data-key generation.
    pub key_generation: u32,
    /// WELCOME, and STARTED from `punktfunk_session_start`: the host's data-plane UDP port.
    pub host_data_port: u16,
    /// Reserved, zero.
    pub reserved1: u16,
    /// KEY_UPDATE, and STARTED from `punktfunk_session_start`: the data key material for
    /// `punktfunk_receiver_new` / `punktfunk_receiver_install_key`.
    pub key_material: [u8; 32],
}

/// What came with a frame.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PfFrameInfo {
    /// In: `sizeof(PfFrameInfo)` as the caller compiled it. Out: the bytes written.
    pub struct_size: u32,
    /// `PF_FRAME_*` bits.
    pub flags: u32,
    /// The frame's size in bytes (also set with `PF_ERR_BUFFER_TOO_SMALL`).
    pub size: u64,
    /// Data-plane frame id (consecutive, wrapping).
    pub frame_id: u32,
    /// Stream epoch of the frame's mode.
    pub mode_id: u32,
    /// Data shards FEC rebuilt.
    pub recovered_shards: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Host capture time, µs on the host's monotonic clock.
    pub capture_us: u64,
    /// Arrival, µs on this machine's monotonic clock (`CLOCK_MONOTONIC`).
    pub received_us: u64,
}

/// Statistics of the session so far.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PfStats {
    /// In: `sizeof(PfStats)` as the caller compiled it. Out: the bytes written.
    pub struct_size: u32,
    /// Reserved, zero.
    pub reserved0: u32,
    /// Frames delivered complete.
    pub frames_complete: u64,
    /// Frames that needed FEC.
    pub frames_recovered: u64,
    /// Frames lost for good.
    pub frames_lost: u64,
    /// Frames the pull queue dropped because the application fell behind.
    pub frames_dropped: u64,
    /// Keyframes delivered.
    pub keyframes: u64,
    /// Data-plane datagrams received.
    pub datagrams: u64,
    /// Frame bytes delivered.
    pub payload_bytes: u64,
    /// Frame bytes per second between the first and the last frame, bit/s.
    pub goodput_bps: u64,
    /// Capture → reassembled latency, median over the latest 16384 frames, µs (meaningful
    /// when host and client share a clock); -1 before the first frame.
    pub latency_us_p50: i64,
    /// Same, 99th percentile.
    pub latency_us_p99: i64,
    /// Control round-trip time, µs, as of the last control event.
    pub rtt_us: u64,
    /// Input events handed to the session.
    pub input_sent: u64,
    /// Mode switches seen in the stream.
    pub mode_switches: u64,
    /// Data-plane key rotations.
    pub key_rotations: u64,
    /// Frame buffers the pull queue created (the rest were reused).
    pub buffers_created: u64,
}

/// One input event; which fields are read depends on `kind` (see `PF_INPUT_*`).
/// Zero-initialise, set `struct_size` and `kind`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct PfInput {
    /// `sizeof(PfInput)` as the caller compiled it.
    pub struct_size: u32,
    /// `PF_INPUT_*`.
    pub kind: u32,
    /// KEY, MOUSE_BUTTON: 1 pressed, 0 released.
    pub down: u8,
    /// MOUSE_BUTTON: 1..=5.
    pub button: u8,
    /// KEY: held modifiers (1 shift, 2 ctrl, 4 alt, 8 meta).
    pub modifiers: u8,
    /// TOUCH, PEN: 0 hover, 1 down, 2 up, 3 move, 4 cancel, 5 buttons only, 6 hover leave,
    /// 7 cancel all.
    pub phase: u8,
    /// KEY: Win32 virtual-key code.
    pub code: u16,
    /// PEN: 0 unknown, 1 pen, 2 eraser.
    pub tool: u8,
    /// PEN: button bits (1 primary, 2 secondary, 4 tertiary).
    pub pen_buttons: u8,
    /// MOUSE_MOVE: dx; MOUSE_POSITION: x; HSCROLL: amount.
    pub x: i32,
    /// MOUSE_MOVE: dy; MOUSE_POSITION: y; SCROLL: amount.
    pub y: i32,
    /// MOUSE_POSITION: reference width (the stream's width).
    pub ref_width: i32,
    /// MOUSE_POSITION: reference height.
    pub ref_height: i32,
    /// TOUCH: the contact's id.
    pub pointer_id: u32,
    /// TOUCH, PEN: x in 0..=1 of the stream surface.
    pub fx: f32,
    /// TOUCH, PEN: y in 0..=1.
    pub fy: f32,
    /// TOUCH, PEN: pressure (contact) or distance (hover), 0..=1.
    pub pressure: f32,
    /// TOUCH, PEN: contact ellipse, normalised.
    pub contact_major: f32,
    /// TOUCH, PEN: contact ellipse, normalised.
    pub contact_minor: f32,
    /// TOUCH, PEN: degrees, -1 unknown.
    pub rotation: i32,
    /// PEN: degrees, -1 unknown.
    pub tilt: i32,
    /// GAMEPAD: pad index 0..16.
    pub pad: u8,
    /// GAMEPAD: left trigger 0..=255.
    pub lt: u8,
    /// GAMEPAD: right trigger 0..=255.
    pub rt: u8,
    /// Reserved, zero.
    pub reserved0: u8,
    /// GAMEPAD: bit n set: pad n is connected.
    pub active_mask: u32,
    /// GAMEPAD: button bits (Moonlight's `buttonFlags | buttonFlags2 << 16`).
    pub buttons: u32,
    /// GAMEPAD: left stick x, positive right.
    pub lsx: i16,
    /// GAMEPAD: left stick y, positive up.
    pub lsy: i16,
    /// GAMEPAD: right stick x.
    pub rsx: i16,
    /// GAMEPAD: right stick y.
    pub rsy: i16,
    /// TEXT: bytes of UTF-8 in `text`.
    pub text_len: u32,
    /// TEXT: UTF-8, not NUL-terminated.
    pub text: [u8; 32],
}

/// Receives frames on the library's receive thread when set with
/// `punktfunk_client_set_frame_callback`. `data` and `info` are valid for the call only;
/// return quickly (the receive thread waits).
pub type PfFrameCallback = Option<
    unsafe extern "C" fn(user: *mut c_void, data: *const u8, len: usize, info: *const PfFrameInfo),
>;

/// A session with a host, opened by `punktfunk_client_connect`, freed by
/// `punktfunk_client_close`.
pub struct PfClient {
    core: Core,
}

impl PfClient {
    /// The Rust core behind the handle (for Rust callers of the ABI that need Rust-only
    /// diagnostics).
    pub fn core_mut(&mut self) -> &mut Core {
        &mut self.core
    }
}

/// The minimum `struct_size` of each struct: its size in ABI 1.0.
const CONFIG_V1: usize = size_of::<PfClientConfig>();
const EVENT_V1: usize = size_of::<PfEvent>();
const FRAME_V1: usize = size_of::<PfFrameInfo>();
const STATS_V1: usize = size_of::<PfStats>();
const INPUT_V1: usize = size_of::<PfInput>();

thread_local! {
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

pub(crate) fn fail(code: i32, msg: impl Into<String>) -> i32 {
    let msg = msg.into();
    LAST_ERROR.with(|e| *e.borrow_mut() = msg);
    code
}

pub(crate) fn core_err(e: &CoreError) -> i32 {
    let code = match e {
        CoreError::State(_) => PF_ERR_STATE,
        CoreError::Resolve { .. } => PF_ERR_RESOLVE,
        CoreError::Closed => PF_ERR_CLOSED,
        CoreError::Timeout => PF_ERR_TIMEOUT,
        CoreError::BufferTooSmall { .. } => PF_ERR_BUFFER_TOO_SMALL,
        _ => PF_ERR_NETWORK,
    };
    fail(code, e.to_string())
}

/// Runs `f`, turning a panic into `PF_ERR_INTERNAL`.
pub(crate) fn guard(f: impl FnOnce() -> i32) -> i32 {
    catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|_| fail(PF_ERR_INTERNAL, "internal panic"))
}

/// The `struct_size` a caller's struct starts with, checked against the 1.0 size `min`.
///
/// # Safety
/// `p` is null or points to a readable `u32`.
unsafe fn struct_size(p: *const u32, min: usize) -> Result<usize, i32> {
    if p.is_null() {
        return Err(fail(PF_ERR_INVALID_ARGUMENT, "null struct pointer"));
    }
    // SAFETY: the caller's promise.
    let size = unsafe { p.read_unaligned() } as usize;
    if size < min {
        return Err(fail(
            PF_ERR_STRUCT_SIZE,
            format!("struct_size {size} is below the 1.0 size {min}"),
        ));
    }
    Ok(size)
}

/// Reads a caller's struct of `struct_size` bytes (at least `min`): the fields it has, zero
/// for the fields a newer library added.
///
/// # Safety
/// `p` is null or points to at least `struct_size` readable bytes that begin with a `u32`
/// `struct_size`.
pub(crate) unsafe fn read_sized<T: Copy>(p: *const T, min: usize) -> Result<T, i32> {
    // SAFETY: the caller's promise.
    let size = unsafe { struct_size(p.cast::<u32>(), min) }?;
    let mut out = std::mem::MaybeUninit::<T>::zeroed();
    // SAFETY: copies min(size, sizeof T) bytes from the caller's struct into a zeroed T; every
    // T here is plain data for which all-zero bytes and the caller's bytes are valid.
    unsafe {
        std::ptr::copy_nonoverlapping(
            p.cast::<u8>(),
            out.as_mut_ptr().cast::<u8>(),
            size.min(size_of::<T>()),
        );
        Ok(out.assume_init())
    }
}

/// Writes `value` into the caller's struct: `min(struct_size, sizeof T)` bytes, and that count
/// into its `struct_size`.
///
/// # Safety
/// `p` is null or points to at least its own `struct_size` writable bytes.
pub(crate) unsafe fn write_sized<T: Copy>(p: *mut T, min: usize, value: &T) -> Result<(), i32> {
    // SAFETY: the caller's promise.
    let size = unsafe { struct_size(p.cast::<u32>(), min) }?;
    let n = size.min(size_of::<T>());
    // SAFETY: `n` bytes fit both the caller's struct and `value`.
    unsafe {
        std::ptr::copy_nonoverlapping((value as *const T).cast::<u8>(), p.cast::<u8>(), n);
        p.cast::<u32>().write_unaligned(n as u32);
    }
    Ok(())
}

/// [`write_sized`], then `code` (the call's result) if the write succeeded, else the write's
/// error.
///
/// # Safety
/// As [`write_sized`].
pub(crate) unsafe fn reply<T: Copy>(p: *mut T, min: usize, value: &T, code: i32) -> i32 {
    // SAFETY: the caller's promise.
    match unsafe { write_sized(p, min, value) } {
        Ok(()) => code,
        Err(e) => e,
    }
}

/// # Safety
/// `p` is null or a NUL-terminated string.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, i32> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller's promise.
    unsafe { CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|_| fail(PF_ERR_INVALID_ARGUMENT, format!("{what} is not UTF-8")))
}

/// The caller's `PfClientConfig` as a [`CoreConfig`], defaults filled in. `host` is required
/// when `need_host` (the sans-IO session takes an address instead and leaves it empty).
///
/// # Safety
/// `config` is null or points to a `PfClientConfig` of at least its `struct_size` bytes
/// whose pointers are null or valid as documented there.
pub(crate) unsafe fn core_config(
    config: *const PfClientConfig,
    need_host: bool,
) -> Result<CoreConfig, i32> {
    // SAFETY: the caller's promise.
    let c = unsafe { read_sized(config, CONFIG_V1) }?;
    // SAFETY: the config's strings, the caller's promise.
    let (host, dir, name, pin) = unsafe {
        (
            opt_str(c.host, "host")?,
            opt_str(c.state_dir, "state_dir")?,
            opt_str(c.name, "name")?,
            opt_str(c.pin, "pin")?,
        )
    };
    if need_host && host.is_none() {
        return Err(fail(PF_ERR_INVALID_ARGUMENT, "host is null"));
    }
    let dir = dir.ok_or_else(|| fail(PF_ERR_INVALID_ARGUMENT, "state_dir is null"))?;
    let pin = pin
        .map(Pin::parse)
        .transpose()
        .map_err(|e| fail(PF_ERR_INVALID_ARGUMENT, format!("pin: {e}")))?;
    let expect_host = (!c.expect_host_fingerprint.is_null()).then(|| {
        let mut fp = [0u8; 32];
        // SAFETY: 32 readable bytes, the caller's promise.
        unsafe { std::ptr::copy_nonoverlapping(c.expect_host_fingerprint, fp.as_mut_ptr(), 32) };
        Fingerprint(fp)
    });
    let or = |v: u16, d: u16| if v == 0 { d } else { v };
    Ok(CoreConfig {
        host: host.unwrap_or_default().to_owned(),
        state_dir: PathBuf::from(dir),
        name: name.unwrap_or("punktfunk client").to_owned(),
        mode: Mode::new(or(c.width, 1920), or(c.height, 1080), or(c.fps, 60)),
        codecs: codecs_from_bits(c.codecs),
        pair: c.flags & PF_CONNECT_PAIR != 0,
        pin,
        expect_host,
        remember_host: c.flags & PF_CONNECT_NO_REMEMBER_HOST == 0,
        frame_queue: if c.frame_queue == 0 {
            8
        } else {
            c.frame_queue.min(1024) as usize
        },
        inject_loss: f64::from(c.test_drop_per_million.min(999_999)) / 1e6,
    })
}

/// # Safety
/// `c` is null or a live handle from `punktfunk_client_connect`.
unsafe fn core_of<'a>(c: *const PfClient) -> Result<&'a Core, i32> {
    // SAFETY: the caller's promise; a live handle is only read through shared references.
    unsafe { c.as_ref() }
        .map(|c| &c.core)
        .ok_or_else(|| fail(PF_ERR_INVALID_ARGUMENT, "null client"))
}

fn codecs_from_bits(bits: u32) -> CodecSet {
    let mut set = CodecSet::default().with(Codec::H264);
    if bits != 0 {
        set = CodecSet::default();
        for (bit, codec) in [
            (PF_CODEC_H264, Codec::H264),
            (PF_CODEC_HEVC, Codec::Hevc),
            (PF_CODEC_AV1, Codec::Av1),
        ] {
            if bits & bit != 0 {
                set = set.with(codec);
            }
        }
    }
    set
}

fn codec_bit(c: Codec) -> u32 {
    match c {
        Codec::H264 => PF_CODEC_H264,
        Codec::Hevc => PF_CODEC_HEVC,
        Codec::Av1 => PF_CODEC_AV1,
        _ => 0,
    }
}

pub(crate) fn frame_info(size: usize, m: &FrameMeta) -> PfFrameInfo {
    let flag = |b: bool, f: u32| if b { f } else { 0 };
    PfFrameInfo {
        struct_size: FRAME_V1 as u32,
        flags: flag(m.keyframe, PF_FRAME_KEYFRAME)
            | flag(m.new_mode, PF_FRAME_NEW_MODE)
            | flag(m.discontinuity, PF_FRAME_DISCONTINUITY)
            | flag(m.recovered_shards > 0, PF_FRAME_RECOVERED),
        size: size as u64,
        frame_id: m.frame_id,
        mode_id: u32::from(m.mode_id),
        recovered_shards: m.recovered_shards,
        reserved0: 0,
        capture_us: m.capture_us,
        received_us: m.received_us,
    }
}

/// An all-zero event with its `struct_size`.
pub(crate) fn blank_event() -> PfEvent {
    // SAFETY: PfEvent is plain data; all-zero is a valid value of every field.
    let mut out: PfEvent = unsafe { std::mem::zeroed() };
    out.struct_size = EVENT_V1 as u32;
    out
}

pub(crate) fn event(ev: &CoreEvent) -> PfEvent {
    let mut out = blank_event();
    let mode = |out: &mut PfEvent, m: Mode| {
        out.width = m.width;
        out.height = m.height;
        out.fps = m.fps;
    };
    match ev {
        CoreEvent::Connected { fingerprint, trust } => {
            out.kind = PF_EVENT_CONNECTED;
            out.fingerprint = fingerprint.0;
            out.trust = match trust {
                HostTrust::FirstUse => PF_TRUST_FIRST_USE,
                HostTrust::Pinned => PF_TRUST_PINNED,
                HostTrust::Changed { .. } => PF_TRUST_CHANGED,
            };
        }
        CoreEvent::PinNeeded { digits } => {
            out.kind = PF_EVENT_PIN_NEEDED;
            out.pin_digits = u32::from(*digits);
        }
        CoreEvent::Paired { ok } => {
            out.kind = PF_EVENT_PAIRED;
            out.ok = u32::from(*ok);
        }
        CoreEvent::Started {
            session_id,
            mode: m,
            codec,
            parity_percent,
        } => {
            out.kind = PF_EVENT_STARTED;
            out.session_id = *session_id;
            mode(&mut out, *m);
            out.codec = codec_bit(*codec);
            out.parity_percent = u16::from(*parity_percent);
        }
        CoreEvent::Reconfigured(r) => {
            out.kind = PF_EVENT_RECONFIGURED;
            mode(&mut out, r.mode);
            out.epoch = r.epoch;
            out.first_frame_id = r.first_frame_id;
        }
        CoreEvent::FramesLost { first, count } => {
            out.kind = PF_EVENT_FRAMES_LOST;
            out.first_frame_id = *first;
            out.count = *count;
        }
        CoreEvent::Closed {
            by_peer,
            reason,
            text,
        } => {
            out.kind = PF_EVENT_CLOSED;
            out.reason = u32::from(reason.code());
            out.by_peer = u32::from(*by_peer);
            // Cut at a character boundary, leaving room for the NUL.
            let mut end = text.len().min(out.text.len() - 1);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            for (d, s) in out.text.iter_mut().zip(&text.as_bytes()[..end]) {
                *d = *s as c_char;
            }
        }
    }
    out
}

pub(crate) fn input_event(i: &PfInput) -> Result<InputEvent, String> {
    let narrow = |v: i32, what: &str| {
        i16::try_from(v).map_err(|_| format!("{what} {v} is outside -32768..=32767"))
    };
    let rotation = |v: i32| u16::try_from(v).ok();
    let phase = || TouchKind::from_wire(i.phase).map_err(|e| e.to_string());
    Ok(match i.kind {
        PF_INPUT_KEY => InputEvent::Key {
            down: i.down != 0,
            code: i.code,
            modifiers: Modifiers(i.modifiers),
            flags: 0,
        },
        PF_INPUT_MOUSE_MOVE => InputEvent::MouseMove {
            dx: narrow(i.x, "dx")?,
            dy: narrow(i.y, "dy")?,
        },
        PF_INPUT_MOUSE_POSITION => InputEvent::MouseAbsolute {
            x: narrow(i.x, "x")?,
            y: narrow(i.y, "y")?,
            // The wire carries the reference size minus one.
            width: narrow(i.ref_width.saturating_sub(1), "ref_width")?,
            height: narrow(i.ref_height.saturating_sub(1), "ref_height")?,
        },
        PF_INPUT_MOUSE_BUTTON => InputEvent::MouseButton {
            down: i.down != 0,
            button: MouseButton::from_wire(i.button).map_err(|e| e.to_string())?,
        },
        PF_INPUT_SCROLL => InputEvent::Scroll {
            amount: narrow(i.y, "scroll")?,
        },
        PF_INPUT_HSCROLL => InputEvent::HScroll {
            amount: narrow(i.x, "scroll")?,
        },
        PF_INPUT_TEXT => {
            let bytes = i
                .text
                .get(..i.text_len as usize)
                .ok_or("text_len is over 32")?;
            let s = std::str::from_utf8(bytes).map_err(|_| "text is not UTF-8")?;
            InputEvent::Text(Utf8Text::new(s).ok_or("text is empty")?)
        }
        PF_INPUT_TOUCH => InputEvent::Touch(TouchEvent {
            kind: phase()?,
            pointer_id: i.pointer_id,
            rotation: rotation(i.rotation),
            x: i.fx,
            y: i.fy,
            pressure_or_distance: i.pressure,
            contact_major: i.contact_major,
            contact_minor: i.contact_minor,
        }),
        PF_INPUT_PEN => InputEvent::Pen(PenEvent {
            kind: phase()?,
            tool: PenTool::from_wire(i.tool).map_err(|e| e.to_string())?,
            buttons: i.pen_buttons,
            x: i.fx,
            y: i.fy,
            pressure_or_distance: i.pressure,
            rotation: rotation(i.rotation),
            tilt: u8::try_from(i.tilt).ok(),
            contact_major: i.contact_major,
            contact_minor: i.contact_minor,
        }),
        PF_INPUT_GAMEPAD => {
            if i.pad >= 16 {
                return Err(format!("pad {} is not 0..16", i.pad));
            }
            InputEvent::Gamepad(GamepadState {
                number: i.pad,
                active_mask: u16::try_from(i.active_mask)
                    .map_err(|_| "active_mask has bits over 15")?,
                buttons: i.buttons,
                lt: i.lt,
                rt: i.rt,
                lsx: i.lsx,
                lsy: i.lsy,
                rsx: i.rsx,
                rsy: i.rsy,
            })
        }
        k => return Err(format!("unknown input kind {k}")),
    })
}

fn timeout(ms: u32) -> Duration {
    Duration::from_millis(u64::from(ms))
}

/// The ABI version this library implements: `PF_ABI_MAJOR << 16 | PF_ABI_MINOR`. A client
/// checks the major equals the header's and the minor is at least the header's. Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn punktfunk_abi_version() -> u32 {
    (PF_ABI_MAJOR << 16) | PF_ABI_MINOR
}

/// A static English description of a `PF_*` result code (never null, never to be freed).
/// Thread-safe.
#[unsafe(no_mangle)]
pub extern "C" fn punktfunk_error_name(code: i32) -> *const c_char {
    let s: &'static CStr = match code {
        PF_OK => c"ok",
        PF_ERR_INVALID_ARGUMENT => c"invalid argument",
        PF_ERR_STRUCT_SIZE => c"struct_size too small",
        PF_ERR_STATE => c"state directory error",
        PF_ERR_RESOLVE => c"host name does not resolve",
        PF_ERR_NETWORK => c"network error",
        PF_ERR_TIMEOUT => c"timed out",
        PF_ERR_CLOSED => c"session closed",
        PF_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        PF_ERR_INTERNAL => c"internal error",
        crate::abi_sansio::PF_ERR_REJECTED => c"datagram rejected",
        _ => c"unknown result code",
    };
    s.as_ptr()
}

/// Copies the message of the last failure on the calling thread into `buf` (`cap` bytes,
/// NUL-terminated, cut to fit). Returns the message's full length in bytes (without the NUL);
/// 0 if no call on this thread has failed. `buf` may be null when `cap` is 0. Thread-safe
/// (each thread has its own message).
///
/// # Safety
/// `buf` is null or points to `cap` writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_last_error_message(buf: *mut c_char, cap: usize) -> usize {
    LAST_ERROR.with(|e| {
        let e = e.borrow();
        if !buf.is_null() && cap > 0 {
            let n = e.len().min(cap - 1);
            // SAFETY: n + 1 ≤ cap bytes into the caller's buffer.
            unsafe {
                std::ptr::copy_nonoverlapping(e.as_ptr().cast::<c_char>(), buf, n);
                buf.add(n).write(0);
            }
        }
        e.len()
    })
}

/// Loads this client's identity from `state_dir`, creating it on first use, and writes its
/// certificate's SHA-256 (what the host lists once paired) into `fingerprint_out` (32 bytes).
/// Thread-safe.
///
/// # Safety
/// `state_dir` is a NUL-terminated string; `fingerprint_out` points to 32 writable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_identity_fingerprint(
    state_dir: *const c_char,
    fingerprint_out: *mut u8,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let dir = match unsafe { opt_str(state_dir, "state_dir") } {
            Ok(Some(d)) => d,
            Ok(None) => return fail(PF_ERR_INVALID_ARGUMENT, "state_dir is null"),
            Err(code) => return code,
        };
        if fingerprint_out.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "fingerprint_out is null");
        }
        match identity_fingerprint(std::path::Path::new(dir)) {
            Ok(fp) => {
                // SAFETY: 32 writable bytes, the caller's promise.
                unsafe { std::ptr::copy_nonoverlapping(fp.0.as_ptr(), fingerprint_out, 32) };
                PF_OK
            }
            Err(e) => core_err(&e),
        }
    })
}

/// Starts connecting to a host and returns at once with a handle in `*out` (progress comes
/// as events). The config and its strings are read during the call only. Thread-safe.
///
/// # Safety
/// `config` points to a `PfClientConfig` of at least its `struct_size` bytes whose pointers
/// are null or valid as documented; `out` points to writable storage for a pointer.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_connect(
    config: *const PfClientConfig,
    out: *mut *mut PfClient,
) -> i32 {
    guard(|| {
        if out.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "out is null");
        }
        // SAFETY: the caller's promise.
        let config = match unsafe { core_config(config, true) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        match Core::connect(config) {
            Ok(core) => {
                // SAFETY: `out` is writable, checked non-null above.
                unsafe { out.write(Box::into_raw(Box::new(PfClient { core }))) };
                PF_OK
            }
            Err(e) => core_err(&e),
        }
    })
}

/// Takes the next event into `*event` (set its `struct_size` first), waiting up to
/// `timeout_ms`. `PF_ERR_TIMEOUT`: none yet; `PF_ERR_CLOSED`: the session ended and its
/// `PF_EVENT_CLOSED` was taken already. Thread-safe (each event goes to one caller).
///
/// # Safety
/// `client` is a live handle; `event` points to a `PfEvent` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_poll_event(
    client: *mut PfClient,
    event: *mut PfEvent,
    timeout_ms: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let core = match unsafe { core_of(client) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        if event.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "event is null");
        }
        match core.poll_event(timeout(timeout_ms)) {
            // SAFETY: the caller's promise.
            Ok(ev) => unsafe { reply(event, EVENT_V1, &self::event(&ev), PF_OK) },
            Err(e) => core_err(&e),
        }
    })
}

/// Answers `PF_EVENT_PIN_NEEDED` with the PIN the host's operator shows (digits, UTF-8).
/// Thread-safe.
///
/// # Safety
/// `client` is a live handle; `pin` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_pair(client: *mut PfClient, pin: *const c_char) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let (core, pin) = match unsafe { (core_of(client), opt_str(pin, "pin")) } {
            (Ok(c), Ok(Some(p))) => (c, p),
            (Err(code), _) | (_, Err(code)) => return code,
            (_, Ok(None)) => return fail(PF_ERR_INVALID_ARGUMENT, "pin is null"),
        };
        match Pin::parse(pin) {
            Ok(p) => core.pair(p).map_or_else(|e| core_err(&e), |()| PF_OK),
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, format!("pin: {e}")),
        }
    })
}

/// Asks the host for another mode mid-stream; `PF_EVENT_RECONFIGURED` follows and the first
/// frame of the new mode carries `PF_FRAME_NEW_MODE`. Thread-safe.
///
/// # Safety
/// `client` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_request_mode(
    client: *mut PfClient,
    width: u16,
    height: u16,
    fps: u16,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let core = match unsafe { core_of(client) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        if width == 0 || height == 0 || fps == 0 {
            return fail(PF_ERR_INVALID_ARGUMENT, "mode fields must be non-zero");
        }
        core.request_mode(Mode::new(width, height, fps))
            .map_or_else(|e| core_err(&e), |()| PF_OK)
    })
}

/// Asks the host for a keyframe (after `PF_FRAME_DISCONTINUITY`, or a decoder error).
/// Thread-safe.
///
/// # Safety
/// `client` is a live handle.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_request_keyframe(client: *mut PfClient) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { core_of(client) } {
            Ok(core) => core
                .request_keyframe()
                .map_or_else(|e| core_err(&e), |()| PF_OK),
            Err(code) => code,
        }
    })
}

/// Copies the next access unit (Annex-B for H.264/HEVC, OBUs for AV1) into the caller's
/// `buf` of `cap` bytes, waiting up to `timeout_ms`; `*info` (set its `struct_size` first)
/// gets its size and metadata. `PF_ERR_BUFFER_TOO_SMALL`: `info->size` is the size needed, the
/// frame stays queued. No allocation per frame. Thread-safe; frames go to one caller each.
/// Returns `PF_ERR_CLOSED` once the session ended and the queue is empty.
///
/// # Safety
/// `client` is a live handle; `buf` points to `cap` writable bytes (or is null with `cap`
/// 0); `info` points to a `PfFrameInfo` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_next_frame(
    client: *mut PfClient,
    buf: *mut u8,
    cap: usize,
    info: *mut PfFrameInfo,
    timeout_ms: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let core = match unsafe { core_of(client) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        if info.is_null() || (buf.is_null() && cap > 0) {
            return fail(PF_ERR_INVALID_ARGUMENT, "info or buf is null");
        }
        let out: &mut [u8] = if cap == 0 {
            &mut []
        } else {
            // SAFETY: `cap` writable bytes, the caller's promise.
            unsafe { std::slice::from_raw_parts_mut(buf, cap) }
        };
        let (code, value) = match core.next_frame(out, timeout(timeout_ms)) {
            Ok((len, meta)) => (PF_OK, frame_info(len, &meta)),
            Err(CoreError::BufferTooSmall { needed }) => (
                fail(
                    PF_ERR_BUFFER_TOO_SMALL,
                    format!("the frame needs {needed} bytes"),
                ),
                PfFrameInfo {
                    size: needed as u64,
                    ..PfFrameInfo::default()
                },
            ),
            Err(e) => return core_err(&e),
        };
        // SAFETY: the caller's promise.
        unsafe { reply(info, FRAME_V1, &value, code) }
    })
}

/// Delivers every later frame to `callback(user, data, len, info)` on the library's receive
/// thread instead of the pull queue; a null `callback` returns to the queue. Frames already
/// queued stay there. `user` is passed through untouched. Thread-safe; the callback may run
/// once more after this returns while a frame is being delivered.
///
/// # Safety
/// `client` is a live handle; `callback` is callable from another thread with `user` until
/// it is replaced or the client is closed.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_set_frame_callback(
    client: *mut PfClient,
    callback: PfFrameCallback,
    user: *mut c_void,
) -> i32 {
    /// The user pointer, moved to the receive thread (the caller vouches for it).
    struct User(*mut c_void);
    // SAFETY: the caller promises `user` may be used from the receive thread.
    unsafe impl Send for User {}
    // SAFETY: as above; the library never dereferences it.
    unsafe impl Sync for User {}
    impl User {
        /// The pointer (a method, so closures capture the whole `User`, not its field).
        fn get(&self) -> *mut c_void {
            self.0
        }
    }
    guard(|| {
        // SAFETY: the caller's promise.
        let core = match unsafe { core_of(client) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        let cb = callback.map(|f| {
            let user = User(user);
            Arc::new(move |data: &[u8], meta: &FrameMeta| {
                let info = frame_info(data.len(), meta);
                // SAFETY: the caller's promise; `data` and `info` outlive the call.
                unsafe { f(user.get(), data.as_ptr(), data.len(), &info) };
            }) as crate::core::FrameCallback
        });
        core.set_frame_callback(cb);
        PF_OK
    })
}

/// Sends one input event to the host (a QUIC datagram; input may be dropped under congestion,
/// like any datagram). Thread-safe.
///
/// # Safety
/// `client` is a live handle; `input` points to a `PfInput` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_send_input(
    client: *mut PfClient,
    input: *const PfInput,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let (core, i) = match unsafe { (core_of(client), read_sized(input, INPUT_V1)) } {
            (Ok(c), Ok(i)) => (c, i),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        match input_event(&i) {
            Ok(ev) => core
                .send_input(ev)
                .map_or_else(|e| core_err(&e), |()| PF_OK),
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, e),
        }
    })
}

/// Fills `*stats` (set its `struct_size` first) with the session's statistics so far; also
/// after the session closed, until `punktfunk_client_close`. Thread-safe.
///
/// # Safety
/// `client` is a live handle; `stats` points to a `PfStats` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_stats(client: *mut PfClient, stats: *mut PfStats) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let core = match unsafe { core_of(client) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        let s = core.stats();
        let r = &s.receive;
        let value = PfStats {
            struct_size: STATS_V1 as u32,
            reserved0: 0,
            frames_complete: r.frames_complete,
            frames_recovered: r.frames_recovered_by_fec,
            frames_lost: r.frames_unrecoverable,
            frames_dropped: s.frames_dropped,
            keyframes: r.keyframes,
            datagrams: r.datagrams,
            payload_bytes: r.payload_bytes,
            goodput_bps: r.goodput_bps() as u64,
            latency_us_p50: r.latency_quantile(0.5).unwrap_or(-1),
            latency_us_p99: r.latency_quantile(0.99).unwrap_or(-1),
            rtt_us: u64::try_from(s.rtt.as_micros()).unwrap_or(u64::MAX),
            input_sent: s.input_sent,
            mode_switches: r.new_modes.len() as u64,
            key_rotations: r.key_rotations,
            buffers_created: s.buffers_created,
        };
        // SAFETY: the caller's promise.
        unsafe { reply(stats, STATS_V1, &value, PF_OK) }
    })
}

/// Says Goodbye (if the session is still open), waits for it to end (at most about 2 s),
/// stops the receiver and frees the handle. If `stats` is not null it gets the final
/// statistics first. Call it exactly once, when no other thread uses the handle; a null
/// `client` is a no-op.
///
/// # Safety
/// `client` is null or a live handle, not used by any thread during or after the call;
/// `stats` is null or as in `punktfunk_client_stats`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_client_close(client: *mut PfClient, stats: *mut PfStats) -> i32 {
    guard(|| {
        if client.is_null() {
            return PF_OK;
        }
        // SAFETY: the caller hands the handle back; nobody uses it any more.
        let mut c = unsafe { Box::from_raw(client) };
        c.core.shutdown();
        if stats.is_null() {
            return PF_OK;
        }
        let handle: *mut PfClient = &mut *c;
        // SAFETY: `handle` is live until `c` drops below; the caller's promise about `stats`.
        unsafe { punktfunk_client_stats(handle, stats) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// A struct as a newer client compiles it: ours, then fields this library does not know.
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Newer<T: Copy> {
        known: T,
        extra: [u8; 64],
    }

    #[test]
    fn a_newer_clients_larger_config_is_read_up_to_what_we_know() {
        let host = c"no-such-host.invalid";
        let dir = std::env::temp_dir().join(format!("pf-abi-{}", std::process::id()));
        let dir_c = std::ffi::CString::new(dir.to_string_lossy().as_bytes()).unwrap();
        // SAFETY: all-zero is a valid PfClientConfig.
        let mut c: Newer<PfClientConfig> = unsafe { std::mem::zeroed() };
        c.known.struct_size = size_of::<Newer<PfClientConfig>>() as u32;
        c.known.host = host.as_ptr();
        c.known.state_dir = dir_c.as_ptr();
        c.extra = [0xAB; 64];
        let mut out = std::ptr::null_mut();
        // SAFETY: a valid, larger struct; `out` writable.
        let r = unsafe { punktfunk_client_connect(&c.known, &mut out) };
        assert_eq!(r, PF_ERR_RESOLVE, "the config was accepted and read");
        assert!(out.is_null());
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn output_structs_get_at_most_what_the_caller_has_room_for() {
        let ev = event(&CoreEvent::Paired { ok: true });
        // A newer caller: our bytes written, struct_size says how many, the rest untouched.
        // SAFETY: all-zero is valid.
        let mut big: Newer<PfEvent> = unsafe { std::mem::zeroed() };
        big.known.struct_size = size_of::<Newer<PfEvent>>() as u32;
        big.extra = [0xCD; 64];
        // SAFETY: `big` has its struct_size bytes.
        unsafe { write_sized(&mut big.known, EVENT_V1, &ev) }.unwrap();
        assert_eq!(big.known.struct_size as usize, EVENT_V1);
        assert_eq!((big.known.kind, big.known.ok), (PF_EVENT_PAIRED, 1));
        assert_eq!(big.extra, [0xCD; 64]);
        // An older (smaller) caller is refused without a write.
        // SAFETY: all-zero is valid.
        let mut small: PfEvent = unsafe { std::mem::zeroed() };
        small.struct_size = 8;
        // SAFETY: `small` is a whole PfEvent.
        let r = unsafe { write_sized(&mut small, EVENT_V1, &ev) };
        assert_eq!(r, Err(PF_ERR_STRUCT_SIZE));
        assert_eq!(small.kind, 0);
    }

    #[test]
    fn closed_text_is_cut_at_a_character_boundary_and_terminated() {
        let text = "é".repeat(200); // 400 bytes
        let ev = event(&CoreEvent::Closed {
            by_peer: true,
            reason: punktfunk_control::pf1::GoodbyeReason::Busy,
            text,
        });
        // SAFETY: NUL-terminated by `event`.
        let s = unsafe { CStr::from_ptr(ev.text.as_ptr()) };
        let s = s.to_str().expect("valid UTF-8 after the cut");
        assert_eq!(s.len(), 254, "127 two-byte characters fit 255 bytes");
        assert_eq!((ev.reason, ev.by_peer), (5, 1));
    }

    #[test]
    fn null_handles_are_errors_not_crashes() {
        let mut ev = event(&CoreEvent::Paired { ok: true });
        // SAFETY: null handles are what is tested; the structs are valid.
        unsafe {
            assert_eq!(
                punktfunk_client_poll_event(std::ptr::null_mut(), &mut ev, 0),
                PF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                punktfunk_client_request_keyframe(std::ptr::null_mut()),
                PF_ERR_INVALID_ARGUMENT
            );
            assert_eq!(
                punktfunk_client_close(std::ptr::null_mut(), std::ptr::null_mut()),
                PF_OK
            );
            let mut buf = [0 as c_char; 8];
            let n = punktfunk_last_error_message(buf.as_mut_ptr(), buf.len());
            assert!(n > 7, "a message, cut to the buffer");
            assert_eq!(buf[7], 0);
        }
    }

    proptest! {
        /// Any bytes as a PfInput: an event or an error, never a panic.
        #[test]
        fn any_input_struct_is_an_event_or_an_error(bytes in proptest::collection::vec(any::<u8>(), INPUT_V1), kind in 0u32..12) {
            // SAFETY: PfInput is plain data; any bit pattern of its integer and float fields
            // is valid.
            let mut i: PfInput = unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast()) };
            i.kind = kind;
            let _ = input_event(&i);
        }
    }
}
