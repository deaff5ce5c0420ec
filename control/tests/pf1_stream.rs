//! punktfunk/1 end to end on loopback: the host's listener (identity and trust from a state
//! directory, the media pipeline: test pattern → openh264 → GF(2^16) FEC + AES-GCM → io_uring
//! GSO) and the reference client (`connect::run`: pairing, data-plane receive, loss reports,
//! renegotiation half way). Every frame must arrive, in both modes; with 5 % of datagrams
//! dropped on receipt, FEC must still deliver every frame; with a small artificial key limit
//! the data key rotates several times and still every frame arrives.

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
    stream_with(inject_loss, pair, 0, 75)
}

/// One stream at a time: each runs an encoder and a pipeline, and on a small machine three at
/// once starve each other (the host's pipeline then drops frames, the first IDR among them).
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// `key_limit`: datagrams per data key (0: AES-GCM's limit); the host asks for the next key
/// once `update_percent` of it is sealed.
fn stream_with(
    inject_loss: f64,
    pair: bool,
    key_limit: u64,
    update_percent: u8,
) -> serde_json::Value {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempdir();
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let mut opts = ListenerOptions::new(free_udp_port());
    opts.bind = Some("127.0.0.1".parse().unwrap());
    // Unpaired runs use the lab opt-out (serve --allow-unpaired).
    opts.allow_unpaired = !pair;
    opts.media.key_packet_limit = key_limit;
    opts.media.key_update_percent = update_percent;
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

/// The loopback stream through at least three key rotations (the test pattern makes about
/// 650 datagrams in 5 s; a key may seal 300 here, and the host asks for the next after 75, so
/// the exchange has 225 datagrams, over a second, to complete): every frame arrives, none
/// unrecoverable (a frame refused at a key's limit would show as one), no generation sealed
/// past its limit, and the generations follow one another.
#[test]
fn data_key_rotates_three_times_without_losing_a_frame() {
    let limit = 300;
    let json = stream_with(0.0, false, limit, 25);
    check(&json);
    let rotations = json["key_rotations"].as_u64().unwrap();
    assert!(rotations >= 3, "{json}");
    let per_generation: Vec<(u64, u64)> = json["datagrams_per_generation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p[0].as_u64().unwrap(), p[1].as_u64().unwrap()))
        .collect();
    let generations: Vec<u64> = per_generation.iter().map(|p| p.0).collect();
    assert_eq!(
        generations,
        (0..=rotations).collect::<Vec<_>>(),
        "every generation received, in order: {json}"
    );
    for (g, n) in &per_generation {
        assert!(*n <= limit, "generation {g}: {n} datagrams: {json}");
    }
    // Every datagram the client counted was opened under one of the generations.
    let total: u64 = per_generation.iter().map(|p| p.1).sum();
    assert_eq!(total, json["datagrams"].as_u64().unwrap(), "{json}");
}
