//! Deterministic simulation of the GameStream streaming session ([`GsSession`]): a client that
//! seals real control messages (AES-GCM envelope) and sends pings, a virtual network with
//! seeded loss, and the host's session, all on a virtual clock. No sockets, threads or sleeps.
//!
//! The network models what the session sees from the act side: control messages ride ENet's
//! reliable channel, so a lost one is not gone but arrives one retransmission timeout later
//! and holds back the ones behind it (in order, once); pings are plain UDP and simply vanish.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use punktfunk_control::stream::control::{TERMINATION_GRACEFUL, types};
use punktfunk_control::stream::gs_session::{
    ControlTransmit, EndReason, GsConfig, GsEvent, GsSession, PeerKey, PingStream,
};
use punktfunk_engine::gamestream::wire::control::{ControlCipher, Direction};
use punktfunk_engine::gamestream::wire::video::{
    FrameType, VideoFrame, VideoPacketizer, VideoParams,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};

const KEY: [u8; 16] = *b"sim-session-key!";
const PAYLOAD: [u8; 16] = *b"00112233AABBCCDD";
const CONNECT_DATA: u32 = 0xC0FF_EE01;
const TIMEOUT: Duration = Duration::from_secs(8);
const PEER: PeerKey = PeerKey(0);
/// ENet's retransmission timeout in the model (the first one; real ENet backs off further).
const RTO: Duration = Duration::from_millis(150);
const ONE_WAY: Duration = Duration::from_millis(10);

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn chance(rng: &mut ChaCha20Rng, p: f64) -> bool {
    p > 0.0 && (f64::from(rng.next_u32()) / f64::from(u32::MAX)) < p
}

fn config() -> GsConfig {
    GsConfig {
        key: KEY,
        ping_payload: PAYLOAD,
        client_ip: addr("10.0.0.2:0").ip(),
        connect_data: Some(CONNECT_DATA),
        timeout: TIMEOUT,
        hdr: None,
    }
}

/// What the network hands the host.
#[derive(Debug, Clone)]
enum Arrival {
    Connect(u32),
    Control(Vec<u8>),
    Ping(PingStream, SocketAddr, Vec<u8>),
    Disconnect,
}

/// The client's behaviour.
#[derive(Debug, Clone, Copy)]
struct Plan {
    /// Loss on every client → host packet (seeded).
    loss: f64,
    /// Video packet loss the client reports in its FEC status messages.
    video_loss: f64,
    /// An IDR request this often.
    idr_every: Option<Duration>,
    /// The client stops sending anything (crash, cable pulled) at this time.
    vanish_at: Option<Duration>,
    /// The client disconnects ENet at this time.
    disconnect_at: Option<Duration>,
    /// A stranger sprays garbage pings and control packets.
    hostile: bool,
    /// Whether the client ever connects ENet.
    connects: bool,
}

impl Plan {
    fn clean() -> Self {
        Self {
            loss: 0.0,
            video_loss: 0.0,
            idr_every: None,
            vanish_at: None,
            disconnect_at: None,
            hostile: false,
            connects: true,
        }
    }
}

/// One recorded event of the host session and the step (handle_* call) that produced it.
#[derive(Debug, Clone, Copy)]
struct Output {
    step: u64,
    event: GsEvent,
}

struct Sim {
    t0: Instant,
    now: Instant,
    rng: ChaCha20Rng,
    plan: Plan,
    host: GsSession,
    /// Deliveries to the host, by time (ties by insertion order).
    net: BTreeMap<(Instant, u64), Arrival>,
    net_seq: u64,
    /// When the last reliable (control) packet is due: ENet delivers them in order.
    control_tail: Instant,
    client_seq: u32,
    client_cipher: ControlCipher,
    frame: u32,
    step: u64,
    outputs: Vec<Output>,
    transmits: Vec<(Instant, ControlTransmit)>,
    /// Steps in which an IDR request was delivered.
    idr_steps: Vec<u64>,
    /// Steps in which a FEC status was delivered.
    fec_steps: Vec<u64>,
    idr_sent: u64,
    /// Last time the client's traffic reached the host.
    last_delivery: Option<Instant>,
    ended_at: Option<(Instant, EndReason)>,
}

