"""Kontext Diff-Merge: a thin V3 adapter over ``atelier_core.image.diffmerge``."""

from __future__ import annotations

import numpy as np
import torch
from comfy_api.latest import io, ui

from ..atelier_core.image import diffmerge, geometry
from .types import KontextGeometry

NAME = "Kontext Diff-Merge"
CATEGORY = "Kontext Atelier/Merge"
_DEFAULTS = diffmerge.MergeOptions()


class AtelierDiffMerge(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierDiffMerge",
            display_name=NAME,
            category=CATEGORY,
            description=(
                "Keep exactly what a Kontext edit changed and nothing else. The edit is aligned to the original "
                "(global shift/scale, sub-pixel) and its global colour drift compensated; the changed regions are "
                "found with a float CIELAB ΔE, cleaned up, and blended into the original with a Poisson, "
                "multi-band or alpha blend. Every pixel outside the soft mask is the original's, bit for bit. "
                "Connect the aspect-lock geometry to merge at the original's full resolution."
            ),
            inputs=[
                io.Image.Input("original", tooltip="The image before editing (a batch of one is used for every edit)."),
                io.Image.Input(
                    "edited",
                    tooltip="The Kontext output. Another size is resized (another aspect is treated as a centre "
                    "crop) unless the geometry is connected, which restores it exactly.",
                ),
                io.Float.Input(
                    "threshold",
                    default=_DEFAULTS.threshold,
                    min=0.5,
                    max=100.0,
                    step=0.5,
                    tooltip="ΔE above which a pixel counts as changed (about 2 = just noticeable, 6 = clearly "
                    "different). Ignored when auto threshold is on.",
                ),
                io.Combo.Input(
                    "formula",
                    options=["ciede2000", "cie76"],
                    default=_DEFAULTS.formula,
                    tooltip="Colour difference formula: CIEDE2000 (perceptual, default) or CIE76 (Euclidean Lab).",
                ),
                io.Boolean.Input(
                    "auto_threshold",
                    default=_DEFAULTS.auto_threshold,
                    tooltip="Pick the threshold from the ΔE histogram (Otsu, never below the noise level).",
                ),
                io.Int.Input(
                    "min_area",
                    default=_DEFAULTS.min_area,
                    min=0,
                    max=1_000_000,
                    tooltip="Changed regions smaller than this many pixels (original resolution) are ignored.",
                ),
                io.Int.Input(
                    "grow",
                    default=_DEFAULTS.grow,
                    min=-256,
                    max=256,
                    tooltip="Grow the detected mask by this many pixels (negative shrinks it). The band changed around an edit "
                    "is about grow + feather + 2 px: 8 px with the defaults.",
                ),
                io.Int.Input(
                    "feather",
                    default=_DEFAULTS.feather,
                    min=0,
                    max=512,
                    tooltip="Width in pixels of the soft edge outside the hard mask (0 = hard edge). For soft edits (smoke, "
                    "hair, shadows) grow 4 and feather 12 hide the seam better, changing up to 20 px around the edit.",
                ),
                io.Combo.Input(
                    "blend",
                    options=list(diffmerge.BLEND_MODES),
                    default=_DEFAULTS.blend,
                    tooltip="poisson: seamless gradient-domain blend (matches colours at the edge); multiband: "
                    "Laplacian pyramid blend; alpha: plain mix by the soft mask.",
                ),
                io.Boolean.Input(
                    "align",
                    default=_DEFAULTS.align,
                    tooltip="Estimate and undo a global shift/scale of the edit before comparing.",
                ),
                io.Boolean.Input(
                    "match_color",
                    default=_DEFAULTS.match_color,
                    tooltip="Compensate a global colour/exposure drift of the edit before comparing.",
                ),
                io.Mask.Input(
                    "mask",
                    optional=True,
                    tooltip="Optional mask of your own, combined with the detected one as set by mask_mode.",
                ),
                io.Combo.Input(
                    "mask_mode",
                    options=list(diffmerge.USER_MASK_MODES),
                    default=_DEFAULTS.user_mask_mode,
                    tooltip="add: also take these areas from the edit; subtract: never take them; replace: use "
                    "only your mask.",
                ),
                KontextGeometry.Input(
                    "geometry",
                    optional=True,
                    tooltip="Geometry from Kontext Aspect-Ratio Lock: the edit is restored to the original's exact "
                    "size and placement before merging.",
                ),
                io.Boolean.Input(
                    "force_merge",
                    default=_DEFAULTS.force_merge,
                    optional=True,
                    force_input=True,
                    tooltip="Connect a true boolean to merge even a global edit (most of the frame changed, or "
                    "another scene) or a reframed one (the model moved or zoomed the picture). Unconnected, those "
                    "return the edit itself at the original's size, and the report says why.",
                ),
            ],
            outputs=[
                io.Image.Output(
                    "merged",
                    display_name="merged",
                    tooltip="The original with only the changed regions taken from the edit.",
                ),
                io.Mask.Output(
                    "hard_mask",
                    display_name="hard_mask",
                    tooltip="1 where the edit changed the image (after clean-up and grow).",
                ),
                io.Mask.Output(
                    "soft_mask",
                    display_name="soft_mask",
                    tooltip="The feathered blend weight; 0 means the pixel is the original's, bit for bit.",
                ),
                io.Image.Output(
                    "preview",
                    display_name="preview",
                    tooltip="The merged image with the changed regions tinted red and outlined; a global or "
                    "reframed edit is shown framed, with a line naming its kind.",
                ),
                io.String.Output(
                    "report",
                    display_name="report",
                    tooltip="The edit's kind (local, global or reframed, and why), shift found, threshold used, "
                    "changed area and blend details.",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        original,
        edited,
        threshold,
        formula,
        auto_threshold,
        min_area,
        grow,
        feather,
        blend,
        align,
        match_color,
        mask_mode,
        mask=None,
        geometry=None,
        force_merge=False,
    ) -> io.NodeOutput:
        return _merge(
            cls,
            original,
            edited,
            threshold,
            formula,
            auto_threshold,
            min_area,
            grow,
            feather,
            blend,
            align,
            match_color,
            mask_mode,
            mask,
            geometry,
            force_merge,
        )


def _merge(
    cls,
    original,
    edited,
    threshold,
    formula,
    auto_threshold,
    min_area,
    grow,
    feather,
    blend,
    align,
    match_color,
    mask_mode,
    mask,
    geo,
    force_merge=False,
) -> io.NodeOutput:
    if geo is not None:
        geo = geometry.Geometry.coerce(geo, NAME)
        edited = geometry.restore(edited, geo, original, who=NAME)
    opts = diffmerge.MergeOptions(
        threshold=float(threshold),
        formula=formula,
        auto_threshold=bool(auto_threshold),
        min_area=int(min_area),
        grow=int(grow),
        feather=int(feather),
        blend=blend,
        align=bool(align),
        match_color=bool(match_color),
        user_mask_mode=mask_mode,
        force_merge=bool(force_merge),
    )
    device, dtype = original.device, original.dtype
    masks = mask.detach().cpu().float().numpy() if mask is not None else None
    if masks is not None and masks.ndim == 2:
        masks = masks[None]
    results = diffmerge.diff_merge_batch(
        original.detach().cpu().float().numpy(), edited.detach().cpu().float().numpy(), opts, masks
    )

    def stack(arrays):
        return torch.from_numpy(np.stack(arrays)).to(device=device, dtype=dtype)

    merged = stack([r.merged for r in results])
    hard = stack([r.hard_mask for r in results])
    soft = stack([r.soft_mask for r in results])
    preview = stack([r.preview for r in results])
    report = "\n\n".join(
        (f"[{i}] " if len(results) > 1 else "") + diffmerge.format_report(r.report) for i, r in enumerate(results)
    )
    return io.NodeOutput(merged, hard, soft, preview, report, ui=ui.PreviewImage(preview, cls=cls))


NODES = [AtelierDiffMerge]
