//! The streaming side on real loopback sockets, driven by a minimal client written here from
//! docs/gamestream-protocol-notes.md: RTSP handshake (one request per TCP connection), ENet
//! control connection with the V2 envelope, video and audio pings, then video frames through the
//! engine (packetizer + FEC + io_uring) and audio through the AES-CBC + 4+2 FEC packetizer.
//!
//! The real acceptance client (moonlight-common-c via moonlight-python) is driven by the
//! end-to-end tests under tests/e2e; this test pins the host's side of the wire without it.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_control::stream::control::types;
use punktfunk_control::stream::sdp::StreamConfig;
use punktfunk_control::stream::session::{
    AudioSource, InputHandler, LaunchSpec, MediaFactory, StreamEndpoints, StreamHost,
    StreamOptions, StreamState, VideoMedia,
};
use punktfunk_engine::config::Backpressure;
use punktfunk_engine::gamestream::wire::audio::{AudioDepacketizer, AudioKey};
use punktfunk_engine::gamestream::wire::control::{ControlCipher, Direction};
use punktfunk_engine::gamestream::wire::video::{VideoCipher, VideoDepacketizer};
use punktfunk_engine::pipeline::{Captured, Emit, Source, Stage, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;
use rusty_enet as enet;

const KEY: [u8; 16] = [7, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
const KEY_ID: u32 = 0x0102_0304;

/// "Encoded" frames: frame n is 3000 + n·97 bytes of a pattern derived from n; keyframes when
/// the pipeline asks for one.
struct FakeSource {
    n: u64,
    due: Instant,
}

impl Source for FakeSource {
    type Output = FrameBuf;
    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        if Instant::now() < self.due {
            std::thread::sleep(Duration::from_millis(1));
            return Ok(Captured::Idle);
        }
        self.due += Duration::from_millis(16);
        let Some(mut b) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        b.fill_from(&fake_frame(self.n))
            .map_err(StageError::failed)?;
        b.meta.index = self.n;
        self.n += 1;
        Ok(Captured::Frame(b))
    }
}

fn fake_frame(n: u64) -> Vec<u8> {
    (0..3000 + n as usize * 97)
        .map(|i| (i as u64 * 31 + n) as u8)
        .collect()
}

/// Marks a frame as a keyframe when the pipeline asks for one, and always the first, as every
/// real encoder does (the host's own request after start may come after the first frame).
struct KeyframeMarker {
    started: bool,
}

impl Stage for KeyframeMarker {
    type Input = FrameBuf;
    type Output = FrameBuf;
    fn process(
        &mut self,
        mut input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let asked = cx.take_keyframe_request();
        input.meta.keyframe = asked || !self.started;
        self.started = true;
        output.emit(input)
    }
}

struct FakeAudio([u8; 64]);

impl AudioSource for FakeAudio {
    fn next_packet(&mut self) -> Result<&[u8], String> {
        self.0[0] = self.0[0].wrapping_add(1);
        Ok(&self.0)
    }
}

struct Fake;

impl MediaFactory for Fake {
    fn video(&self, _config: &StreamConfig) -> Result<VideoMedia, String> {
        Ok(VideoMedia {
            source: Box::new(FakeSource {
                n: 0,
                due: Instant::now(),
            }),
            encoder: Box::new(KeyframeMarker { started: false }),
            frame_capacity: 64 << 10,
            input: None,
            display: None,
        })
    }
    fn switched_video(
        &self,
        _switch: std::sync::Arc<punktfunk_capture::stages::ModeSwitch>,
    ) -> Result<VideoMedia, String> {
        Err("this test streams GameStream only".into())
    }
    fn audio(&self, _config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
        Ok(Box::new(FakeAudio([0; 64])))
    }
}

#[derive(Default)]
struct Inputs(Vec<Vec<u8>>);

impl InputHandler for Inputs {
    fn handle_input(&mut self, packet: &[u8]) {
        self.0.push(packet.to_vec());
    }
}

fn free_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn rtsp(port: u16, request: &str) -> String {
    let mut c = TcpStream::connect(("127.0.0.1", port)).unwrap();
    c.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    out
}

fn header<'a>(resp: &'a str, name: &str) -> &'a str {
    resp.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {resp}"))
}

