//! The capture → encode → FEC/packetize → send pipeline: stage traits, shared control state and
//! statistics. The threads that run it live in [`crate::io::stages`].
//!
//! ```text
//!  ┌─────────┐ ring 0 ┌─────────┐ ring 1 ┌───────────┐ ring 2 ┌─────────┐
//!  │ capture │───────►│ encode  │───────►│ fec +     │───────►│ send    │
//!  │ Source  │ C→E    │ Stage   │ E→F    │ packetize │ F→S    │ Sink    │
//!  └────┬────┘        └────┬────┘        │ Stage     │        └────┬────┘
//!       │ take()           │ take()      └─────┬─────┘             │ drop(FrameBuf)
//!       ▼                  ▼                   ▼ take()            ▼
//!  ┌─────────────────────────────────────────────────────────────────────┐
//!  │ FramePool: pool_frames × frame_capacity bytes, allocated at start   │
//!  └─────────────────────────────────────────────────────────────────────┘
//!  every ring: ring_depth slots, one Backpressure policy (PipelineConfig)
//! ```
//!
//! A stage is plugged in by implementing one of three traits:
//!
//! * [`Source`] (capture): polled for the next frame; says [`Captured::Idle`] when none is ready.
//! * [`Stage`] (encode, FEC/packetize): gets one input item and an [`Emit`] for zero or more
//!   outputs.
//! * [`Sink`] (send): consumes items.
//!
//! Item types are associated types, so the capture → encode ring can carry GPU surface
//! handles while the later rings carry [`FrameBuf`](crate::pool::FrameBuf)s; the pipeline only
//! requires that adjacent stages agree. Every stage gets a [`StageContext`]: the shared
//! [`FramePool`], the keyframe request flag and the stop flag.
//!
//! # Back-pressure
//!
//! With [`Backpressure::DropOldest`](crate::config::Backpressure::DropOldest) (live video) a
//! full ring evicts its oldest item, counts it in [`RingStats::dropped_oldest`] and, if the ring
//! carries encoded data ([`RingId::requests_keyframe_on_drop`]), raises the
//! [`KeyframeRequest`]: the decoder's reference chain is broken, so the encoder must send an
//! IDR next. A dropped raw frame (capture → encode) needs no IDR. With
//! [`Backpressure::Block`](crate::config::Backpressure::Block) (benches, file output) the
//! producer waits and nothing is lost.
//!
//! Asking for an IDR is not enough: the frames already encoded after the lost one still
//! reference it. Where they go depends on the ring that dropped:
//!
//! ```text
//!  encode ─► [E→F] ─► packetize ─► [F→S] ─► send
//!              │                     │
//!              │ dropped: no index   │ dropped: its index was taken, the client sees the
//!              │ given, so no gap on │ gap and asks for recovery itself (GameStream: IDR
//!              │ the wire            │ request; punktfunk/1: frame-id gap) — left alone
//!              ▼
//!  the next pop reports it (StageContext::input_gap); the packetize stage's KeyframeGate
//!  then skips every frame up to the next keyframe, without numbering them
//! ```
//!
//! Each ring item carries its push number, so the consumer learns of an eviction together
//! with the first item after it ([`crate::ring::Consumer::evicted_before_last_pop`]); no flag
//! is polled. The [`KeyframeGate`] also starts closed (a decoder can use nothing before the
//! first keyframe) and closes when the packetize stage itself drops a frame (no buffer, frame
//! refused).
//!
//! # Shutdown
//!
//! A stop request ends the source; each later stage drains its input ring, sees it close, calls
//! its `finish` hook and exits, which closes the next ring. A stage that fails or panics drops
//! its rings, so the stages before it see [`StageError::DownstreamClosed`] on their next emit
//! and the stages after it see their input close: the whole pipeline unwinds either way. An
//! abort skips the draining.
//!
//! This module decides only: no threads, clocks or sockets.

use std::error::Error as StdError;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use crate::config::{PipelineConfig, StageCores};
use crate::pool::{FramePool, PoolError, PoolStats};
use crate::ring::{RingError, RingStats};

