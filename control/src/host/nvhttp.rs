//! The nvhttp servers: plain HTTP on the base port and mutual TLS on base−5, one request per
//! connection (Moonlight disables keep-alive; docs/gamestream-protocol-notes.md
//! "nvhttp transport").
//!
//! ```text
//! accept ─► listen::serve (limits: 256 connections, evict oldest half-open; 5 s total for
//!          TLS handshake + request; 10 s to write the response)
//!        ─► [TLS handshake, any client cert] ─► hyper http1 (keep-alive off, 64 KiB buffer)
//!        ─► gamestream::nvhttp::decide ─► Action ─► execute here:
//!            ServerInfo/AppList/AppAsset   render from HostInfo + SessionManager::status
//!            Pair*                          Pairing (under a mutex) + hold phase 1 for the PIN
//!            Launch/Resume/Cancel           SessionManager on a blocking thread
//! ```
//!
//! Pairing phase 1 parks its request on a oneshot channel (one per waiting pairing) until the
//! pairing machine delivers the PIN ([`NvHttp::submit_pin`] from the management API, or an
//! operator-first window handing it out), the PIN timeout passes, the operator cancels it, or
//! the client goes away (the request future is dropped, which ends the pairing). Everything
//! the client sent is parsed and decided by the pure modules (`gamestream::pairing`, with the
//! window and backoff of `pairing_window`); this file only moves bytes and waits.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio_rustls::TlsAcceptor;

use crate::gamestream::cert::Certificate;
use crate::gamestream::clients::PairedClient;
use crate::gamestream::identity::HostIdentity;
use crate::gamestream::nvhttp::{
    self as decide_nvhttp, Action, Connection, HostInfo, Reply, Transport,
};
use crate::gamestream::pairing::{
    Pairing, PairingError, PairingEvent, PairingStats, PairingStatus, PinArmed, Ticket,
};
use crate::gamestream::session::{SessionError, SessionManager};
use crate::gamestream::xml::Xml;

use crate::limits::{Close, LimitsConfig, Listener, ListenerRegistry};

use super::listen::{self, Progress};
use super::store::ClientStore;

/// How long `/api/pin` waits for the pairing to finish after delivering the PIN.
pub const PIN_OUTCOME_WAIT: Duration = Duration::from_secs(30);

/// How a pairing that was given a PIN ended, as far as the PIN's sender can tell.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum PinOutcome {
    /// The client is paired and stored.
    Paired(PairedClient),
    /// The pairing failed (wrong PIN, client gave up, timeout, storage error).
    Failed(String),
    /// Still under way after [`PIN_OUTCOME_WAIT`].
    Pending,
    /// No client was waiting: the window is armed for the next client that pairs.
    Armed,
}

/// Why a PIN was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// Not 4 digits (caller misuse).
    #[error("the PIN must be 4 digits")]
    InvalidPin,
    /// `--to` names no waiting pairing.
    #[error("{0}")]
    NoSuchPairing(PairingError),
    /// Several clients wait, or another pairing holds the PIN.
    #[error("{0}")]
    Conflict(PairingError),
}

#[derive(Default)]
struct PairingWaiters {
    /// The held phase-1 requests, by pairing.
    pin: HashMap<Ticket, oneshot::Sender<Result<(), PairingError>>>,
    /// Callers of `submit_pin` waiting for the end.
    outcome: Vec<(Ticket, oneshot::Sender<PinOutcome>)>,
}

/// How often refused pairing requests are summed up in the log, at most.
const REFUSAL_SUMMARY_EVERY: Duration = Duration::from_secs(10);

struct PairingHost {
    machine: Pairing,
    waiters: PairingWaiters,
    /// The counters as last logged.
    logged: PairingStats,
    /// When refusals were last summed up.
    last_summary: Option<Instant>,
    /// When a newcomer that evicted a waiting pairing was last announced at warn level.
    last_announced_eviction: Option<Instant>,
}

impl PairingHost {
    /// Wakes held phase-1 requests whose pairing got the PIN, and tells everyone waiting on
    /// pairings that ended.
    fn drain(&mut self) {
        while let Some(event) = self.machine.poll_event() {
            match event {
                PairingEvent::PinDelivered { ticket } => {
                    let woke = self
                        .waiters
                        .pin
                        .remove(&ticket)
                        .is_some_and(|tx| tx.send(Ok(())).is_ok());
                    if woke {
                        tracing::info!(ticket = ticket.0, "PIN delivered");
                    } else {
                        // Its request is gone: nobody can continue this pairing.
                        self.machine.abort(ticket, PairingError::Cancelled);
                    }
                }
                PairingEvent::Failed { ticket, error } => {
                    match &error {
                        PairingError::WrongPin
                        | PairingError::Abandoned
                        | PairingError::BadSignature => {
                            let left = self.machine.status(Instant::now()).window.failures_left;
                            tracing::warn!(
                                ticket = ticket.0,
                                %error,
                                failures_left = left,
                                "pairing failed: counts as a wrong PIN"
                            );
                        }
                        // A flood evicts one per request: counted, and summed up below.
                        PairingError::Replaced => {
                            tracing::debug!(ticket = ticket.0, %error, "pairing evicted")
                        }
                        _ => tracing::info!(ticket = ticket.0, %error, "pairing ended"),
                    }
                    if let Some(tx) = self.waiters.pin.remove(&ticket) {
                        let _ = tx.send(Err(error.clone()));
                    }
                    self.resolve(ticket, PinOutcome::Failed(error.to_string()));
                }
            }
        }
        self.log_counters(Instant::now());
    }

