//! Systematic Reed–Solomon codes over GF(2^8), including GameStream's video code.
//!
//! # The nanors construction (GameStream video)
//!
//! moonlight-common-c decodes video FEC with nanors (`rs.c`, `reed_solomon_new`): parity shard
//! `j` of a block with `ds` data and `ps` parity shards is
//!
//! ```text
//! parity_j = Σ_{i < ds}  inv((ps + i) ⊕ j) · data_i          (GF(2^8)/0x11D, byte-wise)
//! ```
//!
//! a Cauchy matrix `1/(x_i + y_j)` with `x_i = ps + i`, `y_j = j`. The matrix depends on `ps`, so
//! (ds, ps) and (ds, ps+1) share no rows. See docs/gamestream-protocol-notes.md "Video FEC code",
//! whose test vector is checked below.
//!
//! # Recovery
//!
//! With the data shards `M` missing (`e = |M|`) and parity rows `J` present (`|J| ≥ e`):
//!
//! 1. syndromes `S_k = parity_{J_k} ⊕ Σ_{i ∉ M} C[J_k][i] · data_i` (one accumulate pass);
//! 2. `data_M = C[J][M]⁻¹ · S` (one pass over `e` shards).
//!
//! Any square submatrix of a Cauchy matrix is again Cauchy, so its inverse has a closed form
//! computed in O(e²) field operations; codes with arbitrary parity rows (the audio code) fall
//! back to Gauss–Jordan elimination.

use super::field::{self, EXP, LOG};
use super::kernel::{self, Kernel, Mode};
use super::{FecEngine, FecError, check_encode, check_reconstruct_counts, check_sizes};

/// Most shards (data + parity) in one GF(2^8) block: nanors' `DATA_SHARDS_MAX`.
pub const MAX_SHARDS: usize = 255;

/// How the parity rows were built; decides how recovery matrices are inverted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Construction {
    /// `inv((ps + i) ⊕ j)`: closed-form inverses.
    NanorsCauchy,
    /// Caller-supplied rows: Gauss–Jordan.
    Rows,
}

/// A systematic GF(2^8) code with `data` data shards and `parity` parity shards.
///
/// Holds the parity matrix, the selected SIMD [`Kernel`] and scratch space for recovery that
/// grows to the largest block seen and is then reused (no allocation per block in steady
/// state).
#[derive(Debug, Clone)]
pub struct Gf8Code {
    data: usize,
    parity: usize,
    construction: Construction,
    /// `parity × data`, row-major.
    matrix: Vec<u8>,
    kernel: Kernel,
    scratch: Scratch,
}

#[derive(Debug, Clone, Default)]
struct Scratch {
    /// Syndrome shards, `e × len`.
    syndromes: Vec<u8>,
    /// `e × (data − e)` syndrome coefficients, then reused for nothing else.
    coefs: Vec<u8>,
    /// `e × e` inverse.
    inverse: Vec<u8>,
    /// Gauss–Jordan work area.
    work: Vec<u8>,
    missing: Vec<usize>,
    rows: Vec<usize>,
    known: Vec<usize>,
}

impl Gf8Code {
    /// The GameStream video code for `data` + `parity` shards, with the fastest kernel this CPU
    /// supports.
    ///
    /// `parity` may exceed `data`; `data + parity` must not exceed [`MAX_SHARDS`].
    pub fn nanors(data: usize, parity: usize) -> Result<Self, FecError> {
        check_shape(data, parity)?;
        let mut code = Self::build(data, parity, Construction::Rows, Vec::new());
        code.reshape_nanors(data, parity)?;
        Ok(code)
    }

