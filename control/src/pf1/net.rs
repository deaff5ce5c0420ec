//! Blocking UDP drivers for the punktfunk/1 state machines (act: sockets, clock, threads).
//!
//! Each driver owns a `std::net::UdpSocket` and a session, and loops:
//!
//! ```text
//!   ┌─► commands from other threads (channel) ─► session.<command>()
//!   │     queries the application answers (LiveSessions) ─► HostApp::live_sessions
//!   │   session.poll_event() ─► the application (HostApp, or a callback; may call the session)
//!   │   session.poll_transmit() ─► send_to
//!   │   wait: recv_from with read timeout = session.poll_timeout() - now (≤ 50 ms)
//!   │     datagram  ─► session.handle_datagram(now, from, bytes)
//!   │     0 bytes   ─► a wake-up from a command handle (never a QUIC packet)
//!   └── deadline passed ─► session.handle_timeout(now)
//! ```
//!
//! A command handle sends a zero-length datagram to the driver's socket after queueing a
//! command, so commands (input events, above all) do not wait for the read timeout. The
//! 50 ms cap bounds the wait should a wake-up be lost.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, UdpSocket};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::time::{Duration, Instant};

use super::client::{ClientEvent, ClientSession};
use super::host::{AdmissionStatus, HostEvent, HostSession, SessionOffer};
use super::live;
use super::message::{LossReport, Mode, Stats};
use super::pairing::Pin;
use super::tls::Fingerprint;
use super::{ClientConfig, Closed, ConnId, GoodbyeReason, SessionError, Transmit};
use crate::input::wire::InputEvent;
use crate::live::LiveSession;

/// Longest the driver sleeps in `recv_from` without looking at its commands.
const MAX_WAIT: Duration = Duration::from_millis(50);

/// Largest UDP payload read.
const RECV_BUF: usize = 64 * 1024;

/// Why a driver stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// A socket call failed.
    #[error("{op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The OS error.
        source: io::Error,
    },
    /// The session refused to start.
    #[error(transparent)]
    Session(#[from] SessionError),
}

fn io_err(op: &'static str) -> impl FnOnce(io::Error) -> NetError {
    move |source| NetError::Io { op, source }
}

/// Wakes a driver blocked in `recv_from`.
#[derive(Debug)]
struct Waker {
    socket: UdpSocket,
    target: SocketAddr,
}

impl Waker {
    fn new(driver: &UdpSocket) -> Result<Self, NetError> {
        let mut target = driver.local_addr().map_err(io_err("local_addr"))?;
        let unspecified = match target.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        if target.ip().is_unspecified() {
            target.set_ip(match target.ip() {
                IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
                IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
            });
        }
        let socket =
            UdpSocket::bind(SocketAddr::new(unspecified, 0)).map_err(io_err("bind waker"))?;
        Ok(Self { socket, target })
    }

    fn wake(&self) {
        // Best effort: the driver also wakes every MAX_WAIT.
        let _ = self.socket.send_to(&[], self.target);
    }

    fn try_clone(&self) -> Option<Self> {
        Some(Self {
            socket: self.socket.try_clone().ok()?,
            target: self.target,
        })
    }
}

/// The sans-IO grammar both sessions share, for the one loop below (events are polled by
/// each driver itself, with its own type).
trait Machine {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]);
    fn handle_timeout(&mut self, now: Instant);
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit>;
    fn poll_timeout(&mut self) -> Option<Instant>;
}

impl Machine for HostSession {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        HostSession::handle_datagram(self, now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        HostSession::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        HostSession::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        HostSession::poll_timeout(self)
    }
}

impl Machine for ClientSession {
    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        ClientSession::handle_datagram(self, now, from, bytes);
    }
    fn handle_timeout(&mut self, now: Instant) {
        ClientSession::handle_timeout(self, now);
    }
    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        ClientSession::poll_transmit(self, now, buf)
    }
    fn poll_timeout(&mut self) -> Option<Instant> {
        ClientSession::poll_timeout(self)
    }
}

/// Socket plumbing of one driver.
struct Io {
    socket: UdpSocket,
    send_buf: Vec<u8>,
    recv_buf: Vec<u8>,
}

impl Io {
    fn new(socket: UdpSocket) -> Self {
        Self {
            socket,
            send_buf: Vec::with_capacity(2048),
            recv_buf: vec![0; RECV_BUF],
        }
    }

    /// Sends everything the machine has.
    fn flush<M: Machine>(&mut self, m: &mut M) {
        let now = Instant::now();
        while let Some(t) = m.poll_transmit(now, &mut self.send_buf) {
            let Some(bytes) = self.send_buf.get(..t.size) else {
                continue;
            };
            // A lost datagram is QUIC's to recover; a full socket buffer or an ICMP error
            // must not stop the loop.
            if let Err(e) = self.socket.send_to(bytes, t.destination) {
                tracing::trace!(error = %e, dest = %t.destination, "pf1 send failed");
            }
        }
    }

