//! x86-64 SIMD kernels.
//!
//! Each kernel walks the outputs in groups of `R` rows. For every column chunk it keeps `2·R`
//! accumulators in registers and streams the inputs through them once:
//!
//! ```text
//!            chunk k (2 vectors)
//! in[0]   ───────[x0 x1]──────┐   per input: load 2 vectors, (split nibbles),
//! in[1]   ───────[x0 x1]──────┤   then for r in 0..R:
//!  …                          │       acc[r] ^= coef[r][i] · x      (2 ops per vector)
//! in[n-1] ───────[x0 x1]──────┘
//! out[row0 .. row0+R]  ← acc[0..R] stored once per chunk
//! ```
//!
//! Split-nibble kernels (SSSE3, AVX2) multiply with two byte shuffles into the 16-entry
//! product tables `NIBBLE[c]`; GFNI kernels use one GF2P8AFFINEQB with the bit matrix
//! `AFFINE[c]`. Both tables are static and indexed by the coefficient, so recovery matrices
//! computed per call need no preparation. The columns past the last whole chunk are left to the
//! scalar kernel (the return value says where it starts).

use core::arch::x86_64::*;

use super::{Kernel, Mode};
use crate::fec::field::{AFFINE, NIBBLE};

/// Runs `kernel` over the leading whole chunks of `len` and returns how many columns it did.
///
/// # Safety
/// The CPU supports `kernel` ([`Kernel::is_supported`]); `coefs.len() == outputs.len() ·
/// inputs.len()`; every input and output slice is at least `len` bytes long.
pub(crate) unsafe fn mul_matrix(
    kernel: Kernel,
    coefs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    len: usize,
    mode: Mode,
) -> usize {
    let (chunk, max_rows) = match kernel {
        Kernel::Ssse3 => (32, 4),
        Kernel::Avx2 | Kernel::Avx2Gfni => (64, 4),
        Kernel::Avx512Gfni => (128, 8),
        Kernel::Scalar => return 0,
    };
    let chunks = len / chunk;
    if chunks == 0 {
        return 0;
    }
    let n = inputs.len();
    let mut row0 = 0;
    while row0 < outputs.len() {
        let rows = (outputs.len() - row0).min(max_rows);
        let group = Group {
            coefs: &coefs[row0 * n..(row0 + rows) * n],
            inputs,
            outputs: &mut outputs[row0..row0 + rows],
            chunks,
            accumulate: mode == Mode::Accumulate,
        };
        // SAFETY: forwarded from this function's contract; `group` holds exactly `rows` output
        // rows and `rows · n` coefficients, and every slice covers `chunks · chunk ≤ len` bytes.
        unsafe { group.run(kernel) };
        row0 += rows;
    }
    chunks * chunk
}

/// Up to `max_rows` outputs processed together.
struct Group<'a, 'i, 'o> {
    coefs: &'a [u8],
    inputs: &'a [&'i [u8]],
    outputs: &'a mut [&'o mut [u8]],
    chunks: usize,
    accumulate: bool,
}

macro_rules! dispatch_rows {
    ($self:ident, $f:ident, $($r:literal),+) => {
        match $self.outputs.len() {
            $($r => $f::<$r>($self.coefs, $self.inputs, out_ptrs::<$r>($self.outputs),
                              $self.chunks, $self.accumulate),)+
            _ => unreachable!("group size is bounded by max_rows"),
        }
    };
}

impl Group<'_, '_, '_> {
    /// # Safety
    /// As [`mul_matrix`], for this group.
    unsafe fn run(self, kernel: Kernel) {
        // SAFETY: (all arms) the caller guarantees CPU support for `kernel` and the shapes.
        unsafe {
            match kernel {
                Kernel::Ssse3 => dispatch_rows!(self, ssse3, 1, 2, 3, 4),
                Kernel::Avx2 => dispatch_rows!(self, avx2, 1, 2, 3, 4),
                Kernel::Avx2Gfni => dispatch_rows!(self, avx2_gfni, 1, 2, 3, 4),
                Kernel::Avx512Gfni => dispatch_rows!(self, avx512_gfni, 1, 2, 3, 4, 5, 6, 7, 8),
                Kernel::Scalar => {}
            }
        }
    }
}

fn out_ptrs<const R: usize>(outputs: &mut [&mut [u8]]) -> [*mut u8; R] {
    let mut ptrs = [core::ptr::null_mut(); R];
    for (p, o) in ptrs.iter_mut().zip(outputs.iter_mut()) {
        *p = o.as_mut_ptr();
    }
    ptrs
}

/// Split-nibble tables of coefficient `c`: (low-nibble products, high-nibble products).
#[inline(always)]
fn nibble_ptr(c: u8) -> *const u8 {
    NIBBLE[c as usize].as_ptr()
}

