//! The seam between nvhttp and streaming: [`SessionManager`], and the session table every
//! implementation keeps ([`SessionTable`], pure).
//!
//! nvhttp authenticates the client, parses `/launch`/`/resume` into typed requests and hands
//! them here; the RTSP/streaming side implements [`SessionManager`] (start the app, prepare
//! the RTSP handshake with the request's keys) and reports its sessions back, which
//! `/serverinfo` turns into `state`/`currentgame` for the asking client and the management
//! API lists.
//!
//! Several clients stream at once, each in its own session (own mode, source, encoder, keys,
//! UDP ports). What [`SessionTable`] decides:
//!
//! | request | the client has a session            | it has none                                   |
//! |---------|-------------------------------------|-----------------------------------------------|
//! | launch  | same app: rejoin it with the new keys and mode (the stream restarts); another app: `AlreadyRunning` (400) | new session, unless the table is full (`Full`, 503) or another client at the same address is still connecting (`AddressBusy`, 503) |
//! | resume  | rejoin it (new keys, mode if given) | `NothingToResume` (503)                       |
//! | cancel  | that session ends (only its own)    | nothing to do (200)                           |
//!
//! A session that has not finished its RTSP handshake [`CONNECT_DEADLINE`] after its launch
//! or resume is dropped, so launches that never connect cannot fill the table. Each session
//! holds a port slot (the lowest free index): the streaming side derives the session's UDP
//! ports from it. The status codes go into the XML `status_code`; Moonlight shows the message.

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::Serialize;

use super::launch::{DisplayMode, LaunchRequest, ResumeRequest};
use crate::live::{LiveClient, LiveMode, LiveSession, LiveState, Protocol, StreamFigures};

/// How long a launched or resumed session may take to finish the RTSP handshake (Moonlight
/// starts it right after `/launch` answers) before the table drops it.
pub const CONNECT_DEADLINE: Duration = Duration::from_secs(60);

/// The paired client behind a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientIdentity {
    /// Its id (first 16 hex digits of the certificate fingerprint).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// Where a session stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// Launched or resumed; the client has not finished the RTSP handshake.
    Connecting,
    /// The stream runs (PLAY was accepted).
    Streaming,
}

/// One session, as the table keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Session number, counting up from 1.
    pub id: u32,
    /// The app running.
    pub app_id: u32,
    /// The client whose session it is.
    pub owner: ClientIdentity,
    /// The stream's mode.
    pub mode: DisplayMode,
    /// Whether the client's control stream is connected right now.
    pub connected: bool,
    /// Where the client's `/launch` or `/resume` came from (its RTSP requests are matched to
    /// the session by this address until they carry the session's token).
    pub address: IpAddr,
    /// Port slot: the streaming side's UDP ports for this session derive from it.
    pub slot: usize,
    /// Handshake or stream.
    pub phase: Phase,
    /// When the session was admitted.
    #[serde(skip)]
    pub since: Option<Instant>,
    /// When its last launch or resume was admitted (for [`CONNECT_DEADLINE`]).
    #[serde(skip)]
    pub admitted: Option<Instant>,
}

impl SessionInfo {
    /// A connecting session of `app_id` for `owner` in port slot 0 (addresses unknown).
    pub fn new(id: u32, app_id: u32, owner: ClientIdentity, mode: DisplayMode) -> Self {
        Self {
            id,
            app_id,
            owner,
            mode,
            connected: false,
            address: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            slot: 0,
            phase: Phase::Connecting,
            since: None,
            admitted: None,
        }
    }

