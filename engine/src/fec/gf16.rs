//! GF(2^16) Reed–Solomon for punktfunk/1: one block per frame, up to 65535 shards.
//!
//! GameStream's GF(2^8) code caps a block at 255 shards and a frame at 4 blocks, about 1.4 MB
//! at 1408-byte shards, and its cost grows with the block size (O(ds · ps) per byte). The
//! Leopard-style FFT code of `reed-solomon-simd` works in GF(2^16) with O(n log n) cost, so a
//! multi-megabyte frame is one block. This module adapts it to [`FecEngine`]; the encoder and
//! decoder keep their work buffers between blocks (`reset`), so steady state does not allocate
//! as long as the shape does not grow.
//!
//! Constraints of the backend: shard length even and non-zero; `data + parity ≤ 65535`
//! (checked with its `supports`).

use reed_solomon_simd::{ReedSolomonDecoder, ReedSolomonEncoder};

use super::{FecEngine, FecError, check_encode, check_reconstruct_counts, check_sizes};

/// Most shards (data + parity) in one GF(2^16) block.
pub const MAX_SHARDS: usize = 65535;

/// A GF(2^16) code with `data` data and `parity` parity shards.
pub struct Gf16Code {
    data: usize,
    parity: usize,
    /// Kept across blocks: `reset` reuses its work buffer whenever it is large enough.
    encoder: Option<ReedSolomonEncoder>,
    /// Kept across blocks like the encoder.
    decoder: Option<ReedSolomonDecoder>,
}

impl std::fmt::Debug for Gf16Code {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gf16Code")
            .field("data", &self.data)
            .field("parity", &self.parity)
            .finish()
    }
}

impl Gf16Code {
    /// A code for `data` + `parity` shards. `parity` may be 0 (nothing to encode; recovery of a
    /// lost shard then fails).
    pub fn new(data: usize, parity: usize) -> Result<Self, FecError> {
        check_shape(data, parity)?;
        Ok(Self {
            data,
            parity,
            encoder: None,
            decoder: None,
        })
    }

    /// Changes the shape to `data` + `parity`, keeping the backend's work buffers: a code
    /// reshaped to sizes it has seen before encodes and decodes without allocating.
    pub fn reshape(&mut self, data: usize, parity: usize) -> Result<(), FecError> {
        check_shape(data, parity)?;
        self.data = data;
        self.parity = parity;
        Ok(())
    }

    /// The largest parity count the backend supports next to `data` data shards, within
    /// [`MAX_SHARDS`] in all (0 when `data` is 0 or leaves no room).
    ///
    /// The Leopard code runs at "high rate" when `next_pow2(parity) + data ≤ 65536` or at "low
    /// rate" when `next_pow2(data) + parity ≤ 65536` (reed-solomon-simd 3.1,
    /// `src/rate/rate_{high,low}.rs`): up to 32768 data shards, parity up to
    /// `65536 − next_pow2(data)` (at least 32768) works; above that it is limited to a power
    /// of two.
    pub fn max_parity(data: usize) -> usize {
        if data == 0 || data >= MAX_SHARDS {
            return 0;
        }
        let room = MAX_SHARDS - data;
        let low = (1usize << 16).saturating_sub(data.next_power_of_two());
        // Largest power of two ≤ 65536 − data.
        let high = 1usize << (usize::BITS - 1 - ((1usize << 16) - data).leading_zeros());
        low.max(high).min(room)
    }

