//! The path `punktfunk serve` runs, measured on loopback.
//!
//! Every workload here builds its sessions the way the host does: a
//! [`PipelineBuilder`] from a [`SessionProfile`], the punktfunk/1 packetize stage from
//! [`media::packetize_stage`] (what `Pf1Media::start` uses), the send socket from
//! [`PipelineBuilder::bind_sender`], and [`PipelineBuilder::spawn`] for the four stage threads.
//!
//! * **goodput** ([`goodput`], report line `pf1-goodput`): a synthetic source hands 1 MiB
//!   frames to that pipeline (one copy into a pool buffer, as an encoder's output would be),
//!   a pass-through encode stage, the host's packetize stage (GF(2^16) FEC + AES-128-GCM), the
//!   send stage (io_uring + GSO, unpaced), to the receiver of [`crate::pf1`] (GRO, injected
//!   loss, decrypt, reassemble). As in the direct-sender workload, the source runs at most
//!   [`crate::pf1::WINDOW`] frames ahead of the receiver's last finished frame.
//! * **sessions scaling** ([`sessions_scaling`], `sessions-scaling`): N concurrent sessions of
//!   the host's real media ([`media::pattern_stages`]: test pattern → openh264, 1280x720@60,
//!   the profile's defaults, pacing included), each to its own loopback drain. CPU time is
//!   read per thread from `/proc/self/task/*/schedstat` (nanoseconds on a CPU), so the drain
//!   threads (the clients) are left out exactly.
//! * **under load** ([`under_load`], `under-load-*`): frame latency and goodput on the idle
//!   machine, then with [`Hogs`] (busy threads at the report's nice value, 0, standing in for a
//!   game) on every core, in the same run.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_control::pf1::media::{self, MediaOptions};
use punktfunk_control::pf1::{Codec, DATA_KEY_MATERIAL_LEN, DataPlaneParams, FecScheme, Mode};
use punktfunk_engine::config::{SessionProfile, ThreadPriority};
use punktfunk_engine::io::Caps;
use punktfunk_engine::io::build::{PipelineBuilder, VideoSend, VideoStages};
use punktfunk_engine::io::sink::{OnSent, PeerAddr};
use punktfunk_engine::pf1::Pf1SenderConfig;
use punktfunk_engine::pipeline::{Captured, PassThrough, Source, StageContext, StageError};
use punktfunk_engine::pool::FrameBuf;

use crate::pf1::{
    PARITY_PERCENT, Pf1Goodput, Progress, RECEIVER_THREAD, Receiver, ReceiverConfig, WINDOW,
};
use crate::send::Drain;

/// Name of the [`Hogs`] threads.
pub const HOG_THREAD: &str = "bench-hog";

/// The data-plane parameters a punktfunk/1 Start would give a session streaming `mode` to
/// `client_port` on loopback, with the workloads' key and parity.
pub fn data_plane_params(mode: Mode, client_port: u16) -> DataPlaneParams {
    DataPlaneParams {
        session_id: 1,
        // crate::pf1::key() on the receiving side.
        key_material: [0x77; DATA_KEY_MATERIAL_LEN],
        key_epoch: 0,
        codec: Codec::H264,
        fec: FecScheme::Gf16Leopard,
        parity_percent: PARITY_PERCENT,
        shard_payload: u16::try_from(Pf1SenderConfig::default().shard_len)
            .expect("the default shard length fits a u16"),
        mode,
        peer_ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        host_data_port: 0,
        client_data_port: client_port,
    }
}

fn loopback() -> SocketAddr {
    SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), 0)
}

