//! [`Pf1Sender`]: one frame → sealed punktfunk/1 datagrams, back to back in a caller buffer.
//!
//! ```text
//!  frame  |<-------------------------- frame length -------------------------->|
//!         | shard 0 (L) | shard 1 (L) | … | shard ds-1 (≤ L, zero-padded to L) |
//!                      │ GF(2^16) encode: ps parity shards of L bytes
//!                      ▼
//!  out    | hdr │ d0 │ tag | hdr │ d1 │ tag | … | hdr │ p0 │ tag | … | hdr │ p(ps-1) │ tag |
//!         '---- stride = 36 + L + 16 ----'      every datagram the same length: one GSO
//!                                               segment size for the whole frame
//! ```
//!
//! # Sizes
//!
//! The shard length `L` ([`Pf1SenderConfig::shard_len`], even) sets the datagram size
//! `L + 52`. The default 1408 gives 1460-byte datagrams, which fit a 1500-byte MTU over IPv4
//! (1500 − 20 − 8 = 1472); over IPv6 (1452) use 1400 or less
//! ([`Pf1SenderConfig::shard_len_for_mtu`]). 1408 is also a multiple of 64, the chunk size of
//! the GF(2^16) backend, which then copies shards without its tail special case. A frame
//! shorter than `L` is sent as a single shard of its own (even) length.
//!
//! # Parity
//!
//! Per frame with `ds` data shards:
//!
//! ```text
//!  ps = clamp( max(⌈ds · pct / 100⌉, binomial(ds, loss)), min_parity, max(⌈ds / 2⌉, min_parity) )
//! ```
//!
//! `pct` is the controller's percentage (clamped to 5–50 %, [`Pf1Sender::set_parity_percent`]),
//! `binomial(ds, loss)` the smallest parity that keeps the frame-loss probability under the
//! target at the estimated loss ([`crate::fec::adaptive::parity_for_loss`]); it is evaluated for
//! frames up to [`EXACT_PARITY_SHARDS`] data shards, where a percentage sized for large blocks
//! is too thin, and left to `pct` above. The result is finally capped at what the GF(2^16) code
//! supports for `ds` ([`Gf16Code::max_parity`]).
//!
//! Steady state allocates nothing: the encoder's work buffer and the padding shard are kept and
//! reused whatever the frame shape.

use super::Pf1Error;
use super::adaptive::DEFAULT_FRAME_LOSS_TARGET;
use super::crypto::{DataKey, packet_limit};
use super::header::{HEADER_LEN, Header, MAX_SHARD_LEN, OVERHEAD, PacketType, flags};
use crate::fec::adaptive::parity_for_loss;
use crate::fec::gf16::{Gf16Code, MAX_SHARDS};

/// Default shard length: 1460-byte datagrams, for a 1500-byte MTU over IPv4.
pub const DEFAULT_SHARD_LEN: usize = 1408;
/// Lowest parity percentage the sender uses.
pub const MIN_PARITY_PERCENT: u8 = 5;
/// Highest parity percentage the sender uses.
pub const MAX_PARITY_PERCENT: u8 = 50;
/// Frames up to this many data shards get binomial parity sizing on top of the percentage.
pub const EXACT_PARITY_SHARDS: usize = 1024;

/// Settings of a [`Pf1Sender`], as negotiated by the control plane.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Pf1SenderConfig {
    /// Shard length `L` in bytes: even, 2..=65454. Datagrams are `L + 52` bytes.
    pub shard_len: usize,
    /// Parity percentage until the controller says otherwise (clamped to 5–50).
    pub parity_percent: u8,
    /// Parity shards every frame gets at least.
    pub min_parity: usize,
    /// Largest frame accepted, in bytes (at most 65534 data shards' worth).
    pub max_frame_len: usize,
    /// Frame-loss probability the per-frame binomial sizing aims for.
    pub target: f64,
}

impl Default for Pf1SenderConfig {
    fn default() -> Self {
        Self {
            shard_len: DEFAULT_SHARD_LEN,
            parity_percent: 20,
            min_parity: 1,
            max_frame_len: 32 << 20,
            target: DEFAULT_FRAME_LOSS_TARGET,
        }
    }
}

impl Pf1SenderConfig {
    /// The largest shard length whose datagrams fit a path MTU of `mtu` bytes, rounded down to
    /// a multiple of 64 (the GF(2^16) backend's chunk): 1408 for 1500 over IPv4, 1344 over
    /// IPv6. `None` when not even a 64-byte shard fits.
    pub fn shard_len_for_mtu(mtu: usize, ipv6: bool) -> Option<usize> {
        let ip_udp = if ipv6 { 40 + 8 } else { 20 + 8 };
        let room = mtu.checked_sub(ip_udp + OVERHEAD)?.min(MAX_SHARD_LEN);
        Some(room & !63).filter(|&l| l > 0)
    }

