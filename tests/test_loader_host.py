"""Kontext Loader in a real ComfyUI: every format samples through core KSampler with a reference latent.

Reference: the same random weights in fp32. Each stored format must reproduce its sampled latent within a bound set
by the format's own weight error (stated per format below).
"""

from __future__ import annotations

import pytest
import torch
from atelier_host import ExecutionFailed, PromptInvalid
from kontext_graphs import edit_graph

from atelier_core import synth

# Relative L2 error of the sampled latent (3 euler steps) against the fp32 weights, per stored format.
TOLERANCE = {
    "bf16": 0.02,
    "fp16": 0.005,
    "fp32_prefixed": 1e-6,
    "fp8_e4m3fn": 0.12,
    "fp8_e5m2": 0.25,
    "scaled_fp8": 0.12,
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
    return {k: str(p.relative_to(folder)) for k, p in files.items()}


@pytest.fixture(scope="session")
def reference_latent(comfy_host, model_files):
    comfy_host.run(edit_graph(model_files["fp32"]))
    latent = comfy_host.captured["latent"]["samples"].float()
    assert latent.shape == (1, 16, 8, 8)
    assert torch.isfinite(latent).all()
    return latent


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


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


def test_sampling_is_not_trivially_equal(comfy_host, model_files, reference_latent):
    """The check above could pass on a constant output; another seed must give another latent."""
    comfy_host.run(edit_graph(model_files["fp32"], seed=8))
    other = comfy_host.captured["latent"]["samples"]
    assert rel_error(other, reference_latent) > 0.1


def test_missing_file_is_refused_by_validation(comfy_host):
    with pytest.raises(PromptInvalid):
        comfy_host.run(edit_graph("../../etc/passwd"))


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
