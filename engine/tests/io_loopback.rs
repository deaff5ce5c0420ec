//! Every send path against every receive setup over real loopback sockets.
//!
//! Frames are laid out like the packetizer does (fixed stride, short last datagram); every
//! datagram carries its index and a position-dependent pattern so that the receiver can
//! check each one byte for byte. The sender sends a whole frame before the receiver drains
//! it (a 16 MiB receive buffer holds it), so the tests need no threads and make no timing
//! assertions. Paths the kernel lacks are skipped visibly (`skip::skip`, docs/testing.md):
//! listed at the end of scripts/test.sh, and a failure under `CI=true` where CI's machine has
//! the feature.

use std::net::SocketAddr;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use punktfunk_engine::config::{PacingConfig, SendConfig};
use punktfunk_engine::io::{
    Caps, Pacing, ReceiveConfig, RecvPath, RecvPathPreference, SendPath, SendStats, UdpReceiver,
    UdpSender,
};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// The kernel feature a send path needs beyond plain UDP sockets.
fn feature(path: SendPath) -> &'static str {
    if path.uses_uring() {
        "io_uring"
    } else if path.uses_gso() {
        "gso"
    } else {
        "udp"
    }
}

fn caps() -> &'static Caps {
    static CAPS: OnceLock<Caps> = OnceLock::new();
    CAPS.get_or_init(|| {
        let c = Caps::probe();
        eprintln!("{c}");
        c
    })
}

fn loopback(v6: bool) -> SocketAddr {
    if v6 {
        "[::1]:0".parse().expect("literal")
    } else {
        "127.0.0.1:0".parse().expect("literal")
    }
}

/// `n` datagrams of stride `seg`, the last one `last` bytes (`0 < last <= seg`).
fn frame(n: usize, seg: usize, last: usize) -> Vec<u8> {
    assert!(n > 0 && last >= 4 && last <= seg, "room for the index");
    let len = (n - 1) * seg + last;
    let mut buf = vec![0u8; len];
    for (i, d) in buf.chunks_mut(seg).enumerate() {
        for (b, v) in d.iter_mut().enumerate() {
            *v = (i.wrapping_mul(131) ^ b.wrapping_mul(7)) as u8;
        }
        d[..4].copy_from_slice(&(i as u32).to_le_bytes());
    }
    buf
}

/// Receives until `expect` datagrams arrived or nothing came for a while.
fn drain(rx: &mut UdpReceiver, expect: usize) -> Vec<(SocketAddr, Vec<u8>)> {
    let mut got = Vec::with_capacity(expect);
    let mut idle_since = Instant::now();
    while got.len() < expect && idle_since.elapsed() < Duration::from_secs(2) {
        let n = rx
            .recv(Duration::from_millis(50), |from, d| {
                got.push((from, d.to_vec()))
            })
            .expect("recv");
        if n > 0 {
            idle_since = Instant::now();
        }
    }
    got
}

/// Every datagram exactly once, byte-exact, from the sender.
fn check(got: &[(SocketAddr, Vec<u8>)], sent: &[u8], seg: usize, from: SocketAddr, what: &str) {
    let expected: Vec<&[u8]> = sent.chunks(seg).collect();
    assert_eq!(got.len(), expected.len(), "{what}: datagram count");
    let mut seen = vec![false; expected.len()];
    for (addr, d) in got {
        assert_eq!(*addr, from, "{what}: source address");
        assert!(d.len() >= 4, "{what}: runt datagram of {} bytes", d.len());
        let i = u32::from_le_bytes(d[..4].try_into().expect("4 bytes")) as usize;
        assert!(i < expected.len(), "{what}: bad index {i}");
        assert!(!seen[i], "{what}: datagram {i} twice");
        seen[i] = true;
        assert_eq!(d.as_slice(), expected[i], "{what}: datagram {i} differs");
    }
}

