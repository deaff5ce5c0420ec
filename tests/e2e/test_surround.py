"""Surround sound end to end with moonlight-common-c (issue 10, point 4).

The client asks for 5.1 or 7.1 (its AUDIO_CONFIGURATION: channel mask, count); the host
answers with the Opus multistream layout for it (`surround-params` in DESCRIBE) and streams its
test tone, which plays 440 + 220·c Hz on channel c (FL FR C LFE BL BR SL SR). The test decodes
the packets with the configuration moonlight-common-c negotiated (PyAV's Opus decoder, the
multistream mapping the library reports) and checks that every channel carries its own tone:
a swapped or dropped channel shows up as a wrong or missing peak.
"""

from __future__ import annotations

import pytest

import streaming
from test_stream import check_delivery


def audio_configuration(channels: int, mask: int) -> int:
    # moonlight-common-c's MAKE_AUDIO_CONFIGURATION(channelCount, channelMask).
    return (mask << 16) | (channels << 8) | 0xCA


CASES = [
    # (id, channels, channel mask, client bitrate kbit/s, Opus streams/coupled expected)
    ("stereo", 2, 0x3, 6000, [1, 1]),
    ("5.1", 6, 0x3F, 6000, [4, 2]),
    ("7.1", 8, 0x63F, 6000, [5, 3]),
    # moonlight-common-c asks for high-quality surround at high client bitrates; the host
    # answers with one uncoupled stream per channel.
    ("5.1-hq", 6, 0x3F, 20000, [6, 0]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_surround_channels_carry_their_own_tone(host, client_factory, case):
    name, channels, mask, kbps, streams = case
    c = client_factory()
    c.pair_with_pin("2468", name=f"audio-{name}")
    r = streaming.stream(c.http, "127.0.0.1", 3.0, 640, 360, 30, bitrate_kbps=kbps,
                         audio_configuration=audio_configuration(channels, mask),
                         analyse_audio=True)
    sent = host.sent_frames()
    print(f"{name}:", {k: v for k, v in r.items() if k.startswith("audio")}, "host sent:", sent)
    assert len(sent) == 1, sent
    check_delivery(r, sent[0][1], 30)
    assert r["audio_channels"] == channels, r
    assert r["audio_streams"] == streams, r
    assert r["audio_decode_errors"] == 0, r
    assert r["audio_seconds"] >= 2.0, r
    want = [440 + 220 * ch for ch in range(channels)]
    # 1 s of samples: 1 Hz bins; Opus at these rates keeps a pure tone's peak in its bin.
    assert all(abs(got - w) <= 3 for got, w in zip(r["audio_peak_hz"], want)), \
        (want, r["audio_peak_hz"], r)
    assert all(rms > 0.1 for rms in r["audio_channel_rms"]), r
