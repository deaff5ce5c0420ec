//! The CLI side of the management API: `punktfunk pin`, `punktfunk pairing`,
//! `punktfunk clients`, `punktfunk unpair`, `punktfunk status`.
//!
//! Finding the running host: `--api ADDR` if given, else `run.json` in the state directory
//! (written by `serve` with its actual address), else `management_addr` in `settings.json`,
//! else 127.0.0.1:47990. The bearer token is read from `<state dir>/api-token`.
//!
//! The HTTP client is a few lines over `std::net::TcpStream` (one request, `Connection:
//! close`, read to the end): the CLI needs no async runtime.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::state::{StateDir, StateError};
use crate::gamestream::ports::{DEFAULT_BASE_PORT, Ports};

/// How long the CLI waits for an answer (`/api/pin` waits up to 30 s for the pairing).
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(45);

/// Why a CLI command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// Reading the state directory failed.
    #[error(transparent)]
    State(#[from] StateError),
    /// No token: `serve` never ran with this state directory.
    #[error("no API token in {0}: is `punktfunk serve` running with this --state-dir?")]
    NoToken(String),
    /// Nothing listens at the address.
    #[error("cannot reach punktfunk at {addr} ({source}): is `punktfunk serve` running?")]
    NotRunning {
        /// Where we looked.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The connection failed mid-way.
    #[error("talking to punktfunk at {addr}: {source}")]
    Io {
        /// Where.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The host answered with an error.
    #[error("{message} (HTTP {status})")]
    Api {
        /// HTTP status.
        status: u16,
        /// The `error` field of the answer.
        message: String,
    },
    /// The answer was not the expected JSON.
    #[error("unexpected answer from punktfunk: {0}")]
    BadResponse(String),
}

/// A client of one running host's management API.
#[derive(Debug, Clone)]
pub struct ApiClient {
    addr: SocketAddr,
    token: String,
}

impl ApiClient {
    /// Finds the API of the host using `state_dir` (see the module docs).
    pub fn discover(state_dir: &Path, api: Option<SocketAddr>) -> Result<Self, CliError> {
        let dir = StateDir::existing(state_dir);
        let token = dir
            .read_api_token()?
            .ok_or_else(|| CliError::NoToken(state_dir.display().to_string()))?;
        let addr = match api {
            Some(a) => a,
            None => match dir.read_runtime() {
                Some(rt) => rt.management_addr,
                None => {
                    let s = dir.load_settings()?;
                    s.management_addr.unwrap_or_else(|| {
                        let base = s.base_port.unwrap_or(DEFAULT_BASE_PORT);
                        let port = Ports::new(base).unwrap_or_default().management();
                        SocketAddr::from(([127, 0, 0, 1], port))
                    })
                }
            },
        };
        Ok(Self { addr, token })
    }

    /// A client for `addr` with `token`.
    pub fn new(addr: SocketAddr, token: String) -> Self {
        Self { addr, token }
    }

    /// Sends one request; returns the JSON answer of a 2xx, else [`CliError::Api`].
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), CliError> {
        let io = |source| CliError::Io {
            addr: self.addr,
            source,
        };
        let mut stream =
            TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).map_err(|source| {
                CliError::NotRunning {
                    addr: self.addr,
                    source,
                }
            })?;
        stream
            .set_read_timeout(Some(RESPONSE_TIMEOUT))
            .map_err(io)?;
        let body = body.map(Value::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.addr,
            self.token,
            body.len()
        );
        stream.write_all(req.as_bytes()).map_err(io)?;
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).map_err(io)?;
        let (status, body) = parse_response(&raw)?;
        let value: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body).map_err(|e| CliError::BadResponse(e.to_string()))?
        };
        if (200..300).contains(&status) {
            Ok((status, value))
        } else {
            Err(CliError::Api {
                status,
                message: value
                    .get("error")
                    .and_then(Value::as_str)
                    .unwrap_or("error")
                    .to_owned(),
            })
        }
    }
}

