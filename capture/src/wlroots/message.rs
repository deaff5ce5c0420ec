//! The sway IPC wire format (the i3 IPC protocol, sway-ipc(7)): framing and the replies we read.
//!
//! ```text
//!  0        6          10         14
//!  ┌────────┬──────────┬──────────┬──────────────────────┐
//!  │"i3-ipc"│ len: u32 │ type: u32│ payload: len bytes    │  u32s in native byte order
//!  └────────┴──────────┴──────────┴──────────────────────┘  payload: UTF-8 (JSON in replies)
//! ```
//!
//! A reply carries the request's type. `RUN_COMMAND` (0) answers one `{"success": bool,
//! "error": "…"}` object per command; `GET_OUTPUTS` (3) answers an array of outputs with
//! `name`, `active` and `current_mode {width, height, refresh}` (refresh in mHz).
//!
//! Pure: bytes in, values out; the socket is [`super::ipc`]'s.
#![forbid(unsafe_code)]

use serde_json::Value;

use crate::display::{DisplayError, DisplayMode};

/// The magic string every message starts with.
pub const MAGIC: &[u8; 6] = b"i3-ipc";
/// Bytes of the header (magic, length, type).
pub const HEADER_LEN: usize = 14;
/// Largest reply payload accepted (sway's GET_OUTPUTS is a few KiB per output).
pub const MAX_PAYLOAD: u32 = 16 << 20;
/// Message type: run sway commands.
pub const RUN_COMMAND: u32 = 0;
/// Message type: list outputs.
pub const GET_OUTPUTS: u32 = 3;
/// Message type: sway's version.
pub const GET_VERSION: u32 = 7;

/// Appends one request (header and payload) to `out`.
pub fn encode(kind: u32, payload: &str, out: &mut Vec<u8>) -> Result<(), DisplayError> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l <= MAX_PAYLOAD)
        .ok_or_else(|| DisplayError::Protocol(format!("request of {} bytes", payload.len())))?;
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&len.to_ne_bytes());
    out.extend_from_slice(&kind.to_ne_bytes());
    out.extend_from_slice(payload.as_bytes());
    Ok(())
}

/// Reads a reply header: `(type, payload length)`.
pub fn parse_header(header: &[u8; HEADER_LEN]) -> Result<(u32, u32), DisplayError> {
    let (magic, rest) = header.split_at(6);
    if magic != MAGIC {
        return Err(DisplayError::Protocol(format!("bad magic {magic:02x?}")));
    }
    let word = |i: usize| u32::from_ne_bytes([rest[i], rest[i + 1], rest[i + 2], rest[i + 3]]);
    let (len, kind) = (word(0), word(4));
    if len > MAX_PAYLOAD {
        return Err(DisplayError::Protocol(format!("reply of {len} bytes")));
    }
    Ok((kind, len))
}

/// One output as GET_OUTPUTS lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputInfo {
    /// Output name, e.g. `HEADLESS-1`.
    pub name: String,
    /// Whether it is enabled.
    pub active: bool,
    /// Its current mode, if it has one.
    pub mode: Option<DisplayMode>,
}

fn json(payload: &[u8]) -> Result<Value, DisplayError> {
    serde_json::from_slice(payload).map_err(|e| DisplayError::Protocol(format!("reply JSON: {e}")))
}

/// Parses a GET_OUTPUTS reply.
pub fn parse_outputs(payload: &[u8]) -> Result<Vec<OutputInfo>, DisplayError> {
    let value = json(payload)?;
    let list = value
        .as_array()
        .ok_or_else(|| DisplayError::Protocol("GET_OUTPUTS reply is not an array".into()))?;
    list.iter()
        .map(|o| {
            let name = o["name"]
                .as_str()
                .ok_or_else(|| DisplayError::Protocol("output without a name".into()))?;
            let m = &o["current_mode"];
            let dim = |k: &str| m[k].as_u64().and_then(|v| u32::try_from(v).ok());
            let mode = match (dim("width"), dim("height"), dim("refresh")) {
                (Some(width), Some(height), Some(refresh_mhz)) => Some(DisplayMode {
                    width,
                    height,
                    refresh_mhz,
                }),
                _ => None,
            };
            Ok(OutputInfo {
                name: name.to_owned(),
                active: o["active"].as_bool().unwrap_or(false),
                mode,
            })
        })
        .collect()
}