    /// Encodes without slice vectors: `data` yields exactly [`FecEngine::data_shards`] shards
    /// of `len` bytes (even, non-zero), and `parity(j, shard)` receives each parity shard in
    /// order. The backend copies each data shard once into its work buffer.
    pub fn encode_each<'a, I>(
        &mut self,
        len: usize,
        data: I,
        mut parity: impl FnMut(usize, &[u8]),
    ) -> Result<(), FecError>
    where
        I: IntoIterator<Item = &'a [u8]>,
    {
        check_len(len)?;
        if self.parity == 0 {
            return check_count(self.data, len, data);
        }
        let enc = match &mut self.encoder {
            Some(enc) => {
                enc.reset(self.data, self.parity.max(1), len)
                    .map_err(backend)?;
                enc
            }
            slot => slot.insert(
                ReedSolomonEncoder::new(self.data, self.parity.max(1), len).map_err(backend)?,
            ),
        };
        let mut count = 0;
        for (i, d) in data.into_iter().enumerate() {
            if d.len() != len {
                return Err(FecError::ShardSize {
                    index: i,
                    expected: len,
                    got: d.len(),
                });
            }
            if i >= self.data {
                return Err(FecError::ShardCount {
                    expected: self.data,
                    got: i + 1,
                });
            }
            enc.add_original_shard(d).map_err(backend)?;
            count += 1;
        }
        if count != self.data {
            return Err(FecError::ShardCount {
                expected: self.data,
                got: count,
            });
        }
        let result = enc.encode().map_err(backend)?;
        for (j, rec) in result.recovery_iter().enumerate() {
            parity(j, rec);
        }
        Ok(())
    }

    /// Restores missing data shards without slice vectors: `present` yields `(index, shard)`
    /// for shards that arrived (data indices `< data_shards()`, parity after them, any order,
    /// each `len` bytes). The returned [`Restored`] lists every data shard that was missing;
    /// it borrows the code, not the caller's shards, so the caller can write them back into
    /// the buffer it fed them from.
    ///
    /// Feeding more than `data_shards()` shards is allowed but costs a copy each; callers that
    /// know how many data shards are missing can stop after that much parity.
    pub fn reconstruct_each<'a, I>(
        &mut self,
        len: usize,
        present: I,
    ) -> Result<Restored<'_>, FecError>
    where
        I: IntoIterator<Item = (usize, &'a [u8])>,
    {
        let result = match self.feed_decoder(len, present)? {
            Some(dec) => Some(dec.decode().map_err(backend)?),
            None => None,
        };
        Ok(Restored { result })
    }

    /// Resets the decoder for `len`-byte shards and adds `present`; `None` when no data shard
    /// is missing (nothing to decode).
    fn feed_decoder<'a, I>(
        &mut self,
        len: usize,
        present: I,
    ) -> Result<Option<&mut ReedSolomonDecoder>, FecError>
    where
        I: IntoIterator<Item = (usize, &'a [u8])>,
    {
        check_len(len)?;
        let (data, total) = (self.data, self.data + self.parity);
        let dec = match &mut self.decoder {
            Some(dec) => {
                dec.reset(data, self.parity.max(1), len).map_err(backend)?;
                dec
            }
            slot => slot
                .insert(ReedSolomonDecoder::new(data, self.parity.max(1), len).map_err(backend)?),
        };
        let (mut originals, mut recovery) = (0usize, 0usize);
        for (i, shard) in present {
            if shard.len() != len {
                return Err(FecError::ShardSize {
                    index: i,
                    expected: len,
                    got: shard.len(),
                });
            }
            if i < data {
                dec.add_original_shard(i, shard).map_err(backend)?;
                originals += 1;
            } else if i < total {
                dec.add_recovery_shard(i - data, shard).map_err(backend)?;
                recovery += 1;
            } else {
                return Err(FecError::ShardCount {
                    expected: total,
                    got: i + 1,
                });
            }
        }
        let missing = data - originals;
        if missing == 0 {
            return Ok(None);
        }
        if recovery < missing {
            return Err(FecError::TooFewShards {
                missing,
                available: recovery,
            });
        }
        Ok(Some(dec))
    }
}

/// The data shards a [`Gf16Code::reconstruct_each`] call restored.
pub struct Restored<'a> {
    result: Option<reed_solomon_simd::DecoderResult<'a>>,
}

impl Restored<'_> {
    /// `(index, shard)` for every data shard that was missing, in index order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, &[u8])> + '_ {
        self.result.iter().flat_map(|r| r.restored_original_iter())
    }
}

impl std::fmt::Debug for Restored<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Restored")
            .field("shards", &self.iter().count())
            .finish()
    }
}

fn check_shape(data: usize, parity: usize) -> Result<(), FecError> {
    let shape = |reason| {
        Err(FecError::Shape {
            data,
            parity,
            reason,
        })
    };
    if data == 0 {
        return shape("at least one data shard is needed");
    }
    if data + parity > MAX_SHARDS {
        return shape("more than 65535 shards in one GF(2^16) block");
    }
    if parity > 0 && !ReedSolomonEncoder::supports(data, parity) {
        return shape("data/parity ratio not supported by the GF(2^16) backend");
    }
    Ok(())
}

