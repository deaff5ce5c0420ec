//! GameStream video: one encoded frame → RTP datagrams with FEC, and back.
//!
//! # Packet layout (docs/gamestream-protocol-notes.md "Video packets"; data and parity alike)
//!
//! ```text
//!  0      1      2      4          8          12         16           20          24    25    26    27    28        32
//! +------+------+------+----------+----------+----------+------------+-----------+-----+-----+-----+-----+---------+------------…
//! | 0x90 |  PT  | seq  | timestamp| SSRC = 0 | reserved | streamPkt  | frameIndex|flags|extra|mfec |mfec |fecInfo  | payload
//! |      |  0   | BE16 | BE32 90k |          |    0     | LE (n<<8)  | LE32      |     |     |flags|blks | LE32    | P-16 bytes
//! +------+------+------+----------+----------+----------+------------+-----------+-----+-----+-----+-----+---------+------------…
//!  \______________ RTP + extension (16) ______________/ \_______________ NV_VIDEO_PACKET (16) _______________/
//! ```
//!
//! `P` is the SDP `packetSize`; every datagram is `P + 16` bytes (the last data packet of a
//! block is zero-padded, as Sunshine does), which is also the FEC shard size and the GSO
//! segment size. A frame's datagrams are laid out back to back in the caller's buffer:
//!
//! ```text
//! | block 0: d0 d1 … d(ds0-1) p0 … p(ps0-1) | block 1: … | … up to 4 blocks
//! ```
//!
//! # From frame to packets (notes "Frame to packets", "Video FEC parameters")
//!
//! 1. Prepend the 8-byte short frame header (`0x01`, host latency, frame type,
//!    `lastPayloadLen`, 0, 0) and cut header + bitstream into `P − 16`-byte chunks.
//! 2. Split the chunks into at most 4 FEC blocks of at most `⌊25500 / (100 + pct)⌋` data
//!    shards; more than 4 blocks turn FEC off for the frame (Sunshine's rule).
//! 3. Parity per block `ps = ⌈ds · pct / 100⌉`, raised to `min_parity` with the percentage in
//!    `fecInfo` rewritten so that the client's formula gives the same `ps`.
//! 4. Data shards carry their final `streamPacketIndex`, flags and payload when FEC runs over
//!    the whole `P + 16`-byte packet; afterwards only bytes 0–11, 20–23, 27 and 28–31 of each
//!    parity packet are overwritten with header values. Bytes 12–19 and 24–26 stay parity:
//!    the client recovers `streamPacketIndex` and the flags from them (notes "Video FEC code").
//! 5. A one-block frame whose loss-derived parity the 8-bit percentage cannot express (a
//!    1-shard frame gets at most 3 parity shards, `⌈1 · 255 / 100⌉`) is sent 2 or 3 times in a
//!    row, identical datagrams with the same sequence numbers: the client keeps the first copy
//!    of each and rejects the rest as behind its window or as duplicates (docs/streaming.md,
//!    "Loss"), so a shard is lost only if every copy is.

use aes_gcm::aead::{AeadInOut, KeyInit};
use aes_gcm::{Aes128Gcm, Nonce, Tag};

use super::WireError;
use super::bytes::*;
use crate::fec::Kernel;
use crate::fec::adaptive::{DEFAULT_TARGET, parity_for_loss};
use crate::fec::gf8::{Gf8Code, MAX_SHARDS};

/// RTP header plus the 4-byte extension.
pub const RTP_HEADER_LEN: usize = 16;
/// `NV_VIDEO_PACKET`.
pub const NV_HEADER_LEN: usize = 16;
/// Offset of the payload in a packet.
pub const PAYLOAD_OFFSET: usize = RTP_HEADER_LEN + NV_HEADER_LEN;
/// The short frame header in front of the bitstream.
pub const FRAME_HEADER_LEN: usize = 8;
/// FEC blocks per frame (2-bit fields in `multiFecBlocks`).
pub const MAX_BLOCKS: usize = 4;
/// Data shards per block (10-bit fields in `fecInfo`).
pub const MAX_BLOCK_DATA_SHARDS: usize = 1023;
/// Bytes added in front of each packet by video encryption: IV, frame number, tag.
pub const ENC_HEADER_LEN: usize = 32;
/// Most times a one-block frame is sent when parity alone cannot cover the loss (step 5).
pub const MAX_COPIES: usize = 3;
/// Frames (counted from index 1) packetized as if the loss were at least the profile's FEC
/// percentage, before the client's reports have said anything about the path.
pub const STARTUP_FRAMES: u32 = 60;

/// `NV_VIDEO_PACKET.flags`.
pub mod flags {
    /// The packet carries picture data.
    pub const CONTAINS_PIC_DATA: u8 = 0x01;
    /// Last data packet of an FEC block.
    pub const EOF: u8 = 0x02;
    /// First data packet of an FEC block.
    pub const SOF: u8 = 0x04;
}

const MULTI_FEC_FLAGS: u8 = 0x10;

/// Frame type in byte 3 of the short frame header (notes "Frame to packets").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FrameType {
    /// Predicted frame.
    P = 1,
    /// Instantaneous decoder refresh: parameter sets and a key frame.
    Idr = 2,
    /// P frame with intra refresh.
    IntraRefresh = 4,
    /// P frame sent after a reference-frame invalidation.
    AfterRfi = 5,
}

impl FrameType {
    fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::P,
            2 => Self::Idr,
            4 => Self::IntraRefresh,
            5 => Self::AfterRfi,
            _ => return None,
        })
    }
}

/// Stream parameters negotiated in the SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoParams {
    /// SDP `x-nv-video[0].packetSize` (`P`): NV header + payload per packet.
    pub packet_size: usize,
    /// FEC percentage (0 = no parity). Sunshine's default is 20.
    pub fec_percent: u8,
    /// SDP `x-nv-vqos[0].fec.minRequiredFecPackets` (usually 2).
    pub min_parity: u8,
}

impl VideoParams {
    /// Bytes per datagram (`P + 16`), also the FEC shard size and GSO segment size.
    pub fn stride(&self) -> usize {
        self.packet_size + RTP_HEADER_LEN
    }

    /// Frame bytes carried per data packet (`P − 16`).
    pub fn chunk(&self) -> usize {
        self.packet_size - NV_HEADER_LEN
    }

    fn validate(&self) -> Result<(), WireError> {
        if self.packet_size < 64 || self.packet_size > 16384 {
            return Err(WireError::InvalidParameter(
                "packet size outside 64..=16384",
            ));
        }
        if self.min_parity as usize > 2 * MAX_BLOCKS {
            return Err(WireError::InvalidParameter("minimum parity above 8"));
        }
        Ok(())
    }

    /// Most datagrams (data and parity) a frame of `frame_len` bitstream bytes can produce;
    /// size output buffers with `max_datagrams(len) * stride()`.
    pub fn max_datagrams(&self, frame_len: usize) -> usize {
        let n = (frame_len + FRAME_HEADER_LEN).div_ceil(self.chunk()).max(1);
        if self.fec_percent == 0 {
            return n;
        }
        // Each block holds at most 255 shards once parity is in, unless FEC is skipped for a
        // frame too large for 4 blocks (then there is no parity). Adaptive parity can take a
        // block to 255 shards whatever the percentage says.
        let max_ds = (MAX_SHARDS * 100) / (100 + self.fec_percent as usize);
        let blocks = n.div_ceil(max_ds).clamp(1, MAX_BLOCKS);
        (blocks * MAX_SHARDS).max(n)
    }
}

