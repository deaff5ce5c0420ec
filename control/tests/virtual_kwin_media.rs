//! `[capture] source = "kwin"`'s media factory against a real KWin (cargo feature `kwin`):
//! `KwinMedia::video` for a Moonlight ANNOUNCE (1280x720@60) asks KWin for a virtual output and
//! builds the stream's source, encoder and input on it; the output goes with the stream.
//!
//! KWin 5.27's `--virtual` backend (the one that runs here, `capture/tests/kwin_session`)
//! refuses virtual outputs: then the test checks that the refusal reaches the caller with KWin's
//! reason and records the skip `kwin-virtual-output`; on a KWin that makes them it checks the
//! whole path. docs/capture.md, "KWin (KDE)".
//!
//! Run: `cargo test -p punktfunk-control --features kwin --test virtual_kwin_media`.
#![cfg(feature = "kwin")]

use punktfunk_capture::kwin;
use punktfunk_control::media::KwinMedia;
use punktfunk_control::stream::sdp::StreamConfig;
use punktfunk_control::stream::session::MediaFactory as _;

mod skip {
    include!(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/skip.rs"));
}
#[path = "../../capture/tests/kwin_session/mod.rs"]
mod kwin_session;
use kwin_session::{Session, TIMEOUT};

/// An ANNOUNCE body as moonlight-common-c 7.1.431 sends it for 1280x720@60, 20 Mbps (the
/// fixture of control/src/stream/sdp.rs's tests).
const ANNOUNCE: &str = "v=0\r\n\
o=android 0 14 IN IPv4 127.0.0.1\r\n\
s=NVIDIA Streaming Client\r\n\
a=x-ml-general.featureFlags:3 \r\n\
a=x-ss-general.encryptionEnabled:5 \r\n\
a=x-ss-video[0].chromaSamplingType:0 \r\n\
a=x-nv-video[0].clientViewportWd:1280 \r\n\
a=x-nv-video[0].clientViewportHt:720 \r\n\
a=x-nv-video[0].maxFPS:60 \r\n\
a=x-nv-video[0].clientRefreshRateX100:6000 \r\n\
a=x-nv-video[0].packetSize:1392 \r\n\
a=x-nv-video[0].rateControlMode:4 \r\n\
a=x-nv-video[0].timeoutLengthMs:7000 \r\n\
a=x-nv-video[0].framesWithInvalidRefThreshold:0 \r\n\
a=x-nv-video[0].initialBitrateKbps:16000 \r\n\
a=x-nv-video[0].initialPeakBitrateKbps:16000 \r\n\
a=x-nv-vqos[0].bw.minimumBitrateKbps:16000 \r\n\
a=x-nv-vqos[0].bw.maximumBitrateKbps:16000 \r\n\
a=x-ml-video.configuredBitrateKbps:20000 \r\n\
a=x-nv-vqos[0].fec.enable:1 \r\n\
a=x-nv-vqos[0].videoQualityScoreUpdateTime:5000 \r\n\
a=x-nv-vqos[0].qosTrafficType:5 \r\n\
a=x-nv-aqos.qosTrafficType:4 \r\n\
a=x-nv-general.featureFlags:167 \r\n\
a=x-nv-general.useReliableUdp:13 \r\n\
a=x-nv-vqos[0].fec.minRequiredFecPackets:2 \r\n\
a=x-nv-vqos[0].bllFec.enable:0 \r\n\
a=x-nv-vqos[0].drc.enable:0 \r\n\
a=x-nv-general.enableRecoveryMode:0 \r\n\
a=x-nv-video[0].videoEncoderSlicesPerFrame:1 \r\n\
a=x-nv-vqos[0].bitStreamFormat:0 \r\n\
a=x-nv-video[0].dynamicRangeMode:0 \r\n\
a=x-nv-video[0].maxNumReferenceFrames:1 \r\n\
a=x-nv-video[0].encoderCscMode:2 \r\n\
a=x-nv-audio.surround.numChannels:2 \r\n\
a=x-nv-audio.surround.channelMask:3 \r\n\
a=x-nv-audio.surround.enable:0 \r\n\
a=x-nv-audio.surround.AudioQuality:0 \r\n\
a=x-nv-aqos.packetDuration:5 \r\n\
t=0 0\r\n\
m=video 47998  \r\n";

#[test]
fn virtual_kwin_media_makes_an_output_per_stream() {
    let Some(session) = Session::start(1280, 720) else {
        return;
    };
    let config = StreamConfig::parse(ANNOUNCE.as_bytes()).expect("ANNOUNCE");
    let media = KwinMedia::new(session.socket());
    match media.video(&config) {
        Ok(video) => {
            let name = video.display.clone().expect("a display of its own");
            assert!(name.starts_with("Virtual-punktfunk-"), "{name}");
            assert!(video.input.is_some(), "fake input into the stream's output");
            let listed = |name: &str| {
                kwin::probe(&session.socket(), TIMEOUT)
                    .expect("probe")
                    .outputs
                    .iter()
                    .any(|(n, g)| n == name && (g.width, g.height) == (1280, 720))
            };
            assert!(listed(&name), "{name} not listed at 1280x720");
            drop(video);
            assert!(!listed(&name), "{name} still listed after the stream");
        }
        Err(e) => {
            // KWin's own reason reaches the stream's error.
            assert!(
                e.contains("KWin virtual output") && e.contains("Could not find output"),
                "{e}"
            );
            skip::skip(
                "kwin-virtual-output",
                format!("KwinMedia::video: {e} (KWin 5.27's --virtual backend)"),
            );
        }
    }
}
