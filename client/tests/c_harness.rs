//! The C ABI from C: `tests/c/harness.c` is compiled with the system's `cc` against
//! `include/punktfunk_core.h` and `libpunktfunk_core.so`, then run against a real punktfunk/1
//! host (the listener `punktfunk serve` runs: pairing required, the test pattern through
//! openh264, FEC, AES-GCM, real UDP on 127.0.0.1). The harness pairs (answering the PIN
//! event), streams with the pull API, renegotiates, sends every kind of input, switches to
//! the callback API, and checks frames and statistics (harness.c says what exactly). It runs
//! twice: plain, and built with `-fsanitize=address` (AddressSanitizer and LeakSanitizer over
//! the harness and every call into the library).
//!
//! `tests/c/sansio.c` then does the same through the sans-IO half of the ABI: it owns both
//! UDP sockets and the clock and drives a `PfSession` and a `PfReceiver` with poll(2) (pairs,
//! streams, renegotiates, sends a key and loss reports, says Goodbye), plain and with ASan.
//!
//! The plain harness is also linked against the static library (with the system libraries
//! docs/client-abi.md lists), and the header is compiled as C++.
//!
//! Without a C compiler it is a listed skip (a failure under `CI=true`: scripts/setup.sh
//! installs gcc).

#![allow(clippy::unwrap_used, clippy::expect_used)] // a failed unwrap is a failed test

use std::path::{Path, PathBuf};
use std::process::Command;

use punktfunk_control::host::state::StateDir;
use punktfunk_control::pf1::Pin;
use punktfunk_control::pf1::listener::Listener;

mod support;
use support::{loopback_options, tempdir};

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}

/// target/<profile>/, where cargo puts `libpunktfunk_core.so` (the test runs from
/// target/<profile>/deps/).
fn library_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

/// Builds the cdylib (a no-op when `cargo test` already did) and returns its directory.
fn build_library() -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    // --lib builds every crate type: the cdylib and the staticlib too.
    cmd.args(["build", "-p", "punktfunk-client", "--lib"]);
    // Cargo's per-crate variables of this test would look like changed build inputs to
    // crates with build scripts (ring, openh264-sys2): they would rebuild on every run.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if k == "OUT_DIR"
            || k.starts_with("CARGO_PKG_")
            || k.starts_with("CARGO_BIN_")
            || k.starts_with("CARGO_MANIFEST_")
            || matches!(
                &*k,
                "CARGO_CRATE_NAME"
                    | "CARGO_PRIMARY_PACKAGE"
                    | "CARGO_TARGET_TMPDIR"
                    | "CARGO_RUSTC_CURRENT_DIR"
            )
        {
            cmd.env_remove(&*k);
        }
    }
    if !cfg!(debug_assertions) {
        cmd.arg("--release");
    }
    assert!(cmd.status().unwrap().success(), "cargo build --lib");
    let dir = library_dir();
    assert!(
        dir.join("libpunktfunk_core.so").is_file(),
        "{} has no libpunktfunk_core.so",
        dir.display()
    );
    dir
}

/// How the harness links the library.
#[derive(Clone, Copy, PartialEq)]
enum Link {
    /// `libpunktfunk_core.so`.
    Shared,
    /// `libpunktfunk_core.a` and the system libraries it needs (docs/client-abi.md).
    Static,
}

fn compile(out: &Path, lib: &Path, source: &str, asan: bool) -> Option<PathBuf> {
    compile_with(out, lib, source, asan, Link::Shared)
}

fn compile_with(out: &Path, lib: &Path, source: &str, asan: bool, link: Link) -> Option<PathBuf> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = out.join(format!(
        "{source}{}{}",
        if asan { "-asan" } else { "" },
        if link == Link::Static { "-static" } else { "" }
    ));
    let mut cmd = Command::new("cc");
    cmd.args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-g", "-O1"]);
    if asan {
        cmd.args(["-fsanitize=address", "-fno-omit-frame-pointer"]);
    }
    cmd.arg("-I")
        .arg(manifest.join("include"))
        .arg(manifest.join(format!("tests/c/{source}.c")))
        .arg("-o")
        .arg(&exe);
    match link {
        Link::Shared => {
            cmd.arg("-L")
                .arg(lib)
                .arg("-lpunktfunk_core")
                .arg(format!("-Wl,-rpath,{}", lib.display()))
                .arg("-lpthread");
        }
        Link::Static => {
            cmd.arg(lib.join("libpunktfunk_core.a")).args([
                "-lpthread",
                "-ldl",
                "-lm",
                "-lavcodec",
                "-lavutil",
                "-lopus",
                "-lstdc++",
            ]);
        }
    }
    match cmd.output() {
        Ok(o) if o.status.success() => Some(exe),
        Ok(o) => panic!(
            "cc failed:\n{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            skip::skip("cc", format!("no C compiler (cc: {e})"));
            None
        }
    }
}

