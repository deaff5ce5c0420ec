"""Host → client messages end to end with moonlight-common-c (issue 10, points 2 and 6).

* Controller feedback: while a stream runs, the management API (`POST /api/feedback`, the
  hook a virtual gamepad's force feedback would drive) sends rumble, trigger rumble, motion
  sensor state, LED and adaptive-trigger messages; each reaches the client library's own
  listener callback with the values sent.
* HDR: an HEVC Main10 stream (the client asks for 10-bit, so HDR) gets the 0x010e HDR mode
  message on connect: moonlight-common-c calls `setHdrMode(true)` and `LiGetHdrMetadata`
  returns the host's metadata (BT.2020 primaries, D65, 1000 nits).
"""

from __future__ import annotations

import ctypes
import threading
import time

from moonlight_python.stream import StreamingSession

import streaming
from conftest import wait_for
from test_stream import check_delivery


class FeedbackSession(StreamingSession):
    """A moonlight-python session that records the feedback listener callbacks."""

    def __init__(self) -> None:
        super().__init__()
        self.events: list[tuple] = []

    def _make_connection_callbacks(self):
        cl = super()._make_connection_callbacks()
        ffi, ev = self._ffi, self.events

        @ffi.callback("void(unsigned short, unsigned short, unsigned short)")
        def rumble(controller, low, high):
            ev.append(("rumble", controller, low, high))

        @ffi.callback("void(bool)")
        def set_hdr_mode(enabled):
            ev.append(("hdr", bool(enabled)))
            if enabled:
                # The metadata arrived with the message; valid while HDR mode is on.
                try:
                    ev.append(("hdr_metadata", hdr_metadata()))
                except Exception as e:  # noqa: BLE001 - never raise into C
                    ev.append(("hdr_metadata_error", repr(e)))

        @ffi.callback("void(uint16_t, uint16_t, uint16_t)")
        def rumble_triggers(controller, left, right):
            ev.append(("rumble_triggers", controller, left, right))

        @ffi.callback("void(uint16_t, uint8_t, uint16_t)")
        def motion(controller, motion_type, rate):
            ev.append(("motion", controller, motion_type, rate))

        @ffi.callback("void(uint16_t, uint8_t, uint8_t, uint8_t)")
        def led(controller, r, g, b):
            ev.append(("led", controller, r, g, b))

        @ffi.callback("void(uint16_t, uint8_t, uint8_t, uint8_t, uint8_t*, uint8_t*)")
        def adaptive(controller, flags, type_left, type_right, left, right):
            ev.append(("adaptive", controller, flags, type_left, type_right,
                       bytes(ffi.buffer(left, 10)), bytes(ffi.buffer(right, 10))))

        self._callbacks.extend([rumble, set_hdr_mode, rumble_triggers, motion, led, adaptive])
        cl.rumble = rumble
        cl.setHdrMode = set_hdr_mode
        cl.rumbleTriggers = rumble_triggers
        cl.setMotionEventState = motion
        cl.setControllerLED = led
        cl.setAdaptiveTriggers = adaptive
        return cl


class HdrMetadata(ctypes.Structure):
    # moonlight-common-c's SS_HDR_METADATA: 3 primaries, white point (x, y each), then five
    # luminance values, all uint16.
    _fields_ = [("v", ctypes.c_uint16 * 13)]


def hdr_metadata() -> list[int] | None:
    from moonlight_python import stream as ml_stream

    lib = ctypes.CDLL(ml_stream._find_shared_lib())
    lib.LiGetHdrMetadata.restype = ctypes.c_bool
    m = HdrMetadata()
    return list(m.v) if lib.LiGetHdrMetadata(ctypes.byref(m)) else None


