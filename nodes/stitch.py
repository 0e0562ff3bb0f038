"""Kontext Context Stitcher: one to eight reference images into the conditioning, each sized, encoded once, weighted.

How the weights reach the model (an attention bias from a DIFFUSION_MODEL wrapper on a clone of the MODEL, which
is why the node takes and returns it) and the encode cache are described in ``comfy_glue/reference_weights.py``.
"""

from __future__ import annotations

import logging

import comfy.conds
import node_helpers
import torch
from comfy_api.latest import io, ui

from ..atelier_core.errors import AtelierError
from ..atelier_core.image import geometry, stitch
from ..atelier_core.model import model_families
from ..comfy_glue import reference_weights
from .types import KontextGeometry

log = logging.getLogger(__name__)

NAME = stitch.NODE_NAME
AUTO = "auto"
SIZING_TOOLTIP = (
    "How each reference is sized. bucket: the model's preferred size: for Kontext its nearest of the 17 (~1 MP, like "
    "FluxKontextImageScale), for FLUX.2 the image's own ratio at 1 MP. "
    "token budget: all references share token_budget equally, each at its own ratio (no upscaling). keep: the "
    "image's own size in multiples of 16 (at most 1536x1536 of area)."
)


# -- model -------------------------------------------------------------------------------------------------------------


def model_family(model) -> model_families.ModelFamily:
    """Which model the stitcher serves, from the ``image_model`` ComfyUI detected from the model's weights.

    FLUX.1 Kontext and FLUX.2 are served; any other model is refused with what to use instead. An object that is
    no ComfyUI model at all (a direct call that only checks shapes) is treated as FLUX.1 Kontext, as before.
    """
    config = getattr(getattr(getattr(model, "model", None), "model_config", None), "unet_config", None)
    if not isinstance(config, dict):
        return model_families.KONTEXT
    return model_families.stitcher_family(config.get("image_model"), NAME)


# -- inputs ------------------------------------------------------------------------------------------------------------


def _check_image(slot: int, image) -> torch.Tensor:
    who = f"{NAME}: image_{slot}"
    if not isinstance(image, torch.Tensor) or image.ndim != 4:
        shape = tuple(image.shape) if isinstance(image, torch.Tensor) else type(image).__name__
        raise AtelierError(f"{who} must be an IMAGE batch [batch, height, width, channels]; got {shape}.")
    if image.shape[0] == 0:
        raise AtelierError(f"{who} is an empty batch (0 images). Check the node that feeds it.")
    if image.shape[1] == 0 or image.shape[2] == 0:
        raise AtelierError(
            f"{who} is empty ({image.shape[2]}x{image.shape[1]} pixels). Connect an image with pixels in it."
        )
    if image.shape[-1] not in (1, 3, 4):
        raise AtelierError(f"{who} has {image.shape[-1]} channels; connect an RGB or RGBA image.")
    if not image.is_floating_point():
        raise AtelierError(f"{who} must hold floating-point pixels in 0..1; got {image.dtype}.")
    geometry.check_image_size(image.shape[2], image.shape[1], f"{NAME} (image_{slot})")
    geometry.require_finite(image, NAME, f"image_{slot}")
    return image if image.shape[-1] != 1 else image.expand(-1, -1, -1, 3)


def _batch_size(images: dict[int, torch.Tensor]) -> int:
    sizes = {slot: int(img.shape[0]) for slot, img in images.items()}
    batch = max(sizes.values())
    if any(n not in (1, batch) for n in sizes.values()):
        listed = ", ".join(f"image_{s} has {n}" for s, n in sizes.items())
        raise AtelierError(
            f"{NAME}: reference batches must hold the same number of images (or 1 image, which is shared by the "
            f"whole batch): {listed}. Batch the references consistently or split the run."
        )
    return batch


def _resized(image: torch.Tensor, geo: geometry.Geometry, who: str) -> torch.Tensor:
    """The image at its planned size; untouched (bit for bit) when the plan is the identity."""
    if not (geo.is_cropped or geo.is_padded or geo.needs_resample) and geo.target_size == geo.original_size:
        return image
    return geometry.apply(image, geo, who=who)[0]


