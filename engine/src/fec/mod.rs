//! Erasure codes for the data plane.
//!
//! | Code | Field | Shards per block | Used by |
//! |------|-------|------------------|---------|
//! | [`gf8::Gf8Code::nanors`] | GF(2^8)/0x11D, Cauchy `1/((ps+i) ⊕ j)` | ≤ 255 | GameStream video (byte-exact with moonlight-common-c) |
//! | [`audio::AudioFec`] | GF(2^8)/0x11D, fixed 4+2 rows | 6 | GameStream audio |
//! | [`gf16::Gf16Code`] | GF(2^16), Leopard FFT (reed-solomon-simd) | ≤ 65535 | punktfunk/1 |
//!
//! All codes are systematic: data shards travel as they are, parity shards follow. They share
//! the [`FecEngine`] interface, validate every shape before touching memory, and report bad
//! input as [`FecError`] instead of panicking, since shard counts and sizes come off the wire.
//!
//! This module does not decide *how much* parity to send (the packetizers and the adaptive FEC
//! controller do) and does not lay shards out in packets (see [`crate::gamestream::wire`]).

#[forbid(unsafe_code)]
pub mod adaptive;
#[forbid(unsafe_code)]
pub mod audio;
#[forbid(unsafe_code)]
pub mod field;
#[forbid(unsafe_code)]
pub mod gf16;
#[forbid(unsafe_code)]
pub mod gf8;
// SIMD intrinsics behind a run-time CPU check: the only `unsafe` outside `io`.
#[allow(unsafe_code)]
pub mod kernel;

pub use kernel::Kernel;

/// An erasure code over equal-sized shards: `data_shards()` data followed by
/// `parity_shards()` parity.
pub trait FecEngine {
    /// Number of data shards per block.
    fn data_shards(&self) -> usize;
    /// Number of parity shards per block.
    fn parity_shards(&self) -> usize;
    /// Computes every parity shard from the data shards.
    ///
    /// All shards must have the same length (codes may add constraints, such as even
    /// lengths for GF(2^16)).
    fn encode(&mut self, data: &[&[u8]], parity: &mut [&mut [u8]]) -> Result<(), FecError>;
    /// Restores the missing data shards in place.
    ///
    /// `shards` holds all `data + parity` shards in order, each the same length; `present[i]`
    /// says whether shard `i` arrived. Missing data shards are overwritten and marked present.
    /// Missing parity shards are left as they are.
    fn reconstruct(
        &mut self,
        shards: &mut [&mut [u8]],
        present: &mut [bool],
    ) -> Result<(), FecError>;
}

/// Why an erasure-code operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FecError {
    /// The requested data/parity shape cannot be built (local misuse or a hostile shard count).
    #[error("unsupported FEC shape {data}+{parity}: {reason}")]
    Shape {
        /// Data shards asked for.
        data: usize,
        /// Parity shards asked for.
        parity: usize,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A call passed the wrong number of shards or presence flags.
    #[error("expected {expected} shards, got {got}")]
    ShardCount {
        /// Shards the code needs.
        expected: usize,
        /// Shards passed.
        got: usize,
    },
    /// Shards of different lengths, or a length the code cannot use.
    #[error("shard {index} has {got} bytes, expected {expected}")]
    ShardSize {
        /// Index of the offending shard.
        index: usize,
        /// Length required.
        expected: usize,
        /// Length found.
        got: usize,
    },
    /// Fewer shards arrived than the code needs to recover the block.
    #[error("unrecoverable: {missing} data shards missing, only {available} parity shards present")]
    TooFewShards {
        /// Data shards missing.
        missing: usize,
        /// Parity shards available.
        available: usize,
    },
    /// The recovery matrix for this erasure pattern is singular (only possible for codes that
    /// are not MDS for every pattern).
    #[error("recovery matrix is singular for this erasure pattern")]
    Singular,
    /// The kernel asked for cannot run on this CPU.
    #[error("kernel {0} is not supported on this CPU")]
    UnsupportedKernel(Kernel),
    /// The GF(2^16) backend refused the operation.
    #[error("GF(2^16) backend: {0}")]
    Backend(String),
}

/// Checks an encode call: `data_shards` data and `parity_shards` parity slices, all as long as
/// the first data shard. Returns that length. (`data_shards ≥ 1` for every code.)
pub(crate) fn check_encode(
    data_shards: usize,
    parity_shards: usize,
    data: &[&[u8]],
    parity: &[&mut [u8]],
) -> Result<usize, FecError> {
    count(data_shards, data.len())?;
    count(parity_shards, parity.len())?;
    let len = data.first().map_or(0, |d| d.len());
    check_sizes(data, 0, len)?;
    check_sizes(parity, data_shards, len)?;
    Ok(len)
}

/// Checks a reconstruct call's counts: `total` shards and as many presence flags.
pub(crate) fn check_reconstruct_counts(
    total: usize,
    shards: &[&mut [u8]],
    present: &[bool],
) -> Result<(), FecError> {
    count(total, shards.len())?;
    count(total, present.len())
}

fn count(expected: usize, got: usize) -> Result<(), FecError> {
    if expected == got {
        Ok(())
    } else {
        Err(FecError::ShardCount { expected, got })
    }
}

/// Checks that `shards` are all `len` bytes long.
pub(crate) fn check_sizes<S: AsRef<[u8]>>(
    shards: &[S],
    first_index: usize,
    len: usize,
) -> Result<(), FecError> {
    match shards.iter().position(|s| s.as_ref().len() != len) {
        None => Ok(()),
        Some(i) => Err(FecError::ShardSize {
            index: first_index + i,
            expected: len,
            got: shards[i].as_ref().len(),
        }),
    }
}
