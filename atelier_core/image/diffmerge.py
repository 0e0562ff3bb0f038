"""Diff-merge: keep exactly what an edit changed, and the original everywhere else.

Pipeline for one image: fit the edit to the original's size -> estimate and undo the global shift/scale ->
compensate the global colour/exposure drift -> CIELAB ΔE map (float, from linearised sRGB) -> threshold (fixed
or automatic) -> clean-up (specks below a minimum area, holes, grow/shrink) -> hard mask and feathered soft mask
-> blend (Poisson, Laplacian multi-band or alpha). Every pixel where the soft mask is 0 is the original's, bit
for bit; a soft mask of all ones returns the (aligned) edit.

Images are float numpy arrays (H, W, C) in 0..1 with C = 1 (grey), 2 (grey + alpha), 3 (RGB) or 4 (RGBA).
Detection runs on a copy of about ``detect_megapixels`` (Kontext renders about 1 MP, so finer detail in an
upscaled edit is not information); masks, alignment and blending are applied at the original's resolution.
With a fixed threshold the ΔE map is computed in two passes (diffmerge_delta.two_pass_delta_e): a half-size
pass finds where the edit can be, and only the pixels there are computed at full detection size. A frame the
model re-rendered all over is detected on the half-size copies alone (see _WIDE_SPREAD).
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field

import cv2
import numpy as np

from ..errors import AtelierError
from . import align as _align
from . import color as _color
from . import diffmerge_kind as _kind
from . import poisson as _poisson
from .diffmerge_delta import delta_e_map, half_size, two_pass_delta_e
from .diffmerge_mask import (
    _bbox,
    _fill_holes,
    _outline_preview,
    clean_regions,
    close_mask,
    feather_mask,
    grow_mask,
)

log = logging.getLogger(__name__)

__all__ = [
    "MergeOptions",
    "MergeResult",
    "delta_e_map",
    "diff_merge",
    "diff_merge_batch",
    "feather_mask",
    "fit_to_size",
    "format_report",
    "grow_mask",
]

BLEND_MODES = ("poisson", "multiband", "alpha")
USER_MASK_MODES = ("add", "subtract", "replace")
# Clean-up closes gaps and notches up to twice this wide (original pixels) inside a changed region.
_CLOSE_GAPS_PX = 4.0
# The Poisson solve stops when a step moves no pixel by more than this: on the real pairs' 60-240 k-unknown
# regions the result is then within 0.8 of an 8-bit level of the exact solution at its worst pixel, one or two
# iterations (about 10 ms of CPU each for three channels) fewer than at 4e-3 (0.35 of a level) and 1e-3
# (bench/bench_realpairs.py; the solver's own default stays 1e-3).
_POISSON_TOL = 8e-3
# Small faint regions farther than this (original pixels) from the main change may be re-rendered texture.
_SCATTER_FAR_PX = 48.0
# Share of the tiles the quick map finds candidates in above which the frame changed all over (a re-render: the
# model redrew unchanged texture everywhere, as on the insertion pair of bench/bench_realpairs.py): detection then
# runs on the half-size copies (half the detection scale). At full size the ΔE map and its clean-up work on nearly
# every pixel for detail that is the re-render's (the clean-up leaves it out: 91 small faint regions on the
# insertion pair), 62 of that pair's 152 ms; the half-size mask, brought to full size, differs from the full-size
# one only along its outline (a pixel or two, under the blend's feather and the Poisson correction). No median
# filter at half size: the 2x2 average has evened out the noise it removes at full size, and a stroke 1-2 px wide
# at full size is one pixel wide there (the clean-up's minimum area takes the specks).
# On the nine real pairs the quick share is 0.80 on the insertion pair and 0.03-0.33 on the other local ones.
_WIDE_SPREAD = 0.7


@dataclass
class MergeOptions:
    """Everything the user can set. Lengths are in pixels of the original image."""

    threshold: float = 6.0
    formula: str = "ciede2000"
    auto_threshold: bool = False
    min_area: int = 64
    grow: int = 1
    feather: int = 4
    blend: str = "poisson"
    align: bool = True
    match_color: bool = True
    fill_holes: bool = True
    user_mask_mode: str = "add"
    detect_megapixels: float = 1.0
    denoise_sigma: float = 1.0
    envelope: int = 1  # detection pixels: tolerance for residual misalignment and softening at edges
    force_merge: bool = False  # merge global and reframed edits too (they return the edit itself by default)

    def validate(self) -> None:
        if self.formula.lower() not in _color.DELTA_E_FORMULAS:
            raise AtelierError(f"Kontext Diff-Merge: unknown ΔE formula {self.formula!r}; use ciede2000 or cie76")
        if self.blend not in BLEND_MODES:
            raise AtelierError(f"Kontext Diff-Merge: unknown blend {self.blend!r}; use one of {', '.join(BLEND_MODES)}")
        if self.user_mask_mode not in USER_MASK_MODES:
            raise AtelierError(
                f"Kontext Diff-Merge: unknown mask mode {self.user_mask_mode!r}; use {', '.join(USER_MASK_MODES)}"
            )
        if not (self.threshold > 0 and np.isfinite(self.threshold)):
            raise AtelierError("Kontext Diff-Merge: the ΔE threshold must be a positive number")
        if self.min_area < 0 or self.feather < 0 or self.detect_megapixels <= 0:
            raise AtelierError("Kontext Diff-Merge: min_area, feather and detect_megapixels cannot be negative")


@dataclass
class MergeResult:
    merged: np.ndarray  # (H, W, C) like the original (C grows to 3/4 when the edit is in colour)
    hard_mask: np.ndarray  # (H, W) float32 of 0/1
    soft_mask: np.ndarray  # (H, W) float32 in 0..1
    preview: np.ndarray  # (H, W, 3) merged image with changed regions tinted and outlined
    report: dict = field(default_factory=dict)


def merge_node_defaults() -> dict:
    """The Kontext Diff-Merge node's settings at their defaults, keyed by its input names (the node's schema reads
    the same MergeOptions defaults): what the shipped workflows and the tests set on the node."""
    d = MergeOptions()
    return {
        "threshold": d.threshold,
        "formula": d.formula,
        "auto_threshold": d.auto_threshold,
        "min_area": d.min_area,
        "grow": d.grow,
        "feather": d.feather,
        "blend": d.blend,
        "align": d.align,
        "match_color": d.match_color,
        "mask_mode": d.user_mask_mode,
    }


# Values per block of _all_finite: the block and its mask stay in the cache.
_FINITE_BLOCK = 1 << 18


def _all_finite(arr: np.ndarray) -> bool:
    """np.isfinite(arr).all(), block by block into one small mask (a frame-sized mask is fresh memory, which costs
    more than the test: a third of the time at 4096 px)."""
    flat = arr.reshape(-1)
    mask = np.empty(min(_FINITE_BLOCK, flat.size), bool)
    for start in range(0, flat.size, _FINITE_BLOCK):
        block = flat[start : start + _FINITE_BLOCK]
        if not np.isfinite(block, out=mask[: block.size]).all():
            return False
    return True


def _check_image(name: str, image) -> np.ndarray:
    arr = np.asarray(image)
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise AtelierError(
            f"Kontext Diff-Merge: the {name} image must be (height, width, channels) with 1-4 channels, "
            f"got shape {tuple(np.shape(image))}"
        )
    if arr.shape[0] < 1 or arr.shape[1] < 1:
        raise AtelierError(f"Kontext Diff-Merge: the {name} image is empty")
    arr = arr.astype(np.float32, copy=False)
    if not _all_finite(arr):
        raise AtelierError(
            f"Kontext Diff-Merge: the {name} image contains NaN or infinite pixels; "
            "check the node that produced it (a VAE decode in fp16 can overflow)"
        )
    return arr


def _split(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """-> (rgb, alpha or None, was_grey)."""
    c = arr.shape[2]
    if c in (1, 2):
        rgb = np.repeat(arr[..., :1], 3, axis=2)
        return rgb, (arr[..., 1] if c == 2 else None), True
    return arr[..., :3], (arr[..., 3] if c == 4 else None), False


def fit_to_size(edit: np.ndarray, height: int, width: int) -> tuple[np.ndarray, np.ndarray | None, str]:
    """Bring an edit of another size onto the original's grid.

    Same aspect ratio (within 1%): a plain resize. Otherwise the edit is taken to be a centre crop of the
    original (what ``FluxKontextImageScale`` does): it is resized into the centred crop box and the returned
    validity mask marks the pixels it covers (the rest cannot have been edited).
    """
    eh, ew = edit.shape[:2]
    if (eh, ew) == (height, width):
        return edit, None, ""

    def resize(img, w, h):
        interp = cv2.INTER_AREA if w < img.shape[1] else cv2.INTER_CUBIC
        return cv2.resize(img, (w, h), interpolation=interp).reshape(h, w, img.shape[2])

    if abs((ew / eh) / (width / height) - 1.0) < 0.01:
        return resize(edit, width, height), None, f"edit {ew}x{eh} resized to the original's {width}x{height}"
    if ew / eh > width / height:  # edit is wider: it covers the full width and a centred band of rows
        cw, ch = width, max(1, round(width * eh / ew))
    else:
        cw, ch = max(1, round(height * ew / eh)), height
    x0, y0 = (width - cw) // 2, (height - ch) // 2
    canvas = np.zeros((height, width, edit.shape[2]), np.float32)
    canvas[y0 : y0 + ch, x0 : x0 + cw] = resize(edit, cw, ch)
    valid = np.zeros((height, width), bool)
    valid[y0 : y0 + ch, x0 : x0 + cw] = True
    note = (
        f"edit {ew}x{eh} has another aspect ratio than the original {width}x{height}: treated as a centre crop "
        f"and placed at x={x0}, y={y0}, {cw}x{ch} (connect the aspect-lock geometry for an exact restore)"
    )
    return canvas, valid, note


def _auto_threshold(values: np.ndarray, floor: float) -> float:
    """Otsu's split of the ΔE histogram, never below a robust noise level (median + 6 MAD)."""
    v = values[np.isfinite(values)]
    if v.size == 0:
        return floor
    med = float(np.median(v))
    noise = med + 6.0 * 1.4826 * float(np.median(np.abs(v - med)))
    clipped = np.clip(v, 0, 100)
    hist, edges = np.histogram(clipped, bins=256, range=(0, 100))
    p = hist.astype(np.float64) / max(hist.sum(), 1)
    omega = np.cumsum(p)
    mu = np.cumsum(p * (edges[:-1] + edges[1:]) / 2)
    mu_t = mu[-1]
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (mu_t * omega - mu) ** 2 / (omega * (1 - omega))
    between[~np.isfinite(between)] = 0
    otsu = float(edges[int(np.argmax(between)) + 1])
    return max(otsu, noise, floor)


