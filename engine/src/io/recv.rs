//! [`UdpReceiver`]: the receive side for the reference client and the tests.
//!
//! Two backends behind one API, both optionally with UDP GRO (`UDP_GRO`, Linux 5.0):
//!
//! * `recvmmsg(2)`: a batch of 64 KiB slots per call, `MSG_DONTWAIT`, `poll(2)` for the
//!   timeout.
//! * io_uring multishot `IORING_OP_RECVMSG` (6.0) with a provided-buffer ring (5.19): one SQE
//!   keeps receiving into buffers the kernel picks; each CQE names the buffer, which is
//!   handed back to the ring once its datagrams were delivered.
//!
//! With GRO the kernel may hand over several datagrams of one flow as one buffer plus a
//! `UDP_GRO` control message carrying the segment size; [`split_gro`] cuts it back up:
//!
//! ```text
//!  GRO buffer |  gso_size  |  gso_size  |  gso_size  | ≤ gso_size |
//!             '-- dgram 0 -'-- dgram 1 -'-- dgram 2 -'- dgram 3 --'
//!  multishot buffer | io_uring_recvmsg_out | name (28) | control (64) | payload … |
//! ```
//!
//! # Soundness (multishot)
//!
//! The kernel writes into the provided buffers whenever a datagram arrives while the request
//! is armed, so they are raw allocations owned by the receiver, never viewed through a Rust
//! reference except for the one buffer a CQE just handed to us. Before that memory is freed
//! the request is cancelled synchronously (`IORING_REGISTER_SYNC_CANCEL`, 6.0) and the ring
//! closed; if the cancel fails, the memory is leaked rather than freed.

use std::alloc::Layout;
use std::net::{SocketAddr, UdpSocket};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::types::{BufRingEntry, CancelBuilder, RecvMsgOut, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, types};

use super::socket::{self, CMSG_SPACE_INT};
use super::{Caps, IoError};

/// Bytes per receive slot: the largest GRO buffer or datagram (64 KiB).
const SLOT_BYTES: usize = 1 << 16;
/// Name space reserved per received message: `sockaddr_in6`.
const NAME_BYTES: usize = std::mem::size_of::<libc::sockaddr_in6>();
/// Control space per received message: room for `UDP_GRO` and a spare message.
const CONTROL_BYTES: usize = 64;
const _: () = assert!(
    CONTROL_BYTES >= CMSG_SPACE_INT,
    "room for the UDP_GRO message"
);
/// Header io_uring puts in front of each multishot recvmsg buffer.
const RECVMSG_OUT_BYTES: usize = 16;
/// Provided-buffer group id of the multishot receiver.
const BUF_GROUP: u16 = 7;
/// `user_data` of the multishot receive SQE.
const RECV_USER_DATA: u64 = 0x5245_4356; // "RECV"

/// Which receive backend to prefer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RecvPathPreference {
    /// `recvmmsg` (see docs/io.md for why it is the default).
    #[default]
    Auto,
    /// `recvmmsg(2)`.
    Recvmmsg,
    /// io_uring multishot recvmsg with a provided-buffer ring; falls back to `recvmmsg`.
    UringMultishot,
}

/// The receive backend in use.
#[non_exhaustive]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecvPath {
    /// `recvmmsg(2)`.
    Recvmmsg,
    /// io_uring multishot recvmsg.
    UringMultishot,
}

/// Receive-side settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceiveConfig {
    /// Backend preference.
    pub path: RecvPathPreference,
    /// Ask for UDP GRO (coalesced receive); ignored where the kernel lacks it.
    pub gro: bool,
    /// `SO_BUSY_POLL` microseconds (0 = off).
    pub so_busy_poll_us: u32,
    /// `SO_RCVBUF` bytes (0 = kernel default); `SO_RCVBUFFORCE` is tried first.
    pub socket_receive_buffer: usize,
    /// Messages per `recvmmsg` call; provided buffers are twice this (power of two).
    pub batch: usize,
    /// Spin instead of sleeping while waiting for data.
    pub busy_spin: bool,
}

impl Default for ReceiveConfig {
    fn default() -> Self {
        Self {
            path: RecvPathPreference::Auto,
            gro: true,
            so_busy_poll_us: 0,
            socket_receive_buffer: 16 << 20,
            batch: 32,
            busy_spin: false,
        }
    }
}

