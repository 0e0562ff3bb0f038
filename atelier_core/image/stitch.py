"""Multi-reference context stitching for FLUX.1 Kontext: sizing plans, token counts, pixel-stitch layout, weights.

ComfyUI-free; the node adapter is ``nodes/stitch.py``, its runtime part (weights as attention bias, encode cache) ``comfy_glue/reference_weights.py``. Everything here is arithmetic on sizes plus one small tensor
builder (:func:`reference_key_bias`).

Tokens. FLUX patches a latent (1/8 of the pixels) in 2x2 cells, so one token covers 16x16 pixels and a reference of
``W x H`` pixels costs ``ceil(W/16) * ceil(H/16)`` tokens of attention context (every sampling step, every block).

Sizing, per reference (the three ``SIZINGS``):

* ``bucket``: the model's preferred size (``size_mode``, from :mod:`atelier_core.model.model_families`). For Kontext the
  nearest of its 17 preferred ~1 MP sizes, chosen exactly as core's ``FluxKontextImageScale`` and the Aspect-Ratio
  Lock choose it (:func:`atelier_core.image.geometry.plan`); for FLUX.2 the image's own ratio at 1 MP.
* ``token budget``: the budget is the total for all references; each reference gets an equal share and the
  largest multiple-of-16 size of its own ratio (clamped to 1:4..4:1) within that share, never larger than the image
  itself (no upscaling). The total never exceeds the budget.
* ``keep``: the image's own size rounded to multiples of 16, scaled down to at most 1536x1536 of area
  (:data:`KEEP_MAX_TOKENS`), the cap the Aspect-Ratio Lock uses.

For ``keep`` and ``token budget`` the image's ratio and the multiple-of-16 target differ by a few pixels; ``fit``
decides what happens to them (crop: a centred crop of at most a few pixels, recorded in the geometry; pad: edge
padding; stretch: a slight resample).

Pixel stitch (the comparison mode, what core's ``ImageStitch`` does): all references side by side in one row at a
common height, one latent. See :func:`plan_pixel_stitch`.

Weights. A reference's weight ``w`` scales how strongly image and text queries attend to its tokens: ``log(w)`` is
added to the attention logits of its keys (so its softmax share is multiplied by ``w`` before renormalising).
:func:`weight_spec` describes this per attached reference latent as plain tuples (hashable, so ComfyUI can compare
and batch conditionings that carry it), and :func:`reference_key_bias` turns it into the additive key bias once per
model call.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..errors import AtelierError
from . import geometry

NODE_NAME = "Kontext Context Stitcher"
MAX_REFERENCES = 8
TOKEN_PIXELS = 16  # one FLUX token = a 2x2 patch of the 1/8 latent = 16x16 pixels
MULTIPLE = geometry.MULTIPLE
SIZINGS: tuple[str, ...] = ("bucket", "token budget", "keep")
LAYOUTS: tuple[str, ...] = ("offset", "index", "pixel_stitch")
FITS: tuple[str, ...] = geometry.FITS
WEIGHT_MIN, WEIGHT_MAX = 0.0, 2.0
# budget_size uses at least _MIN_USE of a budget of _FULL_USE_FROM tokens or more.
_MIN_USE = 0.75
_FULL_USE_FROM = 256
KEEP_MAX_TOKENS = geometry.MAX_TARGET_AREA // (TOKEN_PIXELS * TOKEN_PIXELS)  # 9216 = 1536x1536
MIN_TOKEN_BUDGET = 1
MAX_TOKEN_BUDGET = MAX_REFERENCES * KEEP_MAX_TOKENS
MAX_RATIO = geometry.MAX_RATIO
# Bias for a weight of 0 (and the floor for tiny weights). exp(-1e4) is 0 in every float format, yet it stays finite:
# chunked attention kernels (sub-quadratic, split) take a per-chunk max and would turn an all -inf chunk into NaN.
MASKED_BIAS = -1.0e4

Size = tuple[int, int]
Rect = tuple[int, int, int, int, float]  # (top, left, bottom, right, weight) in tokens, end-exclusive


# -- tokens ------------------------------------------------------------------------------------------------------------


def tokens_for_pixels(width: int, height: int) -> int:
    """Attention tokens a ``width x height`` pixel reference costs: ``ceil(W/16) * ceil(H/16)``."""
    return math.ceil(width / TOKEN_PIXELS) * math.ceil(height / TOKEN_PIXELS)


def token_grid_for_latent(height: int, width: int, patch: int = 2) -> tuple[int, int]:
    """(rows, columns) of tokens for a latent of ``height x width`` (FLUX pads to the patch size, so round up)."""
    return (height + patch - 1) // patch, (width + patch - 1) // patch


# -- sizing ------------------------------------------------------------------------------------------------------------


def _clamped_ratio(width: int, height: int) -> float:
    return min(max(width / height, 1.0 / MAX_RATIO), MAX_RATIO)


def _best_grid(ratio: float, cap: int, min_tokens: int) -> tuple[int, int] | None:
    """(cols, rows) of at most ``cap`` and at least ``min_tokens`` tokens with the lowest cost (see budget_size)."""
    best: tuple[float, int, int] | None = None
    rows_max = max(1, math.isqrt(cap * 4) + 1)  # rows >= cap/4 columns never pays off beyond a 1:4 ratio
    for rows in range(1, min(cap, rows_max) + 1):
        ideal = rows * ratio
        for cols in {max(1, math.floor(ideal)), max(1, math.ceil(ideal))}:
            if cols * rows > cap:
                cols = cap // rows
                if cols < 1:
                    continue
            if cols * rows < min_tokens:
                continue
            cost = abs(math.log(cols / rows / ratio)) + 0.1 * (1 - cols * rows / cap)
            if best is None or cost < best[0] - 1e-12:
                best = (cost, cols, rows)
    return None if best is None else (best[1], best[2])


def budget_size(width: int, height: int, tokens: int) -> Size:
    """Largest multiple-of-16 size with about the image's ratio that costs at most ``tokens`` tokens.

    The ratio is clamped to 1:4..4:1 (as the Aspect-Ratio Lock does) and the image is never enlarged beyond its own
    size rounded to 16. Among sizes within the budget, the cost is the log-ratio error plus 0.1 x the unused share of
    the budget, so a 1% ratio error is traded for 10% of the tokens: sizes stay true to the image first. From
    256 tokens up at least 3/4 of them are used (a slightly truer ratio is not worth a quarter of the detail).
    """
    if tokens < 1:
        raise AtelierError(f"{NODE_NAME}: the token budget per reference must be at least 1; got {tokens}.")
    ratio = _clamped_ratio(width, height)
    own = max(1, round(width / TOKEN_PIXELS)) * max(1, round(height / TOKEN_PIXELS))
    cap = max(1, min(tokens, own))
    floor = math.ceil(_MIN_USE * cap) if cap >= _FULL_USE_FROM else 1
    # Without the floor 1 x 1 always fits, so the second call always answers.
    cols, rows = _best_grid(ratio, cap, floor) or _best_grid(ratio, cap, 1)
    return cols * TOKEN_PIXELS, rows * TOKEN_PIXELS


def keep_size(width: int, height: int) -> Size:
    """The image's own size in multiples of 16 (at least 16), scaled down to at most 1536x1536 of area."""
    if max(1, round(width / MULTIPLE)) * max(1, round(height / MULTIPLE)) <= KEEP_MAX_TOKENS:
        return max(MULTIPLE, round(width / MULTIPLE) * MULTIPLE), max(MULTIPLE, round(height / MULTIPLE) * MULTIPLE)
    return budget_size(width, height, KEEP_MAX_TOKENS)