def _composite_into(out: np.ndarray, original: np.ndarray, blended: np.ndarray, soft: np.ndarray) -> None:
    """Write into ``out`` (a copy of ``original``): blended where soft == 1, a linear mix where 0 < soft < 1;
    pixels where soft == 0 are not written, so they stay the original's bit for bit. ``blended`` is scratch."""
    full = soft >= 1
    # A masked OpenCV copy for the inside, and the mix only on the feather band's few pixels: a whole-crop
    # mix and numpy's broadcast masked copies cost four times as much.
    cv2.copyTo(blended, full.view(np.uint8), out)
    ys, xs = np.nonzero((soft > 0) & ~full)
    o = original[ys, xs]
    mixed = blended[ys, xs]
    mixed -= o
    mixed *= soft[ys, xs][:, None]
    mixed += o
    out[ys, xs] = mixed


def _aligned_crop(image: np.ndarray, shift: _align.Alignment, box: tuple[slice, slice]) -> np.ndarray:
    """``image`` resampled by ``shift`` (bicubic), computed only for the pixels of ``box``."""
    if shift.is_identity:
        return image[box]
    h, w = image.shape[:2]
    y0, x0 = box[0].start, box[1].start
    ch, cw = box[0].stop - y0, box[1].stop - x0
    m = shift.matrix(w, h)
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    out = cv2.warpAffine(
        np.ascontiguousarray(image),
        m,
        (cw, ch),
        flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REPLICATE,
    )
    return out.reshape(ch, cw, image.shape[2])


