//! Deterministic simulation of punktfunk/1: host and client state machines exchanging
//! datagrams through a virtual network (seeded loss, duplication, reordering and delay) on
//! a virtual clock. No sockets, no threads, no sleeping.
//!
//! Besides the two real state machines, the simulation has raw QUIC peers built directly on
//! quinn-proto with the punktfunk/1 TLS configurations: a hostile client that writes
//! arbitrary bytes on the control stream, and a relay (man in the middle) that terminates
//! QUIC on both sides with its own certificate and copies control-stream bytes through.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use punktfunk_control::input::wire::{InputEvent, MouseButton};
use punktfunk_control::pairing_window::Refusal;
use punktfunk_control::pf1::message::{FrameDecoder, Hello, LossReport, Message, Stats};
use punktfunk_control::pf1::{
    AdmittedPhase, ClientConfig, ClientEvent, ClientSession, Codec, DATA_KEY_MATERIAL_LEN,
    FecScheme, Fingerprint, GoodbyeReason, HostConfig, HostEvent, HostPin, HostSession, HostTrust,
    Identity, Mode, Pin, SessionOffer, Transmit, tls,
};
use quinn_proto::crypto::rustls::{QuicClientConfig, QuicServerConfig};
use quinn_proto::{
    Connection, ConnectionHandle, DatagramEvent, Dir, Endpoint, EndpointConfig, Event, StreamId,
    VarInt,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

const HOST: &str = "10.0.0.1:47900";
const CLIENT: &str = "10.0.0.2:50000";
const RELAY_FRONT: &str = "10.0.0.3:47900";
const RELAY_BACK: &str = "10.0.0.4:50001";
const EVIL: &str = "10.0.0.5:50002";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const MODE: Mode = Mode::new(1920, 1080, 60);

fn offer() -> SessionOffer {
    SessionOffer {
        codec: Codec::H264,
        fec: FecScheme::Gf16Leopard,
        parity_percent: 20,
        shard_payload: 1200,
        data_port: 47910,
        mode: MODE,
    }
}

// ---------------------------------------------------------------------------------------
// Virtual network

#[derive(Debug, Clone, Copy)]
struct Impairment {
    loss: f64,
    duplicate: f64,
    min_delay: Duration,
    jitter: Duration,
}

impl Impairment {
    fn clean() -> Self {
        Self {
            loss: 0.0,
            duplicate: 0.0,
            min_delay: Duration::from_millis(5),
            jitter: Duration::ZERO,
        }
    }

    fn rough() -> Self {
        Self {
            loss: 0.10,
            duplicate: 0.05,
            min_delay: Duration::from_millis(10),
            // Jitter well above the packet spacing reorders packets.
            jitter: Duration::from_millis(30),
        }
    }
}

struct Packet {
    from: SocketAddr,
    to: SocketAddr,
    bytes: Vec<u8>,
}

struct Net {
    rng: ChaCha20Rng,
    imp: Impairment,
    queue: BinaryHeap<Reverse<(Instant, u64, usize)>>,
    packets: Vec<Option<Packet>>,
    seq: u64,
    sent: u64,
    dropped: u64,
}

impl Net {
    fn new(seed: u64, imp: Impairment) -> Self {
        Self {
            rng: ChaCha20Rng::seed_from_u64(seed),
            imp,
            queue: BinaryHeap::new(),
            packets: Vec::new(),
            seq: 0,
            sent: 0,
            dropped: 0,
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    fn send(&mut self, now: Instant, from: SocketAddr, to: SocketAddr, bytes: &[u8]) {
        self.sent += 1;
        if self.chance(self.imp.loss) {
            self.dropped += 1;
            return;
        }
        let copies = if self.chance(self.imp.duplicate) {
            2
        } else {
            1
        };
        for _ in 0..copies {
            let jitter_us = self.imp.jitter.as_micros() as u64;
            let extra = if jitter_us > 0 {
                Duration::from_micros(self.rng.next_u64() % jitter_us)
            } else {
                Duration::ZERO
            };
            let at = now + self.imp.min_delay + extra;
            self.packets.push(Some(Packet {
                from,
                to,
                bytes: bytes.to_vec(),
            }));
            self.seq += 1;
            self.queue
                .push(Reverse((at, self.seq, self.packets.len() - 1)));
        }
    }

    fn next_at(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse((at, _, _))| *at)
    }

    fn pop_due(&mut self, now: Instant) -> Option<Packet> {
        let Reverse((at, _, idx)) = *self.queue.peek()?;
        if at > now {
            return None;
        }
        self.queue.pop();
        self.packets[idx].take()
    }
}

// ---------------------------------------------------------------------------------------
// Raw QUIC peers (hostile client, relay halves)

struct RawPeer {
    ep: Endpoint,
    conn: Option<(ConnectionHandle, Connection)>,
    stream: Option<StreamId>,
    connected: bool,
    lost: bool,
    rx: Vec<u8>,
    responses: VecDeque<(Transmit, Vec<u8>)>,
    is_client: bool,
    peer_fp: Option<Fingerprint>,
}

impl RawPeer {
    fn endpoint(server: Option<Arc<quinn_proto::ServerConfig>>, seed: u8) -> Endpoint {
        let cfg = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
            ring::hmac::HMAC_SHA256,
            &[seed; 32],
        )));
        Endpoint::new(Arc::new(cfg), server, true, Some([seed; 32]))
    }

    fn server(id: &Identity, seed: u8) -> Self {
        let qsc = QuicServerConfig::try_from(tls::server_config(id).unwrap()).unwrap();
        let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, &[]).extract(&[seed; 32]);
        let sc = quinn_proto::ServerConfig::new(Arc::new(qsc), Arc::new(prk));
        Self {
            ep: Self::endpoint(Some(Arc::new(sc)), seed),
            conn: None,
            stream: None,
            connected: false,
            lost: false,
            rx: Vec::new(),
            responses: VecDeque::new(),
            is_client: false,
            peer_fp: None,
        }
    }

    fn client(id: &Identity, seed: u8, now: Instant, server: SocketAddr) -> Self {
        let qcc = QuicClientConfig::try_from(tls::client_config(id).unwrap()).unwrap();
        let cc = quinn_proto::ClientConfig::new(Arc::new(qcc));
        let mut ep = Self::endpoint(None, seed);
        let conn = ep.connect(now, cc, server, "punktfunk.host").unwrap();
        Self {
            ep,
            conn: Some(conn),
            stream: None,
            connected: false,
            lost: false,
            rx: Vec::new(),
            responses: VecDeque::new(),
            is_client: true,
            peer_fp: None,
        }
    }

    fn handle_datagram(&mut self, now: Instant, from: SocketAddr, bytes: &[u8]) {
        let mut buf = Vec::new();
        match self
            .ep
            .handle(now, from, None, None, BytesMut::from(bytes), &mut buf)
        {
            Some(DatagramEvent::ConnectionEvent(_, ev)) => {
                if let Some((_, c)) = &mut self.conn {
                    c.handle_event(ev);
                }
            }
            Some(DatagramEvent::NewConnection(inc)) => {
                if self.conn.is_none() {
                    if let Ok(c) = self.ep.accept(inc, now, &mut buf, None) {
                        self.conn = Some(c);
                    }
                } else {
                    self.ep.ignore(inc);
                }
            }
            Some(DatagramEvent::Response(t)) => self.responses.push_back((
                Transmit {
                    destination: t.destination,
                    size: t.size,
                    segment_size: None,
                    send_at: None,
                },
                buf[..t.size].to_vec(),
            )),
            None => {}
        }
        self.process();
    }

    fn process(&mut self) {
        let Some((h, c)) = &mut self.conn else { return };
        while let Some(ev) = c.poll_endpoint_events() {
            if let Some(back) = self.ep.handle_event(*h, ev) {
                c.handle_event(back);
            }
        }
        while let Some(ev) = c.poll() {
            match ev {
                Event::Connected => {
                    self.connected = true;
                    let certs = c
                        .crypto_session()
                        .peer_identity()
                        .unwrap()
                        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
                        .unwrap();
                    self.peer_fp = Some(Fingerprint::of(&certs[0]));
                    if self.is_client {
                        self.stream = c.streams().open(Dir::Bi);
                    }
                }
                Event::Stream(quinn_proto::StreamEvent::Opened { dir: Dir::Bi })
                    if self.stream.is_none() =>
                {
                    self.stream = c.streams().accept(Dir::Bi);
                }
                Event::ConnectionLost { .. } => self.lost = true,
                _ => {}
            }
        }
        if let Some(id) = self.stream
            && let Ok(mut chunks) = c.recv_stream(id).read(true)
        {
            while let Ok(Some(ch)) = chunks.next(usize::MAX) {
                self.rx.extend_from_slice(&ch.bytes);
            }
            let _ = chunks.finalize();
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        let (Some((_, c)), Some(id)) = (&mut self.conn, self.stream) else {
            panic!("no stream to write on")
        };
        let mut off = 0;
        while off < bytes.len() {
            match c.send_stream(id).write(&bytes[off..]) {
                Ok(n) => off += n,
                Err(_) => break,
            }
        }
    }

    fn send_datagram(&mut self, bytes: &[u8]) {
        if let Some((_, c)) = &mut self.conn {
            let _ = c
                .datagrams()
                .send(bytes::Bytes::copy_from_slice(bytes), false);
        }
    }

    fn close(&mut self, now: Instant) {
        if let Some((_, c)) = &mut self.conn {
            c.close(now, VarInt::from_u32(0), bytes::Bytes::new());
        }
    }

    fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        if let Some((t, b)) = self.responses.pop_front() {
            buf.clear();
            buf.extend_from_slice(&b);
            return Some(t);
        }
        let (_, c) = self.conn.as_mut()?;
        buf.clear();
        let t = c.poll_transmit(now, 1, buf)?;
        Some(Transmit {
            destination: t.destination,
            size: t.size,
            segment_size: None,
            send_at: None,
        })
    }

    fn poll_timeout(&mut self) -> Option<Instant> {
        self.conn.as_mut()?.1.poll_timeout()
    }

    fn handle_timeout(&mut self, now: Instant) {
        if let Some((_, c)) = &mut self.conn {
            c.handle_timeout(now);
        }
        self.process();
    }
}

/// A relay: QUIC server towards the client, QUIC client towards the host, control-stream
/// bytes copied both ways. Its certificate is its own: it holds neither real key.
struct Relay {
    id: Identity,
    front: RawPeer,
    back: Option<RawPeer>,
}

// ---------------------------------------------------------------------------------------
// Simulation

enum Node {
    Host(Box<HostSession>),
    Client(Box<ClientSession>),
    Raw(Box<RawPeer>),
    Relay(Box<Relay>),
}

