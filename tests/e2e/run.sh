#!/usr/bin/env bash
# End-to-end tests of the GameStream host with a real Moonlight client library.
#
#   tests/e2e/run.sh [pytest args]
#
# Creates tests/.venv (Python 3 with venv: scripts/setup.sh installs python3-venv), installs
# tests/requirements.txt, builds the `punktfunk` binary (feature `mutter`) and runs pytest on
# tests/e2e.
# The tests start `punktfunk serve` themselves, on loopback, with temporary state dirs and
# random non-default ports, and without mDNS.
set -euo pipefail
cd "$(dirname "$0")/../.."

VENV=tests/.venv
if [ ! -x "$VENV/bin/python" ]; then
    python3 -m venv "$VENV"
fi
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt

# With the `mutter` feature (test_desktop_mutter.py; needs the PipeWire headers setup.sh installs).
cargo build --locked -p punktfunk-control --features mutter --bin punktfunk
export PUNKTFUNK_BIN="${CARGO_TARGET_DIR:-$PWD/target}/debug/punktfunk"

# -rs: the summary lists every skipped test with its reason (they are also appended to
# $PF_SKIP_LOG when scripts/test.sh set it; see conftest.py).
exec "$VENV/bin/python" -m pytest -v -rs tests/e2e "$@"
