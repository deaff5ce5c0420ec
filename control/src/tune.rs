//! `punktfunk tune`: load a tuning profile and report how this machine fits it.

use std::fmt::Write as _;
use std::path::Path;

use punktfunk_engine::fec::Kernel;
use punktfunk_tuning::{Level, Loaded, TuningError};

/// Loads `profile` (or the built-in defaults when `None`) and renders the report: profile
/// warnings, the FEC kernel this CPU selects, and every system finding. Returns the text and
/// whether any finding is a warning.
pub fn report(profile: Option<&Path>) -> Result<(String, bool), TuningError> {
    let loaded = match profile {
        Some(p) => punktfunk_tuning::load(p)?,
        None => punktfunk_tuning::parse("", Path::new("<built-in defaults>"), None)?,
    };
    Ok(render(&loaded))
}

fn render(loaded: &Loaded) -> (String, bool) {
    let mut out = String::new();
    let mut warned = false;
    let _ = writeln!(out, "profile: {}", loaded.path.display());
    for w in &loaded.warnings {
        warned = true;
        let _ = writeln!(out, "  warn  {w}");
    }
    let available: Vec<&str> = Kernel::available().map(Kernel::name).collect();
    let _ = writeln!(
        out,
        "fec: GF(2^8) kernel {} (available: {})",
        Kernel::detect(),
        available.join(", ")
    );
    for f in punktfunk_tuning::check_system(&loaded.settings) {
        warned |= f.level == Level::Warn;
        let _ = writeln!(out, "  {f}");
    }
    warned |= capture_backends(
        &mut out,
        loaded.settings.source,
        loaded.settings.pipewire_node.as_deref(),
    );
    (out, warned)
}

/// The capture backends this machine can use now, and what `[capture] source` picks; whether
/// the profile's choice cannot be honoured.
fn capture_backends(
    out: &mut String,
    asked: punktfunk_tuning::SourceName,
    pipewire_node: Option<&str>,
) -> bool {
    use punktfunk_tuning::SourceName;
    let offered = crate::media::probe(asked, pipewire_node);
    let _ = writeln!(out, "capture backends:");
    let _ = writeln!(out, "  ok    test-pattern: built in");
    match &offered.wlroots {
        Ok(e) => {
            let _ = writeln!(
                out,
                "  ok    wlroots: sway at {} (Wayland {})",
                e.ipc.display(),
                e.wayland.display()
            );
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "  no    wlroots: {why} (run serve inside a sway session, or export SWAYSOCK and WAYLAND_DISPLAY)"
            );
        }
    }
    match &offered.mutter {
        Ok(e) => {
            let _ = writeln!(
                out,
                "  ok    mutter: org.gnome.Mutter.ScreenCast on {}",
                e.bus
            );
        }
        Err(why) => {
            let _ = writeln!(
                out,
                "  no    mutter: {why} (run serve inside a GNOME session, or export DBUS_SESSION_BUS_ADDRESS)"
            );
        }
    }
    let kwin = if asked == SourceName::Kwin {
        offered.kwin.clone()
    } else {
        crate::media::kwin_offered()
    };
    match kwin {
        Ok(socket) => {
            let _ = writeln!(
                out,
                "  ok    kwin: KWin at {} offers virtual outputs (made by its DRM backend)",
                socket.display()
            );
        }
        Err(why) => {
            let _ = writeln!(out, "  no    kwin: {why}");
        }
    }
    let _ = writeln!(out, "  no    kwin: not a serve source in this build yet");
    // The PipeWire sources: probed for the profile's choice, described otherwise.
    for (source, name) in [
        (SourceName::Pipewire, "pipewire"),
        (SourceName::Gamescope, "gamescope"),
    ] {
        let line = if asked == source {
            match &offered.node {
                Ok(node) => format!("  ok    {name}: PipeWire node {node} found"),
                Err(why) => format!("  no    {name}: {why}"),
            }
        } else if cfg!(feature = "pipewire") {
            format!("  --    {name}: not probed (capture.source is not \"{name}\")")
        } else {
            format!("  no    {name}: this build has no PipeWire capture (--features pipewire)")
        };
        let _ = writeln!(out, "{line}");
    }
    match crate::media::choose(asked, &offered) {
        Ok((choice, why)) => {
            let _ = writeln!(out, "  source: {choice:?} ({why})");
            false
        }
        Err(e) => {
            let _ = writeln!(out, "  warn  source: {e}");
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_defaults_report() {
        let (text, _) = report(None).unwrap();
        assert!(text.contains("fec: GF(2^8) kernel"));
        assert!(text.contains("<built-in defaults>"));
        assert!(text.contains("capture backends:"), "{text}");
        assert!(text.contains("ok    test-pattern"), "{text}");
        assert!(text.contains("  source: "), "{text}");
    }

    #[test]
    fn missing_profile_is_an_error() {
        assert!(report(Some(Path::new("/nonexistent/profile.toml"))).is_err());
    }
}