def fit_geometry(
    width: int, height: int, target: Size, fit: str, mode: str, fingerprint: str | None = None
) -> geometry.Geometry:
    """A :class:`~atelier_core.image.geometry.Geometry` that brings ``width x height`` to ``target`` with ``fit``
    (centred crop, centred edge padding or stretch), so Restore Size can undo it like an Aspect-Ratio Lock's."""
    if fit not in FITS:
        raise AtelierError(f"{NODE_NAME}: unknown fit {fit!r}; choose one of {', '.join(FITS)}.")
    tw, th = target
    crop, resized, pad_box = geometry.fit_boxes(width, height, tw, th, fit, "center")
    return geometry.Geometry(
        original_size=(width, height),
        crop_box=crop,
        resized_size=resized,
        pad_box=pad_box,
        target_size=(tw, th),
        mode=mode,
        requested_ratio=tw / th,
        fit=fit,
        fingerprint=fingerprint,
    )


def reference_geometry(
    width: int,
    height: int,
    sizing: str,
    fit: str = "crop",
    tokens: int | None = None,
    fingerprint: str | None = None,
    size_mode: str = "kontext",
) -> geometry.Geometry:
    """How one reference is sized: ``sizing`` is one of :data:`SIZINGS`; ``tokens`` is its share of the budget;
    ``size_mode`` the geometry mode of the model's preferred sizes (``bucket`` sizing)."""
    geometry.check_image_size(width, height, NODE_NAME)
    if sizing == "bucket":
        return geometry.plan(width, height, size_mode, fit=fit, fingerprint=fingerprint, who=NODE_NAME)
    if sizing == "token budget":
        if tokens is None:
            raise AtelierError(f"{NODE_NAME}: 'token budget' sizing needs a token budget.")
        return fit_geometry(width, height, budget_size(width, height, tokens), fit, "tokens", fingerprint)
    if sizing == "keep":
        return fit_geometry(width, height, keep_size(width, height), fit, "keep", fingerprint)
    raise AtelierError(f"{NODE_NAME}: unknown sizing {sizing!r}; choose one of {', '.join(SIZINGS)}.")


