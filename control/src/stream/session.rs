//! The streaming side of a GameStream host (act): the RTSP listener, and per stream the ENet
//! control thread, the video thread (pings → engine pipeline) and the audio thread.
//!
//! ```text
//!   /launch ──► StreamHost::prepare(spec) ── one slot per session: UDP video/audio/control
//!               bound for its port slot, Handshake (keys, ping payload, connect data)
//!   RTSP :48010 (pf-rtsp) ── one request per connection, a pf-rtsp-conn thread each
//!        (at most 128; oldest half-open evicted; 5 s total per request)
//!        ──► rtsp::route (Session token, else the client's address) ──► that slot's Handshake
//!        PLAY ──► the slot's sockets ──► pf-stream orchestrator
//!                     ├─ pf-control: ENet host; drives the GsSession
//!                     ├─ pf-video:   pings → GsSession; PipelineBuilder{source, encoder,
//!                     │              PacketizeStage, SendSink}
//!                     └─ pf-audio:   pings → GsSession; Opus → AudioPacketizer → UDP
//!   /cancel, host exit ──► stop (termination message 0x0109 first)
//!   client silent 8 s or ENet disconnect ──► stream ends, slot freed
//! ```
//!
//! Several sessions run at once, each in its own slot with its own keys, sockets, threads,
//! source, encoder and pipeline. Slot `i` binds the standard UDP ports plus `i ×`
//! [`PORT_STRIDE`] (47998/47999/48000, then 48098/48099/48100, …; a port in use falls back to
//! one the OS picks), and tells the client in its SETUP replies; RTSP stays on one port.
//!
//! What happens in a stream is decided by its [`GsSession`] (pure, see `gs_session`): the
//! threads here read their sockets, call its `handle_*` methods under one lock and carry out
//! the events that come out of the same call (`StreamCtx::apply`): an IDR request reaches the running
//! pipeline's keyframe flag in the step that decoded it, a FEC status report reaches the
//! packetizer's loss feedback, a ping from a new address moves that stream's destination,
//! and `Ended` stops every thread of the stream.
//!
//! Media comes from a [`MediaFactory`] (test pattern + software H.264 by default, see
//! `punktfunk-capture`), input goes to an [`InputHandler`].

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use punktfunk_engine::config::SessionProfile;
use punktfunk_engine::gamestream::stage::{LossFeedback, PacketizeStage};
use punktfunk_engine::gamestream::wire::audio::{AudioDatagrams, AudioKey, AudioPacketizer};
use punktfunk_engine::gamestream::wire::video::VideoParams;
use punktfunk_engine::io::build::{
    EffectiveSettings, PipelineBuilder, PipelineWatch, VideoPipeline, VideoSend, VideoStages,
};
use punktfunk_engine::io::sink::PeerAddr;
use punktfunk_engine::io::{Caps, Pacing, UdpSender};
use punktfunk_engine::pipeline::{RingId, Source, Stage, StageId};
use punktfunk_engine::pool::FrameBuf;
use rusty_enet as enet;

use crate::limits::{Admission, Close, ConnId, LimitsConfig, Listener};

use punktfunk_engine::gamestream::wire::control::Direction;
use punktfunk_engine::gamestream::wire::rtsp::{self as rtsp_wire, RtspCipher};

use super::control::{HdrMetadata, HostMessage, TERMINATION_GRACEFUL};
use super::gs_session::{ControlTransmit, GsConfig, GsEvent, GsSession, PeerKey, PingStream};
use super::rtsp::{self, Handshake, HandshakeParams, RouteCandidate, RtspEvent};
use super::sdp::{HostOffer, ML_FF_SESSION_ID_V1, StreamConfig, VideoCodec, enc};
use crate::live::StreamFigures;

/// A client pings the control stream every 100 ms; after 8 s of silence it is gone, and the
/// session is freed (the issue's bound is 10 s; the client itself gives up after about 10 s).
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(8);

/// How far apart the UDP ports of consecutive session slots are: slot `i` uses the
/// endpoints' video, control and audio ports plus `i × PORT_STRIDE`.
pub const PORT_STRIDE: u16 = 100;

/// Where the streaming side listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamEndpoints {
    /// Address to bind (0.0.0.0 for all).
    pub bind: IpAddr,
    /// RTSP (TCP).
    pub rtsp: u16,
    /// Video (UDP) of slot 0 (0: any free port).
    pub video: u16,
    /// Control / ENet (UDP) of slot 0 (0: any free port).
    pub control: u16,
    /// Audio (UDP) of slot 0 (0: any free port).
    pub audio: u16,
}

/// A video source and encoder for one stream, as pipeline stages.
pub struct VideoMedia {
    /// Produces raw frames at the stream's frame rate.
    pub source: Box<dyn Source<Output = FrameBuf>>,
    /// Turns raw frames into Annex-B frames (keyframe flag set; honours keyframe requests).
    pub encoder: Box<dyn Stage<Input = FrameBuf, Output = FrameBuf>>,
    /// Largest buffer either stage needs (raw frame or encoded frame).
    pub frame_capacity: usize,
    /// Where this stream's input goes when its source has a desktop of its own (the
    /// session's virtual output); `None`: the host-wide input handler.
    pub input: Option<Box<dyn InputHandler>>,
    /// The session's own display (output name), when the source has one: where an app's
    /// command is started ([`MediaFactory::start_app`]).
    pub display: Option<String>,
}

impl VideoMedia {
    /// A source and an encoder without a desktop of their own (no own input, no display).
    pub fn new(
        source: Box<dyn Source<Output = FrameBuf>>,
        encoder: Box<dyn Stage<Input = FrameBuf, Output = FrameBuf>>,
        frame_capacity: usize,
    ) -> Self {
        Self {
            source,
            encoder,
            frame_capacity,
            input: None,
            display: None,
        }
    }
}

/// One Opus packet per call, `packet_ms` of audio each, all the same length (CBR).
pub trait AudioSource: Send {
    /// The next packet.
    fn next_packet(&mut self) -> Result<&[u8], String>;
}

/// Builds the media of a stream from its configuration.
pub trait MediaFactory: Send + Sync + 'static {
    /// Video for `config` (resolution, fps, bitrate, codec).
    fn video(&self, config: &StreamConfig) -> Result<VideoMedia, String>;
    /// Video (H.264) whose mode follows `switch` (a punktfunk/1 stream: renegotiation sets a
    /// new mode there): the source starts in the switch's mode and changes it in place (a
    /// desktop source sets its virtual output to the new mode), the encoder reconfigures at
    /// the first frame of the new mode.
    fn switched_video(
        &self,
        switch: Arc<punktfunk_capture::stages::ModeSwitch>,
    ) -> Result<VideoMedia, String>;
    /// Audio for `config` (channels, packet duration).
    fn audio(&self, config: &StreamConfig) -> Result<Box<dyn AudioSource>, String>;
    /// Whether this source's pictures are HDR (BT.2020 PQ) when a client asks for HDR: then
    /// the session announces HDR mode and its metadata. Desktops here are SDR (their 10-bit
    /// streams say BT.709), the test pattern has an HDR mode.
    fn hdr(&self) -> bool {
        false
    }
    /// Starts `command` (argv) inside the session display `display`; the default has no
    /// desktop to start it in.
    fn start_app(&self, display: &str, command: &[String]) -> Result<(), String> {
        let _ = (display, command);
        Err("this media source has no desktop to start an app in".into())
    }
}

