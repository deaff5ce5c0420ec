//! The portable kernel: one 256-byte product-table row per coefficient.

use super::Mode;
use crate::fec::field::MUL;

/// Columns `start..end` of `outputs[r] (=|^=) Σ_i coefs[r·n + i] · inputs[i]`.
/// Shapes were checked by [`super::mul_matrix`].
pub(crate) fn mul_matrix_range(
    coefs: &[u8],
    inputs: &[&[u8]],
    outputs: &mut [&mut [u8]],
    start: usize,
    end: usize,
    mode: Mode,
) {
    let n = inputs.len();
    for (r, out) in outputs.iter_mut().enumerate() {
        let out = &mut out[start..end];
        if mode == Mode::Overwrite {
            out.fill(0);
        }
        for (input, &c) in inputs.iter().zip(&coefs[r * n..(r + 1) * n]) {
            match c {
                0 => {}
                1 => out
                    .iter_mut()
                    .zip(&input[start..end])
                    .for_each(|(o, &x)| *o ^= x),
                _ => {
                    let row = &MUL[c as usize];
                    out.iter_mut()
                        .zip(&input[start..end])
                        .for_each(|(o, &x)| *o ^= row[x as usize]);
                }
            }
        }
    }
}
