"""Kontext Context Stitcher in a real ComfyUI: schema, core-identical references, encode cache, weights, bad input.

The weight properties are checked on the tiny Kontext fixture with core KSampler (euler, 3 steps, 64x64, references
64x64 so 'keep' sizing passes the pixels through untouched). Distances are relative L2 norms of the sampled latents.

Measured tolerances (fp32 on the CPU):
* all weights 1 vs chained core ReferenceLatent: bit-identical (the model is not patched at all);
* weight 0 vs the reference not connected: bit-identical (a weight-0 reference is never attached);
* the attention bias itself at weight 0 (``MASKED_BIAS``) on the last reference vs that reference absent, one
  model call: measured 0.0 (bit-identical on the CPU's attention; bound 1e-5 of the output's max); a weight of 1e-4
  on the last reference, sampled: 6e-6 from the left-out result (bound 1e-4), so the limit w -> 0 is continuous;
* distance from the left-out result, last reference, offset: 0, 6e-6, 0.013, 0.024, 0.040, 0.053, 0.063 for
  w = 0, 1e-4, 0.25, 0.5, 1, 1.5, 2 (index within 2% of these): strictly increasing, as asserted;
* a middle reference: ``offset``/``index`` place later references after it, so w -> 0 (masked, later references
  unmoved) differs from leaving it out (later references move up): 0.016 (offset) / 0.003-0.010 (index) at
  w = 1e-4. Weight 0 itself is exact (the reference is not attached); the distance still rises monotonically.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from atelier_host import ExecutionFailed
from kontext_graphs import rel_error
from PIL import Image

from atelier_core.image import stitch
from atelier_core.testing import synth


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """The tiny model's tensors are far too small for intra-op threads; on a busy 2-core runner they cost 10-20x."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


NODE = "AtelierContextStitcher"
MODEL = "stitch_tiny_fp32.safetensors"
SIZE = 64
IMAGES = ("stitch_a.png", "stitch_b.png", "stitch_c.png", "stitch_d.png")


@pytest.fixture(scope="module")
def files(comfy_host, flux_vae_file):
    path = comfy_host.model_path("diffusion_models", MODEL)
    if not path.is_file():
        synth.write_float(path, synth.kontext_state_dict(synth.TINY, seed=0), "fp32")
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    for i, name in enumerate(IMAGES):
        rng = np.random.default_rng(i)
        smooth = np.stack([np.sin(3 * x + i), np.cos(2 * y - i), x * y], axis=-1) * 0.4 + 0.5
        rgb = np.clip(smooth + rng.normal(0, 0.08, smooth.shape), 0, 1)
        Image.fromarray((rgb * 255).round().astype(np.uint8)).save(comfy_host.input_path(name))
    return {"vae": flux_vae_file.name}


