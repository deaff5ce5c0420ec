//! Which source a session's picture comes from (decides; pure): what the profile asks for
//! against what this process found it can reach.

#![forbid(unsafe_code)]

use std::path::PathBuf;

use punktfunk_tuning::SourceName;

use super::wlroots::WlrootsEndpoint;

/// Why KWin is not offered by a build without the `kwin` cargo feature.
pub const KWIN_NOT_BUILT: &str =
    "this build has no KWin backend (build punktfunk-control with --features kwin)";

/// What the process found (the caller probes; this module only decides).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offered {
    /// A sway to drive, or why not.
    pub wlroots: Result<WlrootsEndpoint, String>,
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
        SourceName::Auto => match &offered.wlroots {
            Ok(e) => Ok((
                SourceChoice::Wlroots(e.clone()),
                format!(
                    "capture.source = \"auto\": a sway answers at {} (a headless output per \
                     session)",
                    e.ipc.display()
                ),
            )),
            Err(why) => Ok((
                SourceChoice::TestPattern,
                format!(
                    "capture.source = \"auto\": no compositor to capture ({why}); test pattern"
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
        other => Err(format!(
            "capture.source = {:?} is not available in this build yet (issue 9); use \"auto\", \
             \"test-pattern\", \"wlroots\", \"pipewire\", \"gamescope\" or \"kwin\"",
            other
        )),
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

    #[test]
    fn auto_takes_a_reachable_sway_else_the_pattern() {
        let with = Offered {
            wlroots: Ok(sway()),
            node: Err("not probed for auto".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let without = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
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
            node: Err("no PipeWire video node with node.name=gamescope".into()),
            kwin: Err(KWIN_NOT_BUILT.into()),
        };
        let with = Offered {
            wlroots: Ok(sway()),
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
        let e = choose(SourceName::Mutter, &without).unwrap_err();
        assert!(e.contains("not available"), "{e}");
    }

    #[test]
    fn kwin_is_taken_when_reachable_else_refused_saying_why() {
        let socket = PathBuf::from("/run/user/1000/wayland-0");
        let reachable = Offered {
            wlroots: Err("$SWAYSOCK is not set".into()),
            node: Err("not probed for kwin".into()),
            kwin: Ok(socket.clone()),
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
