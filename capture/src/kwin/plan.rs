//! What to ask KWin for, and what its answers mean (pure: no Wayland, no clock).
//!
//! * [`VirtualOutputRequest`]: the arguments of `zkde_screencast_unstable_v1.stream_virtual_output`
//!   for a [`DisplayMode`], and the name KWin gives the output it creates.
//! * [`plan_mode_change`]: keep the stream, or close it and open a new one (KWin 5.27 cannot
//!   resize a virtual output in place).
//! * [`StreamState`]: a screencast stream's life from its events (`created`, `failed`, `closed`).
//! * [`OutputGeometry::map`]: a point of a client's `width`×`height` surface to KWin's global
//!   (logical) coordinates on the session's output: what `org_kde_kwin_fake_input`'s
//!   `pointer_motion_absolute` and `touch_*` take.
#![forbid(unsafe_code)]

use thiserror::Error;

use crate::display::DisplayMode;

/// The prefix KWin 5.27 puts before the name a client gives `stream_virtual_output`: the output
/// is called `Virtual-<name>` (plugins/platforms/drm/drm_virtual_output.cpp, `setInformation`
/// with `.name = "Virtual-" + name`; KWin 6's virtual backend does the same).
pub const VIRTUAL_OUTPUT_PREFIX: &str = "Virtual-";

/// The refresh rate of every KWin 5.27 virtual output: one mode, 60 000 mHz
/// (drm_virtual_output.cpp); the protocol has no refresh argument.
pub const VIRTUAL_OUTPUT_REFRESH_MHZ: u32 = 60_000;

/// `zkde_screencast_unstable_v1.pointer`: how the cursor reaches the stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointerMode {
    /// No cursor.
    Hidden,
    /// The cursor is drawn into the frames (what a game-streaming client shows).
    Embedded,
    /// The cursor position and image travel as PipeWire metadata (not read by this crate).
    Metadata,
}

impl PointerMode {
    /// The protocol value.
    pub const fn wire(self) -> u32 {
        match self {
            Self::Hidden => 1,
            Self::Embedded => 2,
            Self::Metadata => 4,
        }
    }
}

/// What cannot be asked of KWin (local misuse).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum PlanError {
    /// The output name is empty, too long, or not printable ASCII without spaces (KWin shows it
    /// in its output list and config files).
    #[error("invalid output name {0:?}: 1..=64 ASCII letters, digits, '-', '_' or '.'")]
    Name(String),
    /// The mode is out of range ([`DisplayMode::validate`]).
    #[error("invalid mode {0}")]
    Mode(DisplayMode),
}

/// The arguments of one `stream_virtual_output` request.
#[derive(Debug, Clone, PartialEq)]
pub struct VirtualOutputRequest {
    /// The name sent; KWin's output is `Virtual-<name>` ([`Self::output_name`]).
    pub name: String,
    /// Logical width (= pixels at scale 1).
    pub width: i32,
    /// Logical height.
    pub height: i32,
    /// Scale factor (1.0: one logical pixel per stream pixel).
    pub scale: f64,
    /// Cursor handling.
    pub pointer: PointerMode,
}

impl VirtualOutputRequest {
    /// The request for an output named `name` at `mode`, scale 1, cursor drawn into the frames.
    /// The refresh rate of `mode` is not sent: KWin 5.27 runs every virtual output at 60 Hz.
    pub fn new(name: &str, mode: DisplayMode) -> Result<Self, PlanError> {
        let name_ok = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !name_ok {
            return Err(PlanError::Name(name.to_owned()));
        }
        let mode = mode.validate().map_err(|_| PlanError::Mode(mode))?;
        // validate() caps both sides at 8192, so the casts cannot wrap.
        Ok(Self {
            name: name.to_owned(),
            width: mode.width as i32,
            height: mode.height as i32,
            scale: 1.0,
            pointer: PointerMode::Embedded,
        })
    }