class Graph:
    """One API prompt: a shared loader, VAE, prompt and empty latent; one sampler branch per result to compare."""

    def __init__(self, vae: str, steps: int = 3):
        self.steps = steps
        self.prompt: dict = {
            "loader": {
                "class_type": "AtelierKontextLoader",
                "inputs": {"model_name": MODEL, "compute_dtype": "fp32", "gguf_mode": "auto", "fp8_matmul": False},
            },
            "vae": {"class_type": "VAELoader", "inputs": {"vae_name": vae}},
            "text": {
                "class_type": "AtelierTestTextEncode",
                "inputs": {"text": "paint the cloak red", "tokens": 8, "guidance": 2.5},
            },
            "negative": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["text", 0]}},
            "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": SIZE, "height": SIZE, "batch_size": 1}},
        }

    def image(self, name: str) -> list:
        node = f"load_{name}"
        self.prompt.setdefault(node, {"class_type": "LoadImage", "inputs": {"image": name}})
        return [node, 0]

    def stitcher(self, key: str, refs, method: str = "offset", sizing: str = "keep", conditioning=None, **extra) -> str:
        node = f"stitch_{key}"
        inputs = {
            "model": extra.pop("model", ["loader", 0]),
            "conditioning": conditioning or ["text", 0],
            "vae": ["vae", 0],
            "position_method": method,
            "sizing": sizing,
            "fit": "crop",
            "token_budget": 4096,
            **extra,
        }
        for slot, (name, weight) in enumerate(refs, start=1):
            inputs[f"image_{slot}"] = self.image(name) if isinstance(name, str) else name
            inputs[f"weight_{slot}"] = weight
        self.prompt[node] = {"class_type": NODE, "inputs": inputs}
        return node

    def sample(self, key: str, model: list, positive: list) -> None:
        self.prompt[f"guidance_{key}"] = {
            "class_type": "FluxGuidance",
            "inputs": {"conditioning": positive, "guidance": 2.5},
        }
        self.prompt[f"sampler_{key}"] = {
            "class_type": "KSampler",
            "inputs": {
                "model": model,
                "seed": 7,
                "steps": self.steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": [f"guidance_{key}", 0],
                "negative": ["negative", 0],
                "latent_image": ["empty", 0],
                "denoise": 1.0,
            },
        }
        self.prompt[f"capture_{key}"] = {
            "class_type": "AtelierTestCapture",
            "inputs": {"key": key, "value": [f"sampler_{key}", 0]},
        }

    def stitched(self, key: str, refs, method: str = "offset", **kw) -> str:
        node = self.stitcher(key, refs, method, **kw)
        self.sample(key, [node, 0], [node, 1])
        return node

    def core(self, key: str, names, method: str | None = None) -> None:
        """The same references through core VAEEncode -> chained ReferenceLatent (-> multi-reference method)."""
        cond = ["text", 0]
        for i, name in enumerate(names):
            self.prompt[f"enc_{key}_{i}"] = {
                "class_type": "VAEEncode",
                "inputs": {"pixels": self.image(name), "vae": ["vae", 0]},
            }
            self.prompt[f"ref_{key}_{i}"] = {
                "class_type": "ReferenceLatent",
                "inputs": {"conditioning": cond, "latent": [f"enc_{key}_{i}", 0]},
            }
            cond = [f"ref_{key}_{i}", 0]
        if method is not None:
            self.prompt[f"method_{key}"] = {
                "class_type": "FluxKontextMultiReferenceLatentMethod",
                "inputs": {"conditioning": cond, "reference_latents_method": method},
            }
            cond = [f"method_{key}", 0]
        self.sample(key, ["loader", 0], cond)


def sampled(host, graph: Graph) -> dict[str, torch.Tensor]:
    outputs = host.run(graph.prompt)
    latents = {k: v["samples"].clone() for k, v in host.captured.items() if isinstance(v, dict) and "samples" in v}
    latents["_outputs"] = outputs
    return latents


# -- schema ------------------------------------------------------------------------------------------------------------


def test_schema(comfy_host):
    info = comfy_host.object_info(NODE)
    assert info["display_name"] == "Kontext Context Stitcher"
    assert info["category"] == "Kontext Atelier/Conditioning"
    assert info["description"]
    required, optional = info["input"]["required"], info["input"].get("optional", {})
    for name in (
        "model",
        "conditioning",
        "vae",
        "position_method",
        "sizing",
        "fit",
        "token_budget",
        "image_1",
        "weight_1",
    ):
        assert name in required, name
    for slot in range(2, stitch.MAX_REFERENCES + 1):
        assert f"image_{slot}" in optional and f"weight_{slot}" in optional
    assert f"image_{stitch.MAX_REFERENCES + 1}" not in optional
    assert required["position_method"][1]["options"] == ["auto", "offset", "index", "pixel_stitch"]
    weight = required["weight_1"][1]
    assert (weight["min"], weight["max"], weight["default"]) == (0.0, 2.0, 1.0)
    assert info["output"] == ["MODEL", "CONDITIONING", "KONTEXT_GEOMETRY", "INT"]
    for section in (required, optional):
        for name, spec in section.items():
            assert spec[1].get("tooltip"), name
    assert all(info["output_tooltips"])


# -- execution ---------------------------------------------------------------------------------------------------------


def test_conditioning_geometry_tokens_and_preview(comfy_host, files):
    g = Graph(files["vae"])
    node = g.stitcher("s", [(IMAGES[0], 1.0), (IMAGES[1], 1.0)], sizing="token budget", token_budget=24)
    for i, key in enumerate(("model", "cond", "geometry", "tokens")):
        g.prompt[f"cap_{key}"] = {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": [node, i]}}
    g.prompt["cap_plain"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "plain", "value": ["loader", 0]}}
    outputs = comfy_host.run(g.prompt)
    cond = comfy_host.captured["cond"]
    refs = cond[0][1]["reference_latents"]
    # 24 tokens shared by two references: 12 each -> 3x3 tokens -> 48x48 pixels -> a 6x6 latent.
    assert [tuple(r.shape) for r in refs] == [(1, 16, 6, 6)] * 2
    assert cond[0][1]["reference_latents_method"] == "offset"
    assert "model_conds" not in cond[0][1]  # all weights 1: nothing for the model to do
    assert comfy_host.captured["model"] is comfy_host.captured["plain"]  # and the model passes through untouched
    assert comfy_host.captured["tokens"] == 18
    geo = comfy_host.captured["geometry"]
    assert geo.original_size == (SIZE, SIZE) and geo.target_size == (48, 48)
    assert "18 tokens" in outputs[node]["text"][0]


