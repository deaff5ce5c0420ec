//! GF(2^8) matrix–vector kernels: `out[r] (=|^=) Σ_i coef[r][i] · in[i]`, byte-wise over shards.
//!
//! One operation serves every code in [`super`]: encoding is the parity rows times the data
//! shards, recovery is a syndrome pass and an inverse-matrix pass. The kernels differ only in
//! how they multiply a vector of bytes by a constant:
//!
//! | Kernel        | Multiply                            | Bytes per step | Needs            |
//! |---------------|-------------------------------------|----------------|------------------|
//! | `Scalar`      | 256-byte product-table row lookups  | 1              | —                |
//! | `Ssse3`       | PSHUFB split nibble                 | 2 × 16         | SSSE3            |
//! | `Avx2`        | VPSHUFB split nibble                | 2 × 32         | AVX2             |
//! | `Avx2Gfni`    | VGF2P8AFFINEQB (one op per multiply)| 2 × 32         | AVX2 + GFNI      |
//! | `Avx512Gfni`  | VGF2P8AFFINEQB on zmm               | 2 × 64         | AVX-512BW + GFNI |
//!
//! The SIMD kernels block the outputs: a column chunk of every input is loaded once and
//! multiplied into up to four (eight for AVX-512) accumulators held in registers, so the
//! inner loop touches memory only for the input chunk and the per-coefficient tables
//! (L1-resident statics indexed by the coefficient). Columns that do not fill a chunk are
//! finished by the scalar kernel.
//!
//! Kernels are chosen at run time after a CPU check ([`Kernel::detect`]); a kernel that the
//! CPU lacks can never be selected ([`Kernel::is_supported`] guards every constructor).

use std::fmt;

#[forbid(unsafe_code)]
pub(crate) mod scalar;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86;

/// A GF(2^8) multiply–accumulate implementation, named after its instruction set.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Kernel {
    /// Portable table lookups; the reference every other kernel is tested against.
    Scalar,
    /// 128-bit PSHUFB split-nibble multiply.
    Ssse3,
    /// 256-bit VPSHUFB split-nibble multiply.
    Avx2,
    /// 256-bit GF2P8AFFINEQB: multiply by a constant as an 8×8 bit-matrix product.
    Avx2Gfni,
    /// 512-bit GF2P8AFFINEQB.
    Avx512Gfni,
}

impl Kernel {
    /// Every kernel, slowest first.
    pub const ALL: [Kernel; 5] = [
        Kernel::Scalar,
        Kernel::Ssse3,
        Kernel::Avx2,
        Kernel::Avx2Gfni,
        Kernel::Avx512Gfni,
    ];

    /// Whether this CPU can run the kernel.
    pub fn is_supported(self) -> bool {
        match self {
            Kernel::Scalar => true,
            #[cfg(target_arch = "x86_64")]
            Kernel::Ssse3 => std::arch::is_x86_feature_detected!("ssse3"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => std::arch::is_x86_feature_detected!("avx2"),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Gfni => {
                std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Gfni => {
                std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512bw")
                    && std::arch::is_x86_feature_detected!("gfni")
            }
            #[cfg(not(target_arch = "x86_64"))]
            _ => false,
        }
    }

    /// The kernels this CPU can run, slowest first.
    pub fn available() -> impl Iterator<Item = Kernel> {
        Self::ALL.into_iter().filter(|k| k.is_supported())
    }

    /// The fastest kernel this CPU can run.
    ///
    /// Preference order: AVX-512+GFNI, AVX2+GFNI, AVX2, SSSE3, scalar. Measured on the CI
    /// machine (see docs/benchmarks.md); GFNI does one instruction per multiply where the
    /// split-nibble kernels need two shuffles, two masks and a shift.
    pub fn detect() -> Kernel {
        Self::available().last().unwrap_or(Kernel::Scalar)
    }

    /// Short lowercase name, as used in logs and bench ids.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar",
            Kernel::Ssse3 => "ssse3",
            Kernel::Avx2 => "avx2",
            Kernel::Avx2Gfni => "avx2-gfni",
            Kernel::Avx512Gfni => "avx512-gfni",
        }
    }
}

impl fmt::Display for Kernel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Whether the kernel adds into the outputs or replaces them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// `out = Σ coef · in`
    Overwrite,
    /// `out ^= Σ coef · in`
    Accumulate,
}

