//! The sans-IO half of the C ABI (in `punktfunk_core.h` with the rest): for applications that
//! own their sockets and clock (sandboxed platforms, their own event loops, custom
//! transports). Two objects, each a thin face on a sans-IO state machine of the core:
//!
//! ```text
//!  PfSession  (control::pf1::ClientSession, QUIC)     PfReceiver (engine Pf1Receiver, data plane)
//!   handle_datagram(now, from, bytes) ◄── control socket   handle_datagram(now, bytes) ◄── data socket
//!   poll_transmit(now) ──► (bytes, to) ──► control socket   next_frame(buf) ──► access units
//!   poll_timeout / handle_timeout                           poll_timeout / handle_timeout
//!   poll_event: … WELCOME → start(data port) → STARTED(key) ─► receiver_new(key)
//!                  KEY_UPDATE(g, key) ─► receiver_install_key ─► session_key_installed(g)
//!   send_loss_report ◄── receiver_take_loss_report (every ~100 ms)
//! ```
//!
//! Time is the caller's monotonic clock in microseconds (`now_us`, e.g. `CLOCK_MONOTONIC`);
//! it must not go backwards. Nothing here blocks, opens a socket or starts a thread. Host
//! pinning is the caller's: `expect_host_fingerprint` or trust on first use (the
//! `PF_EVENT_CONNECTED` fingerprint is the one to store); the state directory only holds the
//! identity. Same rules as the rest of the ABI (docs/client-abi.md); neither object is
//! thread-safe: one thread at a time per object.

use std::ffi::c_char;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::{Duration, Instant};

use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::message::LossReport;
use punktfunk_control::pf1::{ClientEvent, ClientSession, GoodbyeReason, Mode, Pin};
use punktfunk_engine::pf1::{
    DataKey, KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, ReceivedFrame,
};

use crate::abi::{
    self, PF_ERR_BUFFER_TOO_SMALL, PF_ERR_CLOSED, PF_ERR_INVALID_ARGUMENT, PF_ERR_TIMEOUT, PF_OK,
    PfClientConfig, PfEvent, PfFrameInfo, PfInput, fail, guard, opt_str, read_sized, reply,
};
use crate::core::{CoreError, CoreEvent};
use crate::queue::FrameMeta;

/// A datagram refused by the data-plane receiver (authentication, replay, malformed): counted
/// by the receiver, nothing for the caller to do.
pub const PF_ERR_REJECTED: i32 = -10;

/// Event (sans-IO session only): the host granted a session; bind the data-plane socket and
/// call `punktfunk_session_start` with its port.
pub const PF_EVENT_WELCOME: u32 = 8;
/// Event (sans-IO session only): the host proposes data-plane key generation `key_generation`
/// (`key_material`): install it with `punktfunk_receiver_install_key`, then acknowledge with
/// `punktfunk_session_key_installed`.
pub const PF_EVENT_KEY_UPDATE: u32 = 9;

/// A UDP address.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PfSockAddr {
    /// 4 or 6.
    pub family: u8,
    /// Reserved, zero.
    pub reserved0: u8,
    /// Port, host byte order.
    pub port: u16,
    /// IPv4 in the first 4 bytes, or IPv6, network byte order.
    pub addr: [u8; 16],
}

impl PfSockAddr {
    fn to_std(self) -> Option<SocketAddr> {
        let ip = match self.family {
            4 => IpAddr::V4(Ipv4Addr::new(
                self.addr[0],
                self.addr[1],
                self.addr[2],
                self.addr[3],
            )),
            6 => IpAddr::V6(Ipv6Addr::from(self.addr)),
            _ => return None,
        };
        Some(SocketAddr::new(ip, self.port))
    }

    fn from_std(a: SocketAddr) -> Self {
        let mut out = Self {
            port: a.port(),
            ..Self::default()
        };
        match a.ip() {
            IpAddr::V4(v4) => {
                out.family = 4;
                out.addr[..4].copy_from_slice(&v4.octets());
            }
            IpAddr::V6(v6) => {
                out.family = 6;
                out.addr = v6.octets();
            }
        }
        out
    }
}

/// A loss report for the host (`punktfunk_receiver_take_loss_report` →
/// `punktfunk_session_send_loss_report`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
pub struct PfLossReport {
    /// In: `sizeof(PfLossReport)` as the caller compiled it. Out: the bytes written.
    pub struct_size: u32,
    /// The report's sequence number (the receiver counts).
    pub window_id: u32,
    /// Datagrams the host sent in the window.
    pub expected: u32,
    /// Datagrams that arrived.
    pub received: u32,
    /// Frames delivered in the window.
    pub frames_complete: u32,
    /// Frames lost for good in the window.
    pub frames_unrecoverable: u32,
}

