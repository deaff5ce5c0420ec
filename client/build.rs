//! Generates `punktfunk_core.h` from `src/abi.rs` and `src/abi_sansio.rs` with cbindgen into `OUT_DIR`. The copy in
//! `include/` is checked in; the test `abi_header::checked_in_header_is_current` fails when the
//! two differ (regenerate with `PUNKTFUNK_REGEN_HEADER=1 cargo test -p punktfunk-client --test abi_header`).

fn main() {
    println!("cargo:rerun-if-changed=src/abi.rs");
    println!("cargo:rerun-if-changed=src/abi_sansio.rs");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    let config = cbindgen::Config::from_file(format!("{dir}/cbindgen.toml"))
        .expect("client/cbindgen.toml parses");
    cbindgen::Builder::new()
        .with_config(config)
        .with_src(format!("{dir}/src/abi.rs"))
        .with_src(format!("{dir}/src/abi_sansio.rs"))
        .generate()
        .expect("cbindgen generates the header from src/abi.rs")
        .write_to_file(format!("{out}/punktfunk_core.h"));
}
