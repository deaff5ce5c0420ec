"""Encrypted RTSP and the encryption policy end to end with moonlight-common-c (issue 10,
point 5).

moonlight-common-c announces `corever=1` (it can encrypt RTSP): the host answers `/launch`
with `rtspenc://`, and the client seals every RTSP request with `rikey` (AES-GCM) and accepts
only sealed answers, so a stream that starts at all went through the encrypted handshake.
Control, video and audio encryption are negotiated in the SDP as before. A client without
`corever` gets plain `rtsp://`. With `[sessions] require_encryption = true` the host refuses a
launch without `corever` (403) and streams to one that encrypts everything.
"""

from __future__ import annotations

import secrets
import socket

import pytest
from moonlight_python.exceptions import HttpResponseError

import streaming
from conftest import Client, Host
from test_stream import check_delivery, check_pictures


def without_corever(params: str) -> str:
    return params.replace("corever=1", "")


def rtsp_exchange(url: str, payload: bytes) -> bytes:
    host, port = url.split("://", 1)[1].rsplit(":", 1)
    with socket.create_connection((host.strip("[]"), int(port)), timeout=10) as s:
        s.sendall(payload)
        out = b""
        while chunk := s.recv(4096):
            out += chunk
    return out


def test_rtsp_is_encrypted_for_a_client_that_can(host, client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="enc")
    r = streaming.stream(c.http, "127.0.0.1", 3.0, 640, 360, 30)
    sent = host.sent_frames()
    print("encrypted:", r["rtsp_url"], "host sent:", sent)
    assert r["rtsp_url"].startswith("rtspenc://"), r
    check_delivery(r, sent[0][1], 30)
    check_pictures(r, 640, 360)
    assert r["audio_packets"] > 50, r
    log = streaming._ANSI.sub("", host.log())
    assert "video:true audio:true" in log and "control:true" in log, log[-2000:]


def test_a_client_without_corever_gets_plain_rtsp(host, client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="plain")
    r = streaming.stream(c.http, "127.0.0.1", 3.0, 640, 360, 30, launch_params=without_corever)
    sent = host.sent_frames()
    assert r["rtsp_url"].startswith("rtsp://"), r
    check_delivery(r, sent[0][1], 30)


def test_plain_requests_to_an_encrypted_session_are_refused(host, client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="downgrade")
    app = next(a for a in c.http.get_app_list() if a.name == "Desktop")
    url = c.http.launch_app(app.id, 640, 360, 30, 5000, 1, secrets.token_bytes(16),
                            secrets.token_bytes(16), 0x30002, True, False, "&corever=1")
    assert url.startswith("rtspenc://"), url
    target = url.replace("rtspenc://", "rtsp://")
    try:
        # A plain OPTIONS (a downgrade attempt) is refused.
        reply = rtsp_exchange(url, f"OPTIONS {target} RTSP/1.0\r\nCSeq: 1\r\n\r\n".encode())
        assert reply.startswith(b"RTSP/1.0 403"), reply
        # A sealed message no session's key opens gets a plain 400 and nothing else.
        forged = bytes([0x80, 0, 0, 8]) + bytes(4) + secrets.token_bytes(16 + 8)
        reply = rtsp_exchange(url, forged)
        assert reply.startswith(b"RTSP/1.0 400"), reply
        # So does one that claims more than the host accepts.
        reply = rtsp_exchange(url, bytes([0x80, 0x7F, 0xFF, 0xFF]) + bytes(24))
        assert reply.startswith(b"RTSP/1.0 400"), reply
    finally:
        c.http.quit_app()


@pytest.fixture
def strict_host(tmp_path):
    profile = tmp_path / "strict.toml"
    profile.write_text("[sessions]\nrequire_encryption = true\n")
    h = Host(tmp_path / "state", tmp_path / "host.log",
             extra_args=["--profile", str(profile)]).start()
    yield h
    h.stop()


def test_required_encryption_refuses_a_client_that_cannot_and_serves_one_that_can(
        strict_host, tmp_path):
    c = Client(strict_host, tmp_path / "client")
    c.pair_with_pin("2468", name="strict")
    with pytest.raises(HttpResponseError) as refused:
        streaming.stream(c.http, "127.0.0.1", 2.0, 640, 360, 30,
                         launch_params=without_corever)
    assert refused.value.status_code == 403, refused.value
    assert "encrypt" in refused.value.status_message, refused.value.status_message
    r = streaming.stream(c.http, "127.0.0.1", 3.0, 640, 360, 30)
    sent = strict_host.sent_frames()
    print("strict:", r["rtsp_url"], "host sent:", sent)
    assert r["rtsp_url"].startswith("rtspenc://"), r
    check_delivery(r, sent[0][1], 30)
    log = streaming._ANSI.sub("", strict_host.log())
    assert "required=true" in log, log[-2000:]
