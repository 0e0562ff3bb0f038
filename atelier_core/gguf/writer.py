"""Write GGUF files the way popular Flux / Kontext GGUFs are laid out, with our quantizers.

Layout of city96's converter (ComfyUI-GGUF tools/convert.py + its llama.cpp patch), which the common loaders
read: `general.architecture = "flux"`, `general.quantization_version = 2`, `general.file_type` (llama.cpp's
file-type number), tensors under their BFL names without a `model.diffusion_model.` prefix, GGUF v3, 32-byte
alignment. Tensors are quantized and written one at a time, so memory stays near one tensor's size, and the file
only appears under its final name once complete (written to a temporary name, fsynced, then renamed).
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from ..errors import AtelierError
from .quantize import quantize
from .reader import MAX_NAME_BYTES
from .types import TYPE_INFO, GGMLType, to_ggml_type

logger = logging.getLogger(__name__)

QUANTIZATION_VERSION = 2  # GGML_QNT_VERSION

# llama.cpp `llama_ftype` numbers for a file whose big tensors are of one type (the `general.file_type` value).
LLAMA_FILE_TYPE = {
    GGMLType.F32: 0,
    GGMLType.F16: 1,
    GGMLType.Q4_0: 2,
    GGMLType.Q4_1: 3,
    GGMLType.Q8_0: 7,
    GGMLType.Q5_0: 8,
    GGMLType.Q5_1: 9,
    GGMLType.Q2_K: 10,
    GGMLType.Q3_K: 12,  # Q3_K_M
    GGMLType.Q4_K: 15,  # Q4_K_M
    GGMLType.Q5_K: 17,  # Q5_K_M
    GGMLType.Q6_K: 18,
    GGMLType.IQ4_NL: 25,
    GGMLType.IQ4_XS: 30,
    GGMLType.BF16: 32,
}

# Which tensors stay precise, after city96's converter and llama.cpp patch for Flux:
# - 1-D tensors (biases, norm scales) and tensors of fewer than SMALL_TENSOR_ELEMENTS values: F32 (they cost
#   nothing and are not dequantized every step);
# - tensors of 3+ dims (convolutions): F32;
# - the input/output projections named in KEEP_F32: F32 (the patch's "KEEP IN FP32" list);
# - the other embedders and the final layer, KEEP_F16: F16 when a quantized type is asked for (the patch's
#   "KEEP IN FP16" list); F32 when a float type is asked for (convert.py keeps them F32 because BF16 -> F16
#   is lossy);
# - a row that is not a whole number of blocks of the asked type: F16 (the patch's forced fallback).
SMALL_TENSOR_ELEMENTS = 16_384
KEEP_F32 = ("img_in.", "time_in.in_layer.", "vector_in.in_layer.", "guidance_in.in_layer.", "final_layer.linear.")
KEEP_F16 = ("txt_in.", "time_in.", "vector_in.", "guidance_in.", "final_layer.", "time_embedding.", "add_embedding.")


def default_type_for(name: str, shape: Sequence[int], requested_type: object) -> GGMLType:
    """The type a tensor gets in a file quantized to `requested_type` (see the policy above)."""
    requested = to_ggml_type(requested_type)
    info = TYPE_INFO[requested]
    shape = tuple(int(s) for s in shape)
    n = 1
    for s in shape:
        n *= s
    if len(shape) <= 1 or len(shape) > 2 or n < SMALL_TENSOR_ELEMENTS:
        return GGMLType.F32
    if any(k in name for k in KEEP_F32):
        return GGMLType.F32
    if any(k in name for k in KEEP_F16) and name.endswith("weight"):
        return GGMLType.F32 if info.is_float else GGMLType.F16
    if shape[-1] % info.block_size:
        return GGMLType.F16
    return requested


def file_type_for(types: Sequence[GGMLType]) -> int:
    """`general.file_type` for a file: the llama.cpp number of its most common non-F32 type."""
    counts: dict[GGMLType, int] = {}
    for t in types:
        if t != GGMLType.F32:
            counts[t] = counts.get(t, 0) + 1
    if not counts:
        return LLAMA_FILE_TYPE[GGMLType.F32]
    return LLAMA_FILE_TYPE[max(counts, key=counts.__getitem__)]


def _add_metadata(writer: Any, key: str, value: Any) -> None:
    from gguf import GGUFValueType

    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[1], GGUFValueType):
        writer.add_key_value(key, value[0], value[1])
    elif isinstance(value, (bool, np.bool_)):
        writer.add_bool(key, bool(value))
    elif isinstance(value, (int, np.integer)):
        v = int(value)
        if 0 <= v < 1 << 32:
            writer.add_uint32(key, v)
        elif -(1 << 31) <= v < 0:
            writer.add_int32(key, v)
        elif v >= 0:
            writer.add_uint64(key, v)
        else:
            writer.add_int64(key, v)
    elif isinstance(value, (float, np.floating)):
        writer.add_float32(key, float(value))
    elif isinstance(value, str):
        writer.add_string(key, value)
    elif isinstance(value, (list, np.ndarray)):
        items = value.tolist() if isinstance(value, np.ndarray) else list(value)
        if not items:
            raise AtelierError(f"metadata {key!r}: empty lists cannot be typed; give at least one item")
        writer.add_array(key, items)
    else:
        raise AtelierError(f"metadata {key!r}: cannot store a {type(value).__name__} in GGUF")


def write_gguf(
    path: str | os.PathLike[str],
    tensors: Mapping[str, tuple[np.ndarray, object]],
    metadata: Mapping[str, Any] | None = None,
    *,
    overwrite: bool = False,
    progress: Callable[[int, int, str], None] | None = None,
) -> None:
    """Write `tensors` ({name: (float array, ggml type)}) and `metadata` to a GGUF file at `path`.

    `general.architecture` (default "flux"), `general.quantization_version` and `general.file_type` are added
    unless `metadata` sets them. Arrays may be memory-mapped or lazy numpy arrays: each is quantized just before
    it is written. `progress(done, total, name)` is called after each tensor. An existing `path` is refused
    unless `overwrite`; on any failure (or Ctrl-C) no file is left under `path` or the temporary name.
    """

    path = os.fspath(path)
    metadata = dict(metadata or {})
    _check_output(path, overwrite)
    plan = [_plan_tensor(path, name, entry) for name, entry in tensors.items()]
    arch = metadata.pop("general.architecture", "flux")
    metadata.setdefault("general.quantization_version", QUANTIZATION_VERSION)
    metadata.setdefault("general.file_type", file_type_for([t for _, _, t, _ in plan]))

    try:
        with atomic_gguf(path, arch, metadata, [(name, shape, t) for name, _, t, shape in plan]) as writer:
            for done, (name, array, t, shape) in enumerate(plan, start=1):
                writer.write_tensor_data(_quantized(path, name, array, t, shape))
                if progress is not None:
                    progress(done, len(plan), name)
    except AtelierError as e:
        if str(e).startswith(path):
            raise
        raise AtelierError(f"{path}: {e}") from None


def _check_output(path: str, overwrite: bool) -> None:
    if os.path.exists(path) and not overwrite:
        raise AtelierError(f"{path} already exists; choose another output name or allow overwriting (--force)")
    out_dir = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(out_dir):
        raise AtelierError(f"{path}: the folder {out_dir} does not exist; create it first")


def _plan_tensor(path: str, name: Any, entry: Any) -> tuple[str, np.ndarray, GGMLType, tuple[int, ...]]:
    """(name, array, type, shape) for one tensor, checked before anything is written."""
    if not isinstance(name, str) or not name or len(name.encode("utf-8")) > MAX_NAME_BYTES:
        raise AtelierError(f"{path}: tensor name {name!r} is empty or longer than {MAX_NAME_BYTES} bytes")
    try:
        array, ggml_type = entry
    except (TypeError, ValueError):
        raise AtelierError(f"{path}: tensor {name!r} must be given as (array, ggml_type)") from None
    t = to_ggml_type(ggml_type)
    shape = tuple(int(s) for s in np.shape(array)) or (1,)
    if len(shape) > 4:
        raise AtelierError(f"{path}: tensor {name!r} has {len(shape)} dimensions; GGUF allows at most 4")
    info = TYPE_INFO[t]
    if shape[-1] % info.block_size:
        raise AtelierError(
            f"{path}: tensor {name!r} has rows of {shape[-1]} values, not a whole number of {info.name} "
            f"blocks of {info.block_size}; use default_type_for() to pick a type for it"
        )
    return name, array, t, shape


def _quantized(path: str, name: str, array: np.ndarray, t: GGMLType, shape: tuple[int, ...]) -> np.ndarray:
    """The tensor's bytes in type ``t``; the array is read (a memory map or a lazy array) only now."""
    source = np.asarray(array)
    if not np.issubdtype(source.dtype, np.floating) and not np.issubdtype(source.dtype, np.integer):
        raise AtelierError(f"{path}: tensor {name!r} holds {source.dtype} values; give float values")
    if t == GGMLType.F16:
        _check_f16_range(path, name, source)
    return quantize(source.reshape(shape), t)


