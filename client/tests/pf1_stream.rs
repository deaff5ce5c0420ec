//! punktfunk/1 end to end on loopback: the host's listener (identity and trust from a state
//! directory, the media pipeline: test pattern → openh264 → GF(2^16) FEC + AES-GCM → io_uring
//! GSO) and the reference client (`connect::run`: pairing, data-plane receive, loss reports,
//! renegotiation half way). Every frame must arrive, in both modes; with 5 % of datagrams
//! dropped on receipt, FEC must still deliver every frame; with a small artificial key limit
//! the data key rotates several times and still every frame arrives. Two clients stream at
//! once up to the session limit, a third is told Busy, and the host lists its sessions.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::time::Duration;

use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::listener::{Listener, ListenerOptions};
use punktfunk_control::pf1::{Mode, Pin};
use punktfunk_core::reference::{ConnectOptions, run};

mod support;
use support::{loopback_options, tempdir};

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
    let run = Run {
        inject_loss,
        pair,
        mode: Mode::new(640, 360, 60),
        remodes: vec![Mode::new(320, 192, 30)],
        duration: Duration::from_secs(5),
    };
    stream_run(&run, |opts| {
        opts.media.key_packet_limit = key_limit;
        opts.media.key_update_percent = update_percent;
    })
}

/// What the client does in one run.
struct Run {
    inject_loss: f64,
    pair: bool,
    mode: Mode,
    remodes: Vec<Mode>,
    duration: Duration,
}

