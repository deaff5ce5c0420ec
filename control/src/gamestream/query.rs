//! Query strings (`a=b&c=d`) and the hex fields GameStream puts in them.
//!
//! Everything Moonlight sends is a `GET` with a query string (docs/gamestream-protocol-notes.md
//! "Query parameters"). Keys are matched ASCII case-insensitively, as Sunshine's
//! `CaseInsensitiveMultimap` does; the first occurrence of a key wins. Values are percent-decoded
//! (`%41`, and `+` as a space, since `devicename` may be form-encoded). The input is hostile:
//! limits on length and count keep the work bounded, and every failure is a [`QueryError`], never a
//! panic (see the `nvhttp_query` fuzz target).

use std::fmt::Write as _;

/// Longest query string accepted. The largest legitimate one is pairing phase 1, which
/// carries the client certificate PEM as hex (about 2.5 KB for RSA-2048, twice that with
/// long names); 32 KiB leaves room for RSA-8192.
pub const MAX_QUERY_LEN: usize = 32 * 1024;

/// Most parameters accepted in one query (a launch sends about 15).
pub const MAX_PARAMS: usize = 64;

/// Why a query string or a field in it was refused. All variants are malformed peer input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// Longer than [`MAX_QUERY_LEN`].
    #[error("query string is {0} bytes, more than {MAX_QUERY_LEN}")]
    TooLong(usize),
    /// More than [`MAX_PARAMS`] parameters.
    #[error("more than {MAX_PARAMS} query parameters")]
    TooManyParams,
    /// A `%` not followed by two hex digits.
    #[error("bad percent-encoding in query string")]
    BadPercentEncoding,
    /// A decoded key or value is not UTF-8.
    #[error("query parameter is not UTF-8")]
    NotUtf8,
    /// A required parameter is absent.
    #[error("missing parameter `{0}`")]
    Missing(&'static str),
    /// A parameter's value has the wrong form.
    #[error("bad value for `{name}`: {reason}")]
    BadValue {
        /// The parameter.
        name: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A parsed query string.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    params: Vec<(String, String)>,
}

impl Query {
    /// Parses the part of a URI after `?` (without the `?`). An empty string is an empty query.
    pub fn parse(raw: &str) -> Result<Self, QueryError> {
        if raw.len() > MAX_QUERY_LEN {
            return Err(QueryError::TooLong(raw.len()));
        }
        let mut params = Vec::new();
        for part in raw.split('&').filter(|p| !p.is_empty()) {
            if params.len() == MAX_PARAMS {
                return Err(QueryError::TooManyParams);
            }
            let (k, v) = part.split_once('=').unwrap_or((part, ""));
            params.push((percent_decode(k)?, percent_decode(v)?));
        }
        Ok(Self { params })
    }

    /// The first value of `name` (ASCII case-insensitive), if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The value of `name`, or [`QueryError::Missing`].
    pub fn require(&self, name: &'static str) -> Result<&str, QueryError> {
        self.get(name).ok_or(QueryError::Missing(name))
    }

    /// Whether `name` is present.
    pub fn has(&self, name: &str) -> bool {
        self.get(name).is_some()
    }

    /// Every parameter, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.params.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

fn hex_val(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

fn percent_decode(s: &str) -> Result<String, QueryError> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_owned());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hi = b.get(i + 1).copied().and_then(hex_val);
                let lo = b.get(i + 2).copied().and_then(hex_val);
                match (hi, lo) {
                    (Some(hi), Some(lo)) => out.push(hi << 4 | lo),
                    _ => return Err(QueryError::BadPercentEncoding),
                }
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).map_err(|_| QueryError::NotUtf8)
}

