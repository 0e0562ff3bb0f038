"""Blending an edit into an original: Poisson (gradient-domain), Laplacian multi-band, and alpha.

All functions take float images shaped (H, W, C) with any C, and a mask shaped (H, W). They never touch pixels
they are not asked to: :func:`poisson_blend` returns the original bit for bit outside its region.

The Poisson solver is conjugate gradients preconditioned by our own geometric multigrid V-cycle (cell-centred,
red-black Gauss-Seidel smoothing, bilinear prolongation, coarse operators that keep the finest grid's boundary
distance, a direct sparse solve on the coarsest grid), the channels on one setup. It solves the
discrete equation exactly to a tolerance rather than approximately, works on the bounding box of the region
only, and treats the image border as a Neumann boundary, so regions touching the border are handled correctly
(``cv2.seamlessClone`` asserts or shifts there). It never falls back to another blend: when it cannot converge it
says so in its result.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import splu

from . import threads as _threads

log = logging.getLogger(__name__)

_CROSS = np.array([[0, 1, 0], [1, 0, 1], [0, 1, 0]], np.float32)
_LAPLACE = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], np.float32)
_CROSS4 = 4.0 * _CROSS
# The coarsest grid is solved by a sparse LU made for each solve: at 500 unknowns it costs a fraction of a
# millisecond, and on the real pairs' regions the cycle needs no more iterations than with 1000.
_COARSEST_UNKNOWNS = 500
# From this many unknowns the channels are solved on a thread pool (a wall-time saving well above the threads'
# start-up; the real pairs' regions are 60-240 k).
_PARALLEL_UNKNOWNS = 20000


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


def _diagonal(shape: tuple[int, int], borders: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """The stencil's diagonal: neighbours inside the image. Across an image border (Neumann) there is no
    neighbour; across a crop edge that is not an image border the neighbour is a known (Dirichlet) value."""
    n = np.full(shape, 4.0, np.float32)
    top, bottom, left, right = borders
    if top:
        n[0] -= 1
    if bottom:
        n[-1] -= 1
    if left:
        n[:, 0] -= 1
    if right:
        n[:, -1] -= 1
    return n


def _factorise(mask: np.ndarray, n: np.ndarray) -> tuple[np.ndarray, object]:
    """-> (flat indices of the unknowns, sparse LU of the system on them, or None when there are none)."""
    h, w = mask.shape
    idx = np.flatnonzero(mask)
    if idx.size == 0:
        return idx, None
    number = -np.ones(h * w, np.int64)
    number[idx] = np.arange(idx.size)
    local = np.arange(idx.size)
    rows, cols, vals = [local], [local], [n.reshape(-1)[idx].astype(np.float64)]
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
    # The matrix is symmetric: a minimum-degree ordering of A + A^T and symmetric pivoting factorise it in
    # about half the time of the default column ordering (the same solution up to rounding).
    return idx, splu(a.tocsc(), permc_spec="MMD_AT_PLUS_A", options={"SymmetricMode": True})


def _direct_correction(diff: np.ndarray, region: np.ndarray, borders) -> np.ndarray:
    """The exact harmonic correction (0 off ``region``) of a small region: one sparse LU for all channels."""
    idx, lu = _factorise(region, _diagonal(region.shape, borders))
    outside = (~region).astype(np.float32)
    chans = diff.shape[2]
    rhs = np.empty((idx.size, chans), np.float64)
    for c in range(chans):  # the known neighbours' sum at each unknown
        rhs[:, c] = _nsum(diff[..., c] * outside, np.empty(region.shape, np.float32)).reshape(-1)[idx]
    out = np.zeros(diff.shape, np.float32)
    out.reshape(-1, chans)[idx] = lu.solve(rhs)
    return out


def _pad_even(a: np.ndarray, borders: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """``a`` padded to even sides for 2x2 blocks. Phantom cells past an image border copy their neighbour (a
    Neumann side constrains nothing); past a crop edge they are 0 (known)."""
    h, w = a.shape
    padded = np.zeros((h + h % 2, w + w % 2), a.dtype)
    padded[:h, :w] = a
    if h % 2 and borders[1]:
        padded[h] = padded[h - 1]
    if w % 2 and borders[3]:
        padded[:, w] = padded[:, w - 1]
    return padded


def _coarsen_mask(mask: np.ndarray, borders: tuple[bool, bool, bool, bool]) -> np.ndarray:
    """A coarse cell is an unknown when all its fine cells are; thanks to the phantom cells the coarse domain
    still reaches an image border."""
    padded = _pad_even(mask, borders)
    return padded[0::2, 0::2] & padded[1::2, 0::2] & padded[0::2, 1::2] & padded[1::2, 1::2]


def _coarse_diagonal(mask: np.ndarray, share: np.ndarray, size: int) -> np.ndarray:
    """The diagonal of a coarse level's operator (cells of ``size`` x ``size`` finest pixels) that puts the
    boundary where the finest grid has it.

    A coarse cell is an unknown only when all its fine cells are, so a coarse grid's known cells reach into
    the region, by more cells the coarser the grid: with the plain stencil (a known neighbour one coarse
    spacing away) its corrections vanish too close to, or too far from, the true edge. Here a known
    neighbour counts with 1 / theta, theta its distance in coarse spacings from the cell's centre to its
    known finest pixels, estimated from ``share`` (the share of the neighbour's finest pixels that are
    unknowns): (size + 1) / (2 size) + share. An unknown neighbour counts 1; past an image border there is
    none. On four real pairs' regions (bench/bench_realpairs.py) the iterations summed over the channels fell
    by a fifth on two (5 -> 4 each), rose by one on one channel of another, and the mean error left at the
    same tolerance fell by a quarter to two thirds."""
    unknown = mask.astype(np.float32)
    weight = unknown + (1.0 - unknown) / (np.float32((size + 1) / (2 * size)) + share)
    return _nsum(weight, np.empty_like(weight))


class _Grid:
    """One level's geometry, shared by all channels: unknowns, their red/black colouring, smoothing weights."""

    def __init__(self, mask: np.ndarray, borders: tuple[bool, bool, bool, bool], diagonal=None):
        h, w = mask.shape
        self.mask2d = mask
        self.borders = borders
        self.diagonal = diagonal  # None: the plain stencil's (see _diagonal)
        self.unknowns = int(np.count_nonzero(mask))
        # Everything below stays float32 (mixed bool/float arithmetic takes numpy's slow casting loops).
        self.mask = mask.astype(np.float32)
        even = np.empty((h, w), bool)  # the red cells: y + x even
        even[0::2] = np.arange(w) % 2 == 0
        even[1::2] = ~even[0]
        self.red = np.multiply(self.mask, even, dtype=np.float32)
        self.w_red = self._weights(self.red)
        self.w_black = self._weights(self.mask - self.red)
        self.lu = self._factorise() if self.unknowns <= _COARSEST_UNKNOWNS else None

    def _weights(self, cells: np.ndarray) -> np.ndarray:
        """``cells / n``: n the diagonal; the plain stencil's is 4 inside and one less per image border the
        cell lies on (Neumann)."""
        if self.diagonal is not None:
            return cells / np.maximum(self.diagonal, np.float32(1e-3))  # 0 off the region, whatever n is there
        w = cells * np.float32(0.25)
        top, bottom, left, right = self.borders
        if any(self.borders):
            n = _diagonal(cells.shape, self.borders)
            for on, sl in ((top, np.s_[0]), (bottom, np.s_[-1]), (left, np.s_[:, 0]), (right, np.s_[:, -1])):
                if on:
                    np.divide(cells[sl], n[sl], out=w[sl])
        return w

    def _factorise(self):
        n = self.diagonal if self.diagonal is not None else _diagonal(self.mask2d.shape, self.borders)
        self.idx, lu = _factorise(self.mask2d, n)
        return lu

    def apply(self, u: np.ndarray, out: np.ndarray) -> np.ndarray:
        """A u on the region; off it the values are those of 4 u - the neighbours (read by nobody: see
        :func:`_solve_channel`)."""
        # One filter pass (4 u - the neighbours); the image-border rows and columns have a neighbour fewer.
        cv2.filter2D(u, -1, _LAPLACE, dst=out, borderType=cv2.BORDER_CONSTANT)
        top, bottom, left, right = self.borders
        for on, sl in ((top, np.s_[0]), (bottom, np.s_[-1]), (left, np.s_[:, 0]), (right, np.s_[:, -1])):
            if on:
                out[sl] -= u[sl]
        return out


