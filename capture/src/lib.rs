//! punktfunk-capture (work in progress).