/// Runs `exe` against a fresh listener with an armed PIN; returns its output. `split`: pass
/// the host as `IP PORT` (the sans-IO program) instead of `IP:PORT`.
fn run_against_host(exe: &Path, tag: &str, split: bool) -> String {
    let dir = tempdir(tag);
    let host_state = StateDir::open(dir.join("host")).unwrap();
    let opts = loopback_options();
    assert!(!opts.allow_unpaired, "pairing is required by default");
    let listener = Listener::start(&host_state, opts).unwrap();
    listener.arm_pin(Pin::parse("5678").unwrap());
    let mut cmd = Command::new(exe);
    let addr = listener.local_addr();
    if split {
        cmd.arg(addr.ip().to_string()).arg(addr.port().to_string());
    } else {
        cmd.arg(addr.to_string());
    }
    let out = cmd
        .arg(dir.join("client"))
        .arg("5678")
        // LeakSanitizer too; a report fails the run.
        .env(
            "ASAN_OPTIONS",
            "detect_leaks=1:abort_on_error=0:exitcode=23",
        )
        .output()
        .unwrap();
    listener.shutdown();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- {tag} ---\n{text}");
    assert!(
        out.status.success(),
        "{tag} failed ({}):\n{text}",
        out.status
    );
    let _ = std::fs::remove_dir_all(&dir);
    text
}

#[test]
fn c_harness_pairs_streams_renegotiates_and_sends_input() {
    let lib = build_library();
    let out = tempdir("bin");
    let Some(plain) = compile(&out, &lib, "harness", false) else {
        return;
    };
    let text = run_against_host(&plain, "plain", false);
    assert!(text.contains("reconfigured: 320x192@30"), "{text}");
    assert!(text.contains("; 0 failed checks"), "{text}");
    let asan = compile(&out, &lib, "harness", true).expect("cc builds the ASan harness too");
    let text = run_against_host(&asan, "asan", false);
    assert!(text.contains("; 0 failed checks"), "{text}");
    assert!(!text.contains("AddressSanitizer"), "{text}");

    // The static library, with the system libraries docs/client-abi.md lists.
    let fixed = compile_with(&out, &lib, "harness", false, Link::Static)
        .expect("cc links the harness with libpunktfunk_core.a");
    let text = run_against_host(&fixed, "static", false);
    assert!(text.contains("; 0 failed checks"), "{text}");

    // The header is C++ too.
    let cxx = Command::new("c++")
        .args(["-std=c++17", "-Wall", "-Wextra", "-Werror", "-fsyntax-only", "-x", "c++", "-I"])
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("include"))
        .arg("-")
        .stdin(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write as _;
            c.stdin
                .take()
                .expect("piped stdin")
                .write_all(b"#include \"punktfunk_core.h\"\nint main() { return punktfunk_abi_version() == 0; }\n")?;
            c.wait()
        })
        .expect("c++");
    assert!(cxx.success(), "punktfunk_core.h does not compile as C++");

    // The sans-IO half: the C program owns the sockets and the clock.
    let sansio = compile(&out, &lib, "sansio", false).expect("cc builds sansio.c");
    let text = run_against_host(&sansio, "sans-IO", true);
    assert!(text.contains("reconfigured: 320x192@30"), "{text}");
    assert!(text.contains("; 0 failed checks"), "{text}");
    let sansio_asan = compile(&out, &lib, "sansio", true).expect("cc builds sansio.c with ASan");
    let text = run_against_host(&sansio_asan, "sans-IO asan", true);
    assert!(text.contains("; 0 failed checks"), "{text}");
    assert!(!text.contains("AddressSanitizer"), "{text}");
    let _ = std::fs::remove_dir_all(&out);
}
