//! punktfunk/1 data-plane throughput on loopback: the whole path against the raw send ceiling
//! of the same datagrams, measured in the same run.
//!
//! * **goodput**: a sender thread packetizes frames (GF(2^16) FEC at a fixed parity, AES-128-GCM
//!   seal) and sends them with io_uring + GSO ([`Pf1FrameSender`]); a receiver thread takes
//!   them in with GRO, drops a seeded random share of the datagrams (injected loss), decrypts
//!   and reassembles with FEC ([`Pf1ReceiveLoop`]). Goodput counts delivered frame bytes only.
//!   The sender keeps at most [`WINDOW`] frames ahead of the receiver's last finished frame,
//!   so the figure is what the pair sustains, not what the sender can dump into a socket
//!   buffer.
//! * **ceiling**: one frame packetized and sealed once, its datagrams re-sent as fast as the
//!   io_uring + GSO driver goes, to a GRO receiver thread that only counts them (the same
//!   ceiling as [`crate::send::prebuilt_path`]).
//!
//! `cargo run --release -p punktfunk-bench --bin pf1 [-- SECONDS LOSS SIZES…]` prints both.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rand::RngExt;

use punktfunk_engine::config::{SendConfig, ThreadPriority};
use punktfunk_engine::io::pf1::{Pf1FrameSender, Pf1ReceiveLoop};
use punktfunk_engine::io::pin;
use punktfunk_engine::io::{
    Caps, Pacing, ReceiveConfig, RecvPathPreference, SendPath, UdpReceiver, UdpSender,
};
use punktfunk_engine::pf1::{
    DataKey, FrameInfo, KEY_MATERIAL_LEN, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, Pf1Sender,
    Pf1SenderConfig,
};

use crate::send::Drain;

/// Parity percentage of the goodput workload.
pub const PARITY_PERCENT: u8 = 20;
/// Frames the sender may run ahead of the receiver's last finished frame.
pub const WINDOW: u64 = 3;

/// Result of [`goodput`].
#[derive(Debug, Clone)]
pub struct Pf1Goodput {
    /// Delivered frame bytes per second, Gbit/s.
    pub gbps: f64,
    /// The raw io_uring + GSO send of the same datagrams, frame bytes per second, Gbit/s.
    pub ceiling_gbps: f64,
    /// Frames declared unrecoverable by the receiver.
    pub unrecoverable: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Frames sent.
    pub sent: u64,
    /// Delivered frames that needed FEC.
    pub recovered_by_fec: u64,
    /// Datagrams dropped by the injected loss.
    pub dropped: u64,
    /// Datagrams received (before the injected loss).
    pub datagrams: u64,
    /// Times the sender waited for the receiver longer than 100 ms (it then sent anyway).
    pub stalls: u64,
    /// The send path in use.
    pub path: String,
}

impl std::fmt::Display for Pf1Goodput {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "goodput {:.2} Gbit/s", self.gbps)?;
        if self.ceiling_gbps.is_finite() {
            write!(
                f,
                " (ceiling {:.2} Gbit/s, {:.0} %)",
                self.ceiling_gbps,
                100.0 * self.gbps / self.ceiling_gbps.max(1e-9)
            )?;
        }
        write!(
            f,
            ", frames {}/{} delivered, {} unrecoverable, {} recovered by FEC, {} of {} datagrams \
             dropped, {} stalls, {}",
            self.frames,
            self.sent,
            self.unrecoverable,
            self.recovered_by_fec,
            self.dropped,
            self.datagrams,
            self.stalls,
            self.path
        )
    }
}

/// The data key of the workloads: key material of 0x77 bytes, on both sides.
pub(crate) fn key() -> DataKey {
    DataKey::from_key_material(&[0x77; KEY_MATERIAL_LEN])
}

fn sender_config() -> Pf1SenderConfig {
    Pf1SenderConfig {
        parity_percent: PARITY_PERCENT,
        ..Default::default()
    }
}

fn sender_config_with(shard_len: usize) -> Pf1SenderConfig {
    Pf1SenderConfig {
        shard_len,
        ..sender_config()
    }
}

