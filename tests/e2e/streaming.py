"""Streaming with moonlight-common-c (through moonlight-python's StreamingSession) and PyAV.

Used by the end-to-end tests, both in-process (loopback) and as a subprocess in the client
network namespace (`python streaming.py ...` prints one JSON result line).

It drives the client library directly rather than through MoonlightClient's fan-out, so
every frame moonlight-common-c hands out is decoded and counted.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import threading
import time
from pathlib import Path

import numpy as np
from moonlight_python.config import VIDEO_FORMAT_H264, StreamConfig
from moonlight_python.decoder import Decoder
from moonlight_python.http_client import NvHTTP
from moonlight_python.identity import Identity
from moonlight_python.stream import StreamingSession

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from pattern_stamp import read_stamp  # noqa: E402


def stream(http: NvHTTP, address: str, seconds: float, width: int, height: int, fps: int,
           bitrate_kbps: int = 6000, quit_after: bool = True) -> dict:
    """Launches Desktop, streams for `seconds`, and returns what was seen."""
    info = http.parse_server_info(http.get_server_info(use_https=True))
    apps = http.get_app_list()
    desktop = next(a for a in apps if a.name == "Desktop")
    key, iv = secrets.token_bytes(16), secrets.token_bytes(16)
    config = StreamConfig(width=width, height=height, fps=fps, bitrate_kbps=bitrate_kbps)
    session = StreamingSession()
    params = session.get_launch_query_params()
    url = http.launch_app(desktop.id, width, height, fps, bitrate_kbps, VIDEO_FORMAT_H264,
                          key, iv, config.surroundaudioinfo, True, False, params)
    session.start(address=address, app_version=info.app_version, gfe_version=info.gfe_version,
                  server_codec_mode_support=info.server_codec_mode_support,
                  rtsp_session_url=url or "", config=config, ri_aes_key=key, ri_aes_iv=iv,
                  capture_audio=True)
    audio = {"packets": 0, "bytes": 0}
    stop = threading.Event()

    def audio_loop():
        while not stop.is_set():
            pkt = session.pull_audio_packet(timeout=0.2)
            if pkt is not None:
                audio["packets"] += 1
                audio["bytes"] += len(pkt.opus_data)

    at = threading.Thread(target=audio_loop, daemon=True)
    at.start()
    decoder = Decoder(codec="h264", output_format="rgb24")
    numbers, stamps, shapes = [], [], set()
    identical_pairs, dark_frames, unreadable = 0, 0, 0
    prev = None
    first_frame_at = None
    start = time.monotonic()
    try:
        while time.monotonic() - start < seconds + 10:
            if first_frame_at is not None and time.monotonic() - first_frame_at >= seconds:
                break
            raw = session.pull_frame()
            if raw is None:
                if session.is_terminated:
                    break
                continue
            for arr in decoder.decode(raw.annex_b_data):
                if first_frame_at is None:
                    first_frame_at = time.monotonic()
                numbers.append(raw.frame_number)
                shapes.add(arr.shape)
                if float(arr.mean()) < 10:
                    dark_frames += 1
                if prev is not None and np.array_equal(prev, arr):
                    identical_pairs += 1
                prev = arr
                s = read_stamp(arr)
                if s is None:
                    unreadable += 1
                else:
                    stamps.append(s[0])
    finally:
        stop.set()
        at.join(2)
        terminated = session.is_terminated
        termination_error = session.termination_error
        session.stop()
        decoder.close()
    if quit_after and not terminated:
        http.quit_app()
    span = (max(numbers) - min(numbers) + 1) if numbers else 0
    return {
        "frames_decoded": len(numbers),
        "frame_span": span,
        "decoded_ratio": (len(numbers) / span) if span else 0.0,
        "first_number": min(numbers) if numbers else None,
        "shapes": sorted(list(s) for s in shapes),
        "identical_pairs": identical_pairs,
        "dark_frames": dark_frames,
        "stamps_read": len(stamps),
        "stamps_unreadable": unreadable,
        "stamps_increasing": all(b > a for a, b in zip(stamps, stamps[1:])),
        "audio_packets": audio["packets"],
        "audio_bytes": audio["bytes"],
        "terminated_early": terminated,
        "termination_error": termination_error,
        "seconds": seconds,
    }


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
    a = ap.parse_args()
    w, h, f = (int(x) for x in a.mode.split("x"))
    http = NvHTTP(a.address, Identity(a.config_dir), http_port=a.http_port,
                  https_port=a.https_port, server_cert_pem=Path(a.cert).read_bytes())
    print(json.dumps(stream(http, a.address, a.seconds, w, h, f, a.bitrate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