/// Receive counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvStats {
    /// Datagrams delivered to the callback.
    pub datagrams: u64,
    /// Payload bytes delivered.
    pub bytes: u64,
    /// Kernel buffers received (a GRO buffer counts once).
    pub buffers: u64,
    /// Buffers that carried more than one datagram (GRO coalesced).
    pub coalesced: u64,
    /// System calls: `recvmmsg`, `poll` or `io_uring_enter`.
    pub syscalls: u64,
    /// Datagrams dropped because they did not fit a slot (`MSG_TRUNC`).
    pub truncated: u64,
    /// Buffers dropped because the kernel's metadata did not parse.
    pub malformed: u64,
    /// Times the multishot receive ran out of provided buffers (`ENOBUFS`) and was re-armed.
    pub no_buffers: u64,
    /// Receive errors reported by the kernel and absorbed (e.g. a pending ICMP error).
    pub errors: u64,
}

/// Splits a received buffer into datagrams: chunks of `gso_size` (the last may be shorter)
/// when the kernel coalesced with GRO, else the buffer is one datagram.
pub fn split_gro(buf: &[u8], gso_size: Option<usize>) -> std::slice::Chunks<'_, u8> {
    let size = gso_size.filter(|&s| s > 0).unwrap_or(buf.len().max(1));
    buf.chunks(size)
}

/// Receives UDP datagrams, GRO-coalesced or not, and hands them to a callback one by one.
///
/// ```no_run
/// use std::time::Duration;
/// use punktfunk_engine::io::{Caps, ReceiveConfig, UdpReceiver};
///
/// let caps = Caps::probe();
/// let mut rx = UdpReceiver::bind("127.0.0.1:0".parse()?, &ReceiveConfig::default(), &caps)?;
/// let n = rx.recv(Duration::from_millis(10), |from, datagram| {
///     println!("{} bytes from {from}", datagram.len());
/// })?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct UdpReceiver {
    // Field order is drop order: the backend (ring and kernel-visible buffers) goes before
    // the socket.
    backend: Backend,
    socket: UdpSocket,
    local: SocketAddr,
    gro: bool,
    busy_spin: bool,
    receive_buffer: usize,
    stats: RecvStats,
}

enum Backend {
    Mmsg(MmsgRx),
    Uring(Box<MultishotRx>),
}

