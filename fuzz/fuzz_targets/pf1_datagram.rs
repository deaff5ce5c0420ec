//! The punktfunk/1 reassembler driven by a fuzzer-chosen script: authentic frames from a real
//! sender (so the state machine behind authentication is reached), delivered dropped,
//! duplicated, reordered, bit-flipped or truncated, mixed with raw garbage, key updates and
//! clock jumps. No panics, and every frame delivered is byte-exact and in order.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use punktfunk_engine::pf1::{
    DataKey, FrameInfo, KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, Pf1Sender,
    Pf1SenderConfig,
};

fn content(id: u32, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| {
            (i as u32)
                .wrapping_mul(167)
                .wrapping_add(id.wrapping_mul(31)) as u8
        })
        .collect()
}

struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&b, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(b)
    }
    fn u16(&mut self) -> Option<u16> {
        Some(u16::from_le_bytes([self.byte()?, self.byte()?]))
    }
}

fuzz_target!(|data: &[u8]| {
    let key = |generation: u32| {
        DataKey::from_key_material(&[0x33; KEY_MATERIAL_LEN]).with_generation(generation)
    };
    let Ok(mut tx) = Pf1Sender::new(
        Pf1SenderConfig {
            shard_len: 64,
            max_frame_len: 64 * 1024,
            ..Default::default()
        },
        key(0),
    ) else {
        return;
    };
    let Ok(mut rx) = Pf1Receiver::new(
        Pf1ReceiverConfig {
            max_frame_len: 64 * 1024,
            max_frames_in_flight: 3,
            frame_timeout: Duration::from_millis(50),
            ..Default::default()
        },
        key(0),
    ) else {
        return;
    };
    let start = Instant::now();
    let mut now = start;
    let mut generation = 0u32;
    // Datagrams sent and not yet delivered, and every frame's length by id.
    let mut wire: Vec<Vec<u8>> = Vec::new();
    let mut lens: Vec<usize> = Vec::new();
    let mut out = vec![0u8; tx.max_output(20_000)];
    let mut last_delivered: Option<u32> = None;
    let mut s = Script(data);
    while let Some(op) = s.byte() {
        match op % 10 {
            0 => {
                let len = usize::from(s.u16().unwrap_or(0)) % 20_000;
                let id = tx.next_frame_id();
                let frame = content(id, len);
                if let Ok(p) = tx.packetize(&frame, &FrameInfo::default(), &mut out) {
                    lens.push(len);
                    wire.extend(out[..p.len()].chunks(p.layout.stride).map(<[u8]>::to_vec));
                }
            }
            1 | 2 | 3 => {
                // Deliver (and forget) the datagram at a chosen position.
                if !wire.is_empty() {
                    let i = usize::from(s.byte().unwrap_or(0)) % wire.len();
                    let d = wire.remove(i);
                    let _ = rx.handle_datagram(now, &d);
                }
            }
            4 => {
                // Deliver a copy, keeping the original for later (a duplicate).
                if !wire.is_empty() {
                    let i = usize::from(s.byte().unwrap_or(0)) % wire.len();
                    let d = wire[i].clone();
                    let _ = rx.handle_datagram(now, &d);
                }
            }
            5 => {
                // A bit flipped or the datagram truncated: must be refused.
                if !wire.is_empty() {
                    let i = usize::from(s.byte().unwrap_or(0)) % wire.len();
                    let mut d = wire[i].clone();
                    let at = usize::from(s.u16().unwrap_or(0)) % (d.len() + 1);
                    if at == d.len() {
                        d.truncate(usize::from(s.byte().unwrap_or(0)) % d.len());
                    } else {
                        d[at] ^= 1 << (s.byte().unwrap_or(0) % 8);
                    }
                    assert!(
                        rx.handle_datagram(now, &d).is_err(),
                        "mutated datagram accepted"
                    );
                }
            }
            6 => {
                let n = usize::from(s.byte().unwrap_or(0));
                let raw: Vec<u8> = (0..n).filter_map(|_| s.byte()).collect();
                let _ = rx.handle_datagram(now, &raw);
            }
            7 => {
                now += Duration::from_millis(u64::from(s.byte().unwrap_or(0)));
                rx.handle_timeout(now);
            }
            8 => {
                tx.set_parity_percent(s.byte().unwrap_or(0));
                let r = rx.take_loss_report();
                assert!(r.received <= r.expected);
            }
            _ => {
                generation += 1;
                tx.update_key(key(generation))
                    .expect("generations only grow here");
                rx.install_key(key(generation));
            }
        }
        while let Some(e) = rx.poll_event() {
            let (first, count) = match e {
                Pf1Event::Frame(f) => {
                    let len = lens[f.frame_id as usize];
                    assert!(f.data == content(f.frame_id, len), "frame corrupted");
                    let id = f.frame_id;
                    rx.recycle(f.data);
                    (id, 1)
                }
                Pf1Event::FramesLost { first, count } => (first, count),
            };
            assert!(count > 0);
            if let Some(last) = last_delivered {
                assert_eq!(first, last.wrapping_add(1), "events out of order");
            }
            last_delivered = Some(first.wrapping_add(count - 1));
        }
    }
});
