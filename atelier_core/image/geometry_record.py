"""The aspect lock's vocabulary and its record: Kontext's sizes, the modes, fits, anchors and limits, and the
:class:`Geometry` that says exactly what a lock did (serialised into the workflow and validated when read back).

``geometry`` imports all of it; callers keep using ``geometry.Geometry``, ``geometry.KONTEXT_RESOLUTIONS`` and so on.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

from ..errors import AtelierError

# FLUX.1 Kontext's preferred resolutions (width, height): the published list that BFL's reference code, diffusers'
# FluxKontextPipeline and ComfyUI's FluxKontextImageScale all use. About 1 MP each, multiples of 16.
KONTEXT_RESOLUTIONS: tuple[tuple[int, int], ...] = (
    (672, 1568),
    (688, 1504),
    (720, 1456),
    (752, 1392),
    (800, 1328),
    (832, 1248),
    (880, 1184),
    (944, 1104),
    (1024, 1024),
    (1104, 944),
    (1184, 880),
    (1248, 832),
    (1328, 800),
    (1392, 752),
    (1456, 720),
    (1504, 688),
    (1568, 672),
)

RATIO_PRESETS: tuple[str, ...] = ("1:1", "4:3", "3:4", "16:9", "9:16", "3:2", "2:3", "5:4", "4:5", "21:9")
# Model-preferred sizes beside Kontext's (see atelier_core.model.model_families for their sources): "qwen" is the nearest
# of Qwen-Image's seven sizes (chosen like Kontext's); "flux2" (FLUX.2 has no list) the image's own ratio in
# multiples of 16 at the requested size (1 MP by default), i.e. "keep" under FLUX.2's name.
MODEL_MODES: tuple[str, ...] = ("flux2", "qwen")
# Kontext's own modes; plan() also takes MODEL_MODES, and any other "W:H" as a custom ratio.
MODES: tuple[str, ...] = ("kontext", "keep") + RATIO_PRESETS
FITS: tuple[str, ...] = ("crop", "pad", "stretch")
ANCHORS: tuple[str, ...] = (
    "center",
    "top",
    "bottom",
    "left",
    "right",
    "top-left",
    "top-right",
    "bottom-left",
    "bottom-right",
)
PAD_MODES: tuple[str, ...] = ("edge", "reflect", "color")
SIZE_BY: tuple[str, ...] = ("megapixels", "long_side")
# The Aspect-Ratio Lock's size choice for Kontext's 17 trained sizes, and every setting of the node at its default
# (keyed by the node's input names): one table for the node's schema, the shipped workflows and the tests.
SIZE_KONTEXT = "Kontext preferred (17 sizes)"
LOCK_DEFAULTS: dict[str, Any] = {
    "size": SIZE_KONTEXT,
    "fit": "crop",
    "anchor": "center",
    "size_by": "megapixels",
    "megapixels": 1.0,
    "long_side": 1024,
    "custom_width": 3,
    "custom_height": 2,
    "pad_mode": "edge",
    "pad_color": "#000000",
}

MULTIPLE = 16
MEGAPIXEL = 1024 * 1024
MAX_TARGET_AREA = 1536 * 1536
MIN_MEGAPIXELS = 0.0625  # 256 x 256
MAX_MEGAPIXELS = MAX_TARGET_AREA / MEGAPIXEL  # 2.25
MIN_LONG_SIDE = 256
MAX_RATIO = 4.0  # requested ratios are clamped to 1:4 .. 4:1; beyond that Kontext output degrades badly
MAX_INPUT_PIXELS = 4096 * 4096  # "16 MP": larger inputs are refused rather than risking memory on the host
RESTORE_RATIO_TOLERANCE = 0.02  # an edited image of another size but this close in ratio is resampled, not refused
FINGERPRINT_GRID = 8
FINGERPRINT_TOLERANCE = 6  # per cell, in 1/255 steps: survives 8-bit PNG round trips and fp16, not another image
FILTER = "lanczos-float"

_ANCHOR_FRACTIONS: dict[str, tuple[float, float]] = {
    "center": (0.5, 0.5),
    "top": (0.5, 0.0),
    "bottom": (0.5, 1.0),
    "left": (0.0, 0.5),
    "right": (1.0, 0.5),
    "top-left": (0.0, 0.0),
    "top-right": (1.0, 0.0),
    "bottom-left": (0.0, 1.0),
    "bottom-right": (1.0, 1.0),
}

Box = tuple[int, int, int, int]
Size = tuple[int, int]


@dataclass(frozen=True)
class Geometry:
    """Exactly what :func:`apply` does to an image, so that :func:`restore` can undo it.

    ``crop_box`` (original pixels) is cut out, resampled to ``resized_size`` and placed at ``pad_box`` inside a
    ``target_size`` canvas; the rest of the canvas is padding (``pad_mode``/``pad_color``). ``fingerprint`` is a
    coarse signature of the original image (see :func:`fingerprint`) used to refuse a geometry made for another
    image; ``None`` when the geometry was planned from a size only.
    """

    original_size: Size
    crop_box: Box
    resized_size: Size
    pad_box: Box
    target_size: Size
    mode: str
    requested_ratio: float
    fit: str
    anchor: str = "center"
    pad_mode: str = "edge"
    pad_color: tuple[float, ...] = (0.0, 0.0, 0.0)
    fingerprint: str | None = None
    filter: str = FILTER
    version: int = 1
    kind: str = field(default="kontext-atelier/geometry", repr=False)

    def __post_init__(self) -> None:
        problems = _consistency_problems(self)
        if problems:
            raise AtelierError(
                f"Invalid Kontext geometry: {problems}. Re-run Kontext Aspect-Ratio Lock to make a new one."
            )

    # Convenience views -------------------------------------------------------------------------------------------
    @property
    def target_width(self) -> int:
        return self.target_size[0]

    @property
    def target_height(self) -> int:
        return self.target_size[1]

    @property
    def is_cropped(self) -> bool:
        """True when part of the original lies outside the crop box (restore then needs the original)."""
        return self.crop_box != (0, 0, *self.original_size)

    @property
    def is_padded(self) -> bool:
        return self.pad_box != (0, 0, *self.target_size)

    @property
    def needs_resample(self) -> bool:
        return self.resized_size != self.crop_box[2:]

    def describe(self) -> str:
        """One line for logs and the node UI."""
        ow, oh = self.original_size
        tw, th = self.target_size
        parts = [f"{ow}x{oh} -> {tw}x{th} ({self.mode}, {self.fit})"]
        if self.is_cropped:
            x, y, w, h = self.crop_box
            parts.append(f"crop {w}x{h} at ({x},{y})")
        if self.is_padded:
            x, y, w, h = self.pad_box
            parts.append(f"content {w}x{h} at ({x},{y}), {self.pad_mode} padding")
        return "; ".join(parts)

    # Serialisation -----------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples); :meth:`from_dict` reads it back to an equal geometry."""
        data = asdict(self)
        for key, value in data.items():
            if isinstance(value, tuple):
                data[key] = list(value)
        return data

    @classmethod
    def coerce(cls, value: Any, who: str = "Kontext Restore Size") -> Geometry:
        """Accept a :class:`Geometry`, its dict, or a Geometry from another copy of this module.

        ComfyUI imports the pack under a path-derived module name, so the command line, tests or another pack copy
        can hold an equal class that ``isinstance`` does not recognise; going through the dict makes them agree.
        """
        if isinstance(value, cls):
            return value
        if hasattr(value, "to_dict") and type(value).__name__ == cls.__name__:
            return cls.from_dict(value.to_dict())
        if isinstance(value, dict):
            return cls.from_dict(value)
        raise AtelierError(
            f"{who}: 'geometry' must come from a Kontext Aspect-Ratio Lock node (or its JSON); got {type(value).__name__}."
        )

    @classmethod
    def from_dict(cls, data: Any, max_original_pixels: int = MAX_INPUT_PIXELS) -> Geometry:
        """Read a dict written by :meth:`to_dict`; raises :class:`AtelierError` for anything else, including an
        original over ``max_original_pixels`` (the lock's input limit, which :func:`plan` can lift)."""
        hint = "Use the geometry JSON written by Kontext Aspect-Ratio Lock (or `kontext-atelier aspect-lock --geometry-out`)."
        if not isinstance(data, dict) or data.get("kind") != "kontext-atelier/geometry":
            raise AtelierError(f"This is not a Kontext Atelier geometry. {hint}")
        if data.get("version") != 1:
            raise AtelierError(
                f"Unsupported Kontext geometry version {data.get('version')!r}; this pack reads version 1. {hint}"
            )
        try:
            _check_stored_sizes(data, max_original_pixels)
            return cls(
                original_size=_int_tuple(data["original_size"], 2),
                crop_box=_int_tuple(data["crop_box"], 4),
                resized_size=_int_tuple(data["resized_size"], 2),
                pad_box=_int_tuple(data["pad_box"], 4),
                target_size=_int_tuple(data["target_size"], 2),
                mode=str(data["mode"]),
                requested_ratio=float(data["requested_ratio"]),
                fit=str(data["fit"]),
                anchor=str(data.get("anchor", "center")),
                pad_mode=str(data.get("pad_mode", "edge")),
                pad_color=_color(data.get("pad_color", (0.0, 0.0, 0.0))),
                fingerprint=None if data.get("fingerprint") is None else str(data["fingerprint"]),
                filter=str(data.get("filter", FILTER)),
                version=1,
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, AtelierError):
                raise
            raise AtelierError(f"The Kontext geometry is incomplete or damaged ({exc!r}). {hint}") from None


