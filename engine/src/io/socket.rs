//! Thin, checked wrappers around the socket calls the drivers share.
//!
//! Everything here is a direct translation of one libc call: socket options, `sendto(2)`,
//! `poll(2)` and the conversions between [`SocketAddr`] and the kernel's `sockaddr_in{,6}`.
//! The parsers for what the kernel hands back (addresses, control messages) read plain byte
//! slices, so they hold no `unsafe` and are unit-tested with literal fixtures.

use std::io;
use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use super::IoError;

/// Largest UDP payload of one IPv4 datagram: 65535 − 20 (IPv4 header) − 8 (UDP header).
/// The kernel enforces the same bound on a whole GSO send (`__ip_append_data`, and
/// `udp_send_skb` in net/ipv4/udp.c since 4.18), so it is also the largest GSO buffer.
pub(crate) const MAX_UDP_PAYLOAD: usize = 65_507;

/// A destination address in the kernel's layout, ready to hand to `sendto`/io_uring.
///
/// Kept as the concrete `sockaddr_in`/`sockaddr_in6` so that building one needs no `unsafe`;
/// [`SockAddr::as_ptr`] casts to the generic `sockaddr` the calls take.
#[derive(Clone, Copy)]
pub(crate) enum SockAddr {
    V4(libc::sockaddr_in),
    V6(libc::sockaddr_in6),
}

impl SockAddr {
    /// The kernel representation of `addr` (same field conventions as the standard library).
    pub(crate) fn new(addr: SocketAddr) -> Self {
        match addr {
            SocketAddr::V4(a) => Self::V4(libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            }),
            SocketAddr::V6(a) => Self::V6(libc::sockaddr_in6 {
                sin6_family: libc::AF_INET6 as libc::sa_family_t,
                sin6_port: a.port().to_be(),
                sin6_flowinfo: a.flowinfo(),
                sin6_addr: libc::in6_addr {
                    s6_addr: a.ip().octets(),
                },
                sin6_scope_id: a.scope_id(),
            }),
        }
    }

    /// Pointer to the generic `sockaddr`; valid as long as `self` is not moved or dropped.
    pub(crate) fn as_ptr(&self) -> *const libc::sockaddr {
        match self {
            Self::V4(a) => (a as *const libc::sockaddr_in).cast(),
            Self::V6(a) => (a as *const libc::sockaddr_in6).cast(),
        }
    }

    /// `(pointer, length)` for an optional address; `(null, 0)` sends to the connected peer.
    pub(crate) fn raw(dest: Option<&Self>) -> (*const libc::sockaddr, libc::socklen_t) {
        dest.map_or((std::ptr::null(), 0), |d| (d.as_ptr(), d.len()))
    }

    /// Length in bytes of the address behind [`SockAddr::as_ptr`].
    pub(crate) fn len(&self) -> libc::socklen_t {
        match self {
            Self::V4(_) => size_of::<libc::sockaddr_in>() as libc::socklen_t,
            Self::V6(_) => size_of::<libc::sockaddr_in6>() as libc::socklen_t,
        }
    }
}

/// Parses a `sockaddr_in`/`sockaddr_in6` the kernel wrote into `bytes` (native byte order for
/// the family, network order for port and address). `None` for anything else or a short buffer.
pub(crate) fn parse_sockaddr(bytes: &[u8]) -> Option<SocketAddr> {
    let family = u16::from_ne_bytes(bytes.get(0..2)?.try_into().ok()?);
    let port = u16::from_be_bytes(bytes.get(2..4)?.try_into().ok()?);
    match i32::from(family) {
        libc::AF_INET => {
            let ip: [u8; 4] = bytes.get(4..8)?.try_into().ok()?;
            Some(SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::from(ip), port)))
        }
        libc::AF_INET6 => {
            let flowinfo = u32::from_ne_bytes(bytes.get(4..8)?.try_into().ok()?);
            let ip: [u8; 16] = bytes.get(8..24)?.try_into().ok()?;
            let scope = u32::from_ne_bytes(bytes.get(24..28)?.try_into().ok()?);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(ip),
                port,
                flowinfo,
                scope,
            )))
        }
        _ => None,
    }
}

/// Size of `struct cmsghdr` on Linux: `size_t cmsg_len; int cmsg_level; int cmsg_type;`.
const CMSG_HDR: usize = size_of::<usize>() + 2 * size_of::<libc::c_int>();

