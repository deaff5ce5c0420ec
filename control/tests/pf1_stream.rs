//! punktfunk/1 end to end on loopback: the host's listener (identity and trust from a state
//! directory, the media pipeline: test pattern → openh264 → GF(2^16) FEC + AES-GCM → io_uring
//! GSO) and the reference client (`connect::run`: pairing, data-plane receive, loss reports,
//! renegotiation half way). Every frame must arrive, in both modes; with 5 % of datagrams
//! dropped on receipt, FEC must still deliver every frame.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::connect::{ConnectOptions, run};
use punktfunk_control::pf1::listener::{Listener, ListenerOptions};
use punktfunk_control::pf1::{Mode, Pin};

fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn stream(inject_loss: f64, pair: bool) -> serde_json::Value {
    let dir = tempdir();
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let mut opts = ListenerOptions::new(free_udp_port());
    opts.bind = Some("127.0.0.1".parse().unwrap());
    // Unpaired runs use the lab opt-out (serve --allow-unpaired).
    opts.allow_unpaired = !pair;
    let listener = Listener::start(&host_state, opts).unwrap();
    let pin = Pin::parse("4242").unwrap();
    if pair {
        listener.arm_pin(pin.clone());
    }
    let stats = dir.join("stats.json");
    let record = dir.join("stream.h264");
    let report = run(ConnectOptions {
        host: listener.local_addr().to_string(),
        state_dir: StateDir::open(dir.join("client")).unwrap(),
        pair: pair.then_some(Some(pin)),
        mode: Mode::new(640, 360, 60),
        remode: Some(Mode::new(320, 192, 30)),
        name: "pf1 stream test".into(),
        duration: Duration::from_secs(5),
        record: Some(record.clone()),
        stats_json: Some(stats.clone()),
        inject_loss,
    })
    .unwrap();
    println!("{report}");
    listener.shutdown();
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    // The recording is the Annex-B stream: it starts with a start code and an SPS.
    let bytes = std::fs::read(&record).unwrap();
    assert!(bytes.starts_with(&[0, 0, 0, 1, 0x67]) || bytes.starts_with(&[0, 0, 1, 0x67]));
    json
}

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pf1-stream-{}-{}",
        std::process::id(),
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn check(json: &serde_json::Value) {
    println!("{json}");
    assert_eq!(json["frames_unrecoverable"], 0, "no unrecoverable frame");
    // 2.5 s at 60 fps and 2.5 s at 30 fps, minus start-up.
    assert!(json["frames_complete"].as_u64().unwrap() >= 150, "{json}");
    assert_eq!(
        json["modes_seen"],
        serde_json::json!(["640x360", "320x192"])
    );
    assert!(
        json["reconfigure_ms"].as_f64().is_some(),
        "the new mode arrived"
    );
    assert!(json["keyframes"].as_u64().unwrap() >= 2);
}

#[test]
fn paired_client_streams_two_modes() {
    check(&stream(0.0, true));
}

#[test]
fn fec_carries_the_stream_through_5_percent_loss() {
    let json = stream(0.05, false);
    check(&json);
    assert!(
        json["frames_recovered_by_fec"].as_u64().unwrap() > 0,
        "{json}"
    );
}

/// The default listener streams to paired clients only: an unpaired client is told "not
/// paired", and one that asks to pair while the operator has opened no window is told
/// "pairing closed". Neither gets a session.
#[test]
fn default_listener_refuses_unpaired_clients() {
    let dir = tempdir();
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let mut opts = ListenerOptions::new(free_udp_port());
    opts.bind = Some("127.0.0.1".parse().unwrap());
    let listener = Listener::start(&host_state, opts).unwrap();
    let connect = |pair: Option<Option<Pin>>| {
        run(ConnectOptions {
            host: listener.local_addr().to_string(),
            state_dir: StateDir::open(dir.join("client")).unwrap(),
            pair,
            mode: Mode::new(320, 192, 30),
            remode: None,
            name: "stranger".into(),
            duration: Duration::from_secs(1),
            record: None,
            stats_json: None,
            inject_loss: 0.0,
        })
    };
    let err = connect(None).unwrap_err().to_string();
    assert!(err.contains("client is not paired"), "{err}");
    let err = connect(Some(Some(Pin::parse("4242").unwrap())))
        .unwrap_err()
        .to_string();
    assert!(err.contains("pairing closed"), "{err}");
    listener.shutdown();
}
