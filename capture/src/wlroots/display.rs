//! Headless sway outputs as [`VirtualDisplay`]s: `create_output`, `output NAME mode …`,
//! `output NAME unplug`.
//!
//! Act: IPC commands. Removal needs sway ≥ 1.8 (`output NAME unplug`); sway 1.7 (Debian 12)
//! has no way to remove a headless output (no `unplug`, and wlroots 0.15's headless backend
//! refuses `disable`: "Unsupported output state fields: 0x8"), so there
//! [`VirtualDisplay::remove`] returns [`DisplayError::Unsupported`] and the output stays. Sway names a new headless output `HEADLESS-n` without telling the
//! caller, so [`SwayDisplay::create`] lists the outputs before and after and takes the one
//! that appeared. Two sessions creating outputs at the same instant through different
//! connections could see each other's output; the host creates them one at a time.

use std::path::{Path, PathBuf};

use super::ipc::{DEFAULT_TIMEOUT, SwayIpc};
use super::message;
use crate::display::{DisplayBackend, DisplayError, DisplayMode, VirtualDisplay};

/// Makes headless outputs on the sway at one IPC socket.
#[derive(Debug, Clone)]
pub struct SwayDisplays {
    socket: PathBuf,
}

impl SwayDisplays {
    /// The sway whose IPC socket is `socket` (`$SWAYSOCK`).
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        Self {
            socket: socket.into(),
        }
    }
}

impl DisplayBackend for SwayDisplays {
    fn create_output(
        &mut self,
        mode: DisplayMode,
    ) -> Result<Box<dyn VirtualDisplay + Send>, DisplayError> {
        Ok(Box::new(SwayDisplay::create(&self.socket, mode)?))
    }
}

/// One headless output of sway, owned by a session; unplugged on [`VirtualDisplay::remove`]
/// or drop.
#[derive(Debug)]
pub struct SwayDisplay {
    ipc: SwayIpc,
    name: String,
    mode: DisplayMode,
    removed: bool,
    version: (u32, u32, u32),
}

impl SwayDisplay {
    /// Creates a headless output on the sway at `socket` and sets it to `mode`. If setting the
    /// mode fails, the new output is unplugged again.
    pub fn create(socket: &Path, mode: DisplayMode) -> Result<Self, DisplayError> {
        let mode = mode.validate()?;
        let mut ipc = SwayIpc::connect(socket, DEFAULT_TIMEOUT)?;
        let version = ipc.version()?;
        let before = ipc.outputs()?;
        ipc.run_command("create_output")?;
        let after = ipc.outputs()?;
        let name = match message::new_outputs(&before, &after).as_slice() {
            [one] => (*one).to_owned(),
            other => {
                return Err(DisplayError::Protocol(format!(
                    "create_output added {} outputs ({other:?}), expected one",
                    other.len()
                )));
            }
        };
        let mut created = Self {
            ipc,
            name,
            mode,
            removed: false,
            version,
        };
        created.set_mode(mode)?; // on error, drop unplugs
        tracing::info!(output = %created.name, %mode, "sway: virtual output created");
        Ok(created)
    }

    /// The version of the sway this output lives on.
    pub fn sway_version(&self) -> (u32, u32, u32) {
        self.version
    }

    /// Whether [`VirtualDisplay::remove`] can work on this sway (≥ 1.8).
    pub fn can_remove(&self) -> bool {
        message::can_unplug(self.version)
    }

    /// The IPC connection this output uses (e.g. to paint it: `output NAME bg …`).
    pub fn ipc(&mut self) -> &mut SwayIpc {
        &mut self.ipc
    }
}

impl VirtualDisplay for SwayDisplay {
    fn name(&self) -> &str {
        &self.name
    }

    fn mode(&self) -> DisplayMode {
        self.mode
    }

    fn set_mode(&mut self, mode: DisplayMode) -> Result<(), DisplayError> {
        let mode = mode.validate()?;
        if self.removed {
            return Err(DisplayError::Gone(self.name.clone()));
        }
        self.ipc
            .run_command(&format!("output {} mode {mode}", self.name))?;
        self.mode = mode;
        Ok(())
    }

    fn remove(&mut self) -> Result<(), DisplayError> {
        if self.removed {
            return Ok(());
        }
        if !self.can_remove() {
            let (major, minor, patch) = self.version;
            return Err(DisplayError::Unsupported(format!(
                "sway {major}.{minor}.{patch} cannot remove headless output {} \
                 (`output NAME unplug` needs sway 1.8)",
                self.name
            )));
        }
        self.ipc
            .run_command(&format!("output {} unplug", self.name))?;
        self.removed = true;
        tracing::info!(output = %self.name, "sway: virtual output removed");
        Ok(())
    }
}

impl Drop for SwayDisplay {
    fn drop(&mut self) {
        if let Err(e) = self.remove() {
            tracing::warn!(output = %self.name, error = %e, "sway: could not remove output");
        }
    }
}