/// Counts frames sent by a session.
fn frame_counter() -> (Arc<AtomicU64>, OnSent) {
    let frames = Arc::new(AtomicU64::new(0));
    let f = frames.clone();
    (
        frames,
        Box::new(move |_, _| {
            f.fetch_add(1, Ordering::Relaxed);
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// CPU accounting

/// CPU time of every thread of this process at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    /// Thread id → (name, nanoseconds on a CPU).
    threads: HashMap<u32, (String, u64)>,
}

/// CPU used between two [`CpuSnapshot`]s.
#[derive(Debug, Clone, Copy)]
pub struct CpuUse {
    /// Wall time between the snapshots.
    pub wall: Duration,
    /// CPU time of the threads counted.
    pub counted: Duration,
    /// CPU time of the threads left out by name.
    pub excluded: Duration,
}

impl CpuSnapshot {
    /// Reads `/proc/self/task/*/schedstat` (first field: time on a CPU, ns) and `comm`.
    pub fn take() -> Self {
        let at = Instant::now();
        let mut threads = HashMap::new();
        if let Ok(dir) = std::fs::read_dir("/proc/self/task") {
            for entry in dir.flatten() {
                let Some(tid) = entry.file_name().to_str().and_then(|s| s.parse().ok()) else {
                    continue;
                };
                let path = entry.path();
                let ns = std::fs::read_to_string(path.join("schedstat"))
                    .ok()
                    .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok());
                let name = std::fs::read_to_string(path.join("comm"))
                    .map(|s| s.trim().to_string())
                    .unwrap_or_default();
                if let Some(ns) = ns {
                    threads.insert(tid, (name, ns));
                }
            }
        }
        Self { at, threads }
    }

    /// CPU used since `earlier` by threads alive at both snapshots, those named in `exclude`
    /// counted apart.
    pub fn since(&self, earlier: &Self, exclude: &[&str]) -> CpuUse {
        let (mut counted, mut excluded) = (0u64, 0u64);
        for (tid, (name, ns)) in &self.threads {
            let Some((_, before)) = earlier.threads.get(tid) else {
                continue;
            };
            let d = ns.saturating_sub(*before);
            if exclude.iter().any(|e| name == e) {
                excluded += d;
            } else {
                counted += d;
            }
        }
        CpuUse {
            wall: self.at.saturating_duration_since(earlier.at),
            counted: Duration::from_nanos(counted),
            excluded: Duration::from_nanos(excluded),
        }
    }
}

/// Whether per-thread CPU time can be read here.
pub fn cpu_accounting_available() -> bool {
    !CpuSnapshot::take().threads.is_empty()
}

// ---------------------------------------------------------------------------------------------
// Load

/// Busy threads standing in for a game: each spins until stopped, at the nice value it
/// inherited from the report (0 unless the report was started under `nice`).
pub struct Hogs {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Hogs {
    /// Starts `n` busy threads.
    pub fn start(n: usize) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = stop.clone();
                std::thread::Builder::new()
                    .name(HOG_THREAD.into())
                    .spawn(move || {
                        let mut x = 0u64;
                        while !stop.load(Ordering::Relaxed) {
                            for _ in 0..4096 {
                                x = std::hint::black_box(x.wrapping_mul(6364136223846793005) + 1);
                            }
                        }
                    })
                    .expect("spawn a hog thread")
            })
            .collect();
        Self { stop, threads }
    }

    /// Stops and joins the threads.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let _ = t.join();
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Goodput through the serve pipeline

/// Frames handed to the pipeline as an encoder would: a copy of `frame` into a pool buffer,
/// at most `window` frames ahead of what the receiver finished; the first frame and every
/// frame after a keyframe request are keyframes (the packetize stage's gate wants them).
struct WindowedSource {
    frame: Arc<Vec<u8>>,
    progress: Arc<Progress>,
    window: u64,
    emitted: u64,
    epoch: Instant,
    waiting_since: Option<Instant>,
    stalls: Arc<AtomicU64>,
}

impl Source for WindowedSource {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        // Wait for the receiver as a source waits for its next frame: parked (the receiver
        // unparks this thread at every finished frame), handing back to the runner every few
        // hundred µs so a stop request is seen. Parked rather than yielding: a yield hands the
        // core to whatever else is runnable (the hogs of `under_load`) until the next tick.
        let _ = self.progress.waiter.set(std::thread::current());
        let polled = Instant::now();
        while self.emitted >= self.progress.finished.load(Ordering::Acquire) + self.window {
            let since = *self.waiting_since.get_or_insert(polled);
            if since.elapsed() > Duration::from_millis(100) {
                // The receiver lost track (a frame neither delivered nor declared lost yet):
                // send anyway, as the direct-sender workload does.
                self.stalls.fetch_add(1, Ordering::Relaxed);
                break;
            }
            if polled.elapsed() > Duration::from_micros(500) {
                return Ok(Captured::Idle);
            }
            std::thread::park_timeout(Duration::from_micros(500));
        }
        let Some(mut b) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        self.waiting_since = None;
        b.fill_from(&self.frame).map_err(StageError::failed)?;
        b.meta.capture_ns = self.epoch.elapsed().as_nanos() as u64;
        b.meta.keyframe = self.emitted == 0 || cx.take_keyframe_request();
        self.emitted += 1;
        Ok(Captured::Frame(b))
    }
}

