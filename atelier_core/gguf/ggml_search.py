"""ggml's building blocks for the numpy quantizers: rounding and bit packing, and the per-block scale searches
(``make_qkx2_quants``, ``make_q3_quants``, ``make_qx_quants``, IQ4's nearest level), vectorized over blocks.

``quantize`` builds each GGML type's encoder from these; see its docstring for the float32 operation order they keep.
"""

from __future__ import annotations

import numpy as np

from . import types
from .types import QK_K

F = np.float32
GROUP_MAX_EPS = F(1e-15)
IQ4_NL_VALUES = np.array(types.IQ4_NL_VALUES, dtype=np.int32)
# best_index_int8: level i is picked once 2x reaches val[i-1] + val[i] (exact in float32)
_IQ4_MIDSUMS = (IQ4_NL_VALUES[:-1] + IQ4_NL_VALUES[1:]).astype(F)


# ----------------------------------------------------------------------------------------------- helpers


def _nint(a: np.ndarray) -> np.ndarray:
    """ggml's nearest_int: round half to even, as an int32 array (non-finite values become 0)."""
    r = np.rint(a)
    r = np.where(np.isfinite(r), r, 0)
    return np.clip(r, -(1 << 30), 1 << 30).astype(np.int32)


def _fp16_bits(v: np.ndarray) -> np.ndarray:
    """float32 -> the 2 little-endian bytes of its fp16 (round to nearest even, like GGML_FP32_TO_FP16)."""
    with np.errstate(over="ignore"):
        return np.ascontiguousarray(v.astype("<f2")).view(np.uint8).reshape(*v.shape, 2)


