//! Where a GameStream session's picture and sound come from (act): the [`MediaFactory`]
//! `serve` hands the streaming side, chosen once at start from `[capture] source`.
//!
//! ```text
//!  [capture] source ─► choice::choose (pure: what was asked × what this session offers)
//!        │                 ▲ probe (act): $SWAYSOCK answers? $WAYLAND_DISPLAY exists?
//!        ▼
//!  TestMedia     pattern + openh264, tone + Opus                         (pattern.rs)
//!  WlrootsMedia  per stream: a sway headless output at the client's mode,
//!                wlr-screencopy → I420 → openh264; desktop sound         (wlroots.rs)
//!  desktop sound the default PipeWire sink's monitor → Opus (feature `pipewire`), else
//!                the tone                                                (audio.rs)
//! ```
//!
//! `auto` takes a running sway when the process can reach one (its IPC socket answers and its
//! Wayland socket exists), else the test pattern, and logs why. An explicit source this host
//! cannot use is an error at start, not a silent fallback.

mod audio;
pub mod choice;
mod pattern;
mod wlroots;

use std::sync::Arc;

pub use choice::{Offered, SourceChoice, choose};
pub use pattern::TestMedia;
pub use wlroots::{WlrootsEndpoint, WlrootsMedia};

use punktfunk_tuning::SourceName;

use crate::stream::session::MediaFactory;

/// The media `serve` streams, and why it was chosen.
pub struct Selected {
    /// The factory.
    pub factory: Arc<dyn MediaFactory>,
    /// What was chosen.
    pub choice: SourceChoice,
    /// Why, for the log.
    pub why: String,
}

impl std::fmt::Debug for Selected {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Selected")
            .field("choice", &self.choice)
            .field("why", &self.why)
            .finish_non_exhaustive()
    }
}

/// Looks at what this process can reach (`$SWAYSOCK`, `$WAYLAND_DISPLAY`) and picks the media
/// for `asked`; an error says why an explicit choice cannot be honoured.
pub fn select(asked: SourceName) -> Result<Selected, String> {
    let offered = Offered {
        wlroots: WlrootsEndpoint::from_env(),
    };
    let (choice, why) = choose(asked, &offered)?;
    let factory: Arc<dyn MediaFactory> = match &choice {
        SourceChoice::TestPattern => Arc::new(TestMedia),
        SourceChoice::Wlroots(endpoint) => Arc::new(WlrootsMedia::new(endpoint.clone())),
    };
    Ok(Selected {
        factory,
        choice,
        why,
    })
}
