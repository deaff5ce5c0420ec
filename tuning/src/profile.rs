//! The profile schema: one serde struct per TOML table, every key optional.
//!
//! ```toml
//! [pipeline]                     # PipelineSection
//! ring_depth = 4
//! backpressure = "drop-oldest"
//! cores = { capture = 0, encode = 1, fec = 2, send = 3 }
//! priority = "high"
//!
//! [send]                         # SendSection
//! path = "uring-gso"
//!
//! [pacing]                       # PacingSection
//! [fec]                          # FecSection
//! [video]                        # VideoSection
//! [sessions]                     # SessionsSection
//! ```
//!
//! Unknown tables and keys are errors (`deny_unknown_fields`), so a typo never silently falls
//! back to a default. A missing key takes the default listed in `docs/tuning.md`; resolving
//! and checking the values is [`crate::settings`]' job. This module only describes the shape.

use serde::Deserialize;

use punktfunk_engine::config::{Backpressure, SendPathPreference, ThreadPriority};

/// A whole profile file. Every table may be left out.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    /// `[pipeline]`: rings, buffer pool and core pinning.
    #[serde(default)]
    pub pipeline: PipelineSection,
    /// `[send]`: kernel send path and socket options.
    #[serde(default)]
    pub send: SendSection,
    /// `[pacing]`: how each frame's datagrams are spread over time.
    #[serde(default)]
    pub pacing: PacingSection,
    /// `[fec]`: forward error correction.
    #[serde(default)]
    pub fec: FecSection,
    /// `[video]`: encoder defaults used when a client does not ask for something else.
    #[serde(default)]
    pub video: VideoSection,
    /// `[sessions]`: how many clients may stream at once.
    #[serde(default)]
    pub sessions: SessionsSection,
    /// `[capture]`: where a session's picture comes from.
    #[serde(default)]
    pub capture: CaptureSection,
}

impl Profile {
    /// Parses TOML text. Syntax errors, unknown keys and values of the wrong type are errors
    /// here; ranges are checked by [`Profile::resolve`](crate::settings).
    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }
}

/// `[pipeline]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PipelineSection {
    /// Slots in each ring between two stages.
    pub ring_depth: Option<usize>,
    /// Frame buffers allocated at start-up.
    pub pool_frames: Option<usize>,
    /// Bytes per frame buffer.
    pub frame_capacity: Option<usize>,
    /// What a full ring does.
    pub backpressure: Option<BackpressureName>,
    /// Per-stage core pinning.
    pub cores: Option<CoresSection>,
    /// Scheduling priority of the stage threads.
    pub priority: Option<PriorityName>,
}

/// `pipeline.priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PriorityName {
    /// `"normal"`: the threads keep the host process's priority.
    Normal,
    /// `"high"`: nice -10.
    High,
    /// `"realtime"`: `SCHED_FIFO` priority 10.
    Realtime,
}

impl From<PriorityName> for ThreadPriority {
    fn from(name: PriorityName) -> Self {
        match name {
            PriorityName::Normal => ThreadPriority::Normal,
            PriorityName::High => ThreadPriority::High,
            PriorityName::Realtime => ThreadPriority::Realtime,
        }
    }
}

/// `pipeline.backpressure`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackpressureName {
    /// `"drop-oldest"`
    DropOldest,
    /// `"block"`
    Block,
}

impl From<BackpressureName> for Backpressure {
    fn from(name: BackpressureName) -> Self {
        match name {
            BackpressureName::DropOldest => Backpressure::DropOldest,
            BackpressureName::Block => Backpressure::Block,
        }
    }
}

/// `pipeline.cores`: an inline table of core indices.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CoresSection {
    /// Capture stage core.
    pub capture: Option<usize>,
    /// Encode stage core.
    pub encode: Option<usize>,
    /// FEC + packetize stage core.
    pub fec: Option<usize>,
    /// Send stage core.
    pub send: Option<usize>,
}

