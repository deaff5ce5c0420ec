//! The io_uring UDP send driver.
//!
//! One [`UringDriver::send`] call turns a run of equally sized chunks (GSO sends of up to
//! 64 KiB, or single datagrams) into `IORING_OP_SEND` / `IORING_OP_SEND_ZC` SQEs carrying the
//! destination address (`addr2`: 6.0 for SEND_ZC, 6.1 for SEND), submits as many as the slot table allows per
//! `io_uring_enter`, and reaps completions until every operation is finished:
//!
//! ```text
//!  slots[i] : Free ──push SQE (user_data = i)──▶ InFlight ──result CQE──▶ Free
//!                                                    │ (SEND_ZC: IORING_CQE_F_MORE set)
//!                                                    └──▶ AwaitNotif ──notif CQE──▶ Free
//! ```
//!
//! # Soundness
//!
//! The kernel reads the payload and the destination address asynchronously. Both stay
//! valid until the last CQE of the operation arrives because `send` does not return while
//! any slot is `InFlight` or `AwaitNotif`: the payload is either borrowed from the caller
//! for the duration of the call or lives in the driver's own staging buffer, and the
//! address lives in a heap box the driver owns. For `SEND_ZC` the notification CQE
//! (`IORING_CQE_F_NOTIF`) — posted when the kernel dropped its last reference to the pages —
//! is what frees a slot, not the result CQE (io_uring_enter(2), `IORING_OP_SEND_ZC`, 6.0).
//!
//! The only way out with operations pending is an `io_uring_enter` failure that is neither
//! `EINTR` nor `EAGAIN`/`EBUSY` (i.e. a broken ring). Then the driver cancels everything
//! synchronously (`IORING_REGISTER_SYNC_CANCEL`, 6.0), waits up to a second for the CQEs
//! without entering the ring, marks itself broken so that SQEs never submitted stay so, and
//! aborts the process if an operation could still touch the caller's memory — the one case
//! where memory safety cannot be kept any other way.
//!
//! The CQ ring has twice the SQ entries (the kernel default), the slot table has as many
//! entries as the SQ, and an operation posts at most two CQEs, so the CQ cannot overflow.

use std::net::SocketAddr;
use std::os::fd::RawFd;
use std::time::{Duration, Instant};

use io_uring::{IoUring, cqueue, opcode, squeue, types};

use super::fallback::Backoff;
use super::socket::{self, SendErrorClass, SockAddr};
use super::{IoError, SendStats};

/// `IORING_SEND_ZC_REPORT_USAGE` (6.2): the notification's `res` tells whether the kernel
/// had to copy after all (`IORING_NOTIF_USAGE_ZC_COPIED`), e.g. on loopback.
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// Bit in a notification CQE's `res` set when the zero-copy send was copied.
const NOTIF_USAGE_ZC_COPIED: u32 = 1 << 31;
/// Index of the staging buffer in the ring's registered-buffer table.
const STAGING_BUF_INDEX: u16 = 0;

