//! Capture of one named output with wlr-screencopy-unstable-v1 over wl_shm.
//!
//! ```text
//!  connect: wl_registry ─► wl_shm, zwlr_screencopy_manager_v1 (≤ v3), zxdg_output_manager_v1,
//!           wl_output × n ─► zxdg_output_v1.name (or wl_output v4 name) ─► the output we want
//!  per frame:
//!   capture_output(output) ─► buffer{format, w, h, stride}… buffer_done (v3; v1–2: buffer)
//!   (re)make SHM buffer: memfd of stride·h bytes ─► wl_shm_pool ─► wl_buffer  (kept while the
//!                                                                  size and format stay)
//!   copy(buffer) ─► flags{y_invert} ─► ready | failed
//!   pread the memfd into the caller's buffer (rows flipped if y_invert)
//! ```
//!
//! Act: a Wayland connection, a memfd, `poll(2)` with a deadline on every wait (a hung or
//! vanished compositor is [`CaptureError::Timeout`] or [`CaptureError::Protocol`], never a
//! hang). No `unsafe`: the SHM buffer is read with `pread` instead of being mapped, one copy
//! per frame either way. Protocol: wlr-protocols `wlr-screencopy-unstable-v1.xml` (v3).
//!
//! Not yet: DMA-BUF buffers (`linux_dmabuf` events are ignored; sway here offers none without
//! a GPU), `copy_with_damage`, ext-image-copy-capture.

use std::fs::File;
use std::os::fd::AsFd as _;
use std::os::unix::fs::FileExt as _;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::event::{PollFd, PollFlags, Timespec};
use wayland_client::protocol::{
    wl_buffer::WlBuffer, wl_callback::WlCallback, wl_output::WlOutput, wl_registry::WlRegistry,
    wl_shm, wl_shm::WlShm, wl_shm_pool::WlShmPool,
};
use wayland_client::{
    Connection, Dispatch, EventQueue, Proxy as _, QueueHandle, WEnum, delegate_noop,
};
use wayland_protocols::xdg::xdg_output::zv1::client::{
    zxdg_output_manager_v1::ZxdgOutputManagerV1, zxdg_output_v1, zxdg_output_v1::ZxdgOutputV1,
};
use wayland_protocols_wlr::screencopy::v1::client::{
    zwlr_screencopy_frame_v1, zwlr_screencopy_frame_v1::ZwlrScreencopyFrameV1,
    zwlr_screencopy_manager_v1::ZwlrScreencopyManagerV1,
};

use crate::clock;
use crate::display::{CaptureError, CapturedFrame, FrameSource, PixelFormat};

/// What the compositor asked the SHM buffer to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BufferSpec {
    format: wl_shm::Format,
    width: u32,
    height: u32,
    stride: u32,
}

impl BufferSpec {
    fn len(self) -> usize {
        self.stride as usize * self.height as usize
    }

    fn pixel_format(self) -> Option<PixelFormat> {
        match self.format {
            wl_shm::Format::Xrgb8888 => Some(PixelFormat::Bgrx),
            wl_shm::Format::Argb8888 => Some(PixelFormat::Bgra),
            _ => None,
        }
    }
}

/// Progress of the frame being captured, written by the event handlers.
#[derive(Debug, Default)]
struct FrameState {
    spec: Option<BufferSpec>,
    buffer_done: bool,
    y_invert: bool,
    ready: bool,
    failed: bool,
}

#[derive(Debug)]
struct OutputEntry {
    global: u32,
    output: WlOutput,
    name: Option<String>,
    xdg: Option<ZxdgOutputV1>,
}

#[derive(Debug, Default)]
struct State {
    shm: Option<WlShm>,
    manager: Option<ZwlrScreencopyManagerV1>,
    xdg_manager: Option<ZxdgOutputManagerV1>,
    outputs: Vec<OutputEntry>,
    removed_globals: Vec<u32>,
    synced: bool,
    frame: FrameState,
}

impl Dispatch<WlRegistry, ()> for State {
    fn event(
        state: &mut Self,
        registry: &WlRegistry,
        event: wayland_client::protocol::wl_registry::Event,
        _: &(),
        _: &Connection,
        qh: &QueueHandle<Self>,
    ) {
        use wayland_client::protocol::wl_registry::Event;
        match event {
            Event::Global {
                name,
                interface,
                version,
            } => match interface.as_str() {
                "wl_shm" => state.shm = Some(registry.bind(name, 1, qh, ())),
                "zwlr_screencopy_manager_v1" => {
                    state.manager = Some(registry.bind(name, version.min(3), qh, ()));
                }
                "zxdg_output_manager_v1" if version >= 2 => {
                    state.xdg_manager = Some(registry.bind(name, version.min(3), qh, ()));
                }
                "wl_output" => {
                    let output = registry.bind(name, version.min(4), qh, name);
                    state.outputs.push(OutputEntry {
                        global: name,
                        output,
                        name: None,
                        xdg: None,
                    });
                }
                _ => {}
            },
            Event::GlobalRemove { name } => {
                state.outputs.retain(|o| o.global != name);
                state.removed_globals.push(name);
            }
            _ => {}
        }
    }
}