/// One encoded frame handed to the packetizer.
#[derive(Debug, Clone, Copy)]
pub struct VideoFrame<'a> {
    /// Frame index: starts at 1 and increases by exactly 1 per frame (notes "Frame to packets").
    pub index: u32,
    /// RTP timestamp, 90 kHz.
    pub rtp_timestamp: u32,
    /// Frame type for the short header.
    pub frame_type: FrameType,
    /// Host processing latency in units of 0.1 ms (0 = unknown).
    pub host_latency: u16,
    /// Annex-B bitstream.
    pub bitstream: &'a [u8],
}

/// One FEC block of a packetized frame.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BlockLayout {
    /// First datagram of the block in the output buffer.
    pub first: usize,
    /// Data shards.
    pub data: usize,
    /// Parity shards.
    pub parity: usize,
    /// Percentage written into `fecInfo`.
    pub fec_percent: u8,
}

/// Where a frame's datagrams ended up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketizedFrame {
    /// Datagrams written, back to back.
    pub datagrams: usize,
    /// Bytes per datagram.
    pub stride: usize,
    /// Blocks used.
    pub blocks: usize,
    /// Per-block layout (`blocks` entries valid).
    pub layout: [BlockLayout; MAX_BLOCKS],
    /// Whether FEC was turned off because the frame needed more than 4 blocks.
    pub fec_skipped: bool,
    /// How often the block's datagrams were written (1, or up to [`MAX_COPIES`] for a tiny
    /// frame under heavy loss); `datagrams` counts every copy.
    pub copies: usize,
}

impl PacketizedFrame {
    /// Total bytes written.
    pub fn len(&self) -> usize {
        self.datagrams * self.stride
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.datagrams == 0
    }
}

/// Parity shards for a block of `ds` data shards at `pct` with a floor of `min`, and the
/// percentage to put in `fecInfo` so that the client's `(ds·pct + 99) / 100` gives exactly
/// that count (notes "Video FEC parameters"; Sunshine raises the count, then rewrites the
/// percentage as `⌊100·ps/ds⌋`).
///
/// Invariants (tested exhaustively): the returned percentage reproduces the returned count
/// through the client's formula, `ds + ps ≤ 255`, and `ps` is at least the smaller of `min`
/// and the largest count an 8-bit percentage can express for this `ds` within 255 shards.
pub fn parity_for_block(ds: usize, pct: u8, min: usize) -> (usize, u8) {
    let client = |q: usize| (ds * q).div_ceil(100);
    if pct == 0 || ds == 0 {
        return (0, 0);
    }
    let ps = client(pct as usize);
    if ps >= min {
        return (ps, pct);
    }
    // Sunshine's rewrite, when it reproduces `min` (always for ds < 100).
    let sunshine = 100 * min / ds;
    if sunshine <= 255 && client(sunshine) == min && ds + min <= MAX_SHARDS {
        return (min, sunshine as u8);
    }
    // Otherwise the smallest percentage whose client-side count reaches `min`; for ds > 100 one
    // step of the percentage can add more than one shard, so the count may land above `min`.
    let mut q = (pct as usize).max(100 * (min - 1) / ds).min(255);
    while q < 255 && client(q) < min {
        q += 1;
    }
    while q > pct as usize && ds + client(q) > MAX_SHARDS {
        q -= 1;
    }
    (client(q), q as u8)
}

/// Parity and copies for a one-block frame of `ds` data shards at loss `p`, given the parity
/// `needed` for one copy: `(needed, 1)` when the 8-bit `fecInfo` percentage can express it,
/// else the fewest copies (≤ [`MAX_COPIES`]) whose parity fits, sized for the loss a shard
/// sees when every one of its `k` copies must be lost (`p^k`, independent losses). The copies
/// stay within one block's 255 datagrams, so [`VideoParams::max_datagrams`] still bounds them.
pub fn copies_for_block(ds: usize, p: f64, needed: usize) -> (usize, usize) {
    let cap = (ds * 255).div_ceil(100).min(MAX_SHARDS - ds);
    if needed <= cap || ds == 0 {
        return (needed, 1);
    }
    for k in 2..=MAX_COPIES {
        let parity = parity_for_loss(ds, p.powi(k as i32), DEFAULT_TARGET, MAX_SHARDS - ds);
        if parity <= cap && k * (ds + parity) <= MAX_SHARDS {
            return (parity, k);
        }
    }
    let k = (MAX_SHARDS / (ds + cap)).clamp(1, MAX_COPIES);
    (cap, k)
}

/// Splits `n` data shards into FEC blocks: `(blocks, per_block, pct, fec_skipped)`.
fn plan_blocks(n: usize, pct: u8) -> (usize, usize, u8, bool) {
    if pct > 0 {
        let max_ds = (MAX_SHARDS * 100) / (100 + pct as usize);
        let blocks = n.div_ceil(max_ds);
        if blocks <= MAX_BLOCKS {
            return (blocks, n.div_ceil(blocks), pct, false);
        }
        return (MAX_BLOCKS, n.div_ceil(MAX_BLOCKS), 0, true);
    }
    let blocks = n.div_ceil(MAX_SHARDS).min(MAX_BLOCKS);
    (blocks, n.div_ceil(blocks), 0, false)
}

/// Builds GameStream video datagrams. Keeps the running RTP sequence number and the FEC
/// code (reshaped per block without allocating).
#[derive(Debug, Clone)]
pub struct VideoPacketizer {
    params: VideoParams,
    /// Estimated packet loss at the receiver; blocks get the parity it calls for
    /// ([`crate::fec::adaptive`]), never less than `params.fec_percent` gives.
    loss: f64,
    /// Whether a loss estimate was ever set: only then do keyframes and the first
    /// [`STARTUP_FRAMES`] get the startup floor (without one the percentage alone rules).
    adaptive: bool,
    /// Running packet counter: RTP sequence (truncated to 16 bits) and `streamPacketIndex`.
    low_seq: u32,
    code: Gf8Code,
    /// Codes of the helper threads that encode the other blocks of a multi-block frame at
    /// the same time ([`VideoPacketizer::set_fec_threads`]); empty: one thread.
    helpers: Vec<Gf8Code>,
}

impl VideoPacketizer {
    /// A packetizer for `params`, FEC on the fastest kernel of this CPU.
    pub fn new(params: VideoParams) -> Result<Self, WireError> {
        Self::with_kernel(params, Kernel::detect())
    }

    /// A packetizer whose FEC runs on `kernel`.
    pub fn with_kernel(params: VideoParams, kernel: Kernel) -> Result<Self, WireError> {
        params.validate()?;
        Ok(Self {
            params,
            loss: 0.0,
            adaptive: false,
            low_seq: 0,
            code: Gf8Code::nanors(1, 0)?.with_kernel(kernel)?,
            helpers: Vec::new(),
        })
    }

    /// Encodes the parity of a frame's FEC blocks on up to `threads` threads (1..=4, one block
    /// each at most: a frame has at most [`MAX_BLOCKS`]). With more than one, a frame of
    /// several blocks has its other blocks encoded on short-lived scoped threads while the
    /// calling thread encodes the first; a one-block frame never leaves the calling thread.
    /// The datagrams are the same byte for byte whatever the count.
    pub fn set_fec_threads(&mut self, threads: usize) -> Result<(), WireError> {
        let extra = threads.clamp(1, MAX_BLOCKS) - 1;
        let kernel = self.code.kernel();
        self.helpers.truncate(extra);
        while self.helpers.len() < extra {
            self.helpers
                .push(Gf8Code::nanors(1, 0)?.with_kernel(kernel)?);
        }
        Ok(())
    }

    /// Threads the parity of one frame may be encoded on.
    pub fn fec_threads(&self) -> usize {
        self.helpers.len() + 1
    }

    /// The parameters in use.
    pub fn params(&self) -> &VideoParams {
        &self.params
    }

