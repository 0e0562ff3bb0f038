"""Kontext Compile Blocks: regional torch.compile of the transformer's double and single blocks.

Why blocks and not the whole model: the 19 double blocks share one class and one code path, and so do the 38 single
blocks, so torch.compile traces two graphs and reuses them for every instance (parameters are graph inputs), which
keeps the first-run cost to about two compilations, while the step-level glue (embeddings, RoPE tables, the final
layer) stays eager and never forces a recompile. Inside a block inductor fuses what eager PyTorch runs as separate
kernels: RoPE in float32, the modulation, the norms, GELU, and on GGUF weights the dequantization itself.

The compiled modules are attached through ComfyUI's own ``set_torch_compile_wrapper`` on a clone of the model, so
LoRA loaders and patch nodes keep working and the compiled graphs are reused by every queue item that gets the same
MODEL from ComfyUI's cache. GGUF layers that keep materialized weights are materialized eagerly before each call,
so the compiled graph multiplies with them instead of dequantizing again.
"""

from __future__ import annotations

import torch
from comfy.patcher_extension import WrappersMP
from comfy_api.latest import io, ui
from comfy_api.torch_helpers import set_torch_compile_wrapper

from ..atelier_core.errors import AtelierError
from ..comfy_glue.gguf_ops import prepare_layers

PREPARE_KEY = "atelier.compile.prepare"
COMPILE_MODES = ("default", "max-autotune-no-cudagraphs")


def block_keys(diffusion_model: torch.nn.Module) -> list[str]:
    """The object paths of every double and single block, as ``set_torch_compile_wrapper`` expects them."""
    keys = [f"diffusion_model.double_blocks.{i}" for i in range(len(getattr(diffusion_model, "double_blocks", [])))]
    keys += [f"diffusion_model.single_blocks.{i}" for i in range(len(getattr(diffusion_model, "single_blocks", [])))]
    return keys


def _prepare_then_run(executor, x, *args, **kwargs):
    """APPLY_MODEL wrapper: materialize GGUF weights eagerly, then run; name the node if compilation fails."""
    base_model = executor.class_obj
    dtype = base_model.manual_cast_dtype or base_model.get_dtype()
    prepare_layers(base_model.diffusion_model, x.device, dtype)
    try:
        return executor(x, *args, **kwargs)
    except Exception as exc:  # torch.compile's failures come from deep inside inductor; say what to do
        if type(exc).__module__.startswith(("torch._dynamo", "torch._inductor")):
            raise AtelierError(
                f"Kontext Compile Blocks: torch.compile could not compile the blocks ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0][:300]}). Bypass the node, or install what inductor needs here (a C++ "
                "compiler on the CPU, Triton on the GPU)."
            ) from exc
        raise


class AtelierCompileBlocks(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierCompileBlocks",
            display_name="Kontext Compile Blocks",
            category="Kontext Atelier/Loaders",
            description=(
                "Compiles the Kontext transformer's double and single blocks with torch.compile (regional "
                "compilation): fuses RoPE, norms, modulation and GGUF dequantization into fewer GPU kernels. The "
                "first run pays the compilation (tens of seconds to minutes); later runs and queue items reuse it. "
                "Works after any Kontext/FLUX loader and with LoRA loaders before or after it."
            ),
            inputs=[
                io.Model.Input("model", tooltip="A Kontext / FLUX.1 model (from the Kontext Loader or a core loader)."),
                io.Combo.Input(
                    "mode",
                    options=list(COMPILE_MODES),
                    default="default",
                    tooltip="torch.compile mode. default compiles fastest; max-autotune-no-cudagraphs benchmarks "
                    "kernel variants on the first run (much longer first run, sometimes a faster step).",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The same model with its blocks compiled at the first sampling step.")],
        )

    @classmethod
    def execute(cls, model, mode: str = "default"):
        if mode not in COMPILE_MODES:
            raise AtelierError(f"Kontext Compile Blocks: unknown mode '{mode}'; use one of {', '.join(COMPILE_MODES)}")
        diffusion_model = model.get_model_object("diffusion_model")
        keys = block_keys(diffusion_model)
        if not keys:
            raise AtelierError(
                f"Kontext Compile Blocks: the model ({type(diffusion_model).__name__}) has no double_blocks or "
                "single_blocks; connect a Kontext / FLUX.1 model"
            )
        compiled = model.clone()
        set_torch_compile_wrapper(compiled, backend="inductor", mode=None if mode == "default" else mode, keys=keys)
        compiled.remove_wrappers_with_key(WrappersMP.APPLY_MODEL, PREPARE_KEY)
        compiled.add_wrapper_with_key(WrappersMP.APPLY_MODEL, PREPARE_KEY, _prepare_then_run)
        summary = f"compiling {len(keys)} blocks ({mode}) at the first step"
        return io.NodeOutput(compiled, ui=ui.PreviewText(summary))


NODES = [AtelierCompileBlocks]