impl UdpReceiver {
    /// Binds a non-blocking socket to `addr` and sets it up per `config`.
    pub fn bind(addr: SocketAddr, config: &ReceiveConfig, caps: &Caps) -> Result<Self, IoError> {
        let socket = socket::bind_udp(addr)?;
        socket
            .set_nonblocking(true)
            .map_err(|e| IoError::os("set_nonblocking", e))?;
        let local = socket
            .local_addr()
            .map_err(|e| IoError::os("getsockname", e))?;
        let fd = socket.as_raw_fd();
        if config.socket_receive_buffer > 0 {
            match socket::set_buffer(
                fd,
                libc::SO_RCVBUFFORCE,
                libc::SO_RCVBUF,
                config.socket_receive_buffer,
            ) {
                Ok((got, forced)) => tracing::debug!(got, forced, "SO_RCVBUF"),
                Err(e) => tracing::debug!(error = %e, "SO_RCVBUF not set"),
            }
        }
        let receive_buffer = socket::get_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF)
            .ok()
            .and_then(|v| usize::try_from(v).ok())
            .unwrap_or(0);
        if config.so_busy_poll_us > 0 {
            let us = libc::c_int::try_from(config.so_busy_poll_us).unwrap_or(libc::c_int::MAX);
            if let Err(e) = socket::set_int(fd, libc::SOL_SOCKET, libc::SO_BUSY_POLL, us) {
                tracing::debug!(error = %e, "SO_BUSY_POLL not set");
            }
        }
        let gro =
            config.gro && caps.gro && socket::set_int(fd, libc::SOL_UDP, libc::UDP_GRO, 1).is_ok();
        let batch = config.batch.clamp(1, 1024);
        let backend = match config.path {
            RecvPathPreference::UringMultishot if caps.uring_recv_multishot => {
                let buffers = (batch * 2).next_power_of_two().clamp(8, 1 << 15);
                Backend::Uring(Box::new(MultishotRx::new(buffers)?))
            }
            _ => Backend::Mmsg(MmsgRx::new(batch)),
        };
        Ok(Self {
            backend,
            socket,
            local,
            gro,
            busy_spin: config.busy_spin,
            receive_buffer,
            stats: RecvStats::default(),
        })
    }

    /// The bound local address.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// The backend in use.
    pub fn path(&self) -> RecvPath {
        match self.backend {
            Backend::Mmsg(_) => RecvPath::Recvmmsg,
            Backend::Uring(_) => RecvPath::UringMultishot,
        }
    }

    /// Whether UDP GRO is on for this socket.
    pub fn gro(&self) -> bool {
        self.gro
    }

    /// The socket's receive buffer in bytes as the kernel reports it (`SO_RCVBUF`: twice the
    /// payload budget, socket(7)). Without `CAP_NET_ADMIN` it is capped by
    /// `net.core.rmem_max`.
    pub fn receive_buffer(&self) -> usize {
        self.receive_buffer
    }

    /// Counters so far.
    pub fn stats(&self) -> RecvStats {
        self.stats
    }

    /// Waits up to `timeout` for data, then delivers what is ready (up to one batch) to
    /// `on_datagram(from, payload)`, one call per datagram. Returns the number delivered;
    /// `0` means the timeout passed. Malformed or truncated input is counted, never an error.
    pub fn recv(
        &mut self,
        timeout: Duration,
        mut on_datagram: impl FnMut(SocketAddr, &[u8]),
    ) -> Result<usize, IoError> {
        // `Duration::MAX` means "wait as long as it takes": cap it instead of overflowing.
        let now = Instant::now();
        let deadline = now
            .checked_add(timeout)
            .unwrap_or(now + Duration::from_secs(365 * 24 * 3600));
        let Self {
            backend,
            socket,
            stats,
            busy_spin,
            ..
        } = self;
        match backend {
            Backend::Mmsg(m) => loop {
                let n = m.recv_once(socket.as_raw_fd(), stats, &mut on_datagram)?;
                if n > 0 {
                    return Ok(n);
                }
                let now = Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                if *busy_spin {
                    std::hint::spin_loop();
                    continue;
                }
                stats.syscalls += 1;
                let ready = socket::poll_readable(socket, deadline - now)
                    .map_err(|e| IoError::os("poll", e))?;
                if !ready && Instant::now() >= deadline {
                    return Ok(0);
                }
            },
            Backend::Uring(u) => u.recv(
                socket.as_raw_fd(),
                deadline,
                *busy_spin,
                stats,
                &mut on_datagram,
            ),
        }
    }
}

impl std::fmt::Debug for UdpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UdpReceiver")
            .field("local", &self.local)
            .field("path", &self.path())
            .field("gro", &self.gro)
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Delivers one received buffer: splits it per GRO and books the counters.
fn deliver(
    payload: &[u8],
    from: Option<SocketAddr>,
    control: &[u8],
    truncated: bool,
    stats: &mut RecvStats,
    on_datagram: &mut impl FnMut(SocketAddr, &[u8]),
) -> usize {
    stats.buffers += 1;
    if truncated {
        stats.truncated += 1;
        return 0;
    }
    let Some(from) = from else {
        stats.malformed += 1;
        return 0;
    };
    let gso = socket::gro_segment_size(control);
    let mut n = 0;
    for datagram in split_gro(payload, gso) {
        on_datagram(from, datagram);
        n += 1;
    }
    stats.datagrams += n as u64;
    stats.bytes += payload.len() as u64;
    if n > 1 {
        stats.coalesced += 1;
    }
    n
}

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct NameBuf([u8; 32]);

#[repr(C, align(8))]
#[derive(Clone, Copy)]
struct ControlBuf([u8; CONTROL_BYTES]);

/// `recvmmsg` backend: `batch` slots of 64 KiB with their name and control buffers.
struct MmsgRx {
    slots: Vec<u8>,
    names: Vec<NameBuf>,
    controls: Vec<ControlBuf>,
    iovs: Vec<libc::iovec>,
    msgs: Vec<libc::mmsghdr>,
}

