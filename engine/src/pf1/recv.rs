//! [`Pf1Receiver`]: punktfunk/1 datagrams → frames, in order, recovered with GF(2^16) FEC.
//!
//! # Per datagram
//!
//! ```text
//!  parse header ─► key by id ─► replay window ─► where does it go?
//!   (Malformed)    (UnknownKey)  (Replay)          │
//!        ┌─────────────────────────────────────────┼─────────────────────────────┐
//!        ▼ frame behind the delivery point         ▼ frame in flight             ▼ new frame
//!   open in scratch, count `late`          copy into its slot, open in place   check limits,
//!                                          (Auth: slot stays empty)            open in scratch,
//!                                                                              take a slot, copy
//!  then: window.insert(pn), loss accounting, and once data + parity shards ≥ data shards:
//!  recover missing data shards with GF(2^16), deliver the frame.
//! ```
//!
//! Only authenticated datagrams change state; a forged one costs one AES-GCM verification of
//! at most one datagram and never allocates. A frame's buffer is sized from its header only
//! after its first datagram authenticated, within [`Pf1ReceiverConfig::max_frame_len`].
//!
//! # Frame buffers
//!
//! A frame in flight owns one buffer of `(data + parity) · L` bytes: shard `i` at `i · L`, so
//! the data shards lie back to back and the frame is the buffer's first `frame length` bytes.
//! Delivery hands the buffer out inside [`ReceivedFrame::data`] (truncated, no copy); give it
//! back with [`Pf1Receiver::recycle`] and steady state allocates nothing.
//!
//! # Ordering and loss
//!
//! Frames are delivered in frame-id order. When frame `f` completes, every earlier frame not
//! yet delivered is declared unrecoverable ([`Pf1Event::FramesLost`], one event per gap); so is
//! an incomplete frame whose first datagram arrived [`Pf1ReceiverConfig::frame_timeout`] ago
//! (with every frame before it), and the oldest frame in flight when a new frame needs a slot
//! and all [`Pf1ReceiverConfig::max_frames_in_flight`] are taken. Datagrams of frames behind
//! the delivery point (parity that was not needed, stragglers) are authenticated and counted
//! as `late`.
//!
//! # Key generations
//!
//! The receiver holds two keys, by the parity of their key id: the generation in use and the
//! next one ([`Pf1Receiver::install_key`], before the client acknowledges a key update), or
//! the one in use and the previous one. When the first datagram under a newer generation
//! authenticates, the older key gets [`Pf1ReceiverConfig::key_overlap`] more: its stragglers
//! (frames sent just before the switch, reordered behind the first new ones) still open. Then
//! it is retired; a datagram under it is refused with [`Pf1Error::RetiredKey`] and counted
//! in [`ReceiverStats::retired_key`], so a replay of old datagrams cannot reach the
//! reassembler once their window is gone. Each generation has its own replay window and loss
//! accounting (packet numbers restart at 0).
//!
//! # Loss accounting
//!
//! Packet numbers grow by one per datagram under a key, so the datagrams the host sent are
//! known from the highest packet number seen (RTP does the same with sequence numbers,
//! RFC 3550 §6.4.1); [`Pf1Receiver::take_loss_report`] returns the window's expected and
//! received counts for the client's loss report.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use super::Pf1Error;
use super::crypto::{DataKey, ReplayVerdict, ReplayWindow};
use super::header::{HEADER_LEN, Header, MAX_SHARD_LEN, TAG_LEN};
use crate::fec::gf16::Gf16Code;
use crate::pf1::adaptive::LossReport;

/// Settings of a [`Pf1Receiver`]: the memory it may commit to the peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pf1ReceiverConfig {
    /// Largest frame accepted, in bytes.
    pub max_frame_len: usize,
    /// Largest shard length accepted.
    pub max_shard_len: usize,
    /// Frames reassembled at once.
    pub max_frames_in_flight: usize,
    /// How long an incomplete frame waits for more datagrams after its first one arrived.
    pub frame_timeout: Duration,
    /// How long the previous key generation still opens datagrams after the first datagram
    /// under a newer one authenticated.
    pub key_overlap: Duration,
}

impl Default for Pf1ReceiverConfig {
    fn default() -> Self {
        Self {
            max_frame_len: 64 << 20,
            max_shard_len: MAX_SHARD_LEN,
            max_frames_in_flight: 8,
            frame_timeout: Duration::from_millis(250),
            // Two frame timeouts: an old-key datagram later than that belongs to a frame
            // that was delivered or given up on already.
            key_overlap: Duration::from_millis(500),
        }
    }
}

/// A frame delivered by [`Pf1Receiver::poll_event`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedFrame {
    /// Frame id.
    pub frame_id: u32,
    /// Keyframe flag.
    pub keyframe: bool,
    /// First frame of a new mode.
    pub new_mode: bool,
    /// Mode / epoch id.
    pub mode: u16,
    /// Host capture time, µs.
    pub capture_us: u64,
    /// `now` on the host clock minus the capture time, when the host clock is known
    /// ([`Pf1Receiver::set_host_clock`]).
    pub latency_us: Option<i64>,
    /// Data shards rebuilt by FEC.
    pub recovered_shards: usize,
    /// The frame bytes. Hand the vector back with [`Pf1Receiver::recycle`].
    pub data: Vec<u8>,
}

