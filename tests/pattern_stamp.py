#!/usr/bin/env python3
"""Read the punktfunk test-pattern stamp (frame number, capture time) from a decoded frame.

The layout is defined in capture/src/stamp.rs and docs/capture.md ("Frame stamp"):
8 rows x 18 columns of B x B cells at the top-left corner; per row a white and a black guard
cell, then 16 data cells (white = 1); 128 bits = frame u32 BE, capture_us u64 BE,
CRC-32 (zlib.crc32) of those 12 bytes, BE.

    from pattern_stamp import read_stamp
    frame, capture_us = read_stamp(av_frame.to_ndarray(format="rgb24"))  # or "gray", or Y

Only numpy is needed. `python3 pattern_stamp.py` runs a self-test on synthetic frames;
`python3 pattern_stamp.py a.png b.png ...` prints the stamp of each PNG (8-bit grey, grey+alpha,
RGB or RGBA, non-interlaced) as `path: frame=N capture_us=T` or `path: no stamp`, and exits 1
if any file has none.
"""

import struct
import sys
import zlib

import numpy as np

ROWS = 8
COLS = 18
GUARD_COLS = 2
BITS_PER_ROW = COLS - GUARD_COLS
MIN_CONTRAST = 64  # luma units, white guard mean minus black guard mean