/// Receives the input packets of control message 0x0206.
pub trait InputHandler: Send {
    /// One input packet (`NV_INPUT_HEADER` …), exactly as the client sent it.
    fn handle_input(&mut self, packet: &[u8]);
}

/// Host-wide streaming options (from the tuning profile).
#[derive(Debug, Clone)]
pub struct StreamOptions {
    /// The tuning profile's `[pipeline]`, `[send]`, `[pacing]` and `[fec]`: every stream's
    /// pipeline is built from it (`punktfunk_engine::io::build`).
    pub profile: SessionProfile,
    /// DESCRIBE offer.
    pub offer: HostOffer,
    /// Connection limits of the RTSP listener (default [`rtsp_limits`]).
    pub rtsp_limits: LimitsConfig,
}

/// The RTSP listener's limits: 128 connections (a thread each, see [`RTSP_THREAD_STACK`]),
/// the oldest half-open one evicted for a new one, 5 s in total to send a request, 10 s to
/// take the response. Moonlight opens one connection per request and sends it at once.
pub fn rtsp_limits() -> LimitsConfig {
    LimitsConfig {
        max_connections: 128,
        ..LimitsConfig::default()
    }
}

/// Stack of an RTSP connection thread: it holds a 4 KiB read buffer and the handshake
/// calls; the request itself lives on the heap.
pub const RTSP_THREAD_STACK: usize = 256 * 1024;

/// Largest RTSP request accepted (ANNOUNCE carries the biggest body, about 2 KiB).
pub const RTSP_MAX_REQUEST: usize = 64 * 1024;

impl Default for StreamOptions {
    fn default() -> Self {
        Self {
            profile: SessionProfile::default(),
            offer: HostOffer {
                feature_flags: 0,
                encryption_supported: enc::CONTROL_V2 | enc::VIDEO | enc::AUDIO,
                encryption_requested: 0,
                hevc: false,
                av1: false,
            },
            rtsp_limits: rtsp_limits(),
        }
    }
}

/// What `/launch` or `/resume` hands the streaming side.
#[derive(Clone, PartialEq, Eq)]
pub struct LaunchSpec {
    /// Session number (for logs and status).
    pub session_id: u32,
    /// `rikey`.
    pub rikey: [u8; 16],
    /// `rikeyid`.
    pub rikeyid: u32,
    /// Where the client's launch came from: its RTSP requests are matched to this session by
    /// this address until they carry the session's token.
    pub client: IpAddr,
    /// Port slot (see [`PORT_STRIDE`]).
    pub slot: usize,
    /// The launched app's command (argv), started inside the session's desktop when its video
    /// starts; empty: nothing to start (the desktop app).
    pub command: Vec<String>,
    /// `/launch` said `rtspenc://`: this session's RTSP requests come sealed with `rikey`
    /// (plain-text requests for it are refused).
    pub rtsp_encrypted: bool,
}

impl std::fmt::Debug for LaunchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LaunchSpec")
            .field("session_id", &self.session_id)
            .field("client", &self.client)
            .field("slot", &self.slot)
            .field("rtsp_encrypted", &self.rtsp_encrypted)
            .finish_non_exhaustive()
    }
}

/// Where a session stands on the streaming side.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// No such session (never prepared, stopped, or its stream ended).
    Idle,
    /// Launched; the client has not finished the RTSP handshake.
    Prepared {
        /// Session number.
        session_id: u32,
    },
    /// Streaming to a client.
    Streaming {
        /// Session number.
        session_id: u32,
        /// The negotiated configuration.
        config: StreamConfig,
        /// Whether the control stream is connected.
        connected: bool,
    },
}

/// Host-wide counters of the streaming side, for the management API and tests. Everything
/// that belongs to one stream is counted in that stream's [`SessionCounters`] instead, so
/// that a session's figures start at zero and die with it.
#[derive(Debug, Default)]
pub struct StreamCounters {
    /// Streams started (PLAY accepted).
    pub streams: AtomicU64,
    /// RTSP requests refused as malformed.
    pub rtsp_malformed: AtomicU64,
}

/// Counters of one stream, from PLAY to its end: created at zero when the stream starts,
/// shared by its threads, dropped with it. [`SessionCounters::snapshot`] reads them.
#[derive(Debug, Default)]
pub struct SessionCounters {
    /// Video frames sent (counted by the send stage after each frame's datagrams went out).
    pub video_frames: AtomicU64,
    /// Audio packets sent.
    pub audio_packets: AtomicU64,
    /// IDR requests received.
    pub idr_requests: AtomicU64,
    /// Input packets received.
    pub input_packets: AtomicU64,
    /// Control packets dropped (bad envelope, replay, …).
    pub control_dropped: AtomicU64,
    /// Pings ignored (wrong payload or size).
    pub bad_pings: AtomicU64,
    /// The settings this stream's video pipeline runs with, once it started.
    pub pipeline: PipelineWatch,
}

impl SessionCounters {
    /// The counters' values now, labelled with `session_id`.
    pub fn snapshot(&self, session_id: u32) -> SessionStats {
        let v = |c: &AtomicU64| c.load(Ordering::Relaxed);
        SessionStats {
            session_id,
            video_frames: v(&self.video_frames),
            audio_packets: v(&self.audio_packets),
            idr_requests: v(&self.idr_requests),
            input_packets: v(&self.input_packets),
            control_dropped: v(&self.control_dropped),
            bad_pings: v(&self.bad_pings),
        }
    }
}

/// A snapshot of one stream's [`SessionCounters`] (what `/api/sessions` and the
/// "stream stopped" log line report).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct SessionStats {
    /// The session the stream belongs to.
    pub session_id: u32,
    /// Video frames sent in this stream.
    pub video_frames: u64,
    /// Audio packets sent in this stream.
    pub audio_packets: u64,
    /// IDR requests received in this stream.
    pub idr_requests: u64,
    /// Input packets received in this stream.
    pub input_packets: u64,
    /// Control packets dropped in this stream.
    pub control_dropped: u64,
    /// Pings ignored in this stream.
    pub bad_pings: u64,
}

struct Slot {
    spec: LaunchSpec,
    handshake: Handshake,
    /// Bound at prepare (their ports go into the SETUP replies), taken by the stream at PLAY.
    sockets: Option<StreamSockets>,
    stream: Option<RunningStream>,
    /// The sequence number of the next encrypted RTSP response (each used once per key).
    rtsp_seq: u32,
}

struct RunningStream {
    config: StreamConfig,
    /// The stream's decisions, shared with its threads: host messages go in here.
    session: Arc<Mutex<GsSession>>,
    stop: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    counters: Arc<SessionCounters>,
    loss: Arc<LossFeedback>,
    video_peer: Arc<PeerAddr>,
    session_id: u32,
    thread: Option<JoinHandle<()>>,
}

