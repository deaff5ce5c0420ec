"""Pairs a moonlight-python identity with a host (for tests whose client runs in another
network namespace). Prints the pinned host certificate's path on success."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from moonlight_python.http_client import NvHTTP
from moonlight_python.identity import Identity
from moonlight_python.pairing import pair


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--config-dir", required=True)
    ap.add_argument("--address", required=True)
    ap.add_argument("--http-port", type=int, required=True)
    ap.add_argument("--https-port", type=int, required=True)
    ap.add_argument("--pin", required=True)
    ap.add_argument("--cert-out", required=True)
    a = ap.parse_args()
    identity = Identity(a.config_dir)
    http = NvHTTP(a.address, identity, http_port=a.http_port, https_port=a.https_port)
    info = http.parse_server_info(http.get_server_info())
    cert = pair(http, identity, a.pin, info, timeout=90)
    Path(a.cert_out).write_bytes(cert)
    print(a.cert_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
