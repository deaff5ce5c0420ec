//! The host's [`SessionManager`]: nvhttp's launch/resume/cancel drive the streaming side
//! ([`StreamHost`]), one slot per session, as the pure [`SessionTable`] decides.
//!
//! ```text
//! /launch  ─► SessionTable::launch ─► StreamHost::prepare(keys, address, port slot) ─► RTSP ─► stream
//! /resume  ─► SessionTable::resume ─► StreamHost::prepare(new keys)   (its running stream ends first)
//! /cancel  ─► SessionTable::cancel ─► StreamHost::stop_session(id)     (that client gets 0x0109)
//! client silent 8 s / ENet disconnect ─► its stream ends ─► refresh finds the slot gone ─► removed
//! ```
//!
//! Each call first brings the table in line with the streaming side (`StreamingSessions::refresh`):
//! streams that ended on their own free their sessions, sessions that never connected expire.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::Instant;

use crate::gamestream::launch::{LaunchRequest, ResumeRequest, StreamParams};
use crate::gamestream::session::{
    Admitted, ClientIdentity, Phase, RtspScheme, SessionError, SessionGrant, SessionInfo,
    SessionManager, SessionTable,
};
use crate::live::LiveSession;
use crate::stream::session::{LaunchSpec, StreamHost, StreamState};

/// Sessions backed by the real streaming side.
#[derive(Debug)]
pub struct StreamingSessions {
    host: StreamHost,
    table: Mutex<SessionTable>,
    /// App id → command started in the session's desktop (`settings.json` apps).
    commands: HashMap<u32, Vec<String>>,
    /// `[sessions] require_encryption`: refuse clients that cannot encrypt RTSP.
    require_encryption: bool,
}

impl StreamingSessions {
    /// Sessions over `host`, at most `max` at once (`[sessions] max` of the profile).
    pub fn new(host: StreamHost, max: usize) -> Self {
        Self {
            host,
            table: Mutex::new(SessionTable::new(max)),
            commands: HashMap::new(),
            require_encryption: false,
        }
    }

    /// Refuses launches of clients that cannot encrypt RTSP (`[sessions] require_encryption`;
    /// the RTSP handshake refuses those that do not turn on control, video and audio
    /// encryption).
    pub fn with_required_encryption(mut self, required: bool) -> Self {
        self.require_encryption = required;
        self
    }

    /// Starts each app's command (by app id) in the desktop of the sessions that launch it.
    pub fn with_app_commands(mut self, commands: HashMap<u32, Vec<String>>) -> Self {
        self.commands = commands;
        self
    }

    /// The streaming side (counters, state).
    pub fn stream_host(&self) -> &StreamHost {
        &self.host
    }

    /// Gives the streaming side back (to shut it down).
    pub fn into_stream_host(self) -> StreamHost {
        self.host
    }