/// Splits an HTTP/1.1 response into status and body (honouring `Content-Length`).
fn parse_response(raw: &[u8]) -> Result<(u16, &[u8]), CliError> {
    let bad = |what: &str| CliError::BadResponse(what.to_owned());
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("headers are not text"))?;
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status line"))?;
    let mut body = &raw[end + 4..];
    for l in lines {
        if let Some((k, v)) = l.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            let n: usize = v.trim().parse().map_err(|_| bad("bad Content-Length"))?;
            body = body.get(..n).ok_or_else(|| bad("short body"))?;
        }
    }
    Ok((status, body))
}

fn client_line(c: &Value) -> String {
    let s = |k: &str| c.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    format!("{}  {}", s("id"), s("name"))
}

/// `punktfunk pin PIN [--name NAME] [--to ID]`: arms the pairing window with the PIN and
/// delivers it to the waiting pairing `ID` (or the only one waiting); returns the text to
/// print and whether the command succeeded (the client paired, or, with nobody waiting, the
/// window was armed for the next client). With several clients waiting and no `--to`, the
/// error lists them.
pub fn pin(
    api: &ApiClient,
    pin: &str,
    name: Option<&str>,
    to: Option<&str>,
) -> Result<(String, bool), CliError> {
    let mut body = serde_json::json!({ "pin": pin });
    if let Some(n) = name {
        body["name"] = Value::from(n);
    }
    if let Some(t) = to {
        body["to"] = Value::from(t);
    }
    let v = match api.request("POST", "/api/pin", Some(&body)) {
        Ok((_, v)) => v,
        Err(CliError::Api {
            status: 409,
            message,
        }) => {
            // Show the operator who is waiting, so the right one can be chosen.
            let listing = api
                .request("GET", "/api/pairing", None)
                .map(|(_, p)| pairing_text(&p))
                .unwrap_or_default();
            return Err(CliError::Api {
                status: 409,
                message: format!("{message}\n{listing}").trim_end().to_owned(),
            });
        }
        Err(e) => return Err(e),
    };
    Ok(match v.get("outcome").and_then(Value::as_str) {
        Some("paired") => (
            format!(
                "paired: {}\n",
                client_line(v.get("client").unwrap_or(&Value::Null))
            ),
            true,
        ),
        Some("failed") => (
            format!(
                "pairing failed: {}\n",
                v.get("reason").and_then(Value::as_str).unwrap_or("unknown")
            ),
            false,
        ),
        Some("armed") => {
            let secs = v
                .pointer("/pairing/window/expires_in_s")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            (
                format!(
                    "no client is waiting: PIN armed for the next client that pairs within {secs} s \
                     (3 wrong PINs close it)\n"
                ),
                true,
            )
        }
        _ => (
            "PIN delivered; the client has not finished pairing yet\n".into(),
            false,
        ),
    })
}

fn pairing_line(p: &Value) -> String {
    let s = |k: &str| p.get(k).and_then(Value::as_str).unwrap_or("?").to_owned();
    let age = p.get("age_s").and_then(Value::as_u64).unwrap_or(0);
    format!(
        "  id {:<4} from {:<15}  {:>4} s  name {:?}  uniqueid {}\n          certificate sha256 {}\n",
        s("id"),
        s("address"),
        age,
        s("device_name"),
        s("uniqueid"),
        s("fingerprint"),
    )
}

