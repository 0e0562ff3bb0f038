"""The pieces the Kontext workflows share: loaders, the picture, the prompt, the aspect lock, Kontext's sampling, the
merge's settings, the step groups and the canvas note."""

from __future__ import annotations

from atelier_core.image.diffmerge import merge_node_defaults
from atelier_core.image.geometry_record import LOCK_DEFAULTS
from atelier_core.model_catalog import CLIP_L, FLUX_VAE, T5_FP8
from workflows.spec import EXAMPLE_IMAGE, GUIDANCE, SAMPLER, SCHEDULER, STEPS, Group, Node, Note, link, reroute

PROMPT_COLOR, PROMPT_BGCOLOR = "#232", "#353"  # the Kontext template's prompt colours


def loaders(model: dict, t5: dict = T5_FP8) -> list[Node]:
    """Kontext model (1), text encoders (2), VAE (3)."""
    if t5["name"].endswith(".gguf"):
        text_encoders = Node(
            2,
            "AtelierKontextTextEncoders",
            {"clip_l_name": CLIP_L["name"], "t5_name": t5["name"], "device": "default"},
            title="Text encoders (GGUF T5)",
            models=[CLIP_L, t5],
        )
    else:
        text_encoders = Node(
            2,
            "DualCLIPLoader",
            {"clip_name1": CLIP_L["name"], "clip_name2": t5["name"], "type": "flux", "device": "default"},
            title="Text encoders",
            models=[CLIP_L, t5],
        )
    model_inputs = {
        "model_name": model["name"],
        "compute_dtype": "auto",
        "gguf_mode": "auto",
        "fp8_matmul": False,
        "float_weights": "as_stored",
    }
    return [
        Node(1, "AtelierKontextLoader", model_inputs, title="Kontext model", models=[model]),
        text_encoders,
        Node(3, "VAELoader", {"vae_name": FLUX_VAE["name"]}, title="VAE", models=[FLUX_VAE]),
    ]


def image(node_id: int = 4, title: str = "Image", picture: str = EXAMPLE_IMAGE) -> Node:
    return Node(node_id, "LoadImage", {"image": picture}, title=title)


def prompt(text, node_id: int = 5, title: str = "Prompt") -> Node:
    return Node(
        node_id,
        "CLIPTextEncode",
        {"text": text, "clip": link(2)},
        title=title,
        color=PROMPT_COLOR,
        bgcolor=PROMPT_BGCOLOR,
    )


def lock(node_id: int = 6, source: list | None = None, title: str = "Aspect lock", **settings) -> Node:
    inputs = {"image": source or link(4), **LOCK_DEFAULTS, **settings}
    return Node(node_id, "AtelierAspectLock", inputs, title=title)


def ksampler(
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
        "negative": link(10),
        "latent_image": latent_from,
        "denoise": 1.0,
    }
    return Node(node_id, "KSampler", inputs, **{"title": "Sampler", **ui})


def sampling(
    positive_from: list, model_from: list, latent_from: list, steps: int = STEPS, vae_from: list | None = None
) -> list[Node]:
    """FluxGuidance 2.5 (9) -> KSampler (11, cfg 1, euler/simple) with the ConditioningZeroOut negative (10) ->
    VAEDecode (12)."""
    return [
        Node(9, "FluxGuidance", {"conditioning": positive_from, "guidance": GUIDANCE}, title="Guidance"),
        Node(10, "ConditioningZeroOut", {"conditioning": link(5)}, title="Negative (zero)"),
        ksampler(11, model_from, link(9), latent_from, steps=steps),
        Node(12, "VAEDecode", {"samples": link(11), "vae": vae_from or link(3)}, title="VAE decode"),
    ]


def reference_chain(vae_from: list | None = None) -> list[Node]:
    """The core way to attach the image: VAEEncode (7) the locked image -> ReferenceLatent (8)."""
    return [
        Node(7, "VAEEncode", {"pixels": link(6), "vae": vae_from or link(3)}, title="VAE encode"),
        Node(8, "ReferenceLatent", {"conditioning": link(5), "latent": link(7)}, title="Reference"),
    ]