// SAFETY: `iovs`/`msgs` hold raw pointers into the sibling vectors, rewritten before every
// `recvmmsg` call and dereferenced only by that synchronous call, made through `&mut self`.
// Nothing ties them to a thread.
unsafe impl Send for MmsgRx {}

impl MmsgRx {
    fn new(batch: usize) -> Self {
        // SAFETY: all-zero is a valid `mmsghdr` (null pointers, zero lengths).
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Self {
            slots: vec![0; batch * SLOT_BYTES],
            names: vec![NameBuf([0; 32]); batch],
            controls: vec![ControlBuf([0; CONTROL_BYTES]); batch],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            msgs: vec![zero_msg; batch],
        }
    }

    fn recv_once(
        &mut self,
        fd: i32,
        stats: &mut RecvStats,
        on_datagram: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> Result<usize, IoError> {
        let batch = self.msgs.len();
        for (j, slot) in self.slots.chunks_exact_mut(SLOT_BYTES).enumerate() {
            self.iovs[j] = libc::iovec {
                iov_base: slot.as_mut_ptr().cast(),
                iov_len: SLOT_BYTES,
            };
            let hdr = &mut self.msgs[j].msg_hdr;
            hdr.msg_name = self.names[j].0.as_mut_ptr().cast();
            hdr.msg_namelen = 32;
            hdr.msg_iov = &mut self.iovs[j];
            hdr.msg_iovlen = 1;
            hdr.msg_control = self.controls[j].0.as_mut_ptr().cast();
            hdr.msg_controllen = CONTROL_BYTES;
            hdr.msg_flags = 0;
            self.msgs[j].msg_len = 0;
        }
        stats.syscalls += 1;
        // SAFETY: every header points at live, exclusively borrowed buffers of the lengths
        // given (slot, name, control) in `self`; `recvmmsg` is synchronous and writes only
        // within those lengths and the headers themselves.
        let rc = unsafe {
            libc::recvmmsg(
                fd,
                self.msgs.as_mut_ptr(),
                batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        let Ok(got) = usize::try_from(rc) else {
            let e = std::io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN | libc::EINTR) => Ok(0),
                // A pending ICMP error (connected sockets) or similar: absorb it.
                Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH) => {
                    stats.errors += 1;
                    Ok(0)
                }
                _ => Err(IoError::os("recvmmsg", e)),
            };
        };
        let mut delivered = 0;
        for j in 0..got.min(batch) {
            let hdr = &self.msgs[j].msg_hdr;
            let len = (self.msgs[j].msg_len as usize).min(SLOT_BYTES);
            let truncated = hdr.msg_flags & libc::MSG_TRUNC != 0;
            let namelen = (hdr.msg_namelen as usize).min(32);
            let controllen = hdr.msg_controllen.min(CONTROL_BYTES);
            let from = socket::parse_sockaddr(&self.names[j].0[..namelen]);
            let payload = &self.slots[j * SLOT_BYTES..][..len];
            let control = &self.controls[j].0[..controllen];
            delivered += deliver(payload, from, control, truncated, stats, on_datagram);
        }
        Ok(delivered)
    }
}

/// A zeroed, page-aligned heap allocation the kernel may access behind Rust's back. Only
/// raw pointers into it are handed out. Can be leaked instead of freed (see module docs).
struct RawBuf {
    ptr: *mut u8,
    layout: Layout,
    leak: bool,
}

// SAFETY: `RawBuf` owns its allocation exclusively (like a `Box<[u8]>`); the raw pointer has
// no thread affinity.
unsafe impl Send for RawBuf {}

impl RawBuf {
    fn new(len: usize) -> Result<Self, IoError> {
        let layout = Layout::from_size_align(len.max(1), 4096)
            .map_err(|_| IoError::InvalidArgument("buffer size overflows"))?;
        // SAFETY: `layout` has a non-zero size.
        let ptr = unsafe { std::alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            return Err(IoError::TooLarge {
                what: "receive buffers",
                len,
                capacity: 0,
            });
        }
        Ok(Self {
            ptr,
            layout,
            leak: false,
        })
    }
}

impl Drop for RawBuf {
    fn drop(&mut self) {
        if !self.leak {
            // SAFETY: `ptr` came from `alloc_zeroed(self.layout)` and is freed only here.
            unsafe { std::alloc::dealloc(self.ptr, self.layout) }
        }
    }
}

