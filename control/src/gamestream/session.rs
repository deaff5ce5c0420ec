//! The seam between nvhttp and streaming: [`SessionManager`], and the admission rules every
//! implementation applies ([`admit`]).
//!
//! nvhttp authenticates the client, parses `/launch`/`/resume` into typed requests and hands
//! them here; the RTSP/streaming side implements [`SessionManager`] (start the app, prepare
//! the RTSP listener on [`Ports::rtsp`](super::ports::Ports::rtsp) with the request's keys) and
//! reports the running session back through [`SessionManager::status`], which `/serverinfo`
//! turns into `state`/`currentgame`.
//!
//! One session at a time. What [`admit`] decides:
//!
//! | request  | no session        | session of the same client | session of another client       |
//! |----------|-------------------|----------------------------|---------------------------------|
//! | launch   | yes               | `AlreadyRunning` (400)     | `Busy` (503) if it is connected, else `AlreadyRunning` |
//! | resume   | `NothingToResume` (503) | yes                  | `Busy` (503) if it is connected, else yes (takes over) |
//! | cancel   | yes (no-op)       | yes                        | yes: any paired client may quit the app, as in Sunshine |
//!
//! The status codes go into the XML `status_code` (Sunshine answers a second launch with 400
//! "An app is already running", a resume without an app with 503). Moonlight shows the
//! message; a client that sees `SUNSHINE_SERVER_BUSY` with a `currentgame` offers "resume" or
//! "quit", which is what the user should do.

use std::sync::Mutex;

use serde::Serialize;

use super::launch::{DisplayMode, LaunchRequest, ResumeRequest};

/// The paired client behind a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ClientIdentity {
    /// Its id (first 16 hex digits of the certificate fingerprint).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// The running session, as the streaming side reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct SessionInfo {
    /// Session number, counting up from 1 (`<gamesession>` is always 1, as in Sunshine).
    pub id: u32,
    /// The app running.
    pub app_id: u32,
    /// The client that launched or last resumed it.
    pub owner: ClientIdentity,
    /// The stream's mode.
    pub mode: DisplayMode,
    /// Whether a client is attached to the stream right now. While false (the client went
    /// away and the app keeps running), another paired client may resume.
    pub connected: bool,
}

impl SessionInfo {
    /// A session of `app_id` for `owner`.
    pub fn new(id: u32, app_id: u32, owner: ClientIdentity, mode: DisplayMode) -> Self {
        Self {
            id,
            app_id,
            owner,
            mode,
            connected: true,
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
    /// Another client is streaming (resource: one session at a time).
    #[error("the host is busy streaming to {owner}")]
    Busy {
        /// Name of the client streaming.
        owner: String,
    },
    /// An app already runs; resume or quit it (client misuse, as Sunshine reports it).
    #[error("an app is already running on this host; resume it or quit it first")]
    AlreadyRunning {
        /// The app.
        app_id: u32,
    },
    /// `/resume` with nothing running.
    #[error("no running app to resume")]
    NothingToResume,
    /// The app id is not in the app list.
    #[error("unknown app {0}")]
    UnknownApp(u32),
    /// Starting the app or the stream failed (local resources, OS).
    #[error("could not start the stream: {0}")]
    Failed(String),
}

impl SessionError {
    /// The `status_code` nvhttp answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            SessionError::Busy { .. } | SessionError::NothingToResume => 503,
            SessionError::AlreadyRunning { .. } => 400,
            SessionError::UnknownApp(_) => 404,
            SessionError::Failed(_) => 500,
        }
    }
}

/// Which request [`admit`] judges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// `/launch`.
    Launch,
    /// `/resume`.
    Resume,
}

/// The one-session rules (see the module table). Pure; implementations of
/// [`SessionManager`] call it under their own lock so two requests cannot both pass.
pub fn admit(
    current: Option<&SessionInfo>,
    client: &ClientIdentity,
    request: Admission,
) -> Result<(), SessionError> {
    match (request, current) {
        (Admission::Launch, None) => Ok(()),
        (Admission::Launch, Some(s)) if s.owner.id != client.id && s.connected => {
            Err(SessionError::Busy {
                owner: s.owner.name.clone(),
            })
        }
        (Admission::Launch, Some(s)) => Err(SessionError::AlreadyRunning { app_id: s.app_id }),
        (Admission::Resume, None) => Err(SessionError::NothingToResume),
        (Admission::Resume, Some(s)) if s.owner.id != client.id && s.connected => {
            Err(SessionError::Busy {
                owner: s.owner.name.clone(),
            })
        }
        (Admission::Resume, Some(_)) => Ok(()),
    }
}

