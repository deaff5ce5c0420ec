//! KWin virtual outputs and output streams (act).
//!
//! ```text
//!  KwinDisplay::create(name, W×H):
//!    stream_virtual_output(name, W, H, scale 1, pointer embedded) ─► created(node) | failed(why)
//!    wait for wl_output "Virtual-<name>" with its logical geometry
//!  set_mode(new size): close the stream (KWin removes the output) ─► wait for the global's
//!    removal ─► stream_virtual_output again (new node id, published on the NodeWatch)
//!  remove / drop: close ─► wait for the global's removal
//! ```
//!
//! KWin ties a virtual output to its stream: `ScreencastManager::streamVirtualOutput` removes
//! the output when the stream resource is finished (the client's `close` or disconnect), so
//! closing the stream is how the output is removed. KWin 5.27 makes virtual outputs only in its
//! DRM backend (`DrmBackend::createVirtualOutput`); its `--virtual` and nested backends inherit
//! `OutputBackend::createVirtualOutput`, which returns null, and the stream then fails with
//! "Could not find output" ([`KwinError::Refused`]). [`KwinStream`] streams an output or a
//! window that exists already.

use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wayland_protocols_plasma::screencast::v1::client::zkde_screencast_stream_unstable_v1::ZkdeScreencastStreamUnstableV1;
use wayland_protocols_plasma::screencast::v1::client::zkde_screencast_unstable_v1::ZkdeScreencastUnstableV1;

use super::KwinError;
use super::plan::{
    ModeChange, OutputGeometry, PointerMode, StreamState, VirtualOutputRequest, plan_mode_change,
};
use super::wl::Wl;
use crate::display::{DisplayError, DisplayMode, VirtualDisplay};

/// The PipeWire node a display streams to now (`None` once removed). A display publishes a new
/// node when it recreates its stream; a [`super::KwinCapture`] reconnects when it sees one.
#[derive(Debug, Clone, Default)]
pub struct NodeWatch(Arc<Mutex<Option<u32>>>);

impl NodeWatch {
    /// A watch fixed on `node` (e.g. a node found another way).
    pub fn fixed(node: u32) -> Self {
        let w = Self::default();
        w.set(Some(node));
        w
    }

