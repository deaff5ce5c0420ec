//! Resolving a [`Profile`] into the engine's configuration types: defaults for missing keys,
//! range checks (errors) and plausibility checks (warnings).
//!
//! Pure: the one fact about the machine that validation needs, the cores this process may run
//! on, comes in as an argument.

use punktfunk_engine::config::{
    PacingConfig, PipelineConfig, SendConfig, SendPathPreference, SessionProfile, StageCores,
};

use crate::error::{Problem, Warning};
use crate::profile::{Codec, Profile, SourceName};

/// Largest `send.ring_entries` the kernel accepts (`IORING_MAX_ENTRIES`, io_uring/io_uring.c).
pub const MAX_RING_ENTRIES: u32 = 32_768;

/// Segments one UDP GSO send may carry (`UDP_MAX_SEGMENTS`, include/linux/udp.h).
pub const GSO_MAX_SEGMENTS: usize = 64;

/// Pool memory above which a warning is given.
const POOL_BYTES_WARN: usize = 2 << 30;

/// Forward error correction settings (the engine's type: `[fec]` goes to the packetizers as is).
pub use punktfunk_engine::config::FecConfig as FecSettings;

/// Encoder defaults, used when a client does not ask for something else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoSettings {
    /// Codec.
    pub codec: Codec,
    /// Bitrate in kbit/s.
    pub bitrate_kbps: u32,
    /// Frames per second.
    pub fps: u32,
}

impl Default for VideoSettings {
    fn default() -> Self {
        Self {
            codec: Codec::H264,
            bitrate_kbps: 20_000,
            fps: 60,
        }
    }
}

/// Host-wide session limits (`[sessions]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SessionsSettings {
    /// Streaming sessions at once, per protocol: a launch beyond it is refused with a reason
    /// (GameStream: `status_code` 503; punktfunk/1: `Goodbye(Busy)`).
    pub max: usize,
    /// GameStream clients must encrypt RTSP, the control stream, video and audio; a client
    /// that cannot is refused at `/launch` (no `corever`) or at ANNOUNCE (it did not enable
    /// all three). Off: everything the client supports is encrypted.
    pub require_encryption: bool,
}

/// Largest `sessions.max` accepted: each session owns a source, an encoder and a pipeline.
pub const MAX_SESSIONS: usize = 64;

impl Default for SessionsSettings {
    fn default() -> Self {
        Self {
            max: 4,
            require_encryption: false,
        }
    }
}

/// A resolved profile: every value present and in range.
#[derive(Debug, Clone, PartialEq, Default)]
#[non_exhaustive]
pub struct Settings {
    /// Stage pipeline shape.
    pub pipeline: PipelineConfig,
    /// Send path, socket options and pacing (`send.pacing` comes from `[pacing]`).
    pub send: SendConfig,
    /// Forward error correction.
    pub fec: FecSettings,
    /// Encoder defaults.
    pub video: VideoSettings,
    /// Session limits.
    pub sessions: SessionsSettings,
    /// Where a session's picture comes from (`[capture] source`).
    pub source: SourceName,
    /// The PipeWire video node `source = "pipewire"` captures (`[capture] pipewire_node`):
    /// a `node.name`, or a global id in decimal.
    pub pipewire_node: Option<String>,
    /// The test pattern carries a noise band that fills the bitrate (`[capture]
    /// pattern_noise`).
    pub pattern_noise: bool,
    /// The encoder asked for per codec (`[video] h264_encoder`, `hevc_encoder`,
    /// `av1_encoder`); `None` = the host's choice. Checked against the build by the host.
    pub encoders: EncoderNames,
}

/// `[video] *_encoder`: libavcodec encoder names (or "openh264", or "none").
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EncoderNames {
    /// H.264.
    pub h264: Option<String>,
    /// HEVC.
    pub hevc: Option<String>,
    /// AV1.
    pub av1: Option<String>,
}

impl Settings {
    /// The part of the settings that shapes a session's video pipeline (`[pipeline]`, `[send]`,
    /// `[pacing]`, `[fec]`), for the engine's pipeline builder (`punktfunk_engine::io::build`).
    pub fn session_profile(&self) -> SessionProfile {
        SessionProfile {
            pipeline: self.pipeline.clone(),
            send: self.send.clone(),
            fec: self.fec,
        }
    }
}