class _Work:
    """One level's buffers, reused by the channels a hierarchy solves one after the other. Every hot operation
    works in place: fresh multi-megabyte arrays cost page faults that take longer than the arithmetic."""

    def __init__(self, grid: _Grid):
        self.grid = grid
        h, w = grid.mask2d.shape
        # The iterate is kept as its red and its black cells, each array 0 elsewhere: a red-black half-sweep
        # then writes one colour from the other's neighbour sum, with no masking of the colour it keeps.
        self.red = np.zeros((h, w), np.float32)
        self.black = np.zeros((h, w), np.float32)
        self.f = np.zeros((h, w), np.float32)
        self.tmp = np.zeros((h, w), np.float32)
        # The residual lives in a buffer padded to even sides whose padding stays 0, so restriction reads it
        # as it is; the prolongation target likewise covers the even-sided grid.
        self.r_pad = np.zeros((h + h % 2, w + w % 2), np.float32)
        self.r = self.r_pad[:h, :w]
        self.up = np.empty_like(self.r_pad)

    def half_sweep(self, source: np.ndarray, f: np.ndarray, weights: np.ndarray, out: np.ndarray) -> None:
        """One colour's Gauss-Seidel update from the other colour: ``out = weights * (neighbours + f)``."""
        s = _nsum(source, self.tmp)
        s += f
        np.multiply(s, weights, out=out)

    def direct_solve(self, f: np.ndarray) -> np.ndarray:
        g = self.grid
        self.black.fill(0.0)
        if g.lu is not None:
            self.black.reshape(-1)[g.idx] = g.lu.solve(f.reshape(-1)[g.idx].astype(np.float64))
        return self.black


