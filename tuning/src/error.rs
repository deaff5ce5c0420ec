//! The crate's error type and the field-level problems and warnings it reports.

use std::fmt;
use std::path::PathBuf;

/// A profile key whose value cannot work. Collected so one run reports every bad key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Dotted key, e.g. `pacing.frame_share`.
    pub field: &'static str,
    /// Why the value is refused, with the value.
    pub reason: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

/// A profile key whose value works but is probably not what was meant (a core this machine
/// lacks, a pool smaller than a ring). Loading goes on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// Dotted key, e.g. `pipeline.cores.send`.
    pub field: &'static str,
    /// What will happen and why.
    pub reason: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.reason)
    }
}

struct Problems<'a>(&'a [Problem]);

impl fmt::Display for Problems<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, p) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

/// Why a profile could not be loaded. Every variant names the file; messages are complete on
/// their own (the underlying error is part of the text, not a separate `source`).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuningError {
    /// The file could not be read (OS I/O).
    #[error("{}: cannot read profile: {error}", .path.display())]
    Read {
        /// The profile file.
        path: PathBuf,
        /// The OS error.
        error: std::io::Error,
    },
    /// The file is not valid TOML for the schema: bad syntax, an unknown table or key, or a
    /// value of the wrong type. The message gives line, column and key.
    #[error("{}: {error}", .path.display())]
    Parse {
        /// The profile file.
        path: PathBuf,
        /// The parser's error.
        error: toml::de::Error,
    },
    /// Values that cannot work, all of them.
    #[error("{}: {}", .path.display(), Problems(.problems))]
    Invalid {
        /// The profile file.
        path: PathBuf,
        /// Every refused key.
        problems: Vec<Problem>,
    },
}
