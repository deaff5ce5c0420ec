//! Arbitrary bytes into the GameStream input decoder: errors, never panics. Whatever decodes
//! must survive encode -> decode unchanged, and the gamepad tracker must accept it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::input::{CountingSink, Gamepads, InputSink, decode, encode};

fuzz_target!(|data: &[u8]| {
    let mut pads = Gamepads::new();
    let mut sink = CountingSink::new();
    // Several packets per input: split on 0xFE so the tracker sees sequences.
    for packet in data.split(|&b| b == 0xFE) {
        if let Ok(event) = decode(packet) {
            let again = decode(&encode(&event));
            assert_eq!(again, Ok(event), "decode(encode(e)) == e");
            pads.handle_event(&event);
            while pads.poll_change().is_some() {}
            let _ = sink.inject(&event);
        }
    }
});
