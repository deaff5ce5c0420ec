//! wlroots compositors (sway): headless virtual outputs over sway IPC, capture with
//! wlr-screencopy.
//!
//! * [`message`] (pure): the i3/sway IPC framing and the replies we read.
//! * [`ipc::SwayIpc`] (act): the IPC socket (`$SWAYSOCK`).
//! * [`display::SwayDisplay`] (act): a [`crate::display::VirtualDisplay`] made with
//!   `create_output`, changed with `output NAME mode`, removed with `output NAME unplug`.
//! * [`input::WlrInput`] (act): a virtual keyboard (US keymap, [`keymods`] (pure) keeps its
//!   modifier masks) and a virtual pointer bound to one output.
//! * [`screencopy::Screencopy`] (act): a [`crate::display::FrameSource`] of one output, wl_shm
//!   buffers, BGRx/BGRA; [`crate::convert::bgrx_to_i420`] makes encoder input of it.
//!
//! How to run sway for this, and what is not done yet: docs/capture.md, "Virtual displays:
//! sway".

pub mod display;
pub mod headless;
pub mod input;
pub mod ipc;
pub mod keymods;
pub mod message;
pub mod screencopy;

pub use display::{SwayDisplay, SwayDisplays};
pub use headless::{HeadlessError, HeadlessSway};
pub use input::{ScrollAxis, WlrInput, WlrInputError};
pub use ipc::SwayIpc;
pub use screencopy::Screencopy;