/// Decodes hex of either case. `name` labels the error.
pub fn hex_decode(name: &'static str, s: &str) -> Result<Vec<u8>, QueryError> {
    let b = s.as_bytes();
    if !b.len().is_multiple_of(2) {
        return Err(QueryError::BadValue {
            name,
            reason: "odd number of hex digits",
        });
    }
    b.chunks_exact(2)
        .map(|p| match (hex_val(p[0]), hex_val(p[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(QueryError::BadValue {
                name,
                reason: "not hex",
            }),
        })
        .collect()
}

/// Decodes exactly `N` bytes of hex.
pub fn hex_array<const N: usize>(name: &'static str, s: &str) -> Result<[u8; N], QueryError> {
    hex_decode(name, s)?
        .try_into()
        .map_err(|_| QueryError::BadValue {
            name,
            reason: "wrong length",
        })
}

/// Upper-case hex, as Sunshine emits it.
pub fn hex_upper(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02X}");
    }
    s
}

/// Lower-case hex, for fingerprints and ids.
pub fn hex_lower(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_moonlight_query() {
        let q = Query::parse(
            "uniqueid=0123456789ABCDEF&uuid=5f1e&devicename=roth&updateState=1&phrase=getservercert",
        )
        .unwrap();
        assert_eq!(q.get("uniqueid"), Some("0123456789ABCDEF"));
        assert_eq!(q.get("UPDATESTATE"), Some("1"));
        assert_eq!(q.get("phrase"), Some("getservercert"));
        assert_eq!(q.get("salt"), None);
        assert_eq!(q.require("salt"), Err(QueryError::Missing("salt")));
    }

    #[test]
    fn first_value_wins_and_empty_parts_are_skipped() {
        let q = Query::parse("a=1&&a=2&b&=x").unwrap();
        assert_eq!(q.get("a"), Some("1"));
        assert_eq!(q.get("b"), Some(""));
        assert_eq!(q.get(""), Some("x"));
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    #[test]
    fn percent_decoding() {
        let q = Query::parse("devicename=Living%20Room+TV&x=%c3%a4").unwrap();
        assert_eq!(q.get("devicename"), Some("Living Room TV"));
        assert_eq!(q.get("x"), Some("ä"));
        assert_eq!(Query::parse("a=%4"), Err(QueryError::BadPercentEncoding));
        assert_eq!(Query::parse("a=%zz"), Err(QueryError::BadPercentEncoding));
        assert_eq!(Query::parse("a=%ff"), Err(QueryError::NotUtf8));
    }

    #[test]
    fn limits() {
        let long = "a".repeat(MAX_QUERY_LEN + 1);
        assert_eq!(
            Query::parse(&long),
            Err(QueryError::TooLong(MAX_QUERY_LEN + 1))
        );
        let many = vec!["a=1"; MAX_PARAMS + 1].join("&");
        assert_eq!(Query::parse(&many), Err(QueryError::TooManyParams));
        let ok = vec!["a=1"; MAX_PARAMS].join("&");
        assert!(Query::parse(&ok).is_ok());
    }

    #[test]
    fn hex() {
        assert_eq!(hex_decode("x", "00fFaB").unwrap(), [0x00, 0xff, 0xab]);
        assert!(hex_decode("x", "0").is_err());
        assert!(hex_decode("x", "0g").is_err());
        assert_eq!(hex_upper(&[0xab, 0x01]), "AB01");
        assert_eq!(hex_lower(&[0xab, 0x01]), "ab01");
        assert_eq!(hex_array::<2>("x", "abcd").unwrap(), [0xab, 0xcd]);
        assert!(hex_array::<2>("x", "abcdef").is_err());
    }

    proptest! {
        #[test]
        fn never_panics(s in ".{0,300}") {
            let _ = Query::parse(&s);
            let _ = hex_decode("x", &s);
        }

        #[test]
        fn hex_round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..64)) {
            prop_assert_eq!(hex_decode("x", &hex_upper(&bytes)).unwrap(), bytes.clone());
            prop_assert_eq!(hex_decode("x", &hex_lower(&bytes)).unwrap(), bytes);
        }
    }
}