/// Maps the caller's microseconds to `Instant`s and back.
#[derive(Debug, Clone, Copy)]
struct Clock {
    epoch: Instant,
    base_us: u64,
}

impl Clock {
    fn new(now_us: u64) -> Self {
        Self {
            epoch: Instant::now(),
            base_us: now_us,
        }
    }
    fn at(&self, us: u64) -> Instant {
        self.epoch + Duration::from_micros(us.saturating_sub(self.base_us))
    }
    fn us(&self, t: Instant) -> u64 {
        self.base_us.saturating_add(
            u64::try_from(t.saturating_duration_since(self.epoch).as_micros()).unwrap_or(u64::MAX),
        )
    }
}

/// A sans-IO punktfunk/1 control session.
pub struct PfSession {
    session: ClientSession,
    clock: Clock,
    scratch: Vec<u8>,
}

/// A sans-IO punktfunk/1 data-plane receiver.
pub struct PfReceiver {
    rx: Pf1Receiver,
    clock: Clock,
    /// A frame that did not fit the caller's buffer.
    pending: Option<ReceivedFrame>,
    gap: bool,
    window: u32,
    complete_since_report: u32,
}

const LOSS_V1: usize = size_of::<PfLossReport>();
const EVENT_V1: usize = size_of::<PfEvent>();
const FRAME_V1: usize = size_of::<PfFrameInfo>();

fn session_event(ev: ClientEvent) -> Option<PfEvent> {
    let core = match ev {
        ClientEvent::Connected { fingerprint, trust } => {
            CoreEvent::Connected { fingerprint, trust }
        }
        ClientEvent::PinNeeded { digits } => CoreEvent::PinNeeded { digits },
        ClientEvent::PairingResult { ok } => CoreEvent::Paired { ok },
        ClientEvent::Reconfigured(r) => CoreEvent::Reconfigured(r),
        ClientEvent::Closed(c) => CoreEvent::Closed {
            by_peer: c.by_peer,
            reason: c.reason,
            text: c.text,
        },
        ClientEvent::Welcome(p) => {
            let mut out = abi::blank_event();
            out.kind = PF_EVENT_WELCOME;
            out.width = p.mode.width;
            out.height = p.mode.height;
            out.fps = p.mode.fps;
            out.host_data_port = p.host_data_port;
            return Some(out);
        }
        ClientEvent::KeyUpdate {
            generation,
            key_material,
        } => {
            let mut out = abi::blank_event();
            out.kind = PF_EVENT_KEY_UPDATE;
            out.key_generation = generation;
            out.key_material = key_material.0;
            return Some(out);
        }
        // The host's statistics are not in the ABI.
        _ => return None,
    };
    Some(abi::event(&core))
}

/// The data key in the first bytes of 32 bytes of exported key material.
///
/// # Safety
/// `p` points to at least `KEY_MATERIAL_LEN` readable bytes.
unsafe fn key_from(p: *const u8) -> [u8; KEY_MATERIAL_LEN] {
    let mut m = [0u8; KEY_MATERIAL_LEN];
    // SAFETY: the caller's promise.
    unsafe { std::ptr::copy_nonoverlapping(p, m.as_mut_ptr(), KEY_MATERIAL_LEN) };
    m
}

/// # Safety
/// `s` is null or a live session.
unsafe fn session_mut<'a>(s: *mut PfSession) -> Result<&'a mut PfSession, i32> {
    // SAFETY: the caller's promise; one thread at a time per session.
    unsafe { s.as_mut() }.ok_or_else(|| fail(PF_ERR_INVALID_ARGUMENT, "null session"))
}

/// # Safety
/// `r` is null or a live receiver.
unsafe fn receiver_mut<'a>(r: *mut PfReceiver) -> Result<&'a mut PfReceiver, i32> {
    // SAFETY: the caller's promise; one thread at a time per receiver.
    unsafe { r.as_mut() }.ok_or_else(|| fail(PF_ERR_INVALID_ARGUMENT, "null receiver"))
}

fn ok_or(r: Result<(), punktfunk_control::pf1::SessionError>) -> i32 {
    match r {
        Ok(()) => PF_OK,
        Err(e) => fail(PF_ERR_CLOSED, e.to_string()),
    }
}

