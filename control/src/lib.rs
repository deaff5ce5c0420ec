//! punktfunk control planes and the `punktfunk` command line.
//!
//! The host process is the control plane that drives the engine: it negotiates streams with
//! clients (GameStream's nvhttp/RTSP/ENet, punktfunk/1 over QUIC) and hands the engine its
//! configuration. Today this crate holds the command-line front end; the control planes
//! arrive with their issues (see docs/STATUS.md).
//!
//! What it deliberately does not do: move media. Frames, FEC and sockets for media belong to
//! `punktfunk-engine`.

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod input;
pub mod media;
pub mod stream;
pub mod tune;
