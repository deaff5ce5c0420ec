//! What this kernel can do, probed once at start-up, and the send path that follows from it.
//!
//! [`Caps::probe`] opens a loopback socket pair and *uses* each feature once instead of
//! trusting version numbers: a container's seccomp filter, `kernel.io_uring_disabled`
//! (6.6+) or a backported feature would all fool a version check. Every probe that fails
//! leaves its flag off and a note saying why. [`select_path`] is a pure function of the
//! result, so the fallback chain is unit-tested without a kernel.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{IoUring, opcode};

use super::send::SendPath;
use super::socket::{self, SockAddr};
use super::uring::UringDriver;
use super::{IoError, SendStats, recv};
use crate::config::SendPathPreference;

/// `UDP_MAX_SEGMENTS` before it was raised: `1 << 6` since UDP GSO appeared in 4.18
/// (include/linux/udp.h). Newer kernels accept 128; the probe finds out which.
const GSO_SEGMENTS_SAFE: usize = 64;
/// `UDP_MAX_SEGMENTS` of recent kernels (128); accepted on the 6.18 kernel this was written on.
const GSO_SEGMENTS_NEW: usize = 128;
/// How long a probe waits for its own loopback datagrams.
const PROBE_TIMEOUT: Duration = Duration::from_millis(250);

/// Kernel capabilities relevant to the io layer. Build with [`Caps::probe`] (or
/// [`Caps::none`] to force the portable path in tests), then hand it to the constructors.
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caps {
    /// `uname -r`, for logs.
    pub kernel_release: String,
    /// An io_uring could be set up and probed (`IORING_REGISTER_PROBE`, 5.6).
    pub uring: bool,
    /// `IORING_OP_SEND` with a destination address delivered a datagram (6.1: commit
    /// "io_uring/net: support non-zerocopy sendto").
    pub uring_send: bool,
    /// `IORING_OP_SEND_ZC` delivered a datagram and posted its notification (6.0), with
    /// GSO too when [`Caps::gso`] holds.
    pub uring_send_zc: bool,
    /// Multishot `IORING_OP_RECVMSG` with a provided-buffer ring received a datagram (6.0).
    pub uring_recv_multishot: bool,
    /// A `UDP_SEGMENT` send arrived as correctly cut datagrams (4.18).
    pub gso: bool,
    /// Largest number of segments one GSO send may carry (64, or 128 on newer kernels).
    pub gso_max_segments: usize,
    /// The `UDP_GRO` socket option is accepted (5.0) and, where GSO works, a GSO send arrived
    /// intact through a GRO socket (coalesced or not; a note says when it was not).
    pub gro: bool,
    /// `SO_BUSY_POLL` can be set (needs `CAP_NET_ADMIN` above `net.core.busy_read`).
    pub so_busy_poll: bool,
    /// `SO_RCVBUFFORCE`/`SO_SNDBUFFORCE` work (`CAP_NET_ADMIN`), so buffers can exceed the
    /// `net.core.{r,w}mem_max` sysctls.
    pub buffer_force: bool,
    /// One line per feature that is off, saying why (`"io_uring: setup: EPERM …"`).
    pub notes: Vec<String>,
}

impl Caps {
    /// Nothing but plain sockets: the `sendto`/`recvmmsg` paths without GSO or GRO.
    pub fn none() -> Self {
        Self {
            kernel_release: String::new(),
            uring: false,
            uring_send: false,
            uring_send_zc: false,
            uring_recv_multishot: false,
            gso: false,
            gso_max_segments: 1,
            gro: false,
            so_busy_poll: false,
            buffer_force: false,
            notes: Vec::new(),
        }
    }

