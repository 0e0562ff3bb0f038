"""The K-quant scale searches of `quantize.py` in torch: the same bytes, on a GPU when there is one.

`quantize.py` transcribes ggml's `quantize_row_*_ref` block-parallel in numpy; this module runs the expensive part
of the K-quants (the per-group scale searches `make_qkx2_quants`, `make_q3_quants`, `make_qx_quants` and the
requantization with the stored fp16 scales) as torch tensor operations, keeping every float32 operation and its
order: sums that ggml accumulates left to right are added row by row (never `torch.sum`, whose blocked summation
rounds differently), rounding is `torch.round` (half to even, ggml's `nearest_int`), no fused multiply-add is ever
requested. Ties are broken as ggml's loops do (first minimum/maximum). The cheap bit packing is numpy's, reused.

On CUDA the whole search runs on the GPU; on CPU numpy stays the default because it is faster there (torch's
per-op overhead and row-by-row sums cost more than its threads win on 2 cores). The bytes are tested equal to
`quantize.py`'s (and so to ggml's golden digests) on CPU torch; on another device each type is checked once per
run against numpy on a probe and falls back to numpy on any difference. Three torch behaviours that would change
bytes are avoided: `c / tensor` is `reciprocal * c` (two roundings), CUDA divides by a python scalar through its
reciprocal, and torch's float32 CPU sqrt is not correctly rounded. Types without a torch path here (the
32-blocks, floats, IQ4) go to `quantize.py`, which is already fast for them.

`quantize(array, ggml_type)` is a drop-in for `quantize.quantize`; `ATELIER_QUANT_DEVICE=numpy|cpu|cuda` picks
the engine (default: cuda when available, else numpy).
"""

from __future__ import annotations

import logging
import os

import numpy as np
import torch

from .quantize import GROUP_MAX_EPS, _as_blocks, _fp16_bits, _pack_crumbs, pack_q3_k, pack_q4_k, pack_q5_k, pack_q6_k
from .quantize import quantize as numpy_quantize
from .types import QK_K, TYPE_INFO, GGMLType, to_ggml_type

logger = logging.getLogger(__name__)

F32 = torch.float32
EPS = float(GROUP_MAX_EPS)
# Values per torch call: large enough to amortize per-op overhead, small enough for ~25 float32 temporaries.
CHUNK_ELEMENTS = 1 << 21


def _f(v: float) -> float:
    """A constant exactly as ggml's float32 literal (so the python float handed to torch is that float32)."""
    return float(np.float32(v))


# ----------------------------------------------------------------------------------------------- helpers


def _sum_rows(at: torch.Tensor) -> torch.Tensor:
    """Left-to-right float32 sum over dim 0 of a (n, M) tensor (ggml's `s += a[i]` loop)."""
    s = torch.zeros(at.shape[1:], dtype=F32, device=at.device)
    for row in at:
        s += row
    return s


def _first_min(x: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, -1, torch.argmin(x, dim=-1, keepdim=True))[..., 0]


def _first_max(x: torch.Tensor) -> torch.Tensor:
    return torch.gather(x, -1, torch.argmax(x, dim=-1, keepdim=True))[..., 0]


