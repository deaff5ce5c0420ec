//! The send stage: packetized frames from the ring → the kernel, paced.
//!
//! [`SendSink`] is the pipeline's last stage. Each input [`FrameBuf`] holds a frame's datagrams
//! back to back (`meta.segment_size` apart, see [`crate::gamestream::stage::PacketizeStage`]); the sink
//! hands them to [`UdpSender::send_frame`], which cuts them into GSO sends and spreads them over
//! the frame's own interval (carried in its metadata, so pacing follows a mode change) per the
//! pacing config. With a shared [`SendDriver`](super::driver::SendDriver) the sink only hands
//! each frame to the driver thread of its send core ([`SendSink::driven`]), which paces the
//! bursts of every session from one deadline queue. The destination is the client's address as the
//! control plane learns it (GameStream: the source of the client's video pings), shared through
//! a [`PeerAddr`]; until one is known frames are dropped and counted.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::driver::DriverLane;
use super::{Pacing, SendStats, UdpSender};
use crate::pipeline::{Sink, StageContext, StageError};
use crate::pool::{FrameBuf, FrameMeta};

/// Where the stream goes; set by the control plane, read by the send stage once per frame.
#[derive(Debug, Default)]
pub struct PeerAddr(Mutex<Option<SocketAddr>>);

impl PeerAddr {
    /// Sets (or clears) the destination.
    pub fn set(&self, addr: Option<SocketAddr>) {
        // A poisoned lock only means another thread panicked mid-assignment of a Copy value;
        // the value is still whole, so keep using it.
        *self.0.lock().unwrap_or_else(|p| p.into_inner()) = addr;
    }

    /// The current destination.
    pub fn get(&self) -> Option<SocketAddr> {
        *self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Counters of the send stage.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SinkStats {
    /// Frames handed to the kernel.
    pub frames: u64,
    /// Frames dropped because no destination was known yet.
    pub no_destination: u64,
    /// Frames whose send failed (the error is logged; the stream goes on).
    pub failed: u64,
    /// Totals of the driver.
    pub send: SendStats,
}

/// Called after each frame is sent, with its metadata and the driver's counters for it
/// (latency accounting in benches and the host's stats).
pub type OnSent = Box<dyn FnMut(&FrameMeta, &SendStats) + Send>;

/// How one frame is paced: over its own interval ([`FrameMeta::interval_ns`], set by the
/// source for the frame's mode), or over `fallback` when the source did not say. Because the
/// interval travels with the frame, a renegotiation from 30 to 120 fps paces the first 120 fps
/// frame over 8.3 ms × share, not over the 33 ms of the mode the sink was created for.
pub fn frame_pacing(meta: &FrameMeta, fallback: Duration, paced: bool, now: Instant) -> Pacing {
    if !paced {
        return Pacing::Immediate;
    }
    Pacing::Frame {
        start: now,
        interval: meta.interval().unwrap_or(fallback),
    }
}

/// Who sends: the stage itself, or a shared driver thread.
enum Sender {
    Own {
        sender: Box<UdpSender>,
        on_sent: Option<OnSent>,
        stats: SinkStats,
    },
    Driven(DriverLane),
}

/// The pipeline's send stage (see the module docs).
pub struct SendSink {
    send: Sender,
    peer: Arc<PeerAddr>,
    frame_interval: Duration,
    paced: bool,
}

impl std::fmt::Debug for SendSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let path = match &self.send {
            Sender::Own { sender, .. } => sender.path().name(),
            Sender::Driven(_) => "shared driver",
        };
        f.debug_struct("SendSink")
            .field("path", &path)
            .field("frame_interval", &self.frame_interval)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl SendSink {
    /// A sink sending through `sender` to whatever `peer` holds, pacing each frame when
    /// `paced` over the interval it carries ([`FrameMeta::interval_ns`]), or over
    /// `frame_interval` for frames that carry none (the share comes from the sender's
    /// `SendConfig`).
    pub fn new(
        sender: UdpSender,
        peer: Arc<PeerAddr>,
        frame_interval: Duration,
        paced: bool,
    ) -> Self {
        Self {
            send: Sender::Own {
                sender: Box::new(sender),
                on_sent: None,
                stats: SinkStats::default(),
            },
            peer,
            frame_interval,
            paced,
        }
    }

    /// A sink that hands each frame to a shared driver thread through `lane` (from
    /// [`SendDriver::open`](super::driver::SendDriver::open), which took the session's sender
    /// and its `on_sent` callback).
    pub fn driven(
        lane: DriverLane,
        peer: Arc<PeerAddr>,
        frame_interval: Duration,
        paced: bool,
    ) -> Self {
        Self {
            send: Sender::Driven(lane),
            peer,
            frame_interval,
            paced,
        }
    }

    /// Installs a callback run after every frame sent (a driven sink's callback is given to
    /// its driver instead; this one is ignored there).
    pub fn on_sent(mut self, f: OnSent) -> Self {
        if let Sender::Own { on_sent, .. } = &mut self.send {
            *on_sent = Some(f);
        }
        self
    }

    /// Counters so far.
    pub fn stats(&self) -> SinkStats {
        match &self.send {
            Sender::Own { stats, .. } => *stats,
            Sender::Driven(lane) => lane.stats(),
        }
    }
}

impl Sink for SendSink {
    type Input = FrameBuf;

    fn consume(&mut self, frame: FrameBuf, _cx: &mut StageContext<'_>) -> Result<(), StageError> {
        let Some(dest) = self.peer.get() else {
            match &mut self.send {
                Sender::Own { stats, .. } => stats.no_destination += 1,
                Sender::Driven(lane) => lane.count_no_destination(),
            }
            return Ok(());
        };
        let seg = usize::from(frame.meta.segment_size);
        if seg == 0 || frame.is_empty() {
            return Err(StageError::failed(
                "send stage got a frame that was not packetized",
            ));
        }
        let pacing = frame_pacing(&frame.meta, self.frame_interval, self.paced, Instant::now());
        let (sender, on_sent, stats) = match &mut self.send {
            Sender::Driven(lane) => {
                return lane.submit(frame, dest, pacing).map_err(StageError::failed);
            }
            Sender::Own {
                sender,
                on_sent,
                stats,
            } => (sender, on_sent, stats),
        };
        match sender.send_frame(dest, frame.as_slice(), seg, pacing) {
            Ok(s) => {
                stats.frames += 1;
                stats.send += s;
                if let Some(f) = on_sent {
                    f(&frame.meta, &s);
                }
            }
            Err(e) => {
                stats.failed += 1;
                tracing::warn!(error = %e, %dest, "video frame send failed");
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pacing_follows_the_frame_not_the_sink() {
        let now = Instant::now();
        let created_for_30 = Duration::from_secs(1) / 30;
        let mut meta = FrameMeta {
            interval_ns: FrameMeta::interval_ns_for_fps(120),
            ..FrameMeta::default()
        };
        assert_eq!(
            frame_pacing(&meta, created_for_30, true, now),
            Pacing::Frame {
                start: now,
                interval: Duration::from_nanos(8_333_333)
            }
        );
        meta.interval_ns = 0;
        assert_eq!(
            frame_pacing(&meta, created_for_30, true, now),
            Pacing::Frame {
                start: now,
                interval: created_for_30
            },
            "a frame without an interval falls back to the sink's"
        );
        assert_eq!(
            frame_pacing(&meta, created_for_30, false, now),
            Pacing::Immediate
        );
    }
}
