"""Does a LoRA fit the loaded model? Checked when the LoRA is attached, not when it is silently skipped later.

ComfyUI applies a LoRA when the model is loaded for sampling; a layer whose LoRA has another shape is then left
unpatched with a log line only ("WARNING SHAPE MISMATCH ... WEIGHT NOT MERGED" or "ERROR lora ..."), and a LoRA
holding NaN turns the whole image to NaN. The Kontext Loader knows every layer's true shape (a GGUF layer's weight
is raw bytes, so its tensor shape says nothing), so its model checks each patch as a LoRA node attaches it and
refuses a misfit with a message on that node. ComfyUI-free: the glue hands in shapes and tensors.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch

from ..errors import AtelierError

SHOWN = 3  # layers named in a message


@dataclass(frozen=True)
class Patch:
    """One patch of a layer, as ComfyUI's LoRA loader made it: its kind and its tensors."""

    key: str  # the model's weight key, e.g. "diffusion_model.double_blocks.0.img_attn.qkv.weight"
    kind: str  # "lora", "diff", "loha", ...
    tensors: Sequence[object]  # the patch's values (tensors, None, scalars), as ComfyUI stores them


def delta_numel(patch: Patch) -> int | None:
    """How many values the patch adds to the weight, where the kind tells (None: not known, not checked)."""
    tensors = patch.tensors
    if patch.kind == "diff" and tensors and isinstance(tensors[0], torch.Tensor):
        return tensors[0].numel()
    if patch.kind == "lora" and len(tensors) >= 2 and all(isinstance(t, torch.Tensor) for t in tensors[:2]):
        if len(tensors) > 5 and tensors[5] is not None:
            return None  # a LoRA that grows the weight ("reshape_weight"): ComfyUI pads on purpose
        up, down = tensors[0], tensors[1]
        mid = tensors[3] if len(tensors) > 3 and isinstance(tensors[3], torch.Tensor) else None
        spatial = math.prod(mid.shape[2:]) if mid is not None else math.prod(down.shape[2:])
        return up.shape[0] * down.shape[1] * spatial
    return None


def _nonfinite(patch: Patch) -> bool:
    return any(
        isinstance(t, torch.Tensor) and t.is_floating_point() and not bool(torch.isfinite(t).all())
        for t in patch.tensors
    )


def check_patches(patches: Iterable[Patch], shapes: dict[str, tuple[int, ...]], who: str) -> None:
    """Refuse patches that hold NaN/inf or cannot fit their layer's shape; ``shapes`` maps weight keys to shapes."""
    misfits: list[str] = []
    broken: list[str] = []
    total = 0
    for patch in patches:
        total += 1
        shape = shapes.get(patch.key)
        if _nonfinite(patch):
            broken.append(patch.key)
        numel = delta_numel(patch)
        if shape is not None and numel is not None and numel != math.prod(shape):
            misfits.append(f"{_short(patch.key)} (the model's is {tuple(shape)}, the LoRA's has {numel:,} values)")
    if broken:
        raise AtelierError(
            f"{who}: the LoRA holds NaN or infinite values in {len(broken)} of its {total} layers "
            f"({', '.join(map(_short, broken[:SHOWN]))}); it would turn every image to NaN. The file is damaged or "
            "was saved from a broken training run: download it again or use another LoRA."
        )
    if misfits:
        raise AtelierError(
            f"{who}: the LoRA does not fit this model: {len(misfits)} of its {total} layers have other shapes "
            f"({'; '.join(misfits[:SHOWN])}). ComfyUI would skip those layers silently. It was made for another "
            "model; use a LoRA trained for FLUX.1 [dev] / Kontext."
        )


def _short(key: str) -> str:
    return key.removeprefix("diffusion_model.")
