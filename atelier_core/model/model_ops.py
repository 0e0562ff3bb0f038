"""Which ComfyUI operations and dtypes a Kontext transformer loads with: a pure function of the file's storage,
the loader's options and what the device can do (ComfyUI's model management fills in :class:`DeviceFacts`).

The Kontext Loader builds the model from the :class:`OpsChoice`; keeping the choice here, free of ComfyUI, lets CI
check every branch (GGUF, fp8 storage, fp8 per-channel, plain floats) without a device.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..errors import AtelierError

FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
FLOAT_WEIGHTS = ("as_stored", "fp8_per_channel")
GGUF_MODE_NOTES = {
    "on_the_fly": "dequantized on the fly",
    "materialize": "dequantized weights kept on the device",
    "materialize_fp8": "fp8 weights (per-channel scales) kept on the device",
}


@dataclass(frozen=True)
class DeviceFacts:
    """What the load device can do, as ComfyUI reports it."""

    manual_cast: Callable[[torch.dtype], torch.dtype | None]  # the dtype layers compute in for this storage dtype
    auto_dtype: Callable[[torch.dtype | None], torch.dtype]  # ComfyUI's storage dtype for these weights (auto)
    fp8_compute: bool  # fp8 matmuls (ComfyUI's fp8 optimization)
    fp8_rowwise: bool  # row-wise scaled fp8 matmul (``_scaled_mm``) for bf16 compute


@dataclass(frozen=True)
class OpsChoice:
    operations: str  # gguf | fp8_storage | fp8_channel | comfy (ComfyUI's own for the dtype)
    unet_dtype: torch.dtype | None
    manual_cast: torch.dtype | None
    note: str = ""  # for the loader's summary line
    fp8_optimization: bool = False  # ComfyUI's model_config.optimizations["fp8"]
    warning: str | None = None


@dataclass(frozen=True)
class Storage:
    fmt: str  # gguf | safetensors
    weight_dtype: torch.dtype | None  # of the 2-D weights; None for GGUF bytes or scaled fp8
    scaled_fp8: bool


def check_float_weights(value: str) -> None:
    if value not in FLOAT_WEIGHTS:
        raise AtelierError(f"unknown float_weights '{value}'; use as_stored or fp8_per_channel")


def choose_operations(
    storage: Storage,
    compute: torch.dtype,
    device: DeviceFacts,
    *,
    gguf_mode: str | None = None,
    fp8_matmul: bool = False,
    float_weights: str = "as_stored",
    fixed_compute: bool = False,
) -> OpsChoice:
    """The operations for this file. ``compute`` is the chosen compute dtype, ``fixed_compute`` whether the user
    set it (else ComfyUI's automatic choice is kept for plain float files); ``gguf_mode`` is resolved already."""
    check_float_weights(float_weights)
    if storage.fmt == "gguf":
        return _gguf(compute, device, gguf_mode)
    if storage.weight_dtype in FP8 or storage.scaled_fp8:
        return _fp8_storage(storage, compute, device, fp8_matmul)
    if float_weights == "fp8_per_channel":
        return _fp8_channel(compute, device)
    unet_dtype = compute if fixed_compute else device.auto_dtype(storage.weight_dtype)
    return OpsChoice("comfy", unet_dtype, device.manual_cast(unet_dtype))


def _rowwise_note(device: DeviceFacts, cast: torch.dtype, without: str) -> str:
    return ", fp8 matmul" if cast == torch.bfloat16 and device.fp8_rowwise else without


def _gguf(compute: torch.dtype, device: DeviceFacts, mode: str | None) -> OpsChoice:
    if mode not in GGUF_MODE_NOTES:
        raise AtelierError(f"unknown gguf_mode '{mode}'; use auto, on_the_fly, materialize or materialize_fp8")
    # Compute where the device can (ComfyUI's rule: e.g. bf16 is upcast to fp32 on a CPU without bf16 math).
    cast = device.manual_cast(compute) or compute
    note = GGUF_MODE_NOTES[mode]
    if mode == "materialize_fp8":
        note += _rowwise_note(device, cast, ", upcast per layer (no fp8 matmul for this device or dtype)")
    return OpsChoice("gguf", compute, cast, note)


def _fp8_storage(storage: Storage, compute: torch.dtype, device: DeviceFacts, fp8_matmul: bool) -> OpsChoice:
    # Keep fp8 storage and upcast per layer (ComfyUI's own fp8 operations), optionally computing in fp8.
    unet_dtype = compute if storage.scaled_fp8 else storage.weight_dtype
    if not fp8_matmul:
        return OpsChoice("fp8_storage", unet_dtype, compute, "fp8 storage, upcast per layer")
    if device.fp8_compute:
        return OpsChoice("fp8_storage", unet_dtype, compute, "fp8 matmul", fp8_optimization=True)
    return OpsChoice(
        "fp8_storage",
        unet_dtype,
        compute,
        "fp8 storage, upcast per layer (fp8 matmul asked for; this device has none)",
        fp8_optimization=True,
        warning=f"Kontext Loader: this device has no fp8 matmul; computing in {compute} instead",
    )


def _fp8_channel(compute: torch.dtype, device: DeviceFacts) -> OpsChoice:
    # A float checkpoint stored as fp8 with a scale per output channel while it loads.
    cast = device.manual_cast(compute) or compute
    note = "fp8 weights (per-channel scales)" + _rowwise_note(device, cast, ", upcast per layer (no fp8 matmul here)")
    return OpsChoice("fp8_channel", compute, cast, note)