    /// Logs a closed window at once, and refused requests and evicted waiting pairings as one
    /// summary line at most every [`REFUSAL_SUMMARY_EVERY`] (each is only a debug line: a
    /// flood of them must not flood the log).
    fn log_counters(&mut self, now: Instant) {
        let s = self.machine.stats();
        if s.windows_exhausted > self.logged.windows_exhausted {
            tracing::warn!(
                "pairing window closed after too many wrong PINs: new pairings are refused \
                 until you run `punktfunk pin PIN` (or `punktfunk pairing --close`)"
            );
            self.logged.windows_exhausted = s.windows_exhausted;
        }
        let refused = |x: &PairingStats| {
            x.refused_backoff + x.refused_closed + x.refused_busy + x.refused_malformed + x.evicted
        };
        let due = self
            .last_summary
            .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_SUMMARY_EVERY);
        if refused(&s) > refused(&self.logged) && due {
            let l = self.logged;
            tracing::info!(
                backing_off = s.refused_backoff - l.refused_backoff,
                window_closed = s.refused_closed - l.refused_closed,
                busy = s.refused_busy - l.refused_busy,
                malformed = s.refused_malformed - l.refused_malformed,
                evicted = s.evicted - l.evicted,
                "pairing requests refused, and waiting pairings evicted from the full waiting \
                 list, since the last summary"
            );
            self.logged = s;
            self.last_summary = Some(now);
        }
    }

    fn resolve(&mut self, ticket: Ticket, outcome: PinOutcome) {
        let waiters = std::mem::take(&mut self.waiters.outcome);
        for (t, tx) in waiters {
            if t == ticket {
                let _ = tx.send(outcome.clone());
            } else {
                self.waiters.outcome.push((t, tx));
            }
        }
    }
}

/// The state both nvhttp listeners (and the management API) share.
pub struct NvHttp {
    info: HostInfo,
    identity: Arc<HostIdentity>,
    pairing: Mutex<PairingHost>,
    clients: Arc<ClientStore>,
    sessions: Arc<dyn SessionManager>,
    boxart: Vec<u8>,
    pin_timeout: Duration,
    limits: LimitsConfig,
    listeners: Arc<ListenerRegistry>,
}

impl std::fmt::Debug for NvHttp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NvHttp")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Ends a held phase-1 pairing if its request goes away before an answer.
struct AbortOnDrop {
    ctx: Arc<NvHttp>,
    ticket: Ticket,
    armed: bool,
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if self.armed {
            let mut p = self.ctx.lock_pairing();
            p.waiters.pin.remove(&self.ticket);
            p.machine.abort(self.ticket, PairingError::Cancelled);
            p.drain();
        }
    }
}

impl NvHttp {
    /// Shared state for the servers. `pairing` is a fresh machine over `identity`.
    pub fn new(
        info: HostInfo,
        identity: Arc<HostIdentity>,
        pairing: Pairing,
        clients: Arc<ClientStore>,
        sessions: Arc<dyn SessionManager>,
        pin_timeout: Duration,
    ) -> Self {
        Self {
            info,
            identity,
            pairing: Mutex::new(PairingHost {
                machine: pairing,
                waiters: PairingWaiters::default(),
                logged: PairingStats::default(),
                last_summary: None,
                last_announced_eviction: None,
            }),
            clients,
            sessions,
            boxart: crate::gamestream::boxart::app_png(),
            pin_timeout,
            limits: LimitsConfig::default(),
            listeners: Arc::default(),
        }
    }

    /// Registers this host's listeners (nvhttp, nvhttps, api) in `listeners` instead of a
    /// registry of their own, so that one `/api/status` shows them with RTSP's.
    #[must_use]
    pub fn with_listeners(mut self, listeners: Arc<ListenerRegistry>) -> Self {
        self.listeners = listeners;
        self
    }

    /// Connection limits of the nvhttp listeners (tests lower them).
    #[must_use]
    pub fn with_limits(mut self, limits: LimitsConfig) -> Self {
        self.limits = limits;
        self
    }

    /// The connection limits of each nvhttp listener.
    pub fn limits(&self) -> LimitsConfig {
        self.limits
    }

    /// The listeners and their connection counters.
    pub fn listeners(&self) -> &Arc<ListenerRegistry> {
        &self.listeners
    }

    fn lock_pairing(&self) -> MutexGuard<'_, PairingHost> {
        // The pairing state stays consistent across a panic in another request (every
        // transition is a single assignment); keep serving.
        self.pairing.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What `/serverinfo` says about the host.
    pub fn info(&self) -> &HostInfo {
        &self.info
    }

    /// The paired clients.
    pub fn clients(&self) -> &Arc<ClientStore> {
        &self.clients
    }

    /// The session manager.
    pub fn sessions(&self) -> &Arc<dyn SessionManager> {
        &self.sessions
    }

    /// Where pairing stands: the window, the waiting and the active pairing, the counters.
    pub fn pairing_status(&self) -> PairingStatus {
        let mut p = self.lock_pairing();
        let status = p.machine.status(Instant::now());
        p.drain();
        status
    }

    /// The operator's PIN (with a name for the client): arms the window and delivers the PIN
    /// to the waiting pairing `to` (or the only one waiting), then waits up to
    /// [`PIN_OUTCOME_WAIT`] for that pairing to end. With nobody waiting the window is armed
    /// for the next client ([`PinOutcome::Armed`]).
    pub async fn submit_pin(
        &self,
        pin: &str,
        name: Option<&str>,
        to: Option<Ticket>,
    ) -> Result<PinOutcome, PinError> {
        let rx = {
            let mut p = self.lock_pairing();
            let armed = p.machine.handle_pin(Instant::now(), pin, name, to);
            let ticket = match armed {
                Ok(PinArmed::Delivered(t)) => t,
                Ok(PinArmed::Armed) => {
                    tracing::warn!("pairing window armed by the operator for the next client");
                    return Ok(PinOutcome::Armed);
                }
                Err(PairingError::InvalidPin) => return Err(PinError::InvalidPin),
                Err(e @ PairingError::NoSuchPairing) => return Err(PinError::NoSuchPairing(e)),
                Err(e) => return Err(PinError::Conflict(e)),
            };
            let (tx, rx) = oneshot::channel();
            p.waiters.outcome.push((ticket, tx));
            p.drain();
            rx
        };
        Ok(match tokio::time::timeout(PIN_OUTCOME_WAIT, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => PinOutcome::Failed("pairing cancelled".into()),
            Err(_) => PinOutcome::Pending,
        })
    }