/// `CMSG_ALIGN`: control messages are padded to the alignment of `size_t`.
const fn cmsg_align(len: usize) -> usize {
    (len + size_of::<usize>() - 1) & !(size_of::<usize>() - 1)
}

/// Bytes of control buffer one `int`-valued control message needs (`CMSG_SPACE(sizeof(int))`).
pub(crate) const CMSG_SPACE_INT: usize =
    cmsg_align(CMSG_HDR) + cmsg_align(size_of::<libc::c_int>());

/// Finds the `SOL_UDP`/`UDP_GRO` control message in a received control buffer and returns the
/// segment size the kernel coalesced with (`udp_cmsg_recv`, net/ipv4/udp.c, since 5.0).
///
/// Malformed control data (a length that runs past the buffer) ends the walk; it never panics.
pub(crate) fn gro_segment_size(control: &[u8]) -> Option<usize> {
    let mut rest = control;
    while rest.len() >= CMSG_HDR {
        let len = usize::from_ne_bytes(rest[..size_of::<usize>()].try_into().ok()?);
        let level = i32::from_ne_bytes(rest[size_of::<usize>()..][..4].try_into().ok()?);
        let kind = i32::from_ne_bytes(rest[size_of::<usize>() + 4..][..4].try_into().ok()?);
        if len < CMSG_HDR || len > rest.len() {
            return None;
        }
        if level == libc::SOL_UDP && kind == libc::UDP_GRO {
            let data = rest.get(cmsg_align(CMSG_HDR)..len)?;
            let value = i32::from_ne_bytes(data.get(..4)?.try_into().ok()?);
            return usize::try_from(value).ok().filter(|&v| v > 0);
        }
        rest = rest.get(cmsg_align(len)..).unwrap_or(&[]);
    }
    None
}

