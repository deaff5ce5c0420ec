//! PipeWire video capture (cargo feature `pipewire`): frames from a PipeWire video node
//! (a compositor's screencast stream, a camera, `gst-launch … ! pipewiresink`) copied into
//! caller-owned buffers.
//!
//! ```text
//!  PipeWire daemon ──(memfd/SHM buffers)──► pw-capture thread ──► mailbox (1 frame) ──► caller
//!                                           MainLoop, Stream        latest wins           next_frame()
//!                                           process(): dequeue,     replaced frames
//!                                           copy rows, stamp µs     counted, buffers
//!                                                                   recycled
//! ```
//!
//! What it does:
//! * [`PipeWireCapture::connect`] starts one thread that runs a PipeWire `MainLoop`, looks the
//!   [`Target`] up in the registry (a `Video/Source` or `Stream/Output/Video` node, by
//!   `node.name` or global id; [`CaptureError::NotFound`] otherwise), and connects an input
//!   stream with `target.object` set to the node, flags `AUTOCONNECT | MAP_BUFFERS`, and one
//!   EnumFormat: raw video in BGRx, BGRA, RGBx, RGBA, I420 or NV12 ([`format::PREFERRED`]), any
//!   size up to 8192² and any frame rate, or the exact size and the default rate of a
//!   [`VideoRequest`] ([`PipeWireCapture::connect_with`]). The producer fixes the format; its
//!   size is the frame's. [`PipeWireCapture::request`] offers a new EnumFormat on the live
//!   stream (`pw_stream_update_params`): a producer that takes the consumer's size (Mutter's
//!   virtual monitor) renegotiates to it.
//! * Each buffer is copied, plane by plane and row by row (any producer stride), into a
//!   [`VideoFrame`] with tightly packed rows, stamped with [`crate::clock::monotonic_us`] when
//!   the stream thread dequeued it, and put in a one-frame mailbox. A frame the caller has not
//!   taken yet is replaced (latest wins, counted in [`CaptureStats::frames_replaced`]); the
//!   PipeWire thread never waits for the caller. Frame buffers circulate between the caller,
//!   the mailbox and the thread, so the steady state allocates nothing.
//! * DMA-BUF buffers, when a producer sends them, are not mapped: their fd, plane offsets,
//!   strides and modifier are recorded as a [`DmaBufDescriptor`] ([`PipeWireCapture::last_dmabuf`])
//!   and counted ([`CaptureStats::dmabuf_buffers`]). Importing them (EGL/Vulkan/CUDA) comes
//!   later.
//!
//! * Audio: [`PipeWireAudioCapture`] captures an `Audio/Source` or an `Audio/Sink`'s monitor
//!   (what games play into the sink) as interleaved F32LE at the [`AudioSpec`] asked for (the
//!   stream's adapter converts), every buffer in order through a bounded queue ([`audio`]).
//!   [`SinkAudio`] turns the default sink's monitor ([`Target::DefaultSink`]) into one Opus
//!   packet per call of the stream's audio clock, silence where nothing was captured
//!   ([`sink_audio`]).
//!
//! What it does not do: the xdg-desktop-portal ScreenCast handshake (that hands out the node id
//! and a PipeWire fd; here we connect to the session's daemon socket), DMA-BUF import, cursor
//! and damage metadata. docs/capture.md, "PipeWire capture".
//!
//! Decide and act: [`format`](mod@format) (format choice, output layout, copy plan),
//! [`audio_format`] and [`target`] are pure and `#![forbid(unsafe_code)]`; `stream` (video
//! thread, shared daemon connection and registry lookup) and [`audio`] (audio thread and queue)
//! act; this module owns the video thread handle and its mailbox. No `unsafe` anywhere:
//! pipewire-rs maps the buffers.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use punktfunk_capture::pipewire::{PipeWireCapture, Target, VideoFrame};
//!
//! let capture = PipeWireCapture::connect(Target::Name("pftest".into()), Duration::from_secs(5))?;
//! let mut frame = VideoFrame::default(); // reused: its buffer goes back to the pool each call
//! capture.next_frame(&mut frame, Duration::from_secs(1))?;
//! println!("{}x{} {:?} stride {} at {} µs", frame.width, frame.height, frame.format,
//!          frame.stride(), frame.capture_us);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

pub mod audio;
pub mod audio_format;
pub mod format;
pub mod node_source;
pub mod sink_audio;
mod stream;
pub mod target;