/// Creates a sans-IO session connecting to `host` (an address: resolving names is the
/// caller's), with the identity from `config->state_dir` and pin `config->expect_host_fingerprint`
/// (else first use). `config->host` is ignored. Free with `punktfunk_session_free`.
///
/// # Safety
/// As `punktfunk_client_connect` for `config`; `host` points to a `PfSockAddr`; `out` is
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_new(
    config: *const PfClientConfig,
    host: *const PfSockAddr,
    now_us: u64,
    out: *mut *mut PfSession,
) -> i32 {
    guard(|| {
        if out.is_null() || host.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "out or host is null");
        }
        // SAFETY: the caller's promise.
        let Some(addr) = unsafe { host.read_unaligned() }.to_std() else {
            return fail(PF_ERR_INVALID_ARGUMENT, "host family is not 4 or 6");
        };
        // SAFETY: the caller's promise.
        let config = match unsafe { abi::core_config(config, false) } {
            Ok(c) => c,
            Err(code) => return code,
        };
        let cc = match StateDir::open(config.state_dir.clone())
            .map_err(CoreError::from)
            .and_then(|state| config.session_config(&state, None))
        {
            Ok(cc) => cc,
            Err(e) => return abi::core_err(&e),
        };
        let clock = Clock::new(now_us);
        match ClientSession::connect(cc, clock.at(now_us), addr) {
            Ok(session) => {
                let s = Box::new(PfSession {
                    session,
                    clock,
                    scratch: Vec::with_capacity(2048),
                });
                // SAFETY: checked non-null.
                unsafe { out.write(Box::into_raw(s)) };
                PF_OK
            }
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, e.to_string()),
        }
    })
}

/// Feeds a datagram that arrived on the control socket from `from`.
///
/// # Safety
/// `session` is live; `from` points to a `PfSockAddr`; `data` to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_handle_datagram(
    session: *mut PfSession,
    now_us: u64,
    from: *const PfSockAddr,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if from.is_null() || (data.is_null() && len > 0) {
            return fail(PF_ERR_INVALID_ARGUMENT, "from or data is null");
        }
        // SAFETY: the caller's promise.
        let Some(from) = unsafe { from.read_unaligned() }.to_std() else {
            return fail(PF_ERR_INVALID_ARGUMENT, "from family is not 4 or 6");
        };
        let bytes = if len == 0 {
            &[][..]
        } else {
            // SAFETY: `len` readable bytes, the caller's promise.
            unsafe { std::slice::from_raw_parts(data, len) }
        };
        let now = s.clock.at(now_us);
        s.session.handle_datagram(now, from, bytes);
        PF_OK
    })
}

/// The next datagram to send on the control socket: written to `buf` (`cap` bytes; 1500 is
/// enough), its length to `*len` and its destination to `*to`. `PF_ERR_TIMEOUT`: nothing to
/// send now. Call until it says so after every other session call.
///
/// # Safety
/// `session` is live; `buf` has `cap` writable bytes; `len`, `to` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_poll_transmit(
    session: *mut PfSession,
    now_us: u64,
    buf: *mut u8,
    cap: usize,
    len: *mut usize,
    to: *mut PfSockAddr,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if buf.is_null() || len.is_null() || to.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "buf, len or to is null");
        }
        let now = s.clock.at(now_us);
        let Some(t) = s.session.poll_transmit(now, &mut s.scratch) else {
            return PF_ERR_TIMEOUT;
        };
        let Some(bytes) = s.scratch.get(..t.size) else {
            return PF_ERR_TIMEOUT;
        };
        if bytes.len() > cap {
            // The datagram is lost (QUIC retransmits); say why.
            return fail(
                PF_ERR_BUFFER_TOO_SMALL,
                format!("a {}-byte datagram does not fit {cap} bytes", bytes.len()),
            );
        }
        // SAFETY: `bytes.len() <= cap` writable bytes; `len`, `to` writable.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), buf, bytes.len());
            len.write(bytes.len());
            to.write(PfSockAddr::from_std(t.destination));
        }
        PF_OK
    })
}

/// When `punktfunk_session_handle_timeout` is due, in the caller's µs. `PF_ERR_TIMEOUT`: no
/// deadline; `PF_ERR_CLOSED`: the session closed and has nothing more to send (free it).
///
/// # Safety
/// `session` is live; `deadline_us` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_poll_timeout(
    session: *mut PfSession,
    deadline_us: *mut u64,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if deadline_us.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "deadline_us is null");
        }
        if s.session.is_closed() && s.session.is_drained() {
            return PF_ERR_CLOSED;
        }
        match s.session.poll_timeout() {
            Some(t) => {
                // SAFETY: writable, checked non-null.
                unsafe { deadline_us.write(s.clock.us(t)) };
                PF_OK
            }
            None => PF_ERR_TIMEOUT,
        }
    })
}

