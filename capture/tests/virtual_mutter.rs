//! Mutter virtual monitors against a real GNOME Mutter (cargo feature `mutter`).
//!
//! Each test starts its own session in a private runtime dir (0700): `dbus-daemon --session`,
//! `pipewire`, `wireplumber`, then `mutter --headless --wayland --no-x11` with
//! `XDG_RUNTIME_DIR`, `DBUS_SESSION_BUS_ADDRESS`, `HOME` and `XDG_CONFIG_HOME` pointing into
//! that dir and `GSETTINGS_BACKEND=memory` (no dconf). Mutter 43.8 runs as root here (unlike
//! sway) and, without a GPU, renders with its surfaceless software renderer ("Created
//! surfaceless renderer without GPU"; DMA-BUF screen sharing disabled, so frames come as
//! SHM/memfd). No `--virtual-monitor`: the only monitor is the one our `RecordVirtual` makes.
//! The tests talk to the private bus by address and to the private PipeWire by socket path,
//! so this process's environment is untouched. Everything is killed on drop. The session and
//! wev helpers live in `tests/mutter_session/` (shared with control's `virtual_mutter_sink`).
//!
//! Without mutter/pipewire/wireplumber/dbus-daemon (and wev for the input test) the tests skip
//! through tests/skip.rs; under `CI=true` that skip fails (scripts/setup.sh installs them).
#![cfg(feature = "mutter")]

use std::time::{Duration, Instant};

use punktfunk_capture::display::{DisplayMode, FrameSource as _, VirtualDisplay as _};
use punktfunk_capture::mutter::{InputCall, MutterDisplay, ScrollAxis, VirtualOptions};

mod mutter_session;
use mutter_session::{Session, Wev, find_in_path};

/// Takes frames until `n` of `width`×`height` arrived (frames of another size, from before a
/// mode change, are skipped), checking capture stamps increase; at most 10 s.
fn frames_of(
    frames: &mut punktfunk_capture::mutter::MutterFrames,
    input: &punktfunk_capture::mutter::MutterInput,
    width: u32,
    height: u32,
    n: usize,
) -> Vec<u64> {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stamps = Vec::new();
    let mut sizes = Vec::new();
    let mut step = 0u32;
    while stamps.len() < n {
        // Mutter sends a frame when the monitor changes; the embedded cursor moving is a
        // change, so the pointer is moved before each frame.
        step += 1;
        let _ = input.send(InputCall::MotionAbsolute {
            x: f64::from(100 + (step % 50) * 10),
            y: f64::from(100 + (step % 30) * 10),
        });
        assert!(
            Instant::now() < deadline,
            "only {} frames of {width}x{height} in 10 s; sizes seen {sizes:?}",
            stamps.len()
        );
        let frame = match frames.next_frame() {
            Ok(frame) => frame,
            Err(punktfunk_capture::display::CaptureError::Timeout(_)) => continue,
            Err(e) => panic!("frame: {e}"),
        };
        if (frame.width, frame.height) != (width, height) {
            sizes.push((frame.width, frame.height));
            continue;
        }
        assert_eq!(frame.data.len(), frame.stride * height as usize);
        if let Some(&last) = stamps.last() {
            assert!(frame.capture_us > last, "stamps must increase");
        }
        stamps.push(frame.capture_us);
    }
    stamps
}

