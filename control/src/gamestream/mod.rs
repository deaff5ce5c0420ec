//! GameStream control plane, the decide half: everything a stock Moonlight client's nvhttp
//! conversation needs, as pure functions and state machines.
//!
//! ```text
//!   Moonlight ──HTTP :47989──► /serverinfo, /pair (phases 1-4), /unpair
//!             ──HTTPS :47984─► /serverinfo, /pair?phrase=pairchallenge, /applist,
//!                              /appasset, /launch, /resume, /cancel  (mutual TLS)
//! ```
//!
//! | module        | decides                                                              |
//! |---------------|----------------------------------------------------------------------|
//! | [`ports`]     | every port from the base port ("Ports")                              |
//! | [`query`]     | query strings and hex fields, with limits (fuzzed)                   |
//! | [`cert`]      | the few X.509 fields pairing needs, from hostile DER (fuzzed)        |
//! | [`identity`]  | the host's certificate and RSA key, and its signatures               |
//! | [`pairing`]   | the five `/pair` phases, the operator's PIN window, waiting clients   |
//! | [`clients`]   | the paired-client list and constant-time lookup by certificate       |
//! | [`launch`]    | `/launch` and `/resume` query parameters into typed requests ("Launch") |
//! | [`session`]   | the [`session::SessionManager`] seam to streaming and its admission rules |
//! | [`nvhttp`]    | routing, authorization and every XML reply ("nvhttp transport"–"Launch") |
//! | [`xml`]       | the `<root status_code=…>` document writer                          |
//! | [`boxart`]    | the PNG served by `/appasset`                                        |
//!
//! Quoted names are sections of docs/gamestream-protocol-notes.md, our notes on the protocol.
//!
//! Nothing here opens a socket, reads a clock or spawns a thread: time comes in as `now`,
//! randomness as a seed. The servers that drive these modules are in [`crate::host`].
//!
//! What it deliberately does not do: RTSP, the ENet control stream and media. A launch ends at
//! the [`session::SessionManager`], which the streaming side implements.

pub mod boxart;
pub mod cert;
pub mod clients;
pub mod identity;
pub mod launch;
pub mod nvhttp;
pub mod pairing;
pub mod ports;
pub mod query;
pub mod session;
pub mod xml;