fn udp_sender(caps: &Caps) -> UdpSender {
    let any = "127.0.0.1:0".parse().expect("literal address");
    UdpSender::with_path(any, SendPath::UringGso, &SendConfig::default(), caps)
        .or_else(|_| UdpSender::new(any, &SendConfig::default(), caps))
        .expect("some send path works")
}

/// Counters the receiver thread shares with the sender.
#[derive(Default)]
pub(crate) struct Progress {
    /// Frames delivered or declared lost.
    pub finished: AtomicU64,
    stop: AtomicBool,
    /// A sender thread that parks while its window is full; unparked at every finished frame.
    pub waiter: std::sync::OnceLock<std::thread::Thread>,
}

impl Progress {
    fn advance(&self, frames: u64) {
        self.finished.fetch_add(frames, Ordering::Release);
        if let Some(t) = self.waiter.get() {
            t.unpark();
        }
    }
}

/// What a [`Receiver`] took in.
pub(crate) struct RxResult {
    pub frames: u64,
    pub bytes: u64,
    pub unrecoverable: u64,
    pub recovered: u64,
    pub dropped: u64,
    pub datagrams: u64,
    pub last_delivery: Instant,
}

/// Settings of a [`Receiver`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReceiverConfig {
    /// Share of the datagrams dropped (seeded).
    pub loss: f64,
    /// Messages per `recvmmsg` call.
    pub recv_batch: usize,
    /// Receive backend.
    pub recv_path: RecvPathPreference,
    /// Core to pin the thread to.
    pub core: Option<usize>,
    /// Scheduling priority the thread asks for (a refusal is ignored).
    pub priority: ThreadPriority,
}

/// The client side of the goodput workloads: a thread (named [`RECEIVER_THREAD`]) taking
/// datagrams in with GRO, dropping a seeded share of them, decrypting and reassembling.
pub(crate) struct Receiver {
    pub dest: std::net::SocketAddr,
    pub progress: Arc<Progress>,
    thread: std::thread::JoinHandle<RxResult>,
}

/// Name of the receiver threads, so that CPU accounting can leave them out.
pub const RECEIVER_THREAD: &str = "bench-rx";

impl Receiver {
    pub(crate) fn start(caps: &Caps, config: &ReceiverConfig) -> Self {
        let udp = UdpReceiver::bind(
            "127.0.0.1:0".parse().expect("literal address"),
            &ReceiveConfig {
                gro: true,
                socket_receive_buffer: 64 << 20,
                batch: config.recv_batch,
                path: config.recv_path,
                ..Default::default()
            },
            caps,
        )
        .expect("loopback receiver binds");
        let dest = udp.local_addr();
        let mut rx = Pf1ReceiveLoop::new(
            udp,
            Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).expect("valid config"),
        );
        let progress = Arc::new(Progress::default());
        let shared = progress.clone();
        let ReceiverConfig {
            loss,
            core,
            priority,
            ..
        } = *config;
        let thread = std::thread::Builder::new()
            .name(RECEIVER_THREAD.into())
            .spawn(move || {
                if let Some(core) = core {
                    pin::pin_current_thread(core);
                }
                let _ = pin::set_current_thread_priority(priority);
                let mut rng = crate::rng(0x1055);
                let mut r = RxResult {
                    frames: 0,
                    bytes: 0,
                    unrecoverable: 0,
                    recovered: 0,
                    dropped: 0,
                    datagrams: 0,
                    last_delivery: Instant::now(),
                };
                loop {
                    let n = rx
                        .poll_filtered(
                            Duration::from_millis(5),
                            |_| {
                                r.datagrams += 1;
                                if rng.random::<f64>() < loss {
                                    r.dropped += 1;
                                    false
                                } else {
                                    true
                                }
                            },
                            |recv, e| match e {
                                Pf1Event::Frame(f) => {
                                    r.frames += 1;
                                    r.bytes += f.data.len() as u64;
                                    r.recovered += u64::from(f.recovered_shards > 0);
                                    r.last_delivery = Instant::now();
                                    recv.recycle(f.data);
                                    shared.advance(1);
                                }
                                Pf1Event::FramesLost { count, .. } => {
                                    r.unrecoverable += u64::from(count);
                                    shared.advance(u64::from(count));
                                }
                            },
                        )
                        .expect("receive on loopback");
                    if n == 0 && shared.stop.load(Ordering::Acquire) {
                        return r;
                    }
                }
            })
            .expect("spawn the receiver thread");
        Self {
            dest,
            progress,
            thread,
        }
    }

    /// Stops the thread and returns what it received.
    pub(crate) fn finish(self) -> RxResult {
        self.progress.stop.store(true, Ordering::Release);
        self.thread.join().expect("receiver thread does not panic")
    }

    /// Lets the last of `sent` frames land (or time out, 500 ms at most), stops the thread
    /// and turns what it received since `start` into the figures; `ceiling` runs after the
    /// receiver stopped, so that it has the machine to itself.
    pub(crate) fn goodput(
        self,
        sent: u64,
        start: Instant,
        ceiling: impl FnOnce() -> f64,
        stalls: u64,
        path: String,
    ) -> Pf1Goodput {
        let settle = Instant::now();
        while self.progress.finished.load(Ordering::Acquire) < sent
            && settle.elapsed() < Duration::from_millis(500)
        {
            std::thread::sleep(Duration::from_millis(1));
        }
        let r = self.finish();
        let elapsed = r.last_delivery.saturating_duration_since(start);
        Pf1Goodput {
            gbps: r.bytes as f64 * 8.0 / elapsed.as_secs_f64().max(1e-9) / 1e9,
            ceiling_gbps: ceiling(),
            unrecoverable: r.unrecoverable,
            frames: r.frames,
            sent,
            recovered_by_fec: r.recovered,
            dropped: r.dropped,
            datagrams: r.datagrams,
            stalls,
            path,
        }
    }
}