def _fp16_round(v: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        return v.astype(np.float16).astype(F)


def _amax_signed(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(max |x|, the x where it occurs first) over the last axis, as ggml's `if (ax > amax)` loop picks it."""
    ax = np.abs(x)
    i = np.argmax(ax, axis=-1)[..., None]
    return np.take_along_axis(ax, i, axis=-1)[..., 0], np.take_along_axis(x, i, axis=-1)[..., 0]


def _first_min(x: np.ndarray) -> np.ndarray:
    """min over the last axis as a C `if (v < min)` loop finds it: the first one, so -0.0 vs 0.0 matches ggml."""
    return np.take_along_axis(x, np.argmin(x, axis=-1)[..., None], axis=-1)[..., 0]


def _first_max(x: np.ndarray) -> np.ndarray:
    return np.take_along_axis(x, np.argmax(x, axis=-1)[..., None], axis=-1)[..., 0]


def _pack_crumbs(L: np.ndarray) -> np.ndarray:
    """(n, 256) values 0..3 -> (n, 64) bytes: byte 32h + l holds L[128h + l + 32j] in bits 2j (ggml Q2_K/Q3_K)."""
    L = L.astype(np.uint8).reshape(-1, 2, 4, 32)
    return (L[:, :, 0] | (L[:, :, 1] << 2) | (L[:, :, 2] << 4) | (L[:, :, 3] << 6)).reshape(-1, 64)


def _pack_nibbles(L: np.ndarray, group: int) -> np.ndarray:
    """Per `group` elements: byte l holds L[l] (low) and L[l + group/2] (high)."""
    L = L.astype(np.uint8).reshape(-1, 2, group // 2)
    return (L[:, 0] | (L[:, 1] << 4)).reshape(L.shape[0], -1)


def _errstate():
    return np.errstate(divide="ignore", invalid="ignore", over="ignore")


# ----------------------------------------------------------------------------------------------- ggml helpers


def _sum_rows(at: np.ndarray) -> np.ndarray:
    """Left-to-right float32 sum over axis 0 of a (n, M) array, as ggml's `s = 0; for i: s += a[i]` loop.

    The helpers below work on transposed (element, group) arrays so that each step of such a loop is one
    contiguous add over all groups. numpy reduces a C-contiguous (n, M >= 2) array over axis 0 exactly so (row
    after row into the output), starting from row 0 instead of 0.0: adding +0.0 afterwards turns the only
    possible difference, a -0.0 sum, into ggml's +0.0. A single column (M = 1: one IQ4_NL block) or a
    non-contiguous array would make the reduced axis numpy's inner loop, which sums pairwise: those take the loop.
    """
    if at.ndim == 2 and at.shape[1] >= 2 and at.flags.c_contiguous:
        s = np.add.reduce(at, axis=0)
        s += F(0)
        return s
    s = np.zeros(at.shape[1:], dtype=F)
    for row in at:
        s += row
    return s


def _fill(buf: np.ndarray, v: np.ndarray) -> np.ndarray:
    """buf[...] = v (a per-group vector spread over the element axis) and return buf.

    numpy runs a binary ufunc with one broadcast (M,) operand ~10x slower than on two full arrays, while a
    broadcast assignment is as fast as a copy: spreading the vector first and then operating on full arrays is
    several times quicker than `xt - mn` with broadcasting.
    """
    buf[...] = v
    return buf


def _round_clip(a: np.ndarray, lo: int, hi: int) -> np.ndarray:
    """MAX(lo, MIN(hi, nearest_int(a))) kept as float32 (NaN only arises in groups that are masked out)."""
    r = np.rint(a)
    return np.clip(r, F(lo), F(hi), out=r)


def _round_clip_(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """`_round_clip` in place."""
    np.rint(a, out=a)
    return np.clip(a, lo, hi, out=a)


def _first_min_t(xt: np.ndarray) -> np.ndarray:
    """`_first_min` over axis 0 of a transposed (n, M) array.

    The minimum's value is unique except for the sign of a zero: where it is zero, the first zero of the column
    decides, as in ggml's `if (x[i] < min)` loop.
    """
    mn = np.minimum.reduce(xt, axis=0)
    cols = np.flatnonzero(mn == 0)
    if cols.size:
        sub = xt[:, cols]
        mn[cols] = sub[np.argmax(sub == 0, axis=0), np.arange(cols.size)]
    return mn


def _qkx2_levels(xt: np.ndarray, iscale: np.ndarray, mn: np.ndarray, nmax: int, out: np.ndarray, tmp: np.ndarray):
    """MAX(0, MIN(nmax, nearest_int(iscale * (x - mn)))) per group, into `out` (n, M); `tmp` is scratch."""
    np.subtract(xt, _fill(tmp, mn), out=out)
    np.multiply(out, _fill(tmp, iscale), out=out)
    return _round_clip_(out, F(0), F(nmax))


def _make_qkx2_quants_t(
    xt: np.ndarray, wt: np.ndarray, nmax: int, rmin: float, rdelta: float, nstep: int, use_mad: bool
):
    """ggml make_qkx2_quants for each column of the transposed groups xt (n, M) with weights wt (n, M).

    Returns (scale, the_min, levels) where `levels()` computes the chosen L (n, M) in 0..nmax as float32; callers
    that requantize with the stored fp16 scales need it only for the few groups whose scale rounds to zero.
    All work is on (n, M) arrays in place. The candidate levels of the winning step are not copied at every
    step: the step's iscale and min are kept and its levels recomputed once at the end (the same float32
    operations, so the same levels).
    """
    fmax = F(nmax)
    mn = _first_min_t(xt)
    mn = np.where(mn > 0, F(0), mn)
    mx = np.maximum.reduce(xt, axis=0)  # the sign of a zero max never matters: only mx == mn and mx - mn use it
    T = np.empty_like(xt)  # the levels of the step
    P = np.empty_like(xt)
    B = np.empty_like(xt)  # a per-group value spread over the elements
    sum_w = _sum_rows(wt)
    sum_x = _sum_rows(np.multiply(wt, xt, out=P))
    degenerate = mx == mn

    def err(scale: np.ndarray, m: np.ndarray) -> np.ndarray:
        np.multiply(_fill(B, scale), T, out=P)
        np.add(P, _fill(B, m), out=P)
        np.subtract(P, xt, out=P)
        if use_mad:
            np.abs(P, out=P)
        else:
            np.multiply(P, P, out=P)
        np.multiply(P, wt, out=P)
        return _sum_rows(P)

    with _errstate():
        iscale = fmax / (mx - mn)
        scale = F(1) / iscale
        _qkx2_levels(xt, iscale, mn, nmax, T, B)
        best = err(scale, mn)
        best_iscale, best_mn = iscale, mn
        for step in range(nstep + 1):
            iscale = (F(rmin) + F(rdelta) * F(step) + fmax) / (mx - mn)
            _qkx2_levels(xt, iscale, mn, nmax, T, B)
            np.multiply(wt, T, out=P)
            sum_l = _sum_rows(P)
            np.multiply(P, T, out=B)
            sum_l2 = _sum_rows(B)
            np.multiply(P, xt, out=B)
            sum_xl = _sum_rows(B)
            D = sum_w * sum_l2 - sum_l * sum_l
            this_scale = (sum_w * sum_xl - sum_x * sum_l) / D
            this_min = (sum_l2 * sum_x - sum_l * sum_xl) / D
            clamp = this_min > 0
            this_min = np.where(clamp, F(0), this_min)
            this_scale = np.where(clamp, sum_xl / sum_l2, this_scale)
            cur = err(this_scale, this_min)
            better = (D > 0) & (cur < best) & ~degenerate
            best_iscale = np.where(better, iscale, best_iscale)
            best_mn = np.where(better, mn, best_mn)
            best = np.where(better, cur, best)
            scale = np.where(better, this_scale, scale)
            mn = np.where(better, this_min, mn)

    def levels() -> np.ndarray:
        with _errstate():
            L = _qkx2_levels(xt, best_iscale, best_mn, nmax, T, B)
        L[:, degenerate] = 0
        return L

    scale = np.where(degenerate, F(0), scale)
    return scale.astype(F), (-mn).astype(F), levels


def _requant_t(v: np.ndarray, lo: int, hi: int, dq: np.ndarray, fallback) -> np.ndarray:
    """MAX(lo, MIN(hi, nearest_int(v))) in place on (n, M) where the group's dq != 0, else `fallback()`'s levels.

    `_nint` maps a non-finite value to 0 before clipping; only a zero dq (whose group takes the fallback) or an
    overflow makes one, so the exact mapping runs only when the cheap check finds any.
    """
    np.rint(v, out=v)
    if not np.isfinite(v.sum(dtype=F)):
        np.nan_to_num(v, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
    np.clip(v, F(lo), F(hi), out=v)
    zero = dq == 0
    if zero.any():
        v[:, zero] = fallback()[:, zero]
    return v


def _k_groups_t(x: np.ndarray, n: int) -> np.ndarray:
    """The (nb, 256) super-blocks as transposed groups (n, nb * 256 / n): element i of group j at [i, j]."""
    return np.ascontiguousarray(x.reshape(-1, n).T)


def _untranspose_levels(L: np.ndarray, nb: int) -> np.ndarray:
    """(n, M) float levels -> (nb, 256) uint8 in the original element order."""
    return np.ascontiguousarray(L.astype(np.uint8).T).reshape(nb, QK_K)


def _make_q3_quants(x: np.ndarray, nmax: int) -> tuple[np.ndarray, np.ndarray]:
    """ggml make_q3_quants(do_rmse=true) for each row of x (M, n): returns (scale, L) with L in 0..2*nmax-1."""
    M, n = x.shape
    amax, mx = _amax_signed(x)
    zero = amax < GROUP_MAX_EPS
    xt = np.ascontiguousarray(x.T)
    with _errstate():
        iscale = F(-nmax) / mx
        L = _round_clip(iscale * xt, -nmax, nmax - 1)
        w = xt * xt
        wx = w * xt
        sumlx = _sum_rows(wx * L)
        suml2 = _sum_rows(w * L * L)
        active = ~zero
        for _ in range(5):
            changed = np.zeros(M, dtype=bool)
            for i in range(n):
                xi, wi, wxi, Li = xt[i], w[i], wx[i], L[i]
                slx = sumlx - wxi * Li
                sl2 = suml2 - wi * Li * Li
                new_l = _round_clip(xi * sl2 / slx, -nmax, nmax - 1)
                slx_n = slx + wxi * new_l
                sl2_n = sl2 + wi * new_l * new_l
                take = (
                    active & (slx > 0) & (new_l != Li) & (sl2_n > 0) & (slx_n * slx_n * suml2 > sumlx * sumlx * sl2_n)
                )
                np.copyto(Li, new_l, where=take)
                sumlx = np.where(take, slx_n, sumlx)
                suml2 = np.where(take, sl2_n, suml2)
                changed |= take
            active &= changed
            if not active.any():
                break
        scale = np.where(suml2 > 0, sumlx / suml2, F(0))
    L = np.where(zero[:, None], F(0), L.T + F(nmax))
    return np.where(zero, F(0), scale).astype(F), L


def _make_qx_quants_rmse1_t(x: np.ndarray, xt: np.ndarray, nmax: int):
    """ggml make_qx_quants(rmse_type=1, no weights) per group: x (M, n) the groups, xt (n, M) the same transposed.

    Returns (scale, zero, levels): `levels()` computes the chosen L - nmax (n, M) in -nmax..nmax-1 as float32
    (-nmax in all-zero groups); callers that requantize with the stored fp16 scales need it only for the few
    groups whose scale rounds to zero. In place on (n, M) arrays; the winning candidate's levels are recomputed
    from its iscale at the end rather than copied at every candidate.
    """
    amax, mx = _amax_signed(x)
    zero = amax < GROUP_MAX_EPS
    w = xt * xt
    wx = w * xt
    T = np.empty_like(xt)
    P = np.empty_like(xt)
    lo, hi = F(-nmax), F(nmax - 1)

    def levels_into(iscale: np.ndarray) -> np.ndarray:
        np.multiply(_fill(P, iscale), xt, out=T)
        return _round_clip_(T, lo, hi)

    def sums(iscale: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        levels_into(iscale)
        sumlx = _sum_rows(np.multiply(wx, T, out=P))
        np.multiply(w, T, out=P)
        np.multiply(P, T, out=P)
        return sumlx, _sum_rows(P)

    with _errstate():
        iscale = F(-nmax) / mx
        sumlx, suml2 = sums(iscale)
        best_iscale = iscale
        scale = np.where(suml2 != 0, sumlx / suml2, F(0))
        best = scale * sumlx
        for step in range(-9, 10):
            if step == 0:
                continue
            iscale = -(F(nmax) + F(0.1) * F(step)) / mx
            sumlx, suml2 = sums(iscale)
            take = (suml2 > 0) & (sumlx * sumlx > best * suml2)
            best_iscale = np.where(take, iscale, best_iscale)
            scale = np.where(take, sumlx / suml2, scale)
            best = np.where(take, scale * sumlx, best)

    def levels() -> np.ndarray:
        with _errstate():
            L = levels_into(best_iscale)
        L[:, zero] = -nmax
        return L

    return np.where(zero, F(0), scale).astype(F), zero, levels


def _best_index_iq4(v: np.ndarray) -> np.ndarray:
    """ggml best_index_int8 over the IQ4_NL levels: how many midpoints 2v reaches (NaN reaches none, as in C).

    Fifteen vectorized comparisons beat np.searchsorted by ~8x here.
    """
    v2 = v + v
    idx = np.zeros(v2.shape, dtype=np.uint8)
    for m in _IQ4_MIDSUMS:
        idx += v2 >= m
    return idx
