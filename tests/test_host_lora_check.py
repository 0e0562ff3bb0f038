"""A LoRA that does not fit the Kontext Loader's model, or holds NaN, is refused on the LoRA node (issue 23).

Core would skip misfit layers with a log line when sampling starts ("WARNING SHAPE MISMATCH" / "ERROR lora") and
sample a NaN LoRA to a NaN image; the loader's patcher checks every patch as core's LoraLoaderModelOnly attaches it.
"""

from __future__ import annotations

import pytest
import torch
from atelier_host import ExecutionFailed
from kontext_graphs import edit_graph

from atelier_core.model import lora_check
from atelier_core.testing import synth


@pytest.fixture(scope="module")
def files(comfy_host):
    from safetensors.torch import save_file

    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    folder = comfy_host.model_path("diffusion_models", "")
    models = {
        "gguf": synth.write_gguf(folder / "lora_check_Q8_0.gguf", sd, "Q8_0").name,
        "bf16": synth.write_float(folder / "lora_check_bf16.safetensors", sd, "bf16").name,
    }
    good = synth.lora_state_dict(sd, rank=4, seed=3, targets=("img_attn.qkv",))
    narrow = dict(sd)
    for key in [k for k in sd if "img_attn.qkv" in k and k.endswith(".weight")]:
        narrow[key] = torch.zeros(sd[key].shape[0] // 2, sd[key].shape[1])  # a LoRA made for another width
    misfit = synth.lora_state_dict(narrow, rank=4, seed=3, targets=("img_attn.qkv", "linear1"))
    nan = {k: v.clone() for k, v in good.items()}
    next(v for k, v in nan.items() if k.endswith("lora_B.weight"))[0, 0] = float("nan")
    loras = {"good": good, "misfit": misfit, "nan": nan}
    for name, tensors in loras.items():
        save_file(tensors, str(comfy_host.model_path("loras", f"lora_check_{name}.safetensors")))
    return models


@pytest.mark.parametrize("fmt", ["gguf", "bf16"])
def test_misfit_lora_is_refused_on_the_lora_node(comfy_host, files, fmt):
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph(files[fmt], steps=1, loras=(("lora_check_misfit.safetensors", 1.0),)))
    message = info.value.exception_message
    assert "LoRA on a Kontext Loader model: the LoRA does not fit this model: 2 of its" in message, message
    assert "double_blocks.0.img_attn.qkv.weight (the model's is (768, 256)" in message
    assert info.value.message["node_type"] == "LoraLoaderModelOnly"  # shown on the LoRA node
    assert info.value.message["exception_type"] == "kontext_atelier.AtelierError"  # short, not a path


@pytest.mark.parametrize("fmt", ["gguf", "bf16"])
def test_nan_lora_is_refused_and_a_good_one_still_applies(comfy_host, files, fmt):
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph(files[fmt], steps=1, loras=(("lora_check_nan.safetensors", 1.0),)))
    assert "the LoRA holds NaN or infinite values in 1 of its" in info.value.exception_message
    comfy_host.run(edit_graph(files[fmt], steps=1, loras=(("lora_check_good.safetensors", 1.0),)))
    with_lora = comfy_host.captured["latent"]["samples"].clone()
    comfy_host.run(edit_graph(files[fmt], steps=1, loras=(("lora_check_nan.safetensors", 0.0),)))  # strength 0: off
    without = comfy_host.captured["latent"]["samples"]
    assert torch.isfinite(with_lora).all() and not torch.equal(with_lora, without)


def test_patch_sizes_by_kind():
    up, down = torch.zeros(12, 2), torch.zeros(2, 5)
    assert lora_check.delta_numel(lora_check.Patch("k", "lora", (up, down, None, None, None, None))) == 60
    assert lora_check.delta_numel(lora_check.Patch("k", "lora", (up, down, None, None, None, [24, 5]))) is None
    assert lora_check.delta_numel(lora_check.Patch("k", "diff", (torch.zeros(3, 4),))) == 12
    assert lora_check.delta_numel(lora_check.Patch("k", "loha", (up, down))) is None  # not known: not refused
    lora_check.check_patches([lora_check.Patch("k", "lora", (up, down))], {"k": (12, 5)}, "test")
