"""What kind of edit a pair is, decided before merging: local, global or reframed.

A diff-merge only makes sense for a local edit: the same picture, at the same framing (give or take Kontext's
sub-pixel-to-few-pixel drift), with part of it changed. When most of the frame changed (a relit room, a new
scene for the same character, a re-composition) or when the model moved or zoomed the whole picture, merging
would paste ghosts of the original into the edit, or crop and zoom it to fit the original; the right answer there
is the edit itself, at the original's size. See atelier_core.image.diffmerge for the pipeline.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from . import align as _align
from .diffmerge_delta import CANDIDATE_SHARE, SPREAD_TILE, delta_e_map

KINDS = ("local", "global", "reframed")
# Share of the frame changed (on the quick map) from which an edit is global: local edits, even large ones
# (a recoloured object, a relit third of the frame), change well under half of it.
GLOBAL_SHARE = 0.5
# A motion moving the frame's farthest corner by more than this share of the diagonal is a reframe: Kontext's own
# drift is a few pixels (well under 1 % at 1 MP); a model that zoomed out 5 % moves the corners 2.5 % and more.
REFRAME_SHARE = 0.02
_QUICK_SIDE = 256  # long side of the quick ΔE map the share is measured on
FORCE_HINT = "set force_merge (command line: --force-merge) to merge anyway"


@dataclass
class EditKind:
    kind: str = "local"
    reason: str = ""
    changed_share: float = 0.0  # on the quick map

    @property
    def whole(self) -> bool:
        """True when the answer is the edit itself rather than a merge."""
        return self.kind != "local"


def quick_changes(o_s, e_s, valid_s, formula: str, threshold: float, sigma: float, halves=None) -> tuple[float, float]:
    """``o_s``: the original as the re-render would show it (the colour prediction applied), ``e_s`` the edit.
    -> (share of the (valid) frame whose ΔE passes ``threshold``, share of the detection copy's
    ``SPREAD_TILE`` px tiles holding a pixel that passes half of it), both on a copy about ``_QUICK_SIDE`` px long.
    The second says beforehand whether two_pass_delta_e's half-size pass would find candidates nearly
    everywhere (a re-rendered frame), so that it can be skipped. ``halves``: half-size copies of ``o_s`` and
    ``e_s`` (diffmerge_delta.half_size), read instead of the full-size ones when given: a quarter of the pixels
    to average."""
    h, w = o_s.shape[:2]
    q = min(1.0, _QUICK_SIDE / max(h, w))
    size = (max(1, round(w * q)), max(1, round(h * q)))

    def small(img):
        return cv2.resize(img, size, interpolation=cv2.INTER_AREA).reshape(size[1], size[0], -1) if q < 1 else img

    o_q, e_q = (small(o_s), small(e_s)) if halves is None or q >= 0.5 else (small(halves[0]), small(halves[1]))
    # With ``threshold`` given, values that cannot decide it are bounds (a pixel below it may show less than its
    # ΔE): exact for the share, an estimate for the candidate tiles that can only miss some (erring towards the
    # two passes), at a fraction of the cost of exact values everywhere.
    de = delta_e_map(o_q, e_q, formula, threshold, sigma * q, 1)
    changed = de > threshold
    if min(size) >= 3:
        changed = cv2.medianBlur(changed.astype(np.uint8), 3) > 0
    # Grown by a quick pixel (5 px of a megapixel copy), as the half-size candidates are grown by 4 px.
    ys, xs = np.nonzero(cv2.dilate((de > threshold * CANDIDATE_SHARE).view(np.uint8), np.ones((3, 3), np.uint8)))
    rows, cols = -(-h // SPREAD_TILE), -(-w // SPREAD_TILE)
    tiles = np.zeros((rows, cols), bool)
    tiles[
        np.minimum((ys / (q * SPREAD_TILE)).astype(np.int64), rows - 1),
        np.minimum((xs / (q * SPREAD_TILE)).astype(np.int64), cols - 1),
    ] = True
    spread = float(tiles.mean())
    if valid_s is None:
        return float(changed.mean()), spread
    valid = small(valid_s.astype(np.float32)).reshape(changed.shape) > 0.5
    return (float(changed[valid].mean()) if valid.any() else 0.0), spread


def decide(alignment: _align.Alignment, share: float, width: int, height: int) -> EditKind:
    """The kind from the alignment (at the detection copy's ``width`` x ``height``) and the quick share."""
    corner = alignment.corner_motion(width, height) if alignment.ok else 0.0
    if corner > REFRAME_SHARE * float(np.hypot(width, height)):
        return EditKind(
            "reframed",
            f"reframed: the model moved the whole picture (shift {alignment.dx:+.1f}, {alignment.dy:+.1f} px, "
            f"scale {alignment.scale:.3f}: a corner moves {corner:.0f} px of the detection copy, Kontext's own "
            "drift is a few)",
            share,
        )
    if share >= GLOBAL_SHARE:
        unrelated = (
            f", and its structure does not match the original's (match {alignment.confidence:.2f})"
            if alignment.confidence < _align.MIN_CONFIDENCE  # False for NaN: alignment off or image too small
            else ""
        )
        return EditKind("global", f"global edit: {100 * share:.0f}% of the frame changed{unrelated}", share)
    return EditKind("local", "", share)


def fit_whole(edit: np.ndarray, height: int, width: int) -> np.ndarray:
    """The edit stretched to the original's size (no crop: a whole-picture answer keeps all of the picture)."""
    if edit.shape[:2] == (height, width):
        return np.array(edit, np.float32)
    interp = cv2.INTER_AREA if width < edit.shape[1] else cv2.INTER_CUBIC
    return cv2.resize(edit, (width, height), interpolation=interp).reshape(height, width, edit.shape[2])


_BANNER_COLOURS = {"global": (0.15, 0.45, 1.0), "reframed": (0.85, 0.2, 0.9)}


def label_preview(image_rgb: np.ndarray, kind: EditKind) -> np.ndarray:
    """The preview of a whole-edit answer: the edit framed in the kind's colour, with a line saying what it is."""
    preview = np.clip(np.array(image_rgb, np.float32), 0.0, 1.0)
    h, w = preview.shape[:2]
    colour = _BANNER_COLOURS.get(kind.kind, (1.0, 0.9, 0.0))
    band = max(2, round(min(h, w) / 80))
    for sl in ((slice(0, band), slice(None)), (slice(h - band, h), slice(None))):
        preview[sl] = colour
    preview[:, :band] = colour
    preview[:, w - band :] = colour
    text = f"{kind.kind.upper()} EDIT: the edit itself, not merged"
    font_scale = max(0.35, w / 1400)
    thickness = max(1, round(font_scale * 2))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
    y1 = min(h, band + th + base + 2 * band)
    preview[band:y1, band : min(w, band + tw + 2 * band)] *= 0.35
    ink = np.zeros((h, w), np.uint8)  # OpenCV draws text on 8-bit images only
    cv2.putText(ink, text, (2 * band, band + th + band), cv2.FONT_HERSHEY_SIMPLEX, font_scale, 255, thickness)
    preview[ink > 0] = colour
    return preview
