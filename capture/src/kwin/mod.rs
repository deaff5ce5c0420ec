//! KWin (KDE Plasma) desktops (cargo feature `kwin`): a virtual output per session made with
//! `zkde_screencast_unstable_v1`, its frames from the PipeWire node KWin streams it to, and
//! input through `org_kde_kwin_fake_input`.
//!
//! ```text
//!  KwinDisplay ──stream_virtual_output(name, W, H)──► KWin: output "Virtual-<name>" + PipeWire
//!      │                                               stream ─► created(node id)
//!      └─ NodeWatch(node) ─► KwinCapture ─► PipeWireCapture(Target::Id(node)) ─► BGRx frames
//!  KwinInput ──fake_input: authenticate, pointer_motion_absolute(global x, y), button, axis,
//!              keyboard_key, touch_*──► KWin's seat (positions mapped onto the output)
//! ```
//!
//! * [`plan`] (pure): the request for a mode, KWin's output name, keep-or-recreate on a mode
//!   change, a stream's state from its events, surface → global coordinates.
//! * `wl` (act): the Wayland connection, registry, outputs (xdg_output names and geometry),
//!   dispatch with deadlines.
//! * [`display`] (act): [`KwinDisplay`] (a [`crate::display::VirtualDisplay`]) and
//!   [`KwinStream`] (a stream of an output or a window that exists already).
//! * [`capture`] (act): [`KwinCapture`], a [`crate::display::FrameSource`].
//! * [`input`] (act): [`KwinInput`].
//!
//! Protocol versions: KWin 5.27 (Debian 12) offers `zkde_screencast_unstable_v1` v3 and
//! `org_kde_kwin_fake_input` v4; both are KWin-private and hidden from clients not granted them
//! (see [`input`]). What ran where, and what KWin 5.27's `--virtual` backend cannot do (make
//! virtual outputs): docs/capture.md, "KWin (KDE)".

pub mod capture;
pub mod display;
pub mod input;
pub mod plan;
mod wl;

use std::path::Path;
use std::time::Duration;

use thiserror::Error;

pub use capture::KwinCapture;
pub use display::{KwinDisplay, KwinStream, NodeWatch};
pub use input::{KwinAxis, KwinInput};
pub use plan::{OutputGeometry, PlanError};

use crate::display::{CaptureError, DisplayError};

/// Errors of the KWin backend. Keeps apart what KWin refused (with its reason), what it lacks,
/// a connection that broke, and local misuse.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum KwinError {
    /// The socket failed (OS I/O).
    #[error("KWin connection: {0}")]
    Io(#[from] std::io::Error),
    /// The connection broke or KWin raised a protocol error.
    #[error("KWin protocol: {0}")]
    Protocol(String),
    /// KWin lacks (or does not offer this client) a global or a version this needs.
    #[error("KWin does not offer {0}")]
    Unsupported(String),
    /// KWin answered the stream request with `failed`, with its reason (KWin 5.27's
    /// `--virtual` backend: "Could not find output").
    #[error("KWin refused the stream: {0}")]
    Refused(String),
    /// KWin closed the stream (its output went away), or it was closed here.
    #[error("KWin closed the stream")]
    Closed,
    /// No output of that name (or it went away).
    #[error("output {0} not found or gone")]
    OutputGone(String),
    /// An output of the name asked for exists already.
    #[error("an output named {0} exists already")]
    NameTaken(String),
    /// KWin did not answer within the deadline.
    #[error("KWin did not answer within {0:?}")]
    Timeout(Duration),
    /// The request cannot be made (local misuse).
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// Capturing the stream's PipeWire node failed.
    #[error("PipeWire: {0}")]
    PipeWire(#[from] crate::pipewire::CaptureError),
}

/// What a KWin at a socket offers this client (from [`probe`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KwinOffer {
    /// `zkde_screencast_unstable_v1` version bound (≥ 2 has `stream_virtual_output`).
    pub screencast: Option<u32>,
    /// `org_kde_kwin_fake_input` version bound (≥ 4 has `keyboard_key`).
    pub fake_input: Option<u32>,
    /// Outputs by name, with their global geometry.
    pub outputs: Vec<(String, OutputGeometry)>,
}

impl KwinOffer {
    /// Whether virtual outputs can be asked for (KWin may still refuse them: its backend
    /// decides, see [`display`]).
    pub fn virtual_outputs(&self) -> bool {
        self.screencast.is_some_and(|v| v >= 2)
    }
}

/// Connects to the Wayland socket at `socket` and reports what it offers (two round trips
/// within `timeout`). A compositor that is not KWin answers with neither protocol.
pub fn probe(socket: &Path, timeout: Duration) -> Result<KwinOffer, KwinError> {
    let wl = wl::Wl::connect(socket, timeout)?;
    Ok(KwinOffer {
        screencast: wl.state.screencast.as_ref().map(|(_, v)| *v),
        fake_input: wl.state.fake_input.as_ref().map(|(_, v)| *v),
        outputs: wl
            .state
            .outputs
            .iter()
            .filter_map(|o| Some((o.name.clone()?, o.geometry)))
            .collect(),
    })
}

/// KWin's internal ids (uuids) of the windows mapped now, oldest first, from
/// `org_kde_plasma_window_management` (v13+: `window_with_uuid`); what
/// [`KwinStream::window`] takes.
pub fn window_uuids(socket: &Path, timeout: Duration) -> Result<Vec<String>, KwinError> {
    let mut wl = wl::Wl::connect_with(socket, timeout, true)?;
    if wl.state.window_management.is_none() {
        return Err(KwinError::Unsupported(
            "org_kde_plasma_window_management v13".into(),
        ));
    }
    wl.sync()?; // the windows announced on bind
    Ok(std::mem::take(&mut wl.state.windows))
}

impl From<KwinError> for DisplayError {
    fn from(e: KwinError) -> Self {
        match e {
            KwinError::Io(e) => Self::Io(e),
            KwinError::Refused(why) => Self::Refused {
                command: "zkde_screencast_unstable_v1.stream_virtual_output".into(),
                reason: why,
            },
            KwinError::Unsupported(what) => Self::Unsupported(what),
            KwinError::OutputGone(name) => Self::Gone(name),
            KwinError::Plan(PlanError::Mode(m)) => Self::InvalidMode(m),
            other => Self::Protocol(other.to_string()),
        }
    }
}

impl From<KwinError> for CaptureError {
    fn from(e: KwinError) -> Self {
        match e {
            KwinError::Io(e) => Self::Io(e),
            KwinError::Unsupported(what) => Self::Unsupported(what),
            KwinError::OutputGone(name) => Self::OutputGone(name),
            KwinError::Closed => Self::OutputGone("KWin stream closed".into()),
            KwinError::Timeout(t)
            | KwinError::PipeWire(crate::pipewire::CaptureError::Timeout(t)) => Self::Timeout(t),
            KwinError::PipeWire(crate::pipewire::CaptureError::ProducerGone) => {
                Self::OutputGone("KWin's PipeWire node".into())
            }
            other => Self::Protocol(other.to_string()),
        }
    }
}
