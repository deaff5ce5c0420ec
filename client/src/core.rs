//! The client core (act: DNS, sockets, threads, the state directory): one punktfunk/1 session
//! with a host, behind a small thread-safe API that the C ABI ([`crate::abi`]) wraps 1:1.
//!
//! ```text
//!  Core::connect ─► resolve, identity + known hosts (state dir), ClientDriver (QUIC, UDP)
//!                   └─ thread "pf1-control": driver.run ─► on each ClientEvent:
//!                        Connected      → pin decision kept, CoreEvent::Connected
//!                        PinNeeded      → CoreEvent::PinNeeded (the app calls pair)
//!                        PairingResult  → pin the host on success, CoreEvent::Paired
//!                        Welcome        → pin on first use, start(data port), key → receiver,
//!                                         CoreEvent::Started
//!                        Reconfigured   → CoreEvent::Reconfigured
//!                        KeyUpdate      → receiver installs it (it acknowledges)
//!                        Closed         → CoreEvent::Closed, no more events
//!  Receiving (thread "pf1-receive") ─► FrameSink below:
//!      callback set ─► callback(bytes, meta) on the receive thread
//!      else         ─► FrameQueue (bounded, reused buffers) ─► next_frame(caller's buffer)
//!      frames lost or dropped for a full queue ─► the next frame carries DISCONTINUITY
//!                                               (and a full queue asks the host for an IDR)
//!  send_input / request_mode / request_keyframe / pair ─► ClientHandle (wakes the driver)
//!  close (or drop) ─► Goodbye, join the control thread (≤ ~2 s after the close), stop the
//!                     receiver, final statistics
//! ```

use std::collections::VecDeque;
use std::net::{SocketAddr, ToSocketAddrs as _};
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_capture::clock::monotonic_us;
use punktfunk_control::host::state::{StateDir, StateError, os_random};
use punktfunk_control::input::InputEvent;
use punktfunk_control::pf1::message::{CodecSet, Reconfigured};
use punktfunk_control::pf1::net::{ClientCommand, ClientDriver, ClientHandle, NetError};
use punktfunk_control::pf1::receive::{FrameSink, ReceiveOptions, ReceiveStats, Receiving};
use punktfunk_control::pf1::trust::{self, Role};
use punktfunk_control::pf1::{
    ClientConfig, ClientEvent, Codec, DEFAULT_PORT, Fingerprint, GoodbyeReason, HostPin, HostTrust,
    Mode, Pin,
};
use punktfunk_engine::pf1::ReceivedFrame;

use crate::queue::{FrameMeta, FrameQueue, Pop};

/// How to connect.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// `HOST` or `HOST:PORT` (default port [`DEFAULT_PORT`]).
    pub host: String,
    /// Holds the client identity and, unless `remember_host` is off, the known hosts.
    pub state_dir: PathBuf,
    /// The name the host shows.
    pub name: String,
    /// The mode to ask for (also the largest mode shown).
    pub mode: Mode,
    /// Codecs the application decodes.
    pub codecs: CodecSet,
    /// Run the PIN ceremony.
    pub pair: bool,
    /// The PIN, if known up front; else [`CoreEvent::PinNeeded`] asks.
    pub pin: Option<Pin>,
    /// The host certificate expected; overrides the known-hosts file.
    pub expect_host: Option<Fingerprint>,
    /// Pin the host in the state directory's known hosts on first use and after pairing.
    pub remember_host: bool,
    /// Frames the pull queue holds before dropping the oldest.
    pub frame_queue: usize,
    /// Drop this share of data-plane datagrams on receipt (testing FEC; 0 normally).
    pub inject_loss: f64,
}

