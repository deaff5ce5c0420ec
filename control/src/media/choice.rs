//! Which source a session's picture comes from (decides; pure): what the profile asks for
//! against what this process found it can reach.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use punktfunk_tuning::SourceName;

use super::wlroots::WlrootsEndpoint;

/// Where a Mutter's ScreenCast/RemoteDesktop services answer: the session bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MutterEndpoint {
    /// The D-Bus address (`$DBUS_SESSION_BUS_ADDRESS`).
    pub bus: String,
    /// The PipeWire daemon Mutter streams into: `None` is this process's default
    /// (`$PIPEWIRE_REMOTE`, else `$XDG_RUNTIME_DIR/pipewire-0`), what a GNOME session shares.
    pub pipewire: Option<String>,
}

/// Why Mutter cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MutterMissing {
    /// This binary was built without the `mutter` cargo feature.
    NotBuilt,
    /// Built in, but no Mutter answers (why).
    Unreachable(String),
}

impl std::fmt::Display for MutterMissing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::NotBuilt => f.write_str(
                "this build has no Mutter support (build punktfunk-control with --features mutter)",
            ),
            Self::Unreachable(why) => f.write_str(why),
        }
    }
}
/// Why KWin is not offered by a build without the `kwin` cargo feature.
pub const KWIN_NOT_BUILT: &str =
    "this build has no KWin backend (build punktfunk-control with --features kwin)";

/// What the process found (the caller probes; this module only decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// A sway to drive, or why not.
    pub wlroots: Result<WlrootsEndpoint, String>,
    /// A Mutter to drive, or why not.
    pub mutter: Result<MutterEndpoint, MutterMissing>,
    /// The PipeWire video node the asked source would capture (`[capture] pipewire_node`, or
    /// gamescope's `gamescope` node), found on this process's daemon; or why not (the build
    /// lacks the `pipewire` feature, no daemon, no such node, not probed for this source).
    pub node: Result<String, String>,
    /// The Wayland socket of a KWin offering virtual outputs, or why not ([`KWIN_NOT_BUILT`]
    /// when the build lacks the backend).
    pub kwin: Result<PathBuf, String>,
}

/// The source chosen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceChoice {
    /// The built-in test pattern.
    TestPattern,
    /// A headless output per session on this sway.
    Wlroots(WlrootsEndpoint),
    /// A virtual monitor per session on this Mutter.
    Mutter(MutterEndpoint),
    /// Every session captures this PipeWire video node (`node.name` or id), scaled to its
    /// mode: `source = "pipewire"` (a portal screencast, a camera…) or `"gamescope"` (its
    /// `gamescope` node).
    Node(String),
    /// A virtual output per session on the KWin at this Wayland socket.
    Kwin(PathBuf),
}

