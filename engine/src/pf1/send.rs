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
/// Share of a key's packet limit after which [`Pf1Sender::key_update_due`] asks for the next
/// generation: a quarter of the limit (about 10 minutes at 2.5 Gbit/s) is left for the
/// control plane to agree on it.
pub const DEFAULT_KEY_UPDATE_PERCENT: u8 = 75;

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
    /// Datagrams one key may seal: 0 means AES-GCM's limit for the shard length
    /// ([`packet_limit`]); a non-zero value lowers it (never raises it). Tests and the
    /// loopback checks use a small one to rotate keys often.
    pub key_packet_limit: u64,
    /// Percentage (1..=99) of the packet limit after which a key update is due.
    pub key_update_percent: u8,
}

impl Default for Pf1SenderConfig {
    fn default() -> Self {
        Self {
            shard_len: DEFAULT_SHARD_LEN,
            parity_percent: 20,
            min_parity: 1,
            max_frame_len: 32 << 20,
            target: DEFAULT_FRAME_LOSS_TARGET,
            key_packet_limit: 0,
            key_update_percent: DEFAULT_KEY_UPDATE_PERCENT,
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
        if !(1..=99).contains(&self.key_update_percent) {
            return Err(Pf1Error::InvalidConfig(
                "key update percentage must lie in 1..=99",
            ));
        }
        Ok(())
    }

    /// Datagrams one key may seal with this configuration.
    pub fn packet_limit(&self) -> u64 {
        let aead = packet_limit(self.shard_len);
        match self.key_packet_limit {
            0 => aead,
            n => n.min(aead),
        }
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
    /// Key updates installed (rotations).
    pub key_updates: u64,
    /// Generation of the key in use.
    pub key_generation: u32,
    /// Datagrams sealed under the key in use.
    pub key_datagrams: u64,
    /// Datagrams the previous generation sealed in all.
    pub previous_key_datagrams: u64,
    /// Frames refused because the key in use reached its limit.
    pub key_exhausted: u64,
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
            packet_limit: config.packet_limit(),
            stats: SenderStats {
                key_generation: key.generation(),
                ..SenderStats::default()
            },
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

    /// Installs the next key generation at the next frame: its datagrams carry the new key id
    /// and start again at packet number 0. Refuses a generation that is not newer than the one
    /// in use ([`Pf1Error::StaleKey`]): packet numbers restart at 0, so an old key again would
    /// reuse nonces.
    pub fn update_key(&mut self, key: DataKey) -> Result<(), Pf1Error> {
        if key.generation() <= self.key.generation() {
            return Err(Pf1Error::StaleKey {
                current: self.key.generation(),
                offered: key.generation(),
            });
        }
        self.stats.previous_key_datagrams = self.next_packet_number;
        self.stats.key_generation = key.generation();
        self.stats.key_datagrams = 0;
        self.key = key;
        self.next_packet_number = 0;
        self.stats.key_updates += 1;
        Ok(())
    }

    /// The key id in use.
    pub fn key_id(&self) -> u8 {
        self.key.id()
    }

    /// The key generation in use.
    pub fn key_generation(&self) -> u32 {
        self.key.generation()
    }

    /// Datagrams one key may seal ([`Pf1SenderConfig::packet_limit`]).
    pub fn packet_limit(&self) -> u64 {
        self.packet_limit
    }

    /// Whether the key sealed [`Pf1SenderConfig::key_update_percent`] of its packet limit:
    /// time to ask the control plane for the next generation.
    pub fn key_update_due(&self) -> bool {
        // No overflow: the limit is at most 2^33 and the percentage at most 99.
        self.next_packet_number * 100
            >= self.packet_limit * u64::from(self.config.key_update_percent)
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
    /// sealed in place. On error nothing useful is in `out` and no packet number is used up;
    /// no frame id either, except on [`Pf1Error::KeyExhausted`]: that frame is dropped for
    /// good, and skipping its id lets the receiver report it lost (and ask for a keyframe).
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
            self.next_frame_id = self.next_frame_id.wrapping_add(1);
            self.stats.key_exhausted += 1;
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
        self.stats.key_datagrams = self.next_packet_number;
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
        s.update_key(key().with_generation(1)).unwrap();
        let p3 = s.packetize(&frame, &info, &mut out).unwrap();
        assert_eq!(p3.first_packet_number, 0);
        assert_eq!(Header::parse(&out[..1460]).unwrap().0.key_id, 1);
    }

    #[test]
    fn key_limit_is_enforced() {
        let mut s = Pf1Sender::new(Pf1SenderConfig::default(), key()).unwrap();
        assert_eq!(s.packet_limit(), 1 << 28);
        s.next_packet_number = s.packet_limit - 3;
        assert!(s.key_update_due());
        let mut out = vec![0u8; s.max_output(100)];
        s.packetize(&[1; 100], &FrameInfo::default(), &mut out)
            .unwrap();
        assert!(matches!(
            s.packetize(&[1; 100], &FrameInfo::default(), &mut out),
            Err(Pf1Error::KeyExhausted { .. })
        ));
        // The refused frame's id is gone (the receiver sees a gap), its packet numbers not.
        assert_eq!(s.next_frame_id(), 2);
        assert_eq!(s.stats().key_exhausted, 1);
        assert_eq!(s.stats().key_datagrams, s.packet_limit - 1);
    }

    #[test]
    fn configured_limit_and_update_point() {
        let config = Pf1SenderConfig {
            key_packet_limit: 1000,
            key_update_percent: 75,
            ..Default::default()
        };
        let mut s = Pf1Sender::new(config, key()).unwrap();
        assert_eq!(s.packet_limit(), 1000);
        // A configured limit never raises AES-GCM's.
        let big = Pf1SenderConfig {
            key_packet_limit: u64::MAX,
            ..Default::default()
        };
        assert_eq!(big.packet_limit(), 1 << 28);
        for bad in [0u8, 100, 255] {
            let c = Pf1SenderConfig {
                key_update_percent: bad,
                ..config
            };
            assert!(Pf1Sender::new(c, key()).is_err(), "{bad}");
        }
        s.next_packet_number = 749;
        assert!(!s.key_update_due());
        s.next_packet_number = 750;
        assert!(s.key_update_due());
        // Never sealed past the limit: a frame that would cross it is refused whole.
        s.next_packet_number = 995;
        let mut out = vec![0u8; s.max_output(10_000)];
        assert!(matches!(
            s.packetize(&[7; 10_000], &FrameInfo::default(), &mut out),
            Err(Pf1Error::KeyExhausted { packets: 995, .. })
        ));
        let p = s
            .packetize(&[7; 100], &FrameInfo::default(), &mut out)
            .unwrap();
        assert_eq!(p.first_packet_number + p.layout.datagrams() as u64, 997);
    }

    #[test]
    fn stale_generations_are_refused() {
        let mut s = Pf1Sender::new(Pf1SenderConfig::default(), key().with_generation(3)).unwrap();
        for g in [0, 2, 3] {
            assert_eq!(
                s.update_key(key().with_generation(g)),
                Err(Pf1Error::StaleKey {
                    current: 3,
                    offered: g
                })
            );
        }
        assert_eq!(s.stats().key_updates, 0);
        s.update_key(key().with_generation(4)).unwrap();
        assert_eq!((s.key_generation(), s.key_id()), (4, 4));
        assert_eq!(s.stats().key_generation, 4);
        assert!(s.update_key(key().with_generation(4)).is_err());
    }

    /// Every (generation, packet number) a sender seals, through many rotations at random
    /// points with stale keys offered in between, is unique, and no generation seals past its
    /// limit: the nonce `salt ‖ packet number` is never reused under a key.
    #[test]
    fn nonces_are_unique_per_key_through_rotations() {
        use proptest::prelude::*;
        use std::collections::HashSet;
        let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(24));
        let strategy = proptest::collection::vec((0usize..40_000, 0u8..4), 1..120);
        runner
            .run(&strategy, |steps| {
                let limit = 300;
                let config = Pf1SenderConfig {
                    key_packet_limit: limit,
                    key_update_percent: 60,
                    ..Default::default()
                };
                let mut s = Pf1Sender::new(config, key()).unwrap();
                let mut seen = HashSet::new();
                let mut out = Vec::new();
                for (len, action) in steps {
                    match action {
                        // Rotate when due, or now and then early.
                        0 | 1 if s.key_update_due() || action == 0 => {
                            let g = s.key_generation();
                            s.update_key(key().with_generation(g + 1)).unwrap();
                        }
                        // An old or the current generation is refused.
                        2 => {
                            let g = s.key_generation();
                            prop_assert!(s.update_key(key().with_generation(g)).is_err());
                            prop_assert!(s.update_key(key().with_generation(g / 2)).is_err());
                        }
                        _ => {}
                    }
                    out.resize(s.max_output(len), 0);
                    let generation = s.key_generation();
                    if let Ok(p) = s.packetize(&vec![1; len], &FrameInfo::default(), &mut out) {
                        for dg in out[..p.len()].chunks(p.layout.stride) {
                            let (h, _) = Header::parse(dg).unwrap();
                            prop_assert_eq!(h.key_id, generation as u8);
                            prop_assert!(h.packet_number < limit);
                            prop_assert!(
                                seen.insert((generation, h.packet_number)),
                                "nonce reused: generation {} packet {}",
                                generation,
                                h.packet_number
                            );
                        }
                    }
                }
                Ok(())
            })
            .unwrap();
    }
}
