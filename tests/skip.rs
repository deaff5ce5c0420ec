// Visible skips for kernel- and machine-dependent Rust tests (docs/testing.md, "Skips").
//
// Included, not depended on, by every test that may skip:
//
//     mod skip {
//         include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
//     }
//     ...
//     if !caps().gso {
//         skip::skip("gso", "UDP_SEGMENT unsupported here");
//         return;
//     }
//
// A skip
// * prints `SKIP <test>: <feature>: <reason>` on stderr (`--nocapture` shows it),
// * appends the same line, without `SKIP `, to the file named by `PF_SKIP_LOG` (scripts/test.sh
//   sets it and prints the collected list at the end),
// * panics instead, failing the test, when `CI=true` and CI's machine provides `feature`
//   (see `ci_provides`): there a missing feature means a broken probe or a broken machine, not
//   a reason to pass quietly.
//
// `<test>` is the libtest thread name (the test's path), prefixed with the crate.
// This file is `include!`d, so it has no inner attributes or doc comments of its own.

#[allow(dead_code)] // not every including test crate uses every item
/// Whether CI's machine (Debian, root, kernel >= 6.0, scripts/setup.sh run) has `feature`, and
/// why. Features not listed (e.g. `uinput`: CI's kernel has no /dev/uinput) stay plain skips.
pub(crate) fn ci_provides(feature: &str) -> Option<&'static str> {
    let kernel = |major: u32, minor: u32, why: &'static str| {
        kernel_at_least(major, minor).then_some(why)
    };
    match feature {
        "io_uring" => kernel(5, 19, "io_uring with the opcodes the driver uses is in kernel 5.19+"),
        "multishot_recv" => kernel(6, 0, "multishot recvmsg is in kernel 6.0+"),
        "gso" => kernel(4, 18, "UDP GSO (UDP_SEGMENT) is in kernel 4.18+"),
        "gro" => kernel(5, 0, "UDP GRO is in kernel 5.0+"),
        "send_zc" => kernel(6, 0, "io_uring SEND_ZC is in kernel 6.0+"),
        "ipv6" => Some("CI's machine has an IPv6 loopback"),
        "root" | "netns" | "rcvbuf" => Some("CI runs as root (network namespaces, SO_RCVBUFFORCE)"),
        "affinity" => Some("CI's machine reports and honours CPU affinity"),
        "python3-numpy" | "ffmpeg" | "sway" | "wev" | "wtype" | "cc" | "pipewire" | "mutter"
        | "kwin" => Some("scripts/setup.sh installs it"),
        "vulkan" => Some("scripts/setup.sh installs the loader and Mesa's lavapipe (CPU) driver"),
        _ => None,
    }
}

#[allow(dead_code)]
fn kernel_at_least(major: u32, minor: u32) -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|p| p.parse::<u32>().ok());
    let have = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    have >= (major, minor)
}

#[allow(dead_code)]
/// Records that the running test skips (all of it, or the part named in `reason`) because
/// `feature` is missing. Under `CI=true` a feature CI provides fails the test instead.
pub(crate) fn skip(feature: &str, reason: impl std::fmt::Display) {
    let thread = std::thread::current();
    let test = format!("{}::{}", env!("CARGO_CRATE_NAME"), thread.name().unwrap_or("?"));
    let line = format!("{test}: {feature}: {reason}");
    if std::env::var("CI").is_ok_and(|v| v == "true")
        && let Some(why) = ci_provides(feature)
    {
        panic!("CI=true: not skipping {line} ({why}; a skip here hides a failure)");
    }
    eprintln!("SKIP {line}");
    if let Some(path) = std::env::var_os("PF_SKIP_LOG") {
        use std::io::Write as _;
        // One short append per skip; O_APPEND keeps lines from parallel tests whole.
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .and_then(|mut f| f.write_all(format!("{line}\n").as_bytes()));
        if let Err(e) = written {
            eprintln!("SKIP log {}: {e}", path.to_string_lossy());
        }
    }
}
