//! The stage threads: one per pipeline stage, connected by [`crate::ring`]s, each optionally
//! pinned to a core.
//!
//! [`Pipeline::spawn`] builds the pool and the rings from a [`PipelineConfig`], starts the four
//! threads (`pf-capture`, `pf-encode`, `pf-fec`, `pf-send`) and returns a [`PipelineHandle`].
//! The pure parts (stage traits, counters, control flags) are in [`crate::pipeline`].
//!
//! # Waiting
//!
//! The rings never wait; this module does. A stage whose input ring is empty, or whose output
//! ring is full under [`Backpressure::Block`], spins and then yields with
//! [`crossbeam_utils::Backoff`], and once that is exhausted parks the thread for at most
//! [`PARK_TIMEOUT`]. A push unparks the consumer's thread; under `Block` a pop unparks the
//! producer's. `Thread::unpark` is one atomic swap unless the thread is actually parked (then a
//! futex wake), so the latency of a hand-off to a sleeping stage is one wake-up, and the
//! timeout only bounds the cost of a wake-up lost before a thread registered itself.
//!
//! # Threads
//!
//! Each thread pins itself to its core ([`PipelineConfig::cores`]) and asks for the profile's
//! scheduling priority ([`PipelineConfig::priority`], `pipeline.priority`): nice -10 or
//! `SCHED_FIFO`. A refusal (no `CAP_SYS_NICE`) is logged once per pipeline, as a warning
//! naming the reason; the threads run on at the priority they inherited.
//!
//! Stages are started from the end of the pipeline backwards (send first), so a failed start
//! drops the rings of the stages not yet started and the ones already running see their input
//! close and exit. [`PipelineHandle::join`] reports the first stage failure or panic in pipeline
//! order; dropping the handle aborts the pipeline and joins its threads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::{self, JoinHandle, Thread};
use std::time::Duration;

use crossbeam_utils::Backoff;

use crate::config::{Backpressure, PipelineConfig, ThreadPriority};
use crate::io::pin::{self, PinOutcome, PriorityOutcome};
use crate::pipeline::{
    self, Captured, Emit, PipelineControl, PipelineError, PipelineStats, RingId, Sink, Source,
    Stage, StageContext, StageCounters, StageError, StageId,
};
use crate::pool::FramePool;
use crate::ring::{self, Consumer, Pop, Producer, Push, RingMonitor};

/// Longest a waiting stage sleeps before looking again, should its wake-up have been lost.
pub const PARK_TIMEOUT: Duration = Duration::from_micros(500);

/// State shared by the stage threads and the handle.
struct Runtime {
    control: PipelineControl,
    counters: [StageCounters; 4],
    threads: [OnceLock<Thread>; 4],
    pool: FramePool,
    backpressure: Backpressure,
    priority: ThreadPriority,
    /// A refused priority was logged already (once per pipeline, not per thread).
    priority_refusal_logged: AtomicBool,
}

impl Runtime {
    fn unpark(&self, stage: StageId) {
        if let Some(t) = self.threads[stage.index()].get() {
            t.unpark();
        }
    }

    fn unpark_all(&self) {
        StageId::ALL.iter().for_each(|&s| self.unpark(s));
    }

    fn counters(&self, stage: StageId) -> &StageCounters {
        &self.counters[stage.index()]
    }

    /// Asks for the pipeline's priority on the calling stage thread; logs the first refusal.
    fn raise_priority(&self, stage: StageId) {
        let outcome = pin::set_current_thread_priority(self.priority);
        match outcome {
            PriorityOutcome::Unchanged => {}
            PriorityOutcome::Raised(p) => {
                tracing::debug!(stage = stage.name(), priority = %p, "stage thread priority raised");
            }
            PriorityOutcome::Refused { priority, .. } => {
                let reason = outcome.reason().unwrap_or_default();
                if self.priority_refusal_logged.swap(true, Ordering::Relaxed) {
                    tracing::debug!(stage = stage.name(), %priority, %reason, "priority refused");
                } else {
                    tracing::warn!(
                        stage = stage.name(),
                        %priority,
                        %reason,
                        "the OS refused pipeline.priority (needs CAP_SYS_NICE, e.g. \
                         `setcap cap_sys_nice+ep`, or pipeline.priority = \"normal\"); \
                         the stage threads run at their inherited priority"
                    );
                }
            }
        }
    }
}

