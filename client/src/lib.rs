//! punktfunk's client core: one punktfunk/1 session with a host — identity, host pinning, PIN
//! pairing, mode requests and renegotiation, reassembled access units, input, statistics —
//! for every native client, behind a versioned C ABI (`include/punktfunk_core.h`,
//! docs/client-abi.md), and the reference client (`punktfunk-client`, also run as
//! `punktfunk client`) built on that same ABI.
//!
//! ```text
//!  abi      the C ABI: extern "C" functions, #[repr(C)] structs, result codes
//!  abi_sansio  the sans-IO part of the ABI: session and receiver driven by the caller
//!   └─ core       one session: control thread (QUIC) + receive thread (data plane)
//!       └─ queue  the pull API's bounded frame queue with reused buffers
//!  reference the reference client: drives the ABI, decodes, records, reports; window.rs
//!            (feature `window`) presents and forwards keyboard and mouse
//! ```

pub mod abi;
pub mod abi_sansio;
pub mod core;
pub mod queue;
pub mod reference;
