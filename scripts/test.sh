#!/usr/bin/env bash
# The test command from the README: sets up the machine, then runs every check CI runs.
#
#   scripts/test.sh            everything
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzz smoke run
#
# Tests that skip (a kernel feature, a tool or a device is missing) record themselves in
# $PF_SKIP_LOG (Rust: tests/skip.rs, pytest: tests/e2e/conftest.py); the list is printed at
# the end, pass or fail. With CI=true a skip of something CI's machine provides fails its test
# instead (docs/testing.md, "Skips").
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

step() { printf '\n==> %s\n' "$*"; }

PF_SKIP_LOG="$(mktemp -t punktfunk-skips.XXXXXX)"
export PF_SKIP_LOG
skip_summary() {
    local rc=$?
    if [ -s "$PF_SKIP_LOG" ]; then
        printf '\n==> skipped tests (%s), and why\n' "$(sort -u "$PF_SKIP_LOG" | wc -l)"
        sort -u "$PF_SKIP_LOG" | sed 's/^/    /'
    else
        printf '\n==> skipped tests: none\n'
    fi
    rm -f "$PF_SKIP_LOG"
    return $rc
}
trap skip_summary EXIT

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "cargo clippy + test: capture with PipeWire and Mutter (features pipewire,mutter: real daemon, real mutter)"
cargo clippy -p punktfunk-capture --all-targets --features pipewire,mutter --locked -- -D warnings
cargo test -p punktfunk-capture --features pipewire,mutter --locked

step "cargo clippy + test: control with desktop sound and Mutter (features pipewire,mutter: source = \"mutter\", a real mutter)"
cargo clippy -p punktfunk-control --all-targets --features pipewire,mutter --locked -- -D warnings
cargo test -p punktfunk-control --features pipewire,mutter --locked

step "cargo clippy + test: KWin (feature kwin: kwin_wayland --virtual; capture and control)"
cargo clippy -p punktfunk-capture --all-targets --features pipewire,kwin --locked -- -D warnings
cargo test -p punktfunk-capture --features pipewire,kwin --locked --test virtual_kwin
cargo clippy -p punktfunk-control --all-targets --features kwin --locked -- -D warnings
cargo test -p punktfunk-control --features kwin --locked --lib --test virtual_kwin_sink --test virtual_kwin_media

step "cargo clippy + test: capture's zero-copy GPU path (features vulkan, cuda; Vulkan on lavapipe, CUDA only its missing-driver error)"
# NVENC is no feature yet: nvidia-video-codec-sdk needs the CUDA toolkit to build (docs/capture.md,
# "Zero copy on GPUs"); the CUDA import itself runs on a GPU machine: scripts/gpu-check.sh.
cargo clippy -p punktfunk-capture --all-targets --features vulkan,cuda --locked -- -D warnings
cargo clippy -p punktfunk-capture --all-targets --features vulkan,cuda,pipewire --locked -- -D warnings
cargo test -p punktfunk-capture --features vulkan,cuda,pipewire --locked --lib --test gpu gpu

step "criterion benches (test mode: every bench runs once, release build shared with the report)"
cargo test --release --locked -p punktfunk-bench --benches

step "headline report (no write)"
cargo run --release --locked -p punktfunk-bench --bin report -- --no-write

step "end-to-end: moonlight-python (moonlight-common-c) against punktfunk serve"
# What else is using the CPU as the timed streams start (a compositor or daemon an earlier
# step left behind would starve the two-core machine's clients); printed for the record.
ps -eo pid,pcpu,etime,comm --sort=-pcpu | head -8
tests/e2e/run.sh

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzz smoke: ${FUZZ_SECONDS}s per target"
    for t in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$FUZZ_SECONDS" 2>&1 | tail -n 3)
    done
fi
step "all checks passed"
