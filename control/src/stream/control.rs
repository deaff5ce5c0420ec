//! The control stream's messages (docs/gamestream-protocol-notes.md "ENet" to "Control messages"),
//! above ENet and below the session: decrypt what the client sends into typed [`ClientMessage`]s,
//! seal what the host sends, count everything.
//!
//! ENet itself (connection, reliability, channels) is the act side's business (`session`);
//! this module sees only the bytes of one ENet packet at a time, on behalf of
//! [`super::gs_session::GsSession`].

use punktfunk_engine::gamestream::wire::control::{ControlCipher, Direction};

/// Message types the client sends (inner V2 `type`, notes "Control messages").
pub mod types {
    /// IDR request, also "Start A".
    pub const IDR_REQUEST: u16 = 0x0302;
    /// "Start B".
    pub const START_B: u16 = 0x0307;
    /// Periodic ping (every 100 ms).
    pub const PING: u16 = 0x0200;
    /// Reference-frame invalidation.
    pub const RFI: u16 = 0x0301;
    /// LTR frame ACK.
    pub const LTR_ACK: u16 = 0x0350;
    /// Frame FEC status (client → host).
    pub const FEC_STATUS: u16 = 0x5502;
    /// Input packet.
    pub const INPUT: u16 = 0x0206;
    /// Loss statistics (old clients).
    pub const LOSS_STATS: u16 = 0x0201;
    /// Termination (host → client).
    pub const TERMINATION: u16 = 0x0109;
    /// Rumble (host → client).
    pub const RUMBLE: u16 = 0x010b;
}

/// Message types the host sends besides termination (notes "Host → client message types").
/// 0x5500–0x5503 are Sunshine extensions; 0x5502 means "FEC status" in the other direction.
pub mod host_types {
    /// Rumble of a controller's main motors.
    pub const RUMBLE: u16 = 0x010b;
    /// HDR mode on/off with the mastering metadata.
    pub const HDR_MODE: u16 = 0x010e;
    /// Rumble of a controller's trigger motors.
    pub const RUMBLE_TRIGGERS: u16 = 0x5500;
    /// Start or stop a controller's motion-sensor reports.
    pub const MOTION_EVENT_STATE: u16 = 0x5501;
    /// A controller's RGB LED.
    pub const RGB_LED: u16 = 0x5502;
    /// DualSense adaptive-trigger effects.
    pub const ADAPTIVE_TRIGGERS: u16 = 0x5503;
}

/// HDR mastering and content metadata as the HDR mode message carries it (moonlight-common-c's
/// `SS_HDR_METADATA`): chromaticities normalised to 50 000, luminances in nits except
/// `min_display_luminance` (1/10 000 nit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HdrMetadata {
    /// Red, green, blue primaries (x, y).
    pub primaries: [(u16, u16); 3],
    /// White point (x, y).
    pub white_point: (u16, u16),
    /// Mastering display peak, nits.
    pub max_display_luminance: u16,
    /// Mastering display black, 1/10 000 nit.
    pub min_display_luminance: u16,
    /// Brightest pixel of the content (MaxCLL), nits.
    pub max_content_light_level: u16,
    /// Brightest frame average (MaxFALL), nits.
    pub max_frame_average_light_level: u16,
    /// Peak luminance over a full frame, nits.
    pub max_full_frame_luminance: u16,
}

impl HdrMetadata {
    /// What this host's 10-bit streams are: BT.2020 primaries, D65 white, mastered for a
    /// 1000-nit display with a 0.005-nit black; the test pattern peaks at 1000 nits and
    /// averages about 400 over a frame.
    pub const fn bt2020_1000_nits() -> Self {
        Self {
            primaries: [(35_400, 14_600), (8_500, 39_850), (6_550, 2_300)],
            white_point: (15_635, 16_450),
            max_display_luminance: 1000,
            min_display_luminance: 50,
            max_content_light_level: 1000,
            max_frame_average_light_level: 400,
            max_full_frame_luminance: 1000,
        }
    }
}

