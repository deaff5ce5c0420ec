//! GameStream input packets into a real KWin through `KwinSink` (cargo feature `kwin`;
//! docs/input.md, "KWin fake input"): each packet is encoded as a client would, decoded by the
//! host's decoder, injected by the sink, and seen by `wev` on KWin.
//!
//! Uses the KWin session helper of the capture tests (`capture/tests/kwin_session`): a private
//! dbus/pipewire/wireplumber session and a copy of `kwin_wayland --virtual` (1280x720), killed
//! by a guard; without KWin or wev it is a listed skip. KWin 5.27's `--virtual` backend makes no
//! virtual outputs, so the sink aims at the backend's output `Virtual-0`.
//!
//! Run: `cargo test -p punktfunk-control --features kwin --test virtual_kwin_sink`.
#![cfg(feature = "kwin")]

use std::time::Duration;

use punktfunk_control::input::{
    InputEvent, InputSink as _, KwinSink, Modifiers, MouseButton, Utf8Text, decode, encode,
};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}
#[path = "../../capture/tests/kwin_session/mod.rs"]
mod kwin_session;
use kwin_session::{BACKEND_OUTPUT, Session, TIMEOUT, Wev, find_in_path};

/// Encodes as a client would, decodes as the host does, injects.
fn send(sink: &mut KwinSink, event: InputEvent) {
    let decoded = decode(&encode(&event)).expect("decode");
    sink.inject(&decoded).expect("inject");
}

#[test]
fn virtual_gamestream_input_reaches_a_client_through_the_kwin_sink() {
    if find_in_path("wev").is_none() || find_in_path("stdbuf").is_none() {
        skip::skip(
            "wev",
            "wev (or coreutils' stdbuf) is not installed (apt-get install wev)",
        );
        return;
    }
    let Some(session) = Session::start(1280, 720) else {
        return;
    };
    let wev = Wev::start(&session);
    let mapped = |l: &str| l.contains("configure");
    wev.wait_for(TIMEOUT, mapped)
        .unwrap_or_else(|| panic!("wev not mapped:\n{}", wev.all()));
    let mut sink = KwinSink::connect(&session.socket(), BACKEND_OUTPUT, Duration::from_secs(10))
        .expect("connect");

    // The centre of the client's screen is the centre of the output, where KWin centred wev.
    send(
        &mut sink,
        InputEvent::MouseAbsolute {
            x: 640,
            y: 360,
            width: 1279,
            height: 719,
        },
    );
    let enter = |l: &str| l.contains("wl_pointer") && l.contains("enter");
    wev.wait_for(TIMEOUT, enter)
        .unwrap_or_else(|| panic!("no pointer enter:\n{}", wev.all()));
    send(&mut sink, InputEvent::MouseMove { dx: 4, dy: 4 });
    let motion = |l: &str| l.contains("wl_pointer") && l.contains("motion");
    wev.wait_for(TIMEOUT, motion)
        .unwrap_or_else(|| panic!("no pointer motion:\n{}", wev.all()));
    for down in [true, false] {
        send(
            &mut sink,
            InputEvent::MouseButton {
                down,
                button: MouseButton::Left,
            },
        );
    }
    let press = |l: &str| l.contains("button") && l.contains("272") && l.contains("pressed");
    wev.wait_for(TIMEOUT, press)
        .unwrap_or_else(|| panic!("no left press:\n{}", wev.all()));
    send(&mut sink, InputEvent::Scroll { amount: 120 });
    let axis = |l: &str| l.contains("wl_pointer") && l.contains("axis") && l.contains("vertical");
    wev.wait_for(TIMEOUT, axis)
        .unwrap_or_else(|| panic!("no vertical axis:\n{}", wev.all()));

    let key = |down| InputEvent::Key {
        down,
        code: 0x8041, // VK 'A', Moonlight-Qt's bit 15 set
        modifiers: Modifiers(0),
        flags: 0,
    };
    send(&mut sink, key(true));
    send(&mut sink, key(false));
    wev.wait_for(TIMEOUT, |l| l.contains("sym: a "))
        .unwrap_or_else(|| panic!("no 'a':\n{}", wev.all()));
    // Shift as a flag only (no Shift key event): the sink synthesizes the Shift key, and KWin's
    // own xkb state turns A into 'A'.
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
    wev.wait_for(TIMEOUT, |l| l.contains("sym: A "))
        .unwrap_or_else(|| panic!("no 'A':\n{}", wev.all()));

    send(
        &mut sink,
        InputEvent::Text(Utf8Text::new("x").expect("text")),
    );
    let stats = sink.stats();
    assert_eq!(stats.unsupported, 1, "{stats:?}");
    assert_eq!(stats.unmapped_keys, 0, "{stats:?}");
    sink.input_mut().sync().expect("round trip");
}
