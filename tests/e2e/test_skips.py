"""Skips are visible (issue 7, point 9; docs/testing.md, "Skips").

A Rust test that lacks a kernel feature records itself in $PF_SKIP_LOG and, under CI=true,
fails when CI's machine provides the feature; the pytest helper does the same. The Rust side
is checked on a real test binary in a network namespace without an IPv6 loopback
(`unshare -n`), where `ipv6_delivers` must skip.
"""

from __future__ import annotations

import json
import os
import subprocess
from types import SimpleNamespace

import pytest

import conftest
from conftest import REPO, skip


def io_loopback_binary() -> str:
    """The engine's io_loopback test binary (built by `cargo test`; built here if not)."""
    out = subprocess.run(
        ["cargo", "test", "--locked", "-p", "punktfunk-engine", "--test", "io_loopback",
         "--no-run", "--message-format=json"],
        cwd=REPO, capture_output=True, text=True, timeout=900, check=True).stdout
    for line in out.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "io_loopback":
            return msg["executable"]
    raise AssertionError("no io_loopback test binary in cargo's output")


def run_without_ipv6(binary: str, env: dict) -> subprocess.CompletedProcess:
    # A fresh network namespace has only a loopback that is down: no IPv6 loopback.
    return subprocess.run(["unshare", "-n", binary, "--exact", "ipv6_delivers",
                           "--nocapture"],
                          env=env, capture_output=True, text=True, timeout=120)


def test_rust_skip_is_listed_and_fatal_in_ci(tmp_path):
    if os.geteuid() != 0:
        skip("root", "unshare -n needs root")
    binary = io_loopback_binary()
    log = tmp_path / "skips"
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    r = run_without_ipv6(binary, {**env, "PF_SKIP_LOG": str(log)})
    print(r.stdout[-2000:], r.stderr[-2000:])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "SKIP io_loopback::ipv6_delivers: ipv6: no IPv6 loopback" in r.stderr
    assert log.read_text() == "io_loopback::ipv6_delivers: ipv6: no IPv6 loopback\n"
    r = run_without_ipv6(binary, {**env, "CI": "true"})
    assert r.returncode != 0, "under CI=true the missing IPv6 loopback fails the test"
    assert "CI=true: not skipping io_loopback::ipv6_delivers: ipv6" in r.stderr, r.stderr[-2000:]


def test_pytest_skip_is_listed_and_fatal_in_ci(tmp_path, monkeypatch):
    monkeypatch.setattr(conftest, "CI", False)
    with pytest.raises(pytest.skip.Exception, match="netns: no namespaces"):
        skip("netns", "no namespaces")
    monkeypatch.setattr(conftest, "CI", True)
    with pytest.raises(pytest.fail.Exception, match="CI=true: not skipping: netns"):
        skip("netns", "no namespaces")
    # What CI's machine lacks stays a skip.
    with pytest.raises(pytest.skip.Exception, match="uinput: absent"):
        skip("uinput", "absent")
    # The hook lists skipped tests in $PF_SKIP_LOG.
    log = tmp_path / "skips"
    monkeypatch.setenv("PF_SKIP_LOG", str(log))
    report = SimpleNamespace(skipped=True, nodeid="test_x.py::test_y",
                             longrepr=("test_x.py", 3, "Skipped: netns: no namespaces"))
    conftest.pytest_runtest_logreport(report)
    conftest.pytest_runtest_logreport(SimpleNamespace(skipped=False, nodeid="n", longrepr=None))
    assert log.read_text() == "e2e::test_x.py::test_y: netns: no namespaces\n"
