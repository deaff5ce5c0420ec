//! punktfunk tuning profiles: the TOML schema, loading and validation, and checks of the
//! running machine.
//!
//! A profile (`tuning/*.toml`) sets the stage pipeline's shape, the kernel send path, pacing,
//! FEC and encoder defaults. [`load`] reads one, fills in defaults for every missing key,
//! refuses values that cannot work ([`TuningError`], naming file, key and reason) and warns
//! about values that work but look wrong (a pinned core this machine lacks). The result,
//! [`Settings`], holds the engine's own configuration types ([`PipelineConfig`], [`SendConfig`]
//! with its [`PacingConfig`]), ready to hand to the engine. [`check_system`] then compares the
//! machine with those settings: cores, socket buffer limits, busy polling, io_uring, governors.
//!
//! The crate is split like the engine: [`profile`], [`settings`] and [`check`] decide (pure
//! functions of text and facts), [`system`] acts (reads the file, `/proc` and `/sys`).
//!
//! What it deliberately does not do: change the machine. It reports `sysctl` commands; it does
//! not run them. Nor does it probe kernel features by trying them; the io driver does that once
//! at start-up.
//!
//! The key reference, with defaults, is `docs/tuning.md`.
//!
//! [`PipelineConfig`]: punktfunk_engine::config::PipelineConfig
//! [`SendConfig`]: punktfunk_engine::config::SendConfig
//! [`PacingConfig`]: punktfunk_engine::config::PacingConfig
//!
//! # Example
//!
//! ```
//! use punktfunk_engine::config::Backpressure;
//! use punktfunk_tuning::{Level, TuningError};
//! use std::path::Path;
//!
//! let text = r#"
//!     [pipeline]
//!     ring_depth = 2
//!     backpressure = "block"
//!     cores = { send = 3 }
//!     [pacing]
//!     frame_share = 0.25
//! "#;
//! // Core 3 does not exist on a two-core machine: a warning, not an error.
//! let loaded = punktfunk_tuning::parse(text, Path::new("bench.toml"), Some(&[0, 1])).unwrap();
//! assert_eq!(loaded.settings.pipeline.backpressure, Backpressure::Block);
//! assert_eq!(loaded.settings.send.pacing.frame_share, 0.25);
//! assert_eq!(loaded.warnings[0].field, "pipeline.cores.send");
//!
//! let err = punktfunk_tuning::parse("[pacing]\nframe_share = 2.0", Path::new("bad.toml"), None)
//!     .unwrap_err();
//! assert!(matches!(err, TuningError::Invalid { .. }));
//! assert!(err.to_string().starts_with("bad.toml: pacing.frame_share: must be in (0, 1]"));
//!
//! for finding in punktfunk_tuning::check_system(&loaded.settings) {
//!     if finding.level == Level::Warn {
//!         println!("{finding}");
//!     }
//! }
//! ```

#![warn(missing_docs)]
#![forbid(unsafe_code)]

use std::path::Path;

pub mod check;
pub mod error;
pub mod profile;
pub mod settings;
pub mod system;

pub use check::{Apply, Finding, Fix, Level, Nic, SendSupport, SystemFacts};
pub use error::{Problem, TuningError, Warning};
pub use profile::{Codec, Profile, SourceName};
pub use settings::{
    EncoderNames, FecSettings, Resolved, SessionsSettings, Settings, VideoSettings,
};
pub use system::{Loaded, apply, check_system, load, read_facts};

/// Parses and validates profile text, as [`load`] does for a file, without touching the file
/// system. `origin` names the text in errors; `allowed_cores` (if known) is checked against
/// pinned cores.
pub fn parse(
    text: &str,
    origin: &Path,
    allowed_cores: Option<&[usize]>,
) -> Result<Loaded, TuningError> {
    let profile = Profile::from_toml(text).map_err(|error| TuningError::Parse {
        path: origin.to_owned(),
        error,
    })?;
    let resolved = profile
        .resolve(allowed_cores)
        .map_err(|problems| TuningError::Invalid {
            path: origin.to_owned(),
            problems,
        })?;
    Ok(Loaded {
        path: origin.to_owned(),
        settings: resolved.settings,
        warnings: resolved.warnings,
    })
}