@dataclass
class _Inputs:
    """The checked pair on the original's grid, split into colour and alpha."""

    o_rgb: np.ndarray
    e_rgb: np.ndarray
    o_alpha: np.ndarray | None
    e_alpha: np.ndarray | None
    grey: bool  # both were grey: the result is grey too
    valid: np.ndarray | None  # pixels the edit covers (another aspect ratio, a moved picture; None: all)
    notes: list[str]
    edit_raw: np.ndarray  # the checked edit at its own size, for a whole-edit answer

    @property
    def shape(self) -> tuple[int, int]:
        return self.o_rgb.shape[:2]

    def stacks(self) -> tuple[np.ndarray, np.ndarray]:
        """Colour and alpha as one array each, blended together as channels."""
        if self.o_alpha is None:
            return self.o_rgb, self.e_rgb
        return (
            np.concatenate([self.o_rgb, self.o_alpha[..., None]], axis=2),
            np.concatenate([self.e_rgb, self.e_alpha[..., None]], axis=2),
        )


def _prepare(original, edited) -> _Inputs:
    orig = _check_image("original", original)
    raw = _check_image("edited", edited)
    h, w = orig.shape[:2]
    notes: list[str] = []
    edit, valid, note = fit_to_size(raw, h, w)
    if note:
        notes.append(note)
        log.info("Kontext Diff-Merge: %s", note)
    o_rgb, o_alpha, o_grey = _split(orig)
    e_rgb, e_alpha, e_grey = _split(edit)
    if o_alpha is not None or e_alpha is not None:
        o_alpha = np.ones((h, w), np.float32) if o_alpha is None else o_alpha
        e_alpha = o_alpha if e_alpha is None else e_alpha
    return _Inputs(o_rgb, e_rgb, o_alpha, e_alpha, o_grey and e_grey, valid, notes, raw)