/// What the application should know or act on, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum CoreEvent {
    /// TLS is up; the host's certificate and how it compared with the pin.
    Connected {
        /// SHA-256 of the host's certificate.
        fingerprint: Fingerprint,
        /// First use, pinned, or changed (pairing decides).
        trust: HostTrust,
    },
    /// The host waits for its operator's PIN: call [`Core::pair`].
    PinNeeded {
        /// Digits of the PIN.
        digits: u8,
    },
    /// The PIN ceremony ended.
    Paired {
        /// The host now trusts this client.
        ok: bool,
    },
    /// The session is streaming.
    Started {
        /// Session id.
        session_id: u64,
        /// The mode at start.
        mode: Mode,
        /// The video codec.
        codec: Codec,
        /// FEC parity in percent of data shards.
        parity_percent: u8,
    },
    /// The host switched mode from `first_frame_id` on.
    Reconfigured(Reconfigured),
    /// Frames `first .. first + count` were lost for good: decode from the next keyframe.
    FramesLost {
        /// First frame id lost.
        first: u32,
        /// How many.
        count: u32,
    },
    /// The session ended; no more events.
    Closed {
        /// The host ended it.
        by_peer: bool,
        /// Why.
        reason: GoodbyeReason,
        /// Detail.
        text: String,
    },
}

/// Why the core refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// The state directory (identity, known hosts).
    #[error(transparent)]
    State(#[from] StateError),
    /// The host name does not resolve.
    #[error("cannot resolve {host}: {reason}")]
    Resolve {
        /// What was given.
        host: String,
        /// Why.
        reason: String,
    },
    /// Sockets or the session.
    #[error(transparent)]
    Net(#[from] NetError),
    /// The data-plane socket or thread.
    #[error("data plane: {0}")]
    Media(String),
    /// The session has closed.
    #[error("the session is closed")]
    Closed,
    /// Nothing arrived in time.
    #[error("timed out")]
    Timeout,
    /// The caller's buffer is too small for the next frame (it stays queued).
    #[error("buffer too small: the frame needs {needed} bytes")]
    BufferTooSmall {
        /// The frame's size.
        needed: usize,
    },
}

/// Statistics of a session so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CoreStats {
    /// The receiver's counters.
    pub receive: ReceiveStats,
    /// Frames the pull queue dropped because the application fell behind.
    pub frames_dropped: u64,
    /// Frame buffers the pull queue created (the rest were reused).
    pub buffers_created: u64,
    /// Input events handed to the session.
    pub input_sent: u64,
    /// Control-connection round-trip time as of the last control event.
    pub rtt: Duration,
}

/// The frame callback: bytes (valid for the call only) and metadata, on the receive thread.
pub type FrameCallback = Arc<dyn Fn(&[u8], &FrameMeta) + Send + Sync>;

#[derive(Debug)]
struct State {
    events: VecDeque<CoreEvent>,
    frames: FrameQueue,
    closed: bool,
    input_sent: u64,
    rtt: Duration,
    final_stats: Option<ReceiveStats>,
}

struct Shared {
    state: Mutex<State>,
    events_cv: Condvar,
    frames_cv: Condvar,
    callback: RwLock<Option<FrameCallback>>,
    receiving: Mutex<Option<Receiving>>,
    handle: ClientHandle,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Shared {
    fn push_event(&self, ev: CoreEvent) {
        lock(&self.state).events.push_back(ev);
        self.events_cv.notify_all();
    }
}

/// Hands the receiver's frames to the callback or the queue.
struct Sink(Arc<Shared>);

impl FrameSink for Sink {
    fn frame(&self, f: &ReceivedFrame) {
        let meta = FrameMeta::of(f, monotonic_us());
        let callback = self
            .0
            .callback
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        if let Some(cb) = callback {
            cb(&f.data, &meta);
            return;
        }
        let dropped = lock(&self.0.state).frames.push(&f.data, meta);
        self.0.frames_cv.notify_all();
        if dropped {
            self.0.handle.send(ClientCommand::RequestIdr);
        }
    }

