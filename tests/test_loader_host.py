"""Kontext Loader in a real ComfyUI: every format samples through core KSampler with a reference latent.

Reference: the same random weights in fp32. Each stored format must reproduce its sampled latent within a bound set
by the format's own weight error (stated per format below).
"""

from __future__ import annotations

import sys

import pytest
import torch
from atelier_host import ExecutionFailed, PromptInvalid
from kontext_graphs import edit_graph, forward_once, rel_error

from atelier_core.testing import synth

# Relative L2 error of the sampled latent (3 euler steps) against the same weights in fp32, per stored format.
# Each bound is about twice the error measured on 2026-11-22 (tests/test_loader_host.py, 2-core CPU); a model with
# other random weights lands at 1.08, so every bound is far below "wrong weights".
TOLERANCE = {
    "bf16": 0.005,  # measured 0.0022
    "fp16": 0.001,  # 0.0003
    "fp32_prefixed": 1e-6,  # 0 (same weights, ComfyUI prefix)
    "fp8_e4m3fn": 0.08,  # 0.039
    "fp8_e5m2": 0.15,  # 0.071
    "scaled_fp8": 0.08,  # 0.038
}
GGUF_TOLERANCE = {
    "F16": 0.0005,  # 0.00012
    "BF16": 0.002,  # 0.0009
    "Q8_0": 0.006,  # 0.0029
    "Q6_K": 0.02,  # 0.010
    "Q5_1": 0.045,  # 0.022
    "Q5_0": 0.05,  # 0.025
    "Q5_K": 0.045,  # 0.021
    "Q4_1": 0.09,  # 0.044
    "Q4_0": 0.09,  # 0.046
    "Q4_K": 0.085,  # 0.042
    "IQ4_NL": 0.09,  # 0.044
    "IQ4_XS": 0.09,  # 0.043
    "Q3_K": 0.165,  # 0.082
    "Q2_K": 0.33,  # 0.165
}


@pytest.fixture(scope="session")
def tiny_sd():
    return synth.kontext_state_dict(synth.TINY, seed=0)


@pytest.fixture(scope="session")
def model_files(comfy_host, tiny_sd):
    folder = comfy_host.model_path("diffusion_models", "")
    files = {
        "fp32": synth.write_float(folder / "tiny_fp32.safetensors", tiny_sd, "fp32"),
        "bf16": synth.write_float(folder / "tiny_bf16.safetensors", tiny_sd, "bf16"),
        "fp16": synth.write_float(folder / "tiny_fp16.safetensors", tiny_sd, "fp16"),
        "fp32_prefixed": synth.write_float(
            folder / "sub" / "tiny_prefixed.safetensors", tiny_sd, "fp32", prefix="model.diffusion_model."
        ),
        "fp8_e4m3fn": synth.write_fp8(folder / "tiny_fp8_e4m3fn.safetensors", tiny_sd, "fp8_e4m3fn"),
        "fp8_e5m2": synth.write_fp8(folder / "tiny_fp8_e5m2.safetensors", tiny_sd, "fp8_e5m2"),
        "scaled_fp8": synth.write_scaled_fp8(folder / "tiny_scaled_fp8.safetensors", tiny_sd),
    }
    for qtype in GGUF_TOLERANCE:
        files[f"gguf_{qtype}"] = synth.write_gguf(folder / f"tiny_{qtype}.gguf", tiny_sd, qtype)
    files["gguf_prefixed"] = synth.write_gguf(
        folder / "tiny_prefixed_Q8_0.gguf", tiny_sd, "Q8_0", prefix="model.diffusion_model."
    )
    return {k: str(p.relative_to(folder)) for k, p in files.items()}


@pytest.fixture(scope="session")
def reference_latent(comfy_host, model_files):
    comfy_host.run(edit_graph(model_files["fp32"]))
    latent = comfy_host.captured["latent"]["samples"].float()
    assert latent.shape == (1, 16, 8, 8)
    assert torch.isfinite(latent).all()
    return latent


@pytest.mark.parametrize("fmt", sorted(TOLERANCE))
def test_format_samples_close_to_fp32(comfy_host, model_files, reference_latent, fmt):
    outputs = comfy_host.run(edit_graph(model_files[fmt]))
    latent = comfy_host.captured["latent"]["samples"]
    assert latent.shape == reference_latent.shape
    assert torch.isfinite(latent).all()
    err = rel_error(latent, reference_latent)
    assert err <= TOLERANCE[fmt], f"{fmt}: relative error {err:.4g} > {TOLERANCE[fmt]}"
    summary = outputs["loader"]["text"][0]
    assert "2+2 blocks" in summary and "hidden 256" in summary


