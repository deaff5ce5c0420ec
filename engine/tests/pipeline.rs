//! The stage pipeline with real threads: ordering, back-pressure policies, pinning, shutdown,
//! failure propagation and the absence of allocation in steady state.
//!
//! No assertion depends on timing: slow consumers are made slow by a gate, not by a sleep.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;

use punktfunk_engine::config::{Backpressure, PipelineConfig, StageCores, ThreadPriority};
use punktfunk_engine::gamestream::stage::PacketizeStage;
use punktfunk_engine::gamestream::wire::video::{FrameType, VideoDepacketizer, VideoParams};
use punktfunk_engine::io::pin;
use punktfunk_engine::io::stages::Pipeline;
use punktfunk_engine::pipeline::{
    Captured, Emit, PipelineError, RingId, Sink, Source, Stage, StageContext, StageError, StageId,
    worst_case_frames_in_flight,
};
use punktfunk_engine::pool::FrameBuf;

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

// ---------------------------------------------------------------------------------------------
// A global allocator that counts allocations per thread, so a stage can measure its own thread.

struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor: reading it never allocates or registers
    // anything, so it is safe to touch from inside the allocator.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_allocation() {
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

fn allocations_on_this_thread() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract is exactly `System`'s; counting touches only a thread-local `Cell`.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; the caller upholds `alloc_zeroed`'s contract.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged; `ptr` came from this allocator, i.e. from `System`.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Measures the allocations a stage thread makes between two frame indices.
#[derive(Clone)]
struct Probe {
    from: u64,
    to: u64,
    start: u64,
    results: Arc<[AtomicU64; 4]>,
    measured: Arc<[AtomicBool; 4]>,
}

impl Probe {
    fn new(from: u64, to: u64) -> Self {
        Self {
            from,
            to,
            start: 0,
            results: Arc::new(Default::default()),
            measured: Arc::new(Default::default()),
        }
    }

