"""Regenerate the golden digests in tests/test_gguf_quantize.py from ggml itself (not run by the test suite).

Needs ggml-python built from source without CPU-specific flags, outside this repository, e.g.:

    CMAKE_ARGS="-DGGML_NATIVE=OFF" pip install --no-binary ggml-python --target /tmp/ggmlpy ggml-python==0.0.45
    PYTHONPATH=/tmp/ggmlpy:. python tests/data/make_ggml_digests.py

It quantizes `golden_input()` with `ggml_quantize_chunk` (no importance matrix: what llama-quantize runs) for every
type our quantizer supports and prints the SHA-256 of the blocks, in the form of the test's GGML_DIGESTS table.
"""

from __future__ import annotations

import ctypes
import hashlib
import sys
from pathlib import Path

import ggml
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from test_gguf_quantize import golden_input  # noqa: E402

from atelier_core.gguf.types import TYPE_INFO, GGMLType  # noqa: E402


def ggml_blocks(x: np.ndarray, t: GGMLType) -> bytes:
    rows, n = x.shape
    info = TYPE_INFO[t]
    out = np.zeros(rows * info.row_bytes(n), dtype=np.uint8)
    src = np.ascontiguousarray(x, dtype=np.float32)
    ggml.ggml_quantize_init(int(t))
    written = ggml.ggml_quantize_chunk(
        int(t),
        src.ctypes.data_as(ctypes.POINTER(ctypes.c_float)),
        out.ctypes.data_as(ctypes.c_void_p),
        0,
        rows,
        n,
        None,
    )
    assert written == out.size, (t.name, written, out.size)
    return out.tobytes()


def main() -> None:
    x = golden_input()
    sys.stdout.write(f'    "F32": "{hashlib.sha256(x.tobytes()).hexdigest()}",\n')
    for t in GGMLType:
        if t == GGMLType.F32:
            continue
        sys.stdout.write(f'    "{t.name}": "{hashlib.sha256(ggml_blocks(x, t)).hexdigest()}",\n')


if __name__ == "__main__":
    main()
