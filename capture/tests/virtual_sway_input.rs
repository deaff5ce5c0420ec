//! Input into a real sway (docs/input.md, "Wayland (wlroots) injection"): a virtual keyboard
//! and a virtual pointer bound to the session's own headless output, seen by `wev` (a Wayland
//! client that prints every event it gets) on that output.
//!
//! * `virtual_input_reaches_a_client_on_the_sessions_output`: a 1280x720 output, wev on it
//!   (focused: sway focuses new windows); through `WlrInput`: KEY_A press/release → wev prints
//!   `sym: a`, Shift+A → `sym: A` (the modifier masks reach the client), absolute motion →
//!   pointer `enter`, then positions stepping exactly as sent (absolute 60x40, relative 5x-3:
//!   the surface maps 1:1 onto the bound output), BTN_LEFT → `button: 272`
//!   pressed and released, vertical and horizontal scroll → `axis` events.
//! * `virtual_pointer_bound_to_output_two_reaches_only_the_client_there`: two outputs, a wev on
//!   each; a pointer bound to the second output moves 400x200 within the second wev and never
//!   enters the first; a pointer bound to the first then enters the first (and the second
//!   sees `leave`).
//! * `virtual_input_errors_cleanly_on_unknown_outputs_and_a_dead_sway`: an unknown output is
//!   `OutputGone`; after sway is killed, calls fail within the deadline.
//!
//! Every wait is bounded (wev's lines are collected by a reader thread and waited for with a
//! deadline); sway and the wev processes are killed by guards whatever happens. Without sway
//! or wev the tests skip (features `sway`, `wev`; both fatal under CI=true: scripts/setup.sh
//! installs both).
//!
//! Run: `cargo test -p punktfunk-capture --test virtual_sway_input`.

use std::time::{Duration, Instant};

use punktfunk_capture::display::{DisplayMode, VirtualDisplay as _};
use punktfunk_capture::wlroots::{ScrollAxis, SwayDisplay, WlrInput, WlrInputError};

mod common;
use common::{Sway, Wev, pointer_line};

/// Bound on every compositor wait inside `WlrInput`.
const INPUT_TIMEOUT: Duration = Duration::from_secs(5);

const KEY_A: u32 = 30;
const KEY_LEFTSHIFT: u32 = 42;
const BTN_LEFT: u32 = 0x110;

fn start_sway() -> Option<Sway> {
    Sway::start_with_wev()
}

/// Creates a 1280x720@60 output and focuses it, so the next window opens there.
fn focused_output(sway: &Sway) -> SwayDisplay {
    let mut display = SwayDisplay::create(&sway.ipc_socket, DisplayMode::new(1280, 720, 60))
        .expect("create_output");
    let cmd = format!("focus output {}", display.name());
    display.ipc().run_command(&cmd).expect("focus output");
    display
}

#[test]
fn virtual_input_reaches_a_client_on_the_sessions_output() {
    let Some(sway) = start_sway() else { return };
    let display = focused_output(&sway);
    let wev = Wev::start(&sway, "wev");
    let mut input =
        WlrInput::connect(&sway.wayland_socket, display.name(), INPUT_TIMEOUT).expect("connect");
    assert_eq!(input.output_name(), display.name());
    wev.wait_for_devices();

    // Keyboard: the keymap is used (KEY_A is "a"), and Shift reaches the client as a modifier.
    input.key(KEY_A, true).expect("key press");
    input.key(KEY_A, false).expect("key release");
    let a = wev.wait_for("sym: a", |l| l.contains("sym: a "));
    input.key(KEY_LEFTSHIFT, true).expect("shift press");
    assert_eq!(input.modifiers().depressed, 1, "Shift mask");
    input.key(KEY_A, true).expect("key press");
    input.key(KEY_A, false).expect("key release");
    input.key(KEY_LEFTSHIFT, false).expect("shift release");
    assert_eq!(input.modifiers().depressed, 0);
    wev.wait_for_after(a, "sym: A", |l| l.contains("sym: A "));

    // Pointer: absolute motion into the window (which fills the output but for its border and
    // title bar), a second absolute motion, a relative one. The steps between the positions
    // wev sees are exactly the steps sent: the 1280x720 surface maps 1:1 onto the bound
    // 1280x720 output (mapped onto the whole layout, they would be scaled).
    input.motion_absolute(640, 360, 1280, 720).expect("motion");
    wev.wait_for("pointer enter", |l| pointer_line(l, "enter"));
    input.motion_absolute(700, 400, 1280, 720).expect("motion");
    input.motion_relative(5.0, -3.0).expect("relative motion");
    wev.wait_for_steps(
        "positions 60x40 then 5x-3 apart",
        &[(60.0, 40.0), (5.0, -3.0)],
    );
    input.button(BTN_LEFT, true).expect("press");
    input.button(BTN_LEFT, false).expect("release");
    let pressed = wev.wait_for("left press", |l| {
        pointer_line(l, "button") && l.contains("272") && l.contains("pressed")
    });
    wev.wait_for_after(pressed, "left release", |l| {
        pointer_line(l, "button") && l.contains("272") && l.contains("released")
    });

    // Scroll, both axes, continuous and by wheel notches.
    let before = wev.len();
    input.axis(ScrollAxis::Vertical, 15.0).expect("axis");
    wev.wait_for_after(before, "vertical axis", |l| {
        pointer_line(l, "axis") && l.contains("vertical")
    });
    let before = wev.len();
    input
        .axis_discrete(ScrollAxis::Horizontal, -15.0, -1)
        .expect("axis_discrete");
    wev.wait_for_after(before, "horizontal axis", |l| {
        pointer_line(l, "axis") && l.contains("horizontal")
    });
    input.sync().expect("round trip");
}