    /// The operator cancels pairing `ticket`; `false` if no such pairing is open.
    pub fn cancel_pairing(&self, ticket: Ticket) -> bool {
        let mut p = self.lock_pairing();
        let found = p.machine.cancel(Instant::now(), ticket);
        p.drain();
        if found {
            tracing::warn!(ticket = ticket.0, "pairing cancelled by the operator");
        }
        found
    }

    /// The operator closes the pairing window (an exhausted one stops refusing phase 1).
    pub fn close_pairing_window(&self) {
        let mut p = self.lock_pairing();
        p.machine.close_window();
        p.drain();
        tracing::info!("pairing window closed by the operator");
    }

    /// Handles one request: decide, then execute the action.
    pub async fn handle(
        self: &Arc<Self>,
        transport: Transport,
        local_ip: IpAddr,
        peer: IpAddr,
        client_fingerprint: Option<[u8; 32]>,
        path: &str,
        query: &str,
    ) -> Reply {
        let client = client_fingerprint.and_then(|fp| self.clients.authorize(&fp));
        let action = decide_nvhttp::decide(transport, path, query, client.as_ref());
        match action {
            Action::Reply(r) => r,
            Action::ServerInfo => {
                // Each client sees its own session: busy with its app, or free (several
                // clients stream at once).
                let session = client.as_ref().and_then(|c| self.sessions.status(c));
                let conn = Connection {
                    transport,
                    local_ip,
                    mac: if transport == Transport::Https {
                        mac_for(local_ip)
                    } else {
                        None
                    },
                    client,
                };
                Reply::xml(decide_nvhttp::serverinfo_xml(
                    &self.info,
                    &conn,
                    session.as_ref(),
                ))
            }
            Action::AppList => Reply::xml(decide_nvhttp::applist_xml(&self.info.apps)),
            Action::AppAsset { app_id } => match self.info.app(app_id) {
                Some(_) => Reply::png(self.boxart.clone()),
                None => Reply::xml(decide_nvhttp::error_xml(404, "Unknown app")),
            },
            Action::PairGetServerCert {
                uniqueid,
                device_name,
                salt,
                clientcert,
            } => {
                self.pair_phase1(peer, &uniqueid, &device_name, &salt, &clientcert)
                    .await
            }
            Action::PairClientChallenge { uniqueid, value } => {
                let r = {
                    let mut p = self.lock_pairing();
                    let r =
                        p.machine
                            .handle_clientchallenge(Instant::now(), peer, &uniqueid, &value);
                    p.drain();
                    r
                };
                match r {
                    Ok(bytes) => {
                        Reply::xml(decide_nvhttp::pair_field_xml("challengeresponse", &bytes))
                    }
                    Err(e) => decide_nvhttp::pairing_error_reply(&e),
                }
            }
            Action::PairServerChallengeResp { uniqueid, value } => {
                let r = {
                    let mut p = self.lock_pairing();
                    let r = p.machine.handle_serverchallengeresp(
                        Instant::now(),
                        peer,
                        &uniqueid,
                        &value,
                    );
                    p.drain();
                    r
                };
                match r {
                    Ok(bytes) => Reply::xml(decide_nvhttp::pair_field_xml("pairingsecret", &bytes)),
                    Err(e) => decide_nvhttp::pairing_error_reply(&e),
                }
            }
            Action::PairClientPairingSecret { uniqueid, value } => {
                self.pair_phase4(peer, &uniqueid, &value).await
            }
            Action::Unpair { uniqueid } => {
                let mut p = self.lock_pairing();
                if p.machine.handle_unpair(Instant::now(), peer, &uniqueid) {
                    tracing::info!(uniqueid, "client abandoned its pairing");
                }
                p.drain();
                Reply::xml(Xml::root(200, None).finish())
            }
            Action::Launch { client, request } => {
                if self.info.app(request.app_id).is_none() {
                    return Reply::xml(decide_nvhttp::launch_error_xml(&SessionError::UnknownApp(
                        request.app_id,
                    )));
                }
                tracing::info!(client = %client.name, app = request.app_id, mode = ?request.mode, "launch");
                let sessions = Arc::clone(&self.sessions);
                let r =
                    tokio::task::spawn_blocking(move || sessions.launch(&client, peer, request))
                        .await
                        .unwrap_or_else(|e| Err(SessionError::Failed(e.to_string())));
                Reply::xml(match r {
                    Ok(grant) => decide_nvhttp::launch_xml(&decide_nvhttp::session_url(
                        grant.rtsp,
                        local_ip,
                        self.info.ports.rtsp(),
                    )),
                    Err(e) => {
                        tracing::info!(error = %e, "launch refused");
                        decide_nvhttp::launch_error_xml(&e)
                    }
                })
            }
            Action::Resume { client, request } => {
                tracing::info!(client = %client.name, "resume");
                let sessions = Arc::clone(&self.sessions);
                let r =
                    tokio::task::spawn_blocking(move || sessions.resume(&client, peer, request))
                        .await
                        .unwrap_or_else(|e| Err(SessionError::Failed(e.to_string())));
                Reply::xml(match r {
                    Ok(grant) => decide_nvhttp::resume_xml(&decide_nvhttp::session_url(
                        grant.rtsp,
                        local_ip,
                        self.info.ports.rtsp(),
                    )),
                    Err(e) => {
                        tracing::info!(error = %e, "resume refused");
                        decide_nvhttp::resume_error_xml(&e)
                    }
                })
            }
            Action::Cancel { client } => {
                tracing::info!(client = %client.name, "cancel");
                let sessions = Arc::clone(&self.sessions);
                let r = tokio::task::spawn_blocking(move || sessions.cancel(&client))
                    .await
                    .unwrap_or_else(|e| Err(SessionError::Failed(e.to_string())));
                Reply::xml(match r {
                    Ok(()) => decide_nvhttp::cancel_xml(),
                    Err(e) => decide_nvhttp::error_xml(e.status_code(), &e.to_string()),
                })
            }
        }
    }

