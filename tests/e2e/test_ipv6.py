"""IPv6 end to end with moonlight-common-c (issue 10, point 7).

* A host bound to `::1` is added by address (`[::1]`), paired and streamed from over IPv6:
  nvhttp, encrypted RTSP (`rtspenc://[::1]:port`), ENet control, video and audio.
* A host started without `--bind` listens dual-stack (`::`): an IPv4 client and an IPv6
  client each stream from it.
"""

from __future__ import annotations

import socket

import pytest

import streaming
from conftest import Client, Host, skip
from test_stream import check_delivery, check_pictures


def ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_DGRAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


@pytest.fixture(autouse=True)
def need_ipv6():
    if not ipv6_loopback():
        skip("ipv6", "this machine has no IPv6 loopback")


def stream_from(host: Host, client: Client, address: str) -> dict:
    r = streaming.stream(client.http, address, 3.0, 640, 360, 30)
    sent = host.sent_frames()
    print(f"{address}:", r["rtsp_url"], "host sent:", sent)
    check_delivery(r, sent[-1][1], 30)
    check_pictures(r, 640, 360)
    assert r["audio_packets"] > 50, r
    return r


def test_a_host_on_ipv6_streams_to_a_client_that_added_it_by_ipv6_address(tmp_path):
    host = Host(tmp_path / "state", tmp_path / "host.log", bind="::1").start()
    try:
        c = Client(host, tmp_path / "client", address="::1")
        c.pair_with_pin("2468", name="v6")
        assert c.server_info().paired is False  # plain HTTP does not know the client
        r = stream_from(host, c, "::1")
        assert r["rtsp_url"].startswith("rtspenc://[::1]:"), r
        log = streaming._ANSI.sub("", host.log())
        assert "streaming sockets bind=::1" in log, log[-2000:]
    finally:
        host.stop()


def test_a_host_without_bind_is_dual_stack(tmp_path):
    host = Host(tmp_path / "state", tmp_path / "host.log", bind=None).start()
    try:
        log = streaming._ANSI.sub("", host.log())
        assert "streaming sockets bind=::" in log, log[-2000:]
        v4 = Client(host, tmp_path / "v4", address="127.0.0.1")
        v4.pair_with_pin("1111", name="v4")
        r = stream_from(host, v4, "127.0.0.1")
        assert r["rtsp_url"].startswith("rtspenc://127.0.0.1:"), r
        v6 = Client(host, tmp_path / "v6", address="::1")
        v6.pair_with_pin("2222", name="v6")
        r = stream_from(host, v6, "::1")
        assert r["rtsp_url"].startswith("rtspenc://[::1]:"), r
    finally:
        host.stop()
