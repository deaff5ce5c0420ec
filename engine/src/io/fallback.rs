//! The portable send paths: one `sendto(2)` per datagram (the baseline every figure is
//! compared with) and `sendmmsg(2)` batches, with or without GSO.
//!
//! Both are synchronous: the kernel has copied the payload when the call returns, so the
//! caller's buffer is only borrowed for the duration of the call.

use std::time::Duration;

use super::socket::{self, SendErrorClass, SockAddr};
use super::{IoError, SendStats};

/// Messages per `sendmmsg` call. The kernel caps `vlen` at `UIO_MAXIOV` (1024); 256 keeps
/// the scratch arrays at 20 KiB and already amortises the call over 256 datagrams.
const MMSG_BATCH: usize = 256;

/// Consecutive `ENOBUFS`/`EAGAIN` answers tolerated before a send gives up.
const MAX_CONSECUTIVE_RETRIES: u32 = 20_000;

/// Retry pacing for transient send errors: yield a few times, then sleep 50 µs per try, and
/// give up after [`MAX_CONSECUTIVE_RETRIES`] (about one second of a full queue).
#[derive(Debug, Default)]
pub(crate) struct Backoff {
    consecutive: u32,
}

impl Backoff {
    /// Progress was made: start over.
    pub(crate) fn reset(&mut self) {
        self.consecutive = 0;
    }

    /// Waits before retrying `op` after `errno`, or fails when the queue stays full.
    pub(crate) fn wait(&mut self, op: &'static str, errno: i32) -> Result<(), IoError> {
        self.consecutive += 1;
        if self.consecutive > MAX_CONSECUTIVE_RETRIES {
            return Err(IoError::os(op, std::io::Error::from_raw_os_error(errno)));
        }
        if self.consecutive <= 8 {
            std::thread::yield_now();
        } else {
            std::thread::sleep(Duration::from_micros(50));
        }
        Ok(())
    }
}

/// Sends every datagram of `buf` (stride `seg`, last one possibly short) with its own
/// `sendto`. The baseline path.
pub(crate) fn send_sendto(
    fd: i32,
    dest: Option<&SockAddr>,
    buf: &[u8],
    seg: usize,
    stats: &mut SendStats,
) -> Result<(), IoError> {
    let mut backoff = Backoff::default();
    for datagram in buf.chunks(seg) {
        loop {
            stats.syscalls += 1;
            match socket::sendto(fd, datagram, dest) {
                Ok(n) => {
                    backoff.reset();
                    stats.account(datagram.len(), n, seg);
                    break;
                }
                Err(e) => {
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    match socket::classify_send_errno(errno) {
                        SendErrorClass::Retry => {
                            stats.retries += 1;
                            backoff.wait("sendto", errno)?;
                        }
                        SendErrorClass::Drop => {
                            stats.drop_send(datagram.len(), seg);
                            break;
                        }
                        SendErrorClass::Fatal => return Err(IoError::os("sendto", e)),
                    }
                }
            }
        }
    }
    Ok(())
}

/// Scratch `mmsghdr`/`iovec` arrays for `sendmmsg`, allocated once per sender.
///
/// The headers hold raw pointers into the caller's buffer and to the destination address.
/// They are written at the start of every [`MmsgDriver::send`] batch and read only by the
/// synchronous `sendmmsg` call that follows; between calls they dangle but are never read.
struct MmsgScratch {
    msgs: Vec<libc::mmsghdr>,
    iovs: Vec<libc::iovec>,
}

// SAFETY: the raw pointers inside are only dereferenced (by the kernel) during a `sendmmsg`
// call made by the thread that currently owns the driver through `&mut self`; they carry
// no thread affinity and no shared ownership, so moving the scratch to another thread is
// as safe as moving a `Vec<u8>`.
unsafe impl Send for MmsgScratch {}

/// The `sendmmsg(2)` path. With GSO each message is one GSO send of up to 64 KiB, without it
/// each message is one datagram.
pub(crate) struct MmsgDriver {
    scratch: MmsgScratch,
}

impl MmsgDriver {
    pub(crate) fn new() -> Self {
        // SAFETY: `mmsghdr` and `iovec` are plain C structs of integers and raw pointers, for
        // which all-zero (null pointers, zero lengths) is a valid value.
        let zero_msg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        let zero_iov = libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 0,
        };
        Self {
            scratch: MmsgScratch {
                msgs: vec![zero_msg; MMSG_BATCH],
                iovs: vec![zero_iov; MMSG_BATCH],
            },
        }
    }

    /// Sends `buf` as messages of `chunk` bytes (a multiple of `seg`; `chunk == seg`
    /// without GSO). The socket's `UDP_SEGMENT` option must already equal `seg` when
    /// `chunk > seg`.
    pub(crate) fn send(
        &mut self,
        fd: i32,
        dest: Option<&SockAddr>,
        buf: &[u8],
        seg: usize,
        chunk: usize,
        stats: &mut SendStats,
    ) -> Result<(), IoError> {
        let n_chunks = buf.len().div_ceil(chunk);
        let part = |i: usize| {
            let start = i * chunk;
            &buf[start..buf.len().min(start + chunk)]
        };
        let mut next = 0;
        let mut backoff = Backoff::default();
        let MmsgScratch { msgs, iovs } = &mut self.scratch;
        let (name, namelen) = SockAddr::raw(dest);
        while next < n_chunks {
            let batch = (n_chunks - next).min(MMSG_BATCH);
            for j in 0..batch {
                let p = part(next + j);
                iovs[j] = libc::iovec {
                    iov_base: p.as_ptr().cast_mut().cast(),
                    iov_len: p.len(),
                };
                let hdr = &mut msgs[j].msg_hdr;
                hdr.msg_name = name.cast_mut().cast();
                hdr.msg_namelen = namelen;
                hdr.msg_iov = &mut iovs[j];
                hdr.msg_iovlen = 1;
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
                hdr.msg_flags = 0;
                msgs[j].msg_len = 0;
            }
            stats.syscalls += 1;
            // SAFETY: the first `batch` headers were filled just above: each points at one
            // live iovec in `iovs`, which points into `buf` (borrowed for this whole call),
            // and at `dest` (borrowed likewise, or null for the connected peer). `sendmmsg` is
            // synchronous and writes only the `msg_len` fields of those headers.
            let rc = unsafe { libc::sendmmsg(fd, msgs.as_mut_ptr(), batch as libc::c_uint, 0) };
            match usize::try_from(rc) {
                Ok(sent) if sent > 0 => {
                    backoff.reset();
                    for (j, msg) in msgs.iter().enumerate().take(sent.min(batch)) {
                        stats.account(iovs[j].iov_len, msg.msg_len as usize, seg);
                    }
                    next += sent.min(batch);
                }
                Ok(_) => {
                    // Zero messages sent without an error: treat like a full queue.
                    stats.retries += 1;
                    backoff.wait("sendmmsg", libc::EAGAIN)?;
                }
                Err(_) => {
                    let e = std::io::Error::last_os_error();
                    let errno = e.raw_os_error().unwrap_or(libc::EIO);
                    match socket::classify_send_errno(errno) {
                        SendErrorClass::Retry => {
                            stats.retries += 1;
                            backoff.wait("sendmmsg", errno)?;
                        }
                        SendErrorClass::Drop => {
                            // The error belongs to the first message of the batch.
                            stats.drop_send(part(next).len(), seg);
                            next += 1;
                        }
                        SendErrorClass::Fatal => return Err(IoError::os("sendmmsg", e)),
                    }
                }
            }
        }
        Ok(())
    }
}
