"""GGUF support: our own bounds-checked reader, torch dequantizers, numpy quantizers and a writer.

Nothing here imports ComfyUI. Public entry points:

- `open_gguf(path) -> GGUFFile` (reader): validated metadata and tensor table, raw bytes through a memory map (`raw`) for tools that read and exit, or copied out (`copy_tensors`) for a model that stays loaded.
- `dequantize(raw, ggml_type, shape, dtype)` (dequant): on the device of `raw`, bit-exact with ggml; one fused
  Triton kernel per tensor on CUDA (`triton_dequant`), vectorized torch elsewhere (`ATELIER_DEQUANT=torch|triton`
  forces one).
- `quantize(array, ggml_type)` (quantize): numpy, ggml's reference quantizers.
- `write_gguf(path, tensors, metadata)` and `default_type_for(name, shape, requested)` (writer).
"""

from .quantize import QUANTIZERS, quantize
from .reader import GGUFFile, SkippedArray, TensorInfo, open_gguf, read_architecture
from .types import QK_K, TYPE_INFO, GGMLType, TypeInfo, tensor_nbytes, to_ggml_type, type_info
from .writer import default_type_for, write_gguf

# The dequantizer needs torch; it is imported on first use so that numpy-only users of this package (the parallel
# quantizer's worker processes, the `inspect` command) do not pay torch's start-up time and memory.
_LAZY = {"DEQUANTIZERS", "dequantize", "register_dequantizer"}


def __getattr__(name: str):
    if name in _LAZY:
        from . import dequant

        return getattr(dequant, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "DEQUANTIZERS",
    "GGMLType",
    "GGUFFile",
    "QK_K",
    "QUANTIZERS",
    "SkippedArray",
    "TYPE_INFO",
    "TensorInfo",
    "TypeInfo",
    "default_type_for",
    "dequantize",
    "open_gguf",
    "quantize",
    "read_architecture",
    "register_dequantizer",
    "tensor_nbytes",
    "to_ggml_type",
    "type_info",
    "write_gguf",
]