/// Tells the session its deadline passed.
///
/// # Safety
/// `session` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_handle_timeout(
    session: *mut PfSession,
    now_us: u64,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { session_mut(session) } {
            Ok(s) => {
                let now = s.clock.at(now_us);
                s.session.handle_timeout(now);
                PF_OK
            }
            Err(code) => code,
        }
    })
}

/// The next event (as `punktfunk_client_poll_event`, plus `PF_EVENT_WELCOME` and
/// `PF_EVENT_KEY_UPDATE`); `PF_ERR_TIMEOUT`: none now.
///
/// # Safety
/// `session` is live; `event` points to a `PfEvent` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_poll_event(
    session: *mut PfSession,
    event: *mut PfEvent,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if event.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "event is null");
        }
        while let Some(ev) = s.session.poll_event() {
            if let Some(out) = session_event(ev) {
                // SAFETY: the caller's promise.
                return unsafe { reply(event, EVENT_V1, &out, PF_OK) };
            }
        }
        PF_ERR_TIMEOUT
    })
}

/// Answers `PF_EVENT_WELCOME`: announces the data-plane port and fills `*started` with the
/// `PF_EVENT_STARTED` event, which carries the data key (`key_material`, `key_generation`)
/// for `punktfunk_receiver_new` and the host's data port (`host_data_port`).
///
/// # Safety
/// `session` is live; `started` points to a `PfEvent` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_start(
    session: *mut PfSession,
    data_port: u16,
    started: *mut PfEvent,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if started.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "started is null");
        }
        match s.session.start(data_port) {
            Ok(p) => {
                let mut out = abi::event(&CoreEvent::Started {
                    session_id: p.session_id,
                    mode: p.mode,
                    codec: p.codec,
                    parity_percent: p.parity_percent,
                });
                out.key_generation = p.key_epoch;
                out.key_material = p.key_material;
                out.host_data_port = p.host_data_port;
                // SAFETY: the caller's promise.
                unsafe { reply(started, EVENT_V1, &out, PF_OK) }
            }
            Err(e) => fail(PF_ERR_CLOSED, e.to_string()),
        }
    })
}

/// Answers `PF_EVENT_PIN_NEEDED`.
///
/// # Safety
/// `session` is live; `pin` a NUL-terminated string.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_pair(
    session: *mut PfSession,
    pin: *const c_char,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let (s, pin) = match unsafe { (session_mut(session), opt_str(pin, "pin")) } {
            (Ok(s), Ok(Some(p))) => (s, p),
            (Err(code), _) | (_, Err(code)) => return code,
            (_, Ok(None)) => return fail(PF_ERR_INVALID_ARGUMENT, "pin is null"),
        };
        match Pin::parse(pin) {
            Ok(p) => ok_or(s.session.pair(p)),
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, format!("pin: {e}")),
        }
    })
}

/// Asks for another mode (renegotiation).
///
/// # Safety
/// `session` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_request_mode(
    session: *mut PfSession,
    width: u16,
    height: u16,
    fps: u16,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let s = match unsafe { session_mut(session) } {
            Ok(s) => s,
            Err(code) => return code,
        };
        if width == 0 || height == 0 || fps == 0 {
            return fail(PF_ERR_INVALID_ARGUMENT, "mode fields must be non-zero");
        }
        ok_or(s.session.request_reconfigure(Mode::new(width, height, fps)))
    })
}

/// Asks for a keyframe.
///
/// # Safety
/// `session` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_request_keyframe(session: *mut PfSession) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { session_mut(session) } {
            Ok(s) => ok_or(s.session.request_idr()),
            Err(code) => code,
        }
    })
}

/// Sends one input event (a QUIC datagram, sent by the next `poll_transmit`).
///
/// # Safety
/// `session` is live; `input` points to a `PfInput` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_send_input(
    session: *mut PfSession,
    input: *const PfInput,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let (s, i) = match unsafe {
            (
                session_mut(session),
                read_sized(input, size_of::<PfInput>()),
            )
        } {
            (Ok(s), Ok(i)) => (s, i),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        match abi::input_event(&i) {
            Ok(ev) => ok_or(s.session.send_input(&ev)),
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, e),
        }
    })
}