/// The four stages, in pipeline order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum StageId {
    /// Frame source.
    Capture,
    /// Video encoder.
    Encode,
    /// FEC and packetizer.
    Fec,
    /// Network send.
    Send,
}

impl StageId {
    /// All stages in pipeline order.
    pub const ALL: [StageId; 4] = [
        StageId::Capture,
        StageId::Encode,
        StageId::Fec,
        StageId::Send,
    ];

    /// Position in pipeline order, 0..4.
    pub fn index(self) -> usize {
        self as usize
    }

    /// Lower-case name, as used in logs and profiles.
    pub fn name(self) -> &'static str {
        match self {
            StageId::Capture => "capture",
            StageId::Encode => "encode",
            StageId::Fec => "fec",
            StageId::Send => "send",
        }
    }

    /// Name given to the stage's thread (at most 15 bytes, the Linux `comm` limit).
    pub fn thread_name(self) -> &'static str {
        match self {
            StageId::Capture => "pf-capture",
            StageId::Encode => "pf-encode",
            StageId::Fec => "pf-fec",
            StageId::Send => "pf-send",
        }
    }

    /// The core this stage is configured to run on, if any.
    pub fn core(self, cores: &StageCores) -> Option<usize> {
        match self {
            StageId::Capture => cores.capture,
            StageId::Encode => cores.encode,
            StageId::Fec => cores.fec,
            StageId::Send => cores.send,
        }
    }
}

impl fmt::Display for StageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The three rings between the stages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RingId {
    /// Capture → encode: raw frames.
    CaptureEncode,
    /// Encode → FEC: encoded frames.
    EncodeFec,
    /// FEC → send: packetized frames.
    FecSend,
}

impl RingId {
    /// All rings in pipeline order.
    pub const ALL: [RingId; 3] = [RingId::CaptureEncode, RingId::EncodeFec, RingId::FecSend];

    /// The stage that pushes into this ring.
    pub fn producer(self) -> StageId {
        match self {
            RingId::CaptureEncode => StageId::Capture,
            RingId::EncodeFec => StageId::Encode,
            RingId::FecSend => StageId::Fec,
        }
    }

    /// The stage that pops from this ring.
    pub fn consumer(self) -> StageId {
        match self {
            RingId::CaptureEncode => StageId::Encode,
            RingId::EncodeFec => StageId::Fec,
            RingId::FecSend => StageId::Send,
        }
    }

    /// Whether an item evicted from this ring breaks the decoder's reference chain, so the
    /// encoder must be asked for a keyframe. True for every ring after the encoder.
    pub fn requests_keyframe_on_drop(self) -> bool {
        !matches!(self, RingId::CaptureEncode)
    }
}

/// How a stage ends or fails. Returned from the stage trait methods.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StageError {
    /// The next stage has gone; nothing more can be delivered. A normal way to end: return it
    /// (usually through `?` on [`Emit::emit`]) and the runner exits the stage quietly.
    #[error("the downstream stage has stopped")]
    DownstreamClosed,
    /// The pipeline was aborted while this stage waited. Also a normal way to end.
    #[error("the pipeline was aborted")]
    Aborted,
    /// The stage cannot go on; the pipeline unwinds and `join` reports this error.
    #[error(transparent)]
    Failed(Box<dyn StdError + Send + Sync>),
}

impl StageError {
    /// Wraps a stage's own error as [`StageError::Failed`].
    pub fn failed(error: impl Into<Box<dyn StdError + Send + Sync>>) -> Self {
        StageError::Failed(error.into())
    }

    /// Whether this is one of the normal ways for a stage to end.
    pub fn is_shutdown(&self) -> bool {
        matches!(self, StageError::DownstreamClosed | StageError::Aborted)
    }
}

