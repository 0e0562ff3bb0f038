"""Source of the shipped workflows: one spec per workflow, written out in both of ComfyUI's formats.

``workflows/<name>.json`` is the UI format (what the frontend saves and what its template browser lists: ComfyUI
serves every ``*.json`` directly in this folder as a template of the pack); ``workflows/api/<name>.api.json`` is the
API format for ``POST /prompt`` and ``kontext-atelier run``. API files live in a subfolder so the template browser
does not list them as (broken) UI workflows. ``atelier_core/data/workflows/<name>.api.json`` is the same API file
inside the installed package (``kontext-atelier run NAME`` from a wheel). ``workflows/<name>.png`` shows the graph and
carries the workflow (drag it onto the canvas); ``workflows/<name>.jpg`` is the template browser's thumbnail (the
frontend asks for ``<name>.jpg`` beside each template; see ``thumbnails.py``).

Both files come from the same spec, so they cannot drift apart. Widget order, socket names and types come from the
node descriptions ComfyUI itself serves (``/object_info``), passed in by the caller::

    COMFYUI_PATH=~/ComfyUI python workflows/build.py    # rewrites every file above

``tests/test_workflows.py`` renders every spec again and checks it equals the files on disk.

Conventions that ``kontext-atelier run`` relies on (titles are matched without regard to case):
- the ``LoadImage`` titled ``Image`` receives ``--image``; those titled ``Reference 2``, ``Reference 3``... receive
  ``--reference`` in order (unused reference loaders are removed, with the optional inputs they fed);
- the text encoder titled ``Prompt`` receives ``--prompt`` in its ``text`` input;
- the sampler (``KSampler``) titled ``Sampler`` receives ``--seed``;
- ``SaveImage`` nodes write the outputs that are downloaded.
"""

from __future__ import annotations

import json
import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from atelier_core.model_catalog import CLIP_L, FLUX_VAE, FP8_MODEL, GGUF_MODEL, HYPER_LORA, T5_FP8, T5_GGUF

HERE = Path(__file__).resolve().parent
API_DIR = HERE / "api"
# The API files again, inside the installed package, so `kontext-atelier run NAME` finds them from a wheel too.
PACKAGE_DIR = HERE.parent / "atelier_core" / "data" / "workflows"
FRONTEND_VERSION = "1.27.10"  # the frontend ComfyUI 0.3.64 ships (comfyui-frontend-package)
CORE_VERSION = "0.3.64"
PACK_ID = "kontext-atelier"
PACK_VERSION = "0.1.0"
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"

# -- models and where to get them -------------------------------------------------------------------------------------

# The files themselves (name, folder, download address) are in atelier_core/model_catalog.py, shared with doctor.

EXAMPLE_IMAGE = "example.png"  # ships in every ComfyUI's input/ folder, so each workflow validates as loaded

# Kontext's own defaults (BFL, ComfyUI template): cfg 1 with the distilled guidance in FluxGuidance.
STEPS, GUIDANCE, SAMPLER, SCHEDULER = 24, 2.5, "euler", "simple"
TURBO_STEPS, TURBO_STRENGTH = 8, 0.125

# -- spec -------------------------------------------------------------------------------------------------------------


@dataclass
class Node:
    id: int
    type: str
    inputs: dict  # widget values and links ([source id, output slot]) by input name
    title: str | None = None
    pos: tuple[int, int] = (0, 0)
    models: list[dict] | None = None
    color: str | None = None  # the frontend's node colours, as in the Kontext template ("#232"/"#353" for prompts)
    bgcolor: str | None = None


@dataclass
class Note:
    title: str
    text: str
    pos: tuple[int, int]
    size: tuple[int, int] = (420, 300)


@dataclass
class Workflow:
    name: str
    title: str
    summary: str  # one line, for the README table
    nodes: list[Node]
    notes: list[Note] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)


def _link(node: int, slot: int = 0) -> list:
    return [str(node), slot]


def _loaders(model: dict, x: int = -420, t5: dict = T5_FP8) -> list[Node]:
    if t5["name"].endswith(".gguf"):
        text_encoders = Node(
            2,
            "AtelierKontextTextEncoders",
            {"clip_l_name": CLIP_L["name"], "t5_name": t5["name"], "device": "default"},
            title="Text encoders (GGUF T5)",
            pos=(x, 180),
            models=[CLIP_L, t5],
        )
    else:
        text_encoders = Node(
            2,
            "DualCLIPLoader",
            {"clip_name1": CLIP_L["name"], "clip_name2": t5["name"], "type": "flux", "device": "default"},
            title="Text encoders",
            pos=(x, 180),
            models=[CLIP_L, t5],
        )
    return [
        Node(
            1,
            "AtelierKontextLoader",
            {
                "model_name": model["name"],
                "compute_dtype": "auto",
                "gguf_mode": "auto",
                "fp8_matmul": False,
                "float_weights": "as_stored",
            },
            title="Kontext model",
            pos=(x, 0),
            models=[model],
        ),
        text_encoders,
        Node(3, "VAELoader", {"vae_name": FLUX_VAE["name"]}, title="VAE", pos=(x, 360), models=[FLUX_VAE]),
    ]