class _Hierarchy:
    """The V-cycle used as the preconditioner of (flexible) conjugate gradients, so convergence does not hinge
    on how well the coarse grids represent an irregular region."""

    def __init__(self, grids: list[_Grid]):
        self.levels = [_Work(g) for g in grids]
        # The conjugate gradients' vectors and the finest grid's known cells, reused by its channels.
        shape = grids[0].mask2d.shape
        self.x, self.r, self.q, self.p = (np.empty(shape, np.float32) for _ in range(4))
        self.known = 1.0 - grids[0].mask

    def vcycle(self, f: np.ndarray, depth: int = 0) -> np.ndarray:
        """Approximate A^-1 f (0 off the region) from 0: a red-black Gauss-Seidel sweep before the coarse
        correction and one in reverse order after it, so the cycle is symmetric in its smoothing. The result
        lives in the level's buffer ``black`` until the next call."""
        level = self.levels[depth]
        if depth == len(self.levels) - 1:
            return level.direct_solve(f)
        g, red, black = level.grid, level.red, level.black
        np.multiply(f, g.w_red, out=red)  # the red half-sweep from 0 has no neighbour sum
        level.half_sweep(red, f, g.w_black, black)
        # After the black half-sweep the residual is 0 on black cells, and on red ones f - n red + the black
        # neighbours = the black neighbours (n red = f). The sum of black neighbours is 0 on black cells (their
        # neighbours are red or known), so one filter pass gives the residual, times the 4 that restriction
        # (the mean of 2x2 blocks) needs to be their sum. Off the region the values are never read: a coarse
        # cell is an unknown only when its four fine cells are.
        cv2.filter2D(black, -1, _CROSS4, dst=level.r, borderType=cv2.BORDER_CONSTANT)
        coarse = self.levels[depth + 1]
        cv2.resize(level.r_pad, coarse.f.shape[::-1], dst=coarse.f, interpolation=cv2.INTER_LINEAR)
        ec = self.vcycle(coarse.f, depth + 1)
        h, w = f.shape
        cv2.resize(ec, level.up.shape[::-1], dst=level.up, interpolation=cv2.INTER_LINEAR)
        # Bilinear prolongation onto the red cells only: the black half-sweep next replaces every black value.
        cv2.accumulateProduct(level.up[:h, :w], g.red, red)
        level.half_sweep(red, f, g.w_black, black)
        s = _nsum(black, level.tmp)
        s += f
        cv2.accumulateProduct(s, g.w_red, black)  # black + the new red values: the whole iterate, in one array
        return black


def _build_grids(region: np.ndarray, borders: tuple[bool, bool, bool, bool]) -> list[_Grid]:
    grids = [_Grid(region, borders)]
    share = grids[0].mask  # per cell of each level, the share of its finest pixels that are unknowns
    while grids[-1].lu is None and min(grids[-1].mask2d.shape) > 2:
        mask = _coarsen_mask(grids[-1].mask2d, borders)
        # The mean of 2x2 blocks (a resize to exactly half the even-padded size).
        share = cv2.resize(_pad_even(share, borders), mask.shape[::-1], interpolation=cv2.INTER_LINEAR)
        grids.append(_Grid(mask, borders, _coarse_diagonal(mask, share, 2 ** len(grids))))
    if grids[-1].lu is None:  # a long thin strip that cannot coarsen further: factorise it whatever its size
        grids[-1].lu = grids[-1]._factorise()
    return grids


