//! [`UdpSender`]: sends a packetized frame over the path [`select_path`] picked, paced by
//! [`Pacer`](crate::pacer::Pacer).

use std::fmt;
use std::net::{SocketAddr, UdpSocket};
use std::ops::AddAssign;
use std::os::fd::{AsRawFd, RawFd};
use std::time::{Duration, Instant};

use super::IoError;
use super::caps::{Caps, select_path};
use super::fallback::{self, MmsgDriver};
use super::socket::{self, MAX_UDP_PAYLOAD, SockAddr};
use super::uring::{Buf, UringDriver};
use crate::config::SendConfig;
use crate::pacer::{Burst, Pacer};

/// Waits shorter than this are spun; longer ones sleep until this much is left, then spin.
/// Linux timer slack and wake-up latency are tens of microseconds, so sleeping for less than
/// this overshoots by more than it waits.
pub(crate) const SPIN_THRESHOLD: Duration = Duration::from_micros(50);

/// Bytes of the staging buffer allocated when [`SendConfig::registered_buffers`] is set: the
/// default `PipelineConfig::frame_capacity` (4 MiB), the largest frame the pipeline accepts.
pub const STAGING_BYTES: usize = 4 << 20;

/// A kernel send path. [`UdpSender::path`] names the one in use.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SendPath {
    /// io_uring `IORING_OP_SEND`/`SEND_ZC`, one SQE per GSO send of up to 64 KiB.
    UringGso,
    /// io_uring, one SQE per datagram.
    Uring,
    /// `sendmmsg(2)`, one message per GSO send.
    SendmmsgGso,
    /// `sendmmsg(2)`, one message per datagram.
    Sendmmsg,
    /// One `sendto(2)` per datagram: the baseline.
    Sendto,
}

impl SendPath {
    /// Every path, fastest first.
    pub const ALL: [SendPath; 5] = [
        Self::UringGso,
        Self::Uring,
        Self::SendmmsgGso,
        Self::Sendmmsg,
        Self::Sendto,
    ];

    /// Whether the path cuts datagrams with UDP GSO.
    pub fn uses_gso(self) -> bool {
        matches!(self, Self::UringGso | Self::SendmmsgGso)
    }

    /// Whether the path goes through io_uring.
    pub fn uses_uring(self) -> bool {
        matches!(self, Self::UringGso | Self::Uring)
    }

    /// Short name for logs and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::UringGso => "io_uring+GSO",
            Self::Uring => "io_uring",
            Self::SendmmsgGso => "sendmmsg+GSO",
            Self::Sendmmsg => "sendmmsg",
            Self::Sendto => "sendto",
        }
    }
}

impl fmt::Display for SendPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The path of a sender with the io_uring options that are actually in effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSetup {
    /// The kernel path.
    pub path: SendPath,
    /// Sends use `IORING_OP_SEND_ZC`.
    pub zero_copy: bool,
    /// Staged sends use the registered (fixed) buffer; implies `zero_copy`.
    pub registered_buffers: bool,
    /// Completions are awaited by spinning on the CQ ring.
    pub busy_poll: bool,
    /// Segments per GSO send at most (1 without GSO).
    pub max_segments: usize,
}

impl fmt::Display for SendSetup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.path)?;
        let opts: Vec<&str> = [
            (self.zero_copy, "SEND_ZC"),
            (self.registered_buffers, "registered buffers"),
            (self.busy_poll, "busy-poll"),
        ]
        .iter()
        .filter_map(|&(on, name)| on.then_some(name))
        .collect();
        if !opts.is_empty() {
            write!(f, " ({})", opts.join(", "))?;
        }
        Ok(())
    }
}