/// Errors of the pipeline as a whole.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// A configuration value cannot work (local misuse).
    #[error("invalid pipeline configuration: {field}: {reason}")]
    InvalidConfig {
        /// The `PipelineConfig` field.
        field: &'static str,
        /// Why it is refused.
        reason: &'static str,
    },
    /// The buffer pool could not be built.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// A ring could not be built.
    #[error(transparent)]
    Ring(#[from] RingError),
    /// The OS refused to start a stage thread (resource exhaustion).
    #[error("could not start the {stage} stage thread")]
    Spawn {
        /// The stage whose thread failed to start.
        stage: StageId,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A stage returned [`StageError::Failed`].
    #[error("the {stage} stage failed")]
    Stage {
        /// The failing stage.
        stage: StageId,
        /// The stage's error.
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },
    /// A stage panicked.
    #[error("the {stage} stage panicked: {message}")]
    Panicked {
        /// The panicking stage.
        stage: StageId,
        /// The panic message, when it was a string.
        message: String,
    },
}

/// Checks that a configuration can build a pipeline.
pub fn validate(config: &PipelineConfig) -> Result<(), PipelineError> {
    if config.ring_depth == 0 {
        return Err(PipelineError::InvalidConfig {
            field: "ring_depth",
            reason: "a ring needs at least one slot",
        });
    }
    if config.pool_frames == 0 {
        return Err(PipelineError::InvalidConfig {
            field: "pool_frames",
            reason: "the pool needs at least one buffer",
        });
    }
    if config.frame_capacity == 0 {
        return Err(PipelineError::InvalidConfig {
            field: "frame_capacity",
            reason: "a frame buffer needs at least one byte",
        });
    }
    Ok(())
}

/// Pool buffers that can be out of the pool at once when every ring is full and every stage
/// holds one input and one fresh output buffer (`3 × ring_depth + 6`). A pool this large never
/// makes the source miss; a smaller one makes it miss (counted) only while the rings are full.
pub fn worst_case_frames_in_flight(ring_depth: usize) -> usize {
    ring_depth
        .saturating_mul(RingId::ALL.len())
        .saturating_add(6)
}

/// Where a stage puts its outputs. Implemented by the runner over the outgoing ring; `Vec<T>`
/// implements it too, for testing a stage without threads.
pub trait Emit<T> {
    /// Hands one item to the next stage, applying the ring's back-pressure policy (which may
    /// wait). An error means the stage should stop: return it with `?`.
    fn emit(&mut self, item: T) -> Result<(), StageError>;
}

impl<T> Emit<T> for Vec<T> {
    fn emit(&mut self, item: T) -> Result<(), StageError> {
        self.push(item);
        Ok(())
    }
}

/// What a [`Source`] produced when polled.
#[derive(Debug, PartialEq, Eq)]
pub enum Captured<T> {
    /// A frame, handed to the next stage.
    Frame(T),
    /// Nothing ready; the runner backs off and polls again. Backing off ends in sleeps of up
    /// to [`PARK_TIMEOUT`](crate::io::stages::PARK_TIMEOUT) that nothing outside the pipeline
    /// cuts short, so a source that can wait on its own event (a fence, a PipeWire fd) should
    /// wait inside `poll_frame`, with a short timeout so a stop request is still seen.
    Idle,
    /// The source has ended; the pipeline drains and stops.
    Finished,
}

/// The first stage: produces items (capture).
pub trait Source: Send + 'static {
    /// What it produces.
    type Output: Send + 'static;

    /// Produces the next item if one is ready. May block briefly (e.g. on a capture fence), but
    /// should return [`Captured::Idle`] rather than wait indefinitely, so a stop request is seen.
    fn poll_frame(
        &mut self,
        cx: &mut StageContext<'_>,
    ) -> Result<Captured<Self::Output>, StageError>;
}

/// A middle stage: turns each input into zero or more outputs (encode, FEC/packetize).
pub trait Stage: Send + 'static {
    /// What it consumes.
    type Input: Send + 'static;
    /// What it produces.
    type Output: Send + 'static;

    /// Processes one input. Dropping a [`FrameBuf`](crate::pool::FrameBuf) input returns it to
    /// its pool; an output buffer comes from [`StageContext::take_buf`].
    fn process(
        &mut self,
        input: Self::Input,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError>;

    /// Called whenever the input ring is empty, before the runner backs off.
    fn handle_idle(
        &mut self,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let _ = (output, cx);
        Ok(())
    }

    /// Called once when the input ring has closed and drained: flush anything held back.
    fn finish(
        &mut self,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        let _ = (output, cx);
        Ok(())
    }
}

