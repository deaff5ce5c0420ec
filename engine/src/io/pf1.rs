//! The act halves of the punktfunk/1 data plane: a frame sender over [`UdpSender`] and a
//! receive loop over [`UdpReceiver`] feeding [`Pf1Receiver`].
//!
//! Inside the host's pipeline, frames go through
//! [`Pf1PacketizeStage`](crate::pf1::Pf1PacketizeStage) and the ordinary
//! [`SendSink`](super::sink::SendSink); [`Pf1FrameSender`] is the same path without the
//! pipeline threads, for benches, tests and tools.
//!
//! ```text
//!  Pf1FrameSender::send_frame                  Pf1ReceiveLoop::poll
//!   Pf1Sender::packetize → own buffer           UdpReceiver::recv (GRO batches)
//!   UdpSender::send_frame(stride L + 52) ─UDP─►  └ each datagram → Pf1Receiver::handle_datagram
//!     (io_uring + GSO, paced)                    handle_timeout, poll_event → callback
//! ```
//!
//! These read the clock (`Instant::now()` once per receive batch) and touch sockets; the
//! decisions stay in [`crate::pf1`].

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::{IoError, Pacing, SendStats, UdpReceiver, UdpSender};
use crate::pf1::{FrameInfo, Packetized, Pf1Error, Pf1Event, Pf1Receiver, Pf1Sender};

/// Errors of the punktfunk/1 act helpers: the protocol layer's or the kernel's.
#[non_exhaustive]
#[derive(Debug, thiserror::Error)]
pub enum Pf1IoError {
    /// The frame could not be packetized (local misuse or an exhausted key).
    #[error(transparent)]
    Protocol(#[from] Pf1Error),
    /// The kernel refused the send or receive.
    #[error(transparent)]
    Io(#[from] IoError),
}

/// Packetizes frames into a buffer it owns and sends them with one [`UdpSender`].
#[derive(Debug)]
pub struct Pf1FrameSender {
    packetizer: Pf1Sender,
    udp: UdpSender,
    /// Grows to the largest frame's datagrams, then stays.
    buf: Vec<u8>,
}

impl Pf1FrameSender {
    /// Sends `packetizer`'s datagrams through `udp`.
    pub fn new(packetizer: Pf1Sender, udp: UdpSender) -> Self {
        Self {
            packetizer,
            udp,
            buf: Vec::new(),
        }
    }

    /// Reserves the buffer for frames of up to `frame_len` bytes now rather than on first use.
    pub fn reserve(&mut self, frame_len: usize) {
        let n = self.packetizer.max_output(frame_len);
        if self.buf.len() < n {
            self.buf.resize(n, 0);
        }
    }

    /// The packetizer (parity, loss estimate, key updates).
    pub fn packetizer_mut(&mut self) -> &mut Pf1Sender {
        &mut self.packetizer
    }

    /// The packetizer.
    pub fn packetizer(&self) -> &Pf1Sender {
        &self.packetizer
    }

    /// The UDP sender.
    pub fn udp(&self) -> &UdpSender {
        &self.udp
    }

    /// Packetizes `frame`, seals it and sends its datagrams to `dest` as GSO trains.
    pub fn send_frame(
        &mut self,
        dest: SocketAddr,
        frame: &[u8],
        info: &FrameInfo,
        pacing: Pacing,
    ) -> Result<(Packetized, SendStats), Pf1IoError> {
        self.reserve(frame.len());
        let p = self.packetizer.packetize(frame, info, &mut self.buf)?;
        let stats = self
            .udp
            .send_frame(dest, &self.buf[..p.len()], p.layout.stride, pacing)?;
        Ok((p, stats))
    }
}

/// Counters of a [`Pf1ReceiveLoop`] beyond the receiver's own.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiveLoopStats {
    /// Datagrams from an address other than the expected peer, dropped unread.
    pub foreign: u64,
    /// Datagrams the filter dropped (loss injection in benches).
    pub filtered: u64,
}

/// Receives punktfunk/1 datagrams with [`UdpReceiver`] (GRO batches) and feeds them to a
/// [`Pf1Receiver`], handing its events to a callback.
#[derive(Debug)]
pub struct Pf1ReceiveLoop {
    udp: UdpReceiver,
    receiver: Pf1Receiver,
    peer: Option<SocketAddr>,
    stats: ReceiveLoopStats,
}

impl Pf1ReceiveLoop {
    /// Feeds `receiver` from `udp`.
    pub fn new(udp: UdpReceiver, receiver: Pf1Receiver) -> Self {
        Self {
            udp,
            receiver,
            peer: None,
            stats: ReceiveLoopStats::default(),
        }
    }

    /// Accepts datagrams only from `peer` (the host's data-plane address) when set; others
    /// are counted in [`ReceiveLoopStats::foreign`] without being decrypted.
    pub fn set_peer(&mut self, peer: Option<SocketAddr>) {
        self.peer = peer;
    }

    /// The bound local address (what the control plane announces to the host).
    pub fn local_addr(&self) -> SocketAddr {
        self.udp.local_addr()
    }

    /// The reassembler (stats, loss reports, keys, buffer recycling).
    pub fn receiver_mut(&mut self) -> &mut Pf1Receiver {
        &mut self.receiver
    }

    /// The reassembler.
    pub fn receiver(&self) -> &Pf1Receiver {
        &self.receiver
    }

    /// The UDP receiver.
    pub fn udp(&self) -> &UdpReceiver {
        &self.udp
    }

    /// Counters of the loop itself.
    pub fn stats(&self) -> ReceiveLoopStats {
        self.stats
    }

    /// Waits up to `timeout` for one batch, feeds it to the receiver and hands every event to
    /// `on_event` (the frame's buffer can go back through [`Pf1Receiver::recycle`] afterwards).
    /// Returns the datagrams received; 0 means the timeout passed (frame timeouts are still
    /// applied).
    pub fn poll(
        &mut self,
        timeout: Duration,
        on_event: impl FnMut(&mut Pf1Receiver, Pf1Event),
    ) -> Result<usize, IoError> {
        self.poll_filtered(timeout, |_| true, on_event)
    }

    /// [`Pf1ReceiveLoop::poll`] with a filter that may drop datagrams before the receiver sees
    /// them (`keep` returns false): loss injection for benches and tests.
    pub fn poll_filtered(
        &mut self,
        timeout: Duration,
        mut keep: impl FnMut(&[u8]) -> bool,
        mut on_event: impl FnMut(&mut Pf1Receiver, Pf1Event),
    ) -> Result<usize, IoError> {
        let Self {
            udp,
            receiver,
            peer,
            stats,
        } = self;
        let mut now: Option<Instant> = None;
        let n = udp.recv(timeout, |from, datagram| {
            if peer.is_some_and(|p| p != from) {
                stats.foreign += 1;
                return;
            }
            if !keep(datagram) {
                stats.filtered += 1;
                return;
            }
            // One clock read per batch: the datagrams of a batch arrived together.
            let t = *now.get_or_insert_with(Instant::now);
            // Errors are counted in the receiver's stats; a bad datagram affects nothing else.
            let _ = receiver.handle_datagram(t, datagram);
        })?;
        receiver.handle_timeout(now.unwrap_or_else(Instant::now));
        while let Some(e) = receiver.poll_event() {
            on_event(receiver, e);
        }
        Ok(n)
    }
}
