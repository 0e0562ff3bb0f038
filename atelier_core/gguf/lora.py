"""A LoRA merged into the weights while ``convert`` streams them (``kontext-atelier quantize --lora``)."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..errors import AtelierError
from ..model import model_files

logger = logging.getLogger(__name__)

_LORA_SUFFIXES = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".alpha", "alpha"),
    (".diff_b", "diff_b"),
    (".diff", "diff"),
)
_LORA_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "base_model.model.", "transformer.", "unet.", "")


@dataclass
class LoraPatch:
    up: torch.Tensor | None = None
    down: torch.Tensor | None = None
    alpha: float | None = None
    diff: torch.Tensor | None = None
    diff_b: torch.Tensor | None = None


@dataclass
class LoraMerge:
    """A LoRA to add to the weights as they stream: W += strength * (alpha / rank) * up @ down.

    Key formats: ``<stem>.lora_A/lora_B.weight`` (peft, diffusers-2 style), ``<stem>.lora_up/lora_down.weight``
    with an optional ``<stem>.alpha``, full deltas ``<stem>.diff`` / ``.diff_b``; stems in BFL naming with a
    ``diffusion_model.`` (or ``model.diffusion_model.``, ``base_model.model.``, ``transformer.``) prefix, or kohya's
    ``lora_unet_double_blocks_0_img_attn_qkv``. Without an alpha the scale is 1 (as ComfyUI does).
    """

    path: Path
    strength: float
    patches: dict[str, LoraPatch] = field(default_factory=dict)  # model stem -> patch
    ignored: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, path: str | os.PathLike[str], strength: float, shapes: dict[str, tuple[int, ...]]) -> LoraMerge:
        from safetensors.torch import load_file

        path = Path(path)
        if not path.is_file():
            raise AtelierError(f"LoRA '{path}' does not exist or is not a file")
        if model_files.sniff_format(path) != "safetensors":
            raise AtelierError(f"LoRA '{path.name}' is not a safetensors file")
        model_files.read_safetensors_header(path)  # bounds-checked before the library parses it
        tensors = load_file(str(path))
        merge = cls(path, float(strength))
        stems = {k[: -len(".weight")] for k in shapes if k.endswith(".weight")}
        kohya = {"lora_unet_" + s.replace(".", "_"): s for s in stems}
        unknown: list[str] = []
        for key, value in tensors.items():
            kind, raw_stem = _lora_kind(path, key)
            if kind is None:
                unknown.append(key)
            elif raw_stem.startswith(("lora_te", "text_encoder", "te_", "lora_te1_", "lora_te2_")):
                merge.ignored.append(key)
            elif (stem := _model_stem(raw_stem, kohya, stems)) is None:
                unknown.append(key)
            else:
                merge._add(stem, kind, key, value)
        if unknown:
            hint = ""
            if any("transformer_blocks" in k or "to_q" in k for k in unknown):
                hint = (
                    " It looks like a diffusers-format LoRA (separate to_q/to_k/to_v); merge is supported for BFL "
                    "naming only - load it at run time with LoraLoaderModelOnly instead."
                )
            raise AtelierError(
                f"LoRA '{path.name}': {len(unknown)} keys target no tensor of this model (e.g. "
                f"{', '.join(unknown[:3])}).{hint}"
            )
        if not merge.patches:
            raise AtelierError(f"LoRA '{path.name}' holds no weights for the diffusion model")
        merge._check(shapes)
        if merge.ignored:
            logger.warning("LoRA %s: ignoring %d text-encoder keys", path.name, len(merge.ignored))
        return merge

    def _add(self, stem: str, kind: str, key: str, value) -> None:
        patch = self.patches.setdefault(stem, LoraPatch())
        if kind == "alpha":
            patch.alpha = float(value.float().reshape(-1)[0])
            return
        if not value.is_floating_point():
            raise AtelierError(f"LoRA '{self.path.name}': '{key}' holds {value.dtype} values, not floats")
        setattr(patch, kind, value)

    def _check(self, shapes: dict[str, tuple[int, ...]]) -> None:
        for stem, p in self.patches.items():
            weight = tuple(shapes[f"{stem}.weight"])
            if (p.up is None) != (p.down is None):
                raise AtelierError(f"LoRA '{self.path.name}': '{stem}' has only one of its up/down (A/B) matrices")
            if p.up is not None:
                up, down = _flat2d(p.up), _flat2d(p.down)
                if up.shape[1] != down.shape[0] or (up.shape[0], down.shape[1]) != weight:
                    raise AtelierError(
                        f"LoRA '{self.path.name}': '{stem}' is up {tuple(p.up.shape)} x down {tuple(p.down.shape)}, "
                        f"which does not make the model's {weight}; the LoRA is for another model"
                    )
            if p.diff is not None and tuple(p.diff.shape) != weight:
                raise AtelierError(
                    f"LoRA '{self.path.name}': '{stem}.diff' has shape {tuple(p.diff.shape)}, not {weight}"
                )
            if p.diff_b is not None and tuple(p.diff_b.shape) != tuple(shapes.get(f"{stem}.bias", ())):
                raise AtelierError(f"LoRA '{self.path.name}': '{stem}.diff_b' does not match the bias")

    @property
    def targets(self) -> int:
        return len(self.patches)

    def apply(self, key: str, t: torch.Tensor) -> torch.Tensor:
        if key.endswith(".weight"):
            p = self.patches.get(key[: -len(".weight")])
            if p is None:
                return t
            if p.up is not None:
                up, down = _flat2d(p.up).float(), _flat2d(p.down).float()
                scale = (p.alpha / down.shape[0]) if p.alpha is not None else 1.0
                t = t + (self.strength * scale) * (up @ down)
            if p.diff is not None:
                t = t + self.strength * p.diff.float()
            return t
        if key.endswith(".bias"):
            p = self.patches.get(key[: -len(".bias")])
            if p is not None and p.diff_b is not None:
                t = t + self.strength * p.diff_b.float()
        return t


def _flat2d(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(t.shape[0], -1) if t.ndim != 2 else t


def _lora_kind(path: Path, key: str) -> tuple[str | None, str]:
    """(what the tensor is: up/down/alpha..., its layer stem as the LoRA names it), or (None, '') for another key."""
    for suffix, what in _LORA_SUFFIXES:
        if key.endswith(suffix):
            return what, key[: -len(suffix)]
    if key.endswith(".dora_scale"):
        raise AtelierError(f"LoRA '{path.name}' is a DoRA ({key}); merging DoRA is not supported")
    return None, ""


def _model_stem(raw_stem: str, kohya: dict[str, str], stems: set[str]) -> str | None:
    """The model's layer a LoRA stem targets (kohya's lora_unet_ names or a known prefix), or None."""
    stem = kohya.get(raw_stem)
    if stem is not None:
        return stem
    for prefix in _LORA_PREFIXES:
        if raw_stem.startswith(prefix) and raw_stem[len(prefix) :] in stems:
            return raw_stem[len(prefix) :]
    return None