FEEDBACK = [
    ({"kind": "rumble", "controller": 0, "low": 0x1234, "high": 0xBEEF},
     ("rumble", 0, 0x1234, 0xBEEF)),
    ({"kind": "rumble_triggers", "controller": 1, "left": 0x0102, "right": 0xF0F0},
     ("rumble_triggers", 1, 0x0102, 0xF0F0)),
    ({"kind": "motion_event_state", "controller": 2, "report_rate_hz": 200, "motion_type": 2},
     ("motion", 2, 2, 200)),
    ({"kind": "rgb_led", "controller": 3, "r": 255, "g": 64, "b": 1},
     ("led", 3, 255, 64, 1)),
    ({"kind": "adaptive_triggers", "controller": 0, "event_flags": 0x0C, "type_left": 0x21,
      "type_right": 0x26, "left": list(range(10)), "right": list(range(10, 20))},
     ("adaptive", 0, 0x0C, 0x21, 0x26, bytes(range(10)), bytes(range(10, 20)))),
]


def test_controller_feedback_reaches_the_clients_callbacks(host, client_factory):
    c = client_factory()
    c.pair_with_pin("2468", name="feedback")
    session = {}
    results: dict = {}

    def factory():
        session["s"] = FeedbackSession()
        return session["s"]

    def feedback():
        try:
            row = wait_for(lambda: next((r for r in host.api("GET", "/api/sessions")
                                         if r["state"] == "streaming"), None),
                           what="a streaming session", timeout=30)
            time.sleep(0.5)  # the control stream connects right after the first frames
            results["answers"] = [
                host.api("POST", "/api/feedback", {"session": int(row["id"]), **body})
                for body, _ in FEEDBACK]
        except Exception as e:  # noqa: BLE001 - reported by the assertions below
            results["error"] = repr(e)

    t = threading.Thread(target=feedback, daemon=True)
    t.start()
    r = streaming.stream(c.http, "127.0.0.1", 4.0, 640, 360, 30, session_factory=factory)
    t.join(10)
    sent = host.sent_frames()
    events = session["s"].events
    print("feedback:", results, "events:", events, "host sent:", sent)
    assert "error" not in results, results
    assert results["answers"] == [{"sent": True}] * len(FEEDBACK), results
    check_delivery(r, sent[0][1], 30)
    for _, want in FEEDBACK:
        assert want in events, (want, events)
    # An H.264 stream is SDR: no HDR mode message.
    assert not any(e[0] == "hdr" for e in events), events


def test_feedback_is_refused_without_a_stream_and_for_bad_input(host, client_factory):
    import urllib.error

    for body, status in [
        ({"session": 1, "kind": "rumble", "controller": 0, "low": 1, "high": 2}, 409),
        ({"session": 1, "kind": "rumble", "controller": 16, "low": 1, "high": 2}, 400),
        ({"session": 1, "kind": "motion_event_state", "controller": 0, "report_rate_hz": 1,
          "motion_type": 7}, 400),
        ({"session": 1, "kind": "explode", "controller": 0}, 400),
    ]:
        try:
            host.api("POST", "/api/feedback", body)
            raise AssertionError(f"accepted {body}")
        except urllib.error.HTTPError as e:
            assert e.code == status, (body, e.code, e.read())


def test_an_hdr_stream_tells_the_client_hdr_mode_and_metadata(host, client_factory):
    hevc_main10 = 0x0001 | 0x0100 | 0x0200
    c = client_factory()
    c.pair_with_pin("2468", name="hdr")
    info = c.server_info()
    if not info.server_codec_mode_support & 0x200:
        raise AssertionError(f"host does not advertise HEVC Main10: "
                             f"{info.server_codec_mode_support:#x}")
    session = {}

    def factory():
        session["s"] = FeedbackSession()
        return session["s"]

    r = streaming.stream(c.http, "127.0.0.1", 3.0, 1280, 720, 30, video_format=hevc_main10,
                         session_factory=factory)
    sent = host.sent_frames()
    events = session["s"].events if "s" in session else []
    print("hdr:", events, r["pixel_formats"], "host sent:", sent)
    check_delivery(r, sent[0][1], 30)
    assert r["pixel_formats"] == ["yuv420p10le"], r
    assert ("hdr", True) in events, events
    # BT.2020 primaries (R, G, B), D65 white, 1000 / 0.005 nits, MaxCLL 1000, MaxFALL 400.
    assert ("hdr_metadata", [35400, 14600, 8500, 39850, 6550, 2300, 15635, 16450,
                             1000, 50, 1000, 400, 1000]) in events, events
