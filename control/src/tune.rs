//! `punktfunk tune [check|apply]`: load a tuning profile and report how this machine fits it
//! (every finding with the command that fixes it), or make the safe fixes (docs/tuning.md
//! "punktfunk tune").

use std::fmt::Write as _;
use std::path::Path;

use punktfunk_engine::fec::Kernel;
use punktfunk_tuning::{Level, Loaded, TuningError};

/// Loads `profile` (or the built-in defaults when `None`) and renders the report: profile
/// warnings, the FEC kernel this CPU selects, and every system finding. Returns the text and
/// whether any finding is a warning (the profile cannot be honoured as written).
pub fn report(profile: Option<&Path>) -> Result<(String, bool), TuningError> {
    Ok(render(&load(profile)?))
}

fn load(profile: Option<&Path>) -> Result<Loaded, TuningError> {
    match profile {
        Some(p) => punktfunk_tuning::load(p),
        None => punktfunk_tuning::parse("", Path::new("<built-in defaults>"), None),
    }
}

/// `punktfunk tune apply`: makes every fix the checks mark as safe (sysctl limits, NIC ring
/// sizes, interrupts off the stage cores), then checks again. Returns the report of what
/// changed and what remains, and whether warnings remain. Needs root; without it nothing is
/// changed and the text says so.
pub fn apply(profile: Option<&Path>) -> Result<(String, bool), TuningError> {
    let loaded = load(profile)?;
    let mut out = String::new();
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    let fixes: Vec<_> = punktfunk_tuning::check_system(&loaded.settings)
        .into_iter()
        .filter_map(|f| f.fix.and_then(|x| x.apply).map(|a| (f.topic, a)))
        .collect();
    if fixes.is_empty() {
        let _ = writeln!(out, "apply: nothing to change");
    } else if !root {
        let _ = writeln!(
            out,
            "apply: {} fix(es) need root; run `sudo punktfunk tune apply`; nothing changed",
            fixes.len()
        );
    } else {
        for (topic, a) in &fixes {
            match punktfunk_tuning::apply(a) {
                Ok(what) => {
                    let _ = writeln!(out, "changed  {topic}: {what}");
                }
                Err(e) => {
                    let _ = writeln!(out, "failed   {topic}: {e}");
                }
            }
        }
    }
    let _ = writeln!(out, "after:");
    let (text, warned) = render(&loaded);
    out.push_str(&text);
    Ok((out, warned))
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
