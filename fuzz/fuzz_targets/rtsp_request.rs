//! Arbitrary bytes as an RTSP request through the handshake: errors or responses, no panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::stream::rtsp::{Handshake, HandshakeParams, parse_request};
use punktfunk_control::stream::sdp::{HostOffer, StreamConfig};

fuzz_target!(|data: &[u8]| {
    let _ = StreamConfig::parse(data);
    if let Ok(Some(req)) = parse_request(data) {
        let mut h = Handshake::new(HandshakeParams {
            session_id: "F".into(),
            ping_payload: *b"0123456789abcdef",
            connect_data: 1,
            audio_port: 1,
            video_port: 2,
            control_port: 3,
            offer: HostOffer {
                feature_flags: 0,
                encryption_supported: 7,
                // Required, so ANNOUNCE also takes the refusal path.
                encryption_requested: 7,
                hevc: true,
                av1: true,
            },
        });
        let (resp, _) = h.handle(&req);
        let _ = resp.to_bytes();
    }
});
