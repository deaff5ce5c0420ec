//! Arbitrary nvhttp requests (path, query string, HTTP or HTTPS, paired or not) into the pure
//! request decision: query parsing, pairing fields, launch/resume parameters. Replies or
//! errors, never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use punktfunk_control::gamestream::nvhttp::{Transport, decide};
use punktfunk_control::gamestream::session::ClientIdentity;

const PATHS: &[&str] = &[
    "/serverinfo",
    "/pair",
    "/unpair",
    "/applist",
    "/appasset",
    "/launch",
    "/resume",
    "/cancel",
    "/",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&sel, rest)) = data.split_first() else {
        return;
    };
    let transport = if sel & 1 == 0 {
        Transport::Http
    } else {
        Transport::Https
    };
    let client = ClientIdentity {
        id: "0011223344556677".into(),
        name: "fuzz".into(),
    };
    let client = (sel & 2 != 0).then_some(&client);
    let path = PATHS[usize::from(sel >> 2) % PATHS.len()];
    let query = String::from_utf8_lossy(rest);
    let _ = decide(transport, path, &query, client);
});