    /// The name KWin gives the output (`wl_output.name`, `xdg_output.name`).
    pub fn output_name(&self) -> String {
        format!("{VIRTUAL_OUTPUT_PREFIX}{}", self.name)
    }

    /// The mode the output will have: the size asked for, at KWin's fixed 60 Hz.
    pub fn resulting_mode(&self) -> DisplayMode {
        DisplayMode {
            width: self.width.unsigned_abs(),
            height: self.height.unsigned_abs(),
            refresh_mhz: VIRTUAL_OUTPUT_REFRESH_MHZ,
        }
    }
}

/// What a mode change takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModeChange {
    /// Nothing to do: the size is already right (a refresh-only change is not expressible:
    /// KWin's virtual outputs run at 60 Hz).
    Keep,
    /// Close the stream (KWin removes its output) and open a new one at the new size. KWin 5.27
    /// has no request to resize a virtual output: the protocol takes the size only when the
    /// stream is made, and the output it makes has exactly one mode (drm_virtual_output.cpp),
    /// so `kde_output_management_v2` has no other mode to switch to either.
    Recreate,
}

/// Keep or recreate, from the current mode and the wanted one.
pub fn plan_mode_change(current: DisplayMode, wanted: DisplayMode) -> ModeChange {
    if (current.width, current.height) == (wanted.width, wanted.height) {
        ModeChange::Keep
    } else {
        ModeChange::Recreate
    }
}

/// A screencast stream's events (`zkde_screencast_stream_unstable_v1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamEvent {
    /// `created(node)`: the PipeWire node id of the stream.
    Created(u32),
    /// `failed(error)`: KWin's (translated) reason; no `created` follows.
    Failed(String),
    /// `closed`: KWin stopped the stream (its output went away, PipeWire failed).
    Closed,
}

/// Where a screencast stream is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamState {
    /// Requested, no answer yet.
    Pending,
    /// Streaming from this PipeWire node.
    Created(u32),
    /// KWin refused it, with its reason.
    Failed(String),
    /// KWin ended it (after `created`, or instead of it).
    Closed,
}

impl StreamState {
    /// The state after `event`. A `failed` or `closed` stream stays ended whatever follows; a
    /// second `created` (not in the protocol) keeps the first node.
    pub fn on_event(&self, event: StreamEvent) -> Self {
        match (self, event) {
            (Self::Failed(_) | Self::Closed, _) => self.clone(),
            (Self::Pending, StreamEvent::Created(node)) => Self::Created(node),
            (Self::Created(node), StreamEvent::Created(_)) => Self::Created(*node),
            (_, StreamEvent::Failed(why)) => Self::Failed(why),
            (_, StreamEvent::Closed) => Self::Closed,
        }
    }

    /// Whether the stream will not produce (more) frames.
    pub fn ended(&self) -> bool {
        matches!(self, Self::Failed(_) | Self::Closed)
    }
}

/// An output's place in KWin's global (logical) coordinate space, from `xdg_output`'s
/// `logical_position` and `logical_size`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct OutputGeometry {
    /// Left edge.
    pub x: i32,
    /// Top edge.
    pub y: i32,
    /// Width in logical pixels.
    pub width: i32,
    /// Height in logical pixels.
    pub height: i32,
}