impl Sim {
    fn new(seed: u64, plan: Plan) -> Self {
        let t0 = Instant::now();
        Self {
            t0,
            now: t0,
            rng: ChaCha20Rng::seed_from_u64(seed),
            plan,
            host: GsSession::new(t0, config()),
            net: BTreeMap::new(),
            net_seq: 0,
            control_tail: t0,
            client_seq: 0,
            client_cipher: ControlCipher::new(&KEY),
            frame: 0,
            step: 0,
            outputs: vec![],
            transmits: vec![],
            idr_steps: vec![],
            fec_steps: vec![],
            idr_sent: 0,
            last_delivery: None,
            ended_at: None,
        }
    }

    fn at(&self, d: Duration) -> Instant {
        self.t0 + d
    }

    fn push(&mut self, at: Instant, a: Arrival) {
        self.net_seq += 1;
        self.net.insert((at, self.net_seq), a);
    }

    /// A plain UDP datagram: lost with the plan's probability.
    fn send_udp(&mut self, a: Arrival) {
        if !chance(&mut self.rng, self.plan.loss) {
            self.push(self.now + ONE_WAY, a);
        }
    }

    /// A reliable ENet packet: every loss costs one retransmission timeout; order is kept.
    fn send_reliable(&mut self, a: Arrival) {
        let mut due = self.now + ONE_WAY;
        while chance(&mut self.rng, self.plan.loss) {
            due += RTO;
        }
        let due = due.max(self.control_tail);
        self.control_tail = due;
        self.push(due, a);
    }

    fn sealed(&mut self, msg_type: u16, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
        let n = self
            .client_cipher
            .seal(
                self.client_seq,
                Direction::ClientToHost,
                msg_type,
                payload,
                &mut out,
            )
            .unwrap();
        self.client_seq += 1;
        out.truncate(n);
        out
    }

    fn ping(&mut self, stream: PingStream, from: SocketAddr, seq: u32) -> Arrival {
        let mut p = PAYLOAD.to_vec();
        p.extend_from_slice(&seq.to_be_bytes());
        Arrival::Ping(stream, from, p)
    }

