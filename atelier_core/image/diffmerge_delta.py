"""The ΔE map of diff-merge: how far each pixel of the edit is from the original's prediction, in CIELAB.

``delta_e_map`` is one pass over the whole detection copy. ``two_pass_delta_e`` gets the same thresholded
answer for a fraction of the cost when the edit is local: a pass at half size with a lower threshold finds the
candidate areas, and only the pixels near candidates (a list of pixels when they are few, strips of tiles
holding them otherwise) are computed at full detection size; everywhere else the map is 0 (below any threshold).
Between bounds that need no hue angle, only the pixels they cannot settle get the whole CIEDE2000 formula.
"""

from __future__ import annotations

import cv2
import numpy as np

from . import color as _color
from . import threads as _threads

# ΔE2000 never exceeds about 2.05x ΔE76 (its lightness, chroma and hue terms are each divided by weights >= 1,
# the a' stretch is at most 1.5x and the rotation term adds at most 87%), so pixels whose ΔE76 is below
# threshold / 2.1 cannot pass a ΔE2000 threshold and are not evaluated with the slower formula.
_DE2000_OVER_DE76 = 2.1
# And ΔE2000 >= |ΔL| / S_L, since its chroma/hue part (with the rotation term, |R_T| <= 2) is never negative;
# S_L = 1 + 0.015 (L - 50)^2 / sqrt(20 + (L - 50)^2) is at most 1.747 for L in 0..100.
_MAX_S_L = 1.75
# The envelope tolerance never moves a colour by more than this (Lab units per channel): enough for the
# residual misregistration of an edge, too little to hide a darkened or recoloured region in a textured area.
_ENVELOPE_CAP = 5.0