@dataclass
class _Scale:
    """The detection copy's grid: about ``detect_megapixels``, never larger than the original."""

    h: int
    w: int
    dh: int
    dw: int

    @classmethod
    def of(cls, h: int, w: int, megapixels: float) -> _Scale:
        factor = min(1.0, float(np.sqrt(megapixels * 1e6 / (h * w))))
        # Snap to 1/k when within 10 %: an integer-ratio area resize is several times faster than a fractional one.
        k = round(1.0 / factor)
        if k >= 1 and abs(k * factor - 1.0) < 0.1:
            factor = 1.0 / k
        return cls(h, w, max(1, round(h * factor)), max(1, round(w * factor)))

    @property
    def factor(self) -> float:
        return self.dw / self.w

    def halved(self, dh: int, dw: int) -> _Scale:
        """The grid of this copy's half-size copies (``dh`` x ``dw``: half_size's, a side rounded down)."""
        return _Scale(self.h, self.w, dh, dw)

    def small(self, img: np.ndarray) -> np.ndarray:
        if (self.dh, self.dw) == img.shape[:2]:
            return img
        return cv2.resize(img, (self.dw, self.dh), interpolation=cv2.INTER_AREA).reshape(
            self.dh, self.dw, *img.shape[2:]
        )

    def small_plane(self, plane: np.ndarray) -> np.ndarray:
        return self.small(np.asarray(plane, np.float32)[..., None]).reshape(self.dh, self.dw)


def _align_step(o_s, e_s, inputs: _Inputs, scale: _Scale, enabled: bool):
    """-> (alignment at detection scale, aligned e_s, shift at full scale); warps ``inputs.valid`` too."""
    alignment = _align.Alignment(ok=False, note="alignment off", confidence=float("nan"))
    if enabled:
        alignment = _align.estimate_alignment(o_s, e_s)
        if alignment.ok and not alignment.is_identity:
            e_s = _align.warp_image(e_s, alignment, cv2.INTER_LINEAR)
            full = alignment.scaled(scale.w / scale.dw)
            if inputs.valid is not None:
                inputs.valid = _align.warp_image(inputs.valid.astype(np.float32)[..., None], full)[..., 0] > 0.999
            # Pixels the moved edit does not reach were never in it: they stay the original's (the warp would
            # otherwise fill them by repeating the edit's edge pixels).
            covered = np.zeros((scale.h, scale.w), bool)
            covered[full.covered(scale.w, scale.h, margin=-0.5)] = True
            if not covered.all():
                inputs.valid = covered if inputs.valid is None else inputs.valid & covered
        elif not alignment.ok:
            inputs.notes.append(alignment.note)
    shift = alignment.scaled(scale.w / scale.dw) if alignment.ok else _align.Alignment()
    return alignment, e_s, shift


