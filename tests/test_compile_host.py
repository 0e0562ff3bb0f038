"""Kontext Compile Blocks in a real ComfyUI: compiled blocks sample what the eager model samples.

Runs inductor's CPU backend (a C++ compiler is needed; the test skips with one line without one). The compiled
graphs reorder float operations, so outputs match the eager run within float32 rounding, not bit for bit.
"""

from __future__ import annotations

import shutil

import pytest
import torch
from atelier_host import ExecutionFailed, run_refused
from kontext_graphs import edit_graph, rel_error
from safetensors.torch import save_file
from torch._dynamo.utils import counters

from atelier_core.testing import synth

# Relative L2 difference of the sampled latent, compiled vs eager (float32 on the CPU; measured ~1e-6).
COMPILED_VS_EAGER = 1e-4


@pytest.fixture(scope="module")
def compile_files(comfy_host):
    if shutil.which("g++") is None and shutil.which("c++") is None:
        pytest.skip("compile tests skipped: inductor's CPU backend needs a C++ compiler (g++) on PATH")
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    folder = comfy_host.model_path("diffusion_models", "")
    files = {
        "fp32": synth.write_float(folder / "compile_fp32.safetensors", sd, "fp32"),
        "Q4_K": synth.write_gguf(folder / "compile_Q4_K.gguf", sd, "Q4_K"),
    }
    return {k: str(p.relative_to(folder)) for k, p in files.items()}


def _sample(comfy_host, graph) -> tuple[torch.Tensor, dict]:
    outputs = comfy_host.run(graph)
    return comfy_host.captured["latent"]["samples"].float(), outputs


@pytest.mark.parametrize(
    "fmt, gguf_mode", [("fp32", "auto"), ("Q4_K", "on_the_fly"), ("Q4_K", "materialize"), ("Q4_K", "materialize_fp8")]
)
def test_compiled_blocks_match_eager(comfy_host, compile_files, fmt, gguf_mode):
    eager, _ = _sample(comfy_host, edit_graph(compile_files[fmt], gguf_mode=gguf_mode))
    frames = counters["stats"]["unique_graphs"]
    compiled, outputs = _sample(comfy_host, edit_graph(compile_files[fmt], gguf_mode=gguf_mode, compile_mode="default"))
    assert counters["stats"]["unique_graphs"] > frames, "nothing was compiled"
    assert torch.isfinite(compiled).all()
    assert rel_error(compiled, eager) <= COMPILED_VS_EAGER, rel_error(compiled, eager)
    assert "compiling 4 blocks" in outputs["compile"]["text"][0]  # TINY: 2 double + 2 single


def test_compiled_model_still_takes_a_lora(comfy_host, compile_files):
    """LoRA after compilation: ComfyUI patches the weights the compiled blocks read."""
    folder = comfy_host.model_path("loras", "")
    lora = folder / "compile_lora.safetensors"
    save_file(synth.lora_state_dict(synth.kontext_state_dict(synth.TINY, seed=0), rank=4, seed=5), str(lora))
    name = str(lora.relative_to(folder))
    eager, _ = _sample(comfy_host, edit_graph(compile_files["Q4_K"], gguf_mode="on_the_fly", loras=((name, 0.8),)))
    plain, _ = _sample(comfy_host, edit_graph(compile_files["Q4_K"], gguf_mode="on_the_fly"))
    graph = edit_graph(compile_files["Q4_K"], gguf_mode="on_the_fly", loras=((name, 0.8),), compile_mode="default")
    compiled, _ = _sample(comfy_host, graph)
    assert rel_error(eager, plain) > 0.05  # the LoRA changes the result ...
    assert rel_error(compiled, eager) <= COMPILED_VS_EAGER  # ... and the compiled model applies it the same way


def test_unknown_mode_is_refused(comfy_host, compile_files):
    graph = edit_graph(compile_files["fp32"], compile_mode="default")
    graph["compile"]["inputs"]["mode"] = "no-such-mode"
    by_core, message = run_refused(comfy_host, graph, "compile", "mode")
    assert "no-such-mode" in message if by_core else "Kontext Compile Blocks" in message, message


def test_compiled_graphs_are_reused_by_the_next_queue_item(comfy_host, compile_files):
    """A second queue item with another seed gets the cached loader and compile outputs: no new compilation."""
    graph = edit_graph(compile_files["Q4_K"], gguf_mode="materialize", compile_mode="default")
    comfy_host.run(graph)
    graphs_after_first = counters["stats"]["unique_graphs"]
    graph["sampler"]["inputs"]["seed"] = 8
    comfy_host.run(graph)
    messages = comfy_host.executor.status_messages
    cached = {node for event, data in messages if event == "execution_cached" for node in data["nodes"]}
    assert {"loader", "compile"} <= cached, f"the compiled model was rebuilt; cached nodes: {sorted(cached)}"
    assert counters["stats"]["unique_graphs"] == graphs_after_first, "the second queue item compiled again"


def test_compiled_blocks_with_per_channel_fp8_weights(comfy_host, compile_files):
    """fp8 layers of a float file (float_weights = fp8_per_channel) probe their matmul path before the compiled step."""
    eager, _ = _sample(comfy_host, edit_graph(compile_files["fp32"], float_weights="fp8_per_channel"))
    graph = edit_graph(compile_files["fp32"], float_weights="fp8_per_channel", compile_mode="default")
    compiled, _ = _sample(comfy_host, graph)
    assert torch.isfinite(compiled).all()
    assert rel_error(compiled, eager) <= COMPILED_VS_EAGER, rel_error(compiled, eager)


def test_compilation_failure_names_the_node(comfy_host, compile_files, monkeypatch):
    """When inductor fails (no compiler, a broken Triton), the run stops with the node's name and what to do,
    not a traceback from inside torch; the next item without the node still runs."""
    import torch._inductor.compile_fx

    def broken(*args, **kwargs):
        raise RuntimeError("no C++ compiler found")

    torch._dynamo.reset()  # otherwise the blocks' code compiled by earlier tests is reused and nothing compiles
    monkeypatch.setattr(torch._inductor.compile_fx, "compile_fx", broken)
    graph = edit_graph(compile_files["fp32"], compile_mode="default", seed=11)
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(graph)
    message = info.value.exception_message
    assert "Kontext Compile Blocks: torch.compile could not compile the blocks" in message, message
    assert "Bypass the node" in message
    monkeypatch.undo()
    torch._dynamo.reset()
    latent, _ = _sample(comfy_host, edit_graph(compile_files["fp32"], seed=11))
    assert torch.isfinite(latent).all()
