"""GGML quantizers in numpy: ggml's reference algorithms (`quantize_row_*_ref`), vectorized over blocks.

Each algorithm is a transcription of ggml-quants.c done block-parallel: every per-block decision (the scale
search of `make_qkx2_quants`, the refinement loop of `make_q3_quants`, the candidate scales of `make_qx_quants`,
IQ4's non-linear search) runs for all blocks at once with numpy, keeping ggml's float32 operation order. Sums that
ggml accumulates left to right are accumulated left to right here too (`_sum_rows`) rather than with numpy's
pairwise summation, because a different rounding can flip a `cur_error < best_error` choice.
`nearest_int` (ggml's magic-number rounding) is round-half-to-even, i.e. `np.rint`. No fused multiply-add is used;
a ggml built with `-march=native` may contract some products and so differ in rare last-bit ties.

Q8_0, Q5_1, Q5_0, Q4_1, Q4_0, BF16 and F16 equal the `gguf` package's quantizers bit for bit (tested).

Speed (the K-quants are compute bound: 16-22 candidate scales per group, ~20 array passes each): the searches
work in place on transposed (element, group) float32 arrays of a cache-sized chunk; a per-group value is first
spread over a full array (`_fill`), because numpy runs a ufunc with a broadcast operand ~10x slower; the winning
candidate's levels are recomputed once from its scale instead of being copied at every candidate. That is ~25
MB/s of bf16 source per core for Q4_K; `ParallelQuantizer` runs one process per core (same bytes).
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable

import numpy as np

from ..errors import AtelierError
from .ggml_search import (  # noqa: F401 (GROUP_MAX_EPS, _fp16_bits, _pack_crumbs: also used by fast_quantize)
    GROUP_MAX_EPS,
    IQ4_NL_VALUES,
    F,
    _amax_signed,
    _best_index_iq4,
    _errstate,
    _fill,
    _first_max,
    _first_min,
    _fp16_bits,
    _fp16_round,
    _k_groups_t,
    _make_q3_quants,
    _make_qkx2_quants_t,
    _make_qx_quants_rmse1_t,
    _nint,
    _pack_crumbs,
    _pack_nibbles,
    _requant_t,
    _sum_rows,
    _untranspose_levels,
)
from .types import QK_K, TYPE_INFO, GGMLType, to_ggml_type

# Elements per quantization call; bounds the temporaries (~20 arrays of this many float32 values).
CHUNK_ELEMENTS = 1 << 20
# The K-quant scale searches make ~20 passes over their (n, M) arrays per candidate scale: chunks whose few
# working arrays stay in the CPU's L3 cache run 5-10% faster than 1M-value ones (measured flat from 128K to 512K;
# 32K loses 25% to numpy's per-call overhead). Capped by CHUNK_ELEMENTS.
SEARCH_CHUNK_ELEMENTS = 1 << 18

BlockEncoder = Callable[[np.ndarray], np.ndarray]


# ----------------------------------------------------------------------------------------------- 32-blocks


def _q8_0(x: np.ndarray) -> np.ndarray:
    amax = np.abs(x).max(axis=1)
    d = amax / F(127)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    v = x * inv[:, None]
    a = np.abs(v)
    fl = np.floor(a)
    q = np.copysign(fl + np.floor(F(2) * (a - fl)), v)  # roundf (half away from zero), exact: no a + 0.5 rounding
    return np.concatenate([_fp16_bits(d), q.astype(np.int8).view(np.uint8)], axis=1)


def _max_signed(x: np.ndarray) -> np.ndarray:
    """The value of largest magnitude; +0.0 for an all-zero block (ggml starts from max = 0 and keeps it)."""
    amax, mx = _amax_signed(x)
    return np.where(amax > 0, mx, F(0))


def _q4_0(x: np.ndarray) -> np.ndarray:
    d = _max_signed(x) / F(-8)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    q = np.minimum(15, np.trunc(x * inv[:, None] + F(8.5)).astype(np.int8))
    return np.concatenate([_fp16_bits(d), _pack_nibbles(q, 32)], axis=1)


def _q4_1(x: np.ndarray) -> np.ndarray:
    mn = _first_min(x)
    mx = _first_max(x)
    d = (mx - mn) / F(15)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    q = np.minimum(15, np.trunc((x - mn[:, None]) * inv[:, None] + F(0.5)).astype(np.int8))
    return np.concatenate([_fp16_bits(d), _fp16_bits(mn), _pack_nibbles(q, 32)], axis=1)


def _q5_high_bits(q: np.ndarray) -> np.ndarray:
    bits = ((q.astype(np.uint8) >> 4) & 1).reshape(-1, 32)
    return np.packbits(bits, axis=1, bitorder="little")


def _q5_0(x: np.ndarray) -> np.ndarray:
    d = _max_signed(x) / F(-16)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    q = np.minimum(31, np.trunc(x * inv[:, None] + F(16.5)).astype(np.int8))
    return np.concatenate([_fp16_bits(d), _q5_high_bits(q), _pack_nibbles(q & 0x0F, 32)], axis=1)


def _q5_1(x: np.ndarray) -> np.ndarray:
    mn = _first_min(x)
    mx = _first_max(x)
    d = (mx - mn) / F(31)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
    q = np.minimum(31, np.trunc((x - mn[:, None]) * inv[:, None] + F(0.5)).astype(np.uint8))
    return np.concatenate([_fp16_bits(d), _fp16_bits(mn), _q5_high_bits(q), _pack_nibbles(q & 0x0F, 32)], axis=1)


# ----------------------------------------------------------------------------------------------- K-quants


def _q2_k(x: np.ndarray) -> np.ndarray:
    nb = x.shape[0]
    xt = _k_groups_t(x, 16)
    scales, mins, levels = _make_qkx2_quants_t(xt, np.abs(xt), 3, -0.5, 0.1, 15, True)
    scales, mins = scales.reshape(nb, 16), mins.reshape(nb, 16)
    max_scale = np.maximum(scales.max(axis=1), F(0))
    max_min = np.maximum(mins.max(axis=1), F(0))
    with _errstate():
        has_s = max_scale > 0
        ls = np.where(has_s[:, None], _nint((F(15) / max_scale)[:, None] * scales), 0)
        d = np.where(has_s, max_scale / F(15), F(0)).astype(F)
        has_m = max_min > 0
        lm = np.where(has_m[:, None], _nint((F(15) / max_min)[:, None] * mins), 0)
        dmin = np.where(has_m, max_min / F(15), F(0)).astype(F)
        sc = ((ls | (lm << 4)) & 0xFF).astype(np.uint8)
        dq = (_fp16_round(d)[:, None] * (sc & 0x0F).astype(F)).reshape(-1)
        dm = (_fp16_round(dmin)[:, None] * (sc >> 4).astype(F)).reshape(-1)
        B = _fill(np.empty_like(xt), dm)
        v = np.add(xt, B)
        v /= _fill(B, dq)
        L = _requant_t(v, 0, 3, dq, levels)
    return np.concatenate([sc, _pack_crumbs(_untranspose_levels(L, nb)), _fp16_bits(d), _fp16_bits(dmin)], axis=1)


def _q3_k(x: np.ndarray) -> np.ndarray:
    nb = x.shape[0]
    scales, L = _make_q3_quants(x.reshape(-1, 16), 4)
    scales, L = scales.reshape(nb, 16), L.reshape(nb, 16, 16)
    amax, max_scale = _amax_signed(scales)
    has = max_scale != 0
    with _errstate():
        iscale = F(-32) / max_scale
        l6 = np.clip(_nint(iscale[:, None] * scales), -32, 31) + 32
        l6 = np.where(has[:, None], l6, 0).astype(np.uint8)
        d = np.where(has, F(1) / iscale, F(0)).astype(F)
    sc = np.where(has[:, None], l6.astype(np.int32) - 32, -32)
    with _errstate():
        dq = _fp16_round(d)[:, None] * sc.astype(F)
        requant = np.clip(_nint(x.reshape(nb, 16, 16) / dq[..., None]), -4, 3) + 4
        L = np.where((dq != 0)[..., None], requant.astype(F), L).reshape(nb, QK_K).astype(np.uint8)
    return pack_q3_k(L, l6, d)


def pack_q3_k(L: np.ndarray, l6: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Q3_K blocks from the levels 0..7 (nb, 256), the 6-bit scale codes (nb, 16) and d (also `fast_quantize`'s)."""
    nb = L.shape[0]
    packed = np.zeros((nb, 12), dtype=np.uint8)
    packed[:, 0:8] = (l6[:, 0:8] & 0x0F) | ((l6[:, 8:16] & 0x0F) << 4)
    hi = l6 >> 4
    packed[:, 8:12] = hi[:, 0:4] | (hi[:, 4:8] << 2) | (hi[:, 8:12] << 4) | (hi[:, 12:16] << 6)
    high = L > 3
    L = np.where(high, L - 4, L)
    hb = high.reshape(nb, 8, 32).astype(np.uint8) << np.arange(8, dtype=np.uint8)[None, :, None]
    hmask = np.bitwise_or.reduce(hb, axis=1)
    return np.concatenate([hmask, _pack_crumbs(L), packed, _fp16_bits(d)], axis=1)