def _solve_channel(hier: _Hierarchy, values: np.ndarray, tol: float, max_iterations: int) -> tuple:
    """Flexible preconditioned conjugate gradients for one (h, w) channel, the solution left in ``hier.x``
    -> (iterations, last step, converged).

    The iterates x, p and z are 0 off the region; r and q are not (A p is not masked), which nothing reads:
    the dot products meet r only through p and z, and the V-cycle reads f only on the region."""
    grid = hier.levels[0].grid
    x, r, q, p = hier.x, hier.r, hier.q, hier.p
    # The right-hand side: at each unknown, the sum of its known neighbours' values.
    np.multiply(values, hier.known, out=q)
    _nsum(q, r)
    r *= grid.mask
    x.fill(0.0)
    z = hier.vcycle(r)  # the V-cycle's own buffer: read before the next V-cycle overwrites it
    np.copyto(p, z)
    rz = rz0 = float(np.dot(r.ravel(), z.ravel()))
    last = 0.0
    if rz0 == 0.0:
        return 0, 0.0, True
    for it in range(1, max_iterations + 1):
        grid.apply(p, q)
        pq = float(np.dot(p.ravel(), q.ravel()))
        alpha = rz / pq if pq > 0 else 0.0
        cv2.scaleAdd(p, alpha, x, dst=x)
        p_min, p_max, _, _ = cv2.minMaxLoc(p)
        last = abs(alpha) * max(p_max, -p_min)
        if not (np.isfinite(last) and np.isfinite(pq)):  # minMaxLoc skips NaNs; a NaN dot does not
            raise FloatingPointError("Poisson solve produced non-finite values")
        if last < tol:  # no pixel moved by more than tol
            return it, last, True
        cv2.scaleAdd(q, -alpha, r, dst=r)
        r_z_old = float(np.dot(r.ravel(), z.ravel()))
        z = hier.vcycle(r)
        rz_new = float(np.dot(r.ravel(), z.ravel()))
        if rz_new <= 1e-12 * rz0:
            # The (preconditioned) residual is down at float32 rounding level: further steps would only
            # amplify rounding noise.
            return it, last, True
        beta = (rz_new - r_z_old) / rz if rz > 0 else 0.0
        rz = rz_new
        cv2.scaleAdd(p, beta, z, dst=p)
    return max_iterations, last, False


def _solve_crop(
    values: np.ndarray, region: np.ndarray, borders, tol: float, max_iterations: int, info: PoissonInfo
) -> np.ndarray:
    """-> (h, w, C) float32: 0 off ``region``, on it the harmonic function that meets the (h, w, C) ``values``
    of the pixels outside it (no flux across the image borders in ``borders``).

    The channels are independent systems on one geometry (one multigrid setup): on a large region they are
    solved side by side on a small thread pool, each with its own buffers (numpy and OpenCV release the GIL;
    on 2 cores the insertion pair's region takes about two thirds of the wall time of one channel after the
    other, for a few percent more CPU time); a small one (or a single channel) runs them one after the other
    on one set of buffers, cheaper than starting threads."""
    grids = _build_grids(region, borders)
    info.unknowns = grids[0].unknowns
    chans = values.shape[2]
    out = np.empty(values.shape, np.float32)

    def solve(channels: range) -> list[tuple]:
        hier = _Hierarchy(grids)
        results = []
        for c in channels:
            results.append(_solve_channel(hier, values[..., c], tol, max_iterations))
            out[..., c] = hier.x
        return results

    if grids[0].unknowns >= _PARALLEL_UNKNOWNS and _threads.WORKERS > 1 and chans > 1:
        results = [r for rs in _threads.each(lambda c: solve(range(c, c + 1)), range(chans)) for r in rs]
    else:
        results = solve(range(chans))
    its, steps, done = zip(*results, strict=True)
    ok = all(done)
    info.cycles = max(its)
    info.last_update = max(steps)
    if not ok:
        info.converged = False
        info.note = f"Poisson solve stopped after {max_iterations} iterations; last step {info.last_update:.2e}"
        log.warning(info.note)
    return out