/// Knobs of [`goodput`].
#[derive(Debug, Clone, Copy)]
pub struct GoodputConfig {
    /// Frame length in bytes.
    pub frame_len: usize,
    /// How long the source runs.
    pub duration: Duration,
    /// Share of the datagrams dropped at the receiver (seeded).
    pub loss: f64,
    /// `pipeline.priority` of the session (the receiver thread asks for the same).
    pub priority: ThreadPriority,
    /// Measure the raw send ceiling of the same datagrams too.
    pub ceiling: bool,
}

impl Default for GoodputConfig {
    fn default() -> Self {
        Self {
            frame_len: 1 << 20,
            duration: Duration::from_secs(3),
            loss: 0.01,
            priority: ThreadPriority::default(),
            ceiling: true,
        }
    }
}

/// The profile of the goodput session: the host's defaults, pacing off (the figure is what the
/// path sustains, not a frame rate) and the given priority.
pub fn goodput_profile(priority: ThreadPriority) -> SessionProfile {
    let mut profile = SessionProfile::default();
    profile.pipeline.priority = priority;
    profile.send.pacing.frame_share = 0.0;
    profile
}

/// punktfunk/1 goodput through the pipeline `serve` builds (see the module docs).
pub fn goodput(caps: &Caps, config: &GoodputConfig) -> Pf1Goodput {
    let rx = Receiver::start(
        caps,
        &ReceiverConfig {
            loss: config.loss,
            recv_batch: 8,
            recv_path: Default::default(),
            core: None,
            priority: config.priority,
        },
    );
    let builder = PipelineBuilder::new(goodput_profile(config.priority), caps.clone());
    let params = data_plane_params(Mode::new(1920, 1080, 60), rx.dest.port());
    let (packetize, _feedback) =
        media::packetize_stage(&MediaOptions::default(), builder.fec(), &params)
            .expect("the host's packetize stage builds");
    let stalls = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let source = WindowedSource {
        frame: Arc::new(crate::random_shards(1, config.frame_len, 0xf1).remove(0)),
        progress: rx.progress.clone(),
        window: WINDOW,
        emitted: 0,
        epoch,
        waiting_since: None,
        stalls: stalls.clone(),
    };
    let stages = VideoStages {
        source,
        encode: PassThrough::default(),
        packetize,
        media_capacity: config.frame_len,
        frame_interval: Duration::from_millis(16),
    };
    let sender = builder.bind_sender(loopback()).expect("loopback sender");
    let peer = Arc::new(PeerAddr::default());
    peer.set(Some(rx.dest));
    let (sent, on_sent) = frame_counter();
    let start = Instant::now();
    let pipeline = builder
        .spawn(
            "bench pf1-goodput",
            stages,
            VideoSend {
                sender,
                peer,
                on_sent: Some(on_sent),
            },
        )
        .expect("pipeline starts");
    let path = pipeline.effective().send_path.to_string();
    std::thread::sleep(config.duration);
    pipeline.shutdown().expect("pipeline runs");
    let sent = sent.load(Ordering::Relaxed);
    rx.goodput(
        sent,
        start,
        || {
            if config.ceiling {
                crate::pf1::ceiling(
                    caps,
                    config.frame_len,
                    usize::from(params.shard_payload),
                    config.duration,
                )
            } else {
                f64::NAN
            }
        },
        stalls.load(Ordering::Relaxed),
        path,
    )
}

