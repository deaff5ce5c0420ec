//! A punktfunk/1 session on a real sway desktop (issue 9, point 7): the listener's media
//! source is [`WlrootsMedia`], so the session gets its own headless output at the client's
//! mode, captured with wlr-screencopy; the client renegotiates mid-stream and the host sets
//! that same output to the new mode in place.
//!
//! sway runs headless as `nobody` under root (capture/tests/common), every output painted red
//! (`output * bg #ff0000 solid_color`, applied to outputs created later too). As soon as the
//! session's output appears the test focuses it and starts `wev` there; 40 % into the run the
//! client sends a key and a click as punktfunk/1 input datagrams, and `wev` must see both:
//! the stream's input goes into its own desktop. The client records the Annex-B stream;
//! FFmpeg decodes it: the first and the last picture are red, at the first and the second
//! mode. Without sway, swaybg, wev or ffmpeg it is a listed skip (a failure under `CI=true`:
//! scripts/setup.sh installs them).
//!
//! Run: `cargo test -p punktfunk-client --test virtual_sway_pf1`.

#![allow(clippy::unwrap_used)] // test helpers: a failed unwrap is a failed test

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use punktfunk_capture::display::DisplayMode;
use punktfunk_control::host::state::StateDir;
use punktfunk_control::media::{WlrootsEndpoint, WlrootsMedia};
use punktfunk_control::pf1::listener::{Listener, ListenerOptions};
use punktfunk_control::pf1::{Mode, Pin};
use punktfunk_core::reference::{ConnectOptions, run};

#[path = "../../capture/tests/common/mod.rs"]
mod common;
use common::{Sway, Wev, pointer_line, skip};
use punktfunk_control::input::{InputEvent, Modifiers, MouseButton};

fn tempdir() -> std::path::PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pf1-desktop-{}-{}",
        std::process::id(),
        punktfunk_capture::clock::monotonic_us()
    ));
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Width and height of every decoded picture, in order (ffprobe).
fn picture_sizes(record: &Path) -> Vec<(u32, u32)> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-f", "h264", "-select_streams", "v"])
        .args(["-show_entries", "frame=width,height", "-of", "csv=p=0"])
        .arg(record)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let (w, h) = l.trim().trim_end_matches(',').split_once(',')?;
            Some((w.parse().ok()?, h.parse().ok()?))
        })
        .collect()
}

