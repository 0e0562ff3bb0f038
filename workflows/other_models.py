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

from types import ModuleType

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

# ``b`` below is workflows/build.py itself (passed in by its ``all_workflows``, so this module never imports it
# back): its Node/Note/Workflow spec classes and the helpers the Kontext workflows share.

NEEDS_CORE = "0.3.75"

# FLUX.2 [dev]'s defaults (ComfyUI's FLUX.2 template, BFL): distilled guidance 4 in FluxGuidance, cfg 1. Qwen-Image-
# Edit's (ComfyUI's template): true cfg 2.5 with an empty-prompt negative, the AuraFlow shift of 3.
FLUX2_STEPS, FLUX2_GUIDANCE = 28, 4.0
QWEN_STEPS, QWEN_CFG, QWEN_SHIFT = 20, 2.5, 3.0
# FLUX.2 [klein] 4B is step-distilled (BFL: 4 steps, guidance 1) and has no guidance embedding, so no FluxGuidance:
# cfg 1 with a zeroed negative. The first release the tests load it on (the tiny klein-shaped model) is 0.10.0.
KLEIN_STEPS, KLEIN_NEEDS_CORE = 4, "0.10.0"
LOCK = {
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


def _loaders(b: ModuleType, model: dict, text: dict, clip_type: str, vae: dict) -> list:
    return [
        b.Node(
            1,
            "UNETLoader",
            {"unet_name": model["name"], "weight_dtype": "default"},
            title="Model",
            pos=(-420, 0),
            models=[model],
        ),
        b.Node(
            2,
            "CLIPLoader",
            {"clip_name": text["name"], "type": clip_type, "device": "default"},
            title="Text encoder",
            pos=(-420, 180),
            models=[text],
        ),
        b.Node(3, "VAELoader", {"vae_name": vae["name"]}, title="VAE", pos=(-420, 360), models=[vae]),
    ]


def _lock(b: ModuleType, size: str) -> object:
    return b.Node(
        6, "AtelierAspectLock", {"image": b._link(4), "size": size, **LOCK}, title="Aspect lock", pos=(0, 480)
    )


def _finish(b: ModuleType, name: str, decoded: list) -> list:
    """Restore size -> diff-merge into the original -> save (and the changed regions)."""
    return [
        b.Node(
            13,
            "AtelierRestoreSize",
            {"edited": decoded, "geometry": b._link(6, 4), "original": b._link(4)},
            title="Restore size",
            pos=(1080, 320),
        ),
        b.Node(15, "AtelierDiffMerge", b._merge_inputs(edited=b._link(13)), title="Diff-merge", pos=(1400, 320)),
        b._save(16, b._link(15), f"kontext-atelier/{name}", pos=(1720, 0)),
        b.Node(17, "PreviewImage", {"images": b._link(15, 3)}, title="Changed regions", pos=(1720, 400)),
    ]


def _sampler(
    b: ModuleType, model: list, positive: list, negative: list, latent: list, steps: int, cfg: float
) -> object:
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
        pos=(740, 0),
    )


def _note(b: ModuleType, what: str, models: list[dict], name: str, needs: str = NEEDS_CORE) -> object:
    listed = "\n".join(f"- `models/{m['directory']}/`: `{m['name']}`" for m in models)
    text = (
        f"{what}\n\n**Models** (download links are in each loader's properties; ComfyUI offers them when "
        f"missing):\n{listed}\n\n**Needs ComfyUI {needs} or later** (core's loaders for this model).\n\n"
        "**Restore size + diff-merge**: the edit comes back at your photo's exact size, and only what the edit "
        "really changed is taken from it; every other pixel is your original's, bit for bit. *Changed regions* "
        "shows what was taken in red; raise `threshold` if too much is taken.\n\n"
        f"**Command line**: `workflows/api/{name}.api.json`; "
        f'`kontext-atelier run {name} --image in.png --prompt "..." --server http://127.0.0.1:8188`.'
    )
    return b.Note("Read me", text, (-900, 0), (440, 460))


def _flux2_stitcher(b: ModuleType, more_images: dict) -> dict:
    """The Context Stitcher's inputs in the FLUX.2 workflows: image 1 is the locked picture, every weight 1."""
    inputs = {
        "model": b._link(1),
        "conditioning": b._link(5),
        "vae": b._link(3),
        "position_method": "auto",
        "sizing": "bucket",
        "fit": "crop",
        "token_budget": 4096,
        "image_1": b._link(6),
        "weight_1": 1.0,
        **more_images,
    }
    inputs.update({f"weight_{i}": 1.0 for i in range(2, 9)})
    return inputs