/// Whether `rx` can queue a whole frame of `n` datagrams of `seg` bytes (the tests send a
/// frame before draining it). Counts generously for skb overhead. Without `CAP_NET_ADMIN`
/// the buffer is capped by `net.core.rmem_max`; then the frame is skipped, loudly.
fn room(rx: &UdpReceiver, n: usize, seg: usize) -> bool {
    let need = n * 2 * seg.max(1024);
    let ok = rx.receive_buffer() >= need;
    if !ok {
        skip::skip(
            "rcvbuf",
            format!(
                "receive buffer {} B < {need} B for {n} x {seg}; run as root or raise \
                 net.core.rmem_max",
                rx.receive_buffer()
            ),
        );
    }
    ok
}

fn rx_config(gro: bool, path: RecvPathPreference) -> ReceiveConfig {
    ReceiveConfig {
        gro,
        path,
        ..ReceiveConfig::default()
    }
}

fn receivers(v6: bool) -> Vec<(String, UdpReceiver)> {
    let mut out = Vec::new();
    for gro in [false, true] {
        for pref in [
            RecvPathPreference::Recvmmsg,
            RecvPathPreference::UringMultishot,
        ] {
            let rx = UdpReceiver::bind(loopback(v6), &rx_config(gro, pref), caps()).expect("bind");
            if pref == RecvPathPreference::UringMultishot && rx.path() != RecvPath::UringMultishot {
                skip::skip("multishot_recv", "multishot recv unsupported here");
                continue;
            }
            if gro && !rx.gro() {
                skip::skip("gro", "UDP_GRO unsupported here");
                continue;
            }
            out.push((format!("{:?}, gro {}", rx.path(), rx.gro()), rx));
        }
    }
    out
}

fn sender(path: SendPath, config: &SendConfig, v6: bool) -> Option<UdpSender> {
    match UdpSender::with_path(loopback(v6), path, config, caps()) {
        Ok(s) => Some(s),
        Err(e) => {
            skip::skip(feature(path), format!("{path}: {e}"));
            None
        }
    }
}

fn assert_clean(stats: &SendStats, sent: &[u8], seg: usize, what: &str) {
    assert_eq!(
        stats.datagrams as usize,
        sent.len().div_ceil(seg),
        "{what}: stats.datagrams"
    );
    assert_eq!(stats.bytes as usize, sent.len(), "{what}: stats.bytes");
    assert_eq!(
        (stats.errors, stats.dropped, stats.unexpected_completions),
        (0, 0, 0),
        "{what}"
    );
}

/// The frames every path must deliver: typical video frame, GSO chunk boundaries at odd
/// places, a single short datagram, an exact multiple, and tiny segments that hit the
/// per-send segment limit, and segments so big that each GSO send holds one (65000 + 48
/// header bytes still fit the 64 KiB loopback MTU over IPv6).
const SHAPES: [(usize, usize, usize); 6] = [
    (200, 1408, 500),
    (130, 1000, 1000),
    (1, 1408, 17),
    (47, 1408, 1408),
    (300, 64, 9),
    (3, 65_000, 100),
];

fn run_path(path: SendPath, config: &SendConfig, v6: bool) {
    let Some(mut tx) = sender(path, config, v6) else {
        return;
    };
    for (what_rx, mut rx) in receivers(v6) {
        for &(n, seg, last) in &SHAPES {
            if !room(&rx, n, seg) {
                continue;
            }
            let sent = frame(n, seg, last);
            let what = format!("{} -> {what_rx}, {n}x{seg} last {last}", tx.setup());
            let stats = tx
                .send_frame(rx.local_addr(), &sent, seg, Pacing::Immediate)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_clean(&stats, &sent, seg, &what);
            let got = drain(&mut rx, n);
            check(&got, &sent, seg, tx.local_addr(), &what);
        }
        let s = rx.stats();
        assert_eq!((s.truncated, s.malformed), (0, 0), "{what_rx}: {s:?}");
    }
}

#[test]
fn sendto_delivers() {
    run_path(SendPath::Sendto, &SendConfig::default(), false);
}

#[test]
fn sendmmsg_delivers() {
    run_path(SendPath::Sendmmsg, &SendConfig::default(), false);
}