/// `[send]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendSection {
    /// Preferred kernel send path.
    pub path: Option<SendPathName>,
    /// `IORING_OP_SEND_ZC`.
    pub zero_copy: Option<bool>,
    /// Spin on the io_uring completion queue.
    pub busy_poll: Option<bool>,
    /// `SO_BUSY_POLL` microseconds.
    pub so_busy_poll_us: Option<u32>,
    /// `IORING_REGISTER_BUFFERS`.
    pub registered_buffers: Option<bool>,
    /// io_uring submission queue entries.
    pub ring_entries: Option<u32>,
    /// `SO_SNDBUF` bytes.
    pub socket_send_buffer: Option<usize>,
    /// `"shared"` (one send thread per core for all sessions) or `"per-session"`.
    pub driver: Option<SendDriverName>,
}

/// `send.driver`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendDriverName {
    /// One driver thread per send core, a deadline queue across sessions.
    Shared,
    /// A send thread per session.
    PerSession,
}

impl From<SendDriverName> for punktfunk_engine::config::SendDriverMode {
    fn from(n: SendDriverName) -> Self {
        match n {
            SendDriverName::Shared => Self::Shared,
            SendDriverName::PerSession => Self::PerSession,
        }
    }
}

/// `send.path`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SendPathName {
    /// `"auto"`
    Auto,
    /// `"uring-gso"`
    UringGso,
    /// `"uring"`
    Uring,
    /// `"sendmmsg"`
    Sendmmsg,
    /// `"sendto"`
    Sendto,
}

impl From<SendPathName> for SendPathPreference {
    fn from(name: SendPathName) -> Self {
        match name {
            SendPathName::Auto => SendPathPreference::Auto,
            SendPathName::UringGso => SendPathPreference::UringGso,
            SendPathName::Uring => SendPathPreference::Uring,
            SendPathName::Sendmmsg => SendPathPreference::Sendmmsg,
            SendPathName::Sendto => SendPathPreference::Sendto,
        }
    }
}

/// `[pacing]`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PacingSection {
    /// Share of the frame interval over which a frame's datagrams are spread.
    pub frame_share: Option<f32>,
    /// Datagrams per microburst.
    pub burst_datagrams: Option<usize>,
}

/// `[fec]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FecSection {
    /// Parity shards as a percentage of data shards.
    pub percent: Option<u32>,
    /// Parity shards per block at least.
    pub min_parity: Option<u16>,
    /// Threads one GameStream frame's parity may be encoded on.
    pub threads: Option<u8>,
    /// Parity follows the client's loss reports (default), or stays at `percent`.
    pub adaptive: Option<bool>,
}

/// `[video]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VideoSection {
    /// Default codec.
    pub codec: Option<Codec>,
    /// Default bitrate in kbit/s.
    pub bitrate_kbps: Option<u32>,
    /// Default frame rate.
    pub fps: Option<u32>,
    /// The encoder for H.264 streams: "libx264", "openh264", "h264_nvenc", or "none".
    pub h264_encoder: Option<String>,
    /// The encoder for HEVC streams: "libx265", "hevc_nvenc", or "none" (not advertised).
    pub hevc_encoder: Option<String>,
    /// The encoder for AV1 streams: "libaom-av1", "libsvtav1", or "none" (not advertised).
    pub av1_encoder: Option<String>,
}

/// `[sessions]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionsSection {
    /// Streaming sessions at once, per protocol (GameStream and punktfunk/1 each).
    pub max: Option<usize>,
    /// Refuse GameStream clients that do not encrypt RTSP, control, video and audio.
    pub require_encryption: Option<bool>,
}

/// `[capture]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CaptureSection {
    /// Where a session's picture comes from.
    pub source: Option<SourceName>,
    /// `source = "pipewire"`: the video node to capture, by `node.name` or global id.
    pub pipewire_node: Option<String>,
    /// The test pattern with a band of fresh noise, so encoded frames fill the bitrate
    /// (sweeps and load tests); default false.
    pub pattern_noise: Option<bool>,
}

