//! Erasure codes (work in progress: filled in by the FEC change).
