//! The reference client's window (act: winit, softbuffer; feature `window`): presents the
//! newest decoded picture, scaled to the window, and forwards the window's keyboard and mouse
//! to the host through the C ABI.
//!
//! ```text
//!  frame thread ── Presenter::show(picture) ─► newest-picture slot ─► wake the event loop
//!  window thread (winit event loop; Wayland):
//!      wake-up        → request a redraw
//!      redraw         → softbuffer: nearest-neighbour scale of the picture, present
//!      key press/up   → PF_INPUT_KEY (physical key → Win32 virtual-key code, see `vk`)
//!      cursor moved   → PF_INPUT_MOUSE_POSITION in the picture's coordinates
//!      button, wheel  → PF_INPUT_MOUSE_BUTTON, PF_INPUT_SCROLL / PF_INPUT_HSCROLL
//!      close          → the session ends (Presenter::closed)
//!  end of the run ── Presenter::exit ─► the loop exits, the thread is joined
//! ```

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use winit::application::ApplicationHandler;
use winit::dpi::LogicalSize;
use winit::event::{ElementState, MouseButton, MouseScrollDelta, WindowEvent};
use winit::event_loop::{ActiveEventLoop, EventLoop, EventLoopProxy};
use winit::keyboard::{KeyCode, ModifiersState, PhysicalKey};
use winit::platform::wayland::EventLoopBuilderExtWayland as _;
use winit::window::{Window, WindowId};

use super::binding::{Client, sized};
pub use super::decode::Picture;
use crate::abi::{self, PfInput};

enum Wake {
    Redraw,
    Exit,
}

/// The frame thread's and the session's handle on the window.
pub struct Presenter {
    slot: Mutex<Option<Picture>>,
    /// Spare picture buffers handed back to the frame thread (no allocation per frame).
    spare: Mutex<Vec<Picture>>,
    proxy: Mutex<Option<EventLoopProxy<Wake>>>,
    closed: AtomicBool,
    presented: AtomicU64,
    forwarded: AtomicU64,
}

impl std::fmt::Debug for Presenter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Presenter")
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Presenter {
    /// A buffer to fill for [`Presenter::show`].
    pub fn take_buffer(&self) -> Picture {
        self.spare
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .unwrap_or_default()
    }

    /// Makes `pic` the picture to present next (an older one not yet shown is recycled).
    pub fn show(&self, pic: Picture) {
        let old = self
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(pic);
        if let Some(old) = old {
            self.recycle(old);
        }
        self.wake(Wake::Redraw);
    }

    fn recycle(&self, pic: Picture) {
        let mut spare = self.spare.lock().unwrap_or_else(PoisonError::into_inner);
        if spare.len() < 2 {
            spare.push(pic);
        }
    }

    fn wake(&self, w: Wake) {
        if let Some(p) = &*self.proxy.lock().unwrap_or_else(PoisonError::into_inner) {
            let _ = p.send_event(w);
        }
    }

    /// The user closed the window (or it could not be opened).
    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Ends the event loop.
    pub fn exit(&self) {
        self.wake(Wake::Exit);
    }

    /// Pictures presented so far.
    pub fn presented(&self) -> u64 {
        self.presented.load(Ordering::Relaxed)
    }

    /// Input events forwarded so far.
    pub fn forwarded(&self) -> u64 {
        self.forwarded.load(Ordering::Relaxed)
    }
}