/// `outputs[r][..len] (=|^=) Σ_i coefs[r * inputs.len() + i] · inputs[i][..len]`.
///
/// # Panics
/// When the shapes disagree: `coefs.len() != outputs.len() * inputs.len()`, or a slice is
/// shorter than `len`, or `kernel` is not supported by this CPU. Callers (the codes in
/// [`super`]) validate shapes first and turn mismatches into [`super::FecError`]s, so a panic
/// here is a bug in this crate, never a consequence of peer input.
pub(crate) fn mul_matrix(
    kernel: Kernel,
    coefs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    len: usize,
    mode: Mode,
) {
    assert_eq!(
        coefs.len(),
        outputs.len() * inputs.len(),
        "coefficient matrix shape"
    );
    assert!(
        inputs.iter().all(|s| s.len() >= len),
        "input shorter than len"
    );
    assert!(
        outputs.iter().all(|s| s.len() >= len),
        "output shorter than len"
    );
    if outputs.is_empty() || len == 0 {
        return;
    }
    if inputs.is_empty() {
        if mode == Mode::Overwrite {
            outputs.iter_mut().for_each(|o| o[..len].fill(0));
        }
        return;
    }
    assert!(
        kernel.is_supported(),
        "kernel {kernel} not supported on this CPU"
    );
    let done = match kernel {
        Kernel::Scalar => 0,
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `is_supported` was checked above, so the CPU has the instructions the kernel
        // is compiled for; the shape asserts above are the kernels' documented preconditions.
        simd => unsafe { x86::mul_matrix(simd, coefs, inputs, outputs, len, mode) },
        #[cfg(not(target_arch = "x86_64"))]
        _ => 0,
    };
    if done < len {
        scalar::mul_matrix_range(coefs, inputs, outputs, done, len, mode);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference(coefs: &[u8], inputs: &[Vec<u8>], rows: usize, len: usize) -> Vec<Vec<u8>> {
        let n = inputs.len();
        (0..rows)
            .map(|r| {
                (0..len)
                    .map(|b| {
                        (0..n).fold(0u8, |acc, i| {
                            acc ^ crate::fec::field::mul(coefs[r * n + i], inputs[i][b])
                        })
                    })
                    .collect()
            })
            .collect()
    }

    fn run(kernel: Kernel, coefs: &[u8], inputs: &[Vec<u8>], outs: &mut [Vec<u8>], mode: Mode) {
        let len = inputs.first().map_or(0, Vec::len);
        let ins: Vec<&[u8]> = inputs.iter().map(Vec::as_slice).collect();
        let mut os: Vec<&mut [u8]> = outs.iter_mut().map(Vec::as_mut_slice).collect();
        mul_matrix(kernel, coefs, &ins, &mut os, len, mode);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]
        /// Every kernel this CPU supports equals the byte-wise field definition, for random
        /// shapes, odd lengths (exercising the scalar tail) and both modes.
        #[test]
        fn kernels_match_definition(
            n in 1usize..40, rows in 1usize..12, len in 0usize..700, seed in any::<u64>(),
            acc in any::<bool>(),
        ) {
            use rand::{RngExt, SeedableRng};
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
            let coefs: Vec<u8> = (0..rows * n).map(|_| rng.random()).collect();
            let inputs: Vec<Vec<u8>> =
                (0..n).map(|_| (0..len).map(|_| rng.random()).collect()).collect();
            let start: Vec<Vec<u8>> =
                (0..rows).map(|_| (0..len).map(|_| rng.random()).collect()).collect();
            let mut want = reference(&coefs, &inputs, rows, len);
            let mode = if acc { Mode::Accumulate } else { Mode::Overwrite };
            if acc {
                for (w, s) in want.iter_mut().zip(&start) {
                    w.iter_mut().zip(s).for_each(|(a, b)| *a ^= b);
                }
            }
            for kernel in Kernel::available() {
                let mut outs = start.clone();
                run(kernel, &coefs, &inputs, &mut outs, mode);
                prop_assert_eq!(&outs, &want, "kernel {}", kernel);
            }
        }
    }

    #[test]
    fn detect_is_supported_and_named() {
        let k = Kernel::detect();
        assert!(k.is_supported());
        assert!(Kernel::available().any(|a| a == Kernel::Scalar));
        assert_eq!(Kernel::Avx512Gfni.to_string(), "avx512-gfni");
    }
}