/// Counters of one send call, or (from [`UdpSender::stats`]) of a sender's lifetime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SendStats {
    /// Datagrams the kernel accepted.
    pub datagrams: u64,
    /// Payload bytes the kernel accepted.
    pub bytes: u64,
    /// Kernel send operations that succeeded (GSO sends, messages, or SQEs).
    pub sends: u64,
    /// System calls made: `sendto`, `sendmmsg` or `io_uring_enter`.
    pub syscalls: u64,
    /// Sends repeated after `EAGAIN`/`ENOBUFS`.
    pub retries: u64,
    /// Failed sends (peer unreachable, short send, fatal errno).
    pub errors: u64,
    /// Datagrams lost to `errors`.
    pub dropped: u64,
    /// Zero-copy sends the kernel copied after all (loopback always does).
    pub zc_copied: u64,
    /// Completions that matched no operation (kernel bug or memory corruption; ignored).
    pub unexpected_completions: u64,
    /// Pacing bursts sent.
    pub bursts: u64,
    /// Time spent waiting for bursts' send times, in nanoseconds.
    pub pacing_wait_ns: u64,
}

impl SendStats {
    /// Books a send of `requested` bytes of which the kernel took `sent`.
    pub(crate) fn account(&mut self, requested: usize, sent: usize, seg: usize) {
        if sent == requested {
            self.datagrams += requested.div_ceil(seg) as u64;
            self.bytes += sent as u64;
            self.sends += 1;
        } else {
            // UDP sends are all-or-nothing; a short count means the datagrams are suspect.
            self.drop_send(requested, seg);
        }
    }

    /// Books a failed send of `len` bytes.
    pub(crate) fn drop_send(&mut self, len: usize, seg: usize) {
        self.errors += 1;
        self.dropped += len.div_ceil(seg) as u64;
    }
}

impl AddAssign for SendStats {
    fn add_assign(&mut self, o: Self) {
        self.datagrams += o.datagrams;
        self.bytes += o.bytes;
        self.sends += o.sends;
        self.syscalls += o.syscalls;
        self.retries += o.retries;
        self.errors += o.errors;
        self.dropped += o.dropped;
        self.zc_copied += o.zc_copied;
        self.unexpected_completions += o.unexpected_completions;
        self.bursts += o.bursts;
        self.pacing_wait_ns += o.pacing_wait_ns;
    }
}

/// When a frame's datagrams may leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pacing {
    /// All at once, as fast as the path allows.
    Immediate,
    /// Spread per [`SendConfig::pacing`] over the frame interval, starting at `start`
    /// (typically when the frame was ready).
    Frame {
        /// Start of the pacing window.
        start: Instant,
        /// The frame interval (1 / frame rate).
        interval: Duration,
    },
}

enum Driver {
    Sendto,
    Sendmmsg(MmsgDriver),
    Uring(Box<UringDriver>),
}

/// Sends packetized frames over UDP.
///
/// ```no_run
/// use punktfunk_engine::config::SendConfig;
/// use punktfunk_engine::io::{Caps, Pacing, UdpSender};
///
/// let caps = Caps::probe();
/// let mut tx = UdpSender::new("0.0.0.0:0".parse()?, &SendConfig::default(), &caps)?;
/// let frame = vec![0u8; 100 * 1408 - 500]; // 100 datagrams, the last one short
/// let stats = tx.send_frame("192.0.2.7:47998".parse()?, &frame, 1408, Pacing::Immediate)?;
/// assert_eq!(stats.datagrams, 100);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UdpSender {
    // Field order is drop order: the driver (which may hold a ring with the staging buffer
    // registered) goes first.
    driver: Driver,
    staging: Option<Box<[u8]>>,
    socket: UdpSocket,
    local: SocketAddr,
    setup: SendSetup,
    pacer: Pacer,
    /// The peer the socket is connected to, if any.
    connected: Option<SocketAddr>,
    /// The socket's current `UDP_SEGMENT` value (0 = unset).
    gso_size: usize,
    total: SendStats,
}

impl UdpSender {
    /// Binds a socket to `bind` and picks the best path for `config.path` on this kernel,
    /// logging the choice in one `info` line.
    pub fn new(bind: SocketAddr, config: &SendConfig, caps: &Caps) -> Result<Self, IoError> {
        let choice = select_path(caps, config.path);
        let sender = Self::build(bind, choice.path, config, caps)?;
        tracing::info!(
            path = %sender.setup,
            reason = %choice.reason,
            "udp send path selected"
        );
        Ok(sender)
    }