@contextlib.contextmanager
def atomic_gguf(
    path: str | os.PathLike[str],
    arch: str,
    metadata: Mapping[str, Any],
    infos: Iterable[tuple[str, tuple[int, ...], GGMLType]],
) -> Iterator[Any]:
    """Open a GGUF under a temporary name beside ``path`` with its metadata and tensor table written, and yield the
    ``gguf.GGUFWriter`` for the tensor data (raw bytes, in ``infos`` order). On success the file is fsynced and
    renamed to ``path``; on any failure, Ctrl-C included, the partial file is removed and nothing is left under
    ``path``. A failing write (a full disk) becomes an AtelierError naming the file."""
    import gguf

    path = os.fspath(path)
    fd, tmp = tempfile.mkstemp(
        prefix=os.path.basename(path) + ".", suffix=".part", dir=os.path.dirname(os.path.abspath(path))
    )
    os.close(fd)
    writer = None
    try:
        writer = gguf.GGUFWriter(tmp, arch=str(arch))
        for key, value in metadata.items():
            _add_metadata(writer, key, value)
        for name, shape, t in infos:
            byte_shape = (*shape[:-1], TYPE_INFO[t].row_bytes(shape[-1]))
            writer.add_tensor_info(
                name,
                byte_shape,
                np.dtype(np.uint8),
                int(np.prod(byte_shape)),
                raw_dtype=gguf.GGMLQuantizationType(int(t)),
            )
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_ti_data_to_file()
        yield writer
        writer.flush()
        for fout in writer.fout or []:
            os.fsync(fout.fileno())
        writer.close()
        writer = None
        os.replace(tmp, path)
    except OSError as e:
        raise AtelierError(
            f"{path}: writing failed ({e.strerror or e}); check free disk space and permissions"
        ) from None
    finally:
        if writer is not None:
            try:
                writer.close()
            except OSError:
                pass
        if os.path.exists(tmp):
            try:
                os.remove(tmp)
            except OSError:
                logger.warning("could not remove the partial file %s", tmp)


def _check_f16_range(path: str, name: str, source: np.ndarray) -> None:
    magnitude = np.abs(np.where(np.isfinite(source), source, 0))
    if magnitude.max(initial=0) > 65504:
        raise AtelierError(
            f"{path}: tensor {name!r} has values beyond the F16 range (|x| > 65504); store it as BF16 or F32"
        )
