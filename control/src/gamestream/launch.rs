//! `/launch` and `/resume` query parameters as typed requests (docs/gamestream-protocol-notes.md
//! "Launch"; moonlight-qt `NvHTTP::startApp`, Sunshine `make_launch_session`).
//!
//! ```text
//! appid=1&mode=1920x1080x60&additionalStates=1&sops=0&rikey=<32 hex>&rikeyid=-1234567
//!   &localAudioPlayMode=0&surroundAudioInfo=196610&remoteControllersBitmap=0&gcmap=0
//!   &gcpersist=0&corever=1[&hdrMode=1&clientHdrCapVersion=…]
//! ```
//!
//! `/launch` requires `appid`, `mode`, `rikey`, `rikeyid` and `localAudioPlayMode`; `/resume`
//! requires only `rikey` and `rikeyid` (moonlight-python sends nothing else). Unknown
//! parameters are ignored; known ones with a bad value are refused.

use super::query::{Query, QueryError, hex_array};

/// Largest width or height accepted in `mode`.
pub const MAX_DIMENSION: u32 = 16_384;
/// Largest frame rate accepted in `mode`.
pub const MAX_FPS: u32 = 1_000;

/// `mode=WxHxFPS`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct DisplayMode {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Frames per second.
    pub fps: u32,
}

impl DisplayMode {
    /// Parses `WxHxFPS`.
    pub fn parse(s: &str) -> Result<Self, QueryError> {
        let bad = |reason| QueryError::BadValue {
            name: "mode",
            reason,
        };
        let mut it = s.split('x');
        let mut next = |max: u32| -> Result<u32, QueryError> {
            let v: u32 = it
                .next()
                .ok_or(bad("expected WIDTHxHEIGHTxFPS"))?
                .parse()
                .map_err(|_| bad("not a number"))?;
            if v == 0 || v > max {
                return Err(bad("out of range"));
            }
            Ok(v)
        };
        let mode = Self {
            width: next(MAX_DIMENSION)?,
            height: next(MAX_DIMENSION)?,
            fps: next(MAX_FPS)?,
        };
        if it.next().is_some() {
            return Err(bad("expected WIDTHxHEIGHTxFPS"));
        }
        Ok(mode)
    }
}

/// The 16-byte AES key (`rikey`) for every encrypted stream of the session: control-stream
/// GCM, RTSP encryption, video GCM, audio CBC. Its `Debug` does not print it.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct RiKey(pub [u8; 16]);

impl std::fmt::Debug for RiKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RiKey(..)")
    }
}

/// `surroundAudioInfo = channelMask << 16 | channelCount` (stereo: 196610 = 0x3_0002).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SurroundAudioInfo(pub u32);

impl SurroundAudioInfo {
    /// Stereo, the default when the parameter is absent.
    pub const STEREO: Self = Self(0x0003_0002);

    /// Number of channels (2, 6 or 8).
    pub fn channel_count(self) -> u16 {
        (self.0 & 0xffff) as u16
    }

    /// Speaker mask.
    pub fn channel_mask(self) -> u16 {
        (self.0 >> 16) as u16
    }
}

/// What `/launch` and `/resume` share: keys, audio layout and client capabilities.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct StreamParams {
    /// `rikey`.
    pub rikey: RiKey,
    /// `rikeyid`: big-endian first 4 bytes of the client's IV, may be negative. The AES IV
    /// for audio starts as `BE32(rikeyid)` (notes "Audio encryption").
    pub rikeyid: i32,
    /// `surroundAudioInfo`.
    pub surround: SurroundAudioInfo,
    /// `surroundParams` (Sunshine extension), if sent.
    pub surround_params: Option<String>,
    /// `sops`: let the host change display settings for the stream.
    pub sops: bool,
    /// `hdrMode=1`: the client wants 10-bit HDR.
    pub hdr: bool,
    /// `remoteControllersBitmap` / `gcmap`: gamepads present on the client.
    pub gamepad_mask: u16,
    /// `gcpersist`: keep virtual gamepads after disconnect.
    pub gamepad_persist: bool,
    /// `corever`: ≥ 1 means the client supports encrypted RTSP (`rtspenc://`).
    pub corever: u32,
    /// `continuousAudio` (Sunshine extension).
    pub continuous_audio: bool,
}