def _attach(conditioning, latents: list[torch.Tensor], method: str, spec) -> list:
    """Append ``latents`` as core ReferenceLatent does, set the position method, and extend the weight spec."""
    out = []
    for t in conditioning:
        existing = len(t[1].get("reference_latents", None) or [])
        if existing + len(latents) > stitch.MAX_REFERENCES:
            raise AtelierError(
                f"{NAME}: the conditioning already carries {existing} reference latents; with these {len(latents)} "
                f"that is more than {stitch.MAX_REFERENCES}. Kontext degrades (and the token cost explodes) beyond "
                "that: drop references or stitch some with position_method pixel_stitch."
            )
        d = node_helpers.conditioning_set_values([t], {"reference_latents": latents}, append=True)[0][1]
        d["reference_latents_method"] = method
        if any(spec):
            model_conds = dict(d.get("model_conds", {}))
            previous = model_conds.get(reference_weights.WEIGHTS_KEY)
            earlier = tuple(previous.cond) if previous is not None else ()
            earlier = (earlier + ((),) * existing)[:existing]
            model_conds[reference_weights.WEIGHTS_KEY] = comfy.conds.CONDConstant(earlier + tuple(spec))
            d["model_conds"] = model_conds
        out.append([t[0], d])
    return out


# -- node --------------------------------------------------------------------------------------------------------------


def _slot_inputs() -> list:
    inputs = []
    for slot in range(1, stitch.MAX_REFERENCES + 1):
        first = slot == 1
        inputs.append(
            io.Image.Input(
                f"image_{slot}",
                optional=not first,
                tooltip=(
                    "The first reference, usually the image being edited; its geometry is an output."
                    if first
                    else f"Reference {slot} (optional): another image the edit may draw from."
                ),
            )
        )
        inputs.append(
            io.Float.Input(
                f"weight_{slot}",
                default=1.0,
                optional=not first,
                min=stitch.WEIGHT_MIN,
                max=stitch.WEIGHT_MAX,
                step=0.05,
                tooltip=(
                    f"How strongly the edit attends to reference {slot}: 1 = as core ReferenceLatent, 0 = left out "
                    "(no tokens), up to 2 = twice the attention share. Weights other than 1 need the MODEL output "
                    "on the sampler."
                ),
            )
        )
    return inputs


