//! Arbitrary ENet payloads into the control-message layer: dropped and counted, no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::stream::control::ControlChannel;

fuzz_target!(|data: &[u8]| {
    let mut ch = ControlChannel::new(&[1; 16]);
    for chunk in data.split(|&b| b == 0xff) {
        let mut b = chunk.to_vec();
        let _ = ch.handle_packet(&mut b);
    }
});
