//! A minimal sway IPC client: one Unix socket ($SWAYSOCK), request and reply in lock step.
//!
//! Act: the socket. Framing and reply parsing are [`super::message`]'s. Every read and write has
//! a timeout, so a hung compositor is an error, not a hang.

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use super::message::{self, HEADER_LEN, OutputInfo};
use crate::display::DisplayError;

/// How long one request may take unless told otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

/// A connection to sway's IPC socket.
#[derive(Debug)]
pub struct SwayIpc {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
}

impl SwayIpc {
    /// Connects to the socket at `path` (sway's `$SWAYSOCK`), with `timeout` per read/write.
    pub fn connect(path: &Path, timeout: Duration) -> Result<Self, DisplayError> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(timeout))?;
        stream.set_write_timeout(Some(timeout))?;
        Ok(Self {
            stream,
            path: path.to_owned(),
            buf: Vec::with_capacity(4096),
        })
    }

    /// Connects to `$SWAYSOCK`.
    pub fn from_env() -> Result<Self, DisplayError> {
        let path = std::env::var_os("SWAYSOCK").ok_or_else(|| {
            DisplayError::Io(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                "SWAYSOCK is not set",
            ))
        })?;
        Self::connect(Path::new(&path), DEFAULT_TIMEOUT)
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends one request and returns the reply's payload.
    pub fn request(&mut self, kind: u32, payload: &str) -> Result<Vec<u8>, DisplayError> {
        self.buf.clear();
        message::encode(kind, payload, &mut self.buf)?;
        self.stream.write_all(&self.buf)?;
        let mut header = [0u8; HEADER_LEN];
        self.stream.read_exact(&mut header)?;
        let (reply_kind, len) = message::parse_header(&header)?;
        let mut reply = vec![0u8; len as usize];
        self.stream.read_exact(&mut reply)?;
        if reply_kind != kind {
            return Err(DisplayError::Protocol(format!(
                "reply type {reply_kind} to request type {kind}"
            )));
        }
        Ok(reply)
    }

    /// Runs sway command(s) (`RUN_COMMAND`); any failed command is [`DisplayError::Refused`].
    pub fn run_command(&mut self, command: &str) -> Result<(), DisplayError> {
        let reply = self.request(message::RUN_COMMAND, command)?;
        message::check_command_reply(command, &reply)
    }

    /// Sway's version (`GET_VERSION`): `(major, minor, patch)`.
    pub fn version(&mut self) -> Result<(u32, u32, u32), DisplayError> {
        let reply = self.request(message::GET_VERSION, "")?;
        message::parse_version(&reply)
    }

    /// Lists the outputs (`GET_OUTPUTS`).
    pub fn outputs(&mut self) -> Result<Vec<OutputInfo>, DisplayError> {
        let reply = self.request(message::GET_OUTPUTS, "")?;
        message::parse_outputs(&reply)
    }
}
