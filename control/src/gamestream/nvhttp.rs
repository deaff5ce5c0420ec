//! nvhttp, the decide half: which endpoint a request is, whether the client may use it, what
//! it asks for ([`decide`] → [`Action`]), and every XML reply (docs/gamestream-protocol-notes.md
//! "nvhttp transport" to "Launch").
//!
//! ```text
//!  (transport, path, query, authorized client?) ──decide──► Action::Reply(ready answer)
//!                                                           Action::ServerInfo / AppList / …
//!                                                           Action::Pair*(fields)  ──► pairing
//!                                                           Action::Launch(LaunchRequest) ──► SessionManager
//! ```
//!
//! Rules that [`decide`] applies, all from notes "nvhttp transport" and "Pairing":
//! * Plain HTTP serves `/serverinfo` (`PairStatus` 0), `/pair` phases 1–4 and `/unpair`.
//!   Everything else over HTTP is `status_code="401"`: there is no client certificate there.
//! * HTTPS serves every endpoint, but only to a client whose certificate is in the paired
//!   store; any other certificate gets `401` for every request (as Sunshine's
//!   `on_verify_failed`), which Moonlight reads as "not paired".
//! * `/pair` over HTTPS is only `phrase=pairchallenge` (phase 5), answered `paired=1`.
//! * Errors go in the XML `status_code` inside an HTTP 200 (Moonlight never parses the body of
//!   an HTTP error); only an unknown path is an HTTP 404.

use std::net::IpAddr;

use super::launch::{LaunchRequest, ResumeRequest};
use super::pairing::PairingError;
use super::ports::Ports;
use super::query::{Query, QueryError, hex_upper};
use super::session::{ClientIdentity, RtspScheme, SessionError, SessionInfo};
use super::xml::Xml;

/// The `appversion` advertised (notes "appversion"): 7.1.431 switches on the encrypted control
/// stream and multi-FEC frames; the negative 4th field marks a Sunshine-compatible host.
pub const APP_VERSION: &str = "7.1.431.-1";
/// `GfeVersion` (Sunshine's and Wolf's value).
pub const GFE_VERSION: &str = "3.23.0.74";
/// `MaxLumaPixelsHEVC` when HEVC is offered.
pub const MAX_LUMA_PIXELS_HEVC: u64 = 1_869_449_984;

/// `ServerCodecModeSupport` bit: H.264 (MCC `SCM_H264`).
pub const SCM_H264: u32 = 0x0000_0001;
/// HEVC Main.
pub const SCM_HEVC: u32 = 0x0000_0100;
/// HEVC Main10.
pub const SCM_HEVC_MAIN10: u32 = 0x0000_0200;
/// AV1 Main 8-bit.
pub const SCM_AV1_MAIN8: u32 = 0x0001_0000;
/// AV1 Main 10-bit.
pub const SCM_AV1_MAIN10: u32 = 0x0002_0000;
/// H.264 High 4:4:4, 8-bit.
pub const SCM_H264_HIGH8_444: u32 = 0x0004_0000;
/// HEVC Range Extensions 4:4:4, 8-bit.
pub const SCM_HEVC_REXT8_444: u32 = 0x0008_0000;
/// AV1 High 4:4:4, 8-bit.
pub const SCM_AV1_HIGH8_444: u32 = 0x0020_0000;
/// HEVC Range Extensions 4:4:4, 10-bit.
pub const SCM_HEVC_REXT10_444: u32 = 0x0010_0000;
/// AV1 High 4:4:4, 10-bit.
pub const SCM_AV1_HIGH10_444: u32 = 0x0040_0000;

/// The app id of the desktop, always present.
pub const DESKTOP_APP_ID: u32 = 1;

/// Which listener a request came in on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Plain HTTP (base port).
    Http,
    /// Mutual TLS (base port − 5).
    Https,
}

/// An nvhttp endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `/serverinfo`.
    ServerInfo,
    /// `/pair`.
    Pair,
    /// `/unpair`.
    Unpair,
    /// `/applist`.
    AppList,
    /// `/appasset`.
    AppAsset,
    /// `/launch`.
    Launch,
    /// `/resume`.
    Resume,
    /// `/cancel`.
    Cancel,
}

