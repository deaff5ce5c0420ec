//! Virtual displays on a real sway, started headless by each test (docs/capture.md, "Virtual
//! displays: sway").
//!
//! * `virtual_output_is_created_painted_and_captured`: a 1280x720@60 output, painted solid red
//!   through IPC (`output NAME bg #ff0000 solid_color`, drawn by swaybg), captured with
//!   wlr-screencopy: 1280x720 frames, red pixels, increasing capture times; the BGRx → I420
//!   converter turns them into BT.709 red.
//! * `virtual_output_mode_change_is_honoured`: 1280x720 → 1920x1080@60: the next captures are
//!   1920x1080 (and still red).
//! * `virtual_output_removed_is_gone_and_capture_errors`: after `remove` (and after drop)
//!   GET_OUTPUTS no longer lists the output; capturing it is a clean error within the timeout.
//!   Needs sway ≥ 1.8 (`output NAME unplug`); on sway 1.7 (Debian 12) `remove` must return
//!   `DisplayError::Unsupported` and the rest is a listed skip (`sway_unplug`).
//! * `virtual_capture_errors_cleanly_on_unknown_outputs_and_a_dead_sway`: an unknown output
//!   name is `OutputGone` at connect; killing sway mid-session makes captures return errors
//!   within the timeout.
//!
//! Sway refuses to run as root, so under root (CI) the test runs it as `nobody` through
//! `setpriv`, with its own XDG_RUNTIME_DIR (a 0700 temp dir owned by nobody); root still
//! reaches the sockets in there. Without sway the tests skip (fatal under CI=true:
//! scripts/setup.sh installs it). The sway process is killed by a guard, whatever happens.
//!
//! Run: `cargo test -p punktfunk-capture --test virtual_sway` (names contain `virtual`).

use std::time::{Duration, Instant};

use punktfunk_capture::Frame;
use punktfunk_capture::convert::bgrx_to_i420;
use punktfunk_capture::display::{
    CaptureError, CapturedFrame, DisplayBackend as _, DisplayError, DisplayMode, FrameSource as _,
    PixelFormat, VirtualDisplay,
};
use punktfunk_capture::wlroots::{Screencopy, SwayDisplay, SwayDisplays};

mod common;
use common::{Sway, skip};

/// Bound on every capture wait.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(5);

/// Creates a 1280x720@60 output and paints it red.
fn red_output(sway: &Sway) -> SwayDisplay {
    let mut display = SwayDisplay::create(&sway.ipc_socket, DisplayMode::new(1280, 720, 60))
        .expect("create_output");
    let cmd = format!("output {} bg #ff0000 solid_color", display.name());
    display.ipc().run_command(&cmd).expect("paint red");
    display
}

/// Mean (R, G, B) of the frame's pixels, sampled every 7th pixel of every 5th row.
fn mean_rgb(f: &CapturedFrame<'_>) -> (u8, u8, u8) {
    assert!(matches!(f.format, PixelFormat::Bgrx | PixelFormat::Bgra));
    let (mut sum, mut n) = ([0u64; 3], 0u64);
    for row in f.data.chunks(f.stride).step_by(5) {
        for px in row[..4 * f.width as usize].chunks(4).step_by(7) {
            sum[0] += u64::from(px[2]);
            sum[1] += u64::from(px[1]);
            sum[2] += u64::from(px[0]);
            n += 1;
        }
    }
    let m = |s: u64| (s / n.max(1)) as u8;
    (m(sum[0]), m(sum[1]), m(sum[2]))
}

fn is_red((r, g, b): (u8, u8, u8)) -> bool {
    r >= 245 && g <= 10 && b <= 10
}

/// Captures until a frame is red (swaybg draws a moment after the command), ≤ 5 s.
fn capture_red(cap: &mut Screencopy, want: (u32, u32)) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let f = cap.next_frame().expect("capture");
        assert_eq!((f.width, f.height), want, "frame size");
        assert!(f.stride >= 4 * f.width as usize);
        assert_eq!(f.data.len(), f.stride * f.height as usize);
        let rgb = mean_rgb(&f);
        if is_red(rgb) {
            return (f.index, f.capture_us);
        }
        assert!(
            Instant::now() < deadline,
            "output never turned red: {rgb:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn virtual_output_is_created_painted_and_captured() {
    let Some(sway) = Sway::start() else { return };
    let display = red_output(&sway);
    assert!(sway.output_names().iter().any(|n| n == display.name()));
    assert_eq!(display.mode(), DisplayMode::new(1280, 720, 60));

    let mut cap = Screencopy::connect(&sway.wayland_socket, display.name(), CAPTURE_TIMEOUT)
        .expect("screencopy connect");
    let (_, first_us) = capture_red(&mut cap, (1280, 720));
    let mut last_us = first_us;
    let mut buf = Vec::new();
    for _ in 0..5 {
        let f = cap.capture_into(&mut buf).expect("capture into");
        assert_eq!((f.width, f.height), (1280, 720));
        assert!(is_red(mean_rgb(&f)), "{:?}", mean_rgb(&f));
        assert!(f.capture_us >= last_us, "capture times increase");
        last_us = f.capture_us;
        // Every pixel red, not just the mean.
        for row in f.data.chunks(f.stride) {
            for px in row[..4 * 1280].chunks(4) {
                assert!(px[2] >= 250 && px[1] <= 5 && px[0] <= 5, "pixel {px:?}");
            }
        }
        // Into encoder input: BT.709 limited-range red (63, 102, 240) ±2.
        let mut i420 = Frame::new(1280, 720).expect("frame");
        bgrx_to_i420(f.data, f.stride, &mut i420).expect("convert");
        let (y, u, v) = (i420.y()[640 * 1280 + 640], i420.u()[100], i420.v()[100]);
        assert!(
            y.abs_diff(63) <= 2 && u.abs_diff(102) <= 2 && v.abs_diff(240) <= 2,
            "YUV {:?}",
            (y, u, v)
        );
    }
}