impl Dispatch<WlOutput, u32> for State {
    fn event(
        state: &mut Self,
        _: &WlOutput,
        event: wayland_client::protocol::wl_output::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let wayland_client::protocol::wl_output::Event::Name { name } = event
            && let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global)
        {
            o.name = Some(name);
        }
    }
}

impl Dispatch<ZxdgOutputV1, u32> for State {
    fn event(
        state: &mut Self,
        _: &ZxdgOutputV1,
        event: zxdg_output_v1::Event,
        global: &u32,
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        if let zxdg_output_v1::Event::Name { name } = event
            && let Some(o) = state.outputs.iter_mut().find(|o| o.global == *global)
        {
            o.name = Some(name);
        }
    }
}

impl Dispatch<WlCallback, ()> for State {
    fn event(
        state: &mut Self,
        _: &WlCallback,
        _: wayland_client::protocol::wl_callback::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        state.synced = true;
    }
}

impl Dispatch<ZwlrScreencopyFrameV1, ()> for State {
    fn event(
        state: &mut Self,
        _: &ZwlrScreencopyFrameV1,
        event: zwlr_screencopy_frame_v1::Event,
        _: &(),
        _: &Connection,
        _: &QueueHandle<Self>,
    ) {
        use zwlr_screencopy_frame_v1::Event;
        let frame = &mut state.frame;
        match event {
            Event::Buffer {
                format: WEnum::Value(format),
                width,
                height,
                stride,
            } => {
                let spec = BufferSpec {
                    format,
                    width,
                    height,
                    stride,
                };
                // Several SHM formats may be offered; keep the first we can read.
                if frame.spec.and_then(BufferSpec::pixel_format).is_none() {
                    frame.spec = Some(spec);
                }
            }
            Event::BufferDone => frame.buffer_done = true,
            Event::Flags {
                flags: WEnum::Value(flags),
            } => {
                frame.y_invert = flags.contains(zwlr_screencopy_frame_v1::Flags::YInvert);
            }
            Event::Ready { .. } => frame.ready = true,
            Event::Failed => frame.failed = true,
            _ => {} // damage, linux_dmabuf, unknown enum values
        }
    }
}

delegate_noop!(State: ignore WlShm);
delegate_noop!(State: ignore WlShmPool);
delegate_noop!(State: ignore WlBuffer);
delegate_noop!(State: ZwlrScreencopyManagerV1);
delegate_noop!(State: ZxdgOutputManagerV1);

/// The SHM buffer the compositor copies into, kept while its spec stays.
#[derive(Debug)]
struct ShmBuffer {
    spec: BufferSpec,
    file: File,
    pool: WlShmPool,
    buffer: WlBuffer,
}

impl ShmBuffer {
    fn destroy(self) {
        self.buffer.destroy();
        self.pool.destroy();
    }
}

/// Captures one output of a wlroots compositor (sway) with wlr-screencopy into system memory.
#[derive(Debug)]
pub struct Screencopy {
    conn: Connection,
    queue: EventQueue<State>,
    state: State,
    output_name: String,
    output_global: u32,
    output: Option<WlOutput>,
    timeout: Duration,
    shm_buffer: Option<ShmBuffer>,
    own: Vec<u8>,
    next_index: u64,
}

fn protocol(e: impl std::fmt::Display) -> CaptureError {
    CaptureError::Protocol(e.to_string())
}

