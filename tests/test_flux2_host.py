"""Kontext Context Stitcher on FLUX.2 in a real ComfyUI (0.3.75+; 0.3.64 has no FLUX.2 and skips with one line).

A tiny random FLUX.2 transformer (ComfyUI's own FLUX.2 key set, hidden 256, one block of each kind) loads through
core's loader path (``AtelierTestNarrowUNETLoader``: 0.3.75 assumes FLUX.2 [dev]'s 48 heads at every width), a
random FLUX.2 VAE (128 latent channels at 1/16) through core's VAELoader, and is sampled with core KSampler (euler,
3 steps, 64x64, references 64x64 with 'keep' sizing so the pixels pass untouched). The same properties as for
Kontext (tests/test_stitch_host.py): all weights 1 is bit-identical to core ReferenceLatent, weight 0 is exactly the
reference left out, and the distance from the left-out result rises with the weight.

FLUX.2 [klein] (ComfyUI 0.10.0+; earlier releases skip it as "not in this ComfyUI"): a tiny klein-shaped transformer
(no guidance embedding, as BFL's distilled klein) loads through core's own UNETLoader (those releases take the heads
from the width), is recognised by the stitcher, samples bit-identically to core ReferenceLatent, and runs lock ->
edit -> restore -> diff-merge like [dev].
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from atelier_host import NOT_IN_THIS_HOST, find_comfyui, skip_unless_host_has
from kontext_graphs import rel_error
from PIL import Image


def host_has_flux2() -> bool:
    """Feature-detect FLUX.2 in the host's source (before it boots, so a host without it skips in one line)."""
    root, _ = find_comfyui()
    return root is None or "class Flux2(" in (root / "comfy" / "latent_formats.py").read_text(errors="replace")


def host_has_klein() -> bool:
    """FLUX.2 [klein]: core's klein text encoder (``klein_te``, 0.10.0+), which comes with the FLUX.2 detection that
    reads the heads from the width (0.3.75 fixes [dev]'s 48)."""
    root, _ = find_comfyui()
    return root is not None and "def klein_te(" in (root / "comfy" / "text_encoders" / "flux.py").read_text(
        errors="replace"
    )


if not host_has_flux2():
    pytest.skip(f"{NOT_IN_THIS_HOST} FLUX.2 (comfy.latent_formats.Flux2, ComfyUI 0.3.75+)", allow_module_level=True)

NODE = "AtelierContextStitcher"
MODEL = "flux2_tiny_fp32.safetensors"
KLEIN = "flux2_klein_tiny_fp32.safetensors"
VAE = "flux2_tiny_vae.safetensors"
SIZE = 64
CONTEXT = 64  # the tiny model's text width
IMAGES = ("flux2_a.png", "flux2_b.png")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def files(comfy_host):
    from atelier_core.testing import synth_comfy

    model = comfy_host.model_path("diffusion_models", MODEL)
    if not model.is_file():
        synth_comfy.write_state_dict(model, synth_comfy.flux2_state_dict(seed=0, context_dim=CONTEXT))
    vae = comfy_host.model_path("vae", VAE)
    if not vae.is_file():
        synth_comfy.write_state_dict(vae, synth_comfy.flux2_vae_state_dict(seed=0))
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    for i, name in enumerate(IMAGES):
        rng = np.random.default_rng(10 + i)
        smooth = np.stack([np.sin(3 * x + i), np.cos(2 * y - i), x * y], axis=-1) * 0.4 + 0.5
        rgb = np.clip(smooth + rng.normal(0, 0.08, smooth.shape), 0, 1)
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(comfy_host.input_path(name))
    return {"model": MODEL, "vae": VAE}


@pytest.fixture(scope="module")
def klein_file(comfy_host, files):
    """A tiny FLUX.2 [klein]-shaped transformer (no guidance_in) where the host loads klein; skips elsewhere."""
    skip_unless_host_has(host_has_klein(), "FLUX.2 [klein] (comfy.text_encoders.flux.klein_te, ComfyUI 0.10.0+)")
    from atelier_core.testing import synth_comfy

    path = comfy_host.model_path("diffusion_models", KLEIN)
    if not path.is_file():
        synth_comfy.write_state_dict(path, synth_comfy.flux2_state_dict(seed=1, context_dim=CONTEXT, guidance=False))
    return KLEIN


