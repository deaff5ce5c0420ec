//! Kernel-facing code: the UDP send drivers, the receive path and the capability probe.
//!
//! This is the "act" half of the engine. Everything that decides (packet layout, pacing,
//! FEC) is pure and lives outside `io/`; the code here only translates those decisions into
//! system calls and translates what the kernel reports back into counters and errors.
//!
//! # Send path
//!
//! The packetizer lays a frame out as datagrams of a fixed stride, the last one possibly
//! shorter. That is exactly the layout UDP GSO (`UDP_SEGMENT`, Linux 4.18) wants, so the
//! drivers send straight out of the caller's buffer:
//!
//! ```text
//!  caller buffer  |d0 |d1 |d2 | … |d45|d46|d47| … |d91|d92| … |dN-1 (short)|
//!                 '------ GSO send 0 --------'------ GSO send 1 ----' … '-- last --'
//!                  ≤ 65507 bytes and ≤ gso_max_segments datagrams per send
//!  pacer bursts   '---- burst 0 ----'--- burst 1 ---'  …   (each burst: ≤ 1 GSO send by default)
//!  io_uring       SQE per GSO send (user_data = slot), one io_uring_enter per batch,
//!                 every CQE (and SEND_ZC notification) reaped before send_frame returns
//! ```
//!
//! [`Caps::probe`] finds out once what the kernel supports; [`UdpSender::new`] picks the best
//! path (io_uring+GSO → io_uring → sendmmsg(+GSO) → sendto) and logs it in one `info` line.
//! [`UdpSender::with_path`] forces one path so that benchmarks can compare them.
//!
//! # Receive path
//!
//! [`UdpReceiver`] serves the reference client and the tests: `recvmmsg(2)` or an io_uring
//! multishot `recvmsg` with a provided-buffer ring, both optionally with UDP GRO; coalesced
//! GRO buffers are split back into datagrams before they reach the caller.
//!
//! # punktfunk/1
//!
//! [`pf1`] pairs the pure punktfunk/1 packetizer and reassembler ([`crate::pf1`]) with these
//! drivers: [`pf1::Pf1FrameSender`] and the client's [`pf1::Pf1ReceiveLoop`].
//!
//! # Threads
//!
//! [`stages`] runs the capture → encode → FEC → send pipeline on threads joined by the rings
//! of [`crate::ring`], and [`pin`] pins them to cores and raises their scheduling priority
//! (`pipeline.priority`; `docs/pipeline.md`). [`build`] is the one place a session's pipeline
//! is put together from the tuning profile, for both protocols.
//!
//! See `docs/io.md` for the design, the soundness argument and measurements.

pub mod build;
mod caps;
pub mod driver;
mod fallback;
pub mod pf1;
pub mod pin;
mod recv;
mod send;
pub mod sink;
mod socket;
pub mod stages;
mod uring;

pub use caps::{Caps, PathChoice, select_path};
pub use recv::{ReceiveConfig, RecvPath, RecvPathPreference, RecvStats, UdpReceiver, split_gro};
pub use send::{Pacing, STAGING_BYTES, SendPath, SendSetup, SendStats, UdpSender};

/// Largest payload of one UDP send, GSO or not (IPv4: 65535 − 20 − 8).
pub const MAX_UDP_PAYLOAD: usize = socket::MAX_UDP_PAYLOAD;

/// Errors of the io layer.
///
/// Local misuse ([`IoError::InvalidArgument`]), missing kernel support
/// ([`IoError::Unsupported`]), resource limits ([`IoError::TooLarge`]) and operating-system
/// failures ([`IoError::Os`]) are kept apart. Trouble caused by the network (a peer that went
/// away, a truncated or malformed datagram) is never an error: it is counted in the stats.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum IoError {
    /// The caller passed something the API does not accept.
    #[error("invalid argument: {0}")]
    InvalidArgument(&'static str),
    /// The requested path or feature is not available on this kernel.
    #[error("{what} is not supported here: {reason}")]
    Unsupported {
        /// What was asked for.
        what: &'static str,
        /// Why the probe ruled it out.
        reason: String,
    },
    /// A buffer the engine sized at start-up is too small for the request.
    #[error("{what}: {len} bytes exceed the capacity of {capacity} bytes")]
    TooLarge {
        /// Which buffer.
        what: &'static str,
        /// Requested bytes.
        len: usize,
        /// Available bytes.
        capacity: usize,
    },
    /// A system call failed in a way the driver cannot absorb.
    #[error("{op} failed: {source}")]
    Os {
        /// The operation, e.g. `"sendmmsg"` or `"io_uring_enter"`.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl IoError {
    fn os(op: &'static str, source: std::io::Error) -> Self {
        Self::Os { op, source }
    }
}