/// A message the host sends to the client's controllers or display (all little-endian).
/// Deserializes from `{"kind": "rumble", "controller": 0, "low": …}` (the management API's
/// `POST /api/feedback`); `HdrMode` is the session's own and cannot be asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum HostMessage {
    /// Main motors, 0 (off) to 0xFFFF.
    Rumble {
        /// Controller number (0..16).
        controller: u16,
        /// Low-frequency (large) motor.
        low: u16,
        /// High-frequency (small) motor.
        high: u16,
    },
    /// Trigger motors, 0 to 0xFFFF.
    RumbleTriggers {
        /// Controller number.
        controller: u16,
        /// Left trigger motor.
        left: u16,
        /// Right trigger motor.
        right: u16,
    },
    /// Motion-sensor reports from the client: `report_rate_hz` 0 stops them.
    MotionEventState {
        /// Controller number.
        controller: u16,
        /// Reports per second; 0 = stop.
        report_rate_hz: u16,
        /// 1 = accelerometer, 2 = gyroscope.
        motion_type: u8,
    },
    /// RGB LED colour.
    RgbLed {
        /// Controller number.
        controller: u16,
        /// Red.
        r: u8,
        /// Green.
        g: u8,
        /// Blue.
        b: u8,
    },
    /// DualSense adaptive-trigger effects.
    AdaptiveTriggers {
        /// Controller number.
        controller: u16,
        /// Which triggers change: 0x04 right, 0x08 left.
        event_flags: u8,
        /// Left trigger effect type.
        type_left: u8,
        /// Right trigger effect type.
        type_right: u8,
        /// Left effect parameters.
        left: [u8; 10],
        /// Right effect parameters.
        right: [u8; 10],
    },
    /// HDR mode on (with metadata) or off.
    #[serde(skip)]
    HdrMode {
        /// HDR on.
        enabled: bool,
        /// The stream's mastering metadata (sent also when off, zeroed by convention).
        metadata: HdrMetadata,
    },
}

/// Controllers a GameStream client can have.
pub const MAX_CONTROLLERS: u16 = 16;

impl HostMessage {
    /// Why this controller message cannot be sent (controller out of range, unknown motion
    /// sensor); `Ok` for the HDR mode message.
    pub fn check_controller_message(&self) -> Result<(), String> {
        let controller = match *self {
            Self::MotionEventState { motion_type, .. } if !(1..=2).contains(&motion_type) => {
                return Err(format!(
                    "motion_type {motion_type}: 1 (accelerometer) or 2 (gyroscope)"
                ));
            }
            Self::Rumble { controller, .. }
            | Self::RumbleTriggers { controller, .. }
            | Self::MotionEventState { controller, .. }
            | Self::RgbLed { controller, .. }
            | Self::AdaptiveTriggers { controller, .. } => controller,
            Self::HdrMode { .. } => return Ok(()),
        };
        if controller >= MAX_CONTROLLERS {
            return Err(format!(
                "controller {controller}: a client has controllers 0..{MAX_CONTROLLERS}"
            ));
        }
        Ok(())
    }

    /// The message's type and plaintext payload.
    pub fn encode(&self) -> (u16, Vec<u8>) {
        let mut p = Vec::with_capacity(32);
        let t = match *self {
            Self::Rumble {
                controller,
                low,
                high,
            } => {
                p.extend_from_slice(&0u32.to_le_bytes());
                for v in [controller, low, high] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                host_types::RUMBLE
            }
            Self::RumbleTriggers {
                controller,
                left,
                right,
            } => {
                for v in [controller, left, right] {
                    p.extend_from_slice(&v.to_le_bytes());
                }
                host_types::RUMBLE_TRIGGERS
            }
            Self::MotionEventState {
                controller,
                report_rate_hz,
                motion_type,
            } => {
                p.extend_from_slice(&controller.to_le_bytes());
                p.extend_from_slice(&report_rate_hz.to_le_bytes());
                p.push(motion_type);
                host_types::MOTION_EVENT_STATE
            }
            Self::RgbLed {
                controller,
                r,
                g,
                b,
            } => {
                p.extend_from_slice(&controller.to_le_bytes());
                p.extend_from_slice(&[r, g, b]);
                host_types::RGB_LED
            }
            Self::AdaptiveTriggers {
                controller,
                event_flags,
                type_left,
                type_right,
                left,
                right,
            } => {
                p.extend_from_slice(&controller.to_le_bytes());
                p.extend_from_slice(&[event_flags, type_left, type_right]);
                p.extend_from_slice(&left);
                p.extend_from_slice(&right);
                host_types::ADAPTIVE_TRIGGERS
            }
            Self::HdrMode { enabled, metadata } => {
                p.push(u8::from(enabled));
                let m = metadata;
                let mut words = Vec::with_capacity(13);
                for (x, y) in m.primaries {
                    words.extend([x, y]);
                }
                words.extend([m.white_point.0, m.white_point.1]);
                words.extend([
                    m.max_display_luminance,
                    m.min_display_luminance,
                    m.max_content_light_level,
                    m.max_frame_average_light_level,
                    m.max_full_frame_luminance,
                ]);
                for w in words {
                    p.extend_from_slice(&w.to_le_bytes());
                }
                host_types::HDR_MODE
            }
        };
        (t, p)
    }
}