#[test]
fn virtual_mutter_monitor_records_changes_mode_and_goes() {
    let Some(session) = Session::start(&[]) else {
        return;
    };
    let bus = session.bus();
    eprintln!(
        "ScreenCast version {:?}",
        bus.screen_cast_version().map_err(|e| e.to_string())
    );
    let started = Instant::now();
    let mut display = MutterDisplay::create(
        &bus,
        Some(session.pipewire_socket()),
        DisplayMode::new(1280, 720, 60),
        VirtualOptions::default(),
    )
    .unwrap_or_else(|e| panic!("create: {e}; logs:\n{}", session.logs()));
    eprintln!(
        "virtual monitor {} (node {:?}) up in {:?}",
        display.name(),
        display.node_id(),
        started.elapsed()
    );
    let mut frames = display.frames();
    frames.set_timeout(Duration::from_millis(500));
    let input = display.input();
    // (a) frames of the mode arrive, stamps increase.
    let stamps = frames_of(&mut frames, &input, 1280, 720, 3);
    eprintln!("1280x720 frames at {stamps:?}");
    // A still desktop: no damage, no new frames from Mutter; with repeat_after the source
    // hands out the last frame again (stamped now) once per interval.
    frames.repeat_after(Some(Duration::from_millis(20)));
    let mut still = Vec::new();
    for _ in 0..3 {
        let frame = frames.next_frame().expect("a repeated frame");
        assert_eq!((frame.width, frame.height), (1280, 720));
        still.push(frame.capture_us);
    }
    assert!(still.windows(2).all(|w| w[0] < w[1]), "{still:?}");
    assert!(frames.repeated() >= 2, "repeated {}", frames.repeated());
    frames.repeat_after(None);

    // (b) a mode change is honoured.
    display
        .set_mode(DisplayMode::new(1920, 1080, 60))
        .unwrap_or_else(|e| panic!("set_mode: {e}; logs:\n{}", session.logs()));
    let changes = display.mode_changes();
    eprintln!("mode change: {changes:?}");
    let stamps = frames_of(&mut frames, &input, 1920, 1080, 3);
    eprintln!("1920x1080 frames at {stamps:?}");

    // (c) removal: the stream's node goes, the frame source says the output is gone.
    let node = display.node_id();
    display.remove().expect("remove");
    display.remove().expect("removing twice is not an error");
    assert_eq!(display.node_id(), None);
    match frames.next_frame() {
        Err(punktfunk_capture::display::CaptureError::OutputGone(_)) => {}
        other => panic!("after remove: {other:?}"),
    }
    // Mutter forgot the stream object (its node went with it).
    let gone = node_listed(&session, node);
    assert!(
        !gone,
        "node {node:?} still in the PipeWire graph after remove"
    );
}

