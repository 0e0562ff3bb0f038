"""What both GGUF dequantizers (torch in ``dequant``, Triton in ``triton_dequant``) share: the check that raw bytes
hold a tensor of the stated type and shape, and the small lookup tables of the block layouts, one copy per device."""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import torch

from ..errors import AtelierError
from .types import IQ4_NL_VALUES, TYPE_INFO, GGMLType


@functools.lru_cache(maxsize=64)
def const(name: str, device: torch.device) -> torch.Tensor:
    """Small lookup tables, one copy per device."""
    if name == "nibble_shift":  # low nibble, then high nibble
        t = torch.tensor([0, 4], dtype=torch.uint8)
    elif name == "crumb_shift":  # four 2-bit fields of a byte
        t = torch.tensor([0, 2, 4, 6], dtype=torch.uint8)
    elif name == "bit_shift":
        t = torch.arange(8, dtype=torch.uint8)
    elif name == "iq4nl_values":
        t = torch.tensor(IQ4_NL_VALUES, dtype=torch.float32)
    elif name == "q3k_low_byte":  # Q3_K: byte and shift of each 6-bit scale's low 4 bits ...
        t = torch.tensor([j % 8 for j in range(16)], dtype=torch.long)
    elif name == "q3k_low_shift":
        t = torch.tensor([4 * (j // 8) for j in range(16)], dtype=torch.uint8)
    elif name == "q3k_high_byte":  # ... and of its high 2 bits
        t = torch.tensor([8 + j % 4 for j in range(16)], dtype=torch.long)
    elif name == "q3k_high_shift":
        t = torch.tensor([2 * (j // 4) for j in range(16)], dtype=torch.uint8)
    elif name == "iq4xs_high_shift":
        t = torch.arange(0, 16, 2, dtype=torch.int32)
    else:
        raise KeyError(name)
    return t.to(device)


def table(name: str, like: torch.Tensor) -> torch.Tensor:
    """The table ``name`` on ``like``'s device."""
    if torch.compiler.is_compiling():
        # Inside torch.compile the table becomes a graph constant; the per-device cache is an eager-mode saving.
        return const.__wrapped__(name, like.device)
    return const(name, like.device)


def check_raw(raw: torch.Tensor, t: GGMLType, shape: Sequence[int]) -> tuple:
    """(type info, shape as ints, element count) once `raw` is checked to be the uint8 bytes of a `t` tensor of
    `shape`; raises an AtelierError saying what does not fit. Both dequantizers (torch and Triton) start here."""
    info = TYPE_INFO[t]
    shape = tuple(int(s) for s in shape)
    n = math.prod(shape)
    if raw.dtype != torch.uint8:
        raise AtelierError(f"dequantize expects the raw uint8 bytes of a tensor, got {raw.dtype}")
    if n % info.block_size or raw.numel() != n // info.block_size * info.type_size:
        raise AtelierError(
            f"{raw.numel()} bytes do not hold a {info.name} tensor of shape {list(shape)} "
            f"({n} elements in blocks of {info.block_size} = {info.type_size} bytes); the file is damaged"
        )
    return info, shape, n
