//! The punktfunk/1 media path of `punktfunk serve` (act): one engine pipeline per started
//! session, fed by the listener's events.
//!
//! ```text
//! Started{params}     ─► Pipeline{source ─ EncodeStage ─ Pf1PacketizeStage ─ SendSink}
//!                        source: MediaOptions::source (the test pattern, or the session's
//!                        own virtual output of a compositor at the client's mode)
//!                        key = exporter material, dest = client IP : client data port
//! ReconfigureRequested ─► ModeSwitch::set(new mode) ─► source (a desktop sets its output to
//!                        the mode in place) and encoder rebuilt,
//!                        next frame an IDR tagged with the new mode; when the first such frame
//!                        is sent: Reconfigured{mode, first frame id} (keys, socket, FEC go on)
//! IdrRequested        ─► the pipeline's keyframe request
//! LossReport          ─► FecController ─► parity % and loss estimate for the packetizer
//! (a frame sent while the key's update point is passed) ─► HostCommand::UpdateKey, once per
//!                        generation ─► KeyUpdate … KeyUpdateAck ─► KeyUpdated{g, material}
//! KeyUpdated          ─► Pf1Feedback::offer_key: the packetizer switches at its next frame
//! Input               ─► the stream's own desktop (its virtual output) when it has one,
//!                        else the host's input sink
//! Closed              ─► pipeline stopped
//! ```
//!
//! Every client has its own stream (source, encoder, keys, FEC controller, counters); the
//! listener's streaming slots ([`super::host::HostConfig::max_connections`], `[sessions] max`
//! of the tuning profile) bound how many run at once. [`Pf1Media::status`] reads a stream's
//! counters for its `/api/sessions` row ([`super::live`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use punktfunk_capture::h264::OpenH264Encoder;
use punktfunk_capture::stages::{
    EncodeStage, ModeSwitch, PatternCapture, VideoMode, raw_frame_len,
};
use punktfunk_capture::{VideoEncoder, VideoEncoderConfig};
use punktfunk_engine::config::{FecConfig, SessionProfile};
use punktfunk_engine::io::Caps;
use punktfunk_engine::io::build::{
    PipelineBuilder, PipelineWatch, VideoPipeline, VideoSend, VideoStages,
};
use punktfunk_engine::io::sink::PeerAddr;
use punktfunk_engine::pf1::adaptive::{
    FecController, FecControllerConfig, LossReport as EngineLoss,
};
use punktfunk_engine::pf1::crypto::{DataKey, KEY_MATERIAL_LEN};
use punktfunk_engine::pf1::send::Pf1SenderConfig;
use punktfunk_engine::pf1::stage::{Pf1Feedback, Pf1PacketizeStage};

use super::live::{self, MediaStatus};
use super::message::LossReport;
use super::net::{HostCommand, HostHandle};
use super::{ConnId, DataPlaneParams, KeyMaterial, Mode};
use crate::input::InputSink;
use crate::input::wire::InputEvent;
use crate::stream::session::{InputHandler, MediaFactory};

/// Host-wide settings of the punktfunk/1 media path.
#[derive(Clone)]
pub struct MediaOptions {
    /// Where each stream's picture comes from (`[capture] source`, chosen once by
    /// [`crate::media::select`]); the test pattern by default.
    pub source: Arc<dyn MediaFactory>,
    /// Address the data-plane sockets bind (IPv4 unspecified by default).
    pub bind: IpAddr,
    /// The tuning profile's `[pipeline]`, `[send]`, `[pacing]` and `[fec]`: every stream's
    /// pipeline is built from it (`punktfunk_engine::io::build`). The parity a session starts
    /// with is the one negotiated (`ListenerOptions::parity_percent`); `fec.min_parity` applies.
    pub profile: SessionProfile,
    /// Encoder bitrate, kbit/s.
    pub bitrate_kbps: u32,
    /// Datagrams one data-plane key may seal; 0: AES-GCM's limit for the shard size (2^28 at
    /// 1460-byte datagrams). Lower it only to exercise key rotation.
    pub key_packet_limit: u64,
    /// Percentage of that limit after which the host proposes the next key generation.
    pub key_update_percent: u8,
    /// Where the settings of the pipeline started last are published (tests, status).
    pub watch: Arc<PipelineWatch>,
}