/// Checks a RUN_COMMAND reply to `command`: every result must be a success.
pub fn check_command_reply(command: &str, payload: &[u8]) -> Result<(), DisplayError> {
    let value = json(payload)?;
    let results = value
        .as_array()
        .ok_or_else(|| DisplayError::Protocol("RUN_COMMAND reply is not an array".into()))?;
    if results.is_empty() {
        return Err(DisplayError::Protocol(format!("no result for `{command}`")));
    }
    for r in results {
        if r["success"].as_bool() != Some(true) {
            return Err(DisplayError::Refused {
                command: command.to_owned(),
                reason: r["error"].as_str().unwrap_or("no reason given").to_owned(),
            });
        }
    }
    Ok(())
}

/// Parses a GET_VERSION reply: `(major, minor, patch)`.
pub fn parse_version(payload: &[u8]) -> Result<(u32, u32, u32), DisplayError> {
    let value = json(payload)?;
    let part = |k: &str| {
        value[k]
            .as_u64()
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(|| DisplayError::Protocol(format!("GET_VERSION without `{k}`")))
    };
    Ok((part("major")?, part("minor")?, part("patch")?))
}

/// Whether sway `version` has `output NAME unplug` (added in sway 1.8; sway 1.7 cannot remove
/// a headless output at all: wlroots 0.15's headless backend refuses `disable` too).
pub fn can_unplug(version: (u32, u32, u32)) -> bool {
    (version.0, version.1) >= (1, 8)
}

/// The names in `after` that are not in `before`: what `create_output` added.
pub fn new_outputs<'a>(before: &[OutputInfo], after: &'a [OutputInfo]) -> Vec<&'a str> {
    after
        .iter()
        .filter(|a| before.iter().all(|b| b.name != a.name))
        .map(|a| a.name.as_str())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_framing() {
        let mut out = Vec::new();
        encode(GET_OUTPUTS, "", &mut out).unwrap();
        let mut want = b"i3-ipc".to_vec();
        want.extend_from_slice(&0u32.to_ne_bytes());
        want.extend_from_slice(&3u32.to_ne_bytes());
        assert_eq!(out, want);
        out.clear();
        encode(RUN_COMMAND, "create_output", &mut out).unwrap();
        assert_eq!(out.len(), HEADER_LEN + 13);
        let header: [u8; HEADER_LEN] = out[..HEADER_LEN].try_into().unwrap();
        assert_eq!(parse_header(&header).unwrap(), (RUN_COMMAND, 13));
        assert_eq!(&out[HEADER_LEN..], b"create_output");
    }

    #[test]
    fn bad_headers_are_errors() {
        let mut h = [0u8; HEADER_LEN];
        h[..6].copy_from_slice(b"i3-ipx");
        assert!(parse_header(&h).is_err());
        h[..6].copy_from_slice(MAGIC);
        h[6..10].copy_from_slice(&(MAX_PAYLOAD + 1).to_ne_bytes());
        assert!(parse_header(&h).is_err());
    }

    #[test]
    fn outputs_and_the_new_one() {
        let before = br#"[{"name":"HEADLESS-1","active":true,
            "current_mode":{"width":1280,"height":720,"refresh":60000}}]"#;
        let after = br#"[{"name":"HEADLESS-1","active":true,
            "current_mode":{"width":1280,"height":720,"refresh":60000}},
            {"name":"HEADLESS-2","active":false,"current_mode":{}}]"#;
        let before = parse_outputs(before).unwrap();
        let after = parse_outputs(after).unwrap();
        assert_eq!(before[0].mode, Some(DisplayMode::new(1280, 720, 60)));
        assert_eq!(after[1].mode, None);
        assert!(!after[1].active);
        assert_eq!(new_outputs(&before, &after), vec!["HEADLESS-2"]);
        assert!(parse_outputs(b"{}").is_err());
        assert!(parse_outputs(b"[{}]").is_err());
    }

    #[test]
    fn versions() {
        let v = parse_version(
            br#"{"human_readable":"1.7","variant":"sway","major":1,"minor":7,"patch":0,
                "loaded_config_file_name":"/dev/null"}"#,
        )
        .unwrap();
        assert_eq!(v, (1, 7, 0));
        assert!(!can_unplug(v));
        assert!(can_unplug((1, 8, 1)));
        assert!(can_unplug((2, 0, 0)));
        assert!(parse_version(br#"{"major":1}"#).is_err());
    }

    #[test]
    fn command_replies() {
        check_command_reply("c", br#"[{"success":true}]"#).unwrap();
        let refused = check_command_reply(
            "output X mode 1x1",
            br#"[{"success":false,"parse_error":false,"error":"Unknown output"}]"#,
        );
        assert!(
            matches!(refused, Err(DisplayError::Refused { ref reason, .. }) if reason == "Unknown output")
        );
        assert!(check_command_reply("c", b"[]").is_err());
        assert!(check_command_reply("c", b"not json").is_err());
    }
}
