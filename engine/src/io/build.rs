//! The one place a session's video pipeline is built (act: binds the send socket and starts
//! the stage threads), for both protocols.
//!
//! ```text
//!  tuning profile ──► SessionProfile{pipeline, send (+pacing), fec}
//!                        │
//!                        ▼
//!  PipelineBuilder ──► bind_sender(addr)  : UdpSender with [send] + [pacing]
//!                  ──► fec()              : [fec] for the protocol's packetizer
//!                  ──► spawn(VideoStages{source, encode, packetize}, VideoSend{sender, peer})
//!                        │  pool: pool_frames × max(frame_capacity, what the stages need)
//!                        │  rings: ring_depth, backpressure; threads pinned per cores
//!                        │  send: [send] driver = "shared": the session's sender goes to the
//!                        │        driver thread of its send core (one per core, shared by every
//!                        │        session the builder spawns, see `io::driver`)
//!                        ▼
//!                      VideoPipeline{handle, effective()}  + one `info` line per session
//! ```
//!
//! GameStream (`control::stream::session`) and punktfunk/1 (`control::pf1::media`) differ only
//! in their packetizer ([`Packetizer`]) and in where the source comes from; no caller picks
//! ring depths, pool sizes or pacing itself. [`EffectiveSettings`] is what the running
//! pipeline actually uses, so a test (or `/api`) can check that a profile reached the host.
//!
//! A profile value the builder cannot honour as written is changed here and logged as a
//! warning, never silently: a `frame_capacity` smaller than the stages' own worst case is
//! raised (a frame that does not fit would be dropped every time), and a `pool_frames` below
//! [`worst_case_frames_in_flight`] is kept but warned about (capture then misses frames while
//! every ring is full), and so is `backpressure = "block"` (latency grows with the backlog).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::driver::SendDriver;
use super::sink::{OnSent, PeerAddr, SendSink};
use super::stages::{Pipeline, PipelineHandle};
use super::{Caps, IoError, SendSetup, UdpSender};
use crate::config::{
    Backpressure, FecConfig, PipelineConfig, SendConfig, SendDriverMode, SessionProfile,
};
use crate::pipeline::{
    Packetizer, PipelineError, PipelineStats, Source, Stage, StageId, worst_case_frames_in_flight,
};
use crate::pool::FrameBuf;

/// The settings a running pipeline uses, read back from its parts.
#[derive(Debug, Clone, PartialEq)]
pub struct EffectiveSettings {
    /// Rings, pool, back-pressure and cores, as the pipeline was spawned with them.
    pub pipeline: PipelineConfig,
    /// `pipeline.frame_capacity` as the profile asked; differs from
    /// `pipeline.frame_capacity` when the stages needed more.
    pub frame_capacity_asked: usize,
    /// The send path the kernel probe chose, with the io_uring options in effect.
    pub send_path: SendSetup,
    /// The send configuration the socket was opened with (socket buffer, ring entries,
    /// SO_BUSY_POLL, pacing share and burst size).
    pub send: SendConfig,
    /// The parity the packetizer starts with.
    pub fec: FecConfig,
}

impl std::fmt::Display for EffectiveSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.pipeline;
        let c = &p.cores;
        let core = |c: Option<usize>| c.map_or_else(|| "-".to_string(), |c| c.to_string());
        write!(
            f,
            "rings {} deep, {:?}, pool {} × {} KiB, cores capture/encode/fec/send {}/{}/{}/{}, \
             priority {:?}; \
             send {} ({} SQEs, SO_SNDBUF {} KiB, SO_BUSY_POLL {} µs); pacing {} of the frame \
             interval in bursts of {}, {}; FEC {} % {} (min {} parity, {} threads)",
            p.ring_depth,
            p.backpressure,
            p.pool_frames,
            p.frame_capacity >> 10,
            core(c.capture),
            core(c.encode),
            core(c.fec),
            core(c.send),
            p.priority,
            self.send_path,
            self.send.ring_entries,
            self.send.socket_send_buffer >> 10,
            self.send.so_busy_poll_us,
            self.send.pacing.frame_share,
            self.send.pacing.burst_datagrams,
            match self.send.driver {
                SendDriverMode::Shared => "shared send driver",
                SendDriverMode::PerSession => "own send thread",
            },
            self.fec.percent,
            if self.fec.adaptive {
                "adaptive"
            } else {
                "fixed"
            },
            self.fec.min_parity,
            self.fec.threads,
        )
    }
}

/// A read-only view a host publishes of the pipeline it built last: its effective settings
/// while it runs, and its final counters once it stopped (the management API and tests read
/// it).
#[derive(Debug, Default)]
pub struct PipelineWatch {
    effective: Mutex<Option<EffectiveSettings>>,
    stopped: Mutex<Option<PipelineStats>>,
}

