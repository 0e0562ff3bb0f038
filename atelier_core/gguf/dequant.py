"""GGML dequantization in vectorized torch, on the device of the input, with a fused Triton path for GPUs.

Each block decoder takes a (n_blocks, type_size) uint8 tensor and returns (n_blocks, block_size) float32 values,
computed with the same float32 operations in the same order as ggml's `dequantize_row_*` (and the `gguf`
package's numpy port), so the float32 result is bit-exact: a product `d * sc` is rounded before it multiplies the
quant, `d * q - m` is a multiply then a subtract (no fused multiply-add).

`DEQUANTIZERS` maps each type to its block decoder; `register_dequantizer` swaps one in without touching callers.
Small constant tables are built once per device and cached.

On a CUDA device the quantized types go to `triton_dequant.dequantize_triton` instead: one kernel per tensor that
reads the raw blocks and writes the final dtype, bit-identical to the torch path (which launches a dozen kernels and
writes float32 intermediates). The backend is chosen by `set_backend(name)`, else by the `ATELIER_DEQUANT`
environment variable, read at each call:

- `auto` (default): Triton for CUDA tensors when it is installed and the type's decoder was not replaced with
  `register_dequantizer`; torch otherwise. If a Triton launch fails (an unsupported GPU, a broken toolchain), a
  warning is logged once and torch serves from then on.
- `torch`: never Triton.
- `triton`: Triton on every device it can run on (also CPU tensors under `TRITON_INTERPRET=1`, which is how the
  tests exercise this dispatch without a GPU); its errors are raised, not hidden.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence

import torch

from ..errors import AtelierError
from .blocks import check_raw, table
from .types import QK_K, SUPPORTED_TYPE_NAMES, GGMLType, to_ggml_type

logger = logging.getLogger(__name__)

BlockDecoder = Callable[[torch.Tensor], torch.Tensor]


def _f16(blocks: torch.Tensor, start: int) -> torch.Tensor:
    """The fp16 field at byte `start` of each block, as float32 of shape (n_blocks, 1)."""
    return blocks[:, start : start + 2].contiguous().view(torch.float16).to(torch.float32)


def _nibbles(qs: torch.Tensor) -> torch.Tensor:
    """(..., n) bytes -> (..., 2, n): low nibbles first, then high nibbles (ggml's order within a block)."""
    return (qs.unsqueeze(-2) >> table("nibble_shift", qs).view(2, 1)) & 0x0F


def _bits_le(b: torch.Tensor) -> torch.Tensor:
    """(n, k) bytes -> (n, 8k) bits, little-endian bit order (bit j of byte i is element 8i + j)."""
    return ((b.unsqueeze(-1) >> table("bit_shift", b)) & 1).reshape(b.shape[0], -1)


def _float_passthrough(dtype: torch.dtype, elem: int) -> BlockDecoder:
    def decode(blocks: torch.Tensor) -> torch.Tensor:
        flat = blocks.reshape(-1)
        try:
            v = flat.view(dtype)
        except RuntimeError:  # odd storage offset: copy to realign
            v = flat.clone().view(dtype)
        if dtype == torch.bfloat16:
            # bf16 -> f32 is the top half of the f32 bits; do it on integers so NaN payloads survive everywhere.
            v = (v.view(torch.int16).to(torch.int32) << 16).view(torch.float32)
        else:
            v = v.to(torch.float32)
        return v.reshape(-1, 1)

    return decode


def dequant_q4_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    q = _nibbles(blocks[:, 2:18]).reshape(-1, 32).to(torch.int16) - 8
    return d * q.to(torch.float32)


def dequant_q4_1(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    m = _f16(blocks, 2)
    q = _nibbles(blocks[:, 4:20]).reshape(-1, 32).to(torch.float32)
    return d * q + m


def dequant_q5_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    qh = _bits_le(blocks[:, 2:6])
    ql = _nibbles(blocks[:, 6:22]).reshape(-1, 32)
    q = (ql | (qh << 4)).to(torch.int16) - 16
    return d * q.to(torch.float32)


def dequant_q5_1(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    m = _f16(blocks, 2)
    qh = _bits_le(blocks[:, 4:8])
    ql = _nibbles(blocks[:, 8:24]).reshape(-1, 32)
    q = (ql | (qh << 4)).to(torch.float32)
    return d * q + m


def dequant_q8_0(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    q = blocks[:, 2:34].contiguous().view(torch.int8).to(torch.float32)
    return q * d


def dequant_q2_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    scales = blocks[:, 0:16]
    qs = blocks[:, 16:80]
    d = _f16(blocks, 80)
    dmin = _f16(blocks, 82)
    dl = (d * (scales & 0x0F).to(torch.float32)).unsqueeze(-1)  # (n, 16, 1)
    ml = (dmin * (scales >> 4).to(torch.float32)).unsqueeze(-1)
    # element 128*h + 32*j + l comes from bits 2j..2j+1 of qs[32*h + l]
    q = (qs.reshape(n, 2, 1, 32) >> table("crumb_shift", qs).view(1, 4, 1)) & 3
    q = q.reshape(n, 16, 16).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


def dequant_q3_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    hmask = blocks[:, 0:32]
    qs = blocks[:, 32:96]
    sc = blocks[:, 96:108]
    d = _f16(blocks, 108)
    low = (sc[:, table("q3k_low_byte", sc)] >> table("q3k_low_shift", sc)) & 0x0F
    high = (sc[:, table("q3k_high_byte", sc)] >> table("q3k_high_shift", sc)) & 0x03
    scales = (low | (high << 4)).to(torch.int16) - 32
    dl = (d * scales.to(torch.float32)).unsqueeze(-1)  # (n, 16, 1)
    ql = (qs.reshape(n, 2, 1, 32) >> table("crumb_shift", qs).view(1, 4, 1)) & 3  # (n, 2, 4, 32)
    # the high bit of element 128*h + 32*j + l is bit 4h + j of hmask[l]; a clear bit means "subtract 4"
    hb = ((hmask.reshape(n, 1, 32) >> table("bit_shift", hmask).view(1, 8, 1)) & 1).reshape(n, 2, 4, 32)
    q = ql.to(torch.int16) - ((hb ^ 1).to(torch.int16) << 2)
    return (dl * q.reshape(n, 16, 16).to(torch.float32)).reshape(n, QK_K)


def _k4_scale_min(sc: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Unpack the 8 six-bit scales and mins of Q4_K / Q5_K from their 12 bytes."""
    a, b, c = sc[:, 0:4], sc[:, 4:8], sc[:, 8:12]
    scale = torch.cat([a & 63, (c & 0x0F) | ((a >> 6) << 4)], dim=1)
    mins = torch.cat([b & 63, (c >> 4) | ((b >> 6) << 4)], dim=1)
    return scale, mins


def dequant_q4_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    dmin = _f16(blocks, 2)
    sc, mn = _k4_scale_min(blocks[:, 4:16])
    dl = (d * sc.to(torch.float32)).unsqueeze(-1)  # (n, 8, 1)
    ml = (dmin * mn.to(torch.float32)).unsqueeze(-1)
    q = _nibbles(blocks[:, 16:144].reshape(n, 4, 32)).reshape(n, 8, 32).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


def dequant_q5_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    dmin = _f16(blocks, 2)
    sc, mn = _k4_scale_min(blocks[:, 4:16])
    qh = blocks[:, 16:48]
    dl = (d * sc.to(torch.float32)).unsqueeze(-1)
    ml = (dmin * mn.to(torch.float32)).unsqueeze(-1)
    ql = _nibbles(blocks[:, 48:176].reshape(n, 4, 32)).reshape(n, 8, 32)
    # the fifth bit of sub-block s (32 elements) is bit s of qh[l]
    hb = (qh.reshape(n, 1, 32) >> table("bit_shift", qh).view(1, 8, 1)) & 1
    q = (ql | (hb << 4)).to(torch.float32)
    return (dl * q - ml).reshape(n, QK_K)


def dequant_q6_k(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    ql = blocks[:, 0:128]
    qh = blocks[:, 128:192]
    scales = blocks[:, 192:208].contiguous().view(torch.int8).to(torch.float32)
    d = _f16(blocks, 208)
    dl = (d * scales).unsqueeze(-1)  # (n, 16, 1)
    # element 128*h + 32*g + l: low 4 bits from ql[64*h + 32*(g%2) + l] nibble g//2, high 2 bits from qh[32*h + l]
    low = _nibbles(ql.reshape(n, 2, 64)).reshape(n, 2, 4, 32)
    high = (qh.reshape(n, 2, 1, 32) >> table("crumb_shift", qh).view(1, 4, 1)) & 3
    q = (low | (high << 4)).to(torch.int16) - 32
    return (dl * q.reshape(n, 16, 16).to(torch.float32)).reshape(n, QK_K)


def dequant_iq4_nl(blocks: torch.Tensor) -> torch.Tensor:
    d = _f16(blocks, 0)
    idx = _nibbles(blocks[:, 2:18]).reshape(-1, 32).to(torch.long)
    return d * table("iq4nl_values", blocks)[idx]


def dequant_iq4_xs(blocks: torch.Tensor) -> torch.Tensor:
    n = blocks.shape[0]
    d = _f16(blocks, 0)
    scales_h = blocks[:, 2:4].to(torch.int32)
    scales_h = scales_h[:, 0] | (scales_h[:, 1] << 8)  # little-endian u16
    scales_l = _nibbles(blocks[:, 4:8]).transpose(1, 2).reshape(n, 8)  # sub-block 2i low nibble, 2i+1 high
    high = (scales_h.unsqueeze(-1) >> table("iq4xs_high_shift", blocks)) & 3
    ls = (scales_l.to(torch.int32) | (high << 4)) - 32
    dl = (d * ls.to(torch.float32)).unsqueeze(-1)  # (n, 8, 1)
    idx = _nibbles(blocks[:, 8:136].reshape(n, 8, 16)).reshape(n, 8, 32).to(torch.long)
    return (dl * table("iq4nl_values", blocks)[idx]).reshape(n, QK_K)


DEQUANTIZERS: dict[GGMLType, BlockDecoder] = {
    GGMLType.F32: _float_passthrough(torch.float32, 4),
    GGMLType.F16: _float_passthrough(torch.float16, 2),
    GGMLType.BF16: _float_passthrough(torch.bfloat16, 2),
    GGMLType.Q4_0: dequant_q4_0,
    GGMLType.Q4_1: dequant_q4_1,
    GGMLType.Q5_0: dequant_q5_0,
    GGMLType.Q5_1: dequant_q5_1,
    GGMLType.Q8_0: dequant_q8_0,
    GGMLType.Q2_K: dequant_q2_k,
    GGMLType.Q3_K: dequant_q3_k,
    GGMLType.Q4_K: dequant_q4_k,
    GGMLType.Q5_K: dequant_q5_k,
    GGMLType.Q6_K: dequant_q6_k,
    GGMLType.IQ4_NL: dequant_iq4_nl,
    GGMLType.IQ4_XS: dequant_iq4_xs,
}

# The built-in decoders, so the Triton path can step aside for a type whose decoder was replaced.
_BUILTIN_DECODERS: dict[GGMLType, BlockDecoder] = dict(DEQUANTIZERS)

_FLOAT_STORAGE = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}

BACKENDS = ("auto", "torch", "triton")
_backend: str | None = None  # set_backend's choice; None: the ATELIER_DEQUANT environment variable decides
_triton_failed = False  # an `auto` Triton launch failed once: torch serves for the rest of the process


def set_backend(name: str | None) -> None:
    """Pick the dequantization backend ("auto", "torch" or "triton"); None goes back to `ATELIER_DEQUANT`."""
    global _backend
    if name is not None:
        name = name.strip().lower()
        if name not in BACKENDS:
            raise AtelierError(f"unknown dequantization backend {name!r}; choose one of {', '.join(BACKENDS)}")
    _backend = name


def backend() -> str:
    """The backend in force: `set_backend`'s choice, else `ATELIER_DEQUANT`, else "auto"."""
    if _backend is not None:
        return _backend
    name = os.environ.get("ATELIER_DEQUANT", "").strip().lower() or "auto"
    if name not in BACKENDS:
        raise AtelierError(f"ATELIER_DEQUANT={name!r} is not a backend; use one of {', '.join(BACKENDS)}")
    return name


def _triton_for(t: GGMLType, raw: torch.Tensor, chosen: str) -> bool:
    """Whether this tensor goes to the Triton kernels (imported only here, so CPU-only use never loads Triton)."""
    if chosen == "torch" or (chosen == "auto" and (raw.device.type != "cuda" or _triton_failed)):
        return False
    if DEQUANTIZERS.get(t) is not _BUILTIN_DECODERS.get(t):  # a registered decoder wins
        return False
    from . import triton_dequant

    return t in triton_dequant.SUPPORTED_TYPES and triton_dequant.available(raw.device)


def register_dequantizer(ggml_type: object, decoder: BlockDecoder) -> BlockDecoder:
    """Replace the block decoder of one type (returns the previous one so a caller can restore it)."""
    t = to_ggml_type(ggml_type)
    previous = DEQUANTIZERS[t]
    DEQUANTIZERS[t] = decoder
    return previous


def dequantize(
    raw: torch.Tensor, ggml_type: object, shape: Sequence[int], dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Decode the stored bytes of one tensor into a `shape` tensor of `dtype` on `raw`'s device.

    `raw` is a uint8 tensor of the exact stored size (any shape). Values are computed in float32 and then cast,
    so the float32 result is bit-exact with ggml; float types whose storage already is `dtype` are returned
    without arithmetic.
    """
    t = to_ggml_type(ggml_type)
    info, shape, n = check_raw(raw, t, shape)
    if n == 0:
        return torch.empty(shape, dtype=dtype, device=raw.device)
    storage = _FLOAT_STORAGE.get(t)
    if storage is not None and storage == dtype:
        flat = raw.reshape(-1)
        try:
            return flat.view(dtype).reshape(shape)
        except RuntimeError:
            return flat.clone().view(dtype).reshape(shape)
    # Inside torch.compile the torch decoders are traced and inductor fuses them into its own kernel.
    chosen = "torch" if torch.compiler.is_compiling() else backend()
    if _triton_for(t, raw, chosen):
        from . import triton_dequant

        try:
            return triton_dequant.dequantize_triton(raw, t, shape, dtype)
        except torch.cuda.OutOfMemoryError:
            raise  # not Triton's fault, and the torch path needs more memory still
        except Exception as exc:
            if chosen == "triton":
                raise
            _disable_triton(exc)
    try:
        decoder = DEQUANTIZERS[t]
    except KeyError:
        raise AtelierError(f"no dequantizer for {info.name}; supported: {SUPPORTED_TYPE_NAMES}") from None
    out = decoder(raw.reshape(-1, info.type_size))
    out = out.reshape(shape)
    return out if dtype == torch.float32 else out.to(dtype)


def _disable_triton(exc: Exception) -> None:
    """Fall back to torch for the rest of the process after a failed automatic Triton launch (logged once)."""
    global _triton_failed
    _triton_failed = True
    logger.warning(
        "Triton dequantization failed (%s: %s); using the torch dequantizers from now on. "
        "Set ATELIER_DEQUANT=torch to skip Triton.",
        type(exc).__name__,
        exc,
    )