/// The last stage: consumes items (send).
pub trait Sink: Send + 'static {
    /// What it consumes.
    type Input: Send + 'static;

    /// Consumes one item.
    fn consume(&mut self, input: Self::Input, cx: &mut StageContext<'_>) -> Result<(), StageError>;

    /// Called whenever the input ring is empty, before the runner backs off: reap completions,
    /// send paced datagrams that have come due.
    fn handle_idle(&mut self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }

    /// Called once when the input ring has closed and drained: wait for outstanding sends.
    fn finish(&mut self, cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let _ = cx;
        Ok(())
    }
}

/// A protocol's FEC + packetize stage, as the pipeline builder ([`crate::io::build`]) takes it:
/// encoded frames in, datagrams back to back out.
pub trait Packetizer: Stage<Input = crate::pool::FrameBuf, Output = crate::pool::FrameBuf> {
    /// Output bytes needed for an input of `frame_len` bytes (the pool is sized with this).
    fn max_output(&self, frame_len: usize) -> usize;

    /// The parity the stage starts with (punktfunk/1 adapts it later), for the effective
    /// settings view.
    fn fec(&self) -> crate::config::FecConfig;
}

/// Why [`write_into_pool_buf`] dropped a frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dropped {
    /// The [`KeyframeGate`] is closed: the frame may reference one the client never gets.
    AwaitingKeyframe,
    /// No pool buffer was free.
    NoBuffer,
    /// The writer refused the frame.
    Refused,
}

/// The body of a stage that writes each input into a fresh pool buffer (the packetize stages):
/// asks `gate` whether the frame may go out, takes a buffer, runs `write`, emits the result.
/// A frame the gate skips is dropped before `write` (so it takes no frame index). A frame that
/// finds no free buffer or that `write` refuses is dropped, a keyframe is requested so the
/// client can recover, and the gate closes until that keyframe. The caller counts the returned
/// reason; the stream goes on.
pub(crate) fn write_into_pool_buf<E: std::fmt::Display>(
    gate: &mut KeyframeGate,
    input: &crate::pool::FrameBuf,
    output: &mut dyn Emit<crate::pool::FrameBuf>,
    cx: &mut StageContext<'_>,
    what: &'static str,
    write: impl FnOnce(&crate::pool::FrameBuf, &mut crate::pool::FrameBuf) -> Result<(), E>,
) -> Result<Option<Dropped>, StageError> {
    match gate.handle_frame(cx.input_gap(), input.meta.keyframe) {
        GateVerdict::Send => {}
        GateVerdict::Skip { request_keyframe } => {
            if request_keyframe {
                cx.request_keyframe();
            }
            return Ok(Some(Dropped::AwaitingKeyframe));
        }
    }
    let Some(mut out) = cx.take_buf() else {
        cx.request_keyframe();
        gate.handle_drop();
        return Ok(Some(Dropped::NoBuffer));
    };
    match write(input, &mut out) {
        Ok(()) => output.emit(out).map(|()| None),
        Err(e) => {
            tracing::warn!(error = %e, len = input.len(), "{what} dropped");
            cx.request_keyframe();
            gate.handle_drop();
            Ok(Some(Dropped::Refused))
        }
    }
}