/// A parsed `/launch`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct LaunchRequest {
    /// `appid`: which app (1 is the desktop).
    pub app_id: u32,
    /// `mode`.
    pub mode: DisplayMode,
    /// `localAudioPlayMode=1`: keep playing audio on the host too.
    pub local_audio: bool,
    /// Keys and capabilities.
    pub stream: StreamParams,
}

/// A parsed `/resume`: reattach to the running app, with new keys.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct ResumeRequest {
    /// `appid`, if sent.
    pub app_id: Option<u32>,
    /// `mode`, if sent.
    pub mode: Option<DisplayMode>,
    /// `localAudioPlayMode`, if sent.
    pub local_audio: Option<bool>,
    /// Keys and capabilities.
    pub stream: StreamParams,
}

fn flag(q: &Query, name: &'static str) -> Result<Option<bool>, QueryError> {
    match q.get(name) {
        None => Ok(None),
        Some("0") => Ok(Some(false)),
        Some("1") => Ok(Some(true)),
        Some(_) => Err(QueryError::BadValue {
            name,
            reason: "expected 0 or 1",
        }),
    }
}

fn number<T: std::str::FromStr>(q: &Query, name: &'static str) -> Result<Option<T>, QueryError> {
    q.get(name)
        .map(|v| {
            v.parse().map_err(|_| QueryError::BadValue {
                name,
                reason: "not a number in range",
            })
        })
        .transpose()
}

fn app_id(q: &Query) -> Result<Option<u32>, QueryError> {
    match number::<u32>(q, "appid")? {
        Some(0) => Err(QueryError::BadValue {
            name: "appid",
            reason: "must be positive",
        }),
        other => Ok(other),
    }
}

impl StreamParams {
    /// Parses the shared parameters.
    pub fn parse(q: &Query) -> Result<Self, QueryError> {
        let rikey = RiKey(hex_array::<16>("rikey", q.require("rikey")?)?);
        // Moonlight sends a signed 32-bit value; accept its unsigned spelling too, as
        // Sunshine's 64-bit parse and `(int)` cast does.
        let raw: i64 = q
            .require("rikeyid")?
            .parse()
            .map_err(|_| QueryError::BadValue {
                name: "rikeyid",
                reason: "not a number",
            })?;
        let rikeyid = if (i64::from(i32::MIN)..=i64::from(u32::MAX)).contains(&raw) {
            raw as u32 as i32
        } else {
            return Err(QueryError::BadValue {
                name: "rikeyid",
                reason: "not a 32-bit value",
            });
        };
        let gamepad_mask = match number::<u16>(q, "remoteControllersBitmap")? {
            Some(m) => m,
            None => number::<u16>(q, "gcmap")?.unwrap_or(0),
        };
        Ok(Self {
            rikey,
            rikeyid,
            surround: SurroundAudioInfo(
                number(q, "surroundAudioInfo")?.unwrap_or(SurroundAudioInfo::STEREO.0),
            ),
            surround_params: q.get("surroundParams").map(str::to_owned),
            sops: flag(q, "sops")?.unwrap_or(false),
            hdr: flag(q, "hdrMode")?.unwrap_or(false),
            gamepad_mask,
            gamepad_persist: flag(q, "gcpersist")?.unwrap_or(false),
            corever: number(q, "corever")?.unwrap_or(0),
            continuous_audio: flag(q, "continuousAudio")?.unwrap_or(false),
        })
    }
}

