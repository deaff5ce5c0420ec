//! One Wayland connection to KWin (act): the globals this backend binds, the outputs with their
//! names and logical geometry, the screencast streams' states, and dispatch with deadlines.
//!
//! ```text
//!  connect: wl_registry ─► zkde_screencast_unstable_v1 (≤ v3), org_kde_kwin_fake_input (≤ v4),
//!           zxdg_output_manager_v1, wl_output × n ─► zxdg_output_v1: name, logical position/size
//!  wait_until(pred): dispatch queued events; flush; poll(2) for POLLIN until the deadline; read
//! ```
//!
//! No `unsafe`. Every wait ends at a deadline ([`KwinError::Timeout`]); a hang-up or a
//! protocol error raised by KWin is [`KwinError::Protocol`].

use std::os::fd::AsFd as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use wayland_client::backend::WaylandError;
use wayland_client::protocol::{wl_callback::WlCallback, wl_output::WlOutput, wl_registry::WlRegistry};
use wayland_client::{Connection, Dispatch, EventQueue, QueueHandle, delegate_noop};
use wayland_protocols::xdg::xdg_output::zv1::client::{
    zxdg_output_manager_v1::ZxdgOutputManagerV1, zxdg_output_v1, zxdg_output_v1::ZxdgOutputV1,
};
use wayland_protocols_plasma::fake_input::client::org_kde_kwin_fake_input::OrgKdeKwinFakeInput;
use wayland_protocols_plasma::plasma_window_management::client::org_kde_plasma_window_management::{
    self, OrgKdePlasmaWindowManagement,
};
use wayland_protocols_plasma::screencast::v1::client::{
    zkde_screencast_stream_unstable_v1, zkde_screencast_stream_unstable_v1::ZkdeScreencastStreamUnstableV1,
    zkde_screencast_unstable_v1::ZkdeScreencastUnstableV1,
};

use super::KwinError;
use super::plan::{OutputGeometry, StreamEvent, StreamState};

/// Highest `zkde_screencast_unstable_v1` version bound: 3 is what KWin 5.27 offers (v4 only
/// adds `stream_virtual_output_with_description`).
const SCREENCAST_MAX: u32 = 3;
/// Highest `org_kde_kwin_fake_input` version bound: 4 (KWin 5.27) has `keyboard_key`; v5 only
/// adds `destroy`.
const FAKE_INPUT_MAX: u32 = 4;

#[derive(Debug)]
pub(crate) struct OutputEntry {
    pub(crate) global: u32,
    pub(crate) output: WlOutput,
    xdg: Option<ZxdgOutputV1>,
    pub(crate) name: Option<String>,
    pub(crate) geometry: OutputGeometry,
}

#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) screencast: Option<(ZkdeScreencastUnstableV1, u32)>,
    pub(crate) fake_input: Option<(OrgKdeKwinFakeInput, u32)>,
    xdg_manager: Option<ZxdgOutputManagerV1>,
    pub(crate) outputs: Vec<OutputEntry>,
    /// Screencast streams by the key given as their user data.
    pub(crate) streams: Vec<(u32, StreamState)>,
    /// Whether to bind `org_kde_plasma_window_management` (window uuids for `stream_window`).
    want_windows: bool,
    pub(crate) window_management: Option<OrgKdePlasmaWindowManagement>,
    /// Uuids of mapped windows, in the order KWin announced them.
    pub(crate) windows: Vec<String>,
    synced: bool,
}

impl State {
    /// The output KWin calls `name`, if it exists now.
    pub(crate) fn output(&self, name: &str) -> Option<&OutputEntry> {
        self.outputs
            .iter()
            .find(|o| o.name.as_deref() == Some(name))
    }

    /// The state of the stream with key `key` (`Closed` once forgotten).
    pub(crate) fn stream(&self, key: u32) -> StreamState {
        self.streams
            .iter()
            .find(|(k, _)| *k == key)
            .map_or(StreamState::Closed, |(_, s)| s.clone())
    }

    fn request_xdg(&mut self, qh: &QueueHandle<Self>) {
        if let Some(manager) = &self.xdg_manager {
            for o in self.outputs.iter_mut().filter(|o| o.xdg.is_none()) {
                o.xdg = Some(manager.get_xdg_output(&o.output, qh, o.global));
            }
        }
    }
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
            } => {
                match interface.as_str() {
                    "zkde_screencast_unstable_v1" => {
                        let v = version.min(SCREENCAST_MAX);
                        state.screencast = Some((registry.bind(name, v, qh, ()), v));
                    }
                    "org_kde_kwin_fake_input" => {
                        let v = version.min(FAKE_INPUT_MAX);
                        state.fake_input = Some((registry.bind(name, v, qh, ()), v));
                    }
                    // v13 brings window_with_uuid (the id stream_window takes).
                    "org_kde_plasma_window_management" if state.want_windows && version >= 13 => {
                        state.window_management =
                            Some(registry.bind(name, version.min(16), qh, ()));
                    }
                    "zxdg_output_manager_v1" if version >= 2 => {
                        state.xdg_manager = Some(registry.bind(name, version.min(3), qh, ()));
                    }
                    "wl_output" => {
                        let output = registry.bind(name, version.min(4), qh, name);
                        state.outputs.push(OutputEntry {
                            global: name,
                            output,
                            xdg: None,
                            name: None,
                            geometry: OutputGeometry::default(),
                        });
                    }
                    _ => {}
                }
                state.request_xdg(qh);
            }
            Event::GlobalRemove { name } => {
                state.outputs.retain(|o| o.global != name);
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
        let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global) else {
            return;
        };
        match event {
            zxdg_output_v1::Event::Name { name } => o.name = Some(name),
            zxdg_output_v1::Event::LogicalPosition { x, y } => {
                o.geometry.x = x;
                o.geometry.y = y;
            }
            zxdg_output_v1::Event::LogicalSize { width, height } => {
                o.geometry.width = width;
                o.geometry.height = height;
            }
            _ => {}
        }
    }
}

