//! punktfunk/1 over real loopback sockets: `Pf1FrameSender` (io_uring + GSO where the kernel
//! has it) → `Pf1ReceiveLoop` (GRO) → frames, byte-exact and in order, with and without
//! injected loss.
//!
//! Both receive backends are covered (recvmmsg and io_uring multishot). Each frame is sent
//! whole before the receiver drains it, so the tests need no threads; the
//! receive buffer (16 MiB asked for) must hold one frame's datagrams, and frames are sized to
//! what the kernel granted. No timing assertions. Paths the kernel lacks are skipped visibly
//! (`skip::skip`, docs/testing.md).

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use punktfunk_engine::config::SendConfig;
use punktfunk_engine::io::pf1::{Pf1FrameSender, Pf1ReceiveLoop};
use punktfunk_engine::io::{
    Caps, Pacing, ReceiveConfig, RecvPath, RecvPathPreference, SendPath, UdpReceiver, UdpSender,
};
use punktfunk_engine::pf1::{
    DataKey, FrameInfo, KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, Pf1Sender,
    Pf1SenderConfig,
};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

fn caps() -> &'static Caps {
    static CAPS: OnceLock<Caps> = OnceLock::new();
    CAPS.get_or_init(|| {
        let c = Caps::probe();
        eprintln!("{c}");
        c
    })
}

fn key() -> DataKey {
    DataKey::from_key_material(&[0x5c; KEY_MATERIAL_LEN])
}

fn content(id: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(31) ^ id.wrapping_mul(7) ^ (i >> 9)) as u8)
        .collect()
}

fn pair(
    path: Option<SendPath>,
    recv: RecvPathPreference,
) -> Option<(Pf1FrameSender, Pf1ReceiveLoop, SocketAddr)> {
    let any: SocketAddr = "127.0.0.1:0".parse().expect("literal");
    let udp = UdpReceiver::bind(
        any,
        &ReceiveConfig {
            gro: true,
            socket_receive_buffer: 16 << 20,
            batch: 8,
            path: recv,
            ..Default::default()
        },
        caps(),
    )
    .expect("loopback receiver binds");
    if recv == RecvPathPreference::UringMultishot && udp.path() != RecvPath::UringMultishot {
        skip::skip("multishot_recv", "multishot receive not supported here");
        return None;
    }
    let dest = udp.local_addr();
    let tx = match path {
        Some(p) => match UdpSender::with_path(any, p, &SendConfig::default(), caps()) {
            Ok(tx) => tx,
            Err(e) => {
                skip::skip(
                    if p.uses_uring() { "io_uring" } else { "gso" },
                    format!("{p}: {e}"),
                );
                return None;
            }
        },
        None => UdpSender::new(any, &SendConfig::default(), caps()).expect("a send path"),
    };
    let from = tx.local_addr();
    let sender = Pf1FrameSender::new(
        Pf1Sender::new(Pf1SenderConfig::default(), key()).expect("valid config"),
        tx,
    );
    let mut rx = Pf1ReceiveLoop::new(
        udp,
        Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).expect("valid config"),
    );
    rx.set_peer(Some(from));
    Some((sender, rx, dest))
}