/// What [`KeyframeGate::handle_frame`] decided for one encoded frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GateVerdict {
    /// Packetize and send it.
    Send,
    /// Drop it unsent and unnumbered: it may reference a frame the client never gets.
    Skip {
        /// No keyframe has been asked for since the gate closed: ask now.
        request_keyframe: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GateState {
    /// Every frame goes out.
    Open,
    /// Non-keyframes are skipped until a keyframe arrives.
    AwaitingKeyframe {
        /// A keyframe has been asked for since the gate closed.
        requested: bool,
    },
}

/// Decides, frame by frame, whether the packetize stage may send an encoded frame: after a
/// frame was lost before numbering (evicted from the encode → packetize ring, or dropped by the
/// stage itself), the frames after it reference a picture the client never gets, so they are
/// skipped until the next keyframe. The client then sees contiguous frame numbers that go on
/// with a decodable frame.
///
/// ```text
///                 keyframe: Send
///        ┌──────────────────────────────┐
///        ▼                              │
///  ┌───────────┐  input gap, or the  ┌──────────────────┐
///  │   Open    │  stage's own drop   │ AwaitingKeyframe │  non-keyframe: Skip
///  │ all: Send │────────────────────►│                  │  (unnumbered)
///  └───────────┘                     └──────────────────┘
///                                      ▲ a new gate starts here
/// ```
///
/// It starts closed: nothing before the first keyframe can be decoded. A gap or a drop already
/// raised a keyframe request where it happened (the ring's producer, the stage's drop path), so
/// only a closed start asks for one, with the first frame it skips. Pure: fed by the stage with [`StageContext::input_gap`] and the
/// frame's keyframe flag.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyframeGate {
    state: GateState,
}

impl Default for KeyframeGate {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyframeGate {
    /// A gate for a new stream: closed until the first keyframe, none requested yet.
    pub fn new() -> Self {
        Self {
            state: GateState::AwaitingKeyframe { requested: false },
        }
    }

    /// Decides for one frame: `input_gap` frames were lost just before it (see
    /// [`StageContext::input_gap`]; their producer already asked for a keyframe), and it is a
    /// keyframe or not.
    pub fn handle_frame(&mut self, input_gap: u64, keyframe: bool) -> GateVerdict {
        if keyframe {
            self.state = GateState::Open;
            return GateVerdict::Send;
        }
        if input_gap > 0 {
            self.state = GateState::AwaitingKeyframe { requested: true };
        }
        match &mut self.state {
            GateState::Open => GateVerdict::Send,
            GateState::AwaitingKeyframe { requested } => GateVerdict::Skip {
                request_keyframe: !std::mem::replace(requested, true),
            },
        }
    }

    /// The stage dropped a frame itself after letting it through (and asked for a keyframe):
    /// the frames after it must wait for the next keyframe.
    pub fn handle_drop(&mut self) {
        self.state = GateState::AwaitingKeyframe { requested: true };
    }

    /// Whether non-keyframes are being skipped.
    pub fn is_awaiting_keyframe(&self) -> bool {
        matches!(self.state, GateState::AwaitingKeyframe { .. })
    }
}

/// A stage that hands every input on unchanged: for pipelines whose frames arrive already
/// encoded (benches, hardware encoders that write into the capture buffer).
#[derive(Debug)]
pub struct PassThrough<T>(std::marker::PhantomData<fn(T) -> T>);

impl<T> Default for PassThrough<T> {
    fn default() -> Self {
        Self(std::marker::PhantomData)
    }
}

impl<T: Send + 'static> Stage for PassThrough<T> {
    type Input = T;
    type Output = T;

    fn process(
        &mut self,
        input: T,
        output: &mut dyn Emit<T>,
        _cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        output.emit(input)
    }
}

// Boxed stages, so a host can choose its source and encoder at run time.
impl<T: Source + ?Sized> Source for Box<T> {
    type Output = T::Output;

    fn poll_frame(
        &mut self,
        cx: &mut StageContext<'_>,
    ) -> Result<Captured<Self::Output>, StageError> {
        (**self).poll_frame(cx)
    }
}

impl<T: Stage + ?Sized> Stage for Box<T> {
    type Input = T::Input;
    type Output = T::Output;

    fn process(
        &mut self,
        input: Self::Input,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        (**self).process(input, output, cx)
    }

    fn handle_idle(
        &mut self,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        (**self).handle_idle(output, cx)
    }

    fn finish(
        &mut self,
        output: &mut dyn Emit<Self::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        (**self).finish(output, cx)
    }
}

/// A sticky "send a keyframe next" flag plus a count of how often it was raised.
#[derive(Debug, Default)]
pub struct KeyframeRequest {
    pending: AtomicBool,
    requests: AtomicU64,
}

