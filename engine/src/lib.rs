//! The punktfunk data plane.
//!
//! This crate moves encoded frames from the encoder to the wire as fast as the machine allows:
//!
//! * [`fec`]: erasure codes. GF(2^8) Cauchy Reed–Solomon that is byte-exact with the decoder in
//!   moonlight-common-c (scalar, SSSE3, AVX2 and GFNI kernels chosen at run time), the fixed 4+2
//!   audio code, and GF(2^16) Leopard-style blocks of up to 65535 shards for punktfunk/1.
//! * [`gamestream`]: GameStream's own formats and stage: `gamestream::wire` (video, audio and
//!   control-message formats as pure functions over caller-owned buffers, and the reassembly
//!   side used by tests) and `gamestream::stage` (the FEC/packetize stage for GameStream video).
//! * [`pacer`], [`ring`], [`pool`], [`pipeline`]: pure scheduling, buffers and hand-off between
//!   the capture → encode → FEC → send stages.
//! * [`pf1`]: the punktfunk/1 data plane: AES-GCM-sealed datagrams carrying one GF(2^16) FEC
//!   block per frame, its packetizer, reassembler, adaptive-FEC controller and pipeline stage.
//! * [`io`]: the only code that touches the kernel: the io_uring UDP driver (GSO, SEND_ZC,
//!   busy polling) with its fallbacks, the receive path, the send stage, CPU pinning and the
//!   stage threads.
//!
//! What it deliberately does not do: capture, encode, or run a control plane. Those live in
//! `punktfunk-capture` and `punktfunk-control`, which feed this crate frames and settings.
//!
//! # Example
//!
//! Protect a block of four 8-byte shards with two parity shards and recover two lost ones:
//!
//! ```
//! use punktfunk_engine::fec::{FecEngine, gf8::Gf8Code};
//!
//! let mut code = Gf8Code::nanors(4, 2).unwrap();
//! let mut shards = vec![vec![0u8; 8]; 6];
//! for (i, s) in shards.iter_mut().take(4).enumerate() {
//!     s.iter_mut().enumerate().for_each(|(b, v)| *v = (31 * i + 7 * b + 1) as u8);
//! }
//! let (data, parity) = shards.split_at_mut(4);
//! let data: Vec<&[u8]> = data.iter().map(|s| s.as_slice()).collect();
//! let mut parity: Vec<&mut [u8]> = parity.iter_mut().map(|s| s.as_mut_slice()).collect();
//! code.encode(&data, &mut parity).unwrap();
//! assert_eq!(shards[4], [0x17, 0x6c, 0xdb, 0xb0, 0x00, 0x90, 0x23, 0xbb]);
//!
//! let original = shards.clone();
//! shards[0].fill(0);
//! shards[2].fill(0);
//! let mut present = [false, true, false, true, true, true];
//! let mut refs: Vec<&mut [u8]> = shards.iter_mut().map(|s| s.as_mut_slice()).collect();
//! code.reconstruct(&mut refs, &mut present).unwrap();
//! assert_eq!(shards, original);
//! ```

#![warn(missing_docs)]
// `unsafe` is opt-in per module: only the act half (`io`) and the SIMD kernels (`fec::kernel`)
// allow it. Every module that decides forbids it, so the pure/act split is checked by the
// compiler (docs/architecture.md, "Decide and act").
#![deny(unsafe_code)]

#[forbid(unsafe_code)]
pub mod config;
pub mod fec;
#[forbid(unsafe_code)]
pub mod gamestream;
#[allow(unsafe_code)]
pub mod io;
pub mod pacer; // forbids `unsafe` itself (`#![forbid(unsafe_code)]` in pacer.rs)
pub mod pf1; // likewise, in pf1/mod.rs
#[forbid(unsafe_code)]
pub mod pipeline;
#[forbid(unsafe_code)]
pub mod pool;
#[forbid(unsafe_code)]
pub mod ring;
pub mod send_queue; // forbids `unsafe` itself, like pacer.rs