    /// The management API's row for this session; `stream` holds the running stream's
    /// figures (`None` before PLAY).
    pub fn live(&self, now: Instant, stream: Option<&StreamFigures>) -> LiveSession {
        let state = match (self.phase, stream) {
            (Phase::Streaming, Some(f)) if f.media_flowing && self.connected => {
                LiveState::Streaming
            }
            (Phase::Streaming, _) if !self.connected => LiveState::Disconnected,
            _ => LiveState::Connecting,
        };
        LiveSession {
            protocol: Protocol::Gamestream,
            id: self.id.to_string(),
            client: LiveClient {
                id: self.owner.id.clone(),
                name: self.owner.name.clone(),
            },
            address: stream.and_then(|f| f.address),
            state,
            mode: LiveMode {
                width: self.mode.width,
                height: self.mode.height,
                fps: self.mode.fps,
            },
            codec: stream.map_or_else(|| "h264".to_owned(), |f| f.codec.clone()),
            bitrate_kbps: stream.map_or(0, |f| f.bitrate_kbps),
            frames_sent: stream.map_or(0, |f| f.frames_sent),
            loss_percent: stream.map_or(0.0, |f| f.loss_percent),
            fec_percent: stream.map_or(0, |f| f.fec_percent),
            age_s: self
                .since
                .map_or(0, |t| now.saturating_duration_since(t).as_secs()),
        }
    }
}

/// How the client should talk RTSP (`<sessionUrl0>` scheme, docs/gamestream-protocol-notes.md
/// "Launch").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RtspScheme {
    /// `rtsp://`: plain text.
    #[default]
    Plain,
    /// `rtspenc://`: AES-GCM with `rikey` (only for clients with `corever >= 1`).
    Encrypted,
}

/// A launch or resume that was admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionGrant {
    /// The session.
    pub session_id: u32,
    /// What `<sessionUrl0>` says.
    pub rtsp: RtspScheme,
}

/// Why a launch, resume or cancel was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The host streams to as many clients as its profile allows (`[sessions] max`).
    #[error("the host is busy: it streams to {max} clients already, its limit")]
    Full {
        /// The limit.
        max: usize,
    },
    /// Another client at the same address is between its launch and its RTSP handshake; the
    /// host could not tell their RTSP requests apart. A retry a moment later succeeds.
    #[error(
        "the host is busy: another client at {address} is connecting; try again in a few seconds"
    )]
    AddressBusy {
        /// The shared address.
        address: IpAddr,
    },
    /// The client's session runs another app; resume or quit it (as Sunshine reports it).
    #[error("an app is already running on this host; resume it or quit it first")]
    AlreadyRunning {
        /// The app.
        app_id: u32,
    },
    /// `/resume` without a session of this client.
    #[error("no running app to resume")]
    NothingToResume,
    /// The app id is not in the app list.
    #[error("unknown app {0}")]
    UnknownApp(u32),
    /// Starting the app or the stream failed (local resources, OS).
    #[error("could not start the stream: {0}")]
    Failed(String),
    /// The host requires encryption (`[sessions] require_encryption`) and the client cannot
    /// encrypt its RTSP (it did not send `corever=1`).
    #[error(
        "this host requires encryption; this client cannot encrypt its RTSP (update Moonlight)"
    )]
    EncryptionRequired,
}

impl SessionError {
    /// The `status_code` nvhttp answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            SessionError::Full { .. }
            | SessionError::AddressBusy { .. }
            | SessionError::NothingToResume => 503,
            SessionError::AlreadyRunning { .. } => 400,
            SessionError::EncryptionRequired => 403,
            SessionError::UnknownApp(_) => 404,
            SessionError::Failed(_) => 500,
        }
    }
}

/// What the table admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admitted {
    /// A new session.
    New {
        /// Its number.
        id: u32,
        /// Its port slot.
        slot: usize,
    },
    /// The client's own session, joined again (new keys; its stream restarts).
    Rejoin {
        /// Its number.
        id: u32,
        /// Its port slot.
        slot: usize,
    },
}

impl Admitted {
    /// The session's number.
    pub fn id(self) -> u32 {
        match self {
            Admitted::New { id, .. } | Admitted::Rejoin { id, .. } => id,
        }
    }

    /// The session's port slot.
    pub fn slot(self) -> usize {
        match self {
            Admitted::New { slot, .. } | Admitted::Rejoin { slot, .. } => slot,
        }
    }
}

/// The sessions of a host and the rules in the module table. Pure: the caller passes the
/// time, the streaming side tells it what happened ([`SessionTable::set_streaming`],
/// [`SessionTable::remove`]).
#[derive(Debug, Clone)]
pub struct SessionTable {
    sessions: Vec<SessionInfo>,
    next_id: u32,
    max: usize,
}

