"""Aspect-ratio lock and exact restore for FLUX.1 Kontext.

Kontext works best at about 1 MP with sides that are multiples of 16. Core's ``FluxKontextImageScale`` snaps to
one of 17 preferred sizes, centre-crops up to 7.8% of a side and forgets it. Here every step is recorded in a
:class:`Geometry`, so :func:`restore` can put an edited image back at the original's exact pixel size and
placement, re-inserting the cropped margins untouched.

The pipeline is always: crop a box of the original (``crop_box``, original pixels) -> resample it to
``resized_size`` -> place it at ``pad_box`` inside the ``target_size`` canvas, padding the rest. One of the three
steps is trivial for each fit mode: ``crop`` fills the canvas (no padding), ``pad`` keeps the whole image (no
crop), ``stretch`` does neither.

Public API (kept stable; other modules call it):

* :func:`plan` -- pure arithmetic from a width and height to a :class:`Geometry`.
* :func:`apply` -- run a geometry on an image tensor ``[B, H, W, C]``; returns the image and its padding mask.
* :func:`restore` -- undo a geometry on an edited image; returns an image of the original's exact size.
* :func:`lock` -- :func:`fingerprint` + :func:`plan` + :func:`apply` in one call.
* :func:`latent_size` -- the empty-latent size that makes the sampler output the target size.
* :func:`resample` -- the resampler used everywhere here (float Lanczos, see its docstring).

Units: sizes are ``(width, height)`` and boxes ``(x, y, width, height)``; megapixels are ComfyUI's unit
(1 MP = 1024 x 1024, as in ``ImageScaleToTotalPixels``), so the 1536 x 1536 area cap is 2.25 MP (2.36 million
pixels).

Guarantees (tested in ``tests/test_geometry.py``):

* target sides are multiples of 16, at least 16, with an area of at most 1536 x 1536;
* ratio presets / custom / keep-input: ``|target ratio / requested ratio - 1| <= 8 / (d - 8)`` where ``d`` is the
  side derived from the other one (the long side when sizing by megapixels, the short side when sizing by long
  side); at 1 MP (long side >= 1024) that is <= 0.8% for any ratio. Requested ratios are clamped to 1:4 .. 4:1;
  the Kontext mode picks exactly the bucket core picks;
* crop boxes are within 1 px of the exact target ratio when the cut is centred on its axis (symmetric margins,
  the same box core cuts) and within 0.5 px otherwise; in pad mode the resized picture is within 0.5 px of the
  image's own ratio (a side never drops below 1 px);
* restore returns exactly the original's size; cropped margins are bit-identical copies of the original; if a
  geometry needs no resampling (e.g. a 1024 x 1024 input in Kontext mode) the round trip is bit-identical;
* round trip without an edit, pad/stretch (and the picture part of crop): >= 43 dB PSNR on the real test photos
  when Kontext upscales them (measured 44.6 and 47.0 dB), >= 37.5 dB on a 1/f "photo-like" synthetic upscaled
  1.5x. A downscaled round trip loses the detail above the target's resolution, so its PSNR depends on content
  and scale: on the synthetic >= 31.5 dB at 0.83x, >= 29 dB at 0.68x, >= 27 dB at 0.51x. Getting the
  unchanged original detail back is the diff-merge's job (it pastes original pixels where nothing changed).
"""

from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from PIL import Image

from ..errors import AtelierError
from .geometry_record import (  # noqa: F401 (geometry's public names, defined beside the record)
    _ANCHOR_FRACTIONS,
    ANCHORS,
    FILTER,
    FINGERPRINT_GRID,
    FINGERPRINT_TOLERANCE,
    FITS,
    KONTEXT_RESOLUTIONS,
    LOCK_DEFAULTS,
    MAX_INPUT_PIXELS,
    MAX_MEGAPIXELS,
    MAX_RATIO,
    MAX_TARGET_AREA,
    MEGAPIXEL,
    MIN_LONG_SIDE,
    MIN_MEGAPIXELS,
    MODEL_MODES,
    MODES,
    MULTIPLE,
    PAD_MODES,
    RATIO_PRESETS,
    RESTORE_RATIO_TOLERANCE,
    SIZE_BY,
    SIZE_KONTEXT,
    Box,
    Geometry,
    Size,
    _consistency_problems,
    _int_tuple,
)

