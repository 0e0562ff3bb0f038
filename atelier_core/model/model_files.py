"""Tell what a model file is from its bytes, before any library parses it.

The format comes from the content, never the name: a pickle renamed to ``.safetensors`` or a truncated download is
refused here with a message, quickly and without reading the whole file.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import AtelierError
from ..safe_json import load_json_limited

GGUF_MAGIC = b"GGUF"
# safetensors: 8-byte little-endian header length, then a JSON header. Real headers are a few MB at most.
MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
HEADER_MAX_DEPTH = 4
# Zero-element tensors that are markers, not layers (ComfyUI's scaled fp8 files carry an empty "scaled_fp8").
EMPTY_MARKERS = ("scaled_fp8",)
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
    offsets: dict[str, tuple[int, int]] = field(default_factory=dict)  # name -> (start, end) in the data
    data_start: int = 0  # file offset of the data (8 + header length)

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
    """Parse and check a safetensors header as strictly as the safetensors library does, and a little more.

    The one structural validator for safetensors (the loader, the text-encoder loader, ``inspect``, ``compare`` and
    ``quantize`` all read headers here): a header nested or sized absurdly, non-integer dimensions, a non-text
    ``__metadata__``, tensors whose bytes overlap, leave gaps or leave the file, and layers of width 0 are refused
    with a message naming the file, before any library sees it.
    """
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
    header = _parse_header_json(path, blob)
    data_size = size - 8 - header_len
    metadata = _header_metadata(path, header.pop("__metadata__", None))
    tensors: dict[str, tuple[str, tuple[int, ...]]] = {}
    offsets: dict[str, tuple[int, int]] = {}
    for name, info in header.items():
        tensors[name], offsets[name] = _header_entry(path, name, info, data_size)
    _check_layout(path, offsets, data_size)
    return SafetensorsHeader(path, tensors, metadata, offsets, 8 + header_len)


def _parse_header_json(path: Path, blob: bytes) -> dict:
    # Depth 4 is what a header needs (header -> tensor -> shape list); 20 digits hold any u64 offset.
    header = load_json_limited(
        blob,
        max_bytes=MAX_SAFETENSORS_HEADER,
        max_depth=HEADER_MAX_DEPTH,
        max_number_digits=20,
        what=f"safetensors header of '{path.name}'",
    )
    if not isinstance(header, dict):
        raise AtelierError(f"'{path.name}' has a corrupt safetensors header (not a JSON object); download it again")
    return header


def _header_metadata(path: Path, metadata) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise AtelierError(
            f"'{path.name}': its safetensors __metadata__ must map names to text (the safetensors library refuses "
            "anything else); re-save the file or download it again"
        )
    return dict(metadata)


def _is_uint(value) -> bool:
    return type(value) is int and value >= 0  # not bool, not float: the safetensors library takes only integers


def _header_entry(path: Path, name: str, info, data_size: int) -> tuple[tuple[str, tuple[int, ...]], tuple[int, int]]:
    shape, span = (info.get("shape"), info.get("data_offsets")) if isinstance(info, dict) else (None, None)
    dtype = info.get("dtype") if isinstance(info, dict) else None
    if not (isinstance(shape, list) and all(map(_is_uint, shape))) or not (
        isinstance(span, list) and len(span) == 2 and all(map(_is_uint, span))
    ):
        raise AtelierError(
            f"'{path.name}': tensor '{name}' has a malformed header entry (shape and data_offsets must be lists of "
            "whole non-negative numbers); download the file again"
        )
    if dtype not in SAFETENSORS_DTYPE_BYTES:
        raise AtelierError(f"'{path.name}': tensor '{name}' has unsupported dtype {dtype}")
    count = math.prod(shape)
    if count == 0 and not name.endswith(EMPTY_MARKERS):
        raise AtelierError(
            f"'{path.name}': tensor '{name}' has a dimension of 0 (shape {tuple(shape)}): a layer of width 0 "
            "cannot compute anything; the file is damaged, download it again"
        )
    start, end = span
    if not (start <= end <= data_size) or end - start != count * SAFETENSORS_DTYPE_BYTES[dtype]:
        raise AtelierError(
            f"'{path.name}' is truncated or corrupt: tensor '{name}' lies outside the file's data "
            f"({start}..{end} of {data_size} bytes); download it again"
        )
    return (dtype, tuple(shape)), (start, end)


def _check_layout(path: Path, offsets: dict[str, tuple[int, int]], data_size: int) -> None:
    """Tensors must tile the data exactly, as the safetensors library requires: no shared bytes, no gaps."""
    position, previous = 0, None
    for name, (start, end) in sorted(offsets.items(), key=lambda item: item[1]):
        if start != position:
            what = (
                f"tensors '{previous}' and '{name}' share bytes"
                if start < position
                else f"there are {start - position} unused bytes before tensor '{name}'"
            )
            raise AtelierError(
                f"'{path.name}': {what} (the safetensors library refuses such a file, and two names on the same "
                "bytes would be one weight used twice); re-save the file or download it again"
            )
        position, previous = end, name
    if position != data_size:
        raise AtelierError(
            f"'{path.name}': {data_size - position} bytes after the last tensor belong to none (the safetensors "
            "library refuses such a file); re-save the file or download it again"
        )


# Rows read per tensor by `check_sampled_values`: the first, the middle and the last. A damaged download, a NaN
# from a diverged fine-tune or a bad conversion shows in every row it touched; a few rows per tensor keep the check
# to milliseconds and kilobytes even for a 24 GB file.
SAMPLE_ROWS = 3
_FLOAT_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16"}
_FP8_DTYPES = {"F8_E4M3": "float8_e4m3fn", "F8_E5M2": "float8_e5m2"}


def check_sampled_values(path: Path, header: SafetensorsHeader | None = None) -> int:
    """Refuse a model file with NaN or infinite values in a sample of any tensor's rows; return the rows read.

    The value half of the one model-file validator (the structure half is ``read_safetensors_header`` and the GGUF
    reader): the Kontext Loader, the text-encoder loader, ``inspect`` and ``quantize`` all call it, so a file one of
    them accepts the others accept too. GGUF blocks are dequantized row by row, so a NaN block scale is found.
    ``header``: the safetensors file's header when the caller has read it already (read here otherwise).
    """
    path = Path(path)
    if header is None and sniff_format(path) == "gguf":
        return _check_gguf_values(path)
    return _check_safetensors_values(path, header)


def _sample_rows(n_rows: int) -> list[int]:
    return sorted({0, n_rows // 2, n_rows - 1}) if n_rows > 0 else []


def _refuse_nonfinite(path: Path, name: str) -> None:
    raise AtelierError(
        f"'{path.name}': tensor '{name}' holds NaN or infinite values; a model with them computes NaN (a black or "
        "noise image). The file is damaged or was saved from a broken training run: download it again or use "
        "another file"
    )


def _check_safetensors_values(path: Path, header: SafetensorsHeader | None) -> int:
    if header is None:
        header = read_safetensors_header(path)  # before importing torch: a hostile header is refused in milliseconds
    import torch

    rows_read = 0
    with open(path, "rb") as fh:
        for name, (dtype, shape) in header.tensors.items():
            torch_dtype = _FLOAT_DTYPES.get(dtype) or _FP8_DTYPES.get(dtype)
            count = math.prod(shape)
            if torch_dtype is None or count == 0:
                continue  # integer tensors cannot hold NaN; empty markers hold nothing
            row = shape[-1] if shape else 1
            row_bytes = row * SAFETENSORS_DTYPE_BYTES[dtype]
            start = header.data_start + header.offsets[name][0]
            for index in _sample_rows(count // row):
                fh.seek(start + index * row_bytes)
                data = bytearray(fh.read(row_bytes))
                values = torch.frombuffer(data, dtype=getattr(torch, torch_dtype)).float()
                rows_read += 1
                if not torch.isfinite(values).all():
                    _refuse_nonfinite(path, name)
    return rows_read


def _check_gguf_values(path: Path) -> int:
    import torch

    from ..gguf.dequant import dequantize
    from ..gguf.reader import open_gguf
    from ..gguf.types import TYPE_INFO

    rows_read = 0
    with open_gguf(path) as gf:
        for name, info in gf.tensors.items():
            if info.nbytes == 0:
                continue
            row = info.shape[-1] if info.shape else 1
            block = TYPE_INFO[info.ggml_type]
            row_bytes = row // block.block_size * block.type_size
            raw = gf.raw(name)
            for index in _sample_rows(info.nbytes // row_bytes):
                rows = torch.from_numpy(raw[index * row_bytes : (index + 1) * row_bytes].copy())
                values = dequantize(rows, info.ggml_type, (1, row), torch.float32)
                rows_read += 1
                if not torch.isfinite(values).all():
                    _refuse_nonfinite(path, name)
    return rows_read
