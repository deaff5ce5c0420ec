//! Send-path workloads on loopback: the engine path against a plain `sendto` loop and against
//! the raw io_uring+GSO ceiling, and frame latency through the engine.
//!
//! Every workload sends to a [`Drain`]: a receiver thread with UDP GRO that counts what
//! arrives, so the kernel does the full loopback delivery for every datagram.
//!
//! * **engine path**: the real pipeline: a source hands encoded frames to the engine
//!   (memcpy into a pool buffer), a pass-through encode stage, [`PacketizeStage`] (GameStream
//!   packetizer + GF(2^8) FEC), and the send stage (io_uring + GSO, through the shared send
//!   driver), on threads joined by rings, built by the `PipelineBuilder` `serve` uses.
//! * **sendto baseline**: the same datagrams, pre-built once, one `sendto(2)` each.
//! * **ceiling**: the same pre-built datagrams through the io_uring+GSO driver, nothing else.
//!
//! Throughput counts *payload*: frame bytes, not headers or parity, for every row alike.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_engine::config::{
    Backpressure, FecConfig, PacingConfig, PipelineConfig, SendConfig, SessionProfile,
    ThreadPriority,
};
use punktfunk_engine::gamestream::stage::PacketizeStage;
use punktfunk_engine::gamestream::wire::video::{
    FrameType, VideoFrame, VideoPacketizer, VideoParams,
};
use punktfunk_engine::io::build::{PipelineBuilder, VideoSend, VideoStages};
use punktfunk_engine::io::sink::{OnSent, PeerAddr};
use punktfunk_engine::io::{Caps, Pacing, ReceiveConfig, SendPath, UdpReceiver, UdpSender};
use punktfunk_engine::pipeline::{Captured, PassThrough, Source, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

/// GameStream packet size used throughout (Moonlight's default 1392: 1408-byte datagrams).
pub const PACKET_SIZE: usize = 1392;

/// Video parameters of the send workloads: 20 % FEC, at least 2 parity shards.
pub fn params() -> VideoParams {
    VideoParams {
        packet_size: PACKET_SIZE,
        fec_percent: 20,
        min_parity: 2,
    }
}

/// A receiver thread with GRO that counts datagrams and bytes until stopped.
pub struct Drain {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<(u64, u64)>,
    /// Where to send.
    pub dest: SocketAddr,
}

impl Drain {
    /// Binds a loopback receiver and starts draining it.
    pub fn start(caps: &Caps) -> Self {
        let mut rx = UdpReceiver::bind(
            "127.0.0.1:0".parse().expect("literal address"),
            &ReceiveConfig {
                gro: true,
                socket_receive_buffer: 64 << 20,
                ..Default::default()
            },
            caps,
        )
        .expect("loopback receiver binds");
        let dest = rx.local_addr();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name(crate::pf1::RECEIVER_THREAD.into())
            .spawn(move || {
                let (mut datagrams, mut bytes) = (0u64, 0u64);
                loop {
                    let got = rx
                        .recv(Duration::from_millis(20), |_, d| {
                            datagrams += 1;
                            bytes += d.len() as u64;
                        })
                        .expect("receive on loopback");
                    if got == 0 && flag.load(Ordering::Relaxed) {
                        return (datagrams, bytes);
                    }
                }
            })
            .expect("spawn the drain thread");
        Self { stop, thread, dest }
    }

    /// Stops the thread; returns (datagrams, bytes) received.
    pub fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().expect("drain thread does not panic")
    }
}

/// Encoded frames handed to the engine: each poll copies the same frame into a pool buffer
/// (what an encoder's output hand-off costs), stamps the capture time, optionally at a fixed
/// frame rate. The first is marked a keyframe: the packetizer sends nothing before one.
pub struct FrameFeeder {
    frame: Arc<Vec<u8>>,
    left: u64,
    started: bool,
    epoch: Instant,
    interval: Option<Duration>,
    next_due: Instant,
}

impl FrameFeeder {
    /// `count` copies of `frame`, as fast as the pipeline takes them or one per `interval`.
    pub fn new(
        frame: Arc<Vec<u8>>,
        count: u64,
        epoch: Instant,
        interval: Option<Duration>,
    ) -> Self {
        Self {
            frame,
            left: count,
            started: false,
            epoch,
            interval,
            next_due: Instant::now(),
        }
    }
}

