//! The reference client's window on a real compositor: `punktfunk-client --window` runs as a
//! Wayland client of a headless sway (pixman, wl_shm), streaming the test pattern from a real
//! punktfunk/1 listener through the C ABI core. The window is made fullscreen on a 640x360
//! output and the stream runs at 640x360, so the screen shows the decoded pictures 1:1:
//! wlr-screencopy of the output must carry the pattern's stamp (frame number and capture
//! time, CRC-checked) — the window presents decoded frames, not a placeholder. Then `wtype`
//! types three keys into the focused window, and the client must have forwarded their six
//! key events to the host (`window_input_forwarded` in its statistics).
//!
//! Without sway or wtype it is a listed skip (a failure under `CI=true`: scripts/setup.sh
//! installs them).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::os::unix::fs::PermissionsExt as _;
use std::time::{Duration, Instant};

use punktfunk_capture::read_stamp;
use punktfunk_capture::wlroots::Screencopy;
use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::listener::Listener;

#[path = "../../capture/tests/common/mod.rs"]
mod common;
use common::{Sway, find_in_path, skip};
mod support;
use support::{loopback_options, tempdir};

/// Luma (BT.601 limited range, as the stamp's levels) of a BGRx frame.
fn luma(data: &[u8], width: usize, height: usize, stride: usize) -> Vec<u8> {
    let mut y = Vec::with_capacity(width * height);
    for row in 0..height {
        for px in data[row * stride..row * stride + 4 * width].chunks_exact(4) {
            let (b, g, r) = (u32::from(px[0]), u32::from(px[1]), u32::from(px[2]));
            y.push((((66 * r + 129 * g + 25 * b + 128) >> 8) + 16) as u8);
        }
    }
    y
}

#[test]
fn window_presents_decoded_frames_and_forwards_keys() {
    let Some(sway) = Sway::start() else { return };
    if find_in_path("wtype").is_none() {
        skip::skip("wtype", "wtype is not installed (apt-get install wtype)");
        return;
    }
    let output = sway.output_names().into_iter().next().expect("an output");
    let mut ipc = sway.ipc();
    ipc.run_command(&format!("output {output} mode 640x360"))
        .unwrap();

    let dir = tempdir("window");
    std::fs::create_dir_all(dir.join("client")).unwrap();
    // The client runs as sway's user: its state and statistics go where it may write.
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    if sway.as_nobody {
        let nobody = Some(common::NOBODY);
        std::os::unix::fs::chown(dir.join("client"), nobody, nobody).unwrap();
    }
    let mut opts = loopback_options();
    // Pairing is tested elsewhere; this client only watches and types.
    opts.allow_unpaired = true;
    let listener = Listener::start(&StateDir::open(dir.join("host")).unwrap(), opts).unwrap();
    let stats = dir.join("stats.json");
    let mut client = sway
        .client_command(env!("CARGO_BIN_EXE_punktfunk-client"))
        .args([
            listener.local_addr().to_string().as_str(),
            "--mode",
            "640x360@30",
            "--duration",
            "8",
            "--window",
            "--name",
            "window test",
        ])
        .arg("--stats-json")
        .arg(&stats)
        .arg("--state-dir")
        .arg(dir.join("client"))
        .env("RUST_LOG", "warn")
        .spawn()
        .expect("punktfunk-client");

    // Fullscreen the window as soon as it is mapped, then find the stamp on the screen.
    let mut cap = Screencopy::connect(&sway.wayland_socket, &output, Duration::from_secs(5))
        .expect("screencopy");
    let mut buf = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(6);
    let stamp = loop {
        let _ = ipc.run_command("[title=\"punktfunk.*\"] fullscreen enable");
        let f = cap.capture_into(&mut buf).expect("capture");
        let (w, h, stride) = (f.width as usize, f.height as usize, f.stride);
        let y = luma(&buf, w, h, stride);
        if let Some(s) = read_stamp(&y, w, h, w) {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "no stamp on the screen: the window does not present the stream"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    println!(
        "stamp on screen: frame {} captured at {} us",
        stamp.frame, stamp.capture_us
    );
    assert!(stamp.capture_us > 0);

    // The seat has no keyboard until wtype's virtual keyboard appears; `-s 1000` waits a
    // second after creating it so the window binds it and gets keyboard focus first.
    let typed = sway
        .client_command("wtype")
        .args(["-s", "1000", "abc"])
        .status()
        .expect("wtype");
    assert!(typed.success(), "wtype failed");

    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = client.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = client.kill();
            panic!("the client did not end");
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    listener.shutdown();
    assert!(status.success(), "client failed: {status}\n{}", sway.log());
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    println!("{json}");
    assert!(json["frames_decoded"].as_u64().unwrap() > 30, "{json}");
    assert!(json["window_presented"].as_u64().unwrap() > 10, "{json}");
    assert!(
        json["window_input_forwarded"].as_u64().unwrap() >= 6,
        "three keys typed, down and up: {json}"
    );
    assert!(json["input_sent"].as_u64().unwrap() >= 6, "{json}");
    let _ = std::fs::remove_dir_all(&dir);
}
