//! Every profile shipped in `tuning/*.toml` loads (so a broken profile fails CI), and broken
//! files give errors that name the file, the key and the reason.

use std::fs;
use std::path::{Path, PathBuf};

use punktfunk_engine::config::{Backpressure, SendPathPreference, StageCores};
use punktfunk_tuning::{Settings, TuningError, load, parse};

fn shipped_profiles() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut found: Vec<PathBuf> = fs::read_dir(dir)
        .expect("the crate directory is readable")
        .map(|e| e.expect("the crate directory is readable").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .filter(|p| p.file_name().is_some_and(|n| n != "Cargo.toml"))
        .collect();
    found.sort();
    found
}

#[test]
fn every_shipped_profile_loads() {
    let profiles = shipped_profiles();
    let names: Vec<_> = profiles
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for expected in ["default.toml", "low-latency.toml", "multi-gigabit.toml"] {
        assert!(
            names.iter().any(|n| n == expected),
            "{expected} missing from {names:?}"
        );
    }
    for path in &profiles {
        // Against the real machine (warnings allowed: a 4-core profile on a 2-core box)...
        let loaded = load(path).unwrap_or_else(|e| panic!("{e}"));
        for w in &loaded.warnings {
            eprintln!("{}: {w}", path.display());
        }
        // ...and against a machine big enough for every shipped profile, which must be clean.
        let text = fs::read_to_string(path).unwrap();
        let big: Vec<usize> = (0..64).collect();
        let clean = parse(&text, path, Some(&big)).unwrap();
        assert!(
            clean.warnings.is_empty(),
            "{}: {:?}",
            path.display(),
            clean.warnings
        );
        assert_eq!(clean.settings, loaded.settings);
    }
}

#[test]
fn default_profile_spells_out_the_built_in_defaults() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("default.toml");
    assert_eq!(load(&path).unwrap().settings, Settings::default());
}

#[test]
fn multi_gigabit_profile_pins_and_uses_gso() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("multi-gigabit.toml");
    let s = parse(&fs::read_to_string(&path).unwrap(), &path, None)
        .unwrap()
        .settings;
    assert_eq!(
        s.pipeline.cores,
        StageCores {
            capture: Some(0),
            encode: Some(1),
            fec: Some(2),
            send: Some(3)
        }
    );
    assert_eq!(s.send.path, SendPathPreference::UringGso);
    assert_eq!(s.pipeline.backpressure, Backpressure::DropOldest);
    // On a two-core machine the pinning of fec and send is a warning, not an error.
    let two = parse(&fs::read_to_string(&path).unwrap(), &path, Some(&[0, 1])).unwrap();
    let fields: Vec<_> = two.warnings.iter().map(|w| w.field).collect();
    assert_eq!(fields, ["pipeline.cores.fec", "pipeline.cores.send"]);
}

/// Writes `text` to a file in this test's scratch directory.
fn scratch(name: &str, text: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("tuning-profiles");
    fs::create_dir_all(&dir).expect("the target directory is writable");
    let path = dir.join(name);
    fs::write(&path, text).expect("the target directory is writable");
    path
}

#[test]
fn missing_file_names_the_path() {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-such-profile.toml");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, TuningError::Read { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("cannot read profile"), "{msg}");
}

#[test]
fn syntax_errors_name_file_and_line() {
    let path = scratch("syntax.toml", "[pipeline]\nring_depth = = 3\n");
    let err = load(&path).unwrap_err();
    assert!(matches!(err, TuningError::Parse { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("line 2"), "{msg}");
}

#[test]
fn unknown_keys_are_errors_naming_the_key() {
    let path = scratch("typo.toml", "[send]\nzero_copy = true\nbusy_pol = true\n");
    let msg = load(&path).unwrap_err().to_string();
    assert!(msg.starts_with(&path.display().to_string()), "{msg}");
    assert!(msg.contains("busy_pol"), "{msg}");
    assert!(msg.contains("line 3"), "{msg}");
}

#[test]
fn wrong_types_and_names_are_errors() {
    for (name, text, needle) in [
        (
            "type.toml",
            "[pipeline]\nring_depth = \"four\"\n",
            "ring_depth",
        ),
        (
            "negative.toml",
            "[send]\nsocket_send_buffer = -1\n",
            "socket_send_buffer",
        ),
        ("path.toml", "[send]\npath = \"io_uring\"\n", "io_uring"),
        ("codec.toml", "[video]\ncodec = \"vp9\"\n", "vp9"),
        ("core.toml", "[pipeline]\ncores = { gpu = 1 }\n", "gpu"),
    ] {
        let path = scratch(name, text);
        let err = load(&path).unwrap_err();
        assert!(matches!(err, TuningError::Parse { .. }), "{name}: {err:?}");
        assert!(err.to_string().contains(needle), "{name}: {err}");
    }
}

#[test]
fn out_of_range_values_name_file_key_and_reason() {
    let path = scratch(
        "range.toml",
        "[pipeline]\nring_depth = 0\n[pacing]\nframe_share = 1.5\n[send]\nring_entries = 0\n",
    );
    let err = load(&path).unwrap_err();
    let TuningError::Invalid { path: p, problems } = &err else {
        panic!("{err:?}")
    };
    assert_eq!(p, &path);
    let fields: Vec<_> = problems.iter().map(|p| p.field).collect();
    assert_eq!(
        fields,
        [
            "pipeline.ring_depth",
            "send.ring_entries",
            "pacing.frame_share"
        ]
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with(&format!(
            "{}: pipeline.ring_depth: must be at least 1",
            path.display()
        )),
        "{msg}"
    );
    assert!(
        msg.contains("pacing.frame_share: must be in (0, 1], or 0 to turn pacing off; got 1.5")
    );
}