#[test]
fn virtual_output_mode_change_is_honoured() {
    let Some(sway) = Sway::start() else { return };
    let mut display = red_output(&sway);
    let mut cap = Screencopy::connect(&sway.wayland_socket, display.name(), CAPTURE_TIMEOUT)
        .expect("screencopy connect");
    capture_red(&mut cap, (1280, 720));

    let hd = DisplayMode::new(1920, 1080, 60);
    display.set_mode(hd).expect("mode change");
    assert_eq!(display.mode(), hd);
    let listed = sway
        .ipc()
        .outputs()
        .expect("GET_OUTPUTS")
        .into_iter()
        .find(|o| o.name == display.name())
        .expect("output listed");
    assert_eq!(listed.mode, Some(hd));
    // The very next captures have the new size (swaybg redraws red at it).
    for _ in 0..3 {
        let f = cap.next_frame().expect("capture after mode change");
        assert_eq!((f.width, f.height), (1920, 1080));
    }
    capture_red(&mut cap, (1920, 1080));
}

#[test]
fn virtual_output_removed_is_gone_and_capture_errors() {
    let Some(sway) = Sway::start() else { return };
    let mut display = red_output(&sway);
    let name = display.name().to_owned();
    let mut cap = Screencopy::connect(&sway.wayland_socket, &name, CAPTURE_TIMEOUT)
        .expect("screencopy connect");
    capture_red(&mut cap, (1280, 720));

    if !display.can_remove() {
        // sway 1.7 (Debian 12): no `output NAME unplug`, and its headless backend refuses
        // `disable`. remove() says so cleanly and the output stays.
        match display.remove() {
            Err(DisplayError::Unsupported(why)) => {
                skip::skip("sway_unplug", format!("output removal not checked: {why}"));
            }
            other => panic!("remove on a sway without unplug: {other:?}"),
        }
        assert!(sway.output_names().contains(&name));
        return;
    }
    display.remove().expect("remove");
    display.remove().expect("removing twice is fine");
    assert!(!sway.output_names().contains(&name), "still listed");
    let started = Instant::now();
    for _ in 0..3 {
        match cap.next_frame() {
            Err(CaptureError::OutputGone(n)) => assert_eq!(n, name),
            Err(CaptureError::Failed) => {} // the copy failed before the removal event arrived
            other => panic!("capture of a removed output: {other:?}"),
        }
    }
    assert!(started.elapsed() < CAPTURE_TIMEOUT, "errors promptly");
    match Screencopy::connect(&sway.wayland_socket, &name, CAPTURE_TIMEOUT) {
        Err(CaptureError::OutputGone(n)) => assert_eq!(n, name),
        other => panic!("connect to a removed output: {other:?}"),
    }

    // Drop removes too, through the backend trait.
    let mut backend = SwayDisplays::new(&sway.ipc_socket);
    let second = backend
        .create_output(DisplayMode::new(640, 480, 30))
        .expect("create through the backend");
    let second_name = second.name().to_owned();
    assert!(sway.output_names().contains(&second_name));
    drop(second);
    assert!(!sway.output_names().contains(&second_name), "drop unplugs");
}

#[test]
fn virtual_capture_errors_cleanly_on_unknown_outputs_and_a_dead_sway() {
    let Some(mut sway) = Sway::start() else {
        return;
    };
    // A name no output has: a clean error at connect.
    match Screencopy::connect(&sway.wayland_socket, "HEADLESS-99", CAPTURE_TIMEOUT) {
        Err(CaptureError::OutputGone(n)) => assert_eq!(n, "HEADLESS-99"),
        other => panic!("connect to an unknown output: {other:?}"),
    }
    let display = red_output(&sway);
    let mut cap = Screencopy::connect(&sway.wayland_socket, display.name(), CAPTURE_TIMEOUT)
        .expect("screencopy connect");
    capture_red(&mut cap, (1280, 720));

    // The compositor dies under the session: errors, no panic, no hang.
    sway.kill();
    let started = Instant::now();
    for _ in 0..3 {
        match cap.next_frame() {
            Err(CaptureError::Protocol(_) | CaptureError::Io(_)) => {}
            other => panic!("capture from a dead sway: {other:?}"),
        }
    }
    assert!(started.elapsed() < CAPTURE_TIMEOUT, "errors promptly");
    drop(display); // its unplug fails (connection gone): logged, no panic
}