    /// Waits for one datagram or the machine's deadline, and feeds what happened.
    fn wait<M: Machine>(&mut self, m: &mut M) -> Result<(), NetError> {
        let deadline = m.poll_timeout();
        let now = Instant::now();
        let wait = deadline
            .map_or(MAX_WAIT, |d| d.saturating_duration_since(now))
            .clamp(Duration::from_micros(200), MAX_WAIT);
        self.socket
            .set_read_timeout(Some(wait))
            .map_err(io_err("set_read_timeout"))?;
        match self.socket.recv_from(&mut self.recv_buf) {
            Ok((0, _)) => {}
            Ok((n, from)) => {
                let bytes = self.recv_buf.get(..n).unwrap_or_default();
                m.handle_datagram(Instant::now(), from, bytes);
            }
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock
                        | io::ErrorKind::TimedOut
                        | io::ErrorKind::Interrupted
                        | io::ErrorKind::ConnectionRefused
                        | io::ErrorKind::ConnectionReset
                ) => {}
            Err(e) => return Err(io_err("recv_from")(e)),
        }
        let now = Instant::now();
        if m.poll_timeout().is_some_and(|d| d <= now) {
            m.handle_timeout(now);
        }
        Ok(())
    }
}

/// A command for a running [`HostDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum HostCommand {
    /// [`HostSession::accept`].
    Accept(ConnId, SessionOffer),
    /// [`HostSession::goodbye`] (also refuses a Hello).
    Goodbye(ConnId, GoodbyeReason, String),
    /// [`HostSession::reconfigured`].
    Reconfigured(ConnId, Mode, u32),
    /// [`HostSession::send_stats`].
    SendStats(ConnId, Stats),
    /// [`HostSession::update_key`]: the data-plane sender nears its key's limit.
    UpdateKey(ConnId),
    /// [`HostSession::arm_pin`].
    ArmPin(Pin),
    /// [`HostSession::disarm_pin`]: the operator closes the pairing window.
    DisarmPin,
    /// [`HostSession::trust`].
    Trust(Fingerprint),
    /// [`HostSession::untrust`].
    Untrust(Fingerprint),
    /// [`HostSession::admission_status`], answered on the channel.
    Status(Sender<AdmissionStatus>),
    /// One row per connection holding a streaming slot ([`HostApp::live_sessions`]),
    /// answered on the channel.
    LiveSessions(Sender<Vec<LiveSession>>),
    /// Goodbye to everyone, then return from [`HostDriver::run`] once they are gone.
    Shutdown,
}

/// Sends commands to a running driver from any thread.
#[derive(Debug)]
pub struct Handle<C> {
    tx: Sender<C>,
    waker: Option<Waker>,
}

impl<C> Clone for Handle<C> {
    fn clone(&self) -> Self {
        Self {
            tx: self.tx.clone(),
            waker: self.waker.as_ref().and_then(Waker::try_clone),
        }
    }
}

impl<C> Handle<C> {
    /// Queues `cmd` and wakes the driver. `false` if the driver has stopped.
    pub fn send(&self, cmd: C) -> bool {
        let ok = self.tx.send(cmd).is_ok();
        if ok && let Some(w) = &self.waker {
            w.wake();
        }
        ok
    }
}

/// Commands for a [`HostDriver`].
pub type HostHandle = Handle<HostCommand>;

impl Handle<HostCommand> {
    /// Asks the driver for [`HostSession::admission_status`]; waits up to `wait` for the
    /// answer (blocking). `None` if the driver has stopped or did not answer in time.
    pub fn admission_status(&self, wait: Duration) -> Option<AdmissionStatus> {
        let (tx, rx) = mpsc::channel();
        if !self.send(HostCommand::Status(tx)) {
            return None;
        }
        rx.recv_timeout(wait).ok()
    }

    /// Asks the driver for one [`LiveSession`] row per connection holding a streaming slot
    /// (`/api/sessions`); waits up to `timeout` for the answer (blocking). `None` if the
    /// driver has stopped or did not answer in time.
    pub fn live_sessions(&self, timeout: Duration) -> Option<Vec<LiveSession>> {
        let (tx, rx) = mpsc::channel();
        if !self.send(HostCommand::LiveSessions(tx)) {
            return None;
        }
        rx.recv_timeout(timeout).ok()
    }
}