/// The outcome of resolving a profile that has no errors.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The settings.
    pub settings: Settings,
    /// Values that work but look wrong.
    pub warnings: Vec<Warning>,
}

struct Check {
    problems: Vec<Problem>,
    warnings: Vec<Warning>,
}

impl Check {
    fn problem(&mut self, field: &'static str, reason: String) {
        self.problems.push(Problem { field, reason });
    }

    fn warn(&mut self, field: &'static str, reason: String) {
        self.warnings.push(Warning { field, reason });
    }
}

fn is_uring(path: SendPathPreference) -> bool {
    matches!(
        path,
        SendPathPreference::Auto | SendPathPreference::UringGso | SendPathPreference::Uring
    )
}

/// Formats a set of core ids compactly: `0-3,6`.
pub(crate) fn core_list(cores: &[usize]) -> String {
    let mut sorted = cores.to_vec();
    sorted.sort_unstable();
    sorted.dedup();
    let mut out = String::new();
    let mut i = 0;
    while i < sorted.len() {
        let start = sorted[i];
        let mut end = start;
        while i + 1 < sorted.len() && sorted[i + 1] == end + 1 {
            i += 1;
            end = sorted[i];
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            out.push_str(&start.to_string());
        } else {
            out.push_str(&format!("{start}-{end}"));
        }
        i += 1;
    }
    out
}

impl Profile {
    /// Fills in defaults and checks every value.
    ///
    /// `allowed_cores` is the set of cores this process may run on, if known; a pinned core
    /// outside it is a warning (the stage runs unpinned), not an error, so one profile can be
    /// shared by machines of different sizes.
    pub fn resolve(&self, allowed_cores: Option<&[usize]>) -> Result<Resolved, Vec<Problem>> {
        let mut c = Check {
            problems: Vec::new(),
            warnings: Vec::new(),
        };
        let pipeline = self.resolve_pipeline(allowed_cores, &mut c);
        let send = self.resolve_send(&mut c);
        let fec = self.resolve_fec(&mut c);
        let video = self.resolve_video(&mut c);
        let sessions = self.resolve_sessions(&mut c);
        let source = self.capture.source.unwrap_or_default();
        let pipewire_node = self.resolve_pipewire_node(source, &mut c);
        if c.problems.is_empty() {
            Ok(Resolved {
                settings: Settings {
                    pipeline,
                    send,
                    fec,
                    video,
                    sessions,
                    source,
                    pipewire_node,
                    pattern_noise: self.capture.pattern_noise.unwrap_or(false),
                    encoders: EncoderNames {
                        h264: self.video.h264_encoder.clone(),
                        hevc: self.video.hevc_encoder.clone(),
                        av1: self.video.av1_encoder.clone(),
                    },
                },
                warnings: c.warnings,
            })
        } else {
            Err(c.problems)
        }
    }

