"""The one-image Kontext edits: plain (GGUF, FP8, GGUF T5), diff-merged, masked, outpainted, and the 8-step LoRA."""

from __future__ import annotations

from atelier_core.model_catalog import CLIP_L, FLUX_VAE, HYPER_LORA, T5_FP8
from workflows import kontext_parts as p
from workflows.spec import STEPS, TURBO_STEPS, TURBO_STRENGTH, Node, Workflow, link


def _edit_core(text: str, model: dict, t5: dict = T5_FP8) -> list[Node]:
    return [
        *p.loaders(model, t5=t5),
        p.image(),
        p.prompt(text),
        p.lock(),
        *p.vae_bus(),
        *p.sampling(link(8), link(1), link(6, 5), vae_from=link(p.VAE_BUS)),
    ]


def single_reference(name: str, model: dict, kind: str, t5: dict = T5_FP8) -> Workflow:
    gguf_t5 = t5["name"].endswith(".gguf")
    label = kind.upper() + (" + GGUF T5" if gguf_t5 else "")
    nodes = [
        *_edit_core("change the knight's cloak to deep red, keep everything else the same", model, t5),
        p.restore(),
        p.save(14, link(13), f"kontext-atelier/edit_{kind}{'_t5gguf' if gguf_t5 else ''}"),
    ]
    what = (
        f"## Kontext edit, one image ({label})\n"
        "1. Load your photo in **Image** and write the instruction in **Prompt** (say what to change and what to keep).\n"
        "2. **Aspect lock** picks the Kontext size nearest your photo's shape (crop is recorded, not lost); "
        "**Restore size** puts the edit back at your photo's exact size.\n"
        "Change `size` to a ratio or `keep input ratio` for other shapes."
        + (
            "\n3. **Text encoders (GGUF T5)** reads the T5-XXL encoder from a GGUF (Q5_K: 3.3 GB instead of 4.8 GB "
            "fp8 or 9.5 GB fp16); any city96 / llama.cpp T5-XXL encoder GGUF works. For low-VRAM cards."
            if gguf_t5
            else ""
        )
    )
    models = [model, CLIP_L, t5, FLUX_VAE]
    return Workflow(
        name,
        f"Kontext edit ({label})",
        f"single-reference edit on {label}, restored to the input's size",
        nodes,
        [p.note(name, what, models)],
        models,
        p.single_groups([[13], [14]]),
    )


def diff_merge(name: str, model: dict) -> Workflow:
    nodes = [
        *_edit_core("paint the shield with a golden lion, keep everything else exactly the same", model),
        Node(13, "AtelierDiffMerge", p.merge_inputs(), title="Diff-merge"),
        p.save(14, link(13), "kontext-atelier/merged"),
        Node(15, "PreviewImage", {"images": link(13, 3)}, title="Changed regions"),
    ]
    what = (
        "## Edit, restore size, diff-merge at full resolution\n"
        "Kontext re-renders the whole picture; **Diff-merge** keeps only what the edit really changed and takes "
        "every other pixel from your original, bit for bit, at the original's full size (the aspect-lock geometry "
        "restores the edit first). Feed the result back in as the next **Image** to edit again without the "
        "picture degrading.\n\n"
        "Too much taken from the edit: raise `threshold` (ΔE, 6 = clearly different). Missing parts: lower it "
        "or raise `grow`. *Changed regions* shows what was taken in red."
    )
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        "Kontext edit + diff-merge",
        "edit -> restore size -> diff-merge at full resolution",
        nodes,
        [p.note(name, what, models)],
        models,
        p.single_groups([[13], [14, 15]], finish_title="Merge and save"),
    )


def masked_edit(name: str, model: dict) -> Workflow:
    nodes = [
        *_edit_core("make the gem on the sword glow bright blue", model),
        Node(
            13,
            "AtelierDiffMerge",
            p.merge_inputs(mask=link(4, 1), mask_mode="replace"),
            title="Masked merge",
        ),
        p.save(14, link(13), "kontext-atelier/masked"),
        Node(15, "PreviewImage", {"images": link(13, 3)}, title="Changed regions"),
    ]
    what = (
        "## Masked edit: only the painted region may change\n"
        "1. Load the photo in **Image**, right-click it, *Open in MaskEditor*, paint the region to change, Save.\n"
        "2. Describe the change in **Prompt**.\n\n"
        "Kontext edits the whole picture; **Masked merge** (`mask_mode` replace) takes the edit only inside your "
        "mask (softened by `feather`) and every other pixel from the original, at full size. With no mask painted "
        "the output equals the input. Set `mask_mode` to `add` to also keep changes found outside the mask."
    )
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        "Kontext masked edit",
        "masked edit: only the region painted in the mask editor changes",
        nodes,
        [p.note(name, what, models)],
        models,
        p.single_groups([[13], [14, 15]], finish_title="Merge and save"),
    )