struct Sim {
    now: Instant,
    net: Net,
    nodes: Vec<(SocketAddr, Node)>,
    host_log: Vec<HostEvent>,
    client_log: Vec<ClientEvent>,
    /// The same client events, with the address of the client that reported each.
    client_log_by: Vec<(SocketAddr, ClientEvent)>,
    /// Packets to these addresses are lost (a peer that never hears the host).
    mute: Vec<SocketAddr>,
}

impl Sim {
    fn new(seed: u64, imp: Impairment) -> Self {
        Self {
            now: Instant::now(),
            net: Net::new(seed, imp),
            nodes: Vec::new(),
            host_log: Vec::new(),
            client_log: Vec::new(),
            client_log_by: Vec::new(),
            mute: Vec::new(),
        }
    }

    fn add(&mut self, at: &str, node: Node) {
        self.nodes.push((addr(at), node));
    }

    fn host(&mut self) -> &mut HostSession {
        self.nodes
            .iter_mut()
            .find_map(|(_, n)| match n {
                Node::Host(h) => Some(&mut **h),
                _ => None,
            })
            .unwrap()
    }

    fn client(&mut self) -> &mut ClientSession {
        self.nodes
            .iter_mut()
            .find_map(|(_, n)| match n {
                Node::Client(c) => Some(&mut **c),
                _ => None,
            })
            .unwrap()
    }

    fn raw(&mut self) -> &mut RawPeer {
        self.nodes
            .iter_mut()
            .find_map(|(_, n)| match n {
                Node::Raw(r) => Some(&mut **r),
                _ => None,
            })
            .unwrap()
    }

    fn flush(&mut self) {
        let now = self.now;
        let mut buf = Vec::new();
        for (a, node) in &mut self.nodes {
            loop {
                let sent = match node {
                    Node::Host(h) => h.poll_transmit(now, &mut buf).map(|t| (*a, t)),
                    Node::Client(c) => c.poll_transmit(now, &mut buf).map(|t| (*a, t)),
                    Node::Raw(r) => r.poll_transmit(now, &mut buf).map(|t| (*a, t)),
                    Node::Relay(r) => match r.front.poll_transmit(now, &mut buf) {
                        Some(t) => Some((addr(RELAY_FRONT), t)),
                        None => r
                            .back
                            .as_mut()
                            .and_then(|b| b.poll_transmit(now, &mut buf))
                            .map(|t| (addr(RELAY_BACK), t)),
                    },
                };
                let Some((from, t)) = sent else { break };
                assert!(t.size <= buf.len());
                self.net.send(now, from, t.destination, &buf[..t.size]);
            }
        }
    }

    fn collect(&mut self) {
        for (a, node) in &mut self.nodes {
            match node {
                Node::Host(h) => {
                    while let Some(ev) = h.poll_event() {
                        self.host_log.push(ev);
                    }
                }
                Node::Client(c) => {
                    while let Some(ev) = c.poll_event() {
                        self.client_log_by.push((*a, ev.clone()));
                        self.client_log.push(ev);
                    }
                }
                Node::Relay(r) => {
                    // Copy control-stream bytes through, both ways.
                    if r.front.connected && r.back.is_none() {
                        r.back = Some(RawPeer::client(&r.id, 77, self.now, addr(HOST)));
                    }
                    if let Some(back) = &mut r.back {
                        if !r.front.rx.is_empty() && back.stream.is_some() {
                            let b = std::mem::take(&mut r.front.rx);
                            back.write(&b);
                        }
                        if !back.rx.is_empty() && r.front.stream.is_some() {
                            let b = std::mem::take(&mut back.rx);
                            r.front.write(&b);
                        }
                    }
                }
                Node::Raw(_) => {}
            }
        }
    }

    fn next_timeout(&mut self) -> Option<Instant> {
        let mut t = self.net.next_at();
        for (_, node) in &mut self.nodes {
            let n = match node {
                Node::Host(h) => h.poll_timeout(),
                Node::Client(c) => c.poll_timeout(),
                Node::Raw(r) => r.poll_timeout(),
                Node::Relay(r) => [
                    r.front.poll_timeout(),
                    r.back.as_mut().and_then(|b| b.poll_timeout()),
                ]
                .into_iter()
                .flatten()
                .min(),
            };
            t = match (t, n) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            };
        }
        t
    }

    fn deliver(&mut self) {
        let now = self.now;
        while let Some(p) = self.net.pop_due(now) {
            if self.mute.contains(&p.to) {
                continue;
            }
            for (a, node) in &mut self.nodes {
                match node {
                    Node::Host(h) if *a == p.to => h.handle_datagram(now, p.from, &p.bytes),
                    Node::Client(c) if *a == p.to => c.handle_datagram(now, p.from, &p.bytes),
                    Node::Raw(r) if *a == p.to => r.handle_datagram(now, p.from, &p.bytes),
                    Node::Relay(r) => {
                        if p.to == addr(RELAY_FRONT) {
                            r.front.handle_datagram(now, p.from, &p.bytes);
                        } else if p.to == addr(RELAY_BACK)
                            && let Some(b) = &mut r.back
                        {
                            b.handle_datagram(now, p.from, &p.bytes);
                        }
                    }
                    _ => {}
                }
            }
        }
        for (_, node) in &mut self.nodes {
            match node {
                Node::Host(h) => {
                    if h.poll_timeout().is_some_and(|t| t <= now) {
                        h.handle_timeout(now);
                    }
                }
                Node::Client(c) => {
                    if c.poll_timeout().is_some_and(|t| t <= now) {
                        c.handle_timeout(now);
                    }
                }
                Node::Raw(r) => {
                    if r.poll_timeout().is_some_and(|t| t <= now) {
                        r.handle_timeout(now);
                    }
                }
                Node::Relay(r) => {
                    if r.front.poll_timeout().is_some_and(|t| t <= now) {
                        r.front.handle_timeout(now);
                    }
                    if let Some(b) = &mut r.back
                        && b.poll_timeout().is_some_and(|t| t <= now)
                    {
                        b.handle_timeout(now);
                    }
                }
            }
        }
    }

    /// Runs until `done` holds or `limit` of virtual time has passed.
    fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&Sim) -> bool) -> bool {
        let end = self.now + limit;
        loop {
            self.flush();
            self.collect();
            self.flush();
            if done(self) {
                return true;
            }
            match self.next_timeout() {
                Some(t) if t <= end => {
                    self.now = self.now.max(t);
                    self.deliver();
                }
                _ => {
                    self.now = end;
                    return false;
                }
            }
        }
    }

    fn run_for(&mut self, d: Duration) {
        self.run_until(d, |_| false);
    }

    /// How the client at `at` ended, if it has.
    fn closed_at(&self, at: SocketAddr) -> Option<&punktfunk_control::pf1::Closed> {
        self.client_log_by.iter().find_map(|(a, e)| match e {
            ClientEvent::Closed(c) if *a == at => Some(c),
            _ => None,
        })
    }
}

/// The PIN the operator arms in the pairing tests.
fn armed_pin() -> Pin {
    Pin::parse("135790").unwrap()
}

fn host_has(sim: &Sim, f: impl Fn(&HostEvent) -> bool) -> bool {
    sim.host_log.iter().any(f)
}

fn client_has(sim: &Sim, f: impl Fn(&ClientEvent) -> bool) -> bool {
    sim.client_log.iter().any(f)
}

fn hello_conn(sim: &Sim) -> Option<punktfunk_control::pf1::ConnId> {
    sim.host_log.iter().find_map(|e| match e {
        HostEvent::HelloReceived { conn, .. } => Some(*conn),
        _ => None,
    })
}

fn ids() -> (Identity, Identity) {
    (
        Identity::generate("sim host").unwrap(),
        Identity::generate("sim client").unwrap(),
    )
}

fn host_config(id: &Identity, seed: u8) -> HostConfig {
    HostConfig::new(id.clone(), [seed; 32])
}

fn client_config(id: &Identity, seed: u8) -> ClientConfig {
    let mut c = ClientConfig::new(id.clone(), "sim tv", MODE, [seed; 32]);
    c.codecs = c.codecs.with(Codec::Hevc);
    c
}

const LONG: Duration = Duration::from_secs(60);

/// Hello → Welcome → Start → streaming; checks both sides' parameters. Returns the conn.
fn establish(sim: &mut Sim) -> punktfunk_control::pf1::ConnId {
    assert!(
        sim.run_until(LONG, |s| hello_conn(s).is_some()),
        "no Hello: {:?} / {:?}",
        sim.host_log,
        sim.client_log
    );
    let conn = hello_conn(sim).unwrap();
    let now = sim.now;
    let session_id = sim.host().accept(now, conn, offer()).unwrap();
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Welcome(_)
    ))));
    let client_params = sim.client().start(50010).unwrap();
    assert_eq!(client_params.session_id, session_id);
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Started { .. }
    ))));
    let host_params = sim
        .host_log
        .iter()
        .find_map(|e| match e {
            HostEvent::Started { params, .. } => Some(params.clone()),
            _ => None,
        })
        .unwrap();
    // Both sides derived the same key material from their TLS sessions.
    assert_eq!(host_params.key_material, client_params.key_material);
    assert_eq!(host_params.key_material.len(), DATA_KEY_MATERIAL_LEN);
    assert_ne!(host_params.key_material, [0; DATA_KEY_MATERIAL_LEN]);
    assert_eq!(host_params.aes_key(), client_params.aes_key());
    assert_eq!(host_params.nonce_salt(), client_params.nonce_salt());
    assert_eq!(host_params.client_data_port, 50010);
    assert_eq!(client_params.host_data_port, 47910);
    assert_eq!(host_params.peer_ip, addr(CLIENT).ip());
    assert_eq!(client_params.peer_ip, addr(HOST).ip());
    assert_eq!(host_params.fec, FecScheme::Gf16Leopard);
    assert_eq!(host_params.parity_percent, 20);
    assert_eq!(host_params.shard_payload, 1200);
    assert_eq!(host_params.mode, MODE);
    assert_eq!(sim.host().data_params(conn), Some(&host_params));
    conn
}

