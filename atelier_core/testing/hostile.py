"""Hostile files for the tests and ``bench/hostile_inputs.py``: small on disk, expensive for a careless reader."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack("!I", len(data)) + kind + data + struct.pack("!I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def bomb_png(path: str | Path, width: int = 16000, height: int = 16000) -> Path:
    """A valid 1-bit grey PNG of ``width`` x ``height`` black pixels: 16000x16000 is 256 million pixels in about
    30 KB (a decoder expands it to 256 MB at 8 bits, and a float pipeline to several GB). Written row by row
    through one zlib stream, so making it costs a few MB of memory and well under a second."""
    path = Path(path)
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte 0, then the packed bits
    packer = zlib.compressobj(9)
    rows_per_step = max(1, (4 << 20) // len(row))
    parts = []
    for start in range(0, height, rows_per_step):
        parts.append(packer.compress(row * min(rows_per_step, height - start)))
    parts.append(packer.flush())
    header = struct.pack("!IIBBBBB", width, height, 1, 0, 0, 0, 0)  # bit depth 1, grey
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", b"".join(parts)) + _chunk(b"IEND", b"")
    )
    return path