def _check_stored_sizes(data: dict, max_original_pixels: int) -> None:
    """Sizes read from outside (a JSON file, a workflow) stay within what a lock can make: a hand-edited 20000x20000
    original made restore allocate it (38 s, 11 GB) before anything complained. Checked before the record is built.
    """
    ow, oh = _int_tuple(data["original_size"], 2)
    tw, th = _int_tuple(data["target_size"], 2)
    if ow * oh > max_original_pixels:
        raise AtelierError(
            f"The Kontext geometry's original size {ow}x{oh} is over the {max_original_pixels / 1e6:.1f} million pixel "
            "limit of the aspect lock; the geometry was edited or damaged. Re-run Kontext Aspect-Ratio Lock."
        )
    if tw * th > MAX_TARGET_AREA:
        raise AtelierError(
            f"The Kontext geometry's target size {tw}x{th} is over the {MAX_TARGET_AREA / 1e6:.2f} million pixels a "
            "lock makes; the geometry was edited or damaged. Re-run Kontext Aspect-Ratio Lock."
        )


def _int_tuple(value: Any, n: int) -> tuple[int, ...]:
    # Only a list of whole numbers: list("99") would otherwise read a string as (9, 9).
    if not isinstance(value, (list, tuple)) or len(value) != n or not all(_is_whole(v) for v in value):
        raise ValueError(f"expected {n} integers, got {value!r:.80}")
    return tuple(int(v) for v in value)