    fn observe(&mut self, stage: StageId, index: u64) {
        if index == self.from {
            self.start = allocations_on_this_thread();
        } else if index == self.to {
            let delta = allocations_on_this_thread() - self.start;
            self.results[stage.index()].store(delta, Ordering::Relaxed);
            self.measured[stage.index()].store(true, Ordering::Release);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Test stages.

/// Produces `total` frames numbered 0.., each carrying its index as 8 payload bytes.
struct CountingSource {
    next: u64,
    total: u64,
    done: Arc<AtomicBool>,
    probe: Option<Probe>,
    /// When set, frame `i` is produced only once this counter has reached `i` (lockstep with
    /// a later stage), so nothing can pile up before that stage.
    lockstep: Option<Arc<AtomicU64>>,
}

impl CountingSource {
    fn new(total: u64) -> Self {
        Self {
            next: 0,
            total,
            done: Arc::new(AtomicBool::new(false)),
            probe: None,
            lockstep: None,
        }
    }
}

impl Source for CountingSource {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        if self.next == self.total {
            self.done.store(true, Ordering::Release);
            return Ok(Captured::Finished);
        }
        if self
            .lockstep
            .as_ref()
            .is_some_and(|done| done.load(Ordering::Acquire) < self.next)
        {
            return Ok(Captured::Idle);
        }
        // An empty pool: try again later with the same index, so no frame number is skipped.
        let Some(mut buf) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        if let Some(p) = &mut self.probe {
            p.observe(StageId::Capture, self.next);
        }
        buf.fill_from(&self.next.to_le_bytes())
            .map_err(StageError::failed)?;
        buf.meta.index = self.next;
        buf.meta.capture_ns = self.next * 16_666_667;
        self.next += 1;
        Ok(Captured::Frame(buf))
    }
}

/// Copies each frame into a fresh pool buffer (as an encoder would) and drops the input.
struct CopyStage {
    probe: Option<Probe>,
}

impl Stage for CopyStage {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        if let Some(p) = &mut self.probe {
            p.observe(StageId::Encode, input.meta.index);
        }
        let mut out = loop {
            match cx.take_buf() {
                Some(b) => break b,
                // Downstream stops returning buffers once aborted: give up rather than spin.
                None if cx.abort_requested() => return Err(StageError::Aborted),
                None => thread::yield_now(),
            }
        };
        out.fill_from(input.as_slice())
            .map_err(StageError::failed)?;
        out.meta = input.meta;
        out.meta.keyframe = cx.take_keyframe_request() || input.meta.index == 0;
        drop(input);
        output.emit(out)
    }
}

/// Marks the frame in place (as a packetizer writing headers would) and passes it on. Fails
/// after `fail_after` frames when set.
struct InPlaceStage {
    probe: Option<Probe>,
    fail_after: Option<u64>,
    seen: u64,
    /// Frames emitted so far, for a lockstep source.
    emitted: Arc<AtomicU64>,
}

impl InPlaceStage {
    fn new() -> Self {
        Self {
            probe: None,
            fail_after: None,
            seen: 0,
            emitted: Arc::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("injected failure")]
struct Injected;

impl Stage for InPlaceStage {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        mut input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        _cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        if let Some(p) = &mut self.probe {
            p.observe(StageId::Fec, input.meta.index);
        }
        self.seen += 1;
        if self.fail_after.is_some_and(|n| self.seen > n) {
            return Err(StageError::failed(Injected));
        }
        input
            .extend_from_slice(&[0xfe])
            .map_err(StageError::failed)?;
        input.meta.segment_size = 9;
        output.emit(input)?;
        self.emitted.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// Shared results of a [`CheckingSink`].
#[derive(Default)]
struct SinkReport {
    received: AtomicU64,
    distinct_buffers: AtomicU64,
}

/// Checks order, payload and buffer identity of every frame, without allocating.
struct CheckingSink {
    last: Option<u64>,
    /// Frames must be consecutive (nothing lost), not just increasing.
    consecutive: bool,
    /// While set and closed, the sink waits before each frame (a slow consumer).
    gate: Option<Arc<AtomicBool>>,
    report: Arc<SinkReport>,
    buffers: [usize; 64],
    buffer_count: usize,
    frame_capacity: usize,
    probe: Option<Probe>,
    panic_at: Option<u64>,
}

impl CheckingSink {
    fn new(consecutive: bool, frame_capacity: usize) -> Self {
        Self {
            last: None,
            consecutive,
            gate: None,
            report: Arc::default(),
            buffers: [0; 64],
            buffer_count: 0,
            frame_capacity,
            probe: None,
            panic_at: None,
        }
    }
}

impl Sink for CheckingSink {
    type Input = FrameBuf;

    fn consume(&mut self, buf: FrameBuf, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        if let Some(gate) = &self.gate {
            while !gate.load(Ordering::Acquire) {
                thread::yield_now();
            }
        }
        let index = buf.meta.index;
        if let Some(p) = &mut self.probe {
            p.observe(StageId::Send, index);
        }
        assert!(
            self.panic_at != Some(index),
            "injected panic at frame {index}"
        );
        if let Some(last) = self.last {
            if self.consecutive {
                assert_eq!(index, last + 1, "frame lost or reordered");
            } else {
                assert!(index > last, "frame {index} after {last}: reordered");
            }
        } else if self.consecutive {
            assert_eq!(index, 0, "first frame lost");
        }
        self.last = Some(index);
        assert_eq!(
            &buf.as_slice()[..8],
            &index.to_le_bytes(),
            "payload of frame {index}"
        );
        assert_eq!(buf.as_slice()[8], 0xfe, "in-place mark of frame {index}");
        assert_eq!(buf.meta.segment_size, 9);
        assert_eq!(
            buf.capacity(),
            self.frame_capacity,
            "buffer capacity changed"
        );
        let ptr = buf.as_ptr() as usize;
        if !self.buffers[..self.buffer_count].contains(&ptr) {
            assert!(
                self.buffer_count < self.buffers.len(),
                "more buffers than any pool here"
            );
            self.buffers[self.buffer_count] = ptr;
            self.buffer_count += 1;
            self.report
                .distinct_buffers
                .store(self.buffer_count as u64, Ordering::Relaxed);
        }
        self.report.received.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

fn config(backpressure: Backpressure, ring_depth: usize) -> PipelineConfig {
    PipelineConfig {
        ring_depth,
        pool_frames: worst_case_frames_in_flight(ring_depth),
        frame_capacity: 64,
        backpressure,
        cores: StageCores::default(),
        priority: ThreadPriority::default(),
    }
}

fn wait_until(cond: impl Fn() -> bool) {
    while !cond() {
        thread::yield_now();
    }
}

// ---------------------------------------------------------------------------------------------

#[test]
fn block_loses_nothing_and_keeps_order() {
    const N: u64 = 5_000;
    // A pool smaller than the worst case: the source sees misses and retries, nothing is lost.
    let cfg = PipelineConfig {
        pool_frames: 8,
        ..config(Backpressure::Block, 2)
    };
    let sink = CheckingSink::new(true, cfg.frame_capacity);
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(N),
        CopyStage { probe: None },
        InPlaceStage::new(),
        sink,
    )
    .unwrap();
    let pool = handle.pool().clone();
    let stats = handle.join().unwrap();

    assert_eq!(report.received.load(Ordering::Relaxed), N);
    assert_eq!(stats.dropped(), 0);
    assert_eq!(stats.keyframe_requests, 0);
    for s in StageId::ALL {
        assert_eq!(stats.stage(s).processed, N, "{s}");
    }
    for r in RingId::ALL {
        let ring = stats.ring(r);
        assert_eq!((ring.pushed, ring.popped, ring.len), (N, N, 0), "{r:?}");
    }
    assert!(report.distinct_buffers.load(Ordering::Relaxed) <= cfg.pool_frames as u64);
    assert_eq!(pool.available(), cfg.pool_frames, "every buffer came home");
}

#[test]
fn drop_oldest_drops_and_counts_under_a_slow_consumer() {
    const N: u64 = 2_000;
    let cfg = config(Backpressure::DropOldest, 2);
    let source = CountingSource::new(N);
    let source_done = Arc::clone(&source.done);
    let mut sink = CheckingSink::new(false, cfg.frame_capacity);
    // The sink takes nothing until the source has produced every frame.
    sink.gate = Some(Arc::clone(&source_done));
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(
        &cfg,
        source,
        CopyStage { probe: None },
        InPlaceStage::new(),
        sink,
    )
    .unwrap();
    let pool = handle.pool().clone();
    let stats = handle.join().unwrap();

    let received = report.received.load(Ordering::Relaxed);
    assert!(
        stats.dropped() > 0,
        "a gated sink must cause drops: {stats:?}"
    );
    assert!(received < N);
    // Every frame either arrived or was evicted from exactly one ring.
    assert_eq!(received + stats.dropped(), N, "{stats:?}");
    // Drops after the encoder asked for a keyframe; drops before it did not. (Which ring drops
    // depends on scheduling here; the next test forces drops after the encoder.)
    let after_encoder =
        stats.ring(RingId::EncodeFec).dropped_oldest + stats.ring(RingId::FecSend).dropped_oldest;
    assert_eq!(stats.keyframe_requests, after_encoder);
    assert_eq!(
        stats.ring(RingId::FecSend).full_waits,
        0,
        "DropOldest never waits"
    );
    assert_eq!(
        pool.available(),
        cfg.pool_frames,
        "evicted buffers came home"
    );
}

#[test]
fn drops_after_the_encoder_request_a_keyframe() {
    const N: u64 = 300;
    let cfg = config(Backpressure::DropOldest, 2);
    // The source runs in lockstep with the FEC stage, so every frame reaches the FEC → send
    // ring, where the gated sink makes it overflow.
    let fec = InPlaceStage::new();
    let mut source = CountingSource::new(N);
    source.lockstep = Some(Arc::clone(&fec.emitted));
    let mut sink = CheckingSink::new(false, cfg.frame_capacity);
    sink.gate = Some(Arc::clone(&source.done));
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(&cfg, source, CopyStage { probe: None }, fec, sink).unwrap();
    let stats = handle.join().unwrap();

    let fec_send = stats.ring(RingId::FecSend);
    assert_eq!(stats.ring(RingId::CaptureEncode).dropped_oldest, 0);
    assert_eq!(stats.ring(RingId::EncodeFec).dropped_oldest, 0);
    // At most the sink's frame and the ring's two slots survive until the gate opens.
    assert!(fec_send.dropped_oldest >= N - 1 - 3 - 1, "{stats:?}");
    assert_eq!(stats.keyframe_requests, fec_send.dropped_oldest);
    assert_eq!(
        report.received.load(Ordering::Relaxed) + fec_send.dropped_oldest,
        N
    );
}

#[test]
fn pins_every_stage_to_core_zero_or_skips() {
    let allowed = pin::allowed_cores();
    let Some(core) = allowed.as_ref().and_then(|a| a.first().copied()) else {
        skip::skip("affinity", "this platform reports no affinity mask");
        return;
    };
    if core != 0 {
        eprintln!("core 0 is not available here; pinning to core {core} instead");
    }
    let cfg = PipelineConfig {
        cores: StageCores {
            capture: Some(core),
            encode: Some(core),
            fec: Some(core),
            send: Some(core),
        },
        ..config(Backpressure::Block, 4)
    };
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(200),
        CopyStage { probe: None },
        InPlaceStage::new(),
        CheckingSink::new(true, cfg.frame_capacity),
    )
    .unwrap();
    let stats = handle.join().unwrap();
    let pinned: Vec<_> = stats.stages.iter().map(|s| s.pinned_core).collect();
    if pinned.iter().all(Option::is_none) {
        skip::skip("affinity", "sched_setaffinity refused here (see warnings)");
        return;
    }
    assert_eq!(pinned, [Some(core); 4]);
    assert_eq!(stats.stage(StageId::Send).processed, 200);
}

#[test]
fn missing_core_is_a_warning_and_the_pipeline_runs() {
    let cfg = PipelineConfig {
        cores: StageCores {
            capture: Some(1 << 20),
            encode: None,
            fec: None,
            send: Some(1 << 20),
        },
        ..config(Backpressure::Block, 2)
    };
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(100),
        CopyStage { probe: None },
        InPlaceStage::new(),
        CheckingSink::new(true, cfg.frame_capacity),
    )
    .unwrap();
    let stats = handle.join().unwrap();
    assert!(stats.stages.iter().all(|s| s.pinned_core.is_none()));
    assert_eq!(stats.stage(StageId::Send).processed, 100);
}

/// Hands frames on unchanged and records the scheduling priority of its thread.
struct PriorityProbe(Arc<Mutex<Option<(i32, bool)>>>);

impl Stage for PriorityProbe {
    type Input = FrameBuf;
    type Output = FrameBuf;

    fn process(
        &mut self,
        input: FrameBuf,
        output: &mut dyn Emit<FrameBuf>,
        _cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get_or_insert_with(pin::current_thread_priority);
        output.emit(input)
    }
}

#[test]
fn stage_threads_take_the_profile_priority_or_run_on_without_it() {
    for priority in [ThreadPriority::High, ThreadPriority::Realtime] {
        // Whether this process may raise a thread's priority at all.
        let allowed = thread::spawn(move || pin::set_current_thread_priority(priority))
            .join()
            .unwrap();
        let seen = Arc::new(Mutex::new(None));
        let cfg = PipelineConfig {
            priority,
            ..config(Backpressure::Block, 2)
        };
        let handle = Pipeline::spawn(
            &cfg,
            CountingSource::new(50),
            PriorityProbe(Arc::clone(&seen)),
            InPlaceStage::new(),
            CheckingSink::new(true, cfg.frame_capacity),
        )
        .unwrap();
        let stats = handle.join().unwrap();
        assert_eq!(stats.stage(StageId::Send).processed, 50, "{priority}");
        let (nice, fifo) = seen.lock().unwrap().expect("the probe saw a frame");
        match allowed {
            pin::PriorityOutcome::Raised(_) => match priority {
                ThreadPriority::High => assert_eq!(nice, ThreadPriority::HIGH_NICE),
                _ => assert!(fifo, "{priority}: SCHED_FIFO"),
            },
            refused => skip::skip(
                "priority",
                format!(
                    "{priority} refused here ({}); the pipeline ran without it",
                    refused.reason().unwrap_or_default()
                ),
            ),
        }
    }
}

#[test]
fn stop_drains_and_returns_every_buffer() {
    let cfg = config(Backpressure::Block, 4);
    let sink = CheckingSink::new(true, cfg.frame_capacity);
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(u64::MAX),
        CopyStage { probe: None },
        InPlaceStage::new(),
        sink,
    )
    .unwrap();
    wait_until(|| report.received.load(Ordering::Relaxed) >= 100);
    assert!(!handle.is_finished());
    let pool = handle.pool().clone();
    let stats = handle.shutdown().unwrap();

    // A graceful stop under Block delivers everything the source produced.
    let produced = stats.stage(StageId::Capture).processed;
    assert_eq!(stats.stage(StageId::Send).processed, produced);
    assert_eq!(report.received.load(Ordering::Relaxed), produced);
    assert!(stats.rings.iter().all(|r| r.len == 0));
    assert_eq!(pool.available(), cfg.pool_frames);
}

#[test]
fn dropping_the_handle_aborts_and_returns_every_buffer() {
    let cfg = config(Backpressure::DropOldest, 4);
    let sink = CheckingSink::new(false, cfg.frame_capacity);
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(u64::MAX),
        CopyStage { probe: None },
        InPlaceStage::new(),
        sink,
    )
    .unwrap();
    wait_until(|| report.received.load(Ordering::Relaxed) >= 10);
    let pool = handle.pool().clone();
    drop(handle);
    assert_eq!(pool.available(), cfg.pool_frames);
}

#[test]
fn a_failing_stage_unwinds_the_pipeline() {
    let cfg = config(Backpressure::Block, 2);
    let mut fec = InPlaceStage::new();
    fec.fail_after = Some(10);
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(u64::MAX),
        CopyStage { probe: None },
        fec,
        CheckingSink::new(true, cfg.frame_capacity),
    )
    .unwrap();
    let pool = handle.pool().clone();
    match handle.join() {
        Err(PipelineError::Stage {
            stage: StageId::Fec,
            source,
        }) => {
            assert_eq!(source.to_string(), "injected failure");
        }
        other => panic!("expected the FEC stage's failure, got {other:?}"),
    }
    assert_eq!(pool.available(), cfg.pool_frames);
}