    /// Changes the FEC percentage from the next frame on (adaptive FEC).
    pub fn set_fec_percent(&mut self, pct: u8) {
        self.params.fec_percent = pct;
    }

    /// Sets the receiver's estimated packet loss (0..=0.5), used from the next frame on.
    pub fn set_loss_estimate(&mut self, loss: f64) {
        self.adaptive = true;
        self.loss = if loss.is_finite() {
            loss.clamp(0.0, 0.5)
        } else {
            0.0
        };
    }

    /// Writes all datagrams of `frame` into `out` (see the module docs for the layout).
    pub fn packetize(
        &mut self,
        frame: &VideoFrame<'_>,
        out: &mut [u8],
    ) -> Result<PacketizedFrame, WireError> {
        let p = self.params;
        let (stride, chunk) = (p.stride(), p.chunk());
        let total = FRAME_HEADER_LEN + frame.bitstream.len();
        let n = total.div_ceil(chunk);
        let (blocks, per_block, pct, fec_skipped) = plan_blocks(n, p.fec_percent);
        if per_block > MAX_BLOCK_DATA_SHARDS {
            return Err(WireError::FrameTooLarge {
                bytes: frame.bitstream.len(),
                max_shards: MAX_BLOCKS * MAX_BLOCK_DATA_SHARDS,
            });
        }
        let mut layout = [BlockLayout::default(); MAX_BLOCKS];
        let mut datagrams = 0;
        let mut copies = 1;
        // Keyframes, and every frame before the client has reported on the path, are sized for
        // at least the profile's percentage as a loss rate: losing one costs an IDR round trip.
        let loss = if self.adaptive
            && (frame.frame_type == FrameType::Idr || frame.index <= STARTUP_FRAMES)
        {
            self.loss.max(f64::from(p.fec_percent) / 100.0).min(0.5)
        } else {
            self.loss
        };
        for (b, l) in layout.iter_mut().enumerate().take(blocks) {
            let data = per_block.min(n - b * per_block);
            let mut needed = if pct == 0 {
                0
            } else {
                parity_for_loss(data, loss, DEFAULT_TARGET, MAX_SHARDS - data)
            };
            if blocks == 1 && pct > 0 {
                (needed, copies) = copies_for_block(data, loss, needed);
            }
            let min = needed.max(usize::from(p.min_parity));
            let (parity, fec_percent) = parity_for_block(data, pct, min);
            *l = BlockLayout {
                first: datagrams,
                data,
                parity,
                fec_percent,
            };
            datagrams += data + parity;
        }
        let once = datagrams;
        datagrams *= copies;
        if out.len() < datagrams * stride {
            return Err(WireError::BufferTooSmall {
                needed: datagrams * stride,
                got: out.len(),
            });
        }

        // The short frame header (notes "Frame to packets", step 1).
        let last_len = match total % chunk {
            0 => chunk,
            r => r,
        };
        let mut header = [0u8; FRAME_HEADER_LEN];
        header[0] = 0x01;
        header[1..3].copy_from_slice(&frame.host_latency.to_le_bytes());
        header[3] = frame.frame_type as u8;
        header[4..6].copy_from_slice(&(last_len as u16).to_le_bytes());

        let last_block = (blocks - 1) as u8;
        let mut data_index = 0usize;
        let mut first_seq = [0u32; MAX_BLOCKS];
        for (b, l) in layout.iter().enumerate().take(blocks) {
            first_seq[b] = self.low_seq;
            let block = &mut out[l.first * stride..(l.first + l.data + l.parity) * stride];
            let multi = ((b as u8) << 4) | (last_block << 6);
            for x in 0..l.data {
                let pkt = &mut block[x * stride..(x + 1) * stride];
                let seq = self.low_seq.wrapping_add(x as u32);
                let fl = flags::CONTAINS_PIC_DATA
                    | if x == 0 { flags::SOF } else { 0 }
                    | if x == l.data - 1 { flags::EOF } else { 0 };
                write_header(
                    pkt,
                    seq,
                    frame,
                    fl,
                    multi,
                    fec_info(x, l.data, l.fec_percent),
                );
                // Payload: chunk `data_index` of header ‖ bitstream, zero-padded.
                let body = &mut pkt[PAYLOAD_OFFSET..];
                let start = data_index * chunk;
                let mut filled = 0;
                if start < FRAME_HEADER_LEN {
                    filled = FRAME_HEADER_LEN - start;
                    body[..filled].copy_from_slice(&header[start..]);
                }
                let from = (start + filled) - FRAME_HEADER_LEN;
                let take = (chunk - filled).min(frame.bitstream.len().saturating_sub(from));
                body[filled..filled + take].copy_from_slice(&frame.bitstream[from..from + take]);
                body[filled + take..].fill(0);
                data_index += 1;
            }
            self.low_seq = self.low_seq.wrapping_add((l.data + l.parity) as u32);
        }
        // Parity of every block (over the data datagrams as written, headers included), then
        // the parity datagrams' own headers.
        self.encode_parity(&mut out[..once * stride], &layout[..blocks], stride)?;
        for (b, l) in layout.iter().enumerate().take(blocks) {
            let multi = ((b as u8) << 4) | (last_block << 6);
            for j in 0..l.parity {
                let x = l.data + j;
                let at = (l.first + x) * stride;
                let pkt = &mut out[at..at + stride];
                let seq = first_seq[b].wrapping_add(x as u32);
                write_parity_header(pkt, seq, frame, multi, fec_info(x, l.data, l.fec_percent));
            }
        }
        for c in 1..copies {
            out.copy_within(..once * stride, c * once * stride);
        }
        Ok(PacketizedFrame {
            datagrams,
            stride,
            blocks,
            layout,
            fec_skipped,
            copies,
        })
    }
}

impl VideoPacketizer {
    /// Encodes the parity shards of `blocks` (laid out back to back in `out` from 0), on this
    /// thread and, for a frame of several blocks, on the helpers' scoped threads.
    fn encode_parity(
        &mut self,
        out: &mut [u8],
        blocks: &[BlockLayout],
        stride: usize,
    ) -> Result<(), WireError> {
        // Each block's bytes, disjoint.
        let mut parts: Vec<(&mut [u8], BlockLayout)> = Vec::with_capacity(blocks.len());
        let mut rest = out;
        for l in blocks {
            let len = (l.data + l.parity) * stride;
            let (block, tail) = std::mem::take(&mut rest).split_at_mut(len);
            rest = tail;
            if l.parity > 0 {
                parts.push((block, *l));
            }
        }
        let encode = |code: &mut Gf8Code, block: &mut [u8], l: &BlockLayout| {
            code.reshape_nanors(l.data, l.parity)?;
            code.encode_block(block, stride)
        };
        if self.helpers.is_empty() || parts.len() < 2 {
            for (block, l) in parts {
                encode(&mut self.code, block, &l)?;
            }
            return Ok(());
        }
        // Block i goes to worker i mod (helpers + 1); worker 0 is this thread.
        let workers = self.helpers.len() + 1;
        let mut shares: Vec<Vec<(&mut [u8], BlockLayout)>> =
            (0..workers).map(|_| Vec::new()).collect();
        for (i, part) in parts.into_iter().enumerate() {
            shares[i % workers].push(part);
        }
        let mut shares = shares.into_iter();
        let mine = shares.next().unwrap_or_default();
        let code = &mut self.code;
        std::thread::scope(|sc| {
            let helpers: Vec<_> = self
                .helpers
                .iter_mut()
                .zip(shares)
                .filter(|(_, share)| !share.is_empty())
                .map(|(helper, share)| {
                    sc.spawn(move || {
                        for (block, l) in share {
                            encode(helper, block, &l)?;
                        }
                        Ok::<(), crate::fec::FecError>(())
                    })
                })
                .collect();
            for (block, l) in mine {
                encode(code, block, &l)?;
            }
            for h in helpers {
                // A helper only runs the FEC kernels; a panic there is a bug, passed on.
                h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            }
            Ok::<(), crate::fec::FecError>(())
        })?;
        Ok(())
    }
}