    /// Probes the running kernel. Never fails: a feature whose probe fails is reported off,
    /// with a note. Takes a few milliseconds (a handful of loopback datagrams).
    pub fn probe() -> Self {
        let mut caps = Self::none();
        caps.kernel_release = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|s| s.trim().to_owned())
            .unwrap_or_default();
        match loopback_pair() {
            Ok((tx, rx)) => {
                probe_socket_options(&mut caps, &rx);
                probe_gso(&mut caps, &tx, &rx);
                probe_gro(&mut caps);
                probe_uring(&mut caps, &rx);
            }
            Err(e) => caps.note(
                "loopback",
                format!("cannot open a loopback socket pair: {e}"),
            ),
        }
        tracing::debug!(?caps, "io capabilities probed");
        caps
    }

    /// Whether `path` can run on this kernel, or why not.
    pub fn supports(&self, path: SendPath) -> Result<(), String> {
        let uring = || {
            if self.uring_send {
                Ok(())
            } else {
                Err(self.why(
                    "io_uring",
                    "io_uring send with a destination address failed",
                ))
            }
        };
        let gso = || {
            if self.gso {
                Ok(())
            } else {
                Err(self.why("gso", "UDP GSO did not work"))
            }
        };
        match path {
            SendPath::UringGso => uring().and_then(|()| gso()),
            SendPath::Uring => uring(),
            SendPath::SendmmsgGso => gso(),
            SendPath::Sendmmsg | SendPath::Sendto => Ok(()),
        }
    }

    fn note(&mut self, feature: &str, why: String) {
        self.notes.push(format!("{feature}: {why}"));
    }

    fn why(&self, feature: &str, default: &str) -> String {
        let prefix = format!("{feature}: ");
        self.notes
            .iter()
            .find_map(|n| n.strip_prefix(&prefix))
            .unwrap_or(default)
            .to_owned()
    }
}

impl fmt::Display for Caps {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let on = |b: bool| if b { "yes" } else { "no" };
        write!(
            f,
            "kernel {}: io_uring {}, send {}, send_zc {}, multishot recv {}, gso {} (max {} \
             segments), gro {}, SO_BUSY_POLL {}, *BUFFORCE {}",
            self.kernel_release,
            on(self.uring),
            on(self.uring_send),
            on(self.uring_send_zc),
            on(self.uring_recv_multishot),
            on(self.gso),
            self.gso_max_segments,
            on(self.gro),
            on(self.so_busy_poll),
            on(self.buffer_force),
        )
    }
}

/// The path [`select_path`] picked and why, in words for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathChoice {
    /// The path to use.
    pub path: SendPath,
    /// Why: the preference, and every faster path that was ruled out with its reason.
    pub reason: String,
}

/// The fallback chain, fastest first. `Auto` starts at the head.
const CHAIN: [SendPath; 5] = [
    SendPath::UringGso,
    SendPath::Uring,
    SendPath::SendmmsgGso,
    SendPath::Sendmmsg,
    SendPath::Sendto,
];

/// Picks the send path for `preference` on a kernel with `caps`: the preferred path if it
/// works, else the next one down the chain io_uring+GSO → io_uring → sendmmsg+GSO →
/// sendmmsg → sendto. Pure: the same inputs always give the same answer.
pub fn select_path(caps: &Caps, preference: SendPathPreference) -> PathChoice {
    let start = match preference {
        SendPathPreference::Auto | SendPathPreference::UringGso => SendPath::UringGso,
        SendPathPreference::Uring => SendPath::Uring,
        SendPathPreference::Sendmmsg if caps.gso => SendPath::SendmmsgGso,
        SendPathPreference::Sendmmsg => SendPath::Sendmmsg,
        SendPathPreference::Sendto => SendPath::Sendto,
    };
    let from = CHAIN.iter().position(|&p| p == start).unwrap_or(0);
    let mut ruled_out = Vec::new();
    for &path in &CHAIN[from..] {
        match caps.supports(path) {
            Ok(()) => {
                let pref = match preference {
                    SendPathPreference::Auto => "auto".to_owned(),
                    other => format!("{other:?}"),
                };
                let reason = if ruled_out.is_empty() {
                    format!("preference {pref}; {}", good_because(caps, path))
                } else {
                    format!("preference {pref}; {}", ruled_out.join("; "))
                };
                return PathChoice { path, reason };
            }
            Err(why) => ruled_out.push(format!("{path} unavailable ({why})")),
        }
    }
    // Unreachable in practice: the chain ends in sendto, which is always supported.
    PathChoice {
        path: SendPath::Sendto,
        reason: ruled_out.join("; "),
    }
}

fn good_because(caps: &Caps, path: SendPath) -> String {
    match path {
        SendPath::UringGso => format!(
            "io_uring send and UDP GSO (≤{} segments) work on kernel {}",
            caps.gso_max_segments, caps.kernel_release
        ),
        SendPath::SendmmsgGso => "UDP GSO works".to_owned(),
        SendPath::Uring => "io_uring send works".to_owned(),
        SendPath::Sendmmsg => "batched sendmmsg requested".to_owned(),
        SendPath::Sendto => "one sendto per datagram requested".to_owned(),
    }
}