    /// Like [`UdpSender::new`] but with exactly `path`, or [`IoError::Unsupported`]. For
    /// benchmarks comparing paths in one process.
    pub fn with_path(
        bind: SocketAddr,
        path: SendPath,
        config: &SendConfig,
        caps: &Caps,
    ) -> Result<Self, IoError> {
        caps.supports(path).map_err(|reason| IoError::Unsupported {
            what: path.name(),
            reason,
        })?;
        Self::build(bind, path, config, caps)
    }

    fn build(
        bind: SocketAddr,
        path: SendPath,
        config: &SendConfig,
        caps: &Caps,
    ) -> Result<Self, IoError> {
        let pacer = Pacer::new(&config.pacing).map_err(|_| {
            IoError::InvalidArgument(
                "SendConfig::pacing: frame_share must lie in [0, 1], burst_datagrams be ≥ 1",
            )
        })?;
        let socket = socket::bind_udp(bind)?;
        let local = socket
            .local_addr()
            .map_err(|e| IoError::os("getsockname", e))?;
        let fd = socket.as_raw_fd();
        if config.socket_send_buffer > 0 {
            match socket::set_buffer(
                fd,
                libc::SO_SNDBUFFORCE,
                libc::SO_SNDBUF,
                config.socket_send_buffer,
            ) {
                Ok((got, forced)) => tracing::debug!(got, forced, "SO_SNDBUF"),
                Err(e) => tracing::debug!(error = %e, "SO_SNDBUF not set"),
            }
        }
        if config.so_busy_poll_us > 0 {
            let us = libc::c_int::try_from(config.so_busy_poll_us).unwrap_or(libc::c_int::MAX);
            if let Err(e) = socket::set_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, us) {
                tracing::debug!(error = %e, "SO_BUSY_POLL not set");
            }
        }
        let zero_copy = config.zero_copy && path.uses_uring() && caps.uring_send_zc;
        // Registered buffers pay only for SEND_ZC: IORING_OP_SEND copies anyway and rejects
        // IORING_RECVSEND_FIXED_BUF with EINVAL (checked on 6.18).
        let registered = config.registered_buffers && zero_copy;
        let busy_poll = config.busy_poll && path.uses_uring();
        let mut staging = config
            .registered_buffers
            .then(|| vec![0u8; STAGING_BYTES].into_boxed_slice());
        let driver = match path {
            SendPath::UringGso | SendPath::Uring => {
                let reg = if registered { staging.take() } else { None };
                Driver::Uring(Box::new(UringDriver::new(
                    config.ring_entries,
                    zero_copy,
                    busy_poll,
                    reg,
                )?))
            }
            SendPath::SendmmsgGso | SendPath::Sendmmsg => Driver::Sendmmsg(MmsgDriver::new()),
            SendPath::Sendto => Driver::Sendto,
        };
        let max_segments = if path.uses_gso() {
            caps.gso_max_segments.max(1)
        } else {
            1
        };
        Ok(Self {
            driver,
            staging,
            socket,
            local,
            setup: SendSetup {
                path,
                zero_copy,
                registered_buffers: registered,
                busy_poll,
                max_segments,
            },
            pacer,
            connected: None,
            gso_size: 0,
            total: SendStats::default(),
        })
    }

    /// Connects the socket to `peer`. Sends to `peer` then carry no address, which saves
    /// the kernel a route lookup per send; an ICMP error from the peer surfaces as
    /// `ECONNREFUSED` on a later send and is counted in [`SendStats::dropped`], not returned.
    pub fn connect(&mut self, peer: SocketAddr) -> Result<(), IoError> {
        let peer = self.map_dest(peer)?;
        self.socket
            .connect(peer)
            .map_err(|e| IoError::os("connect", e))?;
        self.connected = Some(peer);
        Ok(())
    }

    /// A second handle to the sending socket, for reading what the peer sends to the same
    /// port (GameStream clients ping the video port the host streams from). Reads on it do
    /// not disturb the driver, which only writes.
    pub fn try_clone_socket(&self) -> Result<UdpSocket, IoError> {
        self.socket.try_clone().map_err(|e| IoError::os("dup", e))
    }

    /// The peer set with [`UdpSender::connect`].
    pub fn peer(&self) -> Option<SocketAddr> {
        self.connected
    }

    /// Maps `dest` to the socket's address family (IPv4 to v4-mapped IPv6 on a v6 socket).
    fn map_dest(&self, dest: SocketAddr) -> Result<SocketAddr, IoError> {
        match (self.local, dest) {
            (SocketAddr::V4(_), SocketAddr::V6(_)) => Err(IoError::InvalidArgument(
                "IPv6 destination on an IPv4 socket",
            )),
            (SocketAddr::V6(_), SocketAddr::V4(v4)) => {
                Ok(SocketAddr::new(v4.ip().to_ipv6_mapped().into(), v4.port()))
            }
            (_, d) => Ok(d),
        }
    }

    /// The pacing policy of the sender's `[pacing]` settings.
    pub fn pacer(&self) -> Pacer {
        self.pacer
    }

    /// The kernel path in use.
    pub fn path(&self) -> SendPath {
        self.setup.path
    }

    /// The path and the io_uring options in effect.
    pub fn setup(&self) -> SendSetup {
        self.setup
    }

    /// The bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Counters over the sender's lifetime.
    pub fn stats(&self) -> SendStats {
        self.total
    }

    /// The sender's own frame buffer ([`STAGING_BYTES`]), present when
    /// [`SendConfig::registered_buffers`] is set. Packetize into it and send with
    /// [`UdpSender::send_staged`]; on the io_uring+SEND_ZC path it is registered with the ring,
    /// so the kernel skips pinning its pages on every send.
    pub fn staging_mut(&mut self) -> Option<&mut [u8]> {
        match &mut self.driver {
            Driver::Uring(d) if d.has_staging() => d.staging_mut(),
            _ => self.staging.as_deref_mut(),
        }
    }

    /// Sends one frame: `datagrams` holds the frame's datagrams back to back with stride
    /// `segment_size`, the last one possibly shorter. Returns when the kernel is done with
    /// `datagrams` (all completions, zero-copy notifications included, are reaped).
    ///
    /// Transient errors (`EAGAIN`, `ENOBUFS`) are retried; an unreachable peer is counted in
    /// [`SendStats::dropped`]; anything else ends the frame with an error.
    pub fn send_frame(
        &mut self,
        dest: SocketAddr,
        datagrams: &[u8],
        segment_size: usize,
        pacing: Pacing,
    ) -> Result<SendStats, IoError> {
        self.send_impl(dest, Source::Borrowed(datagrams), segment_size, pacing)
    }

    /// [`UdpSender::send_frame`] for the first `len` bytes of the staging buffer.
    pub fn send_staged(
        &mut self,
        dest: SocketAddr,
        len: usize,
        segment_size: usize,
        pacing: Pacing,
    ) -> Result<SendStats, IoError> {
        self.send_impl(dest, Source::Staged(len), segment_size, pacing)
    }

    fn send_impl(
        &mut self,
        dest: SocketAddr,
        src: Source<'_>,
        seg: usize,
        pacing: Pacing,
    ) -> Result<SendStats, IoError> {
        if seg == 0 || seg > MAX_UDP_PAYLOAD {
            return Err(IoError::InvalidArgument("segment_size must be 1..=65507"));
        }
        let dest = self.map_dest(dest)?;
        // To the connected peer, the sends carry no address.
        let target = (self.connected != Some(dest)).then_some(dest);
        let len = match src {
            Source::Borrowed(b) => b.len(),
            Source::Staged(len) => {
                let capacity = match &self.driver {
                    Driver::Uring(d) if d.has_staging() => STAGING_BYTES,
                    _ => self.staging.as_ref().map_or(0, |s| s.len()),
                };
                if capacity == 0 {
                    return Err(IoError::InvalidArgument(
                        "send_staged needs SendConfig::registered_buffers",
                    ));
                }
                if len > capacity {
                    return Err(IoError::TooLarge {
                        what: "staged frame",
                        len,
                        capacity,
                    });
                }
                len
            }
        };
        let mut stats = SendStats::default();
        if len == 0 {
            return Ok(stats);
        }
        let fd = self.socket.as_raw_fd();
        let chunk = if self.setup.path.uses_gso() {
            if self.gso_size != seg {
                let value = libc::c_int::try_from(seg).unwrap_or(libc::c_int::MAX);
                socket::set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, value)
                    .map_err(|e| IoError::os("setsockopt(UDP_SEGMENT)", e))?;
                self.gso_size = seg;
            }
            seg * self.setup.max_segments.min(MAX_UDP_PAYLOAD / seg).max(1)
        } else {
            seg
        };
        let n = len.div_ceil(seg);
        let schedule = match pacing {
            Pacing::Frame { start, interval } if self.pacer.is_paced() => {
                Schedule::Paced(self.pacer.schedule(start, interval, n))
            }
            _ => Schedule::Once(Some(0..n)),
        };
        let dest_raw = target.map(SockAddr::new);
        let mut out = Ok(());
        for burst in schedule {
            if let Some(at) = burst.send_at {
                stats.pacing_wait_ns += wait_until(at);
            }
            let start = burst.datagrams.start * seg;
            let end = len.min(burst.datagrams.end * seg);
            stats.bursts += 1;
            out = self.send_range(
                fd,
                target,
                dest_raw.as_ref(),
                &src,
                start..end,
                seg,
                chunk,
                &mut stats,
            );
            if out.is_err() {
                break;
            }
        }
        self.total += stats;
        if let Err(IoError::Os { source, .. }) = &out
            && self.setup.path.uses_gso()
            && source.raw_os_error() == Some(libc::EIO)
        {
            self.disable_gso(fd);
        }
        out.map(|()| stats)
    }

    /// The kernel refuses GSO with `EIO` where it cannot segment (`udp_send_skb`: no
    /// checksum offload on the route's device, or an IPsec (xfrm) route). Later frames go out
    /// without GSO on the same driver; the failed frame is the caller's to drop or resend.
    fn disable_gso(&mut self, fd: RawFd) {
        let fallback = match self.setup.path {
            SendPath::UringGso => SendPath::Uring,
            _ => SendPath::Sendmmsg,
        };
        tracing::warn!(
            from = %self.setup.path,
            to = %fallback,
            "UDP GSO send failed with EIO; continuing without GSO"
        );
        let _ = socket::set_int(fd, libc::SOL_UDP, libc::UDP_SEGMENT, 0);
        self.gso_size = 0;
        self.setup.path = fallback;
        self.setup.max_segments = 1;
    }

    #[allow(clippy::too_many_arguments)]
    fn send_range(
        &mut self,
        fd: RawFd,
        dest: Option<SocketAddr>,
        dest_raw: Option<&SockAddr>,
        src: &Source<'_>,
        range: std::ops::Range<usize>,
        seg: usize,
        chunk: usize,
        stats: &mut SendStats,
    ) -> Result<(), IoError> {
        let buf: &[u8] = match (src, &mut self.driver) {
            (Source::Staged(_), Driver::Uring(d)) if d.has_staging() => {
                return d.send(fd, dest, Buf::Staged(range), seg, chunk, stats);
            }
            (Source::Borrowed(b), _) => &b[range],
            (Source::Staged(_), _) => match self.staging.as_deref() {
                Some(s) => &s[range],
                None => return Err(IoError::InvalidArgument("no staging buffer")),
            },
        };
        match &mut self.driver {
            Driver::Sendto => fallback::send_sendto(fd, dest_raw, buf, seg, stats),
            Driver::Sendmmsg(d) => d.send(fd, dest_raw, buf, seg, chunk, stats),
            Driver::Uring(d) => d.send(fd, dest, Buf::Borrowed(buf), seg, chunk, stats),
        }
    }
}