#[target_feature(enable = "ssse3")]
unsafe fn ssse3<const R: usize>(
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: [*mut u8; R],
    chunks: usize,
    accumulate: bool,
) {
    let n = inputs.len();
    let mask = _mm_set1_epi8(0x0f);
    for k in 0..chunks {
        let off = k * 32;
        let mut a0 = [_mm_setzero_si128(); R];
        let mut a1 = [_mm_setzero_si128(); R];
        // SAFETY: every output row is ≥ chunks·32 bytes long (caller contract), `off + 32` stays
        // inside it; unaligned loads/stores have no alignment requirement.
        unsafe {
            if accumulate {
                for r in 0..R {
                    a0[r] = _mm_loadu_si128(outs[r].add(off).cast());
                    a1[r] = _mm_loadu_si128(outs[r].add(off + 16).cast());
                }
            }
            for i in 0..n {
                let p = inputs.get_unchecked(i).as_ptr().add(off);
                let x0 = _mm_loadu_si128(p.cast());
                let x1 = _mm_loadu_si128(p.add(16).cast());
                let l0 = _mm_and_si128(x0, mask);
                let h0 = _mm_and_si128(_mm_srli_epi64::<4>(x0), mask);
                let l1 = _mm_and_si128(x1, mask);
                let h1 = _mm_and_si128(_mm_srli_epi64::<4>(x1), mask);
                for r in 0..R {
                    let t = nibble_ptr(*coefs.get_unchecked(r * n + i));
                    let tl = _mm_loadu_si128(t.cast());
                    let th = _mm_loadu_si128(t.add(16).cast());
                    let p0 = _mm_xor_si128(_mm_shuffle_epi8(tl, l0), _mm_shuffle_epi8(th, h0));
                    let p1 = _mm_xor_si128(_mm_shuffle_epi8(tl, l1), _mm_shuffle_epi8(th, h1));
                    a0[r] = _mm_xor_si128(a0[r], p0);
                    a1[r] = _mm_xor_si128(a1[r], p1);
                }
            }
            for r in 0..R {
                _mm_storeu_si128(outs[r].add(off).cast(), a0[r]);
                _mm_storeu_si128(outs[r].add(off + 16).cast(), a1[r]);
            }
        }
    }
}

#[target_feature(enable = "avx2")]
unsafe fn avx2<const R: usize>(
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: [*mut u8; R],
    chunks: usize,
    accumulate: bool,
) {
    let n = inputs.len();
    let mask = _mm256_set1_epi8(0x0f);
    for k in 0..chunks {
        let off = k * 64;
        let mut a0 = [_mm256_setzero_si256(); R];
        let mut a1 = [_mm256_setzero_si256(); R];
        // SAFETY: as in `ssse3`, with 64-byte chunks.
        unsafe {
            if accumulate {
                for r in 0..R {
                    a0[r] = _mm256_loadu_si256(outs[r].add(off).cast());
                    a1[r] = _mm256_loadu_si256(outs[r].add(off + 32).cast());
                }
            }
            for i in 0..n {
                let p = inputs.get_unchecked(i).as_ptr().add(off);
                let x0 = _mm256_loadu_si256(p.cast());
                let x1 = _mm256_loadu_si256(p.add(32).cast());
                let l0 = _mm256_and_si256(x0, mask);
                let h0 = _mm256_and_si256(_mm256_srli_epi64::<4>(x0), mask);
                let l1 = _mm256_and_si256(x1, mask);
                let h1 = _mm256_and_si256(_mm256_srli_epi64::<4>(x1), mask);
                for r in 0..R {
                    let t = nibble_ptr(*coefs.get_unchecked(r * n + i));
                    let tl = _mm256_broadcastsi128_si256(_mm_loadu_si128(t.cast()));
                    let th = _mm256_broadcastsi128_si256(_mm_loadu_si128(t.add(16).cast()));
                    let p0 =
                        _mm256_xor_si256(_mm256_shuffle_epi8(tl, l0), _mm256_shuffle_epi8(th, h0));
                    let p1 =
                        _mm256_xor_si256(_mm256_shuffle_epi8(tl, l1), _mm256_shuffle_epi8(th, h1));
                    a0[r] = _mm256_xor_si256(a0[r], p0);
                    a1[r] = _mm256_xor_si256(a1[r], p1);
                }
            }
            for r in 0..R {
                _mm256_storeu_si256(outs[r].add(off).cast(), a0[r]);
                _mm256_storeu_si256(outs[r].add(off + 32).cast(), a1[r]);
            }
        }
    }
}

