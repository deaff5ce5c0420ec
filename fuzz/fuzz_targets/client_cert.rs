//! Arbitrary bytes as a client certificate, DER and PEM (pairing phase 1 and the TLS layer
//! parse what clients send): errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::gamestream::cert::{Certificate, SigAlg};

fuzz_target!(|data: &[u8]| {
    if let Ok(c) = Certificate::from_der(data) {
        let _ = c.verify(SigAlg::RsaPkcs1Sha256, b"message", data);
        let _ = c.verify_pairing_signature(b"message", data);
        let _ = Certificate::from_pem(c.to_pem().as_bytes());
    }
    let _ = Certificate::from_pem(data);
});
