//! Arithmetic in GF(2^8) with the primitive polynomial 0x11D (x^8 + x^4 + x^3 + x^2 + 1) and
//! generator 2: the field of nanors (`deps/obl/gf2_8_tables.h`, "generated with polynomial
//! 285") and therefore of moonlight-common-c's video and audio FEC.
//!
//! All tables are built at compile time. Besides log/exp and a full 64 KiB product table for
//! the scalar kernel, two per-constant tables feed the SIMD kernels:
//!
//! ```text
//! NIBBLE[c] = [ c·0x00, c·0x01, …, c·0x0f | c·0x00, c·0x10, …, c·0xf0 ]   (32 bytes)
//!             └──── low-nibble products ───┘ └──── high-nibble products ───┘
//! c·x = NIBBLE[c][x & 15] ^ NIBBLE[c][16 + (x >> 4)]     (PSHUFB split-nibble multiply)
//!
//! AFFINE[c] = 8×8 bit matrix of "multiply by c" as GF2P8AFFINEQB wants it:
//!             byte 7-i of the u64 holds row i (output bit i), bit j of that row = bit i of c·2^j
//! ```

/// The field's primitive polynomial, with the x^8 term.
pub const POLY: u16 = 0x11d;

const fn build_exp() -> [u8; 512] {
    let mut exp = [0u8; 512];
    let mut x: u16 = 1;
    let mut i = 0;
    while i < 255 {
        exp[i] = x as u8;
        exp[i + 255] = x as u8;
        x <<= 1;
        if x & 0x100 != 0 {
            x ^= POLY;
        }
        i += 1;
    }
    // exp[510], exp[511] are never read through `mul` (log sums stay ≤ 508) but keep the
    // table total so a stray index cannot read garbage.
    exp[510] = exp[0];
    exp[511] = exp[1];
    exp
}

const fn build_log(exp: &[u8; 512]) -> [u8; 256] {
    let mut log = [0u8; 256];
    let mut i = 0;
    while i < 255 {
        log[exp[i] as usize] = i as u8;
        i += 1;
    }
    log
}

/// `EXP[k] = 2^k`, doubled so that `EXP[LOG[a] + LOG[b]]` needs no reduction.
pub(crate) static EXP: [u8; 512] = build_exp();
/// `LOG[a]` for `a != 0`; `LOG[0]` is unused (0).
pub(crate) static LOG: [u8; 256] = build_log(&build_exp());

const fn mul_const(a: u8, b: u8) -> u8 {
    // Carry-less multiply with reduction; used only at compile time.
    let mut a = a as u16;
    let mut b = b;
    let mut p: u16 = 0;
    while b != 0 {
        if b & 1 != 0 {
            p ^= a;
        }
        a <<= 1;
        if a & 0x100 != 0 {
            a ^= POLY;
        }
        b >>= 1;
    }
    p as u8
}

const fn build_mul() -> [[u8; 256]; 256] {
    let mut t = [[0u8; 256]; 256];
    let mut a = 0;
    while a < 256 {
        let mut b = 0;
        while b < 256 {
            t[a][b] = mul_const(a as u8, b as u8);
            b += 1;
        }
        a += 1;
    }
    t
}

const fn build_nibble() -> [[u8; 32]; 256] {
    let mut t = [[0u8; 32]; 256];
    let mut c = 0;
    while c < 256 {
        let mut x = 0;
        while x < 16 {
            t[c][x] = mul_const(c as u8, x as u8);
            t[c][16 + x] = mul_const(c as u8, (x << 4) as u8);
            x += 1;
        }
        c += 1;
    }
    t
}

const fn build_affine() -> [u64; 256] {
    let mut t = [0u64; 256];
    let mut c = 0;
    while c < 256 {
        let mut m: u64 = 0;
        let mut i = 0;
        while i < 8 {
            let mut row: u64 = 0;
            let mut j = 0;
            while j < 8 {
                let col = mul_const(c as u8, 1u8 << j);
                row |= (((col >> i) & 1) as u64) << j;
                j += 1;
            }
            m |= row << (8 * (7 - i));
            i += 1;
        }
        t[c] = m;
        c += 1;
    }
    t
}

/// `MUL[a][b] = a·b`. 64 KiB; the scalar kernel reads one 256-byte row per coefficient.
pub(crate) static MUL: [[u8; 256]; 256] = build_mul();
/// Split-nibble product tables for PSHUFB kernels (layout in the module docs).
pub(crate) static NIBBLE: [[u8; 32]; 256] = build_nibble();
/// Bit matrices for GF2P8AFFINEQB (layout in the module docs).
pub(crate) static AFFINE: [u64; 256] = build_affine();