impl KeyframeRequest {
    /// Raises the flag (a dropped encoded frame, a client's loss report).
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
        // Release/Acquire pairs the request with its consumption; the flag carries no data,
        // so this only keeps the count and the flag from being observed out of order.
        self.pending.store(true, Ordering::Release);
    }

    /// Clears the flag and says whether it was raised. The encoder calls this once per frame.
    pub fn take(&self) -> bool {
        self.pending.swap(false, Ordering::AcqRel)
    }

    /// Whether the flag is raised, without clearing it.
    pub fn is_pending(&self) -> bool {
        self.pending.load(Ordering::Acquire)
    }

    /// How many times the flag was raised in total.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// Flags shared by every stage of one pipeline and its handle.
#[derive(Debug, Default)]
pub struct PipelineControl {
    stop: AtomicBool,
    abort: AtomicBool,
    keyframe: KeyframeRequest,
}

impl PipelineControl {
    /// Asks the source to end; the rest of the pipeline drains.
    pub fn request_stop(&self) {
        self.stop.store(true, Ordering::Release);
    }

    /// Asks every stage to end at once, dropping whatever is queued.
    pub fn request_abort(&self) {
        self.abort.store(true, Ordering::Release);
        self.stop.store(true, Ordering::Release);
    }

    /// Whether a stop (or an abort) was requested.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::Acquire)
    }

    /// Whether an abort was requested.
    pub fn abort_requested(&self) -> bool {
        self.abort.load(Ordering::Acquire)
    }

    /// The pipeline's keyframe request flag.
    pub fn keyframe(&self) -> &KeyframeRequest {
        &self.keyframe
    }
}

/// What a stage sees of the pipeline around it.
#[derive(Debug)]
pub struct StageContext<'a> {
    stage: StageId,
    pool: &'a FramePool,
    control: &'a PipelineControl,
    input_gap: u64,
}

impl<'a> StageContext<'a> {
    /// A context for `stage`. The runner builds one per thread; tests build their own.
    pub fn new(stage: StageId, pool: &'a FramePool, control: &'a PipelineControl) -> Self {
        Self {
            stage,
            pool,
            control,
            input_gap: 0,
        }
    }

    /// The stage this context belongs to.
    pub fn stage(&self) -> StageId {
        self.stage
    }

    /// The pipeline's buffer pool.
    pub fn pool(&self) -> &'a FramePool {
        self.pool
    }

    /// A buffer from the pool, or `None` (counted as a miss) when all are in use. A source
    /// that gets `None` should skip the frame or return [`Captured::Idle`]; never allocate.
    pub fn take_buf(&self) -> Option<crate::pool::FrameBuf> {
        self.pool.take()
    }

    /// Whether the pipeline is stopping (gracefully or not). A source that blocks should check
    /// this.
    pub fn stop_requested(&self) -> bool {
        self.control.stop_requested()
    }

    /// Whether the pipeline is being aborted: the stages after this one no longer consume, so
    /// anything that waits on them (a pool miss, a full ring) should give up and return
    /// [`StageError::Aborted`].
    pub fn abort_requested(&self) -> bool {
        self.control.abort_requested()
    }

    /// Asks the encoder for a keyframe.
    pub fn request_keyframe(&self) {
        self.control.keyframe().request();
    }

    /// Clears the keyframe request and says whether there was one. For the encode stage.
    pub fn take_keyframe_request(&self) -> bool {
        self.control.keyframe().take()
    }

    /// How many keyframe requests were raised so far; a stage after the encoder that sees this
    /// grow knows the reference chain may be broken until the next keyframe.
    pub fn keyframe_requests(&self) -> u64 {
        self.control.keyframe().requests()
    }

    /// Items of this stage's input ring that were evicted
    /// ([`Backpressure::DropOldest`](crate::config::Backpressure::DropOldest)) just before the
    /// current input: this stage never saw them, and the current input follows them. Set by
    /// the runner with every input (0 when nothing was lost); valid during `process` /
    /// `consume`.
    pub fn input_gap(&self) -> u64 {
        self.input_gap
    }

    /// Sets [`input_gap`](Self::input_gap) for the next input. The runner calls this with
    /// every item it pops; a test driving a stage by hand calls it to simulate an eviction.
    pub fn set_input_gap(&mut self, evicted: u64) {
        self.input_gap = evicted;
    }
}