fn full_session(seed: u64, imp: Impairment) -> (Sim, u64) {
    let (hid, cid) = ids();
    let mut sim = Sim::new(seed, imp);
    // Paired: input is taken only from paired clients.
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap(),
        )),
    );
    let client = ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap();
    sim.add(CLIENT, Node::Client(Box::new(client)));
    let conn = establish(&mut sim);

    // Connected carried both fingerprints.
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::Connected { fingerprint, .. } if *fingerprint == cid.fingerprint()
    )));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Connected { fingerprint, trust: HostTrust::FirstUse }
            if *fingerprint == hid.fingerprint()
    )));
    // Hello carried the client's caps.
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { hello: Hello { client_name, codecs, requested, .. }, paired: true, .. }
            if client_name == "sim tv" && codecs.contains(Codec::Hevc) && *requested == MODE
    )));

    // Renegotiation round trip.
    let new_mode = Mode::new(2560, 1440, 120);
    sim.client().request_reconfigure(new_mode).unwrap();
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::ReconfigureRequested { mode, .. } if *mode == new_mode
    ))));
    assert_eq!(sim.host().reconfigured(conn, new_mode, 600).unwrap(), 1);
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Reconfigured(r) if r.mode == new_mode && r.epoch == 1 && r.first_frame_id == 600
    ))));
    assert_eq!(sim.client().data_params().unwrap().mode, new_mode);

    // IDR, loss reports and stats, in order.
    sim.client().request_idr().unwrap();
    for w in 0..5 {
        sim.client()
            .send_loss_report(LossReport {
                window_id: w,
                expected: 1000,
                received: 990 - w,
                frames_complete: 60,
                frames_unrecoverable: w,
            })
            .unwrap();
    }
    sim.client()
        .send_stats(Stats {
            window_id: 9,
            frames_decoded: 60,
            ..Stats::default()
        })
        .unwrap();
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Stats { stats, .. } if stats.window_id == 9
    ))));
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::IdrRequested { .. }
    )));
    let windows: Vec<u32> = sim
        .host_log
        .iter()
        .filter_map(|e| match e {
            HostEvent::LossReport { report, .. } => Some(report.window_id),
            _ => None,
        })
        .collect();
    assert_eq!(windows, [0, 1, 2, 3, 4], "reliable and ordered");

    // Host stats flow the other way.
    sim.host()
        .send_stats(
            conn,
            Stats {
                window_id: 3,
                ..Stats::default()
            },
        )
        .unwrap();
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Stats(st) if st.window_id == 3
    ))));

    // Input datagrams (unreliable: count what arrives).
    for i in 0..20 {
        let ev = if i % 2 == 0 {
            InputEvent::MouseMove { dx: i, dy: -i }
        } else {
            InputEvent::MouseButton {
                down: true,
                button: MouseButton::Left,
            }
        };
        sim.client().send_input(&ev).unwrap();
    }
    sim.run_for(Duration::from_secs(2));
    let inputs = sim
        .host_log
        .iter()
        .filter(|e| matches!(e, HostEvent::Input { .. }))
        .count() as u64;
    assert!(inputs > 0 && inputs <= 20, "{inputs}");

    // Goodbye with a reason, reported on both sides.
    let now = sim.now;
    sim.client()
        .goodbye(now, GoodbyeReason::Normal, "user quit");
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Closed { closed, .. }
            if closed.by_peer && closed.reason == GoodbyeReason::Normal && closed.text == "user quit"
    ))));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if !c.by_peer && c.reason == GoodbyeReason::Normal
    )));
    // Both sides drain and the host forgets the connection.
    sim.run_for(Duration::from_secs(10));
    assert!(sim.host().is_idle());
    assert!(sim.client().is_drained());
    // Exactly one Closed per side.
    assert_eq!(
        sim.client_log
            .iter()
            .filter(|e| matches!(e, ClientEvent::Closed(_)))
            .count(),
        1
    );
    assert_eq!(
        sim.host_log
            .iter()
            .filter(|e| matches!(e, HostEvent::Closed { .. }))
            .count(),
        1
    );
    assert_eq!(sim.host().stats().malformed_messages, 0);
    assert_eq!(sim.host().stats().unexpected_messages, 0);
    (sim, inputs)
}

#[test]
fn session_on_a_clean_network() {
    let (sim, inputs) = full_session(1, Impairment::clean());
    assert_eq!(inputs, 20, "no loss, every input datagram arrives");
    assert_eq!(sim.net.dropped, 0);
}

#[test]
fn session_survives_loss_reordering_and_duplication() {
    for seed in 1..=6 {
        let (sim, _) = full_session(seed, Impairment::rough());
        assert!(
            sim.net.dropped > 0,
            "seed {seed}: the impairment was active"
        );
    }
}

#[test]
fn same_seed_same_history() {
    // The event sequence (not the encrypted bytes) is a function of the seeds.
    let run = |seed| {
        let (sim, inputs) = full_session(seed, Impairment::rough());
        let kinds: Vec<String> = sim
            .host_log
            .iter()
            .map(|e| {
                format!("{e:?}")
                    .split([' ', '{', '('])
                    .next()
                    .unwrap()
                    .to_owned()
            })
            .collect();
        (kinds, inputs, sim.net.sent, sim.net.dropped)
    };
    assert_eq!(run(3), run(3));
}

// ---------------------------------------------------------------------------------------
// Pairing

fn pairing_sim(seed: u64, imp: Impairment, require_pairing: bool) -> (Sim, Identity, Identity) {
    let (hid, cid) = ids();
    let mut sim = Sim::new(seed, imp);
    let mut hc = host_config(&hid, 1);
    hc.require_pairing = require_pairing;
    let mut host = HostSession::new(hc, []).unwrap();
    // The operator opened the pairing window.
    host.arm_pin(sim.now, armed_pin());
    sim.add(HOST, Node::Host(Box::new(host)));
    let mut cc = client_config(&cid, 2);
    cc.pair = true;
    let client = ClientSession::connect(cc, sim.now, addr(HOST)).unwrap();
    sim.add(CLIENT, Node::Client(Box::new(client)));
    (sim, hid, cid)
}

#[test]
fn pairing_with_the_right_pin() {
    for (seed, imp) in [(1, Impairment::clean()), (5, Impairment::rough())] {
        let (mut sim, hid, cid) = pairing_sim(seed, imp, true);
        assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
            e,
            ClientEvent::PinNeeded { digits: 6 }
        ))));
        sim.client().pair(armed_pin()).unwrap();
        assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
            e,
            ClientEvent::PairingResult { ok: true }
        ))));
        assert!(host_has(&sim, |e| matches!(
            e,
            HostEvent::PairingResult { ok: true, fingerprint, client_name, .. }
                if *fingerprint == cid.fingerprint() && client_name == "sim tv"
        )));
        // The window paired one client and is closed now.
        assert!(host_has(&sim, |e| matches!(
            e,
            HostEvent::PairingClosed { why: Refusal::Used }
        )));
        let now = sim.now;
        assert!(!sim.host().has_armed_pin(now));
        assert!(sim.host().is_trusted(&cid.fingerprint()));
        // After pairing the Hello is released, marked paired, and the session proceeds.
        assert!(host_has(&sim, |e| matches!(
            e,
            HostEvent::HelloReceived { paired: true, .. }
        )));
        establish(&mut sim);
        assert_eq!(sim.host().stats().pairing_attempts, 1);
        assert_eq!(sim.host().stats().pairing_failures, 0);
        assert_eq!(sim.client().host_fingerprint(), Some(hid.fingerprint()));
    }
}

#[test]
fn a_wrong_pin_fails_counts_against_the_window_and_the_address_backs_off() {
    let (mut sim, _hid, cid) = pairing_sim(2, Impairment::clean(), true);
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::PinNeeded { .. }
    ))));
    sim.client().pair(Pin::parse("000000").unwrap()).unwrap();
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Closed(_)
    ))));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::PairingResult { ok: false }
    )));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.reason == GoodbyeReason::PairingFailed
    )));
    // The client detected it first; the host learns of it and counts it.
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::PairingResult { ok: false, .. }
    ))));
    assert!(!sim.host().is_trusted(&cid.fingerprint()));
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { .. }
    )));
    assert_eq!(sim.host().stats().pairing_attempts, 1);
    assert_eq!(sim.host().stats().pairing_failures, 1);
    let now = sim.now;
    let w = sim.host().pairing_status(now);
    assert_eq!((w.failures, w.failures_left), (1, 2));

    // Straight away, the same address is told to wait (1 s after a first failure).
    let retry = |sim: &mut Sim, seed: u8, pin: Pin| {
        let mut cc = client_config(&cid, seed);
        cc.pair = true;
        cc.pin = Some(pin);
        let now = sim.now;
        sim.nodes.retain(|(_, n)| !matches!(n, Node::Client(_)));
        sim.client_log.clear();
        sim.add(
            CLIENT,
            Node::Client(Box::new(
                ClientSession::connect(cc, now, addr(HOST)).unwrap(),
            )),
        );
        assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
            e,
            ClientEvent::Closed(_) | ClientEvent::PairingResult { ok: true }
        ))));
    };
    retry(&mut sim, 3, armed_pin());
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.by_peer && c.reason == GoodbyeReason::RetryLater
            && c.text.contains("try again in 1 s")
    )));
    assert_eq!(sim.host().stats().refused_backoff, 1);
    assert_eq!(sim.host().stats().pairing_attempts, 1);
    // After the wait, the right PIN (the window is still open) pairs.
    sim.run_for(Duration::from_secs(2));
    retry(&mut sim, 4, armed_pin());
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::PairingResult { ok: true }
    )));
    assert!(sim.host().is_trusted(&cid.fingerprint()));
}

