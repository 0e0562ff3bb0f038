"""Tell what a model file is from its bytes, before any library parses it.

The format comes from the content, never the name: a pickle renamed to ``.safetensors`` or a truncated download is
refused here with a message, quickly and without reading the whole file.
"""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtelierError

GGUF_MAGIC = b"GGUF"
# safetensors: 8-byte little-endian header length, then a JSON header. Real headers are a few MB at most.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
SAFETENSORS_DTYPE_BYTES = {
    "F64": 8,
    "F32": 4,
    "F16": 2,
    "BF16": 2,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,  # MXFP8 block scales (ComfyUI mixed precision)
    "I64": 8,
    "I32": 4,
    "I16": 2,
    "I8": 1,
    "U8": 1,
    "BOOL": 1,
}


@dataclass
class SafetensorsHeader:
    path: Path
    tensors: dict[str, tuple[str, tuple[int, ...]]]  # name -> (dtype, shape)
    metadata: dict[str, str] = field(default_factory=dict)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: shape for name, (_, shape) in self.tensors.items()}


def sniff_format(path: Path) -> str:
    """Return ``"gguf"`` or ``"safetensors"``, or raise an AtelierError saying what the file looks like."""
    path = Path(path)
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise AtelierError(f"cannot read model file '{path.name}': {exc.strerror or exc}") from None
    if size == 0:
        raise AtelierError(f"model file '{path.name}' is empty (0 bytes); download it again")
    if head[:4] == GGUF_MAGIC:
        return "gguf"
    if len(head) >= 9:
        (header_len,) = struct.unpack("<Q", head[:8])
        if 2 <= header_len <= min(MAX_SAFETENSORS_HEADER, size - 8) and head[8:9] == b"{":
            return "safetensors"
    if head[:1] == b"\x80" or head[:2] == b"PK":
        kind = "a PyTorch pickle/zip checkpoint"
    else:
        kind = "neither a GGUF nor a safetensors file"
    raise AtelierError(
        f"model file '{path.name}' is {kind}. Kontext Atelier loads only .gguf and .safetensors files (pickled "
        "checkpoints can run code when loaded); convert it to safetensors or download the safetensors release."
    )


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Parse and check a safetensors header: every tensor's byte range must lie inside the file."""
    path = Path(path)
    size = path.stat().st_size
    with open(path, "rb") as fh:
        raw_len = fh.read(8)
        if len(raw_len) < 8:
            raise AtelierError(f"'{path.name}' is truncated: no safetensors header")
        (header_len,) = struct.unpack("<Q", raw_len)
        if header_len > MAX_SAFETENSORS_HEADER or header_len > size - 8:
            raise AtelierError(
                f"'{path.name}' has a safetensors header of {header_len} bytes, larger than the file allows; "
                "the file is truncated or not a safetensors file — download it again"
            )
        blob = fh.read(header_len)
    try:
        header = json.loads(blob)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtelierError(f"'{path.name}' has a corrupt safetensors header ({exc}); download it again") from None
    if not isinstance(header, dict):
        raise AtelierError(f"'{path.name}' has a corrupt safetensors header (not a JSON object)")
    data_size = size - 8 - header_len
    metadata = header.pop("__metadata__", None) or {}
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    for name, info in header.items():
        try:
            dtype = info["dtype"]
            shape = tuple(int(d) for d in info["shape"])
            start, end = (int(x) for x in info["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise AtelierError(f"'{path.name}': tensor '{name}' has a malformed header entry") from None
        if dtype not in SAFETENSORS_DTYPE_BYTES:
            raise AtelierError(f"'{path.name}': tensor '{name}' has unsupported dtype {dtype}")
        count = 1
        for d in shape:
            if d < 0:
                raise AtelierError(f"'{path.name}': tensor '{name}' has a negative dimension {shape}")
            count *= d
        if not (0 <= start <= end <= data_size) or end - start != count * SAFETENSORS_DTYPE_BYTES[dtype]:
            raise AtelierError(
                f"'{path.name}' is truncated or corrupt: tensor '{name}' lies outside the file's data "
                f"({start}..{end} of {data_size} bytes); download it again"
            )
        tensors[name] = (dtype, shape)
    if not isinstance(metadata, dict):
        metadata = {}
    return SafetensorsHeader(path, tensors, {str(k): str(v) for k, v in metadata.items()})
