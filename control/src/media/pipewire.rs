//! A PipeWire video node as every session's picture (act; cargo feature `pipewire`): a portal
//! screencast, a camera, or gamescope's `gamescope` stream. Each stream connects its own
//! capture of the node and scales the node's pictures to its client's mode
//! (`punktfunk_capture::pipewire::NodeCapture`); sound is the desktop's
//! ([`super::audio`]). There is no per-session display: input goes to the host-wide handler,
//! and an app's command cannot be started "inside" the node.

use std::sync::Arc;
use std::time::Duration;

use punktfunk_capture::VideoEncoder as _;
use punktfunk_capture::pipewire::{NodeCapture, PipeWireCapture, Target};
use punktfunk_capture::stages::{EncodeStage, ModeSwitch};

use super::pattern::{encoder_for_mode, video_encoder};
use crate::stream::sdp::StreamConfig;
use crate::stream::session::{AudioSource, MediaFactory, VideoMedia};

/// How long connecting to the daemon and finding the node may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// `node` as a capture target: a decimal number is a global id, anything else a `node.name`.
pub(super) fn target(node: &str) -> Target {
    node.parse::<u32>()
        .map_or_else(|_| Target::Name(node.to_owned()), Target::Id)
}

/// Whether this process can capture `node` now (connects once and lets go), or why not.
pub(super) fn probe(node: &str) -> Result<String, String> {
    PipeWireCapture::connect(target(node), CONNECT_TIMEOUT)
        .map(|_| node.to_owned())
        .map_err(|e| e.to_string())
}

/// Every stream captures one PipeWire node (see the module docs).
#[derive(Debug, Clone)]
pub struct PipeWireMedia {
    node: String,
}

impl PipeWireMedia {
    /// Sessions of the node `node` (`node.name` or id).
    pub fn new(node: String) -> Self {
        Self { node }
    }

    fn capture(&self) -> Result<PipeWireCapture, String> {
        PipeWireCapture::connect(target(&self.node), CONNECT_TIMEOUT)
            .map_err(|e| format!("PipeWire node {}: {e}", self.node))
    }
}

impl MediaFactory for PipeWireMedia {
    fn video(&self, config: &StreamConfig) -> Result<VideoMedia, String> {
        let (enc, frame_capacity) = video_encoder(config)?;
        let c = enc.config();
        let source = NodeCapture::new(self.capture()?, c.width, c.height, c.fps)
            .map_err(|e| e.to_string())?;
        tracing::info!(node = %self.node, mode = %format!("{}x{}@{}", c.width, c.height, c.fps),
            "PipeWire node captured for this stream");
        let encoder = EncodeStage::new(enc).map_err(|e| e.to_string())?;
        Ok(VideoMedia::new(
            Box::new(source),
            Box::new(encoder),
            frame_capacity,
        ))
    }

    fn switched_video(&self, switch: Arc<ModeSwitch>) -> Result<VideoMedia, String> {
        let (enc, frame_capacity) = encoder_for_mode(switch.get().0)?;
        let source =
            NodeCapture::with_switch(self.capture()?, switch.clone()).map_err(|e| e.to_string())?;
        let encoder = EncodeStage::with_switch(enc, switch).map_err(|e| e.to_string())?;
        Ok(VideoMedia::new(
            Box::new(source),
            Box::new(encoder),
            frame_capacity,
        ))
    }

    fn audio(&self, config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
        super::audio::desktop_audio(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_ids_and_the_rest_names() {
        assert_eq!(target("42"), Target::Id(42));
        assert_eq!(target("xdpw"), Target::Name("xdpw".into()));
        assert_eq!(target("-1"), Target::Name("-1".into()));
    }
}