/// The endpoint for a request path.
pub fn route(path: &str) -> Option<Endpoint> {
    Some(match path {
        "/serverinfo" => Endpoint::ServerInfo,
        "/pair" => Endpoint::Pair,
        "/unpair" => Endpoint::Unpair,
        "/applist" => Endpoint::AppList,
        "/appasset" => Endpoint::AppAsset,
        "/launch" => Endpoint::Launch,
        "/resume" => Endpoint::Resume,
        "/cancel" => Endpoint::Cancel,
        _ => return None,
    })
}

/// An app in `/applist`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct App {
    /// Positive id; 1 is the desktop.
    pub id: u32,
    /// Title shown by the client.
    pub title: String,
    /// Whether the app supports HDR.
    pub hdr: bool,
}

/// The desktop app.
pub fn desktop() -> App {
    App {
        id: DESKTOP_APP_ID,
        title: "Desktop".into(),
        hdr: false,
    }
}

/// What `/serverinfo` says about the host (fixed while it runs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    /// `hostname`.
    pub hostname: String,
    /// `uniqueid`: stable per state directory.
    pub uniqueid: String,
    /// Ports (`HttpsPort`, `ExternalPort`, RTSP in `sessionUrl0`).
    pub ports: Ports,
    /// `ServerCodecModeSupport`, never 0 (the client refuses 0).
    pub codec_modes: u32,
    /// The apps, desktop first.
    pub apps: Vec<App>,
}

impl HostInfo {
    /// The app with this id.
    pub fn app(&self, id: u32) -> Option<&App> {
        self.apps.iter().find(|a| a.id == id)
    }
}

/// A ready answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    /// HTTP status (200 unless the path is unknown).
    pub http_status: u16,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// Body.
    pub body: Vec<u8>,
}

impl Reply {
    /// An XML document in an HTTP 200.
    pub fn xml(doc: String) -> Self {
        Self {
            http_status: 200,
            content_type: "application/xml",
            body: doc.into_bytes(),
        }
    }

    /// A PNG image.
    pub fn png(bytes: Vec<u8>) -> Self {
        Self {
            http_status: 200,
            content_type: "image/png",
            body: bytes,
        }
    }

    /// The `<root status_code=…>` of an XML reply, for logs and tests.
    pub fn status_code(&self) -> Option<u16> {
        let text = std::str::from_utf8(&self.body).ok()?;
        let rest = &text[text.find("status_code=\"")? + 13..];
        rest[..rest.find('"')?].parse().ok()
    }
}

/// What a request asks the host to do, after routing, authorization and parsing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Action {
    /// Answer this, nothing else to do.
    Reply(Reply),
    /// Render `/serverinfo` ([`serverinfo_xml`]).
    ServerInfo,
    /// Pairing phase 1; hold the request until the PIN arrives.
    PairGetServerCert {
        /// `uniqueid`.
        uniqueid: String,
        /// `devicename`.
        device_name: String,
        /// `salt` (hex).
        salt: String,
        /// `clientcert` (hex of PEM).
        clientcert: String,
    },
    /// Pairing phase 2.
    PairClientChallenge {
        /// `uniqueid`.
        uniqueid: String,
        /// `clientchallenge` (hex).
        value: String,
    },
    /// Pairing phase 3.
    PairServerChallengeResp {
        /// `uniqueid`.
        uniqueid: String,
        /// `serverchallengeresp` (hex).
        value: String,
    },
    /// Pairing phase 4.
    PairClientPairingSecret {
        /// `uniqueid`.
        uniqueid: String,
        /// `clientpairingsecret` (hex).
        value: String,
    },
    /// `/unpair`: abandon this client's open pairing.
    Unpair {
        /// `uniqueid`, empty if absent.
        uniqueid: String,
    },
    /// `/applist`.
    AppList,
    /// `/appasset` for an app.
    AppAsset {
        /// `appid`.
        app_id: u32,
    },
    /// `/launch` by a paired client.
    Launch {
        /// Who.
        client: ClientIdentity,
        /// What.
        request: LaunchRequest,
    },
    /// `/resume` by a paired client.
    Resume {
        /// Who.
        client: ClientIdentity,
        /// What.
        request: ResumeRequest,
    },
    /// `/cancel` by a paired client.
    Cancel {
        /// Who.
        client: ClientIdentity,
    },
}

