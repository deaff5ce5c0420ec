//! GameStream audio: Opus packets → RTP datagrams with AES-128-CBC and 4+2 FEC, and back.
//!
//! ```text
//! data packet:   0x80 | PT 97  | seq BE16 | timestamp BE32 (ms) | SSRC 0 | payload
//! FEC packet:    0x80 | PT 127 | seq BE16 | 0                   | 0      |
//!                shard(0|1) | 97 | baseSeq BE16 | baseTimestamp BE32 | SSRC 0 BE32 | parity
//! ```
//!
//! Layouts and rules from docs/gamestream-protocol-notes.md "Audio transport", "Audio encryption"
//! and "Audio FEC":
//!
//! * The timestamp counts milliseconds: +`packet_duration` per packet.
//! * Blocks are 4 data packets starting at a sequence number divisible by 4; after the 4th the
//!   two FEC packets follow, with sequence numbers `last + 1 + shard` (they overlap the next
//!   block's and the client ignores them).
//! * Parity covers the four payloads as sent (ciphertext when encrypted), which must be equal
//!   in length: Opus in CBR mode guarantees it. A block with unequal lengths gets no FEC (the
//!   client would switch audio FEC off for the whole session) and is counted.
//! * Encryption: key `rikey`, IV = `BE32(rikeyid + seq)` then 12 zero bytes, PKCS#7.
//! * Whole datagrams stay ≤ 1400 bytes.

use aes::Aes128;
use aes::cipher::{BlockModeDecrypt, BlockModeEncrypt, KeyIvInit, block_padding::Pkcs7};

use super::WireError;
use super::bytes::*;
use crate::fec::FecEngine;
use crate::fec::audio::{AudioFec, DATA_SHARDS, PARITY_SHARDS};

/// RTP payload type of audio data.
pub const PAYLOAD_TYPE: u8 = 97;
/// RTP payload type of audio FEC packets.
pub const FEC_PAYLOAD_TYPE: u8 = 127;
/// Largest datagram the client accepts.
pub const MAX_DATAGRAM: usize = 1400;
/// RTP header.
pub const RTP_LEN: usize = 12;
/// `AUDIO_FEC_HEADER`.
pub const FEC_HEADER_LEN: usize = 12;
/// Largest payload of a data packet.
pub const MAX_PAYLOAD: usize = MAX_DATAGRAM - RTP_LEN - FEC_HEADER_LEN;

type CbcEnc = cbc::Encryptor<Aes128>;
type CbcDec = cbc::Decryptor<Aes128>;

/// Audio encryption key material from `/launch` (`rikey`, `rikeyid`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct AudioKey {
    /// AES-128 key.
    pub key: [u8; 16],
    /// Key id added to the sequence number to form the IV.
    pub key_id: u32,
}

impl std::fmt::Debug for AudioKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AudioKey")
            .field("key_id", &self.key_id)
            .finish_non_exhaustive()
    }
}

impl AudioKey {
    fn iv(&self, seq: u16) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv[..4].copy_from_slice(&self.key_id.wrapping_add(u32::from(seq)).to_be_bytes());
        iv
    }
}

/// Up to three datagrams produced for one Opus packet (the data packet and, at the end of a
/// block, two FEC packets). Fixed storage; no allocation.
#[derive(Debug, Clone)]
pub struct AudioDatagrams {
    bufs: [[u8; MAX_DATAGRAM]; 3],
    lens: [usize; 3],
    count: usize,
}

impl Default for AudioDatagrams {
    fn default() -> Self {
        Self {
            bufs: [[0; MAX_DATAGRAM]; 3],
            lens: [0; 3],
            count: 0,
        }
    }
}

impl AudioDatagrams {
    /// The datagrams, in send order.
    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        self.bufs
            .iter()
            .zip(&self.lens)
            .take(self.count)
            .map(|(b, &l)| &b[..l])
    }

    /// Number of datagrams.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }
}

/// Counters of the audio packetizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioStats {
    /// Data packets built.
    pub packets: u64,
    /// FEC packets built.
    pub fec_packets: u64,
    /// Blocks sent without FEC because their payloads differed in length.
    pub fec_skipped_blocks: u64,
}