/// Acknowledges `PF_EVENT_KEY_UPDATE` once the receiver holds the new key.
///
/// # Safety
/// `session` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_key_installed(
    session: *mut PfSession,
    generation: u32,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { session_mut(session) } {
            Ok(s) => ok_or(s.session.key_installed(generation)),
            Err(code) => code,
        }
    })
}

/// Sends a receiver's loss report to the host (drives its adaptive FEC).
///
/// # Safety
/// `session` is live; `report` points to a `PfLossReport` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_send_loss_report(
    session: *mut PfSession,
    report: *const PfLossReport,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let (s, r) = match unsafe { (session_mut(session), read_sized(report, LOSS_V1)) } {
            (Ok(s), Ok(r)) => (s, r),
            (Err(code), _) | (_, Err(code)) => return code,
        };
        ok_or(s.session.send_loss_report(LossReport {
            window_id: r.window_id,
            expected: r.expected,
            received: r.received,
            frames_complete: r.frames_complete,
            frames_unrecoverable: r.frames_unrecoverable,
        }))
    })
}

/// Says Goodbye; keep polling transmits and timeouts until `poll_timeout` says
/// `PF_ERR_CLOSED` (or a second or two), then free.
///
/// # Safety
/// `session` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_goodbye(session: *mut PfSession, now_us: u64) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { session_mut(session) } {
            Ok(s) => {
                let now = s.clock.at(now_us);
                s.session
                    .goodbye(now, GoodbyeReason::Normal, "client closing");
                PF_OK
            }
            Err(code) => code,
        }
    })
}

/// Frees a session (null: no-op).
///
/// # Safety
/// `session` is null or live, and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_session_free(session: *mut PfSession) {
    if !session.is_null() {
        // SAFETY: handed back once.
        drop(unsafe { Box::from_raw(session) });
    }
}

/// Creates a data-plane receiver with the key of `PF_EVENT_STARTED` (`key_material`, 32
/// bytes). Free with `punktfunk_receiver_free`.
///
/// # Safety
/// `key_material` points to 32 readable bytes; `out` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_new(
    key_material: *const u8,
    now_us: u64,
    out: *mut *mut PfReceiver,
) -> i32 {
    guard(|| {
        if key_material.is_null() || out.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "key_material or out is null");
        }
        // SAFETY: the caller's promise.
        let m = unsafe { key_from(key_material) };
        match Pf1Receiver::new(Pf1ReceiverConfig::default(), DataKey::from_key_material(&m)) {
            Ok(rx) => {
                let r = Box::new(PfReceiver {
                    rx,
                    clock: Clock::new(now_us),
                    pending: None,
                    gap: false,
                    window: 0,
                    complete_since_report: 0,
                });
                // SAFETY: checked non-null.
                unsafe { out.write(Box::into_raw(r)) };
                PF_OK
            }
            Err(e) => fail(PF_ERR_INVALID_ARGUMENT, e.to_string()),
        }
    })
}

/// Installs key generation `generation` (`PF_EVENT_KEY_UPDATE`) beside the one in use.
///
/// # Safety
/// `receiver` is live; `key_material` points to 32 readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_install_key(
    receiver: *mut PfReceiver,
    generation: u32,
    key_material: *const u8,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let r = match unsafe { receiver_mut(receiver) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        if key_material.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "key_material is null");
        }
        // SAFETY: the caller's promise.
        let m = unsafe { key_from(key_material) };
        r.rx.install_key(DataKey::from_key_material(&m).with_generation(generation));
        PF_OK
    })
}

/// Feeds a datagram from the data socket. `PF_ERR_REJECTED`: refused (counted; ignore).
///
/// # Safety
/// `receiver` is live; `data` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_handle_datagram(
    receiver: *mut PfReceiver,
    now_us: u64,
    data: *const u8,
    len: usize,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let r = match unsafe { receiver_mut(receiver) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        if data.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "data is null");
        }
        // SAFETY: `len` readable bytes, the caller's promise.
        let bytes = unsafe { std::slice::from_raw_parts(data, len) };
        let now = r.clock.at(now_us);
        match r.rx.handle_datagram(now, bytes) {
            Ok(_) => PF_OK,
            Err(e) => fail(PF_ERR_REJECTED, e.to_string()),
        }
    })
}