def _image(node_id: int = 4, title: str = "Image", pos=(-420, 500)) -> Node:
    return Node(node_id, "LoadImage", {"image": EXAMPLE_IMAGE}, title=title, pos=pos)


def _prompt(text: str, node_id: int = 5) -> Node:
    return Node(
        node_id,
        "CLIPTextEncode",
        {"text": text, "clip": _link(2)},
        title="Prompt",
        pos=(0, 0),
        color="#232",
        bgcolor="#353",
    )


def _lock(size: str = "Kontext preferred (17 sizes)", fit: str = "crop", node_id: int = 6) -> Node:
    return Node(
        node_id,
        "AtelierAspectLock",
        {
            "image": _link(4),
            "size": size,
            "fit": fit,
            "anchor": "center",
            "size_by": "megapixels",
            "megapixels": 1.0,
            "long_side": 1024,
            "custom_width": 3,
            "custom_height": 2,
            "pad_mode": "edge",
            "pad_color": "#000000",
        },
        title="Aspect lock",
        pos=(0, 480),
    )


def _ksampler(
    node_id: int, model_from: list, positive_from: list, latent_from: list, *, seed: int = 0, steps: int = STEPS, **ui
) -> Node:
    """Kontext's KSampler settings (cfg 1, euler/simple) with the ConditioningZeroOut negative (node 10)."""
    inputs = {
        "model": model_from,
        "seed": seed,
        "steps": steps,
        "cfg": 1.0,
        "sampler_name": SAMPLER,
        "scheduler": SCHEDULER,
        "positive": positive_from,
        "negative": _link(10),
        "latent_image": latent_from,
        "denoise": 1.0,
    }
    return Node(node_id, "KSampler", inputs, **{"title": "Sampler", **ui})


def _sampling(positive_from: list, model_from: list, latent_from: list, x: int = 420, steps: int = STEPS) -> list[Node]:
    """FluxGuidance 2.5 -> KSampler (cfg 1, euler/simple) with the ConditioningZeroOut negative -> VAEDecode."""
    return [
        Node(9, "FluxGuidance", {"conditioning": positive_from, "guidance": GUIDANCE}, title="Guidance", pos=(x, 0)),
        Node(10, "ConditioningZeroOut", {"conditioning": _link(5)}, title="Negative (zero)", pos=(x, 140)),
        _ksampler(11, model_from, _link(9), latent_from, steps=steps, pos=(x + 320, 0)),
        Node(12, "VAEDecode", {"samples": _link(11), "vae": _link(3)}, title="VAE decode", pos=(x + 320, 320)),
    ]


def _reference_chain() -> list[Node]:
    """The core way to attach the image: VAEEncode the locked image -> ReferenceLatent."""
    return [
        Node(7, "VAEEncode", {"pixels": _link(6), "vae": _link(3)}, title="VAE encode", pos=(0, 300)),
        Node(8, "ReferenceLatent", {"conditioning": _link(5), "latent": _link(7)}, title="Reference", pos=(0, 200)),
    ]


def _save(node_id: int, image_from: list, prefix: str, pos=(1080, 0)) -> Node:
    return Node(node_id, "SaveImage", {"images": image_from, "filename_prefix": prefix}, title="Save", pos=pos)


COMMON_NOTE = (
    "**Models** (download links are in each loader's properties; ComfyUI offers them when missing):\n"
    "- `models/diffusion_models/`: {model}\n"
    "- `models/text_encoders/`: `clip_l.safetensors`, {t5}\n"
    "- `models/vae/`: `ae.safetensors`\n\n"
    "**Defaults** are Kontext's: cfg 1 (guidance lives in *Guidance*, 2.5), euler/simple, 24 steps. "
    "Set the sampler's *control after generate* to `randomize` for a new seed each run.\n\n"
    "**Command line**: the API version of this workflow is `workflows/api/{name}.api.json`; "
    '`kontext-atelier run {name} --image in.png --prompt "..." --server http://127.0.0.1:8188`.'
)


def _shown(model: dict) -> str:
    # A GGUF is not offered by ComfyUI's missing-model dialog (see to_ui), so its link is written out here.
    return f"`{model['name']}`" if not model["name"].endswith(".gguf") else f"[`{model['name']}`]({model['url']})"


def _note(name: str, model: dict, what: str, pos=(-900, 0), t5: dict = T5_FP8) -> Note:
    text = COMMON_NOTE.format(model=_shown(model), t5=_shown(t5), name=name)
    return Note("Read me", f"{what}\n\n" + text, pos, (440, 420))


