//! The `punktfunk` binary (work in progress).
fn main() {}