    fn resolve_pipeline(&self, allowed: Option<&[usize]>, c: &mut Check) -> PipelineConfig {
        let d = PipelineConfig::default();
        let p = &self.pipeline;
        let ring_depth = p.ring_depth.unwrap_or(d.ring_depth);
        let pool_frames = p.pool_frames.unwrap_or(d.pool_frames);
        let frame_capacity = p.frame_capacity.unwrap_or(d.frame_capacity);
        if ring_depth == 0 {
            c.problem("pipeline.ring_depth", "must be at least 1, got 0".into());
        } else if ring_depth > 64 {
            c.warn(
                "pipeline.ring_depth",
                format!("{ring_depth} slots per ring can queue {ring_depth} frames of latency"),
            );
        }
        if pool_frames == 0 {
            c.problem("pipeline.pool_frames", "must be at least 1, got 0".into());
        } else if ring_depth > 0
            && pool_frames < punktfunk_engine::pipeline::worst_case_frames_in_flight(ring_depth)
        {
            c.warn(
                "pipeline.pool_frames",
                format!(
                    "{pool_frames} buffers are fewer than the {} that can be in flight with \
                     {ring_depth}-slot rings: capture misses frames while the rings are full",
                    punktfunk_engine::pipeline::worst_case_frames_in_flight(ring_depth)
                ),
            );
        }
        if frame_capacity == 0 {
            c.problem(
                "pipeline.frame_capacity",
                "must be at least 1 byte, got 0".into(),
            );
        } else if frame_capacity < 64 << 10 {
            c.warn(
                "pipeline.frame_capacity",
                format!(
                    "{frame_capacity} bytes is small for a keyframe; larger frames are dropped"
                ),
            );
        }
        match pool_frames.checked_mul(frame_capacity) {
            None => c.problem(
                "pipeline.frame_capacity",
                format!("{pool_frames} × {frame_capacity} bytes overflows the address space"),
            ),
            Some(bytes) if bytes > POOL_BYTES_WARN => c.warn(
                "pipeline.frame_capacity",
                format!(
                    "the pool allocates {pool_frames} × {frame_capacity} = {} MiB at start-up",
                    bytes >> 20
                ),
            ),
            Some(_) => {}
        }

        let cores = p.cores.unwrap_or_default();
        let cores = StageCores {
            capture: cores.capture,
            encode: cores.encode,
            fec: cores.fec,
            send: cores.send,
        };
        let pinned = [
            ("pipeline.cores.capture", cores.capture),
            ("pipeline.cores.encode", cores.encode),
            ("pipeline.cores.fec", cores.fec),
            ("pipeline.cores.send", cores.send),
        ];
        for (i, &(field, core)) in pinned.iter().enumerate() {
            let Some(core) = core else { continue };
            if let Some(allowed) = allowed
                && !allowed.contains(&core)
            {
                c.warn(
                    field,
                    format!(
                        "core {core} is not available here (cores {}); the stage will run unpinned",
                        core_list(allowed)
                    ),
                );
            }
            if let Some(&(other, _)) = pinned[..i].iter().find(|(_, o)| *o == Some(core)) {
                c.warn(
                    field,
                    format!("shares core {core} with {other}; the two stages contend"),
                );
            }
        }

        PipelineConfig {
            ring_depth,
            pool_frames,
            frame_capacity,
            backpressure: p.backpressure.map_or(d.backpressure, Into::into),
            cores,
            priority: p.priority.map_or(d.priority, Into::into),
        }
    }

    fn resolve_send(&self, c: &mut Check) -> SendConfig {
        let d = SendConfig::default();
        let s = &self.send;
        let path = s.path.map_or(d.path, Into::into);
        let zero_copy = s.zero_copy.unwrap_or(d.zero_copy);
        let busy_poll = s.busy_poll.unwrap_or(d.busy_poll);
        let registered_buffers = s.registered_buffers.unwrap_or(d.registered_buffers);
        let so_busy_poll_us = s.so_busy_poll_us.unwrap_or(d.so_busy_poll_us);
        let ring_entries = s.ring_entries.unwrap_or(d.ring_entries);
        let socket_send_buffer = s.socket_send_buffer.unwrap_or(d.socket_send_buffer);

        if !is_uring(path) {
            for (field, on) in [
                ("send.zero_copy", zero_copy),
                ("send.busy_poll", busy_poll),
                ("send.registered_buffers", registered_buffers),
            ] {
                if on {
                    c.warn(
                        field,
                        format!("only applies to io_uring paths; ignored with {path:?}"),
                    );
                }
            }
        }
        if so_busy_poll_us > i32::MAX as u32 {
            c.problem(
                "send.so_busy_poll_us",
                format!("SO_BUSY_POLL takes a C int; {so_busy_poll_us} is too large"),
            );
        } else if so_busy_poll_us > 1_000 {
            c.warn(
                "send.so_busy_poll_us",
                format!("{so_busy_poll_us} µs of spinning per empty receive burns a core"),
            );
        }
        if ring_entries == 0 || ring_entries > MAX_RING_ENTRIES {
            c.problem(
                "send.ring_entries",
                format!(
                    "must be in 1..={MAX_RING_ENTRIES} (IORING_MAX_ENTRIES), got {ring_entries}"
                ),
            );
        } else if !ring_entries.is_power_of_two() {
            c.warn(
                "send.ring_entries",
                format!(
                    "the kernel rounds {ring_entries} up to {}",
                    ring_entries.next_power_of_two()
                ),
            );
        }
        // SO_SNDBUF takes a C int and the kernel doubles it (socket(7)).
        if socket_send_buffer > (i32::MAX / 2) as usize {
            c.problem(
                "send.socket_send_buffer",
                format!(
                    "SO_SNDBUF takes a C int that the kernel doubles; at most {} bytes, got \
                     {socket_send_buffer}",
                    i32::MAX / 2
                ),
            );
        }

        SendConfig {
            path,
            zero_copy,
            busy_poll,
            so_busy_poll_us,
            registered_buffers,
            ring_entries,
            socket_send_buffer,
            pacing: self.resolve_pacing(c),
            driver: s.driver.map_or(d.driver, Into::into),
        }
    }

