//! Input into a wlroots compositor (sway): a virtual keyboard and a virtual pointer bound to
//! one output.
//!
//! ```text
//!  connect: wl_registry ─► wl_seat, zwp_virtual_keyboard_manager_v1,
//!           zwlr_virtual_pointer_manager_v1 (v2), zxdg_output_manager_v1,
//!           wl_output × n ─► zxdg_output_v1.name (or wl_output v4 name) ─► the session's output
//!           create_virtual_keyboard(seat) ─► keymap(XKB_V1, memfd of keymap-us.xkb + NUL)
//!           create_virtual_pointer_with_output(seat, output)
//!  key:     key(time, code, state) [+ modifiers(depressed, latched, locked, group)]
//!  pointer: motion | motion_absolute | button | axis_source + axis (+ axis_discrete) ─► frame
//!  every call: flush (poll(2) for POLLOUT until the deadline while the socket is full), read
//!           and dispatch what the compositor sent (a protocol error or a hang-up is an error)
//! ```
//!
//! Act: a Wayland connection and a memfd; no `unsafe`. Protocols: `virtual-keyboard-unstable-v1`
//! (wayland-protocols-misc), `wlr-virtual-pointer-unstable-v1` v2 (wlr-protocols; the
//! `_with_output` request is what keeps absolute motion on the session's own output, not the
//! whole layout). The keymap is a checked-in US layout (`keymap-us.xkb`, made once with
//! `xkbcli compile-keymap --layout us`, xkbcommon 1.5), so no C library is needed at run time;
//! the modifier masks it implies are computed by [`super::keymods`] (pure).
//!
//! Not here: touch (wlroots has no virtual-touch protocol; the control plane maps one touch to
//! the pointer), pens (no virtual tablet protocol in sway 1.7), key repeat (the compositor
//! repeats held keys itself).

use std::fs::File;
use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use thiserror::Error;
use wayland_client::backend::WaylandError;
use wayland_client::protocol::{
    wl_callback::WlCallback, wl_output::WlOutput, wl_pointer, wl_registry::WlRegistry,
    wl_seat::WlSeat,
};
use wayland_client::{Connection, Dispatch, EventQueue, QueueHandle, delegate_noop};
use wayland_protocols::xdg::xdg_output::zv1::client::{
    zxdg_output_manager_v1::ZxdgOutputManagerV1, zxdg_output_v1, zxdg_output_v1::ZxdgOutputV1,
};
use wayland_protocols_misc::zwp_virtual_keyboard_v1::client::{
    zwp_virtual_keyboard_manager_v1::ZwpVirtualKeyboardManagerV1,
    zwp_virtual_keyboard_v1::ZwpVirtualKeyboardV1,
};
use wayland_protocols_wlr::virtual_pointer::v1::client::{
    zwlr_virtual_pointer_manager_v1::ZwlrVirtualPointerManagerV1,
    zwlr_virtual_pointer_v1::ZwlrVirtualPointerV1,
};

use super::keymods::{ModMasks, ModState};

/// The US keymap sent to the compositor (xkb text v1).
pub const KEYMAP_US: &str = include_str!("keymap-us.xkb");

/// `wl_keyboard.keymap_format.xkb_v1`.
const KEYMAP_FORMAT_XKB_V1: u32 = 1;

/// Injecting input into a wlroots compositor failed.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum WlrInputError {
    /// The socket or the keymap memfd failed.
    #[error("wayland input I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The connection broke or the compositor raised a protocol error (a dead compositor).
    #[error("wayland input protocol: {0}")]
    Protocol(String),
    /// The compositor lacks a global this needs (virtual keyboard, virtual pointer v2, seat).
    #[error("compositor does not support {0}")]
    Unsupported(String),
    /// No output of that name (or it went away).
    #[error("output {0} not found")]
    OutputGone(String),
    /// The compositor did not answer (or take our requests) within the deadline.
    #[error("compositor did not answer within {0:?}")]
    Timeout(Duration),
}