fn fec_info(shard: usize, data: usize, pct: u8) -> u32 {
    ((shard as u32) << 12) | ((data as u32) << 22) | ((pct as u32) << 4)
}

fn write_rtp(pkt: &mut [u8], seq: u32, ts: u32) {
    pkt[0] = 0x90;
    pkt[1] = 0;
    put_u16_be(pkt, 2, seq as u16);
    put_u32_be(pkt, 4, ts);
    put_u32_be(pkt, 8, 0);
}

fn write_header(pkt: &mut [u8], seq: u32, f: &VideoFrame<'_>, fl: u8, multi: u8, info: u32) {
    write_rtp(pkt, seq, f.rtp_timestamp);
    put_u32_be(pkt, 12, 0);
    put_u32_le(pkt, 16, seq << 8);
    put_u32_le(pkt, 20, f.index);
    pkt[24] = fl;
    pkt[25] = 0;
    pkt[26] = MULTI_FEC_FLAGS;
    pkt[27] = multi;
    put_u32_le(pkt, 28, info);
}

/// Notes "Video FEC code": bytes 0–11, 20–23, 27, 28–31 of a parity packet are header; 12–19 and
/// 24–26 must keep the parity bytes.
fn write_parity_header(pkt: &mut [u8], seq: u32, f: &VideoFrame<'_>, multi: u8, info: u32) {
    write_rtp(pkt, seq, f.rtp_timestamp);
    put_u32_le(pkt, 20, f.index);
    pkt[27] = multi;
    put_u32_le(pkt, 28, info);
}

/// AES-128-GCM video encryption (notes "Video encryption"): each plaintext `P + 16`-byte packet
/// becomes `iv[12] ‖ frameNumber LE32 ‖ tag[16] ‖ ciphertext`.
pub struct VideoCipher {
    cipher: Aes128Gcm,
    counter: u64,
}

impl std::fmt::Debug for VideoCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VideoCipher")
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl VideoCipher {
    /// A cipher keyed with the session's `rikey`.
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: Aes128Gcm::new(key.into()),
            counter: 0,
        }
    }

    /// Encrypts the `datagrams` plaintext packets at the front of `buf` (stride `stride`) in
    /// place into packets of stride `stride + 32`, from the last packet to the first so that
    /// no packet overwrites one not yet moved. `buf` must hold `datagrams · (stride + 32)`.
    ///
    /// IVs are a 64-bit counter (bytes 0–7, LE), zeros, and `'V'` in byte 11: unique for the
    /// key's lifetime as long as fewer than 2^64 packets are sent.
    pub fn seal_frame(
        &mut self,
        buf: &mut [u8],
        datagrams: usize,
        stride: usize,
        frame_index: u32,
    ) -> Result<usize, WireError> {
        let out_stride = stride + ENC_HEADER_LEN;
        if buf.len() < datagrams * out_stride {
            return Err(WireError::BufferTooSmall {
                needed: datagrams * out_stride,
                got: buf.len(),
            });
        }
        for i in (0..datagrams).rev() {
            let dst = i * out_stride;
            buf.copy_within(i * stride..(i + 1) * stride, dst + ENC_HEADER_LEN);
            let counter = self.counter + i as u64;
            let mut iv = [0u8; 12];
            iv[..8].copy_from_slice(&counter.to_le_bytes());
            iv[11] = b'V';
            let (head, body) = buf[dst..dst + out_stride].split_at_mut(ENC_HEADER_LEN);
            let tag = self
                .cipher
                .encrypt_inout_detached(&Nonce::from(iv), &[], body.into())
                .map_err(|_| WireError::InvalidParameter("packet too large for AES-GCM"))?;
            head[..12].copy_from_slice(&iv);
            put_u32_le(head, 12, frame_index);
            head[16..32].copy_from_slice(&tag);
        }
        self.counter += datagrams as u64;
        Ok(datagrams * out_stride)
    }

    /// Decrypts one encrypted datagram into its plaintext packet (client side, tests).
    pub fn open<'a>(&self, datagram: &'a mut [u8]) -> Result<&'a mut [u8], WireError> {
        if datagram.len() < ENC_HEADER_LEN {
            return Err(WireError::Malformed(
                "encrypted video packet shorter than its header",
            ));
        }
        let (head, body) = datagram.split_at_mut(ENC_HEADER_LEN);
        let mut iv = [0u8; 12];
        iv.copy_from_slice(&head[..12]);
        let mut tag = [0u8; 16];
        tag.copy_from_slice(&head[16..32]);
        self.cipher
            .decrypt_inout_detached(&Nonce::from(iv), &[], body.into(), &Tag::from(tag))
            .map_err(|_| WireError::Auth)?;
        Ok(body)
    }
}

/// Parsed header of a received video packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PacketHeader {
    /// RTP sequence number.
    pub seq: u16,
    /// RTP timestamp.
    pub rtp_timestamp: u32,
    /// 24-bit stream packet index.
    pub stream_packet_index: u32,
    /// Frame index.
    pub frame_index: u32,
    /// NV flags.
    pub flags: u8,
    /// Block index within the frame.
    pub block: u8,
    /// Index of the last block of the frame.
    pub last_block: u8,
    /// Shard index within the block.
    pub shard: usize,
    /// Data shards of the block.
    pub data_shards: usize,
    /// FEC percentage of the block.
    pub fec_percent: u8,
}

impl PacketHeader {
    /// Parses and sanity-checks the headers of a plaintext video packet.
    pub fn parse(pkt: &[u8]) -> Result<Self, WireError> {
        if pkt.len() < PAYLOAD_OFFSET {
            return Err(WireError::Malformed(
                "video packet shorter than its headers",
            ));
        }
        if pkt[0] & 0x10 == 0 {
            return Err(WireError::Malformed("RTP extension bit not set"));
        }
        let info = u32_le(pkt, 28);
        let h = Self {
            seq: u16_be(pkt, 2),
            rtp_timestamp: u32_be(pkt, 4),
            stream_packet_index: u32_le(pkt, 16) >> 8,
            frame_index: u32_le(pkt, 20),
            flags: pkt[24],
            block: (pkt[27] >> 4) & 3,
            last_block: (pkt[27] >> 6) & 3,
            shard: ((info >> 12) & 0x3ff) as usize,
            data_shards: (info >> 22) as usize,
            fec_percent: ((info >> 4) & 0xff) as u8,
        };
        if h.data_shards == 0 {
            return Err(WireError::Malformed("zero data shards"));
        }
        if h.block > h.last_block {
            return Err(WireError::Malformed("block index past the last block"));
        }
        if h.shard >= h.data_shards + h.parity_shards() {
            return Err(WireError::Malformed("shard index outside its block"));
        }
        Ok(h)
    }

    /// Parity shards of the block, computed the way the client does.
    pub fn parity_shards(&self) -> usize {
        (self.data_shards * self.fec_percent as usize).div_ceil(100)
    }
}

/// A frame recovered by [`VideoDepacketizer`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DepacketizedFrame {
    /// Frame index.
    pub index: u32,
    /// RTP timestamp.
    pub rtp_timestamp: u32,
    /// Frame type from the short header.
    pub frame_type: Option<FrameType>,
    /// Host latency field (0.1 ms units).
    pub host_latency: u16,
    /// The bitstream, trimmed of the header and padding.
    pub bitstream: Vec<u8>,
    /// Data shards rebuilt by FEC.
    pub recovered_shards: usize,
}

