//! The checked-in `include/punktfunk_core.h` must be what cbindgen generates from
//! `src/abi.rs` now (build.rs writes that into `OUT_DIR`): a change to the ABI that forgot the
//! header fails here. `PUNKTFUNK_REGEN_HEADER=1` rewrites the checked-in copy instead.

#[test]
fn checked_in_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/punktfunk_core.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/punktfunk_core.h");
    if std::env::var_os("PUNKTFUNK_REGEN_HEADER").is_some() {
        std::fs::write(path, generated).expect("write include/punktfunk_core.h");
        eprintln!("rewrote {path}");
        return;
    }
    let checked_in = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        checked_in == generated,
        "{path} differs from what cbindgen generates from src/abi.rs; regenerate it with \
         PUNKTFUNK_REGEN_HEADER=1 cargo test -p punktfunk-client --test abi_header, and bump \
         PF_ABI_MINOR (additions) or PF_ABI_MAJOR (changes) as docs/client-abi.md says"
    );
}

#[test]
fn the_version_function_matches_the_header_constants() {
    let v = punktfunk_core::abi::punktfunk_abi_version();
    assert_eq!(
        v,
        (punktfunk_core::abi::PF_ABI_MAJOR << 16) | punktfunk_core::abi::PF_ABI_MINOR
    );
    let header = include_str!(concat!(env!("OUT_DIR"), "/punktfunk_core.h"));
    assert!(header.contains(&format!(
        "#define PF_ABI_MAJOR {}",
        punktfunk_core::abi::PF_ABI_MAJOR
    )));
}