impl Source for FrameFeeder {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        if self.left == 0 {
            return Ok(Captured::Finished);
        }
        if let Some(iv) = self.interval {
            let now = Instant::now();
            if now < self.next_due {
                std::thread::sleep((self.next_due - now).min(Duration::from_millis(1)));
                return Ok(Captured::Idle);
            }
            self.next_due += iv;
        }
        let Some(mut b) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        b.fill_from(&self.frame).map_err(StageError::failed)?;
        b.meta.capture_ns = self.epoch.elapsed().as_nanos() as u64;
        b.meta.keyframe = !std::mem::replace(&mut self.started, true);
        self.left -= 1;
        Ok(Captured::Frame(b))
    }
}

/// Result of one throughput run.
#[derive(Debug, Clone, Copy)]
pub struct Throughput {
    /// Payload (frame bytes) per second, in Gbit/s.
    pub gbps: f64,
    /// Share of sent datagrams that arrived.
    pub delivered: f64,
}

fn gbps(bytes: u64, elapsed: Duration) -> f64 {
    bytes as f64 * 8.0 / elapsed.as_secs_f64() / 1e9
}

/// The workload of [`run_engine`].
struct EngineRun {
    frame_len: usize,
    frames: u64,
    epoch: Instant,
    /// At most one frame per interval; as fast as possible when `None`.
    interval: Option<Duration>,
    priority: ThreadPriority,
}

/// Runs the engine path (see the module docs) over `frames` copies of a `frame_len`-byte frame
/// into `drain`, calling `on_sent` after each frame's send; returns when the pipeline has
/// finished.
fn run_engine(caps: &Caps, drain: &Drain, run: EngineRun, on_sent: OnSent) {
    let EngineRun {
        frame_len,
        frames,
        epoch,
        interval,
        priority,
    } = run;
    let frame = Arc::new(crate::random_shards(1, frame_len, 11).remove(0));
    let fec = PacketizeStage::new(params(), None).expect("valid params");
    let config = PipelineConfig {
        ring_depth: 2,
        pool_frames: 10,
        frame_capacity: fec.max_output(frame_len),
        backpressure: Backpressure::Block,
        priority,
        ..PipelineConfig::default()
    };
    // The builder `serve` uses, with the profile's defaults but unpaced (frames leave as fast
    // as the path allows) and the shared send driver.
    let profile = SessionProfile {
        pipeline: config,
        send: SendConfig {
            pacing: PacingConfig {
                frame_share: 0.0,
                ..PacingConfig::default()
            },
            ..SendConfig::default()
        },
        fec: FecConfig::default(),
    };
    let builder = PipelineBuilder::new(profile, caps.clone());
    let sender = builder
        .bind_sender("127.0.0.1:0".parse().expect("literal"))
        .expect("sender");
    let peer = Arc::new(PeerAddr::default());
    peer.set(Some(drain.dest));
    let stages = VideoStages {
        source: FrameFeeder::new(frame, frames, epoch, interval),
        encode: PassThrough::default(),
        packetize: fec,
        media_capacity: frame_len,
        frame_interval: Duration::ZERO,
    };
    let send = VideoSend {
        sender,
        peer,
        on_sent: Some(on_sent),
    };
    builder
        .spawn("bench", stages, send)
        .expect("pipeline starts")
        .join()
        .expect("pipeline runs");
}

/// The engine path (see the module docs) for `frames` frames of `frame_len` bytes.
pub fn engine_path(caps: &Caps, frame_len: usize, frames: u64) -> Throughput {
    let drain = Drain::start(caps);
    let sent = Arc::new(AtomicU64::new(0));
    let counter = sent.clone();
    let start = Instant::now();
    run_engine(
        caps,
        &drain,
        EngineRun {
            frame_len,
            frames,
            epoch: start,
            interval: None,
            // As the baselines: the drain thread competes with the stages on equal terms.
            priority: ThreadPriority::Normal,
        },
        Box::new(move |_, s| {
            counter.fetch_add(s.datagrams, Ordering::Relaxed);
        }),
    );
    let elapsed = start.elapsed();
    let (received, _) = drain.finish();
    Throughput {
        gbps: gbps(frame_len as u64 * frames, elapsed),
        delivered: received as f64 / sent.load(Ordering::Relaxed).max(1) as f64,
    }
}

/// A frame packetized once (20 % FEC): the datagrams the baselines resend.
pub fn prebuilt(frame_len: usize) -> (Vec<u8>, usize) {
    let p = params();
    let frame = crate::random_shards(1, frame_len, 11).remove(0);
    let mut out = vec![0u8; p.max_datagrams(frame_len) * p.stride()];
    let r = VideoPacketizer::new(p)
        .expect("valid params")
        .packetize(
            &VideoFrame {
                index: 1,
                rtp_timestamp: 0,
                frame_type: FrameType::P,
                host_latency: 0,
                bitstream: &frame,
            },
            &mut out,
        )
        .expect("buffer sized by max_datagrams");
    out.truncate(r.len());
    (out, r.stride)
}

