//! Where a GameStream session's picture and sound come from (act): the [`MediaFactory`]
//! `serve` hands the streaming side, chosen once at start from `[capture] source`.
//!
//! ```text
//!  [capture] source ─► choice::choose (pure: what was asked × what this session offers)
//!        │                 ▲ probe (act): $SWAYSOCK answers? $WAYLAND_DISPLAY exists?
//!        ▼
//!  TestMedia     pattern + encoder, tone + Opus                          (pattern.rs)
//!  WlrootsMedia  per stream: a sway headless output at the client's mode,
//!                wlr-screencopy → I420 → encoder; desktop sound         (wlroots.rs)
//!  PipeWireMedia per stream: its own capture of one PipeWire video node (`source =
//!                "pipewire"` + `pipewire_node`, or gamescope's `gamescope` node), scaled
//!                to the client's mode (feature `pipewire`)               (pipewire.rs)
//!  KwinMedia     per stream: a KWin virtual output at the client's size,
//!                PipeWire → I420 → encoder; fake input    (kwin.rs, feature `kwin`)
//!  desktop sound the default PipeWire sink's monitor → Opus (feature `pipewire`), else
//!                the tone                                                (audio.rs)
//!  MutterMedia   per stream: a Mutter virtual monitor (RemoteDesktop +
//!                ScreenCast RecordVirtual) at the client's mode, PipeWire
//!                → I420 → encoder; desktop sound (feature `mutter`)    (mutter.rs)
//! ```
//!
//! The encoder of every source is the process's [`encoders::table`] entry for the format the
//! client asked for (libx264/openh264, libx265, libaom-av1/libsvtav1: encoders.rs).
//!
//! `auto` takes a running sway when the process can reach one (its IPC socket answers and its
//! Wayland socket exists), else a Mutter whose `org.gnome.Mutter.ScreenCast` is on the session
//! bus (`$DBUS_SESSION_BUS_ADDRESS`; builds with the `mutter` feature), else the test
//! pattern, and logs why. An explicit source this host
//! cannot use is an error at start, not a silent fallback.

mod audio;
pub mod choice;
pub mod encoders;
#[cfg(feature = "kwin")]
mod kwin;
#[cfg(feature = "mutter")]
mod mutter;
mod pattern;
#[cfg(feature = "pipewire")]
mod pipewire;
mod wlroots;

use std::sync::Arc;

pub use choice::{KWIN_NOT_BUILT, MutterEndpoint, MutterMissing, Offered, SourceChoice, choose};
#[cfg(feature = "kwin")]
pub use kwin::KwinMedia;
#[cfg(feature = "mutter")]
pub use mutter::MutterMedia;
pub use pattern::TestMedia;
#[cfg(feature = "pipewire")]
pub use pipewire::PipeWireMedia;
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

/// What this process can reach for `asked`: `$SWAYSOCK`/`$WAYLAND_DISPLAY`, a Mutter
/// (`org.gnome.Mutter.ScreenCast` on `$DBUS_SESSION_BUS_ADDRESS`, when built with `mutter`),
/// and for the PipeWire sources their node on this process's daemon (`pipewire_node`: the
/// profile's `[capture] pipewire_node`).
pub fn probe(asked: SourceName, pipewire_node: Option<&str>) -> Offered {
    let node = match (asked, pipewire_node) {
        (SourceName::Gamescope, _) => probe_node("gamescope"),
        (SourceName::Pipewire, Some(n)) => probe_node(n),
        (SourceName::Pipewire, None) => Err("[capture] pipewire_node is not set".into()),
        _ => Err("not probed for this source".into()),
    };
    // Always probed (one bounded connect): `auto` may take it and `tune` lists it.
    #[cfg(feature = "mutter")]
    let mutter = MutterEndpoint::from_env().map_err(MutterMissing::Unreachable);
    #[cfg(not(feature = "mutter"))]
    let mutter = Err(MutterMissing::NotBuilt);
    // KWin only when asked for: probing connects to $WAYLAND_DISPLAY (`kwin_offered`).
    let kwin = if asked == SourceName::Kwin {
        kwin_offered()
    } else {
        Err("not probed for this source".into())
    };
    Offered {
        wlroots: WlrootsEndpoint::from_env(),
        mutter,
        node,
        kwin,
    }
}

/// The KWin `source = "kwin"` would use: the Wayland socket of a reachable KWin offering
/// virtual outputs, or why not (also when this build lacks the `kwin` feature).
pub fn kwin_offered() -> Result<std::path::PathBuf, String> {
    #[cfg(feature = "kwin")]
    return kwin::endpoint_from_env();
    #[cfg(not(feature = "kwin"))]
    return Err(choice::KWIN_NOT_BUILT.into());
}

#[cfg(feature = "pipewire")]
fn probe_node(node: &str) -> Result<String, String> {
    pipewire::probe(node)
}

#[cfg(not(feature = "pipewire"))]
fn probe_node(_node: &str) -> Result<String, String> {
    Err("this build has no PipeWire capture (build with --features pipewire)".into())
}

/// Looks at what this process can reach ([`probe`]) and picks the media for `asked`; an error
/// says why an explicit choice cannot be honoured. `pattern_noise`: the test pattern (when it
/// is the choice) fills the bitrate.
pub fn select(
    asked: SourceName,
    pipewire_node: Option<&str>,
    pattern_noise: bool,
) -> Result<Selected, String> {
    let offered = probe(asked, pipewire_node);
    let (choice, why) = choose(asked, &offered)?;
    let factory: Arc<dyn MediaFactory> = match &choice {
        SourceChoice::TestPattern => Arc::new(TestMedia {
            noise: pattern_noise,
        }),
        SourceChoice::Wlroots(endpoint) => Arc::new(WlrootsMedia::new(endpoint.clone())),
        #[cfg(feature = "mutter")]
        SourceChoice::Mutter(endpoint) => Arc::new(MutterMedia::connect(endpoint)?),
        #[cfg(not(feature = "mutter"))]
        SourceChoice::Mutter(_) => return Err(MutterMissing::NotBuilt.to_string()),
        #[cfg(feature = "pipewire")]
        SourceChoice::Node(node) => Arc::new(PipeWireMedia::new(node.clone())),
        #[cfg(not(feature = "pipewire"))]
        SourceChoice::Node(_) => unreachable!("probe_node never offers a node without PipeWire"),
        #[cfg(feature = "kwin")]
        SourceChoice::Kwin(socket) => Arc::new(KwinMedia::new(socket.clone())),
        #[cfg(not(feature = "kwin"))]
        SourceChoice::Kwin(_) => return Err(choice::KWIN_NOT_BUILT.into()),
    };
    Ok(Selected {
        factory,
        choice,
        why,
    })
}