    /// Turns this code into the nanors code for `data` + `parity`, reusing its buffers (no
    /// allocation once the matrix has been this large before). A no-op for the current shape.
    pub fn reshape_nanors(&mut self, data: usize, parity: usize) -> Result<(), FecError> {
        if self.construction == Construction::NanorsCauchy
            && self.data == data
            && self.parity == parity
        {
            return Ok(());
        }
        check_shape(data, parity)?;
        self.matrix.clear();
        // (ps + i) ≤ 254 and > j, so every XOR below is a nonzero byte.
        for j in 0..parity {
            self.matrix.extend((0..data).map(|i| {
                field::inv(((parity + i) ^ j) as u8)
                    .expect("(ps + i) ^ j is nonzero since ps + i > j")
            }));
        }
        self.data = data;
        self.parity = parity;
        self.construction = Construction::NanorsCauchy;
        Ok(())
    }

    /// A code with caller-chosen parity rows (`rows[j][i]` multiplies data shard `i` into parity
    /// shard `j`). Recovery fails with [`FecError::Singular`] for erasure patterns whose
    /// submatrix is not invertible.
    pub fn from_parity_rows<R: AsRef<[u8]>>(data: usize, rows: &[R]) -> Result<Self, FecError> {
        check_shape(data, rows.len())?;
        let mut matrix = Vec::with_capacity(rows.len() * data);
        for row in rows {
            let row = row.as_ref();
            if row.len() != data {
                return Err(FecError::Shape {
                    data,
                    parity: rows.len(),
                    reason: "parity row length differs from the data shard count",
                });
            }
            matrix.extend_from_slice(row);
        }
        Ok(Self::build(data, rows.len(), Construction::Rows, matrix))
    }

    fn build(data: usize, parity: usize, construction: Construction, matrix: Vec<u8>) -> Self {
        Self {
            data,
            parity,
            construction,
            matrix,
            kernel: Kernel::detect(),
            scratch: Scratch::default(),
        }
    }

    /// The same code running on `kernel` (for tests and benches that compare kernels).
    pub fn with_kernel(mut self, kernel: Kernel) -> Result<Self, FecError> {
        if !kernel.is_supported() {
            return Err(FecError::UnsupportedKernel(kernel));
        }
        self.kernel = kernel;
        Ok(self)
    }

    /// The kernel in use.
    pub fn kernel(&self) -> Kernel {
        self.kernel
    }

    /// Coefficient multiplying data shard `i` into parity shard `j`.
    pub fn coefficient(&self, j: usize, i: usize) -> Option<u8> {
        (j < self.parity && i < self.data).then(|| self.matrix[j * self.data + i])
    }