impl Screencopy {
    /// Connects to the Wayland socket at `socket` (`$XDG_RUNTIME_DIR/$WAYLAND_DISPLAY`) and
    /// finds the output named `output`. `timeout` bounds every wait, here and per frame.
    pub fn connect(socket: &Path, output: &str, timeout: Duration) -> Result<Self, CaptureError> {
        let stream = UnixStream::connect(socket)?;
        let conn = Connection::from_socket(stream).map_err(protocol)?;
        let queue = conn.new_event_queue();
        let qh = queue.handle();
        conn.display().get_registry(&qh, ());
        let mut this = Self {
            conn,
            queue,
            state: State::default(),
            output_name: output.to_owned(),
            output_global: 0,
            output: None,
            timeout,
            shm_buffer: None,
            own: Vec::new(),
            next_index: 0,
        };
        this.sync()?; // globals bound
        if this.state.shm.is_none() {
            return Err(CaptureError::Unsupported(
                "compositor offers no wl_shm".into(),
            ));
        }
        if this.state.manager.is_none() {
            return Err(CaptureError::Unsupported(
                "compositor offers no zwlr_screencopy_manager_v1".into(),
            ));
        }
        if let Some(xdg) = this.state.xdg_manager.clone() {
            for o in &mut this.state.outputs {
                o.xdg = Some(xdg.get_xdg_output(&o.output, &qh, o.global));
            }
        }
        this.sync()?; // names arrived
        let found = this
            .state
            .outputs
            .iter()
            .find(|o| o.name.as_deref() == Some(output))
            .ok_or_else(|| CaptureError::OutputGone(output.to_owned()))?;
        this.output_global = found.global;
        this.output = Some(found.output.clone());
        Ok(this)
    }

    /// The name of the captured output.
    pub fn output_name(&self) -> &str {
        &self.output_name
    }

    /// One round trip (wl_display.sync) within the timeout.
    fn sync(&mut self) -> Result<(), CaptureError> {
        self.state.synced = false;
        self.conn.display().sync(&self.queue.handle(), ());
        self.dispatch_until(|s| s.synced)
    }

    /// Dispatches events until `done` holds, waiting in `poll(2)` at most `self.timeout`.
    fn dispatch_until(&mut self, done: impl Fn(&State) -> bool) -> Result<(), CaptureError> {
        let deadline = Instant::now() + self.timeout;
        loop {
            self.queue
                .dispatch_pending(&mut self.state)
                .map_err(protocol)?;
            if done(&self.state) {
                return Ok(());
            }
            self.queue.flush().map_err(protocol)?;
            let Some(guard) = self.queue.prepare_read() else {
                continue; // events already queued: dispatch them first
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(CaptureError::Timeout(self.timeout));
            }
            let wait = Timespec {
                tv_sec: left.as_secs() as i64,
                tv_nsec: i64::from(left.subsec_nanos()),
            };
            let fd = guard.connection_fd();
            let mut fds = [PollFd::new(&fd, PollFlags::IN)];
            match rustix::event::poll(&mut fds, Some(&wait)) {
                Ok(0) | Err(rustix::io::Errno::INTR) => continue,
                Ok(_) => {}
                Err(e) => return Err(CaptureError::Io(e.into())),
            }
            match guard.read() {
                Ok(_) => {}
                Err(wayland_client::backend::WaylandError::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(protocol(e)),
            }
        }
    }

    fn gone(&self) -> bool {
        self.state.removed_globals.contains(&self.output_global)
    }

    /// Captures the output's next frame into `out` (resized to fit, reused across calls).
    pub fn capture_into<'b>(
        &mut self,
        out: &'b mut Vec<u8>,
    ) -> Result<CapturedFrame<'b>, CaptureError> {
        let output = match &self.output {
            Some(o) if !self.gone() => o.clone(),
            _ => return Err(CaptureError::OutputGone(self.output_name.clone())),
        };
        let manager = self
            .state
            .manager
            .clone()
            .ok_or_else(|| CaptureError::Unsupported("no screencopy manager".into()))?;
        let v3 = manager.version() >= 3;
        self.state.frame = FrameState::default();
        let frame = manager.capture_output(0, &output, &self.queue.handle(), ());
        let result = self.copy_frame(&frame, v3);
        frame.destroy();
        let _ = self.conn.flush();
        let (spec, y_invert) = match result {
            Ok(r) => r,
            Err(_) if self.gone() => {
                return Err(CaptureError::OutputGone(self.output_name.clone()));
            }
            Err(e) => return Err(e),
        };
        let capture_us = clock::monotonic_us();
        let len = spec.len();
        out.resize(len, 0);
        let shm = self
            .shm_buffer
            .as_ref()
            .ok_or_else(|| CaptureError::Protocol("no SHM buffer after a copy".into()))?;
        shm.file.read_exact_at(out, 0)?;
        if y_invert {
            flip_rows(out, spec.stride as usize);
        }
        let index = self.next_index;
        self.next_index += 1;
        Ok(CapturedFrame {
            width: spec.width,
            height: spec.height,
            stride: spec.stride as usize,
            // Checked in copy_frame.
            format: spec.pixel_format().unwrap_or(PixelFormat::Bgrx),
            capture_us,
            index,
            data: out,
        })
    }

    /// Negotiates the buffer, copies, waits for `ready`: `(spec, y_invert)`.
    fn copy_frame(
        &mut self,
        frame: &ZwlrScreencopyFrameV1,
        v3: bool,
    ) -> Result<(BufferSpec, bool), CaptureError> {
        self.dispatch_until(|s| {
            s.frame.failed || s.frame.buffer_done || (!v3 && s.frame.spec.is_some())
        })?;
        if self.state.frame.failed {
            return Err(CaptureError::Failed);
        }
        let spec = self.state.frame.spec.ok_or_else(|| {
            CaptureError::Unsupported("compositor offered no wl_shm buffer".into())
        })?;
        if spec.pixel_format().is_none() {
            return Err(CaptureError::Unsupported(format!(
                "SHM format {:?} (want XRGB8888 or ARGB8888)",
                spec.format
            )));
        }
        self.ensure_buffer(spec)?;
        let buffer = &self
            .shm_buffer
            .as_ref()
            .ok_or_else(|| CaptureError::Protocol("no SHM buffer".into()))?
            .buffer;
        frame.copy(buffer);
        self.dispatch_until(|s| s.frame.ready || s.frame.failed)?;
        if self.state.frame.failed {
            return Err(CaptureError::Failed);
        }
        Ok((spec, self.state.frame.y_invert))
    }

    /// Keeps the SHM buffer if `spec` matches, else makes a new one (after a mode change).
    fn ensure_buffer(&mut self, spec: BufferSpec) -> Result<(), CaptureError> {
        if self.shm_buffer.as_ref().is_some_and(|b| b.spec == spec) {
            return Ok(());
        }
        if let Some(old) = self.shm_buffer.take() {
            old.destroy();
        }
        let size = i32::try_from(spec.len())
            .map_err(|_| CaptureError::Unsupported(format!("frame of {} bytes", spec.len())))?;
        let as_i32 = |v: u32| i32::try_from(v).map_err(protocol);
        let fd = rustix::fs::memfd_create("punktfunk-screencopy", rustix::fs::MemfdFlags::CLOEXEC)
            .map_err(std::io::Error::from)?;
        let file = File::from(fd);
        file.set_len(spec.len() as u64)?;
        let shm = self
            .state
            .shm
            .as_ref()
            .ok_or_else(|| CaptureError::Unsupported("no wl_shm".into()))?;
        let qh = self.queue.handle();
        let pool = shm.create_pool(file.as_fd(), size, &qh, ());
        let buffer = pool.create_buffer(
            0,
            as_i32(spec.width)?,
            as_i32(spec.height)?,
            as_i32(spec.stride)?,
            spec.format,
            &qh,
            (),
        );
        self.shm_buffer = Some(ShmBuffer {
            spec,
            file,
            pool,
            buffer,
        });
        Ok(())
    }
}

