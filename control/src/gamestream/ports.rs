//! GameStream ports, all derived from one base port as Sunshine's `map_port()` does
//! (`src/network.cpp`; docs/gamestream-protocol-notes.md "Ports").
//!
//! ```text
//!   base-5  HTTPS nvhttp (TCP)      base+9   video RTP (UDP)
//!   base    HTTP nvhttp (TCP)       base+10  control/ENet (UDP)
//!   base+1  management API (TCP)    base+11  audio RTP (UDP)
//!                                   base+21  RTSP (TCP)
//! ```
//!
//! Moonlight learns the HTTPS port from `<HttpsPort>` in `/serverinfo` and the RTSP port from
//! `<sessionUrl0>`; video, audio and control ports come from the RTSP SETUP replies. Only the
//! HTTP port must be known to the client (mDNS or the user typing `host:port`).

/// The default base port: nvhttp over plain HTTP.
pub const DEFAULT_BASE_PORT: u16 = 47_989;

const HTTPS_OFFSET: i32 = -5;
const MANAGEMENT_OFFSET: i32 = 1;
const VIDEO_OFFSET: i32 = 9;
const CONTROL_OFFSET: i32 = 10;
const AUDIO_OFFSET: i32 = 11;
const RTSP_OFFSET: i32 = 21;

/// A base port whose derived ports would leave `1..=65535`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error(
    "base port {0} is out of range: it must be between 6 and 65514 so that base-5 and base+21 are ports"
)]
pub struct PortRangeError(pub u16);

/// Every GameStream port of one host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ports {
    base: u16,
}

impl Default for Ports {
    fn default() -> Self {
        Self {
            base: DEFAULT_BASE_PORT,
        }
    }
}

impl Ports {
    /// Ports for `base`, which must leave room for the offsets −5 … +21.
    pub fn new(base: u16) -> Result<Self, PortRangeError> {
        let lowest = i32::from(base) + HTTPS_OFFSET;
        let highest = i32::from(base) + RTSP_OFFSET;
        if lowest < 1 || highest > i32::from(u16::MAX) {
            return Err(PortRangeError(base));
        }
        Ok(Self { base })
    }

    fn offset(self, by: i32) -> u16 {
        // `new` checked base-5 and base+21, and every offset lies between them.
        u16::try_from(i32::from(self.base) + by).unwrap_or(self.base)
    }

    /// The base port: nvhttp over plain HTTP (47989).
    pub fn http(self) -> u16 {
        self.base
    }
    /// nvhttp over mutual TLS (47984).
    pub fn https(self) -> u16 {
        self.offset(HTTPS_OFFSET)
    }
    /// The local management API (47990, Sunshine's web UI port).
    pub fn management(self) -> u16 {
        self.offset(MANAGEMENT_OFFSET)
    }
    /// Video RTP, UDP (47998).
    pub fn video(self) -> u16 {
        self.offset(VIDEO_OFFSET)
    }
    /// Control stream (ENet), UDP (47999).
    pub fn control(self) -> u16 {
        self.offset(CONTROL_OFFSET)
    }
    /// Audio RTP, UDP (48000).
    pub fn audio(self) -> u16 {
        self.offset(AUDIO_OFFSET)
    }
    /// RTSP, TCP (48010).
    pub fn rtsp(self) -> u16 {
        self.offset(RTSP_OFFSET)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_sunshine() {
        let p = Ports::default();
        assert_eq!(
            [
                p.https(),
                p.http(),
                p.management(),
                p.video(),
                p.control(),
                p.audio(),
                p.rtsp()
            ],
            [47984, 47989, 47990, 47998, 47999, 48000, 48010]
        );
    }

    #[test]
    fn range_is_checked() {
        assert!(Ports::new(5).is_err());
        assert_eq!(Ports::new(6).unwrap().https(), 1);
        assert_eq!(Ports::new(65514).unwrap().rtsp(), 65535);
        assert!(Ports::new(65515).is_err());
        assert_eq!(Ports::new(50000).unwrap().rtsp(), 50021);
    }
}