/// Issue 7, point 2: many wrong guesses, from one address and from many, never pair; the
/// third failure closes the window until the operator arms it again; then the operator's
/// PIN pairs.
#[test]
fn pin_guessing_closes_the_window_then_an_armed_pin_pairs() {
    for many_addresses in [false, true] {
        let (hid, cid) = ids();
        let mut sim = Sim::new(21, Impairment::clean());
        let mut host = HostSession::new(host_config(&hid, 1), []).unwrap();
        // A long window, so that only the guesses can close it.
        host.arm_pin(sim.now, armed_pin());
        sim.add(HOST, Node::Host(Box::new(host)));
        let evil = Identity::generate("guesser").unwrap();
        let mut reasons = Vec::new();
        for i in 0..50u32 {
            let at: SocketAddr = if many_addresses {
                format!("10.0.{}.{}:40000", 1 + i / 200, 1 + i % 200)
            } else {
                format!("10.0.9.9:{}", 40000 + i)
            }
            .parse()
            .unwrap();
            // Every guess is wrong (and differs from the last).
            let mut cc = client_config(&evil, 40 + i as u8);
            cc.pair = true;
            cc.pin = Some(Pin::parse(&format!("{:06}", 900_000 + i)).unwrap());
            let now = sim.now;
            sim.add(
                &at.to_string(),
                Node::Client(Box::new(
                    ClientSession::connect(cc, now, addr(HOST)).unwrap(),
                )),
            );
            assert!(sim.run_until(LONG, |s| s.closed_at(at).is_some()));
            reasons.push(sim.closed_at(at).unwrap().reason);
            sim.nodes
                .retain(|(a, n)| !(matches!(n, Node::Client(_)) && *a == at));
            // The guesser keeps a steady pace of one guess a second.
            sim.run_for(Duration::from_secs(1));
        }
        let st = *sim.host().stats();
        assert_eq!(st.pairing_failures, 3, "{reasons:?} {st:?}");
        assert_eq!(st.pairings, 0);
        assert!(!sim.host().is_trusted(&evil.fingerprint()));
        assert!(host_has(&sim, |e| matches!(
            e,
            HostEvent::PairingClosed {
                why: Refusal::Exhausted
            }
        )));
        let failed = reasons
            .iter()
            .filter(|r| **r == GoodbyeReason::PairingFailed)
            .count();
        let closed = reasons
            .iter()
            .filter(|r| **r == GoodbyeReason::PairingClosed)
            .count();
        let later = reasons
            .iter()
            .filter(|r| **r == GoodbyeReason::RetryLater)
            .count();
        assert_eq!(failed, 3, "{reasons:?}");
        assert_eq!(failed + closed + later, 50, "{reasons:?}");
        assert!(closed > 0, "{reasons:?}");
        if many_addresses {
            assert_eq!(later, 0, "fresh addresses do not back off: {reasons:?}");
        } else {
            assert!(later > 0, "one address backs off: {reasons:?}");
        }
        let now = sim.now;
        let w = sim.host().pairing_status(now);
        assert_eq!(w.state, Err(Refusal::Exhausted));
        // What the operator sees (GET /api/status, "pf1").
        let a = sim.host().admission_status(now);
        assert_eq!(a.window, w);
        assert_eq!((a.window.failures, a.window.failures_left), (3, 0));
        assert_eq!(a.backoff_addresses, if many_addresses { 3 } else { 1 });
        assert_eq!(a.stats.refused_pairing_closed, closed as u64);
        assert_eq!(a.stats.refused_backoff, later as u64);
        assert!(a.require_pairing);

        // The operator re-arms; the real client types the PIN and pairs.
        let now = sim.now;
        sim.host().arm_pin(now, Pin::parse("24680").unwrap());
        let mut cc = client_config(&cid, 2);
        cc.pair = true;
        cc.pin = Some(Pin::parse("24680").unwrap());
        sim.add(
            CLIENT,
            Node::Client(Box::new(
                ClientSession::connect(cc, now, addr(HOST)).unwrap(),
            )),
        );
        establish(&mut sim);
        assert!(sim.host().is_trusted(&cid.fingerprint()));
        assert_eq!(sim.host().stats().pairings, 1);
    }
}

#[test]
fn armed_pin_from_the_management_side() {
    let (mut sim, _hid, cid) = pairing_sim(4, Impairment::clean(), true);
    let now = sim.now;
    sim.host().arm_pin(now, Pin::parse("4321").unwrap());
    // Replace the client by one that knows the PIN up front (`--pair 4321`).
    sim.nodes.retain(|(_, n)| !matches!(n, Node::Client(_)));
    let mut cc = client_config(&cid, 9);
    cc.pair = true;
    cc.pin = Some(Pin::parse("4321").unwrap());
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(cc, now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::PairingResult { ok: true }
    ))));
    // The armed PIN applied, and the window is closed after one pairing.
    let now = sim.now;
    assert!(!sim.host().has_armed_pin(now));
    assert!(sim.host().is_trusted(&cid.fingerprint()));
}

#[test]
fn expired_pin_fails() {
    let (mut sim, _hid, cid) = pairing_sim(6, Impairment::clean(), false);
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::PinNeeded { .. }
    ))));
    // The user takes longer than the PIN's lifetime (120 s); the host ends the connection
    // at the prompt's deadline (60 s) already.
    sim.run_for(Duration::from_secs(121));
    let _ = sim.client().pair(armed_pin());
    sim.run_for(Duration::from_secs(5));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.reason == GoodbyeReason::Timeout
    )));
    assert!(!sim.host().is_trusted(&cid.fingerprint()));
    let now = sim.now;
    assert!(!sim.host().has_armed_pin(now), "the window expired");
}

#[test]
fn unpaired_client_is_refused_when_pairing_is_required() {
    let (hid, cid) = ids();
    let mut sim = Sim::new(7, Impairment::clean());
    // Pairing is required by default.
    let hc = host_config(&hid, 1);
    assert!(hc.require_pairing);
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, []).unwrap())),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.by_peer && c.reason == GoodbyeReason::NotPaired && c.text.contains("paired")
    ))));
    assert_eq!(sim.host().stats().refused_not_paired, 1);
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { .. }
    )));

    // A paired client gets through.
    let mut sim = Sim::new(7, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.require_pairing = true;
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, [cid.fingerprint()]).unwrap())),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    establish(&mut sim);
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { paired: true, .. }
    )));
}

#[test]
fn pinned_host_certificate() {
    let (hid, cid) = ids();
    let other = Identity::generate("impostor").unwrap();
    // Pinned and matching.
    let mut sim = Sim::new(8, Impairment::clean());
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap(),
        )),
    );
    let mut cc = client_config(&cid, 2);
    cc.host_pin = HostPin::Expect(hid.fingerprint());
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(cc, sim.now, addr(HOST)).unwrap(),
        )),
    );
    establish(&mut sim);
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Connected {
            trust: HostTrust::Pinned,
            ..
        }
    )));

    // A different host certificate is refused before anything is sent.
    let mut sim = Sim::new(8, Impairment::clean());
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(host_config(&other, 1), []).unwrap(),
        )),
    );
    let mut cc = client_config(&cid, 2);
    cc.host_pin = HostPin::Expect(hid.fingerprint());
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(cc, sim.now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.reason == GoodbyeReason::HostChanged
            && c.text.contains(&hid.fingerprint().to_hex())
            && c.text.contains(&other.fingerprint().to_hex())
    ))));
    assert!(!client_has(&sim, |e| matches!(
        e,
        ClientEvent::Connected { .. }
    )));
    sim.run_for(Duration::from_secs(1));
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { .. }
    )));
}

#[test]
fn a_relay_cannot_pair() {
    let (hid, cid) = ids();
    let relay_id = Identity::generate("relay").unwrap();
    let mut sim = Sim::new(11, Impairment::clean());
    let mut host = HostSession::new(host_config(&hid, 1), []).unwrap();
    host.arm_pin(sim.now, armed_pin());
    sim.add(HOST, Node::Host(Box::new(host)));
    sim.add(
        RELAY_FRONT,
        Node::Relay(Box::new(Relay {
            front: RawPeer::server(&relay_id, 66),
            back: None,
            id: relay_id.clone(),
        })),
    );
    // The client was lured to the relay's address and has never seen the host.
    let mut cc = client_config(&cid, 2);
    cc.pair = true;
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(cc, sim.now, addr(RELAY_FRONT)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::PinNeeded { .. }
    ))));
    // The host saw the relay's certificate, not the client's; the user types the
    // operator's PIN into the real client.
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::Connected { fingerprint, .. } if *fingerprint == relay_id.fingerprint()
    )));
    sim.client().pair(armed_pin()).unwrap();
    assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
        e,
        ClientEvent::Closed(_)
    ))));
    // The client caught it (the host's MAC does not verify under its view of the
    // fingerprints), the host learns of the failure through the relayed Goodbye.
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::PairingResult { ok: false }
    )));
    assert!(client_has(&sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.reason == GoodbyeReason::PairingFailed && !c.by_peer
    )));
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::PairingResult { ok: false, .. }
    ))));
    assert!(!sim.host().is_trusted(&relay_id.fingerprint()));
    assert!(!sim.host().is_trusted(&cid.fingerprint()));
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { .. }
    )));
    assert_eq!(sim.host().stats().pairing_failures, 1);
}

// ---------------------------------------------------------------------------------------
// Hostile input

/// A raw client with its own certificate, connected to a host that does not require
/// pairing (the lab opt-out, so that it gets past Hello). Returns the sim, after the
/// handshake.
fn hostile(seed: u64) -> Sim {
    let (hid, _) = ids();
    let evil = Identity::generate("evil").unwrap();
    let mut sim = Sim::new(seed, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.require_pairing = false;
    let mut host = HostSession::new(hc, []).unwrap();
    // An open window, so that the pairing cases reach the ceremony.
    host.arm_pin(sim.now, armed_pin());
    sim.add(HOST, Node::Host(Box::new(host)));
    let now = sim.now;
    sim.add(
        EVIL,
        Node::Raw(Box::new(RawPeer::client(&evil, 5, now, addr(HOST)))),
    );
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Connected { .. }
    ))));
    sim
}

fn frame(m: &Message) -> Vec<u8> {
    let mut v = Vec::new();
    m.encode(&mut v).unwrap();
    v
}

fn hello(pair: bool) -> Message {
    Message::Hello(Hello {
        version: 1,
        client_name: "evil".into(),
        codecs: Default::default(),
        max_mode: MODE,
        requested: MODE,
        wants_pairing: pair,
    })
}

type StatsCheck = fn(&punktfunk_control::pf1::HostStats) -> bool;

fn closed_with(sim: &Sim, reason: GoodbyeReason) -> bool {
    host_has(
        sim,
        |e| matches!(e, HostEvent::Closed { closed, .. } if closed.reason == reason),
    )
}