impl RunningStream {
    /// Stops the stream's threads and waits for them; its final counters.
    fn stop(mut self, terminate: bool) -> SessionStats {
        self.terminate.store(terminate, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counters.snapshot(self.session_id)
    }
}

struct Shared {
    endpoints: StreamEndpoints,
    options: StreamOptions,
    media: Arc<dyn MediaFactory>,
    input: Arc<Mutex<dyn InputHandler>>,
    builder: PipelineBuilder,
    slots: Mutex<Vec<Slot>>,
    counters: StreamCounters,
    shutdown: AtomicBool,
    rtsp_conns: Arc<Listener>,
}

impl Shared {
    fn slots(&self) -> MutexGuard<'_, Vec<Slot>> {
        // Plain data behind the lock; a panicking holder leaves it usable.
        self.slots
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs `f` on session `id`'s slot, if there is one.
    fn with_slot<R>(&self, id: u32, f: impl FnOnce(&Slot) -> R) -> Option<R> {
        self.slots().iter().find(|s| s.spec.session_id == id).map(f)
    }

    /// Runs `f` on session `id`'s slot, mutably, if there is one.
    fn with_slot_mut<R>(&self, id: u32, f: impl FnOnce(&mut Slot) -> R) -> Option<R> {
        self.slots()
            .iter_mut()
            .find(|s| s.spec.session_id == id)
            .map(f)
    }

    /// Takes session `id`'s slot out of the table.
    fn take_slot(&self, id: u32) -> Option<Slot> {
        let mut slots = self.slots();
        let i = slots.iter().position(|s| s.spec.session_id == id)?;
        Some(slots.remove(i))
    }
}

/// The streaming side of the host (see the module docs).
pub struct StreamHost {
    shared: Arc<Shared>,
    rtsp: Option<JoinHandle<()>>,
    rtsp_port: u16,
}

impl std::fmt::Debug for StreamHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StreamHost")
            .field("endpoints", &self.shared.endpoints)
            .finish_non_exhaustive()
    }
}

impl StreamHost {
    /// Binds the RTSP listener and starts serving it. UDP ports are bound per stream.
    pub fn start(
        endpoints: StreamEndpoints,
        options: StreamOptions,
        media: Arc<dyn MediaFactory>,
        input: Arc<Mutex<dyn InputHandler>>,
    ) -> std::io::Result<Self> {
        let listener = TcpListener::bind(SocketAddr::new(endpoints.bind, endpoints.rtsp))?;
        let rtsp_port = listener.local_addr()?.port();
        listener.set_nonblocking(true)?;
        let builder = PipelineBuilder::new(options.profile.clone(), Caps::probe());
        let rtsp_conns = Listener::new("rtsp", options.rtsp_limits);
        let shared = Arc::new(Shared {
            endpoints,
            options,
            media,
            input,
            builder,
            slots: Mutex::new(Vec::new()),
            counters: StreamCounters::default(),
            shutdown: AtomicBool::new(false),
            rtsp_conns,
        });
        let s = shared.clone();
        let rtsp = std::thread::Builder::new()
            .name("pf-rtsp".into())
            .spawn(move || rtsp_loop(&s, listener))?;
        Ok(Self {
            shared,
            rtsp: Some(rtsp),
            rtsp_port,
        })
    }

    /// The RTSP port actually bound.
    pub fn rtsp_port(&self) -> u16 {
        self.rtsp_port
    }

    /// The RTSP listener's connection table and counters (for `/api/status`).
    pub fn rtsp_listener(&self) -> Arc<Listener> {
        Arc::clone(&self.shared.rtsp_conns)
    }

    /// Counters.
    pub fn counters(&self) -> &StreamCounters {
        &self.shared.counters
    }

    /// Prepares session `spec.session_id` (launch or resume): a stream it runs is stopped
    /// (with a termination message), its UDP sockets are bound for its port slot, and its next
    /// RTSP handshake uses the new keys. Other sessions are not touched.
    pub fn prepare(&self, spec: LaunchSpec) -> std::io::Result<()> {
        self.stop_session(spec.session_id, true);
        let sockets = bind_sockets(&self.shared, spec.slot)?;
        let mut seed = [0u8; 16];
        fill_random(&mut seed);
        let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02X}")).collect::<String>();
        let mut ping_payload = [0u8; 16];
        ping_payload.copy_from_slice(hex(&seed[..8]).as_bytes());
        let params = HandshakeParams {
            session_id: hex(&seed[8..14]),
            ping_payload,
            connect_data: u32::from_le_bytes([seed[12], seed[13], seed[14], seed[15]]),
            audio_port: sockets.audio.local_addr().port(),
            video_port: sockets.video.local_addr().port(),
            control_port: sockets.control.local_addr()?.port(),
            offer: self.shared.options.offer,
        };
        tracing::debug!(
            session = spec.session_id,
            slot = spec.slot,
            client = %spec.client,
            ports = %format!("video {} control {} audio {}", params.video_port, params.control_port, params.audio_port),
            "session prepared"
        );
        self.shared.slots().push(Slot {
            spec,
            handshake: Handshake::new(params),
            sockets: Some(sockets),
            stream: None,
            rtsp_seq: 0,
        });
        Ok(())
    }

    /// Stops session `id`'s stream and frees its slot. With `terminate`, the client is told
    /// the app ended (0x0109) before the control stream closes. Returns the stopped stream's
    /// final counters (`None` when no stream ran).
    pub fn stop_session(&self, id: u32, terminate: bool) -> Option<SessionStats> {
        // Taken out under the lock, stopped outside it: other sessions' RTSP requests and
        // status reads go on while this stream's threads wind down.
        let stream = self.shared.take_slot(id).and_then(|s| s.stream);
        stream.map(|st| st.stop(terminate))
    }

    /// Stops every session (host exit).
    pub fn stop_all(&self, terminate: bool) {
        let slots = std::mem::take(&mut *self.shared.slots());
        for st in slots.into_iter().filter_map(|s| s.stream) {
            st.stop(terminate);
        }
    }

    /// Sends `msg` (rumble, LED, motion-sensor state, adaptive triggers, HDR mode) to session
    /// `id`'s client over its control stream. Errors say why nothing was sent: no such session,
    /// no stream running, or its client's control stream not connected (yet or any more).
    pub fn send_to_client(&self, id: u32, msg: &HostMessage) -> Result<(), String> {
        let session = self
            .shared
            .with_slot(id, |s| s.stream.as_ref().map(|st| st.session.clone()))
            .ok_or_else(|| format!("no session {id}"))?
            .ok_or_else(|| format!("session {id} is not streaming"))?;
        let sent = session
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .send(msg);
        if sent {
            tracing::debug!(session = id, message = ?msg, "host message queued");
            Ok(())
        } else {
            Err(format!("session {id}'s control stream is not connected"))
        }
    }

    /// Session `id`'s running stream's counters so far (`None` when it has no stream). They
    /// count this stream only: each PLAY starts them at zero.
    pub fn session_stats(&self, id: u32) -> Option<SessionStats> {
        self.shared
            .with_slot(id, |s| {
                s.stream
                    .as_ref()
                    .map(|st| st.counters.snapshot(st.session_id))
            })
            .flatten()
    }

    /// The settings session `id`'s video pipeline uses (`None` before its first ping or when
    /// no stream runs): the tuning profile as it reached the engine.
    pub fn effective_settings(&self, id: u32) -> Option<EffectiveSettings> {
        self.shared
            .with_slot(id, |s| {
                s.stream.as_ref().and_then(|st| st.counters.pipeline.get())
            })
            .flatten()
    }

    /// What session `id`'s running stream reports about itself (`None` before PLAY).
    pub fn figures(&self, id: u32) -> Option<StreamFigures> {
        self.shared
            .with_slot(id, |s| {
                s.stream.as_ref().map(|st| StreamFigures {
                    address: st.video_peer.get(),
                    codec: match st.config.codec {
                        VideoCodec::H264 => "h264",
                        VideoCodec::Hevc => "hevc",
                        VideoCodec::Av1 => "av1",
                    }
                    .to_owned(),
                    bitrate_kbps: st.config.bitrate_kbps,
                    frames_sent: st.counters.video_frames.load(Ordering::Relaxed),
                    loss_percent: (st.loss.get() * 100.0) as f32,
                    fec_percent: st.loss.parity_percent(),
                    media_flowing: st.counters.pipeline.get().is_some(),
                })
            })
            .flatten()
    }

    /// Where session `id` stands.
    pub fn state(&self, id: u32) -> StreamState {
        self.shared
            .with_slot(id, |s| match &s.stream {
                None => StreamState::Prepared { session_id: id },
                Some(st) => StreamState::Streaming {
                    session_id: id,
                    config: st.config.clone(),
                    connected: st.connected.load(Ordering::Relaxed),
                },
            })
            .unwrap_or(StreamState::Idle)
    }

    /// The sessions with a slot, in the order they were prepared.
    pub fn session_ids(&self) -> Vec<u32> {
        self.shared
            .slots()
            .iter()
            .map(|s| s.spec.session_id)
            .collect()
    }

    /// Stops everything: the stream (with a termination message) and the RTSP listener.
    pub fn shutdown(mut self) {
        self.stop_all(true);
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.rtsp.take() {
            let _ = t.join();
        }
    }
}

