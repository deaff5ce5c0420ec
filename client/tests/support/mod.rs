//! Helpers the client crate's integration tests share (`#[path]`-included; each test crate
//! uses all of them).

use std::path::PathBuf;

use punktfunk_control::pf1::listener::ListenerOptions;

/// A fresh directory under the system temp dir, named for the test (`tag`) and unique.
pub(crate) fn tempdir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "pf-client-{tag}-{}-{}",
        std::process::id(),
        punktfunk_capture::clock::monotonic_us()
    ));
    std::fs::create_dir_all(&d).expect("create a temp dir");
    d
}

/// Listener options for a punktfunk/1 host on 127.0.0.1 at a free UDP port (pairing
/// required, as `ListenerOptions::new` has it).
pub(crate) fn loopback_options() -> ListenerOptions {
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a loopback UDP socket")
        .port();
    let mut opts = ListenerOptions::new(port);
    opts.bind = Some(std::net::IpAddr::from([127, 0, 0, 1]));
    opts
}
