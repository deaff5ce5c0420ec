//! punktfunk/1's rows of `/api/sessions` (decides): one [`LiveSession`] per connection that
//! holds a streaming slot, from what the session knows ([`AdmittedConn`]) and what the media
//! path counted ([`MediaStatus`]).
//!
//! Pure: the driver thread reads the clock and the media counters, and hands them in.
//!
//! ```text
//!  HostSession::admitted() ─┐
//!  Pf1Media::status(conn)  ─┼─► row(conn, media, name, now) ─► LiveSession
//!  paired name (listener)  ─┘
//! ```
//!
//! A connection is `Connecting` until the data plane has sent its first frame, `Streaming`
//! from then on.

use std::time::Instant;

use super::host::{AdmittedConn, AdmittedPhase};
use super::message::LossReport;
use super::{Codec, Mode};
use crate::live::{LiveClient, LiveMode, LiveSession, LiveState, Protocol};

/// What the media path of one connection counted, read when the rows are made.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct MediaStatus {
    /// Video frames sent to this connection since its stream started.
    pub frames_sent: u64,
    /// Loss in the client's last report, percent (0 before any).
    pub loss_percent: f32,
    /// Parity the packetizer uses now, percent of data shards (0: the negotiated one still).
    pub fec_percent: u8,
    /// Encoder target, kbit/s.
    pub bitrate_kbps: u32,
}

/// The share of datagrams a loss report says were lost, in percent (0 for an empty window;
/// a report claiming more received than expected counts as no loss).
pub fn loss_percent(report: &LossReport) -> f32 {
    if report.expected == 0 {
        return 0.0;
    }
    let lost = report.expected.saturating_sub(report.received);
    (f64::from(lost) * 100.0 / f64::from(report.expected)) as f32
}

/// The codec's name in `/api/sessions`.
pub fn codec_name(codec: Codec) -> &'static str {
    match codec {
        Codec::H264 => "h264",
        Codec::Hevc => "hevc",
        Codec::Av1 => "av1",
    }
}

fn live_mode(m: Mode) -> LiveMode {
    LiveMode {
        width: u32::from(m.width),
        height: u32::from(m.height),
        fps: u32::from(m.fps),
    }
}

/// The row of `conn`. `media`: its stream's counters (`None`: no stream yet); `name`: the name
/// its client paired with ("" if unknown); `now`: for the age.
pub fn row(
    conn: &AdmittedConn,
    media: Option<&MediaStatus>,
    name: &str,
    now: Instant,
) -> LiveSession {
    let media = media.copied().unwrap_or_default();
    let streaming = conn.phase == AdmittedPhase::Streaming && media.frames_sent > 0;
    let negotiated_parity = conn.offer.as_ref().map_or(0, |o| o.parity_percent);
    LiveSession {
        protocol: Protocol::Pf1,
        id: conn.conn.0.to_string(),
        client: LiveClient {
            id: conn.fingerprint.to_hex(),
            name: name.to_owned(),
        },
        address: Some(conn.peer),
        state: if streaming {
            LiveState::Streaming
        } else {
            LiveState::Connecting
        },
        mode: live_mode(conn.mode),
        codec: codec_name(conn.offer.as_ref().map_or(Codec::H264, |o| o.codec)).to_owned(),
        bitrate_kbps: media.bitrate_kbps,
        frames_sent: media.frames_sent,
        loss_percent: media.loss_percent,
        fec_percent: u32::from(if media.fec_percent > 0 {
            media.fec_percent
        } else {
            negotiated_parity
        }),
        age_s: now.saturating_duration_since(conn.admitted_at).as_secs(),
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::time::Duration;

    use super::*;
    use crate::pf1::{ConnId, FecScheme, Fingerprint, SessionOffer};

    fn conn(phase: AdmittedPhase, at: Instant) -> AdmittedConn {
        let offer = (phase == AdmittedPhase::Streaming).then_some(SessionOffer {
            codec: Codec::H264,
            fec: FecScheme::Gf16Leopard,
            parity_percent: 20,
            shard_payload: 1344,
            data_port: 47901,
            mode: Mode::new(640, 360, 30),
        });
        AdmittedConn {
            conn: ConnId(3),
            fingerprint: Fingerprint([0xab; 32]),
            peer: SocketAddr::from((Ipv4Addr::LOCALHOST, 50001)),
            phase,
            mode: Mode::new(320, 240, 60),
            admitted_at: at,
            offer,
        }
    }

    #[test]
    fn loss_is_the_missing_share_of_the_window() {
        let r = |expected, received| LossReport {
            window_id: 1,
            expected,
            received,
            frames_complete: 0,
            frames_unrecoverable: 0,
        };
        assert_eq!(loss_percent(&r(200, 190)), 5.0);
        assert_eq!(loss_percent(&r(0, 0)), 0.0);
        assert_eq!(loss_percent(&r(10, 12)), 0.0);
        assert_eq!(loss_percent(&r(4, 0)), 100.0);
    }

    #[test]
    fn a_row_is_connecting_until_the_first_frame_then_streaming() {
        let t0 = Instant::now();
        let now = t0 + Duration::from_millis(7_900);
        let waiting = row(&conn(AdmittedPhase::AwaitStart, t0), None, "", now);
        assert_eq!(waiting.state, LiveState::Connecting);
        assert_eq!(waiting.frames_sent, 0);
        assert_eq!(waiting.fec_percent, 0, "nothing negotiated yet");
        assert_eq!(waiting.codec, "h264");
        let c = conn(AdmittedPhase::Streaming, t0);
        let started = MediaStatus {
            bitrate_kbps: 20_000,
            ..MediaStatus::default()
        };
        let r = row(&c, Some(&started), "sofa", now);
        assert_eq!(r.state, LiveState::Connecting, "no frame sent yet");
        assert_eq!(
            r.fec_percent, 20,
            "the negotiated parity until the controller speaks"
        );
        let flowing = MediaStatus {
            frames_sent: 42,
            loss_percent: 1.5,
            fec_percent: 11,
            bitrate_kbps: 20_000,
        };
        let r = row(&c, Some(&flowing), "sofa", now);
        assert_eq!(
            r,
            LiveSession {
                protocol: Protocol::Pf1,
                id: "3".into(),
                client: LiveClient {
                    id: "ab".repeat(32),
                    name: "sofa".into(),
                },
                address: Some(SocketAddr::from((Ipv4Addr::LOCALHOST, 50001))),
                state: LiveState::Streaming,
                mode: LiveMode {
                    width: 320,
                    height: 240,
                    fps: 60,
                },
                codec: "h264".into(),
                bitrate_kbps: 20_000,
                frames_sent: 42,
                loss_percent: 1.5,
                fec_percent: 11,
                age_s: 7,
            }
        );
    }
}