impl Drop for StreamHost {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        if let Some(t) = self.rtsp.take() {
            self.stop_all(true);
            let _ = t.join();
        }
    }
}

fn fill_random(buf: &mut [u8]) {
    // /dev/urandom is always there on Linux; fall back to time-derived bytes (only session
    // tokens depend on this, not keys: keys come from the client).
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(buf))
        .is_err()
    {
        let mut x = Instant::now().elapsed().as_nanos() as u64 ^ 0x9e37_79b9_7f4a_7c15;
        for b in buf {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            *b = x as u8;
        }
    }
}

/// Accepts RTSP connections and serves each on its own thread (a slow or silent one never
/// holds up another client's handshake), under the listener's [`ConnTable`]: at the limit
/// the oldest half-open connection is shut down to make room.
fn rtsp_loop(shared: &Arc<Shared>, listener: TcpListener) {
    // Clones of the open connections, to shut down the ones the table evicts.
    let open: Arc<Mutex<HashMap<ConnId, TcpStream>>> = Arc::default();
    while !shared.shutdown.load(Ordering::Relaxed) {
        match listener.accept() {
            Ok((conn, peer)) => admit_rtsp(shared, &open, conn, peer),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => {
                tracing::debug!(error = %e, "rtsp accept failed");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
        if let Some(summary) = shared.rtsp_conns.poll_summary(Instant::now()) {
            tracing::warn!("{summary}");
        }
        reap_ended(shared);
    }
}

fn lock_open(
    open: &Mutex<HashMap<ConnId, TcpStream>>,
) -> MutexGuard<'_, HashMap<ConnId, TcpStream>> {
    // A map of socket clones; a panicking holder leaves it usable.
    open.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn admit_rtsp(
    shared: &Arc<Shared>,
    open: &Arc<Mutex<HashMap<ConnId, TcpStream>>>,
    conn: TcpStream,
    peer: SocketAddr,
) {
    let admission = shared.rtsp_conns.table().handle_accept(Instant::now());
    let (id, deadline) = match admission {
        Admission::Refuse => return,
        Admission::Admit { id, deadline } => (id, deadline),
        Admission::AdmitEvicting {
            id,
            deadline,
            evicted,
        } => {
            if let Some(victim) = lock_open(open).remove(&evicted) {
                // Wakes its thread's blocked read; the thread then ends.
                let _ = victim.shutdown(Shutdown::Both);
            }
            (id, deadline)
        }
    };
    let buf = prefetch(&conn);
    if request_complete(&buf) {
        // The whole request came with the connection: no longer evictable, even if a burst
        // of accepts runs ahead of this connection's thread.
        shared.rtsp_conns.table().handle_request(id);
    }
    match conn.try_clone() {
        Ok(clone) => {
            lock_open(open).insert(id, clone);
        }
        Err(_) => {
            shared.rtsp_conns.table().handle_closed(id, Close::Done);
            return;
        }
    }
    let s = Arc::clone(shared);
    let o = Arc::clone(open);
    let spawned = std::thread::Builder::new()
        .name("pf-rtsp-conn".into())
        .stack_size(RTSP_THREAD_STACK)
        .spawn(move || {
            let how = serve_rtsp(&s, conn, buf, peer, id, deadline);
            lock_open(&o).remove(&id);
            s.rtsp_conns.table().handle_closed(id, how);
        });
    if spawned.is_err() {
        // Out of threads: the connection (its last handle is in `open`) closes.
        lock_open(open).remove(&id);
        shared.rtsp_conns.table().handle_closed(id, Close::Done);
    }
}

/// Frees the slots of streams whose threads ended on their own (client gone).
fn reap_ended(shared: &Shared) {
    let ended: Vec<Slot> = {
        let mut slots = shared.slots();
        let (ended, running) = std::mem::take(&mut *slots).into_iter().partition(|s| {
            s.stream
                .as_ref()
                .is_some_and(|st| st.thread.as_ref().is_some_and(JoinHandle::is_finished))
        });
        *slots = running;
        ended
    };
    for slot in ended {
        let id = slot.spec.session_id;
        if let Some(st) = slot.stream {
            st.stop(false);
        }
        tracing::info!(session = id, "session freed: the client went away");
    }
}

/// Whether `buf` holds a whole request: a plain one that parses, or an encrypted one of its
/// announced length.
fn request_complete(buf: &[u8]) -> bool {
    match buf.first() {
        Some(&b) if rtsp_wire::is_encrypted(b) => {
            matches!(rtsp_wire::message_len(buf), Ok(Some(n)) if n <= buf.len())
        }
        _ => matches!(rtsp::parse_request(buf), Ok(Some(_))),
    }
}

/// What the client sent already when its connection was accepted (without waiting).
fn prefetch(conn: &TcpStream) -> Vec<u8> {
    let mut buf = vec![0u8; 4096];
    let n = match conn.set_nonblocking(true) {
        Ok(()) => (&*conn).read(&mut buf).unwrap_or(0),
        Err(_) => 0,
    };
    buf.truncate(n);
    buf
}

/// Serves one request on `conn` (`buf` holds what came already): the whole request must arrive before `deadline` (the read
/// timeout is what is left of it, not a fresh 5 s per read), and the response must be taken
/// within the response deadline.
fn serve_rtsp(
    shared: &Arc<Shared>,
    mut conn: TcpStream,
    mut buf: Vec<u8>,
    peer: SocketAddr,
    id: ConnId,
    deadline: Instant,
) -> Close {
    if conn.set_nonblocking(false).is_err() {
        return Close::Done;
    }
    let mut chunk = [0u8; 4096];
    let response = loop {
        let encrypted = buf.first().is_some_and(|&b| rtsp_wire::is_encrypted(b));
        let malformed = if encrypted {
            match rtsp_wire::message_len(&buf) {
                Ok(Some(n)) if n > RTSP_MAX_REQUEST + rtsp_wire::HEADER_LEN => {
                    Some("encrypted request too large".to_owned())
                }
                Ok(Some(n)) if buf.len() > n => {
                    Some("bytes after the encrypted request".to_owned())
                }
                Ok(Some(n)) if buf.len() == n => {
                    if !shared.rtsp_conns.table().handle_request(id) {
                        return Close::Done;
                    }
                    match handle_encrypted_rtsp(shared, &mut buf, peer) {
                        Ok(r) => break r,
                        Err(e) => Some(e),
                    }
                }
                Ok(_) => None,
                Err(e) => Some(e.to_string()),
            }
        } else {
            match rtsp::parse_request(&buf) {
                Ok(None) if buf.len() <= RTSP_MAX_REQUEST => None,
                Ok(None) => Some("request too large".to_owned()),
                Ok(Some(req)) => {
                    if !shared.rtsp_conns.table().handle_request(id) {
                        // Evicted while its last bytes came in.
                        return Close::Done;
                    }
                    break handle_rtsp(shared, &req, peer, None);
                }
                Err(e) => Some(e.to_string()),
            }
        };
        if let Some(malformed) = malformed {
            return refuse_malformed(shared, &mut conn, peer, &malformed);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || conn.set_read_timeout(Some(left)).is_err() {
            return Close::TimedOut;
        }
        let n = match conn.read(&mut chunk) {
            Ok(0) => return Close::Done,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                return Close::TimedOut;
            }
            Err(_) => return Close::Done,
        };
        buf.extend_from_slice(&chunk[..n]);
    };
    let left = shared
        .rtsp_conns
        .table()
        .handle_response(Instant::now())
        .saturating_duration_since(Instant::now());
    let written = conn
        .set_write_timeout(Some(left.max(Duration::from_millis(1))))
        .and_then(|()| conn.write_all(&response))
        .and_then(|()| conn.flush());
    // One request per connection: the client reads until we close.
    let _ = conn.shutdown(Shutdown::Both);
    match written {
        Ok(()) => Close::Done,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Close::TimedOut
        }
        Err(_) => Close::Done,
    }
}

/// Answers a malformed request with 400 and closes; counted by the caller's listener.
fn refuse_malformed(
    shared: &Shared,
    conn: &mut TcpStream,
    peer: SocketAddr,
    malformed: &str,
) -> Close {
    shared
        .counters
        .rtsp_malformed
        .fetch_add(1, Ordering::Relaxed);
    // Counted and summarised by the listener, not logged per connection.
    tracing::trace!(%peer, error = %malformed, "malformed rtsp request");
    let _ = conn.set_write_timeout(Some(Duration::from_secs(1)));
    let _ = conn.write_all(b"RTSP/1.0 400 Bad Request\r\nCSeq: 0\r\n\r\n");
    let _ = conn.shutdown(Shutdown::Both);
    Close::Malformed
}

/// Opens an encrypted request with the key of the prepared session it was sealed for (AES-GCM
/// authenticates: only that session's `rikey` opens it), answers it as that session, and seals
/// the answer. An error (nothing is sent back) when no session's key opens it or the plain text
/// is no RTSP request.
fn handle_encrypted_rtsp(
    shared: &Arc<Shared>,
    buf: &mut [u8],
    peer: SocketAddr,
) -> Result<Vec<u8>, String> {
    let keys: Vec<(u32, [u8; 16])> = shared
        .slots()
        .iter()
        .filter(|s| s.spec.rtsp_encrypted)
        .map(|s| (s.spec.session_id, s.spec.rikey))
        .collect();
    for (session_id, key) in keys {
        let cipher = RtspCipher::new(&key);
        let mut copy = buf.to_vec();
        let Ok((_, plain)) = cipher.open(&mut copy, Direction::ClientToHost) else {
            continue;
        };
        let req = match rtsp::parse_request(plain) {
            Ok(Some(req)) => req,
            Ok(None) => return Err("encrypted request is incomplete RTSP".into()),
            Err(e) => return Err(format!("encrypted request: {e}")),
        };
        let response = handle_rtsp(shared, &req, peer, Some(session_id));
        let seq = shared
            .with_slot_mut(session_id, |s| {
                s.rtsp_seq = s.rtsp_seq.wrapping_add(1);
                s.rtsp_seq
            })
            .ok_or("the session ended while its request was answered")?;
        return cipher
            .seal(seq, Direction::HostToClient, &response)
            .map_err(|e| e.to_string());
    }
    Err("encrypted request that no prepared session's key opens".into())
}

/// Answers `req` as the session it routes to. `sealed_for`: the session whose key opened an
/// encrypted request (the request must route to it); `None` for a plain request, which an
/// encrypted session refuses (403).
fn handle_rtsp(
    shared: &Arc<Shared>,
    req: &rtsp::Request<'_>,
    peer: SocketAddr,
    sealed_for: Option<u32>,
) -> Vec<u8> {
    let mut slots = shared.slots();
    let candidates: Vec<RouteCandidate<'_>> = slots
        .iter()
        .map(|s| RouteCandidate {
            token: &s.handshake.params().session_id,
            client: s.spec.client,
            playing: s.handshake.playing(),
        })
        .collect();
    let Some(i) = rtsp::route(&candidates, req.header("Session"), peer.ip()) else {
        let cseq = req.header("CSeq").unwrap_or("0");
        return format!("RTSP/1.0 454 Session Not Found\r\nCSeq: {cseq}\r\n\r\n").into_bytes();
    };
    let s = &mut slots[i];
    let cseq = req.header("CSeq").unwrap_or("0");
    match sealed_for {
        Some(id) if id != s.spec.session_id => {
            return format!("RTSP/1.0 454 Session Not Found\r\nCSeq: {cseq}\r\n\r\n").into_bytes();
        }
        None if s.spec.rtsp_encrypted => {
            shared
                .counters
                .rtsp_malformed
                .fetch_add(1, Ordering::Relaxed);
            return format!("RTSP/1.0 403 Forbidden\r\nCSeq: {cseq}\r\n\r\n").into_bytes();
        }
        _ => {}
    }
    let (mut response, event) = s.handshake.handle(req);
    if let Some(RtspEvent::Play) = event
        && s.stream.is_none()
    {
        let config = s.handshake.config().cloned();
        match (config, s.sockets.take()) {
            (Some(c), Some(sockets)) => match start_stream(shared, s, c, peer.ip(), sockets) {
                Ok(st) => s.stream = Some(st),
                Err(e) => {
                    tracing::error!(error = %e, "could not start the stream");
                    response.code = 500;
                }
            },
            (None, _) => response.code = 455,
            (Some(_), None) => {
                tracing::error!(
                    session = s.spec.session_id,
                    "PLAY again after a failed start"
                );
                response.code = 500;
            }
        }
    }
    response.to_bytes()
}

/// Sockets of one stream, bound before PLAY is answered (the client connects ENet right
/// after).
struct StreamSockets {
    video: UdpSender,
    audio: UdpSender,
    control: UdpSocket,
}

/// Binds the UDP sockets of port slot `slot`: the endpoints' ports plus `slot ×`
/// [`PORT_STRIDE`], or a port the OS picks where that one is taken (logged).
fn bind_sockets(shared: &Shared, slot: usize) -> std::io::Result<StreamSockets> {
    let ep = shared.endpoints;
    let port = |base: u16| -> u16 {
        if base == 0 {
            return 0;
        }
        u16::try_from(slot)
            .ok()
            .and_then(|i| i.checked_mul(PORT_STRIDE))
            .and_then(|off| base.checked_add(off))
            .unwrap_or(0)
    };
    fn with_fallback<T>(
        what: &str,
        want: u16,
        bind: impl Fn(u16) -> std::io::Result<T>,
    ) -> std::io::Result<T> {
        match bind(want) {
            Ok(s) => Ok(s),
            Err(e) if want != 0 => {
                tracing::warn!(port = want, error = %e, "{what} port taken; the OS picks one");
                bind(0)
            }
            Err(e) => Err(e),
        }
    }
    let sender = |p: u16| {
        shared
            .builder
            .bind_sender(SocketAddr::new(ep.bind, p))
            .map_err(std::io::Error::other)
    };
    let video = with_fallback("video", port(ep.video), sender)?;
    let audio = with_fallback("audio", port(ep.audio), sender)?;
    let control = with_fallback("control", port(ep.control), |p| {
        UdpSocket::bind(SocketAddr::new(ep.bind, p))
    })?;
    Ok(StreamSockets {
        video,
        audio,
        control,
    })
}

fn start_stream(
    shared: &Arc<Shared>,
    slot: &Slot,
    config: StreamConfig,
    client_ip: IpAddr,
    sockets: StreamSockets,
) -> std::io::Result<RunningStream> {
    let stop = Arc::new(AtomicBool::new(false));
    let terminate = Arc::new(AtomicBool::new(false));
    let connected = Arc::new(AtomicBool::new(false));
    let counters = Arc::new(SessionCounters::default());
    let params = slot.handshake.params().clone();
    let gs = GsConfig {
        key: slot.spec.rikey,
        ping_payload: params.ping_payload,
        client_ip,
        connect_data: (config.ml_feature_flags & ML_FF_SESSION_ID_V1 != 0)
            .then_some(params.connect_data),
        timeout: CLIENT_TIMEOUT,
        hdr: (config.hdr_stream() && shared.media.hdr()).then(HdrMetadata::bt2020_1000_nits),
    };
    let loss = Arc::new(LossFeedback::default());
    let video_peer = Arc::new(PeerAddr::default());
    let session = Arc::new(Mutex::new(GsSession::new(Instant::now(), gs)));
    let ctx = StreamCtx {
        shared: shared.clone(),
        spec: slot.spec.clone(),
        config: config.clone(),
        stop: stop.clone(),
        terminate: terminate.clone(),
        connected: connected.clone(),
        session: session.clone(),
        video_peer: video_peer.clone(),
        audio_peer: Arc::new(PeerAddr::default()),
        pipeline: Arc::new(Mutex::new(None)),
        loss: loss.clone(),
        counters: counters.clone(),
        input: Arc::new(Mutex::new(None)),
    };
    shared.counters.streams.fetch_add(1, Ordering::Relaxed);
    tracing::info!(
        session = slot.spec.session_id,
        mode = %format!("{}x{}@{}", config.width, config.height, config.fps),
        codec = ?config.codec,
        bitrate_kbps = config.bitrate_kbps,
        packet_size = config.packet_size,
        fec = %format!(
            "{}% (min {} parity)",
            shared.builder.fec().percent,
            config.min_fec_packets
        ),
        encryption = %format!(
            "control:{} video:{} audio:{}",
            config.encryption.control_v2, config.encryption.video, config.encryption.audio
        ),
        audio = %format!("{}ch {}ms", config.audio_channels, config.audio_packet_ms),
        "stream starting"
    );
    let thread = std::thread::Builder::new()
        .name("pf-stream".into())
        .spawn(move || run_stream(ctx, sockets))?;
    Ok(RunningStream {
        config,
        session,
        stop,
        terminate,
        connected,
        counters,
        loss,
        video_peer,
        session_id: slot.spec.session_id,
        thread: Some(thread),
    })
}

#[derive(Clone)]
struct StreamCtx {
    shared: Arc<Shared>,
    spec: LaunchSpec,
    config: StreamConfig,
    stop: Arc<AtomicBool>,
    terminate: Arc<AtomicBool>,
    connected: Arc<AtomicBool>,
    /// The stream's decisions; every thread drives it through [`StreamCtx::step`].
    session: Arc<Mutex<GsSession>>,
    /// Where video goes (set from the session's `VideoDestination`; the send sink reads it).
    video_peer: Arc<PeerAddr>,
    /// Where audio goes.
    audio_peer: Arc<PeerAddr>,
    /// The running video pipeline, once the video thread started it: the owning handle the
    /// control thread's keyframe requests go to.
    pipeline: Arc<Mutex<Option<VideoPipeline>>>,
    /// Loss estimate from the client's FEC status reports, for adaptive parity.
    loss: Arc<LossFeedback>,
    /// This stream's counters (zero at PLAY).
    counters: Arc<SessionCounters>,
    /// This stream's own input target (its desktop), once its video started with one.
    input: Arc<Mutex<Option<Box<dyn InputHandler>>>>,
}

impl StreamCtx {
    /// Input of this stream: to its own desktop when it has one, else to the host-wide
    /// handler.
    fn handle_input(&self, packet: &[u8]) {
        if let Some(own) = lock(&self.input).as_mut() {
            own.handle_input(packet);
            return;
        }
        lock(&self.shared.input).handle_input(packet);
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn end(&self, why: &str) {
        if !self.stop.swap(true, Ordering::SeqCst) {
            tracing::info!(
                session = self.spec.session_id,
                reason = why,
                "stream ending"
            );
        }
    }

    /// Runs `f` on the session (one lock for all threads), then carries out the events it
    /// produced before returning: signals reach their stage in the same step.
    fn step<R>(&self, f: impl FnOnce(&mut GsSession, Instant) -> R) -> R {
        let mut session = lock(&self.session);
        let r = f(&mut session, Instant::now());
        while let Some(event) = session.poll_event() {
            self.apply(event);
        }
        let st = session.stats();
        let c = &self.counters;
        c.idr_requests.store(st.idr_requests, Ordering::Relaxed);
        c.input_packets.store(st.input_packets, Ordering::Relaxed);
        c.control_dropped
            .store(st.control_dropped, Ordering::Relaxed);
        c.bad_pings.store(st.bad_pings, Ordering::Relaxed);
        r
    }

    /// Carries out one session event through the handle that owns its target.
    fn apply(&self, event: GsEvent) {
        match event {
            GsEvent::Connected(peer) => {
                self.connected.store(true, Ordering::SeqCst);
                tracing::info!(peer = peer.0, "control stream connected");
            }
            GsEvent::KeyframeRequest => {
                // Before the pipeline runs there is nothing to ask: its first frame is a
                // keyframe (requested when it starts).
                if let Some(p) = lock(&self.pipeline).as_ref() {
                    p.handle().request_keyframe();
                }
            }
            GsEvent::LossEstimate(loss) => {
                self.loss.set(loss);
                tracing::debug!(loss, "loss estimate");
            }
            GsEvent::VideoDestination(to) => {
                tracing::info!(%to, "video destination");
                self.video_peer.set(Some(to));
            }
            GsEvent::AudioDestination(to) => {
                tracing::debug!(%to, "audio destination");
                self.audio_peer.set(Some(to));
            }
            GsEvent::Ended(why) => {
                self.connected.store(false, Ordering::SeqCst);
                self.end(why.as_str());
            }
        }
    }
}

/// Locks plain data; a panicking holder leaves it usable.
fn lock<T: ?Sized>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run_stream(ctx: StreamCtx, sockets: StreamSockets) {
    let started = Instant::now();
    let spawn = |name: &str, f: Box<dyn FnOnce() + Send>| {
        std::thread::Builder::new().name(name.into()).spawn(f)
    };
    let (c1, c2, c3) = (ctx.clone(), ctx.clone(), ctx.clone());
    let StreamSockets {
        video,
        audio,
        control,
    } = sockets;
    let threads = [
        spawn("pf-control", Box::new(move || control_thread(&c1, control))),
        spawn("pf-video", Box::new(move || video_thread(&c2, video))),
        spawn("pf-audio", Box::new(move || audio_thread(&c3, audio))),
    ];
    for t in threads {
        match t {
            Ok(t) => {
                let _ = t.join();
            }
            Err(e) => {
                tracing::error!(error = %e, "could not start a stream thread");
                ctx.end("thread start failed");
            }
        }
    }
    // This stream's own counters: every thread has ended, so they are final.
    let c = ctx.counters.snapshot(ctx.spec.session_id);
    tracing::info!(
        session = c.session_id,
        seconds = started.elapsed().as_secs(),
        video_frames = c.video_frames,
        audio_packets = c.audio_packets,
        idr_requests = c.idr_requests,
        input_packets = c.input_packets,
        control_dropped = c.control_dropped,
        bad_pings = c.bad_pings,
        "stream stopped"
    );
}

/// ENet keeps timers of its own (acknowledgements, retransmissions, pings) but cannot say when
/// the next one is due, so an idle control thread still wakes this often to service it.
const ENET_TICK: Duration = Duration::from_millis(5);

/// Drives ENet and the session: ENet's events become `handle_*` calls, the session's
/// transmits become ENet sends and disconnects. Between events the thread blocks on the
/// control socket until a datagram arrives, the session's next deadline or [`ENET_TICK`],
/// whichever comes first: a client message is handled as soon as it arrives.
fn control_thread(ctx: &StreamCtx, socket: UdpSocket) {
    let settings = enet::HostSettings {
        peer_limit: 4,
        channel_limit: 255,
        ..Default::default()
    };
    let mut host = match enet::Host::new(socket, settings) {
        Ok(h) => h,
        Err(e) => {
            tracing::error!(error = ?e, "enet host");
            ctx.end("control stream failed");
            ctx.step(|s, now| s.close(now, None));
            return;
        }
    };
    let mut closing = false;
    let mut idle = false;
    loop {
        if ctx.stopped() && !closing {
            closing = true;
            let code = ctx
                .terminate
                .load(Ordering::SeqCst)
                .then_some(TERMINATION_GRACEFUL);
            ctx.step(|s, now| s.close(now, code));
        }
        let serviced = host.service();
        match serviced {
            Ok(Some(enet::Event::Connect { peer, data })) => {
                let key = PeerKey(peer.id().0);
                let accepted = ctx.step(|s, now| {
                    s.handle_connect(now, key, data);
                    s.is_connected()
                });
                if accepted {
                    peer.set_timeout(2, 10_000, 10_000);
                }
            }
            Ok(Some(enet::Event::Disconnect { peer, .. })) => {
                let key = PeerKey(peer.id().0);
                ctx.step(|s, now| s.handle_disconnect(now, key));
            }
            Ok(Some(enet::Event::Receive { peer, packet, .. })) => {
                let key = PeerKey(peer.id().0);
                let mut bytes = packet.data().to_vec();
                let input = ctx.step(|s, now| s.handle_control(now, key, &mut bytes));
                if let Some(input) = input {
                    ctx.handle_input(input);
                }
            }
            Ok(None) => idle = true,
            Err(e) => {
                // ICMP errors from a peer that went away surface here; liveness decides.
                tracing::debug!(error = %e, "enet service");
                idle = true;
            }
        }
        let (ended, deadline) = ctx.step(|s, now| {
            s.handle_timeout(now);
            while let Some(t) = s.poll_transmit() {
                send_control(&mut host, t);
            }
            (s.is_ended(), s.poll_timeout())
        });
        if ended {
            host.flush();
            return;
        }
        if idle {
            idle = false;
            host.flush();
            let now = Instant::now();
            let wait = deadline.map_or(ENET_TICK, |d| d.saturating_duration_since(now));
            wait_readable(host.socket(), wait.min(ENET_TICK));
        }
    }
}

/// Blocks until `socket` (non-blocking for ENet) has a datagram queued or `max` passed.
fn wait_readable(socket: &UdpSocket, max: Duration) {
    let mut probe = [0u8; 1];
    let max = max.max(Duration::from_micros(100));
    if socket.set_nonblocking(false).is_ok() && socket.set_read_timeout(Some(max)).is_ok() {
        // A peek leaves the datagram for ENet; errors (timeout, ICMP) only end the wait.
        let _ = socket.peek_from(&mut probe);
    }
    if let Err(e) = socket.set_nonblocking(true) {
        tracing::warn!(error = %e, "control socket stays blocking");
    }
}

/// Carries out one of the session's ENet actions.
fn send_control(host: &mut enet::Host<UdpSocket>, t: ControlTransmit) {
    match t {
        ControlTransmit::Send { peer, bytes } => {
            if let Some(p) = host.get_peer_mut(enet::PeerID(peer.0)) {
                let _ = p.send(0, &enet::Packet::reliable(bytes.as_slice()));
            }
        }
        ControlTransmit::Disconnect { peer, now } => {
            if let Some(p) = host.get_peer_mut(enet::PeerID(peer.0)) {
                if now {
                    p.disconnect_now(0);
                } else {
                    p.disconnect_later(0);
                }
            }
        }
    }
}

/// Hands the next datagram on `socket` to the session as a ping of `stream` (waiting as the
/// socket's mode says); whether one was read. The socket's mode is not changed here: the
/// video socket is shared with the send path, which must stay blocking.
fn read_ping(ctx: &StreamCtx, socket: &UdpSocket, stream: PingStream) -> bool {
    let mut buf = [0u8; 64];
    let Ok((n, from)) = socket.recv_from(&mut buf) else {
        return false;
    };
    ctx.step(|s, now| s.handle_ping(now, stream, from, &buf[..n]));
    true
}

/// Waits until the session has a destination for `stream` (its first ping); `None` when the
/// stream stopped first.
fn wait_for_ping(ctx: &StreamCtx, socket: &UdpSocket, stream: PingStream) -> Option<SocketAddr> {
    let dest = match stream {
        PingStream::Video => &ctx.video_peer,
        PingStream::Audio => &ctx.audio_peer,
    };
    let _ = socket.set_read_timeout(Some(Duration::from_millis(100)));
    while !ctx.stopped() {
        read_ping(ctx, socket, stream);
        if let Some(to) = dest.get() {
            return Some(to);
        }
    }
    None
}

fn video_thread(ctx: &StreamCtx, sender: UdpSender) {
    let pings = match sender.try_clone_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "video socket");
            ctx.end("video socket failed");
            return;
        }
    };
    let Some(dest) = wait_for_ping(ctx, &pings, PingStream::Video) else {
        return;
    };
    tracing::info!(%dest, "video ping received; streaming");
    let peer = ctx.video_peer.clone();
    let media = match ctx.shared.media.video(&ctx.config) {
        Ok(m) => m,
        Err(e) => {
            tracing::error!(error = %e, "video source or encoder");
            ctx.end("video setup failed");
            return;
        }
    };
    let fec = ctx.shared.builder.fec();
    let params = VideoParams {
        packet_size: ctx.config.packet_size,
        fec_percent: fec.percent,
        // The client's minimum or the profile's, whichever is larger.
        min_parity: ctx
            .config
            .min_fec_packets
            .max(u8::try_from(fec.min_parity).unwrap_or(u8::MAX)),
    };
    let video_key = ctx.config.encryption.video.then_some(ctx.spec.rikey);
    let packetize = match PacketizeStage::new(params, video_key)
        .and_then(|p| p.with_fec_threads(usize::from(fec.threads)))
    {
        // Parity follows the client's loss reports unless the profile fixes it.
        Ok(p) if fec.adaptive => p.with_loss_feedback(ctx.loss.clone()),
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "video packetizer");
            ctx.end("video setup failed");
            return;
        }
    };
    let counted = ctx.counters.clone();
    if let Some(input) = media.input {
        tracing::info!(
            session = ctx.spec.session_id,
            "input goes to this session's desktop"
        );
        *lock(&ctx.input) = Some(input);
    }
    if !ctx.spec.command.is_empty() {
        let started = match &media.display {
            Some(d) => ctx.shared.media.start_app(d, &ctx.spec.command),
            None => Err("the session has no desktop (test pattern)".into()),
        };
        match started {
            Ok(()) => tracing::info!(session = ctx.spec.session_id, command = ?ctx.spec.command,
                display = ?media.display, "app started in the session's display"),
            Err(e) => tracing::warn!(session = ctx.spec.session_id, command = ?ctx.spec.command,
                error = %e, "app not started"),
        }
    }
    let stages = VideoStages {
        source: media.source,
        encode: media.encoder,
        packetize,
        media_capacity: media.frame_capacity,
        frame_interval: Duration::from_secs(1) / ctx.config.fps.max(1),
    };
    let send = VideoSend {
        sender,
        peer: peer.clone(),
        on_sent: Some(Box::new(move |_, _| {
            counted.video_frames.fetch_add(1, Ordering::Relaxed);
        })),
    };
    let label = format!("gamestream {}", ctx.spec.session_id);
    let video = match ctx.shared.builder.spawn(&label, stages, send) {
        Ok(v) => v,
        Err(e) => {
            tracing::error!(error = %e, "video pipeline");
            ctx.end("video pipeline failed");
            return;
        }
    };
    ctx.counters.pipeline.set(video.effective().clone());
    // The client's decoder starts on a keyframe; later requests come from the session.
    video.handle().request_keyframe();
    *lock(&ctx.pipeline) = Some(video);
    // Pings move the destination (through the session); the read timeout bounds how long a
    // stop or a finished pipeline goes unnoticed.
    let _ = pings.set_read_timeout(Some(Duration::from_millis(100)));
    while !ctx.stopped() {
        read_ping(ctx, &pings, PingStream::Video);
        if lock(&ctx.pipeline)
            .as_ref()
            .is_none_or(|v| v.handle().is_finished())
        {
            ctx.end("video pipeline stopped");
        }
    }
    let video = lock(&ctx.pipeline).take();
    match video.map(VideoPipeline::shutdown) {
        // Where frames were lost inside the host (docs/streaming.md, "Loss"): an evicted
        // encoded or packetized frame costs the client an IDR wait like a network loss does.
        Some(Ok(s)) => tracing::info!(
            dropped_encoded = s.ring(RingId::EncodeFec).dropped_oldest,
            dropped_packetized = s.ring(RingId::FecSend).dropped_oldest,
            dropped_raw = s.ring(RingId::CaptureEncode).dropped_oldest,
            held_at_packetize = s.stage(StageId::Fec).processed - s.stage(StageId::Fec).emitted,
            pool_misses = s.pool.misses,
            keyframe_requests = s.keyframe_requests,
            "video pipeline stopped"
        ),
        Some(Err(e)) => tracing::warn!(error = %e, "video pipeline ended with an error"),
        None => {}
    }
}