#[test]
fn hostile_control_streams_end_the_connection_and_are_counted() {
    let cases: Vec<(&str, Vec<u8>, StatsCheck)> = vec![
        ("unknown type", vec![0, 0, 0, 1, 0x7f], |s| {
            s.malformed_messages == 1
        }),
        ("oversized frame", vec![0, 1, 0, 1, 0x01], |s| {
            s.oversized_frames == 1 && s.malformed_messages == 1
        }),
        ("empty frame", vec![0, 0, 0, 0], |s| {
            s.malformed_messages == 1
        }),
        ("truncated Hello", vec![0, 0, 0, 3, 0x01, 0, 1], |s| {
            s.malformed_messages == 1
        }),
        ("trailing bytes", vec![0, 0, 0, 2, 0x06, 0], |s| {
            s.malformed_messages == 1
        }),
        ("message before Hello", frame(&Message::IdrRequest), |s| {
            s.unexpected_messages == 1
        }),
        (
            "host-only message",
            frame(&Message::PairResult { ok: true }),
            |s| s.unexpected_messages == 1,
        ),
        (
            "KeyUpdateAck never asked for",
            [
                frame(&hello(false)),
                frame(&Message::KeyUpdateAck { generation: 1 }),
            ]
            .concat(),
            |s| s.unexpected_messages == 1 && s.key_updates == 0,
        ),
        (
            "replayed Hello",
            [frame(&hello(false)), frame(&hello(false))].concat(),
            |s| s.unexpected_messages == 1,
        ),
        (
            "PairConfirm without PairStart",
            [
                frame(&hello(true)),
                frame(&Message::PairConfirm { mac: [0; 32] }),
            ]
            .concat(),
            |s| s.unexpected_messages == 1,
        ),
        (
            "Start before Welcome",
            [
                frame(&hello(false)),
                frame(&Message::Start(punktfunk_control::pf1::message::Start {
                    data_port: 1,
                })),
            ]
            .concat(),
            |s| s.unexpected_messages == 1,
        ),
        (
            "garbage SPAKE2 point",
            [frame(&hello(true)), {
                // The wrong side byte: not a client's SPAKE2 message.
                let mut spake = [0x11; 33];
                spake[0] = b'B';
                frame(&Message::PairStart { spake })
            }]
            .concat(),
            |s| s.pairing_failures == 1 && s.pairing_attempts == 1,
        ),
    ];
    for (i, (name, bytes, check)) in cases.into_iter().enumerate() {
        let mut sim = hostile(100 + i as u64);
        sim.run_for(Duration::from_millis(100));
        sim.raw().write(&bytes);
        let ended = sim.run_until(LONG, |s| {
            host_has(s, |e| matches!(e, HostEvent::Closed { .. }))
        });
        assert!(ended, "{name}: connection not ended: {:?}", sim.host_log);
        let stats = *sim.host().stats();
        assert!(check(&stats), "{name}: {stats:?}");
        assert!(
            closed_with(&sim, GoodbyeReason::ProtocolViolation)
                || closed_with(&sim, GoodbyeReason::PairingFailed),
            "{name}: {:?}",
            sim.host_log
        );
        // The host's Goodbye names the problem to the peer too.
        sim.run_for(Duration::from_secs(1));
        let mut d = FrameDecoder::new();
        d.push(&sim.raw().rx);
        let mut last = None;
        while let Ok(Some(m)) = d.next_message() {
            last = Some(m);
        }
        assert!(
            matches!(&last, Some(Message::Goodbye(g)) if !g.text.is_empty()),
            "{name}: {last:?}"
        );
        assert!(!host_has(&sim, |e| matches!(e, HostEvent::Started { .. })));
    }
}

#[test]
fn hostile_datagrams_are_dropped_and_counted() {
    let mut sim = hostile(200);
    sim.raw().write(&frame(&hello(false)));
    assert!(sim.run_until(LONG, |s| hello_conn(s).is_some()));
    // Input before Start is dropped; garbage is counted; the connection lives on.
    sim.raw()
        .send_datagram(&[0x01, 0, 0, 0, 8, 7, 0, 0, 0, 0, 1, 0, 1]);
    sim.raw().send_datagram(&[0x99, 1, 2, 3]);
    sim.raw().send_datagram(&[0x01, 0xff]);
    sim.run_for(Duration::from_secs(1));
    let s = *sim.host().stats();
    assert_eq!(s.dropped_datagrams, 1);
    assert_eq!(s.malformed_datagrams, 2);
    assert!(!host_has(&sim, |e| matches!(e, HostEvent::Input { .. })));
    assert!(!host_has(&sim, |e| matches!(e, HostEvent::Closed { .. })));
}

#[test]
fn silent_clients_time_out_and_vanished_clients_are_freed() {
    // Handshake but no Hello: the setup deadline (10 s) ends it.
    let mut sim = hostile(300);
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Closed { closed, .. } if closed.reason == GoodbyeReason::Timeout
    ))));
    sim.run_for(Duration::from_secs(10));
    assert!(sim.host().is_idle());

    // A streaming client that vanishes is freed after the idle timeout.
    let (hid, cid) = ids();
    let mut sim = Sim::new(301, Impairment::clean());
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap(),
        )),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    establish(&mut sim);
    sim.nodes.retain(|(_, n)| !matches!(n, Node::Client(_)));
    let t0 = sim.now;
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Closed { closed, .. } if closed.reason == GoodbyeReason::Timeout
    ))));
    let took = sim.now - t0;
    assert!(took <= Duration::from_secs(9), "{took:?}");
    sim.run_for(Duration::from_secs(5));
    assert!(sim.host().is_idle());
}

#[test]
fn connection_limit_and_host_goodbye() {
    let (hid, _) = ids();
    let mut sim = Sim::new(400, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.max_pending = 1;
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, []).unwrap())),
    );
    let a = Identity::generate("a").unwrap();
    let now = sim.now;
    sim.add(
        EVIL,
        Node::Raw(Box::new(RawPeer::client(&a, 5, now, addr(HOST)))),
    );
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Connected { .. }
    ))));
    let b = Identity::generate("b").unwrap();
    let now = sim.now;
    sim.add(
        CLIENT,
        Node::Raw(Box::new(RawPeer::client(&b, 6, now, addr(HOST)))),
    );
    sim.run_for(Duration::from_secs(2));
    // The pending pool holds one: the older, idle connection made room for the newer.
    assert_eq!(sim.host().stats().evicted_pending, 1);
    assert_eq!(sim.host().stats().refused_connections, 0);
    assert_eq!(sim.host().connections().len(), 1);
    assert!(closed_with(&sim, GoodbyeReason::Busy));

    // Host shutdown: Goodbye to everyone.
    let now = sim.now;
    sim.host()
        .close_all(now, GoodbyeReason::Normal, "host shutting down");
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Closed { closed, .. } if !closed.by_peer && closed.text == "host shutting down"
    ))));
    // Commands on a closed connection are refused, not panics.
    let conn = sim
        .host_log
        .iter()
        .find_map(|e| match e {
            HostEvent::Connected { conn, .. } => Some(*conn),
            _ => None,
        })
        .unwrap();
    assert!(sim.host().accept(now, conn, offer()).is_err());
    assert!(sim.host().reconfigured(conn, MODE, 0).is_err());
    sim.run_for(Duration::from_secs(5));
    assert!(sim.host().is_idle());
    sim.raw().close(now);
}

#[test]
fn commands_in_the_wrong_phase_are_errors() {
    let (hid, cid) = ids();
    let mut sim = Sim::new(500, Impairment::clean());
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap(),
        )),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.client().start(1).is_err());
    assert!(sim.client().request_idr().is_err());
    assert!(
        sim.client()
            .send_input(&InputEvent::Scroll { amount: 1 })
            .is_err()
    );
    assert!(sim.client().pair(Pin::parse("1234").unwrap()).is_err());
    assert!(sim.run_until(LONG, |s| hello_conn(s).is_some()));
    let conn = hello_conn(&sim).unwrap();
    assert!(sim.host().reconfigured(conn, MODE, 0).is_err());
    assert!(sim.host().send_stats(conn, Stats::default()).is_err());
    let now = sim.now;
    assert!(sim.host().update_key(now, conn).is_err());
    assert!(sim.client().key_installed(1).is_err());
    // An offer the client would refuse is refused locally.
    let mut bad = offer();
    bad.shard_payload = 0;
    let now = sim.now;
    assert!(sim.host().accept(now, conn, bad).is_err());
    sim.host().accept(now, conn, offer()).unwrap();
    assert!(sim.host().accept(now, conn, offer()).is_err());
}

// ---------------------------------------------------------------------------------------
// Admission (issue 7, points 1 and 4)

/// Adds a client at `at` that asks to pair and then waits at the PIN prompt.
fn park(sim: &mut Sim, at: SocketAddr, seed: u8) {
    let id = Identity::generate("parked").unwrap();
    let mut cc = client_config(&id, seed);
    cc.pair = true;
    let now = sim.now;
    sim.add(
        &at.to_string(),
        Node::Client(Box::new(
            ClientSession::connect(cc, now, addr(HOST)).unwrap(),
        )),
    );
}

fn pin_prompts(sim: &Sim) -> usize {
    sim.client_log
        .iter()
        .filter(|e| matches!(e, ClientEvent::PinNeeded { .. }))
        .count()
}

/// More clients parked at the PIN prompt than the pending pool holds, yet a paired client
/// connects and streams; an unpaired one is told "not paired"; parked ones are told
/// "pairing closed" when the operator closes the window, and time out at the prompt.
#[test]
fn parked_pairings_do_not_lock_out_paired_clients() {
    let (hid, cid) = ids();
    let mut sim = Sim::new(600, Impairment::clean());
    let mut host = HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap();
    host.arm_pin(sim.now, armed_pin());
    sim.add(HOST, Node::Host(Box::new(host)));
    let parked: Vec<SocketAddr> = (1..=20)
        .map(|i| format!("10.0.2.{i}:40000").parse().unwrap())
        .collect();
    for (i, at) in parked.iter().enumerate() {
        park(&mut sim, *at, 100 + i as u8);
        assert!(sim.run_until(LONG, |s| pin_prompts(s) == i + 1));
    }
    // 16 pending slots: the 4 oldest were evicted with a true reason.
    assert_eq!(sim.host().stats().evicted_pending, 4);
    for at in &parked[..4] {
        let c = sim.closed_at(*at).unwrap();
        assert_eq!(c.reason, GoodbyeReason::Busy, "{c}");
    }
    assert!(parked[4..].iter().all(|a| sim.closed_at(*a).is_none()));

    // The paired client still gets in and streams (first in the node list, so that
    // `establish` drives it).
    let client = ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap();
    sim.nodes
        .insert(1, (addr(CLIENT), Node::Client(Box::new(client))));
    establish(&mut sim);
    // Making room for it evicted one more parked client.
    assert_eq!(sim.host().stats().evicted_pending, 5);

    // A stranger without pairing is told so.
    let stranger: SocketAddr = "10.0.3.1:40000".parse().unwrap();
    let now = sim.now;
    let sid = Identity::generate("stranger").unwrap();
    sim.add(
        &stranger.to_string(),
        Node::Client(Box::new(
            ClientSession::connect(client_config(&sid, 77), now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| s.closed_at(stranger).is_some()));
    assert_eq!(
        sim.closed_at(stranger).unwrap().reason,
        GoodbyeReason::NotPaired
    );

    // The operator closes the window: everyone at the prompt is told "pairing closed".
    let now = sim.now;
    sim.host().disarm_pin(now);
    assert!(sim.run_until(LONG, |s| parked.iter().all(|a| s.closed_at(*a).is_some())));
    for at in &parked[5..] {
        let c = sim.closed_at(*at).unwrap();
        assert_eq!(c.reason, GoodbyeReason::PairingClosed, "{c}");
        assert!(c.text.contains("closed by the operator"), "{c}");
    }
    // Asking to pair now is refused with the same reason.
    let late: SocketAddr = "10.0.3.2:40000".parse().unwrap();
    park(&mut sim, late, 78);
    assert!(sim.run_until(LONG, |s| s.closed_at(late).is_some()));
    assert_eq!(
        sim.closed_at(late).unwrap().reason,
        GoodbyeReason::PairingClosed
    );
    // The stream is unaffected.
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::Closed { conn, .. } if Some(*conn) == hello_conn(&sim)
    )));

    // Re-armed, parked clients expire at the prompt's deadline (60 s).
    let now = sim.now;
    sim.host().arm_pin(now, armed_pin());
    let waiting: Vec<SocketAddr> = (1..=3)
        .map(|i| format!("10.0.4.{i}:40000").parse().unwrap())
        .collect();
    let prompts = pin_prompts(&sim);
    for (i, at) in waiting.iter().enumerate() {
        park(&mut sim, *at, 90 + i as u8);
    }
    assert!(sim.run_until(LONG, |s| pin_prompts(s) == prompts + 3));
    let expired = sim.host().stats().expired_pending;
    assert!(sim.run_until(Duration::from_secs(90), |s| {
        waiting.iter().all(|a| s.closed_at(*a).is_some())
    }));
    for at in &waiting {
        assert_eq!(sim.closed_at(*at).unwrap().reason, GoodbyeReason::Timeout);
    }
    assert_eq!(sim.host().stats().expired_pending, expired + 3);
}

