//! GameStream's data plane: everything in the engine that only the GameStream (Moonlight)
//! protocol uses, beside [`crate::pf1`] for punktfunk/1.
//!
//! * [`wire`]: GameStream video, audio and control-message formats as pure functions over
//!   caller-owned buffers, and the reassembly side used by tests.
//! * [`stage`]: the FEC/packetize pipeline stage for GameStream video.
//!
//! Both decide only (no sockets, clocks or threads); the send path they feed is [`crate::io`].
//! Wire facts are described in docs/gamestream-protocol-notes.md.

pub mod stage;
pub mod wire;
