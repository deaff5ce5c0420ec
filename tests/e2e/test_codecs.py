"""Every codec the host advertises, end to end with moonlight-common-c (issue 10, point 1-2).

For each format moonlight-common-c can negotiate (H.264, HEVC, HEVC Main10, AV1, AV1 Main10):
the host advertises it (ServerCodecModeSupport), the client picks it, the host's log names
the encoder it opened, and 5 s of the test pattern arrive: every frame the host sent is
handed out and decodes (PyAV: h264, hevc, libdav1d) at the requested size, 10-bit streams as
10-bit pictures, and the pattern's stamps read back increasing.
"""

from __future__ import annotations

import pytest

import streaming
from test_stream import check_delivery, check_pictures

H264, HEVC, HEVC_MAIN10, AV1_MAIN8, AV1_MAIN10 = 0x0001, 0x0100, 0x0200, 0x1000, 0x2000
# 8-bit 4:4:4 formats (moonlight-common-c VIDEO_FORMAT_*_444).
H264_444, HEVC_444, AV1_444 = 0x0004, 0x0400, 0x4000
# ServerCodecModeSupport bits for the same formats.
SCM = {H264: 0x1, HEVC: 0x100, HEVC_MAIN10: 0x200, AV1_MAIN8: 0x10000, AV1_MAIN10: 0x20000,
       H264_444: 0x40000, HEVC_444: 0x80000, AV1_444: 0x200000}

CASES = [
    # (id, formats the client offers, encoder the host must open, format in its log, 10-bit)
    ("h264", H264, "openh264", "h264", False),
    ("hevc", H264 | HEVC, "libx265", "hevc", False),
    ("hevc-main10", H264 | HEVC | HEVC_MAIN10, "libx265", "hevc 10-bit", True),
    ("av1", H264 | AV1_MAIN8, "libaom-av1", "av1", False),
    ("av1-main10", H264 | AV1_MAIN8 | AV1_MAIN10, "libaom-av1", "av1 10-bit", True),
    # 4:4:4 (the client's chromaSamplingType = 1): the source's 4:2:0 chroma, upsampled.
    ("hevc-444", H264 | HEVC | HEVC_444, "libx265", "hevc 4:4:4", False),
    ("av1-444", H264 | AV1_MAIN8 | AV1_444, "libaom-av1", "av1 4:4:4", False),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_codec_streams_and_decodes(host, client_factory, case):
    name, formats, encoder, logged, ten_bit = case
    c = client_factory()
    c.pair_with_pin("2468", name=f"codec-{name}")
    info = c.server_info()
    modes = info.server_codec_mode_support
    # The host advertises every format of this case (and the client's highest one is what it
    # negotiates: moonlight-common-c prefers AV1 over HEVC over H.264, 10-bit over 8-bit).
    top = max(f for f in SCM if formats & f)
    assert modes & SCM[top], f"host does not advertise {name}: {modes:#x}"
    r = streaming.stream(c.http, "127.0.0.1", 5.0, 1280, 720, 30, video_format=formats)
    sent = host.sent_frames()
    print(f"{name}:", r, "host sent:", sent)
    assert len(sent) == 1, sent
    log = streaming._ANSI.sub("", host.log())
    assert f"encoder={encoder}" in log and f"format={logged}" in log, log[-3000:]
    # Frames decode, at the size asked: the count only has to show a stream ran (encode speed
    # is the bench's business, docs/benchmarks.md "Encoders"; a loaded 2-core machine runs
    # HEVC and AV1 well below 30 fps).
    check_delivery(r, sent[0][1], 30)
    check_pictures(r, 1280, 720)
    want = ["yuv420p10le"] if ten_bit else ["yuv444p"] if "4:4:4" in logged else ["yuv420p"]
    assert r["pixel_formats"] == want, r


def test_an_encoder_named_in_the_profile_is_used(tmp_path):
    """`[video] h264_encoder = "libx264"`: the host opens x264 instead of its default openh264,
    advertises H.264 4:4:4 (which openh264 cannot encode), and a client asking for it gets a
    High 4:4:4 stream that decodes as `yuv444p`."""
    from conftest import Client, Host

    profile = tmp_path / "x264.toml"
    profile.write_text('[video]\nh264_encoder = "libx264"\n')
    host = Host(tmp_path / "state", tmp_path / "host.log",
                extra_args=["--profile", str(profile)]).start()
    try:
        c = Client(host, tmp_path / "client")
        c.pair_with_pin("2468", name="codec-x264")
        assert c.server_info().server_codec_mode_support & SCM[H264_444]
        r = streaming.stream(c.http, "127.0.0.1", 5.0, 1280, 720, 30,
                             video_format=H264 | H264_444)
        sent = host.sent_frames()
        print("x264:", r, "host sent:", sent)
        log = streaming._ANSI.sub("", host.log())
        assert "h264=libx264 (4:4:4)" in log and "encoder=libx264" in log, log[-3000:]
        assert "format=h264 4:4:4" in log, log[-3000:]
        assert r["pixel_formats"] == ["yuv444p"], r
        assert len(sent) == 1, sent
        check_delivery(r, sent[0][1], 30)
        check_pictures(r, 1280, 720)
    finally:
        host.stop()
