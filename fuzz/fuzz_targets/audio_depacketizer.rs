//! Arbitrary datagrams into the audio depacketizer (with decryption): no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_engine::gamestream::wire::audio::{AudioDepacketizer, AudioKey};

fuzz_target!(|data: &[u8]| {
    let mut d = AudioDepacketizer::new(
        5,
        Some(AudioKey {
            key: [7; 16],
            key_id: 1,
        }),
    );
    for dg in data.split(|&b| b == 0xff) {
        let _ = d.handle_datagram(dg);
    }
    d.flush();
    while d.poll_packet().is_some() {}
});
