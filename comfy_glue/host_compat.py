"""The places where ComfyUI's internals changed after the releases we test (0.3.64, 0.3.75), in one file.

Each function checks the running ComfyUI for the shape it has (a dataclass field, a parameter) rather than its
version number, so a backport or a fork behaves right too; where the pack cannot follow a change, it refuses with a
message naming the ComfyUI version instead of producing a wrong image. DEVELOPING.md ("ComfyUI after 0.3.75") lists
what each one is for.
"""

from __future__ import annotations

import dataclasses
import inspect
from typing import Any

from ..atelier_core.errors import AtelierError

# Fields newer ComfyUI releases added to FluxParams without a default, with the value FLUX.1 takes for each (core's
# own model detection sets the same for FLUX.1 checkpoints).
FLUX1_REQUIRED_DEFAULTS: dict[str, Any] = {"txt_ids_dims": []}


def comfyui_version() -> str:
    """The running ComfyUI's version, for messages ('unknown' for a checkout without comfyui_version.py)."""
    try:
        import comfyui_version as version_module
    except ImportError:
        return "unknown"
    return str(getattr(version_module, "__version__", "unknown"))


def accepts(function, name: str) -> bool:
    try:
        return name in inspect.signature(function).parameters
    except (TypeError, ValueError):
        return False


def complete_flux_config(unet_config: dict, params_class=None) -> dict:
    """``unet_config`` plus every field this ComfyUI's ``FluxParams`` requires that FLUX.1 leaves unset.

    0.3.64 and 0.3.75 need nothing; later releases made ``txt_ids_dims`` a required field (FLUX.2 uses it), so
    without it building the model fails with a TypeError from inside ComfyUI.
    """
    if params_class is None:
        from comfy.ldm.flux.model import FluxParams as params_class
    config = dict(unet_config)
    missing = []
    for spec in dataclasses.fields(params_class):
        required = spec.default is dataclasses.MISSING and spec.default_factory is dataclasses.MISSING
        if not required or spec.name in config:
            continue
        if spec.name in FLUX1_REQUIRED_DEFAULTS:
            config[spec.name] = FLUX1_REQUIRED_DEFAULTS[spec.name]
        else:
            missing.append(spec.name)
    if missing:
        raise AtelierError(
            f"ComfyUI {comfyui_version()} builds FLUX models with new required settings "
            f"({', '.join(missing)}) this version of Kontext Atelier does not know; update Kontext Atelier, or load "
            "the file with ComfyUI's Load Diffusion Model node"
        )
    return config


def check_scaled_fp8_supported(file_name: str, pick_operations=None) -> None:
    """Refuse a ComfyUI scaled-fp8 file where ComfyUI no longer has the scaled-fp8 operations we hand it to.

    Newer releases dropped ``pick_operations(scaled_fp8=...)`` for their mixed-precision system; setting the old
    ``model_config.scaled_fp8`` there is silently ignored and the fp8 weights would run without their scales.
    """
    if pick_operations is None:
        from comfy.ops import pick_operations
    if not accepts(pick_operations, "scaled_fp8"):
        raise AtelierError(
            f"{file_name} is a ComfyUI scaled-fp8 file, and ComfyUI {comfyui_version()} loads those "
            "only through its own mixed-precision path; load it with ComfyUI's Load Diffusion Model node, or use the "
            "GGUF, bf16 or plain fp8 file of the model"
        )


def text_encoder_options(load_function=None) -> dict:
    """Extra arguments for ``comfy.sd.load_text_encoder_state_dicts`` with our GGUF layers.

    Releases with on-demand VRAM offloading ("dynamic VRAM") stream plain weights through their own buffers and hang
    LoRA patches where our GGUF layers do not look; ``disable_dynamic`` keeps such a CLIP on the classic patcher.
    """
    if load_function is None:
        from comfy.sd import load_text_encoder_state_dicts as load_function
    return {"disable_dynamic": True} if accepts(load_function, "disable_dynamic") else {}
