"""Kontext Aspect-Ratio Lock and Kontext Restore Size: thin V3 adapters over ``atelier_core.image.geometry``."""

from __future__ import annotations

import torch
from comfy_api.latest import io

from ..atelier_core.image import geometry
from ..atelier_core.model import model_families
from .types import KontextGeometry

CATEGORY = "Kontext Atelier/Geometry"
LOCK_NAME = "Kontext Aspect-Ratio Lock"
RESTORE_NAME = "Kontext Restore Size"

SIZE_KONTEXT = geometry.SIZE_KONTEXT
SIZE_KEEP = "keep input ratio"
SIZE_CUSTOM = "custom W:H"
# Other models' preferred sizes (sources in atelier_core.model.model_families); Kontext's stays the first and default.
SIZE_FLUX2 = "FLUX.2 (input ratio, 128-ch latent)"
SIZE_QWEN = "Qwen-Image preferred (7 sizes)"
SIZE_MODELS = {SIZE_FLUX2: "flux2", SIZE_QWEN: "qwen"}
SIZE_OPTIONS = [SIZE_KONTEXT, SIZE_KEEP, *geometry.RATIO_PRESETS, SIZE_CUSTOM, *SIZE_MODELS]
SIZE_BY_OPTIONS = {"megapixels": "megapixels", "long side": "long_side"}


def _mode(size: str, custom_width: int, custom_height: int) -> str:
    if size == SIZE_KONTEXT:
        return "kontext"
    if size == SIZE_KEEP:
        return "keep"
    if size == SIZE_CUSTOM:
        return f"{custom_width}:{custom_height}"
    return SIZE_MODELS.get(size, size)


