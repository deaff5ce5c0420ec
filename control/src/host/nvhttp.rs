//! The nvhttp servers: plain HTTP on the base port and mutual TLS on base−5, one request per
//! connection (Moonlight disables keep-alive; protocol map §1.1).
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
//! Pairing phase 1 parks its request on a oneshot channel until the PIN arrives through
//! [`NvHttp::submit_pin`] (the management API), the PIN timeout passes, or the client goes
//! away (the request future is dropped, which ends the pairing). Everything the client sent
//! is parsed by the pure modules; this file only moves bytes and waits.

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
use crate::gamestream::pairing::{Pairing, PairingError, PairingEvent, PairingStatus, Ticket};
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
}

/// Why a PIN was not delivered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PinError {
    /// Not 4 digits (caller misuse).
    #[error("the PIN must be 4 digits")]
    InvalidPin,
    /// No client waits for a PIN.
    #[error("no client is waiting for a PIN; start pairing in Moonlight first")]
    NoPairing,
}

#[derive(Default)]
struct PairingWaiters {
    /// The held phase-1 request.
    pin: Option<(Ticket, oneshot::Sender<Result<(), PairingError>>)>,
    /// Callers of `submit_pin` waiting for the end.
    outcome: Vec<(Ticket, oneshot::Sender<PinOutcome>)>,
}

struct PairingHost {
    machine: Pairing,
    waiters: PairingWaiters,
}

