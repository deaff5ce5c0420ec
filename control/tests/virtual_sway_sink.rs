//! GameStream input packets into a real sway through `WlrSink` (docs/input.md, "Wayland
//! (wlroots) injection"): each packet is encoded as a client would, decoded by the host's
//! decoder, injected by the sink, and seen by `wev` on the session's own headless output.
//!
//! Uses the sway/wev helpers of the capture tests (`capture/tests/common`), so sway runs
//! headless as `nobody` under root, killed by a guard; without sway or wev it is a listed skip.
//!
//! Run: `cargo test -p punktfunk-control --test virtual_sway_sink`.

use std::time::Duration;

use punktfunk_capture::display::{DisplayMode, VirtualDisplay as _};
use punktfunk_capture::wlroots::SwayDisplay;
use punktfunk_control::input::{
    InputEvent, InputSink as _, Modifiers, MouseButton, TouchEvent, TouchKind, Utf8Text, WlrSink,
    decode, encode,
};

#[path = "../../capture/tests/common/mod.rs"]
mod common;
use common::{Sway, Wev, pointer_line};

/// Encodes as a client would, decodes as the host does, injects.
fn send(sink: &mut WlrSink, event: InputEvent) {
    let decoded = decode(&encode(&event)).expect("decode");
    sink.inject(&decoded).expect("inject");
}

fn touch(kind: TouchKind, x: f32, y: f32) -> InputEvent {
    InputEvent::Touch(TouchEvent {
        kind,
        pointer_id: 1,
        rotation: None,
        x,
        y,
        pressure_or_distance: 1.0,
        contact_major: 0.0,
        contact_minor: 0.0,
    })
}

#[test]
fn virtual_gamestream_input_reaches_a_client_through_the_wlr_sink() {
    let Some(sway) = Sway::start_with_wev() else {
        return;
    };
    let mut display = SwayDisplay::create(&sway.ipc_socket, DisplayMode::new(1280, 720, 60))
        .expect("create_output");
    let cmd = format!("focus output {}", display.name());
    display.ipc().run_command(&cmd).expect("focus output");
    let wev = Wev::start(&sway, "wev");
    let mut sink = WlrSink::connect(&sway.wayland_socket, display.name(), Duration::from_secs(5))
        .expect("connect");
    wev.wait_for_devices();

    let key = |down| InputEvent::Key {
        down,
        code: 0x8041, // VK 'A', Moonlight-Qt's bit 15 set
        modifiers: Modifiers(0),
        flags: 0,
    };
    send(&mut sink, key(true));
    send(&mut sink, key(false));
    wev.wait_for("sym: a", |l| l.contains("sym: a "));
    // Shift as a flag only (no Shift key event): the sink synthesizes it.
    send(
        &mut sink,
        InputEvent::Key {
            down: true,
            code: 0x41,
            modifiers: Modifiers(Modifiers::SHIFT),
            flags: 0,
        },
    );
    send(&mut sink, key(false));
    wev.wait_for("sym: A", |l| l.contains("sym: A "));

    send(
        &mut sink,
        InputEvent::MouseAbsolute {
            x: 640,
            y: 360,
            width: 1279,
            height: 719,
        },
    );
    wev.wait_for("pointer enter", |l| pointer_line(l, "enter"));
    send(&mut sink, InputEvent::MouseMove { dx: 4, dy: 4 });
    wev.wait_for("pointer motion", |l| pointer_line(l, "motion"));
    for down in [true, false] {
        send(
            &mut sink,
            InputEvent::MouseButton {
                down,
                button: MouseButton::Right,
            },
        );
    }
    wev.wait_for("right press", |l| {
        pointer_line(l, "button") && l.contains("273") && l.contains("pressed")
    });
    send(&mut sink, InputEvent::Scroll { amount: 120 });
    wev.wait_for("vertical axis", |l| {
        pointer_line(l, "axis") && l.contains("vertical")
    });
    send(&mut sink, InputEvent::HScroll { amount: -120 });
    wev.wait_for("horizontal axis", |l| {
        pointer_line(l, "axis") && l.contains("horizontal")
    });
    // One touch: pointer to the spot and the left button.
    send(&mut sink, touch(TouchKind::Down, 0.25, 0.25));
    send(&mut sink, touch(TouchKind::Up, 0.25, 0.25));
    let pressed = wev.wait_for("touch press", |l| {
        pointer_line(l, "button") && l.contains("272") && l.contains("pressed")
    });
    wev.wait_for_after(pressed, "touch release", |l| {
        pointer_line(l, "button") && l.contains("272") && l.contains("released")
    });

    let text = InputEvent::Text(Utf8Text::new("x").expect("text"));
    send(&mut sink, text);
    let stats = sink.stats();
    assert_eq!(stats.unsupported, 1, "{stats:?}");
    assert_eq!(stats.unmapped_keys, 0, "{stats:?}");
    sink.input_mut().sync().expect("round trip");
}
