//! The management API: JSON over HTTP on 127.0.0.1 (default port base+1 = 47990), for the
//! `punktfunk` CLI and anything else on this machine. Described by `docs/openapi.yaml`; a
//! test checks that every route in [`ROUTES`] is in that document.
//!
//! | method   | path                 | what                                               |
//! |----------|----------------------|----------------------------------------------------|
//! | `POST`   | `/api/pin`           | `{"pin","name","to"}`: arm the pairing window with the PIN a client shows (delivered to waiting pairing `to`, or the only one waiting) |
//! | `POST`   | `/api/pf1/pin`       | `{"pin"?}`: open the punktfunk/1 pairing window    |
//! | `DELETE` | `/api/pf1/pin`       | close the punktfunk/1 pairing window               |
//! | `GET`    | `/api/status`        | host, ports, pairing state, session; `pf1` window  |
//! | `GET`    | `/api/pairing`       | the pairing window, waiting clients (address, certificate fingerprint, age), counters |
//! | `DELETE` | `/api/pairing`       | close the pairing window                           |
//! | `DELETE` | `/api/pairing/{id}`  | cancel a waiting or active pairing                 |
//! | `GET`    | `/api/sessions`      | the running session (a list of 0 or 1)             |
//! | `POST`   | `/api/feedback`      | `{"session", "kind", …}`: rumble, trigger rumble, motion-sensor state, LED or adaptive triggers to a GameStream session's client |
//! | `GET`    | `/api/clients`       | paired clients                                     |
//! | `DELETE` | `/api/clients/{id}`  | unpair a client (and end its session)              |
//!
//! Every request needs `Authorization: Bearer <token>`, the token being the contents of
//! `<state dir>/api-token` (mode 0600). That limits the API to users who can read the state
//! directory, and stops web pages in a local browser from posting PINs (they cannot read the
//! token). Bodies are limited to 4 KiB and 5 s; connections to 32, with the
//! same deadlines and eviction as nvhttp (`host::listen`).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt as _, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use serde_json::json;
use subtle::ConstantTimeEq as _;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::gamestream::clients::PairedClient;
use crate::gamestream::clients::client_id;
use crate::gamestream::pairing::{PairingInfo, PairingStatus, Ticket};
use crate::gamestream::query::hex_lower;
use crate::gamestream::session::ClientIdentity;
use crate::pairing_window::Refusal;
use crate::stream::control::HostMessage;

use crate::limits::{Close, LimitsConfig, Listener};

use super::listen;
use super::nvhttp::{NvHttp, PinError, PinOutcome};

/// Largest request body accepted.
pub const MAX_BODY: usize = 4096;
/// Total time for a request body, once the headers are in.
pub const BODY_DEADLINE: Duration = Duration::from_secs(5);

/// One route of the management API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Route {
    /// HTTP method.
    pub method: &'static str,
    /// Path template; `{id}` matches one path segment.
    pub path: &'static str,
}

/// Every route the API serves; `docs/openapi.yaml` documents each.
pub const ROUTES: &[Route] = &[
    Route {
        method: "POST",
        path: "/api/pin",
    },
    Route {
        method: "GET",
        path: "/api/status",
    },
    Route {
        method: "GET",
        path: "/api/sessions",
    },
    Route {
        method: "GET",
        path: "/api/clients",
    },
    Route {
        method: "DELETE",
        path: "/api/clients/{id}",
    },
    Route {
        method: "POST",
        path: "/api/pf1/pin",
    },
    Route {
        method: "DELETE",
        path: "/api/pf1/pin",
    },
    Route {
        method: "GET",
        path: "/api/pairing",
    },
    Route {
        method: "DELETE",
        path: "/api/pairing",
    },
    Route {
        method: "DELETE",
        path: "/api/pairing/{id}",
    },
    Route {
        method: "POST",
        path: "/api/feedback",
    },
];

/// Why a request matched no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoRoute {
    /// No route has this path.
    NotFound,
    /// A route has this path, with another method.
    MethodNotAllowed,
}

