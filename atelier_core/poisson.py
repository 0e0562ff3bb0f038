"""Blending an edit into an original: Poisson (gradient-domain), Laplacian multi-band, and alpha.

All functions take float images shaped (H, W, C) with any C, and a mask shaped (H, W). They never touch pixels
they are not asked to: :func:`poisson_blend` returns the original bit for bit outside its region.

The Poisson solver is our own geometric multigrid (cell-centred, red-black Gauss-Seidel smoothing, bilinear
prolongation, a direct sparse solve on the coarsest grid). It solves the discrete equation exactly to a
tolerance rather than approximately, works on the bounding box of the region only, and treats the image border
as a Neumann boundary, so regions touching the border are handled correctly (``cv2.seamlessClone`` asserts or
shifts there). It never falls back to another blend: when it cannot converge it says so in its result.
"""

from __future__ import annotations

import logging
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import cv2
import numpy as np
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

log = logging.getLogger(__name__)

_CROSS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)
_COARSEST_UNKNOWNS = 3000
_THREADS = max(1, min(4, os.cpu_count() or 1))


@dataclass
class PoissonInfo:
    """What the solver did, for the merge report."""

    unknowns: int = 0
    cycles: int = 0
    last_update: float = 0.0
    converged: bool = True
    note: str = ""


def _nsum(u: np.ndarray, out: np.ndarray) -> np.ndarray:
    """Sum of the 4 neighbours of each pixel into ``out``; outside the array counts as 0."""
    return cv2.filter2D(u, -1, _CROSS, dst=out, borderType=cv2.BORDER_CONSTANT)


class _Grid:
    """One level's geometry, shared by all channels: unknowns, stencil diagonal, red/black smoothing weights."""

    def __init__(self, mask: np.ndarray, borders: tuple[bool, bool, bool, bool]):
        h, w = mask.shape
        self.mask2d = mask
        self.unknowns = int(mask.sum())
        # Diagonal = neighbours inside the image; across an image border (Neumann) there is no neighbour,
        # across a crop edge that is not an image border the neighbour is a known (Dirichlet) value.
        n = np.full((h, w), 4.0, np.float32)
        top, bottom, left, right = borders
        if top:
            n[0] -= 1
        if bottom:
            n[-1] -= 1
        if left:
            n[:, 0] -= 1
        if right:
            n[:, -1] -= 1
        self.n = n
        self.mask = mask.astype(np.float32)
        red = (np.arange(h)[:, None] + np.arange(w)[None, :]) % 2 == 0
        inv = np.where(mask, 1.0 / np.maximum(n, 1.0), 0.0).astype(np.float32)
        self.w_red = inv * red
        self.w_black = inv * ~red
        self.keep_red = (~(mask & red)).astype(np.float32)
        self.keep_black = (~(mask & ~red)).astype(np.float32)
        self.lu = self._factorise() if self.unknowns <= _COARSEST_UNKNOWNS else None

    def _factorise(self):
        h, w = self.mask2d.shape
        idx = np.flatnonzero(self.mask2d)
        self.idx = idx
        if idx.size == 0:
            return None
        number = -np.ones(h * w, np.int64)
        number[idx] = np.arange(idx.size)
        local = np.arange(idx.size)
        rows, cols, vals = [local], [local], [self.n.reshape(-1)[idx].astype(np.float64)]
        ys, xs = np.divmod(idx, w)
        for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
            ny, nx = ys + dy, xs + dx
            inside = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
            nb = np.full(idx.size, -1, np.int64)
            nb[inside] = number[ny[inside] * w + nx[inside]]
            ok = nb >= 0
            rows.append(local[ok])
            cols.append(nb[ok])
            vals.append(-np.ones(int(ok.sum())))
        a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(idx.size,) * 2)
        return splu(a.tocsc())


class _Work:
    """One channel's buffers on one level. Every hot operation works in place: fresh multi-megabyte arrays
    cost page faults that take longer than the arithmetic."""

    def __init__(self, grid: _Grid):
        self.grid = grid
        shape = grid.mask2d.shape
        self.u = np.zeros(shape, np.float32)
        self.f = np.zeros(shape, np.float32)
        self.tmp = np.zeros(shape, np.float32)
        self.r = np.zeros(shape, np.float32)

    def apply(self, u: np.ndarray, out: np.ndarray) -> np.ndarray:
        g = self.grid
        np.multiply(u, g.n, out=out)
        out -= _nsum(u, self.tmp)
        out *= g.mask
        return out

    def smooth(self, u: np.ndarray, f: np.ndarray, reverse: bool = False) -> None:
        """Red-black Gauss-Seidel in place (black first when ``reverse``, so a pre/post pair is symmetric)."""
        g = self.grid
        order = ((g.w_red, g.keep_red), (g.w_black, g.keep_black))
        for w, keep in order[::-1] if reverse else order:
            s = _nsum(u, self.tmp)
            s += f
            u *= keep
            cv2.accumulateProduct(s, w, u)

    def direct_solve(self, f: np.ndarray) -> np.ndarray:
        g = self.grid
        self.u.fill(0.0)
        if g.lu is not None:
            self.u.reshape(-1)[g.idx] = g.lu.solve(f.reshape(-1)[g.idx].astype(np.float64))
        return self.u