# Every type dequantized on the fly; materializing is type-independent, so it is checked on two types. fp8
# materialization adds fp8 rounding of the weights (per channel) on top of the GGUF's error.
GGUF_CASES = [(q, "on_the_fly") for q in sorted(GGUF_TOLERANCE)] + [
    (q, mode) for q in ("Q8_0", "Q4_K") for mode in ("materialize", "materialize_fp8")
]


def _gguf_tolerance(qtype: str, mode: str) -> float:
    return GGUF_TOLERANCE[qtype] + (TOLERANCE["fp8_e4m3fn"] if mode == "materialize_fp8" else 0.0)


@pytest.mark.parametrize("qtype, mode", GGUF_CASES)
def test_gguf_samples_close_to_fp32(comfy_host, model_files, reference_latent, qtype, mode):
    outputs = comfy_host.run(edit_graph(model_files[f"gguf_{qtype}"], gguf_mode=mode))
    latent = comfy_host.captured["latent"]["samples"]
    err = rel_error(latent, reference_latent)
    bound = _gguf_tolerance(qtype, mode)
    assert err <= bound, f"{qtype}/{mode}: relative error {err:.4g} > {bound}"
    summary = outputs["loader"]["text"][0]
    assert "gguf" in summary and ("on the fly" in summary) == (mode == "on_the_fly")
    assert ("fp8 weights" in summary) == (mode == "materialize_fp8")


def test_gguf_with_prefix_loads(comfy_host, model_files, reference_latent):
    comfy_host.run(edit_graph(model_files["gguf_prefixed"]))
    assert rel_error(comfy_host.captured["latent"]["samples"], reference_latent) <= GGUF_TOLERANCE["Q8_0"]


def test_sampling_is_not_trivially_equal(comfy_host, model_files, reference_latent):
    """The check above could pass on a constant output; another seed must give another latent."""
    comfy_host.run(edit_graph(model_files["fp32"], seed=8))
    other = comfy_host.captured["latent"]["samples"]
    assert rel_error(other, reference_latent) > 0.5


@pytest.mark.parametrize("name", ["../../etc/passwd", "not_there.gguf"])
def test_unknown_or_escaping_name_is_refused(comfy_host, name):
    """ComfyUI 0.3.64 does not check V3 combo values, so the node's own validation refuses the prompt, before
    anything runs, naming the file and the folder it goes in."""
    with pytest.raises(PromptInvalid) as info:
        comfy_host.run(edit_graph(name))
    details = [e["details"] for errors in info.value.node_errors.values() for e in errors["errors"]]
    assert any(
        f"Kontext Loader: model file {name} is missing" in d and "models/diffusion_models/" in d for d in details
    )


def test_symlinked_model_file_on_another_disk_loads(comfy_host, tiny_sd, reference_latent, tmp_path_factory):
    """A model folder entry that links to a file elsewhere (another disk) is listed and loads, as in ComfyUI."""
    elsewhere = tmp_path_factory.mktemp("other_disk") / "kontext_fp32.safetensors"
    synth.write_float(elsewhere, tiny_sd, "fp32")
    link = comfy_host.model_path("diffusion_models", "linked_fp32.safetensors")
    link.symlink_to(elsewhere)
    try:
        options = comfy_host.object_info("AtelierKontextLoader")["input"]["required"]["model_name"]
        assert "linked_fp32.safetensors" in str(options)
        comfy_host.run(edit_graph("linked_fp32.safetensors"))
        assert rel_error(comfy_host.captured["latent"]["samples"], reference_latent) < 1e-6
    finally:
        link.unlink()


def test_dotdot_name_never_reads_a_file_above_the_folder(comfy_host, tiny_sd):
    """A valid model one level above the model folder is not reachable with ``../`` (ComfyUI 0.3.64 passes
    unchecked V3 combo values to the node)."""
    above = comfy_host.model_path("diffusion_models", "").parent / "above_fp32.safetensors"
    synth.write_float(above, tiny_sd, "fp32")
    try:
        with pytest.raises(PromptInvalid) as info:
            comfy_host.run(edit_graph("../above_fp32.safetensors"))
        assert "model file ../above_fp32.safetensors is missing" in str(info.value.node_errors)
    finally:
        above.unlink()