def _k_scales(x: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int):
    """Shared first half of Q4_K / Q5_K: sub-block scales and mins, their 6-bit codes and the requantized L."""
    nb = x.shape[0]
    xt = _k_groups_t(x, 32)
    wt = np.multiply(xt, xt)
    av_x = np.sqrt(_sum_rows(wt) / F(32))
    np.abs(xt, out=wt)
    wt += _fill(np.empty_like(wt), av_x)  # av_x + fabsf(x)
    scales, mins, levels = _make_qkx2_quants_t(xt, wt, nmax, rmin, rdelta, nstep, False)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    max_scale = np.maximum(scales.max(axis=1), F(0))
    max_min = np.maximum(mins.max(axis=1), F(0))
    with _errstate():
        inv_scale = np.where(max_scale > 0, F(63) / max_scale, F(0)).astype(F)
        inv_min = np.where(max_min > 0, F(63) / max_min, F(0)).astype(F)
        ls = np.minimum(_nint(inv_scale[:, None] * scales) & 0xFF, 63).astype(np.uint8)
        lm = np.minimum(_nint(inv_min[:, None] * mins) & 0xFF, 63).astype(np.uint8)
        d = (max_scale / F(63)).astype(F)
        dmin = (max_min / F(63)).astype(F)
        dq = (_fp16_round(d)[:, None] * ls.astype(F)).reshape(-1)
        dm = (_fp16_round(dmin)[:, None] * lm.astype(F)).reshape(-1)
        B = _fill(np.empty_like(wt), dm)
        np.add(xt, B, out=wt)
        wt /= _fill(B, dq)
        L = _requant_t(wt, 0, nmax, dq, levels)
    return d, dmin, ls, lm, _untranspose_levels(L, nb)