// ---------------------------------------------------------------------------------------------
// Sessions scaling

/// One point of [`sessions_scaling`].
#[derive(Debug, Clone, Copy)]
pub struct ScalingPoint {
    /// Concurrent sessions.
    pub sessions: usize,
    /// Host CPU per stream, % of one core (drain threads left out).
    pub cpu_percent: f64,
    /// Frames sent per second, mean over the streams.
    pub fps: f64,
    /// Frames sent per second by the slowest stream.
    pub min_fps: f64,
    /// CPU of the drain threads (the clients), % of one core in all, left out above.
    pub client_cpu_percent: f64,
    /// Frames dropped in the pipelines (ring evictions), all sessions.
    pub dropped: u64,
}

impl std::fmt::Display for ScalingPoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} sessions: {:.1} % of a core per stream, {:.1} fps per stream (slowest {:.1}), \
             clients {:.1} % (left out), {} frames dropped in the pipelines",
            self.sessions,
            self.cpu_percent,
            self.fps,
            self.min_fps,
            self.client_cpu_percent,
            self.dropped
        )
    }
}

/// `mode` streams of the host's media at once, for each count in `counts`: after `warmup`,
/// CPU and frames over `measure` (see the module docs).
pub fn sessions_scaling(
    caps: &Caps,
    counts: &[usize],
    mode: Mode,
    warmup: Duration,
    measure: Duration,
) -> Vec<ScalingPoint> {
    let opts = MediaOptions::default();
    let builder = PipelineBuilder::new(opts.profile.clone(), caps.clone());
    counts
        .iter()
        .map(|&n| {
            let mut sessions = Vec::with_capacity(n);
            for i in 0..n {
                let drain = Drain::start(caps);
                let params = data_plane_params(mode, drain.dest.port());
                let (packetize, feedback) = media::packetize_stage(&opts, builder.fec(), &params)
                    .expect("the host's packetize stage builds");
                let (stages, switch) =
                    media::pattern_stages(params.mode, opts.bitrate_kbps, packetize)
                        .expect("the host's media builds");
                let peer = Arc::new(PeerAddr::default());
                peer.set(Some(drain.dest));
                let (frames, on_sent) = frame_counter();
                let pipeline = builder
                    .spawn(
                        &format!("bench session {i}"),
                        stages,
                        VideoSend {
                            sender: builder.bind_sender(loopback()).expect("loopback sender"),
                            peer,
                            on_sent: Some(on_sent),
                        },
                    )
                    .expect("pipeline starts");
                sessions.push((pipeline, drain, frames, switch, feedback));
            }
            std::thread::sleep(warmup);
            let (c0, f0): (_, Vec<u64>) = (
                CpuSnapshot::take(),
                sessions
                    .iter()
                    .map(|s| s.2.load(Ordering::Relaxed))
                    .collect(),
            );
            std::thread::sleep(measure);
            let c1 = CpuSnapshot::take();
            let fps: Vec<f64> = sessions
                .iter()
                .zip(&f0)
                .map(|(s, f0)| {
                    (s.2.load(Ordering::Relaxed) - f0) as f64
                        / c1.at.saturating_duration_since(c0.at).as_secs_f64()
                })
                .collect();
            let mut dropped = 0;
            for (pipeline, drain, ..) in sessions {
                if let Ok(stats) = pipeline.abort() {
                    dropped += stats.dropped();
                }
                drain.finish();
            }
            let cpu = c1.since(&c0, &[RECEIVER_THREAD]);
            let wall = cpu.wall.as_secs_f64();
            ScalingPoint {
                sessions: n,
                cpu_percent: 100.0 * cpu.counted.as_secs_f64() / wall / n as f64,
                fps: fps.iter().sum::<f64>() / n as f64,
                min_fps: fps.iter().copied().fold(f64::INFINITY, f64::min),
                client_cpu_percent: 100.0 * cpu.excluded.as_secs_f64() / wall,
                dropped,
            }
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Under load

/// Result of [`under_load`]: the same two figures idle and with the hogs running.
#[derive(Debug, Clone)]
pub struct UnderLoad {
    /// Frame latency p99 (µs), idle.
    pub p99_idle: f64,
    /// Frame latency p99 (µs), loaded.
    pub p99_loaded: f64,
    /// Frame latency p50 (µs), idle.
    pub p50_idle: f64,
    /// Frame latency p50 (µs), loaded.
    pub p50_loaded: f64,
    /// Goodput of each idle round.
    pub goodput_idle: Vec<Pf1Goodput>,
    /// Goodput of each loaded round.
    pub goodput_loaded: Vec<Pf1Goodput>,
}

impl UnderLoad {
    /// Mean goodput (Gbit/s) over the idle and the loaded rounds.
    pub fn goodput_gbps(&self) -> (f64, f64) {
        let mean = |v: &[Pf1Goodput]| v.iter().map(|g| g.gbps).sum::<f64>() / v.len().max(1) as f64;
        (mean(&self.goodput_idle), mean(&self.goodput_loaded))
    }

    /// Unrecoverable frames over the idle and the loaded rounds.
    pub fn unrecoverable(&self) -> (u64, u64) {
        let sum = |v: &[Pf1Goodput]| v.iter().map(|g| g.unrecoverable).sum();
        (sum(&self.goodput_idle), sum(&self.goodput_loaded))
    }
}

/// Frame latency (the `frame-latency` workload, 1 MiB at 60 fps, `frames` per round) and
/// goodput through the serve pipeline ([`goodput`], `seconds` per round, 1 % loss), on the idle
/// machine and with `hogs` busy threads, in `rounds` alternating idle/loaded rounds (so that
/// background load drifting during the run hits both alike); the stage threads ask for
/// `priority` throughout. Latency samples are pooled per state.
pub fn under_load(
    caps: &Caps,
    priority: ThreadPriority,
    hogs: usize,
    rounds: usize,
    frames: u64,
    seconds: f64,
) -> UnderLoad {
    let run = |lat: &mut Vec<f64>, goodputs: &mut Vec<Pf1Goodput>| {
        lat.extend(crate::send::engine_latency_at(
            caps,
            1 << 20,
            frames,
            60,
            priority,
        ));
        goodputs.push(goodput(
            caps,
            &GoodputConfig {
                duration: Duration::from_secs_f64(seconds),
                priority,
                ceiling: false,
                ..Default::default()
            },
        ));
    };
    let (mut lat_idle, mut lat_loaded) = (Vec::new(), Vec::new());
    let (mut goodput_idle, mut goodput_loaded) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        run(&mut lat_idle, &mut goodput_idle);
        let load = Hogs::start(hogs);
        // Let the scheduler see the hogs as runnable for a while before measuring.
        std::thread::sleep(Duration::from_millis(200));
        run(&mut lat_loaded, &mut goodput_loaded);
        load.stop();
    }
    let q = |v: &mut Vec<f64>, q| crate::send::quantile(v, q);
    UnderLoad {
        p99_idle: q(&mut lat_idle, 0.99),
        p99_loaded: q(&mut lat_loaded, 0.99),
        p50_idle: q(&mut lat_idle, 0.5),
        p50_loaded: q(&mut lat_loaded, 0.5),
        goodput_idle,
        goodput_loaded,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_snapshots_see_a_busy_thread() {
        if !cpu_accounting_available() {
            eprintln!("SKIP no /proc/self/task/*/schedstat here");
            return;
        }
        let before = CpuSnapshot::take();
        let hogs = Hogs::start(1);
        std::thread::sleep(Duration::from_millis(50));
        // The hog was started after `before`: it is not counted, the snapshot must not fail.
        let mid = CpuSnapshot::take();
        std::thread::sleep(Duration::from_millis(100));
        let after = CpuSnapshot::take();
        hogs.stop();
        let all = after.since(&mid, &[]);
        let without = after.since(&mid, &[HOG_THREAD]);
        assert!(all.counted > without.counted, "{all:?} vs {without:?}");
        assert!(without.excluded > Duration::from_millis(10), "{without:?}");
        assert!(after.since(&before, &[]).wall >= Duration::from_millis(150));
    }
}
