//! FEC workloads shared by the criterion group and the report: our GF(2^8) code and the same
//! multiply–add work done by `reed-solomon-erasure` (features `simd-accel`, compiled by its
//! build script with `-march=haswell`).

use punktfunk_engine::fec::{FecEngine, Kernel, gf8::Gf8Code};
use reed_solomon_erasure::galois_8::ReedSolomon;

/// A block of `data + parity` shards of `len` bytes with its encoders.
pub struct Gf8Workload {
    /// Data shards.
    pub data: Vec<Vec<u8>>,
    /// Parity output buffers.
    pub parity: Vec<Vec<u8>>,
    /// Our code.
    pub ours: Gf8Code,
    /// reed-solomon-erasure with the same shape.
    pub baseline: ReedSolomon,
}

impl Gf8Workload {
    /// `data + parity` shards of `len` random bytes (seeded), our code on `kernel`.
    pub fn new(data: usize, parity: usize, len: usize, kernel: Kernel) -> Self {
        Self {
            data: crate::random_shards(data, len, 42),
            parity: vec![vec![0; len]; parity],
            ours: Gf8Code::nanors(data, parity)
                .and_then(|c| c.with_kernel(kernel))
                .expect("bench shapes are valid and the kernel was taken from Kernel::available"),
            baseline: ReedSolomon::new(data, parity).expect("bench shapes are valid"),
        }
    }

    /// Encodes with our code.
    pub fn encode_ours(&mut self) {
        let ins: Vec<&[u8]> = self.data.iter().map(Vec::as_slice).collect();
        let mut outs: Vec<&mut [u8]> = self.parity.iter_mut().map(Vec::as_mut_slice).collect();
        self.ours
            .encode(&ins, &mut outs)
            .expect("shapes match by construction");
    }

    /// Encodes with reed-solomon-erasure.
    pub fn encode_baseline(&mut self) {
        self.baseline
            .encode_sep(&self.data, &mut self.parity)
            .expect("shapes match");
    }
}

/// A received block with `lost` data shards missing, ready to be recovered repeatedly.
pub struct Gf8Recovery {
    shards: Vec<Vec<u8>>,
    lost: Vec<usize>,
    present: Vec<bool>,
    ours: Gf8Code,
    baseline: ReedSolomon,
    baseline_shards: Vec<Vec<u8>>,
}

impl Gf8Recovery {
    /// Encodes a random block with both codes and marks the first `lost` data shards missing.
    pub fn new(data: usize, parity: usize, len: usize, lost: usize, kernel: Kernel) -> Self {
        let mut w = Gf8Workload::new(data, parity, len, kernel);
        w.encode_ours();
        let shards: Vec<Vec<u8>> = w.data.iter().chain(&w.parity).cloned().collect();
        w.encode_baseline();
        let baseline_shards: Vec<Vec<u8>> = w.data.iter().chain(&w.parity).cloned().collect();
        // Spread the losses over the block, as random loss would.
        let lost: Vec<usize> = (0..lost).map(|k| k * data / lost.max(1)).collect();
        Self {
            shards,
            lost,
            present: vec![true; data + parity],
            ours: w.ours,
            baseline: w.baseline,
            baseline_shards,
        }
    }

    /// Recovers with our code (presence flags reset each call).
    pub fn recover_ours(&mut self) {
        self.present.fill(true);
        for &l in &self.lost {
            self.present[l] = false;
        }
        let mut refs: Vec<&mut [u8]> = self.shards.iter_mut().map(Vec::as_mut_slice).collect();
        self.ours
            .reconstruct(&mut refs, &mut self.present)
            .expect("enough parity by construction");
    }

    /// Recovers with reed-solomon-erasure.
    pub fn recover_baseline(&mut self) {
        let lost = &self.lost;
        let mut refs: Vec<(&mut [u8], bool)> = self
            .baseline_shards
            .iter_mut()
            .enumerate()
            .map(|(i, s)| (s.as_mut_slice(), !lost.contains(&i)))
            .collect();
        self.baseline
            .reconstruct_data(&mut refs)
            .expect("enough parity by construction");
    }

    /// Whether both recoveries produced the original data (checked once after timing).
    pub fn verify(&self, data: &[Vec<u8>]) -> bool {
        data.iter()
            .enumerate()
            .all(|(i, d)| &self.shards[i] == d && &self.baseline_shards[i] == d)
    }
}