    /// The current node.
    pub fn get(&self) -> Option<u32> {
        *self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Publishes `node` (what a display does when it recreates its stream).
    pub fn set(&self, node: Option<u32>) {
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = node;
    }
}

/// Keys for stream user data, unique in the process.
fn next_key() -> u32 {
    static NEXT: AtomicU32 = AtomicU32::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// An open screencast stream on a connection.
#[derive(Debug)]
struct OpenStream {
    proxy: ZkdeScreencastStreamUnstableV1,
    key: u32,
    node: u32,
}

/// Waits for `created`, or the reason there will be none.
fn await_created(
    wl: &mut Wl,
    proxy: ZkdeScreencastStreamUnstableV1,
    key: u32,
) -> Result<OpenStream, KwinError> {
    let waited = wl.wait_until(|s| s.stream(key) != StreamState::Pending);
    let state = wl.state.stream(key);
    let fail = |wl: &mut Wl, e: KwinError| {
        proxy.close();
        wl.state.streams.retain(|(k, _)| *k != key);
        let _ = wl.flush();
        Err(e)
    };
    match (waited, state) {
        (Ok(()), StreamState::Created(node)) => Ok(OpenStream { proxy, key, node }),
        (Ok(()), StreamState::Failed(why)) => fail(wl, KwinError::Refused(why)),
        (Ok(()), _) => fail(wl, KwinError::Closed),
        (Err(e), _) => fail(wl, e),
    }
}

/// A virtual output of KWin made for one session, streamed to PipeWire (see the module docs).
/// Dropping it closes the stream, which removes the output.
#[derive(Debug)]
pub struct KwinDisplay {
    wl: Wl,
    base_name: String,
    output_name: String,
    mode: DisplayMode,
    stream: Option<OpenStream>,
    node: NodeWatch,
    geometry: OutputGeometry,
}

impl KwinDisplay {
    /// Connects to KWin's Wayland socket `socket` and creates a virtual output named
    /// `Virtual-<name>` at `mode`'s size (KWin runs it at 60 Hz). `timeout` bounds every wait,
    /// here and later.
    pub fn create(
        socket: &Path,
        name: &str,
        mode: DisplayMode,
        timeout: Duration,
    ) -> Result<Self, KwinError> {
        let request = VirtualOutputRequest::new(name, mode)?;
        let wl = Wl::connect(socket, timeout)?;
        let mut this = Self {
            wl,
            base_name: name.to_owned(),
            output_name: request.output_name(),
            mode: request.resulting_mode(),
            stream: None,
            node: NodeWatch::default(),
            geometry: OutputGeometry::default(),
        };
        this.open(&request)?;
        Ok(this)
    }

    fn open(&mut self, request: &VirtualOutputRequest) -> Result<(), KwinError> {
        let screencast = screencast(&self.wl)?;
        let version = self.wl.state.screencast.as_ref().map_or(0, |(_, v)| *v);
        if version < 2 {
            return Err(KwinError::Unsupported(format!(
                "zkde_screencast_unstable_v1 v{version}: stream_virtual_output needs v2"
            )));
        }
        if self.wl.state.output(&request.output_name()).is_some() {
            return Err(KwinError::NameTaken(request.output_name()));
        }
        let key = next_key();
        self.wl.state.streams.push((key, StreamState::Pending));
        let proxy = screencast.stream_virtual_output(
            request.name.clone(),
            request.width,
            request.height,
            request.scale,
            request.pointer.wire(),
            &self.wl.handle(),
            key,
        );
        let stream = await_created(&mut self.wl, proxy, key)?;
        let node = stream.node;
        self.stream = Some(stream);
        // The output's global follows the stream's creation; wait for its name and size.
        let name = request.output_name();
        let (w, h) = (request.width, request.height);
        let appeared = self.wl.wait_until(|s| {
            s.output(&name)
                .is_some_and(|o| o.geometry.width > 0 && o.geometry.height > 0)
                || s.stream(key).ended()
        });
        let geometry = self.wl.state.output(&name).map(|o| o.geometry);
        match (appeared, geometry) {
            (Ok(()), Some(g)) => {
                if (g.width, g.height) != (w, h) {
                    tracing::warn!(output = %name, ?g, "KWin: virtual output has another logical size than asked");
                }
                self.geometry = g;
                self.node.set(Some(node));
                tracing::debug!(output = %name, node, ?g, "KWin: virtual output streaming");
                Ok(())
            }
            (Ok(()), None) => {
                self.close_stream();
                Err(KwinError::Closed)
            }
            (Err(e), _) => {
                self.close_stream();
                Err(e)
            }
        }
    }

    /// Closes the stream without waiting.
    fn close_stream(&mut self) {
        self.node.set(None);
        if let Some(s) = self.stream.take() {
            s.proxy.close();
            self.wl.state.streams.retain(|(k, _)| *k != s.key);
            let _ = self.wl.flush();
        }
    }

    /// The PipeWire node of the stream now.
    pub fn node_id(&self) -> Option<u32> {
        self.node.get()
    }

    /// The node, followed across recreations (give it to [`super::KwinCapture::follow`]).
    pub fn node_watch(&self) -> NodeWatch {
        self.node.clone()
    }

    /// Where the output sits in KWin's global coordinates (when it was created).
    pub fn geometry(&self) -> OutputGeometry {
        self.geometry
    }

    /// Whether KWin still has the output and the stream (one round trip).
    pub fn check(&mut self) -> Result<(), KwinError> {
        self.wl.sync()?;
        let gone = self.wl.state.output(&self.output_name).is_none()
            || self
                .stream
                .as_ref()
                .is_none_or(|s| self.wl.state.stream(s.key).ended());
        if gone {
            return Err(KwinError::OutputGone(self.output_name.clone()));
        }
        Ok(())
    }

    fn remove_inner(&mut self) -> Result<(), KwinError> {
        if self.stream.is_none() {
            return Ok(());
        }
        self.close_stream();
        let name = self.output_name.clone();
        self.wl.wait_until(|s| s.output(&name).is_none())
    }
}

impl VirtualDisplay for KwinDisplay {
    fn name(&self) -> &str {
        &self.output_name
    }

    fn mode(&self) -> DisplayMode {
        self.mode
    }

    /// A new size closes the stream and opens a new one (new output, new PipeWire node; the
    /// [`NodeWatch`] follows). A refresh-only change is kept as is: KWin's virtual outputs
    /// run at 60 Hz whatever is asked.
    fn set_mode(&mut self, mode: DisplayMode) -> Result<(), DisplayError> {
        let request = VirtualOutputRequest::new(&self.base_name, mode)
            .map_err(|_| DisplayError::InvalidMode(mode))?;
        if self.stream.is_none() {
            return Err(DisplayError::Gone(self.output_name.clone()));
        }
        match plan_mode_change(self.mode, mode) {
            ModeChange::Keep => Ok(()),
            ModeChange::Recreate => {
                self.remove_inner().map_err(DisplayError::from)?;
                self.open(&request).map_err(DisplayError::from)?;
                self.mode = request.resulting_mode();
                Ok(())
            }
        }
    }

    fn remove(&mut self) -> Result<(), DisplayError> {
        self.remove_inner().map_err(DisplayError::from)
    }
}

impl Drop for KwinDisplay {
    fn drop(&mut self) {
        if let Err(e) = self.remove_inner() {
            tracing::warn!(output = %self.output_name, error = %e, "KWin: removing the virtual output");
        }
    }
}

/// A screencast stream of something KWin has already: an output (a monitor, or the outputs of
/// `kwin_wayland --virtual`) or a window; closing it leaves the source. Closed on drop.
#[derive(Debug)]
pub struct KwinStream {
    wl: Wl,
    source: String,
    stream: Option<OpenStream>,
    geometry: Option<OutputGeometry>,
}

impl KwinStream {
    /// Streams the output named `output` (cursor drawn into the frames).
    pub fn output(socket: &Path, output: &str, timeout: Duration) -> Result<Self, KwinError> {
        let mut wl = Wl::connect(socket, timeout)?;
        let screencast = screencast(&wl)?;
        let (wl_output, geometry) = wl
            .state
            .output(output)
            .map(|o| (o.output.clone(), o.geometry))
            .ok_or_else(|| KwinError::OutputGone(output.to_owned()))?;
        let key = next_key();
        wl.state.streams.push((key, StreamState::Pending));
        let proxy =
            screencast.stream_output(&wl_output, PointerMode::Embedded.wire(), &wl.handle(), key);
        let stream = await_created(&mut wl, proxy, key)?;
        Ok(Self {
            wl,
            source: output.to_owned(),
            stream: Some(stream),
            geometry: Some(geometry),
        })
    }

    /// Streams the window with KWin's internal id `uuid` (from [`super::window_uuids`]); KWin
    /// sends a frame whenever the window is damaged, at the window's size.
    pub fn window(socket: &Path, uuid: &str, timeout: Duration) -> Result<Self, KwinError> {
        let mut wl = Wl::connect(socket, timeout)?;
        let screencast = screencast(&wl)?;
        let key = next_key();
        wl.state.streams.push((key, StreamState::Pending));
        let proxy = screencast.stream_window(
            uuid.to_owned(),
            PointerMode::Hidden.wire(),
            &wl.handle(),
            key,
        );
        let stream = await_created(&mut wl, proxy, key)?;
        Ok(Self {
            wl,
            source: uuid.to_owned(),
            stream: Some(stream),
            geometry: None,
        })
    }

    /// The PipeWire node.
    pub fn node_id(&self) -> u32 {
        self.stream.as_ref().map_or(0, |s| s.node)
    }

    /// The output's name or the window's uuid.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Where a streamed output sits in KWin's global coordinates (`None` for a window).
    pub fn geometry(&self) -> Option<OutputGeometry> {
        self.geometry
    }

    /// Whether KWin still streams (one round trip).
    pub fn check(&mut self) -> Result<(), KwinError> {
        self.wl.sync()?;
        match &self.stream {
            Some(s) if !self.wl.state.stream(s.key).ended() => Ok(()),
            _ => Err(KwinError::Closed),
        }
    }
}

fn screencast(wl: &Wl) -> Result<ZkdeScreencastUnstableV1, KwinError> {
    wl.state
        .screencast
        .as_ref()
        .map(|(s, _)| s.clone())
        .ok_or_else(|| KwinError::Unsupported("zkde_screencast_unstable_v1".into()))
}

impl Drop for KwinStream {
    fn drop(&mut self) {
        if let Some(s) = self.stream.take() {
            s.proxy.close();
            let _ = self.wl.flush();
        }
    }
}