    async fn pair_phase1(
        self: &Arc<Self>,
        peer: IpAddr,
        uniqueid: &str,
        device_name: &str,
        salt: &str,
        clientcert: &str,
    ) -> Reply {
        let (ticket, rx, announce) = {
            let mut p = self.lock_pairing();
            let evicted_before = p.machine.stats().evicted;
            let r = p.machine.handle_getservercert(
                Instant::now(),
                peer,
                uniqueid,
                device_name,
                salt,
                clientcert,
            );
            let ticket = match r {
                Ok(t) => t,
                Err(e) => {
                    p.drain();
                    // Counted in the machine's stats (shown by /api/status); one debug line
                    // each, so a flood of refused requests does not flood the log.
                    tracing::debug!(%peer, error = %e, "pairing refused");
                    return decide_nvhttp::pairing_error_reply(&e);
                }
            };
            let (tx, rx) = oneshot::channel();
            p.waiters.pin.insert(ticket, tx);
            // An operator-first window may have handed this pairing the PIN already.
            p.drain();
            // A newcomer that had to evict is announced at most once per summary period
            // (a flood of them is summed up by `log_counters`); others always.
            let now = Instant::now();
            let announce = p.machine.stats().evicted == evicted_before
                || p.last_announced_eviction
                    .is_none_or(|t| now.saturating_duration_since(t) >= REFUSAL_SUMMARY_EVERY);
            if p.machine.stats().evicted != evicted_before && announce {
                p.last_announced_eviction = Some(now);
            }
            (ticket, rx, announce)
        };
        if announce {
            tracing::warn!(
                ticket = ticket.0,
                %peer,
                uniqueid,
                "a client wants to pair: enter the PIN it shows with `punktfunk pin <PIN>` \
                 (`punktfunk pairing` lists waiting clients)"
            );
        } else {
            tracing::debug!(ticket = ticket.0, %peer, uniqueid, "a client wants to pair");
        }
        let mut guard = AbortOnDrop {
            ctx: Arc::clone(self),
            ticket,
            armed: true,
        };
        let result = tokio::time::timeout(self.pin_timeout, rx).await;
        guard.armed = false;
        match result {
            Ok(Ok(Ok(()))) => {
                Reply::xml(decide_nvhttp::pair_servercert_xml(self.identity.cert_pem()))
            }
            Ok(Ok(Err(e))) => decide_nvhttp::pairing_error_reply(&e),
            Ok(Err(_)) => decide_nvhttp::pairing_error_reply(&PairingError::Cancelled),
            Err(_) => {
                let mut p = self.lock_pairing();
                p.waiters.pin.remove(&ticket);
                p.machine.abort(ticket, PairingError::TimedOut);
                p.drain();
                decide_nvhttp::pairing_error_reply(&PairingError::TimedOut)
            }
        }
    }

    async fn pair_phase4(self: &Arc<Self>, peer: IpAddr, uniqueid: &str, value: &str) -> Reply {
        let r = {
            let mut p = self.lock_pairing();
            let r = p
                .machine
                .handle_clientpairingsecret(Instant::now(), peer, uniqueid, value);
            p.drain();
            r
        };
        let paired = match r {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "pairing failed");
                return decide_nvhttp::pairing_error_reply(&e);
            }
        };
        let ticket = paired.ticket;
        let store = Arc::clone(&self.clients);
        let stored = tokio::task::spawn_blocking(move || store.add(&paired, unix_now()))
            .await
            .map_err(|e| e.to_string())
            .and_then(|r| r.map_err(|e| e.to_string()));
        let mut p = self.lock_pairing();
        match stored {
            Ok(client) => {
                tracing::info!(id = %client.id, name = %client.name, "client paired");
                p.resolve(ticket, PinOutcome::Paired(client));
                Reply::xml(decide_nvhttp::paired_xml())
            }
            Err(e) => {
                tracing::error!(error = %e, "could not store the paired client");
                p.resolve(
                    ticket,
                    PinOutcome::Failed(format!("storing the client: {e}")),
                );
                Reply::xml(decide_nvhttp::pair_error_xml(
                    500,
                    "Could not store the client",
                ))
            }
        }
    }
}

/// The MAC address of the interface that holds `ip` (`/sys/class/net/*/address`).
fn mac_for(ip: IpAddr) -> Option<String> {
    let ip = ip.to_canonical();
    let ifs = if_addrs::get_if_addrs().ok()?;
    let name = ifs.into_iter().find(|i| i.ip() == ip)?.name;
    let mac = std::fs::read_to_string(format!("/sys/class/net/{name}/address")).ok()?;
    let mac = mac.trim();
    (mac.len() == 17).then(|| mac.to_owned())
}