/// What a [`HostDriver`] runs on its thread: it reacts to the session's events and answers
/// the queries only it can (the media path's counters live with it).
///
/// A closure `FnMut(&mut HostSession, HostEvent)` is a `HostApp` whose rows carry the
/// session's facts only (no frames, loss or FEC, no client names).
pub trait HostApp {
    /// Acts on `event`; may call the session directly.
    fn on_event(&mut self, session: &mut HostSession, event: HostEvent);

    /// The rows of [`HostCommand::LiveSessions`] at `now`.
    fn live_sessions(&mut self, session: &HostSession, now: Instant) -> Vec<LiveSession> {
        session
            .admitted()
            .iter()
            .map(|c| live::row(c, None, "", now))
            .collect()
    }
}

impl<F: FnMut(&mut HostSession, HostEvent)> HostApp for F {
    fn on_event(&mut self, session: &mut HostSession, event: HostEvent) {
        self(session, event);
    }
}

/// Drives a [`HostSession`] over a UDP socket (`punktfunk serve`'s pf1 listener).
pub struct HostDriver {
    io: Io,
    session: HostSession,
    rx: Receiver<HostCommand>,
}

impl std::fmt::Debug for HostDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostDriver")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl HostDriver {
    /// A driver for `session` on `socket`, and a handle to command it.
    pub fn new(socket: UdpSocket, session: HostSession) -> Result<(Self, HostHandle), NetError> {
        let (tx, rx) = mpsc::channel();
        let waker = Waker::new(&socket)?;
        Ok((
            Self {
                io: Io::new(socket),
                session,
                rx,
            },
            Handle {
                tx,
                waker: Some(waker),
            },
        ))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.io.socket.local_addr()
    }

    /// Runs until [`HostCommand::Shutdown`] (or every handle dropped) and every connection
    /// is gone. `on_event` sees each event with the session, to answer on the spot;
    /// [`HostCommand::LiveSessions`] gets the session's facts only ([`HostApp`]'s default).
    pub fn run(
        self,
        on_event: impl FnMut(&mut HostSession, HostEvent),
    ) -> Result<HostSession, NetError> {
        self.run_app(on_event)
    }

    /// [`run`](Self::run) with an application that also answers
    /// [`HostCommand::LiveSessions`] itself (the listener: media counters, client names).
    pub fn run_app(mut self, mut app: impl HostApp) -> Result<HostSession, NetError> {
        let mut stopping: Option<Instant> = None;
        loop {
            loop {
                let now = Instant::now();
                match self.rx.try_recv() {
                    Ok(HostCommand::LiveSessions(reply)) => {
                        // The asker may have given up waiting.
                        let _ = reply.send(app.live_sessions(&self.session, now));
                    }
                    Ok(HostCommand::Shutdown) => {
                        stopping.get_or_insert(now);
                        self.session
                            .close_all(now, GoodbyeReason::Normal, "host shutting down");
                    }
                    Ok(cmd) => {
                        if let Err(e) = apply_host(&mut self.session, now, cmd) {
                            tracing::warn!(error = %e, "pf1 host command refused");
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if stopping.is_none() {
                            stopping = Some(now);
                            self.session.close_all(
                                now,
                                GoodbyeReason::Normal,
                                "host shutting down",
                            );
                        }
                        break;
                    }
                }
            }
            while let Some(ev) = self.session.poll_event() {
                app.on_event(&mut self.session, ev);
            }
            self.io.flush(&mut self.session);
            if let Some(since) = stopping {
                // Draining takes 3 PTOs; give up after a few seconds regardless.
                if self.session.is_idle() || since.elapsed() > Duration::from_secs(3) {
                    return Ok(self.session);
                }
            }
            self.io.wait(&mut self.session)?;
        }
    }
}

fn apply_host(s: &mut HostSession, now: Instant, cmd: HostCommand) -> Result<(), SessionError> {
    match cmd {
        HostCommand::Accept(c, offer) => s.accept(now, c, offer).map(drop),
        HostCommand::Goodbye(c, reason, text) => s.goodbye(now, c, reason, &text),
        HostCommand::Reconfigured(c, mode, first) => s.reconfigured(c, mode, first).map(drop),
        HostCommand::SendStats(c, stats) => s.send_stats(c, stats),
        HostCommand::UpdateKey(c) => s.update_key(now, c).map(drop),
        HostCommand::ArmPin(pin) => {
            s.arm_pin(now, pin);
            Ok(())
        }
        HostCommand::DisarmPin => {
            s.disarm_pin(now);
            Ok(())
        }
        HostCommand::Trust(fp) => {
            s.trust(fp);
            Ok(())
        }
        HostCommand::Untrust(fp) => {
            s.untrust(&fp);
            Ok(())
        }
        HostCommand::Status(reply) => {
            // The asker may have given up waiting.
            let _ = reply.send(s.admission_status(now));
            Ok(())
        }
        // Answered by the driver's loop (it needs the application).
        HostCommand::LiveSessions(_) | HostCommand::Shutdown => Ok(()),
    }
}

