//! Connection floods against a whole host on real loopback sockets (issue 7, point 3): 400
//! idle, dripping (one byte a second) and garbage connections held open against each of the
//! HTTP, HTTPS and RTSP ports, from 127.0.0.1 like the real client, while that client asks
//! for /serverinfo, pairs (PIN entered through the management API), launches over HTTPS and
//! runs the RTSP handshake the way Moonlight does (one TCP connection per request). Every
//! step must succeed within a generous 10 s, and `/api/status` must show the evictions.
//!
//! The host is the real one (`Host::run` with nvhttp, nvhttps, the management API and the
//! streaming side); the client is written here from the protocol description. Every flood
//! thread stops by itself when the test ends (or after two minutes at most).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test helpers: a failed unwrap is a failed test

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_control::gamestream::cert::Certificate;
use punktfunk_control::gamestream::identity::HostIdentity;
use punktfunk_control::gamestream::pairing::{derive_key, ecb_decrypt, ecb_encrypt};
use punktfunk_control::gamestream::ports::Ports;
use punktfunk_control::gamestream::query::{hex_decode, hex_lower, hex_upper};
use punktfunk_control::gamestream::session::SessionManager;
use punktfunk_control::host::serve::{Host, ServeOptions};
use punktfunk_control::host::sessions::StreamingSessions;
use punktfunk_control::media::TestMedia;
use punktfunk_control::stream::session::{
    InputHandler, StreamEndpoints, StreamHost, StreamOptions,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};

const HOST_CERT: &str = include_str!("fixtures/host-cert.pem");
const HOST_KEY: &str = include_str!("fixtures/host-key.pem");
const CLIENT_CERT: &str = include_str!("fixtures/client-cert.pem");
const CLIENT_KEY: &str = include_str!("fixtures/client-key.pem");

/// Connections of each kind per port: 400 per port, 1200 in all. Idle and dripping ones
/// alone outnumber the HTTP listeners' limit of 256, so every listener has to evict.
const PER_KIND: [(Kind, usize); 3] = [(Kind::Idle, 150), (Kind::Drip, 150), (Kind::Garbage, 100)];
/// The bound on each step of the real client (generous: slow shared machines).
const STEP: Duration = Duration::from_secs(10);
const PIN: &str = "4711";

struct NoInput;

