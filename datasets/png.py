"""Minimal PNG encoding with the standard library (8-bit RGB), so datasets need no Pillow."""

from __future__ import annotations

import struct
import zlib

import numpy as np


def encode_png(image: np.ndarray, level: int = 6) -> bytes:
    """image: ndarray[H, W, 3] uint8 → PNG bytes (colour type 2, no filtering)."""
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"encode_png takes uint8 [H, W, 3], got {image.dtype} {list(image.shape)}")
    h, w, _ = image.shape
    raw = np.concatenate([np.zeros((h, 1), np.uint8), image.reshape(h, w * 3)], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, level)) + chunk(b"IEND", b"")