impl LaunchRequest {
    /// Parses `/launch`.
    pub fn parse(q: &Query) -> Result<Self, QueryError> {
        Ok(Self {
            app_id: app_id(q)?.ok_or(QueryError::Missing("appid"))?,
            mode: DisplayMode::parse(q.require("mode")?)?,
            local_audio: flag(q, "localAudioPlayMode")?
                .ok_or(QueryError::Missing("localAudioPlayMode"))?,
            stream: StreamParams::parse(q)?,
        })
    }
}

impl ResumeRequest {
    /// Parses `/resume`.
    pub fn parse(q: &Query) -> Result<Self, QueryError> {
        Ok(Self {
            app_id: app_id(q)?,
            mode: q.get("mode").map(DisplayMode::parse).transpose()?,
            local_audio: flag(q, "localAudioPlayMode")?,
            stream: StreamParams::parse(q)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MOONLIGHT: &str = "uniqueid=0123456789ABCDEF&uuid=1&appid=1&mode=1920x1080x60\
        &additionalStates=1&sops=1&rikey=000102030405060708090a0b0c0d0e0f&rikeyid=-123456\
        &localAudioPlayMode=0&surroundAudioInfo=196610&remoteControllersBitmap=1&gcmap=1\
        &gcpersist=0&corever=1";

    #[test]
    fn parses_a_moonlight_launch() {
        let r = LaunchRequest::parse(&Query::parse(MOONLIGHT).unwrap()).unwrap();
        assert_eq!(r.app_id, 1);
        assert_eq!(
            r.mode,
            DisplayMode {
                width: 1920,
                height: 1080,
                fps: 60
            }
        );
        assert!(!r.local_audio);
        assert_eq!(r.stream.rikey.0, core::array::from_fn(|i| i as u8));
        assert_eq!(r.stream.rikeyid, -123_456);
        assert_eq!(r.stream.surround.channel_count(), 2);
        assert_eq!(r.stream.surround.channel_mask(), 3);
        assert!(r.stream.sops);
        assert_eq!(r.stream.gamepad_mask, 1);
        assert_eq!(r.stream.corever, 1);
        assert_eq!(format!("{:?}", r.stream.rikey), "RiKey(..)");
    }

    #[test]
    fn resume_needs_only_keys() {
        let q = Query::parse("rikey=000102030405060708090a0b0c0d0e0f&rikeyid=4294967295").unwrap();
        let r = ResumeRequest::parse(&q).unwrap();
        assert_eq!(r.stream.rikeyid, -1);
        assert_eq!(r.mode, None);
        assert_eq!(r.stream.surround, SurroundAudioInfo::STEREO);
        assert!(LaunchRequest::parse(&q).is_err());
    }

    #[test]
    fn refuses_bad_values() {
        let with = |from: &str, to: &str| {
            LaunchRequest::parse(&Query::parse(&MOONLIGHT.replace(from, to)).unwrap())
        };
        assert_eq!(
            with("appid=1", "appid=0").unwrap_err().to_string(),
            "bad value for `appid`: must be positive"
        );
        assert!(with("appid=1&", "").is_err());
        assert!(with("1920x1080x60", "1920x1080").is_err());
        assert!(with("1920x1080x60", "1920x1080x60x1").is_err());
        assert!(with("1920x1080x60", "0x1080x60").is_err());
        assert!(with("1920x1080x60", "99999x1080x60").is_err());
        assert!(with("rikey=00", "rikey=zz").is_err());
        assert!(with("0e0f&", "0e&").is_err());
        assert!(with("-123456", "99999999999").is_err());
        assert!(with("localAudioPlayMode=0", "localAudioPlayMode=2").is_err());
        assert!(with("localAudioPlayMode=0&", "").is_err());
        assert!(with("196610", "-1").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in "[a-zA-Z=&0-9x%-]{0,200}") {
            if let Ok(q) = Query::parse(&s) {
                let _ = LaunchRequest::parse(&q);
                let _ = ResumeRequest::parse(&q);
            }
        }
    }
}