/// Sets an `int` socket option.
pub(crate) fn set_int(
    fd: RawFd,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `value` is a live `c_int` for the duration of the call and the length passed is
    // its size; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            level,
            name,
            (&value as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Reads an `int` socket option.
pub(crate) fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `value` and `len` are live locals; the kernel writes at most `len` bytes.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            level,
            name,
            (&mut value as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    if rc == 0 {
        Ok(value)
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for a socket buffer of `bytes`: first with the `*FORCE` option, which ignores
/// `net.core.{r,w}mem_max` but needs `CAP_NET_ADMIN`, then with the plain one (clamped to the
/// sysctl). Returns the size the kernel reports afterwards (twice the request: the kernel
/// doubles it for bookkeeping overhead, see socket(7)) and whether the forced form worked.
pub(crate) fn set_buffer(
    fd: RawFd,
    force: libc::c_int,
    plain: libc::c_int,
    bytes: usize,
) -> io::Result<(usize, bool)> {
    let want = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let forced = set_int(fd, libc::SOL_SOCKET, force, want).is_ok();
    if !forced {
        set_int(fd, libc::SOL_SOCKET, plain, want)?;
    }
    let got = get_int(fd, libc::SOL_SOCKET, plain)?;
    Ok((usize::try_from(got).unwrap_or(0), forced))
}

/// A bound UDP socket, in blocking mode unless the caller changes it.
pub(crate) fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, IoError> {
    UdpSocket::bind(addr).map_err(|source| IoError::Os { op: "bind", source })
}

/// One `sendto(2)` (to the connected peer when `dest` is `None`); returns the bytes the
/// kernel accepted.
pub(crate) fn sendto(fd: RawFd, buf: &[u8], dest: Option<&SockAddr>) -> io::Result<usize> {
    let (addr, addr_len) = SockAddr::raw(dest);
    // SAFETY: `buf` is a live slice of `buf.len()` bytes and `addr` is null or a live address
    // of `addr_len` bytes; `sendto` is synchronous, so neither is touched after it returns.
    let rc = unsafe { libc::sendto(fd, buf.as_ptr().cast(), buf.len(), 0, addr, addr_len) };
    usize::try_from(rc).map_err(|_| io::Error::last_os_error())
}

/// Waits until `sock` is readable or `timeout` passes. `Ok(false)` on timeout or `EINTR`.
pub(crate) fn poll_readable(sock: &impl AsRawFd, timeout: Duration) -> io::Result<bool> {
    let mut pfd = libc::pollfd {
        fd: sock.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // Round up so that a sub-millisecond timeout still waits instead of spinning.
    let ms = timeout.as_micros().div_ceil(1000);
    let ms = libc::c_int::try_from(ms).unwrap_or(libc::c_int::MAX);
    // SAFETY: `pfd` is one live `pollfd` and we pass a count of 1.
    let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
    match rc {
        0 => Ok(false),
        n if n > 0 => Ok(true),
        _ => {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                Ok(false)
            } else {
                Err(e)
            }
        }
    }
}

/// How the drivers react to an errno from a send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SendErrorClass {
    /// Out of socket buffer or queue space (`EAGAIN`, `ENOBUFS`, `EINTR`): try the same send again.
    Retry,
    /// The peer or the route is gone (`ECONNREFUSED` from an earlier ICMP error on a connected
    /// socket, `EHOSTUNREACH`, `ENETUNREACH`, `EHOSTDOWN`): count the datagrams lost and go on.
    Drop,
    /// Anything else (`EINVAL`, `EMSGSIZE`, `EBADF`, …): a local bug or misconfiguration.
    Fatal,
}

/// Classifies a positive errno.
pub(crate) fn classify_send_errno(errno: i32) -> SendErrorClass {
    match errno {
        libc::EAGAIN | libc::ENOBUFS | libc::EINTR => SendErrorClass::Retry,
        libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EHOSTDOWN => {
            SendErrorClass::Drop
        }
        _ => SendErrorClass::Fatal,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sockaddr_round_trip() {
        for addr in [
            "127.0.0.1:4242",
            "[::1]:9",
            "[fe80::1%3]:65535",
            "0.0.0.0:0",
        ] {
            let addr: SocketAddr = addr.parse().expect("literal address");
            let raw = SockAddr::new(addr);
            // SAFETY: `as_ptr` points at `len()` live bytes of `raw`.
            let bytes = unsafe {
                std::slice::from_raw_parts(raw.as_ptr().cast::<u8>(), raw.len() as usize)
            };
            assert_eq!(parse_sockaddr(bytes), Some(addr));
        }
    }

    #[test]
    fn sockaddr_parse_rejects_garbage() {
        assert_eq!(parse_sockaddr(&[]), None);
        assert_eq!(parse_sockaddr(&[2, 0, 0]), None);
        let mut unix = [0u8; 16];
        unix[..2].copy_from_slice(&(libc::AF_UNIX as u16).to_ne_bytes());
        assert_eq!(parse_sockaddr(&unix), None);
    }

    /// A control buffer as the kernel writes it on x86_64: one `UDP_GRO` message with 1408.
    #[test]
    fn gro_cmsg_fixture() {
        #[rustfmt::skip]
        let control: [u8; 24] = [
            20, 0, 0, 0, 0, 0, 0, 0, // cmsg_len = CMSG_LEN(4) = 20
            17, 0, 0, 0,             // SOL_UDP
            104, 0, 0, 0,            // UDP_GRO
            0x80, 0x05, 0, 0,        // 1408
            0, 0, 0, 0,              // padding to CMSG_SPACE(4) = 24
        ];
        assert_eq!(CMSG_SPACE_INT, 24);
        assert_eq!(gro_segment_size(&control), Some(1408));
        // Another message first, then GRO.
        let mut two = [0u8; 48];
        two[..8].copy_from_slice(&20usize.to_ne_bytes());
        two[8..12].copy_from_slice(&libc::SOL_SOCKET.to_ne_bytes());
        two[12..16].copy_from_slice(&libc::SO_RXQ_OVFL.to_ne_bytes());
        two[24..].copy_from_slice(&control);
        assert_eq!(gro_segment_size(&two), Some(1408));
    }

    #[test]
    fn gro_cmsg_malformed_never_panics() {
        assert_eq!(gro_segment_size(&[]), None);
        let mut bad = [0u8; 24];
        bad[..8].copy_from_slice(&1000usize.to_ne_bytes()); // runs past the buffer
        assert_eq!(gro_segment_size(&bad), None);
        bad[..8].copy_from_slice(&3usize.to_ne_bytes()); // shorter than a header
        assert_eq!(gro_segment_size(&bad), None);
        for len in 0..64 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 % 251) as u8).collect();
            let _ = gro_segment_size(&junk);
        }
    }

    #[test]
    fn errno_classes() {
        assert_eq!(classify_send_errno(libc::EAGAIN), SendErrorClass::Retry);
        assert_eq!(classify_send_errno(libc::ENOBUFS), SendErrorClass::Retry);
        assert_eq!(
            classify_send_errno(libc::ECONNREFUSED),
            SendErrorClass::Drop
        );
        assert_eq!(classify_send_errno(libc::EINVAL), SendErrorClass::Fatal);
    }
}
