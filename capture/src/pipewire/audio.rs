//! PipeWire audio capture: interleaved F32LE samples from an audio source or a sink's monitor,
//! in order, through a bounded queue.
//!
//! ```text
//!  PipeWire daemon ──► pw-audio thread ──► queue (≤ QUEUE_CHUNKS) ──► caller
//!                      adapter converts       full: oldest chunk      next_chunk()
//!                      to F32LE/rate/ch       dropped and counted
//! ```
//!
//! Unlike video, audio must not skip: every buffer becomes an [`AudioChunk`] in a FIFO. The
//! PipeWire thread still never waits: a caller that falls [`QUEUE_CHUNKS`] chunks behind
//! loses the oldest ones ([`AudioStats::chunks_dropped`]). Chunk buffers circulate like video
//! frames, so the steady state allocates nothing.
//!
//! Act: the thread, the queue and the copy; [`super::audio_format`] decides.

use std::collections::VecDeque;
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use pipewire as pw;
use pw::spa;
use pw::spa::param::audio::{AudioFormat, AudioInfoRaw};
use pw::spa::param::format::{MediaSubtype, MediaType};
use pw::spa::pod::{Object, Pod, Value};
use pw::spa::utils::SpaTypes;

use super::audio_format::{AudioSpec, SAMPLE_BYTES};
use super::format::DataChunk;
use super::stream::{End, find_node, open};
use super::target::Media;
use super::{CaptureError, Target};

/// Chunks the queue holds before it drops the oldest (PipeWire's default quantum is 1024
/// frames, about 21 ms at 48 kHz: 64 chunks are over a second).
pub const QUEUE_CHUNKS: usize = 64;

/// One buffer of captured audio.
#[derive(Debug, Clone, Default)]
pub struct AudioChunk {
    /// Interleaved samples, `channels` per frame.
    pub samples: Vec<f32>,
    /// Channels per frame.
    pub channels: u32,
    /// Sample rate in Hz.
    pub rate: u32,
    /// Chunks the thread queued before this one (gaps: chunks dropped from a full queue).
    pub sequence: u64,
    /// `CLOCK_MONOTONIC` µs when the thread dequeued the buffer.
    pub capture_us: u64,
}

impl AudioChunk {
    /// Sample frames in the chunk.
    pub fn frames(&self) -> usize {
        if self.channels == 0 {
            0
        } else {
            self.samples.len() / self.channels as usize
        }
    }
}

/// Counters of one audio capture.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Chunks queued.
    pub chunks_captured: u64,
    /// Chunks dropped from a full queue (the caller fell behind).
    pub chunks_dropped: u64,
    /// Chunks handed to the caller.
    pub chunks_delivered: u64,
    /// Buffers not taken (no format yet, bad chunk, unmapped).
    pub buffers_dropped: u64,
    /// Sample frames queued.
    pub frames_captured: u64,
}

#[derive(Debug, Default)]
struct Queue {
    chunks: VecDeque<AudioChunk>,
    spare: Vec<AudioChunk>,
    ended: Option<CaptureError>,
    spec: Option<AudioSpec>,
    stats: AudioStats,
}

#[derive(Debug, Default)]
struct AudioShared {
    queue: Mutex<Queue>,
    ready: Condvar,
}

impl AudioShared {
    fn lock(&self) -> MutexGuard<'_, Queue> {
        // Plain data, no invariant across fields: a poisoned queue is still usable.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl End for AudioShared {
    fn end(&self, error: CaptureError) {
        self.lock().ended.get_or_insert(error);
        self.ready.notify_all();
    }
    fn ended(&self) -> Option<CaptureError> {
        self.lock().ended.clone()
    }
}

/// A running PipeWire audio capture. Dropping it stops and joins its thread.
pub struct PipeWireAudioCapture {
    shared: Arc<AudioShared>,
    quit: pw::channel::Sender<()>,
    thread: Option<JoinHandle<()>>,
}

