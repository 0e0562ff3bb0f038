"""The editing models the pack serves, and what each needs: latent format, reference method, preferred sizes.

ComfyUI-free. The stitcher recognises a model by the ``image_model`` of its ``unet_config`` (what ComfyUI's
``comfy/model_detection.py`` sets from the state-dict keys): ``"flux"`` is FLUX.1 (Kontext), ``"flux2"`` FLUX.2,
``"qwen_image"`` Qwen-Image (and -Edit). Restore Size and the diff-merge never need this: they work on pixels.

Sizes. Kontext: its 17 published ~1 MP sizes (``geometry.KONTEXT_RESOLUTIONS``). Qwen-Image: the seven sizes of the
Qwen-Image README's "Generate with different aspect ratios" example (QwenLM/Qwen-Image, README.md; the 4:3 entry
as corrected there to 1472x1104, a multiple of 16); Qwen-Image-Edit resizes its inputs to about 1 MP
(diffusers' QwenImageEditPipeline ``calculate_dimensions(1024 * 1024, ratio)``; ComfyUI's
``TextEncodeQwenImageEditPlus`` scales the VAE reference to 1024 * 1024 pixels), which these sizes bracket.
FLUX.2 has no fixed list: BFL's FLUX.2 API documentation (docs.bfl.ml, flux_2) asks for multiples of 16, at least
64 px, at most 4 MP, 1024x1024 by default, so its preferred size is the image's own ratio at 1 MP in multiples of
16 (``geometry.target_for_ratio``).
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import AtelierError

Size = tuple[int, int]

# Qwen-Image README, "Generate with different aspect ratios" (width, height): 1:1, 16:9, 9:16, 4:3, 3:4, 3:2, 2:3.
QWEN_IMAGE_RESOLUTIONS: tuple[Size, ...] = (
    (928, 1664),
    (1056, 1584),
    (1104, 1472),
    (1328, 1328),
    (1472, 1104),
    (1584, 1056),
    (1664, 928),
)


@dataclass(frozen=True)
class ModelFamily:
    """One editing model family as the pack's nodes see it."""

    key: str  # ComfyUI's unet_config["image_model"]
    name: str
    latent_channels: int  # of the VAE latent the model samples (what the stitcher's VAE must produce)
    downscale: int  # pixels per latent cell
    default_method: str  # the reference position method the model was trained with
    size_mode: str  # the geometry mode of its preferred sizes ("kontext", "flux2", "qwen")
    stitcher: bool  # whether the Context Stitcher can attach references for it
    instead: str = ""  # what to use when the stitcher cannot


KONTEXT = ModelFamily("flux", "FLUX.1 Kontext", 16, 8, "offset", "kontext", True)
FLUX2 = ModelFamily("flux2", "FLUX.2", 128, 16, "index", "flux2", True)
QWEN_IMAGE = ModelFamily(
    "qwen_image",
    "Qwen-Image-Edit",
    16,
    8,
    "index",
    "qwen",
    False,
    "Qwen-Image-Edit takes its references through its text encoder: connect the images to core "
    "TextEncodeQwenImageEditPlus (image1..image3, with the VAE) instead, and keep the Aspect-Ratio Lock, Restore "
    "Size and diff-merge around it",
)
FAMILIES: dict[str, ModelFamily] = {f.key: f for f in (KONTEXT, FLUX2, QWEN_IMAGE)}


def family(image_model: str | None) -> ModelFamily | None:
    """The family of a ComfyUI ``image_model`` name, or None for a model the pack does not know."""
    return FAMILIES.get(str(image_model)) if image_model is not None else None


def stitcher_family(image_model: str | None, who: str) -> ModelFamily:
    """The family the stitcher serves for this model; a clear error naming the model otherwise."""
    found = family(image_model)
    if found is None:
        supported = ", ".join(f.name for f in FAMILIES.values() if f.stitcher)
        raise AtelierError(
            f"{who}: the connected model is a {image_model!r} model, which this node does not support (it serves "
            f"{supported}). Use core ReferenceLatent or that model's own reference node instead."
        )
    if not found.stitcher:
        raise AtelierError(
            f"{who}: the connected model is {found.name}, which this node does not serve. {found.instead}."
        )
    return found


def check_latent_channels(fam: ModelFamily, channels: int | None, who: str) -> None:
    """Refuse a VAE whose latent does not match the model (a FLUX.1 VAE on FLUX.2 or the other way round)."""
    if channels is None or channels == fam.latent_channels:
        return
    raise AtelierError(
        f"{who}: the VAE makes {channels}-channel latents but {fam.name} samples {fam.latent_channels}-channel ones. "
        f"Connect {fam.name}'s own VAE ({'flux2-vae' if fam is FLUX2 else 'ae.safetensors'} for FLUX)."
    )