/// Where the payload of one [`UringDriver::send`] lives.
pub(crate) enum Buf<'a> {
    /// Borrowed from the caller for the duration of the call.
    Borrowed(&'a [u8]),
    /// `range` of the driver's own staging buffer (registered with the ring).
    Staged(std::ops::Range<usize>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SlotState {
    Free,
    InFlight,
    AwaitNotif,
}

#[derive(Debug, Clone, Copy)]
struct Slot {
    chunk: usize,
    len: usize,
    state: SlotState,
}

/// io_uring send driver. Owns its ring, the destination address the SQEs point at and,
/// optionally, a staging buffer registered with the ring (`IORING_REGISTER_BUFFERS`).
pub(crate) struct UringDriver {
    // Field order is drop order: the ring (and with it the buffer registration) goes before
    // the memory it refers to.
    ring: IoUring,
    staging: Option<Box<[u8]>>,
    /// Destination the SQEs point at (heap, so its address is stable).
    dest: Box<SockAddr>,
    /// Whether SQEs carry `dest`; without it they go to the connected peer.
    use_dest: bool,
    slots: Vec<Slot>,
    free: Vec<usize>,
    retry: Vec<usize>,
    zero_copy: bool,
    busy_poll: bool,
    broken: bool,
}

impl UringDriver {
    /// A ring of `entries` SQEs. `staging` is registered as fixed buffer 0 when given, and is
    /// then used by zero-copy sends of [`Buf::Staged`] payloads.
    pub(crate) fn new(
        entries: u32,
        zero_copy: bool,
        busy_poll: bool,
        staging: Option<Box<[u8]>>,
    ) -> Result<Self, IoError> {
        let entries = entries.clamp(2, 4096).next_power_of_two();
        // COOP_TASKRUN (5.19) saves an IPI per completion; TASKRUN_FLAG lets the busy-poll
        // loop see pending task work. Older kernels reject the flags: retry without.
        let ring = IoUring::builder()
            .setup_coop_taskrun()
            .setup_taskrun_flag()
            .build(entries)
            .or_else(|_| IoUring::new(entries))
            .map_err(|e| IoError::os("io_uring_setup", e))?;
        let sq = ring.params().sq_entries() as usize;
        let mut staging = staging;
        if let Some(st) = staging.as_mut() {
            let iov = libc::iovec {
                iov_base: st.as_mut_ptr().cast(),
                iov_len: st.len(),
            };
            // SAFETY: the iovec describes the live heap allocation `st`, which moves into
            // `self.staging` below and is dropped only after `self.ring` (field order), so it
            // stays valid for as long as the registration exists.
            unsafe { ring.submitter().register_buffers(&[iov]) }
                .map_err(|e| IoError::os("IORING_REGISTER_BUFFERS", e))?;
        }
        Ok(Self {
            ring,
            staging,
            dest: Box::new(SockAddr::new(SocketAddr::from(([0, 0, 0, 0], 0)))),
            use_dest: false,
            slots: vec![
                Slot {
                    chunk: 0,
                    len: 0,
                    state: SlotState::Free
                };
                sq
            ],
            free: (0..sq).rev().collect(),
            retry: Vec::with_capacity(sq),
            zero_copy,
            busy_poll,
            broken: false,
        })
    }

    /// The staging buffer, if one was registered.
    pub(crate) fn staging_mut(&mut self) -> Option<&mut [u8]> {
        self.staging.as_deref_mut()
    }

    /// Whether a staging buffer is registered.
    pub(crate) fn has_staging(&self) -> bool {
        self.staging.is_some()
    }

    fn in_flight(&self) -> usize {
        self.slots.len() - self.free.len()
    }

    /// Sends `buf` to `dest` (the connected peer if `None`) as chunks of `chunk` bytes, a
    /// multiple of `seg` (GSO needs the socket's `UDP_SEGMENT` set to `seg` beforehand), and
    /// returns when every operation it started has completed.
    pub(crate) fn send(
        &mut self,
        fd: RawFd,
        dest: Option<SocketAddr>,
        buf: Buf<'_>,
        seg: usize,
        chunk: usize,
        stats: &mut SendStats,
    ) -> Result<(), IoError> {
        if self.broken {
            return Err(IoError::Unsupported {
                what: "io_uring send",
                reason: "the ring failed earlier and was shut down".to_owned(),
            });
        }
        debug_assert_eq!(
            self.in_flight(),
            0,
            "send() always returns with every slot free"
        );
        let (base, total, fixed) = match buf {
            Buf::Borrowed(b) => (b.as_ptr(), b.len(), None),
            Buf::Staged(range) => {
                let Some(st) = self.staging.as_ref() else {
                    return Err(IoError::InvalidArgument("no staging buffer registered"));
                };
                let Some(b) = st.get(range) else {
                    return Err(IoError::InvalidArgument("staged range outside the buffer"));
                };
                let fixed = self.zero_copy.then_some(STAGING_BUF_INDEX);
                (b.as_ptr(), b.len(), fixed)
            }
        };
        if total == 0 {
            return Ok(());
        }
        if chunk == 0 || chunk > socket::MAX_UDP_PAYLOAD {
            return Err(IoError::InvalidArgument("chunk must be 1..=65507 bytes"));
        }
        // No operation is in flight (checked above), so nothing refers to the old address.
        self.use_dest = dest.is_some();
        if let Some(d) = dest {
            *self.dest = SockAddr::new(d);
        }
        let n_chunks = total.div_ceil(chunk);
        let mut next = 0usize;
        self.retry.clear();
        let mut fatal: Option<IoError> = None;
        let mut backoff = Backoff::default();

        loop {
            // Fill the SQ from the retry list first, then fresh chunks.
            if fatal.is_none() {
                let mut sq = self.ring.submission();
                while !sq.is_full() {
                    let Some(&slot) = self.free.last() else { break };
                    let chunk_idx = if let Some(c) = self.retry.pop() {
                        c
                    } else if next < n_chunks {
                        next += 1;
                        next - 1
                    } else {
                        break;
                    };
                    let offset = chunk_idx * chunk;
                    let len = chunk.min(total - offset);
                    // `offset < total` because `chunk_idx < n_chunks`; in bounds of `base`.
                    let ptr = base.wrapping_add(offset);
                    let entry = build_sqe(
                        self.zero_copy,
                        self.use_dest.then_some(&*self.dest),
                        fd,
                        ptr,
                        len,
                        fixed,
                    )
                    .user_data(slot as u64);
                    // SAFETY: the SQE points at `len` bytes of the payload (borrowed for this
                    // call or owned by `self.staging`) and at `self.dest` (heap, owned by
                    // self). Neither is freed or changed before the operation's last CQE,
                    // because this function reaps every slot before it returns (see the
                    // module docs for the one exception, which aborts).
                    if unsafe { sq.push(&entry) }.is_err() {
                        // Cannot happen (checked `is_full`); put the chunk back and submit.
                        self.retry.push(chunk_idx);
                        break;
                    }
                    self.free.pop();
                    self.slots[slot] = Slot {
                        chunk: chunk_idx,
                        len,
                        state: SlotState::InFlight,
                    };
                }
            }
            if self.in_flight() == 0 {
                break;
            }
            if let Err(e) = self.submit_and_wait(stats) {
                let errno = e.raw_os_error().unwrap_or(libc::EIO);
                match errno {
                    libc::EINTR => continue,
                    libc::EAGAIN | libc::EBUSY => {
                        stats.retries += 1;
                        self.reap(seg, stats, &mut fatal);
                        if let Err(err) = backoff.wait("io_uring_enter", errno) {
                            return Err(self.abandon(err));
                        }
                        continue;
                    }
                    _ => return Err(self.abandon(IoError::os("io_uring_enter", e))),
                }
            }
            let progressed = self.reap(seg, stats, &mut fatal);
            if progressed {
                backoff.reset();
            } else if !self.retry.is_empty() && fatal.is_none() {
                // Only ENOBUFS/EAGAIN came back: give the queue a moment.
                if let Err(err) = backoff.wait("io_uring send", libc::ENOBUFS) {
                    fatal.get_or_insert(err);
                }
            }
        }
        match fatal {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// Submits what is queued and waits for at least one completion: sleeping in
    /// `io_uring_enter`, or (busy poll) spinning on the CQ ring, entering the kernel only to
    /// submit and to run task work the kernel flagged with `IORING_SQ_TASKRUN`.
    fn submit_and_wait(&mut self, stats: &mut SendStats) -> std::io::Result<()> {
        stats.syscalls += 1;
        if !self.busy_poll {
            return self.ring.submit_and_wait(1).map(drop);
        }
        self.ring.submit()?;
        let mut spins = 0u32;
        loop {
            if !self.ring.completion().is_empty() {
                return Ok(());
            }
            spins += 1;
            // Task work (e.g. a send that waited for socket buffer space) only runs on a
            // kernel entry; enter when it is flagged, and now and then regardless in case
            // the kernel did not set up the flag.
            if self.ring.submission().taskrun() || spins.is_multiple_of(4096) {
                stats.syscalls += 1;
                self.ring.submit()?;
            }
            std::hint::spin_loop();
        }
    }

    /// Handles every CQE in the ring. Returns whether any send made progress.
    fn reap(&mut self, seg: usize, stats: &mut SendStats, fatal: &mut Option<IoError>) -> bool {
        let mut progressed = false;
        for cqe in self.ring.completion() {
            let (res, flags) = (cqe.result(), cqe.flags());
            let Some(idx) = usize::try_from(cqe.user_data())
                .ok()
                .filter(|&i| i < self.slots.len())
            else {
                stats.unexpected_completions += 1;
                continue;
            };
            let slot = &mut self.slots[idx]; // in bounds: filtered just above
            if cqueue::notif(flags) {
                if slot.state != SlotState::AwaitNotif {
                    stats.unexpected_completions += 1;
                    continue;
                }
                if (res as u32) & NOTIF_USAGE_ZC_COPIED != 0 {
                    stats.zc_copied += 1;
                }
                slot.state = SlotState::Free;
                self.free.push(idx);
                continue;
            }
            if slot.state != SlotState::InFlight {
                stats.unexpected_completions += 1;
                continue;
            }
            if let Ok(sent) = usize::try_from(res) {
                stats.account(slot.len, sent, seg);
                progressed = true;
            } else {
                let errno = -res;
                match socket::classify_send_errno(errno) {
                    SendErrorClass::Retry if fatal.is_none() => {
                        stats.retries += 1;
                        self.retry.push(slot.chunk);
                    }
                    SendErrorClass::Retry | SendErrorClass::Drop => {
                        stats.drop_send(slot.len, seg);
                    }
                    SendErrorClass::Fatal => {
                        stats.drop_send(slot.len, seg);
                        let op = if self.zero_copy {
                            "IORING_OP_SEND_ZC"
                        } else {
                            "IORING_OP_SEND"
                        };
                        fatal.get_or_insert(IoError::os(
                            op,
                            std::io::Error::from_raw_os_error(errno),
                        ));
                    }
                }
            }
            if cqueue::more(flags) {
                slot.state = SlotState::AwaitNotif;
            } else {
                slot.state = SlotState::Free;
                self.free.push(idx);
            }
        }
        progressed
    }

    /// The ring cannot be entered any more: cancel what the kernel holds, collect what it
    /// posts, and make sure nothing can touch the caller's memory after we return.
    fn abandon(&mut self, err: IoError) -> IoError {
        self.broken = true;
        let unsubmitted = self.ring.submission().len();
        let _ = self.ring.submitter().register_sync_cancel(
            Some(types::Timespec::from(Duration::from_secs(1))),
            types::CancelBuilder::any(),
        );
        let deadline = Instant::now() + Duration::from_secs(1);
        let mut ignored = None;
        let mut scratch = SendStats::default();
        while self.in_flight() > unsubmitted && Instant::now() < deadline {
            self.reap(1, &mut scratch, &mut ignored);
            std::thread::sleep(Duration::from_micros(100));
        }
        if self.in_flight() > unsubmitted {
            // Operations the kernel accepted may still read the caller's buffer after we
            // return it. No safe continuation exists.
            tracing::error!(error = %err, "io_uring broke with sends in flight; aborting");
            std::process::abort();
        }
        // SQEs never submitted stay unsubmitted: `broken` keeps us out of io_uring_enter and
        // closing the ring does not submit them.
        err
    }
}

/// One send SQE for `len` bytes at `ptr` to `dest` (the connected peer if `None`); `fixed`
/// names a registered buffer.
fn build_sqe(
    zero_copy: bool,
    dest: Option<&SockAddr>,
    fd: RawFd,
    ptr: *const u8,
    len: usize,
    fixed: Option<u16>,
) -> squeue::Entry {
    // `len <= MAX_UDP_PAYLOAD` (checked by the caller), so it fits the SQE's u32.
    let len32 = len as u32;
    let (addr, addr_len) = SockAddr::raw(dest);
    if zero_copy {
        opcode::SendZc::new(types::Fd(fd), ptr, len32)
            .dest_addr(addr)
            .dest_addr_len(addr_len)
            .buf_index(fixed)
            .zc_flags(SEND_ZC_REPORT_USAGE)
            .build()
    } else {
        opcode::Send::new(types::Fd(fd), ptr, len32)
            .dest_addr(addr)
            .dest_addr_len(addr_len)
            .build()
    }
}
