//! Arbitrary datagrams into the GameStream video depacketizer: errors and counters, no panics.
//! The input is split into datagrams at 0xFF 0xFF markers so one run can build up block state.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_engine::gamestream::wire::video::VideoDepacketizer;

fuzz_target!(|data: &[u8]| {
    let Ok(mut d) = VideoDepacketizer::new(64) else {
        return;
    };
    for dg in data.split(|&b| b == 0xff) {
        let _ = d.handle_datagram(dg);
        while d.poll_frame().is_some() {}
    }
});
