//! A Mutter desktop as `serve` uses it (feature `mutter`): `MutterMedia` makes the stream's
//! virtual monitor at the client's mode, its source hands out I420 frames stamped with their
//! capture time, and GameStream input packets given to the stream's own input handler reach
//! `wev` on that monitor through the RemoteDesktop session (docs/input.md, "Mutter
//! RemoteDesktop").
//!
//! Uses the private-session helpers of the capture tests (`capture/tests/mutter_session`):
//! dbus-daemon, pipewire, wireplumber and `mutter --headless --wayland --no-x11` in a 0700
//! runtime dir, all killed by a guard; without them it is a listed skip.
//!
//! Run: `cargo test -p punktfunk-control --features mutter --test virtual_mutter_sink`.
#![cfg(feature = "mutter")]

use std::time::{Duration, Instant};

use punktfunk_control::input::{InputEvent, Modifiers, MouseButton, encode};
use punktfunk_control::media::{MutterEndpoint, MutterMedia};
use punktfunk_control::stream::sdp::StreamConfig;
use punktfunk_control::stream::session::MediaFactory as _;
use punktfunk_engine::pipeline::{Captured, PipelineControl, StageContext, StageId};
use punktfunk_engine::pool::FramePool;

#[path = "../../capture/tests/mutter_session/mod.rs"]
mod mutter_session;
use mutter_session::{Session, Wev};

/// A Moonlight ANNOUNCE for 1280x720@60 H.264 (moonlight-common-c's SdpGenerator.c shape;
/// only what `StreamConfig::parse` needs).
const ANNOUNCE: &str = "v=0\r\n\
a=x-nv-video[0].clientViewportWd:1280 \r\n\
a=x-nv-video[0].clientViewportHt:720 \r\n\
a=x-nv-video[0].maxFPS:60 \r\n\
a=x-nv-video[0].packetSize:1392 \r\n\
a=x-nv-vqos[0].bw.maximumBitrateKbps:16000 \r\n\
a=x-nv-vqos[0].bitStreamFormat:0 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\n\
a=x-nv-audio.surround.channelMask:3 \r\n\
a=x-nv-aqos.packetDuration:5 \r\n\
t=0 0\r\n";

#[test]
fn virtual_mutter_media_captures_and_takes_gamestream_input() {
    let Some(session) = Session::start(&["wev", "stdbuf"]) else {
        return;
    };
    drop(session.bus()); // waits for Mutter's ScreenCast on the bus
    let endpoint = MutterEndpoint {
        bus: session.bus_address(),
        pipewire: Some(session.pipewire_socket()),
    };
    let media = MutterMedia::connect(&endpoint).expect("connect");
    let config = StreamConfig::parse(ANNOUNCE.as_bytes()).expect("announce");
    let mut video = media
        .video(&config)
        .unwrap_or_else(|e| panic!("video: {e}; logs:\n{}", session.logs()));
    let display = video.display.clone().expect("a display of its own");
    assert!(
        display.starts_with("/org/gnome/Mutter/ScreenCast/Stream/"),
        "{display}"
    );
    let mut input = video.input.take().expect("per-stream input");
    let mut send = |event: InputEvent| input.handle_input(&encode(&event));

    // Frames: the source converts the monitor's BGRx to the session's I420 and stamps it.
    // Mutter sends frames on damage; moving the pointer (cursor embedded) is damage.
    let pool = FramePool::new(4, video.frame_capacity).expect("pool");
    let control = PipelineControl::default();
    let mut cx = StageContext::new(StageId::Capture, &pool, &control);
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stamps = Vec::new();
    let mut step = 0i16;
    while stamps.len() < 3 {
        assert!(
            Instant::now() < deadline,
            "only {} frames in 10 s",
            stamps.len()
        );
        step += 1;
        send(InputEvent::MouseAbsolute {
            x: 100 + (step % 40) * 20,
            y: 100 + (step % 20) * 20,
            width: 1279,
            height: 719,
        });
        match video.source.poll_frame(&mut cx).expect("poll") {
            Captured::Frame(buf) => {
                assert_eq!(buf.len(), 1280 * 720 * 3 / 2);
                stamps.push(buf.meta.capture_ns);
            }
            Captured::Idle => {}
            Captured::Finished => panic!("source ended"),
        }
    }
    assert!(stamps.windows(2).all(|w| w[0] < w[1]), "{stamps:?}");
    eprintln!("I420 frames stamped {stamps:?} ns");

    // Input: wev on the monitor gets a click and a key from GameStream packets.
    let wev = Wev::start(&session);
    assert!(
        wev.wait_for("xdg_toplevel] configure", Duration::from_secs(10)),
        "wev never got configured:\n{}",
        wev.tail()
    );
    let mut entered = false;
    'sweep: for y in (20..720i16).step_by(60) {
        for x in (20..1280i16).step_by(80) {
            send(InputEvent::MouseAbsolute {
                x,
                y,
                width: 1279,
                height: 719,
            });
            if wev.wait_for("wl_pointer] enter", Duration::from_millis(30)) {
                entered = true;
                break 'sweep;
            }
        }
    }
    assert!(entered, "pointer never entered wev:\n{}", wev.tail());
    let click = |send: &mut dyn FnMut(InputEvent)| {
        for down in [true, false] {
            send(InputEvent::MouseButton {
                down,
                button: MouseButton::Left,
            });
        }
    };
    click(&mut send);
    if !wev.wait_for("button: 272 (left), state: 1", Duration::from_secs(2)) {
        click(&mut send); // Mutter 43 can drop the first button of a session (warm-up)
    }
    assert!(
        wev.wait_for("button: 272 (left), state: 1", Duration::from_secs(5)),
        "no click in wev:\n{}",
        wev.tail()
    );
    let key_a = |send: &mut dyn FnMut(InputEvent)| {
        for down in [true, false] {
            send(InputEvent::Key {
                down,
                code: 0x8041, // VK 'A', Moonlight-Qt's bit 15 set
                modifiers: Modifiers(0),
                flags: 0,
            });
        }
    };
    key_a(&mut send);
    if !wev.wait_for("sym: a", Duration::from_secs(2)) {
        key_a(&mut send); // likewise the first key after the keyboard focus came
    }
    assert!(
        wev.wait_for("sym: a", Duration::from_secs(5)),
        "no key in wev:\n{}",
        wev.tail()
    );
}