class AtelierContextStitcher(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierContextStitcher",
            display_name=NAME,
            category="Kontext Atelier/Conditioning",
            description=(
                "Attach one to eight reference images to a FLUX.1 Kontext or FLUX.2 conditioning (the model is "
                "recognised from its weights; Qwen-Image-Edit takes references through its own text encoder node), "
                "the way chained ReferenceLatent "
                "nodes do: each is sized (its own Kontext bucket, a share of a token budget, or kept), VAE-encoded "
                "once (cached across queue items) and given a weight from 0 (left out) to 2. The token count, what "
                "every sampling step pays for the references, is shown on the node. Route the MODEL through this "
                "node: weights other than 1 patch the model's attention; with all weights 1 it passes through "
                "untouched and the result is bit-identical to core ReferenceLatent."
            ),
            inputs=[
                io.Model.Input(
                    "model",
                    tooltip="The FLUX.1 Kontext or FLUX.2 model (it decides the reference method and sizes). Returned "
                    "as is when every weight is 1, else with the reference-weight attention patch; feed the output to "
                    "the sampler.",
                ),
                io.Conditioning.Input(
                    "conditioning", tooltip="The positive conditioning (the edit instruction) to attach references to."
                ),
                io.Vae.Input(
                    "vae",
                    tooltip="The model's VAE that encodes the references: ae.safetensors for Kontext (16 channels), "
                    "the FLUX.2 VAE for FLUX.2 (128 channels).",
                ),
                io.Combo.Input(
                    "position_method",
                    options=[AUTO, *stitch.LAYOUTS],
                    default=AUTO,
                    tooltip=(
                        "How FLUX positions the references. auto: the model's own (offset for Kontext, index for "
                        "FLUX.2). offset: one shared plane laid out like a virtual stitch (Kontext's core default). "
                        "index: one position index per reference. pixel_stitch: all references side by side in one "
                        "image and one latent (what ImageStitch does; for comparison)."
                    ),
                ),
                io.Combo.Input("sizing", options=list(stitch.SIZINGS), default="bucket", tooltip=SIZING_TOOLTIP),
                io.Combo.Input(
                    "fit",
                    options=list(stitch.FITS),
                    default="crop",
                    tooltip=(
                        "When a reference's ratio differs from its target: crop the centre (recorded in the "
                        "geometry), pad with edge pixels, or stretch."
                    ),
                ),
                io.Int.Input(
                    "token_budget",
                    default=4096,
                    min=stitch.MIN_TOKEN_BUDGET,
                    max=stitch.MAX_TOKEN_BUDGET,
                    step=64,
                    tooltip=(
                        "Total reference tokens for 'token budget' sizing (one token = 16x16 pixels; a 1024x1024 "
                        "reference costs 4096). Shared equally by the references with a weight above 0."
                    ),
                ),
                *_slot_inputs(),
            ],
            outputs=[
                io.Model.Output(
                    "model_out",
                    display_name="model",
                    tooltip="The model for the sampler: the input itself, or with the reference-weight patch.",
                ),
                io.Conditioning.Output(
                    "conditioning_out",
                    display_name="conditioning",
                    tooltip="The conditioning with the reference latents (and their weights and position method).",
                ),
                KontextGeometry.Output(
                    "geometry",
                    display_name="geometry",
                    tooltip="How image_1 was sized: connect it to Kontext Restore Size to return the edit to "
                    "image_1's original size.",
                ),
                io.Int.Output(
                    "tokens",
                    display_name="tokens",
                    tooltip="Total attention tokens of the attached references (what each sampling step pays for).",
                ),
            ],
        )

    @classmethod
    def execute(
        cls,
        model,
        conditioning,
        vae,
        position_method: str = AUTO,
        sizing: str = "bucket",
        fit: str = "crop",
        token_budget: int = 4096,
        **references,
    ) -> io.NodeOutput:
        family = model_family(model)
        model_families.check_latent_channels(family, getattr(vae, "latent_channels", None), NAME)
        layout = family.default_method if position_method == AUTO else position_method
        images, weights = _collect(references)
        batch = _batch_size(images)
        slots = sorted(images)
        plan, first = stitch.plan_references(
            [(int(images[s].shape[2]), int(images[s].shape[1])) for s in slots],
            [weights[s] for s in slots],
            sizing=sizing,
            fit=fit,
            token_budget=token_budget,
            layout=layout,
            fingerprints=[geometry.fingerprint(images[s]) for s in slots],
            slots=slots,
            size_mode=family.size_mode,
        )
        pieces = {p.slot: _resized(images[p.slot], p.geometry, f"{NAME} (image_{p.slot})") for p in plan.placements}
        if plan.canvas is not None and plan.placements:
            canvas = torch.cat([pieces[p.slot].expand(batch, -1, -1, -1)[..., :3] for p in plan.placements], dim=2)
            latents = [reference_weights.encode_cached(vae, canvas)]
        else:
            latents = [reference_weights.encode_cached(vae, pieces[p.slot]) for p in plan.placements]
        for latent in latents:  # a VAE that overflows turns good pixels into a NaN reference
            geometry.require_finite(latent, NAME, "the reference latent the VAE made", kind="values")
        method = family.default_method if layout == "pixel_stitch" else layout
        spec = stitch.weight_spec(plan) if plan.placements else ()
        out_conditioning = _attach(conditioning, latents, method, spec) if latents else conditioning
        out_model = reference_weights.patch_model(model) if plan.weighted else model
        summary = plan.describe()
        log.info("%s (%s): %s", NAME, family.name, summary)
        return io.NodeOutput(out_model, out_conditioning, first, plan.tokens, ui=ui.PreviewText(summary))


def _collect(references: dict) -> tuple[dict[int, torch.Tensor], dict[int, float]]:
    images: dict[int, torch.Tensor] = {}
    weights: dict[int, float] = {}
    for name, value in references.items():
        kind, _, number = name.partition("_")
        if kind not in ("image", "weight") or not number.isdigit():
            raise AtelierError(f"{NAME}: unknown input {name!r}.")
        slot = int(number)
        if not 1 <= slot <= stitch.MAX_REFERENCES:
            raise AtelierError(
                f"{NAME}: at most {stitch.MAX_REFERENCES} references (image_1..image_{stitch.MAX_REFERENCES}); "
                f"got {name}. Combine extra references into one image first (or use position_method pixel_stitch)."
            )
        if kind == "image" and value is not None:
            images[slot] = _check_image(slot, value)
        elif kind == "weight" and value is not None:
            weights[slot] = stitch.check_weight(slot, value)
    if 1 not in images:
        raise AtelierError(f"{NAME}: image_1 is required; connect the image being edited there.")
    return images, {s: weights.get(s, 1.0) for s in images}


NODES = [AtelierContextStitcher]