/// Termination code for "the app closed" (graceful).
pub const TERMINATION_GRACEFUL: u32 = 0x8003_0023;

/// Frame FEC status report (`SS_FRAME_FEC_STATUS`, big-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FecStatus {
    /// Frame index.
    pub frame_index: u32,
    /// Packets missing below the highest sequence number received.
    pub missing: u16,
    /// Data shards in the block.
    pub total_data: u16,
    /// Parity shards in the block.
    pub total_parity: u16,
    /// Data shards received.
    pub received_data: u16,
    /// Parity shards received.
    pub received_parity: u16,
    /// FEC percentage of the block.
    pub fec_percent: u8,
}

/// A decrypted client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientMessage<'a> {
    /// Produce an IDR soon.
    IdrRequest,
    /// Start B: nothing to do.
    StartB,
    /// Keep-alive.
    Ping,
    /// Reference-frame invalidation for frames `first..=last` (answered with an IDR).
    InvalidateRefs {
        /// First frame.
        first: u32,
        /// Last frame.
        last: u32,
    },
    /// LTR acknowledgement.
    LtrAck(u32),
    /// FEC status of one frame block.
    FecStatus(FecStatus),
    /// An input packet (`NV_INPUT_HEADER` …), to be decoded by the input module.
    Input(&'a [u8]),
    /// Old-style loss statistics.
    LossStats,
    /// A type this host does not know (counted, otherwise ignored).
    Unknown(u16),
}

/// Why a control packet was dropped (hostile or corrupt input; counted, never fatal).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ControlError {
    /// The envelope was malformed or failed authentication.
    #[error("control envelope: {0}")]
    Envelope(#[from] punktfunk_engine::gamestream::wire::WireError),
    /// A sequence number was reused or went backwards (replay).
    #[error("control message sequence {got} is not after {last}")]
    Replay {
        /// Sequence received.
        got: u32,
        /// Last sequence accepted.
        last: u32,
    },
    /// A known message type with a payload of the wrong size.
    #[error("control message {msg_type:#06x} has a {len}-byte payload")]
    BadPayload {
        /// Type.
        msg_type: u16,
        /// Length found.
        len: usize,
    },
}

/// Counters of one control stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ControlStats {
    /// Messages accepted.
    pub messages: u64,
    /// IDR requests (incl. RFI answered with IDR).
    pub idr_requests: u64,
    /// Input packets passed on.
    pub input: u64,
    /// Pings.
    pub pings: u64,
    /// Unknown message types.
    pub unknown: u64,
    /// Packets dropped (bad envelope, replay, bad payload).
    pub dropped: u64,
    /// Messages the host sent.
    pub sent: u64,
}

/// One session's control-message layer.
#[derive(Debug)]
pub struct ControlChannel {
    cipher: ControlCipher,
    last_rx: Option<u32>,
    tx_seq: u32,
    stats: ControlStats,
}

impl ControlChannel {
    /// A channel keyed with the session's `rikey` (V2 nonces).
    pub fn new(key: &[u8; 16]) -> Self {
        Self {
            cipher: ControlCipher::new(key),
            last_rx: None,
            tx_seq: 0,
            stats: Default::default(),
        }
    }