/// Whether `pw-cli ls Node` lists `node` (waits up to 3 s for it to go).
fn node_listed(session: &Session, node: Option<u32>) -> bool {
    let Some(node) = node else { return false };
    if !find_in_path("pw-cli") {
        return false;
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    loop {
        let out = session
            .command("pw-cli")
            .args(["ls", "Node"])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default();
        let listed = out
            .lines()
            .any(|l| l.trim_start().starts_with(&format!("id {node},")));
        if !listed || Instant::now() >= deadline {
            return listed;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn virtual_mutter_input_reaches_a_wayland_client() {
    let Some(session) = Session::start(&["wev", "stdbuf"]) else {
        return;
    };
    let bus = session.bus();
    let display = MutterDisplay::create(
        &bus,
        Some(session.pipewire_socket()),
        DisplayMode::new(1280, 720, 60),
        VirtualOptions::default(),
    )
    .unwrap_or_else(|e| panic!("create: {e}; logs:\n{}", session.logs()));
    let input = display.input();
    let wev = Wev::start(&session);
    assert!(
        wev.wait_for("xdg_toplevel] configure", Duration::from_secs(10)),
        "wev never got configured:\n{}\nlogs:\n{}",
        wev.tail(),
        session.logs()
    );
    // Sweep the pointer over the monitor until wev's surface is under it.
    let mut entered = None;
    'sweep: for y in (20..720).step_by(60) {
        for x in (20..1280).step_by(80) {
            let call = InputCall::MotionAbsolute {
                x: f64::from(x),
                y: f64::from(y),
            };
            input.send(call).expect("motion");
            if wev.wait_for("wl_pointer] enter", Duration::from_millis(30)) {
                entered = Some((x, y));
                break 'sweep;
            }
        }
    }
    let (x, y) = entered.unwrap_or_else(|| {
        panic!(
            "the pointer never entered wev's surface:\n{}\nlogs:\n{}",
            wev.tail(),
            session.logs()
        )
    });
    eprintln!("pointer entered wev at ({x}, {y})");
    // Mutter 43 may lose the first key/button of a session: each is sent again once if it
    // does not arrive, and the test prints which happened.
    let key = |code, pressed| input.send(InputCall::Keycode { code, pressed });
    let button = |pressed| {
        input.send(InputCall::Button {
            code: 0x110, // BTN_LEFT
            pressed,
        })
    };
    // A click also focuses the window (keyboard focus follows it).
    button(true).expect("press");
    button(false).expect("release");
    let pressed = "button: 272 (left), state: 1 (pressed)";
    if wev.wait_for(pressed, Duration::from_secs(2)) {
        eprintln!("the first click arrived");
    } else {
        eprintln!("the first click was lost; sending it again");
        button(true).expect("press");
        button(false).expect("release");
    }
    assert!(
        wev.wait_for(pressed, Duration::from_secs(5)),
        "no click in wev:\n{}",
        wev.tail()
    );
    key(30, true).expect("a down"); // KEY_A
    key(30, false).expect("a up");
    if wev.wait_for("sym: a", Duration::from_secs(2)) {
        eprintln!("the first key arrived");
    } else {
        eprintln!("the first key was lost; sending it again");
        key(30, true).expect("a down");
        key(30, false).expect("a up");
    }
    assert!(
        wev.wait_for("sym: a", Duration::from_secs(5)),
        "no key in wev:\n{}",
        wev.tail()
    );
    // Scroll: a discrete wheel click and a smooth step.
    input
        .send(InputCall::AxisDiscrete {
            axis: ScrollAxis::Vertical,
            steps: 1,
        })
        .expect("axis discrete");
    assert!(
        wev.wait_for("axis: ", Duration::from_secs(5)),
        "no scroll in wev:\n{}",
        wev.tail()
    );
    input
        .send(InputCall::Axis {
            dx: 10.0,
            dy: 0.0,
            flags: punktfunk_capture::mutter::plan::AXIS_SOURCE_WHEEL,
        })
        .expect("axis");
    assert!(
        wev.wait_for("axis 1 (horizontal", Duration::from_secs(5))
            || wev.wait_for("axis: 1 (horizontal", Duration::from_secs(1)),
        "no horizontal scroll in wev:\n{}",
        wev.tail()
    );
    // Touch (SupportedDeviceTypes 7 includes a touchscreen). Mutter adds its virtual
    // touchscreen (the seat gains `touch`) on the first touch call, before the client has
    // bound wl_touch: that first tap is not seen, so it is sent again once.
    let (tx, ty) = (f64::from(x), f64::from(y));
    let tap = || {
        input
            .send(InputCall::TouchDown {
                slot: 0,
                x: tx,
                y: ty,
            })
            .expect("touch down");
        input
            .send(InputCall::TouchUp { slot: 0 })
            .expect("touch up");
    };
    tap();
    let mut touched = wev.wait_for("wl_touch] down", Duration::from_secs(2));
    if touched {
        eprintln!("the first tap arrived");
    } else {
        eprintln!("the first tap was lost; sending it again");
        tap();
        touched = wev.wait_for("wl_touch] down", Duration::from_secs(3));
    }
    assert!(touched, "no touch in wev:\n{}", wev.tail());
}

/// CPU time (user + system) of process `pid` so far, from `/proc/<pid>/stat` (fields 14 and 15,
/// in clock ticks of `getconf CLK_TCK`).
fn cpu_time(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<u64> = rest
        .split_whitespace()
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    // rest starts at field 3 (state): utime is field 14 → index 11, stime index 12.
    let ticks = fields.get(11).copied().unwrap_or(0) + fields.get(12).copied().unwrap_or(0);
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<u64>()
                .ok()
        })
        .unwrap_or(100);
    Duration::from_micros(ticks * 1_000_000 / hz.max(1))
}

/// The cost of a 1920x1080 virtual monitor, for docs/benchmarks.md: frames delivered while the
/// pointer moves every 4 ms (each move is damage: Mutter repaints and sends a frame), our copy
/// per frame (PipeWire buffer → frame, `CaptureStats::copy_us`), the BGRx → I420 conversion
/// `DesktopCapture` does per frame, and Mutter's own CPU time per frame (software rendering:
/// no GPU here). Run in release:
/// `cargo test --release -p punktfunk-capture --features mutter --test virtual_mutter -- --ignored --nocapture virtual_mutter_capture_cost`.
#[test]
#[ignore = "measurement for docs/benchmarks.md; run in release"]
fn virtual_mutter_capture_cost_1080p() {
    let Some(session) = Session::start(&[]) else {
        return;
    };
    let bus = session.bus();
    let display = MutterDisplay::create(
        &bus,
        Some(session.pipewire_socket()),
        DisplayMode::new(1920, 1080, 60),
        VirtualOptions::default(),
    )
    .unwrap_or_else(|e| panic!("create: {e}; logs:\n{}", session.logs()));
    let mut frames = display.frames();
    frames.set_timeout(Duration::from_millis(500));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mover = {
        let (input, stop) = (display.input(), std::sync::Arc::clone(&stop));
        std::thread::spawn(move || {
            // Every 8th move waits for Mutter's reply (`send`: one D-Bus round trip), the
            // others do not (`post`, what the GameStream sink uses): both are timed.
            let (mut i, mut sends, mut posts) = (0u32, Vec::new(), Vec::new());
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                i += 1;
                let call = InputCall::MotionAbsolute {
                    x: f64::from(200 + (i % 400) * 3),
                    y: f64::from(200 + (i % 200) * 3),
                };
                let t = Instant::now();
                if i % 8 == 0 {
                    let _ = input.send(call);
                    sends.push(t.elapsed());
                } else {
                    let _ = input.post(call);
                    posts.push(t.elapsed());
                }
                std::thread::sleep(Duration::from_millis(4));
            }
            sends.sort();
            posts.sort();
            (sends, posts)
        })
    };
    // Warm up (first frames, buffer pool), then measure 5 s.
    let _ = frames_of(&mut frames, &display.input(), 1920, 1080, 5);
    let mutter = session.pid("mutter").expect("mutter pid");
    let (cpu0, stats0, t0) = (
        cpu_time(mutter),
        display.capture_stats().unwrap_or_default(),
        Instant::now(),
    );
    let mut i420 = punktfunk_capture::Frame::new(1920, 1080).expect("frame");
    let (mut delivered, mut convert) = (0u64, Duration::ZERO);
    while t0.elapsed() < Duration::from_secs(5) {
        let Ok(frame) = frames.next_frame() else {
            continue;
        };
        if (frame.width, frame.height) != (1920, 1080) {
            continue;
        }
        let c = Instant::now();
        punktfunk_capture::convert::bgrx_to_i420(frame.data, frame.stride, &mut i420)
            .expect("convert");
        convert += c.elapsed();
        delivered += 1;
    }
    let elapsed = t0.elapsed();
    let (cpu1, stats1) = (
        cpu_time(mutter),
        display.capture_stats().unwrap_or_default(),
    );
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (sends, posts) = mover.join().unwrap_or_default();
    let pct = |v: &[Duration], p: usize| v.get(v.len() * p / 100).copied().unwrap_or_default();
    eprintln!(
        "NotifyPointerMotionAbsolute: send (reply awaited) {} calls p50 {:?} p99 {:?}; post (no \
         reply) {} calls p50 {:?} p99 {:?}",
        sends.len(),
        pct(&sends, 50),
        pct(&sends, 99),
        posts.len(),
        pct(&posts, 50),
        pct(&posts, 99)
    );
    let captured = (stats1.frames_captured - stats0.frames_captured).max(1);
    let copy_us = (stats1.copy_us - stats0.copy_us) as f64 / captured as f64;
    let mutter_ms = (cpu1 - cpu0).as_secs_f64() * 1000.0 / captured as f64;
    eprintln!(
        "mutter 1920x1080 BGRx: {captured} frames captured, {delivered} delivered in {elapsed:.2?} \
         ({:.1} fps); copy {copy_us:.0} µs/frame; BGRx→I420 {:.0} µs/frame; mutter CPU \
         {mutter_ms:.1} ms/frame ({:.0} % of a core)",
        captured as f64 / elapsed.as_secs_f64(),
        convert.as_secs_f64() * 1e6 / delivered.max(1) as f64,
        (cpu1 - cpu0).as_secs_f64() * 100.0 / elapsed.as_secs_f64(),
    );
    assert!(delivered > 0, "no frames");
}
