"""The ΔE map of diff-merge: how far each pixel of the edit is from the original's prediction, in CIELAB.

``delta_e_map`` is one pass over the whole detection copy. ``two_pass_delta_e`` gets the same thresholded
answer for a fraction of the cost when the edit is local: a pass at half size with a lower threshold finds the
candidate areas, and only strips of tiles holding candidates are computed at full detection size; everywhere
else the map is 0 (below any threshold).
"""

from __future__ import annotations

import cv2
import numpy as np

from . import color as _color

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
    if sigma > 0:
        original_rgb = cv2.GaussianBlur(original_rgb, (0, 0), sigma)
        edit_rgb = cv2.GaussianBlur(edit_rgb, (0, 0), sigma)
    h, w = original_rgb.shape[:2]
    out = np.empty((h, w), np.float32 if original_rgb.dtype != np.float64 else np.float64)
    # Everything after the blur is per pixel (the envelope reads ``envelope`` rows around it), so it runs on
    # bands of rows with that much context: a band's dozen temporaries stay in the cache and reuse the same
    # memory, where whole-frame temporaries each cost fresh pages (same values, about half the time).
    rows = max(1, _BAND_PIXELS // max(w, 1))
    for y0 in range(0, h, rows):
        y1 = min(h, y0 + rows)
        py0, py1 = max(0, y0 - envelope), min(h, y1 + envelope)
        de = _delta_e_band(original_rgb[py0:py1], edit_rgb[py0:py1], formula, threshold, envelope)
        out[y0:y1] = de[y0 - py0 : y1 - py0]
    return out


# Pixels per band of delta_e_map: the band's Lab copies, bounds and masks fit in a core's L2 cache.
_BAND_PIXELS = 65536


def _delta_e_band(original_rgb, edit_rgb, formula: str, threshold: float | None, envelope: int) -> np.ndarray:
    """delta_e_map's work after the blur, on a band of rows (the envelope's context included)."""
    lab_o = _color.srgb_to_lab(np.clip(original_rgb, 0, 1))
    lab_e = _color.srgb_to_lab(np.clip(edit_rgb, 0, 1))
    if envelope > 0:
        lab_o = _envelope_nearest(lab_o, lab_e, envelope)
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
        flat_o, flat_e = lab_o.reshape(-1, 3), lab_e.reshape(-1, 3)
        exact = _color.delta_e_ciede2000(np.take(flat_o, idx, axis=0), np.take(flat_e, idx, axis=0))
        np.put(out.reshape(-1), idx, exact)
    return out


def _envelope_nearest(lab_o: np.ndarray, lab_e: np.ndarray, radius: int) -> np.ndarray:
    """Per pixel, the point nearest the edit's colour in the box spanned by the original's colours within
    ``radius`` px: a residual sub-pixel misalignment or a softer re-render moves an edge's values between its
    neighbours' values, which stays inside that box, while a real edit leaves it."""
    kernel = np.ones((2 * radius + 1,) * 2, np.uint8)
    lo = cv2.erode(lab_o, kernel, borderType=cv2.BORDER_REPLICATE)
    hi = cv2.dilate(lab_o, kernel, borderType=cv2.BORDER_REPLICATE)
    np.maximum(lo, lab_o - _ENVELOPE_CAP, out=lo)
    np.minimum(hi, lab_o + _ENVELOPE_CAP, out=hi)
    return np.clip(lab_e, lo, hi)


# The half-size pass looks for candidates at this share of the threshold: averaging 2x2 pixels and the envelope
# (which spans twice as many full-size pixels there) lower a changed pixel's ΔE, and a candidate costs only time.
_CANDIDATE_SHARE = 0.5
_TILE = 64  # detection pixels per side of the tiles the full-size pass is computed on
_MIN_TWO_PASS_PIXELS = 512 * 512  # below this one pass is cheap already
# With more of the frame in candidate tiles one pass over everything is cheaper: the strips cost about their share
# of a full pass plus their context rows, and the half-size pass (a quarter of a full one) is already spent.
_MAX_CANDIDATE_SHARE = 0.75


def _runs(row: np.ndarray) -> list[tuple[int, int]]:
    """(start, stop) of each run of True in a 1-D bool array."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], row.astype(np.int8), [0]])))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def half_size(original_rgb: np.ndarray, edit_rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The half-size copies two_pass_delta_e starts from (area averages of 2x2 pixels), or None when the images
    are small enough for one pass. The kind decision's quick map is made from them too."""
    h, w = original_rgb.shape[:2]
    if h * w < _MIN_TWO_PASS_PIXELS or min(h, w) < 2 * _TILE:
        return None
    size = (w // 2, h // 2)
    return (
        cv2.resize(original_rgb, size, interpolation=cv2.INTER_AREA),
        cv2.resize(edit_rgb, size, interpolation=cv2.INTER_AREA),
    )


def two_pass_delta_e(
    original_rgb: np.ndarray,
    edit_rgb: np.ndarray,
    predict,
    formula: str,
    threshold: float,
    sigma: float,
    envelope: int,
    halves: tuple[np.ndarray, np.ndarray] | None = None,
    wide: bool = False,
) -> np.ndarray:
    """``delta_e_map(predict(original_rgb), edit_rgb, ...)`` wherever it can pass ``threshold``, 0 elsewhere.

    ``predict`` (a per-pixel colour function, or None) turns the original's colours into the re-render's. The
    full-size map is computed on strips of ``_TILE`` px tiles that hold a half-size candidate (the candidates
    grown by 2 half-size px), each with enough context around it that its pixels come out as in one pass.
    ``halves``: half_size(original_rgb, edit_rgb) when the caller has it already. ``wide``: the caller
    knows the candidates would cover most tiles (the half-size pass would be spent for nothing)."""
    predict = predict if predict is not None else (lambda rgb: rgb)
    h, w = original_rgb.shape[:2]

    def one_pass() -> np.ndarray:
        return delta_e_map(predict(original_rgb), edit_rgb, formula, threshold, sigma, envelope)

    halves = halves if halves is not None or wide else half_size(original_rgb, edit_rgb)
    if halves is None:
        return one_pass()
    hh, hw = h // 2, w // 2
    o_half, e_half = predict(halves[0]), halves[1]
    low = threshold * _CANDIDATE_SHARE
    candidates = (delta_e_map(o_half, e_half, formula, low, sigma / 2, envelope) > low).astype(np.uint8)
    candidates = cv2.dilate(candidates, np.ones((5, 5), np.uint8))
    rows, cols, half = -(-h // _TILE), -(-w // _TILE), _TILE // 2
    grid = np.zeros((rows * half, cols * half), np.uint8)
    grid[:hh, :hw] = candidates
    tiles = grid.reshape(rows, half, cols, half).max(axis=(1, 3)) > 0
    if tiles.mean() > _MAX_CANDIDATE_SHARE:
        return one_pass()
    return _tile_pass(original_rgb, edit_rgb, predict, tiles, formula, threshold, sigma, envelope)


def _tile_pass(original_rgb, edit_rgb, predict, tiles, formula: str, threshold: float, sigma: float, envelope: int):
    """The full-size map on the runs of ``tiles`` (a (rows, cols) bool grid of ``_TILE`` px tiles), 0 elsewhere.
    Each run is predicted and blurred with the blur's context around it (OpenCV's kernel reaches 4 sigma, plus
    1 px to spare), and only the run itself plus the envelope's context goes through the costly Lab steps."""
    h, w = original_rgb.shape[:2]
    out = np.zeros((h, w), np.float32)
    blur = int(np.ceil(4 * sigma)) + 1 if sigma > 0 else 0
    pad = blur + envelope
    for ty in range(tiles.shape[0]):
        y0, y1 = ty * _TILE, min(h, (ty + 1) * _TILE)
        py0, py1 = max(0, y0 - pad), min(h, y1 + pad)
        ey0, ey1 = max(0, y0 - envelope), min(h, y1 + envelope)
        for tx0, tx1 in _runs(tiles[ty]):
            x0, x1 = tx0 * _TILE, min(w, tx1 * _TILE)
            px0, px1 = max(0, x0 - pad), min(w, x1 + pad)
            ex0, ex1 = max(0, x0 - envelope), min(w, x1 + envelope)
            o_box = predict(original_rgb[py0:py1, px0:px1])
            e_box = edit_rgb[py0:py1, px0:px1]
            if sigma > 0:
                o_box = cv2.GaussianBlur(o_box, (0, 0), sigma)
                e_box = cv2.GaussianBlur(e_box, (0, 0), sigma)
            inner = (slice(ey0 - py0, ey1 - py0), slice(ex0 - px0, ex1 - px0))
            de = _delta_e_band(o_box[inner], e_box[inner], formula, threshold, envelope)
            out[y0:y1, x0:x1] = de[y0 - ey0 : y1 - ey0, x0 - ex0 : x1 - ex0]
    return out