#[test]
fn sendmmsg_gso_delivers() {
    run_path(SendPath::SendmmsgGso, &SendConfig::default(), false);
}

#[test]
fn uring_delivers() {
    run_path(SendPath::Uring, &SendConfig::default(), false);
}

#[test]
fn uring_gso_delivers() {
    run_path(SendPath::UringGso, &SendConfig::default(), false);
}

#[test]
fn uring_gso_busy_poll_delivers() {
    run_path(
        SendPath::UringGso,
        &SendConfig {
            busy_poll: true,
            ..SendConfig::default()
        },
        false,
    );
}

#[test]
fn uring_gso_send_zc_delivers() {
    if !caps().uring_send_zc {
        skip::skip("send_zc", "io_uring SEND_ZC unsupported here");
        return;
    }
    let config = SendConfig {
        zero_copy: true,
        ..SendConfig::default()
    };
    let Some(tx) = sender(SendPath::UringGso, &config, false) else {
        return;
    };
    assert!(
        tx.setup().zero_copy,
        "zero copy must be on when the probe found it"
    );
    drop(tx);
    run_path(SendPath::UringGso, &config, false);
    run_path(SendPath::Uring, &config, false);
}

#[test]
fn ipv6_delivers() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        skip::skip("ipv6", "no IPv6 loopback");
        return;
    }
    for path in SendPath::ALL {
        run_path(path, &SendConfig::default(), true);
    }
}

/// Staged (and, with SEND_ZC, registered) buffers on every path.
#[test]
fn staged_sends_deliver() {
    for zero_copy in [false, true] {
        let config = SendConfig {
            registered_buffers: true,
            zero_copy,
            ..SendConfig::default()
        };
        for path in SendPath::ALL {
            let Some(mut tx) = sender(path, &config, false) else {
                continue;
            };
            let mut rx = UdpReceiver::bind(loopback(false), &ReceiveConfig::default(), caps())
                .expect("bind");
            let (n, seg, last) = (200, 1408, 333);
            if !room(&rx, n, seg) {
                return;
            }
            let sent = frame(n, seg, last);
            let staging = tx
                .staging_mut()
                .expect("registered_buffers gives a staging buffer");
            staging[..sent.len()].copy_from_slice(&sent);
            let what = format!("staged {}", tx.setup());
            let stats = tx
                .send_staged(rx.local_addr(), sent.len(), seg, Pacing::Immediate)
                .unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_clean(&stats, &sent, seg, &what);
            check(&drain(&mut rx, n), &sent, seg, tx.local_addr(), &what);
            if zero_copy && path.uses_uring() && caps().uring_send_zc {
                assert!(tx.setup().registered_buffers, "{what}");
            }
        }
    }
}

/// Paced frames arrive complete, in the expected number of bursts.
#[test]
fn paced_frames_deliver() {
    let config = SendConfig {
        pacing: PacingConfig {
            frame_share: 0.5,
            burst_datagrams: 16,
        },
        ..SendConfig::default()
    };
    for path in SendPath::ALL {
        let Some(mut tx) = sender(path, &config, false) else {
            continue;
        };
        let mut rx =
            UdpReceiver::bind(loopback(false), &ReceiveConfig::default(), caps()).expect("bind");
        let (n, seg, last) = (100, 1408, 700);
        if !room(&rx, n, seg) {
            return;
        }
        let sent = frame(n, seg, last);
        let pacing = Pacing::Frame {
            start: Instant::now(),
            interval: Duration::from_millis(4),
        };
        let what = format!("paced {}", tx.setup());
        let stats = tx
            .send_frame(rx.local_addr(), &sent, seg, pacing)
            .expect("send");
        assert_clean(&stats, &sent, seg, &what);
        assert_eq!(stats.bursts, 7, "{what}: 100 datagrams in bursts of 16");
        check(&drain(&mut rx, n), &sent, seg, tx.local_addr(), &what);
    }
}