impl ReceivedFrame {
    /// Latency against `now_us`, a reading of the host's capture clock taken by the caller
    /// (for callers that keep their own clock mapping instead of
    /// [`Pf1Receiver::set_host_clock`]).
    pub fn latency_at(&self, now_us: u64) -> i64 {
        (i128::from(now_us) - i128::from(self.capture_us)).clamp(i64::MIN.into(), i64::MAX.into())
            as i64
    }
}

/// What the receiver has for the application.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pf1Event {
    /// The next frame, complete.
    Frame(ReceivedFrame),
    /// Frames `first .. first + count` (wrapping) cannot be recovered; the decoder needs a
    /// keyframe.
    FramesLost {
        /// First frame id lost.
        first: u32,
        /// Frames lost.
        count: u32,
    },
}

/// What happened to an accepted datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accepted {
    /// Stored in its frame.
    Shard,
    /// Stored, and its frame completed (an event is ready).
    FrameComplete,
    /// Authentic, but its frame was already delivered or declared lost.
    Late,
}

/// Counters of a [`Pf1Receiver`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReceiverStats {
    /// Datagrams handed in.
    pub datagrams: u64,
    /// Bytes handed in.
    pub bytes: u64,
    /// Datagrams authenticated and used (stored or late).
    pub authenticated: u64,
    /// Frames delivered.
    pub frames_complete: u64,
    /// Frames declared unrecoverable.
    pub frames_unrecoverable: u64,
    /// Frames delivered that needed FEC.
    pub frames_recovered_by_fec: u64,
    /// Data shards rebuilt by FEC.
    pub shards_recovered: u64,
    /// Datagrams whose packet number (or shard) was already received.
    pub duplicates: u64,
    /// Datagrams behind the replay window.
    pub too_old: u64,
    /// Datagrams whose tag did not verify.
    pub auth_failures: u64,
    /// Datagrams under a key id the receiver does not hold.
    pub unknown_key: u64,
    /// Datagrams under a key generation retired after its overlap (stragglers, replays).
    pub retired_key: u64,
    /// Key generations installed after the first.
    pub keys_installed: u64,
    /// Key generations retired after a key update.
    pub keys_retired: u64,
    /// Datagrams refused as malformed (bad header, length, shape, inconsistent with their
    /// frame).
    pub malformed: u64,
    /// Datagrams refused for the receiver's limits.
    pub over_limit: u64,
    /// Authentic datagrams of frames already delivered or declared lost.
    pub late: u64,
    /// Frames with a latency sample.
    pub latency_samples: u64,
    /// Sum of the latency samples, µs.
    pub latency_sum_us: i64,
    /// Largest latency sample, µs.
    pub latency_max_us: i64,
}

impl ReceiverStats {
    /// Mean latency over the samples, µs.
    pub fn latency_mean_us(&self) -> Option<f64> {
        (self.latency_samples > 0).then(|| self.latency_sum_us as f64 / self.latency_samples as f64)
    }
}

#[derive(Debug)]
struct KeySlot {
    key: DataKey,
    window: ReplayWindow,
    /// Datagrams authenticated under this key.
    datagrams: u64,
    /// When a newer generation took over: the key is dropped at this instant.
    retire_at: Option<Instant>,
}

/// Reassembly state of one frame in flight.
#[derive(Debug, Default)]
struct FrameSlot {
    active: bool,
    id: u32,
    /// The first datagram's header (`packet_number` and `shard_index` are its own).
    header: Option<Header>,
    shard_len: usize,
    /// One bit per shard.
    present: Vec<u64>,
    data_present: usize,
    parity_present: usize,
    first_seen: Option<Instant>,
    buf: Vec<u8>,
}

impl FrameSlot {
    fn has(&self, shard: usize) -> bool {
        self.present[shard / 64] & (1 << (shard % 64)) != 0
    }

    fn mark(&mut self, shard: usize, data_shards: usize) {
        self.present[shard / 64] |= 1 << (shard % 64);
        if shard < data_shards {
            self.data_present += 1;
        } else {
            self.parity_present += 1;
        }
    }

    /// Whether `h` (of a datagram with shard length `l`) belongs to the same frame shape.
    fn consistent(&self, h: &Header, l: usize) -> bool {
        self.header.is_some_and(|f| {
            l == self.shard_len
                && f.key_id == h.key_id
                && f.flags == h.flags
                && f.data_shards == h.data_shards
                && f.parity_shards == h.parity_shards
                && f.mode == h.mode
                && f.frame_len == h.frame_len
                && f.capture_us == h.capture_us
        })
    }
}

/// `a − b` in frame-id order (serial-number arithmetic, RFC 1982 style).
fn id_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

/// The punktfunk/1 reassembler (see the module docs).
#[derive(Debug)]
pub struct Pf1Receiver {
    config: Pf1ReceiverConfig,
    keys: [Option<KeySlot>; 2],
    /// Id and generation of the key retired last.
    retired: Option<(u8, u32)>,
    /// `(generation, datagrams)` of the keys dropped since the last
    /// [`Pf1Receiver::take_retired_keys`].
    retired_log: Vec<(u32, u64)>,
    slots: Vec<FrameSlot>,
    /// Buffers handed back or freed, reused for new frames.
    spare: Vec<Vec<u8>>,
    /// Next frame id to deliver; `None` until the first authentic datagram.
    next_deliver: Option<u32>,
    events: VecDeque<Pf1Event>,
    code: Gf16Code,
    scratch: Vec<u8>,
    /// Host clock anchor: `(instant, host µs at that instant)`.
    host_clock: Option<(Instant, u64)>,
    loss: LossReport,
    stats: ReceiverStats,
}