/// Streaming slots are counted apart: with every one taken, a paired client is told
/// "busy" (not "protocol violation").
#[test]
fn a_full_host_says_busy() {
    let (hid, cid) = ids();
    let other = Identity::generate("second").unwrap();
    let mut sim = Sim::new(700, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.max_connections = 1;
    sim.add(
        HOST,
        Node::Host(Box::new(
            HostSession::new(hc, [cid.fingerprint(), other.fingerprint()]).unwrap(),
        )),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    establish(&mut sim);
    let second: SocketAddr = "10.0.5.1:40000".parse().unwrap();
    let now = sim.now;
    sim.add(
        &second.to_string(),
        Node::Client(Box::new(
            ClientSession::connect(client_config(&other, 3), now, addr(HOST)).unwrap(),
        )),
    );
    assert!(sim.run_until(LONG, |s| s.closed_at(second).is_some()));
    let c = sim.closed_at(second).unwrap();
    assert_eq!(c.reason, GoodbyeReason::Busy, "{c}");
    assert!(c.by_peer);
    assert_eq!(
        c.text, "the host is streaming to 1 client (max 1): try again later",
        "the client is told the limit"
    );
    assert_eq!(sim.host().stats().refused_busy, 1);
    // The host application hears of it once, with the limit, before the Closed.
    let full: Vec<_> = sim
        .host_log
        .iter()
        .filter_map(|e| match e {
            HostEvent::SlotsFull {
                fingerprint,
                streaming,
                max,
                ..
            } => Some((*fingerprint, *streaming, *max)),
            _ => None,
        })
        .collect();
    assert_eq!(full, [(other.fingerprint(), 1, 1)]);
    // Only the first client holds a slot, streaming the mode it asked for.
    let admitted = sim.host().admitted();
    assert_eq!(admitted.len(), 1, "{admitted:?}");
    assert_eq!(admitted[0].fingerprint, cid.fingerprint());
    assert_eq!(admitted[0].phase, AdmittedPhase::Streaming);
    assert_eq!(admitted[0].mode, MODE);
    assert_eq!(admitted[0].offer, Some(offer()));
}

/// Input is taken from paired clients only, whatever `require_pairing` says: under the
/// lab opt-out an unpaired client streams, but its input is dropped and counted; once the
/// operator trusts it, its input flows, and after unpairing it stops again.
#[test]
fn input_from_unpaired_clients_is_dropped_even_when_they_may_stream() {
    let (hid, cid) = ids();
    let mut sim = Sim::new(800, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.require_pairing = false;
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, []).unwrap())),
    );
    sim.add(
        CLIENT,
        Node::Client(Box::new(
            ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap(),
        )),
    );
    establish(&mut sim);
    assert!(host_has(&sim, |e| matches!(
        e,
        HostEvent::HelloReceived { paired: false, .. }
    )));
    let inputs = |sim: &Sim| {
        sim.host_log
            .iter()
            .filter(|e| matches!(e, HostEvent::Input { .. }))
            .count()
    };
    let send = |sim: &mut Sim| {
        for i in 0..5 {
            sim.client()
                .send_input(&InputEvent::MouseMove { dx: i, dy: 0 })
                .unwrap();
        }
        sim.run_for(Duration::from_secs(1));
    };
    send(&mut sim);
    assert_eq!(inputs(&sim), 0);
    assert_eq!(sim.host().stats().unpaired_input_datagrams, 5);
    sim.host().trust(cid.fingerprint());
    send(&mut sim);
    assert_eq!(inputs(&sim), 5);
    sim.host().untrust(&cid.fingerprint());
    send(&mut sim);
    assert_eq!(inputs(&sim), 5);
    assert_eq!(sim.host().stats().unpaired_input_datagrams, 10);
}

/// One ceremony at a time: a second client sending PairStart while another ceremony runs
/// is told "busy", so parallel connections cannot test more PINs than the budget allows.
#[test]
fn concurrent_ceremonies_are_refused() {
    let (hid, _) = ids();
    let mut sim = Sim::new(900, Impairment::clean());
    let mut host = HostSession::new(host_config(&hid, 1), []).unwrap();
    host.arm_pin(sim.now, armed_pin());
    sim.add(HOST, Node::Host(Box::new(host)));
    let addrs: Vec<SocketAddr> = (1..=4)
        .map(|i| format!("10.0.6.{i}:40000").parse().unwrap())
        .collect();
    for (i, at) in addrs.iter().enumerate() {
        let id = Identity::generate("racer").unwrap();
        let mut cc = client_config(&id, 50 + i as u8);
        cc.pair = true;
        cc.pin = Some(Pin::parse(&format!("{:06}", 100 + i)).unwrap());
        let now = sim.now;
        sim.add(
            &at.to_string(),
            Node::Client(Box::new(
                ClientSession::connect(cc, now, addr(HOST)).unwrap(),
            )),
        );
    }
    assert!(sim.run_until(LONG, |s| addrs.iter().all(|a| s.closed_at(*a).is_some())));
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::PairingResult { ok: false, .. }
    ))));
    let st = *sim.host().stats();
    // All four arrived together: one ceremony ran, the others were refused before any
    // SPAKE2 reply (so they tested no PIN).
    assert_eq!(st.pairing_attempts, 4, "{st:?}");
    assert_eq!(st.refused_concurrent_pairing, 3, "{st:?}");
    assert_eq!(st.pairing_failures, 1, "{st:?}");
    let busy = addrs
        .iter()
        .filter(|a| sim.closed_at(**a).unwrap().reason == GoodbyeReason::Busy)
        .count();
    assert_eq!(busy, 3);
}

/// The host detects failed ceremonies itself, without the client's help: a client that
/// sends PairStart and then never confirms (it could check its guess against the host's
/// reply and walk away), and one that confirms with a forged MAC, each spend one failure of
/// the window's budget and make the address back off.
#[test]
fn failed_ceremonies_are_detected_host_side() {
    use punktfunk_control::pf1::pairing::{ClientPairing, PairingContext};
    for forge in [false, true] {
        let mut sim = hostile(950 + u64::from(forge));
        let ctx = PairingContext {
            client_fp: [1; 32],
            host_fp: [2; 32],
            channel_binding: [3; 32],
        };
        let mut rng = ChaCha20Rng::seed_from_u64(950);
        // Even the right PIN fails: the context is not this TLS session's.
        let (_abandoned, spake) = ClientPairing::start(&armed_pin(), ctx, &mut rng);
        let mut bytes = [frame(&hello(true)), frame(&Message::PairStart { spake })].concat();
        if forge {
            bytes.extend(frame(&Message::PairConfirm { mac: [0x5a; 32] }));
        }
        sim.raw().write(&bytes);
        assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
            e,
            HostEvent::PairingResult { ok: false, .. }
        ))));
        let reason = if forge {
            GoodbyeReason::PairingFailed
        } else {
            GoodbyeReason::Timeout
        };
        assert!(closed_with(&sim, reason), "{:?}", sim.host_log);
        let st = *sim.host().stats();
        assert_eq!((st.pairing_attempts, st.pairing_failures), (1, 1));
        let now = sim.now;
        let w = sim.host().pairing_status(now);
        assert_eq!((w.failures, w.failures_left), (1, 2));
        let evil = sim
            .host_log
            .iter()
            .find_map(|e| match e {
                HostEvent::Connected { fingerprint, .. } => Some(*fingerprint),
                _ => None,
            })
            .unwrap();
        assert!(!sim.host().is_trusted(&evil));
    }
}

/// A client that pairs takes the last free streaming slot (the slot it is about to take is
/// not counted against it); with none free it is paired but told "busy".
#[test]
fn pairing_takes_the_last_free_slot() {
    for occupied in [false, true] {
        let (hid, cid) = ids();
        let first = Identity::generate("first").unwrap();
        let mut sim = Sim::new(1000, Impairment::clean());
        let mut hc = host_config(&hid, 1);
        hc.max_connections = 1;
        let mut host = HostSession::new(hc, [first.fingerprint()]).unwrap();
        host.arm_pin(sim.now, armed_pin());
        sim.add(HOST, Node::Host(Box::new(host)));
        if occupied {
            sim.add(
                CLIENT,
                Node::Client(Box::new(
                    ClientSession::connect(client_config(&first, 2), sim.now, addr(HOST)).unwrap(),
                )),
            );
            establish(&mut sim);
        }
        let at: SocketAddr = "10.0.7.1:40000".parse().unwrap();
        let mut cc = client_config(&cid, 3);
        cc.pair = true;
        cc.pin = Some(armed_pin());
        let now = sim.now;
        sim.add(
            &at.to_string(),
            Node::Client(Box::new(
                ClientSession::connect(cc, now, addr(HOST)).unwrap(),
            )),
        );
        assert!(sim.run_until(LONG, |s| {
            s.client_log_by
                .iter()
                .any(|(a, e)| *a == at && matches!(e, ClientEvent::PairingResult { ok: true }))
        }));
        assert!(sim.host().is_trusted(&cid.fingerprint()));
        if occupied {
            assert!(sim.run_until(LONG, |s| s.closed_at(at).is_some()));
            assert_eq!(sim.closed_at(at).unwrap().reason, GoodbyeReason::Busy);
            assert_eq!(sim.host().stats().pairing_failures, 0);
        } else {
            assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
                e,
                HostEvent::HelloReceived { paired: true, .. }
            ))));
            sim.run_for(Duration::from_secs(1));
            assert!(sim.closed_at(at).is_none());
        }
    }
}

