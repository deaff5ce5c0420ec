//! Arbitrary bytes into the control-message envelope parser: errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_engine::gamestream::wire::control::{ControlCipher, Direction};

fuzz_target!(|data: &[u8]| {
    let c = ControlCipher::new(&[3; 16]);
    let mut buf = data.to_vec();
    let _ = c.open(&mut buf, Direction::ClientToHost);
});