def block_size(width, height):
    """Cell size in pixels for a width x height picture, or None if the stamp cannot fit."""
    if width >= COLS * 16 and height >= ROWS * 16:
        return 16 * max(1, min(width // 1280, height // 720))
    b = min(width // COLS, height // ROWS) & ~1
    return b if b >= 2 else None


def _luma(img):
    """2-D float luma from a (H, W) grey/Y array or an (H, W, 3|4) RGB(A) array."""
    a = np.asarray(img)
    if a.ndim == 2:
        return a.astype(np.float64)
    if a.ndim == 3 and a.shape[2] in (3, 4):
        rgb = a[:, :, :3].astype(np.float64)
        # The stamp has neutral chroma, so R = G = B there; any luma weights do.
        return rgb @ np.array([0.299, 0.587, 0.114])
    if a.ndim == 3 and a.shape[2] in (1, 2):
        return a[:, :, 0].astype(np.float64)
    raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got shape {a.shape}")


def read_stamp(img):
    """Return (frame, capture_us) from a decoded frame, or None if there is no valid stamp.

    `img` is a numpy array: the Y plane or a grey image (H, W), or RGB/RGBA (H, W, 3|4).
    Each cell's mean is taken over its inner square (inset B/4 on each side); a row's
    threshold is the midpoint of its white and black guard cells; a CRC-32 mismatch or a
    guard pair with too little contrast gives None.
    """
    y = _luma(img)
    height, width = y.shape
    b = block_size(width, height)
    if b is None:
        return None
    inset = b // 4
    side = b - 2 * inset
    # Cell means: crop the stamp, view it as (rows, B, cols, B), keep the inner squares.
    grid = y[: ROWS * b, : COLS * b].reshape(ROWS, b, COLS, b)
    means = grid[:, inset : inset + side, :, inset : inset + side].mean(axis=(1, 3))
    bits = []
    for row in means:
        white, black = row[0], row[1]
        if white - black < MIN_CONTRAST:
            return None
        threshold = (white + black) / 2
        bits.extend(1 if v > threshold else 0 for v in row[GUARD_COLS:])
    payload = bytes(
        int("".join(str(bit) for bit in bits[i : i + 8]), 2) for i in range(0, len(bits), 8)
    )
    if zlib.crc32(payload[:12]) != struct.unpack(">I", payload[12:16])[0]:
        return None
    frame, capture_us = struct.unpack(">IQ", payload[:12])
    return frame, capture_us


def write_stamp(y, frame, capture_us):
    """Draw a stamp into a 2-D uint8 luma array in place (for tests; mirrors stamp.rs)."""
    height, width = y.shape
    b = block_size(width, height)
    if b is None:
        raise ValueError("picture too small for the stamp")
    data = struct.pack(">IQ", frame, capture_us)
    data += struct.pack(">I", zlib.crc32(data))
    bits = [(byte >> (7 - i)) & 1 for byte in data for i in range(8)]
    for r in range(ROWS):
        cells = [1, 0] + bits[r * BITS_PER_ROW : (r + 1) * BITS_PER_ROW]
        for c, bit in enumerate(cells):
            y[r * b : (r + 1) * b, c * b : (c + 1) * b] = 235 if bit else 16


# ---------------------------------------------------------------------------------------------
# Minimal PNG reader (numpy + zlib), for the command line.


def _paeth(a, b, c):
    p = a + b - c
    pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
    if pa <= pb and pa <= pc:
        return a
    return b if pb <= pc else c


def read_png(path):
    """Read an 8-bit, non-interlaced PNG into a uint8 array (H, W) or (H, W, C)."""
    with open(path, "rb") as f:
        data = f.read()
    if data[:8] != b"\x89PNG\r\n\x1a\n":
        raise ValueError(f"{path}: not a PNG")
    pos, idat, ihdr = 8, [], None
    while pos + 8 <= len(data):
        length, kind = struct.unpack(">I4s", data[pos : pos + 8])
        body = data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            ihdr = struct.unpack(">IIBBBBB", body)
        elif kind == b"IDAT":
            idat.append(body)
        elif kind == b"IEND":
            break
    if ihdr is None:
        raise ValueError(f"{path}: no IHDR")
    width, height, depth, color, _, _, interlace = ihdr
    channels = {0: 1, 2: 3, 4: 2, 6: 4}.get(color)
    if depth != 8 or channels is None or interlace != 0:
        raise ValueError(f"{path}: only 8-bit grey/RGB(A), non-interlaced PNGs are supported")
    raw = np.frombuffer(zlib.decompress(b"".join(idat)), dtype=np.uint8)
    stride = width * channels
    raw = raw[: height * (stride + 1)].reshape(height, stride + 1)
    out = np.zeros((height, stride), dtype=np.uint8)
    prior = np.zeros(stride, dtype=np.uint8)
    bpp = channels
    for r in range(height):
        kind, line = raw[r, 0], raw[r, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:
            cur = np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint8).reshape(-1)
        elif kind == 2:
            cur = line + prior
        elif kind in (3, 4):
            cur_l = line.tolist()
            up = prior.tolist()
            for x in range(stride):
                left = cur_l[x - bpp] if x >= bpp else 0
                if kind == 3:
                    pred = (left + up[x]) // 2
                else:
                    pred = _paeth(left, up[x], up[x - bpp] if x >= bpp else 0)
                cur_l[x] = (cur_l[x] + pred) & 0xFF
            cur = np.array(cur_l, dtype=np.uint8)
        else:
            raise ValueError(f"{path}: bad filter type {kind} in row {r}")
        out[r] = cur
        prior = cur
    return out if channels == 1 else out.reshape(height, width, channels)


# ---------------------------------------------------------------------------------------------


def _self_test():
    rng = np.random.default_rng(1)
    for width, height in [(64, 64), (320, 240), (1280, 720), (1920, 1080), (3840, 2160)]:
        y = rng.integers(30, 220, size=(height, width), dtype=np.uint8)
        frame, capture_us = int(rng.integers(0, 2**32)), int(rng.integers(0, 2**63))
        write_stamp(y, frame, capture_us)
        assert read_stamp(y) == (frame, capture_us), (width, height)
        rgb = np.repeat(y[:, :, None], 3, axis=2)
        assert read_stamp(rgb) == (frame, capture_us), (width, height)
    # Values from capture/src/stamp.rs tests: frame 0x01020304, CRC 0xfafde765.
    y = np.full((720, 1280), 100, dtype=np.uint8)
    write_stamp(y, 0x01020304, 0x1122334455667788)
    assert read_stamp(y) == (0x01020304, 0x1122334455667788)
    b = 16
    y[3 * b : 4 * b, 9 * b : 10 * b] = 251 - y[3 * b : 4 * b, 9 * b : 10 * b]  # flip one cell
    assert read_stamp(y) is None
    assert read_stamp(np.full((720, 1280), 128, dtype=np.uint8)) is None
    assert block_size(1280, 720) == 16 and block_size(3840, 2160) == 48
    assert block_size(64, 64) == 2 and block_size(34, 64) is None
    print("pattern_stamp self-test: ok")


def main(argv):
    if not argv:
        _self_test()
        return 0
    missing = 0
    for path in argv:
        stamp = read_stamp(read_png(path))
        if stamp is None:
            missing += 1
            print(f"{path}: no stamp")
        else:
            print(f"{path}: frame={stamp[0]} capture_us={stamp[1]}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