def _colour_step(o_s: np.ndarray, e_s: np.ndarray, notes: list[str]):
    """Fit how the re-render's colours follow the original's (linear gain/offset with clipping, then tone
    curves): -> (fit, per-pixel prediction function, or None when there is no drift)."""
    color_fix = _align.fit_color_drift(o_s, e_s)
    if color_fix.note:
        notes.append(color_fix.note)
        log.info("Kontext Diff-Merge: %s", color_fix.note)
    # The curves are fitted on a sample, so only the sampled pixels need the linear prediction first; the
    # image gets both steps at once as a per-channel lookup. 100 k samples put over 2000 in each of the curves'
    # 48 bins on a photograph's busy range: their medians are as stable as with twice as many, at half the cost.
    samples, seed = 100000, 1
    o_pts = _align.sample_pixels(o_s, samples, seed)[:, None]
    e_pts = _align.sample_pixels(e_s, samples, seed)[:, None]
    if not color_fix.is_identity:
        o_pts = _align.drift_prediction(color_fix, None).apply(o_pts)
    curves = _align.fit_tone_curves(e_pts, o_pts, samples, seed)
    if color_fix.is_identity and curves.is_identity:
        return color_fix, None
    return color_fix, _align.drift_prediction(color_fix, curves).apply


def _difference_map(
    o_pred, e_s, inputs: _Inputs, alignment, scale: _Scale, opts: MergeOptions, halves=None, wide=False
):
    """-> (ΔE map with alpha changes and uncovered pixels folded in, threshold, the map's scale). ``o_pred``: the
    original as the re-render would show it (the colour prediction applied). ``halves``: half_size(o_pred, e_s),
    when made already. ``wide``: the quick map found candidates nearly everywhere (a frame the model re-rendered
    all over): the map is then made on the half-size copies, at half the detection scale (see _WIDE_SPREAD)."""
    formula = opts.formula.lower()
    threshold = float(opts.threshold)
    if opts.auto_threshold:  # the threshold comes from the whole map's histogram: one full pass
        de = delta_e_map(o_pred, e_s, formula, None, opts.denoise_sigma, opts.envelope)
        threshold = _auto_threshold(de.ravel(), floor=2.0)
    elif wide and halves is not None:
        de = delta_e_map(halves[0], halves[1], formula, threshold, opts.denoise_sigma / 2, opts.envelope)
        half = scale.halved(*de.shape)
        inputs.notes.append(
            f"changes all over the frame (a re-render): detected on a half-size copy ({half.dw}x{half.dh})"
        )
        return _fold_alpha_and_cover(de, inputs, alignment.scaled(half.dw / scale.dw), half), threshold, half
    else:
        de = two_pass_delta_e(o_pred, e_s, formula, threshold, opts.denoise_sigma, opts.envelope, halves, wide=wide)
    return _fold_alpha_and_cover(de, inputs, alignment, scale), threshold, scale


def _fold_alpha_and_cover(de: np.ndarray, inputs: _Inputs, alignment, scale: _Scale) -> np.ndarray:
    """``de`` (at ``scale``, ``alignment`` in its pixels) with alpha changes folded in (100 per unit of alpha)
    and 0 where the edit does not cover the original."""
    if inputs.o_alpha is not None:
        e_alpha_s = scale.small(inputs.e_alpha[..., None]).reshape(scale.dh, scale.dw, 1)
        if alignment.ok and not alignment.is_identity:
            e_alpha_s = _align.warp_image(e_alpha_s, alignment)
        de = np.maximum(de, 100.0 * np.abs(scale.small_plane(inputs.o_alpha) - e_alpha_s[..., 0]))
    if inputs.valid is not None:
        de = np.where(scale.small_plane(inputs.valid) > 0.999, de, 0.0)
    return de