def _coarsen_mask(mask: np.ndarray, borders: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """A coarse cell is an unknown when all its fine cells are. Phantom cells past an image border copy their
    neighbour (a Neumann side constrains nothing), so the coarse domain still reaches that border."""
    h, w = mask.shape
    padded = np.zeros((h + h % 2, w + w % 2), bool)
    padded[:h, :w] = mask
    if h % 2 and borders[1]:
        padded[h] = padded[h - 1]
    if w % 2 and borders[3]:
        padded[:, w] = padded[:, w - 1]
    return padded.reshape(padded.shape[0] // 2, 2, padded.shape[1] // 2, 2).all(axis=(1, 3))


def _restrict(r: np.ndarray, out: np.ndarray) -> None:
    """Sum over 2x2 blocks into ``out`` (the coarse grid's spacing factor of 4 folded in)."""
    h, w = r.shape
    if h % 2 or w % 2:
        padded = np.zeros((h + h % 2, w + w % 2), r.dtype)
        padded[:h, :w] = r
        r = padded
    cv2.resize(r, (out.shape[1], out.shape[0]), dst=out, interpolation=cv2.INTER_AREA)
    out *= 4.0


def _prolong_add(e: np.ndarray, u: np.ndarray, mask: np.ndarray) -> None:
    """``u += mask * P e`` with P cell-centred bilinear interpolation."""
    hc, wc = e.shape
    h, w = u.shape
    up = cv2.resize(e, (wc * 2, hc * 2), interpolation=cv2.INTER_LINEAR)
    cv2.accumulateProduct(up[:h, :w], mask, u)


class _Hierarchy:
    """The V-cycle used as the preconditioner of (flexible) conjugate gradients, so convergence does not hinge
    on how well the coarse grids represent an irregular region."""

    def __init__(self, grids: list[_Grid]):
        self.levels = [_Work(g) for g in grids]

    def vcycle(self, f: np.ndarray, depth: int = 0) -> np.ndarray:
        """Approximate A^-1 f; the result lives in the level's buffer ``u`` until the next call."""
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            return level.direct_solve(f)
        u = level.u
        u.fill(0.0)
        level.smooth(u, f)
        r = level.apply(u, level.r)
        np.subtract(f, r, out=r)
        coarse = self.levels[depth + 1]
        _restrict(r, coarse.f)
        coarse.f *= coarse.grid.mask
        ec = self.vcycle(coarse.f, depth + 1)
        ec *= coarse.grid.mask
        _prolong_add(ec, u, level.grid.mask)
        level.smooth(u, f, reverse=True)
        return u


def _build_grids(region: np.ndarray, borders: tuple[bool, bool, bool, bool]) -> list[_Grid]:
    grids = [_Grid(region, borders)]
    while grids[-1].lu is None and min(grids[-1].mask2d.shape) > 2:
        grids.append(_Grid(_coarsen_mask(grids[-1].mask2d, borders), borders))
    if grids[-1].lu is None:  # a long thin strip that cannot coarsen further: factorise it whatever its size
        grids[-1].lu = grids[-1]._factorise()
    return grids


def _solve_channel(grids: list[_Grid], boundary: np.ndarray, tol: float, max_iterations: int) -> tuple:
    """Flexible preconditioned conjugate gradients for one channel -> (h, iterations, last step, converged)."""
    hier = _Hierarchy(grids)
    level = hier.levels[0]
    mask = grids[0].mask
    known = boundary * (1.0 - mask)
    r = _nsum(known, np.empty_like(known))  # the known neighbours move to the right-hand side
    r *= mask
    x = np.zeros_like(r)
    q = np.empty_like(r)
    step = np.empty_like(r)
    z = hier.vcycle(r).copy()
    p = z.copy()
    rz = float(np.dot(r.ravel(), z.ravel()))
    r0 = float(np.linalg.norm(r))
    last = 0.0
    if r0 == 0.0:
        return x, 0, 0.0, True
    for it in range(1, max_iterations + 1):
        level.apply(p, q)
        pq = float(np.dot(p.ravel(), q.ravel()))
        alpha = rz / pq if pq > 0 else 0.0
        np.multiply(p, alpha, out=step)
        x += step
        cv2.scaleAdd(q, -alpha, r, dst=r)
        last = float(max(step.max(), -step.min()))
        if not np.isfinite(last):
            raise FloatingPointError("Poisson solve produced non-finite values")
        # Converged when a step moves no pixel by more than tol, or when the residual is down at float32
        # rounding level (further steps would only amplify rounding noise).
        if last < tol or float(np.linalg.norm(r)) <= 1e-6 * r0:
            return x, it, last, True
        r_z_old = float(np.dot(r.ravel(), z.ravel()))
        np.copyto(z, hier.vcycle(r))
        rz_new = float(np.dot(r.ravel(), z.ravel()))
        beta = (rz_new - r_z_old) / rz if rz > 0 else 0.0
        rz = rz_new
        cv2.scaleAdd(p, beta, z, dst=p)
    return x, max_iterations, last, False


def _solve_crop(
    boundary: list[np.ndarray], region: np.ndarray, borders, tol: float, max_iterations: int, info: PoissonInfo
) -> list[np.ndarray]:
    """Solve every channel (a list of (h, w) crops); channels are independent systems, solved on two threads
    (numpy and OpenCV release the GIL)."""
    grids = _build_grids(region, borders)
    info.unknowns = grids[0].unknowns
    chans = len(boundary)
    with ThreadPoolExecutor(max_workers=min(chans, _THREADS)) as pool:
        results = list(pool.map(lambda c: _solve_channel(grids, boundary[c], tol, max_iterations), range(chans)))
    info.cycles = max(r[1] for r in results)
    info.last_update = max(r[2] for r in results)
    if not all(r[3] for r in results):
        info.converged = False
        info.note = f"Poisson solve stopped after {max_iterations} iterations; last step {info.last_update:.2e}"
        log.warning(info.note)
    return [r[0] for r in results]


def solve_dirichlet_laplace(
    boundary: np.ndarray, region: np.ndarray, *, tol: float = 1e-3, max_iterations: int = 100
) -> tuple[np.ndarray, PoissonInfo]:
    """Harmonic h on ``region`` with h = ``boundary`` on the pixels outside it and no flux across the image border.

    ``boundary`` is (H, W, C) float32, ``region`` a bool (H, W) that is not the whole image. Returns h with the
    boundary values outside the region. The discrete equation solved at each region pixel p is
    ``n_p h_p - sum_{q ~ p, q in image} h_q = 0`` (n_p = neighbours inside the image). Iterates until a step
    changes no pixel by more than ``tol``; the remaining error is then about a fifth of ``tol`` (measured
    against a direct solve), i.e. 1/20 of an 8-bit level at the default.
    """
    h_img, w_img, chans = boundary.shape
    info = PoissonInfo()
    out = boundary.copy()
    if not region.any():
        return out, info
    ys, xs = np.nonzero(region)
    y0, y1 = max(int(ys.min()) - 1, 0), min(int(ys.max()) + 2, h_img)
    x0, x1 = max(int(xs.min()) - 1, 0), min(int(xs.max()) + 2, w_img)
    solved = _solve_crop(
        [np.ascontiguousarray(boundary[y0:y1, x0:x1, c]) for c in range(chans)],
        region[y0:y1, x0:x1],
        (y0 == 0, y1 == h_img, x0 == 0, x1 == w_img),
        tol,
        max_iterations,
        info,
    )
    out[y0:y1, x0:x1] = np.where(region[y0:y1, x0:x1, None], np.stack(solved, axis=-1), out[y0:y1, x0:x1])
    return out, info


def poisson_blend(
    original: np.ndarray, edit: np.ndarray, region: np.ndarray, *, tol: float = 1e-3, max_iterations: int = 100
) -> tuple[np.ndarray, PoissonInfo]:
    """Seamless clone: inside ``region`` the result has the edit's gradients and meets the original at its edge.

    Outside ``region`` the original is returned bit for bit. A region covering the whole image has no boundary
    to meet, so the edit itself is returned (the only solution whose gradients are the edit's and whose mean is
    the edit's).
    """
    original = np.asarray(original, np.float32)
    edit = np.asarray(edit, np.float32)
    region = np.asarray(region, bool)
    if original.shape != edit.shape or region.shape != original.shape[:2]:
        raise ValueError(f"shapes differ: original {original.shape}, edit {edit.shape}, region {region.shape}")
    if region.all():
        return edit.copy(), PoissonInfo(note="region covers the whole image: the edit is returned")
    if not region.any():
        return original.copy(), PoissonInfo(note="empty region: the original is returned")
    correction, box, info = poisson_correction(original, edit, region, tol=tol, max_iterations=max_iterations)
    reg = region[box]
    result = original.copy()
    crop = result[box]
    np.copyto(crop, edit[box] + correction, where=reg[..., None])
    return result, info


def poisson_correction(
    original: np.ndarray, edit: np.ndarray, region: np.ndarray, *, tol: float = 1e-3, max_iterations: int = 100
) -> tuple[np.ndarray, tuple[slice, slice], PoissonInfo]:
    """The Poisson correction h = result - edit on the region's bounding box plus its one-pixel ring.

    Returns (h shaped (h, w, C) float32, the box, info): ``edit[box] + h`` is the seamless clone inside
    ``region[box]``; h is 0 outside the region. ``region`` must have at least one pixel and not be the whole
    image. h is harmonic inside and equals original - edit outside, so only the box is touched.
    """
    info = PoissonInfo()
    h_img, w_img = region.shape
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    y0, y1 = max(int(rows[0]) - 1, 0), min(int(rows[-1]) + 2, h_img)
    x0, x1 = max(int(cols[0]) - 1, 0), min(int(cols[-1]) + 2, w_img)
    box = (slice(y0, y1), slice(x0, x1))
    diff = np.subtract(original[box], edit[box], dtype=np.float32)
    channels = [np.ascontiguousarray(diff[..., c]) for c in range(diff.shape[2])]
    borders = (y0 == 0, y1 == h_img, x0 == 0, x1 == w_img)
    correction = _solve_crop(channels, region[box], borders, tol, max_iterations, info)
    return np.stack(correction, axis=-1), box, info


def alpha_blend(original: np.ndarray, edit: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``original + weight * (edit - original)``, exactly the original where weight is 0 and the edit where 1."""
    original = np.asarray(original, np.float32)
    edit = np.asarray(edit, np.float32)
    w = np.asarray(weight, np.float32)[..., None]
    mixed = original + w * (edit - original)
    return np.where(w <= 0, original, np.where(w >= 1, edit, mixed))


def pyramid_levels(height: int, width: int, requested: int | None = None) -> int:
    """How many band-pass levels fit: the coarsest level keeps at least 8 pixels on its short side."""
    most = max(int(np.floor(np.log2(max(min(height, width), 1) / 8.0))), 0)
    return most if requested is None else max(0, min(requested, most))


def laplacian_pyramid(image: np.ndarray, levels: int) -> list[np.ndarray]:
    """Band-pass levels followed by the low-pass residual; :func:`collapse_pyramid` inverts it exactly."""
    image = np.asarray(image, np.float32)
    bands = []
    current = image
    for _ in range(levels):
        down = cv2.pyrDown(current)
        up = cv2.pyrUp(down, dstsize=(current.shape[1], current.shape[0])).reshape(current.shape)
        bands.append(current - up)
        current = down.reshape(down.shape[0], down.shape[1], -1) if current.ndim == 3 else down
    bands.append(current)
    return bands


def collapse_pyramid(bands: list[np.ndarray]) -> np.ndarray:
    current = bands[-1]
    for band in reversed(bands[:-1]):
        current = cv2.pyrUp(current, dstsize=(band.shape[1], band.shape[0])).reshape(band.shape) + band
    return current


def multiband_blend(
    original: np.ndarray, edit: np.ndarray, weight: np.ndarray, levels: int | None = None
) -> np.ndarray:
    """Burt-Adelson blend: each frequency band is mixed with a correspondingly blurred weight.

    Low frequencies blend over a wide zone, fine detail over a narrow one, so seams vanish without ghosting.
    A weight of all zeros returns the original and all ones the edit (to float rounding).
    """
    original = np.asarray(original, np.float32)
    edit = np.asarray(edit, np.float32)
    w = np.asarray(weight, np.float32)
    if original.shape != edit.shape or w.shape != original.shape[:2]:
        raise ValueError(f"shapes differ: original {original.shape}, edit {edit.shape}, weight {w.shape}")
    n = pyramid_levels(*w.shape, levels)
    pa = laplacian_pyramid(edit, n)
    pb = laplacian_pyramid(original, n)
    gw = [w]
    for _ in range(n):
        gw.append(cv2.pyrDown(gw[-1]))
    blended = [g[..., None] * a + (1.0 - g[..., None]) * b for g, a, b in zip(gw, pa, pb, strict=True)]
    return collapse_pyramid(blended)