/// Builds audio datagrams; keeps sequence, timestamp and the current FEC block.
#[derive(Debug)]
pub struct AudioPacketizer {
    duration_ms: u32,
    key: Option<AudioKey>,
    seq: u16,
    timestamp: u32,
    block: [[u8; MAX_PAYLOAD]; DATA_SHARDS],
    block_lens: [usize; DATA_SHARDS],
    base_timestamp: u32,
    fec: AudioFec,
    stats: AudioStats,
}

impl AudioPacketizer {
    /// A packetizer for packets of `duration_ms` (5 or 10, from `x-nv-aqos.packetDuration`),
    /// encrypting when `key` is given.
    pub fn new(duration_ms: u32, key: Option<AudioKey>) -> Result<Self, WireError> {
        if !(1..=100).contains(&duration_ms) {
            return Err(WireError::InvalidParameter(
                "audio packet duration outside 1..=100 ms",
            ));
        }
        Ok(Self {
            duration_ms,
            key,
            seq: 0,
            timestamp: 0,
            block: [[0; MAX_PAYLOAD]; DATA_SHARDS],
            block_lens: [0; DATA_SHARDS],
            base_timestamp: 0,
            fec: AudioFec::new(),
            stats: AudioStats::default(),
        })
    }

    /// Counters so far.
    pub fn stats(&self) -> AudioStats {
        self.stats
    }

    /// Builds the datagrams for one Opus packet into `out`.
    pub fn packetize(&mut self, opus: &[u8], out: &mut AudioDatagrams) -> Result<(), WireError> {
        let padded = if self.key.is_some() {
            (opus.len() / 16 + 1) * 16
        } else {
            opus.len()
        };
        if padded > MAX_PAYLOAD {
            return Err(WireError::InvalidParameter(
                "Opus packet too large for one datagram",
            ));
        }
        let (seq, slot) = (self.seq, self.seq as usize % DATA_SHARDS);
        let pkt = &mut out.bufs[0];
        pkt[0] = 0x80;
        pkt[1] = PAYLOAD_TYPE;
        put_u16_be(pkt, 2, seq);
        put_u32_be(pkt, 4, self.timestamp);
        put_u32_be(pkt, 8, 0);
        let payload_len = match &self.key {
            Some(k) => CbcEnc::new(&k.key.into(), &k.iv(seq).into())
                .encrypt_padded_b2b::<Pkcs7>(opus, &mut pkt[RTP_LEN..])
                .map_err(|_| WireError::InvalidParameter("Opus packet too large"))?
                .len(),
            None => {
                pkt[RTP_LEN..RTP_LEN + opus.len()].copy_from_slice(opus);
                opus.len()
            }
        };
        out.lens[0] = RTP_LEN + payload_len;
        out.count = 1;
        self.stats.packets += 1;
        if slot == 0 {
            self.base_timestamp = self.timestamp;
        }
        self.block[slot][..payload_len].copy_from_slice(&pkt[RTP_LEN..RTP_LEN + payload_len]);
        self.block_lens[slot] = payload_len;

        if slot == DATA_SHARDS - 1 {
            self.emit_fec(seq, out)?;
        }
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(self.duration_ms);
        Ok(())
    }

