//! punktfunk/1 data plane: encrypted GF(2^16) FEC datagrams, one FEC block per frame.
//!
//! GameStream caps a video frame at 4 FEC blocks of 255 shards (about 1.4 MB with 20 %
//! parity), which ends at roughly 1 Gbit/s at 60 fps. punktfunk/1 protects each frame with one
//! GF(2^16) Reed–Solomon block of up to 65535 shards ([`crate::fec::gf16`]) and seals every
//! datagram with AES-128-GCM under a key the QUIC control plane exports from its TLS session.
//!
//! ```text
//!  host                                                         client
//!  frame ─► Pf1Sender::packetize ─► |dg|dg|dg|…|pg|pg| ─► UDP ─► Pf1Receiver::handle_datagram
//!            (split, FEC, seal)      GSO train, 1 stride          (open, collect, recover)
//!                 ▲                                                    │ poll_event: frames in
//!                 │ parity %                                          ▼ order, or FramesLost
//!            FecController ◄──────── LossReport over QUIC ◄──── take_loss_report
//! ```
//!
//! * [`header`]: the datagram format (a 36-byte header, authenticated as AAD).
//! * [`crypto`]: [`DataKey`] (AES-128-GCM via `ring`, nonce = salt ‖ packet number), key
//!   material and exporter label, and the replay window.
//! * [`send`]: [`Pf1Sender`], the packetizer: frame → sealed fixed-stride datagrams.
//! * [`recv`]: [`Pf1Receiver`], the reassembler of the reference client.
//! * [`adaptive`]: [`FecController`], loss reports → parity percentage.
//! * [`stage`]: [`Pf1PacketizeStage`], the pipeline stage in front of
//!   [`SendSink`](crate::io::sink::SendSink).
//!
//! The act halves (a frame sender over [`UdpSender`](crate::io::UdpSender) and a receive loop
//! over [`UdpReceiver`](crate::io::UdpReceiver)) live in [`crate::io::pf1`]. Everything in this
//! module is pure: no sockets, no clock reads (time comes in as `now`), no threads, no `unsafe`.
//!
//! What it deliberately does not do: negotiate anything (the control plane in
//! `punktfunk-control` hands over the key material, FEC scheme, parity percentage, shard size
//! and port), retransmit, or run congestion control. Design notes and figures:
//! `docs/pf1-data-plane.md`.
//!
//! # Example
//!
//! ```
//! use std::time::Instant;
//! use punktfunk_engine::pf1::{
//!     DataKey, FrameInfo, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, Pf1Sender, Pf1SenderConfig,
//! };
//!
//! let material = [7u8; punktfunk_engine::pf1::KEY_MATERIAL_LEN]; // from the TLS exporter
//! let mut tx = Pf1Sender::new(Pf1SenderConfig::default(), DataKey::from_key_material(&material))?;
//! let mut rx =
//!     Pf1Receiver::new(Pf1ReceiverConfig::default(), DataKey::from_key_material(&material))?;
//!
//! let frame = vec![42u8; 100_000];
//! let mut out = vec![0u8; tx.max_output(frame.len())];
//! let p = tx.packetize(&frame, &FrameInfo::default(), &mut out)?;
//! let now = Instant::now();
//! // Lose the first datagram; FEC restores it.
//! for dg in out[..p.len()].chunks(p.layout.stride).skip(1) {
//!     rx.handle_datagram(now, dg)?;
//! }
//! match rx.poll_event() {
//!     Some(Pf1Event::Frame(f)) => assert_eq!(f.data, frame),
//!     other => panic!("expected the frame, got {other:?}"),
//! }
//! # Ok::<(), punktfunk_engine::pf1::Pf1Error>(())
//! ```

#![forbid(unsafe_code)]

pub mod adaptive;
pub mod crypto;
pub mod header;
pub mod recv;
pub mod send;
pub mod stage;

#[cfg(test)]
mod sim;