/// io_uring multishot recvmsg backend with a provided-buffer ring.
struct MultishotRx {
    // Field order is drop order: the ring goes before the memory registered with it.
    ring: IoUring,
    buf_ring: RawBuf,
    buffers: RawBuf,
    msghdr: Box<libc::msghdr>,
    count: u16,
    buf_size: usize,
    tail: u16,
    armed: bool,
}

// SAFETY: the only non-`Send` field is the `msghdr` template, whose pointers are all null
// (the kernel reads just its two lengths); the ring and the raw buffers are owned
// exclusively by this value, so moving it to another thread moves everything with it.
unsafe impl Send for MultishotRx {}

impl MultishotRx {
    fn new(count: usize) -> Result<Self, IoError> {
        let count = u16::try_from(count.next_power_of_two())
            .map_err(|_| IoError::InvalidArgument("too many provided buffers"))?;
        let buf_size = RECVMSG_OUT_BYTES + NAME_BYTES + CONTROL_BYTES + SLOT_BYTES;
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(8)
            .or_else(|_| IoUring::new(8))
            .map_err(|e| IoError::os("io_uring_setup", e))?;
        let buf_ring = RawBuf::new(usize::from(count) * std::mem::size_of::<BufRingEntry>())?;
        let buffers = RawBuf::new(usize::from(count) * buf_size)?;
        // SAFETY: `buf_ring` is a page-aligned, zeroed allocation of `count` entries, owned by
        // the returned value and dropped only after the ring (field order) — and after the
        // explicit unregister in `Drop`.
        unsafe {
            ring.submitter()
                .register_buf_ring_with_flags(buf_ring.ptr as u64, count, BUF_GROUP, 0)
        }
        .map_err(|e| IoError::os("IORING_REGISTER_PBUF_RING", e))?;
        // SAFETY: all-zero is a valid `msghdr`; only the two lengths matter to the kernel for
        // multishot recvmsg (io_uring_prep_recvmsg_multishot(3)).
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_BYTES as libc::socklen_t;
        msghdr.msg_controllen = CONTROL_BYTES;
        let mut rx = Self {
            ring,
            buf_ring,
            buffers,
            msghdr,
            count,
            buf_size,
            tail: 0,
            armed: false,
        };
        for bid in 0..count {
            rx.provide(bid);
        }
        rx.publish_tail();
        Ok(rx)
    }

