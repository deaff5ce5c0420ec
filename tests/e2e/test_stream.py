"""Streaming end to end with moonlight-common-c: launch, video, audio, quit, relaunch."""

from __future__ import annotations

import streaming


def paired(client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="stream-test")
    return c


def check_stream(r: dict, width: int, height: int) -> None:
    assert r["termination_error"] == 0, r
    assert r["frames_decoded"] >= 150, r
    assert r["decoded_ratio"] >= 0.90, r
    assert r["shapes"] == [[height, width, 3]], r
    assert r["identical_pairs"] == 0, r
    assert r["dark_frames"] == 0, r
    assert r["stamps_read"] >= 0.9 * r["frames_decoded"], r
    assert r["stamps_increasing"], r
    assert r["audio_packets"] >= 500, r  # 5 s of 5 ms packets, minus the first 500 ms


def test_stream_720p60_with_audio_then_quit_and_relaunch(host, client_factory):
    c = paired(client_factory)
    r = streaming.stream(c.http, "127.0.0.1", 5.0, 1280, 720, 60)
    print("720p60:", r)
    check_stream(r, 1280, 720)
    # Quit happened inside stream(); the host is free again.
    info = c.server_info()
    assert info.current_game == 0 and info.state.endswith("_SERVER_FREE"), info
    # Relaunch at another resolution: the requested size is honoured.
    r2 = streaming.stream(c.http, "127.0.0.1", 5.0, 854, 480, 30)
    print("480p30:", r2)
    assert r2["shapes"] == [[480, 854, 3]], r2
    assert r2["decoded_ratio"] >= 0.90, r2
    assert r2["frames_decoded"] >= 120, r2
    assert r2["audio_packets"] > 0
    log = host.log()
    assert "stream starting" in log and "stream stopped" in log