impl PipelineWatch {
    /// Publishes the settings of a pipeline just started.
    pub fn set(&self, settings: EffectiveSettings) {
        // Plain data behind the lock; a panicking writer leaves a whole value.
        *self.effective.lock().unwrap_or_else(|p| p.into_inner()) = Some(settings);
    }

    /// The settings published last.
    pub fn get(&self) -> Option<EffectiveSettings> {
        self.effective
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes the final counters of a pipeline that stopped.
    pub fn set_stopped(&self, stats: PipelineStats) {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner()) = Some(stats);
    }

    /// The final counters of the pipeline that stopped last.
    pub fn stopped(&self) -> Option<PipelineStats> {
        *self.stopped.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The protocol-specific stages of one session.
pub struct VideoStages<C, E, P> {
    /// Raw frames, each carrying its mode's interval ([`crate::pool::FrameMeta::interval_ns`]).
    pub source: C,
    /// Raw → encoded frames.
    pub encode: E,
    /// The protocol's FEC + packetize stage.
    pub packetize: P,
    /// Largest buffer the source or the encoder writes (a raw frame or an encoded one).
    pub media_capacity: usize,
    /// Interval of the session's first mode: pacing for frames that carry none.
    pub frame_interval: Duration,
}

/// Where the session's datagrams go.
pub struct VideoSend {
    /// The socket, from [`PipelineBuilder::bind_sender`].
    pub sender: UdpSender,
    /// The client's address as the control plane learns it.
    pub peer: Arc<PeerAddr>,
    /// Called after each frame is sent.
    pub on_sent: Option<OnSent>,
}

/// A running session pipeline and the settings it runs with.
#[derive(Debug)]
pub struct VideoPipeline {
    handle: PipelineHandle,
    effective: EffectiveSettings,
}

impl VideoPipeline {
    /// The pipeline's handle (keyframe requests, stats, stop).
    pub fn handle(&self) -> &PipelineHandle {
        &self.handle
    }

    /// The settings in effect.
    pub fn effective(&self) -> &EffectiveSettings {
        &self.effective
    }

    /// Counters of the stages, rings and pool.
    pub fn stats(&self) -> PipelineStats {
        self.handle.stats()
    }

    /// Stops the source, lets the rest drain and joins the threads.
    pub fn shutdown(self) -> Result<PipelineStats, PipelineError> {
        self.handle.shutdown()
    }

    /// Waits until the source has ended and every frame has gone through, then joins the
    /// threads (a finite source, as in benches).
    pub fn join(self) -> Result<PipelineStats, PipelineError> {
        self.handle.join()
    }

    /// Drops whatever is queued and joins the threads.
    pub fn abort(self) -> Result<PipelineStats, PipelineError> {
        self.handle.abort();
        self.handle.join()
    }
}

/// Builds session pipelines from one resolved tuning profile (see the module docs).
#[derive(Debug, Clone)]
pub struct PipelineBuilder {
    profile: SessionProfile,
    caps: Caps,
    /// The shared send drivers, one per send core (`None`: unpinned), started on first use.
    drivers: Arc<Mutex<HashMap<Option<usize>, SendDriver>>>,
}

impl PipelineBuilder {
    /// A builder for `profile` on a kernel with `caps` ([`Caps::probe`]).
    pub fn new(profile: SessionProfile, caps: Caps) -> Self {
        Self {
            profile,
            caps,
            drivers: Arc::default(),
        }
    }

    /// The shared send driver of `core` (started on first use).
    fn driver(&self, core: Option<usize>) -> Result<SendDriver, PipelineError> {
        let mut drivers = self.drivers.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(d) = drivers.get(&core) {
            return Ok(d.clone());
        }
        let name = core.map_or_else(|| "pf-send".to_owned(), |c| format!("pf-send-{c}"));
        let d = SendDriver::start(
            &name,
            core,
            self.profile.pipeline.priority,
            self.profile.send.busy_poll,
        )
        .map_err(|source| PipelineError::Spawn {
            stage: StageId::Send,
            source,
        })?;
        drivers.insert(core, d.clone());
        Ok(d)
    }

    /// How many shared send driver threads run.
    pub fn send_drivers(&self) -> usize {
        self.drivers.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    /// The profile every pipeline is built from.
    pub fn profile(&self) -> &SessionProfile {
        &self.profile
    }

    /// `[fec]`, for the protocol's packetizer.
    pub fn fec(&self) -> FecConfig {
        self.profile.fec
    }

    /// Binds a send socket at `bind` with the profile's `[send]` and `[pacing]` settings.
    pub fn bind_sender(&self, bind: SocketAddr) -> Result<UdpSender, IoError> {
        UdpSender::new(bind, &self.profile.send, &self.caps)
    }

    /// The pipeline configuration for stages that need buffers of `needed` bytes, and the
    /// warnings about values that could not be taken as written. Pure.
    pub fn pipeline_config(&self, needed: usize) -> (PipelineConfig, Vec<String>) {
        let mut config = self.profile.pipeline.clone();
        let mut warnings = Vec::new();
        if config.frame_capacity < needed {
            warnings.push(format!(
                "pipeline.frame_capacity {} is below the {needed} bytes this session's stages \
                 need; raised",
                config.frame_capacity
            ));
            config.frame_capacity = needed;
        }
        let worst = worst_case_frames_in_flight(config.ring_depth);
        if config.pool_frames < worst {
            warnings.push(format!(
                "pipeline.pool_frames {} is below the {worst} buffers that can be in flight \
                 with {}-slot rings; capture misses frames while the rings are full",
                config.pool_frames, config.ring_depth
            ));
        }
        if config.backpressure == Backpressure::Block {
            warnings.push(
                "pipeline.backpressure = \"block\" on a live session: a stage that falls \
                 behind makes the ones before it wait, and latency grows with the backlog"
                    .to_string(),
            );
        }
        (config, warnings)
    }

    /// Starts a session's pipeline and logs its effective settings once (`label` names the
    /// session in the log).
    pub fn spawn<C, E, P>(
        &self,
        label: &str,
        stages: VideoStages<C, E, P>,
        send: VideoSend,
    ) -> Result<VideoPipeline, PipelineError>
    where
        C: Source<Output = FrameBuf>,
        E: Stage<Input = FrameBuf, Output = FrameBuf>,
        P: Packetizer,
    {
        let VideoStages {
            source,
            encode,
            packetize,
            media_capacity,
            frame_interval,
        } = stages;
        let needed = media_capacity.max(packetize.max_output(media_capacity));
        let (config, warnings) = self.pipeline_config(needed);
        for w in &warnings {
            tracing::warn!(session = label, "{w}");
        }
        let effective = EffectiveSettings {
            pipeline: config.clone(),
            frame_capacity_asked: self.profile.pipeline.frame_capacity,
            send_path: send.sender.setup(),
            send: self.profile.send.clone(),
            fec: {
                let f = packetize.fec();
                FecConfig {
                    adaptive: f.adaptive && self.profile.fec.adaptive,
                    ..f
                }
            },
        };
        let sink = match self.profile.send.driver {
            SendDriverMode::Shared => {
                let driver = self.driver(config.cores.send)?;
                let lane =
                    driver
                        .open(send.sender, send.on_sent)
                        .map_err(|e| PipelineError::Spawn {
                            stage: StageId::Send,
                            source: std::io::Error::other(e),
                        })?;
                SendSink::driven(lane, send.peer, frame_interval, true)
            }
            SendDriverMode::PerSession => {
                let mut sink = SendSink::new(send.sender, send.peer, frame_interval, true);
                if let Some(f) = send.on_sent {
                    sink = sink.on_sent(f);
                }
                sink
            }
        };
        let handle = Pipeline::spawn(&config, source, encode, packetize, sink)?;
        tracing::info!(session = label, settings = %effective, "session pipeline started");
        Ok(VideoPipeline { handle, effective })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profile_values_that_cannot_be_honoured_are_changed_and_said() {
        let profile = SessionProfile {
            pipeline: PipelineConfig {
                ring_depth: 2,
                pool_frames: 10,
                frame_capacity: 1000,
                ..PipelineConfig::default()
            },
            ..SessionProfile::default()
        };
        let b = PipelineBuilder::new(profile, Caps::none());
        let (config, warnings) = b.pipeline_config(5000);
        assert_eq!(config.frame_capacity, 5000);
        assert_eq!(config.pool_frames, 10, "kept, but warned about");
        assert_eq!(config.ring_depth, 2);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].contains("raised"), "{}", warnings[0]);
        assert!(warnings[1].contains("12 buffers"), "{}", warnings[1]);

        let (config, warnings) =
            PipelineBuilder::new(SessionProfile::default(), Caps::none()).pipeline_config(4096);
        assert_eq!(config, PipelineConfig::default());
        assert!(
            warnings.is_empty(),
            "the defaults need no warning: {warnings:?}"
        );

        let blocking = SessionProfile {
            pipeline: PipelineConfig {
                backpressure: Backpressure::Block,
                ..PipelineConfig::default()
            },
            ..SessionProfile::default()
        };
        let (config, warnings) = PipelineBuilder::new(blocking, Caps::none()).pipeline_config(1);
        assert_eq!(config.backpressure, Backpressure::Block, "honoured");
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].contains("block"), "{}", warnings[0]);
    }
}