impl fmt::Debug for UdpSender {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UdpSender")
            .field("local", &self.local)
            .field("setup", &self.setup)
            .field("stats", &self.total)
            .finish_non_exhaustive()
    }
}

enum Source<'a> {
    Borrowed(&'a [u8]),
    Staged(usize),
}

/// A pacer schedule, or one immediate burst without reading the clock.
enum Schedule {
    Paced(crate::pacer::Schedule),
    Once(Option<std::ops::Range<usize>>),
}

struct Due {
    send_at: Option<Instant>,
    datagrams: std::ops::Range<usize>,
}

impl Iterator for Schedule {
    type Item = Due;
    fn next(&mut self) -> Option<Due> {
        match self {
            Self::Paced(s) => s.next().map(|Burst { send_at, datagrams }| Due {
                send_at: Some(send_at),
                datagrams,
            }),
            Self::Once(r) => r.take().map(|datagrams| Due {
                send_at: None,
                datagrams,
            }),
        }
    }
}

/// Waits until `at`: sleeps while more than [`SPIN_THRESHOLD`] is left, then spins.
/// Returns the nanoseconds waited.
pub(crate) fn wait_until(at: Instant) -> u64 {
    let begin = Instant::now();
    loop {
        let now = Instant::now();
        let Some(left) = at.checked_duration_since(now).filter(|d| !d.is_zero()) else {
            break;
        };
        if left > SPIN_THRESHOLD {
            std::thread::sleep(left - SPIN_THRESHOLD);
        } else {
            std::hint::spin_loop();
        }
    }
    u64::try_from(begin.elapsed().as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sender_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<UdpSender>();
    }

    #[test]
    fn stats_accounting() {
        let mut s = SendStats::default();
        s.account(3 * 1408 + 10, 3 * 1408 + 10, 1408);
        assert_eq!((s.datagrams, s.bytes, s.sends), (4, 3 * 1408 + 10, 1));
        s.account(1408, 100, 1408);
        assert_eq!((s.errors, s.dropped), (1, 1));
        let mut t = SendStats::default();
        t += s;
        t += s;
        assert_eq!(t.datagrams, 8);
    }

    #[test]
    fn setup_display() {
        let s = SendSetup {
            path: SendPath::UringGso,
            zero_copy: true,
            registered_buffers: false,
            busy_poll: true,
            max_segments: 64,
        };
        assert_eq!(s.to_string(), "io_uring+GSO (SEND_ZC, busy-poll)");
        assert_eq!(
            SendSetup {
                zero_copy: false,
                busy_poll: false,
                ..s
            }
            .to_string(),
            "io_uring+GSO"
        );
    }

    #[test]
    fn sendto_path_needs_no_caps() {
        let caps = Caps::none();
        let cfg = SendConfig::default();
        let tx = UdpSender::new("127.0.0.1:0".parse().expect("literal"), &cfg, &caps)
            .expect("sendto always works");
        assert_eq!(tx.path(), SendPath::Sendmmsg);
        assert!(
            UdpSender::with_path(
                "127.0.0.1:0".parse().expect("literal"),
                SendPath::UringGso,
                &cfg,
                &caps
            )
            .is_err()
        );
    }

    #[test]
    fn rejects_misuse() {
        let caps = Caps::none();
        let cfg = SendConfig::default();
        let mut tx = UdpSender::with_path(
            "127.0.0.1:0".parse().expect("literal"),
            SendPath::Sendto,
            &cfg,
            &caps,
        )
        .expect("sendto always works");
        let dest: SocketAddr = "127.0.0.1:9".parse().expect("literal");
        assert!(matches!(
            tx.send_frame(dest, &[0; 10], 0, Pacing::Immediate),
            Err(IoError::InvalidArgument(_))
        ));
        assert!(matches!(
            tx.send_frame(dest, &[0; 10], 70_000, Pacing::Immediate),
            Err(IoError::InvalidArgument(_))
        ));
        let v6: SocketAddr = "[::1]:9".parse().expect("literal");
        assert!(matches!(
            tx.send_frame(v6, &[0; 10], 5, Pacing::Immediate),
            Err(IoError::InvalidArgument(_))
        ));
        assert!(matches!(
            tx.send_staged(dest, 10, 5, Pacing::Immediate),
            Err(IoError::InvalidArgument(_))
        ));
        assert_eq!(
            tx.send_frame(dest, &[], 5, Pacing::Immediate)
                .expect("empty is fine"),
            SendStats::default()
        );
    }
}
