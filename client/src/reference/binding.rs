//! A safe Rust face on the C ABI, as any language binding would write it: every call goes
//! through the `extern "C"` functions of [`crate::abi`], with `struct_size` set and result codes
//! turned into errors. The reference client uses nothing else of the core (except
//! [`Client::diagnostics`], which reads Rust-only counters for tests).

use std::ffi::{CString, c_char};
use std::path::Path;

use crate::abi::{
    self, PF_ERR_BUFFER_TOO_SMALL, PF_OK, PfClient, PfClientConfig, PfEvent, PfFrameInfo, PfInput,
    PfStats,
};

/// A failed ABI call: its code and the library's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} ({code}): {message}")]
pub struct AbiError {
    /// The `PF_ERR_*` code.
    pub code: i32,
    /// `punktfunk_error_name(code)`.
    pub name: String,
    /// `punktfunk_last_error_message()`.
    pub message: String,
}

fn check(code: i32) -> Result<(), AbiError> {
    if code == PF_OK {
        return Ok(());
    }
    // SAFETY: a static NUL-terminated string.
    let name = unsafe { std::ffi::CStr::from_ptr(abi::punktfunk_error_name(code)) }
        .to_string_lossy()
        .into_owned();
    let mut buf = vec![0 as c_char; 512];
    // SAFETY: `buf` has 512 writable bytes.
    unsafe { abi::punktfunk_last_error_message(buf.as_mut_ptr(), buf.len()) };
    // SAFETY: NUL-terminated by the call above.
    let message = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) }
        .to_string_lossy()
        .into_owned();
    Err(AbiError {
        code,
        name,
        message,
    })
}

fn cstring(s: &str) -> Result<CString, AbiError> {
    CString::new(s).map_err(|_| AbiError {
        code: abi::PF_ERR_INVALID_ARGUMENT,
        name: "invalid argument".into(),
        message: format!("{s:?} contains a NUL byte"),
    })
}

/// What to connect with (turned into a `PfClientConfig` for the call).
#[derive(Debug, Clone)]
pub struct Connect<'a> {
    /// `HOST[:PORT]`.
    pub host: &'a str,
    /// State directory.
    pub state_dir: &'a Path,
    /// Name shown on the host.
    pub name: &'a str,
    /// PIN known up front.
    pub pin: Option<&'a str>,
    /// `PF_CONNECT_*`.
    pub flags: u32,
    /// Mode.
    pub width: u16,
    /// Mode.
    pub height: u16,
    /// Mode.
    pub fps: u16,
    /// `PF_CODEC_*`.
    pub codecs: u32,
    /// Pull-queue depth.
    pub frame_queue: u32,
    /// Testing: datagrams dropped per million.
    pub test_drop_per_million: u32,
}

/// A connected client; closed on drop.
#[derive(Debug)]
pub struct Client(*mut PfClient);

// SAFETY: the ABI documents every function but close as thread-safe; close takes `self`.
unsafe impl Send for Client {}
// SAFETY: as above.
unsafe impl Sync for Client {}

/// A zeroed ABI struct with its `struct_size` set.
pub fn sized<T>() -> T {
    // SAFETY: every ABI struct is plain data; all-zero is valid.
    let mut v: T = unsafe { std::mem::zeroed() };
    // SAFETY: every ABI struct starts with `u32 struct_size`.
    unsafe {
        std::ptr::from_mut(&mut v)
            .cast::<u32>()
            .write(size_of::<T>() as u32)
    };
    v
}

impl Client {
    /// `punktfunk_client_connect`.
    pub fn connect(c: &Connect<'_>) -> Result<Self, AbiError> {
        let host = cstring(c.host)?;
        let dir = cstring(&c.state_dir.to_string_lossy())?;
        let name = cstring(c.name)?;
        let pin = c.pin.map(cstring).transpose()?;
        let mut config: PfClientConfig = sized();
        config.flags = c.flags;
        config.host = host.as_ptr();
        config.state_dir = dir.as_ptr();
        config.name = name.as_ptr();
        config.pin = pin.as_ref().map_or(std::ptr::null(), |p| p.as_ptr());
        config.width = c.width;
        config.height = c.height;
        config.fps = c.fps;
        config.codecs = c.codecs;
        config.frame_queue = c.frame_queue;
        config.test_drop_per_million = c.test_drop_per_million;
        let mut out = std::ptr::null_mut();
        // SAFETY: a valid config whose strings outlive the call; `out` is writable.
        check(unsafe { abi::punktfunk_client_connect(&config, &mut out) })?;
        Ok(Self(out))
    }

