//! punktfunk control planes and the `punktfunk` command line.
//!
//! The host process is the control plane that drives the engine: it negotiates streams with
//! clients (GameStream's nvhttp/RTSP/ENet, punktfunk/1 over QUIC) and hands the engine its
//! configuration.
//!
//! * [`gamestream`] decides: nvhttp routing and replies, pairing, launch parsing, the paired
//!   store, the [`gamestream::session::SessionManager`] seam to streaming. Pure: no sockets,
//!   clocks or threads.
//! * [`host`] acts: the state directory, the nvhttp HTTP/HTTPS servers, the management API,
//!   mDNS, `punktfunk serve` and the CLI client of the management API.
//! * [`pf1`]: punktfunk/1, the native protocol: a sans-IO QUIC control plane (quinn-proto),
//!   PIN pairing, renegotiation, and blocking UDP drivers for host and client.
//! * [`pairing_window`] decides: the operator-armed PIN window (failure budget, expiry) and
//!   per-address backoff that both protocols' pairing goes through.
//! * [`tune`]: `punktfunk tune`.
//!
//! What it deliberately does not do: move media. Frames, FEC and sockets for media belong to
//! `punktfunk-engine`.
//!
//! # Example
//!
//! Deciding what an nvhttp request asks for, without a socket:
//!
//! ```
//! use punktfunk_control::gamestream::nvhttp::{decide, Action, Transport};
//!
//! // Over plain HTTP there is no client certificate: a launch is refused with 401.
//! let Action::Reply(reply) = decide(Transport::Http, "/launch", "appid=1", None) else {
//!     unreachable!()
//! };
//! assert_eq!(reply.status_code(), Some(401));
//! assert_eq!(decide(Transport::Http, "/serverinfo", "uniqueid=X", None), Action::ServerInfo);
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod gamestream;
pub mod host;
pub mod input;
pub mod limits;
pub mod live;
pub mod media;
pub mod pairing_window;
pub mod pf1;
pub mod stream;
pub mod tune;