const SDP: &str = "v=0\r\na=x-ml-general.featureFlags:3 \r\na=x-ss-general.encryptionEnabled:7 \r\n\
a=x-nv-video[0].clientViewportWd:640 \r\na=x-nv-video[0].clientViewportHt:480 \r\n\
a=x-nv-video[0].maxFPS:60 \r\na=x-nv-video[0].packetSize:1024 \r\n\
a=x-ml-video.configuredBitrateKbps:5000 \r\na=x-nv-vqos[0].fec.minRequiredFecPackets:2 \r\n\
a=x-nv-general.featureFlags:167 \r\na=x-nv-aqos.packetDuration:5 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\nt=0 0\r\n";

/// A loopback receive socket with a 4 MiB buffer: the test's receive loop shares two cores
/// with the host's stage threads, and a default 208 KiB buffer overflows (whole frames lost
/// on the client side) when the loop is descheduled for a few hundred milliseconds.
fn receiver() -> UdpSocket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
    s.set_recv_buffer_size(4 << 20).unwrap();
    s.bind(&SocketAddr::from((Ipv4Addr::LOCALHOST, 0)).into())
        .unwrap();
    s.into()
}

/// The host's options with a pipeline that waits instead of dropping: these tests check the
/// handshake, the frame numbering and the per-stream counters, and on a loaded 2-core machine
/// the default drop-oldest rings may evict a frame (a numbered one leaves a gap the client
/// would recover from; that behaviour is tested in `engine/tests/pipeline.rs` and the e2e loss
/// tests, not here).
fn lossless_options() -> StreamOptions {
    let mut o = StreamOptions::default();
    o.profile.pipeline.backpressure = Backpressure::Block;
    o
}