/// Knobs of [`goodput_with`]; [`Default`] is what [`goodput`] uses.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoodputConfig {
    /// Frame length in bytes.
    pub frame_len: usize,
    /// How long to send.
    pub duration: Duration,
    /// Share of the datagrams dropped at the receiver (seeded).
    pub loss: f64,
    /// Messages per `recvmmsg` call at the receiver.
    pub recv_batch: usize,
    /// Cores for the sender and the receiver thread (`None`: the scheduler's choice).
    pub cores: Option<(usize, usize)>,
    /// Measure the ceiling too.
    pub ceiling: bool,
    /// Shard length (datagrams are 52 bytes longer).
    pub shard_len: usize,
    /// Receive backend.
    pub recv_path: RecvPathPreference,
}

impl Default for GoodputConfig {
    fn default() -> Self {
        Self {
            frame_len: 1 << 20,
            duration: Duration::from_secs(3),
            loss: 0.01,
            recv_batch: 8,
            cores: None,
            ceiling: true,
            shard_len: Pf1SenderConfig::default().shard_len,
            recv_path: RecvPathPreference::Auto,
        }
    }
}

/// Goodput of the whole punktfunk/1 path for `frame_len`-byte frames over `seconds`, with
/// `loss` (0..1) of the datagrams dropped at the receiver (seeded), and the send ceiling of
/// the same datagrams for as long.
pub fn goodput(caps: &Caps, frame_len: usize, seconds: f64, loss: f64) -> Pf1Goodput {
    goodput_with(
        caps,
        &GoodputConfig {
            frame_len,
            duration: Duration::from_secs_f64(seconds),
            loss,
            ..Default::default()
        },
    )
}