def test_bad_file_gives_one_clear_error_and_next_item_works(comfy_host, model_files, reference_latent):
    folder = comfy_host.model_path("diffusion_models", "")
    bad = folder / "pickle_renamed.safetensors"
    bad.write_bytes(b"\x80\x04\x95" + b"\x00" * 64)
    graph = edit_graph("pickle_renamed.safetensors")
    # The file list is read whenever ComfyUI asks for the schema, so a new file is offered at once.
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(graph)
    assert "pickle_renamed.safetensors" in info.value.exception_message
    assert "pickle" in info.value.exception_message
    comfy_host.run(edit_graph(model_files["fp32"]))
    assert rel_error(comfy_host.captured["latent"]["samples"], reference_latent) < 1e-6


# -- LoRA -------------------------------------------------------------------------------------------------------------

# The same bounds as without LoRA: the LoRA is applied to the dequantized weight exactly as to the fp32 one.
LORA_FORMATS = {"gguf_Q8_0": 0.006, "gguf_Q4_K": 0.085, "fp8_e4m3fn": 0.08, "scaled_fp8": 0.08, "bf16": 0.005}


@pytest.fixture(scope="session")
def lora_files(comfy_host, tiny_sd):
    from safetensors.torch import save_file

    names = []
    for i, targets in enumerate((("img_attn.qkv", "linear1"), ("txt_mlp.0", "linear2"))):
        lora = synth.lora_state_dict(tiny_sd, rank=4, seed=10 + i, targets=targets)
        name = f"tiny_lora_{i}.safetensors"
        save_file(lora, str(comfy_host.model_path("loras", name)))
        names.append(name)
    return names


@pytest.fixture(scope="session")
def lora_reference(comfy_host, model_files, lora_files):
    stack = ((lora_files[0], 0.8), (lora_files[1], 1.0))
    comfy_host.run(edit_graph(model_files["fp32"], loras=stack))
    return stack, comfy_host.captured["latent"]["samples"].clone()


def test_lora_changes_the_result(lora_reference, reference_latent):
    _, with_lora = lora_reference
    assert rel_error(with_lora, reference_latent) > 0.2


@pytest.mark.parametrize("fmt", sorted(LORA_FORMATS))
def test_stacked_loras_match_fp32(comfy_host, model_files, lora_reference, fmt):
    stack, expected = lora_reference
    comfy_host.run(edit_graph(model_files[fmt], loras=stack))
    latent = comfy_host.captured["latent"]["samples"]
    err = rel_error(latent, expected)
    assert err <= LORA_FORMATS[fmt], f"{fmt} + 2 LoRAs: relative error {err:.4g} > {LORA_FORMATS[fmt]}"
    comfy_host.run(edit_graph(model_files[fmt]))
    without = comfy_host.captured["latent"]["samples"]
    assert rel_error(without, expected) > 2 * LORA_FORMATS[fmt], "the LoRA made no measurable difference"


def test_gguf_lora_is_applied_once_not_per_step(comfy_host, model_files, lora_files, monkeypatch):
    """ComfyUI computes the patched weight at load; more steps must not mean more LoRA computations."""
    import comfy.lora

    calls = {"n": 0}
    real = comfy.lora.calculate_weight

    def counting(*args, **kwargs):
        calls["n"] += 1
        return real(*args, **kwargs)

    monkeypatch.setattr(comfy.lora, "calculate_weight", counting)
    counts = []
    for steps in (2, 6):
        comfy_host.fresh_executor()
        calls["n"] = 0
        comfy_host.run(edit_graph(model_files["gguf_Q4_K"], loras=((lora_files[0], 1.0),), steps=steps))
        counts.append(calls["n"])
    assert counts[0] > 0, "the LoRA was never applied"
    assert counts[0] == counts[1], f"LoRA work grew with steps: {counts}"


# -- memory management ------------------------------------------------------------------------------------------------