    /// What the client does in the millisecond starting at `ms`.
    fn client_tick(&mut self, ms: u64) {
        let t = Duration::from_millis(ms);
        if self.plan.vanish_at.is_some_and(|v| t >= v) {
            return;
        }
        if self.plan.disconnect_at == Some(t) {
            self.send_reliable(Arrival::Disconnect);
        }
        if self.plan.disconnect_at.is_some_and(|d| t >= d) {
            return;
        }
        if ms == 0 && self.plan.connects {
            self.send_reliable(Arrival::Connect(CONNECT_DATA));
            let m = self.sealed(types::IDR_REQUEST, &[]);
            self.idr_sent += 1;
            self.send_reliable(Arrival::Control(m));
            let m = self.sealed(types::START_B, &[0]);
            self.send_reliable(Arrival::Control(m));
        }
        // Video and audio pings every 500 ms (the client sends them until data flows, and
        // keeps pinging).
        if ms.is_multiple_of(500) {
            let seq = (ms / 500) as u32;
            let v = self.ping(PingStream::Video, addr("10.0.0.2:47998"), seq);
            self.send_udp(v);
            let a = self.ping(PingStream::Audio, addr("10.0.0.2:48000"), seq);
            self.send_udp(a);
        }
        if !self.plan.connects {
            return;
        }
        if ms % 100 == 50 {
            let m = self.sealed(types::PING, &[0; 8]);
            self.send_reliable(Arrival::Control(m));
        }
        // A FEC status report per 60 fps frame (40 data + 8 parity shards).
        if ms * 60 / 1000 != (ms + 1) * 60 / 1000 {
            self.frame += 1;
            let (data, parity) = (40u16, 8u16);
            let mut lost = 0u16;
            for _ in 0..data + parity {
                lost += u16::from(chance(&mut self.rng, self.plan.video_loss));
            }
            let mut p = [0u8; 21];
            p[..4].copy_from_slice(&self.frame.to_be_bytes());
            p[8..10].copy_from_slice(&lost.to_be_bytes());
            p[10..12].copy_from_slice(&data.to_be_bytes());
            p[12..14].copy_from_slice(&parity.to_be_bytes());
            let got_data = data.saturating_sub(lost);
            let got_parity = parity - lost.saturating_sub(data).min(parity);
            p[14..16].copy_from_slice(&got_data.to_be_bytes());
            p[16..18].copy_from_slice(&got_parity.to_be_bytes());
            p[18] = 20;
            let m = self.sealed(types::FEC_STATUS, &p);
            self.send_reliable(Arrival::Control(m));
        }
        if let Some(every) = self.plan.idr_every
            && ms > 0
            && ms.is_multiple_of(every.as_millis() as u64)
        {
            let m = self.sealed(types::IDR_REQUEST, &[]);
            self.idr_sent += 1;
            self.send_reliable(Arrival::Control(m));
        }
        if self.plan.hostile && ms.is_multiple_of(7) {
            let mut junk = vec![0u8; 16 + (self.rng.next_u32() % 48) as usize];
            self.rng.fill_bytes(&mut junk);
            self.push(
                self.now + ONE_WAY,
                Arrival::Ping(PingStream::Video, addr("10.6.6.6:4444"), junk.clone()),
            );
            self.push(self.now + ONE_WAY, Arrival::Control(junk));
        }
    }

    /// Drains the host's outputs, stamped with the step that produced them.
    fn collect(&mut self) {
        while let Some(event) = self.host.poll_event() {
            if let GsEvent::Ended(why) = event {
                assert!(self.ended_at.is_none(), "Ended emitted twice");
                self.ended_at = Some((self.now, why));
            }
            self.outputs.push(Output {
                step: self.step,
                event,
            });
        }
        while let Some(t) = self.host.poll_transmit() {
            self.transmits.push((self.now, t));
        }
    }

    fn deliver(&mut self, a: Arrival) {
        self.step += 1;
        let now = self.now;
        // What the real client sent (not the stranger's garbage): the liveness reference.
        let genuine = match &a {
            Arrival::Ping(_, from, bytes) => {
                from.ip() == addr("10.0.0.2:0").ip() && bytes.starts_with(&PAYLOAD)
            }
            Arrival::Control(bytes) => ControlCipher::new(&KEY)
                .open(&mut bytes.clone(), Direction::ClientToHost)
                .is_ok(),
            Arrival::Connect(_) | Arrival::Disconnect => true,
        };
        if genuine {
            self.last_delivery = Some(now);
        }
        match a {
            Arrival::Connect(data) => self.host.handle_connect(now, PEER, data),
            Arrival::Disconnect => self.host.handle_disconnect(now, PEER),
            Arrival::Control(mut bytes) => {
                // Classify before the host decrypts in place, to check same-step signals.
                let kind = ControlCipher::new(&KEY)
                    .open(&mut bytes.clone(), Direction::ClientToHost)
                    .map(|m| m.msg_type)
                    .ok();
                match kind {
                    Some(types::IDR_REQUEST) => self.idr_steps.push(self.step),
                    Some(types::FEC_STATUS) => self.fec_steps.push(self.step),
                    _ => {}
                }
                self.host.handle_control(now, PEER, &mut bytes);
            }
            Arrival::Ping(stream, from, bytes) => self.host.handle_ping(now, stream, from, &bytes),
        }
        self.collect();
    }