    fn validate(&self) -> Result<(), Pf1Error> {
        if self.shard_len < 2 || self.shard_len > MAX_SHARD_LEN || !self.shard_len.is_multiple_of(2)
        {
            return Err(Pf1Error::InvalidConfig(
                "shard length must be even and within 2..=65454",
            ));
        }
        if self.max_frame_len > (MAX_SHARDS - 1) * self.shard_len
            || self.max_frame_len > u32::MAX as usize
        {
            return Err(Pf1Error::InvalidConfig(
                "max frame length above 65534 shards or 4 GiB",
            ));
        }
        if self.min_parity > MAX_SHARDS / 2 {
            return Err(Pf1Error::InvalidConfig("minimum parity above 32767"));
        }
        if !(self.target > 0.0 && self.target < 1.0) {
            return Err(Pf1Error::InvalidConfig("target must lie in (0, 1)"));
        }
        Ok(())
    }
}

/// Per-frame metadata carried in every datagram's header.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FrameInfo {
    /// Capture time, µs on the host's clock.
    pub capture_us: u64,
    /// The frame is a keyframe.
    pub keyframe: bool,
    /// The frame is the first of a new mode.
    pub new_mode: bool,
    /// Mode / epoch id.
    pub mode: u16,
}

/// How a frame is cut into datagrams.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameLayout {
    /// Data shards.
    pub data_shards: usize,
    /// Parity shards.
    pub parity_shards: usize,
    /// Shard length `L`.
    pub shard_len: usize,
    /// Datagram length `L + 52`: the GSO segment size.
    pub stride: usize,
}

impl FrameLayout {
    /// Datagrams of the frame.
    pub fn datagrams(&self) -> usize {
        self.data_shards + self.parity_shards
    }

    /// Bytes of the frame's datagrams.
    pub fn len(&self) -> usize {
        self.datagrams() * self.stride
    }

    /// Whether the layout holds no datagram (never true for a valid layout).
    pub fn is_empty(&self) -> bool {
        self.datagrams() == 0
    }
}

/// What [`Pf1Sender::packetize`] wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Packetized {
    /// The frame's id.
    pub frame_id: u32,
    /// Packet number of the first datagram; the others follow consecutively.
    pub first_packet_number: u64,
    /// Shards and sizes.
    pub layout: FrameLayout,
}

impl Packetized {
    /// Bytes written at the front of the output buffer.
    pub fn len(&self) -> usize {
        self.layout.len()
    }

    /// Whether nothing was written (never true for a successful call).
    pub fn is_empty(&self) -> bool {
        self.layout.is_empty()
    }
}

/// Counters of a [`Pf1Sender`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SenderStats {
    /// Frames packetized.
    pub frames: u64,
    /// Datagrams sealed (data and parity).
    pub datagrams: u64,
    /// Parity datagrams among them.
    pub parity_datagrams: u64,
    /// Frame bytes packetized.
    pub payload_bytes: u64,
    /// Frames whose parity was cut to what the GF(2^16) code supports.
    pub parity_capped: u64,
    /// Key updates installed.
    pub key_updates: u64,
}

/// The punktfunk/1 packetizer (see the module docs).
#[derive(Debug)]
pub struct Pf1Sender {
    config: Pf1SenderConfig,
    key: DataKey,
    next_packet_number: u64,
    packet_limit: u64,
    next_frame_id: u32,
    parity_percent: u8,
    loss: f64,
    /// `(data shards, loss bits) → binomial parity` of the last frame: frame sizes repeat.
    memo: Option<(usize, u64, usize)>,
    code: Gf16Code,
    /// The zero-padded last data shard.
    pad: Vec<u8>,
    stats: SenderStats,
}