def _detect(
    de: np.ndarray, threshold: float, scale: _Scale, opts: MergeOptions, notes: list[str], median: bool = True
) -> np.ndarray:
    """Threshold and clean the ΔE map (at ``scale``), then bring it to full resolution and grow it: the hard mask.
    ``median``: filter the thresholded map (not on a half-size map: see _WIDE_SPREAD)."""
    # A 5x5 median removes isolated noisy pixels before thresholding without moving region edges. The median
    # commutes with the threshold (a pixel passes when most of its 25 neighbours do), and on 8-bit masks
    # OpenCV's median is many times faster than on the float map.
    detected = de > threshold
    if median and min(scale.dh, scale.dw) >= 5:
        detected = cv2.medianBlur(detected.view(np.uint8), 5).view(bool)
    min_area = opts.min_area * scale.factor**2
    detected, dropped = clean_regions(detected, de, threshold, min_area, _SCATTER_FAR_PX * scale.factor)
    if dropped:
        notes.append(
            f"{dropped} small faint regions scattered far from the main change left out (re-rendered texture, "
            "not an edit); add them with a mask if they are wanted"
        )
    if opts.fill_holes:
        # Closing first: a gap that reaches the region's outline (pixels an edit happened to leave at their
        # old colour) is not a hole, and only ``grow`` would cover it, at the price of a wider blend band.
        detected = _fill_holes(close_mask(detected, _CLOSE_GAPS_PX * scale.factor))
    if (scale.dh, scale.dw) != (scale.h, scale.w):
        detected = cv2.resize(detected.astype(np.float32), (scale.w, scale.h), interpolation=cv2.INTER_LINEAR) > 0.5
    return grow_mask(detected, int(opts.grow))


def _with_user_mask(hard: np.ndarray, user_mask, mode: str, notes: list[str]) -> np.ndarray:
    if user_mask is None:
        return hard
    um = np.asarray(user_mask, np.float32)
    if um.ndim == 3:
        um = um[..., 0]
    if not np.isfinite(um).all():
        raise AtelierError("Kontext Diff-Merge: the mask contains NaN or infinite values")
    h, w = hard.shape
    if um.shape != (h, w):
        um = cv2.resize(um, (w, h), interpolation=cv2.INTER_LINEAR)
        notes.append("user mask resized to the original's size")
    um = um > 0.5
    if mode == "add":
        return hard | um
    if mode == "subtract":
        return hard & ~um
    return um


def _blend_crop(o_crop, e_crop, region, hard, opts: MergeOptions):
    """-> (blended crop, Poisson info or None) for the bounding box of the soft mask."""
    if opts.blend == "poisson" and region.all():
        return np.array(e_crop, np.float32), None  # no boundary to meet: the edit itself
    if opts.blend == "poisson":
        # The correction lives on the region's box plus its ring, which is exactly the crop.
        correction, _, info = _poisson.poisson_correction(o_crop, e_crop, region, tol=_POISSON_TOL)
        correction += e_crop  # the blended crop, in the correction's own memory (a fresh crop costs more)
        return correction, info
    if opts.blend == "multiband":
        # Band count follows the feather: the coarsest band blends over about the feather width, so the
        # original's low frequencies do not leak into the middle of a small edited region.
        levels = int(np.clip(np.ceil(np.log2(max(opts.feather, 1) + 1)), 1, 6))
        return _poisson.multiband_blend(o_crop, e_crop, hard.astype(np.float32), levels), None
    return np.array(e_crop, np.float32), None


def _blend(o_stack, e_stack, shift, hard, soft, opts: MergeOptions):
    """-> (merged, Poisson info or None). Works only inside the bounding box of the soft mask plus a
    one-pixel ring of original pixels (the Poisson boundary); everything else is the original's."""
    merged = o_stack.copy()
    region = soft > 0
    box = _bbox(region, 1)
    if box is None:
        return merged, None
    e_crop = _aligned_crop(e_stack, shift, box)
    o_crop, soft_crop = o_stack[box], soft[box]
    if (soft_crop >= 1).all() and soft_crop.shape == soft.shape:
        merged[box] = e_crop  # the whole image is taken from the edit
        return merged, None
    blended, info = _blend_crop(o_crop, e_crop, region[box], hard[box], opts)
    _composite_into(merged[box], o_crop, blended, soft_crop)
    return merged, info


def _count_regions(hard: np.ndarray) -> int:
    """Connected regions of the hard mask, labelled on its bounding box (the same regions as on the frame)."""
    box = _bbox(hard, 0)
    if box is None:
        return 0
    return int(cv2.connectedComponents(hard[box].astype(np.uint8))[0] - 1)