log = logging.getLogger(__name__)

# Planning ----------------------------------------------------------------------------------------------------------


def parse_ratio(text: str, who: str = "Kontext Aspect-Ratio Lock") -> float:
    """``"16:9"`` -> 1.777...; also accepts ``"16x9"`` and a plain positive number (width / height)."""
    cleaned = str(text).strip().lower().replace("x", ":").replace("/", ":")
    try:
        if ":" in cleaned:
            a, b = (float(part) for part in cleaned.split(":"))
        else:
            a, b = float(cleaned), 1.0
    except ValueError:
        raise AtelierError(f"{who}: cannot read the ratio {text!r}; write it as W:H, e.g. 16:9.") from None
    if not (a > 0 and b > 0 and math.isfinite(a) and math.isfinite(b)):
        raise AtelierError(f"{who}: the ratio {text!r} needs two positive numbers, e.g. 16:9.")
    return a / b


def parse_color(text: str, who: str = "Kontext Aspect-Ratio Lock") -> tuple[float, ...]:
    """``"#rgb"``, ``"#rrggbb"``, ``"#rrggbbaa"`` or ``"r,g,b[,a]"`` (0..255 integers, or 0..1 when any has a
    decimal point) -> channel values in 0..1."""
    raw = str(text).strip()
    hint = "write it as #rrggbb (e.g. #808080) or r,g,b (e.g. 128,128,128)"
    if raw.startswith("#"):
        digits = raw[1:]
        if len(digits) in (3, 4):
            digits = "".join(ch * 2 for ch in digits)
        if len(digits) not in (6, 8):
            raise AtelierError(f"{who}: cannot read the colour {text!r}; {hint}.")
        try:
            return tuple(int(digits[i : i + 2], 16) / 255.0 for i in range(0, len(digits), 2))
        except ValueError:
            raise AtelierError(f"{who}: cannot read the colour {text!r}; {hint}.") from None
    try:
        parts = [float(p) for p in raw.replace(" ", "").split(",") if p != ""]
    except ValueError:
        raise AtelierError(f"{who}: cannot read the colour {text!r}; {hint}.") from None
    if not 1 <= len(parts) <= 4:
        raise AtelierError(f"{who}: cannot read the colour {text!r}; {hint}.")
    scale = 1.0 if "." in raw else 255.0
    values = tuple(p / scale for p in parts)
    if not all(0.0 <= v <= 1.0 for v in values):
        raise AtelierError(f"{who}: colour {text!r} is out of range; {hint}.")
    return values


def nearest_kontext_resolution(width: int, height: int, sizes: tuple[Size, ...] = KONTEXT_RESOLUTIONS) -> Size:
    """The preferred Kontext size for an image, chosen exactly as core's ``FluxKontextImageScale`` does
    (smallest absolute difference of width/height ratios), so the same input lands in the same bucket. ``sizes``
    picks from another model's list the same way."""
    aspect = width / height
    _, w, h = min((abs(aspect - w / h), w, h) for w, h in sizes)
    return w, h


def _round16(value: float) -> int:
    return max(MULTIPLE, int(round(value / MULTIPLE)) * MULTIPLE)


def target_for_ratio(ratio: float, size_by: str = "megapixels", megapixels: float = 1.0, long_side: int = 1024) -> Size:
    """Multiple-of-16 (width, height) closest to ``ratio`` at the requested size, capped to 1536 x 1536 area.

    By megapixels: the short side is rounded to 16 (or one step either way, whichever gives the truer ratio at a
    similar area) and the long side derived from it (ratio error <= 8/(long-8)).
    By long side: the long side is kept (rounded to 16) and the short side derived (ratio error <= 8/(short-8)).
    ``ratio`` must already be clamped to 1:4 .. 4:1.
    """
    stretch = max(ratio, 1.0 / ratio)  # long / short, >= 1
    if size_by == "megapixels":
        area = min(megapixels * MEGAPIXEL, MAX_TARGET_AREA)
        nearest = _round16(math.sqrt(area / stretch))
        candidates = []
        for short in (nearest - MULTIPLE, nearest, nearest + MULTIPLE):
            long = _round16(short * stretch)
            if short >= MULTIPLE and long * short <= MAX_TARGET_AREA:
                # Ratio error first; 1% of area deviation weighs like 0.1% of ratio error (so 4:3 at 1 MP is
                # the exact 1152x864 rather than 1168x880).
                cost = abs(long / short / stretch - 1) + 0.1 * abs(long * short / area - 1)
                candidates.append((cost, long, short))
        if not candidates:  # only when rounding up overshoots the cap: step down until it fits
            short = nearest
            long = _round16(short * stretch)
            while long * short > MAX_TARGET_AREA:
                short -= MULTIPLE
                long = _round16(short * stretch)
            candidates.append((0.0, long, short))
        _, long, short = min(candidates)
    elif size_by == "long_side":
        long = _round16(long_side)
        short = _round16(long / stretch)
        while long * short > MAX_TARGET_AREA:
            long -= MULTIPLE
            short = _round16(long / stretch)
    else:  # pragma: no cover - guarded by plan()
        raise ValueError(size_by)
    return (long, short) if ratio >= 1.0 else (short, long)