#[target_feature(enable = "avx2,gfni")]
unsafe fn avx2_gfni<const R: usize>(
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: [*mut u8; R],
    chunks: usize,
    accumulate: bool,
) {
    let n = inputs.len();
    for k in 0..chunks {
        let off = k * 64;
        let mut a0 = [_mm256_setzero_si256(); R];
        let mut a1 = [_mm256_setzero_si256(); R];
        // SAFETY: as in `ssse3`, with 64-byte chunks.
        unsafe {
            if accumulate {
                for r in 0..R {
                    a0[r] = _mm256_loadu_si256(outs[r].add(off).cast());
                    a1[r] = _mm256_loadu_si256(outs[r].add(off + 32).cast());
                }
            }
            for i in 0..n {
                let p = inputs.get_unchecked(i).as_ptr().add(off);
                let x0 = _mm256_loadu_si256(p.cast());
                let x1 = _mm256_loadu_si256(p.add(32).cast());
                for r in 0..R {
                    let c = *coefs.get_unchecked(r * n + i);
                    let m = _mm256_set1_epi64x(AFFINE[c as usize] as i64);
                    a0[r] = _mm256_xor_si256(a0[r], _mm256_gf2p8affine_epi64_epi8::<0>(x0, m));
                    a1[r] = _mm256_xor_si256(a1[r], _mm256_gf2p8affine_epi64_epi8::<0>(x1, m));
                }
            }
            for r in 0..R {
                _mm256_storeu_si256(outs[r].add(off).cast(), a0[r]);
                _mm256_storeu_si256(outs[r].add(off + 32).cast(), a1[r]);
            }
        }
    }
}

#[target_feature(enable = "avx512f,avx512bw,gfni")]
unsafe fn avx512_gfni<const R: usize>(
    coefs: &[u8],
    inputs: &[&[u8]],
    outs: [*mut u8; R],
    chunks: usize,
    accumulate: bool,
) {
    let n = inputs.len();
    for k in 0..chunks {
        let off = k * 128;
        let mut a0 = [_mm512_setzero_si512(); R];
        let mut a1 = [_mm512_setzero_si512(); R];
        // SAFETY: as in `ssse3`, with 128-byte chunks.
        unsafe {
            if accumulate {
                for r in 0..R {
                    a0[r] = _mm512_loadu_si512(outs[r].add(off).cast());
                    a1[r] = _mm512_loadu_si512(outs[r].add(off + 64).cast());
                }
            }
            // Inputs in pairs: one three-way XOR (VPTERNLOGQ 0x96) folds both products into
            // the accumulator, saving one XOR per pair.
            let mut i = 0;
            while i + 1 < n {
                let p = inputs.get_unchecked(i).as_ptr().add(off);
                let q = inputs.get_unchecked(i + 1).as_ptr().add(off);
                let x0 = _mm512_loadu_si512(p.cast());
                let x1 = _mm512_loadu_si512(p.add(64).cast());
                let y0 = _mm512_loadu_si512(q.cast());
                let y1 = _mm512_loadu_si512(q.add(64).cast());
                for r in 0..R {
                    let mx =
                        _mm512_set1_epi64(AFFINE[*coefs.get_unchecked(r * n + i) as usize] as i64);
                    let my = _mm512_set1_epi64(
                        AFFINE[*coefs.get_unchecked(r * n + i + 1) as usize] as i64,
                    );
                    a0[r] = _mm512_ternarylogic_epi64::<0x96>(
                        a0[r],
                        _mm512_gf2p8affine_epi64_epi8::<0>(x0, mx),
                        _mm512_gf2p8affine_epi64_epi8::<0>(y0, my),
                    );
                    a1[r] = _mm512_ternarylogic_epi64::<0x96>(
                        a1[r],
                        _mm512_gf2p8affine_epi64_epi8::<0>(x1, mx),
                        _mm512_gf2p8affine_epi64_epi8::<0>(y1, my),
                    );
                }
                i += 2;
            }
            if i < n {
                let p = inputs.get_unchecked(i).as_ptr().add(off);
                let x0 = _mm512_loadu_si512(p.cast());
                let x1 = _mm512_loadu_si512(p.add(64).cast());
                for r in 0..R {
                    let c = *coefs.get_unchecked(r * n + i);
                    let m = _mm512_set1_epi64(AFFINE[c as usize] as i64);
                    a0[r] = _mm512_xor_si512(a0[r], _mm512_gf2p8affine_epi64_epi8::<0>(x0, m));
                    a1[r] = _mm512_xor_si512(a1[r], _mm512_gf2p8affine_epi64_epi8::<0>(x1, m));
                }
            }
            for r in 0..R {
                _mm512_storeu_si512(outs[r].add(off).cast(), a0[r]);
                _mm512_storeu_si512(outs[r].add(off + 64).cast(), a1[r]);
            }
        }
    }
}
