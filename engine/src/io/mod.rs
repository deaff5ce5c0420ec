//! Kernel-facing code (work in progress: filled in by the io driver change).