/// The message of a 401.
pub const UNAUTHORIZED_MESSAGE: &str =
    "The client is not authorized. Certificate verification failed.";

/// `status_code` with a message.
pub fn error_xml(status_code: u16, message: &str) -> String {
    Xml::root(status_code, Some(message)).finish()
}

fn error(status_code: u16, message: &str) -> Action {
    Action::Reply(Reply::xml(error_xml(status_code, message)))
}

fn query_error(e: &QueryError) -> Action {
    error(400, &e.to_string())
}

/// Routes, authorizes and parses one request. `client` is the paired client the HTTPS
/// certificate belongs to (always `None` over HTTP). `query` is the raw text after `?`.
pub fn decide(
    transport: Transport,
    path: &str,
    query: &str,
    client: Option<&ClientIdentity>,
) -> Action {
    let Some(endpoint) = route(path) else {
        return Action::Reply(Reply {
            http_status: 404,
            ..Reply::xml(error_xml(404, "Not found"))
        });
    };
    let q = match Query::parse(query) {
        Ok(q) => q,
        Err(e) => return query_error(&e),
    };
    let client = match (transport, client) {
        (Transport::Https, None) => return error(401, UNAUTHORIZED_MESSAGE),
        (Transport::Https, Some(c)) => Some(c.clone()),
        (Transport::Http, _) => None,
    };
    match (endpoint, client) {
        (Endpoint::ServerInfo, _) => Action::ServerInfo,
        (Endpoint::Unpair, _) => Action::Unpair {
            uniqueid: q.get("uniqueid").unwrap_or_default().to_owned(),
        },
        (Endpoint::Pair, Some(_)) => match q.get("phrase") {
            Some("pairchallenge") => {
                Action::Reply(Reply::xml(Xml::root(200, None).elem("paired", 1).finish()))
            }
            _ => error(400, "Pairing phases 1-4 go over HTTP"),
        },
        (Endpoint::Pair, None) => decide_pair(&q),
        (_, None) => error(
            401,
            "This request needs HTTPS with a paired client certificate",
        ),
        (Endpoint::AppList, Some(_)) => Action::AppList,
        (Endpoint::AppAsset, Some(_)) => match q.get("appid").map(str::parse::<u32>) {
            Some(Ok(app_id)) => Action::AppAsset { app_id },
            Some(Err(_)) => query_error(&QueryError::BadValue {
                name: "appid",
                reason: "not a number",
            }),
            None => query_error(&QueryError::Missing("appid")),
        },
        (Endpoint::Launch, Some(client)) => match LaunchRequest::parse(&q) {
            Ok(request) => Action::Launch { client, request },
            Err(e) => Action::Reply(Reply::xml(
                Xml::root(400, Some(&e.to_string()))
                    .elem("gamesession", 0)
                    .finish(),
            )),
        },
        (Endpoint::Resume, Some(client)) => match ResumeRequest::parse(&q) {
            Ok(request) => Action::Resume { client, request },
            Err(e) => Action::Reply(Reply::xml(
                Xml::root(400, Some(&e.to_string()))
                    .elem("resume", 0)
                    .finish(),
            )),
        },
        (Endpoint::Cancel, Some(client)) => Action::Cancel { client },
    }
}

