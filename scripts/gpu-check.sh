#!/usr/bin/env bash
# The GPU checks a machine without a GPU cannot run: Vulkan on a real device and the
# Vulkan → CUDA OPAQUE_FD import (capture/tests/gpu.rs, docs/capture.md "Zero copy on GPUs").
# For a lent NVIDIA machine (e.g. an H100: CUDA and Vulkan work, NVENC does not): one short
# run, no installs beyond what is missing, a summary at the end.
#
#   scripts/gpu-check.sh            build with --features vulkan,cuda, run every gpu test
#
# Needs: cargo, the NVIDIA driver (libcuda.so.1, and its Vulkan ICD:
# /usr/share/vulkan/icd.d/nvidia_icd.json), libvulkan1. Nothing of the CUDA toolkit.
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_BUILD_JOBS="${CARGO_BUILD_JOBS:-$(nproc)}"

step() { printf '\n==> %s\n' "$*"; }

step "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "no nvidia-smi"
ls /usr/share/vulkan/icd.d/ /etc/vulkan/icd.d/ 2>/dev/null || true
ldconfig -p | grep -E 'libcuda\.so\.1|libvulkan\.so\.1|libnvidia-encode\.so\.1' || true
lscpu | grep -E 'Model name' || true
# Without the loader the Vulkan tests skip; install it if apt can (no GPU driver from here).
if ! ldconfig -p | grep -q 'libvulkan\.so\.1' && command -v apt-get >/dev/null; then
    apt-get install -y -qq libvulkan1 >/dev/null 2>&1 || echo "could not install libvulkan1"
fi

step "build: punktfunk-capture --features vulkan,cuda (tests too)"
cargo test -p punktfunk-capture --features vulkan,cuda --locked --no-run 2>&1 | tail -n 3

step "tests: every gpu test, the ignored CUDA one included (a skip prints SKIP)"
# --test-threads=1: the timing lines stay readable, and one context at a time on the GPU.
cargo test -p punktfunk-capture --features vulkan,cuda --locked --test gpu -- \
    --include-ignored --nocapture --test-threads=1 gpu 2>&1 | tee /tmp/pf-gpu-check.log
cargo test -p punktfunk-capture --features vulkan,cuda --locked --lib -- gpu 2>&1 | tail -n 3

step "summary"
# --nocapture puts test output after "test <name> ... ", so the patterns are not anchored.
grep -oE '(vulkan device: .*|vulkan .* = cuda .*|exported.*|cuda import .*|cuMemcpy.*|vulkan upload .*|1920x1080 .*|SKIP .*|test result.*)' \
    /tmp/pf-gpu-check.log | sort -u || true
if grep -q 'SKIP ' /tmp/pf-gpu-check.log; then
    echo "gpu-check: some tests skipped (see SKIP lines): the CUDA path was NOT checked" >&2
    exit 2
fi
echo "gpu-check: passed"
