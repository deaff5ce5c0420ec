#!/usr/bin/env bash
# Installs everything punktfunk needs to build, test and run on a fresh Debian machine.
# Idempotent; safe to run as root (CI) or as a user with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi

# Debian packages: C toolchain for -sys crates (reed-solomon-erasure's SIMD C baseline),
# pkg-config, and the tools the tests and benches call. sway, swaybg: the headless compositor
# capture/tests/virtual_sway.rs starts (docs/capture.md "Virtual displays: sway");
# wev: the Wayland client whose printed events the input tests check (capture/tests/virtual_sway_input.rs,
# control/tests/virtual_sway_sink.rs, tests/e2e/test_desktop.py; docs/input.md "Wayland (wlroots)
# injection"); wtype: types into the reference client's window (client/tests/window_sway.rs). PipeWire capture (capture feature `pipewire`): libpipewire/libspa
# headers and libclang for pipewire-rs' bindgen; the daemon, session manager, session bus and
# GStreamer producer that capture/tests/pipewire_capture.rs starts (docs/capture.md,
# "PipeWire capture"). mutter: the GNOME compositor run headless (`mutter --headless --wayland
# --no-x11`) by capture/tests/virtual_mutter.rs and control/tests/virtual_mutter_sink.rs for the
# `mutter` feature (ScreenCast RecordVirtual + RemoteDesktop; docs/capture.md "Mutter (GNOME)").
# kwin-wayland: the KWin that capture/tests/virtual_kwin.rs starts
# (`--virtual`, capture feature `kwin`; docs/capture.md "KWin (KDE)"), and
# gstreamer1.0-plugins-bad: its waylandsink, the window that test streams.
# Vulkan (capture feature `vulkan`): the loader and Mesa's drivers, whose
# lavapipe (a CPU Vulkan 1.3 device with VK_KHR_external_memory_fd) runs capture/tests/gpu.rs
# on machines without a GPU (docs/capture.md, "Zero copy on GPUs").
# libavcodec-dev, libavutil-dev: FFmpeg's headers for the `libav` feature's bindings
# (capture/src/libav.rs); libavcodec59 brings libx264, libx265, libaom and SVT-AV1 (the
# encoders) and dav1d (the tests' AV1 decoder): docs/capture.md "Encoders".
# fonts-dejavu-core: the font of the sweep's PNG plots (bench/src/sweep/plot.rs); iproute2,
# nftables (above) and tc build its testbed (docs/sweeps.md). ethtool: `punktfunk tune` reads
# NIC rings and offloads with it (docs/tuning.md "Checking the machine"). openssh-server: the
# LAN sweep's test runs a real sshd as its stand-in peer (bench/tests/sweep.rs; docs/sweeps.md).
PKGS=(build-essential pkg-config iproute2 nftables python3 python3-venv libopus-dev nasm python3-numpy ffmpeg
      sway swaybg wev wtype
      libpipewire-0.3-dev libspa-0.2-dev libclang-dev clang libavcodec-dev libavutil-dev
      pipewire wireplumber dbus gstreamer1.0-pipewire gstreamer1.0-tools gstreamer1.0-plugins-base
      mutter kwin-wayland gstreamer1.0-plugins-bad
      libvulkan1 mesa-vulkan-drivers fonts-dejavu-core ethtool
      openssh-server openssh-client)
missing=()
for p in "${PKGS[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    $SUDO apt-get update -qq
    # No service starts during the install (openssh-server would otherwise start a system sshd
    # on port 22: the tests run their own, on a namespace's address only). A policy-rc.d that
    # is already there is left alone.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
        $SUDO chmod 755 /usr/sbin/policy-rc.d
        guard=1
    fi
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
    [ -n "$guard" ] && $SUDO rm -f /usr/sbin/policy-rc.d
    # systemd machines: the unit stays disabled.
    if [[ " ${missing[*]} " == *" openssh-server "* ]] && command -v systemctl >/dev/null; then
        $SUDO systemctl disable ssh.service >/dev/null 2>&1 || true
    fi
fi

command -v cargo >/dev/null || { echo "setup: cargo not found; install Rust (rustup) first" >&2; exit 1; }
# clippy and rustfmt ship with the toolchain on our machines; try rustup only if absent.
cargo clippy --version >/dev/null 2>&1 || rustup component add clippy
cargo fmt --version >/dev/null 2>&1 || rustup component add rustfmt

# cargo-fuzz for the fuzz smoke run (stable toolchain with RUSTC_BOOTSTRAP, see docs/testing.md).
if ! cargo fuzz --version >/dev/null 2>&1; then
    echo "setup: installing cargo-fuzz"
    cargo install cargo-fuzz --locked --quiet
fi
# The real Moonlight client library (moonlight-python) in tests/.venv: the end-to-end tests
# (tests/e2e/run.sh) and the sweep's GameStream points (bench/tests/sweep.rs) use it.
if [ ! -x tests/.venv/bin/python ]; then
    python3 -m venv tests/.venv
fi
tests/.venv/bin/python -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt
echo "setup: done"