impl std::fmt::Debug for PipeWireAudioCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeWireAudioCapture")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl PipeWireAudioCapture {
    /// Connects to the daemon at `remote` (as [`super::PipeWireCapture::connect_to`]), finds
    /// the audio node `target` (an `Audio/Source`, or an `Audio/Sink` whose monitor is then
    /// captured: `stream.capture.sink=true`) and captures it converted to F32LE at `spec`.
    pub fn connect_to(
        remote: Option<String>,
        target: Target,
        spec: AudioSpec,
        timeout: Duration,
    ) -> Result<Self, CaptureError> {
        let spec = spec.validate()?;
        let shared = Arc::new(AudioShared::default());
        let (quit, quit_rx) = pw::channel::channel::<()>();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pw-audio".into())
            .spawn(move || run(remote, target, spec, thread_shared, quit_rx, started_tx))
            .map_err(|e| CaptureError::PipeWire {
                what: "spawn thread",
                error: e.to_string(),
            })?;
        let started = match started_rx.recv_timeout(timeout) {
            Ok(result) => result,
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                Err(CaptureError::ConnectTimeout(timeout))
            }
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => Err(CaptureError::Ended),
        };
        let capture = Self {
            shared,
            quit,
            thread: Some(thread),
        };
        started.map(|()| capture)
    }

    /// Waits up to `timeout` for the oldest queued chunk and swaps it into `chunk` (whose old
    /// buffer goes back to the pool). Returns the stream's error once it ended and the queue
    /// is empty.
    pub fn next_chunk(
        &self,
        chunk: &mut AudioChunk,
        timeout: Duration,
    ) -> Result<(), CaptureError> {
        let deadline = Instant::now() + timeout;
        let mut q = self.shared.lock();
        loop {
            if let Some(mut oldest) = q.chunks.pop_front() {
                std::mem::swap(chunk, &mut oldest);
                q.spare.push(oldest);
                q.stats.chunks_delivered += 1;
                return Ok(());
            }
            if let Some(e) = &q.ended {
                return Err(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CaptureError::Timeout(timeout));
            }
            q = self
                .shared
                .ready
                .wait_timeout(q, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The format fixed, once negotiated.
    pub fn spec(&self) -> Option<AudioSpec> {
        self.shared.lock().spec
    }

    /// Counters so far.
    pub fn stats(&self) -> AudioStats {
        self.shared.lock().stats
    }
}

impl Drop for PipeWireAudioCapture {
    fn drop(&mut self) {
        let _ = self.quit.send(());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(
    remote: Option<String>,
    target: Target,
    spec: AudioSpec,
    shared: Arc<AudioShared>,
    quit: pw::channel::Receiver<()>,
    started: SyncSender<Result<(), CaptureError>>,
) {
    let result = capture_until_quit(remote, &target, spec, &shared, quit, &started);
    let error = result.err().unwrap_or(CaptureError::Ended);
    let _ = started.try_send(Err(error.clone()));
    shared.end(error);
}

fn capture_until_quit(
    remote: Option<String>,
    target: &Target,
    spec: AudioSpec,
    shared: &Arc<AudioShared>,
    quit: pw::channel::Receiver<()>,
    started: &SyncSender<Result<(), CaptureError>>,
) -> Result<(), CaptureError> {
    let (mainloop, _context, core) = open(remote)?;
    let _quit = quit.attach(mainloop.loop_(), {
        let mainloop = mainloop.clone();
        move |()| mainloop.quit()
    });
    let mut props = pw::properties::properties! {
        *pw::keys::MEDIA_TYPE => "Audio",
        *pw::keys::MEDIA_CATEGORY => "Capture",
        *pw::keys::MEDIA_ROLE => "Game",
    };
    // The default sink: the session manager links the stream to it (and moves it when the
    // default changes); a named node: looked up first, so that a wrong name is an error.
    let capture_sink = if *target == Target::DefaultSink {
        true
    } else {
        let node = find_node(&mainloop, &core, target, Media::Audio, shared)?;
        props.insert(
            "target.object",
            target.target_object(node.serial.as_deref()),
        );
        Media::Audio.capture_sink(&node.class)
    };
    if capture_sink {
        // A sink's monitor ports (what the session manager documents for sink capture; with
        // target.object naming the sink, WirePlumber 0.4.13 links the monitor either way).
        props.insert("stream.capture.sink", "true");
    }
    let stream = pw::stream::Stream::new(&core, "punktfunk-audio", props).map_err(|e| {
        CaptureError::PipeWire {
            what: "stream",
            error: e.to_string(),
        }
    })?;
    let _listener = stream
        .add_local_listener_with_user_data((Arc::clone(shared), spec))
        .state_changed(|_, (shared, _), _old, new| {
            if let pw::stream::StreamState::Error(message) = new {
                shared.end(CaptureError::Stream(message));
            }
        })
        .param_changed(|_, (shared, want), id, param| on_param(shared, *want, id, param))
        .process(|stream, (shared, _)| on_process(stream, shared))
        .register()
        .map_err(|e| CaptureError::PipeWire {
            what: "stream listener",
            error: e.to_string(),
        })?;

    let mut info = AudioInfoRaw::new();
    info.set_format(AudioFormat::F32LE);
    info.set_rate(spec.rate);
    info.set_channels(spec.channels);
    let object = Object {
        type_: SpaTypes::ObjectParamFormat.as_raw(),
        id: spa::param::ParamType::EnumFormat.as_raw(),
        properties: info.into(),
    };
    // Serialising into a growable buffer cannot fail for these value types.
    let bytes = spa::pod::serialize::PodSerializer::serialize(
        std::io::Cursor::new(Vec::new()),
        &Value::Object(object),
    )
    .map(|(cursor, _)| cursor.into_inner())
    .unwrap_or_default();
    let mut params = [Pod::from_bytes(&bytes).ok_or(CaptureError::PipeWire {
        what: "EnumFormat pod",
        error: "serialised pod does not parse".into(),
    })?];
    stream
        .connect(
            spa::utils::Direction::Input,
            None,
            pw::stream::StreamFlags::AUTOCONNECT | pw::stream::StreamFlags::MAP_BUFFERS,
            &mut params,
        )
        .map_err(|e| CaptureError::PipeWire {
            what: "stream connect",
            error: e.to_string(),
        })?;
    let _ = started.try_send(Ok(()));
    mainloop.run();
    let _ = stream.disconnect();
    Ok(())
}

fn on_param(shared: &Arc<AudioShared>, want: AudioSpec, id: u32, param: Option<&Pod>) {
    let Some(param) = param else { return };
    if id != spa::param::ParamType::Format.as_raw() {
        return;
    }
    let Ok((MediaType::Audio, MediaSubtype::Raw)) = spa::param::format_utils::parse_format(param)
    else {
        shared.end(CaptureError::Stream(
            "daemon fixed a non-raw-audio format".into(),
        ));
        return;
    };
    let mut info = AudioInfoRaw::new();
    if let Err(e) = info.parse(param) {
        shared.end(CaptureError::Stream(format!(
            "unparsable audio format: {e}"
        )));
        return;
    }
    match want.accept(info.format(), info.rate(), info.channels()) {
        Ok(spec) => shared.lock().spec = Some(spec),
        Err(e) => shared.end(e.into()),
    }
}

fn on_process(stream: &pw::stream::StreamRef, shared: &Arc<AudioShared>) {
    // Every buffer, oldest first: audio is not skipped here.
    while let Some(mut buffer) = stream.dequeue_buffer() {
        let capture_us = crate::clock::monotonic_us();
        let Some(spec) = shared.lock().spec else {
            shared.lock().stats.buffers_dropped += 1;
            continue;
        };
        let datas = buffer.datas_mut();
        let Some(data) = datas.first_mut() else {
            shared.lock().stats.buffers_dropped += 1;
            continue;
        };
        let chunk = DataChunk {
            offset: data.chunk().offset() as usize,
            size: data.chunk().size() as usize,
            stride: data.chunk().stride(),
            mapped: data.data().map_or(0, |d| d.len()),
        };
        let (Ok(range), Some(bytes)) = (spec.samples(chunk), data.data()) else {
            shared.lock().stats.buffers_dropped += 1;
            continue;
        };
        let mut out = shared.lock().spare.pop().unwrap_or_default();
        out.samples.clear();
        out.samples.extend(
            bytes[range]
                .chunks_exact(SAMPLE_BYTES)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])),
        );
        out.channels = spec.channels;
        out.rate = spec.rate;
        out.capture_us = capture_us;
        let mut q = shared.lock();
        out.sequence = q.stats.chunks_captured;
        q.stats.chunks_captured += 1;
        q.stats.frames_captured += out.frames() as u64;
        if q.chunks.len() == QUEUE_CHUNKS
            && let Some(old) = q.chunks.pop_front()
        {
            q.stats.chunks_dropped += 1;
            q.spare.push(old);
        }
        q.chunks.push_back(out);
        drop(q);
        shared.ready.notify_all();
    }
}