impl Pf1Sender {
    /// A sender sealing under `key`, starting at frame id 0 and packet number 0.
    pub fn new(config: Pf1SenderConfig, key: DataKey) -> Result<Self, Pf1Error> {
        config.validate()?;
        Ok(Self {
            packet_limit: packet_limit(config.shard_len),
            parity_percent: config
                .parity_percent
                .clamp(MIN_PARITY_PERCENT, MAX_PARITY_PERCENT),
            config,
            key,
            next_packet_number: 0,
            next_frame_id: 0,
            loss: 0.0,
            memo: None,
            code: Gf16Code::new(1, 1)?,
            pad: vec![0; config.shard_len],
            stats: SenderStats::default(),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &Pf1SenderConfig {
        &self.config
    }

    /// Counters so far.
    pub fn stats(&self) -> SenderStats {
        self.stats
    }

    /// The id the next frame gets.
    pub fn next_frame_id(&self) -> u32 {
        self.next_frame_id
    }

    /// Sets the parity percentage from the next frame on, clamped to 5–50.
    pub fn set_parity_percent(&mut self, pct: u8) {
        self.parity_percent = pct.clamp(MIN_PARITY_PERCENT, MAX_PARITY_PERCENT);
    }

    /// The parity percentage in use.
    pub fn parity_percent(&self) -> u8 {
        self.parity_percent
    }

    /// Sets the estimated datagram loss (0..=0.5) used to size small frames.
    pub fn set_loss_estimate(&mut self, loss: f64) {
        self.loss = if loss.is_finite() {
            loss.clamp(0.0, 0.5)
        } else {
            0.0
        };
    }

    /// Installs the next key generation: later datagrams carry its id and start again at
    /// packet number 0.
    pub fn update_key(&mut self, key: DataKey) {
        self.key = key;
        self.next_packet_number = 0;
        self.stats.key_updates += 1;
    }

    /// The key id in use.
    pub fn key_id(&self) -> u8 {
        self.key.id()
    }

    /// Whether the key sealed half its packet limit: time to ask the control plane for the
    /// next generation.
    pub fn key_update_due(&self) -> bool {
        self.next_packet_number >= self.packet_limit / 2
    }

    #[cfg(test)]
    pub(crate) fn next_packet_number_for_tests(&mut self, pn: u64) {
        self.next_packet_number = pn;
    }

    /// The layout a frame of `frame_len` bytes gets with the current parity settings.
    pub fn layout(&mut self, frame_len: usize) -> Result<FrameLayout, Pf1Error> {
        if frame_len > self.config.max_frame_len {
            return Err(Pf1Error::FrameTooLarge {
                len: frame_len,
                max: self.config.max_frame_len,
            });
        }
        let shard_len = if frame_len >= self.config.shard_len {
            self.config.shard_len
        } else {
            (frame_len.max(2) + 1) & !1
        };
        let data_shards = frame_len.div_ceil(shard_len).max(1);
        let parity_shards = self.parity_for(data_shards);
        Ok(FrameLayout {
            data_shards,
            parity_shards,
            shard_len,
            stride: shard_len + OVERHEAD,
        })
    }

    /// Output bytes that suffice for any frame of `frame_len` bytes (parity at 50 % or the
    /// minimum); size buffers with this.
    pub fn max_output(&self, frame_len: usize) -> usize {
        let l = self.config.shard_len;
        let shard_len = if frame_len >= l {
            l
        } else {
            (frame_len.max(2) + 1) & !1
        };
        let ds = frame_len.div_ceil(shard_len).max(1);
        let ps = ds
            .div_ceil(100 / usize::from(MAX_PARITY_PERCENT))
            .max(self.config.min_parity);
        (ds + ps) * (shard_len + OVERHEAD)
    }

    fn parity_for(&mut self, ds: usize) -> usize {
        let cap = ds.div_ceil(2).max(self.config.min_parity);
        let by_pct = (ds * usize::from(self.parity_percent)).div_ceil(100);
        let by_loss = if ds <= EXACT_PARITY_SHARDS && self.loss > 0.0 {
            let bits = self.loss.to_bits();
            match self.memo {
                Some((d, b, r)) if d == ds && b == bits => r,
                _ => {
                    let r = parity_for_loss(ds, self.loss, self.config.target, cap);
                    self.memo = Some((ds, bits, r));
                    r
                }
            }
        } else {
            0
        };
        let want = by_pct.max(by_loss).max(self.config.min_parity).min(cap);
        let supported = Gf16Code::max_parity(ds);
        if want > supported {
            self.stats.parity_capped += 1;
        }
        want.min(supported)
    }

    /// Packetizes `frame` into `out` (see the module docs): FEC, headers, and every datagram
    /// sealed in place. On error nothing useful is in `out` and no frame id or packet number is
    /// used up.
    pub fn packetize(
        &mut self,
        frame: &[u8],
        info: &FrameInfo,
        out: &mut [u8],
    ) -> Result<Packetized, Pf1Error> {
        let layout = self.layout(frame.len())?;
        let FrameLayout {
            data_shards: ds,
            parity_shards: ps,
            shard_len: l,
            stride,
        } = layout;
        let total = ds + ps;
        if out.len() < layout.len() {
            return Err(Pf1Error::BufferTooSmall {
                needed: layout.len(),
                got: out.len(),
            });
        }
        let first_pn = self.next_packet_number;
        if first_pn + total as u64 > self.packet_limit {
            return Err(Pf1Error::KeyExhausted {
                key_id: self.key.id(),
                packets: first_pn,
            });
        }

        // The last data shard, zero-padded to L (also the only shard of an empty frame).
        let full = frame.len() / l;
        let tail = &frame[full * l..];
        let padded = !tail.is_empty() || full == 0;
        if padded {
            self.pad.clear();
            self.pad.extend_from_slice(tail);
            self.pad.resize(l, 0);
        }
        let data = || {
            frame
                .chunks_exact(l)
                .chain(padded.then_some(self.pad.as_slice()))
        };

        // Every datagram is written whole (header, shard, seal) while its shard is in L1:
        // parity datagrams as the encoder hands out each parity shard, then the data
        // datagrams from the frame. One pass over the output.
        let header = Header {
            packet_type: PacketType::VideoShard,
            flags: if info.keyframe { flags::KEYFRAME } else { 0 }
                | if info.new_mode { flags::NEW_MODE } else { 0 },
            key_id: self.key.id(),
            frame_id: self.next_frame_id,
            packet_number: first_pn,
            shard_index: 0,
            // Fits: layout() keeps ds + ps ≤ 65535 (max_frame_len ≤ 65534 shards, parity
            // capped by max_parity).
            data_shards: ds as u16,
            parity_shards: ps as u16,
            mode: info.mode,
            // Fits: validate() keeps max_frame_len ≤ u32::MAX.
            frame_len: frame.len() as u32,
            capture_us: info.capture_us,
        };
        let key = &self.key;
        let (data_area, parity_area) = out[..total * stride].split_at_mut(ds * stride);
        self.code.reshape(ds, ps)?;
        if ps > 0 {
            self.code.encode_each(l, data(), |j, shard| {
                let dg = &mut parity_area[j * stride..(j + 1) * stride];
                seal_datagram(key, header, ds + j, shard, dg);
            })?;
        }
        for ((i, shard), dg) in data().enumerate().zip(data_area.chunks_exact_mut(stride)) {
            seal_datagram(key, header, i, shard, dg);
        }

        self.next_packet_number = first_pn + total as u64;
        let frame_id = self.next_frame_id;
        self.next_frame_id = self.next_frame_id.wrapping_add(1);
        self.stats.frames += 1;
        self.stats.datagrams += total as u64;
        self.stats.parity_datagrams += ps as u64;
        self.stats.payload_bytes += frame.len() as u64;
        Ok(Packetized {
            frame_id,
            first_packet_number: first_pn,
            layout,
        })
    }
}

/// Writes datagram `k` of the frame `header` describes into `dg` (exactly one stride):
/// header, `shard`, and the AES-GCM seal of the shard in place.
fn seal_datagram(key: &DataKey, mut header: Header, k: usize, shard: &[u8], dg: &mut [u8]) {
    // Fits: k < data + parity ≤ 65535.
    header.shard_index = k as u16;
    header.packet_number += k as u64;
    let (head, rest) = dg.split_at_mut(HEADER_LEN);
    let head: &mut [u8; HEADER_LEN] = head
        .try_into()
        .expect("split_at_mut(HEADER_LEN) yields HEADER_LEN bytes");
    header.write(head);
    let (payload, tag) = rest.split_at_mut(shard.len());
    payload.copy_from_slice(shard);
    tag.copy_from_slice(&key.seal(header.packet_number, head, payload));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pf1::KEY_MATERIAL_LEN;

    fn key() -> DataKey {
        DataKey::from_key_material(&[9; KEY_MATERIAL_LEN])
    }

    #[test]
    fn config_checks_and_mtu_helper() {
        let bad = |f: &dyn Fn(&mut Pf1SenderConfig)| {
            let mut c = Pf1SenderConfig::default();
            f(&mut c);
            Pf1Sender::new(c, key()).is_err()
        };
        assert!(bad(&|c| c.shard_len = 1401));
        assert!(bad(&|c| c.shard_len = 0));
        assert!(bad(&|c| c.shard_len = MAX_SHARD_LEN + 2));
        assert!(bad(&|c| c.max_frame_len = 65535 * 1408));
        assert!(bad(&|c| c.target = 1.0));
        assert!(bad(&|c| c.min_parity = 40000));
        assert!(!bad(&|_| {}));
        assert_eq!(Pf1SenderConfig::shard_len_for_mtu(1500, false), Some(1408));
        assert_eq!(Pf1SenderConfig::shard_len_for_mtu(1500, true), Some(1344));
        assert_eq!(Pf1SenderConfig::shard_len_for_mtu(9000, false), Some(8896));
        assert_eq!(Pf1SenderConfig::shard_len_for_mtu(100, false), None);
        const { assert!(1408 + OVERHEAD <= 1472 && 1344 + OVERHEAD <= 1452) };
    }

    #[test]
    fn layouts() {
        let mut s = Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap();
        let l = s.layout(0).unwrap();
        assert_eq!((l.data_shards, l.parity_shards, l.shard_len), (1, 1, 2));
        let l = s.layout(101).unwrap();
        assert_eq!((l.data_shards, l.shard_len, l.stride), (1, 102, 154));
        let l = s.layout(1408 * 100).unwrap();
        assert_eq!((l.data_shards, l.parity_shards), (100, 20));
        s.set_parity_percent(90);
        assert_eq!(s.parity_percent(), 50);
        assert_eq!(s.layout(1408 * 100).unwrap().parity_shards, 50);
        s.set_parity_percent(0);
        assert_eq!(s.layout(1408 * 100).unwrap().parity_shards, 5);
        // Small frames at 10 % loss get binomial parity, capped at half the data shards.
        s.set_loss_estimate(0.10);
        assert_eq!(s.layout(1408 * 10).unwrap().parity_shards, 5);
        let l = s.layout(1408 * 200).unwrap();
        assert!(l.parity_shards > 20 + 10 && l.parity_shards <= 100, "{l:?}");
        s.set_loss_estimate(f64::NAN);
        assert_eq!(s.layout(1408 * 200).unwrap().parity_shards, 10);
        for len in [0, 1, 1407, 1408, 1409, 1 << 20, 8 << 20] {
            let l = s.layout(len).unwrap();
            assert!(l.len() <= s.max_output(len), "{len}");
        }
        assert!(matches!(
            s.layout(33 << 20),
            Err(Pf1Error::FrameTooLarge { .. })
        ));
    }

    #[test]
    fn packetize_writes_sealed_datagrams() {
        let mut s = Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap();
        let frame: Vec<u8> = (0..5000u32).map(|i| i as u8).collect();
        let mut out = vec![0u8; s.max_output(frame.len())];
        let info = FrameInfo {
            capture_us: 77,
            keyframe: true,
            new_mode: false,
            mode: 3,
        };
        let p = s.packetize(&frame, &info, &mut out).unwrap();
        assert_eq!(p.frame_id, 0);
        assert_eq!(p.layout.data_shards, 4);
        assert_eq!(p.layout.parity_shards, 1);
        assert_eq!(p.len(), 5 * 1460);
        let (h, l) = Header::parse(&out[1460..2 * 1460]).unwrap();
        assert_eq!(l, 1408);
        assert_eq!(
            (h.frame_id, h.packet_number, h.shard_index, h.frame_len),
            (0, 1, 1, 5000)
        );
        assert!(h.keyframe() && h.mode == 3 && h.capture_us == 77);
        // The payload is encrypted, not the frame bytes in the clear.
        assert_ne!(&out[1460 + HEADER_LEN..][..64], &frame[1408..][..64]);
        let p2 = s.packetize(&frame, &info, &mut out).unwrap();
        assert_eq!((p2.frame_id, p2.first_packet_number), (1, 5));
        assert_eq!(s.stats().frames, 2);
        assert_eq!(s.stats().datagrams, 10);
        // Too small a buffer: an error, and no id or packet number is used up.
        assert!(matches!(
            s.packetize(&frame, &info, &mut out[..100]),
            Err(Pf1Error::BufferTooSmall { .. })
        ));
        assert_eq!(s.next_frame_id(), 2);
        s.update_key(key().with_generation(1));
        let p3 = s.packetize(&frame, &info, &mut out).unwrap();
        assert_eq!(p3.first_packet_number, 0);
        assert_eq!(Header::parse(&out[..1460]).unwrap().0.key_id, 1);
    }

    #[test]
    fn key_limit_is_enforced() {
        let mut s = Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap();
        s.next_packet_number = s.packet_limit - 3;
        assert!(s.key_update_due());
        let mut out = vec![0u8; s.max_output(100)];
        s.packetize(&[1; 100], &FrameInfo::default(), &mut out)
            .unwrap();
        assert!(matches!(
            s.packetize(&[1; 100], &FrameInfo::default(), &mut out),
            Err(Pf1Error::KeyExhausted { .. })
        ));
    }
}