/// Scroll axis (`wl_pointer.axis`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScrollAxis {
    /// Vertical wheel: positive is down (towards the user), as in Wayland.
    Vertical,
    /// Horizontal wheel: positive is right.
    Horizontal,
}

impl ScrollAxis {
    fn wl(self) -> wl_pointer::Axis {
        match self {
            Self::Vertical => wl_pointer::Axis::VerticalScroll,
            Self::Horizontal => wl_pointer::Axis::HorizontalScroll,
        }
    }
}

#[derive(Debug)]
struct OutputEntry {
    global: u32,
    output: WlOutput,
    name: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    seat: Option<WlSeat>,
    keyboard_manager: Option<ZwpVirtualKeyboardManagerV1>,
    pointer_manager: Option<ZwlrVirtualPointerManagerV1>,
    xdg_manager: Option<ZxdgOutputManagerV1>,
    outputs: Vec<OutputEntry>,
    removed_globals: Vec<u32>,
    synced: bool,
}

impl Dispatch<WlRegistry, ()> for State {
    fn event(
        state: &mut Self,
        registry: &WlRegistry,
        event: wayland_client::protocol::wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        use wayland_client::protocol::wl_registry::Event;
        match event {
            Event::Global {
                name,
                interface,
                version,
            } => match interface.as_str() {
                // The first seat: sway has one ("seat0") unless configured otherwise.
                "wl_seat" if state.seat.is_none() => {
                    state.seat = Some(registry.bind(name, version.min(1), qh, ()));
                }
                "zwp_virtual_keyboard_manager_v1" => {
                    state.keyboard_manager = Some(registry.bind(name, 1, qh, ()));
                }
                // v2 brings create_virtual_pointer_with_output; v1 cannot bind to an output.
                "zwlr_virtual_pointer_manager_v1" if version >= 2 => {
                    state.pointer_manager = Some(registry.bind(name, 2, qh, ()));
                }
                "zxdg_output_manager_v1" if version >= 2 => {
                    state.xdg_manager = Some(registry.bind(name, version.min(3), qh, ()));
                }
                "wl_output" => {
                    let output = registry.bind(name, version.min(4), qh, name);
                    state.outputs.push(OutputEntry {
                        global: name,
                        output,
                        name: None,
                    });
                }
                _ => {}
            },
            Event::GlobalRemove { name } => {
                state.outputs.retain(|o| o.global != name);
                state.removed_globals.push(name);
            }
            _ => {}
        }
    }
}

impl Dispatch<WlOutput, u32> for State {
    fn event(
        state: &mut Self,
        _: &WlOutput,
        event: wayland_client::protocol::wl_output::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wayland_client::protocol::wl_output::Event::Name { name } = event
            && let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global)
        {
            o.name = Some(name);
        }
    }
}

impl Dispatch<ZxdgOutputV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &ZxdgOutputV1,
        event: zxdg_output_v1::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zxdg_output_v1::Event::Name { name } = event
            && let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global)
        {
            o.name = Some(name);
        }
    }
}

impl Dispatch<WlCallback, ()> for State {
    fn event(
        state: &mut Self,
        _: &WlCallback,
        _: wayland_client::protocol::wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        state.synced = true;
    }
}

delegate_noop!(State: ignore WlSeat);
delegate_noop!(State: ZwpVirtualKeyboardManagerV1);
delegate_noop!(State: ZwpVirtualKeyboardV1);
delegate_noop!(State: ZwlrVirtualPointerManagerV1);
delegate_noop!(State: ZwlrVirtualPointerV1);
delegate_noop!(State: ZxdgOutputManagerV1);

fn protocol(e: impl std::fmt::Display) -> WlrInputError {
    WlrInputError::Protocol(e.to_string())
}

/// A virtual keyboard (US keymap) and a virtual pointer bound to one output of a wlroots
/// compositor. Dropping it destroys both devices (held keys and buttons are released first).
#[derive(Debug)]
pub struct WlrInput {
    conn: Connection,
    queue: EventQueue<State>,
    state: State,
    keyboard: ZwpVirtualKeyboardV1,
    pointer: ZwlrVirtualPointerV1,
    output_name: String,
    timeout: Duration,
    epoch: Instant,
    mods: ModState,
    /// Keys (evdev codes) held down, released on drop.
    held_keys: Vec<u32>,
    /// Buttons held down, released on drop.
    held_buttons: Vec<u32>,
}

