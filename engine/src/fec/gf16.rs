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

use super::{FecEngine, FecError, check_sizes};

/// Most shards (data + parity) in one GF(2^16) block.
pub const MAX_SHARDS: usize = 65535;

/// A GF(2^16) code with `data` data and `parity` parity shards.
pub struct Gf16Code {
    data: usize,
    parity: usize,
    encoder: Option<(ReedSolomonEncoder, usize)>,
    decoder: Option<(ReedSolomonDecoder, usize)>,
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
        Ok(Self {
            data,
            parity,
            encoder: None,
            decoder: None,
        })
    }

    fn check_len(&self, len: usize) -> Result<(), FecError> {
        if len == 0 || !len.is_multiple_of(2) {
            return Err(FecError::ShardSize {
                index: 0,
                expected: len.max(2) & !1,
                got: len,
            });
        }
        Ok(())
    }
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
        if data.len() != self.data {
            return Err(FecError::ShardCount {
                expected: self.data,
                got: data.len(),
            });
        }
        if parity.len() != self.parity {
            return Err(FecError::ShardCount {
                expected: self.parity,
                got: parity.len(),
            });
        }
        let len = data[0].len();
        self.check_len(len)?;
        check_sizes(data, 0, len)?;
        check_sizes(parity, self.data, len)?;
        if self.parity == 0 {
            return Ok(());
        }
        let enc = match &mut self.encoder {
            Some((enc, l)) if *l == len => {
                enc.reset(self.data, self.parity, len).map_err(backend)?;
                enc
            }
            slot => {
                let enc = ReedSolomonEncoder::new(self.data, self.parity, len).map_err(backend)?;
                &mut slot.insert((enc, len)).0
            }
        };
        for d in data {
            enc.add_original_shard(d).map_err(backend)?;
        }
        let result = enc.encode().map_err(backend)?;
        for (out, rec) in parity.iter_mut().zip(result.recovery_iter()) {
            out.copy_from_slice(rec);
        }
        Ok(())
    }

    fn reconstruct(
        &mut self,
        shards: &mut [&mut [u8]],
        present: &mut [bool],
    ) -> Result<(), FecError> {
        let total = self.data + self.parity;
        if shards.len() != total {
            return Err(FecError::ShardCount {
                expected: total,
                got: shards.len(),
            });
        }
        if present.len() != total {
            return Err(FecError::ShardCount {
                expected: total,
                got: present.len(),
            });
        }
        let missing = present[..self.data].iter().filter(|p| !**p).count();
        if missing == 0 {
            return Ok(());
        }
        let available = present[self.data..].iter().filter(|p| **p).count();
        if available < missing {
            return Err(FecError::TooFewShards { missing, available });
        }
        let len = shards[0].len();
        self.check_len(len)?;
        check_sizes(shards, 0, len)?;
        let dec = match &mut self.decoder {
            Some((dec, l)) if *l == len => {
                dec.reset(self.data, self.parity, len).map_err(backend)?;
                dec
            }
            slot => {
                let dec = ReedSolomonDecoder::new(self.data, self.parity, len).map_err(backend)?;
                &mut slot.insert((dec, len)).0
            }
        };
        for (i, shard) in shards.iter().enumerate() {
            if !present[i] {
                continue;
            }
            if i < self.data {
                dec.add_original_shard(i, &**shard).map_err(backend)?;
            } else {
                dec.add_recovery_shard(i - self.data, &**shard)
                    .map_err(backend)?;
            }
        }
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