impl Pf1Receiver {
    /// A receiver holding `key` (more with [`Pf1Receiver::install_key`]).
    pub fn new(config: Pf1ReceiverConfig, key: DataKey) -> Result<Self, Pf1Error> {
        if config.max_frames_in_flight == 0 || config.max_frames_in_flight > 1024 {
            return Err(Pf1Error::InvalidConfig(
                "frames in flight must lie in 1..=1024",
            ));
        }
        if config.max_shard_len < 2 || config.max_shard_len > MAX_SHARD_LEN {
            return Err(Pf1Error::InvalidConfig(
                "max shard length must lie in 2..=65454",
            ));
        }
        let mut r = Self {
            config,
            keys: [None, None],
            retired: None,
            retired_log: Vec::with_capacity(4),
            slots: (0..config.max_frames_in_flight)
                .map(|_| FrameSlot::default())
                .collect(),
            spare: Vec::new(),
            next_deliver: None,
            events: VecDeque::with_capacity(16),
            code: Gf16Code::new(1, 1)?,
            scratch: vec![0; config.max_shard_len],
            host_clock: None,
            loss: LossReport::default(),
            stats: ReceiverStats::default(),
        };
        r.install_key(key);
        r.stats.keys_installed = 0;
        Ok(r)
    }

    /// Installs a key generation. Two are held at a time, by the parity of their id: the new
    /// one goes beside the one in use, replacing the generation before it (retired now if its
    /// overlap had not ended yet). See the module docs for the overlap.
    pub fn install_key(&mut self, key: DataKey) {
        let slot = usize::from(key.id() & 1);
        if let Some(old) = self.keys[slot].take() {
            self.retire(old);
        }
        self.stats.keys_installed += 1;
        self.keys[slot] = Some(KeySlot {
            key,
            window: ReplayWindow::new(),
            datagrams: 0,
            retire_at: None,
        });
    }

    fn retire(&mut self, old: KeySlot) {
        self.stats.keys_retired += 1;
        self.retired = Some((old.key.id(), old.key.generation()));
        if self.retired_log.len() < self.retired_log.capacity() {
            self.retired_log.push((old.key.generation(), old.datagrams));
        }
    }

    /// Drops keys whose overlap ended by `now`.
    fn retire_expired(&mut self, now: Instant) {
        for i in 0..2 {
            if self.keys[i]
                .as_ref()
                .and_then(|k| k.retire_at)
                .is_some_and(|t| now >= t)
                && let Some(old) = self.keys[i].take()
            {
                self.retire(old);
            }
        }
    }