def single_reference(name: str, model: dict, kind: str, t5: dict = T5_FP8) -> Workflow:
    gguf_t5 = t5["name"].endswith(".gguf")
    label = kind.upper() + (" + GGUF T5" if gguf_t5 else "")
    nodes = [
        *_loaders(model, t5=t5),
        _image(),
        _prompt("change the knight's cloak to deep red, keep everything else the same"),
        _lock(),
        *_reference_chain(),
        *_sampling(_link(8), _link(1), _link(6, 5)),
        Node(
            13,
            "AtelierRestoreSize",
            {"edited": _link(12), "geometry": _link(6, 4), "original": _link(4)},
            title="Restore size",
            pos=(1080, 320),
        ),
        _save(14, _link(13), f"kontext-atelier/edit_{kind}{'_t5gguf' if gguf_t5 else ''}", pos=(1400, 0)),
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
    return Workflow(
        name,
        f"Kontext edit ({label})",
        f"single-reference edit on {label}, restored to the input's size",
        nodes,
        [_note(name, model, what, t5=t5)],
        [model, CLIP_L, t5, FLUX_VAE],
    )


def multi_reference(name: str, model: dict, kind: str) -> Workflow:
    refs = [_image(20 + i, f"Reference {i}", pos=(-420, 700 + 170 * (i - 2))) for i in (2, 3, 4)]
    stitcher_inputs = {
        "model": _link(1),
        "conditioning": _link(5),
        "vae": _link(3),
        "position_method": "offset",
        "sizing": "bucket",
        "fit": "crop",
        "token_budget": 4096,
        "image_1": _link(6),
        "weight_1": 1.0,
    }
    for i in range(2, 9):
        if i <= 4:
            stitcher_inputs[f"image_{i}"] = _link(20 + i)
        stitcher_inputs[f"weight_{i}"] = 1.0
    nodes = [
        *_loaders(model),
        _image(),
        _prompt(
            "dress the knight from image 1 in the cloak from image 2, in the colours of image 3, standing on "
            "the base of image 4; keep the pose and the face"
        ),
        _lock(),
        Node(8, "AtelierContextStitcher", stitcher_inputs, title="Context stitcher", pos=(420, 260)),
        *_sampling(_link(8, 1), _link(8, 0), _link(6, 5)),
        Node(
            13,
            "AtelierRestoreSize",
            {"edited": _link(12), "geometry": _link(6, 4), "original": _link(4)},
            title="Restore size",
            pos=(1080, 320),
        ),
        _save(14, _link(13), f"kontext-atelier/multi_{kind}", pos=(1400, 0)),
        *refs,
    ]
    what = (
        f"## Kontext edit with up to four images ({kind.upper()})\n"
        "**Image** is the picture being edited (reference 1); **Reference 2-4** are what the edit may draw from. "
        "Refer to them in the prompt as image 1..4.\n\n"
        "**Context stitcher**: `weight_N` sets how much the edit attends to each (1 = as core ReferenceLatent, "
        "0 = left out, up to 2). Fewer references: select an unused *Reference* node and press Ctrl+B (bypass). "
        "Each 1 MP reference costs 4096 tokens per step; set `sizing` to `token budget` to cap the total."
    )
    return Workflow(
        name,
        f"Kontext multi-reference edit ({kind.upper()})",
        f"up to 4 references with weights (context stitcher) on {kind.upper()}",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


def _merge_inputs(**overrides) -> dict:
    inputs = {
        "original": _link(4),
        "edited": _link(12),
        "threshold": 6.0,
        "formula": "ciede2000",
        "auto_threshold": False,
        "min_area": 64,
        "grow": 1,
        "feather": 4,
        "blend": "poisson",
        "align": True,
        "match_color": True,
        "mask_mode": "add",
        "geometry": _link(6, 4),
    }
    inputs.update(overrides)
    return inputs


def diff_merge(name: str, model: dict) -> Workflow:
    nodes = [
        *_loaders(model),
        _image(),
        _prompt("paint the shield with a golden lion, keep everything else exactly the same"),
        _lock(),
        *_reference_chain(),
        *_sampling(_link(8), _link(1), _link(6, 5)),
        Node(13, "AtelierDiffMerge", _merge_inputs(), title="Diff-merge", pos=(1080, 320)),
        _save(14, _link(13), "kontext-atelier/merged", pos=(1400, 0)),
        Node(15, "PreviewImage", {"images": _link(13, 3)}, title="Changed regions", pos=(1400, 400)),
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
    return Workflow(
        name,
        "Kontext edit + diff-merge",
        "edit -> restore size -> diff-merge at full resolution",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


def masked_edit(name: str, model: dict) -> Workflow:
    nodes = [
        *_loaders(model),
        _image(),
        _prompt("make the gem on the sword glow bright blue"),
        _lock(),
        *_reference_chain(),
        *_sampling(_link(8), _link(1), _link(6, 5)),
        Node(
            13,
            "AtelierDiffMerge",
            _merge_inputs(mask=_link(4, 1), mask_mode="replace"),
            title="Masked merge",
            pos=(1080, 320),
        ),
        _save(14, _link(13), "kontext-atelier/masked", pos=(1400, 0)),
        Node(15, "PreviewImage", {"images": _link(13, 3)}, title="Changed regions", pos=(1400, 400)),
    ]
    what = (
        "## Masked edit: only the painted region may change\n"
        "1. Load the photo in **Image**, right-click it, *Open in MaskEditor*, paint the region to change, Save.\n"
        "2. Describe the change in **Prompt**.\n\n"
        "Kontext edits the whole picture; **Masked merge** (`mask_mode` replace) takes the edit only inside your "
        "mask (softened by `feather`) and every other pixel from the original, at full size. With no mask painted "
        "the output equals the input. Set `mask_mode` to `add` to also keep changes found outside the mask."
    )
    return Workflow(
        name,
        "Kontext masked edit",
        "masked edit: only the region painted in the mask editor changes",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


def outpaint(name: str, model: dict) -> Workflow:
    nodes = [
        *_loaders(model),
        _image(),
        _prompt(
            "extend the scene to the left and right: continue the table and the painted backdrop, keep the "
            "miniature unchanged"
        ),
        _lock(size="16:9", fit="pad"),
        *_reference_chain(),
        *_sampling(_link(8), _link(1), _link(6, 5)),
        Node(13, "InvertMask", {"mask": _link(6, 3)}, title="Picture area", pos=(1080, 320)),
        Node(
            14,
            "ImageCompositeMasked",
            {"destination": _link(12), "source": _link(6), "x": 0, "y": 0, "resize_source": False, "mask": _link(13)},
            title="Keep original pixels",
            pos=(1080, 460),
        ),
        _save(15, _link(14), "kontext-atelier/outpaint", pos=(1400, 0)),
    ]
    what = (
        "## Outpaint to a wider ratio\n"
        "**Aspect lock** in `pad` mode places your picture, uncropped, on a 16:9 canvas (`pad_mode` edge gives "
        "Kontext a hint of the colours); Kontext fills the padding; **Keep original pixels** pastes the picture "
        "back over the result, so inside it every pixel is the (resized) input's.\n\n"
        "Other shapes: set `size` to 21:9, 3:2, 9:16 (tall) or `custom W:H`; `anchor` decides where the picture sits."
    )
    return Workflow(
        name,
        "Kontext outpaint (pad)",
        "outpainting to 16:9: aspect lock pad mode, original pixels kept",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


@dataclass(frozen=True)
class _TurnIds:
    """Node ids of one iterative turn. Turn 1 uses the ids of the single-edit workflows; turn N the block 10 N."""

    prompt: int
    lock: int
    encode: int
    reference: int
    guidance: int
    sampler: int
    decode: int
    merge: int
    preview: int

    @classmethod
    def of(cls, turn: int) -> _TurnIds:
        if turn == 1:
            return cls(5, 6, 7, 8, 9, 11, 12, 13, 15)
        return cls(*(10 * turn + i for i in range(9)))


def _turn(turn: int, text: str, source: list, last: bool) -> list[Node]:
    """One edit turn: prompt -> lock the previous result -> reference -> sample -> diff-merge into that result."""
    ids, y = _TurnIds.of(turn), 1000 * (turn - 1)
    suffix = "" if turn == 1 else f" {turn}"
    prompt = _prompt(text, ids.prompt)
    prompt.title, prompt.pos = f"Prompt{suffix}", (0, y)
    sampler = _ksampler(
        ids.sampler,
        _link(1),
        _link(ids.guidance),
        _link(ids.lock, 5),
        seed=turn - 1,
        title=f"Sampler{suffix}",
        pos=(740, y),
    )
    nodes = [
        prompt,
        Node(ids.lock, "AtelierAspectLock", {**_lock().inputs, "image": source}, f"Aspect lock{suffix}", (0, y + 480)),
        Node(
            ids.encode, "VAEEncode", {"pixels": _link(ids.lock), "vae": _link(3)}, f"VAE encode{suffix}", (0, y + 300)
        ),
        Node(
            ids.reference,
            "ReferenceLatent",
            {"conditioning": _link(ids.prompt), "latent": _link(ids.encode)},
            f"Reference{suffix}",
            (0, y + 200),
        ),
        Node(
            ids.guidance,
            "FluxGuidance",
            {"conditioning": _link(ids.reference), "guidance": GUIDANCE},
            f"Guidance{suffix}",
            (420, y),
        ),
        sampler,
        Node(
            ids.decode,
            "VAEDecode",
            {"samples": _link(ids.sampler), "vae": _link(3)},
            f"VAE decode{suffix}",
            (740, y + 320),
        ),
        Node(
            ids.merge,
            "AtelierDiffMerge",
            _merge_inputs(original=source, edited=_link(ids.decode), geometry=_link(ids.lock, 4)),
            f"Diff-merge turn {turn}",
            (1080, y + 320),
        ),
    ]
    if not last:
        nodes.append(
            Node(ids.preview, "PreviewImage", {"images": _link(ids.merge)}, f"After turn {turn}", (1400, y + 320))
        )
    return nodes


def iterative(name: str, model: dict, prompts: tuple[str, ...]) -> Workflow:
    """One edit turn per prompt; each turn edits the previous turn's merged result and is diff-merged into it."""
    turns = len(prompts)
    nodes = [*_loaders(model), _image()]
    source = _link(4)  # the full-resolution picture the turn edits
    for turn, text in enumerate(prompts, start=1):
        nodes += _turn(turn, text, source, last=turn == turns)
        source = _link(_TurnIds.of(turn).merge)
    nodes += [
        Node(10, "ConditioningZeroOut", {"conditioning": _link(5)}, title="Negative (zero)", pos=(420, 140)),
        _save(14, source, "kontext-atelier/iterative", pos=(1400, 1000 * (turns - 1))),
    ]
    what = (
        f"## Iterative editing: {turns} turns, nothing degrades\n"
        "Each turn edits the **previous turn's result** with its own prompt (**Prompt**, **Prompt 2**, "
        "**Prompt 3**), and **Diff-merge turn N** takes only what that turn changed into the full-resolution "
        "picture. Areas no turn touched stay bit for bit the original's, however many turns you chain; a plain "
        "chain of Kontext edits would re-render (and soften) the whole picture every time.\n\n"
        "One edit per turn works best. Fewer turns: bypass (Ctrl+B) the last turn's nodes and connect *Save* to "
        "the previous diff-merge. More: copy a turn's nodes and chain its *Aspect lock* and *Diff-merge* "
        '`original` to the previous merge. Each sampler has its own seed (`--set "Sampler 2.seed=5"`).'
    )
    return Workflow(
        name,
        f"Kontext iterative edit ({turns} turns, diff-merged)",
        f"{turns} chained edit turns, each diff-merged into the previous result at full resolution",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


def style_transfer(name: str, model: dict) -> Workflow:
    stitcher_inputs = {
        "model": _link(1),
        "conditioning": _link(5),
        "vae": _link(3),
        "position_method": "offset",
        "sizing": "bucket",
        "fit": "crop",
        "token_budget": 4096,
        "image_1": _link(6),
        "weight_1": 1.0,
        "image_2": _link(22),
    }
    for i in range(2, 9):
        stitcher_inputs[f"weight_{i}"] = 1.0
    builder_inputs = {
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
    nodes = [
        *_loaders(model),
        _image(),
        Node(16, "AtelierMiniaturePrompt", builder_inputs, title="Style prompt", pos=(-900, 480)),
        Node(
            5,
            "CLIPTextEncode",
            {"text": _link(16), "clip": _link(2)},
            title="Prompt",
            pos=(0, 0),
            color="#232",
            bgcolor="#353",
        ),
        _lock(),
        Node(8, "AtelierContextStitcher", stitcher_inputs, title="Context stitcher", pos=(420, 260)),
        *_sampling(_link(8, 1), _link(8, 0), _link(6, 5)),
        Node(
            13,
            "AtelierRestoreSize",
            {"edited": _link(12), "geometry": _link(6, 4), "original": _link(4)},
            title="Restore size",
            pos=(1080, 320),
        ),
        _save(14, _link(13), "kontext-atelier/style", pos=(1400, 0)),
        _image(22, "Reference 2", pos=(-420, 700)),
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
    return Workflow(
        name,
        "Kontext style transfer",
        "repaint in the style of a reference image (prompt builder's style-reference template, stitcher)",
        nodes,
        [_note(name, model, what)],
        [model, CLIP_L, T5_FP8, FLUX_VAE],
    )


def turbo(name: str, model: dict) -> Workflow:
    nodes = [
        *_loaders(model),
        _image(),
        _prompt("change the knight's cloak to deep red, keep everything else the same"),
        _lock(),
        *_reference_chain(),
        Node(
            15,
            "LoraLoaderModelOnly",
            {"model": _link(1), "lora_name": HYPER_LORA["name"], "strength_model": TURBO_STRENGTH},
            title="Turbo LoRA",
            pos=(0, -220),
            models=[HYPER_LORA],
        ),
        *_sampling(_link(8), _link(15), _link(6, 5), steps=TURBO_STEPS),
        Node(
            13,
            "AtelierRestoreSize",
            {"edited": _link(12), "geometry": _link(6, 4), "original": _link(4)},
            title="Restore size",
            pos=(1080, 320),
        ),
        _save(14, _link(13), "kontext-atelier/turbo", pos=(1400, 0)),
    ]
    what = (
        f"## Fast edit: 8-step LoRA ({TURBO_STEPS} steps instead of {STEPS})\n"
        "**Turbo LoRA** loads ByteDance's Hyper-SD 8-step LoRA for FLUX.1-dev "
        f"(`{HYPER_LORA['name']}`, into `models/loras/`) at strength {TURBO_STRENGTH}, as its authors "
        "recommend; the sampler runs 8 steps, about three times faster than the 24-step workflows.\n\n"
        "Fine detail is a little softer than at 24 steps: use it to try prompts, then rerun the keeper without "
        "the LoRA. Alimama's FLUX.1-Turbo-Alpha (`diffusion_pytorch_model.safetensors` from "
        "huggingface.co/alimama-creative/FLUX.1-Turbo-Alpha, strength 1.0) works the same way."
    )
    return Workflow(
        name,
        "Kontext fast edit (8-step LoRA)",
        "single-reference edit in 8 steps with the Hyper-SD FLUX LoRA (LoraLoaderModelOnly)",
        nodes,
        [_note(name, model, what)],
        [model, HYPER_LORA, CLIP_L, T5_FP8, FLUX_VAE],
    )


def all_workflows() -> list[Workflow]:
    return [
        single_reference("kontext_edit_gguf", GGUF_MODEL, "gguf"),
        single_reference("kontext_edit_fp8", FP8_MODEL, "fp8"),
        single_reference("kontext_edit_gguf_t5", GGUF_MODEL, "gguf", t5=T5_GGUF),
        multi_reference("kontext_multi_reference_gguf", GGUF_MODEL, "gguf"),
        multi_reference("kontext_multi_reference_fp8", FP8_MODEL, "fp8"),
        diff_merge("kontext_edit_diff_merge", GGUF_MODEL),
        masked_edit("kontext_masked_edit", GGUF_MODEL),
        outpaint("kontext_outpaint", GGUF_MODEL),
        iterative(
            "kontext_iterative_edit",
            GGUF_MODEL,
            (
                "change the knight's cloak to deep red, keep everything else the same",
                "paint a golden lion on the shield, keep everything else the same",
                "cover the base with fresh snow, keep the miniature unchanged",
            ),
        ),
        style_transfer("kontext_style_transfer", GGUF_MODEL),
        turbo("kontext_edit_turbo", GGUF_MODEL),
        *_other_model_workflows(),
    ]


def _other_model_workflows() -> list[Workflow]:
    """FLUX.2 and Qwen-Image-Edit (workflows/other_models.py; they need ComfyUI 0.3.75+)."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import other_models

    return other_models.workflows(sys.modules[__name__])


def renderable(object_info: dict) -> list[Workflow]:
    """The workflows whose every node type ``object_info`` describes (a ComfyUI 0.3.64 has no FLUX.2 / Qwen nodes:
    those are rendered against a newer one and left as they are)."""
    return [w for w in all_workflows() if all(n.type in object_info for n in w.nodes)]


# -- API format -------------------------------------------------------------------------------------------------------


def to_api(workflow: Workflow) -> dict:
    """The prompt the frontend's graphToPrompt makes of the UI file: every widget value and every link."""
    api = {}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        api[str(node.id)] = {
            "inputs": dict(node.inputs),
            "class_type": node.type,
            "_meta": {"title": node.title or node.type},
        }
    return api


# -- UI format --------------------------------------------------------------------------------------------------------


def _type_name(spec) -> str:
    kind = spec[0]
    if isinstance(kind, (list, tuple)):
        return "COMBO"
    return str(getattr(kind, "value", kind))


def describe(object_info: dict, node_type: str) -> dict:
    """Sockets and widgets of a node type, in the frontend's order, from its /object_info entry."""
    info = object_info[node_type]
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k in ("required", "optional")}
    slots = []
    for section in ("required", "optional"):
        specs = info["input"].get(section, {})
        for input_name in order.get(section, []):
            spec = specs[input_name]
            type_name = _type_name(spec)
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            slots.append(
                {
                    "name": input_name,
                    "type": type_name,
                    "optional": section == "optional",
                    "widget": type_name in WIDGET_TYPES and not options.get("forceInput"),
                    "control": bool(options.get("control_after_generate")),
                    "upload": bool(options.get("image_upload")),
                }
            )
    outputs = [
        {"name": str(n), "type": _type_name([t])} for n, t in zip(info["output_name"], info["output"], strict=True)
    ]
    return {"inputs": slots, "outputs": outputs, "display_name": info.get("display_name", node_type)}


def widget_values(description: dict, inputs: dict) -> list:
    """``widgets_values`` as the frontend writes them: widget inputs in order, plus the seed-control and upload
    widgets that the frontend adds after a seed and after an image combo."""
    values = []
    for slot in description["inputs"]:
        if not slot["widget"]:
            continue
        values.append(inputs[slot["name"]])
        if slot["control"]:
            values.append("fixed")
        if slot["upload"]:
            values.append("image")
    return values


def _size(description: dict) -> list[int]:
    sockets = sum(1 for s in description["inputs"] if not s["widget"])
    widgets = sum(1 for s in description["inputs"] if s["widget"]) + sum(
        1 for s in description["inputs"] if s["control"] or s["upload"]
    )
    rows = max(sockets, len(description["outputs"]))
    return [320, 30 + 22 * rows + 26 * widgets]


def _topological(nodes: list[Node]) -> list[int]:
    ids = {n.id: n for n in nodes}
    done: list[int] = []
    seen: set[int] = set()

    def visit(node_id: int, depth: int = 0) -> None:
        if node_id in seen or depth > len(ids):
            return
        seen.add(node_id)
        for value in ids[node_id].inputs.values():
            if isinstance(value, list):
                visit(int(value[0]), depth + 1)
        done.append(node_id)

    for node in sorted(nodes, key=lambda n: n.id):
        visit(node.id)
    return done


@dataclass
class _Links:
    """The UI links of a graph: ``[id, source, slot, target, target slot, type]`` rows and the two lookups."""

    rows: list[list] = field(default_factory=list)
    outgoing: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (source, slot) -> link ids
    incoming: dict[tuple[int, str], int] = field(default_factory=dict)  # (target, input name) -> link id


def _socket_names(description: dict, node: Node) -> list[str]:
    """The node's input sockets in order: every non-widget input, and widgets converted to inputs by a link."""
    return [s["name"] for s in description["inputs"] if not s["widget"] or isinstance(node.inputs.get(s["name"]), list)]


def _links(workflow: Workflow, descriptions: dict) -> _Links:
    links = _Links()
    types = {n.id: n.type for n in workflow.nodes}
    for target in sorted(workflow.nodes, key=lambda n: n.id):
        sockets = _socket_names(descriptions[target.type], target)
        for input_name in sockets:
            value = target.inputs.get(input_name)
            if not isinstance(value, list):
                continue
            source, slot = int(value[0]), int(value[1])
            link_type = descriptions[types[source]]["outputs"][slot]["type"]
            link_id = len(links.rows) + 1
            links.rows.append([link_id, source, slot, target.id, sockets.index(input_name), link_type])
            links.outgoing.setdefault((source, slot), []).append(link_id)
            links.incoming[(target.id, input_name)] = link_id
    return links


def _ui_inputs(node: Node, description: dict, links: _Links) -> list[dict]:
    inputs = []
    for slot in description["inputs"]:
        linked = isinstance(node.inputs.get(slot["name"]), list)
        if slot["widget"] and not linked:
            continue
        entry = {"name": slot["name"], "type": slot["type"], "link": links.incoming.get((node.id, slot["name"]))}
        if slot["optional"]:
            entry["shape"] = 7
        if slot["widget"]:
            entry["widget"] = {"name": slot["name"]}
        inputs.append(entry)
    return inputs


def _ui_outputs(node: Node, description: dict, links: _Links) -> list[dict]:
    return [
        {"name": out["name"], "type": out["type"], "links": links.outgoing.get((node.id, i)) or None, "slot_index": i}
        for i, out in enumerate(description["outputs"])
    ]


def _properties(node: Node) -> dict:
    ours = node.type.startswith("Atelier")
    properties = {
        "Node name for S&R": node.type,
        "cnr_id": PACK_ID if ours else "comfy-core",
        "ver": PACK_VERSION if ours else CORE_VERSION,
    }
    # ComfyUI 0.3.64's model listing (/experiment/models) shows only .safetensors/.sft files and its frontend
    # downloads only those, so a .gguf under "models" would be reported missing even when present. GGUF files
    # are named under "atelier_downloads" instead (read by `kontext-atelier doctor` and shown in the note).
    offered = [dict(m) for m in node.models or () if m["name"].endswith((".safetensors", ".sft"))]
    others = [dict(m) for m in node.models or () if not m["name"].endswith((".safetensors", ".sft"))]
    if offered:
        properties["models"] = offered
    if others:
        properties["atelier_downloads"] = others
    return properties


def _ui_node(node: Node, description: dict, order: int, links: _Links) -> dict:
    entry = {
        "id": node.id,
        "type": node.type,
        "pos": list(node.pos),
        "size": _size(description),
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": _ui_inputs(node, description, links),
        "outputs": _ui_outputs(node, description, links),
        "title": node.title or description["display_name"],
        "properties": _properties(node),
        "widgets_values": widget_values(description, node.inputs),
    }
    if node.color:
        entry["color"], entry["bgcolor"] = node.color, node.bgcolor
    return entry


def _ui_note(note: Note, node_id: int, order: int) -> dict:
    return {
        "id": node_id,
        "type": "MarkdownNote",
        "pos": list(note.pos),
        "size": list(note.size),
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": [],
        "outputs": [],
        "title": note.title,
        "properties": {},
        "widgets_values": [note.text],
        "color": NOTE_COLOR,
        "bgcolor": NOTE_BGCOLOR,
    }


def to_ui(workflow: Workflow, object_info: dict) -> dict:
    """The drag-and-drop workflow (schema version 0.4) the frontend would save for this graph."""
    descriptions = {n.type: describe(object_info, n.type) for n in workflow.nodes}
    links = _links(workflow, descriptions)
    order = {node_id: i for i, node_id in enumerate(_topological(workflow.nodes))}
    ui_nodes = [
        _ui_node(node, descriptions[node.type], order[node.id], links)
        for node in sorted(workflow.nodes, key=lambda n: n.id)
    ]
    next_id = max(n.id for n in workflow.nodes) + 1
    ui_nodes += [_ui_note(note, next_id + i, len(order) + i) for i, note in enumerate(workflow.notes)]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PACK_ID}/workflows/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in ui_nodes),
        "last_link_id": len(links.rows),
        "nodes": ui_nodes,
        "links": links.rows,
        "groups": [],
        "config": {},
        "extra": {"ds": {"scale": 0.6, "offset": [960, 120]}, "frontendVersion": FRONTEND_VERSION},
        "version": 0.4,
    }


# -- files ------------------------------------------------------------------------------------------------------------


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"


def render(object_info: dict) -> dict[Path, str]:
    """Every shipped workflow file (path -> text): UI, API, and the package's copy of the API file."""
    files: dict[Path, str] = {}
    for workflow in renderable(object_info):
        files[HERE / f"{workflow.name}.json"] = dumps(to_ui(workflow, object_info))
        files[API_DIR / f"{workflow.name}.api.json"] = files[PACKAGE_DIR / f"{workflow.name}.api.json"] = dumps(
            to_api(workflow)
        )
    return files


def render_pictures(files: dict[Path, str]) -> dict[Path, bytes]:
    """``<name>.png`` (the diagram with the workflow embedded, for drag-and-drop) and ``<name>.jpg`` (the template
    browser's thumbnail) for every workflow, drawn from the rendered UI and API files."""
    if str(HERE) not in sys.path:
        sys.path.insert(0, str(HERE))
    import thumbnails

    pictures: dict[Path, bytes] = {}
    for workflow in all_workflows():
        if HERE / f"{workflow.name}.json" not in files:
            continue
        ui = json.loads(files[HERE / f"{workflow.name}.json"])
        api = json.loads(files[API_DIR / f"{workflow.name}.api.json"])
        picture = thumbnails.diagram(ui, workflow.title, workflow.summary)
        pictures[HERE / f"{workflow.name}.png"] = thumbnails.png_with_workflow(picture, ui, api)
        pictures[HERE / f"{workflow.name}.jpg"] = thumbnails.jpeg(picture)
    return pictures


def host_object_info() -> dict:
    """/object_info for every node type the workflows use, from ComfyUI loaded in this process with the pack."""
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    from atelier_host import ComfyHost, find_comfyui

    root, reason = find_comfyui()
    if root is None:
        raise SystemExit(reason)
    host = ComfyHost(root, Path(tempfile.mkdtemp(prefix="atelier_workflows_")))
    return object_info_from(host)


def object_info_from(host) -> dict:
    types = {n.type for w in all_workflows() for n in w.nodes} & set(host.nodes.NODE_CLASS_MAPPINGS)
    return {t: node_info(host.node_class(t)) for t in sorted(types)}


def node_info(cls) -> dict:
    """What ComfyUI's /object_info serves for a node class (V3 classes describe themselves; V1 as server.py does)."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        return cls.GET_NODE_INFO_V1()
    info = {
        "input": cls.INPUT_TYPES(),
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "display_name": getattr(cls, "DISPLAY_NAME", None) or cls.__name__,
    }
    try:
        import nodes

        info["display_name"] = nodes.NODE_DISPLAY_NAME_MAPPINGS.get(
            next(k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if v is cls), info["display_name"]
        )
    except (ImportError, StopIteration):
        pass
    return info


def main() -> int:
    files = render(host_object_info())
    pictures = render_pictures(files)
    API_DIR.mkdir(exist_ok=True)
    PACKAGE_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    for path, data in pictures.items():
        path.write_bytes(data)
    sys.stdout.write(f"wrote {len(files)} workflow files and {len(pictures)} pictures\n")
    for workflow in all_workflows():
        if HERE / f"{workflow.name}.json" not in files:
            sys.stdout.write(f"left {workflow.name} as it is: this ComfyUI lacks some of its nodes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