/// `a · b` in GF(2^8)/0x11D.
#[inline]
pub fn mul(a: u8, b: u8) -> u8 {
    MUL[a as usize][b as usize]
}

/// The multiplicative inverse of `a`, or `None` for 0.
#[inline]
pub fn inv(a: u8) -> Option<u8> {
    (a != 0).then(|| EXP[255 - LOG[a as usize] as usize])
}

/// `a / b`, or `None` when `b` is 0.
#[inline]
pub fn div(a: u8, b: u8) -> Option<u8> {
    if b == 0 {
        None
    } else if a == 0 {
        Some(0)
    } else {
        Some(EXP[(LOG[a as usize] as usize + 255 - LOG[b as usize] as usize) % 255])
    }
}

/// Inverts the `n`×`n` row-major matrix `m` in place by Gauss–Jordan elimination.
/// Returns `false` (leaving `m` unspecified) when the matrix is singular.
///
/// `work` must hold at least `n * n` bytes; it is used as the identity that becomes the inverse.
pub(crate) fn invert_matrix(m: &mut [u8], n: usize, work: &mut [u8]) -> bool {
    debug_assert!(m.len() >= n * n && work.len() >= n * n);
    let out = &mut work[..n * n];
    out.fill(0);
    for i in 0..n {
        out[i * n + i] = 1;
    }
    for col in 0..n {
        // Find a pivot row.
        let Some(pivot) = (col..n).find(|&r| m[r * n + col] != 0) else {
            return false;
        };
        if pivot != col {
            for k in 0..n {
                m.swap(pivot * n + k, col * n + k);
                out.swap(pivot * n + k, col * n + k);
            }
        }
        let Some(scale) = inv(m[col * n + col]) else {
            return false;
        };
        for k in 0..n {
            m[col * n + k] = mul(m[col * n + k], scale);
            out[col * n + k] = mul(out[col * n + k], scale);
        }
        for r in 0..n {
            let f = m[r * n + col];
            if r == col || f == 0 {
                continue;
            }
            let row = &MUL[f as usize];
            for k in 0..n {
                m[r * n + k] ^= row[m[col * n + k] as usize];
                out[r * n + k] ^= row[out[col * n + k] as usize];
            }
        }
    }
    m[..n * n].copy_from_slice(out);
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_the_field() {
        // 0x8e = inv(2) in this field (docs/gamestream-protocol-notes.md "Video FEC code").
        assert_eq!(mul(0x8e, 2), 1);
        assert_eq!(inv(2), Some(0x8e));
        assert_eq!(inv(3), Some(0xf4));
        assert_eq!(EXP[8], 0x1d);
        assert_eq!(inv(0), None);
        for a in 1..=255u8 {
            let ia = inv(a).unwrap();
            assert_eq!(mul(a, ia), 1, "a={a:#x}");
            assert_eq!(div(a, a), Some(1));
            for b in [1u8, 2, 3, 0x53, 0xca, 0xff] {
                assert_eq!(mul(a, b), mul(b, a));
                assert_eq!(
                    EXP[LOG[a as usize] as usize + LOG[b as usize] as usize],
                    mul(a, b)
                );
            }
        }
    }

    #[test]
    fn nibble_and_affine_tables_multiply() {
        for c in 0..=255u8 {
            for x in 0..=255u8 {
                let n = &NIBBLE[c as usize];
                assert_eq!(n[(x & 15) as usize] ^ n[16 + (x >> 4) as usize], mul(c, x));
                // Software model of GF2P8AFFINEQB with imm8 = 0.
                let m = AFFINE[c as usize];
                let mut y = 0u8;
                for i in 0..8 {
                    let row = (m >> (8 * (7 - i))) as u8;
                    y |= (((row & x).count_ones() & 1) as u8) << i;
                }
                assert_eq!(y, mul(c, x), "c={c:#x} x={x:#x}");
            }
        }
    }

    #[test]
    fn gauss_jordan_inverts_and_detects_singular() {
        let mut m = [0x8e, 0xf4, 0xf4, 0x8e];
        let orig = m;
        let mut w = [0u8; 4];
        assert!(invert_matrix(&mut m, 2, &mut w));
        // m · orig = I
        for r in 0..2 {
            for c in 0..2 {
                let v = mul(m[r * 2], orig[c]) ^ mul(m[r * 2 + 1], orig[2 + c]);
                assert_eq!(v, u8::from(r == c));
            }
        }
        let mut s = [1, 2, 2, 4];
        assert!(!invert_matrix(&mut s, 2, &mut w));
    }
}