/// Peers that start the QUIC/TLS handshake and never finish it (they never hear the host, and
/// their retransmissions keep QUIC's idle timer alive) are ended at the setup deadline, from
/// their first packet, and counted; so is a peer whose handshake completes late and that then
/// sends no Hello: handshake and Hello share one deadline.
#[test]
fn half_open_handshakes_end_at_the_setup_deadline() {
    let (hid, _) = ids();
    let mut sim = Sim::new(1100, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    // QUIC's idle timeout alone would keep them for a minute after their last packet.
    hc.idle_timeout = Duration::from_secs(60);
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, []).unwrap())),
    );
    let t0 = sim.now;
    let peers: Vec<SocketAddr> = (0..5)
        .map(|i| format!("10.0.9.{}:40000", i + 1).parse().unwrap())
        .collect();
    for (i, at) in peers.iter().enumerate() {
        let id = Identity::generate("half-open").unwrap();
        let raw = RawPeer::client(&id, 40 + i as u8, t0, addr(HOST));
        sim.add(&at.to_string(), Node::Raw(Box::new(raw)));
        sim.mute.push(*at);
    }
    let timeouts = |s: &Sim| {
        s.host_log
            .iter()
            .filter(|e| {
                matches!(e, HostEvent::Closed { closed, .. }
                    if closed.reason == GoodbyeReason::Timeout
                        && closed.text.contains("handshaking"))
            })
            .count()
    };
    // Well before QUIC's idle timeout could end them (60 s after their last retransmission).
    assert!(
        sim.run_until(Duration::from_secs(25), |s| timeouts(s) == peers.len()),
        "{:?}",
        sim.host_log
    );
    let elapsed = sim.now - t0;
    assert!(elapsed >= Duration::from_secs(10), "{elapsed:?}");
    assert!(!host_has(&sim, |e| matches!(
        e,
        HostEvent::Connected { .. }
    )));
    let st = *sim.host().stats();
    assert_eq!(st.expired_handshakes, peers.len() as u64);
    assert_eq!(st.expired_pending, peers.len() as u64);
    assert!(sim.host().connections().is_empty());

    // Late handshake, then silence: the deadline counts from the first packet, not from the
    // handshake's end.
    let mut sim = Sim::new(1101, Impairment::clean());
    let mut hc = host_config(&hid, 1);
    hc.idle_timeout = Duration::from_secs(60);
    sim.add(
        HOST,
        Node::Host(Box::new(HostSession::new(hc, []).unwrap())),
    );
    let t0 = sim.now;
    let id = Identity::generate("late").unwrap();
    sim.add(
        EVIL,
        Node::Raw(Box::new(RawPeer::client(&id, 9, t0, addr(HOST)))),
    );
    sim.mute.push(addr(EVIL));
    sim.run_for(Duration::from_secs(5));
    sim.mute.clear();
    assert!(sim.run_until(LONG, |s| host_has(s, |e| matches!(
        e,
        HostEvent::Connected { .. }
    ))));
    let connected_at = sim.now - t0;
    assert!(connected_at < Duration::from_secs(10), "{connected_at:?}");
    assert!(sim.run_until(LONG, |s| closed_with(s, GoodbyeReason::Timeout)));
    let ended_at = sim.now - t0;
    assert!(
        ended_at < connected_at + Duration::from_secs(10),
        "ended {ended_at:?} after the first packet, connected at {connected_at:?}"
    );
    let st = *sim.host().stats();
    assert_eq!((st.expired_pending, st.expired_handshakes), (1, 0));
}

// Key rotation: the data plane (engine sender and receiver) in the loop, keyed from both
// sessions, the rekey exchange over the simulated control connection.

use punktfunk_control::pf1::DataPlaneParams;
use punktfunk_engine::pf1::{
    DataKey, FrameInfo, Header, KEY_MATERIAL_LEN, Pf1Error, Pf1Event, Pf1Receiver,
    Pf1ReceiverConfig, Pf1Sender, Pf1SenderConfig,
};

const FRAME_INTERVAL: Duration = Duration::from_micros(16_667);

fn data_key(material: &[u8], generation: u32) -> DataKey {
    let mut m = [0u8; KEY_MATERIAL_LEN];
    m.copy_from_slice(&material[..KEY_MATERIAL_LEN]);
    DataKey::from_key_material(&m).with_generation(generation)
}

/// Frame `id`'s bytes: 12–30 kB (10–25 shards of 1200 bytes), content tied to the id.
fn frame_bytes(id: u32) -> Vec<u8> {
    let len = 12_000 + (id as usize * 7919) % 18_000;
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(31)
                .wrapping_add(id.wrapping_mul(97)) as u8
        })
        .collect()
}

#[derive(Debug, Default, PartialEq)]
struct DataOutcome {
    /// Frame ids delivered, in order.
    delivered: Vec<u32>,
    /// Frames declared lost.
    lost: u64,
    /// Generations the sender sealed with, in order.
    generations: Vec<u32>,
}

struct Rekey {
    sim: Sim,
    conn: punktfunk_control::pf1::ConnId,
    tx: Pf1Sender,
    rx: Pf1Receiver,
    net_rng: ChaCha20Rng,
    imp: Impairment,
    /// Data-plane datagrams in flight: (arrival, sequence, bytes).
    wire: BinaryHeap<Reverse<(Instant, u64, Vec<u8>)>>,
    seq: u64,
    /// Every (generation, packet number) sealed: a nonce used twice would collide here.
    nonces: std::collections::HashSet<(u32, u64)>,
    /// The datagrams of the last frame sealed under each generation (for replays).
    last_of_generation: std::collections::BTreeMap<u32, Vec<Vec<u8>>>,
    /// Old-generation datagrams opened after a newer generation's first one: the overlap.
    opened_in_overlap: u64,
    newest_seen: u32,
    host_cursor: usize,
    client_cursor: usize,
    ack: bool,
    out: DataOutcome,
}

impl Rekey {
    /// A streaming session; the sender's key may seal `limit` datagrams (0: AES-GCM's limit)
    /// and asks for the next one at half of it. `ack`: the client acknowledges key updates.
    fn new(seed: u64, imp: Impairment, limit: u64, ack: bool) -> Self {
        let (hid, cid) = ids();
        let mut sim = Sim::new(seed, imp);
        sim.add(
            HOST,
            Node::Host(Box::new(
                HostSession::new(host_config(&hid, 1), [cid.fingerprint()]).unwrap(),
            )),
        );
        let client = ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap();
        sim.add(CLIENT, Node::Client(Box::new(client)));
        let conn = establish(&mut sim);
        let host: DataPlaneParams = sim.host().data_params(conn).unwrap().clone();
        let client: DataPlaneParams = sim.client().data_params().unwrap().clone();
        let tx = Pf1Sender::new(
            Pf1SenderConfig {
                shard_len: 1200,
                parity_percent: 30,
                min_parity: 2,
                key_packet_limit: limit,
                key_update_percent: 50,
                ..Default::default()
            },
            data_key(&host.key_material, 0),
        )
        .unwrap();
        let rx = Pf1Receiver::new(
            Pf1ReceiverConfig::default(),
            data_key(&client.key_material, 0),
        )
        .unwrap();
        let host_cursor = sim.host_log.len();
        let client_cursor = sim.client_log.len();
        Self {
            sim,
            conn,
            tx,
            rx,
            net_rng: ChaCha20Rng::seed_from_u64(seed ^ 0xda7a),
            imp,
            wire: BinaryHeap::new(),
            seq: 0,
            nonces: Default::default(),
            last_of_generation: Default::default(),
            opened_in_overlap: 0,
            newest_seen: 0,
            host_cursor,
            client_cursor,
            ack,
            out: DataOutcome::default(),
        }
    }

    fn chance(&mut self, p: f64) -> bool {
        p > 0.0 && (self.net_rng.next_u32() as f64 / u32::MAX as f64) < p
    }

    /// Control-plane events since the last call: key updates reach sender and receiver.
    fn control(&mut self) {
        while self.client_cursor < self.sim.client_log.len() {
            let ev = self.sim.client_log[self.client_cursor].clone();
            self.client_cursor += 1;
            if let ClientEvent::KeyUpdate {
                generation,
                key_material,
            } = ev
            {
                self.rx.install_key(data_key(&key_material.0, generation));
                if self.ack {
                    self.sim.client().key_installed(generation).unwrap();
                }
            }
        }
        while self.host_cursor < self.sim.host_log.len() {
            let ev = self.sim.host_log[self.host_cursor].clone();
            self.host_cursor += 1;
            if let HostEvent::KeyUpdated {
                conn,
                generation,
                key_material,
            } = ev
            {
                assert_eq!(conn, self.conn);
                // Both ends derived the same material for the generation.
                assert!(self.sim.client_log.iter().any(|e| matches!(
                    e,
                    ClientEvent::KeyUpdate { generation: g, key_material: m }
                        if *g == generation && *m == key_material
                )));
                self.tx
                    .update_key(data_key(&key_material.0, generation))
                    .unwrap();
            }
        }
    }

    /// Packetizes frame `id` (if the key allows) and puts its datagrams on the wire.
    fn send_frame(&mut self, id: u32) {
        let now = self.sim.now;
        if self.tx.key_update_due() {
            // Idempotent while an update is outstanding.
            let conn = self.conn;
            let _ = self.sim.host().update_key(now, conn);
        }
        let frame = frame_bytes(id);
        let mut out = vec![0u8; self.tx.max_output(frame.len())];
        let generation = self.tx.key_generation();
        let p = match self.tx.packetize(&frame, &FrameInfo::default(), &mut out) {
            Ok(p) => p,
            Err(Pf1Error::KeyExhausted { .. }) => return,
            Err(e) => panic!("{e}"),
        };
        if self.out.generations.last() != Some(&generation) {
            self.out.generations.push(generation);
        }
        let dgs: Vec<Vec<u8>> = out[..p.len()]
            .chunks(p.layout.stride)
            .map(<[u8]>::to_vec)
            .collect();
        for d in &dgs {
            let (h, _) = Header::parse(d).unwrap();
            assert_eq!(h.key_id, generation as u8);
            assert!(
                h.packet_number < self.tx.packet_limit(),
                "sealed past the limit"
            );
            assert!(
                self.nonces.insert((generation, h.packet_number)),
                "nonce reused: generation {generation}, packet {}",
                h.packet_number
            );
            if self.chance(self.imp.loss) {
                continue;
            }
            let copies = if self.chance(self.imp.duplicate) {
                2
            } else {
                1
            };
            for _ in 0..copies {
                let jitter_us = self.imp.jitter.as_micros() as u64;
                let extra = if jitter_us > 0 {
                    Duration::from_micros(self.net_rng.next_u64() % jitter_us)
                } else {
                    Duration::ZERO
                };
                self.seq += 1;
                self.wire.push(Reverse((
                    now + self.imp.min_delay + extra,
                    self.seq,
                    d.clone(),
                )));
            }
        }
        self.last_of_generation.insert(generation, dgs);
    }