/// `capture.source`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceName {
    /// What the session offers: a running sway (`$SWAYSOCK`), else a Mutter on the session bus
    /// (builds with the control feature `mutter`), else the test pattern.
    #[default]
    Auto,
    /// The built-in animated test pattern.
    TestPattern,
    /// A wlroots compositor (sway): a headless output per session, wlr-screencopy.
    Wlroots,
    /// GNOME's Mutter: ScreenCast `RecordVirtual` over PipeWire.
    Mutter,
    /// KDE's KWin: a virtual output over its screencast protocol.
    Kwin,
    /// gamescope's PipeWire stream.
    Gamescope,
    /// Any PipeWire video node (the portal ScreenCast path).
    Pipewire,
}

/// `video.codec`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    /// `"h264"`: H.264/AVC, what every client decodes.
    #[default]
    H264,
    /// `"hevc"`: H.265/HEVC.
    Hevc,
    /// `"av1"`: AV1.
    Av1,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_text_is_an_empty_profile() {
        assert_eq!(Profile::from_toml("").unwrap(), Profile::default());
    }

    #[test]
    fn every_key_parses() {
        let p = Profile::from_toml(
            r#"
            [pipeline]
            ring_depth = 2
            pool_frames = 12
            frame_capacity = 1048576
            backpressure = "block"
            cores = { capture = 0, encode = 1, fec = 2, send = 3 }
            priority = "realtime"
            [send]
            path = "uring-gso"
            zero_copy = true
            busy_poll = true
            so_busy_poll_us = 50
            registered_buffers = true
            ring_entries = 512
            socket_send_buffer = 16777216
            driver = "per-session"
            [pacing]
            frame_share = 1
            burst_datagrams = 44
            [fec]
            percent = 10
            min_parity = 4
            [video]
            codec = "av1"
            bitrate_kbps = 150000
            fps = 120
            h264_encoder = "openh264"
            hevc_encoder = "none"
            av1_encoder = "libsvtav1"
            "#,
        )
        .unwrap();
        assert_eq!(p.pipeline.backpressure, Some(BackpressureName::Block));
        assert_eq!(p.pipeline.cores.unwrap().send, Some(3));
        assert_eq!(p.pipeline.priority, Some(PriorityName::Realtime));
        assert_eq!(p.send.path, Some(SendPathName::UringGso));
        assert_eq!(p.send.driver, Some(SendDriverName::PerSession));
        assert_eq!(
            p.pacing.frame_share,
            Some(1.0),
            "an integer is accepted for a float"
        );
        assert_eq!(p.video.codec, Some(Codec::Av1));
        assert_eq!(p.video.h264_encoder.as_deref(), Some("openh264"));
        assert_eq!(p.video.hevc_encoder.as_deref(), Some("none"));
        assert_eq!(p.video.av1_encoder.as_deref(), Some("libsvtav1"));
    }

    #[test]
    fn unknown_keys_and_bad_names_are_refused() {
        let e = Profile::from_toml("[pipeline]\nring_dpeth = 2\n").unwrap_err();
        assert!(e.to_string().contains("ring_dpeth"), "{e}");
        let e = Profile::from_toml("[sned]\n").unwrap_err();
        assert!(e.to_string().contains("sned"), "{e}");
        let e = Profile::from_toml("[pipeline]\nbackpressure = \"drop_oldest\"\n").unwrap_err();
        assert!(e.to_string().contains("drop_oldest"), "{e}");
        let e = Profile::from_toml("[pipeline]\npriority = \"nice\"\n").unwrap_err();
        assert!(e.to_string().contains("nice"), "{e}");
        let e = Profile::from_toml("[pipeline]\nring_depth = -1\n").unwrap_err();
        assert!(e.to_string().contains("ring_depth"), "{e}");
    }
}