/// Many frames back to back through one sender, cumulative stats add up.
#[test]
fn many_frames_and_cumulative_stats() {
    let config = SendConfig::default();
    let Some(mut tx) = sender(SendPath::UringGso, &config, false)
        .or_else(|| sender(SendPath::SendmmsgGso, &config, false))
        .or_else(|| sender(SendPath::Sendmmsg, &config, false))
    else {
        return;
    };
    let mut rx =
        UdpReceiver::bind(loopback(false), &ReceiveConfig::default(), caps()).expect("bind");
    if !room(&rx, 200, 1200) {
        return;
    }
    let mut total = 0u64;
    for k in 1..=20 {
        let sent = frame(10 * k, 1200, 1 + 50 * k);
        tx.send_frame(rx.local_addr(), &sent, 1200, Pacing::Immediate)
            .expect("send");
        check(
            &drain(&mut rx, 10 * k),
            &sent,
            1200,
            tx.local_addr(),
            "frame",
        );
        total += 10 * k as u64;
    }
    assert_eq!(tx.stats().datagrams, total);
    assert_eq!(rx.stats().datagrams, total);
}

/// Sending to a port nobody listens on is not an error on an unconnected socket.
#[test]
fn unreachable_port_is_not_fatal() {
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr")
    }; // socket closed: ICMP port unreachable from now on
    for path in SendPath::ALL {
        let Some(mut tx) = sender(path, &SendConfig::default(), false) else {
            continue;
        };
        let sent = frame(50, 1408, 100);
        for _ in 0..3 {
            let stats = tx
                .send_frame(dead, &sent, 1408, Pacing::Immediate)
                .expect("no error");
            assert_eq!(stats.datagrams + stats.dropped, 50, "{path}: {stats:?}");
        }
    }
}

/// A connected sender sends without addresses and still delivers everything.
#[test]
fn connected_sender_delivers() {
    for path in SendPath::ALL {
        let Some(mut tx) = sender(path, &SendConfig::default(), false) else {
            continue;
        };
        let mut rx =
            UdpReceiver::bind(loopback(false), &ReceiveConfig::default(), caps()).expect("bind");
        tx.connect(rx.local_addr()).expect("connect");
        assert_eq!(tx.peer(), Some(rx.local_addr()));
        let (n, seg, last) = (120, 1408, 99);
        if !room(&rx, n, seg) {
            return;
        }
        let sent = frame(n, seg, last);
        let what = format!("connected {}", tx.setup());
        let stats = tx
            .send_frame(rx.local_addr(), &sent, seg, Pacing::Immediate)
            .expect("send");
        assert_clean(&stats, &sent, seg, &what);
        check(&drain(&mut rx, n), &sent, seg, tx.local_addr(), &what);
    }
}

/// On a connected socket the ICMP port-unreachable from a dead peer comes back as
/// `ECONNREFUSED` on a later send: counted as dropped, never returned as an error.
#[test]
fn connection_refused_is_counted() {
    let dead = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        s.local_addr().expect("addr")
    };
    for path in SendPath::ALL {
        let Some(mut tx) = sender(path, &SendConfig::default(), false) else {
            continue;
        };
        tx.connect(dead).expect("connect");
        let sent = frame(200, 1408, 100);
        let mut total = SendStats::default();
        for _ in 0..4 {
            total += tx
                .send_frame(dead, &sent, 1408, Pacing::Immediate)
                .expect("no error");
        }
        eprintln!("{path}: {total:?}");
        assert_eq!(
            total.datagrams + total.dropped,
            800,
            "{path}: every datagram booked once"
        );
        assert!(
            total.errors > 0,
            "{path}: loopback reports ECONNREFUSED on connected sockets"
        );
    }
}

/// Auto selection works and names a path.
#[test]
fn auto_path_is_selected() {
    let tx = UdpSender::new(loopback(false), &SendConfig::default(), caps()).expect("sender");
    eprintln!("auto picked {}", tx.setup());
    if caps().uring_send && caps().gso {
        assert_eq!(tx.path(), SendPath::UringGso);
    } else {
        skip::skip(
            "io_uring",
            format!("no io_uring send with GSO here; auto picked {}", tx.setup()),
        );
    }
}