/// Sends frames of `sizes`, dropping every datagram for which `drop(n)` holds (`n` counts
/// datagrams received), and checks that each arrives intact.
fn run(
    path: Option<SendPath>,
    recv: RecvPathPreference,
    sizes: &[usize],
    drop: impl Fn(u64) -> bool,
) {
    let Some((mut tx, mut rx, dest)) = pair(path, recv) else {
        return;
    };
    // One frame's datagrams must fit the receive buffer (SO_RCVBUF counts about twice the
    // payload, socket(7)); shrink frames where the kernel granted less.
    let budget = rx.udp().receive_buffer() / 3;
    eprintln!(
        "path {}, GRO {}, receive buffer {} bytes",
        tx.udp().setup(),
        rx.udp().gro(),
        rx.udp().receive_buffer()
    );
    let mut seen = 0u64;
    for (id, &len) in sizes.iter().enumerate() {
        let len = len.min(budget);
        let frame = content(id, len);
        let info = FrameInfo {
            capture_us: id as u64 * 16_667,
            keyframe: id == 0,
            ..Default::default()
        };
        let (p, s) = tx
            .send_frame(dest, &frame, &info, Pacing::Immediate)
            .expect("send");
        assert_eq!(
            s.datagrams,
            p.layout.datagrams() as u64,
            "all datagrams sent"
        );
        let mut got = None;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got.is_none() && Instant::now() < deadline {
            rx.poll_filtered(
                Duration::from_millis(20),
                |_| {
                    seen += 1;
                    !drop(seen)
                },
                |r, e| match e {
                    Pf1Event::Frame(f) => {
                        assert_eq!(f.frame_id, id as u32);
                        assert!(f.data == frame, "frame {id} differs");
                        assert_eq!(f.keyframe, id == 0);
                        got = Some(f.recovered_shards);
                        r.recycle(f.data);
                    }
                    other => panic!("frame {id}: {other:?}"),
                },
            )
            .expect("receive");
        }
        assert!(got.is_some(), "frame {id} ({len} bytes) never completed");
    }
    // Drain the parity that arrived after the last frame completed.
    while rx
        .poll(Duration::from_millis(50), |_, e| panic!("unexpected {e:?}"))
        .expect("receive")
        > 0
    {}
    let s = rx.receiver().stats();
    eprintln!("{s:?}, loop {:?}", rx.stats());
    assert_eq!(s.frames_complete, sizes.len() as u64);
    assert_eq!(s.frames_unrecoverable, 0);
    assert_eq!(s.auth_failures + s.malformed + s.duplicates, 0);
    assert_eq!(rx.stats().foreign, 0);
}

const SIZES: [usize; 8] = [0, 1, 1500, 64 << 10, 1 << 20, 3000, 2 << 20, 700_000];

#[test]
fn frames_over_the_best_path() {
    run(None, RecvPathPreference::Auto, &SIZES, |_| false);
}

#[test]
fn frames_over_uring_gso_with_loss() {
    // Every 11th datagram lost: ~9 %, inside the 20 % parity budget of every frame above a
    // handful of shards; the tiny frames lose nothing (their first datagram is never the
    // 11th).
    run(
        Some(SendPath::UringGso),
        RecvPathPreference::Auto,
        &SIZES,
        |n| n % 11 == 0,
    );
}

#[test]
fn frames_over_sendmmsg_gso() {
    run(
        Some(SendPath::SendmmsgGso),
        RecvPathPreference::Auto,
        &SIZES,
        |n| n % 23 == 0,
    );
}

#[test]
fn frames_into_the_multishot_receiver_with_loss() {
    run(None, RecvPathPreference::UringMultishot, &SIZES, |n| {
        n % 17 == 0
    });
}

#[test]
fn foreign_senders_are_ignored() {
    let Some((mut tx, mut rx, dest)) = pair(None, RecvPathPreference::Auto) else {
        return;
    };
    let stranger = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
    stranger.send_to(&[1; 100], dest).expect("send");
    let frame = content(0, 10_000);
    tx.send_frame(dest, &frame, &FrameInfo::default(), Pacing::Immediate)
        .expect("send");
    let mut frames = 0;
    let deadline = Instant::now() + Duration::from_secs(5);
    while frames == 0 && Instant::now() < deadline {
        rx.poll(Duration::from_millis(20), |_, e| {
            assert!(matches!(e, Pf1Event::Frame(_)));
            frames += 1;
        })
        .expect("receive");
    }
    assert_eq!(frames, 1);
    assert_eq!(rx.stats().foreign, 1);
    assert_eq!(rx.receiver().stats().malformed, 0);
}