/// Mean RGB of every decoded picture (each scaled to 8x8 by FFmpeg).
fn picture_colours(record: &Path) -> Vec<(u8, u8, u8)> {
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-f", "h264", "-i"])
        .arg(record)
        .args([
            "-vf",
            "scale=8:8",
            "-pix_fmt",
            "rgb24",
            "-f",
            "rawvideo",
            "pipe:1",
        ])
        .output()
        .expect("run ffmpeg");
    assert!(
        out.status.success(),
        "ffmpeg: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
        .chunks_exact(8 * 8 * 3)
        .map(|p| {
            let mut sum = [0u32; 3];
            for px in p.chunks_exact(3) {
                for (s, v) in sum.iter_mut().zip(px) {
                    *s += u32::from(*v);
                }
            }
            let mean = |i: usize| u8::try_from(sum[i] / 64).unwrap_or(u8::MAX);
            (mean(0), mean(1), mean(2))
        })
        .collect()
}

fn is_red((r, g, b): (u8, u8, u8)) -> bool {
    r > 200 && g < 50 && b < 50
}

#[test]
fn virtual_pf1_session_streams_its_own_output_and_renegotiation_sets_its_mode() {
    if Command::new("ffprobe").arg("-version").output().is_err() {
        skip::skip(
            "ffmpeg",
            "no ffmpeg/ffprobe on PATH (apt-get install ffmpeg)",
        );
        return;
    }
    let Some(sway) = Sway::start_with_wev() else {
        return;
    };
    sway.ipc()
        .run_command("output * bg #ff0000 solid_color")
        .expect("paint every output red");
    let before = sway.output_names();

    let dir = tempdir();
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let mut opts = ListenerOptions::new(0);
    opts.bind = Some("127.0.0.1".parse().unwrap());
    opts.media.source = Arc::new(WlrootsMedia::new(WlrootsEndpoint {
        ipc: sway.ipc_socket.clone(),
        wayland: sway.wayland_socket.clone(),
    }));
    let listener = Listener::start(&host_state, opts).unwrap();
    // Paired: the host drops an unpaired client's input.
    let pin = Pin::parse("4242").unwrap();
    listener.arm_pin(pin.clone());
    let record = dir.join("stream.h264");
    let stats = dir.join("stats.json");
    let first = Mode::new(640, 360, 30);
    let second = Mode::new(1280, 720, 30);
    let key = |down| InputEvent::Key {
        down,
        code: 0x41, // VK 'A'
        modifiers: Modifiers(0),
        flags: 0,
    };
    let click = |down| InputEvent::MouseButton {
        down,
        button: MouseButton::Left,
    };
    let options = ConnectOptions {
        host: listener.local_addr().to_string(),
        state_dir: StateDir::open(dir.join("client")).unwrap(),
        pair: Some(Some(pin)),
        mode: first,
        remodes: vec![second],
        name: "pf1 desktop test".into(),
        duration: Duration::from_secs(10),
        record: Some(record.clone()),
        stats_json: Some(stats.clone()),
        inject_loss: 0.0,
        decode: true,
        window: false,
        // At 4 s (the mode changes at 5 s).
        inputs: vec![
            key(true),
            key(false),
            InputEvent::MouseAbsolute {
                x: 320,
                y: 180,
                width: 640,
                height: 360,
            },
            click(true),
            click(false),
        ],
    };
    let client = std::thread::spawn(move || run(options));

    // The session's output appears when the stream starts: a wev window on it.
    let deadline = std::time::Instant::now() + Duration::from_secs(4);
    let output = loop {
        let now: Vec<String> = sway.output_names();
        if let Some(new) = now.into_iter().find(|n| !before.contains(n)) {
            break new;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no output made for the session in 4 s"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    sway.ipc()
        .run_command(&format!("focus output {output}"))
        .expect("focus the session's output");
    let wev = Wev::start(&sway, "wev on the session's output");
    wev.wait_for_devices();

    // The stream's input reached the window on its output.
    wev.wait_for("key a", |l| l.contains("sym: a "));
    wev.wait_for("left press", |l| {
        pointer_line(l, "button") && l.contains("272") && l.contains("pressed")
    });
    // The window closes: the output shows its red background again for the rest of the run.
    drop(wev);
    let report = client.join().expect("client thread").expect("stream");
    println!("{report}");
    listener.shutdown();

    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&stats).unwrap()).unwrap();
    println!("{json}");
    assert_eq!(
        json["modes_seen"],
        serde_json::json!(["640x360", "1280x720"]),
        "{json}"
    );
    assert_eq!(json["frames_unrecoverable"], 0, "{json}");

    // The session's output: created for it (not one sway had), set to the second mode in place.
    // sway 1.7 cannot remove a headless output (the host keeps it for the next session), later
    // versions remove it when the session ends.
    let outputs = sway.ipc().outputs().expect("GET_OUTPUTS");
    let made: Vec<_> = outputs
        .iter()
        .filter(|o| !before.contains(&o.name))
        .collect();
    let (major, minor, _) = sway.ipc().version().expect("version");
    if (major, minor) < (1, 8) {
        assert_eq!(
            made.len(),
            1,
            "one output made for the session: {outputs:?}"
        );
        assert_eq!(
            made[0].mode,
            Some(DisplayMode::new(1280, 720, 30)),
            "the renegotiated mode was set on the session's output: {outputs:?}"
        );
    } else {
        assert!(made.is_empty(), "the session's output is gone: {outputs:?}");
    }

    // What the client received is that output: red, at the first mode, then at the second.
    let sizes = picture_sizes(&record);
    let colours = picture_colours(&record);
    println!(
        "{} pictures; first {:?} {:?}, last {:?} {:?}",
        sizes.len(),
        sizes.first(),
        colours.first(),
        sizes.last(),
        colours.last()
    );
    assert!(sizes.len() >= 60, "{} pictures", sizes.len());
    assert_eq!(sizes.first(), Some(&(640, 360)));
    assert_eq!(sizes.last(), Some(&(1280, 720)));
    assert!(
        is_red(*colours.last().unwrap()),
        "the last picture shows the red output: {:?}",
        colours.last()
    );
    // At the second mode (from 5 s on) wev has closed (it took the input at 4 s): most
    // pictures show the red background.
    let second: Vec<_> = sizes
        .iter()
        .zip(&colours)
        .filter(|(s, _)| **s == (1280, 720))
        .map(|(_, c)| *c)
        .collect();
    let red = second.iter().filter(|c| is_red(**c)).count();
    assert!(
        red * 2 >= second.len(),
        "{red} of {} pictures at 1280x720 red",
        second.len()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
