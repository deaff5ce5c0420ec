//! GameStream's audio FEC: 4 data + 2 parity shards per block of 4 consecutive RTP packets.
//!
//! moonlight-common-c overwrites nanors' 4+2 Cauchy rows with fixed ones (`RtpAudioQueue.c`;
//! docs/gamestream-protocol-notes.md "Audio FEC"). They are the parity rows of Luigi Rizzo's
//! systematic Vandermonde code (`fec.c`) for k = 4, n = 6 with evaluation points {0, α^0, …, α^4};
//! the test below rebuilds them from that definition rather than trusting the constants.

use super::gf8::Gf8Code;
use super::{FecEngine, FecError};

/// Data shards per audio FEC block.
pub const DATA_SHARDS: usize = 4;
/// Parity shards per audio FEC block.
pub const PARITY_SHARDS: usize = 2;
/// The fixed parity rows.
pub const PARITY_ROWS: [[u8; DATA_SHARDS]; PARITY_SHARDS] =
    [[0x77, 0x40, 0x38, 0x0e], [0xc7, 0xa7, 0x0d, 0x6c]];

/// The 4+2 audio code. Parity is computed over the four payloads as sent (ciphertext when audio
/// encryption is on), which must all have the same length.
#[derive(Debug, Clone)]
pub struct AudioFec(Gf8Code);

impl AudioFec {
    /// The code, on the fastest kernel this CPU supports.
    pub fn new() -> Self {
        Self(
            Gf8Code::from_parity_rows(DATA_SHARDS, &PARITY_ROWS)
                .expect("4 data + 2 parity rows of length 4 is a valid shape"),
        )
    }
}

impl Default for AudioFec {
    fn default() -> Self {
        Self::new()
    }
}

impl FecEngine for AudioFec {
    fn data_shards(&self) -> usize {
        DATA_SHARDS
    }

    fn parity_shards(&self) -> usize {
        PARITY_SHARDS
    }

    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), FecError> {
        self.0.encode(data, parity)
    }

    fn reconstruct(
        &mut self,
        shards: &mut [&mut [u8]],
        present: &mut [bool],
    ) -> Result<(), FecError> {
        self.0.reconstruct(shards, present)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fec::field::{self, EXP};

    /// Rizzo's construction: V[r][c] = x_r^c with x = {0, α^0, …, α^4}; G = V · V_top⁻¹.
    #[test]
    fn rows_are_rizzo_vandermonde() {
        let points: Vec<u8> = std::iter::once(0).chain((0..5).map(|k| EXP[k])).collect();
        let pow = |x: u8, e: usize| (0..e).fold(1u8, |acc, _| field::mul(acc, x));
        let v: Vec<u8> = points
            .iter()
            .flat_map(|&x| (0..4).map(move |c| pow(x, c)))
            .collect();
        let mut top = v[..16].to_vec();
        let mut work = [0u8; 16];
        assert!(field::invert_matrix(&mut top, 4, &mut work));
        for r in 0..2 {
            for c in 0..4 {
                let g = (0..4).fold(0u8, |acc, k| {
                    acc ^ field::mul(v[(4 + r) * 4 + k], top[k * 4 + c])
                });
                assert_eq!(g, PARITY_ROWS[r][c], "row {r} col {c}");
            }
        }
    }

    /// Every pattern of up to two lost shards is recovered byte-exactly.
    #[test]
    fn recovers_every_pattern_of_two() {
        let data: Vec<Vec<u8>> = (0..4)
            .map(|i| (0..77).map(|b| (i * 53 + b * 11 + 3) as u8).collect())
            .collect();
        let mut fec = AudioFec::new();
        let mut parity = vec![vec![0u8; 77]; 2];
        {
            let ins: Vec<&[u8]> = data.iter().map(Vec::as_slice).collect();
            let mut outs: Vec<&mut [u8]> = parity.iter_mut().map(Vec::as_mut_slice).collect();
            fec.encode(&ins, &mut outs).unwrap();
        }
        for a in 0..6 {
            for b in a..6 {
                let mut shards: Vec<Vec<u8>> = data.iter().chain(&parity).cloned().collect();
                let mut present = [true; 6];
                for l in [a, b] {
                    present[l] = false;
                    shards[l].fill(0);
                }
                let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(Vec::as_mut_slice).collect();
                fec.reconstruct(&mut refs, &mut present).unwrap();
                assert_eq!(&shards[..4], &data[..], "lost {a},{b}");
            }
        }
    }
}