def delta_e_map(
    original_rgb: np.ndarray,
    edit_rgb: np.ndarray,
    formula: str,
    threshold: float | None,
    sigma: float,
    envelope: int = 0,
) -> np.ndarray:
    """ΔE between two sRGB images after a light Gaussian (sigma px) that evens out noise and softening.

    With ``threshold`` given and CIEDE2000, pixels that provably stay below it keep their (smaller) bound
    ΔE76 / 2.1, and pixels that provably pass it their (smaller, still passing) bound |ΔL| / 1.75, instead of
    the exact value: the thresholded mask is unchanged and the map costs a fraction.
    """
    h, w = original_rgb.shape[:2]
    out = np.empty((h, w), np.float32 if original_rgb.dtype != np.float64 else np.float64)
    # Everything is per pixel but the blur and the envelope (which read a few rows around a pixel), so it runs on
    # bands of rows with that context (_map_box): a band's dozen temporaries stay in the cache and reuse the same
    # memory, where whole-frame temporaries each cost fresh pages, and the bands can go to threads.
    rows = max(1, _BAND_PIXELS // max(w, 1))

    def band(y0: int) -> None:
        _map_box(original_rgb, edit_rgb, (y0, min(h, y0 + rows), 0, w), out, formula, threshold, sigma, envelope)

    _threads.each(band, range(0, h, rows), parallel=h * w >= _PARALLEL_PIXELS)
    return out


def _map_box(original_rgb, edit_rgb, box, out, formula: str, threshold: float | None, sigma: float, envelope: int):
    """The map on ``box`` = (y0, y1, x0, x1) of the frame, written into ``out`` there: the box plus the envelope's
    context goes through the Lab steps, that plus the blur's reach through the blur (the context pixels the blur
    gets wrong at a cut edge are never read, so the values are those of the whole frame blurred first)."""
    h, w = original_rgb.shape[:2]
    y0, y1, x0, x1 = box
    ey0, ey1, ex0, ex1 = max(0, y0 - envelope), min(h, y1 + envelope), max(0, x0 - envelope), min(w, x1 + envelope)
    reach = _blur_reach(sigma)
    by0, by1, bx0, bx1 = max(0, ey0 - reach), min(h, ey1 + reach), max(0, ex0 - reach), min(w, ex1 + reach)
    o_box, e_box = original_rgb[by0:by1, bx0:bx1], edit_rgb[by0:by1, bx0:bx1]
    if sigma > 0:
        o_box = cv2.GaussianBlur(o_box, (0, 0), sigma)
        e_box = cv2.GaussianBlur(e_box, (0, 0), sigma)
    inner = (slice(ey0 - by0, ey1 - by0), slice(ex0 - bx0, ex1 - bx0))
    de = _delta_e_band(o_box[inner], e_box[inner], formula, threshold, envelope)
    out[y0:y1, x0:x1] = de[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]


def _blur_reach(sigma: float) -> int:
    """How many pixels away OpenCV's Gaussian blur of ``sigma`` reads (its float kernel reaches 4 sigma), plus 1
    to spare; 0 without a blur."""
    return int(np.ceil(4 * sigma)) + 1 if sigma > 0 else 0


# Pixels per band of delta_e_map: the band's Lab copies, bounds and masks stay in the cache (on the insertion
# pair's full pass, 131072 takes a seventh less CPU than 65536 and a tenth less than 262144).
_BAND_PIXELS = 131072
# Pixels per chunk of the pixel-list pass, whose gathers favour smaller chunks (the sign and watermark pairs'
# lists: 6 % less CPU than with 131072).
_CHUNK_PIXELS = 65536
# From this many pixels the bands (and the tile pass's strips) are shared by a few threads: numpy and OpenCV
# release the GIL in their loops, and the bands write disjoint rows. On 2 cores a megapixel full pass takes
# about 0.7 of its serial wall time for the same CPU time; below this the threads' start-up is not repaid.
_PARALLEL_PIXELS = 262144


def _delta_e_band(original_rgb, edit_rgb, formula: str, threshold: float | None, envelope: int) -> np.ndarray:
    """delta_e_map's work after the blur, on a band of rows (the envelope's context included)."""
    lab_o = _color.srgb_to_lab(np.clip(original_rgb, 0, 1))
    lab_e = _color.srgb_to_lab(np.clip(edit_rgb, 0, 1))
    if envelope > 0:
        lab_o = _envelope_nearest(lab_o, lab_e, envelope)
    return _delta_e_lab(lab_o, lab_e, formula, threshold)


def _delta_e_lab(lab_o: np.ndarray, lab_e: np.ndarray, formula: str, threshold: float | None) -> np.ndarray:
    """delta_e_map's values from the two Lab arrays (..., 3), the original's already moved by the envelope."""
    de76 = _color.delta_e_cie76(lab_o, lab_e)
    if formula.lower() == "cie76":
        return de76
    if threshold is None:
        return _color.delta_e_ciede2000(lab_o, lab_e)
    out = de76 / _DE2000_OVER_DE76
    # Pixels whose lightness difference alone passes the threshold keep that lower bound: the mask only asks
    # "above the threshold?" (the median filter and the threshold after it are monotone), not by how much.
    sure = np.abs(lab_o[..., 0] - lab_e[..., 0])
    sure /= _MAX_S_L
    passed = sure > threshold
    np.copyto(out, sure, where=passed)
    idx = np.flatnonzero((de76 > threshold / _DE2000_OVER_DE76) & ~passed)
    if idx.size:
        sub_o, sub_e = _rows(lab_o, idx), _rows(lab_e, idx)
        # Bounds without any hue angle settle most of the rest (their lower bound is kept, as above); only the
        # pixels between them need the whole formula.
        low, high = _color.ciede2000_bounds(sub_o, sub_e)
        open_ = np.flatnonzero((low <= threshold) & (high > threshold))
        if open_.size:
            low[open_] = _color.delta_e_ciede2000(_rows(sub_o, open_), _rows(sub_e, open_))
        np.put(out.reshape(-1), idx, low)
    return out


def _envelope_nearest(lab_o: np.ndarray, lab_e: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel, the point nearest the edit's colour in the box spanned by the original's colours within
    ``radius`` px: a residual sub-pixel misalignment or a softer re-render moves an edge's values between its
    neighbours' values, which stays inside that box, while a real edit leaves it."""
    kernel = np.ones((2 * radius + 1,) * 2, np.uint8)
    lo = cv2.erode(lab_o, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(lab_o, kernel, borderType=cv2.BORDER_REPLICATE)
    return _nearest_in_box(lab_o, lo, hi, lab_e)


def _nearest_in_box(lab_o: np.ndarray, lo: np.ndarray, hi: np.ndarray, lab_e: np.ndarray) -> np.ndarray:
    """The edit's colour clipped to the box [lo, hi] of the original's neighbourhood, the box held within
    _ENVELOPE_CAP of the original's own colour (``lo`` and ``hi`` are overwritten)."""
    np.maximum(lo, lab_o - _ENVELOPE_CAP, out=lo)
    np.minimum(hi, lab_o + _ENVELOPE_CAP, out=hi)
    return np.clip(lab_e, lo, hi)


# The half-size pass looks for candidates at this share of the threshold: averaging 2x2 pixels and the envelope
# (which spans twice as many full-size pixels there) lower a changed pixel's ΔE, and a candidate costs only time.
CANDIDATE_SHARE = 0.5
# Side (detection pixels) of the tiles the kind decision counts candidates in, to tell a change spread all over
# the frame (one full pass) from one in places (two passes); too small for a picture: one pass.
SPREAD_TILE = 64
_MIN_TWO_PASS_PIXELS = 512 * 512  # below this one pass is cheap already
# How the full-size map is computed after the half-size pass, by the share of the frame it is wanted at (the
# candidates grown by 4 px), measured on the real pairs of bench/bench_realpairs.py: up to _SPARSE_SHARE as a
# list of pixels (1-9 % on the sunglasses, sign and watermark pairs: 10-25 % less than tiles; at 20-25 % its
# neighbour gathers make it dearer than tiles), above that on strips of SPREAD_TILE px tiles, and in one pass
# over the frame when the tiles cover more than _MAX_TILE_SHARE of it (the strips cost about their share of a
# full pass plus their context rows, and the half-size pass is already spent).
_SPARSE_SHARE = 0.15
_MAX_TILE_SHARE = 0.75


def half_size(original_rgb: np.ndarray, edit_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The half-size copies two_pass_delta_e starts from (area averages of 2x2 pixels), or None when the images
    are small enough for one pass. The kind decision's quick map is made from them too."""
    h, w = original_rgb.shape[:2]
    if h * w < _MIN_TWO_PASS_PIXELS or min(h, w) < 2 * SPREAD_TILE:
        return None
    size = (w // 2, h // 2)
    return (
        cv2.resize(original_rgb, size, interpolation=cv2.INTER_AREA),
        cv2.resize(edit_rgb, size, interpolation=cv2.INTER_AREA),
    )


def two_pass_delta_e(
    original_rgb: np.ndarray,
    edit_rgb: np.ndarray,
    formula: str,
    threshold: float,
    sigma: float,
    envelope: int,
    halves: tuple[np.ndarray, np.ndarray] | None = None,
    wide: bool = False,
) -> np.ndarray:
    """``delta_e_map(original_rgb, edit_rgb, ...)`` wherever it can pass ``threshold``, 0 elsewhere.

    ``original_rgb`` is the original as the re-render would show it (the caller's colour prediction applied). The
    full-size map is computed only at the pixels a half-size pass finds candidates at (grown by 2 half-size px),
    with their context, so that each comes out as in one pass.
    ``halves``: half_size(original_rgb, edit_rgb) when the caller has it already. ``wide``: the caller
    knows the candidates would cover most of the frame (the half-size pass would be spent for nothing)."""
    h, w = original_rgb.shape[:2]

    def one_pass() -> np.ndarray:
        return delta_e_map(original_rgb, edit_rgb, formula, threshold, sigma, envelope)

    halves = halves if halves is not None or wide else half_size(original_rgb, edit_rgb)
    if halves is None:
        return one_pass()
    low = threshold * CANDIDATE_SHARE
    candidates = (delta_e_map(halves[0], halves[1], formula, low, sigma / 2, envelope) > low).view(np.uint8)
    candidates = cv2.dilate(candidates, np.ones((5, 5), np.uint8))
    # Each half-size pixel stands for its 2x2 full-size pixels; an odd last row or column repeats its neighbour.
    wanted = np.repeat(np.repeat(candidates, 2, axis=0), 2, axis=1)
    wanted = np.pad(wanted, ((0, h - wanted.shape[0]), (0, w - wanted.shape[1])), mode="edge").view(bool)
    if wanted.mean() <= _SPARSE_SHARE:
        return _sparse_pass(original_rgb, edit_rgb, wanted, formula, threshold, sigma, envelope)
    rows, cols, half = -(-h // SPREAD_TILE), -(-w // SPREAD_TILE), SPREAD_TILE // 2
    grid = np.zeros((rows * half, cols * half), np.uint8)
    grid[: h // 2, : w // 2] = candidates
    tiles = grid.reshape(rows, half, cols, half).max(axis=(1, 3)) > 0
    if tiles.mean() > _MAX_TILE_SHARE:
        return one_pass()
    return _tile_pass(original_rgb, edit_rgb, tiles, formula, threshold, sigma, envelope)


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def _tile_pass(original_rgb, edit_rgb, tiles, formula: str, threshold: float, sigma: float, envelope: int):
    """The full-size map on the runs of ``tiles`` (a (rows, cols) bool grid of SPREAD_TILE px tiles), 0
    elsewhere: each run through _map_box (blurred with its context, only the run plus the envelope's context
    through the costly Lab steps), the strips of tiles on the thread pool when they cover enough pixels."""
    h, w = original_rgb.shape[:2]
    out = np.zeros((h, w), np.float32)
    tile = SPREAD_TILE

    def strip(ty: int) -> None:
        y0, y1 = ty * tile, min(h, (ty + 1) * tile)
        for tx0, tx1 in _runs(tiles[ty]):
            box = (y0, y1, tx0 * tile, min(w, tx1 * tile))
            _map_box(original_rgb, edit_rgb, box, out, formula, threshold, sigma, envelope)

    strips = [ty for ty in range(tiles.shape[0]) if tiles[ty].any()]
    _threads.each(strip, strips, parallel=int(tiles.sum()) * tile * tile >= _PARALLEL_PIXELS)
    return out


def _sparse_pass(original_rgb, edit_rgb, wanted, formula: str, threshold: float, sigma: float, envelope: int):
    """The full-size map at the ``wanted`` pixels, 0 elsewhere. The blur runs on the wanted pixels' box (a few
    passes of cheap filters); only the wanted pixels, and for the original their envelope's neighbours, go through
    the costly Lab steps, gathered as lists of pixels."""
    h, w = wanted.shape
    out = np.zeros((h, w), np.float32)
    rows, cols = np.flatnonzero(wanted.any(axis=1)), np.flatnonzero(wanted.any(axis=0))
    if rows.size == 0:
        return out
    # The box of the wanted pixels with the envelope's and the blur's context (OpenCV's kernel reaches 4 sigma).
    pad = _blur_reach(sigma) + envelope
    y0, y1 = max(0, int(rows[0]) - pad), min(h, int(rows[-1]) + 1 + pad)
    x0, x1 = max(0, int(cols[0]) - pad), min(w, int(cols[-1]) + 1 + pad)
    o_rgb, e_rgb = original_rgb[y0:y1, x0:x1], edit_rgb[y0:y1, x0:x1]
    if sigma > 0:
        o_rgb = cv2.GaussianBlur(o_rgb, (0, 0), sigma)
        e_rgb = cv2.GaussianBlur(e_rgb, (0, 0), sigma)
    o_rgb, e_rgb = np.ascontiguousarray(o_rgb, np.float32), np.ascontiguousarray(e_rgb, np.float32)
    # Within the box, the image edge is the box's edge only where the frame's is: the envelope reads replicated
    # pixels there, and real ones everywhere else (the box holds them).
    box = wanted[y0:y1, x0:x1]
    idx = np.flatnonzero(box)
    lab_o = _PixelLab(o_rgb)
    if envelope > 0:
        k = 2 * envelope + 1
        lab_o.make(np.flatnonzero(cv2.dilate(box.view(np.uint8), np.ones((k, k), np.uint8))))
    else:
        lab_o.make(idx)
    values = np.empty(idx.size, np.float32)
    # Chunks of pixels: every temporary of the Lab and ΔE steps stays in the cache.
    for start in range(0, idx.size, _CHUNK_PIXELS):
        part = idx[start : start + _CHUNK_PIXELS]
        lab_e = _color.srgb_to_lab(np.clip(_rows(e_rgb, part), 0, 1))
        near = lab_o.envelope(part, lab_e, envelope) if envelope > 0 else lab_o.at(part)
        values[start : start + part.size] = _delta_e_lab(near, lab_e, formula, threshold)
    box_out = np.zeros(box.shape, np.float32)
    box_out.reshape(-1)[idx] = values
    out[y0:y1, x0:x1] = box_out
    return out


class _PixelLab:
    """The Lab values of some pixels of an sRGB image (H, W, 3), kept in a frame-sized table (written only where
    made) so that neighbours are read by index."""

    def __init__(self, rgb: np.ndarray):
        self.rgb = rgb
        self.h, self.w = rgb.shape[:2]
        self.table = np.empty((self.h * self.w, 3), np.float32)

    def make(self, idx: np.ndarray) -> None:
        for start in range(0, idx.size, _CHUNK_PIXELS):
            part = idx[start : start + _CHUNK_PIXELS]
            self.table[part] = _color.srgb_to_lab(np.clip(_rows(self.rgb, part), 0, 1))

    def at(self, idx: np.ndarray) -> np.ndarray:
        return _rows(self.table, idx)

    def envelope(self, idx: np.ndarray, lab_e: np.ndarray, radius: int) -> np.ndarray:
        """_envelope_nearest at the pixels ``idx`` (their neighbours within ``radius`` made): one gather per
        offset of the square, the image edge repeated as OpenCV's erosion and dilation repeat it."""
        ys, xs = np.divmod(idx, self.w)
        centre = self.at(idx)
        lo, hi = centre.copy(), centre.copy()
        for dy in range(-radius, radius + 1):
            row = np.clip(ys + dy, 0, self.h - 1) * self.w
            for dx in range(-radius, radius + 1):
                if dy or dx:
                    values = self.at(row + np.clip(xs + dx, 0, self.w - 1))
                    np.minimum(lo, values, out=lo)
                    np.maximum(hi, values, out=hi)
        return _nearest_in_box(centre, lo, hi, lab_e)


def _rows(values: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """``values.reshape(-1, 3)[idx]`` for (..., 3) values of any float type, each pixel read as one record of its
    three values (a fifth less time than numpy's row gather on (N, 3) floats, a fifth of fancy indexing's)."""
    flat = np.ascontiguousarray(values).reshape(-1, 3)
    records = flat.view(np.dtype((np.void, 3 * flat.itemsize))).reshape(-1)
    return np.take(records, idx).view(flat.dtype).reshape(-1, 3)
