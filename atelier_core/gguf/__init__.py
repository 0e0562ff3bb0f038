"""GGUF support: our own bounds-checked reader, torch dequantizers, numpy quantizers and a writer.

Nothing here imports ComfyUI. Public entry points:

- `open_gguf(path) -> GGUFFile` (reader): validated metadata and tensor table, raw bytes through a memory map.
- `dequantize(raw, ggml_type, shape, dtype)` (dequant): torch, on the device of `raw`, bit-exact with ggml.
- `quantize(array, ggml_type)` (quantize): numpy, ggml's reference quantizers.
- `write_gguf(path, tensors, metadata)` and `default_type_for(name, shape, requested)` (writer).
"""

from .dequant import DEQUANTIZERS, dequantize, register_dequantizer
from .quantize import QUANTIZERS, quantize
from .reader import GGUFFile, SkippedArray, TensorInfo, open_gguf, read_architecture
from .types import QK_K, TYPE_INFO, GGMLType, TypeInfo, tensor_nbytes, to_ggml_type, type_info
from .writer import default_type_for, write_gguf

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