fn decide_pair(q: &Query) -> Action {
    let Some(uniqueid) = q.get("uniqueid") else {
        return pair_fail(400, "Missing uniqueid parameter");
    };
    let uniqueid = uniqueid.to_owned();
    if let Some(phrase) = q.get("phrase") {
        return match phrase {
            "getservercert" => match (q.require("salt"), q.require("clientcert")) {
                (Ok(salt), Ok(cert)) => Action::PairGetServerCert {
                    uniqueid,
                    device_name: q.get("devicename").unwrap_or_default().to_owned(),
                    salt: salt.to_owned(),
                    clientcert: cert.to_owned(),
                },
                (Err(e), _) | (_, Err(e)) => pair_fail(400, &e.to_string()),
            },
            "pairchallenge" => pair_fail(400, "pairchallenge goes over HTTPS"),
            _ => pair_fail(404, "Invalid pairing request"),
        };
    }
    if let Some(v) = q.get("clientchallenge") {
        Action::PairClientChallenge {
            uniqueid,
            value: v.to_owned(),
        }
    } else if let Some(v) = q.get("serverchallengeresp") {
        Action::PairServerChallengeResp {
            uniqueid,
            value: v.to_owned(),
        }
    } else if let Some(v) = q.get("clientpairingsecret") {
        Action::PairClientPairingSecret {
            uniqueid,
            value: v.to_owned(),
        }
    } else {
        pair_fail(404, "Invalid pairing request")
    }
}

fn pair_fail(status_code: u16, message: &str) -> Action {
    Action::Reply(Reply::xml(pair_error_xml(status_code, message)))
}

/// `<root status_code="N" status_message="…"><paired>0</paired></root>`.
pub fn pair_error_xml(status_code: u16, message: &str) -> String {
    Xml::root(status_code, Some(message))
        .elem("paired", 0)
        .finish()
}

/// The reply to a pairing step that failed, always with the reason in `status_message`
/// (Moonlight shows it): a failed phase-4 check is `paired=0` in a 200 (Sunshine); no room to
/// wait, or a waiting pairing evicted for a newer one, 503 (try again); an address backing off 429 (the message says how long), an exhausted
/// window or an operator's cancel 403, a timeout 408, everything else a 400 (Sunshine's
/// `fail_pair`).
pub fn pairing_error_reply(error: &PairingError) -> Reply {
    let code = match error {
        PairingError::WrongPin | PairingError::BadSignature => 200,
        PairingError::Busy | PairingError::Replaced => 503,
        PairingError::Backoff { .. } => 429,
        PairingError::WindowClosed(_) | PairingError::CancelledByOperator => 403,
        PairingError::TimedOut => 408,
        _ => 400,
    };
    Reply::xml(pair_error_xml(code, &error.to_string()))
}

/// Phase 1 after the PIN: `plaincert` is the host certificate's PEM text in hex.
pub fn pair_servercert_xml(host_cert_pem: &str) -> String {
    Xml::root(200, None)
        .elem("paired", 1)
        .elem("plaincert", hex_upper(host_cert_pem.as_bytes()))
        .finish()
}

/// Phases 2 and 3: `paired=1` and one hex field.
pub fn pair_field_xml(field: &'static str, bytes: &[u8]) -> String {
    Xml::root(200, None)
        .elem("paired", 1)
        .elem(field, hex_upper(bytes))
        .finish()
}

/// Phase 4 success.
pub fn paired_xml() -> String {
    Xml::root(200, None).elem("paired", 1).finish()
}

/// The connection facts `/serverinfo` needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connection {
    /// How the request came in.
    pub transport: Transport,
    /// The host address the client connected to.
    pub local_ip: IpAddr,
    /// The MAC address of that interface (sent over HTTPS only), if known.
    pub mac: Option<String>,
    /// The paired client, if the request came over HTTPS with its certificate.
    pub client: Option<ClientIdentity>,
}

/// The IPv4 spelling of an address where it has one (`::ffff:a.b.c.d` → `a.b.c.d`).
pub fn canonical_ip(ip: IpAddr) -> IpAddr {
    ip.to_canonical()
}