def base_graph(klein: bool = False) -> dict:
    """[dev] through the narrow-width stand-in of core's loader; [klein] through core's own UNETLoader."""
    if klein:
        loader = {"class_type": "UNETLoader", "inputs": {"unet_name": KLEIN, "weight_dtype": "default"}}
    else:
        loader = {"class_type": "AtelierTestNarrowUNETLoader", "inputs": {"unet_name": MODEL}}
    return {
        "loader": loader,
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": VAE}},
        "text": {
            "class_type": "AtelierTestTextEncode",
            "inputs": {"text": "paint the cloak red", "tokens": 8, "guidance": 4.0, "width": CONTEXT},
        },
        "negative": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["text", 0]}},
        "empty": {"class_type": "EmptyFlux2LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        **{f"load_{n}": {"class_type": "LoadImage", "inputs": {"image": n}} for n in IMAGES},
    }


def add_sampler(graph: dict, key: str, model: list, positive: list, guidance: bool = True) -> None:
    """KSampler (cfg 1); [dev] gets FluxGuidance 4, [klein] (no guidance embedding) the conditioning as it is."""
    if guidance:
        graph[f"guidance_{key}"] = {"class_type": "FluxGuidance", "inputs": {"conditioning": positive, "guidance": 4.0}}
        positive = [f"guidance_{key}", 0]
    graph[f"sampler_{key}"] = {
        "class_type": "KSampler",
        "inputs": {
            "model": model,
            "seed": 7,
            "steps": 3,
            "cfg": 1.0,
            "sampler_name": "euler",
            "scheduler": "simple",
            "positive": positive,
            "negative": ["negative", 0],
            "latent_image": ["empty", 0],
            "denoise": 1.0,
        },
    }
    graph[f"capture_{key}"] = {
        "class_type": "AtelierTestCapture",
        "inputs": {"key": key, "value": [f"sampler_{key}", 0]},
    }


def add_stitched(graph: dict, key: str, refs, method: str = "auto", guidance: bool = True) -> str:
    inputs = {
        "model": ["loader", 0],
        "conditioning": ["text", 0],
        "vae": ["vae", 0],
        "position_method": method,
        "sizing": "keep",
        "fit": "crop",
        "token_budget": 4096,
    }
    for slot, (name, weight) in enumerate(refs, start=1):
        inputs[f"image_{slot}"] = [f"load_{name}", 0]
        inputs[f"weight_{slot}"] = weight
    graph[f"stitch_{key}"] = {"class_type": NODE, "inputs": inputs}
    add_sampler(graph, key, [f"stitch_{key}", 0], [f"stitch_{key}", 1], guidance)
    return f"stitch_{key}"


def add_core(graph: dict, key: str, names, guidance: bool = True) -> None:
    """The same references through core VAEEncode -> chained ReferenceLatent (the model's default method)."""
    cond = ["text", 0]
    for i, name in enumerate(names):
        graph[f"enc_{key}_{i}"] = {
            "class_type": "VAEEncode",
            "inputs": {"pixels": [f"load_{name}", 0], "vae": ["vae", 0]},
        }
        graph[f"ref_{key}_{i}"] = {
            "class_type": "ReferenceLatent",
            "inputs": {"conditioning": cond, "latent": [f"enc_{key}_{i}", 0]},
        }
        cond = [f"ref_{key}_{i}", 0]
    add_sampler(graph, key, ["loader", 0], cond, guidance)


def sampled(host, graph: dict) -> dict[str, torch.Tensor]:
    host.run(graph)
    return {k: v["samples"].clone() for k, v in host.captured.items() if isinstance(v, dict) and "samples" in v}