use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use audio::{AudioChunk, AudioStats, PipeWireAudioCapture};
pub use audio_format::{AudioFormatError, AudioSpec};
pub use format::{FormatError, PixelFormat, Plane, Planes, StreamFormat, VideoRequest};
pub use node_source::{NodeCapture, NodeCaptureStats};
pub use sink_audio::{SinkAudio, SinkAudioError, SinkAudioStats};
pub use target::{Media, Target};

/// One captured frame, in a buffer the caller keeps and hands back on every
/// [`PipeWireCapture::next_frame`].
#[derive(Debug, Clone)]
pub struct VideoFrame {
    /// Pixel data: planes back to back, rows tightly packed (see [`format`](mod@format)).
    pub data: Vec<u8>,
    /// Pixel format.
    pub format: PixelFormat,
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Offset and stride of each plane in `data`.
    pub planes: Planes,
    /// Frames the stream thread copied before this one (gaps: frames replaced in the mailbox).
    pub sequence: u64,
    /// `CLOCK_MONOTONIC` µs when the stream thread dequeued the buffer
    /// ([`crate::clock::monotonic_us`]).
    pub capture_us: u64,
}

impl Default for VideoFrame {
    fn default() -> Self {
        Self {
            data: Vec::new(),
            format: PixelFormat::Bgrx,
            width: 0,
            height: 0,
            planes: Planes::default(),
            sequence: 0,
            capture_us: 0,
        }
    }
}

impl VideoFrame {
    /// Stride of the first plane (bytes per row).
    pub fn stride(&self) -> usize {
        self.planes.0[0].stride
    }
}

/// A DMA-BUF buffer the producer sent, as PipeWire described it. Not mapped or imported; the fd
/// belongs to PipeWire and is valid only while the buffer was dequeued, so this is a record
/// (for logs and for the later import path), not a handle to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DmaBufDescriptor {
    /// The negotiated format and size.
    pub format: StreamFormat,
    /// `spa_data.fd` of each plane (several planes may share one fd).
    pub fds: [i64; 4],
    /// Byte offset of each plane in its fd (`spa_chunk.offset`).
    pub offsets: [u32; 4],
    /// Stride of each plane (`spa_chunk.stride`).
    pub strides: [i32; 4],
    /// Planes in use.
    pub planes: usize,
    /// DRM format modifier from the negotiated format (`None`: implicit/linear).
    pub modifier: Option<u64>,
}

/// Counters of one capture, since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Buffers copied into frames.
    pub frames_captured: u64,
    /// Frames replaced in the mailbox before the caller took them.
    pub frames_replaced: u64,
    /// Frames handed to the caller.
    pub frames_delivered: u64,
    /// Buffers dropped: no format yet, corrupted or too short for the format, unmapped.
    pub buffers_dropped: u64,
    /// DMA-BUF buffers seen (recorded, not copied).
    pub dmabuf_buffers: u64,
    /// µs the stream thread spent copying buffers into frames (dequeue to publish), summed:
    /// divided by `frames_captured`, the capture's own cost per frame.
    pub copy_us: u64,
}

