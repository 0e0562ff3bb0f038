"""Mask steps of the diff-merge: clean-up (specks, holes), exact Euclidean grow/shrink, feathering, and the
outlined preview. Masks are (H, W) bool arrays; see atelier_core.image.diffmerge for the pipeline."""

from __future__ import annotations

import functools

import cv2
import numpy as np


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """Fill background regions that do not touch the image border."""
    if not mask.any():
        return mask
    # The background framed by a 1 px ring of background: one 4-connected flood fill from the ring reaches
    # exactly the background regions that touch the image border (a labelling plus a lookup cost 10x more).
    h, w = mask.shape
    background = np.ones((h + 2, w + 2), np.uint8)
    np.logical_not(mask, out=background[1:-1, 1:-1].view(bool))
    cv2.floodFill(background, None, (0, 0), 2, flags=4)
    return mask | (background[1:-1, 1:-1] == 1)


def _bbox(mask: np.ndarray, pad: int) -> tuple[slice, slice] | None:
    """Bounding box of a mask grown by ``pad`` pixels (clipped), or None when the mask is empty."""
    rows = np.flatnonzero(mask.any(axis=1))
    if rows.size == 0:
        return None
    cols = np.flatnonzero(mask.any(axis=0))
    h, w = mask.shape
    return (
        slice(max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, h)),
        slice(max(int(cols[0]) - pad, 0), min(int(cols[-1]) + pad + 1, w)),
    )


