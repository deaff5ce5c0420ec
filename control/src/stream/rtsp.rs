//! RTSP for GameStream: request parsing, response writing, and the handshake state machine
//! (docs/gamestream-protocol-notes.md "RTSP framing", "RTSP handshake").
//!
//! ```text
//! client                                   host
//!   OPTIONS  ─────────────────────────────► 200 CSeq
//!   DESCRIBE ─────────────────────────────► 200 + payload (feature/encryption/Opus lines)
//!   SETUP streamid=audio/0/0 ─────────────► 200 Session, Transport: server_port=48000, X-SS-Ping-Payload
//!   SETUP streamid=video/0/0 ─────────────► 200 Session, Transport: server_port=47998, X-SS-Ping-Payload
//!   SETUP streamid=control/13/0 ──────────► 200 Session, Transport: server_port=47999, X-SS-Connect-Data
//!   ANNOUNCE + SDP ───────────────────────► 200            → RtspEvent::Announced(StreamConfig)
//!   PLAY / ───────────────────────────────► 200            → RtspEvent::Play
//! ```
//!
//! One request per TCP connection; the server closes after each response (the act side does
//! that). Responses are written exactly the way the client's parser needs: `RTSP/1.0`, a
//! `CSeq` header always, `Name: value` with one space. Request headers are matched
//! case-insensitively (`Content-length` arrives with a lower-case `l`).

use std::net::IpAddr;

use super::sdp::{HostOffer, SdpError, StreamConfig, describe_payload};

/// Largest request accepted (headers and body).
pub const MAX_REQUEST: usize = 64 * 1024;

/// A parsed RTSP request, borrowing from the receive buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    /// Method, e.g. `SETUP`.
    pub method: &'a str,
    /// Request target, e.g. `streamid=video/0/0`.
    pub target: &'a str,
    /// Headers in arrival order.
    pub headers: Vec<(&'a str, &'a str)>,
    /// Body (`Content-length` bytes).
    pub body: &'a [u8],
}

impl Request<'_> {
    /// First header named `name`, compared case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| *v)
    }
}

/// Why a request could not be handled (hostile or broken client input).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RtspError {
    /// Not an RTSP/1.0 request.
    #[error("malformed RTSP request: {0}")]
    Malformed(&'static str),
    /// Larger than [`MAX_REQUEST`].
    #[error("RTSP request larger than 64 KiB")]
    TooLarge,
}

/// Parses one request from `buf`. `Ok(None)` means more bytes are needed.
pub fn parse_request(buf: &[u8]) -> Result<Option<Request<'_>>, RtspError> {
    let Some(head_end) = find(buf, b"\r\n\r\n") else {
        return if buf.len() > MAX_REQUEST {
            Err(RtspError::TooLarge)
        } else {
            Ok(None)
        };
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| RtspError::Malformed("headers are not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(proto), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(RtspError::Malformed(
            "request line is not METHOD TARGET RTSP/1.0",
        ));
    };
    if proto != "RTSP/1.0" || method.is_empty() || target.is_empty() {
        return Err(RtspError::Malformed(
            "request line is not METHOD TARGET RTSP/1.0",
        ));
    }
    let mut headers = Vec::new();
    for line in lines {
        let (k, v) = line
            .split_once(':')
            .ok_or(RtspError::Malformed("header without ':'"))?;
        headers.push((k.trim(), v.trim()));
    }
    let len = match headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
    {
        Some((_, v)) => v
            .parse::<usize>()
            .map_err(|_| RtspError::Malformed("bad Content-length"))?,
        None => 0,
    };
    let body_start = head_end + 4;
    if body_start + len > MAX_REQUEST {
        return Err(RtspError::TooLarge);
    }
    if buf.len() < body_start + len {
        return Ok(None);
    }
    Ok(Some(Request {
        method,
        target,
        headers,
        body: &buf[body_start..body_start + len],
    }))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// An RTSP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub code: u16,
    /// Headers after `CSeq`.
    pub headers: Vec<(&'static str, String)>,
    /// Payload.
    pub body: Vec<u8>,
    cseq: String,
}

impl Response {
    fn new(code: u16, cseq: Option<&str>) -> Self {
        Self {
            code,
            headers: Vec::new(),
            body: Vec::new(),
            cseq: cseq.unwrap_or("0").to_string(),
        }
    }

    fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }

    /// The bytes on the wire: status line, `CSeq`, headers, blank line, payload.
    pub fn to_bytes(&self) -> Vec<u8> {
        let reason = match self.code {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            454 => "Session Not Found",
            455 => "Method Not Valid In This State",
            501 => "Not Implemented",
            _ => "Error",
        };
        let mut s = format!(
            "RTSP/1.0 {} {}\r\nCSeq: {}\r\n",
            self.code, reason, self.cseq
        );
        for (k, v) in &self.headers {
            s.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() {
            s.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        s.push_str("\r\n");
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// What the host picked for this session, handed to the client in SETUP replies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandshakeParams {
    /// `Session:` token.
    pub session_id: String,
    /// `X-SS-Ping-Payload`: 16 characters the client echoes in its UDP pings.
    pub ping_payload: [u8; 16],
    /// `X-SS-Connect-Data`: the value the client passes as ENet connect data.
    pub connect_data: u32,
    /// Audio UDP port.
    pub audio_port: u16,
    /// Video UDP port.
    pub video_port: u16,
    /// Control (ENet) UDP port.
    pub control_port: u16,
    /// DESCRIBE offer.
    pub offer: HostOffer,
}

/// What the handshake tells the session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RtspEvent {
    /// ANNOUNCE arrived with a valid stream configuration.
    Announced(StreamConfig),
    /// PLAY: the client will now open ENet and start pinging.
    Play,
}

/// Progress of one client's handshake. Requests may repeat (a client may retry); PLAY is only
/// accepted after a valid ANNOUNCE.
#[derive(Debug, Clone)]
pub struct Handshake {
    params: HandshakeParams,
    config: Option<StreamConfig>,
    playing: bool,
}

impl Handshake {
    /// A fresh handshake.
    pub fn new(params: HandshakeParams) -> Self {
        Self {
            params,
            config: None,
            playing: false,
        }
    }

    /// The parameters.
    pub fn params(&self) -> &HandshakeParams {
        &self.params
    }

    /// The stream configuration, once announced.
    pub fn config(&self) -> Option<&StreamConfig> {
        self.config.as_ref()
    }

    /// Whether PLAY was accepted.
    pub fn playing(&self) -> bool {
        self.playing
    }

    /// Answers one request.
    pub fn handle(&mut self, req: &Request<'_>) -> (Response, Option<RtspEvent>) {
        let cseq = req.header("CSeq");
        let session = format!("{};timeout = 90", self.params.session_id);
        match req.method {
            "OPTIONS" => (
                Response::new(200, cseq).header("Public", "OPTIONS DESCRIBE SETUP ANNOUNCE PLAY"),
                None,
            ),
            "DESCRIBE" => {
                let mut r = Response::new(200, cseq).header("Content-Type", "application/sdp");
                r.body = describe_payload(&self.params.offer).into_bytes();
                (r, None)
            }
            "SETUP" => {
                let stream = req.target.trim_start_matches('/');
                let ping = String::from_utf8_lossy(&self.params.ping_payload).into_owned();
                let r = Response::new(200, cseq).header("Session", session);
                let r = if stream.starts_with("streamid=audio") {
                    r.header(
                        "Transport",
                        format!("server_port={}", self.params.audio_port),
                    )
                    .header("X-SS-Ping-Payload", ping)
                } else if stream.starts_with("streamid=video") {
                    r.header(
                        "Transport",
                        format!("server_port={}", self.params.video_port),
                    )
                    .header("X-SS-Ping-Payload", ping)
                } else if stream.starts_with("streamid=control") {
                    r.header(
                        "Transport",
                        format!("server_port={}", self.params.control_port),
                    )
                    .header("X-SS-Connect-Data", self.params.connect_data.to_string())
                } else {
                    return (Response::new(404, cseq), None);
                };
                (r, None)
            }
            "ANNOUNCE" => match StreamConfig::parse(req.body) {
                Ok(c) if !c.encryption.covers(self.params.offer.encryption_requested) => {
                    // The host requires encryption the client did not turn on: refused
                    // (the client reports the failed RTSP stage).
                    let mut r = Response::new(403, cseq);
                    r.body = b"this host requires control, video and audio encryption".to_vec();
                    (r, None)
                }
                Ok(c) => {
                    self.config = Some(c.clone());
                    (Response::new(200, cseq), Some(RtspEvent::Announced(c)))
                }
                Err(e) => (sdp_error(cseq, &e), None),
            },
            "PLAY" if self.config.is_some() => {
                self.playing = true;
                (Response::new(200, cseq), Some(RtspEvent::Play))
            }
            "PLAY" => (Response::new(455, cseq), None),
            _ => (Response::new(501, cseq), None),
        }
    }
}

/// One prepared session as [`route`] sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteCandidate<'a> {
    /// Its `Session:` token.
    pub token: &'a str,
    /// Where its launch came from.
    pub client: IpAddr,
    /// Whether its handshake already reached PLAY.
    pub playing: bool,
}

