//! A desktop session's sound (act): the default PipeWire sink's monitor (what games and
//! desktop apps play), Opus-encoded one packet per tick of the stream's audio clock; the
//! test tone where the build has no PipeWire (cargo feature `pipewire`) or no PipeWire daemon
//! answers. Which one a stream got is logged.
//!
//! An idle sink (nothing playing) is silence, not the tone: the tone marks "no desktop sound
//! available", silence "nothing is playing". docs/capture.md, "Desktop sound".

use super::pattern::TestMedia;
use crate::stream::sdp::StreamConfig;
use crate::stream::session::{AudioSource, MediaFactory};

/// The sound of a desktop stream for `config` (see the module docs).
pub(super) fn desktop_audio(config: &StreamConfig) -> Result<Box<dyn AudioSource>, String> {
    #[cfg(feature = "pipewire")]
    {
        use std::time::Duration;

        use punktfunk_capture::pipewire::{SinkAudio, Target};

        let opus = super::pattern::opus_config(config)?;
        match SinkAudio::connect(None, Target::DefaultSink, opus, Duration::from_secs(2)) {
            Ok(audio) => {
                tracing::info!(
                    channels = opus.channels(),
                    "desktop sound: the default PipeWire sink's monitor"
                );
                return Ok(Box::new(SinkOpus(audio)));
            }
            Err(e) => tracing::warn!(
                error = %e,
                "desktop sound unavailable (no PipeWire daemon for this process?); test tone"
            ),
        }
    }
    #[cfg(not(feature = "pipewire"))]
    tracing::info!("built without PipeWire (cargo feature `pipewire`): the test tone");
    TestMedia::default().audio(config)
}

/// Captured desktop sound as the stream's packets.
#[cfg(feature = "pipewire")]
struct SinkOpus(punktfunk_capture::pipewire::SinkAudio);

#[cfg(feature = "pipewire")]
impl AudioSource for SinkOpus {
    fn next_packet(&mut self) -> Result<&[u8], String> {
        self.0.next_packet().map_err(|e| e.to_string())
    }
}