    /// Counters so far.
    pub fn stats(&self) -> ControlStats {
        self.stats
    }

    /// Decrypts and classifies one ENet packet from the client. The returned message borrows
    /// from `packet` (decrypted in place).
    pub fn handle_packet<'a>(
        &mut self,
        packet: &'a mut [u8],
    ) -> Result<ClientMessage<'a>, ControlError> {
        let r = self.decode(packet);
        match &r {
            Ok(m) => {
                self.stats.messages += 1;
                match m {
                    ClientMessage::IdrRequest | ClientMessage::InvalidateRefs { .. } => {
                        self.stats.idr_requests += 1
                    }
                    ClientMessage::Input(_) => self.stats.input += 1,
                    ClientMessage::Ping => self.stats.pings += 1,
                    ClientMessage::Unknown(_) => self.stats.unknown += 1,
                    _ => {}
                }
            }
            Err(_) => self.stats.dropped += 1,
        }
        r
    }

    fn decode<'a>(&mut self, packet: &'a mut [u8]) -> Result<ClientMessage<'a>, ControlError> {
        let m = self.cipher.open(packet, Direction::ClientToHost)?;
        // The client counts up from 0; anything not newer is a replay (ENet already delivers
        // reliable packets once and in order per channel, so this only trips on forgery or
        // duplication by a middlebox).
        if let Some(last) = self.last_rx
            && m.seq <= last
        {
            return Err(ControlError::Replay { got: m.seq, last });
        }
        self.last_rx = Some(m.seq);
        let p = m.payload;
        let bad = || ControlError::BadPayload {
            msg_type: m.msg_type,
            len: p.len(),
        };
        let le32 = |at: usize| u32::from_le_bytes([p[at], p[at + 1], p[at + 2], p[at + 3]]);
        Ok(match m.msg_type {
            types::IDR_REQUEST => ClientMessage::IdrRequest,
            types::START_B => ClientMessage::StartB,
            types::PING => ClientMessage::Ping,
            types::RFI => {
                if p.len() < 12 {
                    return Err(bad());
                }
                ClientMessage::InvalidateRefs {
                    first: le32(0),
                    last: le32(8),
                }
            }
            types::LTR_ACK => {
                if p.len() < 4 {
                    return Err(bad());
                }
                ClientMessage::LtrAck(le32(0))
            }
            types::FEC_STATUS => {
                if p.len() < 21 {
                    return Err(bad());
                }
                let be16 = |at: usize| u16::from_be_bytes([p[at], p[at + 1]]);
                ClientMessage::FecStatus(FecStatus {
                    frame_index: u32::from_be_bytes([p[0], p[1], p[2], p[3]]),
                    missing: be16(8),
                    total_data: be16(10),
                    total_parity: be16(12),
                    received_data: be16(14),
                    received_parity: be16(16),
                    fec_percent: p[18],
                })
            }
            types::INPUT => ClientMessage::Input(p),
            types::LOSS_STATS => ClientMessage::LossStats,
            other => ClientMessage::Unknown(other),
        })
    }

    /// Seals a host → client message into `out`; returns its length.
    pub fn seal(&mut self, msg_type: u16, payload: &[u8], out: &mut [u8]) -> Option<usize> {
        let n = self
            .cipher
            .seal(self.tx_seq, Direction::HostToClient, msg_type, payload, out)
            .ok()?;
        self.tx_seq = self.tx_seq.wrapping_add(1);
        self.stats.sent += 1;
        Some(n)
    }

    /// `msg`, sealed.
    pub fn seal_message(&mut self, msg: &HostMessage) -> Vec<u8> {
        let (t, payload) = msg.encode();
        let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
        // A buffer sized by sealed_len always fits.
        let n = self.seal(t, &payload, &mut out).unwrap_or(0);
        out.truncate(n);
        out
    }

    /// The termination message (type 0x0109 with a big-endian reason code), sealed.
    pub fn termination(&mut self, code: u32) -> Vec<u8> {
        let mut out = vec![0u8; ControlCipher::sealed_len(4)];
        // Sealing 4 bytes into a buffer sized by sealed_len(4) cannot fail.
        let n = self
            .seal(types::TERMINATION, &code.to_be_bytes(), &mut out)
            .unwrap_or(0);
        out.truncate(n);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];

    fn client_packet(seq: u32, t: u16, payload: &[u8]) -> Vec<u8> {
        let c = ControlCipher::new(&KEY);
        let mut out = vec![0u8; ControlCipher::sealed_len(payload.len())];
        let n = c
            .seal(seq, Direction::ClientToHost, t, payload, &mut out)
            .unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn host_messages_have_the_documented_layouts() {
        let (t, p) = HostMessage::Rumble {
            controller: 1,
            low: 0x1234,
            high: 0xabcd,
        }
        .encode();
        assert_eq!(
            (t, p),
            (0x010b, vec![0, 0, 0, 0, 1, 0, 0x34, 0x12, 0xcd, 0xab])
        );
        let (t, p) = HostMessage::RumbleTriggers {
            controller: 2,
            left: 0x0102,
            right: 0x0304,
        }
        .encode();
        assert_eq!((t, p), (0x5500, vec![2, 0, 2, 1, 4, 3]));
        let (t, p) = HostMessage::MotionEventState {
            controller: 0,
            report_rate_hz: 200,
            motion_type: 2,
        }
        .encode();
        assert_eq!((t, p), (0x5501, vec![0, 0, 200, 0, 2]));
        let (t, p) = HostMessage::RgbLed {
            controller: 3,
            r: 9,
            g: 8,
            b: 7,
        }
        .encode();
        assert_eq!((t, p), (0x5502, vec![3, 0, 9, 8, 7]));
        let (t, p) = HostMessage::AdaptiveTriggers {
            controller: 0,
            event_flags: 0x0c,
            type_left: 1,
            type_right: 2,
            left: [1; 10],
            right: [2; 10],
        }
        .encode();
        assert_eq!(t, 0x5503);
        assert_eq!(p.len(), 2 + 3 + 20);
        assert_eq!(&p[..5], &[0, 0, 0x0c, 1, 2]);
        assert_eq!(&p[5..15], &[1; 10]);
        let (t, p) = HostMessage::HdrMode {
            enabled: true,
            metadata: HdrMetadata::bt2020_1000_nits(),
        }
        .encode();
        assert_eq!(t, 0x010e);
        assert_eq!(p.len(), 1 + 13 * 2);
        assert_eq!(p[0], 1);
        // Red primary x first, then y; max display luminance after the white point.
        assert_eq!(&p[1..5], &[0x48, 0x8a, 0x08, 0x39]);
        assert_eq!(&p[17..19], &1000u16.to_le_bytes());
    }

    #[test]
    fn controller_messages_parse_from_json_and_are_checked() {
        let m: HostMessage =
            serde_json::from_str(r#"{"kind": "rumble", "controller": 2, "low": 1, "high": 65535}"#)
                .unwrap();
        assert_eq!(
            m,
            HostMessage::Rumble {
                controller: 2,
                low: 1,
                high: 65535
            }
        );
        assert!(m.check_controller_message().is_ok());
        let m: HostMessage = serde_json::from_str(
            r#"{"kind": "rgb_led", "controller": 16, "r": 1, "g": 2, "b": 3}"#,
        )
        .unwrap();
        assert!(
            m.check_controller_message()
                .unwrap_err()
                .contains("controller 16")
        );
        let m: HostMessage = serde_json::from_str(
            r#"{"kind": "motion_event_state", "controller": 0, "report_rate_hz": 5, "motion_type": 3}"#,
        )
        .unwrap();
        assert!(m.check_controller_message().is_err());
        for bad in [
            r#"{"kind": "hdr_mode", "enabled": true}"#,
            r#"{"kind": "explode", "controller": 0}"#,
            r#"{"kind": "rumble", "controller": 0, "low": 70000, "high": 0}"#,
            r#"{"kind": "adaptive_triggers", "controller": 0, "event_flags": 4, "type_left": 1, "type_right": 1, "left": [1], "right": [2]}"#,
        ] {
            assert!(serde_json::from_str::<HostMessage>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn sealed_host_messages_open_with_the_host_direction() {
        let mut ch = ControlChannel::new(&KEY);
        let sealed = ch.seal_message(&HostMessage::Rumble {
            controller: 0,
            low: 1,
            high: 2,
        });
        let c = ControlCipher::new(&KEY);
        let mut buf = sealed.clone();
        let m = c.open(&mut buf, Direction::HostToClient).unwrap();
        assert_eq!((m.seq, m.msg_type), (0, 0x010b));
        assert_eq!(m.payload, &[0, 0, 0, 0, 0, 0, 1, 0, 2, 0]);
    }

    #[test]
    fn decodes_the_client_start_sequence() {
        let mut ch = ControlChannel::new(&KEY);
        // The notes' "Control envelope" vector: IDR request, seq 0.
        let mut p = vec![];
        for i in (0..60).step_by(2) {
            p.push(
                u8::from_str_radix(
                    &"01001a000000000022302723537811166cb9bfead7dad4575cd629f5cafe"[i..i + 2],
                    16,
                )
                .unwrap(),
            );
        }
        assert_eq!(ch.handle_packet(&mut p).unwrap(), ClientMessage::IdrRequest);
        let mut p = client_packet(1, types::START_B, &[0]);
        assert_eq!(ch.handle_packet(&mut p).unwrap(), ClientMessage::StartB);
        let mut p = client_packet(2, types::PING, &[4, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(ch.handle_packet(&mut p).unwrap(), ClientMessage::Ping);
        let input = [0, 0, 0, 8, 7, 0, 0, 0, 0, 1, 0, 1];
        let mut p = client_packet(3, types::INPUT, &input);
        assert_eq!(
            ch.handle_packet(&mut p).unwrap(),
            ClientMessage::Input(&input)
        );
        let mut rfi = [0u8; 24];
        rfi[0] = 5;
        rfi[8] = 9;
        let mut p = client_packet(4, types::RFI, &rfi);
        assert_eq!(
            ch.handle_packet(&mut p).unwrap(),
            ClientMessage::InvalidateRefs { first: 5, last: 9 }
        );
        let mut p = client_packet(5, 0x7777, &[]);
        assert_eq!(
            ch.handle_packet(&mut p).unwrap(),
            ClientMessage::Unknown(0x7777)
        );
        let s = ch.stats();
        assert_eq!(
            (s.messages, s.idr_requests, s.input, s.pings, s.unknown),
            (6, 2, 1, 1, 1)
        );
    }

    #[test]
    fn forged_replayed_and_short_packets_are_dropped() {
        let mut ch = ControlChannel::new(&KEY);
        let mut p = client_packet(3, types::PING, &[]);
        ch.handle_packet(&mut p).unwrap();
        let mut p = client_packet(3, types::PING, &[]);
        assert_eq!(
            ch.handle_packet(&mut p),
            Err(ControlError::Replay { got: 3, last: 3 })
        );
        let mut p = client_packet(4, types::RFI, &[0; 4]);
        assert!(matches!(
            ch.handle_packet(&mut p),
            Err(ControlError::BadPayload { .. })
        ));
        let mut p = client_packet(5, types::PING, &[]);
        p[30 - 3] ^= 0x40;
        assert!(matches!(
            ch.handle_packet(&mut p),
            Err(ControlError::Envelope(_))
        ));
        let mut other = ControlChannel::new(&[9; 16]);
        let mut p = client_packet(6, types::PING, &[]);
        assert!(other.handle_packet(&mut p).is_err());
        assert_eq!(ch.stats().dropped, 3);
    }

    #[test]
    fn termination_matches_the_protocol_map_vector() {
        let mut ch = ControlChannel::new(&KEY);
        let t = ch.termination(TERMINATION_GRACEFUL);
        let want = "01001c0000000000b835a2b8ace857ddcbad385dce166aa9f2dd4edacf3be801";
        let hex: String = t.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, want);
        // Next message uses seq 1.
        let t2 = ch.termination(TERMINATION_GRACEFUL);
        assert_eq!(&t2[4..8], &[1, 0, 0, 0]);
    }
}