fn loopback_pair() -> std::io::Result<(UdpSocket, UdpSocket)> {
    let any = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let rx = UdpSocket::bind(any)?;
    rx.set_nonblocking(true)?;
    let tx = UdpSocket::bind(any)?;
    Ok((tx, rx))
}

/// Reads datagrams until `expect` arrived or the probe timeout passes; returns their lengths.
fn drain(rx: &UdpSocket, expect: usize) -> Vec<usize> {
    let mut lens = Vec::new();
    let mut buf = vec![0u8; 65_536];
    while lens.len() < expect {
        match rx.recv(&mut buf) {
            Ok(n) => lens.push(n),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                match socket::poll_readable(rx, PROBE_TIMEOUT) {
                    Ok(true) => {}
                    _ => break,
                }
            }
            Err(_) => break,
        }
    }
    lens
}

fn probe_socket_options(caps: &mut Caps, rx: &UdpSocket) {
    let fd = rx.as_raw_fd();
    match socket::set_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, 50) {
        Ok(()) => caps.so_busy_poll = true,
        Err(e) => caps.note("busy_poll", format!("SO_BUSY_POLL: {e}")),
    }
    let _ = socket::set_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, 0);
    match socket::set_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, 1 << 20) {
        Ok(()) => caps.buffer_force = true,
        Err(e) => caps.note("buffer_force", format!("SO_RCVBUFFORCE: {e}")),
    }
}

fn probe_gso(caps: &mut Caps, tx: &UdpSocket, rx: &UdpSocket) {
    let fd = tx.as_raw_fd();
    let Ok(dest) = rx.local_addr() else { return };
    let dest = SockAddr::new(dest);
    if let Err(e) = socket::set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 100) {
        caps.note("gso", format!("setsockopt(UDP_SEGMENT): {e}"));
        return;
    }
    // Three full segments and a short one: the layout the packetizer produces.
    let payload = [0x5au8; 340];
    if let Err(e) = socket::sendto(fd, &payload, Some(&dest)) {
        caps.note("gso", format!("GSO send: {e}"));
        return;
    }
    let got = drain(rx, 4);
    if got != [100, 100, 100, 40] {
        caps.note(
            "gso",
            format!("GSO send arrived as {got:?}, not [100, 100, 100, 40]"),
        );
        return;
    }
    caps.gso = true;
    caps.gso_max_segments = GSO_SEGMENTS_SAFE;
    // More than 64 segments is EINVAL before the limit was raised (`udp_send_skb`).
    let seg = 8;
    if socket::set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, seg).is_ok() {
        let big = [0u8; GSO_SEGMENTS_NEW * 8];
        if socket::sendto(fd, &big, Some(&dest)).is_ok() {
            caps.gso_max_segments = GSO_SEGMENTS_NEW;
            drain(rx, GSO_SEGMENTS_NEW);
        }
    }
}

fn probe_gro(caps: &mut Caps) {
    match recv::probe_gro(caps.gso) {
        Ok(true) => caps.gro = true,
        Ok(false) => {
            caps.gro = true;
            caps.note(
                "gro",
                "UDP_GRO accepted but a GSO send arrived uncoalesced".to_owned(),
            );
        }
        Err(e) => caps.note("gro", e),
    }
}

fn probe_uring(caps: &mut Caps, rx: &UdpSocket) {
    let ring = match IoUring::new(8) {
        Ok(r) => r,
        Err(e) => {
            caps.note(
                "io_uring",
                format!("setup: {e} (kernel.io_uring_disabled or seccomp?)"),
            );
            return;
        }
    };
    let mut probe = io_uring::Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        caps.note("io_uring", format!("IORING_REGISTER_PROBE: {e}"));
        return;
    }
    caps.uring = true;
    drop(ring);
    let Ok(dest) = rx.local_addr() else { return };

    if probe.is_supported(opcode::Send::CODE) {
        match probe_send(dest, rx, false, false) {
            Ok(()) => caps.uring_send = true,
            Err(e) => caps.note("io_uring", format!("IORING_OP_SEND with destination: {e}")),
        }
    } else {
        caps.note("io_uring", "IORING_OP_SEND not supported".to_owned());
    }
    if probe.is_supported(opcode::SendZc::CODE) {
        match probe_send(dest, rx, true, caps.gso) {
            Ok(()) => caps.uring_send_zc = true,
            Err(e) => caps.note("send_zc", format!("IORING_OP_SEND_ZC: {e}")),
        }
    } else {
        caps.note(
            "send_zc",
            "IORING_OP_SEND_ZC not supported (needs 6.0)".to_owned(),
        );
    }
    if probe.is_supported(opcode::RecvMsgMulti::CODE) {
        match recv::probe_multishot() {
            Ok(()) => caps.uring_recv_multishot = true,
            Err(e) => caps.note("multishot", format!("multishot recvmsg: {e}")),
        }
    }
}