    fn resolve_pacing(&self, c: &mut Check) -> PacingConfig {
        let d = PacingConfig::default();
        let frame_share = self.pacing.frame_share.unwrap_or(d.frame_share);
        let burst_datagrams = self.pacing.burst_datagrams.unwrap_or(d.burst_datagrams);
        // 0 is the documented "pacing off"; anything else must be a share of the interval.
        if !(frame_share == 0.0 || (frame_share > 0.0 && frame_share <= 1.0)) {
            c.problem(
                "pacing.frame_share",
                format!("must be in (0, 1], or 0 to turn pacing off; got {frame_share}"),
            );
        }
        if burst_datagrams == 0 {
            c.problem("pacing.burst_datagrams", "must be at least 1, got 0".into());
        } else if burst_datagrams > GSO_MAX_SEGMENTS {
            c.warn(
                "pacing.burst_datagrams",
                format!(
                    "one UDP GSO send carries at most {GSO_MAX_SEGMENTS} segments \
                     (UDP_MAX_SEGMENTS); bursts of {burst_datagrams} are split"
                ),
            );
        }
        PacingConfig {
            frame_share,
            burst_datagrams,
        }
    }

    fn resolve_fec(&self, c: &mut Check) -> FecSettings {
        let d = FecSettings::default();
        let percent = self.fec.percent.unwrap_or(u32::from(d.percent));
        let min_parity = self.fec.min_parity.unwrap_or(d.min_parity);
        let percent = match u8::try_from(percent) {
            Ok(p) => {
                if p > 100 {
                    c.warn("fec.percent", format!("{p}% sends more parity than data"));
                }
                p
            }
            Err(_) => {
                c.problem(
                    "fec.percent",
                    format!(
                        "must be in 0..=255 (an 8-bit field of the GameStream video header), \
                         got {percent}"
                    ),
                );
                d.percent
            }
        };
        if percent == 0 && min_parity > 0 {
            c.warn(
                "fec.min_parity",
                format!("fec.percent is 0 but every block still gets {min_parity} parity shards"),
            );
        }
        let threads = self.fec.threads.unwrap_or(d.threads);
        let threads = if (1..=4).contains(&threads) {
            threads
        } else {
            c.problem(
                "fec.threads",
                format!(
                    "must be in 1..=4 (a GameStream frame has at most 4 FEC blocks), got {threads}"
                ),
            );
            d.threads
        };
        FecSettings {
            percent,
            min_parity,
            threads,
            adaptive: self.fec.adaptive.unwrap_or(d.adaptive),
        }
    }

    fn resolve_sessions(&self, c: &mut Check) -> SessionsSettings {
        let max = self.sessions.max.unwrap_or(SessionsSettings::default().max);
        if !(1..=MAX_SESSIONS).contains(&max) {
            c.problem(
                "sessions.max",
                format!("must be in 1..={MAX_SESSIONS}, got {max}"),
            );
        }
        SessionsSettings {
            max,
            require_encryption: self.sessions.require_encryption.unwrap_or(false),
        }
    }

    fn resolve_pipewire_node(&self, source: SourceName, c: &mut Check) -> Option<String> {
        let node = self.capture.pipewire_node.clone();
        match &node {
            Some(n) if n.trim().is_empty() || n.len() > 256 || n.chars().any(char::is_control) => {
                c.problem(
                    "capture.pipewire_node",
                    "must be a node.name or id: 1 to 256 printable characters".into(),
                );
            }
            None if source == SourceName::Pipewire => c.problem(
                "capture.pipewire_node",
                "source = \"pipewire\" needs the node to capture (`pw-cli ls Node`: its \
                 node.name or id)"
                    .into(),
            ),
            _ => {}
        }
        node
    }

