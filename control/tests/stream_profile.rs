//! Issue 8, point 1, for GameStream: a stream started on real loopback sockets from a
//! non-default tuning profile (`fixtures/non-default.toml`, read the way `serve --profile`
//! reads it) runs with the profile's values. The host's real media (test pattern + openh264)
//! feeds the pipeline; the test plays the client's side of RTSP and the video pings, and
//! reads the settings back from the running pipeline (`StreamHost::effective_settings`).

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, TcpStream, UdpSocket};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_control::media::TestMedia;
use punktfunk_control::stream::session::{
    InputHandler, LaunchSpec, StreamEndpoints, StreamHost, StreamOptions,
};
use punktfunk_engine::io::SendPath;

struct NoInput;

impl InputHandler for NoInput {
    fn handle_input(&mut self, _packet: &[u8]) {}
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

/// 320x192 at 30 fps, 1024-byte packets, the client asks for 2 parity packets at least.
const SDP: &str = "v=0\r\na=x-ml-general.featureFlags:3 \r\na=x-ss-general.encryptionEnabled:7 \r\n\
a=x-nv-video[0].clientViewportWd:320 \r\na=x-nv-video[0].clientViewportHt:192 \r\n\
a=x-nv-video[0].maxFPS:30 \r\na=x-nv-video[0].packetSize:1024 \r\n\
a=x-ml-video.configuredBitrateKbps:2000 \r\na=x-nv-vqos[0].fec.minRequiredFecPackets:2 \r\n\
a=x-nv-general.featureFlags:167 \r\na=x-nv-aqos.packetDuration:5 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\nt=0 0\r\n";

#[test]
fn a_non_default_profile_reaches_the_running_gamestream_pipeline() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/fixtures/non-default.toml"
    );
    let loaded = punktfunk_tuning::load(path).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let profile = loaded.settings.session_profile();

    let endpoints = StreamEndpoints {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        rtsp: free_port(),
        video: free_port(),
        control: free_port(),
        audio: free_port(),
    };
    let options = StreamOptions {
        profile: profile.clone(),
        ..StreamOptions::default()
    };
    let host = StreamHost::start(
        endpoints,
        options,
        Arc::new(TestMedia::default()),
        Arc::new(Mutex::new(NoInput)),
    )
    .unwrap();
    host.prepare(LaunchSpec {
        session_id: 1,
        rikey: [7; 16],
        rikeyid: 1,
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
    assert_eq!(
        host.effective_settings(1),
        None,
        "no pipeline before the client's first video ping"
    );

    // Ping the video port until frames flow (the pipeline starts on the first ping).
    let vsock = UdpSocket::bind("127.0.0.1:0").unwrap();
    vsock
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut ping_bytes = ping.into_bytes();
    ping_bytes.extend_from_slice(&1u32.to_be_bytes());
    let mut buf = vec![0u8; 65536];
    let mut datagrams = 0u64;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last_ping = Instant::now() - Duration::from_secs(1);
    while host.session_stats(1).map_or(0, |s| s.video_frames) < 15 && Instant::now() < deadline {
        if last_ping.elapsed() > Duration::from_millis(200) {
            vsock
                .send_to(&ping_bytes, ("127.0.0.1", video_port))
                .unwrap();
            last_ping = Instant::now();
        }
        if vsock.recv(&mut buf).is_ok() {
            datagrams += 1;
        }
    }
    let sent = host.session_stats(1).unwrap().video_frames;
    assert!(
        sent >= 15,
        "only {sent} frames sent ({datagrams} datagrams)"
    );
    assert!(datagrams > 0);

    let eff = host
        .effective_settings(1)
        .expect("the running stream publishes its pipeline's settings");
    println!("{eff}");
    assert_eq!(
        eff.pipeline, profile.pipeline,
        "rings, pool, cores as profiled"
    );
    assert_eq!(
        eff.send, profile.send,
        "socket options and pacing as profiled"
    );
    assert!(
        matches!(
            eff.send_path.path,
            SendPath::Sendmmsg | SendPath::SendmmsgGso
        ),
        "send.path = \"sendmmsg\" honoured: {}",
        eff.send_path
    );
    // The profile's 35 % and its minimum of 3 (the client asked for 2: the larger wins),
    // parity on 2 threads.
    assert_eq!(eff.fec, profile.fec);
    assert_eq!((eff.fec.min_parity, eff.fec.threads), (3, 2));
    host.stop_session(1, true);
    host.shutdown();
}
