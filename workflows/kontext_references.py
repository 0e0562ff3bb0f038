"""The Kontext workflows with more than one picture: weighted references (Context Stitcher) and style transfer."""

from __future__ import annotations

from atelier_core.model_catalog import CLIP_L, FLUX_VAE, T5_FP8
from workflows import kontext_parts as p
from workflows.spec import GUIDANCE, Node, Workflow, link

# Two references (the edited image and one more) sized to share 6144 tokens: 4096 latent + 6144 reference tokens
# per step, under the 8192 reference tokens the stitcher flags, for the 8-12 GB cards the README targets. Four 1 MP
# references (bucket) would be 16,384.
REFERENCE_SIZING, REFERENCE_BUDGET = "token budget", 6144


def stitcher_inputs(references: list[int], position_method: str = "offset", **settings) -> dict:
    """image_1 from the aspect lock (6), image_2.. from ``references``; every weight 1."""
    inputs = {
        "model": link(1),
        "conditioning": link(5),
        "vae": link(3),
        "position_method": position_method,
        "sizing": REFERENCE_SIZING,
        "fit": "crop",
        "token_budget": REFERENCE_BUDGET,
        "image_1": link(6),
        "weight_1": 1.0,
        **settings,
    }
    for slot, source in enumerate(references, start=2):
        inputs[f"image_{slot}"] = link(source)
    inputs.update({f"weight_{i}": 1.0 for i in range(2, 9)})
    return inputs


def multi_reference(name: str, model: dict, kind: str) -> Workflow:
    nodes = [
        *p.loaders(model),
        p.image(),
        p.prompt(
            "dress the knight from image 1 in the cloak from image 2; keep the pose, the face and everything else "
            "the same"
        ),
        p.lock(),
        Node(8, "AtelierContextStitcher", stitcher_inputs([22]), title="Context stitcher"),
        *p.sampling(link(8, 1), link(8, 0), link(6, 5)),
        p.restore(),
        p.save(14, link(13), f"kontext-atelier/multi_{kind}"),
        p.image(22, "Reference 2"),
    ]
    what = (
        f"## Kontext edit with several pictures ({kind.upper()})\n"
        "**Image** is the picture being edited (image 1); **Reference 2** is what the edit may draw from (both "
        "start as ComfyUI's example picture: load your own). Refer to them in the prompt as image 1, image 2.\n\n"
        "**More references** (up to 8): add a Load Image and connect it to the stitcher's next free `image_N` "
        "(the stitcher shows one free input at a time). `weight_N` sets how much the edit attends to each "
        "(1 = as core ReferenceLatent, 0 = left out, up to 2).\n\n"
        f"**Memory**: `sizing` is `{REFERENCE_SIZING}` with {REFERENCE_BUDGET} tokens shared by all references "
        "(the stitcher shows the count live; it turns pink past 8192). Each 1 MP reference at `bucket` costs "
        "4096 tokens per step: raise the budget only on a 16 GB+ card."
    )
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        f"Kontext multi-reference edit ({kind.upper()})",
        f"the image plus a weighted reference (context stitcher, token budget) on {kind.upper()}",
        nodes,
        [p.note(name, what, models)],
        models,
        p.kontext_groups([1, 2, 3], [4, 22], [[5, 6]], [[8], [9, 10], [11], [12]], [[13], [14]]),
        thumbnail="references",
    )


def _builder_inputs() -> dict:
    return {
        "mode": "edit",
        "template": "style reference",
        "subject": "fantasy knight",
        "custom_subject": "",
        "scale": "(none)",
        "material": "(none)",
        "technique": "(none)",
        "light_direction": "(none)",
        "light_temperature": "(none)",
        "light_quality": "(none)",
        "camera": "(none)",
        "focal_length": "(none)",
        "aperture": "(none)",
        "depth_of_field": "(none)",
        "backdrop": "(none)",
        "base": "(none)",
        "part": "",
        "change_to": "",
        "text": "",
        "reference": 2,
        "keep": "identity and pose",
        "extra": "",
        "guidance": GUIDANCE,
        "variants": 1,
        "vary": "lighting",
        "seed": 0,
    }


def style_transfer(name: str, model: dict) -> Workflow:
    prompt = p.prompt(None)
    prompt.inputs["text"] = link(16)
    nodes = [
        *p.loaders(model),
        p.image(),
        Node(16, "AtelierMiniaturePrompt", _builder_inputs(), title="Style prompt"),
        prompt,
        p.lock(),
        Node(8, "AtelierContextStitcher", stitcher_inputs([22]), title="Context stitcher"),
        *p.sampling(link(8, 1), link(8, 0), link(6, 5)),
        p.restore(),
        p.save(14, link(13), "kontext-atelier/style"),
        p.image(22, "Reference 2"),
    ]
    what = (
        "## Style transfer from a reference\n"
        "**Image** is the miniature to repaint; **Reference 2** is the picture whose style to copy (palette, "
        "contrast, brushwork). **Style prompt** (Miniature Prompt Builder, *style reference* template) writes the "
        "instruction and shows it; pick a `technique` to name it (e.g. glazing, NMM) or change `subject`. To "
        "write your own prompt, delete the link into **Prompt** and type in its text box.\n\n"
        "**Context stitcher** `weight_2` sets how strongly the reference counts (1.3-1.6 for a stronger style, "
        "below 1 for a hint); `keep` on the builder decides what the prompt protects (identity and pose)."
    )
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        "Kontext style transfer",
        "repaint in the style of a reference image (prompt builder's style-reference template, stitcher)",
        nodes,
        [p.note(name, what, models)],
        models,
        p.kontext_groups([1, 2, 3], [4, 22], [[16], [5, 6]], [[8], [9, 10], [11], [12]], [[13], [14]]),
        thumbnail="style",
    )