impl SessionTable {
    /// An empty table admitting at most `max` sessions (at least 1).
    pub fn new(max: usize) -> Self {
        Self {
            sessions: Vec::new(),
            next_id: 0,
            max: max.max(1),
        }
    }

    /// The limit.
    pub fn max(&self) -> usize {
        self.max
    }

    /// Every session, oldest first.
    pub fn sessions(&self) -> &[SessionInfo] {
        &self.sessions
    }

    /// `client`'s session.
    pub fn of_client(&self, client: &ClientIdentity) -> Option<&SessionInfo> {
        self.sessions.iter().find(|s| s.owner.id == client.id)
    }

    /// Session `id`.
    pub fn get_mut(&mut self, id: u32) -> Option<&mut SessionInfo> {
        self.sessions.iter_mut().find(|s| s.id == id)
    }

    /// Judges a `/launch` of `app_id` at `mode` by `client` from `address`.
    pub fn launch(
        &mut self,
        now: Instant,
        client: &ClientIdentity,
        address: IpAddr,
        app_id: u32,
        mode: DisplayMode,
    ) -> Result<Admitted, SessionError> {
        self.expire(now);
        let address = address.to_canonical();
        if let Some(s) = self.sessions.iter_mut().find(|s| s.owner.id == client.id) {
            if s.app_id != app_id {
                return Err(SessionError::AlreadyRunning { app_id: s.app_id });
            }
            s.rejoin(now, client, address, Some(mode));
            return Ok(Admitted::Rejoin {
                id: s.id,
                slot: s.slot,
            });
        }
        if self
            .sessions
            .iter()
            .any(|s| s.phase == Phase::Connecting && s.address == address)
        {
            return Err(SessionError::AddressBusy { address });
        }
        if self.sessions.len() >= self.max {
            return Err(SessionError::Full { max: self.max });
        }
        let slot = (0..)
            .find(|i| self.sessions.iter().all(|s| s.slot != *i))
            .unwrap_or(0);
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let id = self.next_id;
        let mut s = SessionInfo::new(id, app_id, client.clone(), mode);
        s.address = address;
        s.slot = slot;
        s.since = Some(now);
        s.admitted = Some(now);
        self.sessions.push(s);
        Ok(Admitted::New { id, slot })
    }

    /// Judges a `/resume` by `client` from `address` (with the mode it asks for, if any).
    pub fn resume(
        &mut self,
        now: Instant,
        client: &ClientIdentity,
        address: IpAddr,
        mode: Option<DisplayMode>,
    ) -> Result<Admitted, SessionError> {
        self.expire(now);
        let s = self
            .sessions
            .iter_mut()
            .find(|s| s.owner.id == client.id)
            .ok_or(SessionError::NothingToResume)?;
        s.rejoin(now, client, address.to_canonical(), mode);
        Ok(Admitted::Rejoin {
            id: s.id,
            slot: s.slot,
        })
    }

    /// Ends `client`'s session (`/cancel`, unpair); the one removed.
    pub fn cancel(&mut self, client: &ClientIdentity) -> Option<SessionInfo> {
        let i = self.sessions.iter().position(|s| s.owner.id == client.id)?;
        Some(self.sessions.remove(i))
    }

    /// Removes session `id` (its stream ended, or starting it failed).
    pub fn remove(&mut self, id: u32) -> Option<SessionInfo> {
        let i = self.sessions.iter().position(|s| s.id == id)?;
        Some(self.sessions.remove(i))
    }

    /// The streaming side reports session `id` streaming (`connected`: its control stream).
    pub fn set_streaming(&mut self, id: u32, connected: bool) {
        if let Some(s) = self.get_mut(id) {
            s.phase = Phase::Streaming;
            s.connected = connected;
        }
    }

    /// Drops the sessions still connecting [`CONNECT_DEADLINE`] after their last admission;
    /// the ones dropped (the caller frees their streaming side).
    pub fn expire(&mut self, now: Instant) -> Vec<SessionInfo> {
        let (gone, kept) = std::mem::take(&mut self.sessions)
            .into_iter()
            .partition(|s| {
                s.phase == Phase::Connecting
                    && s.admitted
                        .is_some_and(|t| now.saturating_duration_since(t) >= CONNECT_DEADLINE)
            });
        self.sessions = kept;
        gone
    }
}