impl std::fmt::Debug for MediaOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MediaOptions")
            .field("bind", &self.bind)
            .field("profile", &self.profile)
            .field("bitrate_kbps", &self.bitrate_kbps)
            .field("key_packet_limit", &self.key_packet_limit)
            .field("key_update_percent", &self.key_update_percent)
            .finish_non_exhaustive()
    }
}

impl Default for MediaOptions {
    fn default() -> Self {
        Self {
            source: Arc::new(crate::media::TestMedia::default()),
            bind: IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            profile: SessionProfile::default(),
            bitrate_kbps: 20_000,
            key_packet_limit: 0,
            key_update_percent: punktfunk_engine::pf1::send::DEFAULT_KEY_UPDATE_PERCENT,
            watch: Arc::default(),
        }
    }
}

/// A reconfiguration waiting for its first frame to go out.
#[derive(Debug, Clone, Copy)]
struct PendingMode {
    id: u16,
    mode: Mode,
    asked: Instant,
}

struct Stream {
    pipeline: VideoPipeline,
    switch: Arc<ModeSwitch>,
    feedback: Arc<Pf1Feedback>,
    controller: FecController,
    pending: Arc<Mutex<Option<PendingMode>>>,
    next_mode: u16,
    /// Frames sent to this client (the send thread counts; zero at the stream's start).
    frames: Arc<AtomicU64>,
    /// Loss in the client's last report, percent.
    loss_percent: f32,
    started: Instant,
    session_id: u64,
    /// Input into this stream's own desktop (`None`: the host's input sink).
    input: Option<Box<dyn InputHandler>>,
    /// The stream's virtual output, when its source has one.
    display: Option<String>,
}

/// The media side of the punktfunk/1 listener.
pub struct Pf1Media {
    opts: MediaOptions,
    builder: PipelineBuilder,
    handle: HostHandle,
    input: Box<dyn InputSink>,
    streams: HashMap<ConnId, Stream>,
}

impl std::fmt::Debug for Pf1Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pf1Media")
            .field("streams", &self.streams.len())
            .finish_non_exhaustive()
    }
}

fn video_mode(id: u16, m: Mode, bitrate_kbps: u32) -> VideoMode {
    VideoMode {
        id,
        width: u32::from(m.width).max(64) & !1,
        height: u32::from(m.height).max(64) & !1,
        fps: u32::from(m.fps).clamp(1, 240),
        bitrate_kbps: encoder_bitrate(bitrate_kbps),
    }
}