/// A GSO send into a GRO socket arrives as coalesced buffers that the receiver splits at
/// the segment size, short last datagram included.
#[test]
fn gro_buffers_are_split() {
    let config = SendConfig::default();
    let Some(mut tx) = sender(SendPath::SendmmsgGso, &config, false) else {
        return;
    };
    let mut rx = UdpReceiver::bind(
        loopback(false),
        &rx_config(true, RecvPathPreference::Recvmmsg),
        caps(),
    )
    .expect("bind");
    if !rx.gro() {
        skip::skip("gro", "UDP_GRO unsupported here");
        return;
    }
    let (n, seg, last) = (90, 1408, 4);
    if !room(&rx, n, seg) {
        return;
    }
    let sent = frame(n, seg, last);
    tx.send_frame(rx.local_addr(), &sent, seg, Pacing::Immediate)
        .expect("send");
    check(&drain(&mut rx, n), &sent, seg, tx.local_addr(), "gro");
    let s = rx.stats();
    eprintln!("gro receive: {s:?}");
    if s.coalesced == 0 {
        skip::skip(
            "gro",
            "the kernel did not coalesce; the split path was not exercised",
        );
    } else {
        assert!(s.buffers < n as u64);
    }
}

/// CPU time the calling thread has used, from /proc/thread-self/schedstat (nanoseconds).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

struct Trial {
    sent_gbps: f64,
    recv_gbps: f64,
    loss_pct: f64,
    syscalls_per_dgram: f64,
    /// Payload Gbit per second of sender-thread CPU time: insensitive to other load.
    gbit_per_cpu_s: f64,
}