#[test]
fn virtual_pointer_bound_to_output_two_reaches_only_the_client_there() {
    let Some(sway) = start_sway() else { return };
    let first = focused_output(&sway);
    let wev_first = Wev::start(&sway, "wev on the first output");
    let second = focused_output(&sway);
    let wev_second = Wev::start(&sway, "wev on the second output");

    let mut on_second =
        WlrInput::connect(&sway.wayland_socket, second.name(), INPUT_TIMEOUT).expect("connect");
    wev_second.wait_for("pointer capability", |l| {
        l.contains("capabilities") && l.contains("pointer")
    });
    wev_first.wait_for("pointer capability", |l| {
        l.contains("capabilities") && l.contains("pointer")
    });
    // Two positions of a 1280x720 surface, mapped onto the second output only: wev there sees
    // both, 400x200 apart (on the whole three-output layout they would be 3.5 times as far
    // apart, and on the first output's wev).
    // wev binds its wl_pointer a moment after printing the capability: the first position it
    // prints (an enter) says it has one, so the two motions after it reach it.
    on_second
        .motion_absolute(100, 100, 1280, 720)
        .expect("motion");
    wev_second.wait_for("pointer enter", |l| pointer_line(l, "enter"));
    on_second
        .motion_absolute(400, 300, 1280, 720)
        .expect("motion");
    on_second
        .motion_absolute(800, 500, 1280, 720)
        .expect("motion");
    wev_second.wait_for_steps("positions 400x200 apart", &[(400.0, 200.0)]);
    on_second.sync().expect("round trip");
    assert!(
        !wev_first.any(|l| pointer_line(l, "enter")),
        "the pointer bound to {} entered the window on {}",
        second.name(),
        first.name()
    );

    let mut on_first =
        WlrInput::connect(&sway.wayland_socket, first.name(), INPUT_TIMEOUT).expect("connect");
    on_first
        .motion_absolute(640, 360, 1280, 720)
        .expect("motion");
    wev_first.wait_for("pointer enter", |l| pointer_line(l, "enter"));
    wev_second.wait_for("pointer leave", |l| pointer_line(l, "leave"));
}

#[test]
fn virtual_input_errors_cleanly_on_unknown_outputs_and_a_dead_sway() {
    let Some(mut sway) = start_sway() else { return };
    match WlrInput::connect(&sway.wayland_socket, "HEADLESS-99", INPUT_TIMEOUT) {
        Err(WlrInputError::OutputGone(name)) => assert_eq!(name, "HEADLESS-99"),
        other => panic!("unknown output: {other:?}"),
    }
    let display = focused_output(&sway);
    let mut input =
        WlrInput::connect(&sway.wayland_socket, display.name(), INPUT_TIMEOUT).expect("connect");
    input.key(KEY_A, true).expect("key while sway lives");
    input.key(KEY_A, false).expect("key while sway lives");
    sway.kill();
    let start = Instant::now();
    let mut result = Ok(());
    for _ in 0..100 {
        result = input.motion_relative(1.0, 1.0).and_then(|()| input.sync());
        if result.is_err() {
            break;
        }
    }
    let err = result.expect_err("calls into a dead sway must fail");
    assert!(
        start.elapsed() < INPUT_TIMEOUT + Duration::from_secs(2),
        "error took {:?}: {err}",
        start.elapsed()
    );
    assert!(
        matches!(err, WlrInputError::Protocol(_) | WlrInputError::Io(_)),
        "{err:?}"
    );
}