/// The text of `punktfunk pairing`: the window, the pairings, the counters.
pub fn pairing_text(v: &Value) -> String {
    let w = v.get("window").unwrap_or(&Value::Null);
    let state = w.get("state").and_then(Value::as_str).unwrap_or("?");
    let mut out = match state {
        "open" => format!(
            "pairing window: open, {} s left, {} wrong PINs left{}\n",
            w.get("expires_in_s").and_then(Value::as_u64).unwrap_or(0),
            w.get("failures_left").and_then(Value::as_u64).unwrap_or(0),
            w.get("armed_for")
                .and_then(Value::as_str)
                .map(|t| format!(", for pairing {t}"))
                .unwrap_or_default()
        ),
        "exhausted" => "pairing window: closed after too many wrong PINs; new pairings are \
                        refused until you run `punktfunk pin PIN` or `punktfunk pairing --close`\n"
            .to_owned(),
        other => format!("pairing window: {}\n", other.replace('_', " ")),
    };
    if let Some(a) = v.get("active").filter(|a| !a.is_null()) {
        out.push_str("pairing with the PIN now:\n");
        out.push_str(&pairing_line(a));
    }
    match v.get("waiting").and_then(Value::as_array) {
        Some(list) if !list.is_empty() => {
            out.push_str("waiting for a PIN (`punktfunk pin PIN --to ID`, cancel with `punktfunk pairing --cancel ID`):\n");
            for p in list {
                out.push_str(&pairing_line(p));
            }
        }
        _ => out.push_str("no client is waiting for a PIN\n"),
    }
    if let Some(st) = v.get("stats") {
        let n = |k: &str| st.get(k).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "since start: {} paired, {} failed, {} evicted from a full waiting list; refused: {} backing off, {} window closed, {} busy, {} malformed\n",
            n("paired"),
            n("failed"),
            n("evicted"),
            n("refused_backoff"),
            n("refused_closed"),
            n("refused_busy"),
            n("refused_malformed"),
        ));
    }
    out
}

/// `punktfunk pairing`: the window and who waits.
pub fn pairing(api: &ApiClient) -> Result<String, CliError> {
    let (_, v) = api.request("GET", "/api/pairing", None)?;
    Ok(pairing_text(&v))
}

/// `punktfunk pairing --cancel ID`.
pub fn pairing_cancel(api: &ApiClient, id: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CliError::Api {
            status: 400,
            message: "a pairing id is decimal digits (see `punktfunk pairing`)".into(),
        });
    }
    api.request("DELETE", &format!("/api/pairing/{id}"), None)?;
    Ok(format!("pairing {id} cancelled\n"))
}

/// `punktfunk pairing --close`: closes the window (an exhausted one stops refusing).
pub fn pairing_close(api: &ApiClient) -> Result<String, CliError> {
    let (_, v) = api.request("DELETE", "/api/pairing", None)?;
    Ok(pairing_text(&v))
}

/// `punktfunk pin --pf1 [PIN]`: opens the punktfunk/1 pairing window with `pin`, or with a
/// PIN the host generates, and says which PIN to type into the client.
pub fn pf1_pin(api: &ApiClient, pin: Option<&str>) -> Result<String, CliError> {
    let body = match pin {
        Some(p) => serde_json::json!({ "pin": p }),
        None => serde_json::json!({}),
    };
    let (_, v) = api.request("POST", "/api/pf1/pin", Some(&body))?;
    let pin = v["pin"].as_str().or(pin).unwrap_or("?");
    let secs = v["expires_in_s"].as_u64().unwrap_or(120);
    Ok(format!(
        "punktfunk/1 pairing window open for {secs} s, PIN {pin}\n\
         on the client: punktfunk client HOST --pair {pin}\n\
         one client may pair; 3 wrong PINs close the window (run this again to re-open it)\n"
    ))
}

/// `punktfunk pin --pf1 --close`: closes the punktfunk/1 pairing window.
pub fn pf1_close(api: &ApiClient) -> Result<String, CliError> {
    api.request("DELETE", "/api/pf1/pin", None)?;
    Ok("punktfunk/1 pairing window closed\n".into())
}

/// `punktfunk clients`: one line per paired client.
pub fn clients(api: &ApiClient) -> Result<String, CliError> {
    let (_, v) = api.request("GET", "/api/clients", None)?;
    let list = v
        .as_array()
        .ok_or_else(|| CliError::BadResponse("expected a list".into()))?;
    if list.is_empty() {
        return Ok("no paired clients\n".into());
    }
    Ok(list.iter().map(|c| client_line(c) + "\n").collect())
}