    fn emit_fec(&mut self, last_seq: u16, out: &mut AudioDatagrams) -> Result<(), WireError> {
        let len = self.block_lens[0];
        if self.block_lens.iter().any(|&l| l != len) || len == 0 {
            self.stats.fec_skipped_blocks += 1;
            return Ok(());
        }
        let base_seq = last_seq.wrapping_sub(3);
        let (_, fec_bufs) = out.bufs.split_at_mut(1);
        let data: [&[u8]; DATA_SHARDS] = std::array::from_fn(|i| &self.block[i][..len]);
        let [p0, p1] = fec_bufs else {
            unreachable!("three datagram buffers")
        };
        let mut parity = [
            &mut p0[RTP_LEN + FEC_HEADER_LEN..RTP_LEN + FEC_HEADER_LEN + len],
            &mut p1[RTP_LEN + FEC_HEADER_LEN..RTP_LEN + FEC_HEADER_LEN + len],
        ];
        self.fec.encode(&data, &mut parity)?;
        for (shard, buf) in fec_bufs.iter_mut().enumerate() {
            buf[0] = 0x80;
            buf[1] = FEC_PAYLOAD_TYPE;
            put_u16_be(buf, 2, last_seq.wrapping_add(1 + shard as u16));
            put_u32_be(buf, 4, 0);
            put_u32_be(buf, 8, 0);
            let h = &mut buf[RTP_LEN..RTP_LEN + FEC_HEADER_LEN];
            h[0] = shard as u8;
            h[1] = PAYLOAD_TYPE;
            put_u16_be(h, 2, base_seq);
            put_u32_be(h, 4, self.base_timestamp);
            put_u32_be(h, 8, 0);
            out.lens[1 + shard] = RTP_LEN + FEC_HEADER_LEN + len;
        }
        out.count = 1 + PARITY_SHARDS;
        self.stats.fec_packets += PARITY_SHARDS as u64;
        Ok(())
    }
}

/// One recovered audio packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioPacket {
    /// RTP sequence number.
    pub seq: u16,
    /// Timestamp (ms).
    pub timestamp: u32,
    /// The Opus packet (decrypted).
    pub opus: Vec<u8>,
    /// Whether FEC rebuilt it.
    pub recovered: bool,
}

/// Counters of the audio depacketizer.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AudioDepacketizerStats {
    /// Packets delivered.
    pub packets: u64,
    /// Packets delivered thanks to FEC.
    pub recovered: u64,
    /// Packets never delivered.
    pub lost: u64,
    /// Datagrams rejected.
    pub bad: u64,
}

#[derive(Debug, Default)]
struct AudioBlock {
    base: u16,
    base_ts: u32,
    shards: [Vec<u8>; DATA_SHARDS + PARITY_SHARDS],
    ts: [u32; DATA_SHARDS],
    present: [bool; DATA_SHARDS + PARITY_SHARDS],
}

/// Reassembles audio for tests: collects each 4+2 block, recovers what FEC can, decrypts, and
/// delivers packets in order when the next block starts (or on [`Self::flush`]).
#[derive(Debug)]
pub struct AudioDepacketizer {
    key: Option<AudioKey>,
    duration_ms: u32,
    block: Option<AudioBlock>,
    fec: AudioFec,
    ready: std::collections::VecDeque<AudioPacket>,
    stats: AudioDepacketizerStats,
}