    /// `(generation, datagrams authenticated)` of the keys held now.
    pub fn key_datagrams(&self) -> impl Iterator<Item = (u32, u64)> + '_ {
        self.keys
            .iter()
            .flatten()
            .map(|k| (k.key.generation(), k.datagrams))
    }

    /// Hands `(generation, datagrams authenticated)` of each key retired or replaced since the
    /// last call to `f` (at most four are remembered between calls).
    pub fn drain_retired_keys(&mut self, mut f: impl FnMut(u32, u64)) {
        for (generation, datagrams) in self.retired_log.drain(..) {
            f(generation, datagrams);
        }
    }

    /// Anchors the host clock: at `at` the host's capture clock read `host_us`. Latency is
    /// measured from then on (the control plane keeps the anchor fresh from its clock sync).
    pub fn set_host_clock(&mut self, at: Instant, host_us: u64) {
        self.host_clock = Some((at, host_us));
    }

    /// Counters so far.
    pub fn stats(&self) -> ReceiverStats {
        self.stats
    }

    /// Returns the datagrams expected and received (and frames lost) since the last call.
    pub fn take_loss_report(&mut self) -> LossReport {
        let mut r = std::mem::take(&mut self.loss);
        r.received = r.received.min(r.expected);
        r
    }

    /// Gives a delivered frame's buffer back for reuse.
    pub fn recycle(&mut self, buf: Vec<u8>) {
        // Kept as it is: its length is the frame's, so reusing it for a frame of the same
        // shape zero-fills only the parity area, not the whole buffer.
        if self.spare.len() < self.slots.len() * 2 {
            self.spare.push(buf);
        }
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<Pf1Event> {
        self.events.pop_front()
    }

    /// When [`Pf1Receiver::handle_timeout`] next has something to do.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let frames = self
            .slots
            .iter()
            .filter(|s| s.active)
            .filter_map(|s| s.first_seen)
            .min()
            .map(|t| t + self.config.frame_timeout);
        let keys = self.keys.iter().flatten().filter_map(|k| k.retire_at).min();
        match (frames, keys) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Declares frames that waited longer than the frame timeout unrecoverable, and retires a
    /// key whose overlap ended.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.retire_expired(now);
        let timeout = self.config.frame_timeout;
        loop {
            let Some(next) = self.next_deliver else {
                return;
            };
            let expired = self
                .slots
                .iter()
                .filter(|s| {
                    s.active
                        && s.first_seen
                            .is_some_and(|t| now.saturating_duration_since(t) >= timeout)
                })
                .map(|s| s.id)
                .max_by_key(|&id| id_diff(id, next));
            match expired {
                Some(id) => self.declare_lost_through(id),
                None => return,
            }
        }
    }

    /// Feeds one datagram. Errors are the datagram's fault and are also counted in the stats;
    /// none of them affects other datagrams.
    pub fn handle_datagram(&mut self, now: Instant, datagram: &[u8]) -> Result<Accepted, Pf1Error> {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        if self.poll_timeout().is_some_and(|t| now >= t) {
            self.handle_timeout(now);
        }
        let (h, l) = Header::parse(datagram).inspect_err(|_| self.stats.malformed += 1)?;
        if l > self.config.max_shard_len {
            self.stats.over_limit += 1;
            return Err(Pf1Error::Limit {
                what: "shard length",
                requested: l,
                limit: self.config.max_shard_len,
            });
        }
        let key_index = usize::from(h.key_id & 1);
        match &self.keys[key_index] {
            Some(k) if k.key.id() == h.key_id => {}
            _ if self.retired.is_some_and(|(id, _)| id == h.key_id) => {
                self.stats.retired_key += 1;
                return Err(Pf1Error::RetiredKey(h.key_id));
            }
            _ => {
                self.stats.unknown_key += 1;
                return Err(Pf1Error::UnknownKey(h.key_id));
            }
        }
        let pn = h.packet_number;
        let verdict = self.keys[key_index]
            .as_ref()
            .map_or(ReplayVerdict::Fresh, |k| k.window.check(pn));
        match verdict {
            ReplayVerdict::Fresh => {}
            ReplayVerdict::Duplicate => {
                self.stats.duplicates += 1;
                return Err(Pf1Error::Replay(pn));
            }
            ReplayVerdict::TooOld => {
                self.stats.too_old += 1;
                return Err(Pf1Error::Replay(pn));
            }
        }
        let head = &datagram[..HEADER_LEN];
        let ciphertext = &datagram[HEADER_LEN..HEADER_LEN + l];
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&datagram[HEADER_LEN + l..]);
        let shard = usize::from(h.shard_index);
        let data_shards = usize::from(h.data_shards);

        let behind = self
            .next_deliver
            .is_some_and(|next| id_diff(h.frame_id, next) < 0);
        let slot = if behind {
            None
        } else {
            self.slots
                .iter()
                .position(|s| s.active && s.id == h.frame_id)
        };

        if let Some(i) = slot {
            // A frame in flight: decrypt straight into the shard's place.
            let s = &mut self.slots[i];
            if !s.consistent(&h, l) {
                self.stats.malformed += 1;
                return Err(Pf1Error::Malformed(
                    "datagram does not match its frame's shape",
                ));
            }
            if s.has(shard) {
                self.stats.duplicates += 1;
                return Err(Pf1Error::Replay(pn));
            }
            let dst = &mut s.buf[shard * l..(shard + 1) * l];
            dst.copy_from_slice(ciphertext);
            let key = &self.keys[key_index]
                .as_ref()
                .expect("key slot checked above")
                .key;
            if let Err(e) = key.open(pn, head, dst, tag) {
                self.stats.auth_failures += 1;
                return Err(e);
            }
            self.authenticated(key_index, pn, now);
            self.slots[i].mark(shard, data_shards);
            return Ok(self.try_complete(i, now));
        }

        if !behind {
            // A new frame: bound the memory it asks for before anything else.
            let frame_len = h.frame_len as usize;
            if frame_len > self.config.max_frame_len {
                self.stats.over_limit += 1;
                return Err(Pf1Error::Limit {
                    what: "frame length",
                    requested: frame_len,
                    limit: self.config.max_frame_len,
                });
            }
        }
        // Behind, or new: authenticate in scratch first.
        let scratch = &mut self.scratch[..l];
        scratch.copy_from_slice(ciphertext);
        let key = &self.keys[key_index]
            .as_ref()
            .expect("key slot checked above")
            .key;
        if let Err(e) = key.open(pn, head, scratch, tag) {
            self.stats.auth_failures += 1;
            return Err(e);
        }
        self.authenticated(key_index, pn, now);
        if behind {
            self.stats.late += 1;
            return Ok(Accepted::Late);
        }
        let next = *self.next_deliver.get_or_insert(h.frame_id);
        if id_diff(h.frame_id, next) < 0 {
            self.stats.late += 1;
            return Ok(Accepted::Late);
        }
        let i = match self.slots.iter().position(|s| !s.active) {
            Some(i) => i,
            None => {
                // Every slot is taken: the oldest frame in flight (and all before it) is lost.
                let oldest = self
                    .slots
                    .iter()
                    .map(|s| s.id)
                    .min_by_key(|&id| id_diff(id, next))
                    .expect("max_frames_in_flight ≥ 1");
                self.declare_lost_through(oldest);
                let next = self.next_deliver.unwrap_or(h.frame_id);
                if id_diff(h.frame_id, next) < 0 {
                    self.stats.late += 1;
                    return Ok(Accepted::Late);
                }
                self.slots
                    .iter()
                    .position(|s| !s.active)
                    .expect("declare_lost_through freed the oldest slot")
            }
        };
        self.open_slot(i, &h, l, now);
        let s = &mut self.slots[i];
        s.buf[shard * l..(shard + 1) * l].copy_from_slice(&self.scratch[..l]);
        s.mark(shard, data_shards);
        Ok(self.try_complete(i, now))
    }

    /// Books an authenticated datagram: replay window, loss accounting, and the start of the
    /// previous key's overlap when this is the first datagram under a newer generation.
    fn authenticated(&mut self, key_index: usize, pn: u64, now: Instant) {
        self.stats.authenticated += 1;
        let overlap = self.config.key_overlap;
        let [a, b] = &mut self.keys;
        let (this, other) = if key_index == 0 { (a, b) } else { (b, a) };
        let Some(k) = this.as_mut() else {
            return;
        };
        if k.datagrams == 0
            && let Some(o) = other.as_mut()
            && o.key.generation() < k.key.generation()
            && o.retire_at.is_none()
        {
            o.retire_at = Some(now + overlap);
        }
        k.datagrams += 1;
        // Every datagram between the highest number seen and this one was sent; the first
        // datagram under a key accounts for the ones before it (numbering starts at 0).
        let new = match k.window.highest() {
            None => pn.saturating_add(1),
            Some(high) => pn.saturating_sub(high),
        };
        k.window.insert(pn);
        self.loss.expected = self
            .loss
            .expected
            .saturating_add(u32::try_from(new).unwrap_or(u32::MAX));
        self.loss.received = self.loss.received.saturating_add(1);
    }

    fn open_slot(&mut self, i: usize, h: &Header, l: usize, now: Instant) {
        let total = h.total_shards();
        let mut buf = std::mem::take(&mut self.slots[i].buf);
        if buf.capacity() < total * l
            && let Some(bigger) = self.spare.pop()
        {
            self.spare.push(buf);
            buf = bigger;
        }
        // Old contents may remain: every shard is written before it is marked present.
        if buf.len() >= total * l {
            buf.truncate(total * l);
        } else {
            buf.resize(total * l, 0);
        }
        let s = &mut self.slots[i];
        s.buf = buf;
        s.active = true;
        s.id = h.frame_id;
        s.header = Some(*h);
        s.shard_len = l;
        s.present.clear();
        s.present.resize(total.div_ceil(64), 0);
        s.data_present = 0;
        s.parity_present = 0;
        s.first_seen = Some(now);
    }

    /// Delivers slot `i` if it has enough shards (recovering missing data shards first).
    fn try_complete(&mut self, i: usize, now: Instant) -> Accepted {
        let s = &self.slots[i];
        let Some(h) = s.header else {
            return Accepted::Shard;
        };
        let ds = usize::from(h.data_shards);
        if s.data_present + s.parity_present < ds {
            return Accepted::Shard;
        }
        let missing = ds - s.data_present;
        if missing > 0 && !self.recover(i, &h) {
            // Only a backend failure gets here; the frame cannot be delivered.
            self.declare_lost_through(h.frame_id);
            return Accepted::Shard;
        }
        let next = self.next_deliver.unwrap_or(h.frame_id);
        let gap = id_diff(h.frame_id, next);
        if gap > 0 {
            self.declare_lost_through(h.frame_id.wrapping_sub(1));
        }
        let s = &mut self.slots[i];
        let mut data = std::mem::take(&mut s.buf);
        data.truncate(h.frame_len as usize);
        s.active = false;
        s.header = None;
        s.first_seen = None;
        if let Some(buf) = self.spare.pop() {
            self.slots[i].buf = buf;
        }
        let latency_us = self.host_clock.map(|(at, host_us)| {
            let host_now = if now >= at {
                host_us as i128 + (now - at).as_micros() as i128
            } else {
                host_us as i128 - (at - now).as_micros() as i128
            };
            (host_now - i128::from(h.capture_us)).clamp(i64::MIN.into(), i64::MAX.into()) as i64
        });
        if let Some(l) = latency_us {
            self.stats.latency_samples += 1;
            self.stats.latency_sum_us = self.stats.latency_sum_us.saturating_add(l);
            self.stats.latency_max_us = self.stats.latency_max_us.max(l);
        }
        self.stats.frames_complete += 1;
        if missing > 0 {
            self.stats.frames_recovered_by_fec += 1;
            self.stats.shards_recovered += missing as u64;
        }
        self.next_deliver = Some(h.frame_id.wrapping_add(1));
        self.events.push_back(Pf1Event::Frame(ReceivedFrame {
            frame_id: h.frame_id,
            keyframe: h.keyframe(),
            new_mode: h.new_mode(),
            mode: h.mode,
            capture_us: h.capture_us,
            latency_us,
            recovered_shards: missing,
            data,
        }));
        Accepted::FrameComplete
    }

    /// Rebuilds the missing data shards of slot `i` in place; false if the code failed.
    fn recover(&mut self, i: usize, h: &Header) -> bool {
        let (ds, ps) = (usize::from(h.data_shards), usize::from(h.parity_shards));
        if self.code.reshape(ds, ps).is_err() {
            return false;
        }
        let s = &mut self.slots[i];
        let l = s.shard_len;
        let missing = ds - s.data_present;
        // All present data shards, and only as many parity shards as there are holes.
        let present = &s.present;
        let has = |k: usize| present[k / 64] & (1 << (k % 64)) != 0;
        let buf = &s.buf;
        let given = (0..ds)
            .filter(|&k| has(k))
            .chain((ds..ds + ps).filter(|&k| has(k)).take(missing))
            .map(|k| (k, &buf[k * l..(k + 1) * l]));
        let restored = match self.code.reconstruct_each(l, given) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!(error = %e, frame = h.frame_id, "punktfunk/1 recovery failed");
                return false;
            }
        };
        for (k, shard) in restored.iter() {
            s.buf[k * l..(k + 1) * l].copy_from_slice(shard);
        }
        true
    }

    /// Declares every undelivered frame up to and including `last` unrecoverable.
    fn declare_lost_through(&mut self, last: u32) {
        let next = self.next_deliver.unwrap_or(last);
        let d = id_diff(last, next);
        if d < 0 {
            return;
        }
        let count = (d + 1) as u32;
        for s in self.slots.iter_mut() {
            if s.active && id_diff(s.id, next) >= 0 && id_diff(s.id, last) <= 0 {
                s.active = false;
                s.header = None;
                s.first_seen = None;
            }
        }
        self.stats.frames_unrecoverable += u64::from(count);
        self.loss.frames_lost = self.loss.frames_lost.saturating_add(count);
        self.next_deliver = Some(last.wrapping_add(1));
        self.events
            .push_back(Pf1Event::FramesLost { first: next, count });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pf1::header::OVERHEAD;
    use crate::pf1::{FrameInfo, KEY_MATERIAL_LEN, Pf1Sender, Pf1SenderConfig};

    fn key(seed: u8) -> DataKey {
        DataKey::from_key_material(&[seed; KEY_MATERIAL_LEN])
    }

    struct Rig {
        tx: Pf1Sender,
        rx: Pf1Receiver,
        now: Instant,
    }

    impl Rig {
        fn new() -> Self {
            Self::with(Pf1SenderConfig::default(), Pf1ReceiverConfig::default())
        }

        fn with(tc: Pf1SenderConfig, rc: Pf1ReceiverConfig) -> Self {
            Self {
                tx: Pf1Sender::new(tc, key(1)).unwrap(),
                rx: Pf1Receiver::new(rc, key(1)).unwrap(),
                now: Instant::now(),
            }
        }

        /// The datagrams of one frame of `len` bytes filled with `fill`.
        fn frame(&mut self, len: usize, fill: u8) -> Vec<Vec<u8>> {
            let frame = vec![fill; len];
            let mut out = vec![0u8; self.tx.max_output(len)];
            let p = self
                .tx
                .packetize(&frame, &FrameInfo::default(), &mut out)
                .unwrap();
            out[..p.len()]
                .chunks(p.layout.stride)
                .map(<[u8]>::to_vec)
                .collect()
        }

        fn feed(&mut self, dgs: &[Vec<u8>]) {
            for d in dgs {
                let _ = self.rx.handle_datagram(self.now, d);
            }
        }

        fn events(&mut self) -> Vec<Pf1Event> {
            std::iter::from_fn(|| self.rx.poll_event()).collect()
        }
    }

    fn frame_ids(events: &[Pf1Event]) -> Vec<String> {
        events
            .iter()
            .map(|e| match e {
                Pf1Event::Frame(f) => format!("{}", f.frame_id),
                Pf1Event::FramesLost { first, count } => format!("lost {first}+{count}"),
            })
            .collect()
    }

    #[test]
    fn delivers_in_order_with_and_without_fec() {
        let mut r = Rig::new();
        let a = r.frame(100_000, 1); // 72 data + 15 parity
        let b = r.frame(100_000, 2);
        r.feed(&a);
        // Frame 1 loses 15 data shards: exactly what its parity restores.
        r.feed(&b[15..]);
        let ev = r.events();
        assert_eq!(frame_ids(&ev), ["0", "1"]);
        let Pf1Event::Frame(f) = &ev[1] else {
            unreachable!()
        };
        assert_eq!(f.data, vec![2; 100_000]);
        assert_eq!(f.recovered_shards, 15);
        let s = r.rx.stats();
        assert_eq!((s.frames_complete, s.frames_recovered_by_fec), (2, 1));
        assert_eq!(s.shards_recovered, 15);
        // Frame 0's parity arrived after it completed: late, not lost.
        assert_eq!(s.late, 15);
        let report = r.rx.take_loss_report();
        assert_eq!((report.expected, report.received), (174, 159));
        assert_eq!(r.rx.take_loss_report(), LossReport::default());
    }

    #[test]
    fn a_later_frame_completing_declares_earlier_ones_lost() {
        let mut r = Rig::new();
        let a = r.frame(50_000, 1);
        let b = r.frame(50_000, 2);
        let c = r.frame(50_000, 3);
        let d = r.frame(50_000, 4);
        r.feed(&a[..10]); // frame 0 incomplete
        // frame 1 never arrives
        r.feed(&c); // frame 2 completes
        r.feed(&d[..5]);
        let ev = r.events();
        assert_eq!(frame_ids(&ev), ["lost 0+2", "2"]);
        // Stragglers of the lost frames are late.
        r.feed(&a[10..]);
        r.feed(&b);
        assert!(r.events().is_empty());
        assert_eq!(r.rx.stats().frames_unrecoverable, 2);
        assert_eq!(r.rx.take_loss_report().frames_lost, 2);
        // Frame 3 times out.
        assert_eq!(
            r.rx.poll_timeout(),
            Some(r.now + Pf1ReceiverConfig::default().frame_timeout)
        );
        r.rx.handle_timeout(r.now + Duration::from_millis(249));
        assert!(r.events().is_empty());
        r.rx.handle_timeout(r.now + Duration::from_millis(250));
        assert_eq!(frame_ids(&r.events()), ["lost 3+1"]);
        assert_eq!(r.rx.poll_timeout(), None);
    }

    #[test]
    fn full_slots_evict_the_oldest_frame() {
        let mut r = Rig::with(
            Pf1SenderConfig::default(),
            Pf1ReceiverConfig {
                max_frames_in_flight: 2,
                ..Default::default()
            },
        );
        let frames: Vec<_> = (0..4).map(|i| r.frame(20_000, i)).collect();
        r.feed(&frames[0][..1]);
        r.feed(&frames[1][..1]);
        r.feed(&frames[2][..1]); // evicts frame 0
        assert_eq!(frame_ids(&r.events()), ["lost 0+1"]);
        r.feed(&frames[2][1..]);
        assert_eq!(frame_ids(&r.events()), ["lost 1+1", "2"]);
        r.feed(&frames[3]);
        assert_eq!(frame_ids(&r.events()), ["3"]);
    }

    #[test]
    fn tiny_and_empty_frames() {
        let mut r = Rig::new();
        for len in [0usize, 1, 2, 3, 1407, 1408, 1409] {
            let dgs = r.frame(len, 0xab);
            // Lose the first datagram every time.
            r.feed(&dgs[1..]);
            let ev = r.events();
            let [Pf1Event::Frame(f)] = ev.as_slice() else {
                panic!("{len}: {ev:?}");
            };
            assert_eq!(f.data, vec![0xab; len], "{len}");
        }
    }

    #[test]
    fn hostile_datagrams_are_errors_and_counted() {
        let mut r = Rig::new();
        let dgs = r.frame(30_000, 7);
        let now = r.now;
        let good = dgs[0].clone();
        // Wrong key.
        let mut other = Pf1Receiver::new(Pf1ReceiverConfig::default(), key(2)).unwrap();
        assert_eq!(other.handle_datagram(now, &good), Err(Pf1Error::Auth));
        assert_eq!(other.stats().auth_failures, 1);
        // Flipped bits anywhere: header (AAD), ciphertext or tag.
        for at in [0usize, 3, 8, 15, 23, 35, 36, 500, good.len() - 1] {
            let mut bad = good.clone();
            bad[at] ^= 0x04;
            let e = r.rx.handle_datagram(now, &bad).unwrap_err();
            assert!(
                matches!(
                    e,
                    Pf1Error::Auth | Pf1Error::Malformed(_) | Pf1Error::UnknownKey(_)
                ),
                "{at}: {e:?}"
            );
        }
        // Truncated and oversized.
        for len in [0, 1, HEADER_LEN, OVERHEAD, OVERHEAD + 1, good.len() - 1] {
            assert!(matches!(
                r.rx.handle_datagram(now, &good[..len]),
                Err(Pf1Error::Malformed(_))
            ));
        }
        let mut long = good.clone();
        long.extend_from_slice(&[0; 2]);
        assert!(r.rx.handle_datagram(now, &long).is_err());
        assert!(matches!(
            r.rx.handle_datagram(now, &vec![1; 70_000]),
            Err(Pf1Error::Malformed(_))
        ));
        // Nothing forged got in: the genuine datagram still works, once.
        assert_eq!(r.rx.handle_datagram(now, &good), Ok(Accepted::Shard));
        assert_eq!(r.rx.handle_datagram(now, &good), Err(Pf1Error::Replay(0)));
        // Unknown key id.
        let mut k = good.clone();
        k[3] = 9;
        assert_eq!(r.rx.handle_datagram(now, &k), Err(Pf1Error::UnknownKey(9)));
        // Huge shard counts in a forged header: refused before any allocation.
        let mut huge = dgs[1].clone();
        huge[18..20].copy_from_slice(&u16::MAX.to_be_bytes());
        huge[20..22].copy_from_slice(&u16::MAX.to_be_bytes());
        assert!(matches!(
            r.rx.handle_datagram(now, &huge),
            Err(Pf1Error::Malformed(_))
        ));
        let s = r.rx.stats();
        assert!(
            s.malformed >= 8 && s.auth_failures >= 1 && s.duplicates == 1,
            "{s:?}"
        );
        assert_eq!(s.unknown_key, 2);
        // The rest of the frame still completes.
        r.feed(&dgs[1..]);
        assert_eq!(frame_ids(&r.events()), ["0"]);
    }

    #[test]
    fn replays_after_the_window_are_too_old() {
        let mut r = Rig::new();
        let a = r.frame(10_000, 1);
        r.feed(&a);
        r.events();
        // Push the window 16384 packets on.
        r.tx.next_packet_number_for_tests(20_000);
        let b = r.frame(10_000, 2);
        r.feed(&b);
        assert_eq!(r.rx.handle_datagram(r.now, &a[0]), Err(Pf1Error::Replay(0)));
        assert_eq!(r.rx.stats().too_old, 1);
    }

    #[test]
    fn limits_and_shape_mismatch() {
        let mut r = Rig::with(
            Pf1SenderConfig::default(),
            Pf1ReceiverConfig {
                max_frame_len: 10_000,
                max_shard_len: 1408,
                ..Default::default()
            },
        );
        let big = r.frame(20_000, 1);
        assert!(matches!(
            r.rx.handle_datagram(r.now, &big[0]),
            Err(Pf1Error::Limit { .. })
        ));
        let mut wide = Rig::with(
            Pf1SenderConfig {
                shard_len: 2000,
                ..Default::default()
            },
            Pf1ReceiverConfig::default(),
        );
        let w = wide.frame(5000, 1);
        assert!(matches!(
            r.rx.handle_datagram(r.now, &w[0]),
            Err(Pf1Error::Limit { .. })
        ));
        assert_eq!(r.rx.stats().over_limit, 2);
        // Two authentic frames claiming the same id with different shapes: the second shape
        // is refused (a sender bug, but it must not corrupt the first).
        let mut a = Rig::new();
        let f0 = a.frame(20_000, 1);
        let mut b = Rig::new();
        b.tx.next_packet_number_for_tests(1000);
        let g0 = b.frame(30_000, 2);
        a.feed(&f0[..3]);
        assert!(matches!(
            a.rx.handle_datagram(a.now, &g0[5]),
            Err(Pf1Error::Malformed(_))
        ));
        a.feed(&f0[3..]);
        let ev = a.events();
        let [Pf1Event::Frame(f)] = ev.as_slice() else {
            panic!("{ev:?}")
        };
        assert_eq!(f.data, vec![1; 20_000]);
    }

    #[test]
    fn key_update_keeps_both_generations() {
        let mut r = Rig::new();
        let a = r.frame(10_000, 1);
        r.tx.update_key(key(1).with_generation(1)).unwrap();
        let b = r.frame(10_000, 2);
        assert_eq!(
            r.rx.handle_datagram(r.now, &b[0]),
            Err(Pf1Error::UnknownKey(1))
        );
        r.rx.install_key(key(1).with_generation(1));
        r.feed(&b);
        r.feed(&a); // late: frame 0 is behind frame 1 now
        assert_eq!(frame_ids(&r.events()), ["1"]);
        let report = r.rx.take_loss_report();
        assert_eq!(report.received, report.expected);
    }

    #[test]
    fn old_generation_overlaps_then_retires() {
        let mut r = Rig::new();
        let t0 = r.now;
        let overlap = Pf1ReceiverConfig::default().key_overlap;
        let a = r.frame(20_000, 1); // generation 0, frame 0
        r.rx.install_key(key(2).with_generation(1));
        r.tx.update_key(key(2).with_generation(1)).unwrap();
        let b = r.frame(20_000, 2); // generation 1, frame 1
        let c = r.frame(20_000, 3); // generation 1, frame 2
        // Half of frame 0, then frame 1's first datagram (the overlap starts), then the rest
        // of frame 0 reordered behind it: frame 0 still opens under generation 0.
        let half = a.len() / 2;
        for d in &a[..half] {
            r.rx.handle_datagram(t0, d).unwrap();
        }
        r.rx.handle_datagram(t0, &b[0]).unwrap();
        let mid = t0 + overlap / 4;
        for d in &a[half..] {
            let _ = r.rx.handle_datagram(mid, d);
        }
        for d in &b[1..] {
            let _ = r.rx.handle_datagram(mid, d);
        }
        assert_eq!(frame_ids(&r.events()), ["0", "1"]);
        // Within the overlap a replayed old datagram is a duplicate.
        assert_eq!(r.rx.handle_datagram(mid, &a[0]), Err(Pf1Error::Replay(0)));
        assert_eq!(r.rx.poll_timeout(), Some(t0 + overlap));
        // After it the old key is gone: replays are refused as retired and counted.
        let after = t0 + overlap;
        r.rx.handle_timeout(after);
        for d in &a {
            assert_eq!(r.rx.handle_datagram(after, d), Err(Pf1Error::RetiredKey(0)));
        }
        let s = r.rx.stats();
        assert_eq!(
            (s.retired_key, s.keys_installed, s.keys_retired),
            (a.len() as u64, 1, 1)
        );
        let mut retired = Vec::new();
        r.rx.drain_retired_keys(|g, n| retired.push((g, n)));
        assert_eq!(retired, [(0, a.len() as u64)]);
        assert_eq!(
            r.rx.key_datagrams().collect::<Vec<_>>(),
            [(1, b.len() as u64)]
        );
        // The new generation goes on.
        for d in &c {
            let _ = r.rx.handle_datagram(after, d);
        }
        assert_eq!(frame_ids(&r.events()), ["2"]);
        assert_eq!(r.rx.stats().frames_unrecoverable, 0);
    }

    #[test]
    fn installing_a_third_generation_retires_the_first() {
        let mut r = Rig::new();
        let a = r.frame(5_000, 1);
        r.feed(&a);
        r.rx.install_key(key(2).with_generation(1));
        // Generation 2 lands in generation 0's slot: generation 0 is retired at once.
        r.rx.install_key(key(3).with_generation(2));
        assert_eq!(
            r.rx.handle_datagram(r.now, &a[0]),
            Err(Pf1Error::RetiredKey(0))
        );
        assert_eq!(r.rx.stats().keys_retired, 1);
    }

    #[test]
    fn latency_and_buffer_reuse() {
        let mut r = Rig::new();
        let frame = vec![3u8; 200_000];
        let mut out = vec![0u8; r.tx.max_output(frame.len())];
        r.rx.set_host_clock(r.now, 1_000_000);
        let mut first_ptr = None;
        for i in 0..4u64 {
            let info = FrameInfo {
                capture_us: 1_000_000 + i * 1000,
                ..Default::default()
            };
            let p = r.tx.packetize(&frame, &info, &mut out).unwrap();
            let at = r.now + Duration::from_micros(i * 1000 + 700);
            for dg in out[..p.len()].chunks(p.layout.stride).skip(3) {
                let _ = r.rx.handle_datagram(at, dg);
            }
            let Some(Pf1Event::Frame(f)) = r.rx.poll_event() else {
                panic!()
            };
            assert_eq!(f.latency_us, Some(700));
            assert_eq!(f.latency_at(info.capture_us + 700), 700);
            assert_eq!(f.latency_at(0), -(info.capture_us as i64));
            assert_eq!(f.data, frame);
            let ptr = f.data.as_ptr();
            match first_ptr {
                None => first_ptr = Some(ptr),
                // Buffers handed back are reused.
                Some(_) => assert!(r.rx.spare.is_empty()),
            }
            r.rx.recycle(f.data);
        }
        let s = r.rx.stats();
        assert_eq!((s.latency_samples, s.latency_max_us), (4, 700));
        assert_eq!(s.latency_mean_us(), Some(700.0));
    }
}