    /// Puts buffer `bid` back into the ring (visible to the kernel after `publish_tail`).
    fn provide(&mut self, bid: u16) {
        let mask = self.count - 1;
        let entries = self.buf_ring.ptr.cast::<BufRingEntry>();
        // SAFETY: `tail & mask < count`, so the entry lies inside `buf_ring`; the kernel only
        // reads entries between its head and our published tail, and this one is past the
        // published tail until `publish_tail`, so we are its only accessor.
        let entry = unsafe { &mut *entries.add(usize::from(self.tail & mask)) };
        let addr = self
            .buffers
            .ptr
            .wrapping_add(usize::from(bid) * self.buf_size);
        entry.set_addr(addr as u64);
        entry.set_len(self.buf_size as u32);
        entry.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish_tail(&self) {
        let entries = self.buf_ring.ptr.cast::<BufRingEntry>();
        // SAFETY: the tail field overlays the `resv` field of entry 0, inside `buf_ring`,
        // aligned for u16; the kernel reads it concurrently, hence the atomic store, and the
        // Release ordering publishes the entries written before it (io_uring_buf_ring_advance).
        let tail = unsafe { AtomicU16::from_ptr(BufRingEntry::tail(entries).cast_mut()) };
        tail.store(self.tail, Ordering::Release);
    }

    fn arm(&mut self, fd: i32) -> bool {
        let entry = opcode::RecvMsgMulti::new(types::Fd(fd), &*self.msghdr, BUF_GROUP)
            .build()
            .user_data(RECV_USER_DATA);
        // SAFETY: the SQE points at `self.msghdr`, a heap box owned by self that outlives the
        // ring; the kernel copies the two lengths at submission.
        let pushed = unsafe { self.ring.submission().push(&entry) }.is_ok();
        self.armed = pushed;
        pushed
    }

    fn recv(
        &mut self,
        fd: i32,
        deadline: Instant,
        busy_spin: bool,
        stats: &mut RecvStats,
        on_datagram: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> Result<usize, IoError> {
        loop {
            if !self.armed && !self.arm(fd) {
                return Err(IoError::InvalidArgument("submission queue full"));
            }
            let cq_empty = self.ring.completion().is_empty();
            let need_enter = {
                let sq = self.ring.submission();
                !sq.is_empty() || sq.taskrun()
            };
            let left = deadline.saturating_duration_since(Instant::now());
            let res = if cq_empty && !busy_spin && !left.is_zero() {
                stats.syscalls += 1;
                let ts = Timespec::from(left);
                let args = SubmitArgs::new().timespec(&ts);
                Some(self.ring.submitter().submit_with_args(1, &args))
            } else if need_enter {
                stats.syscalls += 1;
                Some(self.ring.submit())
            } else {
                None
            };
            match res {
                None | Some(Ok(_)) => {}
                Some(Err(e)) if matches!(e.raw_os_error(), Some(libc::ETIME | libc::EINTR)) => {}
                Some(Err(e)) => return Err(IoError::os("io_uring_enter", e)),
            }
            let n = self.reap(stats, on_datagram);
            if n > 0 || Instant::now() >= deadline {
                return Ok(n);
            }
            if busy_spin {
                std::hint::spin_loop();
            }
        }
    }

    fn reap(
        &mut self,
        stats: &mut RecvStats,
        on_datagram: &mut impl FnMut(SocketAddr, &[u8]),
    ) -> usize {
        let mut delivered = 0;
        let mut returned = false;
        for cqe in self.ring.completion() {
            if cqe.user_data() != RECV_USER_DATA {
                continue;
            }
            let (res, flags) = (cqe.result(), cqe.flags());
            if !cqueue::more(flags) {
                self.armed = false;
            }
            let Ok(len) = usize::try_from(res) else {
                match -res {
                    libc::ENOBUFS => stats.no_buffers += 1,
                    libc::ECANCELED => {}
                    _ => stats.errors += 1,
                }
                continue;
            };
            let Some(bid) = cqueue::buffer_select(flags).filter(|&b| b < self.count) else {
                stats.malformed += 1;
                continue;
            };
            let len = len.min(self.buf_size);
            let start = self
                .buffers
                .ptr
                .wrapping_add(usize::from(bid) * self.buf_size);
            // SAFETY: the CQE hands buffer `bid` (inside `buffers`, `buf_size` bytes, `len`
            // of them written) to us; the kernel will not touch it until we provide it back
            // below, and no other reference to this region exists.
            let buf = unsafe { std::slice::from_raw_parts(start, len) };
            match RecvMsgOut::parse(buf, &self.msghdr) {
                Ok(out) => {
                    let from = socket::parse_sockaddr(out.name_data());
                    delivered += deliver(
                        out.payload_data(),
                        from,
                        out.control_data(),
                        out.is_payload_truncated(),
                        stats,
                        on_datagram,
                    );
                }
                Err(()) => stats.malformed += 1,
            }
            // Inline `provide` (cq borrows the ring, not the buffer ring).
            let mask = self.count - 1;
            let entries = self.buf_ring.ptr.cast::<BufRingEntry>();
            // SAFETY: as in `provide`: the entry at `tail & mask` is past the published tail.
            let entry = unsafe { &mut *entries.add(usize::from(self.tail & mask)) };
            entry.set_addr(start as u64);
            entry.set_len(self.buf_size as u32);
            entry.set_bid(bid);
            self.tail = self.tail.wrapping_add(1);
            returned = true;
        }
        if returned {
            self.publish_tail();
        }
        delivered
    }
}

impl Drop for MultishotRx {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let cancelled = match self.ring.submitter().register_sync_cancel(
            Some(Timespec::from(Duration::from_secs(1))),
            CancelBuilder::user_data(RECV_USER_DATA),
        ) {
            Ok(()) => true,
            Err(e) => e.raw_os_error() == Some(libc::ENOENT),
        };
        if !cancelled {
            // The kernel may still write into the buffers: leak them rather than free.
            tracing::warn!("multishot recv not cancelled; leaking its buffers");
            self.buffers.leak = true;
            self.buf_ring.leak = true;
        }
    }
}

/// Checks UDP GRO on loopback: sets `UDP_GRO`, and with `gso` sends three 100-byte
/// segments and a 40-byte one as one GSO send, which must come back as exactly those
/// datagrams. Returns whether they arrived coalesced.
pub(crate) fn probe_gro(gso: bool) -> Result<bool, String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let rx = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    rx.set_nonblocking(true).map_err(|e| e.to_string())?;
    socket::set_int(rx.as_raw_fd(), libc::SOL_UDP, libc::UDP_GRO, 1)
        .map_err(|e| format!("setsockopt(UDP_GRO): {e}"))?;
    if !gso {
        return Ok(false);
    }
    let tx = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    socket::set_int(tx.as_raw_fd(), libc::SOL_UDP, libc::UDP_SEGMENT, 100)
        .map_err(|e| e.to_string())?;
    tx.send_to(&[0x3c; 340], rx.local_addr().map_err(|e| e.to_string())?)
        .map_err(|e| e.to_string())?;
    let mut m = MmsgRx::new(4);
    let mut stats = RecvStats::default();
    let mut lens = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(250);
    while lens.len() < 4 && Instant::now() < deadline {
        let n = m
            .recv_once(rx.as_raw_fd(), &mut stats, &mut |_, d: &[u8]| {
                lens.push(d.len())
            })
            .map_err(|e| e.to_string())?;
        if n == 0 {
            socket::poll_readable(&rx, Duration::from_millis(50)).map_err(|e| e.to_string())?;
        }
    }
    if lens == [100, 100, 100, 40] {
        Ok(stats.coalesced > 0)
    } else {
        Err(format!("GSO send through a GRO socket arrived as {lens:?}"))
    }
}