/// Audio: every `audio_packet_ms` one Opus packet → [`AudioPacketizer`] → the engine's
/// [`UdpSender`] (the send path and pacer video uses, set up from the same profile). Between
/// packets the thread blocks on the audio socket until the next packet is due, handing any
/// ping that arrives meanwhile to the session: no sleep-and-poll.
fn audio_thread(ctx: &StreamCtx, mut sender: UdpSender) {
    let socket = match sender.try_clone_socket() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "audio socket; no audio for this stream");
            return;
        }
    };
    let Some(mut dest) = wait_for_ping(ctx, &socket, PingStream::Audio) else {
        return;
    };
    let mut source = match ctx.shared.media.audio(&ctx.config) {
        Ok(s) => s,
        Err(e) => {
            // Audio is optional for the client; video goes on.
            tracing::warn!(error = %e, "no audio for this stream");
            return;
        }
    };
    let key = ctx.config.encryption.audio.then_some(AudioKey {
        key: ctx.spec.rikey,
        key_id: ctx.spec.rikeyid,
    });
    let mut packetizer = match AudioPacketizer::new(ctx.config.audio_packet_ms, key) {
        Ok(p) => p,
        Err(e) => {
            tracing::warn!(error = %e, "audio packetizer");
            return;
        }
    };
    let mut out = AudioDatagrams::default();
    let step = Duration::from_millis(u64::from(ctx.config.audio_packet_ms));
    let mut due = Instant::now();
    while !ctx.stopped() {
        let now = Instant::now();
        if now < due {
            // Wait for a ping or the packet's due time, whichever comes first.
            let _ = socket.set_read_timeout(Some((due - now).max(Duration::from_micros(50))));
            read_ping(ctx, &socket, PingStream::Audio);
            continue;
        }
        let start = due;
        due += step;
        if now > due + Duration::from_millis(200) {
            due = now; // fell far behind (suspend, overload): resync instead of bursting
        }
        dest = ctx.audio_peer.get().unwrap_or(dest);
        let packet = match source.next_packet() {
            Ok(p) => p,
            Err(e) => {
                tracing::warn!(error = %e, "audio source failed; audio stops");
                return;
            }
        };
        if let Err(e) = packetizer.packetize(packet, &mut out) {
            tracing::debug!(error = %e, "audio packet dropped");
            continue;
        }
        // Data and FEC datagrams differ in length, so each goes out as its own "frame",
        // paced from the packet's due time over the packet interval.
        let pacing = Pacing::Frame {
            start,
            interval: step,
        };
        for d in out.iter() {
            if let Err(e) = sender.send_frame(dest, d, d.len(), pacing) {
                tracing::debug!(error = %e, "audio datagram not sent");
            }
        }
        ctx.counters.audio_packets.fetch_add(1, Ordering::Relaxed);
    }
}
