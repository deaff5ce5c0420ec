//! Arbitrary bytes into the encrypted-RTSP envelope (length word, then open): errors, never
//! panics, and a length it reports is what `open` then accepts or refuses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_engine::gamestream::wire::control::Direction;
use punktfunk_engine::gamestream::wire::rtsp::{RtspCipher, message_len};

fuzz_target!(|data: &[u8]| {
    let _ = message_len(data);
    let c = RtspCipher::new(&[3; 16]);
    let mut buf = data.to_vec();
    let _ = c.open(&mut buf, Direction::ClientToHost);
});
