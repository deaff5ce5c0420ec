//! Kernel-facing code (work in progress: filled in by the io driver change).

pub mod pin;
pub mod stages;
