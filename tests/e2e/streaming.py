"""Streaming with moonlight-common-c (through moonlight-python's StreamingSession) and PyAV.

Used by the end-to-end tests, both in-process (loopback) and as a subprocess in the client
network namespace (`python streaming.py ...` prints one JSON result line).

What is measured, and where (docs/testing.md, "End-to-end harness"):

* The receive loop only pulls frames from moonlight-common-c, notes each frame number (the
  protocol layer: frames the library handed out, gaps between their numbers) and decodes it
  with PyAV. Every frame is decoded, because H.264 needs its reference chain; nothing is
  converted to RGB there.
* A sample of the decoded frames goes through a bounded queue to a checker thread, which reads
  the luma plane: resolution, not dark, not identical to the previous sample, and the
  pattern's frame stamp (tests/pattern_stamp.py), which must increase. When the checker falls
  behind, samples are dropped (counted), never frames.
* With `quit_after`, the client asks the host to quit while it keeps receiving, until the
  host ends the stream; so the frames received can be compared with the host's own count of
  frames sent in that session (`stream stopped ... video_frames=N`, see `host_sent_frames`).
  A slow client therefore shows up as frames missing at the protocol layer, and a slow
  checker as fewer samples, not as a failed delivery.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import json
import logging
import queue
import re
import secrets
import sys
import threading
import time
from pathlib import Path

import av
import numpy as np
from moonlight_python.config import VIDEO_FORMAT_H264, StreamConfig

# PyAV decoder per moonlight-common-c video format (VIDEO_FORMAT_* masks).
# The client negotiates the highest it offers (AV1, then HEVC, then H.264): decode that.
DECODERS = {0xF000: "libdav1d", 0x0F00: "hevc", 0x000F: "h264"}
from moonlight_python.http_client import NvHTTP
from moonlight_python.identity import Identity
from moonlight_python.stream import StreamingSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pattern_stamp import read_stamp  # noqa: E402

# Every SAMPLE_EVERY-th decoded frame is offered to the checker; the queue holds at most
# SAMPLE_QUEUE of them (the rest are dropped and counted).
SAMPLE_EVERY = 4
SAMPLE_QUEUE = 4
# Limited-range luma: black is 16. A frame whose mean luma is below this is "dark".
DARK_LUMA = 26


class Checker:
    """The heavy per-frame checks, on its own thread, fed through a bounded queue."""

    def __init__(self) -> None:
        self.q: queue.Queue = queue.Queue(maxsize=SAMPLE_QUEUE)
        self.offered = 0
        self.dropped = 0
        self.checked = 0
        self.shapes: set[tuple[int, int]] = set()
        self.dark = 0
        self.identical = 0
        self.yuv_means: list[list[float]] = []
        self.stamps: list[int] = []
        # Capture → handed out, µs: the stamp's capture time against CLOCK_MONOTONIC when
        # moonlight-common-c handed the frame's access unit out (host and client on one
        # machine share the clock).
        self.latencies_us: list[int] = []
        self.unreadable = 0
        self.formats: set[str] = set()
        self.picture: dict = {}
        self.errors: list[str] = []
        self._prev: np.ndarray | None = None
        self._thread = threading.Thread(target=self._run, name="frame-checker", daemon=True)
        self._thread.start()

    def offer(self, frame: av.VideoFrame, handed_out_us: int | None = None) -> None:
        """Called on the receive path: never blocks. `handed_out_us`: CLOCK_MONOTONIC (µs) when
        moonlight-common-c handed the picture's access unit out."""
        self.offered += 1
        try:
            self.q.put_nowait((frame, handed_out_us))
        except queue.Full:
            self.dropped += 1

    def finish(self, timeout: float = 30.0) -> None:
        self.q.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            frame = self.q.get()
            if frame is None:
                return
            frame, handed_out_us = frame
            try:
                self._check(frame, handed_out_us)
            except Exception as e:  # noqa: BLE001 - reported in the result
                self.errors.append(repr(e))

    def _check(self, frame: av.VideoFrame, handed_out_us: int | None = None) -> None:
        w, h = frame.width, frame.height
        fmt = frame.format.name
        self.formats.add(fmt)
        # 8-bit planes as they are; 10-bit (yuv420p10le) little-endian u16 samples, scaled
        # to 8 bits so the same checks apply.
        ten = fmt.endswith("10le")

        def plane8(i: int, pw: int, ph: int) -> np.ndarray:
            p = frame.planes[i]
            if ten:
                a = np.frombuffer(p, dtype="<u2").reshape(-1, p.line_size // 2)[:ph, :pw]
                return (a >> 2).astype(np.uint8)
            return np.frombuffer(p, dtype=np.uint8).reshape(-1, p.line_size)[:ph, :pw]

        # The luma plane, without the stride padding.
        y = plane8(0, w, h)
        self.checked += 1
        self.shapes.add((h, w))
        # Mean Y, Cb, Cr of the picture (a desktop test checks the colour its output shows).
        means = [float(y.mean())]
        cw, ch = (w, h) if "444" in fmt else (w // 2, h // 2)
        for i in (1, 2):
            means.append(float(plane8(i, cw, ch).mean()))
        self.yuv_means.append(means)
        if float(y.mean()) < DARK_LUMA:
            self.dark += 1
        if self._prev is not None and self._prev.shape == y.shape and np.array_equal(self._prev, y):
            self.identical += 1
        self._prev = y.copy()
        s = read_stamp(y)
        if s is None:
            self.unreadable += 1
        else:
            self.stamps.append(s[0])
            if handed_out_us is not None:
                self.latencies_us.append(handed_out_us - s[1])
        # The last sampled picture's levels in its own depth (the HDR and 4:4:4 checks).
        def native(i: int, pw: int, ph: int) -> np.ndarray:
            p = frame.planes[i]
            dt = "<u2" if ten else np.uint8
            n = 2 if ten else 1
            return np.frombuffer(p, dtype=dt).reshape(-1, p.line_size // n)[:ph, :pw]
        self.picture = analyse_picture(native(0, w, h), native(1, cw, ch), ten, "444" in fmt)


def pq_nits(code10: float) -> float:
    """Luminance (cd/m²) of a 10-bit limited-range PQ luma code (SMPTE ST 2084 EOTF)."""
    m1, m2 = 2610 / 16384, 2523 / 4096 * 128
    c1, c2, c3 = 3424 / 4096, 2413 / 4096 * 32, 2392 / 4096 * 32
    e = min(max((code10 - 64) / 876, 0.0), 1.0) ** (1 / m2)
    return 10000 * (max(e - c1, 0.0) / (c2 - c3 * e)) ** (1 / m1)


def analyse_picture(y: np.ndarray, cb: np.ndarray, ten: bool, full_chroma: bool) -> dict:
    """Levels of one decoded test-pattern picture in its own depth (docs/capture.md "Test
    pattern"): the brightest luma below the stamp (the HDR pattern's 1000-nit box ring), the
    ramp band's levels (per-column medians over the bottom quarter, so the bouncing box and
    coding noise drop out) and, in 4:4:4, the Cb swing between neighbouring columns there
    (8-bit units; the 4:4:4 pattern's one-pixel stripes, which 4:2:0 cannot carry)."""
    h = y.shape[0]
    band = y[h - h // 4 + 4:h - 4].astype(np.int32)
    ramp = np.round(np.median(band, axis=0)).astype(np.int64)
    below_stamp = y[h // 5:]
    out = {
        "ten_bit": ten,
        "luma_peak": int(np.percentile(below_stamp, 99.9)),
        "ramp_min": int(ramp.min()),
        "ramp_max": int(ramp.max()),
        "ramp_levels": int(len(np.unique(ramp))),
        "ramp_mult4": round(float(np.mean(ramp % 4 == 0)), 3),
    }
    if ten:
        out["peak_nits"] = round(pq_nits(out["luma_peak"]), 1)
    if full_chroma:
        ch = cb.shape[0]
        rows = cb[ch - ch // 4 + 4:ch - 4].astype(np.int32)
        swing = np.median(np.abs(np.diff(rows, axis=1)), axis=0).mean()
        out["chroma_swing"] = round(float(swing / (4 if ten else 1)), 1)
    return out


def _frame_numbers(numbers: list[int]) -> dict:
    """Protocol-layer figures from the frame numbers moonlight-common-c handed out, in order."""
    gaps = missing = backwards = 0
    for a, b in zip(numbers, numbers[1:]):
        if b > a + 1:
            gaps += 1
            missing += b - a - 1
        elif b <= a:
            backwards += 1
    return {
        "frames_received": len(numbers),
        "first_number": numbers[0] if numbers else None,
        "last_number": numbers[-1] if numbers else None,
        "frame_span": (numbers[-1] - numbers[0] + 1) if numbers else 0,
        "gaps": gaps,
        "frames_missing": missing,
        "out_of_order": backwards,
    }


def _frames_left(session: StreamingSession):
    """(frame number, Annex-B bytes) of the frames moonlight-common-c completed but had not
    handed out when the connection ended. `pull_frame` returns None once the session is
    terminated, although the library keeps complete frames queued until it is stopped; the
    library's own non-blocking `LiPollNextVideoFrame` hands them out (through moonlight-python's
    cffi handle, pinned at 0.3.0 in tests/requirements.txt)."""
    ffi, lib = session._ffi, session._lib
    handle = ffi.new("VIDEO_FRAME_HANDLE*")
    unit = ffi.new("DECODE_UNIT**")
    while lib.LiPollNextVideoFrame(handle, unit):
        du = unit[0]
        data = bytearray()
        entry = du.bufferList
        while entry != ffi.NULL:
            data.extend(ffi.buffer(entry.data, entry.length))
            entry = entry.next
        number = du.frameNumber
        lib.LiCompleteVideoFrame(handle[0], 0)  # DR_OK
        yield number, bytes(data)


def route_client_log(session: StreamingSession) -> None:
    """Makes moonlight-common-c's own log (`Limelog`: unrecoverable frames, IDR waits, FEC
    recoveries) visible on this process's stderr.

    The library takes a printf-like `logMessage(const char* format, ...)` callback, which cffi
    cannot build (no variadic callbacks); libc's `warnx` has exactly that signature and writes
    the formatted line to stderr. moonlight-python fills the callback table inside `start`, so
    its builder is wrapped to set that one field."""
    warnx = ctypes.cast(ctypes.CDLL(None).warnx, ctypes.c_void_p).value
    build = session._make_connection_callbacks

    def with_log():
        cl = build()
        cl.logMessage = session._ffi.cast("void(*)(const char*, ...)", warnx)
        return cl

    session._make_connection_callbacks = with_log


# moonlight-common-c log lines counted in the result (see `client_log_counts`): the frame-loss
# causes the loss test reports.
CLIENT_LOG_EVENTS = {
    "unrecoverable_frames": "Unrecoverable frame",
    "frames_never_seen": "Network dropped 1 frame",
    "idr_waits": "Waiting for IDR frame",
    "idr_requests": "IDR frame request",
    "consecutive_drop_limit": "Reached consecutive drop limit",
    "rfi_requests": "RFI request",
    "decode_queue_overflows": "Video decode unit queue overflow",
    "decoder_errors": "decoder ERROR",
    "decoder_warnings": "decoder WARNING",
}


def client_log_counts(stderr: str) -> dict:
    """How often each of CLIENT_LOG_EVENTS appears in a client's stderr (from `--client-log`)."""
    return {k: stderr.count(v) for k, v in CLIENT_LOG_EVENTS.items()}


def input_library():
    """moonlight-common-c as moonlight-python loaded it (the same singleton: dlopen returns the
    loaded copy), with the input calls moonlight-python's cffi table does not declare."""
    import moonlight_python

    lib = ctypes.CDLL(str(Path(moonlight_python.__file__).parent / "libmoonlight-common-c.so"))
    lib.LiSendKeyboardEvent.argtypes = [ctypes.c_short, ctypes.c_char, ctypes.c_char]
    lib.LiSendMouseButtonEvent.argtypes = [ctypes.c_char, ctypes.c_int]
    lib.LiSendMouseMoveEvent.argtypes = [ctypes.c_short, ctypes.c_short]
    lib.LiSendMousePositionEvent.argtypes = [ctypes.c_short] * 4
    return lib


# moonlight-common-c's Limelight.h values.
KEY_ACTION_DOWN, KEY_ACTION_UP = b"\x03", b"\x04"
BUTTON_ACTION_PRESS, BUTTON_ACTION_RELEASE = b"\x07", b"\x08"
BUTTON_LEFT = 1
VK_A = 0x41


def send_input_round(lib) -> int:
    """Types 'a', moves the mouse and clicks, through the client library; calls that failed."""
    failed = 0
    failed += lib.LiSendKeyboardEvent(VK_A, KEY_ACTION_DOWN, b"\x00") != 0
    failed += lib.LiSendKeyboardEvent(VK_A, KEY_ACTION_UP, b"\x00") != 0
    # Absolute to the middle of the picture (the session's own output), then a relative nudge.
    failed += lib.LiSendMousePositionEvent(640, 360, 1280, 720) != 0
    failed += lib.LiSendMouseMoveEvent(5, 3) != 0
    failed += lib.LiSendMouseButtonEvent(BUTTON_ACTION_PRESS, BUTTON_LEFT) != 0
    failed += lib.LiSendMouseButtonEvent(BUTTON_ACTION_RELEASE, BUTTON_LEFT) != 0
    return failed


def stream(http: NvHTTP, address: str, seconds: float, width: int, height: int, fps: int,
           bitrate_kbps: int = 6000, quit_after: bool = True, client_log: bool = False,
           send_input: bool = False, app: str = "Desktop",
           video_format: int = VIDEO_FORMAT_H264,
           audio_configuration: int | None = None, analyse_audio: bool = False,
           session_factory=StreamingSession, launch_params=None) -> dict:
    """Launches Desktop, streams for `seconds` after the first frame, and returns what was
    seen. With `quit_after`, then quits the app while still receiving, until the host ends
    the stream (so every frame the host sent had its chance to arrive).

    `audio_configuration` (moonlight-common-c's AUDIO_CONFIGURATION value, e.g.
    `AUDIO_51`) asks for that channel layout; with `analyse_audio` the Opus packets are kept,
    decoded with the negotiated multistream configuration and each channel's strongest
    frequency is returned (`audio_channels`, `audio_peak_hz`). `session_factory` makes the
    moonlight-python session (a subclass can install more listener callbacks);
    `launch_params` rewrites the library's launch query parameters (e.g. drops `corever`)."""
    info = http.parse_server_info(http.get_server_info(use_https=True))
    apps = http.get_app_list()
    desktop = next(a for a in apps if a.name == app)
    key, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    config = StreamConfig(width=width, height=height, fps=fps, bitrate_kbps=bitrate_kbps,
                          supported_video_formats=video_format)
    if audio_configuration is not None:
        config.audio_configuration = audio_configuration
    session = session_factory()
    if client_log:
        route_client_log(session)
    params = session.get_launch_query_params()
    if launch_params is not None:
        params = launch_params(params)
    url = http.launch_app(desktop.id, width, height, fps, bitrate_kbps, video_format,
                          key, iv, config.surroundaudioinfo, True, False, params)
    session.start(address=address, app_version=info.app_version, gfe_version=info.gfe_version,
                  server_codec_mode_support=info.server_codec_mode_support,
                  rtsp_session_url=url or "", config=config, ri_aes_key=key, ri_aes_iv=iv,
                  capture_audio=True)
    audio = {"packets": 0, "bytes": 0}
    kept_audio: list[bytes] = []
    stop = threading.Event()

    def audio_loop():
        while not stop.is_set():
            pkt = session.pull_audio_packet(timeout=0.2)
            if pkt is not None:
                audio["packets"] += 1
                audio["bytes"] += len(pkt.opus_data)
                if analyse_audio and len(kept_audio) < 2000:
                    kept_audio.append(pkt.opus_data)

    at = threading.Thread(target=audio_loop, daemon=True)
    at.start()
    decoder = next(name for mask, name in DECODERS.items() if video_format & mask)
    codec = av.CodecContext.create(decoder, "r")
    codec.thread_type = "AUTO"
    checker = Checker()
    numbers: list[int] = []
    decoded = 0
    decode_errors = 0
    first_frame_at = None
    last_frame_at = None
    received_bytes = 0
    received_at: dict[int, int] = {}
    quit_thread = None
    quit_result: dict = {}
    terminated_early = False
    start = time.monotonic()

    def decode(packet) -> None:
        nonlocal decoded, decode_errors
        try:
            frames = codec.decode(packet)
        except av.error.InvalidDataError:
            decode_errors += 1
            return
        for f in frames:
            decoded += 1
            # The packet's pts is moonlight-common-c's frame number (below): the picture's
            # latency is counted to when the library handed its access unit out.
            handed_out = received_at.pop(f.pts, None) if f.pts is not None else None
            if decoded % SAMPLE_EVERY == 1:
                checker.offer(f, handed_out)
        while len(received_at) > 256:  # frames the decoder never returned
            received_at.pop(next(iter(received_at)))

    done = threading.Event()
    sent_input = {"rounds": 0, "failed": 0}

    def input_loop():
        # Every 0.3 s from the first frame on: 'a', a move and a click (a test watches for
        # them in a Wayland client on the session's output).
        lib = input_library()
        while not done.wait(0.3):
            if first_frame_at is not None and not session.is_terminated:
                sent_input["failed"] += send_input_round(lib)
                sent_input["rounds"] += 1

    it = threading.Thread(target=input_loop, daemon=True) if send_input else None
    if it:
        it.start()

    def watchdog():
        # pull_frame blocks until a frame comes; once the host has ended the stream (or a
        # deadline passed, checked by the loop), none will: wake it so the loop can look.
        while not done.wait(0.1):
            if session.is_terminated or time.monotonic() - start > seconds + 40:
                session.wake()

    wt = threading.Thread(target=watchdog, daemon=True)
    wt.start()

    def quit_app():
        try:
            http.quit_app()
        except Exception as e:  # noqa: BLE001 - reported in the result
            quit_result["error"] = repr(e)

    try:
        while True:
            now = time.monotonic()
            if quit_thread is None:
                window_over = first_frame_at is not None and now - first_frame_at >= seconds
                if window_over or now - start >= seconds + 10:
                    if not quit_after:
                        break
                    # Keep receiving while the host stops the stream.
                    quit_thread = threading.Thread(target=quit_app, daemon=True)
                    quit_thread.start()
                    quit_deadline = now + 15
            elif now >= quit_deadline:
                break
            if now - start > seconds + 40:
                break
            raw = session.pull_frame()
            if raw is None:
                if session.is_terminated:
                    terminated_early = quit_thread is None
                    # The last datagrams may still be arriving; then take what is queued.
                    time.sleep(0.5)
                    for number, data in _frames_left(session):
                        numbers.append(number)
                        decode(av.Packet(data))
                    break
                continue
            if first_frame_at is None:
                first_frame_at = time.monotonic()
            last_frame_at = time.monotonic()
            received_bytes += len(raw.annex_b_data)
            numbers.append(raw.frame_number)
            received_at[raw.frame_number] = time.monotonic_ns() // 1000
            packet = av.Packet(raw.annex_b_data)
            packet.pts = raw.frame_number
            decode(packet)
        decode(None)  # flush the decoder's delayed frames
    finally:
        done.set()
        wt.join(2)
        if it:
            it.join(2)
        stop.set()
        at.join(2)
        terminated = session.is_terminated
        termination_error = session.termination_error
        session.stop()
        if quit_thread is not None:
            quit_thread.join(30)
        checker.finish()
    stamps = checker.stamps
    lat = sorted(checker.latencies_us)

    def quantile(q: float):
        return lat[min(len(lat) - 1, int(q * len(lat)))] if lat else None

    span = (last_frame_at - first_frame_at) if first_frame_at and last_frame_at else 0.0
    audio_result = analyse_opus(session.wait_for_opus_config(0.1), kept_audio) \
        if analyse_audio else {}
    return {
        **audio_result,
        "rtsp_url": url,
        **_frame_numbers(numbers),
        "frames_decoded": decoded,
        "decode_errors": decode_errors,
        "samples_offered": checker.offered,
        "samples_dropped": checker.dropped,
        "samples_checked": checker.checked,
        "shapes": sorted(list(s) for s in checker.shapes),
        "identical_pairs": checker.identical,
        "dark_frames": checker.dark,
        "yuv_means": [[round(v, 1) for v in m] for m in checker.yuv_means],
        "decoder": decoder,
        "pixel_formats": sorted(checker.formats),
        "picture": checker.picture,
        "stamps_read": len(stamps),
        "latency_us_p50": quantile(0.5),
        "latency_us_p99": quantile(0.99),
        "latency_samples": len(lat),
        "video_bytes": received_bytes,
        "goodput_bps": received_bytes * 8 / span if span > 0 else 0.0,
        "stamps_unreadable": checker.unreadable,
        "stamps_increasing": all(b > a for a, b in zip(stamps, stamps[1:])),
        "checker_errors": checker.errors,
        "audio_packets": audio["packets"],
        "audio_bytes": audio["bytes"],
        "terminated": terminated,
        "terminated_early": terminated_early,
        "termination_error": termination_error,
        "quit_error": quit_result.get("error"),
        "input_rounds": sent_input["rounds"],
        "input_failed": sent_input["failed"],
        "seconds": seconds,
    }


class MultistreamDecoder:
    """libopus' own multistream decoder through ctypes (PyAV's Opus decoder crashed on 7.1
    packets here): the configuration moonlight-common-c negotiated in, interleaved float PCM
    out."""

    def __init__(self, rate: int, channels: int, streams: int, coupled: int, mapping: list[int]):
        lib = ctypes.CDLL(ctypes.util.find_library("opus") or "libopus.so.0")
        lib.opus_multistream_decoder_create.restype = ctypes.c_void_p
        lib.opus_multistream_decoder_create.argtypes = [
            ctypes.c_int32, ctypes.c_int, ctypes.c_int, ctypes.c_int,
            ctypes.POINTER(ctypes.c_ubyte), ctypes.POINTER(ctypes.c_int)]
        lib.opus_multistream_decode_float.restype = ctypes.c_int
        lib.opus_multistream_decode_float.argtypes = [
            ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int32,
            ctypes.POINTER(ctypes.c_float), ctypes.c_int, ctypes.c_int]
        lib.opus_multistream_decoder_destroy.argtypes = [ctypes.c_void_p]
        err = ctypes.c_int(0)
        table = (ctypes.c_ubyte * channels)(*mapping[:channels])
        self.st = lib.opus_multistream_decoder_create(rate, channels, streams, coupled, table,
                                                      ctypes.byref(err))
        if not self.st or err.value != 0:
            raise RuntimeError(f"opus_multistream_decoder_create failed: {err.value}")
        self.lib, self.channels, self.errors = lib, channels, 0
        self.max_frame = rate * 120 // 1000
        self.buf = (ctypes.c_float * (self.max_frame * channels))()

    def decode(self, packet: bytes) -> np.ndarray | None:
        n = self.lib.opus_multistream_decode_float(self.st, packet, len(packet), self.buf,
                                                   self.max_frame, 0)
        if n < 0:
            self.errors += 1
            return None
        return np.ctypeslib.as_array(self.buf)[:n * self.channels].reshape(n, self.channels).copy()

    def close(self) -> None:
        if self.st:
            self.lib.opus_multistream_decoder_destroy(self.st)
            self.st = None


def analyse_opus(opus_config, packets: list[bytes]) -> dict:
    """Decodes `packets` with the negotiated multistream configuration and finds each output
    channel's strongest frequency over the last second (after the encoder settled)."""
    dec = MultistreamDecoder(opus_config.sample_rate, opus_config.channel_count,
                             opus_config.streams, opus_config.coupled_streams,
                             list(opus_config.mapping))
    chunks = []
    try:
        for p in packets:
            pcm = dec.decode(p)
            if pcm is not None:
                chunks.append(pcm)
    finally:
        dec.close()
    out = {"audio_channels": opus_config.channel_count,
           "audio_streams": [opus_config.streams, opus_config.coupled_streams],
           "audio_mapping": list(opus_config.mapping),
           "audio_decode_errors": dec.errors,
           "audio_peak_hz": [], "audio_channel_rms": [], "audio_seconds": 0.0}
    if not chunks:
        return out
    pcm = np.concatenate(chunks, axis=0)
    rate = opus_config.sample_rate
    tail = pcm[-rate:] if len(pcm) >= rate else pcm
    window = np.hanning(len(tail))
    freqs = np.fft.rfftfreq(len(tail), 1.0 / rate)
    for c in range(tail.shape[1]):
        spectrum = np.abs(np.fft.rfft(tail[:, c] * window))
        out["audio_peak_hz"].append(round(float(freqs[int(np.argmax(spectrum))]), 1))
        out["audio_channel_rms"].append(round(float(np.sqrt(np.mean(tail[:, c] ** 2))), 3))
    out["audio_seconds"] = round(len(pcm) / rate, 2)
    return out


_STOPPED = re.compile(r"stream stopped.*?\bsession=(\d+).*?\bvideo_frames=(\d+)")
_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def host_sent_frames(log: str) -> list[tuple[int, int]]:
    """(session, video frames sent) of every "stream stopped" line of a host log, in order.

    The host counts each stream's frames from zero (its per-session counters), so the n-th
    line belongs to the n-th stream of that host."""
    out = []
    for line in _ANSI.sub("", log).splitlines():
        m = _STOPPED.search(line)
        if m:
            out.append((int(m.group(1)), int(m.group(2))))
    return out


def delivery(r: dict, host_sent: int) -> float:
    """Frames moonlight-common-c handed out over frames the host sent in that stream."""
    return r["frames_received"] / host_sent if host_sent else 0.0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--https-port", type=int, required=True)
    ap.add_argument("--cert", required=True, help="pinned host certificate (PEM file)")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--mode", default="1280x720x60")
    ap.add_argument("--bitrate", type=int, default=6000)
    ap.add_argument("--no-quit", action="store_true",
                    help="stop the client without quitting the app on the host")
    ap.add_argument("--app", default="Desktop", help="the app to launch, by title")
    ap.add_argument("--send-input", action="store_true",
                    help="type 'a', move and click every 0.3 s while streaming")
    ap.add_argument("--client-log", action="store_true",
                    help="print moonlight-common-c's log on stderr")
    a = ap.parse_args()
    if a.client_log:
        # FFmpeg's own warnings (missing references, concealed macroblocks) next to the
        # library's log: a frame received but not decoded shows up there.
        logging.basicConfig(stream=sys.stderr, level=logging.WARNING,
                            format="decoder %(levelname)s %(name)s: %(message)s")
        av.logging.set_level(av.logging.WARNING)
    w, h, f = (int(x) for x in a.mode.split("x"))
    http = NvHTTP(a.address, Identity(a.config_dir), http_port=a.http_port,
                  https_port=a.https_port, server_cert_pem=Path(a.cert).read_bytes())
    print(json.dumps(stream(http, a.address, a.seconds, w, h, f, a.bitrate,
                            quit_after=not a.no_quit, client_log=a.client_log,
                            send_input=a.send_input, app=a.app)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
