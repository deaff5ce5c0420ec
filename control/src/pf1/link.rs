//! Per-connection plumbing shared by [`super::host`] and [`super::client`]: the quinn-proto
//! connection, the control stream's framing, QUIC configuration, and the Goodbye-then-close
//! sequence. Everything quinn-specific lives here and in the two session modules.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use quinn_proto::{
    Connection, ConnectionError, ConnectionHandle, ConnectionId, ConnectionIdGenerator, Dir,
    Endpoint, EndpointConfig, IdleTimeout, ReadError, StreamId, TransportConfig, VarInt,
    WriteError,
};
use rand_chacha::ChaCha20Rng;
use rand_chacha::rand_core::{Rng as _, SeedableRng as _};

use super::message::{FrameDecoder, Goodbye, GoodbyeReason, Message, MessageError};
use super::{Closed, Transmit};

/// Longest a connection waits for its Goodbye to be delivered before it closes anyway.
pub(crate) const GOODBYE_LINGER: Duration = Duration::from_millis(500);

/// Connection ids drawn from the session's seeded generator (quinn's default draws from the
/// thread RNG, which would make simulations irreproducible). 8 random bytes, as quinn's.
struct SeededCids(ChaCha20Rng);

impl ConnectionIdGenerator for SeededCids {
    fn generate_cid(&mut self) -> ConnectionId {
        let mut b = [0u8; 8];
        self.0.fill_bytes(&mut b);
        ConnectionId::new(&b)
    }