def test_repeated_runs_and_model_swaps_do_not_leak(comfy_host, model_files):
    """Ten queue items alternating two loaders (GGUF and fp8) with unloads between: loaded models and RSS stay flat."""
    import gc

    import comfy.model_management as mm
    import psutil

    proc = psutil.Process()
    rss = []
    for i in range(10):
        name = model_files["gguf_Q4_K"] if i % 2 else model_files["fp8_e4m3fn"]
        comfy_host.run(edit_graph(name, steps=1, seed=i))
        if i % 3 == 2:
            mm.unload_all_models()
        gc.collect()
        rss.append(proc.memory_info().rss)
        assert len(mm.current_loaded_models) <= 2
    growth = rss[-1] - rss[2]
    assert growth < 64 * 1024**2, f"RSS grew by {growth / 2**20:.1f} MiB over 7 runs: {[r >> 20 for r in rss]}"


# -- files and folders ------------------------------------------------------------------------------------------------


def test_combo_lists_gguf_and_safetensors_from_extra_folders(comfy_host, model_files, tmp_path, tiny_sd):
    """Folders added the way extra_model_paths.yaml adds them are listed, .gguf and .safetensors alike."""
    import folder_paths

    extra = tmp_path / "extra_unet"
    synth.write_float(extra / "extra_model.safetensors", tiny_sd, "bf16")
    (extra / "notes.txt").write_text("not a model")
    folder_paths.add_model_folder_path("unet", str(extra))
    info = comfy_host.object_info("AtelierKontextLoader")
    options = info["input"]["required"]["model_name"][1]["options"]
    assert "extra_model.safetensors" in options
    assert model_files["gguf_Q4_K"] in options and model_files["bf16"] in options
    assert "notes.txt" not in options


def test_truncated_gguf_fails_fast_with_file_name(comfy_host, model_files, reference_latent):
    import time

    good = comfy_host.model_path("diffusion_models", model_files["gguf_Q8_0"])
    bad = comfy_host.model_path("diffusion_models", "truncated_Q8_0.gguf")
    bad.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    start = time.perf_counter()
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph("truncated_Q8_0.gguf"))
    assert time.perf_counter() - start < 5.0
    assert "truncated_Q8_0.gguf" in info.value.exception_message
    assert "Kontext Loader" in info.value.exception_message


def test_other_architecture_is_refused(comfy_host, tiny_sd):
    from safetensors.torch import save_file

    vae_like = {
        "decoder.conv_in.weight": torch.zeros(512, 16, 3, 3),
        "encoder.down.0.block.0.conv1.weight": torch.zeros(4, 4),
    }
    save_file(vae_like, str(comfy_host.model_path("diffusion_models", "a_vae.safetensors")))
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph("a_vae.safetensors"))
    assert "VAE" in info.value.exception_message and "a_vae.safetensors" in info.value.exception_message


@pytest.mark.parametrize("requested", ["bf16", "fp16"])
def test_gguf_and_safetensors_compute_in_the_same_dtype(comfy_host, model_files, requested):
    """A requested dtype the device cannot compute in is upcast the same way for GGUF as ComfyUI does for bf16."""
    gguf_summary = comfy_host.run(edit_graph(model_files["gguf_Q8_0"], compute_dtype=requested))["loader"]["text"][0]
    st_summary = comfy_host.run(edit_graph(model_files["fp32"], compute_dtype=requested))["loader"]["text"][0]
    assert gguf_summary.split("compute ")[1].split(";")[0] == st_summary.split("compute ")[1].split(";")[0]


def test_two_loaders_in_one_graph(comfy_host, model_files, reference_latent):
    """A GGUF and an fp8 loader side by side, each feeding its own sampler, in one queue item."""
    graph = edit_graph(model_files["gguf_Q8_0"])
    second = edit_graph(model_files["fp8_e4m3fn"])
    for node in ("loader", "sampler", "capture"):
        graph[f"{node}2"] = second[node]
    graph["sampler2"]["inputs"]["model"] = ["loader2", 0]
    graph["capture2"]["inputs"].update({"key": "latent2", "value": ["sampler2", 0]})
    comfy_host.run(graph)
    assert rel_error(comfy_host.captured["latent"]["samples"], reference_latent) <= GGUF_TOLERANCE["Q8_0"]
    assert rel_error(comfy_host.captured["latent2"]["samples"], reference_latent) <= TOLERANCE["fp8_e4m3fn"]


# -- ComfyUI's partial (lowvram) loading ------------------------------------------------------------------------------

# GGUF keeps a LoRA-patched weight dense in the compute dtype, so both paths agree to float error; ComfyUI's fp8
# layers round the baked weight back to fp8 on a full load (measured 0.018 apart), so fp8 gets its format bound.
LOWVRAM_TOLERANCE = {"gguf_Q4_K": 1e-3, "fp8_e4m3fn": TOLERANCE["fp8_e4m3fn"]}


