"""Shipped workflows for the editing models beside Kontext: FLUX.2 and Qwen-Image-Edit (ComfyUI 0.3.75+).

Both keep what those models do not: the original's size (Aspect-Ratio Lock -> Restore Size) and its unedited
pixels (diff-merge). Their loaders are core's (UNETLoader, CLIPLoader, VAELoader); ComfyUI 0.3.64 has neither
model, so ``workflows/build.py`` renders these only against a ComfyUI whose node list has every type they use.

FLUX.2 [klein] (4B/9B) is not in ComfyUI 0.3.75: it detects every FLUX.2 transformer with FLUX.2 [dev]'s 48 heads
and has no text encoder for klein, so the multi-reference FLUX.2 workflow is built on FLUX.2 [dev] (32B), what 0.3.75
loads. ``flux2_klein_edit`` is klein's own (ComfyUI 0.10.0+: its model detection takes the heads from the width,
and CLIPLoader's flux2 type loads the Qwen3 4B / 8B text encoder, ``comfy.text_encoders.flux.klein_te``).
"""

from __future__ import annotations

from atelier_core.model_catalog import (
    FLUX2_KLEIN_MODEL,
    FLUX2_KLEIN_TEXT,
    FLUX2_MODEL,
    FLUX2_TEXT,
    FLUX2_VAE,
    QWEN_EDIT_MODEL,
    QWEN_TEXT,
    QWEN_VAE,
)
from workflows import kontext_parts as p
from workflows import spec as b
from workflows.kontext_references import stitcher_inputs

NEEDS_CORE = "0.3.75"

# FLUX.2 [dev]'s defaults (ComfyUI's FLUX.2 template, BFL): distilled guidance 4 in FluxGuidance, cfg 1. Qwen-Image-
# Edit's (ComfyUI's template): true cfg 2.5 with an empty-prompt negative, the AuraFlow shift of 3.
FLUX2_STEPS, FLUX2_GUIDANCE = 28, 4.0
QWEN_STEPS, QWEN_CFG, QWEN_SHIFT = 20, 2.5, 3.0
# FLUX.2 [klein] 4B is step-distilled (BFL: 4 steps, guidance 1) and has no guidance embedding, so no FluxGuidance:
# cfg 1 with a zeroed negative. The first release the tests load it on (the tiny klein-shaped model) is 0.10.0.
KLEIN_STEPS, KLEIN_NEEDS_CORE = 4, "0.10.0"


def _loaders(model: dict, text: dict, clip_type: str, vae: dict) -> list:
    return [
        b.Node(
            1,
            "UNETLoader",
            {"unet_name": model["name"], "weight_dtype": "default"},
            title="Model",
            models=[model],
        ),
        b.Node(
            2,
            "CLIPLoader",
            {"clip_name": text["name"], "type": clip_type, "device": "default"},
            title="Text encoder",
            models=[text],
        ),
        b.Node(3, "VAELoader", {"vae_name": vae["name"]}, title="VAE", models=[vae]),
    ]


def _lock(size: str) -> b.Node:
    return p.lock(size=size)


def _finish(name: str, decoded: list) -> list:
    """Restore size -> diff-merge into the original -> save (and the changed regions)."""
    return [
        b.Node(
            13,
            "AtelierRestoreSize",
            {"edited": decoded, "geometry": b.link(6, 4), "original": b.link(4)},
            title="Restore size",
        ),
        b.Node(15, "AtelierDiffMerge", p.merge_inputs(edited=b.link(13)), title="Diff-merge"),
        p.save(16, b.link(15), f"kontext-atelier/{name}"),
        b.Node(17, "PreviewImage", {"images": b.link(15, 3)}, title="Changed regions"),
    ]


def _sampler(model: list, positive: list, negative: list, latent: list, steps: int, cfg: float) -> b.Node:
    return b.Node(
        11,
        "KSampler",
        {
            "model": model,
            "seed": 0,
            "steps": steps,
            "cfg": cfg,
            "sampler_name": b.SAMPLER,
            "scheduler": b.SCHEDULER,
            "positive": positive,
            "negative": negative,
            "latent_image": latent,
            "denoise": 1.0,
        },
        title="Sampler",
    )