    fn cid_len(&self) -> usize {
        8
    }

    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

/// An endpoint whose every random choice comes from `rng`.
pub(crate) fn endpoint(
    rng: &mut ChaCha20Rng,
    server: Option<Arc<quinn_proto::ServerConfig>>,
) -> Endpoint {
    let mut reset = [0u8; 64];
    rng.fill_bytes(&mut reset);
    let mut config = EndpointConfig::new(Arc::new(ring::hmac::Key::new(
        ring::hmac::HMAC_SHA256,
        &reset,
    )));
    let mut cid_seed = [0u8; 32];
    rng.fill_bytes(&mut cid_seed);
    let calls = AtomicU64::new(0);
    config.cid_generator(move || {
        let mut seed = cid_seed;
        seed[..8].copy_from_slice(&calls.fetch_add(1, Ordering::Relaxed).to_le_bytes());
        Box::new(SeededCids(ChaCha20Rng::from_seed(seed)))
    });
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    Endpoint::new(Arc::new(config), server, true, Some(seed))
}

/// Transport parameters of both sides: the idle timeout, keep-alives, `bidi_streams` peer
/// bidirectional streams (1 for the host: the control stream; 0 for the client), no
/// unidirectional streams, datagrams on, small windows (control traffic is tiny).
pub(crate) fn transport(
    idle_timeout: Duration,
    keep_alive: Option<Duration>,
    bidi_streams: u32,
) -> TransportConfig {
    let mut t = TransportConfig::default();
    // Durations above 2^62 µs do not fit; fall back to quinn's default then.
    if let Ok(idle) = IdleTimeout::try_from(idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t.keep_alive_interval(keep_alive)
        .max_concurrent_bidi_streams(VarInt::from_u32(bidi_streams))
        .max_concurrent_uni_streams(VarInt::from_u32(0))
        .stream_receive_window(VarInt::from_u32(256 * 1024))
        .receive_window(VarInt::from_u32(512 * 1024))
        .datagram_receive_buffer_size(Some(256 * 1024))
        .enable_segmentation_offload(false);
    t
}

/// What a connection did when its control stream was read.
#[derive(Debug, Default)]
pub(crate) struct Inbox {
    /// Decoded messages and decode errors, in order; reading stops at the first error.
    pub(crate) messages: Vec<Result<Message, MessageError>>,
    /// The peer finished or reset the stream.
    pub(crate) ended: bool,
}

/// One QUIC connection and its control stream.
pub(crate) struct Link {
    pub(crate) conn: Connection,
    pub(crate) handle: ConnectionHandle,
    stream: Option<StreamId>,
    decoder: FrameDecoder,
    out: Vec<u8>,
    finish_after_flush: bool,
    /// The time after which a connection saying Goodbye closes without waiting further.
    close_deadline: Option<Instant>,
    /// Why this side ended the connection, once it did.
    local_close: Option<Closed>,
    /// `Closed` was reported to the application.
    pub(crate) reported: bool,
}

impl Link {
    pub(crate) fn new(handle: ConnectionHandle, conn: Connection) -> Self {
        Self {
            conn,
            handle,
            stream: None,
            decoder: FrameDecoder::new(),
            out: Vec::new(),
            finish_after_flush: false,
            close_deadline: None,
            local_close: None,
            reported: false,
        }
    }

    /// Hands the connection's endpoint events to the endpoint and its answers back.
    pub(crate) fn drive_endpoint(&mut self, endpoint: &mut Endpoint) {
        while let Some(ev) = self.conn.poll_endpoint_events() {
            if let Some(back) = endpoint.handle_event(self.handle, ev) {
                self.conn.handle_event(back);
            }
        }
    }

    /// Client: opens the control stream.
    pub(crate) fn open_stream(&mut self) -> bool {
        if self.stream.is_none() {
            self.stream = self.conn.streams().open(Dir::Bi);
        }
        self.stream.is_some()
    }

    /// Host: accepts the client's control stream. Further streams are refused by the
    /// transport parameters (one bidirectional stream, no unidirectional ones).
    pub(crate) fn accept_stream(&mut self) {
        if self.stream.is_none() {
            self.stream = self.conn.streams().accept(Dir::Bi);
        }
    }

    /// Whether this side has said Goodbye or closed.
    pub(crate) fn is_closing(&self) -> bool {
        self.local_close.is_some() || self.conn.is_closed()
    }

    /// Queues a message on the control stream.
    pub(crate) fn send(&mut self, msg: &Message) -> Result<(), MessageError> {
        msg.encode(&mut self.out)?;
        self.flush();
        Ok(())
    }

    /// Writes queued bytes as far as flow control allows.
    pub(crate) fn flush(&mut self) {
        let Some(id) = self.stream else { return };
        let mut sent = 0;
        while sent < self.out.len() {
            match self.conn.send_stream(id).write(&self.out[sent..]) {
                Ok(n) => sent += n,
                Err(WriteError::Blocked) => break,
                // Stopped or closed: nothing queued can be delivered any more.
                Err(_) => {
                    sent = self.out.len();
                    self.finish_after_flush = false;
                }
            }
        }
        self.out.drain(..sent);
        if self.out.is_empty() && self.finish_after_flush {
            self.finish_after_flush = false;
            let _ = self.conn.send_stream(id).finish();
        }
    }

    /// Reads every available control-stream byte and decodes what is complete.
    pub(crate) fn read(&mut self) -> Inbox {
        let mut inbox = Inbox::default();
        let Some(id) = self.stream else {
            return inbox;
        };
        let mut recv = self.conn.recv_stream(id);
        let Ok(mut chunks) = recv.read(true) else {
            inbox.ended = true;
            return inbox;
        };
        loop {
            match chunks.next(usize::MAX) {
                Ok(Some(chunk)) => {
                    self.decoder.push(&chunk.bytes);
                    loop {
                        match self.decoder.next_message() {
                            Ok(Some(m)) => inbox.messages.push(Ok(m)),
                            Ok(None) => break,
                            Err(e) => {
                                inbox.messages.push(Err(e));
                                // Out of sync: nothing after this can be trusted.
                                let _ = chunks.finalize();
                                return inbox;
                            }
                        }
                    }
                }
                Ok(None) | Err(ReadError::Reset(_)) => {
                    inbox.ended = true;
                    break;
                }
                Err(ReadError::Blocked) => break,
            }
        }
        let _ = chunks.finalize();
        inbox
    }

    /// Next received QUIC datagram.
    pub(crate) fn recv_datagram(&mut self) -> Option<Bytes> {
        self.conn.datagrams().recv()
    }

    /// Ends the connection from this side: Goodbye on the control stream if there is one,
    /// then a QUIC close once it is delivered or [`GOODBYE_LINGER`] has passed. Returns what
    /// to report, or `None` if this side had already ended it.
    pub(crate) fn goodbye(
        &mut self,
        now: Instant,
        reason: GoodbyeReason,
        text: &str,
    ) -> Option<Closed> {
        if self.is_closing() {
            return None;
        }
        let text = truncate(text, super::message::MAX_TEXT_LEN);
        let closed = Closed {
            by_peer: false,
            reason,
            text: text.to_owned(),
        };
        self.local_close = Some(closed.clone());
        let bye = Message::Goodbye(Goodbye {
            reason,
            text: text.to_owned(),
        });
        if self.stream.is_some() && self.send(&bye).is_ok() {
            self.finish_after_flush = true;
            self.flush();
            self.close_deadline = Some(now + GOODBYE_LINGER);
        } else {
            self.close_now(now, reason, text);
        }
        Some(closed)
    }

    /// The peer said Goodbye: close right away (its Goodbye needs no answer).
    pub(crate) fn peer_goodbye(&mut self, now: Instant, g: &Goodbye) -> Closed {
        let closed = Closed {
            by_peer: true,
            reason: g.reason,
            text: g.text.clone(),
        };
        if self.local_close.is_none() {
            self.local_close = Some(closed.clone());
        }
        if !self.conn.is_closed() {
            self.close_now(now, g.reason, "");
        }
        closed
    }

    fn close_now(&mut self, now: Instant, reason: GoodbyeReason, text: &str) {
        self.close_deadline = None;
        self.conn.close(
            now,
            VarInt::from_u32(u32::from(reason.code())),
            Bytes::copy_from_slice(text.as_bytes()),
        );
    }

    /// Closes a lingering Goodbye whose time is up.
    pub(crate) fn handle_timeout(&mut self, now: Instant) {
        if self.close_deadline.is_some_and(|d| now >= d) {
            let (reason, text) = self
                .local_close
                .as_ref()
                .map(|c| (c.reason, c.text.clone()))
                .unwrap_or((GoodbyeReason::Normal, String::new()));
            self.close_now(now, reason, &text);
        }
        self.conn.handle_timeout(now);
    }

    /// The stream was fully acknowledged: a Goodbye is delivered, close now.
    pub(crate) fn stream_finished(&mut self, now: Instant) {
        if self.close_deadline.is_some() {
            let (reason, text) = self
                .local_close
                .as_ref()
                .map(|c| (c.reason, c.text.clone()))
                .unwrap_or((GoodbyeReason::Normal, String::new()));
            self.close_now(now, reason, &text);
        }
    }

    pub(crate) fn poll_timeout(&mut self) -> Option<Instant> {
        match (self.conn.poll_timeout(), self.close_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// What to report when quinn says the connection is lost.
    pub(crate) fn lost(&self, err: &ConnectionError) -> Closed {
        if let Some(c) = &self.local_close {
            return c.clone();
        }
        let (by_peer, reason, text) = match err {
            ConnectionError::ApplicationClosed(ac) => (
                true,
                GoodbyeReason::from_code(
                    u16::try_from(ac.error_code.into_inner()).unwrap_or(u16::MAX),
                ),
                String::from_utf8_lossy(&ac.reason).into_owned(),
            ),
            ConnectionError::TimedOut => (false, GoodbyeReason::Timeout, err.to_string()),
            ConnectionError::VersionMismatch => {
                (true, GoodbyeReason::VersionMismatch, err.to_string())
            }
            ConnectionError::LocallyClosed => (false, GoodbyeReason::Normal, err.to_string()),
            ConnectionError::TransportError(_) => {
                (false, GoodbyeReason::ProtocolViolation, err.to_string())
            }
            // The host's endpoint refuses a connection when both of its pools are full.
            ConnectionError::ConnectionClosed(cc)
                if cc.error_code == quinn_proto::TransportErrorCode::CONNECTION_REFUSED =>
            {
                (true, GoodbyeReason::Busy, err.to_string())
            }
            ConnectionError::ConnectionClosed(_) => {
                (true, GoodbyeReason::ProtocolViolation, err.to_string())
            }
            _ => (true, GoodbyeReason::Internal, err.to_string()),
        };
        Closed {
            by_peer,
            reason,
            text: truncate(&text, super::message::MAX_TEXT_LEN).to_owned(),
        }
    }

    /// The next datagram quinn wants to send, written into `buf` (cleared first).
    pub(crate) fn poll_transmit(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Transmit> {
        buf.clear();
        let t = self.conn.poll_transmit(now, 1, buf)?;
        Some(Transmit {
            destination: t.destination,
            size: t.size,
            segment_size: t.segment_size,
            send_at: None,
        })
    }

    /// Sends a QUIC datagram (unreliable; dropped under congestion rather than queued long).
    pub(crate) fn send_datagram(
        &mut self,
        payload: &[u8],
    ) -> Result<(), quinn_proto::SendDatagramError> {
        self.conn
            .datagrams()
            .send(Bytes::copy_from_slice(payload), true)
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncate_keeps_characters_whole() {
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("aé", 2), "a");
        assert_eq!(truncate("aé", 3), "aé");
    }
}