/// Sends two 100-byte datagrams (one GSO send when `gso`) through the real io_uring driver
/// and checks that both arrive.
fn probe_send(dest: SocketAddr, rx: &UdpSocket, zero_copy: bool, gso: bool) -> Result<(), String> {
    let tx =
        UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|e| e.to_string())?;
    let mut driver = UringDriver::new(8, zero_copy, false, None).map_err(|e| e.to_string())?;
    let chunk = if gso {
        socket::set_int(tx.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 100)
            .map_err(|e| e.to_string())?;
        200
    } else {
        100
    };
    let payload = [0xa5u8; 200];
    let mut stats = SendStats::default();
    driver
        .send(
            tx.as_raw_fd(),
            Some(dest),
            super::uring::Buf::Borrowed(&payload),
            100,
            chunk,
            &mut stats,
        )
        .map_err(|e: IoError| e.to_string())?;
    let got = drain(rx, 2);
    if got == [100, 100] && stats.datagrams == 2 {
        Ok(())
    } else {
        Err(format!("sent {stats:?}, received {got:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(uring_send: bool, gso: bool) -> Caps {
        let mut c = Caps::none();
        c.uring = uring_send;
        c.uring_send = uring_send;
        c.gso = gso;
        c.gso_max_segments = if gso { 64 } else { 1 };
        if !uring_send {
            c.notes
                .push("io_uring: setup: Operation not permitted".to_owned());
        }
        c
    }

    #[test]
    fn auto_walks_the_chain() {
        use SendPath::*;
        let auto = SendPathPreference::Auto;
        assert_eq!(select_path(&caps(true, true), auto).path, UringGso);
        assert_eq!(select_path(&caps(false, true), auto).path, SendmmsgGso);
        assert_eq!(select_path(&caps(true, false), auto).path, Uring);
        assert_eq!(select_path(&caps(false, false), auto).path, Sendmmsg);
        assert_eq!(
            select_path(&Caps::none(), SendPathPreference::Sendto).path,
            Sendto
        );
    }

    #[test]
    fn preferences_fall_back_downwards() {
        use SendPath::*;
        let c = caps(false, true);
        let choice = select_path(&c, SendPathPreference::Uring);
        assert_eq!(choice.path, SendmmsgGso);
        assert!(
            choice.reason.contains("Operation not permitted"),
            "{}",
            choice.reason
        );
        assert_eq!(
            select_path(&c, SendPathPreference::Sendmmsg).path,
            SendmmsgGso
        );
        assert_eq!(
            select_path(&caps(true, true), SendPathPreference::Uring).path,
            Uring
        );
        assert_eq!(
            select_path(&caps(true, true), SendPathPreference::Sendto).path,
            Sendto
        );
    }

    #[test]
    fn supports_explains() {
        let c = caps(false, false);
        assert!(c.supports(SendPath::Sendto).is_ok());
        let why = c.supports(SendPath::UringGso).expect_err("no io_uring");
        assert!(why.contains("not permitted"), "{why}");
        assert_eq!(
            c.supports(SendPath::SendmmsgGso),
            Err("UDP GSO did not work".to_owned())
        );
    }

    /// The real probe: prints what it found; asserts only what holds on any kernel.
    #[test]
    fn probe_runs() {
        let c = Caps::probe();
        println!("{c}");
        for n in &c.notes {
            println!("  {n}");
        }
        assert!(c.gso_max_segments >= 1);
        if c.uring_send_zc || c.uring_recv_multishot {
            assert!(c.uring);
        }
    }
}