def solve_dirichlet_laplace(
    boundary: np.ndarray, region: np.ndarray, *, tol: float = 1e-3, max_iterations: int = 100
) -> tuple[np.ndarray, PoissonInfo]:
    """Harmonic h on ``region`` with h = ``boundary`` on the pixels outside it and no flux across the image border.

    ``boundary`` is (H, W, C) float32, ``region`` a bool (H, W) that is not the whole image. Returns h with the
    boundary values outside the region. The discrete equation solved at each region pixel p is
    ``n_p h_p - sum_{q ~ p, q in image} h_q = 0`` (n_p = neighbours inside the image). Iterates until a step
    changes no pixel by more than ``tol``; the remaining error is then a fifth to two fifths of ``tol`` at the
    worst pixel (measured against a direct solve on real edits' regions), i.e. at most 1/10 of an 8-bit level
    at the default.
    """
    info = PoissonInfo()
    out = boundary.copy()
    if not region.any():
        return out, info
    box, borders = _box(region)
    solved = _solve_crop(np.asarray(boundary[box], np.float32), region[box], borders, tol, max_iterations, info)
    out[box] = np.where(region[box][..., None], solved, out[box])
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
    info = PoissonInfo()
    box, borders = _box(region)
    o_box, e_box, reg = original[box], edit[box], region[box]

    blended = _solve_crop(np.subtract(o_box, e_box), reg, borders, tol, max_iterations, info)
    blended += e_box
    result = original.copy()
    np.copyto(result[box], blended, where=reg[..., None])
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
    box, borders = _box(region)
    reg = region[box]
    parts = _separate_parts(reg)
    if parts is None:
        diff = np.subtract(original[box], edit[box], dtype=np.float32)
        return _solve_crop(diff, reg, borders, tol, max_iterations, info), box, info
    diff = _PartsDiff(original[box], edit[box])
    out = np.zeros(diff.shape, np.float32)
    # Parts away from the image border are packed side by side into one small array and solved as one system
    # (each keeps its ring of known pixels, so no unknown of one neighbours another's): one multigrid setup
    # instead of one per part. A part on the image border keeps its own box (its Neumann side).
    inner = [p for p in parts if not any(p[1])]
    if len(inner) > 1:
        _solve_packed(diff, inner, out, tol, max_iterations, info)
        parts = [p for p in parts if any(p[1])]
    for sub, sub_borders, part in parts:
        if np.count_nonzero(part) <= _DIRECT_UNKNOWNS:
            # A small part is solved exactly by one factorisation for all channels: cheaper than setting up
            # the multigrid for it.
            out[sub] += _direct_correction(diff[sub], part, sub_borders)
            info.unknowns += int(np.count_nonzero(part))
            continue
        part_info = PoissonInfo()
        out[sub] += _solve_crop(diff[sub], part, sub_borders, tol, max_iterations, part_info)  # 0 off the part
        _add_info(info, part_info)
    return out, box, info


class _PartsDiff:
    """original - edit on a part's box, made when the part is solved: the parts' boxes cover at most
    ``_MAX_PARTS_SHARE`` of the region's box."""

    def __init__(self, original: np.ndarray, edit: np.ndarray):
        self.original, self.edit, self.shape = original, edit, original.shape

    def __getitem__(self, sub: tuple[slice, slice]) -> np.ndarray:
        return np.subtract(self.original[sub], self.edit[sub], dtype=np.float32)


def _pack(sizes: list[tuple[int, int]]) -> tuple[list[tuple[int, int]], tuple[int, int]]:
    """Shelf packing of (h, w) boxes, tallest first: -> (each box's (y, x) origin, the atlas's (h, w))."""
    width = max(max(w for _, w in sizes), int(np.ceil(np.sqrt(1.2 * sum(h * w for h, w in sizes)))))
    origins: list[tuple[int, int]] = [(0, 0)] * len(sizes)
    y = x = shelf = 0
    for i in sorted(range(len(sizes)), key=lambda i: -sizes[i][0]):
        h, w = sizes[i]
        if x + w > width:
            y, x, shelf = y + shelf, 0, 0
        origins[i] = (y, x)
        x, shelf = x + w, max(shelf, h)
    return origins, (y + shelf, width)