/// `punktfunk status`: the live sessions of both protocols, one line each, and how many
/// each protocol may run.
pub fn status(api: &ApiClient) -> Result<String, CliError> {
    let (_, st) = api.request("GET", "/api/status", None)?;
    let (_, v) = api.request("GET", "/api/sessions", None)?;
    let rows = v
        .as_array()
        .ok_or_else(|| CliError::BadResponse("expected a list".into()))?;
    Ok(status_text(&st, rows))
}

/// The text of `punktfunk status` (pure; see [`status`]).
pub fn status_text(status: &Value, rows: &[Value]) -> String {
    let limit = |p: &str| {
        let s = &status["sessions"][p];
        match (s["live"].as_u64(), s["max"].as_u64()) {
            (Some(n), Some(m)) => format!("{n} of {m}"),
            _ => "off".to_owned(),
        }
    };
    let mut out = format!(
        "{} sessions: GameStream {}, punktfunk/1 {}\n",
        rows.len(),
        limit("gamestream"),
        limit("pf1")
    );
    for r in rows {
        let m = &r["mode"];
        let address = r["address"].as_str().unwrap_or("-");
        out.push_str(&format!(
            "{:<10} {:>4}  {:<20} {:<22} {:<12} {}x{}@{} {} {} kbit/s  frames {}  loss {:.1}%  fec {}%  {} s\n",
            r["protocol"].as_str().unwrap_or("?"),
            r["id"].as_str().unwrap_or("?"),
            r["client"]["name"].as_str().unwrap_or("?"),
            address,
            r["state"].as_str().unwrap_or("?"),
            m["width"],
            m["height"],
            m["fps"],
            r["codec"].as_str().unwrap_or("?"),
            r["bitrate_kbps"],
            r["frames_sent"],
            r["loss_percent"].as_f64().unwrap_or(0.0),
            r["fec_percent"],
            r["age_s"],
        ));
    }
    out
}

/// `punktfunk unpair ID`.
pub fn unpair(api: &ApiClient, id: &str) -> Result<String, CliError> {
    if id.is_empty() || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(CliError::Api {
            status: 400,
            message: "a client id is hex digits (see `punktfunk clients`)".into(),
        });
    }
    let (_, v) = api.request("DELETE", &format!("/api/clients/{id}"), None)?;
    Ok(format!(
        "unpaired: {}\n",
        client_line(v.get("removed").unwrap_or(&Value::Null))
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_responses() {
        let raw = b"HTTP/1.1 409 Conflict\r\ncontent-type: application/json\r\ncontent-length: 2\r\n\r\n{}xx";
        assert_eq!(parse_response(raw).unwrap(), (409, &b"{}"[..]));
        assert!(parse_response(b"HTTP/1.1 200 OK\r\n").is_err());
        assert!(parse_response(b"junk\r\n\r\n").is_err());
        assert!(parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 9\r\n\r\n{}").is_err());
    }

    #[test]
    fn status_lists_every_session() {
        let status = serde_json::json!({"sessions": {
            "gamestream": {"live": 1, "max": 4}, "pf1": null}});
        let rows = [serde_json::json!({
            "protocol": "gamestream", "id": "3", "client": {"id": "ab", "name": "TV"},
            "address": "192.0.2.7:50000", "state": "streaming",
            "mode": {"width": 1280, "height": 720, "fps": 60}, "codec": "h264",
            "bitrate_kbps": 6000, "frames_sent": 600, "loss_percent": 5.0,
            "fec_percent": 25, "age_s": 10})];
        let text = status_text(&status, &rows);
        assert!(
            text.starts_with("1 sessions: GameStream 1 of 4, punktfunk/1 off\n"),
            "{text}"
        );
        for part in [
            "gamestream",
            "TV",
            "192.0.2.7:50000",
            "1280x720@60",
            "h264",
            "6000 kbit/s",
            "frames 600",
            "loss 5.0%",
            "fec 25%",
        ] {
            assert!(text.contains(part), "{part} missing in {text}");
        }
    }
}