/// One step of waiting: spin, then yield, then park.
fn pause(backoff: &Backoff) {
    if backoff.is_completed() {
        thread::park_timeout(PARK_TIMEOUT);
    } else {
        backoff.snooze();
    }
}

/// Turns the normal ways of ending into `Ok`.
fn settle(result: Result<(), StageError>) -> Result<(), StageError> {
    match result {
        Err(e) if e.is_shutdown() => Ok(()),
        other => other,
    }
}

/// [`Emit`] over a stage's outgoing ring.
struct RingEmit<'a, T: Send> {
    tx: Producer<T>,
    rt: &'a Runtime,
    ring: RingId,
}

impl<T: Send> RingEmit<'_, T> {
    fn wait_for_room(&mut self, mut item: T) -> Result<(), StageError> {
        let backoff = Backoff::new();
        loop {
            if self.rt.control.abort_requested() {
                return Err(StageError::Aborted);
            }
            self.rt.unpark(self.ring.consumer());
            pause(&backoff);
            match self.tx.try_push(item) {
                Push::Queued => return Ok(()),
                Push::Full(back) => item = back,
                Push::Closed(_) => return Err(StageError::DownstreamClosed),
                // try_push never evicts; should that change, an eviction is still a success.
                Push::Evicted(old) => {
                    drop(old);
                    return Ok(());
                }
            }
        }
    }
}

impl<T: Send> Emit<T> for RingEmit<'_, T> {
    fn emit(&mut self, item: T) -> Result<(), StageError> {
        match self.tx.push(item) {
            Push::Queued => {}
            Push::Evicted(old) => {
                // Dropping a FrameBuf sends it back to its pool.
                drop(old);
                if self.ring.requests_keyframe_on_drop() {
                    self.rt.control.keyframe().request();
                }
            }
            Push::Full(item) => self.wait_for_room(item)?,
            Push::Closed(_) => return Err(StageError::DownstreamClosed),
        }
        self.rt.counters(self.ring.producer()).record_emitted();
        self.rt.unpark(self.ring.consumer());
        Ok(())
    }
}

/// Pops for a consumer stage, waking a blocked producer under `Block`, and tells the stage how
/// many items were evicted just before the one popped ([`StageContext::input_gap`]).
fn pop<T: Send>(
    rx: &mut Consumer<T>,
    rt: &Runtime,
    ring: RingId,
    cx: &mut StageContext<'_>,
) -> Pop<T> {
    let popped = rx.pop();
    if matches!(popped, Pop::Item(_)) {
        cx.set_input_gap(rx.evicted_before_last_pop());
        rt.counters(ring.consumer()).record_processed();
        if rt.backpressure == Backpressure::Block {
            rt.unpark(ring.producer());
        }
    }
    popped
}

fn run_source<C: Source>(
    mut source: C,
    tx: Producer<C::Output>,
    rt: &Runtime,
    cx: &mut StageContext<'_>,
) -> Result<(), StageError> {
    let mut out = RingEmit {
        tx,
        rt,
        ring: RingId::CaptureEncode,
    };
    let backoff = Backoff::new();
    while !rt.control.stop_requested() {
        match source.poll_frame(cx)? {
            Captured::Frame(item) => {
                backoff.reset();
                rt.counters(StageId::Capture).record_processed();
                out.emit(item)?;
            }
            Captured::Idle => pause(&backoff),
            Captured::Finished => break,
        }
    }
    Ok(())
}

fn run_stage<S: Stage>(
    mut stage: S,
    mut rx: Consumer<S::Input>,
    input: RingId,
    tx: Producer<S::Output>,
    output: RingId,
    rt: &Runtime,
    cx: &mut StageContext<'_>,
) -> Result<(), StageError> {
    let mut out = RingEmit {
        tx,
        rt,
        ring: output,
    };
    let backoff = Backoff::new();
    loop {
        if rt.control.abort_requested() {
            return Ok(());
        }
        match pop(&mut rx, rt, input, cx) {
            Pop::Item(item) => {
                backoff.reset();
                stage.process(item, &mut out, cx)?;
            }
            Pop::Empty => {
                stage.handle_idle(&mut out, cx)?;
                pause(&backoff);
            }
            Pop::Closed => return stage.finish(&mut out, cx),
        }
    }
}