impl WlrInput {
    /// Connects to the Wayland socket at `socket` (`$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY`),
    /// creates the virtual keyboard (US keymap) and a virtual pointer bound to the output
    /// named `output`. `timeout` bounds every wait, here and in every later call.
    pub fn connect(socket: &Path, output: &str, timeout: Duration) -> Result<Self, WlrInputError> {
        let stream = UnixStream::connect(socket)?;
        let conn = Connection::from_socket(stream).map_err(protocol)?;
        let mut queue = conn.new_event_queue();
        let qh = queue.handle();
        conn.display().get_registry(&qh, ());
        let mut state = State::default();
        sync(&conn, &mut queue, &mut state, timeout)?; // globals bound
        let need = |what: &str| WlrInputError::Unsupported(what.to_owned());
        let seat = state.seat.clone().ok_or_else(|| need("wl_seat"))?;
        let kb_manager = state
            .keyboard_manager
            .clone()
            .ok_or_else(|| need("zwp_virtual_keyboard_manager_v1"))?;
        let ptr_manager = state
            .pointer_manager
            .clone()
            .ok_or_else(|| need("zwlr_virtual_pointer_manager_v1 v2"))?;
        if let Some(xdg) = state.xdg_manager.clone() {
            for o in &state.outputs {
                xdg.get_xdg_output(&o.output, &qh, o.global);
            }
        }
        sync(&conn, &mut queue, &mut state, timeout)?; // output names arrived
        let wl_output = state
            .outputs
            .iter()
            .find(|o| o.name.as_deref() == Some(output))
            .map(|o| o.output.clone())
            .ok_or_else(|| WlrInputError::OutputGone(output.to_owned()))?;

        let keymap = keymap_file(KEYMAP_US)?;
        let keymap_len = u32::try_from(KEYMAP_US.len() + 1)
            .map_err(|_| WlrInputError::Protocol("keymap over 4 GiB".into()))?;
        let keyboard = kb_manager.create_virtual_keyboard(&seat, &qh, ());
        keyboard.keymap(KEYMAP_FORMAT_XKB_V1, keymap.as_fd(), keymap_len);
        let pointer =
            ptr_manager.create_virtual_pointer_with_output(Some(&seat), Some(&wl_output), &qh, ());
        let mut this = Self {
            conn,
            queue,
            state,
            keyboard,
            pointer,
            output_name: output.to_owned(),
            timeout,
            epoch: Instant::now(),
            mods: ModState::new(),
            held_keys: Vec::new(),
            held_buttons: Vec::new(),
        };
        // The keymap fd is sent with the flush; the compositor has read it by the round trip.
        this.sync()?;
        drop(keymap);
        Ok(this)
    }

    /// The output the pointer is bound to.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// Milliseconds since connect, wrapping (the protocol's `time` arguments).
    fn time(&self) -> u32 {
        self.epoch.elapsed().as_millis() as u32
    }

    /// Presses or releases the key with Linux evdev code `evdev_code` (e.g. `KEY_A` = 30), and
    /// sends the modifier masks when a modifier or lock key changed them.
    pub fn key(&mut self, evdev_code: u32, pressed: bool) -> Result<(), WlrInputError> {
        self.keyboard
            .key(self.time(), evdev_code, u32::from(pressed));
        if pressed {
            if !self.held_keys.contains(&evdev_code) {
                self.held_keys.push(evdev_code);
            }
        } else {
            self.held_keys.retain(|&k| k != evdev_code);
        }
        if self.mods.key(evdev_code, pressed) {
            self.send_modifiers(self.mods.masks());
        }
        self.flush()
    }

    fn send_modifiers(&self, m: ModMasks) {
        self.keyboard
            .modifiers(m.depressed, m.latched, m.locked, m.group);
    }

