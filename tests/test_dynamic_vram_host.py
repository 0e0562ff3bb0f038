"""The Kontext Loader under ComfyUI's dynamic VRAM (comfy-aimdo, on by default from 0.16 on NVIDIA GPUs).

When aimdo is on, ComfyUI's main.py sets ``comfy.model_patcher.CoreModelPatcher = ModelPatcherDynamic``, and every
core loader builds its patcher through that name. The decision per mode: our GGUF and per-channel fp8 layers hold raw
bytes that the streamer cannot cast, so those models keep a plain ``ModelPatcher``; files in ComfyUI's own quantized
formats are built by core's loader and so take part exactly as core's own models do. On the CPU a dynamic patcher
reroutes to the plain one, so here the test swaps in a recording ``CoreModelPatcher`` as main.py would swap in the
dynamic one, and checks who goes through it and that sampling is unchanged. bench/gpu_dynamic_vram.py runs the
workflows with it really on and off on a GPU.
"""

from __future__ import annotations

import pytest
import torch
from atelier_host import skip_unless_host_has
from kontext_graphs import edit_graph

from atelier_core.testing import synth


@pytest.fixture(scope="module")
def files(comfy_host):
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    folder = comfy_host.model_path("diffusion_models", "")
    return {
        "gguf": synth.write_gguf(folder / "dv_Q8_0.gguf", sd, "Q8_0").name,
        "scaled_fp8": synth.write_scaled_fp8(folder / "dv_scaled_fp8.safetensors", sd).name,
    }


@pytest.fixture
def recording_core_patcher(monkeypatch):
    import comfy.model_patcher

    skip_unless_host_has(
        hasattr(comfy.model_patcher, "ModelPatcherDynamic"), "dynamic VRAM (ModelPatcherDynamic, 0.16 and later)"
    )
    built: list[object] = []

    class RecordingCorePatcher(comfy.model_patcher.ModelPatcher):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            built.append(self)

    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", RecordingCorePatcher)
    return built


def _sample(comfy_host, name: str) -> torch.Tensor:
    comfy_host.fresh_executor()  # build the model again: a cached loader output would not go through the patcher
    comfy_host.run(edit_graph(name, compute_dtype="auto"))
    return comfy_host.captured["latent"]["samples"].clone()


@pytest.mark.host
def test_gguf_keeps_a_plain_patcher_and_core_formats_take_core_s(comfy_host, files, recording_core_patcher):
    import comfy.model_management

    comfy.model_management.unload_all_models()
    gguf = _sample(comfy_host, files["gguf"])
    assert recording_core_patcher == [], "the GGUF model went through CoreModelPatcher (the dynamic one when on)"
    scaled = _sample(comfy_host, files["scaled_fp8"])
    assert len(recording_core_patcher) == 1, "core's own format did not get core's patcher"
    assert torch.isfinite(gguf).all() and torch.isfinite(scaled).all()


@pytest.mark.host
def test_sampling_does_not_depend_on_the_core_patcher(comfy_host, files, recording_core_patcher, monkeypatch):
    swapped = {key: _sample(comfy_host, name) for key, name in files.items()}
    import comfy.model_patcher

    monkeypatch.setattr(comfy.model_patcher, "CoreModelPatcher", comfy.model_patcher.ModelPatcher)
    for key, name in files.items():
        # the same seed through the classic patcher: the same latent, bit for bit
        assert torch.equal(_sample(comfy_host, name), swapped[key]), key