impl SessionInfo {
    fn rejoin(
        &mut self,
        now: Instant,
        client: &ClientIdentity,
        address: IpAddr,
        mode: Option<DisplayMode>,
    ) {
        self.owner = client.clone();
        self.address = address;
        if let Some(mode) = mode {
            self.mode = mode;
        }
        self.phase = Phase::Connecting;
        self.connected = false;
        self.admitted = Some(now);
    }
}

/// What the streaming side implements. Methods are synchronous and may block (starting an
/// app can take seconds; Moonlight waits up to 120 s for `/launch`): the servers call them on
/// a blocking thread. Implementations must be cheap in [`SessionManager::status`], which
/// every `/serverinfo` calls.
pub trait SessionManager: Send + Sync + 'static {
    /// Starts `request.app_id` for `client` (whose request came from `address`) and prepares
    /// RTSP with the request's keys, as [`SessionTable::launch`] decides.
    fn launch(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError>;

    /// Reattaches `client` to its session with new keys ([`SessionTable::resume`]).
    fn resume(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: ResumeRequest,
    ) -> Result<SessionGrant, SessionError>;

    /// Stops `client`'s stream and quits its app (`/cancel`, or the client was unpaired).
    /// Succeeds when it has none; never touches another client's session.
    fn cancel(&self, client: &ClientIdentity) -> Result<(), SessionError>;

    /// `client`'s session, if it has one (what its `/serverinfo` reports).
    fn status(&self, client: &ClientIdentity) -> Option<SessionInfo>;

    /// Every session, oldest first.
    fn sessions(&self) -> Vec<SessionInfo>;

    /// How many sessions may run at once.
    fn max_sessions(&self) -> usize;

    /// Sends `msg` to session `session`'s client over its control stream (controller
    /// feedback: rumble, trigger rumble, motion-sensor state, LED, adaptive triggers). The
    /// error says why nothing was sent; a manager without streams sends nothing.
    fn send_to_client(
        &self,
        session: u32,
        msg: &crate::stream::control::HostMessage,
    ) -> Result<(), String> {
        let _ = msg;
        Err(format!("session {session}: this host runs no streams"))
    }

    /// The management API's rows (the streaming side adds its figures).
    fn live(&self) -> Vec<LiveSession> {
        let now = Instant::now();
        self.sessions().iter().map(|s| s.live(now, None)).collect()
    }
}

#[derive(Debug)]
struct MemoryState {
    table: SessionTable,
    last_launch: Option<LaunchRequest>,
    last_resume: Option<ResumeRequest>,
}

/// A [`SessionManager`] that only keeps books: a launch "runs" until cancelled. Tests use it
/// to see what nvhttp handed over.
#[derive(Debug)]
pub struct InMemorySessions {
    state: Mutex<MemoryState>,
}

impl Default for InMemorySessions {
    fn default() -> Self {
        Self::new()
    }
}

impl InMemorySessions {
    /// No session; at most 4 at once.
    pub fn new() -> Self {
        Self::with_max(4)
    }