@pytest.mark.parametrize("fmt", sorted(LOWVRAM_TOLERANCE))
def test_lowvram_partial_load_with_lora_matches_full_load(comfy_host, model_files, lora_files, fmt):
    """In lowvram mode ComfyUI leaves weights off the device and asks each forward to patch them (LowVramPatch);
    the result must equal the fully loaded, LoRA-baked model's."""
    import comfy.sd
    import comfy.utils

    kontext_model = sys.modules[comfy_host.pack_module_name + ".comfy_glue.kontext_model"]
    path = comfy_host.model_path("diffusion_models", model_files[fmt])
    base = kontext_model.load_kontext(path, kontext_model.LoadOptions("fp32")).patcher
    lora = comfy.utils.load_torch_file(str(comfy_host.model_path("loras", lora_files[0])))
    patched, _ = comfy.sd.load_lora_for_models(base, None, lora, 1.0, 0.0)
    cpu = torch.device("cpu")

    with torch.no_grad():  # as in ComfyUI's sampling, where models are loaded without autograd
        base.load(cpu, full_load=True)
        plain = forward_once(base.model)
        base.detach()
        patched.load(cpu, full_load=True)
        full = forward_once(patched.model)
        patched.detach()
        patched.load(cpu, lowvram_model_memory=1, full_load=False)
        partial = forward_once(patched.model)
        lowvram_layers = sum(1 for m in patched.model.modules() if getattr(m, "weight_function", None))
        patched.detach()

    assert lowvram_layers > 0, "no layer was left to per-forward patching; the lowvram path was not exercised"
    assert rel_error(full, plain) > 0.05, "the LoRA did not change the output"
    err = rel_error(partial, full)
    assert err < LOWVRAM_TOLERANCE[fmt], f"lowvram result differs: {err:.3g}"


def test_gguf_fp8_layer_uses_rowwise_matmul_on_bf16_input(comfy_host, model_files):
    """materialize_fp8 keeps an fp8 weight and multiplies bf16 activations in fp8 (row-wise on this CPU's torch)."""
    fp8_linear = sys.modules[comfy_host.pack_module_name + ".atelier_core.model.fp8_linear"]
    kontext_model = sys.modules[comfy_host.pack_module_name + ".comfy_glue.kontext_model"]
    path = comfy_host.model_path("diffusion_models", model_files["gguf_Q8_0"])
    fp8 = kontext_model.load_kontext(path, kontext_model.LoadOptions("fp32", "materialize_fp8")).patcher.model
    dense = kontext_model.load_kontext(path, kontext_model.LoadOptions("fp32", "on_the_fly")).patcher.model
    layer = fp8.diffusion_model.double_blocks[0].img_attn.qkv
    x = torch.randn(5, layer.in_features, generator=torch.Generator().manual_seed(0)).to(torch.bfloat16)
    with torch.no_grad():
        y = layer(x)
        ref = dense.diffusion_model.double_blocks[0].img_attn.qkv(x.float())
    kind, wq, _scale, rowwise = layer._cache[1]
    assert kind == "fp8" and wq.dtype == torch.float8_e4m3fn
    assert rowwise == fp8_linear.rowwise_supported(torch.device("cpu"))
    assert y.dtype == torch.bfloat16
    assert rel_error(y, ref) < 0.06  # fp8 weight and activation rounding (measured ~0.03)


def test_gguf_mode_choice(comfy_host):
    """auto keeps the quantized bytes on a CPU run; fp8 weights fall back where torch has no fp8 (Apple's mps)."""
    kontext_model = sys.modules[comfy_host.pack_module_name + ".comfy_glue.kontext_model"]
    AtelierError = sys.modules[comfy_host.pack_module_name + ".atelier_core.errors"].AtelierError
    cpu, mps = torch.device("cpu"), torch.device("mps")
    assert kontext_model._gguf_mode("auto", {}, torch.float32, cpu) == "on_the_fly"
    assert kontext_model._gguf_mode("materialize_fp8", {}, torch.float32, cpu) == "materialize_fp8"
    assert kontext_model._gguf_mode("materialize_fp8", {}, torch.float16, mps) == "materialize"
    with pytest.raises(AtelierError, match="unknown gguf_mode"):
        kontext_model._gguf_mode("fastest", {}, torch.float32, cpu)