/// Which session an RTSP request belongs to (an index into `candidates`), several sessions
/// being prepared at once:
///
/// * a request with a `Session:` header goes to the session with that token, or nowhere
///   (454) — the token is per session and random;
/// * one without (OPTIONS, DESCRIBE, the first SETUP) goes to the newest session still in its
///   handshake whose launch came from the request's address;
/// * failing that, to the only session in its handshake, if there is exactly one (a client
///   whose HTTPS and RTSP take different addresses, e.g. through a NAT, still connects while
///   it is the only one).
///
/// The session table admits one connecting launch per address, so the address rule never has
/// to choose between two clients.
pub fn route(
    candidates: &[RouteCandidate<'_>],
    session: Option<&str>,
    peer: IpAddr,
) -> Option<usize> {
    if let Some(header) = session {
        let token = header.split(';').next().unwrap_or("").trim();
        return candidates.iter().position(|c| c.token == token);
    }
    let peer = peer.to_canonical();
    let connecting = || candidates.iter().enumerate().filter(|(_, c)| !c.playing);
    if let Some((i, _)) = connecting().rfind(|(_, c)| c.client.to_canonical() == peer) {
        return Some(i);
    }
    let mut only = connecting();
    match (only.next(), only.next()) {
        (Some((i, _)), None) => Some(i),
        _ => None,
    }
}

fn sdp_error(cseq: Option<&str>, e: &SdpError) -> Response {
    let mut r = Response::new(400, cseq);
    r.body = e.to_string().into_bytes();
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::sdp::enc;

    fn params() -> HandshakeParams {
        HandshakeParams {
            session_id: "DEADBEEFCAFE".into(),
            ping_payload: *b"0123456789ABCDEF",
            connect_data: 0x1234_5678,
            audio_port: 48000,
            video_port: 47998,
            control_port: 47999,
            offer: HostOffer {
                feature_flags: 0,
                encryption_supported: enc::CONTROL_V2 | enc::AUDIO,
                encryption_requested: 0,
                hevc: false,
                av1: false,
            },
        }
    }

    fn req(text: &str) -> Vec<u8> {
        text.replace('\n', "\r\n").into_bytes()
    }

    #[test]
    fn full_handshake_in_client_order() {
        let mut h = Handshake::new(params());
        let steps = [
            "OPTIONS rtsp://10.0.0.1:48010 RTSP/1.0\nCSeq: 1\nX-GS-ClientVersion: 14\nHost: 10.0.0.1\n\n",
            "DESCRIBE rtsp://10.0.0.1:48010 RTSP/1.0\nCSeq: 2\nAccept: application/sdp\n\n",
            "SETUP streamid=audio/0/0 RTSP/1.0\nCSeq: 3\nTransport: unicast;X-GS-ClientPort=50000-50001\n\n",
            "SETUP streamid=video/0/0 RTSP/1.0\nCSeq: 4\nSession: DEADBEEFCAFE\n\n",
            "SETUP streamid=control/13/0 RTSP/1.0\nCSeq: 5\nSession: DEADBEEFCAFE\n\n",
        ];
        let mut outs = Vec::new();
        for s in steps {
            let buf = req(s);
            let r = parse_request(&buf).unwrap().unwrap();
            let (resp, ev) = h.handle(&r);
            assert_eq!(resp.code, 200, "{s}");
            assert!(ev.is_none());
            outs.push(String::from_utf8(resp.to_bytes()).unwrap());
        }
        assert!(outs[0].starts_with("RTSP/1.0 200 OK\r\nCSeq: 1\r\n"));
        assert!(outs[1].contains("surround-params=21101") && outs[1].contains("Content-Length: "));
        assert_eq!(
            outs[2],
            "RTSP/1.0 200 OK\r\nCSeq: 3\r\nSession: DEADBEEFCAFE;timeout = 90\r\n\
             Transport: server_port=48000\r\nX-SS-Ping-Payload: 0123456789ABCDEF\r\n\r\n"
        );
        assert!(outs[3].contains("Transport: server_port=47998\r\n"));
        assert!(outs[4].contains("X-SS-Connect-Data: 305419896\r\n"));

        let sdp = crate::stream::sdp::tests::ANNOUNCE;
        let announce = format!(
            "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nSession: DEADBEEFCAFE\r\n\
             Content-type: application/sdp\r\nContent-length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        // Incomplete body: more bytes needed.
        assert_eq!(
            parse_request(&announce.as_bytes()[..announce.len() - 10]).unwrap(),
            None
        );
        let r = parse_request(announce.as_bytes()).unwrap().unwrap();
        let (resp, ev) = h.handle(&r);
        assert_eq!(resp.code, 200);
        assert!(matches!(ev, Some(RtspEvent::Announced(c)) if c.width == 1280));
        let buf = req("PLAY / RTSP/1.0\nCSeq: 7\nSession: DEADBEEFCAFE\n\n");
        let (resp, ev) = h.handle(&parse_request(&buf).unwrap().unwrap());
        assert_eq!((resp.code, ev), (200, Some(RtspEvent::Play)));
        assert!(h.playing());
    }

    #[test]
    fn announce_without_the_encryption_the_host_requires_is_refused() {
        let sdp = crate::stream::sdp::tests::ANNOUNCE;
        let announce = format!(
            "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\n\
             Content-type: application/sdp\r\nContent-length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        let r = parse_request(announce.as_bytes()).unwrap().unwrap();
        // The client's SDP enables control V2 and audio encryption, not video.
        let mut all = params();
        all.offer.encryption_requested = enc::CONTROL_V2 | enc::VIDEO | enc::AUDIO;
        let mut h = Handshake::new(all);
        let (resp, ev) = h.handle(&r);
        assert_eq!((resp.code, ev), (403, None));
        assert!(h.config().is_none());
        let buf = req("PLAY / RTSP/1.0\nCSeq: 7\n\n");
        assert_eq!(h.handle(&parse_request(&buf).unwrap().unwrap()).0.code, 455);
        let mut some = params();
        some.offer.encryption_requested = enc::CONTROL_V2 | enc::AUDIO;
        let (resp, ev) = Handshake::new(some).handle(&r);
        assert_eq!(resp.code, 200);
        assert!(ev.is_some());
    }

    #[test]
    fn play_before_announce_and_unknown_streams_are_refused() {
        let mut h = Handshake::new(params());
        let buf = req("PLAY / RTSP/1.0\nCSeq: 9\n\n");
        assert_eq!(h.handle(&parse_request(&buf).unwrap().unwrap()).0.code, 455);
        let buf = req("SETUP streamid=bogus RTSP/1.0\nCSeq: 9\n\n");
        assert_eq!(h.handle(&parse_request(&buf).unwrap().unwrap()).0.code, 404);
        let buf = req("TEARDOWN / RTSP/1.0\nCSeq: 9\n\n");
        assert_eq!(h.handle(&parse_request(&buf).unwrap().unwrap()).0.code, 501);
        let bad = "ANNOUNCE x RTSP/1.0\r\nCSeq: 2\r\nContent-length: 3\r\n\r\nabc";
        let (resp, ev) = h.handle(&parse_request(bad.as_bytes()).unwrap().unwrap());
        assert_eq!((resp.code, ev), (400, None));
    }

    #[test]
    fn malformed_requests_are_errors() {
        for bad in [
            "GET / HTTP/1.1\r\n\r\n",
            "OPTIONS\r\n\r\n",
            "OPTIONS a b RTSP/1.0\r\n\r\n",
            "OPTIONS / RTSP/1.0\r\nNoColon\r\n\r\n",
            "OPTIONS / RTSP/1.0\r\nContent-length: x\r\n\r\n",
            "OPTIONS / RTSP/1.0\r\nContent-length: 999999\r\n\r\n",
        ] {
            assert!(parse_request(bad.as_bytes()).is_err(), "{bad:?}");
        }
        assert!(parse_request(&[0xff; 10]).unwrap().is_none());
        assert!(parse_request(&[b'a'; MAX_REQUEST + 1]).is_err());
        assert!(parse_request(b"OPTIONS / RTSP/1.0\r\n\xff\xfe\r\n\r\n").is_err());
    }

    #[test]
    fn requests_reach_their_own_session() {
        let ip = |n: u8| IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, n));
        let c = |token, client, playing| RouteCandidate {
            token,
            client,
            playing,
        };
        // A streams (from .1), B connects from .2, C connects from .1 (after A streamed).
        let all = [
            c("AAAA", ip(1), true),
            c("BBBB", ip(2), false),
            c("CCCC", ip(1), false),
        ];
        assert_eq!(
            route(&all, Some("BBBB"), ip(1)),
            Some(1),
            "the token decides"
        );
        assert_eq!(route(&all, Some(" CCCC;timeout = 90"), ip(9)), Some(2));
        assert_eq!(route(&all, Some("DDDD"), ip(1)), None, "unknown token: 454");
        assert_eq!(route(&all, None, ip(2)), Some(1));
        assert_eq!(route(&all, None, ip(1)), Some(2), "not A: it is playing");
        let mapped = IpAddr::V6(std::net::Ipv4Addr::new(192, 0, 2, 2).to_ipv6_mapped());
        assert_eq!(route(&all, None, mapped), Some(1));
        assert_eq!(
            route(&all, None, ip(7)),
            None,
            "two connecting, neither from .7"
        );
        // The only session connecting takes a request from an unknown address.
        assert_eq!(route(&all[..2], None, ip(7)), Some(1));
        assert_eq!(route(&all[..1], None, ip(1)), None, "nothing connecting");
    }
}