    fn table(&self) -> std::sync::MutexGuard<'_, SessionTable> {
        self.table
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Brings the table in line with the streaming side: a session whose slot is gone (its
    /// stream ended: the client went away) is removed, a running stream marks its session
    /// streaming, and sessions that never finished their handshake expire.
    fn refresh(&self, table: &mut SessionTable, now: Instant) {
        let ids: Vec<u32> = table.sessions().iter().map(|s| s.id).collect();
        for id in ids {
            match self.host.state(id) {
                StreamState::Streaming { connected, .. } => table.set_streaming(id, connected),
                StreamState::Idle => {
                    if let Some(s) = table.remove(id) {
                        tracing::info!(session = id, client = %s.owner.name, "session freed: client gone");
                    }
                }
                StreamState::Prepared { .. } => {}
            }
        }
        for s in table.expire(now) {
            self.host.stop_session(s.id, false);
            tracing::info!(session = s.id, client = %s.owner.name,
                "session dropped: no RTSP handshake within the deadline");
        }
    }

    /// Prepares the streaming side for an admitted launch or resume; a failure removes a
    /// new session again.
    fn prepare(
        &self,
        table: &mut SessionTable,
        admitted: Admitted,
        address: IpAddr,
        stream: &StreamParams,
    ) -> Result<SessionGrant, SessionError> {
        let app_id = table
            .sessions()
            .iter()
            .find(|s| s.id == admitted.id())
            .map_or(0, |s| s.app_id);
        // Clients with `corever >= 1` can encrypt RTSP: they get `rtspenc://`.
        let rtsp_encrypted = stream.corever >= 1;
        if self.require_encryption && !rtsp_encrypted {
            table.remove(admitted.id());
            return Err(SessionError::EncryptionRequired);
        }
        let spec = LaunchSpec {
            session_id: admitted.id(),
            rikey: stream.rikey.0,
            rikeyid: stream.rikeyid as u32,
            client: address.to_canonical(),
            slot: admitted.slot(),
            command: self.commands.get(&app_id).cloned().unwrap_or_default(),
            rtsp_encrypted,
        };
        if let Err(e) = self.host.prepare(spec) {
            table.remove(admitted.id());
            return Err(SessionError::Failed(format!(
                "binding the stream's sockets: {e}"
            )));
        }
        Ok(SessionGrant {
            session_id: admitted.id(),
            rtsp: if rtsp_encrypted {
                RtspScheme::Encrypted
            } else {
                RtspScheme::Plain
            },
        })
    }
}

impl SessionManager for StreamingSessions {
    fn launch(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: LaunchRequest,
    ) -> Result<SessionGrant, SessionError> {
        let now = Instant::now();
        let mut table = self.table();
        self.refresh(&mut table, now);
        let admitted = table.launch(now, client, address, request.app_id, request.mode)?;
        let grant = self.prepare(&mut table, admitted, address, &request.stream)?;
        tracing::info!(session = admitted.id(), slot = admitted.slot(), client = %client.name,
            app = request.app_id,
            rejoin = matches!(admitted, Admitted::Rejoin { .. }),
            mode = %format!("{}x{}@{}", request.mode.width, request.mode.height, request.mode.fps),
            sessions = table.sessions().len(), max = table.max(),
            "launch");
        Ok(grant)
    }

    fn resume(
        &self,
        client: &ClientIdentity,
        address: IpAddr,
        request: ResumeRequest,
    ) -> Result<SessionGrant, SessionError> {
        let now = Instant::now();
        let mut table = self.table();
        self.refresh(&mut table, now);
        let admitted = table.resume(now, client, address, request.mode)?;
        let grant = self.prepare(&mut table, admitted, address, &request.stream)?;
        tracing::info!(session = admitted.id(), client = %client.name, "resume");
        Ok(grant)
    }

    fn cancel(&self, client: &ClientIdentity) -> Result<(), SessionError> {
        let mut table = self.table();
        if let Some(s) = table.cancel(client) {
            self.host.stop_session(s.id, true);
            tracing::info!(session = s.id, client = %client.name, "cancel: app quit");
        }
        Ok(())
    }

    fn status(&self, client: &ClientIdentity) -> Option<SessionInfo> {
        let mut table = self.table();
        self.refresh(&mut table, Instant::now());
        table.of_client(client).cloned()
    }

    fn sessions(&self) -> Vec<SessionInfo> {
        let mut table = self.table();
        self.refresh(&mut table, Instant::now());
        table.sessions().to_vec()
    }

    fn max_sessions(&self) -> usize {
        self.table().max()
    }

    fn send_to_client(
        &self,
        session: u32,
        msg: &crate::stream::control::HostMessage,
    ) -> Result<(), String> {
        self.host.send_to_client(session, msg)
    }

    fn live(&self) -> Vec<LiveSession> {
        let now = Instant::now();
        self.sessions()
            .iter()
            .map(|s| {
                let figures = match s.phase {
                    Phase::Streaming => self.host.figures(s.id),
                    Phase::Connecting => None,
                };
                s.live(now, figures.as_ref())
            })
            .collect()
    }
}