def _note(what: str, models: list[dict], name: str, needs: str = NEEDS_CORE) -> b.Note:
    text = (
        f"{what}\n\n**Models**:\n{p.model_lines(models)}\n\n{p.DIALOG}\n\n"
        f"**Needs ComfyUI {needs} or later** (core's loaders for this model).\n\n"
        "**Restore size + diff-merge**: the edit comes back at your photo's exact size, and only what the edit "
        "really changed is taken from it; every other pixel is your original's, bit for bit. *Changed regions* "
        "shows what was taken in red; raise `threshold` if too much is taken.\n\n"
        f"{p.command_line(name)}"
    )
    return b.Note("Read me", text)


def _groups(pictures: list[int], prepare: list[list[int]], edit: list[list[int]]) -> list[b.Group]:
    return p.kontext_groups([1, 2, 3], pictures, prepare, edit, [[13], [15], [16, 17]], "Restore, merge, save")


def flux2_multi_reference(name: str) -> b.Workflow:
    refs = [b.Node(20 + i, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title=f"Reference {i}") for i in (2, 3)]
    stitcher = stitcher_inputs([22, 23], position_method="auto", sizing="bucket", token_budget=4096)
    nodes = [
        *_loaders(FLUX2_MODEL, FLUX2_TEXT, "flux2", FLUX2_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image"),
        b.Node(
            5,
            "CLIPTextEncode",
            {
                "text": "dress the knight from image 1 in the cloak from image 2, in the colours of image 3; keep the pose, "
                "the face and everything else the same",
                "clip": b.link(2),
            },
            title="Prompt",
            color="#232",
            bgcolor="#353",
        ),
        _lock("FLUX.2 (input ratio, 128-ch latent)"),
        b.Node(8, "AtelierContextStitcher", stitcher, title="Context stitcher"),
        b.Node(
            9,
            "FluxGuidance",
            {"conditioning": b.link(8, 1), "guidance": FLUX2_GUIDANCE},
            title="Guidance",
        ),
        b.Node(10, "ConditioningZeroOut", {"conditioning": b.link(5)}, title="Negative (zero)"),
        _sampler(b.link(8, 0), b.link(9), b.link(10), b.link(6, 5), FLUX2_STEPS, 1.0),
        b.Node(12, "VAEDecode", {"samples": b.link(11), "vae": b.link(3)}, title="VAE decode"),
        *_finish(name, b.link(12)),
        *refs,
    ]
    what = (
        "## FLUX.2 multi-reference edit, original size and pixels kept\n"
        "**Image** is the picture being edited (image 1); **Reference 2-3** are what the edit may draw from. The "
        "**Context stitcher** recognises FLUX.2 from its weights: 128-channel FLUX.2 VAE latents, FLUX.2's own "
        "`index` reference positions (`position_method` auto) and 1 MP sizes; `weight_N` sets how much the edit "
        "attends to each (1 = as core ReferenceLatent, 0 = left out, up to 2). Up to 8 references: connect more "
        "LoadImage nodes; bypass an unused one with Ctrl+B.\n\n"
        "Built on FLUX.2 [dev]: ComfyUI 0.3.75 does not load FLUX.2 [klein] (it assumes [dev]'s 48 heads and has "
        "no klein text encoder); on a ComfyUI that does, pick the klein files in the loaders."
    )
    return b.Workflow(
        name,
        "FLUX.2 multi-reference edit",
        "FLUX.2 [dev]: lock -> 3 weighted references -> restore -> diff-merge",
        nodes,
        [_note(what, [FLUX2_MODEL, FLUX2_TEXT, FLUX2_VAE], name)],
        [FLUX2_MODEL, FLUX2_TEXT, FLUX2_VAE],
        _groups([4, 22, 23], [[5, 6]], [[8], [9, 10], [11], [12]]),
        thumbnail="references",
    )


def flux2_klein_edit(name: str) -> b.Workflow:
    stitcher = stitcher_inputs([], position_method="auto", sizing="bucket", token_budget=4096)
    nodes = [
        *_loaders(FLUX2_KLEIN_MODEL, FLUX2_KLEIN_TEXT, "flux2", FLUX2_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image"),
        b.Node(
            5,
            "CLIPTextEncode",
            {"text": "change the knight's cloak to deep red, keep everything else the same", "clip": b.link(2)},
            title="Prompt",
            color="#232",
            bgcolor="#353",
        ),
        _lock("FLUX.2 (input ratio, 128-ch latent)"),
        b.Node(8, "AtelierContextStitcher", stitcher, title="Context stitcher"),
        b.Node(10, "ConditioningZeroOut", {"conditioning": b.link(5)}, title="Negative (zero)"),
        _sampler(b.link(8, 0), b.link(8, 1), b.link(10), b.link(6, 5), KLEIN_STEPS, 1.0),
        b.Node(12, "VAEDecode", {"samples": b.link(11), "vae": b.link(3)}, title="VAE decode"),
        *_finish(name, b.link(12)),
    ]
    what = (
        "## FLUX.2 [klein] edit, original size and pixels kept\n"
        "FLUX.2 [klein] 4B runs on one consumer GPU (about 13 GB in bf16) in 4 steps. **Aspect lock** sizes your "
        "photo at its own ratio (1 MP, multiples of 16) and gives the sampler its 128-channel latent; the **Context "
        "stitcher** recognises FLUX.2 from the weights (FLUX.2 VAE latents, `index` reference positions). klein is "
        "distilled without a guidance input: cfg 1, no FluxGuidance. Restore size and Diff-merge undo the lock and "
        "keep the unedited pixels. [klein] 9B: pick `flux-2-klein-9b` and its Qwen3 8B text encoder "
        "(`qwen_3_8b`) in the loaders, same graph."
    )
    models = [FLUX2_KLEIN_MODEL, FLUX2_KLEIN_TEXT, FLUX2_VAE]
    return b.Workflow(
        name,
        "FLUX.2 [klein] edit",
        "FLUX.2 [klein] 4B: lock -> edit -> restore -> diff-merge",
        nodes,
        [_note(what, models, name, KLEIN_NEEDS_CORE)],
        models,
        _groups([4], [[5, 6]], [[8], [10], [11], [12]]),
    )


def qwen_image_edit(name: str) -> b.Workflow:
    encode = {"clip": b.link(2), "vae": b.link(3), "image1": b.link(6)}
    nodes = [
        *_loaders(QWEN_EDIT_MODEL, QWEN_TEXT, "qwen_image", QWEN_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image"),
        b.Node(
            5,
            "TextEncodeQwenImageEditPlus",
            {"prompt": "change the knight's cloak to deep red, keep everything else the same", **encode},
            title="Prompt",
            color="#232",
            bgcolor="#353",
        ),
        _lock("Qwen-Image preferred (7 sizes)"),
        b.Node(7, "ModelSamplingAuraFlow", {"model": b.link(1), "shift": QWEN_SHIFT}, title="Shift"),
        b.Node(10, "TextEncodeQwenImageEditPlus", {"prompt": "", **encode}, title="Negative"),
        _sampler(b.link(7), b.link(5), b.link(10), b.link(6, 5), QWEN_STEPS, QWEN_CFG),
        b.Node(12, "VAEDecode", {"samples": b.link(11), "vae": b.link(3)}, title="VAE decode"),
        *_finish(name, b.link(12)),
    ]
    what = (
        "## Qwen-Image-Edit edit, original size and pixels kept\n"
        "Qwen-Image-Edit (2509/2511) takes the picture through its own text encoder node (**Prompt**, core's "
        "TextEncodeQwenImageEditPlus, which also VAE-encodes it as the reference), not through the Context "
        "stitcher. **Aspect lock** snaps your photo to the nearest of Qwen-Image's 7 published sizes (crop "
        "recorded), and its latent sizes the sampler; Restore size and Diff-merge undo the lock and keep the "
        "unedited pixels. More references: connect image2/image3 on both encoders."
    )
    return b.Workflow(
        name,
        "Qwen-Image-Edit edit",
        "Qwen-Image-Edit: lock -> edit -> restore -> diff-merge",
        nodes,
        [_note(what, [QWEN_EDIT_MODEL, QWEN_TEXT, QWEN_VAE], name)],
        [QWEN_EDIT_MODEL, QWEN_TEXT, QWEN_VAE],
        _groups([4], [[6], [5, 10]], [[7], [11], [12]]),
    )


def workflows() -> list:
    return [
        flux2_multi_reference("flux2_multi_reference_edit"),
        flux2_klein_edit("flux2_klein_edit"),
        qwen_image_edit("qwen_image_edit"),
    ]