impl InputHandler for NoInput {
    fn handle_input(&mut self, _packet: &[u8]) {}
}

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        use std::os::unix::fs::DirBuilderExt as _;
        let p = std::env::temp_dir().join(format!(
            "pf-{tag}-{}-{}",
            std::process::id(),
            Instant::now().elapsed().as_nanos()
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::DirBuilder::new()
            .mode(0o700)
            .recursive(true)
            .create(&p)
            .unwrap();
        Self(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn port_free(port: u16) -> bool {
    TcpListener::bind(("127.0.0.1", port)).is_ok()
}

/// A base port whose TCP ports (https, http, management, rtsp) are free.
fn free_ports() -> Ports {
    let mut x = u64::from(std::process::id()) * 7919 + 12345;
    for _ in 0..500 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let base = 20_000 + (x % 40_000) as u16;
        let Ok(p) = Ports::new(base) else { continue };
        if [p.http(), p.https(), p.management(), p.rtsp()]
            .into_iter()
            .all(port_free)
        {
            return p;
        }
    }
    panic!("no free base port");
}

// ---------------------------------------------------------------------------------------
// The floods

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Connects and sends nothing.
    Idle,
    /// Sends the start of a request, one byte a second, never finishing it.
    Drip,
    /// Sends bytes that are no request (nor a TLS ClientHello) at once.
    Garbage,
}

struct Slot {
    conn: Option<TcpStream>,
    last_connect: Option<Instant>,
    sent: usize,
    last_drip: Instant,
}

const DRIP_HTTP: &[u8] = b"GET /serverinfo?uniqueid=0123456789ABCDEF HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
/// The start of a TLS record carrying a ClientHello: the TLS layer waits for the rest.
const DRIP_TLS: &[u8] = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ";
const DRIP_RTSP: &[u8] = b"OPTIONS rtsp://127.0.0.1:48010 RTSP/1.0\r\nCSeq: 1\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
const GARBAGE: &[u8] = b"\x00\x01\x02 this is no request at all \xff\xfe\r\n\r\n";

/// Holds `n` connections of `kind` to `port` until `stop` (or two minutes): a connection the
/// host closes is opened again, at most once a second per slot, as a stubborn attacker would.
fn flood(
    port: u16,
    kind: Kind,
    drip: &'static [u8],
    n: usize,
    stop: Arc<AtomicBool>,
) -> JoinHandle<()> {
    std::thread::Builder::new()
        .name(format!("flood-{port}-{kind:?}"))
        .spawn(move || {
            let end = Instant::now() + Duration::from_secs(120);
            let mut slots: Vec<Slot> = (0..n)
                .map(|_| Slot {
                    conn: None,
                    last_connect: None,
                    sent: 0,
                    last_drip: Instant::now(),
                })
                .collect();
            let mut buf = [0u8; 1024];
            while !stop.load(Ordering::Relaxed) && Instant::now() < end {
                for s in &mut slots {
                    // Closed by the host? Drain what it said and forget the connection.
                    if let Some(c) = &mut s.conn {
                        match c.read(&mut buf) {
                            Ok(0) => s.conn = None,
                            Ok(_) => {}
                            Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                            Err(_) => s.conn = None,
                        }
                    }
                    if s.conn.is_none() {
                        if s.last_connect
                            .is_some_and(|t| t.elapsed() < Duration::from_secs(1))
                        {
                            continue;
                        }
                        s.last_connect = Some(Instant::now());
                        let Ok(mut c) = TcpStream::connect_timeout(
                            &SocketAddr::from((Ipv4Addr::LOCALHOST, port)),
                            Duration::from_secs(1),
                        ) else {
                            continue;
                        };
                        if kind == Kind::Garbage {
                            let _ = c.write_all(GARBAGE);
                        }
                        let _ = c.set_nonblocking(true);
                        s.conn = Some(c);
                        s.sent = 0;
                        s.last_drip = Instant::now();
                    }
                    if kind == Kind::Drip
                        && s.last_drip.elapsed() >= Duration::from_secs(1)
                        && let Some(c) = &mut s.conn
                    {
                        let _ = c.write(&drip[s.sent % drip.len()..][..1]);
                        s.sent += 1;
                        s.last_drip = Instant::now();
                    }
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .unwrap()
}

// ---------------------------------------------------------------------------------------
// The real client

fn split_response(raw: &[u8]) -> (u16, String) {
    let text = String::from_utf8_lossy(raw).into_owned();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line in {text:?}"));
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (code, body)
}

fn request(path_query: &str) -> String {
    format!("GET {path_query} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

fn connect(port: u16) -> TcpStream {
    let c = TcpStream::connect_timeout(&SocketAddr::from((Ipv4Addr::LOCALHOST, port)), STEP)
        .expect("connect");
    c.set_read_timeout(Some(STEP)).unwrap();
    c.set_write_timeout(Some(STEP)).unwrap();
    c
}

fn http_get(port: u16, path_query: &str) -> (u16, String) {
    let mut c = connect(port);
    c.write_all(request(path_query).as_bytes()).unwrap();
    let mut out = Vec::new();
    c.read_to_end(&mut out)
        .unwrap_or_else(|e| panic!("GET {path_query}: {e}"));
    split_response(&out)
}

#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        // The host's certificate is self-signed; a Moonlight client pins it after pairing.
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn tls_config() -> Arc<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let cert = CertificateDer::from_pem_slice(CLIENT_CERT.as_bytes()).unwrap();
    let key = PrivateKeyDer::from_pem_slice(CLIENT_KEY.as_bytes()).unwrap();
    Arc::new(
        rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()
            .unwrap()
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
            .with_client_auth_cert(vec![cert], key)
            .unwrap(),
    )
}

fn https_get(port: u16, path_query: &str) -> (u16, String) {
    let conn = rustls::ClientConnection::new(
        tls_config(),
        ServerName::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST).into()),
    )
    .unwrap();
    let mut tls = rustls::StreamOwned::new(conn, connect(port));
    tls.write_all(request(path_query).as_bytes())
        .unwrap_or_else(|e| panic!("HTTPS {path_query}: {e}"));
    let mut out = Vec::new();
    match tls.read_to_end(&mut out) {
        Ok(_) => {}
        // The host closes without close_notify after `Connection: close`.
        Err(e) if e.kind() == ErrorKind::UnexpectedEof && !out.is_empty() => {}
        Err(e) => panic!("HTTPS {path_query}: {e}"),
    }
    split_response(&out)
}

fn xml_field(body: &str, tag: &str) -> Vec<u8> {
    let open = format!("<{tag}>");
    let start = body
        .find(&open)
        .unwrap_or_else(|| panic!("no {tag} in {body}"))
        + open.len();
    let end = start + body[start..].find('<').unwrap();
    hex_decode("field", &body[start..end]).unwrap()
}

fn sha256(parts: &[&[u8]]) -> Vec<u8> {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for p in parts {
        ctx.update(p);
    }
    ctx.finish().as_ref().to_vec()
}

/// The management API, with the token from the state directory.
struct Api {
    addr: SocketAddr,
    token: String,
}

impl Api {
    fn call(&self, method: &str, path: &str, body: Option<&str>) -> serde_json::Value {
        let mut c = TcpStream::connect(self.addr).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        let body = body.unwrap_or("");
        write!(
            c,
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
             Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            self.token,
            body.len()
        )
        .unwrap();
        let mut out = Vec::new();
        c.read_to_end(&mut out).unwrap();
        let (code, body) = split_response(&out);
        assert!(code < 500, "{method} {path}: {code} {body}");
        serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
    }

    fn listener(&self, name: &str) -> serde_json::Value {
        self.call("GET", "/api/status", None)["listeners"][name].clone()
    }
}

/// Runs `f` on a thread and fails the test if it does not finish within [`STEP`].
fn step<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(STEP) {
        Ok(v) => v,
        Err(_) => panic!("{what}: no answer within {STEP:?} while the floods run"),
    }
}

struct RunningHost {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
    state: PathBuf,
}

impl Drop for RunningHost {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn start_host(state: &Path, ports: Ports) -> RunningHost {
    std::fs::write(state.join("host-cert.pem"), HOST_CERT).unwrap();
    std::fs::write(state.join("host-key.pem"), HOST_KEY).unwrap();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let opts = ServeOptions {
        state_dir: Some(state.to_owned()),
        base_port: Some(ports.http()),
        bind: Some(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        mdns: false,
        ..ServeOptions::default()
    };
    let thread = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let host = Host::open(opts).unwrap();
            let endpoints = StreamEndpoints {
                bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
                rtsp: ports.rtsp(),
                video: ports.video(),
                control: ports.control(),
                audio: ports.audio(),
            };
            let input: Arc<Mutex<dyn InputHandler>> = Arc::new(Mutex::new(NoInput));
            let streaming = StreamHost::start(
                endpoints,
                StreamOptions::default(),
                Arc::new(TestMedia::default()),
                input,
            )
            .unwrap();
            host.listeners().add(streaming.rtsp_listener());
            let sessions: Arc<dyn SessionManager> = Arc::new(StreamingSessions::new(streaming, 4));
            host.run(sessions, async move {
                let _ = stop_rx.await;
            })
            .await
            .unwrap();
        });
    });
    RunningHost {
        stop: Some(stop_tx),
        thread: Some(thread),
        state: state.to_owned(),
    }
}

fn wait_for<T>(what: &str, timeout: Duration, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn rtsp(port: u16, request: String) -> String {
    step("RTSP request", move || {
        let mut c = connect(port);
        c.write_all(request.as_bytes()).unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).unwrap();
        out
    })
}

const SDP: &str = "v=0\r\na=x-ml-general.featureFlags:3 \r\na=x-ss-general.encryptionEnabled:7 \r\n\
a=x-nv-video[0].clientViewportWd:640 \r\na=x-nv-video[0].clientViewportHt:480 \r\n\
a=x-nv-video[0].maxFPS:30 \r\na=x-nv-video[0].packetSize:1024 \r\n\
a=x-ml-video.configuredBitrateKbps:2000 \r\na=x-nv-vqos[0].fec.minRequiredFecPackets:2 \r\n\
a=x-nv-general.featureFlags:167 \r\na=x-nv-aqos.packetDuration:5 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\nt=0 0\r\n";

#[test]
fn a_real_client_pairs_launches_and_streams_through_connection_floods() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let dir = TempDir::new("flood");
    let ports = free_ports();
    let host = start_host(&dir.0, ports);
    let run = wait_for("the host to listen", Duration::from_secs(60), || {
        std::fs::read_to_string(host.state.join("run.json")).ok()
    });
    let run: serde_json::Value = serde_json::from_str(&run).unwrap();
    let api = Arc::new(Api {
        addr: run["management_addr"].as_str().unwrap().parse().unwrap(),
        token: std::fs::read_to_string(dir.0.join("api-token"))
            .unwrap()
            .trim()
            .to_owned(),
    });

    // 400 connections against each of HTTP, HTTPS and RTSP.
    let stop = Arc::new(AtomicBool::new(false));
    let mut floods = Vec::new();
    for (port, drip) in [
        (ports.http(), DRIP_HTTP),
        (ports.https(), DRIP_TLS),
        (ports.rtsp(), DRIP_RTSP),
    ] {
        for (kind, n) in PER_KIND {
            floods.push(flood(port, kind, drip, n, Arc::clone(&stop)));
        }
    }
    // The floods are in full swing once every listener has taken a connection from each
    // slot and has had to evict.
    for name in ["nvhttp", "nvhttps", "rtsp"] {
        wait_for(
            &format!("{name} to take the flood and evict"),
            Duration::from_secs(60),
            || {
                let l = api.listener(name);
                (l["evicted"].as_u64().unwrap_or(0) > 0
                    && l["accepted"].as_u64().unwrap_or(0) >= 400)
                    .then_some(())
            },
        );
    }

    // 1. /serverinfo over HTTP.
    let http = ports.http();
    let https = ports.https();
    let (code, body) = step("serverinfo", move || http_get(http, "/serverinfo"));
    assert_eq!(code, 200, "{body}");
    assert!(body.contains("<PairStatus>0</PairStatus>"), "{body}");

    // 2. Pairing: phase 1 waits for the PIN, which the operator enters through the API.
    let client_id = HostIdentity::from_pem(CLIENT_CERT, CLIENT_KEY).unwrap();
    let salt = [0x5a_u8; 16];
    let aes = derive_key(&salt, PIN);
    let q1 = format!(
        "/pair?uniqueid=F100D&uuid=1&devicename=roth&updateState=1&phrase=getservercert&salt={}&clientcert={}",
        hex_lower(&salt),
        hex_upper(CLIENT_CERT.as_bytes())
    );
    let phase1 = std::thread::spawn(move || http_get(http, &q1));
    wait_for("the host to ask for the PIN", STEP, || {
        let s = api.call("GET", "/api/status", None);
        (s["pairing"]["state"] == "awaiting_pin").then_some(())
    });
    let pin_api = Arc::clone(&api);
    let pin = std::thread::spawn(move || {
        pin_api.call(
            "POST",
            "/api/pin",
            Some(&format!(r#"{{"pin":"{PIN}","name":"flood-test"}}"#)),
        )
    });
    let (code, body) = phase1.join().unwrap();
    assert_eq!(code, 200, "{body}");
    let server_cert = Certificate::from_pem(&xml_field(&body, "plaincert")).unwrap();
    let challenge = [0x11_u8; 16];
    let secret = [0x22_u8; 16];
    let mut c = challenge;
    ecb_encrypt(&aes, &mut c);
    let q2 = format!("/pair?uniqueid=F100D&clientchallenge={}", hex_upper(&c));
    let (_, body) = step("pairing phase 2", move || http_get(http, &q2));
    let mut r = xml_field(&body, "challengeresponse");
    ecb_decrypt(&aes, &mut r);
    let server_hash = r[..32].to_vec();
    let server_challenge = r[32..48].to_vec();
    let mut h = sha256(&[
        &server_challenge,
        client_id.certificate().signature(),
        &secret,
    ]);
    ecb_encrypt(&aes, &mut h);
    let q3 = format!("/pair?uniqueid=F100D&serverchallengeresp={}", hex_upper(&h));
    let (_, body) = step("pairing phase 3", move || http_get(http, &q3));
    let pairingsecret = xml_field(&body, "pairingsecret");
    let (host_secret, sig) = pairingsecret.split_at(16);
    server_cert
        .verify_pairing_signature(host_secret, sig)
        .expect("the host signed its secret");
    assert_eq!(
        sha256(&[&challenge, server_cert.signature(), host_secret]),
        server_hash,
        "the host used another PIN"
    );
    let mut p4 = secret.to_vec();
    p4.extend_from_slice(&client_id.sign(&secret));
    let q4 = format!(
        "/pair?uniqueid=F100D&clientpairingsecret={}",
        hex_upper(&p4)
    );
    let (_, body) = step("pairing phase 4", move || http_get(http, &q4));
    assert!(body.contains("<paired>1</paired>"), "{body}");
    let (_, body) = step("pairing phase 5 (HTTPS)", move || {
        https_get(https, "/pair?uniqueid=F100D&phrase=pairchallenge")
    });
    assert!(body.contains("<paired>1</paired>"), "{body}");
    let outcome = pin.join().unwrap();
    assert_eq!(outcome["outcome"], "paired", "{outcome}");

    // 3. Launch over HTTPS.
    let (_, body) = step("serverinfo (HTTPS)", move || {
        https_get(https, "/serverinfo")
    });
    assert!(body.contains("<PairStatus>1</PairStatus>"), "{body}");
    let (_, body) = step("launch", move || {
        https_get(
            https,
            "/launch?appid=1&mode=640x480x30&additionalStates=1&sops=0&rikey=000102030405060708090a0b0c0d0e0f&rikeyid=5&localAudioPlayMode=0",
        )
    });
    let url = format!("rtsp://127.0.0.1:{}", ports.rtsp());
    assert!(body.contains(&url), "{body}");

    // 4. The RTSP handshake, one connection per request.
    let port = ports.rtsp();
    let ok = |r: &str, what: &str| assert!(r.starts_with("RTSP/1.0 200"), "{what}: {r}");
    ok(
        &rtsp(port, format!("OPTIONS {url} RTSP/1.0\r\nCSeq: 1\r\n\r\n")),
        "OPTIONS",
    );
    ok(
        &rtsp(port, format!("DESCRIBE {url} RTSP/1.0\r\nCSeq: 2\r\n\r\n")),
        "DESCRIBE",
    );
    for (i, s) in ["audio/0/0", "video/0/0", "control/13/0"]
        .iter()
        .enumerate()
    {
        ok(
            &rtsp(
                port,
                format!("SETUP streamid={s} RTSP/1.0\r\nCSeq: {}\r\n\r\n", 3 + i),
            ),
            "SETUP",
        );
    }
    ok(
        &rtsp(
            port,
            format!(
                "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nContent-type: application/sdp\r\n\
                 Content-length: {}\r\n\r\n{SDP}",
                SDP.len()
            ),
        ),
        "ANNOUNCE",
    );
    ok(
        &rtsp(port, "PLAY / RTSP/1.0\r\nCSeq: 7\r\n\r\n".to_owned()),
        "PLAY",
    );
    let status = api.call("GET", "/api/status", None);
    assert_eq!(status["sessions"]["gamestream"]["live"], 1, "{status}");
    let rows = api.call("GET", "/api/sessions", None);
    assert_eq!(rows[0]["protocol"], "gamestream", "{rows}");

    // The host counted what it turned away, per listener.
    for name in ["nvhttp", "nvhttps", "rtsp"] {
        let l = api.listener(name);
        assert!(l["evicted"].as_u64().unwrap() > 0, "{name}: {l}");
        let max = if name == "rtsp" { 128 } else { 256 };
        assert!(l["open"].as_u64().unwrap() <= max, "{name}: {l}");
    }
    // Garbage is told apart from silence. A garbage connection the flood's newer ones evicted
    // before it was read counts as evicted, not malformed; the flood reopens its connections
    // every second, so give each listener up to 20 s to have read one.
    for name in ["nvhttp", "nvhttps", "rtsp"] {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let l = api.listener(name);
            if l["malformed"].as_u64().unwrap() > 0 {
                break;
            }
            assert!(Instant::now() < deadline, "{name}: no garbage counted: {l}");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    stop.store(true, Ordering::Relaxed);
    for f in floods {
        f.join().unwrap();
    }
    drop(host);
}

/// A client dripping an RTSP request one byte at a time neither holds up another client's
/// request (connections are served concurrently) nor keeps its connection past the total
/// request deadline (the read timeout is what is left of it, not a fresh one per byte).
#[test]
fn a_dripping_rtsp_client_is_cut_off_at_the_total_deadline_and_blocks_no_one() {
    let rtsp_limits = punktfunk_control::limits::LimitsConfig {
        request_deadline: Duration::from_secs(2),
        ..punktfunk_control::stream::session::rtsp_limits()
    };
    let endpoints = StreamEndpoints {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtsp: 0,
        video: 0,
        control: 0,
        audio: 0,
    };
    let input: Arc<Mutex<dyn InputHandler>> = Arc::new(Mutex::new(NoInput));
    let host = StreamHost::start(
        endpoints,
        StreamOptions {
            rtsp_limits,
            ..StreamOptions::default()
        },
        Arc::new(TestMedia::default()),
        input,
    )
    .unwrap();
    let port = host.rtsp_port();
    let mut drip = connect(port);
    // 200 bytes at one per 250 ms would take 50 s; the drip goes on on its own thread.
    let request = format!(
        "OPTIONS rtsp://x RTSP/1.0\r\nCSeq: 1\r\nX-Slow: {}",
        "a".repeat(160)
    );
    let dripper = std::thread::spawn(move || {
        let start = Instant::now();
        drip.set_read_timeout(Some(Duration::from_millis(250)))
            .unwrap();
        let mut buf = [0u8; 256];
        for (sent, byte) in request.as_bytes().iter().enumerate() {
            if drip.write_all(std::slice::from_ref(byte)).is_err() {
                return (true, sent, start.elapsed());
            }
            match drip.read(&mut buf) {
                Ok(0) => return (true, sent, start.elapsed()),
                Ok(_) => panic!("the host answered an incomplete request"),
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return (true, sent, start.elapsed()),
            }
            if start.elapsed() > Duration::from_secs(40) {
                break;
            }
        }
        (false, request.len(), start.elapsed())
    });
    std::thread::sleep(Duration::from_millis(600));
    // Another client's request is answered while the drip goes on.
    let r = rtsp(
        port,
        "OPTIONS rtsp://x RTSP/1.0\r\nCSeq: 9\r\n\r\n".to_owned(),
    );
    assert!(r.starts_with("RTSP/1.0 454"), "{r}");
    let (closed, sent, after) = dripper.join().unwrap();
    assert!(
        closed,
        "the dripping connection was still open after {sent} bytes ({after:?})"
    );
    wait_for("the time-out to be counted", STEP, || {
        (host.rtsp_listener().stats().timed_out == 1).then_some(())
    });
    assert_eq!(host.rtsp_listener().stats().open, 0);
    host.shutdown();
}