    /// `punktfunk_client_poll_event`: `Ok(None)` on timeout.
    pub fn poll_event(&self, timeout_ms: u32) -> Result<Option<PfEvent>, AbiError> {
        let mut ev: PfEvent = sized();
        // SAFETY: live handle, sized struct.
        match unsafe { abi::punktfunk_client_poll_event(self.0, &mut ev, timeout_ms) } {
            abi::PF_ERR_TIMEOUT => Ok(None),
            code => check(code).map(|()| Some(ev)),
        }
    }

    /// `punktfunk_client_next_frame` into `buf`, growing it when the frame does not fit;
    /// `Ok(None)` on timeout.
    pub fn next_frame(
        &self,
        buf: &mut Vec<u8>,
        timeout_ms: u32,
    ) -> Result<Option<PfFrameInfo>, AbiError> {
        loop {
            let mut info: PfFrameInfo = sized();
            // SAFETY: live handle; `buf` has `buf.len()` writable bytes; sized struct.
            let code = unsafe {
                abi::punktfunk_client_next_frame(
                    self.0,
                    buf.as_mut_ptr(),
                    buf.len(),
                    &mut info,
                    timeout_ms,
                )
            };
            match code {
                PF_ERR_BUFFER_TOO_SMALL => buf.resize(info.size as usize, 0),
                abi::PF_ERR_TIMEOUT => return Ok(None),
                code => return check(code).map(|()| Some(info)),
            }
        }
    }

    /// `punktfunk_client_pair`.
    pub fn pair(&self, pin: &str) -> Result<(), AbiError> {
        let pin = cstring(pin)?;
        // SAFETY: live handle, NUL-terminated string.
        check(unsafe { abi::punktfunk_client_pair(self.0, pin.as_ptr()) })
    }

    /// `punktfunk_client_request_mode`.
    pub fn request_mode(&self, width: u16, height: u16, fps: u16) -> Result<(), AbiError> {
        // SAFETY: live handle.
        check(unsafe { abi::punktfunk_client_request_mode(self.0, width, height, fps) })
    }

    /// `punktfunk_client_request_keyframe`.
    pub fn request_keyframe(&self) -> Result<(), AbiError> {
        // SAFETY: live handle.
        check(unsafe { abi::punktfunk_client_request_keyframe(self.0) })
    }

    /// `punktfunk_client_send_input`.
    pub fn send_input(&self, input: &PfInput) -> Result<(), AbiError> {
        let mut i = *input;
        i.struct_size = size_of::<PfInput>() as u32;
        // SAFETY: live handle, sized struct.
        check(unsafe { abi::punktfunk_client_send_input(self.0, &i) })
    }

    /// `punktfunk_client_stats`.
    pub fn stats(&self) -> Result<PfStats, AbiError> {
        let mut s: PfStats = sized();
        // SAFETY: live handle, sized struct.
        check(unsafe { abi::punktfunk_client_stats(self.0, &mut s) })?;
        Ok(s)
    }

    /// [`Client::close`], plus Rust-only counters the C ABI does not carry (datagrams per
    /// key generation): for the reference client's statistics file. The session is ended in
    /// place first (idempotent), then the handle goes back through `punktfunk_client_close`.
    pub fn close_with_diagnostics(mut self) -> Result<(PfStats, crate::core::CoreStats), AbiError> {
        // SAFETY: a live handle we own; no other thread uses it now.
        let diag = unsafe { self.0.as_mut() }.map(|c| {
            c.core_mut().shutdown();
            c.core_mut().stats()
        });
        let stats = std::mem::replace(&mut self, Client(std::ptr::null_mut()));
        let s = Client::close(stats)?;
        Ok((s, diag.unwrap_or_default()))
    }

    /// `punktfunk_client_close` with the final statistics.
    pub fn close(mut self) -> Result<PfStats, AbiError> {
        let mut s: PfStats = sized();
        let p = std::mem::replace(&mut self.0, std::ptr::null_mut());
        // SAFETY: the handle, handed back once; nobody else uses it (we own `self`).
        check(unsafe { abi::punktfunk_client_close(p, &mut s) })?;
        Ok(s)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if !self.0.is_null() {
            // SAFETY: the handle, handed back once.
            unsafe { abi::punktfunk_client_close(self.0, std::ptr::null_mut()) };
        }
    }
}
