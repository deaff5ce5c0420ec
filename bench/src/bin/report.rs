//! Headline report (work in progress).
fn main() {}