/// Matches a request to a route; returns it with the `{id}` segment, if the route has one.
pub fn match_route(method: &str, path: &str) -> Result<(Route, Option<String>), NoRoute> {
    let mut path_matched = false;
    for r in ROUTES {
        let param = match r.path.strip_suffix("{id}") {
            Some(prefix) => match path.strip_prefix(prefix) {
                Some(seg) if !seg.is_empty() && !seg.contains('/') => Some(seg.to_owned()),
                _ => continue,
            },
            None if r.path == path => None,
            None => continue,
        };
        path_matched = true;
        if r.method == method {
            return Ok((*r, param));
        }
    }
    Err(if path_matched {
        NoRoute::MethodNotAllowed
    } else {
        NoRoute::NotFound
    })
}

/// A paired client as the API shows it (no certificate).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientView {
    /// Id (16 hex digits).
    pub id: String,
    /// Name.
    pub name: String,
    /// SHA-256 fingerprint of the certificate.
    pub fingerprint: String,
    /// Unix seconds.
    pub paired_at: u64,
    /// The `uniqueid` sent while pairing.
    pub uniqueid: String,
}

impl From<&PairedClient> for ClientView {
    fn from(c: &PairedClient) -> Self {
        Self {
            id: c.id.clone(),
            name: c.name.clone(),
            fingerprint: c.fingerprint.clone(),
            paired_at: c.paired_at,
            uniqueid: c.uniqueid.clone(),
        }
    }
}

#[derive(Debug, Deserialize)]
struct PinBody {
    pin: String,
    #[serde(default)]
    name: Option<String>,
    /// The waiting pairing's id (as `GET /api/pairing` shows it).
    #[serde(default)]
    to: Option<String>,
}

/// A pairing id as the API shows it (decimal digits).
fn parse_ticket(id: &str) -> Option<Ticket> {
    if id.is_empty() || id.len() > 19 || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    id.parse().ok().map(Ticket)
}

fn pairing_info_json(info: &PairingInfo, now: Instant) -> serde_json::Value {
    json!({
        "id": info.ticket.0.to_string(),
        "device_name": info.device_name,
        "uniqueid": info.uniqueid,
        "address": info.address.to_string(),
        "fingerprint": hex_lower(&info.fingerprint),
        "client_id": client_id(&info.fingerprint),
        "age_s": info.age_at(now).as_secs(),
    })
}

/// The pairing part of `/api/status` and `GET /api/pairing`.
pub fn pairing_json(status: &PairingStatus, now: Instant) -> serde_json::Value {
    let w = &status.window;
    let (window_state, expires_in_s) = match w.state {
        Ok(left) => ("open", Some(left.as_secs())),
        Err(Refusal::NotArmed) => ("not_armed", None),
        Err(Refusal::Closed) => ("closed", None),
        Err(Refusal::Expired) => ("expired", None),
        Err(Refusal::Used) => ("used", None),
        Err(Refusal::Exhausted) => ("exhausted", None),
    };
    let s = &status.stats;
    json!({
        "state": status.state(),
        "window": {
            "state": window_state,
            "expires_in_s": expires_in_s,
            "failures": w.failures,
            "failures_left": w.failures_left,
            "armed_for": status.armed_for.map(|t| t.0.to_string()),
        },
        "active": status.active.as_ref().map(|a| pairing_info_json(a, now)),
        "waiting": status.waiting.iter().map(|i| pairing_info_json(i, now)).collect::<Vec<_>>(),
        "stats": {
            "paired": s.paired,
            "failed": s.failed,
            "refused_backoff": s.refused_backoff,
            "refused_closed": s.refused_closed,
            "refused_busy": s.refused_busy,
            "evicted": s.evicted,
            "refused_malformed": s.refused_malformed,
            "ended_waiting": s.ended_waiting,
            "windows_exhausted": s.windows_exhausted,
        },
    })
}

/// `POST /api/feedback`: a host → client controller message for one GameStream session
/// (`kind` picks the message, its fields as in [`HostMessage`]).
#[derive(Debug, Deserialize)]
struct FeedbackBody {
    /// The session's id, as `GET /api/sessions` shows it.
    session: u32,
    #[serde(flatten)]
    message: HostMessage,
}