/// Checks that `data` yields exactly `count` shards of `len` bytes.
fn check_count<'a>(
    count: usize,
    len: usize,
    data: impl IntoIterator<Item = &'a [u8]>,
) -> Result<(), FecError> {
    let mut n = 0;
    for (i, d) in data.into_iter().enumerate() {
        if d.len() != len {
            return Err(FecError::ShardSize {
                index: i,
                expected: len,
                got: d.len(),
            });
        }
        n += 1;
    }
    if n != count {
        return Err(FecError::ShardCount {
            expected: count,
            got: n,
        });
    }
    Ok(())
}

fn check_len(len: usize) -> Result<(), FecError> {
    if len == 0 || !len.is_multiple_of(2) {
        return Err(FecError::ShardSize {
            index: 0,
            expected: len.max(2) & !1,
            got: len,
        });
    }
    Ok(())
}

fn backend(e: reed_solomon_simd::Error) -> FecError {
    FecError::Backend(e.to_string())
}

impl FecEngine for Gf16Code {
    fn data_shards(&self) -> usize {
        self.data
    }

    fn parity_shards(&self) -> usize {
        self.parity
    }

    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), FecError> {
        let len = check_encode(self.data, self.parity, data, parity)?;
        check_len(len)?;
        if self.parity == 0 {
            return Ok(());
        }
        self.encode_each(len, data.iter().copied(), |j, rec| {
            parity[j].copy_from_slice(rec)
        })
    }

    fn reconstruct(
        &mut self,
        shards: &mut [&mut [u8]],
        present: &mut [bool],
    ) -> Result<(), FecError> {
        let total = self.data + self.parity;
        check_reconstruct_counts(total, shards, present)?;
        let missing = present[..self.data].iter().filter(|p| !**p).count();
        if missing == 0 {
            return Ok(());
        }
        let available = present[self.data..].iter().filter(|p| **p).count();
        if available < missing {
            return Err(FecError::TooFewShards { missing, available });
        }
        let len = shards[0].len();
        check_len(len)?;
        check_sizes(shards, 0, len)?;
        let given = shards
            .iter()
            .enumerate()
            .filter(|(i, _)| present[*i])
            .map(|(i, s)| (i, &**s));
        let Some(dec) = self.feed_decoder(len, given)? else {
            return Ok(());
        };
        let result = dec.decode().map_err(backend)?;
        for (i, restored) in result.restored_original_iter() {
            shards[i].copy_from_slice(restored);
            present[i] = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{RngExt, SeedableRng};

    fn roundtrip(ds: usize, ps: usize, len: usize, lost: &[usize], seed: u64) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let data: Vec<Vec<u8>> = (0..ds)
            .map(|_| (0..len).map(|_| rng.random()).collect())
            .collect();
        let mut code = Gf16Code::new(ds, ps).unwrap();
        let mut parity = vec![vec![0u8; len]; ps];
        {
            let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            code.encode(&ins, &mut outs).unwrap();
        }
        let mut shards: Vec<Vec<u8>> = data.iter().chain(&parity).cloned().collect();
        let mut present = vec![true; ds + ps];
        for &l in lost {
            present[l] = false;
            shards[l].fill(0);
        }
        let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(Vec::as_mut_slice).collect();
        code.reconstruct(&mut refs, &mut present).unwrap();
        assert_eq!(&shards[..ds], &data[..]);
    }

    #[test]
    fn large_block_recovers() {
        // A 4 MB frame in 1400-byte shards with 20 % parity, losing a burst and a scatter.
        let (ds, ps) = (3000, 600);
        let mut lost: Vec<usize> = (100..400).collect();
        lost.extend((1000..3000).step_by(7).take(290));
        roundtrip(ds, ps, 64, &lost, 3);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn random_shapes(ds in 1usize..600, ps in 1usize..200, half in 1usize..300, seed in any::<u64>()) {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let mut idx: Vec<usize> = (0..ds + ps).collect();
            for i in (1..idx.len()).rev() { idx.swap(i, rng.random_range(0..=i)); }
            idx.truncate(ps);
            roundtrip(ds, ps, half * 2, &idx, seed);
        }
    }

    #[test]
    fn max_parity_matches_the_backend() {
        assert_eq!(Gf16Code::max_parity(0), 0);
        assert_eq!(Gf16Code::max_parity(MAX_SHARDS), 0);
        for data in (1..MAX_SHARDS).step_by(7).chain([32768, 32769, 65534]) {
            let p = Gf16Code::max_parity(data);
            assert!(data + p <= MAX_SHARDS, "{data}");
            assert!(
                p >= 1 && ReedSolomonEncoder::supports(data, p),
                "{data}+{p}"
            );
            assert!(
                data + p == MAX_SHARDS || !ReedSolomonEncoder::supports(data, p + 1),
                "{data}+{p} is not the largest"
            );
        }
        assert_eq!(Gf16Code::max_parity(1000), 65536 - 1024);
        assert_eq!(Gf16Code::max_parity(40000), 16384);
    }

    #[test]
    fn streaming_api_matches_and_reuses_the_code() {
        let mut code = Gf16Code::new(5, 2).unwrap();
        for (ds, ps, len) in [(5, 2, 64), (9, 3, 100), (5, 2, 64), (3, 0, 8)] {
            code.reshape(ds, ps).unwrap();
            let data = shards(ds, len, ds as u64);
            let mut parity = vec![vec![0u8; len]; ps];
            code.encode_each(len, data.iter().map(Vec::as_slice), |j, p| {
                parity[j].copy_from_slice(p)
            })
            .unwrap();
            if ps == 0 {
                continue;
            }
            // Lose the first `ps` data shards, rebuild them from the rest.
            let given = data
                .iter()
                .chain(&parity)
                .enumerate()
                .skip(ps)
                .map(|(i, s)| (i, s.as_slice()));
            let restored = code.reconstruct_each(len, given).unwrap();
            let got: Vec<(usize, Vec<u8>)> =
                restored.iter().map(|(i, s)| (i, s.to_vec())).collect();
            assert_eq!(got.len(), ps);
            for (i, s) in got {
                assert_eq!(s, data[i]);
            }
        }
        assert!(matches!(
            code.encode_each(8, [[0u8; 8].as_slice()], |_, _| {}),
            Err(FecError::ShardCount { .. })
        ));
        code.reshape(2, 1).unwrap();
        assert!(matches!(
            code.reconstruct_each(8, [(0, [0u8; 8].as_slice())]),
            Err(FecError::TooFewShards { .. })
        ));
        assert!(matches!(
            code.reconstruct_each(8, [(7, [0u8; 8].as_slice())]),
            Err(FecError::ShardCount { .. })
        ));
        assert!(code.reshape(0, 1).is_err());
    }

    fn shards(count: usize, len: usize, seed: u64) -> Vec<Vec<u8>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        (0..count)
            .map(|_| (0..len).map(|_| rng.random()).collect())
            .collect()
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(matches!(Gf16Code::new(0, 1), Err(FecError::Shape { .. })));
        assert!(matches!(
            Gf16Code::new(60000, 6000),
            Err(FecError::Shape { .. })
        ));
        let mut code = Gf16Code::new(2, 1).unwrap();
        let (a, b) = ([0u8; 3], [0u8; 3]);
        let mut p = [0u8; 3];
        assert!(matches!(
            code.encode(&[&a, &b], &mut [&mut p]),
            Err(FecError::ShardSize { .. })
        ));
        let (a, b) = ([0u8; 4], [0u8; 6]);
        let mut p = [0u8; 4];
        assert!(matches!(
            code.encode(&[&a, &b], &mut [&mut p]),
            Err(FecError::ShardSize { .. })
        ));
        let mut s = [[0u8; 4]; 3];
        let mut refs: Vec<&mut [u8]> = s.iter_mut().map(|x| x.as_mut_slice()).collect();
        assert!(matches!(
            code.reconstruct(&mut refs, &mut [false, false, true]),
            Err(FecError::TooFewShards {
                missing: 2,
                available: 1
            })
        ));
    }
}