def _crop_box(width: int, height: int, target_ratio: float, anchor: str) -> Box:
    """Largest box of the target ratio inside the image, positioned by ``anchor``."""
    fx, fy = _ANCHOR_FRACTIONS[anchor]
    aspect = width / height
    if math.isclose(aspect, target_ratio, rel_tol=1e-12):
        return 0, 0, width, height
    if aspect > target_ratio:  # too wide: keep the height, cut columns
        ideal = height * target_ratio
        if fx == 0.5:  # centre: symmetric margins, the same box core's FluxKontextImageScale cuts
            margin = min(int(round((width - ideal) / 2)), (width - 1) // 2)
            return margin, 0, width - 2 * margin, height
        cw = min(width, max(1, int(round(ideal))))
        return int(round((width - cw) * fx)), 0, cw, height
    ideal = width / target_ratio  # too tall: keep the width, cut rows
    if fy == 0.5:
        margin = min(int(round((height - ideal) / 2)), (height - 1) // 2)
        return 0, margin, width, height - 2 * margin
    ch = min(height, max(1, int(round(ideal))))
    return 0, int(round((height - ch) * fy)), width, ch


def fit_boxes(width: int, height: int, tw: int, th: int, fit: str, anchor: str = "center") -> tuple[Box, Size, Box]:
    """Crop box (in the original), resized size and pad box (in the target) that bring ``width x height`` to
    ``tw x th`` with ``fit`` — the layout a :class:`Geometry` records. Shared by :func:`plan` and the stitcher."""
    if fit == "crop":
        return _crop_box(width, height, tw / th, anchor), (tw, th), (0, 0, tw, th)
    if fit == "pad":
        resized = _fit_inside(width, height, tw, th)
        fx, fy = _ANCHOR_FRACTIONS[anchor]
        pad_box = (int(round((tw - resized[0]) * fx)), int(round((th - resized[1]) * fy)), *resized)
        return (0, 0, width, height), resized, pad_box
    return (0, 0, width, height), (tw, th), (0, 0, tw, th)


def _fit_inside(width: int, height: int, tw: int, th: int) -> Size:
    """Largest size of the image's own ratio inside ``tw x th`` (sides rounded, at least 1 px)."""
    if width * th >= height * tw:  # limited by the target width
        return tw, min(th, max(1, int(round(tw * height / width))))
    return min(tw, max(1, int(round(th * width / height)))), th


def check_image_size(width: int, height: int, who: str, max_input_pixels: int = MAX_INPUT_PIXELS) -> None:
    """Refuse sizes no Kontext geometry can come from, with a message that says what to do."""
    if width < 1 or height < 1:
        raise AtelierError(f"{who}: the image is empty ({width}x{height} pixels). Connect an image with pixels in it.")
    if width * height < 2:
        raise AtelierError(
            f"{who}: the image is a single pixel; there is nothing to edit. Connect the real image (did a crop or "
            "mask node upstream produce an empty region?)."
        )
    if width * height > max_input_pixels:
        raise AtelierError(
            f"{who}: the image is {width}x{height} ({width * height / 1e6:.1f} million pixels); the limit is "
            f"{max_input_pixels / 1e6:.1f} million ({int(math.isqrt(max_input_pixels))}x{int(math.isqrt(max_input_pixels))}). "
            "Downscale it first (e.g. 'Upscale Image By' 0.5 or 'ImageScaleToTotalPixels')."
        )


def plan(
    width: int,
    height: int,
    mode: str = "kontext",
    *,
    fit: str = "crop",
    anchor: str = "center",
    size_by: str = "megapixels",
    megapixels: float = 1.0,
    long_side: int = 1024,
    pad_mode: str = "edge",
    pad_color: tuple[float, ...] = (0.0, 0.0, 0.0),
    fingerprint: str | None = None,
    max_input_pixels: int = MAX_INPUT_PIXELS,
    who: str = "Kontext Aspect-Ratio Lock",
) -> Geometry:
    """Plan how a ``width x height`` image becomes a Kontext-friendly size; pure arithmetic, no pixels.

    ``mode``: ``"kontext"`` (nearest of the 17 preferred sizes, as core picks it; ``size_by`` is ignored; ``"qwen"``
    picks from Qwen-Image's 7 sizes the same way, ``"flux2"`` sizes like ``"keep"``; see :data:`MODEL_MODES`),
    ``"keep"`` (the input's own ratio) or a ratio ``"W:H"`` (the presets in :data:`RATIO_PRESETS` or any custom
    one). Ratios are clamped to 1:4 .. 4:1. ``size_by`` ``"megapixels"`` (1 MP = 1024 x 1024, at most 2.25) or
    ``"long_side"`` (pixels, at least 256); the target area is capped to 1536 x 1536.

    ``fit``: ``"crop"`` (cut the excess at ``anchor``), ``"pad"`` (fit inside and pad at the other side of
    ``anchor`` with ``pad_mode`` ``"edge"``, ``"reflect"`` or ``"color"`` using ``pad_color`` in 0..1, per channel; a
    missing alpha entry is 1) or ``"stretch"`` (resample to the target, ignoring the ratio).

    ``fingerprint`` (from :func:`fingerprint`) is stored so that a geometry used with another image is refused.
    ``who`` names the node or command in error messages. Raises :class:`AtelierError` for bad input.
    """
    width, height = int(width), int(height)
    check_image_size(width, height, who, max_input_pixels)
    if fit not in FITS:
        raise AtelierError(f"{who}: unknown fit {fit!r}; choose one of {', '.join(FITS)}.")
    if anchor not in ANCHORS:
        raise AtelierError(f"{who}: unknown anchor {anchor!r}; choose one of {', '.join(ANCHORS)}.")
    if pad_mode not in PAD_MODES:
        raise AtelierError(f"{who}: unknown padding {pad_mode!r}; choose one of {', '.join(PAD_MODES)}.")
    if size_by not in SIZE_BY:
        raise AtelierError(f"{who}: unknown size_by {size_by!r}; choose one of {', '.join(SIZE_BY)}.")
    if not (MIN_MEGAPIXELS <= megapixels <= MAX_MEGAPIXELS + 1e-9):
        raise AtelierError(
            f"{who}: megapixels must be between {MIN_MEGAPIXELS} and {MAX_MEGAPIXELS} (1536x1536); got {megapixels}."
        )
    if long_side < MIN_LONG_SIDE:
        raise AtelierError(f"{who}: long side must be at least {MIN_LONG_SIDE} pixels; got {long_side}.")
    color = tuple(float(c) for c in pad_color)
    if not color or not all(math.isfinite(c) for c in color):
        raise AtelierError(f"{who}: the padding colour needs finite numbers (0..1 per channel); got {pad_color!r}.")

    mode = str(mode).strip().lower()
    if mode in ("kontext", "qwen"):
        from ..model.model_families import QWEN_IMAGE_RESOLUTIONS

        sizes = KONTEXT_RESOLUTIONS if mode == "kontext" else QWEN_IMAGE_RESOLUTIONS
        tw, th = nearest_kontext_resolution(width, height, sizes)
        requested = tw / th
    else:
        requested = width / height if mode in ("keep", "flux2") else parse_ratio(mode, who)
        clamped = min(max(requested, 1.0 / MAX_RATIO), MAX_RATIO)
        if clamped != requested:
            log.info("%s: ratio %.3f is outside 1:4..4:1; using %.3f", who, requested, clamped)
        requested = clamped
        tw, th = target_for_ratio(requested, size_by, megapixels, long_side)
        if size_by == "long_side" and max(tw, th) < _round16(long_side):
            log.warning("%s: long side %d exceeds the 1536x1536 area cap; using %dx%d", who, long_side, tw, th)

    crop, resized, pad_box = fit_boxes(width, height, tw, th, fit, anchor)

    return Geometry(
        original_size=(width, height),
        crop_box=crop,
        resized_size=resized,
        pad_box=pad_box,
        target_size=(tw, th),
        mode=mode,
        requested_ratio=requested,
        fit=fit,
        anchor=anchor,
        pad_mode=pad_mode,
        pad_color=color,
        fingerprint=fingerprint,
    )


def latent_size(geometry: Geometry, downscale: int = 8) -> Size:
    """``(width, height)`` of the latent that decodes to the target size (FLUX VAE: 16 channels, 1/8 size).

    Feed an empty latent of this size to the sampler so the output follows the target image's aspect, not the
    stitched references'. Targets are multiples of 16, so the division is exact.
    """
    tw, th = geometry.target_size
    return tw // downscale, th // downscale


# Pixels ------------------------------------------------------------------------------------------------------------


def resample(image: torch.Tensor, width: int, height: int) -> torch.Tensor:
    """Resize ``[B, H, W, C]`` to ``width x height`` with a float32 Lanczos (a=3) filter, channel by channel.

    Why this filter: on real photos (scikit-image samples) a down-and-up round trip through a Kontext size keeps
    3-4 dB more PSNR with Lanczos than with torch's antialiased bicubic, and unlike core's ``lanczos`` (which goes
    through 8-bit PIL images) this runs PIL's resampler on 32-bit float planes, so nothing is quantised and any
    channel count (RGBA, masks) works. Ringing is clipped to each plane's own value range. Same size returns the
    input untouched (bit-identical). Runs on the CPU; the result goes back to the input's device and dtype.
    """
    batch, h, w, channels = image.shape
    if (w, h) == (width, height):
        return image
    planes = image.detach().to("cpu", torch.float32).numpy()
    out = np.empty((batch, height, width, channels), dtype=np.float32)
    for b in range(batch):
        for c in range(channels):
            plane = np.ascontiguousarray(planes[b, :, :, c])
            resized = np.asarray(Image.fromarray(plane).resize((width, height), Image.Resampling.LANCZOS))
            np.clip(resized, plane.min(), plane.max(), out=out[b, :, :, c])
    return torch.from_numpy(out).to(image.device, image.dtype)


def fingerprint(image: torch.Tensor) -> str:
    """A coarse signature of the first image in a batch: 8x8 cell means of its first three channels, 8-bit hex.

    Robust to 8-bit PNG round trips and fp16 casts (cell means barely move), different for another picture.
    Compare with :func:`fingerprints_match`.
    """
    plane = image[0, :, :, : min(3, image.shape[-1])].detach().to("cpu", torch.float32).mean(dim=-1)
    cells = torch.nn.functional.adaptive_avg_pool2d(plane[None, None], FINGERPRINT_GRID)[0, 0]
    levels = (cells.clamp(0, 1) * 255).round().to(torch.uint8).flatten().tolist()
    return bytes(levels).hex()


def fingerprints_match(a: str | None, b: str | None) -> bool:
    """True when either is unknown or every cell differs by at most :data:`FINGERPRINT_TOLERANCE` levels."""
    if a is None or b is None:
        return True
    try:
        xa, xb = bytes.fromhex(a), bytes.fromhex(b)
    except ValueError:
        return False
    return len(xa) == len(xb) and all(abs(p - q) <= FINGERPRINT_TOLERANCE for p, q in zip(xa, xb, strict=True))


def _check_tensor(image: Any, who: str, name: str) -> torch.Tensor:
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise AtelierError(f"{who}: '{name}' must be an IMAGE batch [batch, height, width, channels]; got {shape}.")
    if image.shape[0] == 0:
        raise AtelierError(f"{who}: '{name}' is an empty batch (0 images). Check the node that feeds it.")
    if image.shape[-1] < 1:
        raise AtelierError(f"{who}: '{name}' has no colour channels.")
    if not image.is_floating_point():
        raise AtelierError(f"{who}: '{name}' must hold floating-point pixels in 0..1; got {image.dtype}.")
    require_finite(image, who, f"'{name}'")
    return image


def require_finite(values: torch.Tensor, who: str, name: str, kind: str = "pixels") -> None:
    """Refuse NaN or infinite values, naming the node and input: every image node checks its inputs with this.

    NaN spreads through resampling, padding and the model without a sound and comes out as a black or noise image
    several nodes later; refusing at the first node says where it came from.
    """
    if values.is_floating_point() and not bool(torch.isfinite(values).all()):
        raise AtelierError(
            f"{who}: {name} contains NaN or infinite {kind}; check the node that produced it (a VAE decode or "
            "encode in fp16 can overflow: try the VAE in bf16 or fp32)."
        )


def _check_original(image: torch.Tensor, geometry: Geometry, who: str, name: str) -> None:
    w, h = image.shape[2], image.shape[1]
    if (w, h) != geometry.original_size:
        ow, oh = geometry.original_size
        raise AtelierError(
            f"{who}: '{name}' is {w}x{h} but the geometry was made for a {ow}x{oh} image. Connect the same image "
            "that went into Kontext Aspect-Ratio Lock, or lock this image again."
        )
    if not fingerprints_match(geometry.fingerprint, fingerprint(image)):
        raise AtelierError(
            f"{who}: '{name}' is not the image this geometry was made from (same size, different picture). Connect "
            "the image that went into Kontext Aspect-Ratio Lock, or lock this image again."
        )


def _reflect_indices(n: int, before: int, after: int) -> torch.Tensor:
    """Indices for mirror padding without repeating the edge pixel, for any pad width (folds back and forth)."""
    idx = torch.arange(-before, n + after)
    if n == 1:
        return torch.zeros_like(idx)
    period = 2 * (n - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= n, period - idx, idx)


def _pad_color_for(color: tuple[float, ...], channels: int) -> list[float]:
    """Pad colour per channel: as given, then an opaque alpha for RGB+A, else the first value repeated."""
    if len(color) >= channels:
        return list(color[:channels])
    if len(color) == channels - 1:
        return [*color, 1.0]
    return [color[0]] * channels


def _pad(content: torch.Tensor, geometry: Geometry) -> torch.Tensor:
    tw, th = geometry.target_size
    px, py, pw, ph = geometry.pad_box
    before_x, after_x, before_y, after_y = px, tw - px - pw, py, th - py - ph
    if geometry.pad_mode == "color":
        color = _pad_color_for(geometry.pad_color, content.shape[-1])
        canvas = torch.tensor(color, dtype=content.dtype, device=content.device).expand(content.shape[0], th, tw, -1)
        canvas = canvas.clone()
        canvas[:, py : py + ph, px : px + pw, :] = content
        return canvas
    if geometry.pad_mode == "edge":
        ys = torch.arange(-before_y, ph + after_y).clamp(0, ph - 1)
        xs = torch.arange(-before_x, pw + after_x).clamp(0, pw - 1)
    else:
        ys = _reflect_indices(ph, before_y, after_y)
        xs = _reflect_indices(pw, before_x, after_x)
    return content[:, ys.to(content.device)][:, :, xs.to(content.device)]


def apply(
    image: torch.Tensor, geometry: Geometry, who: str = "Kontext Aspect-Ratio Lock"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Run ``geometry`` on ``image`` ``[B, H, W, C]`` (float, any C); returns ``(image, pad_mask)``.

    The image is ``[B, target_h, target_w, C]`` in the input's dtype and device; ``pad_mask`` is ``[B, target_h,
    target_w]`` float32, 1.0 on padding and 0.0 on picture. The image must be the one the geometry was planned
    for (size, and fingerprint when the geometry has one); otherwise :class:`AtelierError`.
    """
    _check_tensor(image, who, "image")
    _check_original(image, geometry, who, "image")
    x, y, w, h = geometry.crop_box
    content = resample(image[:, y : y + h, x : x + w, :], *geometry.resized_size)
    out = _pad(content, geometry) if geometry.is_padded else content
    tw, th = geometry.target_size
    mask = torch.ones((image.shape[0], th, tw), dtype=torch.float32, device=image.device)
    px, py, pw, ph = geometry.pad_box
    mask[:, py : py + ph, px : px + pw] = 0.0
    return out.contiguous(), mask


def lock(
    image: torch.Tensor, mode: str = "kontext", **plan_options: Any
) -> tuple[torch.Tensor, torch.Tensor, Geometry]:
    """Plan for ``image``'s size (with its fingerprint) and apply; returns ``(image, pad_mask, geometry)``."""
    who = plan_options.get("who", "Kontext Aspect-Ratio Lock")
    _check_tensor(image, who, "image")
    geometry = plan(image.shape[2], image.shape[1], mode, fingerprint=fingerprint(image), **plan_options)
    out, mask = apply(image, geometry, who=who)
    return out, mask, geometry


def _match_channels(image: torch.Tensor, channels: int) -> torch.Tensor:
    """Margins come from the original; give them the edited image's channel count (drop extras, opaque alpha)."""
    have = image.shape[-1]
    if have == channels:
        return image
    if have > channels:
        return image[..., :channels]
    if have == 1:
        return image.expand(*image.shape[:-1], channels)
    fill = torch.ones((*image.shape[:-1], channels - have), dtype=image.dtype, device=image.device)
    return torch.cat([image, fill], dim=-1)


def restore(
    edited: torch.Tensor,
    geometry: Geometry,
    original: torch.Tensor | None = None,
    who: str = "Kontext Restore Size",
) -> torch.Tensor:
    """Undo ``geometry`` on ``edited``: an image of the original's exact size and placement.

    Steps: drop the padding (``pad_box``), resample the picture back to the crop box size, and -- when the
    geometry cropped -- paste it into a copy of ``original`` at the crop box, so the cropped margins are the
    original's own pixels, bit for bit. ``original`` is required only when the geometry cropped; when given it is
    always checked (size and fingerprint), so a geometry from another image is refused.

    ``edited`` should be ``target_size``; another size within 2% of the target ratio (e.g. a latent rounded
    differently) is resampled to it first, anything else is refused. The output has ``edited``'s batch size,
    channel count, dtype and device; a one-image ``original`` is shared across an edited batch; the original's
    margins are given the edited channel count (extra channels dropped, a missing alpha made opaque).
    """
    _check_tensor(edited, who, "edited image")
    batch, eh, ew, channels = edited.shape
    tw, th = geometry.target_size
    if (ew, eh) != (tw, th):
        if abs((ew / eh) / (tw / th) - 1.0) > RESTORE_RATIO_TOLERANCE:
            raise AtelierError(
                f"{who}: the edited image is {ew}x{eh} but this geometry's target is {tw}x{th} (a different shape). "
                "Sample with the latent from Kontext Aspect-Ratio Lock (or an empty latent of the same size), and "
                "connect the geometry that belongs to this edit."
            )
        log.info("%s: edited image is %dx%d, not %dx%d; resampling it to the target first", who, ew, eh, tw, th)
        edited = resample(edited, tw, th)
    if original is not None:
        _check_tensor(original, who, "original")
        _check_original(original, geometry, who, "original")
        if original.shape[0] not in (1, batch):
            raise AtelierError(
                f"{who}: the original batch has {original.shape[0]} images and the edited batch {batch}; connect one "
                "original or one per edited image."
            )
    elif geometry.is_cropped:
        raise AtelierError(
            f"{who}: this geometry cropped the image ({geometry.describe()}), so the original is needed to put the "
            "cropped margins back. Connect the image that went into Kontext Aspect-Ratio Lock to 'original'."
        )

    px, py, pw, ph = geometry.pad_box
    x, y, w, h = geometry.crop_box
    picture = resample(edited[:, py : py + ph, px : px + pw, :], w, h)
    if not geometry.is_cropped:
        return picture.contiguous()
    base = _match_channels(original.to(edited.device, edited.dtype), channels)
    result = base.expand(batch, *base.shape[1:]).clone()
    result[:, y : y + h, x : x + w, :] = picture
    return result


def region_mask(geometry: Geometry, batch: int = 1) -> torch.Tensor:
    """``[batch, H, W]`` float mask in original pixels: 1.0 where :func:`restore` puts edited pixels (the crop box),
    0.0 on the margins copied from the original."""
    ow, oh = geometry.original_size
    x, y, w, h = geometry.crop_box
    mask = torch.zeros((batch, oh, ow), dtype=torch.float32)
    mask[:, y : y + h, x : x + w] = 1.0
    return mask


def with_fingerprint(geometry: Geometry, image: torch.Tensor) -> Geometry:
    """A copy of ``geometry`` carrying ``image``'s fingerprint (for geometries planned from a size only)."""
    return replace(geometry, fingerprint=fingerprint(image))
