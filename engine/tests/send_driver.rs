//! Issue 8 point 5: one send driver thread carries the paced frames of several sessions.
//!
//! Four sessions, each with its own socket and its own receiver, hand 30 frames of 20
//! datagrams (60 fps pacing) to one [`SendDriver`] from four threads at once. Every datagram
//! arrives, in order per session, each session's counters and `on_sent` callback see all 30
//! frames, and the process runs exactly one driver thread for the four of them. Real UDP on
//! loopback.

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use punktfunk_engine::config::{PacingConfig, SendConfig, ThreadPriority};
use punktfunk_engine::io::driver::SendDriver;
use punktfunk_engine::io::{Caps, Pacing, UdpSender};
use punktfunk_engine::pool::{FrameMeta, FramePool};

const SESSIONS: u8 = 4;
const FRAMES: u16 = 30;
const DATAGRAMS: u16 = 20;
const SEG: usize = 1200;

fn threads_named(name: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task lists this process's threads")
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|comm| comm.trim() == name)
        .count()
}

#[test]
fn four_sessions_share_one_driver_thread() {
    let config = SendConfig {
        pacing: PacingConfig {
            frame_share: 0.5,
            burst_datagrams: 4,
        },
        ..SendConfig::default()
    };
    let caps = Caps::probe();
    let driver = SendDriver::start("pf-send-test", None, ThreadPriority::Normal, false).unwrap();
    let pool = FramePool::new(16, DATAGRAMS as usize * SEG).unwrap();
    let mut receivers = Vec::new();
    let mut submitters = Vec::new();
    let sent_callbacks = Arc::new(AtomicU64::new(0));
    let mut lanes_stats = Vec::new();
    for s in 0..SESSIONS {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let dest: SocketAddr = rx.local_addr().unwrap();
        receivers.push(std::thread::spawn(move || {
            let mut seen = Vec::new();
            let mut buf = [0u8; 2048];
            while seen.len() < usize::from(FRAMES) * usize::from(DATAGRAMS) {
                let Ok((n, _)) = rx.recv_from(&mut buf) else {
                    break; // 5 s of silence: report what came
                };
                assert_eq!(n, SEG);
                assert_eq!(buf[0], s, "a datagram of another session");
                seen.push((
                    u16::from_le_bytes([buf[1], buf[2]]),
                    u16::from_le_bytes([buf[3], buf[4]]),
                ));
            }
            seen
        }));
        let sender = UdpSender::new("127.0.0.1:0".parse().unwrap(), &config, &caps).unwrap();
        let counted = Arc::clone(&sent_callbacks);
        let lane = driver
            .open(
                sender,
                Some(Box::new(move |_, _| {
                    counted.fetch_add(1, Ordering::Relaxed);
                })),
            )
            .unwrap();
        let pool = pool.clone();
        submitters.push(std::thread::spawn(move || {
            let interval = Duration::from_secs(1) / 60;
            let start = Instant::now();
            for f in 0..FRAMES {
                // Frames at 60 fps; a full pool (the driver behind) waits for a buffer.
                let due = start + interval * u32::from(f);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                let mut frame = loop {
                    match pool.take() {
                        Some(b) => break b,
                        None => std::thread::sleep(Duration::from_millis(1)),
                    }
                };
                frame.clear();
                for d in 0..DATAGRAMS {
                    let mut dgram = [0u8; SEG];
                    dgram[0] = s;
                    dgram[1..3].copy_from_slice(&f.to_le_bytes());
                    dgram[3..5].copy_from_slice(&d.to_le_bytes());
                    frame.extend_from_slice(&dgram).unwrap();
                }
                frame.meta = FrameMeta {
                    segment_size: SEG as u16,
                    interval_ns: FrameMeta::interval_ns_for_fps(60),
                    ..FrameMeta::default()
                };
                lane.submit(
                    frame,
                    dest,
                    Pacing::Frame {
                        start: Instant::now(),
                        interval,
                    },
                )
                .unwrap();
            }
            lane
        }));
    }
    for t in submitters {
        lanes_stats.push(t.join().unwrap());
    }
    // The driver has run (it sent everything the receivers are about to confirm), so its
    // thread carries its name by now (a thread names itself when it starts).
    for (s, r) in receivers.into_iter().enumerate() {
        let seen = r.join().unwrap();
        let expected: Vec<(u16, u16)> = (0..FRAMES)
            .flat_map(|f| (0..DATAGRAMS).map(move |d| (f, d)))
            .collect();
        assert_eq!(seen, expected, "session {s}: every datagram, in order");
    }
    // The last frame's counters are booked right after its last burst left.
    let deadline = Instant::now() + Duration::from_secs(5);
    while sent_callbacks.load(Ordering::Relaxed) < u64::from(SESSIONS) * u64::from(FRAMES)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(
        sent_callbacks.load(Ordering::Relaxed),
        u64::from(SESSIONS) * u64::from(FRAMES)
    );
    assert_eq!(
        threads_named("pf-send-test"),
        1,
        "one driver thread for all sessions"
    );
    for lane in &lanes_stats {
        let st = lane.stats();
        assert_eq!((st.frames, st.failed), (u64::from(FRAMES), 0), "{st:?}");
        assert_eq!(st.send.datagrams, u64::from(FRAMES) * u64::from(DATAGRAMS));
        // Paced: each frame left in several bursts (5 of 4 datagrams).
        assert!(st.send.bursts >= u64::from(FRAMES) * 5, "{st:?}");
    }
}