fn to_response(reply: Reply) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(reply.body)));
    *resp.status_mut() =
        hyper::StatusCode::from_u16(reply.http_status).unwrap_or(hyper::StatusCode::OK);
    let h = resp.headers_mut();
    h.insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(reply.content_type),
    );
    h.insert(
        hyper::header::CONNECTION,
        hyper::header::HeaderValue::from_static("close"),
    );
    resp
}

/// Who a connection is: what every request on it is decided with.
#[derive(Debug, Clone, Copy)]
struct Caller {
    transport: Transport,
    /// The host address the client connected to (`LocalIP` in `/serverinfo`).
    local_ip: IpAddr,
    /// The client's address (pairing backoff and the waiting list).
    peer: IpAddr,
    /// SHA-256 of the client certificate, over HTTPS.
    fingerprint: Option<[u8; 32]>,
}

async fn service(
    ctx: Arc<NvHttp>,
    caller: Caller,
    progress: Arc<Progress>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let Caller {
        transport,
        local_ip,
        peer,
        fingerprint,
    } = caller;
    // A GET carries no body: the request is complete once hyper hands it over.
    if !progress.request() {
        // Evicted meanwhile; the connection is being closed.
        return Ok(to_response(Reply::xml(decide_nvhttp::error_xml(
            503,
            "Too many connections",
        ))));
    }
    if req.method() != Method::GET {
        let mut r = Reply::xml(decide_nvhttp::error_xml(405, "Only GET is supported"));
        r.http_status = 405;
        progress.respond();
        return Ok(to_response(r));
    }
    let path = req.uri().path().to_owned();
    let query = req.uri().query().unwrap_or_default().to_owned();
    let reply = ctx
        .handle(transport, local_ip, peer, fingerprint, &path, &query)
        .await;
    tracing::debug!(?transport, path, status = ?reply.status_code(), "nvhttp");
    progress.respond();
    Ok(to_response(reply))
}

async fn serve_connection<S>(
    ctx: Arc<NvHttp>,
    io: S,
    caller: Caller,
    progress: Arc<Progress>,
    limits: LimitsConfig,
) -> Close
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| service(Arc::clone(&ctx), caller, Arc::clone(&progress), req));
    let result = http1::Builder::new()
        .keep_alive(false)
        .timer(TokioTimer::new())
        // The listener's watchdog holds the total deadline; this is a second fence.
        .header_read_timeout(limits.request_deadline)
        .max_buf_size(64 * 1024)
        .serve_connection(TokioIo::new(io), svc)
        .await;
    match result {
        Ok(()) => Close::Done,
        Err(e) if e.is_parse() || e.is_parse_too_large() => Close::Malformed,
        Err(e) if e.is_timeout() => Close::TimedOut,
        // Peer reset, incomplete message: the client went away.
        Err(e) => {
            tracing::trace!(error = %e, "nvhttp connection ended with an error");
            Close::Done
        }
    }
}

/// The name a listener of `transport` has in `/api/status` and in its log summaries.
fn listener_name(transport: Transport) -> &'static str {
    match transport {
        Transport::Http => "nvhttp",
        Transport::Https => "nvhttps",
    }
}