    /// Delivers the data-plane datagrams due by the simulation's clock.
    fn receive(&mut self) {
        let now = self.sim.now;
        let retired_before = self.rx.stats().keys_retired;
        while self
            .wire
            .peek()
            .is_some_and(|Reverse((at, _, _))| *at <= now)
        {
            let Some(Reverse((at, _, d))) = self.wire.pop() else {
                break;
            };
            let generation = u32::from(d[3]);
            let r = self.rx.handle_datagram(at, &d);
            if r.is_ok() && generation < self.newest_seen {
                self.opened_in_overlap += 1;
            }
            if r.is_ok() {
                self.newest_seen = self.newest_seen.max(generation);
            }
        }
        self.rx.handle_timeout(now);
        while let Some(ev) = self.rx.poll_event() {
            match ev {
                Pf1Event::Frame(f) => {
                    assert_eq!(
                        f.data,
                        frame_bytes(f.frame_id),
                        "frame {} intact",
                        f.frame_id
                    );
                    self.out.delivered.push(f.frame_id);
                }
                Pf1Event::FramesLost { count, .. } => self.out.lost += u64::from(count),
            }
        }
        // A generation just retired: replays of its datagrams are refused and counted.
        if self.rx.stats().keys_retired > retired_before {
            let mut retired = Vec::new();
            self.rx.drain_retired_keys(|g, _| retired.push(g));
            for g in retired {
                let before = self.rx.stats().retired_key;
                let replays = self.last_of_generation.get(&g).cloned().unwrap_or_default();
                for d in &replays {
                    assert_eq!(
                        self.rx.handle_datagram(now, d),
                        Err(Pf1Error::RetiredKey(g as u8)),
                        "replay under retired generation {g}"
                    );
                }
                assert_eq!(self.rx.stats().retired_key, before + replays.len() as u64);
                assert!(self.rx.poll_event().is_none());
            }
        }
    }

    /// Streams `frames` frames at 60 fps, then lets the network drain.
    fn stream(&mut self, frames: u32) {
        for id in 0..frames {
            self.control();
            self.send_frame(id);
            self.sim.run_for(FRAME_INTERVAL);
            self.receive();
        }
        for _ in 0..60 {
            self.control();
            self.sim.run_for(FRAME_INTERVAL);
            self.receive();
        }
    }
}

/// Several rotations under loss, duplication and reordering: every frame the same run without
/// rotation delivers is delivered (none lost to a rotation), no nonce is reused, old-key
/// stragglers open during the overlap, and replays after it are refused and counted.
#[test]
fn keys_rotate_under_loss_and_reordering_without_losing_a_frame() {
    for seed in [11u64, 12, 13] {
        let frames = 900; // 15 s at 60 fps, about 15 000 datagrams
        let mut rotating = Rekey::new(seed, Impairment::rough(), 2000, true);
        rotating.stream(frames);
        let mut baseline = Rekey::new(seed, Impairment::rough(), 0, true);
        baseline.stream(frames);

        let tx = rotating.tx.stats();
        println!(
            "seed {seed}: {} rotations, {} of {frames} frames delivered ({} lost, same as \
             without rotation), {} old-key datagrams opened in an overlap, {} replays refused",
            tx.key_updates,
            rotating.out.delivered.len(),
            rotating.out.lost,
            rotating.opened_in_overlap,
            rotating.rx.stats().retired_key
        );
        assert!(tx.key_updates >= 5, "seed {seed}: {tx:?}");
        assert_eq!(
            tx.key_exhausted, 0,
            "seed {seed}: every update came in time"
        );
        // One generation after the other (the last update may land after the last frame).
        let used = rotating.out.generations.len() as u32;
        assert_eq!(
            rotating.out.generations,
            (0..used).collect::<Vec<_>>(),
            "seed {seed}"
        );
        assert!(tx.key_updates - u64::from(used - 1) <= 1, "seed {seed}");
        assert_eq!(baseline.out.generations, [0]);
        // Loss is the same datagrams in both runs; rotation adds no lost frame.
        assert_eq!(
            rotating.out.delivered, baseline.out.delivered,
            "seed {seed}"
        );
        assert_eq!(rotating.out.lost, baseline.out.lost, "seed {seed}");
        assert!(
            rotating.out.delivered.len() as u32 >= frames * 95 / 100,
            "seed {seed}: {}",
            rotating.out.delivered.len()
        );
        let rx = rotating.rx.stats();
        assert_eq!(rx.keys_installed, tx.key_updates, "seed {seed}");
        assert!(rx.keys_retired >= tx.key_updates - 1, "seed {seed}: {rx:?}");
        assert!(rx.retired_key > 0, "seed {seed}: replays were refused");
        assert!(
            rotating.opened_in_overlap > 0,
            "seed {seed}: reordering put old-key datagrams behind new ones"
        );
        let host = *rotating.sim.host().stats();
        assert_eq!(host.key_updates, tx.key_updates, "seed {seed}");
        assert_eq!(host.key_updates_proposed, host.key_updates);
        assert_eq!(
            rotating.sim.client().stats().key_updates,
            tx.key_updates,
            "seed {seed}"
        );
        assert_eq!(
            rotating.sim.host().key_generation(rotating.conn),
            Some((tx.key_updates as u32, None))
        );
        assert_eq!(host.unexpected_messages + host.malformed_messages, 0);
    }
}

/// A client that never acknowledges: the sender stops at the key's limit (never seals past
/// it) and the host ends the session with Goodbye(Timeout) after the setup timeout.
#[test]
fn a_client_that_never_acknowledges_is_ended_before_the_limit_is_passed() {
    let mut r = Rekey::new(21, Impairment::clean(), 2000, false);
    r.stream(60 * 12);
    let tx = r.tx.stats();
    assert_eq!(tx.key_updates, 0);
    assert!(tx.key_exhausted > 0, "{tx:?}");
    assert!(r.nonces.iter().all(|&(g, pn)| g == 0 && pn < 2000));
    assert_eq!(r.sim.host().stats().key_update_timeouts, 1);
    assert!(host_has(&r.sim, |e| matches!(
        e,
        HostEvent::Closed { closed, .. }
            if closed.reason == GoodbyeReason::Timeout && closed.text.contains("generation 1")
    )));
    assert!(client_has(&r.sim, |e| matches!(
        e,
        ClientEvent::Closed(c) if c.by_peer && c.reason == GoodbyeReason::Timeout
    )));
    // The frames refused at the limit used up their ids: the receiver saw them lost.
    assert!(r.out.lost > 0);
}

/// A host that breaks the key-update rules (a raw QUIC server speaking the control protocol):
/// the client installs and acknowledges the next generation only, and ends the session on a
/// skipped generation or a second update while one is unacknowledged.
#[test]
fn a_client_refuses_out_of_order_key_updates() {
    use punktfunk_control::pf1::message::Welcome;
    let run = |updates: &[u32], install: bool| -> (Sim, Vec<Message>) {
        let (hid, cid) = ids();
        let mut sim = Sim::new(31, Impairment::clean());
        sim.add(HOST, Node::Raw(Box::new(RawPeer::server(&hid, 9))));
        let client = ClientSession::connect(client_config(&cid, 2), sim.now, addr(HOST)).unwrap();
        sim.add(CLIENT, Node::Client(Box::new(client)));
        assert!(
            sim.run_until(LONG, |s| !s.nodes.iter().all(|(_, n)| match n {
                Node::Raw(r) => r.rx.is_empty(),
                _ => true,
            }))
        );
        sim.raw().write(&frame(&Message::Welcome(Welcome {
            session_id: 77,
            codec: Codec::H264,
            fec: FecScheme::Gf16Leopard,
            parity_percent: 20,
            shard_payload: 1200,
            data_port: 47910,
            mode: MODE,
            key_epoch: 0,
            exporter_label: String::from_utf8_lossy(tls::DATA_KEY_LABEL).into_owned(),
        })));
        assert!(sim.run_until(LONG, |s| client_has(s, |e| matches!(
            e,
            ClientEvent::Welcome(_)
        ))));
        sim.client().start(50010).unwrap();
        for &g in updates {
            sim.raw()
                .write(&frame(&Message::KeyUpdate { generation: g }));
        }
        sim.run_for(Duration::from_secs(1));
        if install {
            let gens: Vec<u32> = sim
                .client_log
                .iter()
                .filter_map(|e| match e {
                    ClientEvent::KeyUpdate { generation, .. } => Some(*generation),
                    _ => None,
                })
                .collect();
            for g in gens {
                sim.client().key_installed(g).unwrap();
            }
            sim.run_for(Duration::from_secs(1));
        }
        let mut d = FrameDecoder::new();
        d.push(&std::mem::take(&mut sim.raw().rx));
        let mut got = Vec::new();
        while let Ok(Some(m)) = d.next_message() {
            got.push(m);
        }
        (sim, got)
    };
    let key_updates = |sim: &Sim| {
        sim.client_log
            .iter()
            .filter(|e| matches!(e, ClientEvent::KeyUpdate { .. }))
            .count()
    };
    let violation = |sim: &Sim| {
        client_has(sim, |e| {
            matches!(e, ClientEvent::Closed(c) if !c.by_peer
                && c.reason == GoodbyeReason::ProtocolViolation
                && c.text.contains("KeyUpdate"))
        })
    };

    // In order: generation 1 installed, acknowledged, then 2.
    let (mut sim, got) = run(&[1], true);
    assert_eq!(key_updates(&sim), 1);
    assert!(
        got.contains(&Message::KeyUpdateAck { generation: 1 }),
        "{got:?}"
    );
    assert_eq!(sim.client().key_generation(), (1, None));
    assert_eq!(sim.client().stats().key_updates, 1);
    assert!(sim.client().key_installed(1).is_err(), "acknowledged once");
    assert!(!sim.client().is_closed());

    // A skipped generation.
    let (mut sim, got) = run(&[2], false);
    assert_eq!(key_updates(&sim), 0);
    assert!(violation(&sim), "{:?}", sim.client_log);
    assert_eq!(sim.client().stats().unexpected_messages, 1);
    assert!(
        !got.iter()
            .any(|m| matches!(m, Message::KeyUpdateAck { .. }))
    );

    // A second update while the first is not acknowledged.
    let (mut sim, _) = run(&[1, 2], false);
    assert_eq!(key_updates(&sim), 1);
    assert!(violation(&sim), "{:?}", sim.client_log);
    assert!(
        sim.client().key_installed(1).is_err(),
        "the session is closed"
    );
}