/// Live counters of one stage, written by its thread.
#[derive(Debug)]
pub struct StageCounters {
    processed: AtomicU64,
    emitted: AtomicU64,
    pinned_core: AtomicUsize,
}

const NOT_PINNED: usize = usize::MAX;

impl Default for StageCounters {
    fn default() -> Self {
        Self {
            processed: AtomicU64::new(0),
            emitted: AtomicU64::new(0),
            pinned_core: AtomicUsize::new(NOT_PINNED),
        }
    }
}

impl StageCounters {
    /// One input item taken (for the source: one frame produced).
    pub fn record_processed(&self) {
        self.processed.fetch_add(1, Ordering::Relaxed);
    }

    /// One output item accepted by the next ring.
    pub fn record_emitted(&self) {
        self.emitted.fetch_add(1, Ordering::Relaxed);
    }

    /// The stage's thread is pinned to `core`.
    pub fn record_pinned(&self, core: usize) {
        self.pinned_core.store(core, Ordering::Relaxed);
    }

    /// A snapshot.
    pub fn snapshot(&self) -> StageStats {
        let core = self.pinned_core.load(Ordering::Relaxed);
        StageStats {
            processed: self.processed.load(Ordering::Relaxed),
            emitted: self.emitted.load(Ordering::Relaxed),
            pinned_core: (core != NOT_PINNED).then_some(core),
        }
    }
}

/// Counter snapshot of one stage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StageStats {
    /// Items taken from the input ring (for the source: frames produced).
    pub processed: u64,
    /// Items accepted by the output ring (always 0 for the sink).
    pub emitted: u64,
    /// The core the stage's thread is pinned to; `None` if unpinned or pinning failed.
    pub pinned_core: Option<usize>,
}

/// Counter snapshot of a whole pipeline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PipelineStats {
    /// Per stage, in [`StageId::ALL`] order.
    pub stages: [StageStats; 4],
    /// Per ring, in [`RingId::ALL`] order.
    pub rings: [RingStats; 3],
    /// The shared buffer pool; `misses` counts frames the source could not get a buffer for.
    pub pool: PoolStats,
    /// Keyframe requests raised (by drops after the encoder, stages, or the handle).
    pub keyframe_requests: u64,
}

impl PipelineStats {
    /// One stage's counters.
    pub fn stage(&self, stage: StageId) -> &StageStats {
        &self.stages[stage.index()]
    }

    /// One ring's counters.
    pub fn ring(&self, ring: RingId) -> &RingStats {
        &self.rings[ring as usize]
    }