# -- plans -------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Placement:
    """One reference in the plan: its input slot (1-based), weight, geometry and where its pixels go."""

    slot: int
    weight: float
    geometry: geometry.Geometry
    offset: tuple[int, int] = (0, 0)  # (x, y) inside the stitched canvas (pixel_stitch only)

    @property
    def size(self) -> Size:
        return self.geometry.target_size

    @property
    def tokens(self) -> int:
        return tokens_for_pixels(*self.size)


@dataclass(frozen=True)
class StitchPlan:
    """What the stitcher attaches: ``placements`` (weight > 0, in slot order) and, for pixel_stitch, the canvas."""

    layout: str
    placements: tuple[Placement, ...]
    canvas: Size | None = None  # pixel_stitch only

    @property
    def tokens(self) -> int:
        if self.canvas is not None:
            return tokens_for_pixels(*self.canvas)
        return sum(p.tokens for p in self.placements)

    @property
    def weighted(self) -> bool:
        """True when some attached reference has a weight other than 1 (the model patch is then needed)."""
        return any(p.weight != 1.0 for p in self.placements)

    def describe(self) -> str:
        if not self.placements:
            return "no reference attached (every weight is 0): 0 tokens"
        parts = [f"#{p.slot} {p.size[0]}x{p.size[1]} ({p.tokens} tok, w {p.weight:g})" for p in self.placements]
        head = f"{len(self.placements)} reference{'s' if len(self.placements) > 1 else ''}, {self.tokens} tokens"
        if self.canvas is not None:
            head += f" in one {self.canvas[0]}x{self.canvas[1]} stitch"
        return head + ": " + "; ".join(parts)


def check_weight(slot: int, weight: float) -> float:
    weight = float(weight)
    if not (math.isfinite(weight) and WEIGHT_MIN <= weight <= WEIGHT_MAX):
        raise AtelierError(f"{NODE_NAME}: weight_{slot} must be between 0 and 2; got {weight}.")
    return weight