pub use adaptive::{FecController, FecControllerConfig, LossReport};
pub use crypto::{DataKey, EXPORTER_LABEL, KEY_MATERIAL_LEN};
pub use header::{HEADER_LEN, Header, OVERHEAD, TAG_LEN};
pub use recv::{Accepted, Pf1Event, Pf1Receiver, Pf1ReceiverConfig, ReceivedFrame, ReceiverStats};
pub use send::{FrameInfo, FrameLayout, Packetized, Pf1Sender, Pf1SenderConfig, SenderStats};
pub use stage::{Pf1Feedback, Pf1PacketizeStage, Pf1StageStats};

use crate::fec::FecError;

/// Why a punktfunk/1 datagram or frame was refused.
///
/// Hostile or malformed peer input ([`Malformed`](Self::Malformed), [`Auth`](Self::Auth),
/// [`UnknownKey`](Self::UnknownKey), [`RetiredKey`](Self::RetiredKey),
/// [`Replay`](Self::Replay)), local misuse ([`InvalidConfig`](Self::InvalidConfig),
/// [`BufferTooSmall`](Self::BufferTooSmall), [`FrameTooLarge`](Self::FrameTooLarge),
/// [`StaleKey`](Self::StaleKey)) and resource exhaustion
/// ([`KeyExhausted`](Self::KeyExhausted), [`Limit`](Self::Limit)) are kept apart. Every
/// receive-side error is also counted in [`ReceiverStats`]; none of them is fatal to a session.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Pf1Error {
    /// A datagram is truncated, oversized, of an unknown version or type, or its shape does
    /// not add up (hostile or corrupt input).
    #[error("malformed punktfunk/1 datagram: {0}")]
    Malformed(&'static str),
    /// The AES-GCM tag did not verify: wrong key, or bits flipped on the way.
    #[error("punktfunk/1 datagram failed authentication")]
    Auth,
    /// The datagram names a key id the receiver holds no key for.
    #[error("punktfunk/1 datagram under unknown key id {0}")]
    UnknownKey(u8),
    /// The datagram is under a key generation the receiver retired after a key update (its
    /// overlap ended): a straggler or a replay of an old datagram.
    #[error("punktfunk/1 datagram under retired key id {0}")]
    RetiredKey(u8),
    /// The packet number was already received, or lies behind the replay window.
    #[error("punktfunk/1 packet number {0} replayed or too old")]
    Replay(u64),
    /// A configuration value is outside what the protocol or the code supports.
    #[error("invalid punktfunk/1 configuration: {0}")]
    InvalidConfig(&'static str),
    /// The caller's output buffer is too small.
    #[error("output buffer holds {got} bytes, {needed} needed")]
    BufferTooSmall {
        /// Bytes needed.
        needed: usize,
        /// Bytes available.
        got: usize,
    },
    /// A frame needs more shards than one GF(2^16) block or the configured limit allows.
    #[error("frame of {len} bytes exceeds the limit of {max} bytes")]
    FrameTooLarge {
        /// Frame length.
        len: usize,
        /// Largest frame accepted.
        max: usize,
    },
    /// The key sealed as many packets as its limit allows (AES-GCM's confidentiality limit, or
    /// a lower configured one); the control plane must install the next key
    /// ([`Pf1Sender::update_key`]). The refused frame's id is used up, so the receiver sees
    /// the frame as lost.
    #[error("key {key_id} sealed {packets} packets, its limit; a key update is required")]
    KeyExhausted {
        /// The exhausted key's id.
        key_id: u8,
        /// Packets sealed under it.
        packets: u64,
    },
    /// A key update offered a generation that is not newer than the one in use; installing it
    /// would restart packet numbers under a key that already sealed them (nonce reuse).
    #[error("key generation {offered} offered while generation {current} is in use")]
    StaleKey {
        /// The generation in use.
        current: u32,
        /// The generation offered.
        offered: u32,
    },
    /// A datagram asks for more receiver memory than configured (frame length, shards).
    #[error("{what} of {requested} exceeds the receiver's limit of {limit}")]
    Limit {
        /// What was too large.
        what: &'static str,
        /// Amount asked for.
        requested: usize,
        /// Configured limit.
        limit: usize,
    },
    /// The FEC layer refused a shape or a recovery.
    #[error(transparent)]
    Fec(#[from] FecError),
}
