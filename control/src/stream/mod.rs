//! The GameStream streaming side: RTSP handshake, SDP stream configuration, the encrypted
//! control stream and the session that drives the engine.
//!
//! Pure modules ([`sdp`], [`rtsp`], [`control`], [`gs_session`]) turn bytes into typed values and decisions;
//! the act modules (`session`) own the sockets and threads.

pub mod control;
pub mod gs_session;
pub mod rtsp;
pub mod sdp;
pub mod session;