impl PairingHost {
    /// Tells everyone waiting on pairings that ended.
    fn drain(&mut self) {
        while let Some(event) = self.machine.poll_event() {
            let PairingEvent::Failed { ticket, error } = event;
            tracing::info!(ticket = ticket.0, %error, "pairing ended");
            if self.waiters.pin.as_ref().is_some_and(|(t, _)| *t == ticket)
                && let Some((_, tx)) = self.waiters.pin.take()
            {
                let _ = tx.send(Err(error.clone()));
            }
            self.resolve(ticket, PinOutcome::Failed(error.to_string()));
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

    /// Where pairing stands.
    pub fn pairing_status(&self) -> PairingStatus {
        let mut p = self.lock_pairing();
        p.machine.handle_timeout(Instant::now());
        p.drain();
        p.machine.status()
    }

    /// Delivers the user's PIN to the client waiting in phase 1, then waits up to
    /// [`PIN_OUTCOME_WAIT`] for the pairing to end.
    pub async fn submit_pin(&self, pin: &str, name: Option<&str>) -> Result<PinOutcome, PinError> {
        let rx = {
            let mut p = self.lock_pairing();
            let accepted = match p.machine.handle_pin(Instant::now(), pin, name) {
                Ok(a) => a,
                Err(PairingError::InvalidPin) => return Err(PinError::InvalidPin),
                Err(_) => {
                    p.drain();
                    return Err(PinError::NoPairing);
                }
            };
            let delivered = match p.waiters.pin.take() {
                Some((t, tx)) if t == accepted.ticket => tx.send(Ok(())).is_ok(),
                other => {
                    p.waiters.pin = other;
                    false
                }
            };
            if !delivered {
                p.machine.abort(accepted.ticket, PairingError::Cancelled);
                p.drain();
                return Err(PinError::NoPairing);
            }
            tracing::info!(ticket = accepted.ticket.0, "PIN delivered");
            let (tx, rx) = oneshot::channel();
            p.waiters.outcome.push((accepted.ticket, tx));
            rx
        };
        Ok(match tokio::time::timeout(PIN_OUTCOME_WAIT, rx).await {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => PinOutcome::Failed("pairing cancelled".into()),
            Err(_) => PinOutcome::Pending,
        })
    }

    /// Handles one request: decide, then execute the action.
    pub async fn handle(
        self: &Arc<Self>,
        transport: Transport,
        local_ip: IpAddr,
        client_fingerprint: Option<[u8; 32]>,
        path: &str,
        query: &str,
    ) -> Reply {
        let client = client_fingerprint.and_then(|fp| self.clients.authorize(&fp));
        let action = decide_nvhttp::decide(transport, path, query, client.as_ref());
        match action {
            Action::Reply(r) => r,
            Action::ServerInfo => {
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
                let session = self.sessions.status();
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
                self.pair_phase1(&uniqueid, &device_name, &salt, &clientcert)
                    .await
            }
            Action::PairClientChallenge { uniqueid, value } => {
                let r = {
                    let mut p = self.lock_pairing();
                    let r = p
                        .machine
                        .handle_clientchallenge(Instant::now(), &uniqueid, &value);
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
                    let r = p
                        .machine
                        .handle_serverchallengeresp(Instant::now(), &uniqueid, &value);
                    p.drain();
                    r
                };
                match r {
                    Ok(bytes) => Reply::xml(decide_nvhttp::pair_field_xml("pairingsecret", &bytes)),
                    Err(e) => decide_nvhttp::pairing_error_reply(&e),
                }
            }
            Action::PairClientPairingSecret { uniqueid, value } => {
                self.pair_phase4(&uniqueid, &value).await
            }
            Action::Unpair { uniqueid } => {
                let mut p = self.lock_pairing();
                if p.machine.handle_unpair(&uniqueid) {
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
                let r = tokio::task::spawn_blocking(move || sessions.launch(&client, request))
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
                let r = tokio::task::spawn_blocking(move || sessions.resume(&client, request))
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
        uniqueid: &str,
        device_name: &str,
        salt: &str,
        clientcert: &str,
    ) -> Reply {
        let (ticket, rx) = {
            let mut p = self.lock_pairing();
            let r = p.machine.handle_getservercert(
                Instant::now(),
                uniqueid,
                device_name,
                salt,
                clientcert,
            );
            p.drain();
            let ticket = match r {
                Ok(t) => t,
                Err(e) => {
                    tracing::info!(error = %e, "pairing refused");
                    return decide_nvhttp::pairing_error_reply(&e);
                }
            };
            let (tx, rx) = oneshot::channel();
            p.waiters.pin = Some((ticket, tx));
            (ticket, rx)
        };
        tracing::warn!(
            ticket = ticket.0,
            uniqueid,
            "a Moonlight client wants to pair: enter the PIN it shows with `punktfunk pin <PIN>`"
        );
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
                p.machine.abort(ticket, PairingError::TimedOut);
                p.drain();
                decide_nvhttp::pairing_error_reply(&PairingError::TimedOut)
            }
        }
    }

    async fn pair_phase4(self: &Arc<Self>, uniqueid: &str, value: &str) -> Reply {
        let r = {
            let mut p = self.lock_pairing();
            let r = p
                .machine
                .handle_clientpairingsecret(Instant::now(), uniqueid, value);
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

async fn service(
    ctx: Arc<NvHttp>,
    transport: Transport,
    local_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
    progress: Arc<Progress>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
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
        .handle(transport, local_ip, fingerprint, &path, &query)
        .await;
    tracing::debug!(?transport, path, status = ?reply.status_code(), "nvhttp");
    progress.respond();
    Ok(to_response(reply))
}

async fn serve_connection<S>(
    ctx: Arc<NvHttp>,
    io: S,
    transport: Transport,
    local_ip: IpAddr,
    fingerprint: Option<[u8; 32]>,
    progress: Arc<Progress>,
    limits: LimitsConfig,
) -> Close
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| {
        service(
            Arc::clone(&ctx),
            transport,
            local_ip,
            fingerprint,
            Arc::clone(&progress),
            req,
        )
    });
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
                return serve_connection(ctx, stream, transport, local_ip, None, progress, limits)
                    .await;
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
            serve_connection(
                ctx,
                tls_stream,
                transport,
                local_ip,
                fingerprint,
                progress,
                limits,
            )
            .await
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
    use crate::gamestream::query::hex_decode;
    use crate::gamestream::session::InMemorySessions;

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    fn ctx(pin_timeout: Duration) -> Arc<NvHttp> {
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
            Arc::new(ClientStore::in_memory(Clients::default())),
            Arc::new(InMemorySessions::new()),
            pin_timeout,
        ))
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

    async fn wait_for_pin_request(ctx: &NvHttp) {
        for _ in 0..500 {
            if matches!(ctx.pairing_status(), PairingStatus::AwaitingPin { .. }) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        panic!("no pairing waits for a PIN");
    }

    fn phase1_query(client: &TestClient) -> String {
        let (salt, cert) = client.phase1();
        format!(
            "uniqueid=U&uuid=1&devicename=roth&updateState=1&phrase=getservercert&salt={salt}&clientcert={cert}"
        )
    }

    #[tokio::test]
    async fn pairing_through_the_handlers_then_launch() {
        let ctx = ctx(Duration::from_secs(10));
        let mut client = TestClient::new("1234");
        let q1 = phase1_query(&client);
        let c = Arc::clone(&ctx);
        let phase1 =
            tokio::spawn(async move { c.handle(Transport::Http, LOCAL, None, "/pair", &q1).await });
        wait_for_pin_request(&ctx).await;
        let c = Arc::clone(&ctx);
        let pin = tokio::spawn(async move { c.submit_pin("1234", Some("Rust")).await });

        let r1 = phase1.await.unwrap();
        assert_eq!(field(&r1, "plaincert"), fixture().cert_pem().as_bytes());
        client.take_plaincert(&field(&r1, "plaincert"));
        let q2 = format!("uniqueid=U&clientchallenge={}", client.phase2());
        let r2 = ctx.handle(Transport::Http, LOCAL, None, "/pair", &q2).await;
        let (server_hash, resp) = client.phase3(&field(&r2, "challengeresponse"));
        let q3 = format!("uniqueid=U&serverchallengeresp={resp}");
        let r3 = ctx.handle(Transport::Http, LOCAL, None, "/pair", &q3).await;
        client
            .check_server(&server_hash, &field(&r3, "pairingsecret"))
            .unwrap();
        let q4 = format!("uniqueid=U&clientpairingsecret={}", client.phase4());
        let r4 = ctx.handle(Transport::Http, LOCAL, None, "/pair", &q4).await;
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
            async move { ctx.handle(Transport::Https, LOCAL, fp, path, q).await }
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
        let r = ctx
            .handle(
                Transport::Http,
                LOCAL,
                None,
                "/pair",
                &phase1_query(&client),
            )
            .await;
        assert_eq!(r.status_code(), Some(408));
        assert_eq!(ctx.pairing_status(), PairingStatus::Idle);
        assert_eq!(ctx.submit_pin("1234", None).await, Err(PinError::NoPairing));
    }

    #[tokio::test]
    async fn a_vanished_phase1_request_ends_its_pairing() {
        let ctx = ctx(Duration::from_secs(10));
        let client = TestClient::new("1234");
        let q1 = phase1_query(&client);
        let c = Arc::clone(&ctx);
        let phase1 =
            tokio::spawn(async move { c.handle(Transport::Http, LOCAL, None, "/pair", &q1).await });
        wait_for_pin_request(&ctx).await;
        phase1.abort();
        let _ = phase1.await;
        assert_eq!(ctx.pairing_status(), PairingStatus::Idle);
        assert_eq!(ctx.submit_pin("1234", None).await, Err(PinError::NoPairing));
        assert_eq!(ctx.submit_pin("12", None).await, Err(PinError::InvalidPin));
    }
}