def _pack_k4_scales(ls: np.ndarray, lm: np.ndarray) -> np.ndarray:
    """The 12 bytes holding the 8 six-bit scale and min codes of a Q4_K / Q5_K block."""
    packed = np.empty((ls.shape[0], 12), dtype=np.uint8)
    packed[:, 0:4] = ls[:, 0:4] | ((ls[:, 4:8] >> 4) << 6)
    packed[:, 4:8] = lm[:, 0:4] | ((lm[:, 4:8] >> 4) << 6)
    packed[:, 8:12] = (ls[:, 4:8] & 0x0F) | ((lm[:, 4:8] & 0x0F) << 4)
    return packed


def pack_q4_k(d: np.ndarray, dmin: np.ndarray, ls: np.ndarray, lm: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Q4_K blocks from d, dmin, the scale/min codes (nb, 8) and the levels 0..15 (also `fast_quantize`'s)."""
    qs = _pack_nibbles(L.reshape(-1, 64), 64).reshape(L.shape[0], 128)
    return np.concatenate([_fp16_bits(d), _fp16_bits(dmin), _pack_k4_scales(ls, lm), qs], axis=1)


def pack_q5_k(d: np.ndarray, dmin: np.ndarray, ls: np.ndarray, lm: np.ndarray, L: np.ndarray) -> np.ndarray:
    """Q5_K blocks from d, dmin, the scale/min codes (nb, 8) and the levels 0..31 (also `fast_quantize`'s)."""
    nb = L.shape[0]
    high = (L >> 4).reshape(nb, 8, 32)  # sub-block s -> bit s of qh[l]
    qh = np.bitwise_or.reduce(high << np.arange(8, dtype=np.uint8)[None, :, None], axis=1)
    qs = _pack_nibbles((L & 0x0F).reshape(-1, 64), 64).reshape(nb, 128)
    return np.concatenate([_fp16_bits(d), _fp16_bits(dmin), _pack_k4_scales(ls, lm), qh, qs], axis=1)


def _q4_k(x: np.ndarray) -> np.ndarray:
    return pack_q4_k(*_k_scales(x, 15, -1.0, 0.1, 20))


def _q5_k(x: np.ndarray) -> np.ndarray:
    return pack_q5_k(*_k_scales(x, 31, -0.5, 0.1, 15))


def _q6_k(x: np.ndarray) -> np.ndarray:
    nb = x.shape[0]
    xt = _k_groups_t(x, 16)
    scales, _, levels = _make_qx_quants_rmse1_t(x.reshape(-1, 16), xt, 32)
    scales = scales.reshape(nb, 16)
    max_abs, max_scale = _amax_signed(scales)
    empty = max_abs < GROUP_MAX_EPS
    with _errstate():
        iscale = F(-128) / max_scale
        d = np.where(empty, F(0), F(1) / iscale).astype(F)
        sc = np.where(empty[:, None], 0, np.minimum(127, _nint(iscale[:, None] * scales))).astype(np.int8)
        dq = (_fp16_round(d)[:, None] * sc.astype(F)).reshape(-1)
        v = np.divide(xt, _fill(np.empty_like(xt), dq))
        L = _requant_t(v, -32, 31, dq, levels)
    L += F(32)
    return pack_q6_k(_untranspose_levels(L, nb), sc, d, empty)


def pack_q6_k(L: np.ndarray, sc: np.ndarray, d: np.ndarray, empty: np.ndarray) -> np.ndarray:
    """Q6_K blocks from the levels 0..63 (nb, 256), the int8 scales (nb, 16), d, and the all-zero blocks (written
    as zeros) (also `fast_quantize`'s)."""
    nb = L.shape[0]
    L = L.reshape(nb, 2, 4, 32)
    # element 128h + 32g + l: low nibble into ql[64h + 32(g%2) + l] (nibble g//2), high 2 bits into qh[32h + l]
    low = L & 0x0F
    ql = np.concatenate([low[:, :, 0] | (low[:, :, 2] << 4), low[:, :, 1] | (low[:, :, 3] << 4)], axis=2)
    hi = L >> 4
    qh = hi[:, :, 0] | (hi[:, :, 1] << 2) | (hi[:, :, 2] << 4) | (hi[:, :, 3] << 6)
    out = np.concatenate([ql.reshape(nb, 128), qh.reshape(nb, 64), sc.view(np.uint8), _fp16_bits(d)], axis=1)
    out[empty] = 0
    return out


# ----------------------------------------------------------------------------------------------- IQ4


def _iq4_fit(x: np.ndarray, ntry: int) -> tuple[np.ndarray, np.ndarray]:
    """The per-32 scale search of quantize_row_iq4_nl_impl without importance weights: (scale, all-zero)."""
    amax, mx = _amax_signed(x)
    zero = amax < GROUP_MAX_EPS
    xt = np.ascontiguousarray(x.T)
    w = xt * xt
    levels = IQ4_NL_VALUES.astype(F)

    def fit(inv: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = levels[_best_index_iq4(inv * xt)]
        wq = w * q
        return _sum_rows(wq * xt), _sum_rows(wq * q)

    with _errstate():
        d = (-mx if ntry > 0 else mx) / levels[0]
        sumqx, sumq2 = fit(F(1) / d)
        d = np.where(sumq2 > 0, sumqx / sumq2, F(0))
        best = d * sumqx
        for itry in range(-ntry, ntry + 1):
            sumqx, sumq2 = fit(F(itry + int(IQ4_NL_VALUES[0])) / mx)
            take = (sumq2 > 0) & (sumqx * sumqx > best * sumq2)
            d = np.where(take, sumqx / sumq2, d)
            best = np.where(take, d * sumqx, best)
    return np.where(zero, F(0), d).astype(F), zero


def _iq4_nl(x: np.ndarray) -> np.ndarray:
    # What llama-quantize runs (ggml_quantize_chunk -> quantize_iq4_nl): the search with ntry = 7, then the
    # levels picked again for the final scale. (quantize_row_iq4_nl_ref, ntry = -1, is only ggml's on-the-fly path.)
    d, _ = _iq4_fit(x, 7)
    with _errstate():
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
        L = _best_index_iq4(inv[:, None] * x)
    return np.concatenate([_fp16_bits(d), _pack_nibbles(L, 32)], axis=1)


def _iq4_xs(x: np.ndarray) -> np.ndarray:
    nb = x.shape[0]
    scales, _ = _iq4_fit(x.reshape(-1, 32), 7)
    scales = scales.reshape(nb, 8)
    _, max_scale = _amax_signed(scales)
    max_scale = np.where(np.abs(max_scale) > 0, max_scale, F(0))
    with _errstate():
        d = (-max_scale / F(32)).astype(F)
        inv = np.where(d != 0, F(1) / d, F(0)).astype(F)
        ls = np.clip(_nint(inv[:, None] * scales), -32, 31)
        dl = d[:, None] * ls.astype(F)
        idl = np.where(dl != 0, F(1) / dl, F(0)).astype(F)
        L = _best_index_iq4(idl[..., None] * x.reshape(nb, 8, 32))
    ls = (ls + 32).astype(np.uint16)
    scales_l = ((ls[:, 0::2] & 0x0F) | ((ls[:, 1::2] & 0x0F) << 4)).astype(np.uint8)
    scales_h = np.bitwise_or.reduce((ls >> 4) << (2 * np.arange(8, dtype=np.uint16))[None, :], axis=1)
    scales_h = scales_h.astype("<u2").view(np.uint8).reshape(nb, 2)
    qs = _pack_nibbles(L.reshape(-1, 32), 32).reshape(nb, 128)
    return np.concatenate([_fp16_bits(d), scales_h, scales_l, qs], axis=1)


# ----------------------------------------------------------------------------------------------- floats


def _f32(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x, dtype="<f4").view(np.uint8).reshape(x.shape[0], -1)


def _f16(x: np.ndarray) -> np.ndarray:
    with _errstate():
        return np.ascontiguousarray(x.astype("<f2")).view(np.uint8).reshape(x.shape[0], -1)


def _bf16(x: np.ndarray) -> np.ndarray:
    """ggml_compute_fp32_to_bf16: NaN kept (made quiet), otherwise round to nearest even."""
    n = np.ascontiguousarray(x, dtype="<f4").view(np.uint32).astype(np.uint64)
    is_nan = (n & 0x7FFFFFFF) > 0x7F800000
    rounded = (n + (0x7FFF + ((n >> 16) & 1))) >> 16
    quiet = ((n >> 16) | 64) & 0xFFFF
    out = np.where(is_nan, quiet, rounded).astype("<u2")
    return out.view(np.uint8).reshape(x.shape[0], -1)


QUANTIZERS: dict[GGMLType, BlockEncoder] = {
    GGMLType.F32: _f32,
    GGMLType.F16: _f16,
    GGMLType.BF16: _bf16,
    GGMLType.Q8_0: _q8_0,
    GGMLType.Q5_1: _q5_1,
    GGMLType.Q5_0: _q5_0,
    GGMLType.Q4_1: _q4_1,
    GGMLType.Q4_0: _q4_0,
    GGMLType.Q6_K: _q6_k,
    GGMLType.Q5_K: _q5_k,
    GGMLType.Q4_K: _q4_k,
    GGMLType.Q3_K: _q3_k,
    GGMLType.Q2_K: _q2_k,
    GGMLType.IQ4_NL: _iq4_nl,
    GGMLType.IQ4_XS: _iq4_xs,
}

# The types whose searches are full-array passes (SEARCH_CHUNK_ELEMENTS). Q3_K's refinement loop steps through
# the 16 values of its groups one at a time, with vectors of one value per group: larger chunks suit it.
_SEARCH_TYPES = frozenset({GGMLType.Q6_K, GGMLType.Q5_K, GGMLType.Q4_K, GGMLType.Q2_K})


def _as_blocks(array: np.ndarray, t: GGMLType) -> tuple[np.ndarray, tuple[int, ...]]:
    """The checked float32 (n_blocks, block_size) view of `array` and the shape of its quantized bytes."""
    info = TYPE_INFO[t]
    array = np.asarray(array)
    if array.ndim == 0:
        array = array.reshape(1)
    if not (np.issubdtype(array.dtype, np.floating) or np.issubdtype(array.dtype, np.integer)):
        raise AtelierError(f"cannot quantize an array of {array.dtype}; give float values")
    row = array.shape[-1]
    if row % info.block_size:
        raise AtelierError(
            f"rows of {row} values are not a whole number of {info.name} blocks of {info.block_size}; "
            "use a float type (F16/BF16/F32) or a type with a smaller block for this tensor"
        )
    out_shape = (*array.shape[:-1], row // info.block_size * info.type_size)
    x = np.ascontiguousarray(array, dtype=F).reshape(-1, info.block_size)
    if not info.is_float and x.size and not np.isfinite(x).all():
        raise AtelierError(f"the tensor holds NaN or infinite values and cannot be quantized to {info.name}")
    return x, out_shape


def _encode_blocks(x: np.ndarray, t: GGMLType) -> np.ndarray:
    """Checked (n_blocks, block_size) float32 -> (n_blocks, type_size) bytes, chunk by chunk."""
    info = TYPE_INFO[t]
    encode = QUANTIZERS[t]
    out = np.empty((x.shape[0], info.type_size), dtype=np.uint8)
    chunk = min(CHUNK_ELEMENTS, SEARCH_CHUNK_ELEMENTS) if t in _SEARCH_TYPES else CHUNK_ELEMENTS
    step = max(1, chunk // info.block_size)
    for start in range(0, x.shape[0], step):
        out[start : start + step] = encode(x[start : start + step])
    return out


def quantize(array: np.ndarray, ggml_type: object) -> np.ndarray:
    """Quantize a float array (rows along the last axis) into ggml blocks.

    Returns uint8 of shape (*array.shape[:-1], bytes_per_row) - the byte layout `gguf.GGUFWriter` takes with
    `raw_dtype`. The row length must be a multiple of the type's block size; quantized types refuse NaN/inf.
    """
    t = to_ggml_type(ggml_type)
    x, out_shape = _as_blocks(array, t)
    return _encode_blocks(x, t).reshape(out_shape)


# ----------------------------------------------------------------------------------------------- processes

# The types worth sending to worker processes: the others are memory bound in numpy (hundreds of MB/s), so
# shipping their float32 input to a worker would cost more than quantizing it here.
PARALLEL_TYPES = _SEARCH_TYPES | {GGMLType.Q3_K, GGMLType.IQ4_NL, GGMLType.IQ4_XS}
# Values per worker task: a fraction of a second of work, large enough that sending the float32 input through a
# pipe (~1% of the time) does not matter, small enough to keep both cores busy to the end of a tensor.
PARALLEL_TASK_ELEMENTS = 1 << 22


def cpu_workers() -> int:
    """`ATELIER_QUANT_WORKERS` if set, else the CPUs this process may run on."""
    wanted = os.environ.get("ATELIER_QUANT_WORKERS", "").strip()
    if wanted:
        try:
            return max(1, int(wanted))
        except ValueError:
            raise AtelierError(f"ATELIER_QUANT_WORKERS={wanted!r} is not a number; set it to a worker count") from None
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def _worker_init() -> None:
    # Ctrl-C reaches the whole process group: only the parent reacts (it cancels the work and removes its partial
    # file); a worker that also raised KeyboardInterrupt would only print a traceback
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _encode_task(x: np.ndarray, t: GGMLType) -> np.ndarray:
    return _encode_blocks(x, t)


def _ready_task(seconds: float) -> int:
    time.sleep(seconds)  # keeps this worker busy so that the next task starts (and imports) another one
    return os.getpid()


class ParallelQuantizer:
    """`quantize` over worker processes: the blocks of a tensor are cut into tasks quantized concurrently.

    The K-quant searches run on one core in numpy (each numpy call is short, so threads would mostly wait for
    the GIL): a machine's cores are used through processes. They are spawned once (not forked: the parent has
    torch's thread pools) and reused for every tensor. The bytes are those of `quantize` - the same function runs
    on the same blocks, only elsewhere. `submit` returns at once with a function that waits for and assembles
    the result, so the caller can read the next tensor while the workers quantize this one. Types outside
    PARALLEL_TYPES and small tensors are quantized in this process.
    """

    def __init__(self, workers: int | None = None, task_elements: int | None = None) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        self.workers = workers or cpu_workers()
        self.task_elements = task_elements or PARALLEL_TASK_ELEMENTS
        self._pool = ProcessPoolExecutor(
            self.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init
        )

    def submit(self, array: np.ndarray, ggml_type: object) -> Callable[[], np.ndarray]:
        t = to_ggml_type(ggml_type)
        x, out_shape = _as_blocks(array, t)
        if t not in PARALLEL_TYPES or x.size < 2 * self.task_elements:
            out = _encode_blocks(x, t).reshape(out_shape)
            return lambda: out
        step = max(1, self.task_elements // x.shape[1])
        n_blocks = x.shape[0]
        futures = [self._pool.submit(_encode_task, x[i : i + step], t) for i in range(0, x.shape[0], step)]
        del x

        def result() -> np.ndarray:
            from concurrent.futures.process import BrokenProcessPool

            out = np.empty((n_blocks, TYPE_INFO[t].type_size), dtype=np.uint8)
            at = 0
            try:
                for f in futures:
                    part = f.result()
                    out[at : at + part.shape[0]] = part
                    at += part.shape[0]
            except BrokenProcessPool:
                raise AtelierError(
                    "a quantizer worker process ended unexpectedly (out of memory?); run again with fewer "
                    "processes, e.g. ATELIER_QUANT_WORKERS=1"
                ) from None
            futures.clear()
            return out.reshape(out_shape)

        return result

    def __call__(self, array: np.ndarray, ggml_type: object) -> np.ndarray:
        return self.submit(array, ggml_type)()

    def worker_pids(self) -> list[int]:
        return list(self._pool._processes or ())

    def start(self) -> None:
        """Start every worker now (each imports numpy and this package: a second or two) rather than on first use."""
        for f in [self._pool.submit(_ready_task, 0.05) for _ in range(self.workers)]:
            f.result(timeout=300)

    def close(self) -> None:
        """Stop the workers; queued tasks are dropped (those running finish: a task is a few seconds at most)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParallelQuantizer:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