def test_flux2_is_recognised_latents_method_and_tokens(comfy_host, files):
    g = base_graph()
    node = add_stitched(g, "s", [(IMAGES[0], 1.0), (IMAGES[1], 1.0)])
    for i, key in enumerate(("model", "cond", "geometry", "tokens")):
        g[f"cap_{key}"] = {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": [node, i]}}
    outputs = comfy_host.run(g)
    cond = comfy_host.captured["cond"]
    # FLUX.2's VAE: 128 channels at 1/16, so a 64x64 reference is a 4x4 latent of 16 tokens (patch 1).
    assert [tuple(r.shape) for r in cond[0][1]["reference_latents"]] == [(1, 128, 4, 4)] * 2
    assert cond[0][1]["reference_latents_method"] == "index"  # 'auto' is FLUX.2's own method
    assert comfy_host.captured["tokens"] == 32
    assert comfy_host.captured["model"].model.model_config.unet_config["image_model"] == "flux2"
    assert "32 tokens" in outputs[node]["text"][0]


def test_all_weights_one_is_bit_identical_to_core_reference_latent(comfy_host, files):
    g = base_graph()
    add_stitched(g, "ours", [(n, 1.0) for n in IMAGES])
    add_core(g, "core", IMAGES)
    add_stitched(g, "offset", [(n, 1.0) for n in IMAGES], "offset")
    out = sampled(comfy_host, g)
    assert out["ours"].shape == (1, 128, 4, 4)
    assert torch.equal(out["ours"], out["core"])
    assert rel_error(out["offset"], out["ours"]) > 1e-4  # the method reaches the FLUX.2 model


def test_weight_of_last_reference_is_zero_equal_then_monotone(comfy_host, files):
    g = base_graph()
    weights = (0.0, 1e-4, 0.25, 0.5, 1.0, 1.5, 2.0)
    add_stitched(g, "left_out", [(IMAGES[0], 1.0)])
    for w in weights:
        add_stitched(g, f"w{w}", [(IMAGES[0], 1.0), (IMAGES[1], w)])
    out = sampled(comfy_host, g)
    distances = [rel_error(out[f"w{w}"], out["left_out"]) for w in weights]
    assert distances[0] == 0.0, "weight 0 must equal leaving the reference out"
    assert distances[1] < 1e-4, f"weight 1e-4 is {distances[1]:.3g} from left out: the limit is not continuous"
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > 1.3 * distances[weights.index(1.0)], distances


def test_klein_loads_with_core_unet_loader_and_stitches_like_core_reference_latent(comfy_host, klein_file):
    """[klein] through core's UNETLoader: detected as FLUX.2 without a guidance embedding and with the heads of its
    width; the stitcher serves it with FLUX.2's method, and all weights 1 sample bit-identically to core's chained
    ReferenceLatent; another weight changes the result."""
    g = base_graph(klein=True)
    node = add_stitched(g, "ours", [(n, 1.0) for n in IMAGES], guidance=False)
    add_core(g, "core", IMAGES, guidance=False)
    add_stitched(g, "half", [(IMAGES[0], 1.0), (IMAGES[1], 0.5)], guidance=False)
    for i, key in enumerate(("model", "cond")):
        g[f"cap_{key}"] = {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": [node, i]}}
    out = sampled(comfy_host, g)
    config = comfy_host.captured["model"].model.model_config.unet_config
    assert (config["image_model"], config["guidance_embed"], config["num_heads"]) == ("flux2", False, 2)
    cond = comfy_host.captured["cond"]
    assert [tuple(r.shape) for r in cond[0][1]["reference_latents"]] == [(1, 128, 4, 4)] * 2
    assert cond[0][1]["reference_latents_method"] == "index"
    assert out["ours"].shape == (1, 128, 4, 4)
    assert torch.equal(out["ours"], out["core"])
    assert rel_error(out["half"], out["ours"]) > 1e-4  # the weight reaches the klein model


def test_a_flux1_vae_on_flux2_is_refused(comfy_host, files, flux_vae_file):
    from atelier_host import ExecutionFailed

    g = base_graph()
    g["vae"]["inputs"]["vae_name"] = flux_vae_file.name
    add_stitched(g, "bad", [(IMAGES[0], 1.0)])
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(g)
    message = info.value.exception_message
    assert "16-channel" in message and "FLUX.2 samples 128-channel" in message, message


@pytest.mark.parametrize(
    ("image_model", "message"), [("qwen_image", "TextEncodeQwenImageEditPlus"), ("hidream", "'hidream' model")]
)
def test_a_model_the_stitcher_does_not_serve_is_named_in_the_error(comfy_host, files, image_model, message):
    import sys
    from types import SimpleNamespace

    pack_error = sys.modules[f"{comfy_host.pack_module_name}.atelier_core.errors"].AtelierError
    model = SimpleNamespace(
        model=SimpleNamespace(model_config=SimpleNamespace(unet_config={"image_model": image_model}))
    )
    text = [[torch.zeros(1, 8, CONTEXT), {}]]
    with pytest.raises(pack_error, match=message):
        comfy_host.node_class(NODE).execute(model, text, object(), image_1=torch.full((1, 64, 64, 3), 0.5))


LOCK = {
    "fit": "crop",
    "anchor": "center",
    "size_by": "megapixels",
    "megapixels": 0.0625,
    "long_side": 1024,
    "custom_width": 3,
    "custom_height": 2,
    "pad_mode": "edge",
    "pad_color": "#000000",
}


@pytest.mark.parametrize(
    ("size", "latent"),
    [("FLUX.2 (input ratio, 128-ch latent)", (128, 16)), ("Qwen-Image preferred (7 sizes)", (16, 8))],
)
def test_lock_gives_each_models_latent(comfy_host, files, size, latent):
    out = comfy_host.node_class("AtelierAspectLock").execute(torch.rand(1, 300, 451, 3), size, **LOCK)
    _, width, height, _, geo, empty = out.args
    channels, downscale = latent
    assert tuple(empty["samples"].shape) == (1, channels, height // downscale, width // downscale)
    if size.startswith("Qwen"):
        assert (width, height) == (1584, 1056)  # Qwen-Image's 3:2 size (megapixels does not apply to a size list)
    else:
        assert abs(width / height - 451 / 300) < 0.05 and 0.75 * 2**16 <= width * height <= 1.25 * 2**16


@pytest.mark.parametrize("variant", ["dev", "klein"])
def test_restore_and_diff_merge_on_a_flux2_edit(comfy_host, files, request, variant):
    """Lock (FLUX.2 size, crop) -> stitcher -> FLUX.2 sampling on the lock's latent -> decode -> restore -> merge:
    both come back at the original's size. The random model changes every pixel, so the merge is then also fed the
    restored edit with its left half put back to the original: it must keep exactly that half and take the rest."""
    klein = variant == "klein"
    if klein:
        request.getfixturevalue("klein_file")
    comfy_host.fresh_executor()  # the other variant's cached captures of the same original would not run again
    original = "flux2_wide.png"
    rng = np.random.default_rng(5)
    Image.fromarray(rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)).save(comfy_host.input_path(original))
    g = base_graph(klein)
    g["orig"] = {"class_type": "LoadImage", "inputs": {"image": original}}
    g["lock"] = {
        "class_type": "AtelierAspectLock",
        "inputs": {"image": ["orig", 0], "size": "FLUX.2 (input ratio, 128-ch latent)", **LOCK},
    }
    g["stitch"] = {
        "class_type": NODE,
        "inputs": {
            "model": ["loader", 0],
            "conditioning": ["text", 0],
            "vae": ["vae", 0],
            "position_method": "auto",
            "sizing": "keep",
            "fit": "crop",
            "token_budget": 4096,
            "image_1": ["lock", 0],
            "weight_1": 1.0,
        },
    }
    add_sampler(g, "edit", ["stitch", 0], ["stitch", 1], guidance=not klein)
    g["sampler_edit"]["inputs"]["latent_image"] = ["lock", 5]
    g["decode"] = {"class_type": "VAEDecode", "inputs": {"samples": ["sampler_edit", 0], "vae": ["vae", 0]}}
    g["restore"] = {
        "class_type": "AtelierRestoreSize",
        "inputs": {"edited": ["decode", 0], "geometry": ["lock", 4], "original": ["orig", 0]},
    }
    g["merge"] = {
        "class_type": "AtelierDiffMerge",
        "inputs": {
            "original": ["orig", 0],
            "edited": ["restore", 0],
            "threshold": 6.0,
            "formula": "ciede2000",
            "auto_threshold": False,
            "min_area": 64,
            "grow": 6,
            "feather": 12,
            "blend": "alpha",
            "align": False,
            "match_color": False,
            "mask_mode": "add",
            "geometry": ["lock", 4],
        },
    }
    for key, source in (
        ("decoded", ["decode", 0]),
        ("restored", ["restore", 0]),
        ("merged", ["merge", 0]),
        ("hard", ["merge", 1]),
        ("soft", ["merge", 2]),
        ("orig", ["orig", 0]),
    ):
        g[f"cap_{key}"] = {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": source}}
    comfy_host.run(g)
    c = comfy_host.captured
    assert c["decoded"].shape[1:3] != c["orig"].shape[1:3]  # the edit came out at the lock's size
    assert c["restored"].shape == c["merged"].shape == c["orig"].shape == (1, 64, 96, 3)
    assert float(c["hard"].mean()) > 0.9  # a random model's "edit" differs everywhere
    half = c["restored"].clone()
    half[:, :, :48] = c["orig"][:, :, :48]
    inputs = {k: v for k, v in g["merge"]["inputs"].items() if not isinstance(v, list)}
    with torch.inference_mode():
        merged, hard, soft = comfy_host.node_class("AtelierDiffMerge").execute(c["orig"], half, **inputs).args[:3]
    kept = soft[0] == 0
    assert kept[:, :24].all() and not kept[:, 72:].any(), "the reverted half must be kept, the edited half taken"
    assert torch.equal(merged[0][kept], c["orig"][0][kept])
    assert torch.allclose(merged[0][:, 72:], half[0][:, 72:], atol=1e-6)