def _solve_packed(diff: _PartsDiff, parts: list[tuple], out: np.ndarray, tol, max_iterations, info) -> None:
    """Solve ``parts`` (none on the image border) as one system on a packed atlas; add each into ``out``."""
    origins, (ah, aw) = _pack([part.shape for _, _, part in parts])
    region = np.zeros((ah, aw), bool)
    values = np.zeros((ah, aw, diff.shape[2]), np.float32)
    for (sub, _, part), (y, x) in zip(parts, origins, strict=True):
        h, w = part.shape
        region[y : y + h, x : x + w] = part
        values[y : y + h, x : x + w] = diff[sub]
    part_info = PoissonInfo()
    solved = _solve_crop(values, region, (False,) * 4, tol, max_iterations, part_info)
    for (sub, _, part), (y, x) in zip(parts, origins, strict=True):
        h, w = part.shape
        out[sub] += solved[y : y + h, x : x + w]  # 0 off the part: parts never share a pixel
    _add_info(info, part_info)


# The region is solved part by part (its 4-connected parts are independent systems: no unknown of one is a
# neighbour of an unknown of another) when their boxes together cover at most this share of the region's box;
# a few scattered parts otherwise make the solver work on a box that is mostly known pixels. The solve's cost
# follows the area it works on, so parts pay off well before they cover the whole box: on the insertion pair
# of bench/bench_realpairs.py (ten parts whose boxes cover 0.61 of the region's box) part by part takes 48 ms
# of CPU against 75 for the whole box; two large elliptic parts whose boxes cover 0.83-0.90 of the region's
# box still took 35-42 ms against 52-60 (800 px, random boundary values): their set-up costs less than the area.
_MAX_PARTS_SHARE = 0.85
_MAX_PARTS = 32
# Parts of at most this many unknowns are solved directly, all channels at once (a sparse LU of a few hundred
# unknowns takes a fraction of a millisecond, less than the multigrid's setup; from a few
# thousand unknowns on, the factorisation costs more than the multigrid).
_DIRECT_UNKNOWNS = 1000


def _separate_parts(region: np.ndarray) -> list[tuple] | None:
    """The region's 4-connected parts as (box, which box sides are image borders, the part's mask on the box),
    boxes taken with a one-pixel ring inside ``region``'s shape; or None when one solve is cheaper."""
    # Most regions are one part: the plain labelling says so; the parts' boxes come from the labels in one pass
    # (OpenCV's labelling with statistics costs twice the plain one plus that pass).
    n, labels = cv2.connectedComponents(region.view(np.uint8), connectivity=4)
    if not 2 < n <= _MAX_PARTS + 1:
        return None
    boxes = ndimage.find_objects(labels)  # (rows, columns) slices, label 1 first
    if sum((r.stop - r.start) * (c.stop - c.start) for r, c in boxes) > _MAX_PARTS_SHARE * region.size:
        return None
    h, w = region.shape
    parts = []
    for i, (rows, cols) in enumerate(boxes, start=1):
        sub, borders = _ringed(rows.start, rows.stop, cols.start, cols.stop, h, w)
        parts.append((sub, borders, labels[sub] == i))
    return parts


def _add_info(total: PoissonInfo, part: PoissonInfo) -> None:
    total.unknowns += part.unknowns
    total.cycles = max(total.cycles, part.cycles)
    if part.unknowns > _COARSEST_UNKNOWNS:  # a directly solved part's one step is its whole solution, not a residue
        total.last_update = max(total.last_update, part.last_update)
    if not part.converged:
        total.converged = False
        total.note = part.note


def _box(region: np.ndarray) -> tuple[tuple[slice, slice], tuple[bool, bool, bool, bool]]:
    """The region's bounding box plus its one-pixel ring (clipped to the image), and which image borders it
    reaches (top, bottom, left, right)."""
    rows = np.flatnonzero(region.any(axis=1))
    cols = np.flatnonzero(region.any(axis=0))
    return _ringed(int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1, *region.shape)


def _ringed(y0: int, y1: int, x0: int, x1: int, h: int, w: int):
    """The box of rows y0..y1-1 and columns x0..x1-1 plus a one-pixel ring, clipped to an (h, w) image, and
    which image borders it reaches (top, bottom, left, right)."""
    y0, y1, x0, x1 = max(y0 - 1, 0), min(y1 + 1, h), max(x0 - 1, 0), min(x1 + 1, w)
    return (slice(y0, y1), slice(x0, x1)), (y0 == 0, y1 == h, x0 == 0, x1 == w)


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
