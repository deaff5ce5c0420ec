//! The management API: JSON over HTTP on 127.0.0.1 (default port base+1 = 47990), for the
//! `punktfunk` CLI and anything else on this machine. Described by `docs/openapi.yaml`; a
//! test checks that every route in [`ROUTES`] is in that document.
//!
//! | method   | path                 | what                                               |
//! |----------|----------------------|----------------------------------------------------|
//! | `POST`   | `/api/pin`           | `{"pin","name"}`: the PIN a pairing client shows   |
//! | `POST`   | `/api/pf1/pin`       | `{"pin"}`: arm a PIN for the next punktfunk/1 client |
//! | `GET`    | `/api/status`        | host, ports, pairing state, session                |
//! | `GET`    | `/api/sessions`      | the running session (a list of 0 or 1)             |
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
use std::time::Duration;

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
use crate::gamestream::pairing::PairingStatus;
use crate::gamestream::session::{ClientIdentity, SessionInfo};

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
}

#[derive(Debug, Deserialize)]
struct Pf1PinBody {
    pin: String,
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

fn session_json(s: &SessionInfo) -> serde_json::Value {
    serde_json::to_value(s).unwrap_or_default()
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
                let body = match read_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let body: PinBody = match serde_json::from_slice(&body) {
                    Ok(b) => b,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
                };
                self.pin(&body.pin, body.name.as_deref()).await
            }
            ("POST", "/api/pf1/pin") => {
                let body = match read_body(req).await {
                    Ok(b) => b,
                    Err(resp) => return resp,
                };
                let body: Pf1PinBody = match serde_json::from_slice(&body) {
                    Ok(b) => b,
                    Err(e) => return error(StatusCode::BAD_REQUEST, &format!("bad JSON: {e}")),
                };
                self.pf1_pin(&body.pin)
            }
            ("GET", "/api/status") => self.status(),
            ("GET", "/api/sessions") => {
                let sessions: Vec<_> = self
                    .ctx
                    .sessions()
                    .status()
                    .iter()
                    .map(session_json)
                    .collect();
                json_response(StatusCode::OK, &json!(sessions))
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
            _ => error(StatusCode::NOT_FOUND, "no such route"),
        }
    }

    async fn pin(&self, pin: &str, name: Option<&str>) -> Response<Full<Bytes>> {
        match self.ctx.submit_pin(pin, name).await {
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
            Err(e @ PinError::InvalidPin) => error(StatusCode::BAD_REQUEST, &e.to_string()),
            Err(e) => error(StatusCode::CONFLICT, &e.to_string()),
        }
    }

    /// Arms a PIN on the punktfunk/1 listener: the next client that asks to pair (with
    /// `punktfunk client HOST --pair PIN`) must give it; consumed by the first attempt.
    fn pf1_pin(&self, pin: &str) -> Response<Full<Bytes>> {
        let pin = match crate::pf1::Pin::parse(pin) {
            Ok(p) => p,
            Err(e) => return error(StatusCode::BAD_REQUEST, &e.to_string()),
        };
        let Some(handle) = &self.pf1 else {
            return error(
                StatusCode::CONFLICT,
                "the punktfunk/1 listener is not running (serve --no-pf1)",
            );
        };
        if handle.send(crate::pf1::net::HostCommand::ArmPin(pin)) {
            tracing::info!("punktfunk/1 PIN armed through the management API");
            json_response(StatusCode::OK, &json!({ "outcome": "armed" }))
        } else {
            error(StatusCode::CONFLICT, "the punktfunk/1 listener has stopped")
        }
    }

    fn status(&self) -> Response<Full<Bytes>> {
        let info = self.ctx.info();
        let p = info.ports;
        let pairing = match self.ctx.pairing_status() {
            PairingStatus::AwaitingPin {
                uniqueid,
                device_name,
                ..
            } => {
                json!({ "state": "awaiting_pin", "uniqueid": uniqueid, "device_name": device_name })
            }
            PairingStatus::InProgress { uniqueid, .. } => {
                json!({ "state": "in_progress", "uniqueid": uniqueid })
            }
            _ => json!({ "state": "idle" }),
        };
        let session = self.ctx.sessions().status();
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
                "session": session.as_ref().map(session_json),
                "paired_clients": self.ctx.clients().list().len(),
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
        if let Some(s) = self.ctx.sessions().status()
            && s.owner.id == client.id
        {
            let sessions = Arc::clone(self.ctx.sessions());
            let who = ClientIdentity {
                id: client.id.clone(),
                name: client.name.clone(),
            };
            let _ = tokio::task::spawn_blocking(move || sessions.cancel(&who)).await;
        }
        json_response(
            StatusCode::OK,
            &json!({ "removed": ClientView::from(&client) }),
        )
    }
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