    fn resolve_video(&self, c: &mut Check) -> VideoSettings {
        let d = VideoSettings::default();
        let v = &self.video;
        let fps = v.fps.unwrap_or(d.fps);
        let bitrate_kbps = v.bitrate_kbps.unwrap_or(d.bitrate_kbps);
        if !(1..=1_000).contains(&fps) {
            c.problem("video.fps", format!("must be in 1..=1000, got {fps}"));
        }
        if bitrate_kbps == 0 {
            c.problem("video.bitrate_kbps", "must be at least 1, got 0".into());
        }
        VideoSettings {
            codec: v.codec.unwrap_or(d.codec),
            bitrate_kbps,
            fps,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use punktfunk_engine::config::Backpressure;

    fn resolve(text: &str) -> Result<Resolved, Vec<Problem>> {
        Profile::from_toml(text).unwrap().resolve(Some(&[0, 1]))
    }

    fn fields(problems: &[Problem]) -> Vec<&'static str> {
        problems.iter().map(|p| p.field).collect()
    }

    #[test]
    fn empty_profile_is_the_engine_defaults() {
        let r = resolve("").unwrap();
        assert_eq!(r.settings, Settings::default());
        assert_eq!(r.settings.pipeline, PipelineConfig::default());
        assert_eq!(r.settings.send, SendConfig::default());
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn priority_names_round_trip_into_the_engine() {
        use punktfunk_engine::config::ThreadPriority;
        assert_eq!(
            resolve("").unwrap().settings.pipeline.priority,
            ThreadPriority::High,
            "the default asks for nice -10"
        );
        for p in [
            ThreadPriority::Normal,
            ThreadPriority::High,
            ThreadPriority::Realtime,
        ] {
            let text = format!("[pipeline]\npriority = \"{p}\"\n");
            let r = resolve(&text).unwrap();
            assert_eq!(r.settings.pipeline.priority, p, "{text}");
            assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        }
    }

    #[test]
    fn values_are_carried_into_engine_types() {
        let r = resolve(
            r#"
            [pipeline]
            ring_depth = 2
            backpressure = "block"
            cores = { send = 1 }
            [send]
            path = "sendmmsg"
            socket_send_buffer = 0
            [pacing]
            frame_share = 0
            "#,
        )
        .unwrap();
        let s = r.settings;
        assert_eq!(s.pipeline.ring_depth, 2);
        assert_eq!(s.pipeline.backpressure, Backpressure::Block);
        assert_eq!(
            s.pipeline.cores,
            StageCores {
                send: Some(1),
                ..Default::default()
            }
        );
        assert_eq!(s.send.path, SendPathPreference::Sendmmsg);
        assert_eq!(s.send.socket_send_buffer, 0);
        assert_eq!(s.send.pacing.frame_share, 0.0);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
    }

    #[test]
    fn every_bad_value_is_reported_at_once() {
        let problems = resolve(
            r#"
            [pipeline]
            ring_depth = 0
            pool_frames = 0
            frame_capacity = 0
            [send]
            ring_entries = 65536
            so_busy_poll_us = 4000000000
            socket_send_buffer = 2000000000
            [pacing]
            frame_share = 1.5
            burst_datagrams = 0
            [fec]
            percent = 300
            [video]
            fps = 0
            bitrate_kbps = 0
            "#,
        )
        .unwrap_err();
        assert_eq!(
            fields(&problems),
            [
                "pipeline.ring_depth",
                "pipeline.pool_frames",
                "pipeline.frame_capacity",
                "send.so_busy_poll_us",
                "send.ring_entries",
                "send.socket_send_buffer",
                "pacing.frame_share",
                "pacing.burst_datagrams",
                "fec.percent",
                "video.fps",
                "video.bitrate_kbps",
            ]
        );
        assert!(problems[6].reason.contains("1.5"), "{}", problems[6]);
    }

    #[test]
    fn session_limit_is_read_and_bounded() {
        assert_eq!(resolve("").unwrap().settings.sessions.max, 4);
        assert!(!resolve("").unwrap().settings.sessions.require_encryption);
        assert!(
            resolve("[sessions]\nrequire_encryption = true\n")
                .unwrap()
                .settings
                .sessions
                .require_encryption
        );
        assert_eq!(
            resolve("[sessions]\nmax = 2\n")
                .unwrap()
                .settings
                .sessions
                .max,
            2
        );
        assert_eq!(
            fields(&resolve("[sessions]\nmax = 0\n").unwrap_err()),
            ["sessions.max"]
        );
        assert_eq!(
            fields(&resolve("[sessions]\nmax = 65\n").unwrap_err()),
            ["sessions.max"]
        );
    }

    #[test]
    fn capture_source_is_read() {
        assert_eq!(resolve("").unwrap().settings.source, SourceName::Auto);
        assert_eq!(
            resolve("[capture]\nsource = \"wlroots\"\n")
                .unwrap()
                .settings
                .source,
            SourceName::Wlroots
        );
        assert_eq!(
            resolve("[capture]\nsource = \"test-pattern\"\n")
                .unwrap()
                .settings
                .source,
            SourceName::TestPattern
        );
        assert!(Profile::from_toml("[capture]\nsource = \"x11\"\n").is_err());
        let pw = resolve("[capture]\nsource = \"pipewire\"\npipewire_node = \"xdpw\"\n").unwrap();
        assert_eq!(pw.settings.source, SourceName::Pipewire);
        assert_eq!(pw.settings.pipewire_node.as_deref(), Some("xdpw"));
        assert_eq!(
            fields(&resolve("[capture]\nsource = \"pipewire\"\n").unwrap_err()),
            ["capture.pipewire_node"]
        );
        assert_eq!(
            fields(&resolve("[capture]\npipewire_node = \" \"\n").unwrap_err()),
            ["capture.pipewire_node"]
        );
    }

    #[test]
    fn fec_threads_are_read_and_bounded() {
        assert_eq!(resolve("").unwrap().settings.fec.threads, 1);
        assert_eq!(
            resolve("[fec]\nthreads = 4\n")
                .unwrap()
                .settings
                .fec
                .threads,
            4
        );
        for bad in ["0", "5"] {
            assert_eq!(
                fields(&resolve(&format!("[fec]\nthreads = {bad}\n")).unwrap_err()),
                ["fec.threads"]
            );
        }
    }

    #[test]
    fn frame_share_bounds() {
        for ok in ["0", "0.01", "1", "1.0"] {
            assert!(
                resolve(&format!("[pacing]\nframe_share = {ok}\n")).is_ok(),
                "{ok}"
            );
        }
        for bad in ["-0.1", "1.01", "nan", "inf"] {
            let p = resolve(&format!("[pacing]\nframe_share = {bad}\n")).unwrap_err();
            assert_eq!(fields(&p), ["pacing.frame_share"], "{bad}");
        }
    }

    #[test]
    fn missing_or_shared_cores_are_warnings() {
        let r = resolve("[pipeline]\ncores = { capture = 0, encode = 0, fec = 7, send = 1 }\n")
            .unwrap();
        assert_eq!(
            r.settings.pipeline.cores.fec,
            Some(7),
            "kept: the engine skips it at run time"
        );
        let w: Vec<_> = r.warnings.iter().map(|w| w.field).collect();
        assert_eq!(w, ["pipeline.cores.encode", "pipeline.cores.fec"]);
        assert!(
            r.warnings[1].reason.contains("cores 0-1"),
            "{}",
            r.warnings[1]
        );
        // Without knowing the machine, only the sharing is flagged.
        let r = Profile::from_toml("[pipeline]\ncores = { fec = 7 }\n")
            .unwrap()
            .resolve(None)
            .unwrap();
        assert!(r.warnings.is_empty());
    }

    #[test]
    fn plausibility_warnings() {
        let r = resolve(
            r#"
            [pipeline]
            ring_depth = 8
            pool_frames = 8
            frame_capacity = 1000
            [send]
            path = "sendto"
            zero_copy = true
            ring_entries = 300
            [pacing]
            burst_datagrams = 100
            [fec]
            percent = 150
            "#,
        )
        .unwrap();
        let w: Vec<_> = r.warnings.iter().map(|w| w.field).collect();
        assert_eq!(
            w,
            [
                "pipeline.pool_frames",
                "pipeline.frame_capacity",
                "send.zero_copy",
                "send.ring_entries",
                "pacing.burst_datagrams",
                "fec.percent",
            ]
        );
    }

    #[test]
    fn core_lists_are_compact() {
        assert_eq!(core_list(&[]), "");
        assert_eq!(core_list(&[3]), "3");
        assert_eq!(core_list(&[0, 1, 2, 3, 6, 8, 9]), "0-3,6,8-9");
        assert_eq!(core_list(&[5, 4, 4]), "4-5");
    }
}