/// Why a capture could not start or stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    /// A PipeWire call failed (no daemon to connect to, out of resources…).
    #[error("pipewire: {what}: {error}")]
    PipeWire {
        /// What we were doing.
        what: &'static str,
        /// PipeWire's error.
        error: String,
    },
    /// No video node matches the target.
    #[error("no PipeWire video node with {0}")]
    NotFound(Target),
    /// The daemon did not answer (registry round trip) within the connect timeout.
    #[error("PipeWire did not answer within {0:?}")]
    ConnectTimeout(Duration),
    /// No frame arrived within the caller's timeout.
    #[error("no frame within {0:?}")]
    Timeout(Duration),
    /// The stream went to the error state (the producer vanished, negotiation failed).
    #[error("stream error: {0}")]
    Stream(String),
    /// The producer's node left the graph (the program ended, the screencast was stopped).
    #[error("the producer's node was removed")]
    ProducerGone,
    /// The format the producer fixed is not one we take.
    #[error("format: {0}")]
    Format(#[from] FormatError),
    /// The audio format fixed is not the one asked for, or the spec asked for is unusable.
    #[error("audio format: {0}")]
    AudioFormat(#[from] AudioFormatError),
    /// The capture thread ended (panicked or was stopped).
    #[error("capture thread ended")]
    Ended,
}

/// What the stream thread and the caller share: the one-frame mailbox and the counters.
#[derive(Debug, Default)]
struct Mailbox {
    latest: Option<VideoFrame>,
    /// Frame buffers free for the stream thread to fill.
    spare: Vec<VideoFrame>,
    ended: Option<CaptureError>,
    format: Option<StreamFormat>,
    last_dmabuf: Option<DmaBufDescriptor>,
    stats: CaptureStats,
}

#[derive(Debug, Default)]
struct Shared {
    mailbox: Mutex<Mailbox>,
    ready: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Mailbox> {
        // A panic while holding the lock leaves plain data behind (no invariant spans the
        // fields), so a poisoned mailbox is still usable.
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A buffer for the stream thread to fill (allocates only until buffers circulate).
    fn take_spare(&self) -> VideoFrame {
        self.lock().spare.pop().unwrap_or_default()
    }

    /// Puts a filled frame in the mailbox; the frame it replaces becomes a spare.
    fn publish(&self, frame: VideoFrame) {
        let mut m = self.lock();
        m.stats.frames_captured += 1;
        if let Some(old) = m.latest.replace(frame) {
            m.stats.frames_replaced += 1;
            m.spare.push(old);
        }
        drop(m);
        self.ready.notify_all();
    }

    /// The caller's side: waits up to `timeout` for the newest frame and swaps it into `frame`;
    /// `frame`'s old buffer becomes a spare.
    fn take_latest(&self, frame: &mut VideoFrame, timeout: Duration) -> Result<(), CaptureError> {
        let deadline = Instant::now() + timeout;
        let mut m = self.lock();
        loop {
            if let Some(mut latest) = m.latest.take() {
                std::mem::swap(frame, &mut latest);
                m.spare.push(latest);
                m.stats.frames_delivered += 1;
                return Ok(());
            }
            if let Some(e) = &m.ended {
                return Err(e.clone());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(CaptureError::Timeout(timeout));
            }
            m = self
                .ready
                .wait_timeout(m, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    fn end(&self, error: CaptureError) {
        let mut m = self.lock();
        m.ended.get_or_insert(error);
        drop(m);
        self.ready.notify_all();
    }
}

/// What the caller tells the stream thread.
#[derive(Debug)]
enum Command {
    /// Stop: disconnect the stream and end the thread.
    Quit,
    /// Offer a new EnumFormat (renegotiation).
    Request(VideoRequest),
}

/// A running PipeWire video capture: one thread, one stream, one mailbox. Dropping it stops the
/// thread (disconnects the stream) and joins it.
pub struct PipeWireCapture {
    shared: Arc<Shared>,
    commands: pipewire::channel::Sender<Command>,
    thread: Option<JoinHandle<()>>,
}

impl PipeWireCapture {
    /// Connects to the session's PipeWire daemon (`$XDG_RUNTIME_DIR/pipewire-0`, or
    /// `$PIPEWIRE_REMOTE`), finds `target` and starts streaming from it. Fails if the daemon
    /// cannot be reached, does not answer within `timeout`, or has no such video node.
    pub fn connect(target: Target, timeout: Duration) -> Result<Self, CaptureError> {
        Self::connect_to(None, target, timeout)
    }

    /// [`connect`](Self::connect) to the daemon listening on `remote`: a socket name in
    /// `$XDG_RUNTIME_DIR` (`pipewire-0`) or an absolute socket path (what a test's private
    /// daemon, or a daemon of another runtime dir, listens on). `None`: the default.
    pub fn connect_to(
        remote: Option<String>,
        target: Target,
        timeout: Duration,
    ) -> Result<Self, CaptureError> {
        Self::connect_with(remote, target, VideoRequest::default(), timeout)
    }

    /// [`connect_to`](Self::connect_to) offering the size and rate of `request` (a producer
    /// that takes the consumer's size, like Mutter's virtual monitor, gets exactly that).
    pub fn connect_with(
        remote: Option<String>,
        target: Target,
        request: VideoRequest,
        timeout: Duration,
    ) -> Result<Self, CaptureError> {
        let request = request.validate()?;
        let shared = Arc::new(Shared::default());
        let (commands, commands_rx) = pipewire::channel::channel::<Command>();
        let (started_tx, started_rx) = std::sync::mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread = std::thread::Builder::new()
            .name("pw-capture".into())
            .spawn(move || {
                stream::run(
                    remote,
                    target,
                    request,
                    thread_shared,
                    commands_rx,
                    started_tx,
                )
            })
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
            commands,
            thread: Some(thread),
        };
        started.map(|()| capture) // on error, dropping `capture` stops and joins the thread
    }

    /// Waits up to `timeout` for a frame newer than the last one taken and swaps it into
    /// `frame`; `frame`'s old buffer goes back to the pool. Returns the stream's error once it
    /// has ended.
    pub fn next_frame(
        &self,
        frame: &mut VideoFrame,
        timeout: Duration,
    ) -> Result<(), CaptureError> {
        self.shared.take_latest(frame, timeout)
    }

    /// Offers `request` to the producer (renegotiation, e.g. a new mode of a virtual monitor).
    /// Returns once the request is queued for the stream thread; the new format shows in
    /// [`format`](Self::format) and in the frames once the producer fixed it.
    pub fn request(&self, request: VideoRequest) -> Result<(), CaptureError> {
        let request = request.validate()?;
        self.commands
            .send(Command::Request(request))
            .map_err(|_| CaptureError::Ended)
    }

    /// Why the stream ended, once it has (frames already taken stay valid).
    pub fn ended(&self) -> Option<CaptureError> {
        self.shared.lock().ended.clone()
    }

    /// The format the producer fixed, once negotiated.
    pub fn format(&self) -> Option<StreamFormat> {
        self.shared.lock().format
    }

    /// Counters so far.
    pub fn stats(&self) -> CaptureStats {
        self.shared.lock().stats
    }

    /// The last DMA-BUF buffer seen, if the producer sent any.
    pub fn last_dmabuf(&self) -> Option<DmaBufDescriptor> {
        self.shared.lock().last_dmabuf
    }
}

impl std::fmt::Debug for PipeWireCapture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PipeWireCapture")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

impl Drop for PipeWireCapture {
    fn drop(&mut self) {
        // The loop may have ended already (startup failure): then the send fails, harmlessly.
        let _ = self.commands.send(Command::Quit);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the stream thread does per buffer, without PipeWire: a spare, filled, published.
    fn produce(shared: &Shared, fill: u8) {
        let mut frame = shared.take_spare();
        frame.data.clear();
        frame.data.resize(320 * 240 * 4, fill);
        shared.publish(frame);
    }

    #[test]
    fn the_newest_frame_wins_and_replaced_ones_are_counted() {
        let shared = Shared::default();
        let mut frame = VideoFrame::default();
        assert_eq!(
            shared.take_latest(&mut frame, Duration::ZERO),
            Err(CaptureError::Timeout(Duration::ZERO))
        );
        produce(&shared, 1);
        produce(&shared, 2);
        produce(&shared, 3);
        shared
            .take_latest(&mut frame, Duration::ZERO)
            .expect("a frame is waiting");
        assert_eq!(frame.data[0], 3);
        let stats = shared.lock().stats;
        assert_eq!(
            (
                stats.frames_captured,
                stats.frames_replaced,
                stats.frames_delivered
            ),
            (3, 2, 1)
        );
        // Taken once: the next call waits again; after the end it reports the error.
        assert!(shared.take_latest(&mut frame, Duration::ZERO).is_err());
        shared.end(CaptureError::ProducerGone);
        assert_eq!(
            shared.take_latest(&mut frame, Duration::ZERO),
            Err(CaptureError::ProducerGone)
        );
    }

    #[test]
    fn frame_buffers_circulate_without_new_allocations() {
        let shared = Shared::default();
        let mut frame = VideoFrame::default();
        let mut buffers = std::collections::HashSet::new();
        for i in 0..200u32 {
            // Uneven pace: sometimes the caller misses frames, sometimes it waits for one.
            produce(&shared, i as u8);
            if i % 3 == 0 {
                produce(&shared, i as u8);
            }
            shared
                .take_latest(&mut frame, Duration::ZERO)
                .expect("a frame is waiting");
            buffers.insert(frame.data.as_ptr() as usize);
        }
        // The caller's, the mailbox's and the thread's buffer: at most three ever exist.
        assert!(buffers.len() <= 3, "{} distinct buffers", buffers.len());
        assert!(shared.lock().spare.len() <= 3);
    }
}
