//! punktfunk-bench support code (work in progress).