def _distance_outside(mask: np.ndarray, exact: bool = True) -> np.ndarray:
    """Euclidean distance of each pixel outside ``mask`` to the nearest mask pixel (0 inside). Not ``exact``:
    OpenCV's 5x5 chamfer distance, half the cost, within 1.2 px of the exact one up to 60 px away."""
    return cv2.distanceTransform(
        (~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE if exact else cv2.DIST_MASK_5
    )


# Up to this radius (px) grow/shrink is a dilation/erosion by the disc of that radius, which keeps exactly the
# pixels the exact distance transform would (its distances are correctly rounded square roots of integers, the
# disc is built from the same ones) at a twentieth of the cost; larger radii take the distance transform.
_DISC_MAX_RADIUS = 12.0


@functools.lru_cache(maxsize=16)
def _disc(radius: float) -> np.ndarray:
    """The offsets within Euclidean ``radius`` (float32 distances, as distanceTransform gives them)."""
    k = int(np.floor(radius))
    y, x = np.mgrid[-k : k + 1, -k : k + 1]
    return (np.sqrt((x * x + y * y).astype(np.float32)) <= np.float32(radius)).astype(np.uint8)


def grow_mask(mask: np.ndarray, pixels: float, exact: bool = True) -> np.ndarray:
    """Grow (pixels > 0) or shrink (< 0) by a Euclidean distance, exact for any radius; growths beyond
    ``_DISC_MAX_RADIUS`` px are within about 1 px of it when not ``exact`` (a chamfer distance)."""
    if pixels == 0 or not mask.any():
        return mask
    out = np.zeros_like(mask)
    if pixels > 0:
        box = _bbox(mask, int(np.ceil(pixels)) + 1)
        if pixels <= _DISC_MAX_RADIUS:
            out[box] = cv2.dilate(mask[box].view(np.uint8), _disc(float(pixels))).view(bool)
        else:
            out[box] = _distance_outside(mask[box], exact) <= pixels
        return out
    if mask.all():
        return mask
    # Shrinking keeps the mask pixels farther than |pixels| from the background. The nearest background pixel
    # of any mask pixel lies in the mask's box grown by 1 px (that ring is background, or the image's edge),
    # so the distances are taken there rather than over the whole frame. (The erosion's border counts as mask,
    # as the distance transform does not see past the array's edge either.)
    box = _bbox(mask, 1)
    if -pixels <= _DISC_MAX_RADIUS:
        # distance > r keeps a pixel when no background lies within r: the erosion by the disc of radius r.
        out[box] = cv2.erode(np.ascontiguousarray(mask[box]).view(np.uint8), _disc(float(-pixels))).view(bool)
    else:
        out[box] = _distance_outside(~mask[box]) > -pixels
    return out


def close_mask(mask: np.ndarray, radius: float) -> np.ndarray:
    """Morphological closing by a disc: fills gaps and notches narrower than ``2 * radius`` px without moving
    the mask's outer outline (every added pixel lies within ``radius`` of the mask, in a concavity)."""
    if radius <= 0 or not mask.any() or mask.all():
        return mask
    return grow_mask(grow_mask(mask, radius), -radius) | mask


def feather_mask(hard: np.ndarray, feather: int) -> np.ndarray:
    """1 on the hard mask, a smoothstep falling to exactly 0 at ``feather`` px outside it."""
    if feather <= 0 or not hard.any() or hard.all():
        return hard.astype(np.float32)
    box = _bbox(hard, feather + 1)
    # In place on the distances (the same operations in the same order as t * t * (3 - 2 t) with
    # t = clip(1 - d / (feather + 1), 0, 1)): each fresh box-sized temporary costs more than its arithmetic.
    t = _distance_outside(hard[box])
    np.divide(t, np.float32(feather + 1), out=t)
    np.subtract(np.float32(1.0), t, out=t)
    np.clip(t, 0.0, 1.0, out=t)
    rise = np.multiply(t, np.float32(2.0))
    np.subtract(np.float32(3.0), rise, out=rise)
    np.multiply(t, t, out=t)
    soft = np.zeros(hard.shape, np.float32)
    np.multiply(t, rise, out=soft[box])
    return soft


def _outline_preview(image_rgb: np.ndarray, hard: np.ndarray) -> np.ndarray:
    """The merged image with changed regions tinted red and outlined in yellow."""
    preview = np.array(image_rgb, np.float32)  # a copy; merged values outside the mask are already in range
    width = max(1, round(max(hard.shape) / 512))
    box = _bbox(hard, width + 1)
    if box is None:
        return preview
    crop = preview[box]
    np.clip(crop, 0.0, 1.0, out=crop)
    m = hard[box].astype(np.uint8)
    # 60% image + 40% red, written in place under the mask (masked OpenCV ops leave the other pixels alone).
    cv2.add(crop * np.float32(0.6), (0.4, 0.06, 0.04, 0.0), dst=crop, mask=m)
    edge = cv2.morphologyEx(m, cv2.MORPH_GRADIENT, np.ones((2 * width + 1,) * 2, np.uint8))
    # The outline's few pixels by index (a broadcast masked copy reads the whole crop at a tenth of the speed).
    ys, xs = np.nonzero(edge)
    crop[ys, xs] = np.array([1.0, 0.9, 0.0], np.float32)
    return preview


# A re-render redraws unchanged texture (foliage, wood grain, a face in the background) a little differently:
# ΔE finds it as many small regions, scattered over the frame, barely above the threshold. A real edit is either
# the main change, near it, or clearly different (text, a new stroke, a removed cable reach ΔE far above it).
# This many small low-contrast far regions, and at least this share of all regions, make a re-rendered texture
# (a re-render leaves dozens); fewer are kept: a faint edit may break into a few such pieces.
SCATTER_MIN_COUNT = 12
SCATTER_MIN_SHARE = 0.5
SCATTER_MAX_AREA = 0.005  # share of the frame: larger regions are kept whatever their contrast
SCATTER_CONTRAST = 2.0  # mean ΔE over the region, in thresholds: above it a region is a real change


def clean_regions(
    mask: np.ndarray, delta_e: np.ndarray, threshold: float, min_area: float, far: float
) -> tuple[np.ndarray, int]:
    """``mask`` without its specks (regions under ``min_area`` px) and without re-rendered texture: regions that
    are small, low-contrast and farther than ``far`` px from the main change (the largest region and every
    region at least a tenth its size), when there are at least SCATTER_MIN_COUNT of them and they make at least
    SCATTER_MIN_SHARE of the regions. One labelling serves both. -> (mask, regions dropped as texture)."""
    if not mask.any():
        return mask, 0
    # Everything below reads the mask's pixels and what lies within far / 12 of them (the dense groups'
    # growth; the growth by ``far`` is only read on mask pixels): the mask's box plus that margin gives the
    # same answer as the whole frame, at the cost of the box.
    box = _bbox(mask, int(np.ceil(max(1.0, far / 12.0))) + 2)
    kept, dropped = _clean_box(mask[box], delta_e[box], threshold, min_area, far, mask.size)
    if kept is None:
        return mask, 0
    out = np.zeros_like(mask)
    out[box] = kept
    return out, dropped


def _clean_box(mask, delta_e, threshold: float, min_area: float, far: float, frame: int):
    """clean_regions on a crop of a frame of ``frame`` pixels -> (mask or None when unchanged, dropped)."""
    labels, areas = _labels_and_areas(mask)
    keep = areas >= max(min_area, 1.0)
    keep[0] = False
    scattered = _scattered(labels, areas * keep, delta_e, threshold, far, frame) & keep
    if scattered.sum() >= max(SCATTER_MIN_COUNT, SCATTER_MIN_SHARE * keep.sum()):
        keep &= ~scattered
        # The frame was re-rendered: faint branches of the main change that reach far from it (a table's edge
        # redrawn along the whole frame, joined to the inserted object) are re-rendering too.
        return _drop_faint_branches(_per_pixel(keep, labels), delta_e, threshold, far), int(scattered.sum())
    if keep[1:].all():
        return None, 0
    return _per_pixel(keep, labels), 0


def _labels_and_areas(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected labels of ``mask`` and each label's area (float64, 0 for the background). The labelling
    without OpenCV's statistics plus a count costs half as much as connectedComponentsWithStats."""
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    areas = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    areas[0] = 0
    return labels, areas


def _label_sums(labels: np.ndarray, values: np.ndarray, n: int) -> np.ndarray:
    """Per label, the sum of ``values`` over its pixels (the background's, label 0, is left at 0). Only the
    labelled pixels are read, picked by a boolean mask (a third of the cost of an index list): the same sums, in
    the same order, without a whole-frame float64 copy."""
    labelled = labels.ravel() > 0
    return np.bincount(labels.ravel()[labelled], weights=values.ravel()[labelled], minlength=n)


def _per_pixel(flags: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """A per-label bool table read at each pixel's label: ``flags[labels]``, as bytes through np.take (half
    the cost of bool fancy indexing on a megapixel)."""
    return np.take(flags.view(np.uint8), labels).view(bool)


def _drop_faint_branches(mask: np.ndarray, delta_e: np.ndarray, threshold: float, far: float) -> np.ndarray:
    """``mask`` without the pixels farther than ``far`` from its main body (the mask opened by ``far / 8``, its
    largest part and every part at least a tenth its size) that belong to faint pieces (mean ΔE under
    SCATTER_CONTRAST thresholds); clear changes far away (a moved eye, a new stroke) stay."""
    radius = max(1.0, far / 8.0)
    body = grow_mask(grow_mask(mask, -radius), radius) & mask
    if not body.any():
        return mask
    labels, areas = _labels_and_areas(body)
    main = _per_pixel(areas >= 0.1 * areas.max(), labels)
    rest = mask & ~main
    n, labels = cv2.connectedComponents(rest.astype(np.uint8), connectivity=8)
    area = np.bincount(labels.ravel(), minlength=n).astype(np.float64)
    mean_de = _label_sums(labels, delta_e, n) / np.maximum(area, 1)
    faint = mean_de < SCATTER_CONTRAST * threshold
    faint[0] = False
    # Growing by ``far`` works on the main body's box (plus ``far``), not the whole frame: the same pixels.
    # (A chamfer distance: the far limit is a rule of thumb, 1 px either way at 48 px changes nothing it means.)
    return mask & ~(_per_pixel(faint, labels) & ~grow_mask(main, far, exact=False))


def _scattered(labels: np.ndarray, areas: np.ndarray, delta_e: np.ndarray, threshold: float, far: float, frame: int):
    """Per label: small, faint and far from the main change (labels of area 0 count as absent)."""
    n = areas.size
    if (areas > 0).sum() < SCATTER_MIN_COUNT + 1:
        return np.zeros(n, bool)
    main = areas >= 0.1 * areas.max()
    # The box of the main change plus ``far``, not the whole frame; a chamfer distance, as for faint branches.
    near = grow_mask(_per_pixel(main, labels), far, exact=False)
    is_near = np.bincount(labels[near], minlength=n) > 0  # a count per label: several times faster than np.unique
    mean_de = _label_sums(labels, delta_e, n) / np.maximum(areas, 1)
    small = areas < SCATTER_MAX_AREA * frame
    candidates = (areas > 0) & ~main & ~is_near & small & (mean_de < SCATTER_CONTRAST * threshold)
    if candidates.sum() < SCATTER_MIN_COUNT:
        return candidates
    return candidates & ~_in_dense_groups(labels, areas, main, far / 6.0, frame)


def _in_dense_groups(labels: np.ndarray, areas: np.ndarray, main: np.ndarray, gap: float, frame: int) -> np.ndarray:
    """Per label: whether it belongs to a group of regions less than ``gap`` px apart that holds a main region
    or adds up to a large area. A faint wide change (a shadow, a soft darkening near the threshold) breaks into
    many pieces that lie close together; a re-render's texture scatters them over the frame."""
    present = _per_pixel(areas > 0, labels)
    n_groups, groups = cv2.connectedComponents(grow_mask(present, max(1.0, gap / 2)).astype(np.uint8))
    group_of = np.zeros(areas.size, np.int64)
    group_of[labels[present]] = groups[present]
    group_area = np.bincount(group_of, weights=areas, minlength=n_groups)
    group_main = np.bincount(group_of, weights=main.astype(np.float64), minlength=n_groups) > 0
    return (group_area[group_of] >= SCATTER_MAX_AREA * frame) | group_main[group_of]
