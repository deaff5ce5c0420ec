//! The act half of the GameStream host: files, sockets, servers and the CLI client. Each
//! module moves bytes and waits; every decision is in [`crate::gamestream`].
//!
//! | module      | does                                                                    |
//! |-------------|-------------------------------------------------------------------------|
//! | [`state`]   | the state directory: atomic writes, identity, uniqueid, clients, settings |
//! | [`store`]   | the paired clients shared by the servers, persisted on change           |
//! | [`tls`]     | rustls (ring) for nvhttp's HTTPS: any client certificate at TLS level   |
//! | [`nvhttp`]  | the HTTP and HTTPS nvhttp servers, PIN hand-over                        |
//! | [`listen`]  | the TCP accept loop under [`crate::limits`]: eviction, total deadlines |
//! | [`api`]     | the management API (JSON, bearer token) on 127.0.0.1                    |
//! | [`mdns`]    | `_nvstream._tcp` advertisement                                          |
//! | [`serve`]   | `punktfunk serve`: [`serve::Host`] wires it all; the streaming seam     |
//! | [`cli`]     | `punktfunk pin`, `clients`, `unpair`: the API's client                  |

pub mod api;
pub mod cli;
pub mod listen;
pub mod mdns;
pub mod nvhttp;
pub mod serve;
pub mod sessions;
pub mod state;
pub mod store;
pub mod tls;