impl FrameSource for Screencopy {
    fn formats(&self) -> &[PixelFormat] {
        &[PixelFormat::Bgrx, PixelFormat::Bgra]
    }

    fn next_frame(&mut self) -> Result<CapturedFrame<'_>, CaptureError> {
        let mut own = std::mem::take(&mut self.own);
        let result = self
            .capture_into(&mut own)
            .map(|f| (f.width, f.height, f.stride, f.format, f.capture_us, f.index));
        self.own = own;
        let (width, height, stride, format, capture_us, index) = result?;
        Ok(CapturedFrame {
            width,
            height,
            stride,
            format,
            capture_us,
            index,
            data: &self.own,
        })
    }
}

impl Drop for Screencopy {
    fn drop(&mut self) {
        if let Some(b) = self.shm_buffer.take() {
            b.destroy();
        }
        let _ = self.conn.flush();
    }
}

/// Reverses the order of the `stride`-byte rows of `data` in place (y-inverted copies).
fn flip_rows(data: &mut [u8], stride: usize) {
    let rows = data.len() / stride;
    for top in 0..rows / 2 {
        let bottom = rows - 1 - top;
        let (head, tail) = data.split_at_mut(bottom * stride);
        head[top * stride..(top + 1) * stride].swap_with_slice(&mut tail[..stride]);
    }
}

#[cfg(test)]
mod tests {
    use super::flip_rows;

    #[test]
    fn flips_rows() {
        let mut d = vec![1, 1, 2, 2, 3, 3];
        flip_rows(&mut d, 2);
        assert_eq!(d, [3, 3, 2, 2, 1, 1]);
        let mut d = vec![1, 1, 2, 2, 3, 3, 4, 4];
        flip_rows(&mut d, 2);
        assert_eq!(d, [4, 4, 3, 3, 2, 2, 1, 1]);
    }
}