/// Counters of the depacketizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DepacketizerStats {
    /// Datagrams accepted.
    pub packets: u64,
    /// Datagrams rejected as malformed or inconsistent.
    pub bad_packets: u64,
    /// Datagrams for frames already finished or abandoned.
    pub stale_packets: u64,
    /// Frames delivered.
    pub frames: u64,
    /// Frames delivered thanks to FEC.
    pub frames_recovered: u64,
    /// Frames abandoned (not enough shards, or corrupt after recovery).
    pub frames_lost: u64,
    /// Data shards rebuilt.
    pub shards_recovered: u64,
}

#[derive(Debug, Clone, Copy)]
struct FrameState {
    index: u32,
    rtp_timestamp: u32,
    last_block: u8,
    recovered: usize,
}

#[derive(Debug, Default)]
struct BlockState {
    active: bool,
    data: usize,
    parity: usize,
    base_seq: u16,
    present: Vec<bool>,
    received: usize,
    done: bool,
}

/// Reassembles frames from plaintext video packets, recovering lost shards with FEC. The
/// receiving half used by tests, benches and loss sweeps; it checks what moonlight-common-c
/// checks (shard ranges, flags and `streamPacketIndex` after recovery) and never panics on
/// hostile input.
///
/// Packets of one frame may arrive in any order; a packet of a newer frame abandons an
/// unfinished older one (as the client does).
#[derive(Debug)]
pub struct VideoDepacketizer {
    stride: usize,
    chunk: usize,
    frame: Option<FrameState>,
    /// Highest frame index finished or abandoned.
    last_done: Option<u32>,
    blocks: [BlockState; MAX_BLOCKS],
    /// Per block: shards × stride.
    buffers: [Vec<u8>; MAX_BLOCKS],
    code: Gf8Code,
    ready: std::collections::VecDeque<DepacketizedFrame>,
    stats: DepacketizerStats,
}