/// Checks multishot recvmsg with a provided-buffer ring end to end on loopback.
pub(crate) fn probe_multishot() -> Result<(), String> {
    let any = SocketAddr::from(([127, 0, 0, 1], 0));
    let rx = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    let tx = UdpSocket::bind(any).map_err(|e| e.to_string())?;
    let dest = rx.local_addr().map_err(|e| e.to_string())?;
    let mut m = MultishotRx::new(4).map_err(|e| e.to_string())?;
    let mut stats = RecvStats::default();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_millis(250);
    // Arm first so the datagram lands in a provided buffer.
    if !m.arm(rx.as_raw_fd()) {
        return Err("could not queue the SQE".to_owned());
    }
    m.ring.submit().map_err(|e| e.to_string())?;
    tx.send_to(b"probe", dest).map_err(|e| e.to_string())?;
    while got.is_empty() && Instant::now() < deadline {
        m.recv(
            rx.as_raw_fd(),
            deadline,
            false,
            &mut stats,
            &mut |_, d: &[u8]| got.push(d.to_vec()),
        )
        .map_err(|e| e.to_string())?;
    }
    if got == [b"probe".to_vec()] {
        Ok(())
    } else {
        Err(format!("received {got:?}, stats {stats:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn receiver_is_send() {
        fn assert_send<T: Send>() {}
        assert_send::<UdpReceiver>();
    }

    #[test]
    fn huge_timeout_does_not_overflow() {
        let mut rx = UdpReceiver::bind(
            SocketAddr::from(([127, 0, 0, 1], 0)),
            &ReceiveConfig::default(),
            &Caps::none(),
        )
        .expect("bind");
        let to = rx.local_addr();
        let tx = UdpSocket::bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
        tx.send_to(b"x", to).expect("send");
        let n = rx
            .recv(Duration::MAX, |_, d| assert_eq!(d, b"x"))
            .expect("recv");
        assert_eq!(n, 1);
    }

    #[test]
    fn split_gro_cases() {
        let buf: Vec<u8> = (0..10).collect();
        let parts: Vec<&[u8]> = split_gro(&buf, Some(4)).collect();
        assert_eq!(parts, [&[0, 1, 2, 3][..], &[4, 5, 6, 7], &[8, 9]]);
        assert_eq!(split_gro(&buf, None).count(), 1);
        assert_eq!(split_gro(&buf, Some(0)).count(), 1);
        assert_eq!(split_gro(&buf, Some(10)).count(), 1);
        assert_eq!(split_gro(&[], None).count(), 0);
    }
}
