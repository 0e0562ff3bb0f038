"""Files in ComfyUI's own quantized formats, loaded through ComfyUI's own loader and quantized operations.

ComfyUI reads two families of quantized safetensors itself:
- legacy *scaled fp8* (a ``scaled_fp8`` marker and a ``<layer>.scale_weight`` per layer, e.g.
  ``flux1-dev-kontext_fp8_scaled.safetensors``): up to 0.3.75 through ``pick_operations(scaled_fp8=...)``, since
  0.4 converted by ``comfy.utils.convert_old_quants`` into its mixed-precision format;
- *mixed precision* (``<layer>.comfy_quant`` entries or ``_quantization_metadata`` in the header, with
  ``weight_scale`` / ``input_scale``...): float8, and with comfy-kitchen NVFP4, MXFP8, int8 and more, one format per
  layer, as listed in ``comfy.quant_ops.QUANT_ALGOS`` of the running release.

These layers are ComfyUI's own tensor subclasses and kernels: for them our loader hands the state dict to
``comfy.sd.load_diffusion_model_state_dict``, the function behind core's Load Diffusion Model, so the model is the one
core builds (same operations, same patcher, dynamic VRAM where core uses it) and a change in core reaches us as is.
What we add is the check that the file is a FLUX.1/Kontext transformer and a message naming the file, the running
release and the release that can read a format where this one cannot.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from ..atelier_core.errors import AtelierError
from . import host_compat

log = logging.getLogger(__name__)

SCALED_FP8, MIXED = "scaled fp8", "mixed precision"
# The first release we load each layer format on (checked on the real trees of 0.3.64, 0.3.75, 0.10.0, 0.33.0;
# 0.3.75 had a first float8-only version of mixed precision, read from header metadata alone, that we leave out).
FIRST_RELEASE = {
    "float8_e4m3fn": "0.10.0",
    "float8_e5m2": "0.10.0",
    "nvfp4": "0.10.0",
    "mxfp8": "0.33.0",
    "int8_tensorwise": "0.33.0",
}
# Mixed precision's per-layer entries, then legacy scaled fp8's.
_QUANT_SUFFIXES = (".comfy_quant", ".weight_scale", ".weight_scale_2", ".input_scale", ".pre_quant_scale")
_QUANT_SUFFIXES += (".scale_weight", ".scale_input")


def quant_family(sd: dict, metadata: dict | None) -> str | None:
    """``SCALED_FP8``, ``MIXED`` or None (a plain file) from the state dict's keys and the header's metadata."""
    if (metadata or {}).get("_quantization_metadata") or any(k.endswith(".comfy_quant") for k in sd):
        return MIXED
    if any(k == "scaled_fp8" or k.endswith(".scaled_fp8") for k in sd):
        return SCALED_FP8
    return None


def is_quant_key(key: str) -> bool:
    """Keys that carry a quantized layer's scales or description rather than a weight of the architecture."""
    return key.endswith(_QUANT_SUFFIXES) or key == "scaled_fp8"


def layer_formats(name: str, sd: dict, metadata: dict | None) -> set[str]:
    """The per-layer formats the mixed-precision file ``name`` uses (``{"float8_e4m3fn", "nvfp4"}``)."""
    formats: set[str] = set()
    raw = (metadata or {}).get("_quantization_metadata")
    if raw:
        try:
            layers = json.loads(raw).get("layers", {})
        except (ValueError, AttributeError) as exc:
            raise AtelierError(
                f"'{name}': its _quantization_metadata header entry is not valid JSON; the file is damaged"
            ) from exc
        formats |= {str(conf.get("format")) for conf in layers.values() if isinstance(conf, dict)}
    for key, value in sd.items():
        if key.endswith(".comfy_quant"):
            try:
                formats.add(str(json.loads(bytes(value.tolist()).decode("utf-8")).get("format")))
            except (ValueError, AttributeError, UnicodeDecodeError) as exc:
                raise AtelierError(
                    f"'{name}': its entry '{key}' is not a valid layer description; the file is damaged"
                ) from exc
    return formats


def host_formats() -> set[str] | None:
    """The layer formats the running ComfyUI's mixed-precision operations read, None where it has none (or only
    0.3.75's first, metadata-only version)."""
    if not core_converts_legacy():
        return None
    try:
        from comfy.quant_ops import QUANT_ALGOS
    except ImportError:
        return None
    return set(QUANT_ALGOS)


def core_converts_legacy() -> bool:
    """True where core turns legacy scaled fp8 into mixed precision itself (0.4 and later)."""
    import comfy.utils

    return hasattr(comfy.utils, "convert_old_quants")


def check_loadable(name: str, family: str, sd: dict, metadata: dict | None) -> None:
    """Refuse, naming the file and the releases, a format the running ComfyUI cannot read."""
    version = host_compat.comfyui_version()
    if family == SCALED_FP8:
        return  # every release we support reads it: through pick_operations before 0.4, convert_old_quants after
    available = host_formats()
    wanted = layer_formats(name, sd, metadata)
    missing = sorted(wanted - (available or set()))
    first = " / ".join(sorted({FIRST_RELEASE.get(f, "a newer release") for f in missing}))
    if available is None:
        raise AtelierError(
            f"{name} is a ComfyUI mixed-precision file ({', '.join(missing) or 'unknown formats'}); ComfyUI "
            f"{version} has no mixed-precision loading this pack can use. Update ComfyUI to {first or '0.10.0'} or "
            "newer, or use the GGUF, bf16 or plain fp8 file of the model"
        )
    if missing:
        raise AtelierError(
            f"{name} holds layers in {', '.join(missing)}, which ComfyUI {version} cannot compute (it reads "
            f"{', '.join(sorted(available))}); update ComfyUI to {first} or newer "
            "(with comfy-kitchen installed), or use the GGUF, bf16 or plain fp8 file of the model"
        )


def uses_core_loader(family: str | None) -> bool:
    """Mixed precision always, legacy scaled fp8 where core converts it; older releases keep our scaled-fp8 path."""
    return family == MIXED or (family == SCALED_FP8 and core_converts_legacy())


def load_with_core(path: Path, sd: dict, metadata: dict | None, dtype: torch.dtype | None):
    """A MODEL built by core's ``load_diffusion_model_state_dict`` from the file's state dict, checked to be FLUX.1."""
    import comfy.sd
    import comfy.supported_models

    options = {"dtype": dtype} if dtype is not None else {}
    kwargs = {"metadata": metadata} if host_compat.accepts(comfy.sd.load_diffusion_model_state_dict, "metadata") else {}
    patcher = comfy.sd.load_diffusion_model_state_dict(dict(sd), model_options=options, **kwargs)
    config = getattr(getattr(patcher, "model", None), "model_config", None)
    if config is None or type(config) is not comfy.supported_models.Flux:
        kind = type(config).__name__ if config is not None else "no model ComfyUI recognises"
        raise AtelierError(
            f"{path.name} is {kind}, not a FLUX.1 / Kontext transformer; load it with ComfyUI's Load Diffusion Model "
            "node (or its own loader)"
        )
    return patcher