class AtelierAspectLock(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierAspectLock",
            display_name=LOCK_NAME,
            category=CATEGORY,
            description=(
                "Resize an image to a Kontext-friendly size (multiples of 16) without losing track of it: choose a "
                "Kontext preferred size, a fixed ratio or the input's own ratio, and crop, pad or stretch to fit. "
                "The geometry output records exactly what was done so Kontext Restore Size can put the edit back at "
                "the original's exact size, with cropped margins untouched. The latent output sizes the sampler so "
                "the result keeps this image's aspect."
            ),
            inputs=[
                io.Image.Input(
                    "image",
                    tooltip="The image to edit (any size up to 16 MP; RGB or RGBA; a batch shares one geometry).",
                ),
                io.Combo.Input(
                    "size",
                    options=SIZE_OPTIONS,
                    default=geometry.LOCK_DEFAULTS["size"],
                    tooltip=(
                        "Target shape. 'Kontext preferred' snaps to the nearest of the 17 ~1 MP sizes Kontext was "
                        "trained on (same choice as FluxKontextImageScale). A ratio or 'keep input ratio' uses "
                        "megapixels / long side below. Ratios are limited to 1:4 .. 4:1. 'FLUX.2' keeps the input's "
                        "ratio at megapixels / long side (FLUX.2 has no fixed list; 1 MP is its default); 'Qwen-Image preferred' snaps to the nearest of "
                        "Qwen-Image's 7 published sizes."
                    ),
                ),
                io.Combo.Input(
                    "fit",
                    options=list(geometry.FITS),
                    default=geometry.LOCK_DEFAULTS["fit"],
                    tooltip=(
                        "How the image meets the target shape. crop: cut the excess at the anchor (restored later from "
                        "the original). pad: keep everything and fill the rest (see padding mask). stretch: resample "
                        "to the target, distorting slightly."
                    ),
                ),
                io.Combo.Input(
                    "anchor",
                    options=list(geometry.ANCHORS),
                    default=geometry.LOCK_DEFAULTS["anchor"],
                    tooltip="Which part stays when cropping, or where the picture sits when padding.",
                ),
                io.Combo.Input(
                    "size_by",
                    options=list(SIZE_BY_OPTIONS),
                    default=geometry.LOCK_DEFAULTS["size_by"],
                    tooltip="For ratio modes: size the target by total megapixels or by its long side. Ignored for 'Kontext preferred'.",
                ),
                io.Float.Input(
                    "megapixels",
                    default=geometry.LOCK_DEFAULTS["megapixels"],
                    min=geometry.MIN_MEGAPIXELS,
                    max=geometry.MAX_MEGAPIXELS,
                    step=0.05,
                    tooltip="Target area in megapixels (1 MP = 1024x1024, as ImageScaleToTotalPixels); at most 2.25 (1536x1536). Kontext is trained at about 1.",
                ),
                io.Int.Input(
                    "long_side",
                    default=geometry.LOCK_DEFAULTS["long_side"],
                    min=geometry.MIN_LONG_SIDE,
                    max=3072,
                    step=16,
                    tooltip="Target long side in pixels when size_by is 'long side' (rounded to 16; the area is still capped to 1536x1536).",
                ),
                io.Int.Input(
                    "custom_width",
                    default=geometry.LOCK_DEFAULTS["custom_width"],
                    min=1,
                    max=100,
                    tooltip="Width part of the 'custom W:H' ratio.",
                ),
                io.Int.Input(
                    "custom_height",
                    default=geometry.LOCK_DEFAULTS["custom_height"],
                    min=1,
                    max=100,
                    tooltip="Height part of the 'custom W:H' ratio.",
                ),
                io.Combo.Input(
                    "pad_mode",
                    options=list(geometry.PAD_MODES),
                    default=geometry.LOCK_DEFAULTS["pad_mode"],
                    tooltip="How padding is filled when fit is 'pad': repeat the edge pixels, mirror the picture, or a flat colour.",
                ),
                io.String.Input(
                    "pad_color",
                    default=geometry.LOCK_DEFAULTS["pad_color"],
                    tooltip="Padding colour for pad_mode 'color': #rrggbb (or #rrggbbaa for RGBA images) or r,g,b in 0..255.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "resized_image",
                    display_name="image",
                    tooltip="The resized image, ready for VAE Encode / ReferenceLatent.",
                ),
                io.Int.Output("width", display_name="width", tooltip="Width of the resized image (a multiple of 16)."),
                io.Int.Output(
                    "height", display_name="height", tooltip="Height of the resized image (a multiple of 16)."
                ),
                io.Mask.Output(
                    "padding_mask",
                    display_name="padding_mask",
                    tooltip="1 where padding was added, 0 on the picture (all 0 unless fit is 'pad'). Use it to inpaint or ignore the padding.",
                ),
                KontextGeometry.Output(
                    "geometry",
                    display_name="geometry",
                    tooltip="What was done to the image; connect it to Kontext Restore Size (or the diff-merge) to get the original size back.",
                ),
                io.Latent.Output(
                    "latent",
                    display_name="latent",
                    tooltip="An empty latent of the target size, one per image: 16 channels at 1/8 (FLUX.1 Kontext, "
                    "Qwen-Image), or 128 at 1/16 for the FLUX.2 size. Feed it to the sampler so the output has this "
                    "image's shape.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        image,
        size,
        fit,
        anchor,
        size_by,
        megapixels,
        long_side,
        custom_width,
        custom_height,
        pad_mode,
        pad_color,
    ) -> io.NodeOutput:
        color = geometry.parse_color(pad_color, LOCK_NAME) if pad_mode == "color" else (0.0, 0.0, 0.0)
        out, mask, geo = geometry.lock(
            image,
            _mode(size, custom_width, custom_height),
            fit=fit,
            anchor=anchor,
            size_by=SIZE_BY_OPTIONS.get(size_by, size_by),
            megapixels=megapixels,
            long_side=long_side,
            pad_mode=pad_mode,
            pad_color=color,
            who=LOCK_NAME,
        )
        fam = model_families.FLUX2 if size == SIZE_FLUX2 else model_families.KONTEXT
        lw, lh = geometry.latent_size(geo, fam.downscale)
        latent = torch.zeros((image.shape[0], fam.latent_channels, lh, lw), dtype=torch.float32)
        return io.NodeOutput(out, geo.target_width, geo.target_height, mask, geo, {"samples": latent})


class AtelierRestoreSize(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierRestoreSize",
            display_name=RESTORE_NAME,
            category=CATEGORY,
            description=(
                "Put an edited image back at the original's exact pixel size and placement using the geometry from "
                "Kontext Aspect-Ratio Lock: removes the padding, resamples back, and re-inserts the cropped margins "
                "from the original, bit for bit."
            ),
            inputs=[
                io.Image.Input("edited", tooltip="The edited image (VAE Decode output) at the locked target size."),
                KontextGeometry.Input(
                    "geometry", tooltip="The geometry output of the Kontext Aspect-Ratio Lock that prepared this edit."
                ),
                io.Image.Input(
                    "original",
                    optional=True,
                    tooltip="The image that went into the Aspect-Ratio Lock. Needed when it cropped (the margins come from here); always checked against the geometry.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "image", display_name="image", tooltip="The edit at the original's exact width and height."
                ),
                io.Mask.Output(
                    "edit_region",
                    display_name="edit_region",
                    tooltip="1 where pixels come from the edit, 0 on margins copied from the original (all 1 unless the lock cropped).",
                ),
            ],
        )

    @classmethod
    def execute(cls, edited, geometry, original=None) -> io.NodeOutput:
        # The input is named "geometry" (the socket name users see), which hides the module inside this method.
        return _restore(edited, geometry, original)


def _restore(edited, geo, original) -> io.NodeOutput:
    geo = geometry.Geometry.coerce(geo, RESTORE_NAME)
    restored = geometry.restore(edited, geo, original, who=RESTORE_NAME)
    return io.NodeOutput(restored, geometry.region_mask(geo, restored.shape[0]))


NODES = [AtelierAspectLock, AtelierRestoreSize]
