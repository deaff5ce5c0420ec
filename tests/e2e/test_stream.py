"""Streaming end to end with moonlight-common-c: launch, video, audio, quit, relaunch."""

from __future__ import annotations

import streaming


def paired(client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="stream-test")
    return c


def check_delivery(r: dict, host_sent: int, min_frames: int) -> None:
    """The protocol layer: the frames moonlight-common-c handed out, against the frames the
    host says it sent in this stream. On loopback nothing is lost, so all but the last
    frame or two (in flight when the stream ended) arrive, in order, without a gap."""
    assert r["termination_error"] == 0, r
    assert not r["terminated_early"], r
    assert r["quit_error"] is None, r
    assert host_sent >= min_frames, (host_sent, r)
    assert r["frames_received"] <= host_sent, (host_sent, r)
    assert streaming.delivery(r, host_sent) >= 0.99, (host_sent, r)
    assert r["gaps"] == 0 and r["out_of_order"] == 0, r
    # Every frame handed out was decoded (one picture per frame, no decoder errors).
    assert r["decode_errors"] == 0, r
    assert r["frames_decoded"] == r["frames_received"], r


def check_pictures(r: dict, width: int, height: int) -> None:
    """The sampled pictures: right size, not dark, changing, stamped in increasing order."""
    assert r["checker_errors"] == [], r
    assert r["samples_checked"] >= 10, r
    assert r["shapes"] == [[height, width]], r
    assert r["identical_pairs"] == 0, r
    assert r["dark_frames"] == 0, r
    assert r["stamps_read"] >= 0.9 * r["samples_checked"], r
    assert r["stamps_increasing"], r


def test_stream_720p60_with_audio_then_quit_and_relaunch(host, client_factory):
    c = paired(client_factory)
    r = streaming.stream(c.http, "127.0.0.1", 5.0, 1280, 720, 60)
    sent = host.sent_frames()
    print("720p60:", r, "host sent:", sent)
    assert len(sent) == 1, sent
    check_delivery(r, sent[0][1], 250)
    check_pictures(r, 1280, 720)
    assert r["audio_packets"] >= 500, r  # 5 s of 5 ms packets, minus the first 500 ms
    # Quit happened inside stream(); the host is free again.
    info = c.server_info()
    assert info.current_game == 0 and info.state.endswith("_SERVER_FREE"), info
    # Relaunch at another resolution: the requested size is honoured.
    r2 = streaming.stream(c.http, "127.0.0.1", 5.0, 854, 480, 30)
    sent = host.sent_frames()
    print("480p30:", r2, "host sent:", sent)
    assert len(sent) == 2, sent
    # Issue 7, point 8: the second stream's "stream stopped" line counts its own frames only
    # (before, it included the first stream's), so it matches what this client received.
    check_delivery(r2, sent[1][1], 120)
    check_pictures(r2, 854, 480)
    assert r2["audio_packets"] > 0
    log = host.log()
    assert "stream starting" in log and "stream stopped" in log