    /// No session; at most `max` at once.
    pub fn with_max(max: usize) -> Self {
        Self {
            state: Mutex::new(MemoryState {
                table: SessionTable::new(max),
                last_launch: None,
                last_resume: None,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks session `id` as streaming (what the streaming side would report).
    pub fn set_streaming(&self, id: u32, connected: bool) {
        self.lock().table.set_streaming(id, connected);
    }

    /// The last admitted launch.
    pub fn last_launch(&self) -> Option<LaunchRequest> {
        self.lock().last_launch.clone()
    }

    /// The last admitted resume.
    pub fn last_resume(&self) -> Option<ResumeRequest> {
        self.lock().last_resume.clone()
    }
}

impl SessionManager for InMemorySessions {
    fn launch(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError> {
        let mut st = self.lock();
        let a = st.table.launch(
            Instant::now(),
            client,
            address,
            request.app_id,
            request.mode,
        )?;
        st.last_launch = Some(request);
        Ok(SessionGrant {
            session_id: a.id(),
            rtsp: RtspScheme::Plain,
        })
    }

    fn resume(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: ResumeRequest,
    ) -> Result<SessionGrant, SessionError> {
        let mut st = self.lock();
        let a = st
            .table
            .resume(Instant::now(), client, address, request.mode)?;
        st.last_resume = Some(request);
        Ok(SessionGrant {
            session_id: a.id(),
            rtsp: RtspScheme::Plain,
        })
    }

    fn cancel(&self, client: &ClientIdentity) -> Result<(), SessionError> {
        self.lock().table.cancel(client);
        Ok(())
    }

    fn status(&self, client: &ClientIdentity) -> Option<SessionInfo> {
        self.lock().table.of_client(client).cloned()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        self.lock().table.sessions().to_vec()
    }

    fn max_sessions(&self) -> usize {
        self.lock().table.max()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::query::Query;

    fn who(id: &str) -> ClientIdentity {
        ClientIdentity {
            id: id.into(),
            name: format!("client {id}"),
        }
    }

    fn ip(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
    }

    fn mode(width: u32, height: u32, fps: u32) -> DisplayMode {
        DisplayMode { width, height, fps }
    }

    fn launch() -> LaunchRequest {
        let q = Query::parse(
            "appid=1&mode=1280x720x60&localAudioPlayMode=0&rikey=00000000000000000000000000000000&rikeyid=1",
        )
        .unwrap();
        LaunchRequest::parse(&q).unwrap()
    }

    fn resume() -> ResumeRequest {
        let q = Query::parse("rikey=00000000000000000000000000000000&rikeyid=2").unwrap();
        ResumeRequest::parse(&q).unwrap()
    }

    #[test]
    fn clients_get_their_own_sessions_up_to_the_limit() {
        let now = Instant::now();
        let mut t = SessionTable::new(2);
        let (a, b, c) = (who("a"), who("b"), who("c"));
        let sa = t.launch(now, &a, ip(1), 1, mode(1280, 720, 60)).unwrap();
        assert_eq!(sa, Admitted::New { id: 1, slot: 0 });
        t.set_streaming(1, true);
        let sb = t.launch(now, &b, ip(2), 1, mode(854, 480, 30)).unwrap();
        assert_eq!(sb, Admitted::New { id: 2, slot: 1 });
        assert_eq!(t.of_client(&b).unwrap().mode, mode(854, 480, 30));
        // Beyond the limit: a clear refusal, nobody else's session touched.
        let e = t.launch(now, &c, ip(3), 1, mode(640, 360, 30)).unwrap_err();
        assert_eq!(e, SessionError::Full { max: 2 });
        assert_eq!(e.status_code(), 503);
        assert!(e.to_string().contains("2 clients"), "{e}");
        assert_eq!(t.sessions().len(), 2);
        // Cancel ends only the caller's session; the freed slot is reused.
        assert_eq!(t.cancel(&a).unwrap().id, 1);
        assert!(t.cancel(&c).is_none());
        assert_eq!(t.sessions().len(), 1);
        assert_eq!(
            t.launch(now, &c, ip(3), 1, mode(640, 360, 30)).unwrap(),
            Admitted::New { id: 3, slot: 0 }
        );
        assert_eq!(t.of_client(&b).unwrap().id, 2);
    }

    #[test]
    fn a_second_launch_or_a_resume_rejoins_the_clients_own_session() {
        let now = Instant::now();
        let mut t = SessionTable::new(4);
        let (a, b) = (who("a"), who("b"));
        assert_eq!(
            t.resume(now, &a, ip(1), None),
            Err(SessionError::NothingToResume)
        );
        t.launch(now, &a, ip(1), 1, mode(1280, 720, 60)).unwrap();
        t.set_streaming(1, true);
        t.launch(now, &b, ip(2), 1, mode(1280, 720, 60)).unwrap();
        let again = t.launch(now, &a, ip(1), 1, mode(1920, 1080, 120)).unwrap();
        assert_eq!(again, Admitted::Rejoin { id: 1, slot: 0 });
        let s = t.of_client(&a).unwrap();
        assert_eq!(
            (s.mode, s.phase),
            (mode(1920, 1080, 120), Phase::Connecting)
        );
        assert_eq!(
            t.launch(now, &a, ip(1), 7, mode(1280, 720, 60)),
            Err(SessionError::AlreadyRunning { app_id: 1 })
        );
        assert_eq!(
            t.resume(now, &b, ip(2), None).unwrap(),
            Admitted::Rejoin { id: 2, slot: 1 }
        );
        assert_eq!(t.sessions().len(), 2);
    }

    #[test]
    fn one_connecting_launch_per_address_and_stale_ones_expire() {
        let now = Instant::now();
        let mut t = SessionTable::new(4);
        let (a, b) = (who("a"), who("b"));
        t.launch(now, &a, ip(1), 1, mode(1280, 720, 60)).unwrap();
        // Same address while A is still in its RTSP handshake: the host could not tell the
        // two apart, so B waits.
        let e = t.launch(now, &b, ip(1), 1, mode(640, 360, 30)).unwrap_err();
        assert_eq!(e, SessionError::AddressBusy { address: ip(1) });
        assert_eq!(e.status_code(), 503);
        // Once A streams, B at the same address may launch.
        t.set_streaming(1, true);
        t.launch(now, &b, ip(1), 1, mode(640, 360, 30)).unwrap();
        // B never connects: dropped after the deadline, A kept.
        let later = now + CONNECT_DEADLINE;
        let gone = t.expire(later);
        assert_eq!(gone.iter().map(|s| s.id).collect::<Vec<_>>(), [2]);
        assert_eq!(t.sessions().len(), 1);
        // IPv4-mapped IPv6 is the same address.
        let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
        t.launch(later, &b, mapped, 1, mode(640, 360, 30)).unwrap();
        assert_eq!(t.of_client(&b).unwrap().address, ip(1));
    }

    #[test]
    fn live_rows_follow_the_session_and_its_stream() {
        let now = Instant::now();
        let mut t = SessionTable::new(4);
        t.launch(now, &who("a"), ip(1), 1, mode(854, 480, 30))
            .unwrap();
        let s = t.sessions()[0].clone();
        let row = s.live(now + Duration::from_secs(3), None);
        assert_eq!(row.state, LiveState::Connecting);
        assert_eq!((row.age_s, row.frames_sent, row.id.as_str()), (3, 0, "1"));
        t.set_streaming(1, true);
        let figures = StreamFigures {
            address: Some("192.0.2.1:5000".parse().unwrap()),
            codec: "h264".into(),
            bitrate_kbps: 6000,
            frames_sent: 90,
            loss_percent: 5.0,
            fec_percent: 20,
            media_flowing: true,
        };
        let row = t.sessions()[0].live(now, Some(&figures));
        assert_eq!(row.state, LiveState::Streaming);
        assert_eq!((row.frames_sent, row.fec_percent), (90, 20));
        assert_eq!(row.mode.fps, 30);
        t.set_streaming(1, false);
        assert_eq!(
            t.sessions()[0].live(now, Some(&figures)).state,
            LiveState::Disconnected
        );
    }

    #[test]
    fn in_memory_manager() {
        let m = InMemorySessions::with_max(1);
        let (a, b) = (who("a"), who("b"));
        assert_eq!(
            m.resume(&a, ip(1), resume()),
            Err(SessionError::NothingToResume)
        );
        let g = m.launch(&a, ip(1), launch()).unwrap();
        assert_eq!(g.session_id, 1);
        assert_eq!(m.status(&a).unwrap().owner, a);
        assert_eq!(m.status(&b), None);
        assert_eq!(m.last_launch().unwrap().stream.rikeyid, 1);
        m.set_streaming(1, true);
        assert_eq!(
            m.launch(&b, ip(2), launch()),
            Err(SessionError::Full { max: 1 })
        );
        assert_eq!(m.resume(&a, ip(1), resume()).unwrap().session_id, 1);
        assert_eq!(m.last_resume().unwrap().stream.rikeyid, 2);
        m.cancel(&b).unwrap();
        assert_eq!(m.sessions().len(), 1, "b's cancel leaves a's session alone");
        m.cancel(&a).unwrap();
        assert!(m.sessions().is_empty());
        assert_eq!(m.launch(&b, ip(2), launch()).unwrap().session_id, 2);
        assert_eq!(m.max_sessions(), 1);
    }
}