def plan_references(
    sizes: list[Size],
    weights: list[float],
    *,
    sizing: str = "bucket",
    fit: str = "crop",
    token_budget: int = 4096,
    layout: str = "offset",
    fingerprints: list[str | None] | None = None,
    slots: list[int] | None = None,
    size_mode: str = "kontext",
) -> tuple[StitchPlan, geometry.Geometry]:
    """Plan every reference; returns the plan (weight-0 references left out) and the first reference's geometry.

    ``sizes`` are ``(width, height)`` per reference, in input order; ``slots`` their 1-based input numbers (default
    1..n). A weight of 0 leaves the reference out entirely (it costs no tokens and the result is exactly that of not
    connecting it). ``token_budget`` is the total for all attached references.
    """
    n = len(sizes)
    slots = slots or list(range(1, n + 1))
    fingerprints = fingerprints or [None] * n
    if n == 0:
        raise AtelierError(f"{NODE_NAME}: connect at least one reference image (image_1).")
    if n > MAX_REFERENCES:
        raise AtelierError(f"{NODE_NAME}: at most {MAX_REFERENCES} references; got {n}. Drop or stitch some first.")
    if len(weights) != n or len(slots) != n or len(fingerprints) != n:
        raise ValueError("sizes, weights, slots and fingerprints must have one entry per reference")
    if layout not in LAYOUTS:
        raise AtelierError(f"{NODE_NAME}: unknown position method {layout!r}; choose one of {', '.join(LAYOUTS)}.")
    if sizing not in SIZINGS:
        raise AtelierError(f"{NODE_NAME}: unknown sizing {sizing!r}; choose one of {', '.join(SIZINGS)}.")
    if not (MIN_TOKEN_BUDGET <= int(token_budget) <= MAX_TOKEN_BUDGET):
        raise AtelierError(
            f"{NODE_NAME}: the token budget must be between {MIN_TOKEN_BUDGET} and {MAX_TOKEN_BUDGET}; got {token_budget}."
        )
    weights = [check_weight(s, w) for s, w in zip(slots, weights, strict=True)]
    for (w, h), s in zip(sizes, slots, strict=True):
        geometry.check_image_size(w, h, f"{NODE_NAME} (image_{s})")
    active = [i for i in range(n) if weights[i] > 0.0]
    share = max(1, int(token_budget) // max(1, len(active)))

    if layout == "pixel_stitch":
        return plan_pixel_stitch(sizes, weights, slots, fingerprints, sizing, fit, int(token_budget), size_mode)

    def geo(i: int) -> geometry.Geometry:
        return reference_geometry(
            *sizes[i], sizing, fit, tokens=share, fingerprint=fingerprints[i], size_mode=size_mode
        )

    placements = tuple(Placement(slots[i], weights[i], geo(i)) for i in active)
    first = placements[0].geometry if active and active[0] == 0 else geo(0)
    return StitchPlan(layout, placements), first


def plan_pixel_stitch(
    sizes: list[Size],
    weights: list[float],
    slots: list[int],
    fingerprints: list[str | None],
    sizing: str,
    fit: str,
    token_budget: int,
    size_mode: str = "kontext",
) -> tuple[StitchPlan, geometry.Geometry]:
    """All references with weight > 0 in one row at a common height (multiples of 16, so each piece owns whole
    tokens and its weight can be applied to exactly its region).

    The height is that of the first attached reference's plan (its bucket, its kept size, or for a token budget the
    largest height whose whole row fits the budget); each piece keeps its own ratio (clamped to 1:4..4:1) at that
    height. The canvas never exceeds the budget in ``token budget`` sizing.
    """
    active = [i for i in range(len(sizes)) if weights[i] > 0.0]

    def widths_at(height: int) -> list[int]:
        return [max(MULTIPLE, round(height * _clamped_ratio(*sizes[i]) / MULTIPLE) * MULTIPLE) for i in active]

    if not active:
        first = reference_geometry(
            *sizes[0], "keep" if sizing == "keep" else "bucket", fit, fingerprint=fingerprints[0], size_mode=size_mode
        )
        return StitchPlan("pixel_stitch", (), None), first
    lead = sizes[active[0]]
    if sizing == "bucket":
        height = geometry.plan(*lead, size_mode, who=NODE_NAME).target_size[1]
    elif sizing == "keep":
        height = keep_size(*lead)[1]
    else:
        height = MULTIPLE
        for candidate in range(MULTIPLE, 16 * MULTIPLE * MULTIPLE + 1, MULTIPLE):
            if tokens_for_pixels(sum(widths_at(candidate)), candidate) > token_budget:
                break
            height = candidate
        if tokens_for_pixels(sum(widths_at(height)), height) > token_budget:
            raise AtelierError(
                f"{NODE_NAME}: a token budget of {token_budget} cannot hold {len(active)} stitched references (at "
                f"least {tokens_for_pixels(sum(widths_at(MULTIPLE)), MULTIPLE)} tokens); raise it or use offset/index."
            )
    widths = widths_at(height)
    placements = []
    x = 0
    for i, w in zip(active, widths, strict=True):
        g = fit_geometry(*sizes[i], (w, height), fit, "stitch", fingerprints[i])
        placements.append(Placement(slots[i], weights[i], g, (x, 0)))
        x += w
    if active[0] == 0:
        first = placements[0].geometry
    else:
        first = fit_geometry(
            *sizes[0],
            (max(MULTIPLE, round(height * _clamped_ratio(*sizes[0]) / MULTIPLE) * MULTIPLE), height),
            fit,
            "stitch",
            fingerprints[0],
        )
    return StitchPlan("pixel_stitch", tuple(placements), (x, height)), first


# -- weights -----------------------------------------------------------------------------------------------------------


def log_weight(weight: float) -> float:
    """The additive logit bias for a weight: ``log(w)``, floored at :data:`MASKED_BIAS` (weight 0)."""
    return MASKED_BIAS if weight <= 0.0 else max(MASKED_BIAS, math.log(weight))


def weight_spec(plan: StitchPlan) -> tuple[tuple[Rect, ...], ...]:
    """Per latent this plan attaches, the token rectangles whose keys get a weight other than 1.

    offset/index: one latent per placement, one rectangle covering it (or none for weight 1). pixel_stitch: one
    latent; a rectangle per piece with a weight other than 1.
    """

    def grid(size: Size) -> tuple[int, int]:
        return math.ceil(size[1] / TOKEN_PIXELS), math.ceil(size[0] / TOKEN_PIXELS)

    if plan.canvas is not None:
        rects = []
        for p in plan.placements:
            if p.weight != 1.0:
                rows, cols = grid(p.size)
                top, left = p.offset[1] // TOKEN_PIXELS, p.offset[0] // TOKEN_PIXELS
                rects.append((top, left, top + rows, left + cols, p.weight))
        return (tuple(rects),)
    out = []
    for p in plan.placements:
        rows, cols = grid(p.size)
        out.append(((0, 0, rows, cols, p.weight),) if p.weight != 1.0 else ())
    return tuple(out)


def reference_key_bias(
    txt_tokens: int,
    img_tokens: int,
    reference_grids: list[tuple[int, int]],
    spec: tuple[tuple[Rect, ...], ...],
) -> torch.Tensor | None:
    """The additive attention-logit bias over all keys, float32 ``[txt + img + sum(refs)]``; None when all zero.

    Key order is FLUX's joint sequence: text tokens, the image being generated, then each reference latent's tokens
    row by row, in the order the references are attached. ``spec[i]`` holds the weighted rectangles of reference
    ``i`` (see :func:`weight_spec`); references beyond ``spec`` (attached later by other nodes) keep weight 1.
    Rectangles are clipped to the reference's grid.
    """
    pieces = [torch.zeros(txt_tokens + img_tokens)]
    any_bias = False
    for i, (rows, cols) in enumerate(reference_grids):
        block = torch.zeros(rows, cols)
        for top, left, bottom, right, weight in spec[i] if i < len(spec) else ():
            bias = log_weight(weight)
            if bias != 0.0:
                block[max(0, top) : min(rows, bottom), max(0, left) : min(cols, right)] = bias
                any_bias = True
        pieces.append(block.flatten())
    return torch.cat(pieces) if any_bias else None
