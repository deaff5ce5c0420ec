//! Arbitrary bytes into the punktfunk/1 decoders (control-stream frames, single message
//! bodies, QUIC datagrams): errors, never panics. Whatever decodes re-encodes canonically:
//! a body that decodes is exactly the body its message encodes to.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::pf1::datagram::Datagram;
use punktfunk_control::pf1::message::{FRAME_HEADER_LEN, FrameDecoder, Message};

fuzz_target!(|data: &[u8]| {
    // One body, no length prefix.
    if let Ok(msg) = Message::decode(data) {
        let mut framed = Vec::new();
        msg.encode(&mut framed).expect("a decoded message encodes");
        assert_eq!(&framed[FRAME_HEADER_LEN..], data, "canonical encoding");
    }
    // A stream of frames, arriving in pieces of a size the first byte picks.
    let (step, rest) = match data.split_first() {
        Some((&s, rest)) => (usize::from(s % 16) + 1, rest),
        None => (1, data),
    };
    let mut d = FrameDecoder::new();
    'feed: for piece in rest.chunks(step) {
        d.push(piece);
        loop {
            match d.next_message() {
                Ok(Some(msg)) => {
                    let mut framed = Vec::new();
                    msg.encode(&mut framed).expect("a decoded message encodes");
                    let mut again = FrameDecoder::new();
                    again.push(&framed);
                    assert_eq!(again.next_message(), Ok(Some(msg)));
                }
                Ok(None) => break,
                Err(_) => break 'feed,
            }
        }
    }
    // A datagram.
    if let Ok(dg) = Datagram::decode(data) {
        let mut out = Vec::new();
        dg.encode(&mut out);
        assert_eq!(Datagram::decode(&out), Ok(dg));
    }
});