    /// Runs the world until `end` (virtual). The host's timers fire exactly at their deadline.
    fn run_until(&mut self, end: Duration) {
        let end = self.at(end);
        let mut next_tick = self.now;
        loop {
            let net = self.net.keys().next().map(|k| k.0);
            let timer = self.host.poll_timeout();
            let next = [Some(next_tick), net, timer]
                .into_iter()
                .flatten()
                .min()
                .unwrap();
            if next >= end {
                self.now = end;
                return;
            }
            self.now = next;
            if let Some(key) = self.net.keys().next().copied()
                && key.0 == self.now
            {
                let a = self.net.remove(&key).unwrap();
                self.deliver(a);
                continue;
            }
            if timer.is_some_and(|t| t <= self.now) {
                self.step += 1;
                self.host.handle_timeout(self.now);
                self.collect();
                continue;
            }
            let ms = (self.now - self.t0).as_millis() as u64;
            self.client_tick(ms);
            next_tick = self.now + Duration::from_millis(1);
        }
    }

    fn events(&self) -> impl Iterator<Item = &GsEvent> {
        self.outputs.iter().map(|o| &o.event)
    }

    fn count(&self, f: impl Fn(&GsEvent) -> bool) -> usize {
        self.events().filter(|e| f(e)).count()
    }
}

#[test]
fn handshake_to_streaming() {
    let mut sim = Sim::new(1, Plan::clean());
    sim.run_until(Duration::from_secs(3));
    let first: Vec<GsEvent> = sim.events().take(2).copied().collect();
    assert_eq!(
        first,
        vec![
            GsEvent::Connected(PEER),
            GsEvent::KeyframeRequest // the client's start sequence opens with an IDR request
        ]
    );
    assert!(sim.host.is_connected());
    assert_eq!(
        sim.count(|e| *e == GsEvent::VideoDestination(addr("10.0.0.2:47998"))),
        1
    );
    assert_eq!(
        sim.count(|e| *e == GsEvent::AudioDestination(addr("10.0.0.2:48000"))),
        1
    );
    let st = sim.host.stats();
    assert_eq!(st.control_dropped, 0);
    assert_eq!(st.bad_pings, 0);
    assert!(st.fec_reports >= 170, "{st:?}");
    assert!(sim.ended_at.is_none());
    // A clean link reports nothing lost: the (deliberately cautious) estimate only falls.
    let estimates: Vec<f64> = sim
        .events()
        .filter_map(|e| match e {
            GsEvent::LossEstimate(l) => Some(*l),
            _ => None,
        })
        .collect();
    assert!(estimates.windows(2).all(|w| w[1] < w[0]), "{estimates:?}");
    assert!(sim.host.loss_estimate() < 0.01);
}

#[test]
fn idr_request_becomes_a_keyframe_event_in_the_same_step() {
    for seed in 0..4 {
        let mut sim = Sim::new(
            seed,
            Plan {
                loss: 0.1,
                idr_every: Some(Duration::from_millis(700)),
                ..Plan::clean()
            },
        );
        sim.run_until(Duration::from_secs(10));
        let keyframe_steps: Vec<u64> = sim
            .outputs
            .iter()
            .filter(|o| o.event == GsEvent::KeyframeRequest)
            .map(|o| o.step)
            .collect();
        assert_eq!(keyframe_steps, sim.idr_steps, "seed {seed}");
        // Every request the client made arrived (ENet is reliable), late or not.
        assert_eq!(sim.idr_steps.len() as u64, sim.idr_sent, "seed {seed}");
        assert_eq!(sim.host.stats().idr_requests, sim.idr_sent, "seed {seed}");
    }
}