/// Opens the window on its own thread (`title`, initial size `width`×`height`); input goes
/// to `client`. Returns once the event loop runs (or failed to start: then
/// [`Presenter::closed`] is already true and the error is returned).
pub fn open(
    client: Arc<Client>,
    title: String,
    width: u32,
    height: u32,
) -> Result<(Arc<Presenter>, std::thread::JoinHandle<()>), String> {
    let presenter = Arc::new(Presenter {
        slot: Mutex::new(None),
        spare: Mutex::new(Vec::new()),
        proxy: Mutex::new(None),
        closed: AtomicBool::new(false),
        presented: AtomicU64::new(0),
        forwarded: AtomicU64::new(0),
    });
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<(), String>>();
    let p = presenter.clone();
    let thread = std::thread::Builder::new()
        .name("window".into())
        .spawn(move || {
            let event_loop = match EventLoop::<Wake>::with_user_event()
                .with_any_thread(true)
                .build()
            {
                Ok(l) => l,
                Err(e) => {
                    p.closed.store(true, Ordering::SeqCst);
                    let _ = ready_tx.send(Err(format!("no window: {e}")));
                    return;
                }
            };
            *p.proxy.lock().unwrap_or_else(PoisonError::into_inner) =
                Some(event_loop.create_proxy());
            let _ = ready_tx.send(Ok(()));
            let mut app = App {
                presenter: p.clone(),
                client,
                title,
                size: (width, height),
                window: None,
                surface: None,
                picture: None,
                modifiers: ModifiersState::empty(),
                error: None,
            };
            if let Err(e) = event_loop.run_app(&mut app) {
                tracing::warn!(error = %e, "window event loop failed");
            }
            if let Some(e) = app.error {
                tracing::warn!(error = %e, "window");
            }
            p.closed.store(true, Ordering::SeqCst);
        })
        .map_err(|e| e.to_string())?;
    match ready_rx.recv() {
        Ok(Ok(())) => Ok((presenter, thread)),
        Ok(Err(e)) => {
            let _ = thread.join();
            Err(e)
        }
        Err(_) => Err("window thread ended".into()),
    }
}

struct App {
    presenter: Arc<Presenter>,
    client: Arc<Client>,
    title: String,
    size: (u32, u32),
    window: Option<Arc<Window>>,
    surface: Option<softbuffer::Surface<Arc<Window>, Arc<Window>>>,
    picture: Option<Picture>,
    modifiers: ModifiersState,
    error: Option<String>,
}