def outpaint(name: str, model: dict) -> Workflow:
    nodes = [
        *p.loaders(model),
        p.image(),
        p.prompt(
            "extend the scene to the left and right: continue the table and the painted backdrop, keep the "
            "miniature unchanged"
        ),
        p.lock(size="16:9", fit="pad"),
        *p.vae_bus(),
        *p.sampling(link(8), link(1), link(6, 5), vae_from=link(p.VAE_BUS)),
        Node(13, "InvertMask", {"mask": link(6, 3)}, title="Picture area"),
        Node(
            14,
            "ImageCompositeMasked",
            {"destination": link(12), "source": link(6), "x": 0, "y": 0, "resize_source": False, "mask": link(13)},
            title="Keep original pixels",
        ),
        p.save(15, link(14), "kontext-atelier/outpaint"),
    ]
    what = (
        "## Outpaint to a wider ratio\n"
        "**Aspect lock** in `pad` mode places your picture, uncropped, on a 16:9 canvas (`pad_mode` edge gives "
        "Kontext a hint of the colours); Kontext fills the padding; **Keep original pixels** pastes the picture "
        "back over the result, so inside it every pixel is the (resized) input's.\n\n"
        "Other shapes: set `size` to 21:9, 3:2, 9:16 (tall) or `custom W:H`; `anchor` decides where the picture sits."
    )
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        "Kontext outpaint (pad)",
        "outpainting to 16:9: aspect lock pad mode, original pixels kept",
        nodes,
        [p.note(name, what, models)],
        models,
        # The picture-area mask under the VAE encode, beside the lock it reads: the fewest crossings (measured).
        p.single_groups([[14], [15]], under_encode=(13,), finish_title="Paste back and save"),
        thumbnail="outpaint",
    )


def turbo(name: str, model: dict) -> Workflow:
    nodes = [
        *p.loaders(model),
        p.image(),
        p.prompt("change the knight's cloak to deep red, keep everything else the same"),
        p.lock(),
        *p.vae_bus(),
        Node(
            15,
            "LoraLoaderModelOnly",
            {"model": link(1), "lora_name": HYPER_LORA["name"], "strength_model": TURBO_STRENGTH},
            title="Turbo LoRA",
            models=[HYPER_LORA],
        ),
        *p.sampling(link(8), link(15), link(6, 5), steps=TURBO_STEPS, vae_from=link(p.VAE_BUS)),
        p.restore(),
        p.save(14, link(13), "kontext-atelier/turbo"),
    ]
    what = (
        f"## Fast edit: 8-step LoRA ({TURBO_STEPS} steps instead of {STEPS})\n"
        "**Turbo LoRA** loads ByteDance's Hyper-SD 8-step LoRA for FLUX.1-dev "
        f"(`{HYPER_LORA['name']}`, into `models/loras/`) at strength {TURBO_STRENGTH}, as its authors "
        "recommend; the sampler runs 8 steps, about three times faster than the 24-step workflows.\n\n"
        "Fine detail is a little softer than at 24 steps: use it to try prompts, then rerun the keeper without "
        "the LoRA. Alimama's FLUX.1-Turbo-Alpha (`diffusion_pytorch_model.safetensors` from "
        "[alimama-creative/FLUX.1-Turbo-Alpha](https://huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha), "
        "strength 1.0) works the same way."
    )
    models = [model, HYPER_LORA, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        "Kontext fast edit (8-step LoRA)",
        "single-reference edit in 8 steps with the Hyper-SD FLUX LoRA (LoraLoaderModelOnly)",
        nodes,
        [p.note(name, what, models)],
        models,
        # The LoRA beside the model it patches: the fewest crossings (measured).
        p.single_groups([[13], [14]], models=[[1, 2, 3], [15]]),
    )