#[test]
fn handshake_control_video_audio_and_termination() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    let endpoints = StreamEndpoints {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtsp: free_port(),
        video: free_port(),
        control: free_port(),
        audio: free_port(),
    };
    let inputs = Arc::new(Mutex::new(Inputs::default()));
    let host = StreamHost::start(
        endpoints,
        lossless_options(),
        Arc::new(Fake),
        inputs.clone(),
    )
    .unwrap();
    let port = host.rtsp_port();
    // No session yet: RTSP says so.
    assert!(rtsp(port, "OPTIONS rtsp://x RTSP/1.0\r\nCSeq: 1\r\n\r\n").contains(" 454 "));
    host.prepare(LaunchSpec {
        session_id: 1,
        rikey: KEY,
        rikeyid: KEY_ID,
        client: std::net::Ipv4Addr::LOCALHOST.into(),
        slot: 0,
        command: Vec::new(),
        rtsp_encrypted: false,
    })
    .unwrap();
    assert_eq!(host.state(1), StreamState::Prepared { session_id: 1 });

    assert!(rtsp(port, "OPTIONS rtsp://x RTSP/1.0\r\nCSeq: 1\r\n\r\n").starts_with("RTSP/1.0 200"));
    let d = rtsp(port, "DESCRIBE rtsp://x RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    assert!(d.contains("encryptionSupported:7"));
    let a = rtsp(port, "SETUP streamid=audio/0/0 RTSP/1.0\r\nCSeq: 3\r\n\r\n");
    let ping: String = header(&a, "X-SS-Ping-Payload").to_string();
    assert_eq!(ping.len(), 16);
    let audio_port: u16 = header(&a, "Transport")
        .trim_start_matches("server_port=")
        .parse()
        .unwrap();
    let v = rtsp(port, "SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 4\r\n\r\n");
    let video_port: u16 = header(&v, "Transport")
        .trim_start_matches("server_port=")
        .parse()
        .unwrap();
    let c = rtsp(
        port,
        "SETUP streamid=control/13/0 RTSP/1.0\r\nCSeq: 5\r\n\r\n",
    );
    let control_port: u16 = header(&c, "Transport")
        .trim_start_matches("server_port=")
        .parse()
        .unwrap();
    let connect_data: u32 = header(&c, "X-SS-Connect-Data").parse().unwrap();
    let ann = format!(
        "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 6\r\nContent-type: application/sdp\r\n\
         Content-length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    assert!(rtsp(port, &ann).starts_with("RTSP/1.0 200"));
    assert!(rtsp(port, "PLAY / RTSP/1.0\r\nCSeq: 7\r\n\r\n").starts_with("RTSP/1.0 200"));

    // ENet control connection with the session's connect data.
    let mut client = enet::Host::new(
        UdpSocket::bind("127.0.0.1:0").unwrap(),
        enet::HostSettings {
            peer_limit: 1,
            channel_limit: 0x30,
            ..Default::default()
        },
    )
    .unwrap();
    let server: SocketAddr = ("127.0.0.1".parse::<IpAddr>().unwrap(), control_port).into();
    client.connect(server, 0x30, connect_data).unwrap();
    let cipher = ControlCipher::new(&KEY);
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut peer = None;
    while peer.is_none() && Instant::now() < deadline {
        if let Ok(Some(enet::Event::Connect { peer: p, .. })) = client.service() {
            peer = Some(p.id());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    let peer = peer.expect("control stream connects");
    let mut seq = 0u32;
    let mut send = |client: &mut enet::Host<UdpSocket>, t: u16, payload: &[u8]| {
        let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
        let n = cipher
            .seal(seq, Direction::ClientToHost, t, payload, &mut out)
            .unwrap();
        seq += 1;
        client
            .peer_mut(peer)
            .send(0, &enet::Packet::reliable(&out[..n]))
            .unwrap();
    };
    send(&mut client, types::IDR_REQUEST, &[0, 0]);
    send(&mut client, types::START_B, &[0]);
    // A relative mouse move, as the client would send it.
    let mouse = [0, 0, 0, 8, 7, 0, 0, 0, 0, 1, 0xff, 0xff];
    send(&mut client, types::INPUT, &mouse);

    // Video and audio pings from the client's media sockets.
    let vsock = receiver();
    let asock = receiver();
    let mut ping_bytes = ping.as_bytes().to_vec();
    ping_bytes.extend_from_slice(&1u32.to_be_bytes());
    vsock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    asock.set_nonblocking(true).unwrap();
    let vcipher = VideoCipher::new(&KEY);
    let mut vdepack = VideoDepacketizer::new(1024).unwrap();
    let mut adepack = AudioDepacketizer::new(
        5,
        Some(AudioKey {
            key: KEY,
            key_id: KEY_ID,
        }),
    );
    let mut frames = Vec::new();
    let mut buf = vec![0u8; 65536];
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last_ping = Instant::now() - Duration::from_secs(1);
    while frames.len() < 40 && Instant::now() < deadline {
        if last_ping.elapsed() > Duration::from_millis(200) {
            vsock
                .send_to(&ping_bytes, ("127.0.0.1", video_port))
                .unwrap();
            asock
                .send_to(&ping_bytes, ("127.0.0.1", audio_port))
                .unwrap();
            send(&mut client, types::PING, &[4, 0, 0, 0, 0, 0, 0, 0]);
            last_ping = Instant::now();
        }
        let _ = client.service();
        if let Ok(n) = vsock.recv(&mut buf) {
            let plain = vcipher
                .open(&mut buf[..n])
                .expect("video decrypts with rikey");
            vdepack.handle_datagram(plain).expect("valid video packet");
            while let Some(f) = vdepack.poll_frame() {
                frames.push(f);
            }
        }
        while let Ok(n) = asock.recv(&mut buf) {
            adepack
                .handle_datagram(&buf[..n])
                .expect("valid audio packet");
        }
    }
    assert!(frames.len() >= 40, "only {} frames", frames.len());

    // Hostile control traffic on the live session: forged envelopes (wrong key), a replayed
    // sequence number, unknown message types and garbage inputs. All are dropped or counted;
    // the stream goes on.
    let dropped_before = host.session_stats(1).unwrap().control_dropped;
    let forger = ControlCipher::new(&[0x55; 16]);
    for i in 0..5u32 {
        let mut out = vec![0u8; ControlCipher::sealed_len(2)];
        let n = forger
            .seal(
                1000 + i,
                Direction::ClientToHost,
                types::IDR_REQUEST,
                &[0, 0],
                &mut out,
            )
            .unwrap();
        client
            .peer_mut(peer)
            .send(0, &enet::Packet::reliable(&out[..n]))
            .unwrap();
    }
    client
        .peer_mut(peer)
        .send(0, &enet::Packet::reliable(&[0xde, 0xad][..]))
        .unwrap();
    {
        // Seq 0 again: a replay.
        let mut out = vec![0u8; ControlCipher::sealed_len(2)];
        let n = cipher
            .seal(
                0,
                Direction::ClientToHost,
                types::IDR_REQUEST,
                &[0, 0],
                &mut out,
            )
            .unwrap();
        client
            .peer_mut(peer)
            .send(0, &enet::Packet::reliable(&out[..n]))
            .unwrap();
    }
    send(&mut client, 0x7777, &[1, 2, 3]);
    for junk in [
        &[][..],
        &[0, 0, 0, 4, 0xff, 0xff, 0xff, 0xff][..],
        &[1; 300][..],
    ] {
        send(&mut client, types::INPUT, junk);
    }
    let more_until = Instant::now() + Duration::from_secs(3);
    let mut more = 0;
    while Instant::now() < more_until {
        let _ = client.service();
        if last_ping.elapsed() > Duration::from_millis(200) {
            vsock
                .send_to(&ping_bytes, ("127.0.0.1", video_port))
                .unwrap();
            send(&mut client, types::PING, &[4, 0, 0, 0, 0, 0, 0, 0]);
            last_ping = Instant::now();
        }
        if let Ok(n) = vsock.recv(&mut buf) {
            let plain = vcipher
                .open(&mut buf[..n])
                .expect("video decrypts with rikey");
            vdepack.handle_datagram(plain).expect("valid video packet");
            while vdepack.poll_frame().is_some() {
                more += 1;
            }
        }
        while asock.recv(&mut buf).is_ok() {}
    }
    assert!(
        more > 20,
        "the stream went on after hostile control traffic ({more} frames)"
    );
    let dropped = host.session_stats(1).unwrap().control_dropped;
    assert_eq!(
        dropped - dropped_before,
        7,
        "5 forged + 1 garbage + 1 replay"
    );
    assert_eq!(
        inputs.lock().unwrap().0.len(),
        4,
        "1 mouse move + 3 junk inputs handed on"
    );
    // Frame indices start at 1 and are contiguous; the first frame is a keyframe (the IDR
    // request and the first-frame request both ask for one).
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.index as usize, i + 1);
    }
    assert_eq!(
        frames[0].frame_type,
        Some(punktfunk_engine::gamestream::wire::video::FrameType::Idr)
    );
    let first = frames[0].bitstream.len();
    assert!((3000..200_000).contains(&first));
    adepack.flush();
    let audio: Vec<_> = std::iter::from_fn(|| adepack.poll_packet()).collect();
    assert!(audio.len() > 50, "only {} audio packets", audio.len());
    assert!(audio.iter().all(|p| p.opus.len() == 64));
    assert!(matches!(
        host.state(1),
        StreamState::Streaming {
            connected: true,
            ..
        }
    ));
    assert!(host.session_stats(1).unwrap().idr_requests >= 1);
    assert_eq!(inputs.lock().unwrap().0[0], mouse.to_vec());

    // /cancel: the client gets the termination message, then the disconnect.
    let stopper = std::thread::spawn(move || {
        host.stop_session(1, true);
        host
    });
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut terminated = false;
    let mut disconnected = false;
    while !(terminated && disconnected) && Instant::now() < deadline {
        match client.service() {
            Ok(Some(enet::Event::Receive { packet, .. })) => {
                let mut b = packet.data().to_vec();
                let m = cipher.open(&mut b, Direction::HostToClient).unwrap();
                if m.msg_type == types::TERMINATION {
                    assert_eq!(m.payload, &0x8003_0023u32.to_be_bytes());
                    terminated = true;
                }
            }
            Ok(Some(enet::Event::Disconnect { .. })) => disconnected = true,
            _ => std::thread::sleep(Duration::from_millis(1)),
        }
    }
    assert!(terminated, "termination message received");
    let host = stopper.join().unwrap();
    assert_eq!(host.state(1), StreamState::Idle);
    host.shutdown();
}

/// One stream of `session_id` on `host`: the RTSP handshake, a video ping, frames until at
/// least `want` arrived, then `/cancel` (`stop_session`) while the client keeps reading, and
/// a drain of what was still on its way. Returns (frames completed, highest frame index,
/// the host's final counters for that stream).
fn one_stream(
    host: StreamHost,
    session_id: u32,
    want: usize,
) -> (
    StreamHost,
    usize,
    u32,
    punktfunk_control::stream::session::SessionStats,
) {
    host.prepare(LaunchSpec {
        session_id,
        rikey: KEY,
        rikeyid: KEY_ID,
        client: std::net::Ipv4Addr::LOCALHOST.into(),
        slot: 0,
        command: Vec::new(),
        rtsp_encrypted: false,
    })
    .unwrap();
    let port = host.rtsp_port();
    let a = rtsp(port, "SETUP streamid=audio/0/0 RTSP/1.0\r\nCSeq: 1\r\n\r\n");
    let ping = header(&a, "X-SS-Ping-Payload").to_string();
    let v = rtsp(port, "SETUP streamid=video/0/0 RTSP/1.0\r\nCSeq: 2\r\n\r\n");
    let video_port: u16 = header(&v, "Transport")
        .trim_start_matches("server_port=")
        .parse()
        .unwrap();
    rtsp(
        port,
        "SETUP streamid=control/13/0 RTSP/1.0\r\nCSeq: 3\r\n\r\n",
    );
    let ann = format!(
        "ANNOUNCE streamid=control/13/0 RTSP/1.0\r\nCSeq: 4\r\nContent-type: application/sdp\r\n\
         Content-length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    assert!(rtsp(port, &ann).starts_with("RTSP/1.0 200"));
    assert!(rtsp(port, "PLAY / RTSP/1.0\r\nCSeq: 5\r\n\r\n").starts_with("RTSP/1.0 200"));
    // Nothing sent yet in this stream: its counters start at zero, whatever came before.
    let fresh = host
        .session_stats(session_id)
        .expect("a stream runs after PLAY");
    assert_eq!(fresh.session_id, session_id);
    assert_eq!(fresh.video_frames, 0, "{fresh:?}");

    let vsock = receiver();
    vsock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut ping_bytes = ping.into_bytes();
    ping_bytes.extend_from_slice(&1u32.to_be_bytes());
    let vcipher = VideoCipher::new(&KEY);
    let mut depack = VideoDepacketizer::new(1024).unwrap();
    let mut buf = vec![0u8; 65536];
    // (frames completed, highest index)
    let mut seen = (0usize, 0u32);
    let receive = |depack: &mut VideoDepacketizer, buf: &mut [u8], seen: &mut (usize, u32)| {
        let Ok(n) = vsock.recv(buf) else {
            return false;
        };
        let plain = vcipher.open(&mut buf[..n]).expect("video decrypts");
        depack.handle_datagram(plain).expect("valid video packet");
        while let Some(f) = depack.poll_frame() {
            seen.0 += 1;
            seen.1 = seen.1.max(f.index);
        }
        true
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_ping = Instant::now() - Duration::from_secs(1);
    while seen.0 < want && Instant::now() < deadline {
        if last_ping.elapsed() > Duration::from_millis(200) {
            vsock
                .send_to(&ping_bytes, ("127.0.0.1", video_port))
                .unwrap();
            last_ping = Instant::now();
        }
        receive(&mut depack, &mut buf, &mut seen);
    }
    assert!(seen.0 >= want, "session {session_id}: only {seen:?} frames");
    // Stop while still reading, then take what was still in the socket.
    let stopper = std::thread::spawn(move || {
        let stats = host.stop_session(session_id, true);
        (host, stats)
    });
    while !stopper.is_finished() {
        receive(&mut depack, &mut buf, &mut seen);
    }
    while receive(&mut depack, &mut buf, &mut seen) {}
    let (host, stats) = stopper.join().unwrap();
    (host, seen.0, seen.1, stats.expect("a stream ran"))
}

/// Point 8 of issue 7: a stream's counters start at zero. Two streams in a row on one host;
/// the second's final counters (returned by `stop_session`, logged as "stream stopped",
/// reported by /api/sessions) count only its own frames, never the first's.
#[test]
fn each_stream_counts_only_its_own_frames() {
    let endpoints = StreamEndpoints {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtsp: free_port(),
        video: free_port(),
        control: free_port(),
        audio: free_port(),
    };
    let host = StreamHost::start(
        endpoints,
        lossless_options(),
        Arc::new(Fake),
        Arc::new(Mutex::new(Inputs::default())),
    )
    .unwrap();
    let (host, got1, last1, s1) = one_stream(host, 1, 40);
    let (host, got2, last2, s2) = one_stream(host, 2, 20);
    eprintln!(
        "stream 1: {got1} frames (last {last1}), {s1:?}; stream 2: {got2} (last {last2}), {s2:?}"
    );
    for (got, last, s, id) in [(got1, last1, s1, 1), (got2, last2, s2, 2)] {
        assert_eq!(s.session_id, id);
        // The host counted every frame this client completed in this stream (loopback, no
        // loss; frame indices restart at 1 per stream) and at most one more: a frame whose
        // datagrams were still on their way when the stream stopped.
        assert_eq!(
            last as usize, got,
            "stream {id}: indices 1..=n, none missing"
        );
        assert!(
            s.video_frames >= got as u64 && s.video_frames <= got as u64 + 1,
            "stream {id}: host counted {} frames, the client got {got}",
            s.video_frames
        );
    }
    assert_eq!(host.state(2), StreamState::Idle);
    assert_eq!(host.session_stats(2), None, "no stream, no counters");
    host.shutdown();
}