/// A command for a running [`ClientDriver`].
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ClientCommand {
    /// [`ClientSession::pair`].
    Pair(Pin),
    /// [`ClientSession::start`].
    Start(u16),
    /// [`ClientSession::request_reconfigure`].
    Reconfigure(Mode),
    /// [`ClientSession::request_idr`].
    RequestIdr,
    /// [`ClientSession::send_loss_report`].
    LossReport(LossReport),
    /// [`ClientSession::send_stats`].
    Stats(Stats),
    /// [`ClientSession::send_input`].
    Input(InputEvent),
    /// [`ClientSession::key_installed`]: the receiver holds the new key generation.
    KeyInstalled(u32),
    /// [`ClientSession::goodbye`].
    Goodbye(GoodbyeReason, String),
}

/// Commands for a [`ClientDriver`].
pub type ClientHandle = Handle<ClientCommand>;

/// Drives a [`ClientSession`] over a UDP socket (the reference client).
pub struct ClientDriver {
    io: Io,
    session: ClientSession,
    rx: Receiver<ClientCommand>,
}

impl std::fmt::Debug for ClientDriver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientDriver")
            .field("session", &self.session)
            .finish_non_exhaustive()
    }
}

impl ClientDriver {
    /// Binds an ephemeral UDP socket of `server`'s family and starts connecting.
    pub fn connect(
        config: ClientConfig,
        server: SocketAddr,
    ) -> Result<(Self, ClientHandle), NetError> {
        let local = match server {
            SocketAddr::V4(_) => SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0)),
            SocketAddr::V6(_) => SocketAddr::from((Ipv6Addr::UNSPECIFIED, 0)),
        };
        let socket = UdpSocket::bind(local).map_err(io_err("bind"))?;
        let session = ClientSession::connect(config, Instant::now(), server)?;
        let (tx, rx) = mpsc::channel();
        let waker = Waker::new(&socket)?;
        Ok((
            Self {
                io: Io::new(socket),
                session,
                rx,
            },
            Handle {
                tx,
                waker: Some(waker),
            },
        ))
    }

    /// Runs until the session has closed and drained (or a few seconds after it closed);
    /// returns how it ended. `on_event` sees each event with the session.
    pub fn run(
        mut self,
        mut on_event: impl FnMut(&mut ClientSession, ClientEvent),
    ) -> Result<Closed, NetError> {
        let mut closed: Option<(Closed, Instant)> = None;
        loop {
            loop {
                match self.rx.try_recv() {
                    Ok(cmd) => {
                        if let Err(e) = apply_client(&mut self.session, cmd) {
                            // Commands racing the close (a last loss report) are expected.
                            if self.session.is_closed() {
                                tracing::debug!(error = %e, "pf1 client command after close");
                            } else {
                                tracing::warn!(error = %e, "pf1 client command refused");
                            }
                        }
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        if !self.session.is_closed() {
                            self.session.goodbye(
                                Instant::now(),
                                GoodbyeReason::Normal,
                                "client shutting down",
                            );
                        }
                        break;
                    }
                }
            }
            while let Some(ev) = self.session.poll_event() {
                if let ClientEvent::Closed(c) = &ev {
                    closed = Some((c.clone(), Instant::now()));
                }
                on_event(&mut self.session, ev);
            }
            self.io.flush(&mut self.session);
            if let Some((c, at)) = &closed
                && (self.session.is_drained() || at.elapsed() > Duration::from_secs(2))
            {
                return Ok(c.clone());
            }
            self.io.wait(&mut self.session)?;
        }
    }
}

fn apply_client(s: &mut ClientSession, cmd: ClientCommand) -> Result<(), SessionError> {
    match cmd {
        ClientCommand::Pair(pin) => s.pair(pin),
        ClientCommand::Start(port) => s.start(port).map(drop),
        ClientCommand::Reconfigure(mode) => s.request_reconfigure(mode),
        ClientCommand::RequestIdr => s.request_idr(),
        ClientCommand::LossReport(r) => s.send_loss_report(r),
        ClientCommand::Stats(st) => s.send_stats(st),
        ClientCommand::Input(ev) => s.send_input(&ev),
        ClientCommand::KeyInstalled(g) => s.key_installed(g),
        ClientCommand::Goodbye(reason, text) => {
            s.goodbye(Instant::now(), reason, &text);
            Ok(())
        }
    }
}