    /// Encodes a block laid out contiguously: `data` shards then `parity` shards, each
    /// `shard_len` bytes (the layout the packetizers produce, which is also the GSO layout).
    pub fn encode_block(&mut self, block: &mut [u8], shard_len: usize) -> Result<(), FecError> {
        let total = self.data + self.parity;
        if shard_len == 0 || block.len() != total * shard_len {
            return Err(FecError::ShardSize {
                index: 0,
                expected: total * shard_len.max(1),
                got: block.len(),
            });
        }
        let (data, parity) = block.split_at_mut(self.data * shard_len);
        let mut ins: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
        for (slot, s) in ins.iter_mut().zip(data.chunks_exact(shard_len)) {
            *slot = s;
        }
        let mut outs: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| <&mut [u8]>::default());
        for (slot, s) in outs.iter_mut().zip(parity.chunks_exact_mut(shard_len)) {
            *slot = s;
        }
        kernel::mul_matrix(
            self.kernel,
            &self.matrix,
            &ins[..self.data],
            &mut outs[..self.parity],
            shard_len,
            Mode::Overwrite,
        );
        Ok(())
    }

    /// Restores missing data shards of a contiguous block (layout as [`Self::encode_block`]).
    pub fn reconstruct_block(
        &mut self,
        block: &mut [u8],
        shard_len: usize,
        present: &mut [bool],
    ) -> Result<(), FecError> {
        let total = self.data + self.parity;
        if shard_len == 0 || block.len() != total * shard_len {
            return Err(FecError::ShardSize {
                index: 0,
                expected: total * shard_len.max(1),
                got: block.len(),
            });
        }
        let mut refs: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| <&mut [u8]>::default());
        for (slot, s) in refs.iter_mut().zip(block.chunks_exact_mut(shard_len)) {
            *slot = s;
        }
        self.reconstruct(&mut refs[..total], present)
    }

    /// Fills `self.scratch.inverse` with the inverse of the `e × e` recovery matrix
    /// `C[rows][missing]`, laid out `missing × rows`.
    fn invert_recovery_matrix(&mut self) -> Result<(), FecError> {
        let s = &mut self.scratch;
        let e = s.missing.len();
        s.inverse.clear();
        s.inverse.resize(e * e, 0);
        match self.construction {
            Construction::NanorsCauchy => {
                // C[k][c] = 1/(a_k + b_c), a_k = J_k, b_c = ps + M_c. Its inverse is
                // B[c][k] = PY_c · PX_k / ((a_k + b_c) · QX_k · QY_c) with
                // PY_c = Π_k' (b_c + a_k'), PX_k = Π_c' (a_k + b_c'),
                // QX_k = Π_{k'≠k} (a_k + a_k'), QY_c = Π_{c'≠c} (b_c + b_c').
                // All factors are nonzero (a < ps ≤ b, and a's and b's are distinct), so the
                // computation runs in the log domain.
                let a = |k: usize| s.rows[k] as u8;
                let b = |c: usize| (self.parity + s.missing[c]) as u8;
                let lg = |x: u8| LOG[x as usize] as u32;
                let mut log_px_over_qx = [0u32; MAX_SHARDS];
                for (k, slot) in log_px_over_qx.iter_mut().enumerate().take(e) {
                    let px: u32 = (0..e).map(|c| lg(a(k) ^ b(c))).sum();
                    let qx: u32 = (0..e)
                        .filter(|&k2| k2 != k)
                        .map(|k2| lg(a(k) ^ a(k2)))
                        .sum();
                    *slot = (px + 255 * 255 - qx % 255) % 255;
                }
                for c in 0..e {
                    let py: u32 = (0..e).map(|k| lg(b(c) ^ a(k))).sum();
                    let qy: u32 = (0..e)
                        .filter(|&c2| c2 != c)
                        .map(|c2| lg(b(c) ^ b(c2)))
                        .sum();
                    let log_py_over_qy = (py + 255 * 255 - qy % 255) % 255;
                    for (k, &log_pq) in log_px_over_qx.iter().enumerate().take(e) {
                        let l = log_py_over_qy + log_pq + 255 - lg(a(k) ^ b(c));
                        s.inverse[c * e + k] = EXP[(l % 255) as usize];
                    }
                }
                Ok(())
            }
            Construction::Rows => {
                // Build C[rows][missing] (k × c), invert to (c × k).
                for (k, &j) in s.rows.iter().enumerate() {
                    for (c, &m) in s.missing.iter().enumerate() {
                        s.inverse[k * e + c] = self.matrix[j * self.data + m];
                    }
                }
                s.work.clear();
                s.work.resize(e * e, 0);
                if field::invert_matrix(&mut s.inverse, e, &mut s.work) {
                    Ok(())
                } else {
                    Err(FecError::Singular)
                }
            }
        }
    }
}

fn check_shape(data: usize, parity: usize) -> Result<(), FecError> {
    let reason = if data == 0 {
        "at least one data shard is needed"
    } else if data + parity > MAX_SHARDS {
        "more than 255 shards in one GF(2^8) block"
    } else {
        return Ok(());
    };
    Err(FecError::Shape {
        data,
        parity,
        reason,
    })
}

impl FecEngine for Gf8Code {
    fn data_shards(&self) -> usize {
        self.data
    }