/// One stream: the listener's options as `setup` leaves them, the client as `run` says.
fn stream_run(plan: &Run, setup: impl FnOnce(&mut ListenerOptions)) -> serde_json::Value {
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let (inject_loss, pair) = (plan.inject_loss, plan.pair);
    let dir = tempdir("pf1-stream");
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let mut opts = loopback_options();
    // Unpaired runs use the lab opt-out (serve --allow-unpaired).
    opts.allow_unpaired = !pair;
    setup(&mut opts);
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
        mode: plan.mode,
        remodes: plan.remodes.clone(),
        name: "pf1 stream test".into(),
        duration: plan.duration,
        record: Some(record.clone()),
        stats_json: Some(stats.clone()),
        inject_loss,
        inputs: Vec::new(),
        decode: true,
        window: false,
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
    let dir = tempdir("pf1-stream");
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let listener = Listener::start(&host_state, loopback_options()).unwrap();
    let connect = |pair: Option<Option<Pin>>| {
        run(ConnectOptions {
            host: listener.local_addr().to_string(),
            state_dir: StateDir::open(dir.join("client")).unwrap(),
            pair,
            mode: Mode::new(320, 192, 30),
            remodes: Vec::new(),
            name: "stranger".into(),
            duration: Duration::from_secs(1),
            record: None,
            stats_json: None,
            inject_loss: 0.0,
            inputs: Vec::new(),
            decode: true,
            window: false,
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

/// Issue 8, point 2: the frame interval travels with each frame, so the send stage paces a
/// 120 fps frame over 8.3 ms × share, not over the 33 ms of the 30 fps mode it was created
/// in. Before, the send stage took longer per frame than frames arrived, its ring overflowed,
/// and every eviction asked for an IDR (a keyframe storm). 30 → 120 → 30 fps mid-stream:
/// nothing dropped after the encoder, one keyframe at the start and one per switch, every
/// frame received.
#[test]
fn pacing_follows_the_mode_30_to_120_to_30_fps() {
    let mut watch = None;
    let run = Run {
        inject_loss: 0.0,
        pair: false,
        mode: Mode::new(320, 192, 30),
        remodes: vec![Mode::new(320, 192, 120), Mode::new(320, 192, 30)],
        duration: Duration::from_secs(6),
    };
    let json = stream_run(&run, |opts| {
        // Spread each frame over its whole interval: the slowest pacing a profile allows,
        // so a sink that kept the 30 fps interval could not keep up at 120 fps.
        let mut profile = opts.media.profile.clone();
        profile.send.pacing.frame_share = 1.0;
        profile.send.pacing.burst_datagrams = 1;
        opts.apply_profile(profile);
        watch = Some(opts.media.watch.clone());
    });
    println!("{json}");
    let stats = watch
        .unwrap()
        .stopped()
        .expect("the host published its pipeline's final counters");
    println!("{stats:?}");
    use punktfunk_engine::pipeline::RingId;
    assert_eq!(
        stats.ring(RingId::FecSend).dropped_oldest,
        0,
        "the send stage kept up: no frame evicted before it"
    );
    assert_eq!(stats.ring(RingId::EncodeFec).dropped_oldest, 0, "{stats:?}");
    assert_eq!(json["frames_unrecoverable"], 0, "{json}");
    assert_eq!(json["mode_switches"], 2, "{json}");
    assert_eq!(
        json["keyframes"], 3,
        "one keyframe at the start and one per mode switch, no storm: {json}"
    );
    // 2 s at 30 fps, 2 s at 120 fps, 2 s at 30 fps: 360 frames, minus start-up and the
    // switches; at 33 ms per 120 fps frame at most about 240 would go out.
    let frames = json["frames_complete"].as_u64().unwrap();
    assert!(frames >= 300, "{json}");
}

/// Issue 8, point 1: a session started from a non-default profile runs with the profile's
/// values: the pipeline's rings, pool and cores, the send socket's path and options, the
/// pacing and the FEC minimum, read back from the running pipeline.
#[test]
fn a_non_default_profile_reaches_the_running_pipeline() {
    let profile = non_default_profile();
    let mut watch = None;
    let run = Run {
        inject_loss: 0.0,
        pair: false,
        mode: Mode::new(320, 192, 30),
        remodes: Vec::new(),
        duration: Duration::from_secs(2),
    };
    let json = stream_run(&run, |opts| {
        opts.apply_profile(profile.clone());
        watch = Some(opts.media.watch.clone());
    });
    assert!(json["frames_complete"].as_u64().unwrap() >= 30, "{json}");
    let watch = watch.unwrap();
    let eff = watch.get().expect("the pipeline published its settings");
    println!("{eff}");
    assert_eq!(eff.pipeline, profile.pipeline);
    assert_eq!(eff.frame_capacity_asked, profile.pipeline.frame_capacity);
    assert_eq!(eff.send, profile.send);
    use punktfunk_engine::io::SendPath;
    assert!(
        matches!(
            eff.send_path.path,
            SendPath::Sendmmsg | SendPath::SendmmsgGso
        ),
        "send.path = \"sendmmsg\" honoured: {}",
        eff.send_path
    );
    assert_eq!(
        (eff.fec.percent, eff.fec.min_parity),
        (profile.fec.percent, profile.fec.min_parity),
        "the offered parity and the minimum"
    );
    assert_eq!(eff.fec.threads, 1, "a punktfunk/1 frame is one FEC block");
    let stats = watch.stopped().expect("final counters published");
    assert_eq!(
        stats
            .stage(punktfunk_engine::pipeline::StageId::Send)
            .pinned_core,
        Some(0),
        "pipeline.cores.send honoured"
    );
}

/// `fixtures/non-default.toml`, read the way `serve --profile` reads a profile.
fn non_default_profile() -> punktfunk_engine::config::SessionProfile {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../control/tests/fixtures/non-default.toml"
    );
    let loaded = punktfunk_tuning::load(path).unwrap();
    assert!(loaded.warnings.is_empty(), "{:?}", loaded.warnings);
    let p = loaded.settings.session_profile();
    let d = punktfunk_engine::config::SessionProfile::default();
    assert_ne!(p.pipeline.ring_depth, d.pipeline.ring_depth);
    assert_ne!(p.send.pacing, d.send.pacing);
    assert_ne!(p.fec, d.fec);
    p
}

/// One client of [`several_clients_stream_at_once_up_to_the_limit`]: its state directory
/// (identity made here, so the host can list it as paired before it starts) and its name.
struct Client {
    state: StateDir,
    name: &'static str,
    fingerprint: String,
}

impl Client {
    fn new(dir: &std::path::Path, name: &'static str) -> Self {
        use punktfunk_control::pf1::trust::{self, Role};
        let state = StateDir::open(dir.join(name)).unwrap();
        let identity = trust::load_or_create_identity(&state, Role::Client).unwrap();
        Self {
            state,
            name,
            fingerprint: identity.fingerprint().to_hex(),
        }
    }

    /// Streams `mode` for `duration`; the report (or why not) and the statistics.
    fn stream(
        &self,
        host: std::net::SocketAddr,
        mode: Mode,
        duration: Duration,
    ) -> Result<serde_json::Value, String> {
        let stats = self.state.path().join("stats.json");
        run(ConnectOptions {
            host: host.to_string(),
            state_dir: self.state.clone(),
            pair: None,
            mode,
            remodes: Vec::new(),
            name: self.name.into(),
            duration,
            record: None,
            stats_json: Some(stats.clone()),
            inject_loss: 0.0,
            inputs: Vec::new(),
            // Receive only: several clients at once share two cores with their hosts.
            decode: false,
            window: false,
        })
        .map_err(|e| e.to_string())?;
        Ok(serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap())
    }
}

/// Polls the host's session list until `done` says yes (30 s at most: a slow machine only
/// makes this wait longer, never fail).
fn wait_for_sessions(
    handle: &punktfunk_control::pf1::net::HostHandle,
    what: &str,
    done: impl Fn(&[punktfunk_control::live::LiveSession]) -> bool,
) -> Vec<punktfunk_control::live::LiveSession> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let rows = handle
            .live_sessions(Duration::from_secs(5))
            .expect("the host answers live_sessions");
        if done(&rows) {
            return rows;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "never {what}: {rows:#?}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn live_mode(m: Mode) -> punktfunk_control::live::LiveMode {
    punktfunk_control::live::LiveMode {
        width: u32::from(m.width),
        height: u32::from(m.height),
        fps: u32::from(m.fps),
    }
}

/// Issue 8, point 4 (punktfunk/1): with `[sessions] max = 2`, two paired clients stream at
/// once in different modes, each getting every frame; a third is told Busy with the limit;
/// `live_sessions` lists exactly the two, with their modes, names and counters. When one
/// quits the other keeps streaming, the list shrinks to one, and the third may now stream.
#[test]
fn several_clients_stream_at_once_up_to_the_limit() {
    use punktfunk_control::live::{LiveState, Protocol};
    let _serial = ONE_AT_A_TIME
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let dir = tempdir("pf1-stream");
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let clients = [
        Client::new(&dir, "alpha"),
        Client::new(&dir, "beta"),
        Client::new(&dir, "gamma"),
    ];
    // All three paired before the host starts (as `pf1-clients.json` after three pairings).
    {
        use punktfunk_control::pf1::trust;
        let mut list = trust::load_paired_clients(&host_state).unwrap();
        for c in &clients {
            let fp = punktfunk_control::pf1::Fingerprint::from_hex(&c.fingerprint).unwrap();
            list.add(fp, c.name, 1);
        }
        trust::save_paired_clients(&host_state, &list).unwrap();
    }
    let mut opts = loopback_options();
    opts.max_sessions = 2;
    let listener = Listener::start(&host_state, opts).unwrap();
    let host = listener.local_addr();
    let handle = listener.handle();
    let [alpha, beta, gamma] = &clients;
    let (mode_a, mode_b, mode_c) = (
        Mode::new(640, 360, 30),
        Mode::new(320, 240, 60),
        Mode::new(320, 192, 30),
    );

    std::thread::scope(|scope| {
        let a = scope.spawn(|| alpha.stream(host, mode_a, Duration::from_secs(6)));
        let b = scope.spawn(|| beta.stream(host, mode_b, Duration::from_secs(14)));
        let two = wait_for_sessions(&handle, "two streams flowing", |rows| {
            rows.len() == 2 && rows.iter().all(|r| r.frames_sent > 0)
        });
        println!("{two:#?}");

        // The third is refused, and told why.
        let err = gamma
            .stream(host, mode_c, Duration::from_secs(1))
            .unwrap_err();
        println!("{err}");
        assert!(err.contains("host is busy"), "{err}");
        assert!(
            err.contains("the host is streaming to 2 clients (max 2)"),
            "{err}"
        );

        let rows = handle.live_sessions(Duration::from_secs(5)).unwrap();
        println!("{rows:#?}");
        assert_eq!(rows.len(), 2, "exactly the two streams: {rows:#?}");
        for (client, mode) in [(alpha, mode_a), (beta, mode_b)] {
            let r = rows
                .iter()
                .find(|r| r.client.id == client.fingerprint)
                .unwrap_or_else(|| panic!("{} listed: {rows:#?}", client.name));
            assert_eq!(r.protocol, Protocol::Pf1);
            assert_eq!(r.client.name, client.name);
            assert_eq!(r.mode, live_mode(mode), "{r:#?}");
            assert_eq!(r.state, LiveState::Streaming, "{r:#?}");
            assert!(r.frames_sent > 0, "{r:#?}");
            assert_eq!(r.codec, "h264");
            assert!(r.fec_percent > 0, "{r:#?}");
            assert!(r.bitrate_kbps > 0, "{r:#?}");
            let addr = r.address.unwrap();
            assert!(addr.ip().is_loopback(), "{r:#?}");
            assert!(r.id.parse::<u64>().is_ok(), "{r:#?}");
        }
        assert_ne!(rows[0].id, rows[1].id);
        assert_ne!(rows[0].address, rows[1].address);

        // alpha's time is up; beta streams on.
        let a = a.join().unwrap().unwrap();
        println!("alpha {a}");
        assert_eq!(a["frames_unrecoverable"], 0, "{a}");
        assert!(a["frames_complete"].as_u64().unwrap() > 0, "{a}");
        assert_eq!(a["modes_seen"], serde_json::json!(["640x360"]), "{a}");
        let one = wait_for_sessions(&handle, "alpha's row gone", |rows| rows.len() == 1);
        assert_eq!(one[0].client.name, "beta", "{one:#?}");
        assert_eq!(one[0].mode, live_mode(mode_b));
        let beta_sent = one[0].frames_sent;

        // A slot is free: gamma streams now, beside beta.
        let c = scope.spawn(|| gamma.stream(host, mode_c, Duration::from_secs(2)));
        let both = wait_for_sessions(&handle, "gamma streaming beside beta", |rows| {
            rows.len() == 2
                && rows
                    .iter()
                    .any(|r| r.client.name == "gamma" && r.frames_sent > 0)
        });
        let g = both.iter().find(|r| r.client.name == "gamma").unwrap();
        assert_eq!(g.mode, live_mode(mode_c), "{g:#?}");
        let c = c.join().unwrap().unwrap();
        println!("gamma {c}");
        assert_eq!(c["frames_unrecoverable"], 0, "{c}");
        assert!(c["frames_complete"].as_u64().unwrap() > 0, "{c}");

        // beta kept going the whole time: the host sent it more frames after alpha left, and
        // it received at least every frame sent before this point.
        let late = wait_for_sessions(&handle, "gamma's row gone", |rows| rows.len() == 1);
        assert_eq!(late[0].client.name, "beta", "{late:#?}");
        let beta_late = late[0].frames_sent;
        assert!(beta_late > beta_sent, "{beta_late} > {beta_sent}");
        let b = b.join().unwrap().unwrap();
        println!("beta {b}");
        assert_eq!(b["frames_unrecoverable"], 0, "{b}");
        assert_eq!(b["modes_seen"], serde_json::json!(["320x240"]), "{b}");
        assert!(
            b["frames_complete"].as_u64().unwrap() >= beta_late,
            "beta received every frame the host had sent it: {b}"
        );
    });
    let rows = handle.live_sessions(Duration::from_secs(5)).unwrap();
    assert!(rows.is_empty(), "{rows:#?}");
    listener.shutdown();
}

/// The listener takes its streaming slots from `ListenerOptions::max_sessions`, whose default
/// is the tuning profile's default `[sessions] max`.
#[test]
fn the_session_limit_defaults_to_the_profiles() {
    assert_eq!(
        ListenerOptions::new(1).max_sessions,
        punktfunk_tuning::SessionsSettings::default().max
    );
}