/// The bitrate the encoder is given for `kbps` asked.
fn encoder_bitrate(kbps: u32) -> u32 {
    kbps.clamp(100, 500_000)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The punktfunk/1 packetize stage of one `serve` session, as [`Pf1Media::start`] builds it:
/// GF(2^16) FEC at the negotiated parity with at least the profile's `fec.min_parity` parity
/// shards, AES-128-GCM under the session's exporter key, key rotation at `opts`' limits; and the
/// feedback handle through which loss reports and key updates reach it. Public so that the
/// benchmarks measure the stage the host runs.
pub fn packetize_stage(
    opts: &MediaOptions,
    fec: FecConfig,
    params: &DataPlaneParams,
) -> Result<(Pf1PacketizeStage, Arc<Pf1Feedback>), String> {
    let mut material = [0u8; KEY_MATERIAL_LEN];
    material.copy_from_slice(&params.key_material[..KEY_MATERIAL_LEN]);
    let key = DataKey::from_key_material(&material);
    let sender_cfg = Pf1SenderConfig {
        shard_len: usize::from(params.shard_payload) & !1,
        parity_percent: params.parity_percent,
        // Small frames (a few shards) get parity shards before any loss report arrives,
        // as GameStream's minRequiredFecPackets does (profile `fec.min_parity`, 2 by default).
        min_parity: usize::from(fec.min_parity),
        key_packet_limit: opts.key_packet_limit,
        key_update_percent: opts.key_update_percent,
        ..Pf1SenderConfig::default()
    };
    let feedback = Arc::new(Pf1Feedback::default());
    let packetize = Pf1PacketizeStage::new(sender_cfg, key)
        .map_err(|e| e.to_string())?
        .with_feedback(feedback.clone());
    Ok((packetize, feedback))
}

/// The host's media of one `serve` session: the test pattern at `mode`, encoded with openh264
/// at `bitrate_kbps`, in front of `packetize`; and the switch a renegotiation drives. Public so
/// that the benchmarks run the media the host runs.
#[allow(clippy::type_complexity)]
pub fn pattern_stages<P>(
    mode: Mode,
    bitrate_kbps: u32,
    packetize: P,
) -> Result<
    (
        VideoStages<PatternCapture, EncodeStage<OpenH264Encoder>, P>,
        Arc<ModeSwitch>,
    ),
    String,
> {
    let first = video_mode(0, mode, bitrate_kbps);
    let switch = Arc::new(ModeSwitch::new(first));
    let encoder = OpenH264Encoder::new(VideoEncoderConfig {
        width: first.width,
        height: first.height,
        fps: first.fps,
        bitrate_kbps: first.bitrate_kbps,
    })
    .map_err(|e| e.to_string())?;
    let max_encoded = encoder.max_encoded_len();
    let source = PatternCapture::with_switch(switch.clone()).map_err(|e| e.to_string())?;
    let encode = EncodeStage::with_switch(encoder, switch.clone()).map_err(|e| e.to_string())?;
    let stages = VideoStages {
        source,
        encode,
        packetize,
        // Raw frames up to 4K (a renegotiation may ask for one) and their encodings share
        // one pool.
        media_capacity: raw_frame_len(3840, 2160).max(max_encoded),
        frame_interval: Duration::from_secs(1) / first.fps,
    };
    Ok((stages, switch))
}

impl Pf1Media {
    /// A media side sending Reconfigured replies through `handle`.
    pub fn new(opts: MediaOptions, handle: HostHandle, input: Box<dyn InputSink>) -> Self {
        Self {
            builder: PipelineBuilder::new(opts.profile.clone(), Caps::probe()),
            opts,
            handle,
            input,
            streams: HashMap::new(),
        }
    }

    /// Starts streaming to the client of `conn`.
    pub fn start(&mut self, conn: ConnId, params: &DataPlaneParams) -> Result<(), String> {
        self.stop(conn);
        let dest = SocketAddr::new(params.peer_ip.to_canonical(), params.client_data_port);
        if params.client_data_port == 0 {
            return Err("the client did not say where to send (data port 0)".into());
        }
        let (packetize, feedback) = packetize_stage(&self.opts, self.builder.fec(), params)?;
        let switch = Arc::new(ModeSwitch::new(video_mode(
            0,
            params.mode,
            self.opts.bitrate_kbps,
        )));
        let media = self.opts.source.switched_video(switch.clone())?;
        let stages = VideoStages {
            source: media.source,
            encode: media.encoder,
            packetize,
            // Raw frames up to 4K (a renegotiation may ask for one) and their encodings share
            // one pool.
            media_capacity: raw_frame_len(3840, 2160).max(media.frame_capacity),
            frame_interval: Duration::from_secs(1) / switch.get().0.fps,
        };
        let sender = self
            .builder
            .bind_sender(SocketAddr::new(self.opts.bind, 0))
            .map_err(|e| e.to_string())?;
        let peer = Arc::new(PeerAddr::default());
        peer.set(Some(dest));
        let pending: Arc<Mutex<Option<PendingMode>>> = Arc::default();
        let frames = Arc::new(AtomicU64::new(0));
        let (p, h, f) = (pending.clone(), self.handle.clone(), frames.clone());
        let fb = feedback.clone();
        // The generation a key update was last asked for: one request per generation.
        let asked = AtomicU32::new(0);
        let on_sent: punktfunk_engine::io::sink::OnSent = Box::new(move |meta, _| {
            f.fetch_add(1, Ordering::Relaxed);
            if fb.key_update_due() {
                let next = fb.key_generation().saturating_add(1);
                if asked.fetch_max(next, Ordering::Relaxed) < next {
                    h.send(HostCommand::UpdateKey(conn));
                }
            }
            let mut pending = lock(&p);
            if let Some(pm) = *pending
                && meta.mode == pm.id
            {
                *pending = None;
                tracing::info!(
                    %conn,
                    mode = %pm.mode,
                    first_frame = meta.index,
                    reconfigure_ms = pm.asked.elapsed().as_secs_f64() * 1e3,
                    "punktfunk/1 first frame of the new mode sent"
                );
                h.send(HostCommand::Reconfigured(conn, pm.mode, meta.index as u32));
            }
        });
        let send = VideoSend {
            sender,
            peer,
            on_sent: Some(on_sent),
        };
        let label = format!("punktfunk/1 {}", params.session_id);
        let pipeline = self
            .builder
            .spawn(&label, stages, send)
            .map_err(|e| e.to_string())?;
        self.opts.watch.set(pipeline.effective().clone());
        tracing::info!(
            %conn,
            session = params.session_id,
            mode = %params.mode,
            %dest,
            display = media.display.as_deref().unwrap_or("none (test pattern)"),
            fec = %if self.builder.fec().adaptive {
                format!("GF(2^16), {} % parity (adaptive 5-50 %)", params.parity_percent)
            } else {
                format!("GF(2^16), {} % parity (fixed)", params.parity_percent)
            },
            shard = params.shard_payload,
            encryption = "AES-128-GCM (TLS exporter key)",
            "punktfunk/1 stream starting"
        );
        // `[fec] adaptive = false` pins the parity at the offer's percentage.
        let fixed = params.parity_percent.clamp(1, 100);
        let controller = FecController::new(if self.builder.fec().adaptive {
            FecControllerConfig {
                initial_percent: params.parity_percent.clamp(5, 50),
                ..FecControllerConfig::default()
            }
        } else {
            FecControllerConfig {
                initial_percent: fixed,
                min_percent: fixed,
                max_percent: fixed,
                ..FecControllerConfig::default()
            }
        })
        .map_err(|e| e.to_string())?;
        self.streams.insert(
            conn,
            Stream {
                pipeline,
                switch,
                feedback,
                controller,
                pending,
                next_mode: 1,
                frames,
                loss_percent: 0.0,
                started: Instant::now(),
                session_id: params.session_id,
                input: media.input,
                display: media.display,
            },
        );
        Ok(())
    }

    /// The client installed key generation `generation`: the packetizer seals with it from
    /// its next frame on.
    pub fn key_updated(&mut self, conn: ConnId, generation: u32, material: &KeyMaterial) {
        let Some(s) = self.streams.get(&conn) else {
            return;
        };
        let mut m = [0u8; KEY_MATERIAL_LEN];
        m.copy_from_slice(&material.0[..KEY_MATERIAL_LEN]);
        let (sealed, _) = s.feedback.key_datagrams();
        tracing::info!(
            %conn,
            session = s.session_id,
            generation,
            sealed_under_current_key = sealed,
            "punktfunk/1 client installed the next data key; the sender switches at its next frame"
        );
        s.feedback
            .offer_key(DataKey::from_key_material(&m).with_generation(generation));
    }

    /// Switches `conn`'s stream to `mode`; the Reconfigured reply goes out with the first frame
    /// of the new mode. Returns false when there is no stream (the caller answers at once).
    pub fn reconfigure(&mut self, conn: ConnId, mode: Mode) -> bool {
        let Some(s) = self.streams.get_mut(&conn) else {
            return false;
        };
        let id = s.next_mode;
        s.next_mode = s.next_mode.wrapping_add(1).max(1);
        *lock(&s.pending) = Some(PendingMode {
            id,
            mode,
            asked: Instant::now(),
        });
        s.switch.set(video_mode(id, mode, self.opts.bitrate_kbps));
        true
    }

    /// Asks `conn`'s encoder for an IDR.
    pub fn request_idr(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.get(&conn) {
            s.pipeline.handle().request_keyframe();
        }
    }

    /// Feeds a client loss report to the FEC controller of `conn`'s stream.
    pub fn loss_report(&mut self, conn: ConnId, report: &LossReport) {
        let Some(s) = self.streams.get_mut(&conn) else {
            return;
        };
        let before = s.controller.parity_percent();
        let pct = s.controller.handle_report(&EngineLoss {
            expected: report.expected,
            received: report.received,
            frames_lost: report.frames_unrecoverable,
        });
        s.feedback.publish(&s.controller);
        s.loss_percent = live::loss_percent(report);
        if pct != before {
            tracing::debug!(%conn, parity_percent = pct, loss = s.controller.loss_estimate(), "punktfunk/1 FEC adapted");
        }
    }

    /// What `conn`'s stream counted so far (`None`: no stream), for its
    /// [`crate::live::LiveSession`] row.
    pub fn status(&self, conn: ConnId) -> Option<MediaStatus> {
        let s = self.streams.get(&conn)?;
        Some(MediaStatus {
            frames_sent: s.frames.load(Ordering::Relaxed),
            loss_percent: s.loss_percent,
            fec_percent: s.feedback.fec().0,
            bitrate_kbps: encoder_bitrate(self.opts.bitrate_kbps),
        })
    }

    /// Injects an input event of `conn`'s client: into its stream's own desktop when it has
    /// one (the handler takes GameStream's input packet, the encoding punktfunk/1 input
    /// datagrams share), else into the host's input sink.
    pub fn input(&mut self, conn: ConnId, event: &InputEvent) {
        if let Some(handler) = self.streams.get_mut(&conn).and_then(|s| s.input.as_mut()) {
            handler.handle_input(&crate::input::encode(event));
            return;
        }
        if let Err(e) = self.input.inject(event) {
            tracing::debug!(error = %e, "punktfunk/1 input not injected");
        }
    }

    /// Stops `conn`'s stream, if any.
    pub fn stop(&mut self, conn: ConnId) {
        if let Some(s) = self.streams.remove(&conn) {
            let stats = match s.pipeline.abort() {
                Ok(st) => {
                    self.opts.watch.set_stopped(st);
                    st.dropped()
                }
                Err(e) => {
                    tracing::warn!(%conn, error = %e, "punktfunk/1 pipeline ended with an error");
                    0
                }
            };
            let (key_datagrams, _) = s.feedback.key_datagrams();
            tracing::info!(
                %conn,
                seconds = s.started.elapsed().as_secs(),
                display = s.display.as_deref().unwrap_or("none (test pattern)"),
                frames = s.frames.load(Ordering::Relaxed),
                dropped_in_pipeline = stats,
                key_rotations = s.feedback.rotations(),
                key_generation = s.feedback.key_generation(),
                key_datagrams,
                frames_refused_at_key_limit = s.feedback.key_exhausted(),
                "punktfunk/1 stream stopped"
            );
        }
    }

    /// Stops every stream.
    pub fn stop_all(&mut self) {
        let conns: Vec<ConnId> = self.streams.keys().copied().collect();
        for c in conns {
            self.stop(c);
        }
    }
}

impl Drop for Pf1Media {
    fn drop(&mut self) {
        self.stop_all();
    }
}