    /// The modifier masks last sent (xkb real modifiers of the US keymap).
    pub fn modifiers(&self) -> ModMasks {
        self.mods.masks()
    }

    /// Moves the pointer to `(x, y)` of a `width` × `height` surface mapped onto the bound
    /// output (`x = width` is the right edge). Values beyond the extent are clamped.
    pub fn motion_absolute(
        &mut self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<(), WlrInputError> {
        let (width, height) = (width.max(1), height.max(1));
        self.pointer
            .motion_absolute(self.time(), x.min(width), y.min(height), width, height);
        self.pointer.frame();
        self.flush()
    }

    /// Moves the pointer by `(dx, dy)` (pointer-acceleration-free units, like a mouse's).
    pub fn motion_relative(&mut self, dx: f64, dy: f64) -> Result<(), WlrInputError> {
        self.pointer.motion(self.time(), dx, dy);
        self.pointer.frame();
        self.flush()
    }

    /// Presses or releases a pointer button (Linux `BTN_LEFT` = 0x110, `BTN_RIGHT` = 0x111,
    /// `BTN_MIDDLE` = 0x112, `BTN_SIDE` = 0x113, `BTN_EXTRA` = 0x114).
    pub fn button(&mut self, evdev_button_code: u32, pressed: bool) -> Result<(), WlrInputError> {
        let state = if pressed {
            wl_pointer::ButtonState::Pressed
        } else {
            wl_pointer::ButtonState::Released
        };
        self.pointer.button(self.time(), evdev_button_code, state);
        self.pointer.frame();
        if pressed {
            if !self.held_buttons.contains(&evdev_button_code) {
                self.held_buttons.push(evdev_button_code);
            }
        } else {
            self.held_buttons.retain(|&b| b != evdev_button_code);
        }
        self.flush()
    }

    /// Scrolls by `value` (Wayland axis units, 15 per wheel notch in libinput's convention;
    /// positive is down/right), as a continuous (finger-like) scroll.
    pub fn axis(&mut self, axis: ScrollAxis, value: f64) -> Result<(), WlrInputError> {
        let time = self.time();
        self.pointer.axis_source(wl_pointer::AxisSource::Finger);
        self.pointer.axis(time, axis.wl(), value);
        self.pointer.frame();
        self.flush()
    }

    /// Scrolls by `notches` wheel clicks (positive is down/right) of `value` axis units in all,
    /// as a wheel (`axis_discrete`: clients that count clicks see them).
    pub fn axis_discrete(
        &mut self,
        axis: ScrollAxis,
        value: f64,
        notches: i32,
    ) -> Result<(), WlrInputError> {
        let time = self.time();
        self.pointer.axis_source(wl_pointer::AxisSource::Wheel);
        self.pointer.axis_discrete(time, axis.wl(), value, notches);
        self.pointer.frame();
        self.flush()
    }

    /// One round trip (wl_display.sync) within the deadline: every request sent before has
    /// been processed by the compositor when this returns `Ok`.
    pub fn sync(&mut self) -> Result<(), WlrInputError> {
        sync(&self.conn, &mut self.queue, &mut self.state, self.timeout)?;
        self.check_output()
    }

    fn check_output(&self) -> Result<(), WlrInputError> {
        let gone = !self
            .state
            .outputs
            .iter()
            .any(|o| o.name.as_deref() == Some(self.output_name.as_str()));
        if gone {
            return Err(WlrInputError::OutputGone(self.output_name.clone()));
        }
        Ok(())
    }

    /// Sends what is queued (waiting for room in the socket until the deadline), then reads and
    /// dispatches whatever the compositor sent meanwhile without blocking.
    fn flush(&mut self) -> Result<(), WlrInputError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            match self.conn.flush() {
                Ok(()) => break,
                Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    let fd = self.conn.as_fd();
                    wait_fd(&fd, PollFlags::OUT, deadline, self.timeout)?;
                }
                Err(e) => return Err(protocol(e)),
            }
        }
        // Read without waiting: a hang-up or a protocol error shows here.
        self.queue
            .dispatch_pending(&mut self.state)
            .map_err(protocol)?;
        if let Some(guard) = self.queue.prepare_read() {
            match guard.read() {
                Ok(_) => {}
                Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(protocol(e)),
            }
        }
        self.queue
            .dispatch_pending(&mut self.state)
            .map_err(protocol)?;
        self.check_output()
    }
}