    fn parity_shards(&self) -> usize {
        self.parity
    }

    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), FecError> {
        let len = check_encode(self.data, self.parity, data, parity)?;
        kernel::mul_matrix(
            self.kernel,
            &self.matrix,
            data,
            parity,
            len,
            Mode::Overwrite,
        );
        Ok(())
    }

    fn reconstruct(
        &mut self,
        shards: &mut [&mut [u8]],
        present: &mut [bool],
    ) -> Result<(), FecError> {
        let total = self.data + self.parity;
        check_reconstruct_counts(total, shards, present)?;
        let len = shards[0].len();
        check_sizes(shards, 0, len)?;

        let s = &mut self.scratch;
        s.missing.clear();
        s.missing.extend((0..self.data).filter(|&i| !present[i]));
        let e = s.missing.len();
        if e == 0 {
            return Ok(());
        }
        s.rows.clear();
        s.rows
            .extend((0..self.parity).filter(|&j| present[self.data + j]).take(e));
        if s.rows.len() < e {
            return Err(FecError::TooFewShards {
                missing: e,
                available: s.rows.len(),
            });
        }
        s.known.clear();
        s.known.extend((0..self.data).filter(|&i| present[i]));

        self.invert_recovery_matrix()?;
        let s = &mut self.scratch;

        // Pass 1: S_k = parity_{J_k} ⊕ Σ_{i known} C[J_k][i] · data_i.
        s.syndromes.clear();
        s.syndromes.resize(e * len, 0);
        for (k, &j) in s.rows.iter().enumerate() {
            s.syndromes[k * len..(k + 1) * len].copy_from_slice(shards[self.data + j]);
        }
        s.coefs.clear();
        for &j in &s.rows {
            s.coefs
                .extend(s.known.iter().map(|&i| self.matrix[j * self.data + i]));
        }
        {
            let mut ins: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
            for (slot, &i) in ins.iter_mut().zip(&s.known) {
                *slot = &*shards[i];
            }
            let mut outs: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| <&mut [u8]>::default());
            for (slot, chunk) in outs.iter_mut().zip(s.syndromes.chunks_exact_mut(len)) {
                *slot = chunk;
            }
            kernel::mul_matrix(
                self.kernel,
                &s.coefs,
                &ins[..s.known.len()],
                &mut outs[..e],
                len,
                Mode::Accumulate,
            );
        }

        // Pass 2: data_M = C[J][M]⁻¹ · S.
        let mut ins: [&[u8]; MAX_SHARDS] = [&[]; MAX_SHARDS];
        for (slot, chunk) in ins.iter_mut().zip(s.syndromes.chunks_exact(len)) {
            *slot = chunk;
        }
        let mut outs: [&mut [u8]; MAX_SHARDS] = std::array::from_fn(|_| <&mut [u8]>::default());
        let mut next = 0;
        for (i, shard) in shards.iter_mut().enumerate().take(self.data) {
            if !present[i] {
                outs[next] = &mut **shard;
                next += 1;
            }
        }
        kernel::mul_matrix(
            self.kernel,
            &s.inverse,
            &ins[..e],
            &mut outs[..e],
            len,
            Mode::Overwrite,
        );
        for &m in &s.missing {
            present[m] = true;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rand::{Rng, RngExt, SeedableRng};

    fn vector_data(ds: usize, len: usize) -> Vec<Vec<u8>> {
        (0..ds)
            .map(|i| {
                (0..len)
                    .map(|b| ((31 * i + 7 * b + 1) & 0xff) as u8)
                    .collect()
            })
            .collect()
    }

    fn encode_vecs(code: &mut Gf8Code, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        let len = data[0].len();
        let mut parity = vec![vec![0u8; len]; code.parity_shards()];
        let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
        code.encode(&ins, &mut outs).unwrap();
        parity
    }

    /// Notes "Video FEC code": ds = 4, ps = 2, 8-byte shards, values from nanors C.
    #[test]
    fn protocol_map_test_vector() {
        for kernel in Kernel::available() {
            let mut code = Gf8Code::nanors(4, 2).unwrap().with_kernel(kernel).unwrap();
            let m: Vec<u8> = (0..2)
                .flat_map(|j| (0..4).map(move |i| (j, i)))
                .collect::<Vec<_>>()
                .into_iter()
                .map(|(j, i)| code.coefficient(j, i).unwrap())
                .collect();
            assert_eq!(m, [0x8e, 0xf4, 0x47, 0xa7, 0xf4, 0x8e, 0xa7, 0x47]);
            let parity = encode_vecs(&mut code, &vector_data(4, 8));
            assert_eq!(
                parity[0],
                [0x17, 0x6c, 0xdb, 0xb0, 0x00, 0x90, 0x23, 0xbb],
                "{kernel}"
            );
            assert_eq!(
                parity[1],
                [0x85, 0x77, 0xeb, 0x0e, 0x30, 0x6c, 0x03, 0xe0],
                "{kernel}"
            );
        }
    }

    #[test]
    fn parity_may_exceed_data() {
        // ds = 1, ps = 2: rows inv(2), inv(3) = 8e, f4 (notes "Video FEC code").
        let code = Gf8Code::nanors(1, 2).unwrap();
        assert_eq!(code.coefficient(0, 0), Some(0x8e));
        assert_eq!(code.coefficient(1, 0), Some(0xf4));
        assert_eq!(code.coefficient(2, 0), None);
    }

    #[test]
    fn bad_shapes_are_errors() {
        assert!(matches!(Gf8Code::nanors(0, 2), Err(FecError::Shape { .. })));
        assert!(matches!(
            Gf8Code::nanors(200, 56),
            Err(FecError::Shape { .. })
        ));
        assert!(Gf8Code::nanors(200, 55).is_ok());
        assert!(Gf8Code::nanors(255, 0).is_ok());
        assert!(matches!(
            Gf8Code::from_parity_rows(3, &[[1u8, 2]]),
            Err(FecError::Shape { .. })
        ));
        let mut code = Gf8Code::nanors(2, 1).unwrap();
        let (a, b) = (vec![0u8; 8], vec![0u8; 7]);
        let mut p = vec![0u8; 8];
        assert_eq!(
            code.encode(&[&a, &b], &mut [&mut p]),
            Err(FecError::ShardSize {
                index: 1,
                expected: 8,
                got: 7
            })
        );
        assert_eq!(
            code.encode(&[&a], &mut [&mut p]),
            Err(FecError::ShardCount {
                expected: 2,
                got: 1
            })
        );
        let mut block = vec![0u8; 23];
        assert!(matches!(
            code.encode_block(&mut block, 8),
            Err(FecError::ShardSize { .. })
        ));
        assert!(matches!(
            code.encode_block(&mut block, 0),
            Err(FecError::ShardSize { .. })
        ));
        let mut shards = [vec![0u8; 4], vec![0u8; 4], vec![0u8; 4]];
        let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(Vec::as_mut_slice).collect();
        assert_eq!(
            code.reconstruct(&mut refs, &mut [false, false, true]),
            Err(FecError::TooFewShards {
                missing: 2,
                available: 1
            })
        );
        assert_eq!(
            code.reconstruct(&mut refs, &mut [false, true]),
            Err(FecError::ShardCount {
                expected: 3,
                got: 2
            })
        );
    }

    /// Closed-form Cauchy inverses equal Gauss–Jordan on the same submatrix.
    #[test]
    fn cauchy_closed_form_matches_gauss() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        for _ in 0..300 {
            let ds = rng.random_range(1..120);
            let ps = rng.random_range(1..(255 - ds).min(60) + 1);
            let e = rng.random_range(1..=ds.min(ps));
            let mut code = Gf8Code::nanors(ds, ps).unwrap();
            let mut missing: Vec<usize> = (0..ds).collect();
            shuffle(&mut missing, &mut rng);
            missing.truncate(e);
            missing.sort();
            let mut rows: Vec<usize> = (0..ps).collect();
            shuffle(&mut rows, &mut rng);
            rows.truncate(e);
            rows.sort();
            code.scratch.missing = missing.clone();
            code.scratch.rows = rows.clone();
            code.invert_recovery_matrix().unwrap();
            let closed = code.scratch.inverse.clone();
            code.construction = Construction::Rows;
            code.invert_recovery_matrix().unwrap();
            assert_eq!(closed, code.scratch.inverse, "ds={ds} ps={ps} e={e}");
        }
    }

    fn shuffle<T>(v: &mut [T], rng: &mut impl Rng) {
        for i in (1..v.len()).rev() {
            v.swap(i, rng.random_range(0..=i));
        }
    }

    fn roundtrip(code: &mut Gf8Code, data: &[Vec<u8>], lost: &[usize]) -> Result<(), FecError> {
        let parity = encode_vecs(code, data);
        let mut shards: Vec<Vec<u8>> = data.iter().chain(&parity).cloned().collect();
        let mut present = vec![true; shards.len()];
        for &l in lost {
            present[l] = false;
            shards[l].fill(0xa5);
        }
        let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(Vec::as_mut_slice).collect();
        code.reconstruct(&mut refs, &mut present)?;
        for (i, d) in data.iter().enumerate() {
            assert_eq!(
                &shards[i],
                d,
                "data shard {i} lost={lost:?} kernel {}",
                code.kernel()
            );
            assert!(present[i]);
        }
        Ok(())
    }

    /// Every erasure pattern of every small shape: recoverable iff at most `ps` shards lost.
    #[test]
    fn every_erasure_pattern_small_shapes() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        for ds in 1..=6 {
            for ps in 0..=4 {
                let n = ds + ps;
                let data: Vec<Vec<u8>> = (0..ds)
                    .map(|_| (0..67).map(|_| rng.random()).collect())
                    .collect();
                let mut code = Gf8Code::nanors(ds, ps).unwrap();
                for mask in 0u32..(1 << n) {
                    let lost: Vec<usize> = (0..n).filter(|b| mask & (1 << b) != 0).collect();
                    let lost_data = lost.iter().filter(|&&l| l < ds).count();
                    let lost_parity = lost.len() - lost_data;
                    let r = roundtrip(&mut code, &data, &lost);
                    if lost_data == 0 || lost_data <= ps - lost_parity {
                        r.unwrap();
                    } else {
                        assert!(
                            matches!(r, Err(FecError::TooFewShards { .. })),
                            "{ds}+{ps} {lost:?}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// Random shapes up to 255 shards: every kernel encodes like the scalar one, and recovers
        /// a random set of up to `ps` lost data shards.
        #[test]
        fn simd_matches_scalar_and_recovers(
            ds in 1usize..200, extra in 0usize..60, len in 1usize..1500, seed in any::<u64>(),
        ) {
            let ps = extra.min(MAX_SHARDS - ds);
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let data: Vec<Vec<u8>> =
                (0..ds).map(|_| (0..len).map(|_| rng.random()).collect()).collect();
            let mut scalar = Gf8Code::nanors(ds, ps).unwrap().with_kernel(Kernel::Scalar).unwrap();
            let want = encode_vecs(&mut scalar, &data);
            let mut lost: Vec<usize> = (0..ds).collect();
            shuffle(&mut lost, &mut rng);
            lost.truncate(rng.random_range(0..=ps.min(ds)));
            for kernel in Kernel::available() {
                let mut code = Gf8Code::nanors(ds, ps).unwrap().with_kernel(kernel).unwrap();
                prop_assert_eq!(&encode_vecs(&mut code, &data), &want, "kernel {}", kernel);
                roundtrip(&mut code, &data, &lost).unwrap();
            }
        }
    }

    #[test]
    fn contiguous_block_matches_slices() {
        let (ds, ps, len) = (10, 3, 100);
        let data = vector_data(ds, len);
        let mut code = Gf8Code::nanors(ds, ps).unwrap();
        let parity = encode_vecs(&mut code, &data);
        let mut block: Vec<u8> = data.concat();
        block.resize((ds + ps) * len, 0);
        code.encode_block(&mut block, len).unwrap();
        assert_eq!(&block[ds * len..], parity.concat().as_slice());
        let original = block.clone();
        block[2 * len..4 * len].fill(0);
        block[7 * len..8 * len].fill(0);
        let mut present = [true; 13];
        present[2] = false;
        present[3] = false;
        present[7] = false;
        code.reconstruct_block(&mut block, len, &mut present)
            .unwrap();
        assert_eq!(block, original);
    }
}
