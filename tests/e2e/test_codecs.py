"""Every codec the host advertises, end to end with moonlight-common-c (issue 10, point 1-2).

For each format moonlight-common-c can negotiate (H.264, HEVC, HEVC Main10, AV1, AV1 Main10,
8- and 10-bit 4:4:4):
the host advertises it (ServerCodecModeSupport), the client picks it, the host's log names
the encoder it opened, and 5 s of the test pattern arrive: every frame the host sent is
handed out and decodes (PyAV: h264, hevc, libdav1d) at the requested size, 10-bit streams as
10-bit pictures of the HDR (PQ) pattern, 4:4:4 streams with their full-resolution chroma, and
the pattern's stamps read back increasing.
"""

from __future__ import annotations

import pytest

import streaming
from test_stream import check_delivery, check_pictures

H264, HEVC, HEVC_MAIN10, AV1_MAIN8, AV1_MAIN10 = 0x0001, 0x0100, 0x0200, 0x1000, 0x2000
# 4:4:4 formats (moonlight-common-c VIDEO_FORMAT_*_444, 8- and 10-bit).
H264_444, HEVC_444, AV1_444 = 0x0004, 0x0400, 0x4000
HEVC_444_10, AV1_444_10 = 0x0800, 0x8000
# ServerCodecModeSupport bits for the same formats.
SCM = {H264: 0x1, HEVC: 0x100, HEVC_MAIN10: 0x200, AV1_MAIN8: 0x10000, AV1_MAIN10: 0x20000,
       H264_444: 0x40000, HEVC_444: 0x80000, AV1_444: 0x200000,
       HEVC_444_10: 0x100000, AV1_444_10: 0x400000}

CASES = [
    # (id, formats the client offers, encoder the host must open, format in its log,
    #  decoded pixel format)
    ("h264", H264, "openh264", "h264", "yuv420p"),
    ("hevc", H264 | HEVC, "libx265", "hevc", "yuv420p"),
    ("hevc-main10", H264 | HEVC | HEVC_MAIN10, "libx265", "hevc 10-bit HDR", "yuv420p10le"),
    ("av1", H264 | AV1_MAIN8, "libaom-av1", "av1", "yuv420p"),
    ("av1-main10", H264 | AV1_MAIN8 | AV1_MAIN10, "libaom-av1", "av1 10-bit HDR",
     "yuv420p10le"),
    # 4:4:4 (the client's chromaSamplingType = 1): the pattern renders 4:4:4 pictures.
    ("hevc-444", H264 | HEVC | HEVC_444, "libx265", "hevc 4:4:4", "yuv444p"),
    ("av1-444", H264 | AV1_MAIN8 | AV1_444, "libaom-av1", "av1 4:4:4", "yuv444p"),
    ("hevc-444-10", H264 | HEVC | HEVC_MAIN10 | HEVC_444 | HEVC_444_10, "libx265",
     "hevc 10-bit 4:4:4 HDR", "yuv444p10le"),
    ("av1-444-10", H264 | AV1_MAIN8 | AV1_MAIN10 | AV1_444 | AV1_444_10, "libaom-av1",
     "av1 10-bit 4:4:4 HDR", "yuv444p10le"),
]


def check_pattern_levels(r: dict, pixel_format: str) -> None:
    """The decoded pattern is what its format promises (streaming.analyse_picture):
    10-bit streams carry the HDR pattern in PQ — the box ring at 1000 nits (an SDR picture
    shifted to 10 bits peaks at code 940, 10 000 nits) and a ramp from 0 to 1000 nits in steps
    of one code value (a shifted 8-bit ramp has only multiples of 4); 4:4:4 streams carry the
    one-pixel chroma stripes that 4:2:0 averages away."""
    p = r["picture"]
    assert p, r
    if pixel_format.endswith("10le"):
        assert 700 <= p["luma_peak"] <= 745, p
        assert 800 <= p["peak_nits"] <= 1250, p
        assert p["ramp_min"] <= 80 and 690 <= p["ramp_max"] <= 740, p
        assert p["ramp_levels"] >= 300 and p["ramp_mult4"] < 0.5, p
    else:
        assert p["luma_peak"] <= 240, p
    if "444" in pixel_format:
        assert p["chroma_swing"] >= 40, p
    else:
        assert "chroma_swing" not in p, p


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_codec_streams_and_decodes(host, client_factory, case):
    name, formats, encoder, logged, pixel_format = case
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
    assert r["pixel_formats"] == [pixel_format], r
    check_pattern_levels(r, pixel_format)


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
        check_pattern_levels(r, "yuv444p")
        assert len(sent) == 1, sent
        check_delivery(r, sent[0][1], 30)
        check_pictures(r, 1280, 720)
    finally:
        host.stop()
