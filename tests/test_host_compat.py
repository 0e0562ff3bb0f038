"""The compatibility branches for ComfyUI internals that changed after 0.3.75 (DEVELOPING.md, "ComfyUI after 0.3.75").

Each branch is checked twice: against the real ComfyUI under test (where it must change nothing) and against the
newer shape it exists for, given as a stand-in with that release's signature or fields (no newer ComfyUI is
available to the tests), including the end-to-end refusal of a scaled-fp8 file through the real executor.
"""

from __future__ import annotations

import dataclasses
import sys
import types

import pytest
import torch
from atelier_host import ExecutionFailed, new_executor
from kontext_graphs import edit_graph

from atelier_core.model import architecture
from atelier_core.testing import synth


def _compat(comfy_host):
    return sys.modules[f"{comfy_host.pack_module_name}.comfy_glue.host_compat"]


@dataclasses.dataclass
class _NewerFluxParams:  # the shape of FluxParams in releases after 0.3.75: a required txt_ids_dims
    in_channels: int
    txt_ids_dims: list
    yak_mlp: bool = False


def test_flux_config_is_completed_as_core_detects_flux1_here_and_for_newer_releases(comfy_host):
    import comfy.model_detection
    from comfy.ldm.flux.model import FluxParams

    compat = _compat(comfy_host)
    config = architecture.unet_config(synth.TINY)
    completed = compat.complete_flux_config(config)
    required = {
        f.name
        for f in dataclasses.fields(FluxParams)
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
    }
    # Exactly the required fields this release's FluxParams has and the config lacks are added (none on 0.3.64 /
    # 0.3.75, txt_ids_dims later), each with the value core's own detection gives the same FLUX.1 weights.
    added = set(completed) - set(config)
    assert added == required - set(config)
    assert {k: completed[k] for k in config} == config
    detected = comfy.model_detection.detect_unet_config(synth.kontext_state_dict(synth.TINY, seed=0), "")
    assert {k: completed[k] for k in added} == {k: detected[k] for k in added}
    completed = compat.complete_flux_config({"in_channels": 16}, _NewerFluxParams)
    assert completed == {"in_channels": 16, "txt_ids_dims": []}
    _NewerFluxParams(**completed)  # builds


def test_flux_config_with_an_unknown_required_field_names_the_version(comfy_host):
    compat = _compat(comfy_host)
    unknown = dataclasses.make_dataclass("FutureParams", [("in_channels", int), ("rope_mode", str)])
    pack_error = sys.modules[f"{comfy_host.pack_module_name}.atelier_core.errors"].AtelierError
    with pytest.raises(pack_error) as info:
        compat.complete_flux_config({"in_channels": 16}, unknown)
    message = str(info.value)
    # no "Kontext Loader:" here: the node puts it in front of every loader message, once
    assert "rope_mode" in message and f"ComfyUI {comfy_host.version}" in message and "Load Diffusion Model" in message


def test_scaled_fp8_goes_to_core_or_is_refused_where_comfyui_has_no_path_for_it(comfy_host, tmp_path, monkeypatch):
    """0.4 and later convert legacy scaled fp8 themselves: the loader hands the file to core's loader. Before, it
    builds the model with core's scaled-fp8 operations, and a release with neither path gets a refusal."""
    import comfy.ops
    import comfy.utils

    folder = comfy_host.model_path("diffusion_models", "")
    name = "compat_scaled_fp8.safetensors"
    synth.write_scaled_fp8(folder / name, synth.kontext_state_dict(synth.TINY, seed=0))
    if hasattr(comfy.utils, "convert_old_quants"):
        comfy_host.fresh_executor()
        summary = comfy_host.run(edit_graph(name))["loader"]["text"][0]
        assert "ComfyUI scaled fp8" in summary and "ComfyUI's own quantized operations" in summary, summary
        return
    compat = _compat(comfy_host)
    compat.check_scaled_fp8_supported("x.safetensors")  # this host still has them: no error

    def newer_pick_operations(
        weight_dtype,
        compute_dtype,
        load_device=None,
        disable_fast_fp8=False,
        fp8_optimizations=False,
        model_config=None,
    ):
        raise AssertionError("never called")

    monkeypatch.setattr(comfy.ops, "pick_operations", newer_pick_operations)
    comfy_host.fresh_executor()
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph(name))
    message = info.value.exception_message
    assert name in message and "scaled-fp8" in message and "Load Diffusion Model" in message, message
    assert f"ComfyUI {comfy_host.version}" in message


def test_text_encoder_asks_for_the_classic_patcher_where_dynamic_vram_exists(comfy_host):
    compat = _compat(comfy_host)

    def newer_loader(
        state_dicts=(), embedding_directory=None, clip_type=None, model_options=None, disable_dynamic=False
    ):
        return None

    assert compat.text_encoder_options(newer_loader) == {"disable_dynamic": True}
    import comfy.sd

    expected = (
        {"disable_dynamic": True} if compat.accepts(comfy.sd.load_text_encoder_state_dicts, "disable_dynamic") else {}
    )
    assert compat.text_encoder_options() == expected


def test_lora_patches_on_the_dynamic_vram_hook_are_applied(comfy_host):
    gguf_ops = sys.modules[f"{comfy_host.pack_module_name}.comfy_glue.gguf_ops"]
    layer = torch.nn.Linear(2, 2)
    layer.weight_function, layer.bias_function = [lambda w: w * 2], [lambda b: b + 1]
    dense = torch.ones(2, 2)
    assert torch.equal(gguf_ops.apply_weight_functions(layer, dense, torch.float32), dense * 2)
    layer.weight_lowvram_function = lambda w: w + 3  # newer releases: one patch, applied before weight_function
    layer.bias_lowvram_function = None
    assert torch.equal(gguf_ops.apply_weight_functions(layer, dense, torch.float32), (dense + 3) * 2)
    assert torch.equal(gguf_ops.patched_bias(layer, torch.device("cpu"), torch.float32), layer.bias.detach() + 1)


def _fake_execution(init):
    class CacheType:
        CLASSIC = "classic"

    class PromptExecutor:
        __init__ = init

    return types.SimpleNamespace(CacheType=CacheType, PromptExecutor=PromptExecutor)


def test_executor_arguments_follow_each_release(comfy_host):
    seen = {}

    def newest(self, server, cache_type=False, cache_args=None, asset_manager=None):
        seen.update(cache_type=cache_type, cache_args=cache_args)

    new_executor(_fake_execution(newest), server=None)
    assert seen["cache_type"] == "classic"
    assert seen["cache_args"]["ram"] == 0.0 and seen["cache_args"]["ram_inactive"] == 0.0
    assert isinstance(seen["cache_args"]["lru"], int)

    def old(self, server, cache_type=False, cache_size=None):
        seen.update(cache_size=cache_size)

    new_executor(_fake_execution(old), server=None)
    assert seen["cache_size"] == 0

    def unknown(self, server, cache_policy=None):
        pass

    with pytest.raises(RuntimeError, match=r"ComfyUI 9\.9\.9: its PromptExecutor takes \(self, server, cache_policy\)"):
        new_executor(_fake_execution(unknown), server=None, version="9.9.9")