fn run_sink<S: Sink>(
    mut sink: S,
    mut rx: Consumer<S::Input>,
    rt: &Runtime,
    cx: &mut StageContext<'_>,
) -> Result<(), StageError> {
    let backoff = Backoff::new();
    loop {
        if rt.control.abort_requested() {
            return Ok(());
        }
        match pop(&mut rx, rt, RingId::FecSend, cx) {
            Pop::Item(item) => {
                backoff.reset();
                sink.consume(item, cx)?;
            }
            Pop::Empty => {
                sink.handle_idle(cx)?;
                pause(&backoff);
            }
            Pop::Closed => return sink.finish(cx),
        }
    }
}

type StageThread = JoinHandle<Result<(), StageError>>;

/// Starts one stage thread: registers it for wake-ups, pins it, runs `body`.
fn start<F>(
    rt: &Arc<Runtime>,
    stage: StageId,
    core: Option<usize>,
    body: F,
) -> Result<StageThread, PipelineError>
where
    F: FnOnce(&Runtime, &mut StageContext<'_>) -> Result<(), StageError> + Send + 'static,
{
    let rt = Arc::clone(rt);
    thread::Builder::new()
        .name(stage.thread_name().to_owned())
        .spawn(move || {
            // Each slot is set once, by the only thread started for that stage.
            let _ = rt.threads[stage.index()].set(thread::current());
            if let Some(core) = core
                && let PinOutcome::Pinned(core) = pin::pin_current_thread(core)
            {
                rt.counters(stage).record_pinned(core);
            }
            rt.raise_priority(stage);
            let mut cx = StageContext::new(stage, &rt.pool, &rt.control);
            let result = settle(body(&rt, &mut cx));
            if let Err(e) = &result {
                tracing::error!(stage = stage.name(), error = %e, "pipeline stage failed");
            }
            result
        })
        .map_err(|source| PipelineError::Spawn { stage, source })
}

/// Starts pipelines.
#[derive(Debug)]
pub struct Pipeline;

impl Pipeline {
    /// Builds the pool and rings described by `config` and starts one thread per stage.
    ///
    /// `capture`'s output type must be `encode`'s input type, and so on down the pipeline.
    /// The pool ([`PipelineHandle::pool`], and [`StageContext::pool`] inside the stages) holds
    /// `config.pool_frames` buffers of `config.frame_capacity` bytes.
    pub fn spawn<C, E, F, S>(
        config: &PipelineConfig,
        capture: C,
        encode: E,
        fec: F,
        send: S,
    ) -> Result<PipelineHandle, PipelineError>
    where
        C: Source,
        E: Stage<Input = C::Output>,
        F: Stage<Input = E::Output>,
        S: Sink<Input = F::Output>,
    {
        pipeline::validate(config)?;
        let pool = FramePool::new(config.pool_frames, config.frame_capacity)?;
        let (ce_tx, ce_rx) = ring::bounded(config.ring_depth, config.backpressure)?;
        let (ef_tx, ef_rx) = ring::bounded(config.ring_depth, config.backpressure)?;
        let (fs_tx, fs_rx) = ring::bounded(config.ring_depth, config.backpressure)?;
        let rings = [ce_tx.monitor(), ef_tx.monitor(), fs_tx.monitor()];
        let rt = Arc::new(Runtime {
            control: PipelineControl::default(),
            counters: Default::default(),
            threads: Default::default(),
            pool,
            backpressure: config.backpressure,
            priority: config.priority,
            priority_refusal_logged: AtomicBool::new(false),
        });
        let mut handle = PipelineHandle {
            rt: Arc::clone(&rt),
            rings,
            threads: Vec::new(),
        };
        let cores = &config.cores;

        // From the end backwards: see the module docs. On an error, `?` drops `handle`, which
        // aborts and joins the threads already started; the stages not yet started drop their
        // rings, so the running ones see them close.
        let core = StageId::Send.core(cores);
        let t = start(&rt, StageId::Send, core, move |rt, cx| {
            run_sink(send, fs_rx, rt, cx)
        })?;
        handle.threads.push((StageId::Send, t));
        let core = StageId::Fec.core(cores);
        let t = start(&rt, StageId::Fec, core, move |rt, cx| {
            run_stage(
                fec,
                ef_rx,
                RingId::EncodeFec,
                fs_tx,
                RingId::FecSend,
                rt,
                cx,
            )
        })?;
        handle.threads.push((StageId::Fec, t));
        let core = StageId::Encode.core(cores);
        let t = start(&rt, StageId::Encode, core, move |rt, cx| {
            run_stage(
                encode,
                ce_rx,
                RingId::CaptureEncode,
                ef_tx,
                RingId::EncodeFec,
                rt,
                cx,
            )
        })?;
        handle.threads.push((StageId::Encode, t));
        let core = StageId::Capture.core(cores);
        let t = start(&rt, StageId::Capture, core, move |rt, cx| {
            run_source(capture, ce_tx, rt, cx)
        })?;
        handle.threads.push((StageId::Capture, t));
        handle.threads.reverse();
        Ok(handle)
    }
}

/// A running pipeline. Dropping it aborts the pipeline and waits for its threads.
pub struct PipelineHandle {
    rt: Arc<Runtime>,
    rings: [RingMonitor; 3],
    /// In pipeline order once started.
    threads: Vec<(StageId, StageThread)>,
}

impl PipelineHandle {
    /// Asks the source to stop. The later stages drain what is queued and exit; nothing queued
    /// is lost. Returns at once; [`PipelineHandle::join`] waits.
    pub fn stop(&self) {
        self.rt.control.request_stop();
        self.rt.unpark_all();
    }

    /// Asks every stage to exit at once; queued items are dropped (their buffers go back to
    /// the pool). Returns at once.
    pub fn abort(&self) {
        self.rt.control.request_abort();
        self.rt.unpark_all();
    }

    /// Asks the encoder for a keyframe (for instance after a client reported loss).
    pub fn request_keyframe(&self) {
        self.rt.control.keyframe().request();
    }

    /// The pipeline's buffer pool.
    pub fn pool(&self) -> &FramePool {
        &self.rt.pool
    }

    /// Whether every stage thread has exited.
    pub fn is_finished(&self) -> bool {
        self.threads.iter().all(|(_, t)| t.is_finished())
    }

    /// A snapshot of all counters. Counters are read one by one while the stages run, so
    /// cross-counter identities only hold once the pipeline has finished.
    pub fn stats(&self) -> PipelineStats {
        PipelineStats {
            stages: StageId::ALL.map(|s| self.rt.counters(s).snapshot()),
            rings: [
                self.rings[0].stats(),
                self.rings[1].stats(),
                self.rings[2].stats(),
            ],
            pool: self.rt.pool.stats(),
            keyframe_requests: self.rt.control.keyframe().requests(),
        }
    }

    /// Waits for every stage to exit (after the source finished, or after [`stop`]) and returns
    /// the final counters, or the first failure in pipeline order.
    ///
    /// [`stop`]: PipelineHandle::stop
    pub fn join(mut self) -> Result<PipelineStats, PipelineError> {
        let outcome = self.join_threads();
        outcome.map(|()| self.stats())
    }

    /// [`stop`](PipelineHandle::stop), then [`join`](PipelineHandle::join).
    pub fn shutdown(self) -> Result<PipelineStats, PipelineError> {
        self.stop();
        self.join()
    }

    fn join_threads(&mut self) -> Result<(), PipelineError> {
        let mut first = None;
        for (stage, thread) in self.threads.drain(..) {
            let error = match thread.join() {
                Ok(Ok(())) => continue,
                Ok(Err(StageError::Failed(source))) => PipelineError::Stage { stage, source },
                // `settle` turned these into Ok; kept for exhaustiveness.
                Ok(Err(_)) => continue,
                Err(payload) => {
                    let message = payload
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| payload.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "non-string panic payload".to_owned());
                    PipelineError::Panicked { stage, message }
                }
            };
            if first.is_none() {
                first = Some(error);
            } else {
                tracing::error!(error = %error, "further pipeline failure");
            }
        }
        first.map_or(Ok(()), Err)
    }
}

impl Drop for PipelineHandle {
    fn drop(&mut self) {
        if !self.threads.is_empty() {
            self.abort();
            if let Err(e) = self.join_threads() {
                tracing::error!(error = %e, "pipeline failed while being dropped");
            }
        }
    }
}

impl std::fmt::Debug for PipelineHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipelineHandle")
            .field("stats", &self.stats())
            .field("finished", &self.is_finished())
            .finish()
    }
}
