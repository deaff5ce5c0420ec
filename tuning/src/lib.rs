//! punktfunk-tuning (work in progress).