impl AudioDepacketizer {
    /// A depacketizer for a stream with `duration_ms` packets, decrypting with `key`.
    pub fn new(duration_ms: u32, key: Option<AudioKey>) -> Self {
        Self {
            key,
            duration_ms,
            block: None,
            fec: AudioFec::new(),
            ready: Default::default(),
            stats: Default::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> AudioDepacketizerStats {
        self.stats
    }

    /// The next packet in order, if any.
    pub fn poll_packet(&mut self) -> Option<AudioPacket> {
        self.ready.pop_front()
    }

    /// Feeds one datagram.
    pub fn handle_datagram(&mut self, d: &[u8]) -> Result<(), WireError> {
        let r = self.handle_inner(d);
        if r.is_err() {
            self.stats.bad += 1;
        }
        r
    }

    fn handle_inner(&mut self, d: &[u8]) -> Result<(), WireError> {
        if d.len() < RTP_LEN || d[0] & 0xc0 != 0x80 {
            return Err(WireError::Malformed("not an RTP packet"));
        }
        let (shard, base, ts, payload) = match d[1] & 0x7f {
            PAYLOAD_TYPE => {
                let seq = u16_be(d, 2);
                let base = seq & !3;
                (usize::from(seq - base), base, u32_be(d, 4), &d[RTP_LEN..])
            }
            FEC_PAYLOAD_TYPE => {
                if d.len() < RTP_LEN + FEC_HEADER_LEN {
                    return Err(WireError::Malformed(
                        "audio FEC packet shorter than its header",
                    ));
                }
                let h = &d[RTP_LEN..];
                if h[0] as usize >= PARITY_SHARDS || !u16_be(h, 2).is_multiple_of(4) {
                    return Err(WireError::Malformed("audio FEC header out of range"));
                }
                (
                    DATA_SHARDS + h[0] as usize,
                    u16_be(h, 2),
                    u32_be(h, 4),
                    &h[FEC_HEADER_LEN..],
                )
            }
            _ => return Err(WireError::Malformed("unknown audio payload type")),
        };
        if payload.is_empty() || payload.len() > MAX_PAYLOAD {
            return Err(WireError::Malformed("audio payload length out of range"));
        }
        match &self.block {
            Some(b) if b.base == base => {}
            Some(b) if (base.wrapping_sub(b.base) as i16) < 0 => return Ok(()),
            _ => {
                self.flush();
                self.block = Some(AudioBlock {
                    base,
                    ..Default::default()
                });
            }
        }
        let b = self.block.as_mut().expect("set just above");
        if shard < DATA_SHARDS {
            b.ts[shard] = ts;
            if shard == 0 {
                b.base_ts = ts;
            }
        } else {
            b.base_ts = ts;
        }
        b.shards[shard].clear();
        b.shards[shard].extend_from_slice(payload);
        b.present[shard] = true;
        Ok(())
    }

    /// Delivers what the current block holds (recovering lost packets if possible).
    pub fn flush(&mut self) {
        let Some(mut b) = self.block.take() else {
            return;
        };
        let missing = b.present[..DATA_SHARDS].iter().filter(|p| !**p).count();
        let len = b
            .shards
            .iter()
            .zip(&b.present)
            .find(|(_, p)| **p)
            .map_or(0, |(s, _)| s.len());
        let same_len = b
            .shards
            .iter()
            .zip(&b.present)
            .all(|(s, p)| !*p || s.len() == len);
        let mut recovered = [false; DATA_SHARDS];
        if missing > 0 && same_len && len > 0 {
            let before = b.present;
            for (s, p) in b.shards.iter_mut().zip(&b.present) {
                if !*p {
                    s.clear();
                    s.resize(len, 0);
                }
            }
            let mut refs: Vec<&mut [u8]> = b.shards.iter_mut().map(Vec::as_mut_slice).collect();
            if self.fec.reconstruct(&mut refs, &mut b.present).is_ok() {
                for i in 0..DATA_SHARDS {
                    recovered[i] = !before[i];
                    if recovered[i] {
                        b.ts[i] = b.base_ts.wrapping_add(i as u32 * self.duration_ms);
                    }
                }
            }
        }
        for (i, &was_recovered) in recovered.iter().enumerate() {
            if !b.present[i] {
                self.stats.lost += 1;
                continue;
            }
            let seq = b.base.wrapping_add(i as u16);
            let opus = match &self.key {
                Some(k) => {
                    let mut buf = b.shards[i].clone();
                    match CbcDec::new(&k.key.into(), &k.iv(seq).into())
                        .decrypt_padded::<Pkcs7>(&mut buf)
                    {
                        Ok(pt) => pt.to_vec(),
                        Err(_) => {
                            self.stats.bad += 1;
                            continue;
                        }
                    }
                }
                None => b.shards[i].clone(),
            };
            self.stats.packets += 1;
            self.stats.recovered += u64::from(was_recovered);
            self.ready.push_back(AudioPacket {
                seq,
                timestamp: b.ts[i],
                opus,
                recovered: was_recovered,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    const KEY: AudioKey = AudioKey {
        key: [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15],
        key_id: 0x1234_5678,
    };

    /// Notes "Audio encryption" vector; moonlight-common-c decrypts this ciphertext.
    #[test]
    fn cbc_vector() {
        assert_eq!(KEY.iv(5)[..4], [0x12, 0x34, 0x56, 0x7d]);
        let mut p = AudioPacketizer::new(5, Some(KEY)).unwrap();
        let mut out = AudioDatagrams::default();
        let plain: Vec<u8> = [0xfc, 0xff, 0xfe].into_iter().chain(0..=0x1c).collect();
        for _ in 0..5 {
            p.packetize(&plain, &mut out).unwrap();
        }
        p.packetize(&plain, &mut out).unwrap();
        let d = out.iter().next().unwrap();
        assert_eq!(&d[..4], &[0x80, 97, 0, 5]);
        assert_eq!(
            &d[4..8],
            &25u32.to_be_bytes(),
            "timestamp counts milliseconds"
        );
        assert_eq!(
            d[RTP_LEN..],
            hex(
                "8ceb18ffdb32b6bb7f01b77c4d3868dd818123a077b7a15ed236cd196d59c744\
                 ddb4c706d0247b66c52478bb46bb5762"
            )
        );
    }

    #[test]
    fn fec_packets_follow_each_block() {
        let mut p = AudioPacketizer::new(5, None).unwrap();
        let mut out = AudioDatagrams::default();
        for i in 0..8u8 {
            p.packetize(&[i; 40], &mut out).unwrap();
            assert_eq!(out.len(), if i % 4 == 3 { 3 } else { 1 });
        }
        let v: Vec<&[u8]> = out.iter().collect();
        // Second block: data seq 7, FEC seqs 8 and 9, base 4, base timestamp 20 ms.
        assert_eq!(&v[1][..4], &[0x80, 127, 0, 8]);
        assert_eq!(&v[2][..4], &[0x80, 127, 0, 9]);
        assert_eq!(&v[1][12..24], &[0, 97, 0, 4, 0, 0, 0, 20, 0, 0, 0, 0]);
        assert_eq!(&v[2][12..14], &[1, 97]);
        assert_eq!(v[1].len(), 12 + 12 + 40);
    }

    #[test]
    fn unequal_block_gets_no_fec() {
        let mut p = AudioPacketizer::new(10, None).unwrap();
        let mut out = AudioDatagrams::default();
        for len in [40, 40, 41, 40] {
            p.packetize(&vec![1; len], &mut out).unwrap();
        }
        assert_eq!(out.len(), 1);
        assert_eq!(p.stats().fec_skipped_blocks, 1);
        assert!(p.packetize(&[0; MAX_PAYLOAD + 1], &mut out).is_err());
    }

    /// Encrypted stream, every pattern of up to two lost datagrams per block recovered.
    #[test]
    fn roundtrip_with_loss() {
        for drop_a in 0..6 {
            for drop_b in drop_a..6 {
                let mut p = AudioPacketizer::new(5, Some(KEY)).unwrap();
                let mut d = AudioDepacketizer::new(5, Some(KEY));
                let mut out = AudioDatagrams::default();
                let packets: Vec<Vec<u8>> =
                    (0..12u8).map(|i| vec![i.wrapping_mul(37); 60]).collect();
                let mut sent = 0usize;
                for pkt in &packets {
                    p.packetize(pkt, &mut out).unwrap();
                    for dg in out.iter() {
                        let pos = sent % 6;
                        sent += 1;
                        if pos == drop_a || pos == drop_b {
                            continue;
                        }
                        d.handle_datagram(dg).unwrap();
                    }
                }
                d.flush();
                let got: Vec<AudioPacket> = std::iter::from_fn(|| d.poll_packet()).collect();
                assert_eq!(got.len(), 12, "drop {drop_a},{drop_b}");
                for (i, g) in got.iter().enumerate() {
                    assert_eq!(g.opus, packets[i]);
                    assert_eq!(g.seq as usize, i);
                    assert_eq!(g.timestamp as usize, i * 5);
                }
            }
        }
    }

    #[test]
    fn hostile_datagrams_are_errors() {
        let mut d = AudioDepacketizer::new(5, Some(KEY));
        for bad in [
            &[][..],
            &[0x80, 97],
            &[0x80, 127, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 9],
            &[0x80, 50, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            assert!(d.handle_datagram(bad).is_err());
        }
        // Garbage ciphertext is counted, not delivered.
        d.handle_datagram(&[0x80, 97, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3])
            .unwrap();
        d.flush();
        assert!(d.poll_packet().is_none());
        assert_eq!(d.stats().bad, 5);
    }
}