impl VideoDepacketizer {
    /// A depacketizer for packets of `packet_size` (`P`).
    pub fn new(packet_size: usize) -> Result<Self, WireError> {
        VideoParams {
            packet_size,
            fec_percent: 0,
            min_parity: 0,
        }
        .validate()?;
        Ok(Self {
            stride: packet_size + RTP_HEADER_LEN,
            chunk: packet_size - NV_HEADER_LEN,
            frame: None,
            last_done: None,
            blocks: Default::default(),
            buffers: Default::default(),
            code: Gf8Code::nanors(1, 0)?,
            ready: Default::default(),
            stats: DepacketizerStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> DepacketizerStats {
        self.stats
    }

    /// The next complete frame, if any.
    pub fn poll_frame(&mut self) -> Option<DepacketizedFrame> {
        self.ready.pop_front()
    }

    /// Feeds one plaintext datagram.
    pub fn handle_datagram(&mut self, pkt: &[u8]) -> Result<(), WireError> {
        let r = self.handle_inner(pkt);
        match &r {
            Ok(true) => self.stats.packets += 1,
            Ok(false) => self.stats.stale_packets += 1,
            Err(_) => self.stats.bad_packets += 1,
        }
        r.map(|_| ())
    }

    fn handle_inner(&mut self, pkt: &[u8]) -> Result<bool, WireError> {
        let h = PacketHeader::parse(pkt)?;
        if pkt.len() > self.stride {
            return Err(WireError::Malformed(
                "video packet longer than packetSize + 16",
            ));
        }
        let total = h.data_shards + h.parity_shards();
        if h.data_shards > MAX_BLOCK_DATA_SHARDS || (h.parity_shards() > 0 && total > MAX_SHARDS) {
            return Err(WireError::Malformed(
                "FEC block larger than the protocol allows",
            ));
        }
        if let Some(done) = self.last_done
            && (h.frame_index.wrapping_sub(done) as i32) <= 0
        {
            return Ok(false);
        }
        match self.frame {
            Some(f) if f.index == h.frame_index => {}
            Some(f) if (h.frame_index.wrapping_sub(f.index) as i32) < 0 => return Ok(false),
            Some(_) => {
                // A newer frame: the current one can no longer complete.
                self.abandon_frame();
                self.start_frame(&h);
            }
            None => self.start_frame(&h),
        }
        if let Some(f) = self.frame
            && f.last_block != h.last_block
        {
            return Err(WireError::Malformed(
                "last block index changed within a frame",
            ));
        }
        let b = h.block as usize;
        let stride = self.stride;
        let blk = &mut self.blocks[b];
        if !blk.active {
            blk.active = true;
            blk.data = h.data_shards;
            blk.parity = h.parity_shards();
            blk.base_seq = h.seq.wrapping_sub(h.shard as u16);
            blk.present.clear();
            blk.present.resize(total, false);
            blk.received = 0;
            blk.done = false;
            self.buffers[b].clear();
            self.buffers[b].resize(total * stride, 0);
        } else if blk.data != h.data_shards
            || blk.parity != h.parity_shards()
            || blk.base_seq != h.seq.wrapping_sub(h.shard as u16)
        {
            return Err(WireError::Malformed(
                "packet disagrees with its block's shape",
            ));
        }
        if blk.done || blk.present[h.shard] {
            return Ok(false);
        }
        let dst = &mut self.buffers[b][h.shard * stride..(h.shard + 1) * stride];
        dst[..pkt.len()].copy_from_slice(pkt);
        dst[pkt.len()..].fill(0);
        blk.present[h.shard] = true;
        blk.received += 1;
        if blk.received >= blk.data {
            self.finish_block(b)?;
        }
        Ok(true)
    }

    fn start_frame(&mut self, h: &PacketHeader) {
        self.frame = Some(FrameState {
            index: h.frame_index,
            rtp_timestamp: h.rtp_timestamp,
            last_block: h.last_block,
            recovered: 0,
        });
        for blk in &mut self.blocks {
            blk.active = false;
            blk.done = false;
        }
    }

    fn abandon_frame(&mut self) {
        if let Some(f) = self.frame.take() {
            self.stats.frames_lost += 1;
            self.last_done = Some(f.index);
        }
    }

    fn finish_block(&mut self, b: usize) -> Result<(), WireError> {
        let stride = self.stride;
        let blk = &mut self.blocks[b];
        let missing = blk.present[..blk.data].iter().filter(|p| !**p).count();
        if missing > 0 {
            self.code.reshape_nanors(blk.data, blk.parity)?;
            let total = blk.data + blk.parity;
            if let Err(e) = self.code.reconstruct_block(
                &mut self.buffers[b][..total * stride],
                stride,
                &mut blk.present,
            ) {
                self.abandon_frame();
                return Err(e.into());
            }
            self.stats.shards_recovered += missing as u64;
            if let Some(f) = &mut self.frame {
                f.recovered += missing;
            }
        }
        blk.done = true;
        // Check what the client checks on every data packet, recovered ones included.
        let buf = &self.buffers[b];
        let first_index = u32_le(buf, 16) >> 8;
        for x in 0..blk.data {
            let pkt = &buf[x * stride..(x + 1) * stride];
            let want = flags::CONTAINS_PIC_DATA
                | if x == 0 { flags::SOF } else { 0 }
                | if x == blk.data - 1 { flags::EOF } else { 0 };
            let idx = u32_le(pkt, 16) >> 8;
            if pkt[24] != want || idx != (first_index + x as u32) & 0xff_ffff {
                self.abandon_frame();
                return Err(WireError::Malformed(
                    "recovered packet has wrong flags or index",
                ));
            }
        }
        let Some(f) = self.frame else { return Ok(()) };
        if self.blocks[..=f.last_block as usize]
            .iter()
            .all(|bl| bl.active && bl.done)
        {
            self.deliver()?;
        }
        Ok(())
    }

    fn deliver(&mut self) -> Result<(), WireError> {
        let Some(f) = self.frame.take() else {
            return Ok(());
        };
        self.last_done = Some(f.index);
        let (stride, chunk) = (self.stride, self.chunk);
        let mut stream = Vec::new();
        for b in 0..=f.last_block as usize {
            let blk = &self.blocks[b];
            for x in 0..blk.data {
                stream.extend_from_slice(
                    &self.buffers[b][x * stride + PAYLOAD_OFFSET..(x + 1) * stride],
                );
            }
        }
        if stream.len() < FRAME_HEADER_LEN || stream[0] != 0x01 {
            self.stats.frames_lost += 1;
            return Err(WireError::Malformed(
                "frame does not start with the short header",
            ));
        }
        let last_len = u16_le(&stream, 4) as usize;
        if last_len == 0 || last_len > chunk {
            self.stats.frames_lost += 1;
            return Err(WireError::Malformed("lastPayloadLen outside 1..=P-16"));
        }
        let total = stream.len() - chunk + last_len;
        if total < FRAME_HEADER_LEN {
            self.stats.frames_lost += 1;
            return Err(WireError::Malformed(
                "lastPayloadLen cuts into the frame header",
            ));
        }
        let bitstream = stream[FRAME_HEADER_LEN..total].to_vec();
        let frame = DepacketizedFrame {
            index: f.index,
            rtp_timestamp: f.rtp_timestamp,
            frame_type: FrameType::from_byte(stream[3]),
            host_latency: u16_le(&stream, 1),
            bitstream,
            recovered_shards: f.recovered,
        };
        self.stats.frames += 1;
        self.stats.frames_recovered += u64::from(f.recovered > 0);
        self.ready.push_back(frame);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::field::mul;
    use rand::{RngExt, SeedableRng};

    const SMALL: VideoParams = VideoParams {
        packet_size: 64,
        fec_percent: 20,
        min_parity: 2,
    };

    fn packetize(p: &mut VideoPacketizer, f: &VideoFrame<'_>) -> (Vec<u8>, PacketizedFrame) {
        let mut out = vec![0u8; p.params().max_datagrams(f.bitstream.len()) * p.params().stride()];
        let r = p.packetize(f, &mut out).unwrap();
        out.truncate(r.len());
        (out, r)
    }

    /// A one-packet IDR at P = 64: literal bytes of the data packet and of both parity
    /// packets' header/parity split (notes "Video packets", "Frame to packets", "Video FEC code").
    #[test]
    fn single_packet_frame_fixture() {
        let mut p = VideoPacketizer::with_kernel(SMALL, Kernel::Scalar).unwrap();
        let bits = [0xaa; 40];
        let f = VideoFrame {
            index: 1,
            rtp_timestamp: 0x0102_0304,
            frame_type: FrameType::Idr,
            host_latency: 0x12,
            bitstream: &bits,
        };
        let (out, r) = packetize(&mut p, &f);
        // 1 data shard: parity raised from 1 to 2, percentage rewritten to 200.
        assert_eq!((r.datagrams, r.stride, r.blocks), (3, 80, 1));
        assert_eq!(
            r.layout[0],
            BlockLayout {
                first: 0,
                data: 1,
                parity: 2,
                fec_percent: 200
            }
        );
        #[rustfmt::skip]
        let data_header = [
            0x90, 0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0, 0, 0, 0, 0, 0, 0, 0,
            0x00, 0x00, 0x00, 0x00,  0x01, 0x00, 0x00, 0x00,  0x07, 0x00, 0x10, 0x00,
            0x80, 0x0c, 0x40, 0x00,
            // short frame header: 0x01, latency 0x0012, IDR, lastPayloadLen 48, 0, 0
            0x01, 0x12, 0x00, 0x02, 0x30, 0x00, 0x00, 0x00,
        ];
        assert_eq!(&out[..40], &data_header);
        assert!(out[40..80].iter().all(|&b| b == 0xaa));
        for (j, coef) in [(0usize, 0x8e), (1, 0xf4)] {
            let pkt = &out[(1 + j) * 80..(2 + j) * 80];
            // Overwritten header bytes.
            assert_eq!(
                &pkt[..12],
                &[0x90, 0, 0, 1 + j as u8, 1, 2, 3, 4, 0, 0, 0, 0]
            );
            assert_eq!(&pkt[20..24], &[1, 0, 0, 0]);
            assert_eq!(pkt[27], 0);
            assert_eq!(&pkt[28..32], &[0x80, 0x1c + 0x10 * j as u8, 0x40, 0x00]);
            // Parity bytes left in place: coef · data byte.
            for b in (12..20).chain(24..27).chain(32..80) {
                assert_eq!(pkt[b], mul(coef, out[b]), "parity {j} byte {b}");
            }
        }
        // The next frame continues the sequence numbers after the parity packets.
        let (out, _) = packetize(&mut p, &VideoFrame { index: 2, ..f });
        assert_eq!(&out[2..4], &[0, 3]);
        assert_eq!(&out[16..20], &[0, 3, 0, 0]);
    }

    #[test]
    fn parity_rule_holds_for_every_shape() {
        for pct in 0..=255u8 {
            let max_ds = if pct == 0 {
                255
            } else {
                25500 / (100 + pct as usize)
            };
            for ds in 1..=max_ds {
                for min in 0..=8u8 {
                    let (ps, q) = parity_for_block(ds, pct, usize::from(min));
                    if pct == 0 {
                        assert_eq!((ps, q), (0, 0));
                        continue;
                    }
                    assert_eq!(
                        (ds * q as usize).div_ceil(100),
                        ps,
                        "ds={ds} pct={pct} min={min}"
                    );
                    assert!(ds + ps <= 255, "ds={ds} pct={pct} min={min}");
                    // Largest count an 8-bit percentage can express within 255 shards.
                    let reachable = (pct as usize..=255)
                        .map(|q| (ds * q).div_ceil(100))
                        .filter(|&c| ds + c <= 255)
                        .max()
                        .unwrap_or(0);
                    assert!(
                        ps >= (min as usize).min(reachable),
                        "ds={ds} pct={pct} min={min}"
                    );
                }
            }
        }
    }

    fn roundtrip(
        params: VideoParams,
        len: usize,
        loss: f64,
        seed: u64,
    ) -> (usize, DepacketizerStats) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let bits: Vec<u8> = (0..len).map(|_| rng.random()).collect();
        let mut p = VideoPacketizer::new(params).unwrap();
        let mut d = VideoDepacketizer::new(params.packet_size).unwrap();
        let mut delivered = 0;
        for index in 1..=3u32 {
            let f = VideoFrame {
                index,
                rtp_timestamp: index * 1500,
                frame_type: if index == 1 {
                    FrameType::Idr
                } else {
                    FrameType::P
                },
                host_latency: 7,
                bitstream: &bits,
            };
            let (out, r) = packetize(&mut p, &f);
            // Lose up to `parity` shards per block, at random positions.
            for l in &r.layout[..r.blocks] {
                let n = l.data + l.parity;
                let budget = ((n as f64 * loss) as usize).min(l.parity);
                let mut lost: Vec<usize> = (0..n).collect();
                for i in (1..n).rev() {
                    lost.swap(i, rng.random_range(0..=i));
                }
                lost.truncate(budget);
                let mut order: Vec<usize> = (0..n).filter(|i| !lost.contains(i)).collect();
                order.reverse(); // out of order within the block
                for x in order {
                    let at = (l.first + x) * r.stride;
                    d.handle_datagram(&out[at..at + r.stride]).unwrap();
                }
            }
            let got = d.poll_frame().expect("frame delivered");
            assert_eq!(got.index, index);
            assert_eq!(got.bitstream, bits, "len {len}");
            assert_eq!(got.frame_type, Some(f.frame_type));
            assert_eq!(got.host_latency, 7);
            delivered += 1;
        }
        (delivered, d.stats())
    }

    #[test]
    fn tiny_frames_are_copied_when_parity_cannot_cover_the_loss() {
        // A 1-shard block can say at most 3 parity shards (255 %): 4 datagrams, all lost at
        // 20 % loss in 1 frame of 625. Two copies of 1 + 3 make a shard's loss 4 %.
        assert_eq!(255usize.div_ceil(100), 3);
        assert_eq!(
            copies_for_block(1, 0.05, 2),
            (2, 1),
            "expressible: one copy"
        );
        let (parity, copies) = copies_for_block(1, 0.20, 5);
        assert_eq!(copies, 2);
        assert!(parity <= 3);
        assert!(
            crate::fec::adaptive::binomial_tail_above(1 + parity, 0.04, parity) <= DEFAULT_TARGET
        );
        // Larger blocks keep one copy.
        for ds in 4..50 {
            let needed = parity_for_loss(ds, 0.20, DEFAULT_TARGET, MAX_SHARDS - ds);
            assert_eq!(copies_for_block(ds, 0.20, needed), (needed, 1), "ds {ds}");
        }
        // Even at the worst the copies stay within one block's 255 datagrams.
        for ds in 1..4 {
            let (parity, copies) = copies_for_block(ds, 0.5, 255 - ds);
            assert!(copies * (ds + parity) <= MAX_SHARDS);
        }

        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let mut p = VideoPacketizer::with_kernel(params, Kernel::Scalar).unwrap();
        p.set_loss_estimate(0.20);
        let bits = [7u8; 100];
        let f = VideoFrame {
            index: 100,
            rtp_timestamp: 9,
            frame_type: FrameType::P,
            host_latency: 0,
            bitstream: &bits,
        };
        let (out, r) = packetize(&mut p, &f);
        assert_eq!(r.copies, 2);
        let once = r.layout[0].data + r.layout[0].parity;
        assert_eq!(r.datagrams, 2 * once);
        assert_eq!(&out[..once * r.stride], &out[once * r.stride..]);
        // The whole first copy lost: the second one delivers the frame.
        let mut d = VideoDepacketizer::new(1392).unwrap();
        for dg in out[once * r.stride..].chunks(r.stride) {
            d.handle_datagram(dg).unwrap();
        }
        assert_eq!(d.poll_frame().unwrap().bitstream, bits);
        // Both copies arrive: one frame, the duplicates ignored.
        let mut d = VideoDepacketizer::new(1392).unwrap();
        for dg in out.chunks(r.stride) {
            d.handle_datagram(dg).unwrap();
        }
        assert_eq!(d.poll_frame().unwrap().bitstream, bits);
        assert!(d.poll_frame().is_none());
        // The next frame's sequence numbers follow the first copy's.
        let (next, _) = packetize(&mut p, &VideoFrame { index: 101, ..f });
        let seq = |dg: &[u8]| u16::from_be_bytes([dg[2], dg[3]]);
        assert_eq!(seq(&next), seq(&out[(once - 1) * r.stride..]) + 1);
    }

    #[test]
    fn keyframes_and_the_first_frames_assume_the_profile_loss() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let bits = vec![3u8; 40 * 1376];
        let frame = |index, frame_type| VideoFrame {
            index,
            rtp_timestamp: 0,
            frame_type,
            host_latency: 0,
            bitstream: &bits,
        };
        let parity =
            |p: &mut VideoPacketizer, f: &VideoFrame<'_>| packetize(p, f).1.layout[0].parity;
        let mut fixed = VideoPacketizer::with_kernel(params, Kernel::Scalar).unwrap();
        let mut adaptive = VideoPacketizer::with_kernel(params, Kernel::Scalar).unwrap();
        adaptive.set_loss_estimate(0.0);
        let floor = parity_for_loss(41, 0.20, DEFAULT_TARGET, MAX_SHARDS - 41);
        // Without loss feedback the percentage alone rules: 41 data shards → 9 parity.
        assert_eq!(parity(&mut fixed, &frame(1, FrameType::Idr)), 9);
        // With it, a keyframe and any frame before the reports start get the 20 % floor ...
        assert_eq!(parity(&mut adaptive, &frame(1, FrameType::Idr)), floor);
        assert_eq!(
            parity(&mut adaptive, &frame(STARTUP_FRAMES, FrameType::P)),
            floor
        );
        assert_eq!(parity(&mut adaptive, &frame(5000, FrameType::Idr)), floor);
        assert!(floor > 9);
        // ... and a later P-frame on a clean link the percentage only.
        assert_eq!(
            parity(&mut adaptive, &frame(STARTUP_FRAMES + 1, FrameType::P)),
            9
        );
    }

    #[test]
    fn roundtrip_sizes_and_loss() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        // Sizes around chunk boundaries, 1 and 2 blocks, 4 blocks, and FEC-off (5+ blocks).
        for (i, len) in [
            1usize,
            1368,
            1369,
            10_000,
            250 * 1376,
            800 * 1376,
            1_000_000,
            3_000_000,
        ]
        .into_iter()
        .enumerate()
        {
            let (n, stats) = roundtrip(params, len, 0.15, i as u64);
            assert_eq!(n, 3);
            assert_eq!(stats.frames_lost, 0);
            if len < 800 * 1376 {
                assert!(
                    stats.shards_recovered > 0,
                    "len {len} should have exercised FEC"
                );
            }
        }
    }

    #[test]
    fn parity_on_several_threads_is_byte_identical() {
        let params = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(8);
        // 1, 2, 3 and 4 blocks, then a second frame on the same packetizers (sequence numbers
        // carry over).
        for len in [5_000usize, 250 * 1376, 500 * 1376, 1_000_000, 900_000] {
            let bits: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let frame = VideoFrame {
                index: 1,
                rtp_timestamp: 90,
                frame_type: FrameType::Idr,
                host_latency: 0,
                bitstream: &bits,
            };
            let mut one = VideoPacketizer::new(params).unwrap();
            let mut four = VideoPacketizer::new(params).unwrap();
            four.set_fec_threads(4).unwrap();
            assert_eq!((one.fec_threads(), four.fec_threads()), (1, 4));
            for _ in 0..2 {
                let (a, ra) = packetize(&mut one, &frame);
                let (b, rb) = packetize(&mut four, &frame);
                assert_eq!(ra, rb);
                assert!(a == b, "len {len}: {} blocks differ", ra.blocks);
            }
        }
        let mut p = VideoPacketizer::new(params).unwrap();
        p.set_fec_threads(9).unwrap();
        assert_eq!(p.fec_threads(), MAX_BLOCKS, "one thread per block at most");
        p.set_fec_threads(0).unwrap();
        assert_eq!(p.fec_threads(), 1);
    }

    #[test]
    fn block_planning_follows_sunshine() {
        let p = VideoParams {
            packet_size: 1392,
            fec_percent: 20,
            min_parity: 2,
        };
        let mut pk = VideoPacketizer::new(p).unwrap();
        let bits = vec![1u8; 250 * 1376];
        let (_, r) = packetize(
            &mut pk,
            &VideoFrame {
                index: 1,
                rtp_timestamp: 0,
                frame_type: FrameType::P,
                host_latency: 0,
                bitstream: &bits,
            },
        );
        // 251 shards at 20 % (max 212 per block) → 2 blocks of 126 + 125, 26 + 25 parity.
        assert_eq!(r.blocks, 2);
        assert_eq!((r.layout[0].data, r.layout[0].parity), (126, 26));
        assert_eq!((r.layout[1].data, r.layout[1].parity), (125, 25));
        assert!(!r.fec_skipped);
        let bits = vec![1u8; 900 * 1376];
        let (out, r) = packetize(
            &mut pk,
            &VideoFrame {
                index: 2,
                rtp_timestamp: 0,
                frame_type: FrameType::P,
                host_latency: 0,
                bitstream: &bits,
            },
        );
        assert!(r.fec_skipped);
        assert_eq!(
            (r.blocks, r.layout[0].parity, r.layout[3].data),
            (4, 0, 223)
        );
        // multiFecBlocks of the last block: index 3, last 3.
        let last = r.layout[3].first * r.stride;
        assert_eq!(out[last + 27], 0xf0);
        let huge = vec![0u8; 4 * 1023 * 1376];
        let mut buf = vec![0u8; 10];
        assert!(matches!(
            pk.packetize(
                &VideoFrame {
                    index: 3,
                    rtp_timestamp: 0,
                    frame_type: FrameType::P,
                    host_latency: 0,
                    bitstream: &huge,
                },
                &mut buf
            ),
            Err(WireError::FrameTooLarge { .. })
        ));
        assert!(matches!(
            pk.packetize(
                &VideoFrame {
                    index: 3,
                    rtp_timestamp: 0,
                    frame_type: FrameType::P,
                    host_latency: 0,
                    bitstream: &[1],
                },
                &mut buf
            ),
            Err(WireError::BufferTooSmall { .. })
        ));
        assert!(
            VideoPacketizer::new(VideoParams {
                packet_size: 16,
                ..p
            })
            .is_err()
        );
    }

    #[test]
    fn too_much_loss_drops_the_frame_and_continues() {
        let p = SMALL;
        let mut pk = VideoPacketizer::new(p).unwrap();
        let mut d = VideoDepacketizer::new(p.packet_size).unwrap();
        let bits = vec![5u8; 1000];
        let (out, r) = packetize(
            &mut pk,
            &VideoFrame {
                index: 1,
                rtp_timestamp: 0,
                frame_type: FrameType::Idr,
                host_latency: 0,
                bitstream: &bits,
            },
        );
        // Drop 5 of 21 data shards with 5 parity: 4 data + ... keep only enough to fail.
        for x in 5..r.datagrams - 1 {
            d.handle_datagram(&out[x * r.stride..(x + 1) * r.stride])
                .unwrap();
        }
        let (out2, r2) = packetize(
            &mut pk,
            &VideoFrame {
                index: 2,
                rtp_timestamp: 0,
                frame_type: FrameType::P,
                host_latency: 0,
                bitstream: &bits,
            },
        );
        for x in 0..r2.datagrams {
            d.handle_datagram(&out2[x * r2.stride..(x + 1) * r2.stride])
                .unwrap();
        }
        let f = d.poll_frame().unwrap();
        assert_eq!(f.index, 2);
        assert!(d.poll_frame().is_none());
        assert_eq!(d.stats().frames_lost, 1);
        // Late packets of frame 1 are stale, not errors.
        let stale = d.stats().stale_packets;
        d.handle_datagram(&out[..r.stride]).unwrap();
        assert_eq!(d.stats().stale_packets, stale + 1);
    }

    #[test]
    fn hostile_packets_are_errors() {
        let mut d = VideoDepacketizer::new(64).unwrap();
        let mut pk = VideoPacketizer::new(SMALL).unwrap();
        let (good, r) = packetize(
            &mut pk,
            &VideoFrame {
                index: 1,
                rtp_timestamp: 0,
                frame_type: FrameType::Idr,
                host_latency: 0,
                bitstream: &[9; 200],
            },
        );
        let pkt = &good[..r.stride];
        for len in 0..PAYLOAD_OFFSET {
            assert!(d.handle_datagram(&pkt[..len]).is_err());
        }
        let mut long = pkt.to_vec();
        long.push(0);
        assert!(d.handle_datagram(&long).is_err());
        let mutate = |at: usize, v: u8| {
            let mut m = pkt.to_vec();
            m[at] = v;
            m
        };
        assert!(
            d.handle_datagram(&mutate(0, 0x80)).is_err(),
            "no extension bit"
        );
        assert!(
            d.handle_datagram(&mutate(31, 0)).is_err(),
            "zero data shards"
        );
        assert!(
            d.handle_datagram(&mutate(27, 0x30)).is_err(),
            "block past last"
        );
        assert!(
            d.handle_datagram(&mutate(30, 0x7f)).is_err(),
            "shard index out of block"
        );
        assert!(
            d.handle_datagram(&mutate(31, 0xff)).is_err(),
            "block over 255 shards"
        );
        // Found by fuzzing: a lastPayloadLen that cuts into the 8-byte frame header.
        let mut d2 = VideoDepacketizer::new(64).unwrap();
        let (one, _) = packetize(
            &mut pk,
            &VideoFrame {
                index: 2,
                rtp_timestamp: 0,
                frame_type: FrameType::P,
                host_latency: 0,
                bitstream: &[1; 30],
            },
        );
        let mut m = one[..80].to_vec();
        m[PAYLOAD_OFFSET + 4] = 1;
        assert!(matches!(
            d2.handle_datagram(&m),
            Err(WireError::Malformed(_))
        ));
        assert_eq!(d2.stats().frames_lost, 1);
        // Random garbage never panics.
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        for _ in 0..20_000 {
            let n = rng.random_range(0..100);
            let mut g: Vec<u8> = (0..n).map(|_| rng.random()).collect();
            if g.len() > 31 && rng.random_bool(0.5) {
                g[..32].copy_from_slice(&pkt[..32]);
                g[rng.random_range(0..32)] = rng.random();
            }
            let _ = d.handle_datagram(&g);
        }
        assert!(d.stats().bad_packets > 0);
    }

    #[test]
    fn encryption_roundtrip() {
        let mut pk = VideoPacketizer::new(SMALL).unwrap();
        let bits = vec![3u8; 500];
        let f = VideoFrame {
            index: 1,
            rtp_timestamp: 9,
            frame_type: FrameType::Idr,
            host_latency: 0,
            bitstream: &bits,
        };
        let (plain, r) = packetize(&mut pk, &f);
        let mut buf = plain.clone();
        buf.resize(r.datagrams * (r.stride + ENC_HEADER_LEN), 0);
        let mut c = VideoCipher::new(&[7; 16]);
        let n = c.seal_frame(&mut buf, r.datagrams, r.stride, 1).unwrap();
        assert_eq!(n, buf.len());
        let es = r.stride + ENC_HEADER_LEN;
        let mut ivs = std::collections::HashSet::new();
        for i in 0..r.datagrams {
            let dg = &mut buf[i * es..(i + 1) * es];
            assert_eq!(&dg[12..16], &[1, 0, 0, 0], "frame number");
            assert_eq!(dg[11], b'V');
            assert!(ivs.insert(dg[..12].to_vec()), "IVs never repeat");
            let pt = c.open(dg).unwrap();
            assert_eq!(pt, &plain[i * r.stride..(i + 1) * r.stride]);
        }
        let mut bad = buf[..es].to_vec();
        bad[40] ^= 1;
        assert_eq!(c.open(&mut bad), Err(WireError::Auth));
        // The counter carries over to the next frame.
        let mut buf2 = plain.clone();
        buf2.resize(buf.len(), 0);
        c.seal_frame(&mut buf2, r.datagrams, r.stride, 2).unwrap();
        assert!(!ivs.contains(&buf2[..12]));
    }
}