def _report(alignment, shift, color_fix, threshold, hard, poisson_info, scale, opts, notes, t0, kind) -> dict:
    return {
        "kind": kind.kind,
        "kind_reason": kind.reason,
        "forced_merge": bool(kind.whole),  # from a merge; the whole-edit answer says False
        "quick_changed_share": round(kind.changed_share, 4),
        "match": round(float(alignment.confidence), 3) if np.isfinite(alignment.confidence) else None,
        "shift_x": round(shift.dx, 3),
        "shift_y": round(shift.dy, 3),
        "scale": round(shift.scale, 5),
        "aligned": bool(alignment.ok),
        "color_corrected": bool(color_fix is not None and not color_fix.is_identity),
        "color_gain": [round(float(v), 4) for v in np.diag(color_fix.matrix)] if color_fix is not None else None,
        "formula": opts.formula.lower(),
        "threshold": round(float(threshold), 3),
        "auto_threshold": bool(opts.auto_threshold),
        "changed_fraction": round(float(hard.mean()), 5),
        "changed_pixels": int(hard.sum()),
        "regions": _count_regions(hard),
        "blend": opts.blend,
        "poisson": asdict(poisson_info) if poisson_info is not None else None,
        "detect_size": [scale.dw, scale.dh],
        "size": [scale.w, scale.h],
        "notes": notes,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def diff_merge(original, edited, options: MergeOptions | None = None, user_mask=None) -> MergeResult:
    """Merge one edit into one original; see the module docstring."""
    t0 = time.perf_counter()
    opts = options or MergeOptions()
    opts.validate()
    inputs = _prepare(original, edited)
    h, w = inputs.shape
    scale = _Scale.of(h, w, opts.detect_megapixels)
    o_s, e_s = scale.small(inputs.o_rgb), scale.small(inputs.e_rgb)
    alignment, e_s, shift = _align_step(o_s, e_s, inputs, scale, opts.align)
    color_fix = predict = None
    if opts.match_color and scale.dh * scale.dw >= 16:
        color_fix, predict = _colour_step(o_s, e_s, inputs.notes)
    valid_s = scale.small_plane(inputs.valid) > 0.999 if inputs.valid is not None else None
    # The original as the re-render would show it, made once at detection size: every ΔE map below (the kind's
    # quick map, the half-size candidates, the full-size pass) differences the edit against it. (The half-size
    # copies average the predicted pixels, as the re-render shows them, rather than predicting averages.)
    o_pred = predict(o_s) if predict is not None else o_s
    halves = half_size(o_pred, e_s) if not opts.auto_threshold else None
    share, spread = _kind.quick_changes(o_pred, e_s, valid_s, opts.formula.lower(), opts.threshold, 1.0, halves=halves)
    kind = _kind.decide(alignment, share, scale.dw, scale.dh)
    if kind.whole:
        log.info("Kontext Diff-Merge: %s", kind.reason)
        # A mask that replaces the detection says where the edit goes: that is a merge the user asked for.
        if not (opts.force_merge or (user_mask is not None and opts.user_mask_mode == "replace")):
            return _whole_edit(inputs, kind, alignment, color_fix, scale, opts, t0)
    # Candidates nearly everywhere (a re-rendered frame): detected on the half-size copies (see _WIDE_SPREAD).
    de, threshold, map_scale = _difference_map(
        o_pred, e_s, inputs, alignment, scale, opts, halves, wide=spread > _WIDE_SPREAD
    )
    detected = _detect(de, threshold, map_scale, opts, inputs.notes, median=map_scale is scale)
    hard = _with_user_mask(detected, user_mask, opts.user_mask_mode, inputs.notes)
    if inputs.valid is not None:
        hard = hard & inputs.valid
    soft = feather_mask(hard, int(opts.feather))
    if inputs.valid is not None:
        soft = np.where(inputs.valid, soft, 0.0).astype(np.float32)

    merged, poisson_info = _blend(*inputs.stacks(), shift, hard, soft, opts)
    merged_out = np.concatenate([merged[..., :1], merged[..., 3:]], axis=2) if inputs.grey else merged
    preview = _outline_preview(merged[..., :3], hard)
    report = _report(
        alignment, shift, color_fix, threshold, hard, poisson_info, map_scale, opts, inputs.notes, t0, kind
    )
    return MergeResult(merged_out, hard.astype(np.float32), soft, preview, report)


def _whole_edit(inputs: _Inputs, kind, alignment, color_fix, scale: _Scale, opts: MergeOptions, t0) -> MergeResult:
    """The answer for a global or reframed edit: the edit itself at the original's size, neither moved nor
    cropped, with the report and the preview saying why."""
    h, w = inputs.shape
    e_rgb, e_alpha, e_grey = _split(_kind.fit_whole(inputs.edit_raw, h, w))
    if inputs.o_alpha is not None:
        e_alpha = inputs.o_alpha if e_alpha is None else e_alpha
        e_rgb = np.concatenate([e_rgb, e_alpha[..., None]], axis=2)
    merged = np.concatenate([e_rgb[..., :1], e_rgb[..., 3:]], axis=2) if inputs.grey else e_rgb
    ones = np.ones((h, w), np.float32)
    notes = [f"{kind.reason}: returned the edit itself at the original's size; {_kind.FORCE_HINT}", *inputs.notes]
    if inputs.valid is not None:  # the centre-crop placement is for merging: a whole-picture answer keeps it all
        notes.append("the edit's other aspect ratio was stretched to the original's size, not cropped")
    report = _report(
        alignment, _align.Alignment(), color_fix, opts.threshold, ones > 0, None, scale, opts, notes, t0, kind
    )
    report.update(forced_merge=False, blend="none (the edit itself)")
    preview = _kind.label_preview(e_rgb[..., :3], kind)
    return MergeResult(np.ascontiguousarray(merged, np.float32), ones, ones.copy(), preview, report)


def _batch_item(arr: np.ndarray, i: int) -> np.ndarray:
    return arr[min(i, arr.shape[0] - 1)]


def diff_merge_batch(originals, edits, options: MergeOptions | None = None, masks=None) -> list[MergeResult]:
    """Per-item merge of (B, H, W, C) batches. A batch of one original (or one mask) is used for every edit;
    otherwise the counts must match."""
    originals = np.asarray(originals)
    edits = np.asarray(edits)
    if originals.ndim != 4 or edits.ndim != 4:
        raise AtelierError("Kontext Diff-Merge: images must be batches shaped (B, H, W, C)")
    b = max(originals.shape[0], edits.shape[0])
    for name, arr in (("original", originals), ("edited", edits)) + (
        (("mask", np.asarray(masks)),) if masks is not None else ()
    ):
        if arr.shape[0] not in (1, b):
            raise AtelierError(
                f"Kontext Diff-Merge: {arr.shape[0]} {name} images for a batch of {b}; give 1 (used for all) or {b}"
            )
    masks_arr = np.asarray(masks) if masks is not None else None
    return [
        diff_merge(
            _batch_item(originals, i),
            _batch_item(edits, i),
            options,
            _batch_item(masks_arr, i) if masks_arr is not None else None,
        )
        for i in range(b)
    ]


def format_report(report: dict) -> str:
    """A few human lines for the node's STRING output and the command line."""
    lines = [
        f"kind: {report.get('kind', 'local')}" + (" (merge forced)" if report.get("forced_merge") else ""),
        f"shift: dx={report['shift_x']:+.2f} px, dy={report['shift_y']:+.2f} px, scale={report['scale']:.4f}"
        + ("" if report["aligned"] else " (not aligned)"),
        f"threshold: ΔE {report['threshold']:.2f} ({report['formula']}{', auto' if report['auto_threshold'] else ''})",
        f"changed: {100 * report['changed_fraction']:.2f}% ({report['changed_pixels']} px in {report['regions']} "
        f"region(s)), blend: {report['blend']}",
    ]
    if report.get("color_corrected") and report.get("color_gain"):
        lines.append("colour drift compensated: linear gains " + ", ".join(f"{g:.3f}" for g in report["color_gain"]))
    poisson_info = report.get("poisson")
    if poisson_info:
        lines.append(
            f"poisson: {poisson_info['unknowns']} unknowns, {poisson_info['cycles']} iterations"
            + ("" if poisson_info["converged"] else f" - NOT CONVERGED: {poisson_info['note']}")
        )
    lines.extend(report.get("notes", []))
    lines.append(f"time: {report['seconds']:.3f} s")
    return "\n".join(lines)