#[test]
fn seeded_loss_on_control_packets_keeps_the_session_alive() {
    for seed in 0..6 {
        let mut sim = Sim::new(
            100 + seed,
            Plan {
                loss: 0.3,
                idr_every: Some(Duration::from_secs(1)),
                ..Plan::clean()
            },
        );
        sim.run_until(Duration::from_secs(30));
        assert!(sim.ended_at.is_none(), "seed {seed}: {:?}", sim.ended_at);
        assert!(sim.host.is_connected());
        let st = sim.host.stats();
        assert_eq!(
            st.control_dropped, 0,
            "seed {seed}: reordering is not replay"
        );
        // Reports arrive late under loss but none is lost: about 60 a second.
        assert!(st.fec_reports > 29 * 60, "seed {seed}: {st:?}");
        // Lost pings only delay the destination: it is found once and never moves.
        assert_eq!(
            sim.count(|e| matches!(e, GsEvent::VideoDestination(_))),
            1,
            "seed {seed}"
        );
    }
}

#[test]
fn vanished_client_is_ended_at_its_deadline() {
    let mut sim = Sim::new(
        7,
        Plan {
            loss: 0.05,
            vanish_at: Some(Duration::from_secs(5)),
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(30));
    let (at, why) = sim.ended_at.expect("the session ended");
    assert_eq!(why, EndReason::ClientSilent);
    let last = sim.last_delivery.unwrap();
    // Exactly the deadline: not a poll interval late, not early.
    assert_eq!(at, last + TIMEOUT);
    assert!(at - sim.t0 > Duration::from_secs(13));
    assert_eq!(sim.host.poll_timeout(), None);
    // Nothing after the end.
    assert_eq!(sim.outputs.last().unwrap().event, GsEvent::Ended(why));
}

#[test]
fn a_client_that_never_connects_is_ended_at_start_plus_timeout() {
    let mut sim = Sim::new(
        8,
        Plan {
            connects: false,
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(20));
    // Its pings alone keep the slot alive only while they come; here they keep coming, so
    // the session is alive but not connected … until the pings stop.
    assert!(sim.ended_at.is_none());
    assert!(!sim.host.is_connected());
    let mut sim = Sim::new(
        8,
        Plan {
            connects: false,
            vanish_at: Some(Duration::ZERO),
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(20));
    assert_eq!(
        sim.ended_at,
        Some((sim.t0 + TIMEOUT, EndReason::NeverConnected))
    );
}

/// Parity the real packetizer gives a 40-shard delta frame at `loss`.
fn parity_at(loss: f64) -> usize {
    let params = VideoParams {
        packet_size: 1024,
        fec_percent: 20,
        min_parity: 2,
    };
    let mut p = VideoPacketizer::new(params).unwrap();
    p.set_loss_estimate(loss);
    let bitstream = vec![0x55u8; 40 * 1000];
    // A delta frame well into the stream: keyframes and the first frames get a startup
    // floor whatever the estimate says.
    let frame = VideoFrame {
        index: 10_000,
        rtp_timestamp: 0,
        frame_type: FrameType::P,
        host_latency: 0,
        bitstream: &bitstream,
    };
    let mut out = vec![0u8; params.max_datagrams(bitstream.len()) * params.stride()];
    let f = p.packetize(&frame, &mut out).unwrap();
    f.layout[..f.blocks].iter().map(|b| b.parity).sum()
}

#[test]
fn loss_reports_change_the_fec_parity() {
    let mut sim = Sim::new(
        9,
        Plan {
            video_loss: 0.10,
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(5));
    let estimates: Vec<(u64, f64)> = sim
        .outputs
        .iter()
        .filter_map(|o| match o.event {
            GsEvent::LossEstimate(l) => Some((o.step, l)),
            _ => None,
        })
        .collect();
    // Each estimate came out of the step that delivered a FEC report.
    assert!(estimates.iter().all(|(s, _)| sim.fec_steps.contains(s)));
    let last = estimates.last().unwrap().1;
    assert!((0.08..0.16).contains(&last), "estimate {last}");
    assert!((sim.host.loss_estimate() - last).abs() <= 0.002);
    // What the packetizer does with it: more parity than the clean-link default.
    let (clean, lossy) = (parity_at(0.0), parity_at(last));
    assert!(lossy > clean, "parity {clean} → {lossy}");
}

#[test]
fn host_termination_reaches_the_client_and_ends_the_session() {
    let mut sim = Sim::new(10, Plan::clean());
    sim.run_until(Duration::from_secs(2));
    let closed = sim.now;
    sim.step += 1;
    sim.host.close(closed, Some(TERMINATION_GRACEFUL));
    sim.collect();
    let sent: Vec<ControlTransmit> = sim.transmits.iter().map(|(_, t)| t.clone()).collect();
    let [
        ControlTransmit::Send { peer, bytes },
        ControlTransmit::Disconnect {
            peer: p2,
            now: false,
        },
    ] = sent.as_slice()
    else {
        panic!("{sent:?}");
    };
    assert_eq!((*peer, *p2), (PEER, PEER));
    // The client's cipher opens it: termination, graceful code.
    let mut b = bytes.clone();
    let m = ControlCipher::new(&KEY)
        .open(&mut b, Direction::HostToClient)
        .unwrap();
    assert_eq!(m.msg_type, types::TERMINATION);
    assert_eq!(m.payload, TERMINATION_GRACEFUL.to_be_bytes());
    // ENet reports the disconnect done: the session ends at once.
    sim.step += 1;
    sim.host.handle_disconnect(closed + ONE_WAY, PEER);
    sim.now = closed + ONE_WAY;
    sim.collect();
    assert_eq!(
        sim.ended_at,
        Some((closed + ONE_WAY, EndReason::HostClosed))
    );

    // A client that never acknowledges: the session ends at the linger deadline.
    let mut sim = Sim::new(11, Plan::clean());
    sim.run_until(Duration::from_secs(2));
    let closed = sim.now;
    sim.host.close(closed, Some(TERMINATION_GRACEFUL));
    sim.plan.vanish_at = Some(Duration::ZERO);
    sim.net.clear();
    sim.run_until(Duration::from_secs(4));
    let (at, why) = sim.ended_at.unwrap();
    assert_eq!(why, EndReason::HostClosed);
    assert_eq!(
        at,
        closed + punktfunk_control::stream::gs_session::CLOSE_LINGER
    );
}

#[test]
fn client_termination_ends_the_session_once() {
    let mut sim = Sim::new(
        12,
        Plan {
            loss: 0.1,
            disconnect_at: Some(Duration::from_secs(3)),
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(20));
    let (at, why) = sim.ended_at.unwrap();
    assert_eq!(why, EndReason::ClientDisconnected);
    assert!(at >= sim.at(Duration::from_secs(3)));
    assert!(
        at < sim.at(Duration::from_secs(4)),
        "ENet delivered it late"
    );
    assert_eq!(sim.count(|e| matches!(e, GsEvent::Ended(_))), 1);
    // After the end the host does not close again or send anything.
    sim.host.close(sim.now, Some(TERMINATION_GRACEFUL));
    sim.collect();
    assert!(sim.transmits.is_empty());
}

#[test]
fn hostile_garbage_is_counted_and_changes_nothing() {
    let mut sim = Sim::new(
        13,
        Plan {
            loss: 0.05,
            hostile: true,
            idr_every: Some(Duration::from_secs(1)),
            ..Plan::clean()
        },
    );
    sim.run_until(Duration::from_secs(10));
    assert!(sim.ended_at.is_none());
    let st = sim.host.stats();
    assert!(st.control_dropped > 1000, "{st:?}");
    assert!(st.bad_pings > 1000, "{st:?}");
    // The stranger never becomes a destination, and forged packets request no keyframes.
    assert!(
        sim.events().all(
            |e| !matches!(e, GsEvent::VideoDestination(a) if a.ip() != addr("10.0.0.2:0").ip())
        )
    );
    assert_eq!(st.idr_requests, sim.idr_sent);
    // Garbage renews nothing: once the client vanishes, its deadline still holds.
    sim.plan.vanish_at = Some(Duration::from_secs(10));
    sim.plan.hostile = false;
    sim.run_until(Duration::from_secs(30));
    assert_eq!(
        sim.ended_at,
        Some((
            sim.last_delivery.unwrap() + TIMEOUT,
            EndReason::ClientSilent
        ))
    );
}

/// Random calls in random order with random bytes (a fuzzer's view, seeded): the session never
/// panics, ends at most once, never asks for a keyframe without a sealed IDR request, and
/// after `Ended` produces nothing more.
#[test]
fn random_call_sequences_never_break_the_rules() {
    for seed in 0..200u64 {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let t0 = Instant::now();
        let mut now = t0;
        let mut host = GsSession::new(t0, config());
        let client = ControlCipher::new(&KEY);
        let mut client_seq = 0u32;
        let mut sealed_idr = 0u64;
        let mut ended = 0;
        let mut keyframes = 0u64;
        for _ in 0..300 {
            now += Duration::from_millis(u64::from(rng.next_u32() % 3000));
            let peer = PeerKey((rng.next_u32() % 3) as usize);
            match rng.next_u32() % 7 {
                0 => host.handle_connect(
                    now,
                    peer,
                    if rng.next_u32() % 2 == 0 {
                        CONNECT_DATA
                    } else {
                        rng.next_u32()
                    },
                ),
                1 => host.handle_disconnect(now, peer),
                2 => {
                    let mut junk = vec![0u8; (rng.next_u32() % 80) as usize];
                    rng.fill_bytes(&mut junk);
                    host.handle_control(now, peer, &mut junk);
                }
                3 => {
                    let t = [
                        types::IDR_REQUEST,
                        types::FEC_STATUS,
                        types::INPUT,
                        types::RFI,
                    ][(rng.next_u32() % 4) as usize];
                    let mut payload = vec![0u8; (rng.next_u32() % 30) as usize];
                    rng.fill_bytes(&mut payload);
                    let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
                    let n = client
                        .seal(client_seq, Direction::ClientToHost, t, &payload, &mut out)
                        .unwrap();
                    client_seq += 1;
                    out.truncate(n);
                    if t == types::IDR_REQUEST || (t == types::RFI && payload.len() >= 12) {
                        sealed_idr += 1;
                    }
                    host.handle_control(now, peer, &mut out);
                }
                4 => {
                    let mut bytes = vec![0u8; (rng.next_u32() % 24) as usize];
                    rng.fill_bytes(&mut bytes);
                    if rng.next_u32() % 2 == 0 {
                        bytes = PAYLOAD.to_vec();
                    }
                    let from = SocketAddr::from(([10, 0, 0, (rng.next_u32() % 4) as u8], 5000));
                    host.handle_ping(now, PingStream::Video, from, &bytes);
                }
                5 => host.handle_timeout(now),
                _ => host.close(now, Some(TERMINATION_GRACEFUL)),
            }
            let was_ended = ended > 0;
            while let Some(e) = host.poll_event() {
                assert!(!was_ended, "seed {seed}: {e:?} after Ended");
                match e {
                    GsEvent::Ended(_) => ended += 1,
                    GsEvent::KeyframeRequest => keyframes += 1,
                    _ => {}
                }
            }
            while let Some(t) = host.poll_transmit() {
                assert!(!was_ended, "seed {seed}: {t:?} after Ended");
            }
            if let Some(deadline) = host.poll_timeout() {
                // A deadline is never further away than the liveness timeout.
                assert!(deadline <= now + TIMEOUT, "seed {seed}");
            }
        }
        assert!(ended <= 1, "seed {seed}");
        assert!(
            keyframes <= sealed_idr,
            "seed {seed}: {keyframes} > {sealed_idr}"
        );
        assert_eq!(host.is_ended(), ended == 1, "seed {seed}");
    }
}
