//! The shipped systemd units (tuning/systemd/) are units systemd accepts: `systemd-analyze
//! verify` with the binary path pointed at an executable that exists here, and no warning
//! (an unknown or misspelt key is only a warning to systemd, so stderr must stay empty).

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

use std::path::Path;
use std::process::Command;

#[test]
fn shipped_units_verify_cleanly() {
    let Ok(version) = Command::new("systemd-analyze").arg("--version").output() else {
        skip::skip("systemd", "systemd-analyze is not installed");
        return;
    };
    assert!(version.status.success());
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("systemd");
    let tmp = std::env::temp_dir().join(format!("pf-units-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let mut seen = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "service") {
            continue;
        }
        seen += 1;
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("ExecStart=/usr/local/bin/punktfunk serve"),
            "{}",
            path.display()
        );
        // Every limit the profile's defaults need is granted (docs/tuning.md).
        for key in [
            "LimitNICE=-10",
            "LimitMEMLOCK=infinity",
            "Restart=on-failure",
        ] {
            assert!(text.contains(key), "{}: {key}", path.display());
        }
        let copy = tmp.join(path.file_name().unwrap());
        std::fs::write(
            &copy,
            text.replace("/usr/local/bin/punktfunk", "/usr/bin/true"),
        )
        .unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&copy)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(
            out.status.success() && err.trim().is_empty(),
            "{}: {err}",
            path.display()
        );
    }
    assert_eq!(seen, 2, "a user and a system unit");
    // The check itself notices a misspelt key.
    let bad = tmp.join("bad.service");
    std::fs::write(&bad, "[Service]\nExecStart=/usr/bin/true\nLimitNICEE=5\n").unwrap();
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(&bad)
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("LimitNICEE"));
    let _ = std::fs::remove_dir_all(&tmp);
}
