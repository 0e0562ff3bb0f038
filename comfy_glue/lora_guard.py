"""The Kontext Loader's ModelPatcher: checks each LoRA as a LoRA node attaches it (``atelier_core.model.lora_check``).

Core's ``LoraLoaderModelOnly`` clones the MODEL and calls ``add_patches``; ``clone`` keeps the patcher's class, so
every LoRA node after the Kontext Loader goes through this check, and a misfit or NaN LoRA is refused on that LoRA
node, where the user sees it, instead of being skipped with a log line when sampling starts.
"""

from __future__ import annotations

import comfy.model_patcher
import torch

from ..atelier_core.model import lora_check

WHO = "LoRA on a Kontext Loader model"


def layer_shapes(model: torch.nn.Module) -> dict[str, tuple[int, ...]]:
    """Every weight's true shape by state-dict key: a GGUF layer's raw-byte weight reports its ``ggml_shape``."""
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    for name, module in model.named_modules():
        shape = getattr(module, "ggml_shape", None)
        weight = getattr(module, "weight", None)
        if shape is not None and isinstance(weight, torch.Tensor) and weight.dtype == torch.uint8:
            shapes[f"{name}.weight"] = tuple(shape)
    return shapes


def _as_patch(key, value) -> lora_check.Patch | None:
    """ComfyUI's patch forms: a weight adapter (``.name``, ``.weights``; 0.3.4x on), a ``(kind, values)`` tuple
    (older releases), or a ``(tensor,)`` difference (model merging)."""
    key = key if isinstance(key, str) else key[0]
    if hasattr(value, "weights") and isinstance(getattr(value, "name", None), str):
        return lora_check.Patch(key, value.name, tuple(value.weights))
    if isinstance(value, tuple) and len(value) == 1 and isinstance(value[0], torch.Tensor):
        return lora_check.Patch(key, "diff", value)
    if isinstance(value, tuple) and len(value) == 2 and isinstance(value[0], str) and isinstance(value[1], tuple):
        return lora_check.Patch(key, value[0], value[1])
    return None


class KontextModelPatcher(comfy.model_patcher.ModelPatcher):
    """A plain ModelPatcher (no dynamic VRAM, see DEVELOPING.md) whose ``add_patches`` checks what it is given."""

    def add_patches(self, patches, strength_patch=1.0, strength_model=1.0):
        if strength_patch != 0:
            found = (_as_patch(key, value) for key, value in patches.items())
            lora_check.check_patches([p for p in found if p is not None], layer_shapes(self.model), WHO)
        return super().add_patches(patches, strength_patch, strength_model)