/// Serves nvhttp on `listener` until `shutdown` turns true. With `tls`, this is the HTTPS
/// listener: the client certificate of each connection is captured after the handshake and
/// authorized per request against the paired store.
///
/// Connections are held to [`NvHttp::limits`] (see [`crate::limits`]): a total deadline
/// for the TLS handshake and the request, a cap per listener at which the oldest half-open
/// connection is evicted, counters in [`NvHttp::listeners`] and a summary line at most
/// every 10 s instead of a line per connection.
pub async fn serve(
    ctx: Arc<NvHttp>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    shutdown: watch::Receiver<bool>,
) {
    let transport = if tls.is_some() {
        Transport::Https
    } else {
        Transport::Http
    };
    let limits = ctx.limits;
    let conns = Listener::new(listener_name(transport), limits);
    ctx.listeners.add(Arc::clone(&conns));
    listen::serve(listener, conns, shutdown, move |stream, peer, progress| {
        let local_ip = stream
            .local_addr()
            .map_or(IpAddr::from([0, 0, 0, 0]), |a: SocketAddr| {
                a.ip().to_canonical()
            });
        let ctx = Arc::clone(&ctx);
        let tls = tls.clone();
        async move {
            let Some(acceptor) = tls else {
                let caller = Caller {
                    transport,
                    local_ip,
                    peer: peer.ip(),
                    fingerprint: None,
                };
                return serve_connection(ctx, stream, caller, progress, limits).await;
            };
            let tls_stream = match acceptor.accept(stream).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::trace!(%peer, error = %e, "TLS handshake failed");
                    return Close::Malformed;
                }
            };
            let fingerprint = tls_stream
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|chain| chain.first())
                .and_then(|der| Certificate::from_der(der.as_ref()).ok())
                .map(|c| c.fingerprint());
            let caller = Caller {
                transport,
                local_ip,
                peer: peer.ip(),
                fingerprint,
            };
            serve_connection(ctx, tls_stream, caller, progress, limits).await
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::cert::tests::CLIENT_CERT_PEM;
    use crate::gamestream::clients::Clients;
    use crate::gamestream::identity::tests::fixture;
    use crate::gamestream::nvhttp::{SCM_H264, desktop};
    use crate::gamestream::pairing::PairingConfig;
    use crate::gamestream::pairing::tests::TestClient;
    use crate::gamestream::ports::Ports;
    use crate::gamestream::query::{hex_decode, hex_lower, hex_upper};
    use crate::gamestream::session::InMemorySessions;
    use crate::host::state::StateDir;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);
    const STRANGER: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 66));

    fn ctx_with(pin_timeout: Duration, clients: ClientStore) -> Arc<NvHttp> {
        let identity = Arc::new(fixture());
        let info = HostInfo {
            hostname: "test".into(),
            uniqueid: "0123456789abcdef".into(),
            ports: Ports::default(),
            codec_modes: SCM_H264,
            apps: vec![desktop()],
        };
        Arc::new(NvHttp::new(
            info,
            Arc::clone(&identity),
            Pairing::new(identity, PairingConfig::default(), [1; 32]),
            Arc::new(clients),
            Arc::new(InMemorySessions::new()),
            pin_timeout,
        ))
    }

    fn ctx(pin_timeout: Duration) -> Arc<NvHttp> {
        ctx_with(pin_timeout, ClientStore::in_memory(Clients::default()))
    }

    fn text(r: &Reply) -> String {
        String::from_utf8(r.body.clone()).unwrap()
    }

    fn field(r: &Reply, tag: &str) -> Vec<u8> {
        let t = text(r);
        let open = format!("<{tag}>");
        let start = t.find(&open).unwrap_or_else(|| panic!("no {tag} in {t}")) + open.len();
        let end = start + t[start..].find('<').unwrap();
        hex_decode("x", &t[start..end]).unwrap()
    }

    /// Waits (generously) until `n` pairings wait for a PIN.
    async fn wait_for_waiting(ctx: &NvHttp, n: usize) -> PairingStatus {
        for _ in 0..2000 {
            let st = ctx.pairing_status();
            if st.waiting.len() == n {
                return st;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("{n} pairings are not waiting for a PIN");
    }

    fn phase1_query(client: &TestClient) -> String {
        let (salt, cert) = client.phase1();
        format!(
            "uniqueid=U&uuid=1&devicename=roth&updateState=1&phrase=getservercert&salt={salt}&clientcert={cert}"
        )
    }

    fn spawn_phase1(
        ctx: &Arc<NvHttp>,
        from: IpAddr,
        query: String,
    ) -> tokio::task::JoinHandle<Reply> {
        let c = Arc::clone(ctx);
        tokio::spawn(async move {
            c.handle(Transport::Http, LOCAL, from, None, "/pair", &query)
                .await
        })
    }

    /// Phases 2 and 3 over the handlers, after phase 1's reply; returns the client's verdict.
    async fn phases_2_3(
        ctx: &Arc<NvHttp>,
        client: &mut TestClient,
        r1: &Reply,
    ) -> Result<(), &'static str> {
        assert_eq!(field(r1, "plaincert"), fixture().cert_pem().as_bytes());
        client.take_plaincert(&field(r1, "plaincert"));
        let q2 = format!("uniqueid=U&clientchallenge={}", client.phase2());
        let r2 = ctx
            .handle(Transport::Http, LOCAL, LOCAL, None, "/pair", &q2)
            .await;
        let (server_hash, resp) = client.phase3(&field(&r2, "challengeresponse"));
        let q3 = format!("uniqueid=U&serverchallengeresp={resp}");
        let r3 = ctx
            .handle(Transport::Http, LOCAL, LOCAL, None, "/pair", &q3)
            .await;
        client.check_server(&server_hash, &field(&r3, "pairingsecret"))
    }

    async fn phase4(ctx: &Arc<NvHttp>, client: &TestClient) -> Reply {
        let q4 = format!("uniqueid=U&clientpairingsecret={}", client.phase4());
        ctx.handle(Transport::Http, LOCAL, LOCAL, None, "/pair", &q4)
            .await
    }

    #[tokio::test]
    async fn pairing_through_the_handlers_then_launch() {
        let ctx = ctx(Duration::from_secs(30));
        let mut client = TestClient::new("1234");
        let phase1 = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
        wait_for_waiting(&ctx, 1).await;
        let c = Arc::clone(&ctx);
        let pin = tokio::spawn(async move { c.submit_pin("1234", Some("Rust"), None).await });

        let r1 = phase1.await.unwrap();
        phases_2_3(&ctx, &mut client, &r1).await.unwrap();
        let r4 = phase4(&ctx, &client).await;
        assert!(text(&r4).contains("<paired>1</paired>"), "{}", text(&r4));
        let Ok(PinOutcome::Paired(paired)) = pin.await.unwrap() else {
            panic!("PIN sender not told about the pairing");
        };
        assert_eq!(paired.name, "Rust");

        // Phase 5 and everything after it go over HTTPS with the paired certificate.
        let fp = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes())
            .unwrap()
            .fingerprint();
        let https = |path: &'static str, q: &'static str, fp: Option<[u8; 32]>| {
            let ctx = Arc::clone(&ctx);
            async move {
                ctx.handle(Transport::Https, LOCAL, LOCAL, fp, path, q)
                    .await
            }
        };
        let r5 = https("/pair", "uniqueid=U&phrase=pairchallenge", Some(fp)).await;
        assert!(text(&r5).contains("<paired>1</paired>"));
        assert!(
            text(&https("/serverinfo", "", Some(fp)).await).contains("<PairStatus>1</PairStatus>")
        );
        let launch = https(
            "/launch",
            "appid=1&mode=1920x1080x60&rikey=000102030405060708090a0b0c0d0e0f&rikeyid=5&localAudioPlayMode=0",
            Some(fp),
        )
        .await;
        assert!(text(&launch).contains("<sessionUrl0>rtsp://127.0.0.1:48010</sessionUrl0>"));
        assert!(text(&https("/serverinfo", "", Some(fp)).await).contains("SUNSHINE_SERVER_BUSY"));
        let png = https("/appasset", "appid=1", Some(fp)).await;
        assert_eq!(png.content_type, "image/png");
        // Another certificate gets 401 for everything.
        assert_eq!(
            https("/serverinfo", "", Some([0; 32])).await.status_code(),
            Some(401)
        );
        assert_eq!(https("/applist", "", None).await.status_code(), Some(401));
    }

    #[tokio::test]
    async fn pin_wait_times_out() {
        let ctx = ctx(Duration::from_millis(50));
        let client = TestClient::new("1234");
        let r = spawn_phase1(&ctx, LOCAL, phase1_query(&client))
            .await
            .unwrap();
        assert_eq!(r.status_code(), Some(408));
        assert_eq!(ctx.pairing_status().state(), "idle");
        // With nobody waiting, the operator's PIN arms the window for the next client.
        assert_eq!(
            ctx.submit_pin("1234", None, None).await,
            Ok(PinOutcome::Armed)
        );
    }

    #[tokio::test]
    async fn a_vanished_phase1_request_ends_its_pairing() {
        let ctx = ctx(Duration::from_secs(30));
        let client = TestClient::new("1234");
        let phase1 = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
        wait_for_waiting(&ctx, 1).await;
        phase1.abort();
        let _ = phase1.await;
        assert_eq!(ctx.pairing_status().state(), "idle");
        assert!(matches!(
            ctx.submit_pin("1234", None, Some(Ticket(1))).await,
            Err(PinError::NoSuchPairing(_))
        ));
        assert_eq!(
            ctx.submit_pin("12", None, None).await,
            Err(PinError::InvalidPin)
        );
    }

    /// Point 5: a stranger's held phase 1 does not block the real client; the operator sees
    /// both (address, certificate fingerprint), gives the PIN to the right one and cancels the
    /// stranger, whose client is told why.
    #[tokio::test]
    async fn a_strangers_pending_pairing_does_not_block_the_real_one() {
        let ctx = ctx(Duration::from_secs(60));
        let stranger_cert = hex_upper(include_bytes!("../../tests/fixtures/client2-cert.pem"));
        let stranger = spawn_phase1(
            &ctx,
            STRANGER,
            format!(
                "uniqueid=U&devicename=roth&phrase=getservercert&salt={}&clientcert={stranger_cert}",
                hex_lower(&[3; 16])
            ),
        );
        wait_for_waiting(&ctx, 1).await;
        let mut client = TestClient::new("2468");
        let real = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
        let st = wait_for_waiting(&ctx, 2).await;
        assert_eq!(st.waiting[0].address, STRANGER);
        assert_eq!(st.waiting[1].address, LOCAL);
        let real_fp = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes())
            .unwrap()
            .fingerprint();
        assert_eq!(st.waiting[1].fingerprint, real_fp);
        let (stranger_id, real_id) = (st.waiting[0].ticket, st.waiting[1].ticket);
        // Without --to the PIN is refused: two wait.
        let err = ctx.submit_pin("2468", None, None).await.unwrap_err();
        assert!(err.to_string().contains("2 clients are waiting"), "{err}");
        // The operator cancels the stranger; its client gets the reason.
        assert!(ctx.cancel_pairing(stranger_id));
        let r = stranger.await.unwrap();
        assert_eq!(r.status_code(), Some(403));
        assert!(text(&r).contains("cancelled by the host"), "{}", text(&r));
        // And gives the PIN to the real client, by id.
        let c = Arc::clone(&ctx);
        let pin = tokio::spawn(async move { c.submit_pin("2468", None, Some(real_id)).await });
        let r1 = real.await.unwrap();
        phases_2_3(&ctx, &mut client, &r1).await.unwrap();
        assert!(text(&phase4(&ctx, &client).await).contains("<paired>1</paired>"));
        assert!(matches!(pin.await.unwrap(), Ok(PinOutcome::Paired(_))));
        assert!(ctx.clients().authorize(&real_fp).is_some());
        assert_eq!(ctx.pairing_status().stats.failed, 0);
    }

    /// Point 5 against a full waiting list, through the handlers: strangers at two addresses
    /// hold all 8 waiting slots; the real client's phase 1 is still held (the oldest stranger's
    /// request is answered 503 "replaced"), it gets the PIN with `--to` and pairs.
    #[tokio::test]
    async fn a_full_waiting_list_evicts_a_stranger_for_the_real_client() {
        let ctx = ctx(Duration::from_secs(60));
        let salt = hex_lower(&[5; 16]);
        let mut strangers = Vec::new();
        for i in 0..8u8 {
            let from = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 100 + i % 2));
            let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
            let cert = rcgen::CertificateParams::new(vec!["stranger".into()])
                .unwrap()
                .self_signed(&key)
                .unwrap();
            let query = format!(
                "uniqueid=U&devicename=roth&phrase=getservercert&salt={salt}&clientcert={}",
                hex_upper(cert.pem().as_bytes())
            );
            strangers.push(spawn_phase1(&ctx, from, query));
            // One at a time, so that the first is the oldest.
            wait_for_waiting(&ctx, usize::from(i) + 1).await;
        }
        let mut client = TestClient::new("8642");
        let real = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
        let evicted = strangers.remove(0).await.unwrap();
        assert_eq!(evicted.status_code(), Some(503));
        assert!(text(&evicted).contains("replaced"), "{}", text(&evicted));
        // The eviction and the real client's arrival happened in one step.
        let st = wait_for_waiting(&ctx, 8).await;
        let real_id = st
            .waiting
            .iter()
            .find(|w| w.address == LOCAL)
            .expect("the real client waits")
            .ticket;
        assert_eq!((st.stats.evicted, st.stats.refused_busy), (1, 0));
        let c = Arc::clone(&ctx);
        let pin = tokio::spawn(async move { c.submit_pin("8642", None, Some(real_id)).await });
        let r1 = real.await.unwrap();
        phases_2_3(&ctx, &mut client, &r1).await.unwrap();
        assert!(text(&phase4(&ctx, &client).await).contains("<paired>1</paired>"));
        assert!(matches!(pin.await.unwrap(), Ok(PinOutcome::Paired(_))));
        let real_fp = Certificate::from_pem(CLIENT_CERT_PEM.as_bytes())
            .unwrap()
            .fingerprint();
        assert!(ctx.clients().authorize(&real_fp).is_some());
        // The other seven strangers still wait, untouched.
        assert_eq!(ctx.pairing_status().waiting.len(), 7);
        for s in strangers {
            s.abort();
        }
    }

    /// Point 2 through the handlers: operator first, wrong PINs are answered, the window closes
    /// after three and phase 1 is then refused with the reason; a re-armed PIN pairs.
    #[tokio::test]
    async fn wrong_pins_close_the_window_until_the_operator_rearms() {
        let ctx = ctx(Duration::from_secs(60));
        assert_eq!(
            ctx.submit_pin("7777", None, None).await,
            Ok(PinOutcome::Armed)
        );
        for i in 0..3u8 {
            // Each from its own address, so backoff does not get in the way of the budget.
            let from = IpAddr::V4(std::net::Ipv4Addr::new(10, 9, 0, i));
            let mut guess = TestClient::new(&format!("000{i}"));
            let r1 = spawn_phase1(&ctx, from, phase1_query(&guess))
                .await
                .unwrap();
            guess.take_plaincert(&field(&r1, "plaincert"));
            let q2 = format!("uniqueid=U&clientchallenge={}", guess.phase2());
            let r2 = ctx
                .handle(Transport::Http, LOCAL, from, None, "/pair", &q2)
                .await;
            let (_, resp) = guess.phase3(&field(&r2, "challengeresponse"));
            let q3 = format!("uniqueid=U&serverchallengeresp={resp}");
            ctx.handle(Transport::Http, LOCAL, from, None, "/pair", &q3)
                .await;
            // A client that ignores its check: phase 4 says paired=0 with the reason.
            let q4 = format!("uniqueid=U&clientpairingsecret={}", guess.phase4());
            let r4 = ctx
                .handle(Transport::Http, LOCAL, from, None, "/pair", &q4)
                .await;
            assert!(text(&r4).contains("<paired>0</paired>") && text(&r4).contains("wrong PIN"));
        }
        let refused = spawn_phase1(&ctx, LOCAL, phase1_query(&TestClient::new("7777")))
            .await
            .unwrap();
        assert_eq!(refused.status_code(), Some(403), "{}", text(&refused));
        assert!(text(&refused).contains("too many wrong PINs"));
        let st = ctx.pairing_status();
        assert_eq!((st.stats.failed, st.stats.refused_closed), (3, 1));
        assert_eq!(ctx.clients().list().len(), 0);
        // Re-armed: the right PIN pairs.
        assert_eq!(
            ctx.submit_pin("7777", None, None).await,
            Ok(PinOutcome::Armed)
        );
        let mut client = TestClient::new("7777");
        let r1 = spawn_phase1(&ctx, LOCAL, phase1_query(&client))
            .await
            .unwrap();
        phases_2_3(&ctx, &mut client, &r1).await.unwrap();
        assert!(text(&phase4(&ctx, &client).await).contains("<paired>1</paired>"));
        assert_eq!(ctx.clients().list().len(), 1);
    }

    /// Point 6: a client is stored only when phase 4 completed. A host that dies (here: is
    /// dropped, losing its memory as kill -9 would) after phases 1-3 leaves no entry on disk.
    #[tokio::test]
    async fn no_half_paired_client_after_the_host_dies_between_phases() {
        let root = std::env::temp_dir().join(format!("punktfunk-halfpair-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        let dir = StateDir::open(&root).unwrap();
        {
            let ctx = ctx_with(
                Duration::from_secs(30),
                ClientStore::new(dir.clone(), Clients::default()),
            );
            let mut client = TestClient::new("1357");
            let phase1 = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
            wait_for_waiting(&ctx, 1).await;
            let c = Arc::clone(&ctx);
            let pin = tokio::spawn(async move { c.submit_pin("1357", None, None).await });
            let r1 = phase1.await.unwrap();
            phases_2_3(&ctx, &mut client, &r1).await.unwrap();
            assert_eq!(ctx.pairing_status().state(), "in_progress");
            pin.abort();
            // The host goes away here, before phase 4.
        }
        let reopened = StateDir::open(&root).unwrap();
        assert!(reopened.load_clients().unwrap().is_empty());
        assert!(!root.join("clients.json").exists());
        // The same run with phase 4 stores the client durably.
        let ctx = ctx_with(
            Duration::from_secs(30),
            ClientStore::new(reopened.clone(), Clients::default()),
        );
        let mut client = TestClient::new("1357");
        let phase1 = spawn_phase1(&ctx, LOCAL, phase1_query(&client));
        wait_for_waiting(&ctx, 1).await;
        let c = Arc::clone(&ctx);
        let pin = tokio::spawn(async move { c.submit_pin("1357", None, None).await });
        let r1 = phase1.await.unwrap();
        phases_2_3(&ctx, &mut client, &r1).await.unwrap();
        assert!(text(&phase4(&ctx, &client).await).contains("<paired>1</paired>"));
        assert!(matches!(pin.await.unwrap(), Ok(PinOutcome::Paired(_))));
        assert_eq!(
            StateDir::open(&root).unwrap().load_clients().unwrap().len(),
            1
        );
        let _ = std::fs::remove_dir_all(&root);
    }
}