/// Sends the pre-built datagrams of a `frame_len` frame `frames` times on `path`.
pub fn prebuilt_path(caps: &Caps, path: SendPath, frame_len: usize, frames: u64) -> Throughput {
    let (datagrams, stride) = prebuilt(frame_len);
    let drain = Drain::start(caps);
    let mut tx = UdpSender::with_path(
        "127.0.0.1:0".parse().expect("literal"),
        path,
        &SendConfig::default(),
        caps,
    )
    .expect("path supported (probed)");
    let start = Instant::now();
    let mut sent = 0;
    for _ in 0..frames {
        sent += tx
            .send_frame(drain.dest, &datagrams, stride, Pacing::Immediate)
            .expect("send")
            .datagrams;
    }
    let elapsed = start.elapsed();
    let (received, _) = drain.finish();
    Throughput {
        gbps: gbps(frame_len as u64 * frames, elapsed),
        delivered: received as f64 / sent.max(1) as f64,
    }
}

/// Frame latency through the engine: `frames` frames of `frame_len` bytes at `fps`, from the
/// hand-off to the engine to the return of the send call for its last datagram, in µs.
/// The stage threads run at normal priority, as the naive baseline's thread.
pub fn engine_latency(caps: &Caps, frame_len: usize, frames: u64, fps: u32) -> Vec<f64> {
    engine_latency_at(caps, frame_len, frames, fps, ThreadPriority::Normal)
}

/// [`engine_latency`] with the stage threads asking for `priority`.
pub fn engine_latency_at(
    caps: &Caps,
    frame_len: usize,
    frames: u64,
    fps: u32,
    priority: ThreadPriority,
) -> Vec<f64> {
    let drain = Drain::start(caps);
    let epoch = Instant::now();
    let samples = Arc::new(Mutex::new(Vec::with_capacity(frames as usize)));
    let sink_samples = samples.clone();
    let iv = Duration::from_secs(1) / fps;
    run_engine(
        caps,
        &drain,
        EngineRun {
            frame_len,
            frames,
            epoch,
            interval: Some(iv),
            priority,
        },
        Box::new(move |meta, _| {
            let now = epoch.elapsed().as_nanos() as u64;
            let us = now.saturating_sub(meta.capture_ns) as f64 / 1e3;
            sink_samples
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(us);
        }),
    );
    drain.finish();
    std::mem::take(&mut *samples.lock().unwrap_or_else(|p| p.into_inner()))
}

/// The naive path for the same latency: one thread copies, packetizes with FEC and sends each
/// datagram with `sendto`, at `fps`.
pub fn naive_latency(caps: &Caps, frame_len: usize, frames: u64, fps: u32) -> Vec<f64> {
    let drain = Drain::start(caps);
    let frame = crate::random_shards(1, frame_len, 12).remove(0);
    let p = params();
    let mut packetizer = VideoPacketizer::new(p).expect("valid params");
    let mut tx = UdpSender::with_path(
        "127.0.0.1:0".parse().expect("literal"),
        SendPath::Sendto,
        &SendConfig::default(),
        caps,
    )
    .expect("sendto always works");
    let mut copy = vec![0u8; frame_len];
    let mut out = vec![0u8; p.max_datagrams(frame_len) * p.stride()];
    let iv = Duration::from_secs(1) / fps;
    let mut due = Instant::now();
    let mut v = Vec::with_capacity(frames as usize);
    for i in 0..frames {
        while Instant::now() < due {
            std::thread::sleep((due - Instant::now()).min(Duration::from_millis(1)));
        }
        due += iv;
        let t0 = Instant::now();
        copy.copy_from_slice(&frame);
        let r = packetizer
            .packetize(
                &VideoFrame {
                    index: i as u32 + 1,
                    rtp_timestamp: 0,
                    frame_type: FrameType::P,
                    host_latency: 0,
                    bitstream: &copy,
                },
                &mut out,
            )
            .expect("sized");
        tx.send_frame(drain.dest, &out[..r.len()], r.stride, Pacing::Immediate)
            .expect("send");
        v.push(t0.elapsed().as_secs_f64() * 1e6);
    }
    drain.finish();
    v
}

/// The `q`-quantile (0..=1) of `v`.
pub fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    if v.is_empty() {
        return 0.0;
    }
    v[((v.len() - 1) as f64 * q).round() as usize]
}