/// When `punktfunk_receiver_handle_timeout` is due (frames given up on); `PF_ERR_TIMEOUT`:
/// no deadline.
///
/// # Safety
/// `receiver` is live; `deadline_us` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_poll_timeout(
    receiver: *mut PfReceiver,
    deadline_us: *mut u64,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let r = match unsafe { receiver_mut(receiver) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        if deadline_us.is_null() {
            return fail(PF_ERR_INVALID_ARGUMENT, "deadline_us is null");
        }
        match r.rx.poll_timeout() {
            Some(t) => {
                // SAFETY: writable, checked non-null.
                unsafe { deadline_us.write(r.clock.us(t)) };
                PF_OK
            }
            None => PF_ERR_TIMEOUT,
        }
    })
}

/// Tells the receiver its deadline passed.
///
/// # Safety
/// `receiver` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_handle_timeout(
    receiver: *mut PfReceiver,
    now_us: u64,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        match unsafe { receiver_mut(receiver) } {
            Ok(r) => {
                let now = r.clock.at(now_us);
                r.rx.handle_timeout(now);
                PF_OK
            }
            Err(code) => code,
        }
    })
}

/// Copies the next complete access unit into `buf` (as `punktfunk_client_next_frame`, without
/// waiting): `PF_ERR_TIMEOUT` none now; `PF_ERR_BUFFER_TOO_SMALL` with `info->size`, the
/// frame stays.
///
/// # Safety
/// `receiver` is live; `buf` has `cap` writable bytes (or is null with `cap` 0); `info`
/// points to a `PfFrameInfo` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_next_frame(
    receiver: *mut PfReceiver,
    buf: *mut u8,
    cap: usize,
    info: *mut PfFrameInfo,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let r = match unsafe { receiver_mut(receiver) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        if info.is_null() || (buf.is_null() && cap > 0) {
            return fail(PF_ERR_INVALID_ARGUMENT, "info or buf is null");
        }
        let frame = match r.pending.take() {
            Some(f) => f,
            None => loop {
                match r.rx.poll_event() {
                    Some(Pf1Event::Frame(f)) => break f,
                    Some(Pf1Event::FramesLost { .. }) => r.gap = true,
                    None => return PF_ERR_TIMEOUT,
                }
            },
        };
        let len = frame.data.len();
        let (code, value) = if len > cap {
            r.pending = Some(frame);
            (
                fail(
                    PF_ERR_BUFFER_TOO_SMALL,
                    format!("the frame needs {len} bytes"),
                ),
                PfFrameInfo {
                    size: len as u64,
                    ..PfFrameInfo::default()
                },
            )
        } else {
            let mut meta = FrameMeta::of(&frame, punktfunk_capture::clock::monotonic_us());
            meta.discontinuity = std::mem::take(&mut r.gap);
            // SAFETY: `len ≤ cap` writable bytes.
            unsafe { std::ptr::copy_nonoverlapping(frame.data.as_ptr(), buf, len) };
            r.complete_since_report = r.complete_since_report.saturating_add(1);
            r.rx.recycle(frame.data);
            (PF_OK, abi::frame_info(len, &meta))
        };
        // SAFETY: the caller's promise.
        unsafe { reply(info, FRAME_V1, &value, code) }
    })
}

/// The loss report since the last one (call every ~100 ms and send it with
/// `punktfunk_session_send_loss_report`).
///
/// # Safety
/// `receiver` is live; `report` points to a `PfLossReport` of at least its `struct_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_take_loss_report(
    receiver: *mut PfReceiver,
    report: *mut PfLossReport,
) -> i32 {
    guard(|| {
        // SAFETY: the caller's promise.
        let r = match unsafe { receiver_mut(receiver) } {
            Ok(r) => r,
            Err(code) => return code,
        };
        let l = r.rx.take_loss_report();
        r.window = r.window.wrapping_add(1);
        let value = PfLossReport {
            struct_size: LOSS_V1 as u32,
            window_id: r.window,
            expected: l.expected,
            received: l.received,
            frames_complete: std::mem::take(&mut r.complete_since_report),
            frames_unrecoverable: l.frames_lost,
        };
        // SAFETY: the caller's promise.
        unsafe { reply(report, LOSS_V1, &value, PF_OK) }
    })
}

/// Frees a receiver (null: no-op).
///
/// # Safety
/// `receiver` is null or live, and not used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn punktfunk_receiver_free(receiver: *mut PfReceiver) {
    if !receiver.is_null() {
        // SAFETY: handed back once.
        drop(unsafe { Box::from_raw(receiver) });
    }
}