    fn lost(&self, first: u32, count: u32) {
        lock(&self.0.state).frames.mark_gap();
        self.0.push_event(CoreEvent::FramesLost { first, count });
    }
}

/// One punktfunk/1 session with a host.
pub struct Core {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for Core {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// `HOST[:PORT]` → the known-hosts key (`host:port`) and an address.
pub fn resolve(host: &str) -> Result<(String, SocketAddr), CoreError> {
    let with_port = if host.parse::<SocketAddr>().is_ok()
        || host
            .rsplit_once(':')
            .is_some_and(|(h, p)| !h.is_empty() && !h.contains(':') && p.parse::<u16>().is_ok())
    {
        host.to_owned()
    } else if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]:{DEFAULT_PORT}")
    } else {
        format!("{host}:{DEFAULT_PORT}")
    };
    let resolve_err = |reason: String| CoreError::Resolve {
        host: host.to_owned(),
        reason,
    };
    let addr = with_port
        .to_socket_addrs()
        .map_err(|e| resolve_err(e.to_string()))?
        .next()
        .ok_or_else(|| resolve_err("no address".into()))?;
    Ok((with_port, addr))
}

/// This client's identity in `dir` (created on first use): its certificate's fingerprint,
/// which a host lists once paired.
pub fn identity_fingerprint(dir: &std::path::Path) -> Result<Fingerprint, CoreError> {
    let state = StateDir::open(dir.to_path_buf())?;
    Ok(trust::load_or_create_identity(&state, Role::Client)?.fingerprint())
}

impl CoreConfig {
    /// The session configuration for this config: the identity from the state directory
    /// (created on first use), the host pinned to `expect_host`, else to `known` (the known
    /// hosts' entry), else trust on first use. Shared by [`Core`] and the sans-IO ABI.
    pub(crate) fn session_config(
        &self,
        state: &StateDir,
        known: Option<Fingerprint>,
    ) -> Result<ClientConfig, CoreError> {
        let identity = trust::load_or_create_identity(state, Role::Client)?;
        let mut cc = ClientConfig::new(identity, &self.name, self.mode, os_random::<32>()?);
        cc.codecs = self.codecs;
        cc.host_pin = self
            .expect_host
            .or(known)
            .map_or(HostPin::FirstUse, HostPin::Expect);
        cc.pair = self.pair;
        cc.pin = self.pin.clone();
        Ok(cc)
    }
}

impl Core {
    /// Resolves the host, loads (or creates) the identity and starts connecting; returns at
    /// once. Progress arrives as events ([`Core::poll_event`]).
    pub fn connect(config: CoreConfig) -> Result<Self, CoreError> {
        let (key, addr) = resolve(&config.host)?;
        let state = StateDir::open(config.state_dir.clone())?;
        let known = match config.expect_host {
            Some(_) => None,
            None => trust::load_known_hosts(&state)?.get(&key),
        };
        let cc = config.session_config(&state, known)?;
        let fingerprint = cc.identity.fingerprint();
        let (driver, handle) = ClientDriver::connect(cc, addr)?;
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                events: VecDeque::new(),
                frames: FrameQueue::new(config.frame_queue),
                closed: false,
                input_sent: 0,
                rtt: Duration::ZERO,
                final_stats: None,
            }),
            events_cv: Condvar::new(),
            frames_cv: Condvar::new(),
            callback: RwLock::new(None),
            receiving: Mutex::new(None),
            handle: handle.clone(),
        });
        let receiving = Receiving::bind(
            ReceiveOptions {
                inject_loss: config.inject_loss,
                sink: Some(Arc::new(Sink(shared.clone()))),
            },
            handle,
        )
        .map_err(|e| CoreError::Media(e.to_string()))?;
        *lock(&shared.receiving) = Some(receiving);
        let pins = Pins {
            state,
            key,
            remember: config.remember_host,
            pairing: config.pair,
            to_pin: None,
        };
        let s = shared.clone();
        let thread = std::thread::Builder::new()
            .name("pf1-control".into())
            .spawn(move || control_thread(driver, &s, pins))
            .map_err(|e| CoreError::Media(e.to_string()))?;
        Ok(Self {
            shared,
            thread: Some(thread),
            fingerprint,
        })
    }

    /// This client's certificate fingerprint.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Waits on `cv` up to `timeout` until `take` finds something in the state; then
    /// [`CoreError::Closed`] if the session closed, else [`CoreError::Timeout`].
    fn wait_for<T>(
        &self,
        cv: &Condvar,
        timeout: Duration,
        mut take: impl FnMut(&mut State) -> Option<Result<T, CoreError>>,
    ) -> Result<T, CoreError> {
        let deadline = Instant::now() + timeout;
        let mut st = lock(&self.shared.state);
        loop {
            if let Some(r) = take(&mut st) {
                return r;
            }
            if st.closed {
                return Err(CoreError::Closed);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CoreError::Timeout);
            }
            st = cv
                .wait_timeout(st, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// The next event, waiting up to `timeout`. [`CoreError::Closed`] once the session has
    /// closed and every event was taken; [`CoreError::Timeout`] if none came.
    pub fn poll_event(&self, timeout: Duration) -> Result<CoreEvent, CoreError> {
        self.wait_for(&self.shared.events_cv, timeout, |st| {
            st.events.pop_front().map(Ok)
        })
    }

    /// Copies the next frame into `out`, waiting up to `timeout`; its size and metadata.
    pub fn next_frame(
        &self,
        out: &mut [u8],
        timeout: Duration,
    ) -> Result<(usize, FrameMeta), CoreError> {
        self.wait_for(&self.shared.frames_cv, timeout, |st| {
            match st.frames.pop_into(out) {
                Pop::Copied { len, meta } => Some(Ok((len, meta))),
                Pop::TooSmall { needed, .. } => Some(Err(CoreError::BufferTooSmall { needed })),
                Pop::Empty => None,
            }
        })
    }

    /// Delivers frames to `cb` on the receive thread from now on (`None`: back to the queue).
    pub fn set_frame_callback(&self, cb: Option<FrameCallback>) {
        *self
            .shared
            .callback
            .write()
            .unwrap_or_else(PoisonError::into_inner) = cb;
    }

    fn command(&self, cmd: ClientCommand) -> Result<(), CoreError> {
        if lock(&self.shared.state).closed || !self.shared.handle.send(cmd) {
            return Err(CoreError::Closed);
        }
        Ok(())
    }

    /// Answers [`CoreEvent::PinNeeded`].
    pub fn pair(&self, pin: Pin) -> Result<(), CoreError> {
        self.command(ClientCommand::Pair(pin))
    }

    /// Asks the host for another mode (renegotiation); [`CoreEvent::Reconfigured`] follows.
    pub fn request_mode(&self, mode: Mode) -> Result<(), CoreError> {
        self.command(ClientCommand::Reconfigure(mode))
    }

    /// Asks the host for a keyframe.
    pub fn request_keyframe(&self) -> Result<(), CoreError> {
        self.command(ClientCommand::RequestIdr)
    }

    /// Sends one input event (a QUIC datagram).
    pub fn send_input(&self, ev: InputEvent) -> Result<(), CoreError> {
        self.command(ClientCommand::Input(ev))?;
        lock(&self.shared.state).input_sent += 1;
        Ok(())
    }

    /// Statistics so far.
    pub fn stats(&self) -> CoreStats {
        let receive = lock(&self.shared.receiving).as_ref().map(Receiving::stats);
        let st = lock(&self.shared.state);
        CoreStats {
            receive: receive
                .or_else(|| st.final_stats.clone())
                .unwrap_or_default(),
            frames_dropped: st.frames.dropped,
            buffers_created: st.frames.buffers_created,
            input_sent: st.input_sent,
            rtt: st.rtt,
        }
    }

    /// Says Goodbye, waits for the session to end and stops the receiver; the final
    /// statistics. Dropping a `Core` does the same.
    pub fn close(mut self) -> CoreStats {
        self.shutdown();
        self.stats()
    }

    /// [`Core::close`] in place: afterwards only [`Core::stats`] answers (the final ones) and
    /// commands fail with [`CoreError::Closed`].
    pub fn shutdown(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.shared.handle.send(ClientCommand::Goodbye(
            GoodbyeReason::Normal,
            "client closing".into(),
        ));
        if thread.join().is_err() {
            tracing::error!("pf1 control thread panicked");
        }
        let receiving = lock(&self.shared.receiving).take();
        if let Some(r) = receiving {
            match r.finish() {
                Ok(stats) => lock(&self.shared.state).final_stats = Some(stats),
                Err(e) => tracing::warn!(error = %e, "pf1 receiver ended with an error"),
            }
        }
        lock(&self.shared.state).closed = true;
        self.shared.frames_cv.notify_all();
        self.shared.events_cv.notify_all();
    }
}

impl Drop for Core {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What the control thread decides about pinning the host.
struct Pins {
    state: StateDir,
    key: String,
    remember: bool,
    pairing: bool,
    to_pin: Option<Fingerprint>,
}

impl Pins {
    fn pin(&mut self) {
        let Some(fp) = self.to_pin.take() else {
            return;
        };
        if !self.remember {
            return;
        }
        let r = trust::load_known_hosts(&self.state).and_then(|mut hosts| {
            hosts.pin(&self.key, fp, trust::unix_now());
            trust::save_known_hosts(&self.state, &hosts)
        });
        match r {
            Ok(()) => tracing::info!(host = %self.key, "pinned the host's certificate"),
            Err(e) => tracing::warn!(error = %e, "cannot pin the host"),
        }
    }
}

fn control_thread(driver: ClientDriver, shared: &Arc<Shared>, mut pins: Pins) {
    let result = driver.run(|s, ev| {
        lock(&shared.state).rtt = s.rtt();
        match ev {
            ClientEvent::Connected { fingerprint, trust } => {
                if trust != HostTrust::Pinned {
                    pins.to_pin = Some(fingerprint);
                }
                shared.push_event(CoreEvent::Connected { fingerprint, trust });
            }
            ClientEvent::PinNeeded { digits } => {
                shared.push_event(CoreEvent::PinNeeded { digits });
            }
            ClientEvent::PairingResult { ok } => {
                if ok {
                    pins.pin();
                }
                shared.push_event(CoreEvent::Paired { ok });
            }
            ClientEvent::Welcome(_) => {
                // Without pairing, only a first-use certificate is pinned here; a changed one
                // never gets this far (the session ends with HostChanged).
                if !pins.pairing {
                    pins.pin();
                }
                let port = lock(&shared.receiving).as_ref().map(Receiving::port);
                let Some(port) = port else { return };
                match s.start(port) {
                    Ok(p) => {
                        if let Some(r) = lock(&shared.receiving).as_ref() {
                            r.set_key(&p.key_material);
                        }
                        shared.push_event(CoreEvent::Started {
                            session_id: p.session_id,
                            mode: p.mode,
                            codec: p.codec,
                            parity_percent: p.parity_percent,
                        });
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "pf1 start refused");
                        s.goodbye(Instant::now(), GoodbyeReason::Internal, &e.to_string());
                    }
                }
            }
            ClientEvent::Reconfigured(r) => shared.push_event(CoreEvent::Reconfigured(r)),
            ClientEvent::KeyUpdate {
                generation,
                key_material,
            } => {
                if let Some(r) = lock(&shared.receiving).as_ref() {
                    r.install_key(generation, &key_material);
                }
            }
            ClientEvent::Closed(c) => shared.push_event(CoreEvent::Closed {
                by_peer: c.by_peer,
                reason: c.reason,
                text: c.text,
            }),
            _ => {}
        }
    });
    let mut st = lock(&shared.state);
    if let Err(e) = result {
        st.events.push_back(CoreEvent::Closed {
            by_peer: false,
            reason: GoodbyeReason::Internal,
            text: e.to_string(),
        });
    }
    st.closed = true;
    drop(st);
    shared.events_cv.notify_all();
    shared.frames_cv.notify_all();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_forms() {
        assert_eq!(resolve("127.0.0.1").unwrap().0, "127.0.0.1:47900");
        assert_eq!(resolve("127.0.0.1:5").unwrap().1.port(), 5);
        assert_eq!(resolve("::1").unwrap().0, "[::1]:47900");
        assert_eq!(resolve("[::1]:7").unwrap().1.port(), 7);
        assert_eq!(resolve("localhost").unwrap().0, "localhost:47900");
        assert!(matches!(
            resolve("no-such-host.invalid"),
            Err(CoreError::Resolve { .. })
        ));
    }
}