    /// Items evicted by [`Backpressure::DropOldest`](crate::config::Backpressure) across all
    /// rings.
    pub fn dropped(&self) -> u64 {
        self.rings.iter().map(|r| r.dropped_oldest).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validate_refuses_zeros() {
        assert!(validate(&PipelineConfig::default()).is_ok());
        for (cfg, field) in [
            (
                PipelineConfig {
                    ring_depth: 0,
                    ..Default::default()
                },
                "ring_depth",
            ),
            (
                PipelineConfig {
                    pool_frames: 0,
                    ..Default::default()
                },
                "pool_frames",
            ),
            (
                PipelineConfig {
                    frame_capacity: 0,
                    ..Default::default()
                },
                "frame_capacity",
            ),
        ] {
            match validate(&cfg) {
                Err(PipelineError::InvalidConfig { field: f, .. }) => assert_eq!(f, field),
                other => panic!("{field}: {other:?}"),
            }
        }
    }

    #[test]
    fn ids_are_consistent() {
        for (i, s) in StageId::ALL.iter().enumerate() {
            assert_eq!(s.index(), i);
            assert!(s.thread_name().len() <= 15);
        }
        for r in RingId::ALL {
            assert_eq!(r.producer().index() + 1, r.consumer().index());
        }
        assert!(!RingId::CaptureEncode.requests_keyframe_on_drop());
        assert!(RingId::EncodeFec.requests_keyframe_on_drop());
        assert!(RingId::FecSend.requests_keyframe_on_drop());
        let cores = StageCores {
            capture: Some(1),
            encode: None,
            fec: Some(3),
            send: Some(0),
        };
        let got: Vec<_> = StageId::ALL.iter().map(|s| s.core(&cores)).collect();
        assert_eq!(got, [Some(1), None, Some(3), Some(0)]);
        assert_eq!(worst_case_frames_in_flight(4), 18);
    }

    #[test]
    fn keyframe_request_is_sticky_until_taken() {
        let k = KeyframeRequest::default();
        assert!(!k.take());
        k.request();
        k.request();
        assert!(k.is_pending());
        assert!(k.take());
        assert!(!k.take());
        assert_eq!(k.requests(), 2);
    }

    #[test]
    fn keyframe_gate_skips_until_a_keyframe() {
        use GateVerdict::{Send, Skip};
        let skip = |request_keyframe| Skip { request_keyframe };
        let mut g = KeyframeGate::new();
        // A stream starts closed: the first non-keyframe asks for a keyframe, once.
        assert!(g.is_awaiting_keyframe());
        assert_eq!(g.handle_frame(0, false), skip(true));
        assert_eq!(g.handle_frame(0, false), skip(false));
        assert_eq!(g.handle_frame(0, true), Send);
        assert!(!g.is_awaiting_keyframe());
        assert_eq!(g.handle_frame(0, false), Send);
        // A gap before a frame: the evicting producer asked already, so no second request.
        assert_eq!(g.handle_frame(1, false), skip(false));
        assert_eq!(g.handle_frame(0, false), skip(false));
        assert_eq!(g.handle_frame(3, false), skip(false));
        // A keyframe right after a gap needs nothing it could have lost.
        assert_eq!(g.handle_frame(2, true), Send);
        assert_eq!(g.handle_frame(0, false), Send);
        // The stage's own drop (it asked for the keyframe itself) closes the gate too.
        g.handle_drop();
        assert_eq!(g.handle_frame(0, false), skip(false));
        assert_eq!(g.handle_frame(0, true), Send);
        // A stream that starts with its keyframe skips nothing.
        let mut g = KeyframeGate::default();
        assert_eq!(g.handle_frame(0, true), Send);
        assert_eq!(g.handle_frame(0, false), Send);
    }

    #[test]
    fn control_abort_implies_stop() {
        let c = PipelineControl::default();
        assert!(!c.stop_requested());
        c.request_stop();
        assert!(c.stop_requested() && !c.abort_requested());
        let c = PipelineControl::default();
        c.request_abort();
        assert!(c.stop_requested() && c.abort_requested());
    }

    /// A stage can be exercised without threads through `Vec` as its `Emit`.
    #[test]
    fn stage_runs_inline() {
        struct Double;
        impl Stage for Double {
            type Input = u32;
            type Output = u32;
            fn process(
                &mut self,
                input: u32,
                output: &mut dyn Emit<u32>,
                cx: &mut StageContext<'_>,
            ) -> Result<(), StageError> {
                if cx.take_keyframe_request() {
                    output.emit(0)?;
                }
                output.emit(input)?;
                output.emit(input)
            }
        }
        let pool = FramePool::new(1, 1).unwrap();
        let control = PipelineControl::default();
        let mut cx = StageContext::new(StageId::Encode, &pool, &control);
        let mut out = Vec::new();
        Double.process(7, &mut out, &mut cx).unwrap();
        cx.request_keyframe();
        Double.process(8, &mut out, &mut cx).unwrap();
        assert_eq!(out, [7, 7, 0, 8, 8]);
        assert_eq!(control.keyframe().requests(), 1);
    }

    #[test]
    fn stats_helpers() {
        let mut s = PipelineStats::default();
        s.rings[1].dropped_oldest = 2;
        s.rings[2].dropped_oldest = 3;
        s.stages[3].processed = 9;
        assert_eq!(s.dropped(), 5);
        assert_eq!(s.stage(StageId::Send).processed, 9);
        assert_eq!(s.ring(RingId::FecSend).dropped_oldest, 3);
        assert!(StageError::DownstreamClosed.is_shutdown());
        assert!(!StageError::failed("x").is_shutdown());
    }
}