impl Drop for WlrInput {
    fn drop(&mut self) {
        // Leave nothing pressed in the compositor's seat.
        let time = self.time();
        for key in std::mem::take(&mut self.held_keys) {
            self.keyboard.key(time, key, 0);
        }
        self.send_modifiers(ModMasks::default());
        for button in std::mem::take(&mut self.held_buttons) {
            self.pointer
                .button(time, button, wl_pointer::ButtonState::Released);
        }
        self.pointer.frame();
        self.pointer.destroy();
        self.keyboard.destroy();
        let _ = self.conn.flush();
    }
}

/// A memfd holding `text` and a terminating NUL (the size sent includes it, as xkbcommon's
/// `xkb_keymap_new_from_buffer` readers expect).
fn keymap_file(text: &str) -> Result<File, WlrInputError> {
    let fd = rustix::fs::memfd_create("punktfunk-keymap", rustix::fs::MemfdFlags::CLOEXEC)
        .map_err(std::io::Error::from)?;
    let mut file = File::from(fd);
    file.write_all(text.as_bytes())?;
    file.write_all(&[0])?;
    Ok(file)
}

/// Waits in `poll(2)` until `fd` is ready for `flags` or `deadline` passes.
fn wait_fd(
    fd: &impl std::os::fd::AsFd,
    flags: PollFlags,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), WlrInputError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(WlrInputError::Timeout(timeout));
        }
        let wait = Timespec {
            tv_sec: left.as_secs() as i64,
            tv_nsec: i64::from(left.subsec_nanos()),
        };
        let mut fds = [PollFd::new(fd, flags)];
        match rustix::event::poll(&mut fds, Some(&wait)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => continue,
            Ok(_) => {
                if fds[0].revents().intersects(PollFlags::ERR | PollFlags::HUP)
                    && !fds[0].revents().contains(PollFlags::IN)
                {
                    return Err(WlrInputError::Protocol("compositor hung up".into()));
                }
                return Ok(());
            }
            Err(e) => return Err(WlrInputError::Io(e.into())),
        }
    }
}

/// One `wl_display.sync` round trip within `timeout`.
fn sync(
    conn: &Connection,
    queue: &mut EventQueue<State>,
    state: &mut State,
    timeout: Duration,
) -> Result<(), WlrInputError> {
    state.synced = false;
    conn.display().sync(&queue.handle(), ());
    let deadline = Instant::now() + timeout;
    loop {
        queue.dispatch_pending(state).map_err(protocol)?;
        if state.synced {
            return Ok(());
        }
        match queue.flush() {
            Ok(()) => {}
            Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(protocol(e)),
        }
        let Some(guard) = queue.prepare_read() else {
            continue; // events already queued: dispatch them first
        };
        wait_fd(&guard.connection_fd(), PollFlags::IN, deadline, timeout)?;
        match guard.read() {
            Ok(_) => {}
            Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(protocol(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keymap_is_an_xkb_v1_text_with_the_us_layout() {
        assert!(KEYMAP_US.starts_with("xkb_keymap {"));
        assert!(KEYMAP_US.contains("key <AC01>"), "the A key");
        assert!(
            KEYMAP_US.contains("<AC01>               = 38;"),
            "A is evdev 30 + 8"
        );
        assert!(!KEYMAP_US.contains('\0'));
    }

    #[test]
    fn keymap_file_ends_with_a_nul() {
        use std::io::Read as _;
        use std::io::Seek as _;
        let mut f = keymap_file("xkb_keymap {};").expect("memfd");
        f.rewind().expect("rewind");
        let mut back = Vec::new();
        f.read_to_end(&mut back).expect("read");
        assert_eq!(back, b"xkb_keymap {};\0");
    }
}