fn trial(path: SendPath, config: &SendConfig, rx_cfg: &ReceiveConfig, secs: f64) -> Option<Trial> {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    let cores = core_affinity::get_core_ids().unwrap_or_default();
    let (tx_core, rx_core) = (cores.first().copied(), cores.get(1).copied());
    let (n, seg) = (256usize, 1408usize);
    let sent_frame = frame(n, seg, seg);
    let mut tx = sender(path, config, false)?;
    let mut rx = UdpReceiver::bind(loopback(false), rx_cfg, caps()).expect("bind");
    let dest = rx.local_addr();
    let stop = Arc::new(AtomicBool::new(false));
    let rx_thread = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            if let Some(c) = rx_core {
                core_affinity::set_for_current(c);
            }
            let mut bytes = 0u64;
            loop {
                let got = rx
                    .recv(Duration::from_millis(20), |_, d| bytes += d.len() as u64)
                    .expect("recv");
                if got == 0 && stop.load(Ordering::Relaxed) {
                    break;
                }
            }
            (bytes, rx.stats())
        })
    };
    if let Some(c) = tx_core {
        core_affinity::set_for_current(c);
    }
    let staged = config.registered_buffers;
    if staged {
        tx.staging_mut().expect("staging")[..sent_frame.len()].copy_from_slice(&sent_frame);
    }
    let start = Instant::now();
    let cpu0 = thread_cpu_ns();
    let mut stats = SendStats::default();
    while start.elapsed().as_secs_f64() < secs {
        let s = if staged {
            tx.send_staged(dest, sent_frame.len(), seg, Pacing::Immediate)
        } else {
            tx.send_frame(dest, &sent_frame, seg, Pacing::Immediate)
        };
        stats += s.expect("send");
    }
    let cpu_s = (thread_cpu_ns() - cpu0) as f64 / 1e9;
    let elapsed = start.elapsed().as_secs_f64();
    stop.store(true, Ordering::Relaxed);
    let (recv_bytes, rx_stats) = rx_thread.join().expect("receiver thread");
    let gbit = |b: u64| b as f64 * 8.0 / 1e9;
    Some(Trial {
        sent_gbps: gbit(stats.bytes) / elapsed,
        recv_gbps: gbit(recv_bytes) / elapsed,
        loss_pct: 100.0 * (1.0 - rx_stats.datagrams as f64 / stats.datagrams.max(1) as f64),
        syscalls_per_dgram: stats.syscalls as f64 / stats.datagrams.max(1) as f64,
        gbit_per_cpu_s: if cpu_s > 0.0 {
            gbit(stats.bytes) / cpu_s
        } else {
            0.0
        },
    })
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Throughput of every send path on loopback: one pinned sender thread sending 360 KB
/// frames (256 × 1408-byte datagrams) back to back, one pinned receiver thread draining with
/// GRO. Not a test (nothing is asserted about speed); run it in release mode:
///
/// ```text
/// cargo test --release -p punktfunk-engine --test io_loopback -- --ignored --nocapture throughput_report
/// ```
///
/// Rows are interleaved over `PF_BENCH_TRIALS` rounds (default 5) of `PF_BENCH_SECS`
/// seconds (default 1) so that background load hits every row alike; medians are printed.
/// `PF_BENCH_RX=multishot|nogro|multishot-nogro` changes the receiver.
#[test]
#[ignore = "measurement, run by hand in release mode"]
fn throughput_report() {
    let env = |k: &str, d: f64| {
        std::env::var(k)
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(d)
    };
    let secs = env("PF_BENCH_SECS", 1.0);
    let rounds = env("PF_BENCH_TRIALS", 5.0) as usize;
    let rx_cfg = match std::env::var("PF_BENCH_RX").unwrap_or_default().as_str() {
        "multishot" => rx_config(true, RecvPathPreference::UringMultishot),
        "multishot-nogro" => rx_config(false, RecvPathPreference::UringMultishot),
        "nogro" => rx_config(false, RecvPathPreference::Recvmmsg),
        _ => rx_config(true, RecvPathPreference::Recvmmsg),
    };
    let base = SendConfig::default();
    let rows: Vec<(SendPath, SendConfig)> = vec![
        (SendPath::Sendto, base.clone()),
        (SendPath::Sendmmsg, base.clone()),
        (SendPath::SendmmsgGso, base.clone()),
        (SendPath::Uring, base.clone()),
        (SendPath::UringGso, base.clone()),
        (
            SendPath::UringGso,
            SendConfig {
                busy_poll: true,
                ..base.clone()
            },
        ),
        (
            SendPath::UringGso,
            SendConfig {
                zero_copy: true,
                ..base.clone()
            },
        ),
        (
            SendPath::UringGso,
            SendConfig {
                zero_copy: true,
                registered_buffers: true,
                ..base.clone()
            },
        ),
    ];
    let mut results: Vec<Vec<Trial>> = rows.iter().map(|_| Vec::new()).collect();
    for _ in 0..rounds {
        for (i, (path, config)) in rows.iter().enumerate() {
            if let Some(t) = trial(*path, config, &rx_cfg, secs) {
                results[i].push(t);
            }
        }
    }
    println!(
        "\nreceiver: {:?}, gro {}; {rounds} x {secs} s per row, medians",
        rx_cfg.path, rx_cfg.gro
    );
    println!(
        "{:<44} {:>9} {:>9} {:>7} {:>9} {:>11} {:>8}",
        "path", "sent Gb/s", "recv Gb/s", "loss %", "sys/dgram", "Gbit/CPU-s", "vs sendto"
    );
    let mut baseline = None;
    for ((path, config), trials) in rows.iter().zip(results) {
        if trials.is_empty() {
            continue;
        }
        let m = |f: fn(&Trial) -> f64| median(trials.iter().map(f).collect());
        let eff = m(|t| t.gbit_per_cpu_s);
        let base_eff = *baseline.get_or_insert(eff);
        let name = sender(*path, config, false)
            .map(|s| s.setup().to_string())
            .unwrap_or_default();
        println!(
            "{:<44} {:>9.2} {:>9.2} {:>7.1} {:>9.4} {:>11.2} {:>7.1}x",
            name,
            m(|t| t.sent_gbps),
            m(|t| t.recv_gbps),
            m(|t| t.loss_pct),
            m(|t| t.syscalls_per_dgram),
            eff,
            eff / base_eff,
        );
    }
}
