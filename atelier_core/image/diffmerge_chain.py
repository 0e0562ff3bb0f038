"""A many-turn diff-merge chain with Kontext-like drift, and the figures that say whether it stays exact.

Each turn applies one local edit to the current picture (the "ideal" chain applies it to the ideal picture),
re-renders the whole frame the way Kontext does (sub-pixel shift, slight zoom, colour tint, softening, noise),
and merges the render back with :func:`atelier_core.image.diffmerge.diff_merge`. The figures compare the merged chain
with the ideal one: pixels far from every edit must never change, and after all turns the pixels outside the
edits must still be the original's bit for bit. Used by tests/test_diffmerge_chain.py and
bench/bench_diffmerge_peer.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import align as _align
from . import diffmerge as _dm

EDIT_KINDS = ("recolour", "pattern", "brighten", "remove")


@dataclass
class Drift:
    """The global re-render of one Kontext pass."""

    dx: float = 0.6
    dy: float = -0.4
    zoom: float = 1.004
    gains: tuple[float, float, float] = (1.03, 1.0, 0.96)
    offset: float = 0.01
    blur: float = 0.6
    noise: float = 0.01

    def apply(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        out = _align.warp_image(image, _align.Alignment(self.dx, self.dy, self.zoom))
        out = np.clip(out * np.asarray(self.gains, np.float32) + np.float32(self.offset), 0, 1)
        if self.blur > 0:
            out = cv2.GaussianBlur(out, (0, 0), self.blur)
        out = out + rng.normal(0, self.noise, out.shape).astype(np.float32)
        return np.clip(out, 0, 1).astype(np.float32)


def drift_for(size_name: str, rng: np.random.Generator) -> Drift:
    """A random drift of the named size: "small" (a few tenths of a pixel), "medium" or "large" (zoom 0.4 %)."""
    scale = {"small": 0.3, "medium": 1.0, "large": 2.0}[size_name]
    zoom = {"small": 1.001, "medium": 1.002, "large": 1.004}[size_name]
    tint = rng.uniform(-0.04, 0.04, 3) * scale
    return Drift(
        dx=float(rng.uniform(-1, 1) * scale),
        dy=float(rng.uniform(-1, 1) * scale),
        zoom=zoom,
        gains=tuple(float(1 + t) for t in tint),
        offset=float(rng.uniform(-0.01, 0.01) * scale),
        blur=0.4 + 0.2 * scale,
        noise=0.006 + 0.003 * scale,
    )


def _region(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """An ellipse of 3-8 % of the short side in radius, away from the border."""
    ry, rx = (rng.uniform(0.03, 0.08, 2) * min(h, w)).tolist()
    cy = rng.uniform(ry + 0.05 * h, h - ry - 0.05 * h)
    cx = rng.uniform(rx + 0.05 * w, w - rx - 0.05 * w)
    yy, xx = np.ogrid[:h, :w]
    return ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 < 1


def apply_edit(image: np.ndarray, region: np.ndarray, kind: str, rng: np.random.Generator) -> np.ndarray:
    """The edit itself: changes ``image`` inside ``region`` only (with a 1 px anti-aliased edge inside it)."""
    h, w = region.shape
    if kind == "recolour":
        hue = rng.uniform(0.1, 0.9, 3).astype(np.float32)
        new = image.mean(axis=2, keepdims=True) * np.float32(0.4) + hue * np.float32(0.6)
    elif kind == "pattern":
        yy, xx = np.mgrid[:h, :w].astype(np.float32)
        phase = float(rng.uniform(0, 6.28))
        new = 0.5 + 0.35 * np.sin(xx / 7.0 + phase)[..., None] * np.array([1.0, -0.4, 0.6], np.float32)
        new = new + 0.1 * np.cos(yy / 11.0)[..., None]
    elif kind == "brighten":
        new = image * 0.6 + np.float32(0.4)
    elif kind == "remove":
        new = cv2.GaussianBlur(image, (0, 0), 25.0) * np.float32(0.9) + np.float32(0.05)
    else:
        raise ValueError(f"unknown edit kind {kind!r}")
    # A soft (1 px) edge inside the region, like a generated object's anti-aliased outline.
    inner = cv2.GaussianBlur(region.astype(np.float32), (0, 0), 0.7) * region
    out = image * (1 - inner[..., None]) + np.clip(new, 0, 1) * inner[..., None]
    return out.astype(np.float32)


@dataclass
class ChainFigures:
    turns: int
    far_changed: list[int] = field(default_factory=list)  # per turn: changed px farther than ``far`` px from edit
    beyond50: list[int] = field(default_factory=list)  # per turn: changed px farther than 50 px
    beyond_dilate: list[int] = field(default_factory=list)  # per turn: changed px farther than ``dilate`` px
    band: list[float] = field(default_factory=list)  # per turn: farthest changed px from that turn's edit
    identical_outside: float = 0.0  # fraction bit-identical to the original outside the dilated edits
    identical_beyond_far: float = 0.0  # the same outside the edits grown by ``far`` px
    psnr_outside: float = 0.0  # dB against the ideal chain outside the dilated edits
    psnr_edits: float = 0.0  # dB against the ideal chain inside the edits (shrunk by 3 px): the edits were taken
    spurious: np.ndarray | None = None  # (H, W) bool: every pixel that ever changed farther than ``far`` px
    edits: np.ndarray | None = None  # (H, W) bool: the union of the turns' edit regions
    final: np.ndarray | None = None  # (H, W, 3) the merged picture after the last turn


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def run_chain(
    photo: np.ndarray,
    turns: int = 10,
    drift_size: str = "large",
    seed: int = 0,
    options: _dm.MergeOptions | None = None,
    far: float = 20.0,
    dilate: int = 8,
    merge=None,
) -> ChainFigures:
    """Chain ``turns`` edits on ``photo`` (H, W, 3 float in 0..1), merging each back; see the module docstring.

    ``merge(original, render) -> merged`` replaces our diff-merge (the benchmark runs a peer's node through it).
    """
    if merge is None:

        def merge(original, render):
            return _dm.diff_merge(original, render, options).merged

    rng = np.random.default_rng(seed)
    h, w = photo.shape[:2]
    merged = np.array(photo, np.float32)
    ideal = merged.copy()
    edits = np.zeros((h, w), bool)
    figures = ChainFigures(turns)
    figures.spurious = np.zeros((h, w), bool)
    for turn in range(turns):
        region = _region(h, w, rng)
        kind = EDIT_KINDS[turn % len(EDIT_KINDS)]
        edit_rng = np.random.default_rng(seed * 1000 + turn)
        ideal = np.where(region[..., None], apply_edit(ideal, region, kind, edit_rng), ideal)
        wanted = apply_edit(merged, region, kind, np.random.default_rng(seed * 1000 + turn))
        render = drift_for(drift_size, rng).apply(wanted, rng)
        merged_now = np.asarray(merge(merged, render), np.float32)
        changed = (merged_now != merged).any(axis=2)
        dist = cv2.distanceTransform((~region).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        figures.far_changed.append(int((changed & (dist > far)).sum()))
        figures.beyond50.append(int((changed & (dist > 50)).sum()))
        figures.beyond_dilate.append(int((changed & (dist > dilate)).sum()))
        figures.band.append(float(dist[changed].max()) if changed.any() else 0.0)
        figures.spurious |= changed & (dist > far)
        merged = merged_now
        edits |= region
    outside = ~_dm.grow_mask(edits, dilate)
    figures.identical_outside = float((merged[outside] == photo[outside]).all(axis=1).mean())
    figures.psnr_outside = _psnr(merged[outside], ideal[outside])
    beyond = ~_dm.grow_mask(edits, int(far))
    figures.identical_beyond_far = float((merged[beyond] == photo[beyond]).all(axis=1).mean())
    inside = _dm.grow_mask(edits, -3)
    figures.psnr_edits = _psnr(merged[inside], ideal[inside])
    figures.edits, figures.final = edits, merged
    return figures


def spurious_picture(photo: np.ndarray, figures: ChainFigures) -> np.ndarray:
    """The chain's last picture (``photo`` when the figures have none) darkened, the edit regions outlined in
    green and every spuriously changed pixel (farther than ``far`` from that turn's edit) in red."""
    base = figures.final if figures.final is not None else photo
    out = np.clip(base, 0, 1) * np.float32(0.5)
    if figures.edits is not None and figures.edits.any():
        outline = _dm.grow_mask(figures.edits, 1) & ~_dm.grow_mask(figures.edits, -1)
        out[outline] = (0.1, 1.0, 0.1)
    if figures.spurious is not None and figures.spurious.any():
        grown = _dm.grow_mask(figures.spurious, 2)
        out[grown] = (1.0, 0.1, 0.1)
    return out
