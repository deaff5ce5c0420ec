#!/usr/bin/env bash
# The test command from the README: sets up the machine, then runs every check CI runs.
#
#   scripts/test.sh            everything
#   FUZZ_SECONDS=0 scripts/test.sh   skip the fuzz smoke run
set -euo pipefail
cd "$(dirname "$0")/.."
FUZZ_SECONDS="${FUZZ_SECONDS:-20}"

step() { printf '\n==> %s\n' "$*"; }

step "setup"
scripts/setup.sh

step "cargo fmt --check"
cargo fmt --all -- --check
(cd fuzz && cargo fmt -- --check)

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "cargo test"
cargo test --workspace --locked

step "criterion benches (test mode: every bench runs once, release build shared with the report)"
cargo test --release --locked -p punktfunk-bench --benches

step "headline report (no write)"
cargo run --release --locked -p punktfunk-bench --bin report -- --no-write

step "end-to-end: moonlight-python (moonlight-common-c) against punktfunk serve"
tests/e2e/run.sh

if [ "$FUZZ_SECONDS" -gt 0 ]; then
    step "fuzz smoke: ${FUZZ_SECONDS}s per target"
    for t in $(cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz list); do
        (cd fuzz && RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" -- -max_total_time="$FUZZ_SECONDS" 2>&1 | tail -n 3)
    done
fi
step "all checks passed"
