//! punktfunk/1 QUIC datagrams: input events from client to host (pure codec).
//!
//! Input is latency-critical and stale input is worthless, so it travels as unreliable QUIC
//! datagrams (RFC 9221), not on the control stream: a lost mouse move is superseded by the
//! next, and a lost key or button packet is the accepted cost (clients resend held-key state
//! with the next event, as GameStream clients do). Each datagram is one event:
//!
//! ```text
//!  0       1
//! +-------+-----------------------------------------------+
//! | kind  | payload                                       |
//! +-------+-----------------------------------------------+
//!  0x01   input: one GameStream input packet (input::wire), NV_INPUT_HEADER included
//! ```
//!
//! The input payload reuses the GameStream encoding ([`crate::input::wire`]): keyboard,
//! mouse move/absolute/button/scroll, gamepad state, touch, pen and the controller
//! extensions. The host feeds decoded events to the same [`crate::input::InputDispatcher`]
//! as GameStream, so both protocols share one tested decoder and one injection path. QUIC
//! already encrypts and authenticates datagrams, so the GameStream AES layer is not used.

use thiserror::Error;

use crate::input::wire::{self, InputError, InputEvent};

/// Datagram kind byte of an input event.
pub const KIND_INPUT: u8 = 0x01;

/// A malformed datagram: always the peer's fault.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum DatagramError {
    /// No kind byte.
    #[error("empty datagram")]
    Empty,
    /// A kind this version does not know.
    #[error("unknown datagram kind {0:#04x}")]
    UnknownKind(u8),
    /// The input payload does not decode.
    #[error("input datagram: {0}")]
    Input(#[from] InputError),
}

/// One decoded datagram.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Datagram {
    /// A client input event.
    Input(InputEvent),
}

impl Datagram {
    /// Appends the encoded datagram to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Datagram::Input(ev) => {
                out.push(KIND_INPUT);
                wire::encode_into(ev, out);
            }
        }
    }

    /// Decodes one datagram.
    pub fn decode(bytes: &[u8]) -> Result<Self, DatagramError> {
        let (&kind, payload) = bytes.split_first().ok_or(DatagramError::Empty)?;
        match kind {
            KIND_INPUT => Ok(Datagram::Input(wire::decode(payload)?)),
            k => Err(DatagramError::UnknownKind(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::wire::MouseButton;

    #[test]
    fn input_fixture_round_trip() {
        let ev = InputEvent::MouseMove { dx: 1, dy: -2 };
        let mut out = Vec::new();
        Datagram::Input(ev).encode(&mut out);
        // kind | size u32 BE 8 | magic 7 LE | dx dy i16 BE
        assert_eq!(out, [1, 0, 0, 0, 8, 7, 0, 0, 0, 0, 1, 0xff, 0xfe]);
        assert_eq!(Datagram::decode(&out), Ok(Datagram::Input(ev)));
        let b = InputEvent::MouseButton {
            down: true,
            button: MouseButton::Left,
        };
        out.clear();
        Datagram::Input(b).encode(&mut out);
        assert_eq!(Datagram::decode(&out), Ok(Datagram::Input(b)));
    }

    #[test]
    fn hostile_datagrams() {
        assert_eq!(Datagram::decode(&[]), Err(DatagramError::Empty));
        assert_eq!(
            Datagram::decode(&[9, 1]),
            Err(DatagramError::UnknownKind(9))
        );
        assert!(matches!(
            Datagram::decode(&[1, 0, 0]),
            Err(DatagramError::Input(_))
        ));
    }
}
