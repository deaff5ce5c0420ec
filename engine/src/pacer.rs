//! Pacing (work in progress: filled in by the io driver change).
