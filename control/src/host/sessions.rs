//! The host's [`SessionManager`]: nvhttp's launch/resume/cancel drive the streaming side
//! ([`StreamHost`]), one session at a time.
//!
//! ```text
//! /launch  ─► admit ─► StreamHost::prepare(keys) ─► RTSP handshake ─► stream
//! /resume  ─► admit ─► StreamHost::prepare(new keys)   (a running stream is terminated first)
//! /cancel  ─► StreamHost::stop_stream(terminate)       (client gets 0x0109)
//! client silent 10 s / ENet disconnect ─► stream ends ─► status() finds it gone ─► FREE
//! ```

use std::sync::Mutex;

use crate::gamestream::launch::{LaunchRequest, ResumeRequest};
use crate::gamestream::session::{
    Admission, ClientIdentity, RtspScheme, SessionError, SessionGrant, SessionInfo, SessionManager,
    admit,
};
use crate::stream::session::{LaunchSpec, StreamHost, StreamState};

#[derive(Debug, Default)]
struct Books {
    current: Option<SessionInfo>,
    next_id: u32,
    /// The stream of the current session has been seen running (so a later `Idle` means the
    /// client went away, not that it has yet to connect).
    streamed: bool,
}

/// Sessions backed by the real streaming side.
#[derive(Debug)]
pub struct StreamingSessions {
    host: StreamHost,
    books: Mutex<Books>,
}

impl StreamingSessions {
    /// Sessions over `host`.
    pub fn new(host: StreamHost) -> Self {
        Self {
            host,
            books: Mutex::new(Books::default()),
        }
    }

    /// The streaming side (counters, state).
    pub fn stream_host(&self) -> &StreamHost {
        &self.host
    }

    /// Gives the streaming side back (to shut it down).
    pub fn into_stream_host(self) -> StreamHost {
        self.host
    }

    fn books(&self) -> std::sync::MutexGuard<'_, Books> {
        self.books
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the books in line with the streaming side: a stream that ended on its own (the
    /// client vanished) frees the session.
    fn refresh(&self, books: &mut Books) {
        match self.host.state() {
            StreamState::Streaming { connected, .. } => {
                books.streamed = true;
                if let Some(s) = books.current.as_mut() {
                    s.connected = connected;
                }
            }
            StreamState::Idle if books.streamed => {
                if let Some(s) = books.current.take() {
                    tracing::info!(session = s.id, client = %s.owner.name, "session freed: client gone");
                }
                books.streamed = false;
            }
            StreamState::Prepared { .. } | StreamState::Idle => {}
        }
    }

    fn spec(id: u32, stream: &crate::gamestream::launch::StreamParams) -> LaunchSpec {
        LaunchSpec {
            session_id: id,
            rikey: stream.rikey.0,
            rikeyid: stream.rikeyid as u32,
        }
    }
}

impl SessionManager for StreamingSessions {
    fn launch(
        &self,
        client: &ClientIdentity,
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError> {
        let mut books = self.books();
        self.refresh(&mut books);
        admit(books.current.as_ref(), client, Admission::Launch)?;
        books.next_id += 1;
        let id = books.next_id;
        self.host.prepare(Self::spec(id, &request.stream));
        books.streamed = false;
        books.current = Some(SessionInfo::new(
            id,
            request.app_id,
            client.clone(),
            request.mode,
        ));
        tracing::info!(session = id, client = %client.name, app = request.app_id,
            mode = %format!("{}x{}@{}", request.mode.width, request.mode.height, request.mode.fps),
            "launch");
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
        let mut books = self.books();
        self.refresh(&mut books);
        admit(books.current.as_ref(), client, Admission::Resume)?;
        let s = books
            .current
            .as_mut()
            .ok_or(SessionError::NothingToResume)?;
        s.owner = client.clone();
        if let Some(mode) = request.mode {
            s.mode = mode;
        }
        let id = s.id;
        self.host.prepare(Self::spec(id, &request.stream));
        books.streamed = false;
        tracing::info!(session = id, client = %client.name, "resume");
        Ok(SessionGrant {
            session_id: id,
            rtsp: RtspScheme::Plain,
        })
    }

    fn cancel(&self, client: &ClientIdentity) -> Result<(), SessionError> {
        let mut books = self.books();
        self.host.stop_stream(true);
        if let Some(s) = books.current.take() {
            tracing::info!(session = s.id, by = %client.name, "cancel: app quit");
        }
        books.streamed = false;
        Ok(())
    }

    fn status(&self) -> Option<SessionInfo> {
        let mut books = self.books();
        self.refresh(&mut books);
        books.current.clone()
    }

    fn stream_stats(&self) -> Option<crate::stream::session::SessionStats> {
        self.host.session_stats()
    }
}
