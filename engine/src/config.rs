//! Plain configuration values shared by the engine's stages.
//!
//! These are filled from a tuning profile (`punktfunk-tuning` reads `tuning/*.toml` and converts
//! into these types) or built in code by tests and benches. They hold no behaviour beyond
//! defaults and validation, so both the pure modules and the io layer can depend on them.

use std::time::Duration;

/// How a stage ring behaves when the consumer falls behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Backpressure {
    /// Replace the oldest queued item with the new one. Latency stays bounded; the dropped
    /// frame is counted and the encoder is asked for an IDR. The right choice for live video.
    #[default]
    DropOldest,
    /// Make the producer wait for room. Nothing is lost; latency grows. For benches and files.
    Block,
}

/// Which core each pipeline stage runs on. `None` leaves the thread to the scheduler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageCores {
    /// Capture stage core.
    pub capture: Option<usize>,
    /// Encode stage core.
    pub encode: Option<usize>,
    /// FEC + packetize stage core.
    pub fec: Option<usize>,
    /// Send stage core.
    pub send: Option<usize>,
}

/// Scheduling priority the pipeline's stage threads ask for when they start.
///
/// Raising a thread's priority needs `CAP_SYS_NICE` (or an `RLIMIT_NICE` /
/// `RLIMIT_RTPRIO` that allows it); where the OS refuses, the pipeline logs one warning and
/// its threads run at the priority they inherited.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ThreadPriority {
    /// Leave the threads as they are (the host process's nice value, `SCHED_OTHER`).
    Normal,
    /// Nice [`ThreadPriority::HIGH_NICE`] (`SCHED_OTHER`): the stages win CPU time from
    /// nice-0 work (a game) without being able to starve the machine.
    #[default]
    High,
    /// `SCHED_FIFO` at [`ThreadPriority::REALTIME_PRIORITY`]: the stages preempt every
    /// normal thread. A stage that spins holds a core until it parks; use with cores to spare.
    Realtime,
}

impl ThreadPriority {
    /// The nice value of [`ThreadPriority::High`].
    pub const HIGH_NICE: i32 = -10;
    /// The `SCHED_FIFO` priority (1..=99) of [`ThreadPriority::Realtime`].
    pub const REALTIME_PRIORITY: i32 = 10;

    /// The profile's name for it: `"normal"`, `"high"`, `"realtime"`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::High => "high",
            Self::Realtime => "realtime",
        }
    }
}

impl std::fmt::Display for ThreadPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Shape of the capture → encode → FEC/packetize → send pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineConfig {
    /// Slots in each ring between two stages.
    pub ring_depth: usize,
    /// Frame buffers allocated at start-up and recycled; never grown in steady state.
    pub pool_frames: usize,
    /// Capacity of one frame buffer in bytes (the largest encoded frame accepted).
    pub frame_capacity: usize,
    /// What a full ring does.
    pub backpressure: Backpressure,
    /// Core pinning per stage.
    pub cores: StageCores,
    /// Scheduling priority of the stage threads.
    pub priority: ThreadPriority,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        Self {
            ring_depth: 4,
            // = pipeline::worst_case_frames_in_flight(4): the source never misses a buffer.
            pool_frames: 18,
            frame_capacity: 4 << 20,
            backpressure: Backpressure::DropOldest,
            cores: StageCores::default(),
            priority: ThreadPriority::default(),
        }
    }
}

/// How a frame's datagrams are spread over time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PacingConfig {
    /// Share of the frame interval over which one frame's datagrams are spread, in (0, 1].
    /// 0 disables pacing: the whole frame is sent as fast as the driver can.
    pub frame_share: f32,
    /// Datagrams per microburst (one GSO send, at most 64 KiB of payload).
    pub burst_datagrams: usize,
}

impl Default for PacingConfig {
    fn default() -> Self {
        Self {
            frame_share: 0.5,
            burst_datagrams: 32,
        }
    }
}