def _amax_signed(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    ax = x.abs()
    i = torch.argmax(ax, dim=-1, keepdim=True)
    return torch.gather(ax, -1, i)[..., 0], torch.gather(x, -1, i)[..., 0]


def _round_clip(a: torch.Tensor, lo: int, hi: int) -> torch.Tensor:
    return torch.round(a).clamp_(lo, hi)


def _nint(a: torch.Tensor) -> torch.Tensor:
    r = torch.round(a)
    r = torch.where(torch.isfinite(r), r, torch.zeros((), dtype=F32, device=a.device))
    return r.clamp_(-(1 << 30), 1 << 30).to(torch.int32)


def _fp16_round(v: torch.Tensor) -> torch.Tensor:
    return v.to(torch.float16).to(F32)


def _rdiv(c: float, t: torch.Tensor) -> torch.Tensor:
    """c / t as one float32 division (`c / t` on a tensor is `t.reciprocal() * c` in torch: rounded twice)."""
    return torch.div(torch.full((), c, dtype=F32, device=t.device), t)


def _div(t: torch.Tensor, c: float) -> torch.Tensor:
    """t / c as a true division (CUDA turns division by a python scalar into a multiply by its reciprocal)."""
    return torch.div(t, torch.full((), c, dtype=F32, device=t.device))


def _max0(v: torch.Tensor) -> torch.Tensor:
    """np.maximum(v, 0): -0.0 becomes +0.0 (torch.clamp keeps -0.0, and the fp16 sign bit would differ)."""
    return torch.where(torch.isnan(v) | (v > 0), v, _zero(v))


def _zero(like: torch.Tensor) -> torch.Tensor:
    return torch.zeros((), dtype=like.dtype, device=like.device)


def _np(t: torch.Tensor) -> np.ndarray:
    return t.detach().cpu().numpy()


# ----------------------------------------------------------------------------------------------- searches


def _make_qkx2_quants(x, w, nmax, rmin, rdelta, nstep, use_mad):
    """quantize.py's `_make_qkx2_quants` (ggml make_qkx2_quants) for each row of x (M, n)."""
    fmax = _f(nmax)
    zero = _zero(x)
    mn = _first_min(x)
    mn = torch.where(mn > 0, zero, mn)
    mx = _first_max(x)
    xt = x.T.contiguous()
    wt = w.T.contiguous()
    sum_w = _sum_rows(wt)
    sum_x = _sum_rows(wt * xt)
    degenerate = mx == mn

    def err(scale, L, m):
        diff = scale * L + m - xt
        diff = diff.abs() if use_mad else diff * diff
        return _sum_rows(wt * diff)

    iscale = _rdiv(fmax, mx - mn)
    scale = _rdiv(1.0, iscale)
    L = _round_clip(iscale * (xt - mn), 0, nmax)
    best = err(scale, L, mn)
    for step in range(nstep + 1):
        factor = float(np.float32(rmin) + np.float32(rdelta) * np.float32(step) + np.float32(fmax))
        iscale = _rdiv(factor, mx - mn)  # mn as updated by the steps so far, as ggml
        Laux = _round_clip(iscale * (xt - mn), 0, nmax)
        wl = wt * Laux
        sum_l = _sum_rows(wl)
        sum_l2 = _sum_rows(wl * Laux)
        sum_xl = _sum_rows(wl * xt)
        D = sum_w * sum_l2 - sum_l * sum_l
        this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
        this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
        clamp = this_min > 0
        this_min = torch.where(clamp, zero, this_min)
        this_scale = torch.where(clamp, sum_xl / sum_l2, this_scale)
        cur = err(this_scale, Laux, this_min)
        better = (D > 0) & (cur < best) & ~degenerate
        L = torch.where(better, Laux, L)
        best = torch.where(better, cur, best)
        scale = torch.where(better, this_scale, scale)
        mn = torch.where(better, this_min, mn)
    scale = torch.where(degenerate, zero, scale)
    L = torch.where(degenerate, zero, L)
    return scale, -mn, L.T.contiguous()


def _make_q3_quants(x, nmax):
    """quantize.py's `_make_q3_quants` (ggml make_q3_quants, do_rmse) for each row of x (M, n)."""
    M, n = x.shape
    zero = _zero(x)
    amax, mx = _amax_signed(x)
    is_zero = amax < EPS
    xt = x.T.contiguous()
    iscale = _rdiv(_f(-nmax), mx)
    L = _round_clip(iscale * xt, -nmax, nmax - 1)
    w = xt * xt
    wx = w * xt
    sumlx = _sum_rows(wx * L)
    suml2 = _sum_rows(w * L * L)
    active = ~is_zero
    for _ in range(5):
        changed = torch.zeros(M, dtype=torch.bool, device=x.device)
        for i in range(n):
            xi, wi, wxi, Li = xt[i], w[i], wx[i], L[i]
            slx = sumlx - wxi * Li
            sl2 = suml2 - wi * Li * Li
            new_l = _round_clip(xi * sl2 / slx, -nmax, nmax - 1)
            slx_n = slx + wxi * new_l
            sl2_n = sl2 + wi * new_l * new_l
            take = active & (slx > 0) & (new_l != Li) & (sl2_n > 0) & (slx_n * slx_n * suml2 > sumlx * sumlx * sl2_n)
            L[i] = torch.where(take, new_l, Li)
            sumlx = torch.where(take, slx_n, sumlx)
            suml2 = torch.where(take, sl2_n, suml2)
            changed |= take
        active &= changed
        if not bool(active.any()):
            break
    scale = torch.where(suml2 > 0, sumlx / suml2, zero)
    L = torch.where(is_zero[:, None], zero, L.T + _f(nmax))
    return torch.where(is_zero, zero, scale), L


def _make_qx_quants_rmse1(x, nmax):
    """quantize.py's `_make_qx_quants_rmse1` (ggml make_qx_quants, rmse_type 1) for each row of x (M, n)."""
    zero = _zero(x)
    amax, mx = _amax_signed(x)
    is_zero = amax < EPS
    xt = x.T.contiguous()
    w = xt * xt
    wx = w * xt

    def sums(iscale):
        lv = _round_clip(iscale * xt, -nmax, nmax - 1)
        return lv, _sum_rows(wx * lv), _sum_rows(w * lv * lv)

    lv, sumlx, suml2 = sums(_rdiv(_f(-nmax), mx))
    L = lv + _f(nmax)
    scale = torch.where(suml2 != 0, sumlx / suml2, zero)
    best = scale * sumlx
    for step in range(-9, 10):
        if step == 0:
            continue
        factor = float(-(np.float32(nmax) + np.float32(0.1) * np.float32(step)))
        lv, sumlx, suml2 = sums(_rdiv(factor, mx))
        take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
        L = torch.where(take, lv + _f(nmax), L)
        scale = torch.where(take, sumlx / suml2, scale)
        best = torch.where(take, scale * sumlx, best)
    L = torch.where(is_zero[:, None], zero, L.T)
    return torch.where(is_zero, zero, scale), L


# ----------------------------------------------------------------------------------------------- K-quants


def _k_scales(x, nmax, rmin, rdelta, nstep):
    """quantize.py's `_k_scales` (Q4_K / Q5_K): returns numpy (d, dmin, packed scales, L)."""
    nb = x.shape[0]
    zero = _zero(x)
    g = x.reshape(-1, 32)
    gt = g.T.contiguous()
    # correctly rounded sqrt: torch's float32 CPU sqrt is off by one ulp for ~20% of inputs; a float64 sqrt
    # rounded to float32 is exact (53 >= 2 * 24 + 2 bits)
    av_x = torch.sqrt(_div(_sum_rows(gt * gt), 32.0).double()).to(F32)
    w = av_x[:, None] + g.abs()
    scales, mins, L = _make_qkx2_quants(g, w, nmax, rmin, rdelta, nstep, False)
    scales, mins = scales.reshape(nb, 8), mins.reshape(nb, 8)
    max_scale = _max0(scales.max(dim=1).values)
    max_min = _max0(mins.max(dim=1).values)
    inv_scale = torch.where(max_scale > 0, _rdiv(63.0, max_scale), zero)
    inv_min = torch.where(max_min > 0, _rdiv(63.0, max_min), zero)
    ls = torch.clamp(_nint(inv_scale[:, None] * scales) & 0xFF, max=63)
    lm = torch.clamp(_nint(inv_min[:, None] * mins) & 0xFF, max=63)
    d = _div(max_scale, 63.0)
    dmin = _div(max_min, 63.0)
    dq = _fp16_round(d)[:, None] * ls.to(F32)
    dm = _fp16_round(dmin)[:, None] * lm.to(F32)
    xs = x.reshape(nb, 8, 32)
    requant = _nint((xs + dm[..., None]) / dq[..., None]).clamp_(0, nmax).to(F32)
    L = torch.where((dq != 0)[..., None], requant, L.reshape(nb, 8, 32)).reshape(nb, QK_K).to(torch.uint8)
    return _np(d), _np(dmin), _np(ls).astype(np.uint8), _np(lm).astype(np.uint8), _np(L)


def _q4_k(x: torch.Tensor) -> np.ndarray:
    return pack_q4_k(*_k_scales(x, 15, -1.0, 0.1, 20))


def _q5_k(x: torch.Tensor) -> np.ndarray:
    return pack_q5_k(*_k_scales(x, 31, -0.5, 0.1, 15))


def _q2_k(x: torch.Tensor) -> np.ndarray:
    nb = x.shape[0]
    zero = _zero(x)
    g = x.reshape(-1, 16)
    scales, mins, L = _make_qkx2_quants(g, g.abs(), 3, -0.5, 0.1, 15, True)
    scales, mins, L = scales.reshape(nb, 16), mins.reshape(nb, 16), L.reshape(nb, QK_K)
    max_scale = _max0(scales.max(dim=1).values)
    max_min = _max0(mins.max(dim=1).values)
    has_s = max_scale > 0
    ls = torch.where(has_s[:, None], _nint(_rdiv(15.0, max_scale)[:, None] * scales), 0)
    d = torch.where(has_s, _div(max_scale, 15.0), zero)
    has_m = max_min > 0
    lm = torch.where(has_m[:, None], _nint(_rdiv(15.0, max_min)[:, None] * mins), 0)
    dmin = torch.where(has_m, _div(max_min, 15.0), zero)
    sc = (ls | (lm << 4)) & 0xFF
    dq = _fp16_round(d)[:, None] * (sc & 0x0F).to(F32)
    dm = _fp16_round(dmin)[:, None] * (sc >> 4).to(F32)
    xs = x.reshape(nb, 16, 16)
    requant = _nint((xs + dm[..., None]) / dq[..., None]).clamp_(0, 3).to(F32)
    L = torch.where((dq != 0)[..., None], requant, L.reshape(nb, 16, 16)).reshape(nb, QK_K)
    sc_np = _np(sc).astype(np.uint8)
    return np.concatenate([sc_np, _pack_crumbs(_np(L)), _fp16_bits(_np(d)), _fp16_bits(_np(dmin))], axis=1)


def _q3_k(x: torch.Tensor) -> np.ndarray:
    nb = x.shape[0]
    zero = _zero(x)
    scales, L = _make_q3_quants(x.reshape(-1, 16), 4)
    scales, L = scales.reshape(nb, 16), L.reshape(nb, 16, 16)
    _, max_scale = _amax_signed(scales)
    has = max_scale != 0
    iscale = _rdiv(-32.0, max_scale)
    l6 = _nint(iscale[:, None] * scales).clamp_(-32, 31) + 32
    l6 = torch.where(has[:, None], l6, 0)
    d = torch.where(has, _rdiv(1.0, iscale), zero)
    sc = torch.where(has[:, None], l6 - 32, -32)
    dq = _fp16_round(d)[:, None] * sc.to(F32)
    requant = _nint(x.reshape(nb, 16, 16) / dq[..., None]).clamp_(-4, 3) + 4
    L = torch.where((dq != 0)[..., None], requant.to(F32), L).reshape(nb, QK_K).to(torch.uint8)
    return pack_q3_k(_np(L), _np(l6).astype(np.uint8), _np(d))


def _q6_k(x: torch.Tensor) -> np.ndarray:
    nb = x.shape[0]
    zero = _zero(x)
    scales, L = _make_qx_quants_rmse1(x.reshape(-1, 16), 32)
    scales, L = scales.reshape(nb, 16), L.reshape(nb, 16, 16)
    max_abs, max_scale = _amax_signed(scales)
    empty = max_abs < EPS
    iscale = _rdiv(-128.0, max_scale)
    d = torch.where(empty, zero, _rdiv(1.0, iscale))
    sc = torch.where(empty[:, None], 0, torch.clamp(_nint(iscale[:, None] * scales), max=127))
    dq = _fp16_round(d)[:, None] * sc.to(F32)
    requant = _nint(x.reshape(nb, 16, 16) / dq[..., None]).clamp_(-32, 31) + 32
    L = torch.where((dq != 0)[..., None], requant.to(F32), L).reshape(nb, 2, 4, 32).to(torch.uint8)
    return pack_q6_k(_np(L), _np(sc).astype(np.int8), _np(d), _np(empty))


TORCH_QUANTIZERS = {
    GGMLType.Q2_K: _q2_k,
    GGMLType.Q3_K: _q3_k,
    GGMLType.Q4_K: _q4_k,
    GGMLType.Q5_K: _q5_k,
    GGMLType.Q6_K: _q6_k,
}


def default_device() -> str:
    """`ATELIER_QUANT_DEVICE` (numpy, cpu, cuda) or cuda when available, else numpy.

    On CPU numpy is the faster engine (measured 5.4 vs 3.9 MB/s for Q4_K single-threaded before numpy's searches
    were reworked; ~25 MB/s per process since, and `convert` runs one process per core), so the torch path is used
    on CPU only when asked for.
    """
    wanted = os.environ.get("ATELIER_QUANT_DEVICE", "").strip().lower()
    if wanted:
        return wanted
    return "cuda" if torch.cuda.is_available() else "numpy"


_VERIFIED: dict[tuple[str, GGMLType], bool] = {}


def engine_matches(device: str, t: GGMLType) -> bool:
    """Whether the torch path on `device` makes numpy's bytes for `t` on a fixed probe (checked once per run).

    A safety net for devices the test suite cannot reach (a GPU whose kernels round differently): on a
    mismatch the numpy quantizer is used and a warning says so.
    """
    key = (device, t)
    if key not in _VERIFIED:
        rng = np.random.default_rng(12345)
        probe = (rng.standard_normal((16, 1024)) * rng.choice([1e-4, 0.02, 3.0], (16, 1))).astype(np.float32)
        probe[0, :256] = 0
        probe[1, 5] = 40.0
        with torch.inference_mode():
            got = TORCH_QUANTIZERS[t](torch.from_numpy(probe.reshape(-1, TYPE_INFO[t].block_size)).to(device))
        ok = bool(np.array_equal(got.reshape(16, -1), numpy_quantize(probe, t)))
        if not ok:
            logger.warning("the torch %s quantizer on %s differs from ggml's bytes; using numpy", t.name, device)
        _VERIFIED[key] = ok
    return _VERIFIED[key]


def quantize(array: np.ndarray, ggml_type: object, device: str | None = None) -> np.ndarray:
    """`quantize.quantize` with the K-quant searches in torch (same bytes); other types go to numpy."""
    t = to_ggml_type(ggml_type)
    device = device or default_device()
    encode = TORCH_QUANTIZERS.get(t)
    if encode is None or device == "numpy" or not engine_matches(device, t):
        return numpy_quantize(array, t)
    info = TYPE_INFO[t]
    x, out_shape = _as_blocks(array, t)  # the same checks and float32 block view as the numpy path
    out = np.empty((x.shape[0], info.type_size), dtype=np.uint8)
    step = max(1, CHUNK_ELEMENTS // info.block_size)
    with torch.inference_mode():
        for start in range(0, x.shape[0], step):
            chunk = torch.from_numpy(x[start : start + step]).to(device)
            out[start : start + step] = encode(chunk)
    return out.reshape(out_shape)


__all__ = ["TORCH_QUANTIZERS", "default_device", "quantize"]