/// `/serverinfo` (notes "serverinfo").
pub fn serverinfo_xml(host: &HostInfo, conn: &Connection, session: Option<&SessionInfo>) -> String {
    let https = conn.transport == Transport::Https;
    let paired = https && conn.client.is_some();
    let mac = match (&conn.mac, https) {
        (Some(mac), true) => mac.as_str(),
        _ => "00:00:00:00:00:00",
    };
    // Moonlight stores LocalIP as its LAN IPv4 address; over IPv6, send the loopback address
    // it knows to ignore, as Sunshine does.
    let local_ip = match canonical_ip(conn.local_ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(_) => "127.0.0.1".to_owned(),
    };
    let current_game = session.map_or(0, |s| s.app_id);
    let hevc = host.codec_modes & (SCM_HEVC | SCM_HEVC_MAIN10) != 0;
    Xml::root(200, None)
        .elem("hostname", &host.hostname)
        .elem("appversion", APP_VERSION)
        .elem("GfeVersion", GFE_VERSION)
        .elem("uniqueid", &host.uniqueid)
        .elem("HttpsPort", host.ports.https())
        .elem("ExternalPort", host.ports.http())
        .elem(
            "MaxLumaPixelsHEVC",
            if hevc { MAX_LUMA_PIXELS_HEVC } else { 0 },
        )
        .elem("mac", mac)
        .elem("LocalIP", local_ip)
        .elem("ServerCodecModeSupport", host.codec_modes.max(SCM_H264))
        .elem("PairStatus", u8::from(paired))
        .elem("currentgame", current_game)
        .elem(
            "state",
            if session.is_some() {
                "SUNSHINE_SERVER_BUSY"
            } else {
                "SUNSHINE_SERVER_FREE"
            },
        )
        .finish()
}

/// `/applist`.
pub fn applist_xml(apps: &[App]) -> String {
    let mut doc = Xml::root(200, None);
    for app in apps {
        doc = doc
            .open("App")
            .elem("IsHdrSupported", u8::from(app.hdr))
            .elem("AppTitle", &app.title)
            .elem("ID", app.id)
            .close();
    }
    doc.finish()
}

/// `rtsp://IP:PORT` or `rtspenc://…`, IPv6 in brackets (notes "Launch").
pub fn session_url(scheme: RtspScheme, local_ip: IpAddr, rtsp_port: u16) -> String {
    let scheme = match scheme {
        RtspScheme::Plain => "rtsp",
        RtspScheme::Encrypted => "rtspenc",
    };
    match canonical_ip(local_ip) {
        IpAddr::V4(v4) => format!("{scheme}://{v4}:{rtsp_port}"),
        IpAddr::V6(v6) => format!("{scheme}://[{v6}]:{rtsp_port}"),
    }
}

/// A successful `/launch`.
pub fn launch_xml(session_url: &str) -> String {
    Xml::root(200, None)
        .elem("sessionUrl0", session_url)
        .elem("gamesession", 1)
        .finish()
}

/// A successful `/resume`.
pub fn resume_xml(session_url: &str) -> String {
    Xml::root(200, None)
        .elem("sessionUrl0", session_url)
        .elem("resume", 1)
        .finish()
}

/// A refused `/launch`.
pub fn launch_error_xml(e: &SessionError) -> String {
    Xml::root(e.status_code(), Some(&e.to_string()))
        .elem("gamesession", 0)
        .finish()
}

/// A refused `/resume`.
pub fn resume_error_xml(e: &SessionError) -> String {
    Xml::root(e.status_code(), Some(&e.to_string()))
        .elem("resume", 0)
        .finish()
}