/// Which kernel send path to prefer. The driver probes the kernel once and falls back
/// io_uring+GSO → io_uring → sendmmsg → sendto when a feature is missing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendPathPreference {
    /// Best available path.
    #[default]
    Auto,
    /// io_uring with UDP GSO.
    UringGso,
    /// io_uring, one datagram per SQE.
    Uring,
    /// `sendmmsg(2)` batches (with GSO when available).
    Sendmmsg,
    /// One `sendto(2)` per datagram; the baseline.
    Sendto,
}

/// Send-side io settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SendConfig {
    /// Preferred kernel path.
    pub path: SendPathPreference,
    /// Use `IORING_OP_SEND_ZC` where the kernel supports it.
    pub zero_copy: bool,
    /// Spin on the completion queue instead of sleeping in `io_uring_enter`.
    pub busy_poll: bool,
    /// `SO_BUSY_POLL` microseconds for the receive side (0 = off).
    pub so_busy_poll_us: u32,
    /// Register the send buffers with the ring (`IORING_REGISTER_BUFFERS`).
    pub registered_buffers: bool,
    /// io_uring submission queue entries.
    pub ring_entries: u32,
    /// `SO_SNDBUF` bytes requested (0 = kernel default).
    pub socket_send_buffer: usize,
    /// Pacing of each frame's datagrams.
    pub pacing: PacingConfig,
    /// Who sends a session's frames: one shared driver thread per send core for every session
    /// (default), or a thread of the session's own ([`crate::io::driver`]).
    pub driver: SendDriverMode,
}

/// Who carries out a session's paced sends (`[send] driver`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SendDriverMode {
    /// One driver thread per send core takes the paced bursts of every session on that core
    /// from one deadline queue ([`crate::send_queue`]); a session's send stage only hands
    /// frames over.
    #[default]
    Shared,
    /// Each session's send stage waits out its own pacing and sends itself (one busy thread
    /// per session).
    PerSession,
}

impl Default for SendConfig {
    fn default() -> Self {
        Self {
            path: SendPathPreference::Auto,
            zero_copy: false,
            busy_poll: false,
            so_busy_poll_us: 0,
            registered_buffers: false,
            ring_entries: 256,
            socket_send_buffer: 8 << 20,
            pacing: PacingConfig::default(),
            driver: SendDriverMode::Shared,
        }
    }
}

/// Forward error correction of the video packetizers (both protocols).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecConfig {
    /// Parity shards as a percentage of data shards, 0..=255 (GameStream carries it in an 8-bit
    /// header field). punktfunk/1 starts here and adapts to the client's loss reports.
    pub percent: u8,
    /// Parity shards per block at least, whatever the percentage gives (a GameStream client may
    /// ask for more; the larger value wins).
    pub min_parity: u16,
    /// Threads the parity of one GameStream frame may be encoded on (1..=4, one FEC block
    /// each; the packetize stage's own thread is one of them). punktfunk/1 frames are one
    /// block and use one thread.
    pub threads: u8,
    /// Parity follows the client's loss reports (GameStream: `fec::adaptive` from the
    /// client's loss statistics; punktfunk/1: `pf1::adaptive::FecController`, 5–50 %), starting
    /// at `percent`; false: `percent` throughout (sweeps compare both).
    pub adaptive: bool,
}

impl Default for FecConfig {
    fn default() -> Self {
        Self {
            percent: 20,
            min_parity: 2,
            threads: 1,
            adaptive: true,
        }
    }
}

/// Everything of a tuning profile that shapes one session's video pipeline: the `[pipeline]`,
/// `[send]` (with `[pacing]`) and `[fec]` tables. `punktfunk-tuning` resolves a profile into
/// this; [`crate::io::build`] turns it into a running pipeline.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SessionProfile {
    /// Rings, buffer pool, back-pressure, core pinning.
    pub pipeline: PipelineConfig,
    /// Send path, socket options and pacing.
    pub send: SendConfig,
    /// Forward error correction.
    pub fec: FecConfig,
}

/// Upper bound of one frame interval at the lowest frame rate the engine paces for.
pub const MAX_FRAME_INTERVAL: Duration = Duration::from_millis(100);