/// Picks the source for `asked` among `offered`, with the reason (for the log), or says why
/// an explicit choice cannot be honoured.
pub fn choose(asked: SourceName, offered: &Offered) -> Result<(SourceChoice, String), String> {
    match asked {
        SourceName::TestPattern => Ok((
            SourceChoice::TestPattern,
            "capture.source = \"test-pattern\"".into(),
        )),
        SourceName::Wlroots => match &offered.wlroots {
            Ok(e) => Ok((
                SourceChoice::Wlroots(e.clone()),
                format!("capture.source = \"wlroots\": sway at {}", e.ipc.display()),
            )),
            Err(why) => Err(format!(
                "capture.source = \"wlroots\" but no sway can be reached: {why}"
            )),
        },
        SourceName::Mutter => match &offered.mutter {
            Ok(e) => Ok((
                SourceChoice::Mutter(e.clone()),
                format!(
                    "capture.source = \"mutter\": org.gnome.Mutter.ScreenCast on {}",
                    e.bus
                ),
            )),
            Err(MutterMissing::NotBuilt) => Err(format!(
                "capture.source = \"mutter\" but {}",
                MutterMissing::NotBuilt
            )),
            Err(MutterMissing::Unreachable(why)) => Err(format!(
                "capture.source = \"mutter\" but no Mutter can be reached: {why}"
            )),
        },
        SourceName::Auto => match (&offered.wlroots, &offered.mutter) {
            (Ok(e), _) => Ok((
                SourceChoice::Wlroots(e.clone()),
                format!(
                    "capture.source = \"auto\": a sway answers at {} (a headless output per \
                     session)",
                    e.ipc.display()
                ),
            )),
            (Err(sway), Ok(e)) => Ok((
                SourceChoice::Mutter(e.clone()),
                format!(
                    "capture.source = \"auto\": no sway ({sway}); Mutter's ScreenCast answers \
                     on {} (a virtual monitor per session)",
                    e.bus
                ),
            )),
            (Err(sway), Err(mutter)) => Ok((
                SourceChoice::TestPattern,
                format!(
                    "capture.source = \"auto\": no compositor to capture (sway: {sway}; mutter: \
                     {mutter}); test pattern"
                ),
            )),
        },
        SourceName::Pipewire | SourceName::Gamescope => {
            let name = if asked == SourceName::Gamescope {
                "gamescope"
            } else {
                "pipewire"
            };
            match &offered.node {
                Ok(node) => Ok((
                    SourceChoice::Node(node.clone()),
                    format!("capture.source = \"{name}\": PipeWire node {node}"),
                )),
                Err(why) => Err(format!(
                    "capture.source = \"{name}\" but its PipeWire node cannot be captured: {why}"
                )),
            }
        }
        SourceName::Kwin => match &offered.kwin {
            Ok(socket) => Ok((
                SourceChoice::Kwin(socket.clone()),
                format!("capture.source = \"kwin\": KWin at {}", socket.display()),
            )),
            Err(why) => Err(format!("capture.source = \"kwin\" but {why}")),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn sway() -> WlrootsEndpoint {
        WlrootsEndpoint {
            ipc: PathBuf::from("/run/user/1000/sway-ipc.1000.42.sock"),
            wayland: PathBuf::from("/run/user/1000/wayland-1"),
        }
    }

    fn mutter() -> MutterEndpoint {
        MutterEndpoint {
            bus: "unix:path=/run/user/1000/bus".into(),
            pipewire: None,
        }
    }

    fn no_mutter() -> Result<MutterEndpoint, MutterMissing> {
        Err(MutterMissing::Unreachable(
            "org.gnome.Mutter.ScreenCast is not on the session bus".into(),
        ))
    }

    #[test]
    fn auto_takes_a_reachable_sway_else_the_pattern() {
        let with = Offered {
            wlroots: Ok(sway()),
            mutter: no_mutter(),
            node: Err("not probed for auto".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let without = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            mutter: no_mutter(),
            node: Ok("xdpw".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let (c, why) = choose(SourceName::Auto, &with).unwrap();
        assert_eq!(c, SourceChoice::Wlroots(sway()));
        assert!(why.contains("sway-ipc"), "{why}");
        let (c, why) = choose(SourceName::Auto, &without).unwrap();
        assert_eq!(c, SourceChoice::TestPattern);
        assert!(why.contains("SWAYSOCK is not set"), "{why}");
    }

    #[test]
    fn explicit_choices_are_honoured_or_refused_with_the_reason() {
        let without = Offered {
            wlroots: Err("no answer on /x.sock: connection refused".into()),
            mutter: Err(MutterMissing::NotBuilt),
            node: Err("no PipeWire video node with node.name=gamescope".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let with = Offered {
            wlroots: Ok(sway()),
            mutter: Ok(mutter()),
            node: Ok("42".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        assert_eq!(
            choose(SourceName::TestPattern, &with).unwrap().0,
            SourceChoice::TestPattern
        );
        let e = choose(SourceName::Wlroots, &without).unwrap_err();
        assert!(e.contains("connection refused"), "{e}");
        let (c, why) = choose(SourceName::Pipewire, &with).unwrap();
        assert_eq!(c, SourceChoice::Node("42".into()));
        assert!(why.contains("PipeWire node 42"), "{why}");
        let e = choose(SourceName::Gamescope, &without).unwrap_err();
        assert!(
            e.contains("\"gamescope\"") && e.contains("node.name=gamescope"),
            "{e}"
        );
    }

    #[test]
    fn auto_prefers_sway_then_mutter_then_the_pattern() {
        let both = Offered {
            wlroots: Ok(sway()),
            mutter: Ok(mutter()),
            node: Err("not probed".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        assert_eq!(
            choose(SourceName::Auto, &both).unwrap().0,
            SourceChoice::Wlroots(sway())
        );
        let only_mutter = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            mutter: Ok(mutter()),
            node: Err("not probed".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let (c, why) = choose(SourceName::Auto, &only_mutter).unwrap();
        assert_eq!(c, SourceChoice::Mutter(mutter()));
        assert!(
            why.contains("SWAYSOCK") && why.contains("/run/user/1000/bus"),
            "{why}"
        );
        let neither = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            mutter: Err(MutterMissing::NotBuilt),
            node: Err("not probed".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let (c, why) = choose(SourceName::Auto, &neither).unwrap();
        assert_eq!(c, SourceChoice::TestPattern);
        assert!(why.contains("--features mutter"), "{why}");
    }

    #[test]
    fn mutter_is_honoured_or_refused_saying_which_part_is_missing() {
        let reachable = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            mutter: Ok(mutter()),
            node: Err("not probed".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        assert_eq!(
            choose(SourceName::Mutter, &reachable).unwrap().0,
            SourceChoice::Mutter(mutter())
        );
        let not_built = Offered {
            mutter: Err(MutterMissing::NotBuilt),
            ..reachable.clone()
        };
        let e = choose(SourceName::Mutter, &not_built).unwrap_err();
        assert!(
            e.contains("no Mutter support") && e.contains("--features mutter"),
            "{e}"
        );
        let unreachable = Offered {
            mutter: no_mutter(),
            ..reachable
        };
        let e = choose(SourceName::Mutter, &unreachable).unwrap_err();
        assert!(
            e.contains("cannot be reached") || e.contains("can be reached"),
            "{e}"
        );
        assert!(e.contains("not on the session bus"), "{e}");
    }

    #[test]
    fn kwin_is_taken_when_reachable_else_refused_saying_why() {
        let socket = PathBuf::from("/run/user/1000/wayland-0");
        let reachable = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            node: Err("not probed for kwin".into()),
            kwin: Ok(socket.clone()),
            mutter: Err(MutterMissing::NotBuilt),
        };
        let (c, why) = choose(SourceName::Kwin, &reachable).unwrap();
        assert_eq!(c, SourceChoice::Kwin(socket));
        assert!(why.contains("wayland-0"), "{why}");
        // Not built, and built but not reachable, say so differently.
        let not_built = Offered {
            kwin: Err(KWIN_NOT_BUILT.into()),
            ..reachable.clone()
        };
        let e = choose(SourceName::Kwin, &not_built).unwrap_err();
        assert!(e.contains("--features kwin"), "{e}");
        let unreachable = Offered {
            kwin: Err("$WAYLAND_DISPLAY is not set".into()),
            ..reachable
        };
        let e = choose(SourceName::Kwin, &unreachable).unwrap_err();
        assert!(e.contains("WAYLAND_DISPLAY is not set"), "{e}");
    }
}