/// [`goodput`] with every knob.
pub fn goodput_with(caps: &Caps, config: &GoodputConfig) -> Pf1Goodput {
    let GoodputConfig {
        frame_len,
        duration,
        loss,
        ..
    } = *config;
    let rx = Receiver::start(
        caps,
        &ReceiverConfig {
            loss,
            recv_batch: config.recv_batch,
            recv_path: config.recv_path,
            core: config.cores.map(|c| c.1),
            priority: ThreadPriority::Normal,
        },
    );
    let (dest, progress) = (rx.dest, rx.progress.clone());

    if let Some((core, _)) = config.cores {
        pin::pin_current_thread(core);
    }
    let frame: Vec<u8> = crate::random_shards(1, frame_len, 0xf1).remove(0);
    let mut tx = Pf1FrameSender::new(
        Pf1Sender::new(sender_config_with(config.shard_len), key()).expect("valid config"),
        udp_sender(caps),
    );
    tx.reserve(frame_len);
    let path = tx.udp().setup().to_string();
    let start = Instant::now();
    let (mut sent, mut stalls) = (0u64, 0u64);
    while start.elapsed() < duration {
        let waited = Instant::now();
        while sent >= progress.finished.load(Ordering::Acquire) + WINDOW {
            if waited.elapsed() > Duration::from_millis(100) {
                stalls += 1;
                break;
            }
            std::thread::yield_now();
        }
        let info = FrameInfo {
            capture_us: start.elapsed().as_micros() as u64,
            keyframe: false,
            ..Default::default()
        };
        tx.send_frame(dest, &frame, &info, Pacing::Immediate)
            .expect("send on loopback");
        sent += 1;
    }
    rx.goodput(
        sent,
        start,
        || {
            if config.ceiling {
                ceiling(caps, frame_len, config.shard_len, duration)
            } else {
                f64::NAN
            }
        },
        stalls,
        path,
    )
}

/// The datagrams of one `frame_len` frame in `shard_len` shards, packetized and sealed once:
/// `(bytes, stride)`.
pub fn prebuilt(frame_len: usize, shard_len: usize) -> (Vec<u8>, usize) {
    let frame: Vec<u8> = crate::random_shards(1, frame_len, 0xf1).remove(0);
    let mut tx = Pf1Sender::new(sender_config_with(shard_len), key()).expect("valid config");
    let mut out = vec![0u8; tx.max_output(frame_len)];
    let p = tx
        .packetize(&frame, &FrameInfo::default(), &mut out)
        .expect("sized by max_output");
    out.truncate(p.len());
    (out, p.layout.stride)
}