/// `/cancel`.
pub fn cancel_xml() -> String {
    Xml::root(200, None).elem("cancel", 1).finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gamestream::launch::DisplayMode;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn tv() -> ClientIdentity {
        ClientIdentity {
            id: "0011223344556677".into(),
            name: "TV".into(),
        }
    }

    fn status(a: &Action) -> Option<u16> {
        match a {
            Action::Reply(r) => r.status_code(),
            _ => None,
        }
    }

    #[test]
    fn unknown_path_is_http_404() {
        let Action::Reply(r) = decide(Transport::Http, "/nope", "", None) else {
            panic!()
        };
        assert_eq!((r.http_status, r.status_code()), (404, Some(404)));
    }

    #[test]
    fn http_serves_only_serverinfo_pair_unpair() {
        assert_eq!(
            decide(Transport::Http, "/serverinfo", "", None),
            Action::ServerInfo
        );
        for path in ["/applist", "/appasset", "/launch", "/resume", "/cancel"] {
            assert_eq!(
                status(&decide(Transport::Http, path, "appid=1", Some(&tv()))),
                Some(401)
            );
        }
        assert_eq!(
            decide(Transport::Http, "/unpair", "uniqueid=X", None),
            Action::Unpair {
                uniqueid: "X".into()
            }
        );
    }

    #[test]
    fn https_needs_a_paired_certificate() {
        for path in [
            "/serverinfo",
            "/pair",
            "/applist",
            "/launch",
            "/cancel",
            "/unpair",
        ] {
            let a = decide(Transport::Https, path, "phrase=pairchallenge", None);
            assert_eq!(status(&a), Some(401), "{path}");
        }
        assert_eq!(
            decide(Transport::Https, "/applist", "", Some(&tv())),
            Action::AppList
        );
        let a = decide(
            Transport::Https,
            "/pair",
            "uniqueid=X&phrase=pairchallenge",
            Some(&tv()),
        );
        let Action::Reply(r) = a else { panic!() };
        assert!(
            String::from_utf8(r.body)
                .unwrap()
                .contains("<paired>1</paired>")
        );
        assert_eq!(
            status(&decide(
                Transport::Https,
                "/pair",
                "phrase=getservercert",
                Some(&tv())
            )),
            Some(400)
        );
    }

    #[test]
    fn pair_phases_are_recognised() {
        let a = decide(
            Transport::Http,
            "/pair",
            "uniqueid=U&devicename=roth&updateState=1&phrase=getservercert&salt=00&clientcert=11",
            None,
        );
        assert_eq!(
            a,
            Action::PairGetServerCert {
                uniqueid: "U".into(),
                device_name: "roth".into(),
                salt: "00".into(),
                clientcert: "11".into()
            }
        );
        assert!(matches!(
            decide(
                Transport::Http,
                "/pair",
                "uniqueid=U&clientchallenge=AB",
                None
            ),
            Action::PairClientChallenge { .. }
        ));
        assert!(matches!(
            decide(
                Transport::Http,
                "/pair",
                "uniqueid=U&serverchallengeresp=AB",
                None
            ),
            Action::PairServerChallengeResp { .. }
        ));
        assert!(matches!(
            decide(
                Transport::Http,
                "/pair",
                "uniqueid=U&clientpairingsecret=AB",
                None
            ),
            Action::PairClientPairingSecret { .. }
        ));
        assert_eq!(
            status(&decide(
                Transport::Http,
                "/pair",
                "clientchallenge=AB",
                None
            )),
            Some(400)
        );
        assert_eq!(
            status(&decide(Transport::Http, "/pair", "uniqueid=U", None)),
            Some(404)
        );
        assert_eq!(
            status(&decide(
                Transport::Http,
                "/pair",
                "uniqueid=U&phrase=getservercert",
                None
            )),
            Some(400)
        );
        assert_eq!(
            status(&decide(Transport::Http, "/pair", "uniqueid=%zz", None)),
            Some(400)
        );
    }

    #[test]
    fn launch_is_parsed_or_refused() {
        let q = "appid=1&mode=1920x1080x60&rikey=000102030405060708090a0b0c0d0e0f&rikeyid=7&localAudioPlayMode=0";
        let Action::Launch { client, request } =
            decide(Transport::Https, "/launch", q, Some(&tv()))
        else {
            panic!()
        };
        assert_eq!(
            (client, request.app_id, request.stream.rikeyid),
            (tv(), 1, 7)
        );
        let Action::Reply(r) = decide(Transport::Https, "/launch", "appid=1", Some(&tv())) else {
            panic!()
        };
        let body = String::from_utf8(r.body).unwrap();
        assert!(
            body.contains("status_code=\"400\"") && body.contains("<gamesession>0</gamesession>")
        );
        assert_eq!(
            status(&decide(
                Transport::Https,
                "/appasset",
                "appid=x",
                Some(&tv())
            )),
            Some(400)
        );
        assert_eq!(
            decide(
                Transport::Https,
                "/appasset",
                "appid=1&AssetType=2&AssetIdx=0",
                Some(&tv())
            ),
            Action::AppAsset { app_id: 1 }
        );
    }

    #[test]
    fn serverinfo_document() {
        let host = HostInfo {
            hostname: "box".into(),
            uniqueid: "0123456789abcdef".into(),
            ports: Ports::default(),
            codec_modes: SCM_H264,
            apps: vec![desktop()],
        };
        let mut conn = Connection {
            transport: Transport::Http,
            local_ip: "::ffff:192.168.1.5".parse().unwrap(),
            mac: Some("aa:bb:cc:dd:ee:ff".into()),
            client: None,
        };
        let doc = serverinfo_xml(&host, &conn, None);
        for part in [
            "<hostname>box</hostname>",
            "<appversion>7.1.431.-1</appversion>",
            "<GfeVersion>3.23.0.74</GfeVersion>",
            "<uniqueid>0123456789abcdef</uniqueid>",
            "<HttpsPort>47984</HttpsPort>",
            "<ExternalPort>47989</ExternalPort>",
            "<MaxLumaPixelsHEVC>0</MaxLumaPixelsHEVC>",
            "<mac>00:00:00:00:00:00</mac>",
            "<LocalIP>192.168.1.5</LocalIP>",
            "<ServerCodecModeSupport>1</ServerCodecModeSupport>",
            "<PairStatus>0</PairStatus>",
            "<currentgame>0</currentgame>",
            "<state>SUNSHINE_SERVER_FREE</state>",
        ] {
            assert!(doc.contains(part), "{part} missing in {doc}");
        }
        conn.transport = Transport::Https;
        conn.client = Some(tv());
        conn.local_ip = IpAddr::V6(Ipv6Addr::LOCALHOST);
        let session = SessionInfo::new(
            1,
            1,
            tv(),
            DisplayMode {
                width: 1,
                height: 1,
                fps: 1,
            },
        );
        let doc = serverinfo_xml(&host, &conn, Some(&session));
        for part in [
            "<PairStatus>1</PairStatus>",
            "<mac>aa:bb:cc:dd:ee:ff</mac>",
            "<LocalIP>127.0.0.1</LocalIP>",
            "<currentgame>1</currentgame>",
            "<state>SUNSHINE_SERVER_BUSY</state>",
        ] {
            assert!(doc.contains(part), "{part} missing in {doc}");
        }
    }

    #[test]
    fn urls_and_lists() {
        assert_eq!(
            session_url(
                RtspScheme::Plain,
                IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2)),
                48010
            ),
            "rtsp://10.0.0.2:48010"
        );
        assert_eq!(
            session_url(RtspScheme::Encrypted, "fe80::1".parse().unwrap(), 48010),
            "rtspenc://[fe80::1]:48010"
        );
        let doc = applist_xml(&[desktop()]);
        assert!(doc.contains(
            "<App><IsHdrSupported>0</IsHdrSupported><AppTitle>Desktop</AppTitle><ID>1</ID></App>"
        ));
        assert!(pair_servercert_xml("AB").contains("<plaincert>4142</plaincert>"));
        let busy = pairing_error_reply(&PairingError::Busy);
        assert_eq!(busy.status_code(), Some(503));
        let text = String::from_utf8(busy.body).unwrap();
        assert!(text.contains("<paired>0</paired>") && text.contains("too many clients"));
        let evicted = pairing_error_reply(&PairingError::Replaced);
        assert_eq!(evicted.status_code(), Some(503));
        let text = String::from_utf8(evicted.body).unwrap();
        assert!(text.contains("<paired>0</paired>") && text.contains("replaced"));
        let wait = pairing_error_reply(&PairingError::Backoff {
            retry_after_secs: 4,
        });
        assert_eq!(wait.status_code(), Some(429));
        assert!(
            String::from_utf8(wait.body)
                .unwrap()
                .contains("try again in 4 s")
        );
        let closed = pairing_error_reply(&PairingError::WindowClosed(
            crate::pairing_window::Refusal::Exhausted,
        ));
        assert_eq!(closed.status_code(), Some(403));
        assert!(
            String::from_utf8(closed.body)
                .unwrap()
                .contains("too many wrong PINs")
        );
        assert_eq!(
            pairing_error_reply(&PairingError::WrongPin).status_code(),
            Some(200)
        );
    }
}