#[derive(Debug, Deserialize)]
struct Pf1PinBody {
    /// `None`: the host generates a PIN and returns it.
    #[serde(default)]
    pin: Option<String>,
}

/// The management API's state.
pub struct Api {
    ctx: Arc<NvHttp>,
    token: String,
    pf1: Option<crate::pf1::net::HostHandle>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").finish_non_exhaustive()
    }
}

fn json_response(status: StatusCode, value: &serde_json::Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(value.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: &str) -> Response<Full<Bytes>> {
    json_response(status, &json!({ "error": message }))
}

/// The body, at most [`MAX_BODY`] bytes, within [`BODY_DEADLINE`] (a body that trickles in
/// is cut off at the deadline, not per read).
async fn read_body(req: Request<Incoming>) -> Result<Bytes, Response<Full<Bytes>>> {
    match tokio::time::timeout(
        BODY_DEADLINE,
        Limited::new(req.into_body(), MAX_BODY).collect(),
    )
    .await
    {
        Ok(Ok(b)) => Ok(b.to_bytes()),
        Ok(Err(_)) => Err(error(StatusCode::PAYLOAD_TOO_LARGE, "body too large")),
        Err(_) => Err(error(StatusCode::REQUEST_TIMEOUT, "body not sent in time")),
    }
}

/// The request's body as JSON of type `T`; a 400 saying what is wrong otherwise.
async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, Response<Full<Bytes>>> {
    let body = read_body(req).await?;
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")))
}

impl Api {
    /// An API over the nvhttp state, requiring `token`.
    pub fn new(ctx: Arc<NvHttp>, token: String) -> Self {
        Self {
            ctx,
            token,
            pf1: None,
        }
    }

    /// Lets `/api/pf1/pin` arm PINs on a running punktfunk/1 listener.
    pub fn with_pf1(mut self, handle: Option<crate::pf1::net::HostHandle>) -> Self {
        self.pf1 = handle;
        self
    }

    fn authorized(&self, req: &Request<Incoming>) -> bool {
        let Some(value) = req
            .headers()
            .get(hyper::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        let Some(token) = value.strip_prefix("Bearer ") else {
            return false;
        };
        bool::from(token.trim().as_bytes().ct_eq(self.token.as_bytes()))
    }

    /// Handles one request.
    pub async fn handle(self: Arc<Self>, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let (route, param) = match match_route(req.method().as_str(), req.uri().path()) {
            Ok(m) => m,
            Err(NoRoute::NotFound) => return error(StatusCode::NOT_FOUND, "no such route"),
            Err(NoRoute::MethodNotAllowed) => {
                return error(StatusCode::METHOD_NOT_ALLOWED, "method not allowed");
            }
        };
        if !self.authorized(&req) {
            return error(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (see <state dir>/api-token)",
            );
        }
        match (route.method, route.path) {
            ("POST", "/api/pin") => {
                let body: PinBody = match json_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let to = match body.to.as_deref().map(|t| parse_ticket(t).ok_or(t)) {
                    None => None,
                    Some(Ok(t)) => Some(t),
                    Some(Err(t)) => {
                        return error(
                            StatusCode::BAD_REQUEST,
                            &format!("\"to\": {t:?} is not a pairing id (decimal digits)"),
                        );
                    }
                };
                self.pin(&body.pin, body.name.as_deref(), to).await
            }
            ("POST", "/api/pf1/pin") => {
                let body: Pf1PinBody = match json_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                self.pf1_pin(body.pin.as_deref())
            }
            ("DELETE", "/api/pf1/pin") => self.pf1_close(),
            ("GET", "/api/status") => self.status(self.pf1_status().await),
            ("GET", "/api/sessions") => {
                let sessions = Arc::clone(self.ctx.sessions());
                let mut rows = tokio::task::spawn_blocking(move || sessions.live())
                    .await
                    .unwrap_or_default();
                rows.extend(self.pf1_live().await);
                json_response(StatusCode::OK, &json!(rows))
            }
            ("POST", "/api/feedback") => {
                let body: FeedbackBody = match json_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let msg = body.message;
                if let Err(e) = msg.check_controller_message() {
                    return error(StatusCode::BAD_REQUEST, &e);
                }
                let sessions = Arc::clone(self.ctx.sessions());
                let id = body.session;
                match tokio::task::spawn_blocking(move || sessions.send_to_client(id, &msg)).await {
                    Ok(Ok(())) => json_response(StatusCode::OK, &json!({ "sent": true })),
                    Ok(Err(e)) => error(StatusCode::CONFLICT, &e),
                    Err(_) => error(StatusCode::INTERNAL_SERVER_ERROR, "feedback task failed"),
                }
            }
            ("GET", "/api/clients") => {
                let list: Vec<ClientView> = self
                    .ctx
                    .clients()
                    .list()
                    .iter()
                    .map(ClientView::from)
                    .collect();
                json_response(StatusCode::OK, &json!(list))
            }
            ("DELETE", "/api/clients/{id}") => self.unpair(param.unwrap_or_default()).await,
            ("GET", "/api/pairing") => json_response(
                StatusCode::OK,
                &pairing_json(&self.ctx.pairing_status(), Instant::now()),
            ),
            ("DELETE", "/api/pairing") => {
                self.ctx.close_pairing_window();
                json_response(
                    StatusCode::OK,
                    &pairing_json(&self.ctx.pairing_status(), Instant::now()),
                )
            }
            ("DELETE", "/api/pairing/{id}") => {
                match parse_ticket(param.as_deref().unwrap_or_default()) {
                    Some(t) if self.ctx.cancel_pairing(t) => {
                        json_response(StatusCode::OK, &json!({ "cancelled": t.0.to_string() }))
                    }
                    _ => error(StatusCode::NOT_FOUND, "no open pairing with this id"),
                }
            }
            _ => error(StatusCode::NOT_FOUND, "no such route"),
        }
    }

    async fn pin(
        &self,
        pin: &str,
        name: Option<&str>,
        to: Option<Ticket>,
    ) -> Response<Full<Bytes>> {
        match self.ctx.submit_pin(pin, name, to).await {
            Ok(PinOutcome::Paired(c)) => json_response(
                StatusCode::OK,
                &json!({ "outcome": "paired", "client": ClientView::from(&c) }),
            ),
            Ok(PinOutcome::Failed(reason)) => json_response(
                StatusCode::OK,
                &json!({ "outcome": "failed", "reason": reason }),
            ),
            Ok(PinOutcome::Pending) => {
                json_response(StatusCode::ACCEPTED, &json!({ "outcome": "pending" }))
            }
            Ok(PinOutcome::Armed) => json_response(
                StatusCode::OK,
                &json!({
                    "outcome": "armed",
                    "pairing": pairing_json(&self.ctx.pairing_status(), Instant::now()),
                }),
            ),
            Err(e @ PinError::InvalidPin) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(e @ PinError::NoSuchPairing(_)) => error(StatusCode::NOT_FOUND, &e.to_string()),
            Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
        }
    }

    /// Opens the punktfunk/1 pairing window with `pin`, or with a PIN generated here (6
    /// digits from the OS generator) that the response carries: one client may pair with it
    /// within [`crate::pf1::host::DEFAULT_PIN_TTL`]; 3 wrong PINs close the window.
    fn pf1_pin(&self, pin: Option<&str>) -> Response<Full<Bytes>> {
        let pin = match pin {
            Some(p) => match crate::pf1::Pin::parse(p) {
                Ok(p) => p,
                Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
            },
            None => match crate::host::state::os_random::<32>() {
                Ok(seed) => {
                    use rand_chacha::rand_core::SeedableRng as _;
                    let mut rng = rand_chacha::ChaCha20Rng::from_seed(seed);
                    crate::pf1::Pin::generate(&mut rng, crate::pf1::pairing::DEFAULT_PIN_DIGITS)
                }
                Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            },
        };
        let Some(handle) = &self.pf1 else {
            return error(
                StatusCode::CONFLICT,
                "the punktfunk/1 listener is not running (serve --no-pf1)",
            );
        };
        let digits = pin.as_str().to_owned();
        if handle.send(crate::pf1::net::HostCommand::ArmPin(pin)) {
            tracing::info!("punktfunk/1 pairing window opened through the management API");
            json_response(
                StatusCode::OK,
                &json!({
                    "outcome": "armed",
                    "pin": digits,
                    "expires_in_s": crate::pf1::host::DEFAULT_PIN_TTL.as_secs(),
                }),
            )
        } else {
            error(StatusCode::CONFLICT, "the punktfunk/1 listener has stopped")
        }
    }

    /// Closes the punktfunk/1 pairing window (clients at the PIN prompt are told so).
    fn pf1_close(&self) -> Response<Full<Bytes>> {
        let Some(handle) = &self.pf1 else {
            return error(
                StatusCode::CONFLICT,
                "the punktfunk/1 listener is not running (serve --no-pf1)",
            );
        };
        if handle.send(crate::pf1::net::HostCommand::DisarmPin) {
            tracing::info!("punktfunk/1 pairing window closed through the management API");
            json_response(StatusCode::OK, &json!({ "outcome": "closed" }))
        } else {
            error(StatusCode::CONFLICT, "the punktfunk/1 listener has stopped")
        }
    }

    /// The punktfunk/1 sessions' rows for `/api/sessions` (none without a listener, or if it
    /// does not answer within a second).
    async fn pf1_live(&self) -> Vec<crate::live::LiveSession> {
        let Some(handle) = self.pf1.clone() else {
            return Vec::new();
        };
        tokio::task::spawn_blocking(move || handle.live_sessions(Duration::from_secs(1)))
            .await
            .ok()
            .flatten()
            .unwrap_or_default()
    }

    /// The punktfunk/1 listener's admission state for `/api/status` (`null` without a
    /// listener, or if it does not answer within a second).
    async fn pf1_status(&self) -> serde_json::Value {
        let Some(handle) = self.pf1.clone() else {
            return serde_json::Value::Null;
        };
        let status =
            tokio::task::spawn_blocking(move || handle.admission_status(Duration::from_secs(1)))
                .await
                .ok()
                .flatten();
        status.map_or(serde_json::Value::Null, |s| pf1_status_json(&s))
    }

    fn status(&self, pf1: serde_json::Value) -> Response<Full<Bytes>> {
        let info = self.ctx.info();
        let p = info.ports;
        let pairing = pairing_json(&self.ctx.pairing_status(), Instant::now());
        let gamestream = json!({
            "live": self.ctx.sessions().sessions().len(),
            "max": self.ctx.sessions().max_sessions(),
        });
        let pf1_sessions = if pf1.is_null() {
            serde_json::Value::Null
        } else {
            json!({ "live": pf1["streaming"], "max": pf1["max_streaming"] })
        };
        let listeners: serde_json::Map<String, serde_json::Value> = self
            .ctx
            .listeners()
            .stats()
            .into_iter()
            .map(|(name, stats)| {
                (
                    name.to_owned(),
                    serde_json::to_value(stats).unwrap_or_default(),
                )
            })
            .collect();
        json_response(
            StatusCode::OK,
            &json!({
                "version": env!("CARGO_PKG_VERSION"),
                "hostname": info.hostname,
                "uniqueid": info.uniqueid,
                "ports": {
                    "http": p.http(), "https": p.https(), "management": p.management(),
                    "rtsp": p.rtsp(), "video": p.video(), "control": p.control(), "audio": p.audio(),
                },
                "pairing": pairing,
                "sessions": { "gamestream": gamestream, "pf1": pf1_sessions },
                "paired_clients": self.ctx.clients().list().len(),
                "pf1": pf1,
                "listeners": listeners,
            }),
        )
    }

    async fn unpair(&self, id: String) -> Response<Full<Bytes>> {
        let store = Arc::clone(self.ctx.clients());
        let removed = match tokio::task::spawn_blocking(move || store.remove(&id)).await {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
            Err(e) => return error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
        let Some(client) = removed else {
            return error(StatusCode::NOT_FOUND, "no paired client with this id");
        };
        tracing::info!(id = %client.id, name = %client.name, "client unpaired");
        // An unpaired client must not keep streaming.
        let who = ClientIdentity {
            id: client.id.clone(),
            name: client.name.clone(),
        };
        if self.ctx.sessions().status(&who).is_some() {
            let sessions = Arc::clone(self.ctx.sessions());
            let _ = tokio::task::spawn_blocking(move || sessions.cancel(&who)).await;
        }
        json_response(
            StatusCode::OK,
            &json!({ "removed": ClientView::from(&client) }),
        )
    }
}

/// A pairing window's closed state as a stable word for the API.
fn refusal_code(r: crate::pairing_window::Refusal) -> &'static str {
    use crate::pairing_window::Refusal;
    match r {
        Refusal::NotArmed => "not_armed",
        Refusal::Closed => "closed_by_operator",
        Refusal::Expired => "expired",
        Refusal::Used => "used",
        Refusal::Exhausted => "exhausted",
    }
}

/// The `"pf1"` object of `/api/status` (see `docs/openapi.yaml`, `Pf1Status`).
pub fn pf1_status_json(s: &crate::pf1::AdmissionStatus) -> serde_json::Value {
    let w = &s.window;
    let (open, why, seconds_left) = match w.state {
        Ok(left) => (true, None, Some(left.as_secs())),
        Err(r) => (false, Some(r), None),
    };
    let st = &s.stats;
    json!({
        "require_pairing": s.require_pairing,
        "window": {
            "open": open,
            "closed_because": why.map(refusal_code),
            "closed_text": why.map(|r| r.as_str()),
            "seconds_left": seconds_left,
            "failures": w.failures,
            "failures_left": w.failures_left,
        },
        "backoff_addresses": s.backoff_addresses,
        "pending": s.pending,
        "max_pending": s.max_pending,
        "streaming": s.admitted,
        "max_streaming": s.max_connections,
        "refused": {
            "not_paired": st.refused_not_paired,
            "pairing_closed": st.refused_pairing_closed,
            "backoff": st.refused_backoff,
            "busy": st.refused_busy,
            "concurrent_pairing": st.refused_concurrent_pairing,
            "connections": st.refused_connections,
            "evicted_pending": st.evicted_pending,
            "expired_pending": st.expired_pending,
            "expired_handshakes": st.expired_handshakes,
        },
        "pairing_attempts": st.pairing_attempts,
        "pairing_failures": st.pairing_failures,
        "pairings": st.pairings,
        "unpaired_input_datagrams": st.unpaired_input_datagrams,
    })
}

/// Limits of the management API's listener: it is local, so a small table; the same total
/// deadlines as nvhttp.
pub fn api_limits() -> LimitsConfig {
    LimitsConfig {
        max_connections: 32,
        ..LimitsConfig::default()
    }
}

/// Serves the management API on `listener` until `shutdown` turns true, under
/// [`api_limits`] (registered as `api` with the nvhttp listeners).
pub async fn serve(api: Arc<Api>, listener: TcpListener, shutdown: watch::Receiver<bool>) {
    let limits = api_limits();
    let conns = Listener::new("api", limits);
    api.ctx.listeners().add(Arc::clone(&conns));
    listen::serve(listener, conns, shutdown, move |stream, _peer, progress| {
        let api = Arc::clone(&api);
        async move {
            let svc = service_fn(move |req| {
                let api = Arc::clone(&api);
                let progress = Arc::clone(&progress);
                async move {
                    let resp = if progress.request() {
                        api.handle(req).await
                    } else {
                        error(StatusCode::SERVICE_UNAVAILABLE, "too many connections")
                    };
                    progress.respond();
                    Ok::<_, Infallible>(resp)
                }
            });
            match http1::Builder::new()
                .keep_alive(false)
                .timer(TokioTimer::new())
                .header_read_timeout(limits.request_deadline)
                .serve_connection(TokioIo::new(stream), svc)
                .await
            {
                Ok(()) => Close::Done,
                Err(e) if e.is_parse() || e.is_parse_too_large() => Close::Malformed,
                Err(e) if e.is_timeout() => Close::TimedOut,
                Err(_) => Close::Done,
            }
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_match() {
        assert_eq!(match_route("POST", "/api/pin").unwrap().0.path, "/api/pin");
        assert_eq!(
            match_route("DELETE", "/api/clients/0011aabb").unwrap(),
            (ROUTES[4], Some("0011aabb".into()))
        );
        assert_eq!(
            match_route("GET", "/api/pin"),
            Err(NoRoute::MethodNotAllowed)
        );
        assert_eq!(
            match_route("GET", "/api/clients/x/y"),
            Err(NoRoute::NotFound)
        );
        assert_eq!(
            match_route("DELETE", "/api/clients/"),
            Err(NoRoute::NotFound)
        );
        assert_eq!(match_route("GET", "/nope"), Err(NoRoute::NotFound));
    }

    #[test]
    fn pf1_status_shows_the_window_and_counters() {
        use crate::pairing_window::{Refusal, WindowStatus};
        let mut s = crate::pf1::AdmissionStatus {
            require_pairing: true,
            window: WindowStatus {
                state: Ok(Duration::from_millis(97_400)),
                failures: 1,
                failures_left: 2,
            },
            backoff_addresses: 1,
            pending: 2,
            max_pending: 16,
            admitted: 1,
            max_connections: 8,
            stats: crate::pf1::HostStats {
                refused_not_paired: 4,
                refused_backoff: 3,
                expired_handshakes: 5,
                pairing_failures: 1,
                ..Default::default()
            },
        };
        let v = pf1_status_json(&s);
        assert_eq!(v["window"]["open"], true);
        assert_eq!(v["window"]["seconds_left"], 97);
        assert_eq!(v["window"]["closed_because"], serde_json::Value::Null);
        assert_eq!(v["window"]["failures"], 1);
        assert_eq!(v["window"]["failures_left"], 2);
        assert_eq!(v["backoff_addresses"], 1);
        assert_eq!(v["pending"], 2);
        assert_eq!(v["streaming"], 1);
        assert_eq!(v["refused"]["not_paired"], 4);
        assert_eq!(v["refused"]["backoff"], 3);
        assert_eq!(v["refused"]["expired_handshakes"], 5);
        assert_eq!(v["pairing_failures"], 1);
        s.window = WindowStatus {
            state: Err(Refusal::Exhausted),
            failures: 3,
            failures_left: 0,
        };
        let v = pf1_status_json(&s);
        assert_eq!(v["window"]["open"], false);
        assert_eq!(v["window"]["closed_because"], "exhausted");
        assert_eq!(v["window"]["closed_text"], Refusal::Exhausted.as_str());
        assert_eq!(v["window"]["seconds_left"], serde_json::Value::Null);
        assert_eq!(v["window"]["failures_left"], 0);
    }

    /// Every route is in docs/openapi.yaml, with its method, and the document has no path
    /// the router lacks.
    #[test]
    fn openapi_document_lists_every_route() {
        let doc = include_str!("../../../docs/openapi.yaml");
        let mut documented = Vec::new();
        let mut in_paths = false;
        let mut current: Option<String> = None;
        for line in doc.lines() {
            if line.starts_with("paths:") {
                in_paths = true;
                continue;
            }
            if in_paths && !line.starts_with(' ') && !line.trim().is_empty() {
                in_paths = false;
            }
            if !in_paths {
                continue;
            }
            let indent = line.len() - line.trim_start().len();
            let t = line.trim();
            if indent == 2 && t.ends_with(':') {
                current = Some(t.trim_end_matches(':').trim_matches('"').to_owned());
            } else if indent == 4 && t.ends_with(':') {
                let method = t.trim_end_matches(':').to_ascii_uppercase();
                if ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method.as_str())
                    && let Some(p) = &current
                {
                    documented.push((method, p.clone()));
                }
            }
        }
        let mut routed: Vec<_> = ROUTES
            .iter()
            .map(|r| (r.method.to_owned(), r.path.to_owned()))
            .collect();
        routed.sort();
        documented.sort();
        assert_eq!(routed, documented);
    }
}