/// Frame bytes per second (Gbit/s) of re-sending one frame's pre-built datagrams with
/// io_uring + GSO for `duration`, to a GRO receiver thread that counts them.
pub fn ceiling(caps: &Caps, frame_len: usize, shard_len: usize, duration: Duration) -> f64 {
    let (datagrams, stride) = prebuilt(frame_len, shard_len);
    let drain = Drain::start(caps);
    let mut tx = udp_sender(caps);
    let start = Instant::now();
    let mut frames = 0u64;
    while start.elapsed() < duration {
        tx.send_frame(drain.dest, &datagrams, stride, Pacing::Immediate)
            .expect("send on loopback");
        frames += 1;
    }
    let elapsed = start.elapsed();
    drain.finish();
    frame_len as f64 * frames as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

/// A seeded packetize → reassemble workload for the criterion group: one frame, its sealed
/// datagrams, and a receiver to feed them to.
pub struct Pf1Workload {
    /// The frame.
    pub frame: Vec<u8>,
    sender: Pf1Sender,
    out: Vec<u8>,
    /// Datagrams of the frame as last packetized (`len`, stride).
    pub packetized: (usize, usize),
    receiver: Pf1Receiver,
    epoch: Instant,
}

impl Pf1Workload {
    /// A `frame_len`-byte frame at the benchmark's parity.
    pub fn new(frame_len: usize) -> Self {
        let sender = Pf1Sender::new(sender_config(), key()).expect("valid config");
        let mut w = Self {
            frame: crate::random_shards(1, frame_len, 0xf2).remove(0),
            out: vec![0u8; sender.max_output(frame_len)],
            sender,
            packetized: (0, 0),
            receiver: Pf1Receiver::new(Pf1ReceiverConfig::default(), key()).expect("valid"),
            epoch: Instant::now(),
        };
        w.packetize();
        w
    }

    /// FEC + headers + seal of the frame (what the host does per frame).
    pub fn packetize(&mut self) {
        let p = self
            .sender
            .packetize(&self.frame, &FrameInfo::default(), &mut self.out)
            .expect("sized by max_output");
        self.packetized = (p.len(), p.layout.stride);
    }

    /// Feeds the last packetized frame to the receiver, skipping every datagram for which
    /// `lose(i)` holds, and returns the recovered frame's length (the buffer is recycled).
    /// Packetize again before each call: packet numbers must be fresh.
    pub fn reassemble(&mut self, lose: impl Fn(usize) -> bool) -> usize {
        let (len, stride) = self.packetized;
        for (i, dg) in self.out[..len].chunks(stride).enumerate() {
            if !lose(i) {
                let _ = self.receiver.handle_datagram(self.epoch, dg);
            }
        }
        let mut n = 0;
        while let Some(e) = self.receiver.poll_event() {
            if let Pf1Event::Frame(f) = e {
                n = f.data.len();
                self.receiver.recycle(f.data);
            }
        }
        n
    }
}

/// One run of the reference client against a loopback punktfunk/1 listener with the real
/// media path (unpaired: a throw-away client that sends no input): its statistics file.
fn loopback_run(
    tag: &str,
    mode: punktfunk_control::pf1::Mode,
    remodes: Vec<punktfunk_control::pf1::Mode>,
    duration: Duration,
    decode: bool,
) -> serde_json::Value {
    use punktfunk_control::host::state::StateDir;
    use punktfunk_control::pf1::listener::{Listener, ListenerOptions};
    use punktfunk_core::reference::{ConnectOptions, run};

    let dir = std::env::temp_dir().join(format!("pf1-{tag}-{}-{}", std::process::id(), unique()));
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .map(|a| a.port())
        .expect("loopback UDP socket");
    let mut opts = ListenerOptions::new(port);
    opts.bind = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    opts.allow_unpaired = true;
    let state = StateDir::open(dir.join("host")).expect("state dir");
    let listener = Listener::start(&state, opts).expect("pf1 listener");
    let stats = dir.join("stats.json");
    run(ConnectOptions {
        host: listener.local_addr().to_string(),
        state_dir: StateDir::open(dir.join("client")).expect("state dir"),
        pair: None,
        mode,
        remodes,
        name: "bench".into(),
        duration,
        record: None,
        stats_json: Some(stats.clone()),
        inject_loss: 0.0,
        inputs: Vec::new(),
        decode,
        window: false,
    })
    .expect("reference client run");
    listener.shutdown();
    let json = serde_json::from_str(&std::fs::read_to_string(&stats).expect("stats written"))
        .expect("stats are JSON");
    let _ = std::fs::remove_dir_all(&dir);
    json
}

/// One renegotiation measured end to end on loopback: the reference client asks for a new
/// mode half way through a 2-second run. Returns (Reconfigure → first new-mode frame, connect
/// → first frame), in ms.
pub fn reconfigure_once() -> (f64, f64) {
    use punktfunk_control::pf1::Mode;
    let json = loopback_run(
        "reconf",
        Mode::new(1280, 720, 60),
        vec![Mode::new(640, 360, 30)],
        Duration::from_secs(2),
        false,
    );
    (
        json["reconfigure_ms"]
            .as_f64()
            .expect("the new mode arrived"),
        json["first_frame_ms"].as_f64().expect("frames arrived"),
    )
}

/// Capture → decoded latency of the reference client on loopback: test pattern 1280x720@60 →
/// openh264 → FEC → AES-GCM → UDP → the C ABI core → openh264 decoder → the pattern's stamp
/// read from the decoded picture, for 3 s. Returns (capture → reassembled p50, capture →
/// decoded p50, capture → decoded p99), in µs.
pub fn decoded_latency_once() -> (i64, i64, i64) {
    use punktfunk_control::pf1::Mode;
    let json = loopback_run(
        "decoded",
        Mode::new(1280, 720, 60),
        Vec::new(),
        Duration::from_secs(3),
        true,
    );
    let get = |k: &str| {
        json[k]
            .as_i64()
            .unwrap_or_else(|| panic!("{k} missing: {json}"))
    };
    (
        get("latency_us_p50"),
        get("decoded_latency_us_p50"),
        get("decoded_latency_us_p99"),
    )
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}