#[test]
fn a_panicking_stage_is_reported() {
    let cfg = config(Backpressure::Block, 2);
    let mut sink = CheckingSink::new(true, cfg.frame_capacity);
    sink.panic_at = Some(5);
    let handle = Pipeline::spawn(
        &cfg,
        CountingSource::new(u64::MAX),
        CopyStage { probe: None },
        InPlaceStage::new(),
        sink,
    )
    .unwrap();
    match handle.join() {
        Err(PipelineError::Panicked {
            stage: StageId::Send,
            message,
        }) => {
            assert!(message.contains("injected panic at frame 5"), "{message}");
        }
        other => panic!("expected the send stage's panic, got {other:?}"),
    }
}

#[test]
fn invalid_config_is_refused_before_any_thread_starts() {
    let cfg = PipelineConfig {
        ring_depth: 0,
        ..config(Backpressure::Block, 2)
    };
    let err = Pipeline::spawn(
        &cfg,
        CountingSource::new(1),
        CopyStage { probe: None },
        InPlaceStage::new(),
        CheckingSink::new(true, cfg.frame_capacity),
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            PipelineError::InvalidConfig {
                field: "ring_depth",
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn no_allocation_in_steady_state() {
    const N: u64 = 3_000;
    let cfg = config(Backpressure::Block, 4);
    let probe = Probe::new(500, 2_500);
    let mut source = CountingSource::new(N);
    source.probe = Some(probe.clone());
    let mut fec = InPlaceStage::new();
    fec.probe = Some(probe.clone());
    let mut sink = CheckingSink::new(true, cfg.frame_capacity);
    sink.probe = Some(probe.clone());
    let report = Arc::clone(&sink.report);
    let handle = Pipeline::spawn(
        &cfg,
        source,
        CopyStage {
            probe: Some(probe.clone()),
        },
        fec,
        sink,
    )
    .unwrap();
    let pool = handle.pool().clone();
    let stats = handle.join().unwrap();

    assert_eq!(report.received.load(Ordering::Relaxed), N);
    for s in StageId::ALL {
        assert!(
            probe.measured[s.index()].load(Ordering::Acquire),
            "{s} was not measured"
        );
        assert_eq!(
            probe.results[s.index()].load(Ordering::Relaxed),
            0,
            "the {s} thread allocated while moving 2000 frames"
        );
    }
    // Every frame travelled in one of the buffers allocated at start, unchanged in capacity
    // (the sink checks capacity per frame).
    let distinct = report.distinct_buffers.load(Ordering::Relaxed);
    assert!(
        distinct <= cfg.pool_frames as u64,
        "{distinct} buffers seen"
    );
    assert_eq!(stats.pool.frames, cfg.pool_frames);
    assert_eq!(pool.available(), cfg.pool_frames);
}

// ---------------------------------------------------------------------------------------------
// A frame evicted between the encoder and the packetizer.

/// Produces frame `i` (8 bytes: `i`) once `ready(i)` holds, `total` frames in all.
struct ScriptedSource {
    next: u64,
    total: u64,
    ready: Box<dyn Fn(u64) -> bool + Send>,
}

impl Source for ScriptedSource {
    type Output = FrameBuf;

    fn poll_frame(&mut self, cx: &mut StageContext<'_>) -> Result<Captured<FrameBuf>, StageError> {
        if self.next == self.total {
            return Ok(Captured::Finished);
        }
        if !(self.ready)(self.next) {
            return Ok(Captured::Idle);
        }
        let Some(mut buf) = cx.take_buf() else {
            return Ok(Captured::Idle);
        };
        buf.fill_from(&self.next.to_le_bytes())
            .map_err(StageError::failed)?;
        buf.meta.index = self.next;
        buf.meta.capture_ns = self.next;
        self.next += 1;
        Ok(Captured::Frame(buf))
    }
}

/// Runs `inner`, counting the inputs it has finished with. While `hold` is set and closed it
/// takes no input at all: it waits in `handle_idle`, having said so in `holding`, so its input
/// ring fills up and evicts.
struct Watched<S> {
    inner: S,
    done: Arc<AtomicU64>,
    hold: Option<Arc<AtomicBool>>,
    holding: Arc<AtomicBool>,
}

impl<S> Watched<S> {
    fn new(inner: S) -> Self {
        Self {
            inner,
            done: Arc::default(),
            hold: None,
            holding: Arc::default(),
        }
    }
}

impl<S: Stage> Stage for Watched<S> {
    type Input = S::Input;
    type Output = S::Output;

    fn process(
        &mut self,
        input: S::Input,
        output: &mut dyn Emit<S::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        self.inner.process(input, output, cx)?;
        self.done.fetch_add(1, Ordering::Release);
        Ok(())
    }

    fn handle_idle(
        &mut self,
        _output: &mut dyn Emit<S::Output>,
        cx: &mut StageContext<'_>,
    ) -> Result<(), StageError> {
        if let Some(open) = &self.hold {
            self.holding.store(true, Ordering::Release);
            while !open.load(Ordering::Acquire) {
                if cx.abort_requested() {
                    return Err(StageError::Aborted);
                }
                thread::yield_now();
            }
        }
        Ok(())
    }
}

/// A frame as the client got it: frame index, frame type, and which source frame it was.
type Delivered = (u32, Option<FrameType>, u64);

/// Depacketizes every GameStream frame it gets.
struct GameStreamSink {
    depack: VideoDepacketizer,
    frames: Arc<Mutex<Vec<Delivered>>>,
    received: Arc<AtomicU64>,
}

impl Sink for GameStreamSink {
    type Input = FrameBuf;

    fn consume(&mut self, buf: FrameBuf, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        for dg in buf.as_slice().chunks(usize::from(buf.meta.segment_size)) {
            self.depack
                .handle_datagram(dg)
                .map_err(StageError::failed)?;
        }
        let f = self
            .depack
            .poll_frame()
            .ok_or_else(|| StageError::failed("an incomplete frame"))?;
        let source = u64::from_le_bytes(f.bitstream[..8].try_into().map_err(StageError::failed)?);
        assert_eq!(u64::from(f.index), buf.meta.index);
        self.frames
            .lock()
            .map_err(|_| StageError::failed("poisoned"))?
            .push((f.index, f.frame_type, source));
        self.received.fetch_add(1, Ordering::Release);
        Ok(())
    }
}

/// The encoder's first frame (the IDR) is evicted from the encode → packetize ring: the
/// P-frames behind it are not sent, the keyframe the eviction asked for is the client's first
/// frame, and the frame indices on the wire have no gap.
///
/// Every step is held in lockstep, so exactly one eviction happens: the packetizer takes nothing
/// until the encoder has pushed frames 0, 1, 2 into a ring of two (frame 2 evicts frame 0);
/// afterwards one frame at a time.
#[test]
fn an_evicted_idr_holds_back_the_frames_after_it() {
    const N: u64 = 10;
    let params = VideoParams {
        packet_size: 1392,
        fec_percent: 20,
        min_parity: 2,
    };
    let packetize = PacketizeStage::new(params, None).unwrap();
    let cfg = PipelineConfig {
        frame_capacity: packetize.max_output(8),
        ..config(Backpressure::DropOldest, 2)
    };
    let encode = Watched::new(CopyStage { probe: None });
    let mut fec = Watched::new(packetize);
    let open = Arc::new(AtomicBool::new(false));
    fec.hold = Some(Arc::clone(&open));
    let sink = GameStreamSink {
        depack: VideoDepacketizer::new(params.packet_size).unwrap(),
        frames: Arc::default(),
        received: Arc::default(),
    };
    let frames = Arc::clone(&sink.frames);
    let (encoded, fec_holding, fec_done, received) = (
        Arc::clone(&encode.done),
        Arc::clone(&fec.holding),
        Arc::clone(&fec.done),
        Arc::clone(&sink.received),
    );
    let encoded_in_source = Arc::clone(&encoded);
    let source = ScriptedSource {
        next: 0,
        total: N,
        ready: Box::new(move |i| match i {
            0 => fec_holding.load(Ordering::Acquire),
            1 | 2 => encoded_in_source.load(Ordering::Acquire) >= i,
            // Frame 3 (the keyframe asked for) once frames 1 and 2 have been taken.
            3 => fec_done.load(Ordering::Acquire) >= 2,
            _ => received.load(Ordering::Acquire) >= i - 3,
        }),
    };
    let handle = Pipeline::spawn(&cfg, source, encode, fec, sink).unwrap();
    wait_until(|| encoded.load(Ordering::Acquire) >= 3);
    open.store(true, Ordering::Release);
    let pool = handle.pool().clone();
    let stats = handle.join().unwrap();

    assert_eq!(stats.ring(RingId::CaptureEncode).dropped_oldest, 0);
    assert_eq!(stats.ring(RingId::EncodeFec).dropped_oldest, 1, "{stats:?}");
    assert_eq!(stats.ring(RingId::FecSend).dropped_oldest, 0);
    assert_eq!(stats.keyframe_requests, 1, "the eviction asked for the IDR");
    // Frames 1 and 2 reached the packetizer and were skipped.
    assert_eq!(stats.stage(StageId::Fec).processed, N - 1);
    assert_eq!(stats.stage(StageId::Fec).emitted, N - 3);
    let frames = frames.lock().unwrap();
    let expected: Vec<_> = (3..N)
        .map(|source| {
            let kind = if source == 3 {
                FrameType::Idr
            } else {
                FrameType::P
            };
            ((source - 2) as u32, Some(kind), source)
        })
        .collect();
    assert_eq!(
        *frames, expected,
        "indices from 1 without a gap, an IDR first"
    );
    assert_eq!(pool.available(), cfg.pool_frames);
}