def _is_whole(v: Any) -> bool:
    return not isinstance(v, bool) and (isinstance(v, int) or (isinstance(v, float) and v.is_integer()))


def _color(value: Any) -> tuple[float, ...]:
    numbers = isinstance(value, (list, tuple)) and all(isinstance(v, (int, float)) for v in value)
    if not numbers or not 1 <= len(value) <= 4 or not all(math.isfinite(v) for v in value):
        raise ValueError(f"pad_color must be 1 to 4 numbers, got {value!r:.80}")
    return tuple(float(v) for v in value)


def _consistency_problems(g: Geometry) -> str:
    ow, oh = g.original_size
    cx, cy, cw, ch = g.crop_box
    rw, rh = g.resized_size
    px, py, pw, ph = g.pad_box
    tw, th = g.target_size
    if min(ow, oh, cw, ch, rw, rh, pw, ph, tw, th) < 1:
        return "a size is zero or negative"
    if cx < 0 or cy < 0 or cx + cw > ow or cy + ch > oh:
        return f"crop box {g.crop_box} lies outside the {ow}x{oh} original"
    if (pw, ph) != (rw, rh):
        return "pad box and resized size disagree"
    if px < 0 or py < 0 or px + pw > tw or py + ph > th:
        return f"pad box {g.pad_box} lies outside the {tw}x{th} target"
    if tw % MULTIPLE or th % MULTIPLE:
        return f"target {tw}x{th} is not a multiple of {MULTIPLE}"
    if g.fit not in FITS or g.anchor not in ANCHORS or g.pad_mode not in PAD_MODES:
        return f"unknown fit/anchor/pad mode {g.fit!r}/{g.anchor!r}/{g.pad_mode!r}"
    if not (math.isfinite(g.requested_ratio) and g.requested_ratio > 0):
        return "requested ratio is not a positive number"
    return ""