impl App {
    fn send(&self, i: &PfInput) {
        match self.client.send_input(i) {
            Ok(()) => {
                self.presenter.forwarded.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => tracing::debug!(error = %e, "input not sent"),
        }
    }

    fn redraw(&mut self) -> Result<(), String> {
        let (Some(window), Some(surface)) = (&self.window, &mut self.surface) else {
            return Ok(());
        };
        let newest = self
            .presenter
            .slot
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        if let Some(pic) = newest
            && let Some(old) = self.picture.replace(pic)
        {
            self.presenter.recycle(old);
        }
        let size = window.inner_size();
        let (Some(w), Some(h)) = (NonZeroU32::new(size.width), NonZeroU32::new(size.height)) else {
            return Ok(());
        };
        surface.resize(w, h).map_err(|e| e.to_string())?;
        let mut buf = surface.buffer_mut().map_err(|e| e.to_string())?;
        match &self.picture {
            Some(p) if p.width > 0 && p.height > 0 => {
                scale_into(p, &mut buf, size.width as usize, size.height as usize);
            }
            _ => buf.fill(0),
        }
        buf.present().map_err(|e| e.to_string())?;
        if self.picture.is_some() {
            self.presenter.presented.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    /// The window position `(x, y)` in the picture's coordinates.
    fn to_picture(&self, x: f64, y: f64) -> Option<(i32, i32, i32, i32)> {
        let window = self.window.as_ref()?;
        let p = self.picture.as_ref()?;
        let size = window.inner_size();
        if size.width == 0 || size.height == 0 {
            return None;
        }
        let px = (x / f64::from(size.width) * f64::from(p.width)).clamp(0.0, f64::from(p.width));
        let py = (y / f64::from(size.height) * f64::from(p.height)).clamp(0.0, f64::from(p.height));
        Some((px as i32, py as i32, p.width as i32, p.height as i32))
    }
}

/// Nearest-neighbour scale of `p` into a `w`×`h` buffer.
fn scale_into(p: &Picture, out: &mut [u32], w: usize, h: usize) {
    let (pw, ph) = (p.width as usize, p.height as usize);
    for (row, line) in out.chunks_exact_mut(w).take(h).enumerate() {
        let sy = row * ph / h;
        let src = &p.pixels[sy * pw..(sy + 1) * pw];
        for (col, px) in line.iter_mut().enumerate() {
            *px = src[col * pw / w];
        }
    }
}

impl ApplicationHandler<Wake> for App {
    fn resumed(&mut self, event_loop: &ActiveEventLoop) {
        if self.window.is_some() {
            return;
        }
        let attrs = Window::default_attributes()
            .with_title(self.title.clone())
            .with_inner_size(LogicalSize::new(self.size.0, self.size.1));
        let made = event_loop
            .create_window(attrs)
            .map_err(|e| e.to_string())
            .and_then(|w| {
                let w = Arc::new(w);
                let context = softbuffer::Context::new(w.clone()).map_err(|e| e.to_string())?;
                let surface =
                    softbuffer::Surface::new(&context, w.clone()).map_err(|e| e.to_string())?;
                Ok((w, surface))
            });
        match made {
            Ok((w, s)) => {
                self.window = Some(w);
                self.surface = Some(s);
            }
            Err(e) => {
                self.error = Some(e);
                event_loop.exit();
            }
        }
    }

    fn user_event(&mut self, event_loop: &ActiveEventLoop, wake: Wake) {
        match wake {
            Wake::Redraw => {
                if let Some(w) = &self.window {
                    w.request_redraw();
                }
            }
            Wake::Exit => event_loop.exit(),
        }
    }

    fn window_event(&mut self, event_loop: &ActiveEventLoop, _: WindowId, event: WindowEvent) {
        match event {
            WindowEvent::CloseRequested => {
                self.presenter.closed.store(true, Ordering::SeqCst);
                event_loop.exit();
            }
            WindowEvent::RedrawRequested => {
                if let Err(e) = self.redraw() {
                    self.error = Some(e);
                    event_loop.exit();
                }
            }
            WindowEvent::ModifiersChanged(m) => self.modifiers = m.state(),
            WindowEvent::KeyboardInput { event, .. } => {
                let PhysicalKey::Code(code) = event.physical_key else {
                    return;
                };
                let Some(vk) = vk(code) else { return };
                let mut i: PfInput = sized();
                i.kind = abi::PF_INPUT_KEY;
                i.down = u8::from(event.state == ElementState::Pressed);
                i.code = vk;
                let m = self.modifiers;
                i.modifiers = u8::from(m.shift_key())
                    | u8::from(m.control_key()) << 1
                    | u8::from(m.alt_key()) << 2
                    | u8::from(m.super_key()) << 3;
                self.send(&i);
            }
            WindowEvent::CursorMoved { position, .. } => {
                if let Some((x, y, w, h)) = self.to_picture(position.x, position.y) {
                    let mut i: PfInput = sized();
                    i.kind = abi::PF_INPUT_MOUSE_POSITION;
                    (i.x, i.y, i.ref_width, i.ref_height) = (x, y, w, h);
                    self.send(&i);
                }
            }
            WindowEvent::MouseInput { state, button, .. } => {
                let b = match button {
                    MouseButton::Left => 1,
                    MouseButton::Middle => 2,
                    MouseButton::Right => 3,
                    MouseButton::Back => 4,
                    MouseButton::Forward => 5,
                    MouseButton::Other(_) => return,
                };
                let mut i: PfInput = sized();
                i.kind = abi::PF_INPUT_MOUSE_BUTTON;
                i.down = u8::from(state == ElementState::Pressed);
                i.button = b;
                self.send(&i);
            }
            WindowEvent::MouseWheel { delta, .. } => {
                let (dx, dy) = match delta {
                    MouseScrollDelta::LineDelta(x, y) => (x * 120.0, y * 120.0),
                    // Pixels: a notch is about 40 px on most desktops.
                    MouseScrollDelta::PixelDelta(p) => (p.x as f32 * 3.0, p.y as f32 * 3.0),
                };
                for (kind, amount) in [(abi::PF_INPUT_SCROLL, dy), (abi::PF_INPUT_HSCROLL, dx)] {
                    let a = amount.round().clamp(-32768.0, 32767.0) as i32;
                    if a != 0 {
                        let mut i: PfInput = sized();
                        i.kind = kind;
                        if kind == abi::PF_INPUT_SCROLL {
                            i.y = a;
                        } else {
                            i.x = a;
                        }
                        self.send(&i);
                    }
                }
            }
            _ => {}
        }
    }
}

/// The Win32 virtual-key code of a physical key (US layout positions), as GameStream and
/// punktfunk/1 carry keys; `None` for keys without one here.
pub fn vk(code: KeyCode) -> Option<u16> {
    use KeyCode as K;
    let letters = [
        K::KeyA,
        K::KeyB,
        K::KeyC,
        K::KeyD,
        K::KeyE,
        K::KeyF,
        K::KeyG,
        K::KeyH,
        K::KeyI,
        K::KeyJ,
        K::KeyK,
        K::KeyL,
        K::KeyM,
        K::KeyN,
        K::KeyO,
        K::KeyP,
        K::KeyQ,
        K::KeyR,
        K::KeyS,
        K::KeyT,
        K::KeyU,
        K::KeyV,
        K::KeyW,
        K::KeyX,
        K::KeyY,
        K::KeyZ,
    ];
    if let Some(i) = letters.iter().position(|&k| k == code) {
        return Some(0x41 + i as u16);
    }
    let digits = [
        K::Digit0,
        K::Digit1,
        K::Digit2,
        K::Digit3,
        K::Digit4,
        K::Digit5,
        K::Digit6,
        K::Digit7,
        K::Digit8,
        K::Digit9,
    ];
    if let Some(i) = digits.iter().position(|&k| k == code) {
        return Some(0x30 + i as u16);
    }
    let f = [
        K::F1,
        K::F2,
        K::F3,
        K::F4,
        K::F5,
        K::F6,
        K::F7,
        K::F8,
        K::F9,
        K::F10,
        K::F11,
        K::F12,
    ];
    if let Some(i) = f.iter().position(|&k| k == code) {
        return Some(0x70 + i as u16);
    }
    Some(match code {
        K::Backspace => 0x08,
        K::Tab => 0x09,
        K::Enter | K::NumpadEnter => 0x0D,
        K::Pause => 0x13,
        K::CapsLock => 0x14,
        K::Escape => 0x1B,
        K::Space => 0x20,
        K::PageUp => 0x21,
        K::PageDown => 0x22,
        K::End => 0x23,
        K::Home => 0x24,
        K::ArrowLeft => 0x25,
        K::ArrowUp => 0x26,
        K::ArrowRight => 0x27,
        K::ArrowDown => 0x28,
        K::PrintScreen => 0x2C,
        K::Insert => 0x2D,
        K::Delete => 0x2E,
        K::SuperLeft => 0x5B,
        K::SuperRight => 0x5C,
        K::ContextMenu => 0x5D,
        K::ShiftLeft => 0xA0,
        K::ShiftRight => 0xA1,
        K::ControlLeft => 0xA2,
        K::ControlRight => 0xA3,
        K::AltLeft => 0xA4,
        K::AltRight => 0xA5,
        K::Semicolon => 0xBA,
        K::Equal => 0xBB,
        K::Comma => 0xBC,
        K::Minus => 0xBD,
        K::Period => 0xBE,
        K::Slash => 0xBF,
        K::Backquote => 0xC0,
        K::BracketLeft => 0xDB,
        K::Backslash => 0xDC,
        K::BracketRight => 0xDD,
        K::Quote => 0xDE,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_win32_virtual_keys() {
        assert_eq!(vk(KeyCode::KeyA), Some(0x41));
        assert_eq!(vk(KeyCode::KeyZ), Some(0x5A));
        assert_eq!(vk(KeyCode::Digit7), Some(0x37));
        assert_eq!(vk(KeyCode::F12), Some(0x7B));
        assert_eq!(vk(KeyCode::Enter), Some(0x0D));
        assert_eq!(vk(KeyCode::ShiftLeft), Some(0xA0));
        assert_eq!(vk(KeyCode::Fn), None);
    }

    #[test]
    fn scaling_picks_the_nearest_source_pixel() {
        let p = Picture {
            width: 2,
            height: 2,
            pixels: vec![1, 2, 3, 4],
        };
        let mut out = vec![0u32; 16];
        scale_into(&p, &mut out, 4, 4);
        assert_eq!(out, [1, 1, 2, 2, 1, 1, 2, 2, 3, 3, 4, 4, 3, 3, 4, 4]);
    }
}