impl Dispatch<ZkdeScreencastStreamUnstableV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &ZkdeScreencastStreamUnstableV1,
        event: zkde_screencast_stream_unstable_v1::Event,
        key: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zkde_screencast_stream_unstable_v1::Event;
        let event = match event {
            Event::Created { node } => StreamEvent::Created(node),
            Event::Failed { error } => StreamEvent::Failed(error),
            Event::Closed => StreamEvent::Closed,
            _ => return,
        };
        if let Some((_, s)) = state.streams.iter_mut().find(|(k, _)| k == key) {
            *s = s.on_event(event);
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

impl Dispatch<OrgKdePlasmaWindowManagement, ()> for State {
    fn event(
        state: &mut Self,
        _: &OrgKdePlasmaWindowManagement,
        event: org_kde_plasma_window_management::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let org_kde_plasma_window_management::Event::WindowWithUuid { uuid, .. } = event
            && !state.windows.contains(&uuid)
        {
            state.windows.push(uuid);
        }
    }
}

delegate_noop!(State: ZkdeScreencastUnstableV1);
delegate_noop!(State: OrgKdeKwinFakeInput);
delegate_noop!(State: ZxdgOutputManagerV1);

pub(crate) fn protocol(e: impl std::fmt::Display) -> KwinError {
    KwinError::Protocol(e.to_string())
}

/// A connection, its event queue and what it learnt.
#[derive(Debug)]
pub(crate) struct Wl {
    conn: Connection,
    queue: EventQueue<State>,
    pub(crate) state: State,
    pub(crate) timeout: Duration,
}

impl Wl {
    /// Connects to `socket`, binds the globals and learns the outputs' names and geometry (two
    /// round trips, each within `timeout`).
    pub(crate) fn connect(socket: &Path, timeout: Duration) -> Result<Self, KwinError> {
        Self::connect_with(socket, timeout, false)
    }

    /// [`connect`](Self::connect), also binding window management when `windows`.
    pub(crate) fn connect_with(
        socket: &Path,
        timeout: Duration,
        windows: bool,
    ) -> Result<Self, KwinError> {
        let stream = UnixStream::connect(socket)?;
        let conn = Connection::from_socket(stream).map_err(protocol)?;
        let queue = conn.new_event_queue();
        conn.display().get_registry(&queue.handle(), ());
        let mut wl = Self {
            conn,
            queue,
            state: State {
                want_windows: windows,
                ..State::default()
            },
            timeout,
        };
        wl.sync()?; // globals bound, xdg_outputs requested
        wl.sync()?; // output names and geometry arrived
        Ok(wl)
    }

    pub(crate) fn handle(&self) -> QueueHandle<State> {
        self.queue.handle()
    }

    /// One `wl_display.sync` round trip within the timeout: every request sent before has been
    /// processed by KWin, and every event it sent before has been dispatched.
    pub(crate) fn sync(&mut self) -> Result<(), KwinError> {
        self.state.synced = false;
        self.conn.display().sync(&self.queue.handle(), ());
        self.wait_until(|s| s.synced)
    }

    /// Dispatches events until `done` holds, within the timeout.
    pub(crate) fn wait_until(
        &mut self,
        mut done: impl FnMut(&State) -> bool,
    ) -> Result<(), KwinError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.queue
                .dispatch_pending(&mut self.state)
                .map_err(protocol)?;
            if done(&self.state) {
                return Ok(());
            }
            self.flush_until(deadline)?;
            let Some(guard) = self.queue.prepare_read() else {
                continue; // events already queued: dispatch them first
            };
            wait_fd(
                &guard.connection_fd(),
                PollFlags::IN,
                deadline,
                self.timeout,
            )?;
            match guard.read() {
                Ok(_) => {}
                Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(protocol(e)),
            }
        }
    }

    /// Sends what is queued (waiting for room in the socket until the timeout), then reads and
    /// dispatches what KWin sent meanwhile, without blocking.
    pub(crate) fn flush(&mut self) -> Result<(), KwinError> {
        self.flush_until(Instant::now() + self.timeout)?;
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
        Ok(())
    }

    fn flush_until(&self, deadline: Instant) -> Result<(), KwinError> {
        loop {
            match self.conn.flush() {
                Ok(()) => return Ok(()),
                Err(WaylandError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    wait_fd(&self.conn.as_fd(), PollFlags::OUT, deadline, self.timeout)?;
                }
                Err(e) => return Err(protocol(e)),
            }
        }
    }
}

/// Waits in `poll(2)` until `fd` is ready for `flags` or `deadline` passes.
fn wait_fd(
    fd: &impl std::os::fd::AsFd,
    flags: PollFlags,
    deadline: Instant,
    timeout: Duration,
) -> Result<(), KwinError> {
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(KwinError::Timeout(timeout));
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
                    return Err(KwinError::Protocol("KWin hung up".into()));
                }
                return Ok(());
            }
            Err(e) => return Err(KwinError::Io(e.into())),
        }
    }
}