def flux2_multi_reference(b: ModuleType, name: str) -> object:
    refs = [
        b.Node(20 + i, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title=f"Reference {i}", pos=(-420, 700 + 170 * (i - 2)))
        for i in (2, 3)
    ]
    stitcher = _flux2_stitcher(b, {"image_2": b._link(22), "image_3": b._link(23)})
    nodes = [
        *_loaders(b, FLUX2_MODEL, FLUX2_TEXT, "flux2", FLUX2_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image", pos=(-420, 500)),
        b.Node(
            5,
            "CLIPTextEncode",
            {
                "text": "dress the knight from image 1 in the cloak from image 2, in the colours of image 3; keep the pose, "
                "the face and everything else the same",
                "clip": b._link(2),
            },
            title="Prompt",
            pos=(0, 0),
            color="#232",
            bgcolor="#353",
        ),
        _lock(b, "FLUX.2 (input ratio, 128-ch latent)"),
        b.Node(8, "AtelierContextStitcher", stitcher, title="Context stitcher", pos=(420, 260)),
        b.Node(
            9,
            "FluxGuidance",
            {"conditioning": b._link(8, 1), "guidance": FLUX2_GUIDANCE},
            title="Guidance",
            pos=(420, 0),
        ),
        b.Node(10, "ConditioningZeroOut", {"conditioning": b._link(5)}, title="Negative (zero)", pos=(420, 140)),
        _sampler(b, b._link(8, 0), b._link(9), b._link(10), b._link(6, 5), FLUX2_STEPS, 1.0),
        b.Node(12, "VAEDecode", {"samples": b._link(11), "vae": b._link(3)}, title="VAE decode", pos=(740, 320)),
        *_finish(b, name, b._link(12)),
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
        [_note(b, what, [FLUX2_MODEL, FLUX2_TEXT, FLUX2_VAE], name)],
        [FLUX2_MODEL, FLUX2_TEXT, FLUX2_VAE],
    )


def flux2_klein_edit(b: ModuleType, name: str) -> object:
    stitcher = _flux2_stitcher(b, {})
    nodes = [
        *_loaders(b, FLUX2_KLEIN_MODEL, FLUX2_KLEIN_TEXT, "flux2", FLUX2_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image", pos=(-420, 500)),
        b.Node(
            5,
            "CLIPTextEncode",
            {"text": "change the knight's cloak to deep red, keep everything else the same", "clip": b._link(2)},
            title="Prompt",
            pos=(0, 0),
            color="#232",
            bgcolor="#353",
        ),
        _lock(b, "FLUX.2 (input ratio, 128-ch latent)"),
        b.Node(8, "AtelierContextStitcher", stitcher, title="Context stitcher", pos=(420, 260)),
        b.Node(10, "ConditioningZeroOut", {"conditioning": b._link(5)}, title="Negative (zero)", pos=(420, 140)),
        _sampler(b, b._link(8, 0), b._link(8, 1), b._link(10), b._link(6, 5), KLEIN_STEPS, 1.0),
        b.Node(12, "VAEDecode", {"samples": b._link(11), "vae": b._link(3)}, title="VAE decode", pos=(740, 320)),
        *_finish(b, name, b._link(12)),
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
        [_note(b, what, models, name, KLEIN_NEEDS_CORE)],
        models,
    )


def qwen_image_edit(b: ModuleType, name: str) -> object:
    encode = {"clip": b._link(2), "vae": b._link(3), "image1": b._link(6)}
    nodes = [
        *_loaders(b, QWEN_EDIT_MODEL, QWEN_TEXT, "qwen_image", QWEN_VAE),
        b.Node(4, "LoadImage", {"image": b.EXAMPLE_IMAGE}, title="Image", pos=(-420, 500)),
        b.Node(
            5,
            "TextEncodeQwenImageEditPlus",
            {"prompt": "change the knight's cloak to deep red, keep everything else the same", **encode},
            title="Prompt",
            pos=(0, 0),
            color="#232",
            bgcolor="#353",
        ),
        _lock(b, "Qwen-Image preferred (7 sizes)"),
        b.Node(7, "ModelSamplingAuraFlow", {"model": b._link(1), "shift": QWEN_SHIFT}, title="Shift", pos=(0, 300)),
        b.Node(10, "TextEncodeQwenImageEditPlus", {"prompt": "", **encode}, title="Negative", pos=(420, 140)),
        _sampler(b, b._link(7), b._link(5), b._link(10), b._link(6, 5), QWEN_STEPS, QWEN_CFG),
        b.Node(12, "VAEDecode", {"samples": b._link(11), "vae": b._link(3)}, title="VAE decode", pos=(740, 320)),
        *_finish(b, name, b._link(12)),
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
        [_note(b, what, [QWEN_EDIT_MODEL, QWEN_TEXT, QWEN_VAE], name)],
        [QWEN_EDIT_MODEL, QWEN_TEXT, QWEN_VAE],
    )


def workflows(b: ModuleType) -> list:
    return [
        flux2_multi_reference(b, "flux2_multi_reference_edit"),
        flux2_klein_edit(b, "flux2_klein_edit"),
        qwen_image_edit(b, "qwen_image_edit"),
    ]