/// What the streaming side implements. Methods are synchronous and may block (starting an
/// app can take seconds; Moonlight waits up to 120 s for `/launch`): the servers call them on
/// a blocking thread. Implementations must be cheap in [`SessionManager::status`], which
/// every `/serverinfo` calls.
pub trait SessionManager: Send + Sync + 'static {
    /// Starts `request.app_id` for `client` and prepares RTSP with the request's keys.
    /// Must apply [`admit`] with [`Admission::Launch`] atomically with starting.
    fn launch(
        &self,
        client: &ClientIdentity,
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError>;

    /// Reattaches `client` to the running app with new keys. Must apply [`admit`] with
    /// [`Admission::Resume`].
    fn resume(
        &self,
        client: &ClientIdentity,
        request: ResumeRequest,
    ) -> Result<SessionGrant, SessionError>;

    /// Stops the stream and quits the app (`/cancel`, or the client was unpaired). Succeeds
    /// when nothing runs.
    fn cancel(&self, client: &ClientIdentity) -> Result<(), SessionError>;

    /// The running session, if any.
    fn status(&self) -> Option<SessionInfo>;

    /// The running stream's own counters (zero at its start), if a stream runs.
    fn stream_stats(&self) -> Option<crate::stream::session::SessionStats> {
        None
    }
}

#[derive(Debug, Default)]
struct MemoryState {
    current: Option<SessionInfo>,
    next_id: u32,
    last_launch: Option<LaunchRequest>,
    last_resume: Option<ResumeRequest>,
}

/// A [`SessionManager`] that only keeps books: a launch "runs" until cancelled. The host
/// uses it until the RTSP/streaming side exists; tests use it to see what nvhttp handed over.
#[derive(Debug, Default)]
pub struct InMemorySessions {
    state: Mutex<MemoryState>,
}

impl InMemorySessions {
    /// No session.
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MemoryState> {
        // A panic while holding this lock leaves plain data behind; keep using it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Marks the client of the running session as attached or gone (what the streaming side
    /// would report).
    pub fn set_connected(&self, connected: bool) {
        if let Some(s) = self.lock().current.as_mut() {
            s.connected = connected;
        }
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
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError> {
        let mut st = self.lock();
        admit(st.current.as_ref(), client, Admission::Launch)?;
        st.next_id += 1;
        let id = st.next_id;
        st.current = Some(SessionInfo::new(
            id,
            request.app_id,
            client.clone(),
            request.mode,
        ));
        st.last_launch = Some(request);
        Ok(SessionGrant {
            session_id: id,
            rtsp: RtspScheme::Plain,
        })
    }

    fn resume(
        &self,
        client: &ClientIdentity,
        request: ResumeRequest,
    ) -> Result<SessionGrant, SessionError> {
        let mut st = self.lock();
        admit(st.current.as_ref(), client, Admission::Resume)?;
        let id = match st.current.as_mut() {
            Some(s) => {
                s.owner = client.clone();
                s.connected = true;
                if let Some(mode) = request.mode {
                    s.mode = mode;
                }
                s.id
            }
            None => return Err(SessionError::NothingToResume),
        };
        st.last_resume = Some(request);
        Ok(SessionGrant {
            session_id: id,
            rtsp: RtspScheme::Plain,
        })
    }

    fn cancel(&self, _client: &ClientIdentity) -> Result<(), SessionError> {
        self.lock().current = None;
        Ok(())
    }

    fn status(&self) -> Option<SessionInfo> {
        self.lock().current.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::launch::StreamParams;
    use crate::gamestream::query::Query;

    fn who(id: &str) -> ClientIdentity {
        ClientIdentity {
            id: id.into(),
            name: format!("client {id}"),
        }
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
    fn admission_table() {
        let (a, b) = (who("a"), who("b"));
        let mode = launch().mode;
        let mut s = SessionInfo::new(1, 1, a.clone(), mode);
        assert_eq!(admit(None, &a, Admission::Launch), Ok(()));
        assert_eq!(
            admit(None, &a, Admission::Resume),
            Err(SessionError::NothingToResume)
        );
        assert_eq!(
            admit(Some(&s), &a, Admission::Launch),
            Err(SessionError::AlreadyRunning { app_id: 1 })
        );
        assert_eq!(admit(Some(&s), &a, Admission::Resume), Ok(()));
        assert_eq!(
            admit(Some(&s), &b, Admission::Launch),
            Err(SessionError::Busy {
                owner: "client a".into()
            })
        );
        assert!(matches!(
            admit(Some(&s), &b, Admission::Resume),
            Err(SessionError::Busy { .. })
        ));
        s.connected = false;
        assert_eq!(
            admit(Some(&s), &b, Admission::Launch),
            Err(SessionError::AlreadyRunning { app_id: 1 })
        );
        assert_eq!(admit(Some(&s), &b, Admission::Resume), Ok(()));
    }

    #[test]
    fn in_memory_manager() {
        let m = InMemorySessions::new();
        let (a, b) = (who("a"), who("b"));
        assert_eq!(m.resume(&a, resume()), Err(SessionError::NothingToResume));
        let g = m.launch(&a, launch()).unwrap();
        assert_eq!(g.session_id, 1);
        assert_eq!(m.status().unwrap().owner, a);
        assert_eq!(m.last_launch().unwrap().stream.rikeyid, 1);
        assert!(matches!(
            m.launch(&b, launch()),
            Err(SessionError::Busy { .. })
        ));
        m.set_connected(false);
        assert_eq!(m.resume(&b, resume()).unwrap().session_id, 1);
        assert_eq!(m.status().unwrap().owner, b);
        let _: &StreamParams = &m.last_resume().unwrap().stream;
        m.cancel(&a).unwrap();
        assert_eq!(m.status(), None);
        assert_eq!(m.launch(&b, launch()).unwrap().session_id, 2);
    }
}