class _ShapeVAE:
    """Stands in for the VAE where only shapes matter (a 1 MP encode of the random VAE takes minutes on a CPU)."""

    def __init__(self):
        self.calls = 0

    def encode(self, pixels):
        self.calls += 1
        return torch.zeros(pixels.shape[0], 16, pixels.shape[1] // 8, pixels.shape[2] // 8)


def test_bucket_sizing_and_crop_geometry(comfy_host):
    cls = comfy_host.node_class(NODE)
    text = [[torch.zeros(1, 8, 4096), {"pooled_output": torch.zeros(1, 768)}]]
    wide = torch.rand(1, 460, 700, 3, generator=torch.Generator().manual_seed(1))
    out = cls.execute(
        object(), text, _ShapeVAE(), "index", "bucket", "crop", 4096, image_1=wide, image_2=_image(1, 64, 64, 3)
    )
    _, cond, geo, tokens = out.args
    assert [tuple(r.shape) for r in cond[0][1]["reference_latents"]] == [(1, 16, 104, 156), (1, 16, 128, 128)]
    assert cond[0][1]["reference_latents_method"] == "index"
    assert tokens == 52 * 78 + 64 * 64
    assert geo.target_size == (1248, 832) and geo.is_cropped  # core's bucket for 700x460, centre-cropped as core
    assert geo.crop_box == stitch.reference_geometry(700, 460, "bucket").crop_box
    assert f"{tokens} tokens" in out.ui.as_dict()["text"][0]


def test_all_weights_one_is_bit_identical_to_core_reference_latent(comfy_host, files):
    g = Graph(files["vae"])
    names = [IMAGES[0], IMAGES[1]]
    for method in ("offset", "index"):
        g.stitched(f"ours_{method}", [(n, 1.0) for n in names], method)
        g.core(f"core_{method}", names, None if method == "offset" else method)
    out = sampled(comfy_host, g)
    for method in ("offset", "index"):
        assert torch.equal(out[f"ours_{method}"], out[f"core_{method}"]), method
    assert rel_error(out["ours_offset"], out["ours_index"]) > 1e-4  # the method reached the model


@pytest.mark.parametrize("method", ["offset", "index"])
def test_weight_of_last_reference_is_zero_equal_then_monotone(comfy_host, files, method):
    g = Graph(files["vae"])
    weights = (0.0, 1e-4, 0.25, 0.5, 1.0, 1.5, 2.0)
    g.stitched("left_out", [(IMAGES[0], 1.0)], method)
    for w in weights:
        g.stitched(f"w{w}", [(IMAGES[0], 1.0), (IMAGES[1], w)], method)
    out = sampled(comfy_host, g)
    left = out["left_out"]
    distances = [rel_error(out[f"w{w}"], left) for w in weights]
    assert distances[0] == 0.0, "weight 0 must equal leaving the reference out"
    assert distances[1] < 1e-4, f"weight 1e-4 is {distances[1]:.3g} from left out: the limit is not continuous"
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    assert distances[-1] > 1.3 * distances[weights.index(1.0)], "weight 2 barely differs from weight 1"


def test_weights_on_several_references_with_index(comfy_host, files):
    """Weighting a middle reference (two others around it), and two weighted references at once."""
    g = Graph(files["vae"], steps=2)
    weights = (0.0, 0.25, 1.0, 2.0)
    g.stitched("left_out", [(IMAGES[0], 1.0), (IMAGES[2], 1.0)], "index")
    for w in weights:
        g.stitched(f"w{w}", [(IMAGES[0], 1.0), (IMAGES[1], w), (IMAGES[2], 1.0)], "index")
    g.stitched("both", [(IMAGES[0], 0.5), (IMAGES[1], 2.0), (IMAGES[2], 1.0)], "index")
    out = sampled(comfy_host, g)
    distances = [rel_error(out[f"w{w}"], out["left_out"]) for w in weights]
    assert distances[0] == 0.0
    assert all(a < b for a, b in zip(distances, distances[1:], strict=False)), distances
    both = out["both"]
    assert torch.isfinite(both).all()
    assert rel_error(both, out["w1.0"]) > 1e-3 and rel_error(both, out["w2.0"]) > 1e-3


def test_pixel_stitch_with_weights(comfy_host, files):
    g = Graph(files["vae"], steps=2)
    g.stitched("alone", [(IMAGES[0], 1.0)], "pixel_stitch")
    for w in (0.0, 0.5, 1.0, 2.0):
        g.stitched(f"w{w}", [(IMAGES[0], 1.0), (IMAGES[1], w)], "pixel_stitch")
    node = g.stitcher("shape", [(IMAGES[0], 1.0), (IMAGES[1], 1.0)], "pixel_stitch")
    g.prompt["cap_cond"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": [node, 1]}}
    out = sampled(comfy_host, g)
    (latent,) = comfy_host.captured["cond"][0][1]["reference_latents"]
    assert tuple(latent.shape) == (1, 16, SIZE // 8, 2 * SIZE // 8)  # one latent, the two side by side
    assert torch.equal(out["w0.0"], out["alone"])
    d = [rel_error(out[f"w{w}"], out["w1.0"]) for w in (0.5, 2.0)]
    assert min(d) > 1e-3, d
    from_alone = [rel_error(out[f"w{w}"], out["alone"]) for w in (0.5, 1.0, 2.0)]  # measured 0.044, 0.053, 0.075
    assert from_alone == sorted(from_alone), from_alone


def test_weights_survive_gguf_bf16_and_a_lora_loader_after_the_stitcher(comfy_host, files):
    """The patch is a wrapper on the ModelPatcher: a GGUF file computed in bf16, then a LoRA loader on the stitcher's
    model output, keep it (the clone copies it), and weights act as in fp32 within the format's own error."""
    from safetensors.torch import save_file

    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    gguf = comfy_host.model_path("diffusion_models", "stitch_tiny_Q8_0.gguf")
    if not gguf.is_file():
        synth.write_gguf(gguf, sd, "Q8_0")
    save_file(
        synth.lora_state_dict(sd, rank=4, seed=10), str(comfy_host.model_path("loras", "stitch_lora.safetensors"))
    )
    g = Graph(files["vae"], steps=2)
    for name, file, dtype in (("fp32", MODEL, "fp32"), ("gguf", gguf.name, "bf16")):
        g.prompt[f"loader_{name}"] = {
            "class_type": "AtelierKontextLoader",
            "inputs": {"model_name": file, "compute_dtype": dtype, "gguf_mode": "on_the_fly", "fp8_matmul": False},
        }
        for w in (0.5, 1.0):
            key = f"{name}_{w}"
            node = g.stitcher(key, [(IMAGES[0], 1.0), (IMAGES[1], w)], model=[f"loader_{name}", 0])
            g.prompt[f"lora_{key}"] = {
                "class_type": "LoraLoaderModelOnly",
                "inputs": {"model": [node, 0], "lora_name": "stitch_lora.safetensors", "strength_model": 1.0},
            }
            g.sample(key, [f"lora_{key}", 0], [node, 1])
    out = sampled(comfy_host, g)
    effect = rel_error(out["fp32_0.5"], out["fp32_1.0"])
    assert effect > 1e-3
    # bf16 compute on the tiny random model drifts from fp32 by about 0.26 with or without weights; the patch must
    # add nothing to that drift, and the weight's effect must be the same size.
    assert rel_error(out["gguf_0.5"], out["fp32_0.5"]) <= 1.1 * rel_error(out["gguf_1.0"], out["fp32_1.0"]) + 1e-3
    assert abs(rel_error(out["gguf_0.5"], out["gguf_1.0"]) - effect) < 0.3 * effect  # the same weight effect


def test_mask_at_weight_zero_equals_absent_last_reference(comfy_host, files):
    """The model patch itself: MASKED_BIAS on the last reference's keys == that reference not being there."""
    import comfy.patcher_extension

    g = Graph(files["vae"])
    node = g.stitcher("s", [(IMAGES[0], 1.0), (IMAGES[1], 0.5)])
    g.prompt["cap_model"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "model", "value": [node, 0]}}
    g.prompt["cap_cond"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": [node, 1]}}
    comfy_host.run(g.prompt)
    patcher, cond = comfy_host.captured["model"], comfy_host.captured["cond"]
    refs = cond[0][1]["reference_latents"]
    wrappers = patcher.wrappers[comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL]
    options = {"wrappers": {comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL: wrappers}}
    flux = patcher.model.diffusion_model
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 16, SIZE // 8, SIZE // 8, generator=gen)
    context = torch.randn(1, 8, 4096, generator=gen)
    args = {"y": torch.randn(1, 768, generator=gen), "guidance": torch.tensor([2.5]), "transformer_options": options}
    t = torch.tensor([0.5])
    with torch.no_grad():
        absent = flux(x, t, context, ref_latents=refs[:1], **args)
        masked = flux(x, t, context, ref_latents=refs, atelier_reference_weights=((), ((0, 0, 99, 99, 0.0),)), **args)
        unmasked = flux(x, t, context, ref_latents=refs, **args)
    assert float((masked - absent).abs().max() / absent.abs().max()) < 1e-5
    assert rel_error(unmasked, absent) > 1e-3


def test_weights_need_the_model_output_and_chain(comfy_host, files):
    """The patched model is a clone carrying one wrapper; a second stitcher extends the weight list, not the patch."""
    import comfy.patcher_extension

    g = Graph(files["vae"])
    first = g.stitcher("one", [(IMAGES[0], 0.5)])
    g.prompt["stitch_two"] = {
        "class_type": NODE,
        "inputs": {
            "model": [first, 0],
            "conditioning": [first, 1],
            "vae": ["vae", 0],
            "position_method": "offset",
            "sizing": "keep",
            "fit": "crop",
            "token_budget": 4096,
            "image_1": g.image(IMAGES[1]),
            "weight_1": 1.0,
            "image_2": g.image(IMAGES[2]),
            "weight_2": 2.0,
        },
    }
    g.prompt["cap_model"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "model", "value": ["stitch_two", 0]}}
    g.prompt["cap_plain"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "plain", "value": ["loader", 0]}}
    g.prompt["cap_cond"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": ["stitch_two", 1]}}
    comfy_host.run(g.prompt)
    kind = comfy_host.captured["model"].wrappers[comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL]
    assert len(kind["atelier_reference_weights"]) == 1
    assert not comfy_host.captured["plain"].wrappers.get(comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL)
    d = comfy_host.captured["cond"][0][1]
    assert len(d["reference_latents"]) == 3
    assert d["model_conds"]["atelier_reference_weights"].cond == (
        ((0, 0, 4, 4, 0.5),),
        (),
        ((0, 0, 4, 4, 2.0),),
    )


# -- cache -------------------------------------------------------------------------------------------------------------


def test_unchanged_reference_is_not_encoded_again(comfy_host, files, monkeypatch):
    import sys

    import comfy.sd

    sys.modules[f"{comfy_host.pack_module_name}.comfy_glue.reference_weights"].clear_encode_cache()
    calls = []
    real = comfy.sd.VAE.encode

    def counting(self, pixels):
        calls.append(tuple(pixels.shape))
        return real(self, pixels)

    monkeypatch.setattr(comfy.sd.VAE, "encode", counting)

    def run(refs):
        g = Graph(files["vae"])
        node = g.stitcher("s", refs)
        g.prompt["cap"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": [node, 1]}}
        comfy_host.run(g.prompt)
        return comfy_host.captured["cond"][0][1]["reference_latents"]

    first = run([(IMAGES[0], 1.0), (IMAGES[1], 1.0)])
    assert len(calls) == 2
    again = run([(IMAGES[0], 0.5), (IMAGES[1], 1.0)])  # the node runs again (a weight changed); no new encode
    assert len(calls) == 2
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    run([(IMAGES[0], 0.5), (IMAGES[2], 1.0)])  # only the changed image is encoded
    assert len(calls) == 3
    run([(IMAGES[1], 1.0), (IMAGES[0], 2.0)])  # order and weights changed: still no encode
    assert len(calls) == 3
    comfy_host.fresh_executor()  # the VAE is loaded again: another VAE object, so its latents are computed anew
    run([(IMAGES[0], 1.0), (IMAGES[1], 1.0)])
    assert len(calls) == 5


# -- bad input ---------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def direct(comfy_host, files):
    """Call the node's execute directly (shapes a LoadImage cannot produce) with a real VAE and model."""
    g = Graph(files["vae"])
    g.prompt["cap_vae"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "vae", "value": ["vae", 0]}}
    g.prompt["cap_model"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "model", "value": ["loader", 0]}}
    g.prompt["cap_text"] = {"class_type": "AtelierTestCapture", "inputs": {"key": "text", "value": ["text", 0]}}
    comfy_host.run(g.prompt)
    cls = comfy_host.node_class(NODE)
    vae, model, text = (comfy_host.captured[k] for k in ("vae", "model", "text"))

    def call(**refs):
        with torch.inference_mode():  # as ComfyUI's executor runs nodes
            return cls.execute(model, text, vae, "offset", "keep", "crop", 4096, **refs)

    return call


def _image(*shape) -> torch.Tensor:
    return torch.full(shape, 0.5)


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        ({"image_1": _image(0, 64, 64, 3)}, "empty batch"),
        ({"image_1": _image(1, 0, 64, 3)}, "empty (64x0"),
        ({"image_1": _image(1, 64, 0, 3)}, "empty (0x64"),
        ({"image_1": _image(1, 1, 1, 3)}, "single pixel"),
        ({"image_1": torch.zeros(1, 1, 1, 3).expand(1, 4100, 4100, 3)}, "million pixels"),
        ({"image_1": _image(2, 64, 64, 3), "image_2": _image(3, 64, 64, 3)}, "image_2 has 3"),
        ({"image_1": _image(1, 64, 64, 3), "image_9": _image(1, 64, 64, 3)}, "at most 8 references"),
        ({"image_1": _image(1, 64, 64, 3), "weight_1": 2.5}, "weight_1 must be between 0 and 2"),
        ({"image_1": _image(1, 64, 64, 2)}, "2 channels"),
        ({"image_2": _image(1, 64, 64, 3)}, "image_1 is required"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(comfy_host, direct, refs, message):
    import sys

    # ComfyUI loads the pack under a path-derived name: its AtelierError is that copy's class.
    pack_error = sys.modules[f"{comfy_host.pack_module_name}.atelier_core.errors"].AtelierError
    with pytest.raises(pack_error) as info:
        direct(**refs)
    assert "Kontext Context Stitcher" in str(info.value)
    assert message in str(info.value), str(info.value)


def test_one_image_batches_are_shared_and_equal_batches_accepted(direct):
    out = direct(image_1=_image(2, 64, 64, 3), image_2=_image(1, 64, 64, 3), image_3=_image(2, 48, 80, 4))
    refs = out.args[1][0][1]["reference_latents"]
    assert [r.shape[0] for r in refs] == [2, 1, 2]
    assert out.args[3] == 16 + 16 + 15


def test_more_than_eight_references_in_the_graph(comfy_host, files):
    g = Graph(files["vae"])
    first = g.stitcher("one", [(IMAGES[i % 4], 1.0) for i in range(5)])
    g.stitched("two", [(IMAGES[i % 4], 1.0) for i in range(4)], conditioning=[first, 1])
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(g.prompt)
    message = info.value.exception_message
    assert "Kontext Context Stitcher" in message and "more than 8" in message


def test_mismatched_batches_in_the_graph(comfy_host, files):
    g = Graph(files["vae"])
    g.prompt["batch3"] = {"class_type": "RepeatImageBatch", "inputs": {"image": g.image(IMAGES[1]), "amount": 3}}
    g.prompt["batch2"] = {"class_type": "RepeatImageBatch", "inputs": {"image": g.image(IMAGES[0]), "amount": 2}}
    g.stitched("s", [(["batch2", 0], 1.0), (["batch3", 0], 1.0)])
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(g.prompt)
    assert "Kontext Context Stitcher" in info.value.exception_message
    assert "image_1 has 2, image_2 has 3" in info.value.exception_message


def test_weights_work_with_compiled_blocks(comfy_host, files):
    """Kontext Compile Blocks after the stitcher: the attention bias reaches the compiled blocks, so a weighted
    reference samples what the eager model samples."""
    g = Graph(files["vae"], steps=2)
    node = g.stitcher("weighted", [(IMAGES[0], 1.0), (IMAGES[1], 0.5)])
    g.sample("eager", [node, 0], [node, 1])
    g.prompt["compile"] = {"class_type": "AtelierCompileBlocks", "inputs": {"model": [node, 0], "mode": "default"}}
    g.sample("compiled", ["compile", 0], [node, 1])
    g.stitched("unweighted", [(IMAGES[0], 1.0), (IMAGES[1], 1.0)])
    out = sampled(comfy_host, g)
    assert rel_error(out["eager"], out["unweighted"]) > 1e-3  # the weight acts ...
    assert rel_error(out["compiled"], out["eager"]) < 1e-4  # ... and acts the same in the compiled blocks