impl OutputGeometry {
    /// The global point for `(x, y)` on a `ref_width`×`ref_height` surface (the client's
    /// screen) stretched over this output; points beyond the surface are clamped to the output,
    /// and the far edge maps to the last pixel (KWin would otherwise put the pointer onto the
    /// next output). `None` for an empty surface or output.
    pub fn map(&self, x: f64, y: f64, ref_width: u32, ref_height: u32) -> Option<(f64, f64)> {
        if ref_width == 0 || ref_height == 0 || self.width <= 0 || self.height <= 0 {
            return None;
        }
        let fx = (x / f64::from(ref_width)).clamp(0.0, 1.0);
        let fy = (y / f64::from(ref_height)).clamp(0.0, 1.0);
        let (w, h) = (f64::from(self.width), f64::from(self.height));
        let gx = f64::from(self.x) + (fx * w).min(w - 1.0);
        let gy = f64::from(self.y) + (fy * h).min(h - 1.0);
        Some((gx, gy))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_carry_the_size_and_name_kwin_will_use() {
        let r = VirtualOutputRequest::new("pf-3", DisplayMode::new(1280, 720, 120)).unwrap();
        assert_eq!((r.width, r.height, r.scale), (1280, 720, 1.0));
        assert_eq!(r.pointer.wire(), 2);
        assert_eq!(r.output_name(), "Virtual-pf-3");
        // The refresh rate asked for is not what KWin makes.
        assert_eq!(r.resulting_mode(), DisplayMode::new(1280, 720, 60));
    }

    #[test]
    fn bad_names_and_modes_are_refused() {
        let m = DisplayMode::new(1280, 720, 60);
        for bad in ["", "has space", "ünï", &"x".repeat(65)] {
            assert_eq!(
                VirtualOutputRequest::new(bad, m),
                Err(PlanError::Name(bad.to_owned()))
            );
        }
        let zero = DisplayMode::new(0, 720, 60);
        assert_eq!(
            VirtualOutputRequest::new("pf", zero),
            Err(PlanError::Mode(zero))
        );
    }

    #[test]
    fn only_a_new_size_recreates() {
        let hd = DisplayMode::new(1280, 720, 60);
        assert_eq!(plan_mode_change(hd, hd), ModeChange::Keep);
        assert_eq!(
            plan_mode_change(hd, DisplayMode::new(1280, 720, 120)),
            ModeChange::Keep
        );
        assert_eq!(
            plan_mode_change(hd, DisplayMode::new(1920, 1080, 60)),
            ModeChange::Recreate
        );
    }

    #[test]
    fn stream_states_follow_the_events_and_stay_ended() {
        let s = StreamState::Pending;
        assert!(!s.ended());
        let s = s.on_event(StreamEvent::Created(42));
        assert_eq!(s, StreamState::Created(42));
        assert_eq!(
            s.on_event(StreamEvent::Created(7)),
            StreamState::Created(42)
        );
        let closed = s.on_event(StreamEvent::Closed);
        assert!(closed.ended());
        assert_eq!(
            closed.on_event(StreamEvent::Created(9)),
            StreamState::Closed
        );
        let failed =
            StreamState::Pending.on_event(StreamEvent::Failed("Could not find output".into()));
        assert_eq!(failed, StreamState::Failed("Could not find output".into()));
        assert_eq!(failed.on_event(StreamEvent::Closed), failed);
    }

    #[test]
    fn surface_points_map_onto_the_output_in_global_coordinates() {
        // A 1280x720 output placed right of a 1024x768 one.
        let g = OutputGeometry {
            x: 1024,
            y: 0,
            width: 1280,
            height: 720,
        };
        assert_eq!(g.map(0.0, 0.0, 1280, 720), Some((1024.0, 0.0)));
        assert_eq!(g.map(640.0, 360.0, 1280, 720), Some((1664.0, 360.0)));
        // A client reference size of another scale: 1920x1080 onto 1280x720.
        assert_eq!(g.map(960.0, 540.0, 1920, 1080), Some((1664.0, 360.0)));
        // The far edge and beyond stay on the last pixel of this output.
        assert_eq!(g.map(1280.0, 720.0, 1280, 720), Some((2303.0, 719.0)));
        assert_eq!(g.map(5000.0, -3.0, 1280, 720), Some((2303.0, 0.0)));
        assert_eq!(g.map(1.0, 1.0, 0, 720), None);
        assert_eq!(OutputGeometry::default().map(1.0, 1.0, 10, 10), None);
    }
}