VAE_BUS = 30  # the one-image edits' Reroute of the VAE, over the encode: it reaches the decode above every link


def vae_bus() -> list[Node]:
    """The VAE Reroute (``VAE_BUS``) and what it feeds: VAE encode (7) and, with ``sampling(vae_from=...)``, the
    VAE decode (12)."""
    return [reroute(VAE_BUS, link(3)), *reference_chain(link(VAE_BUS))]


def restore(node_id: int = 13) -> Node:
    return Node(
        node_id,
        "AtelierRestoreSize",
        {"edited": link(12), "geometry": link(6, 4), "original": link(4)},
        title="Restore size",
    )


def save(node_id: int, image_from: list, prefix: str) -> Node:
    return Node(node_id, "SaveImage", {"images": image_from, "filename_prefix": prefix}, title="Save")


def merge_inputs(**overrides) -> dict:
    inputs = {"original": link(4), "edited": link(12), **merge_node_defaults(), "geometry": link(6, 4)}
    inputs.update(overrides)
    return inputs


# -- step groups ------------------------------------------------------------------------------------------------------

# Blank space (pixels) in a group column: negative numbers in a column list, so a node lines up with what feeds it.
BUS_DROP = -104
ENCODE_DROP = -200  # VAE encode between the prompt and the aspect lock: the fewest crossing links (measured)


def kontext_groups(
    models: list[int] | list[list[int]],  # one column, or columns
    pictures: list[int],
    prepare: list[list[int]],
    edit: list[list[int]],
    finish: list[list[int]],
    finish_title: str = "Restore and save",
) -> list[Group]:
    """Load (models over pictures), prepare, edit, finish: left to right, as core's templates read."""
    return [
        Group("Load models", "load", models if isinstance(models[0], list) else [models], (0, 0)),
        Group("Load pictures", "load", [pictures], (0, 1)),
        Group("Prepare: prompt, size, reference", "prepare", prepare, (1, 0)),
        Group("Edit: Kontext samples", "edit", edit, (2, 0)),
        Group(finish_title, "merge", finish, (3, 0)),
    ]


def single_groups(
    finish: list[list[int]],
    edit_first: list[int] | None = None,
    models: list[list[int]] | None = None,
    under_encode: tuple[int, ...] = (),
    **kw,
) -> list[Group]:
    """The groups of the one-image edits (prompt 5, lock 6, encode 7, reference 8, sampling 9-12); ``edit_first``
    is the edit group's first column (the reference, and a LoRA beside it)."""
    edit = [edit_first or [8], [9], [10], [11], [12]]  # guidance and the zero negative side by side (measured)
    prepare = [[5, 6], [VAE_BUS, BUS_DROP, 7, *under_encode]]
    return kontext_groups(models or [1, 2, 3], [4], prepare, edit, finish, **kw)


# -- the canvas note --------------------------------------------------------------------------------------------------


def model_lines(models: list[dict]) -> str:
    return "\n".join(f"- [{m['name']}]({m['url']}) in `models/{m['directory']}/`" for m in models)


DIALOG = (
    "When one is missing, ComfyUI's missing-models dialog lists it as the workflow opens and downloads the "
    "`.safetensors` files into the right folder; it does not download `.gguf` files: use the link above and put "
    "the file in the folder named. `kontext-atelier doctor` checks them all."
)

DEFAULTS = (
    "**Defaults** are Kontext's: cfg 1 (guidance lives in *Guidance*, 2.5), euler/simple, 24 steps. "
    "Set the sampler's *control after generate* to `randomize` for a new seed each run."
)


def command_line(name: str) -> str:
    return (
        f"**Command line**: the API version of this workflow is `workflows/api/{name}.api.json`; "
        f'`kontext-atelier run {name} --image in.png --prompt "..." --server http://127.0.0.1:8188`.'
    )


def note(name: str, what: str, models: list[dict], size: tuple[int, int] = (460, 620)) -> Note:
    text = f"{what}\n\n**Models**:\n{model_lines(models)}\n\n{DIALOG}\n\n{DEFAULTS}\n\n{command_line(name)}"
    return Note("Read me", text, size)
