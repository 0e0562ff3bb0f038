"""Synthetic Kontext transformers: the real key names and layout of BFL's ``flux1-kontext-dev`` release.

Tests write tiny versions (fewer blocks, narrow width) in every format the loader reads; the GPU benchmarks use the
same code at full size. Weights are random (value-independent timings, reproducible tests), never zeros.

The layout is FLUX.1's: 19 double blocks and 38 single blocks at full size, hidden 3072, heads of 128 channels,
64 input channels (16 latent channels x 2x2 patches), T5-XXL context of 4096 and CLIP-L pooled vector of 768.
"""

from __future__ import annotations

from pathlib import Path

import torch

from ..model.kontext_layout import FULL, HEAD_DIM, TINY, KontextShape, layout, parameter_count  # noqa: F401 (part of synth's API)


def random_tensor(key: str, dims: tuple[int, ...], generator: torch.Generator, device="cpu") -> torch.Tensor:
    """A value with the statistics of a trained weight: matrices with variance 1/fan_in (so activations stay of
    order one through the blocks and every layer matters to the output), norm scales near one, small biases.
    At full size this is about 0.018, the scale of the real checkpoint's weights."""
    if key.endswith(".scale"):
        return 1.0 + 0.05 * torch.randn(dims, generator=generator, device=device)
    if key.endswith(".bias"):
        return 0.01 * torch.randn(dims, generator=generator, device=device)
    fan_in = dims[-1]
    return torch.randn(dims, generator=generator, device=device) * fan_in**-0.5


def kontext_state_dict(shape: KontextShape = TINY, seed: int = 0, device="cpu") -> dict[str, torch.Tensor]:
    """A float32 state dict with BFL key names; deterministic for a seed."""
    generator = torch.Generator(device=device).manual_seed(seed)
    return {key: random_tensor(key, dims, generator, device) for key, dims in layout(shape)}


def lora_state_dict(
    base: dict[str, torch.Tensor], rank: int = 4, seed: int = 1, targets: tuple[str, ...] = ("img_attn.qkv", "linear1")
) -> dict[str, torch.Tensor]:
    """A LoRA in the ``diffusion_model.<key>.lora_A/B`` layout ComfyUI's LoraLoaderModelOnly reads.

    Targets every 2-D weight whose key contains one of ``targets``; A and B are random so the delta is not zero.
    """
    generator = torch.Generator().manual_seed(seed)
    lora: dict[str, torch.Tensor] = {}
    for key, value in base.items():
        if value.ndim != 2 or not key.endswith(".weight") or not any(t in key for t in targets):
            continue
        stem = "diffusion_model." + key[: -len(".weight")]
        out_features, in_features = value.shape
        lora[f"{stem}.lora_A.weight"] = torch.randn(rank, in_features, generator=generator) * in_features**-0.5
        lora[f"{stem}.lora_B.weight"] = torch.randn(out_features, rank, generator=generator) * 0.5
    return lora


# -- writers ----------------------------------------------------------------------------------------------------------

FLOAT_DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
FP8_DTYPES = {"fp8_e4m3fn": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}


def _save(path: Path, tensors: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> Path:
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path), metadata=metadata)
    return path


def write_float(path: Path, sd: dict[str, torch.Tensor], dtype: str = "bf16", prefix: str = "") -> Path:
    """bf16/fp16/fp32 safetensors, optionally with ComfyUI's ``model.diffusion_model.`` prefix."""
    target = FLOAT_DTYPES[dtype]
    return _save(path, {prefix + k: v.to(target) for k, v in sd.items()})


def write_fp8(path: Path, sd: dict[str, torch.Tensor], dtype: str = "fp8_e4m3fn") -> Path:
    """Plain fp8 safetensors as the popular Kontext fp8 files are: 2-D weights in fp8, everything else bf16."""
    target = FP8_DTYPES[dtype]
    out = {k: (v.to(target) if v.ndim == 2 else v.to(torch.bfloat16)) for k, v in sd.items()}
    return _save(path, out)


def write_scaled_fp8(path: Path, sd: dict[str, torch.Tensor], with_input_scale: bool = False) -> Path:
    """ComfyUI's scaled fp8: a ``scaled_fp8`` marker and a per-layer ``scale_weight`` (weight = fp8 * scale)."""
    fmax = torch.finfo(torch.float8_e4m3fn).max
    out: dict[str, torch.Tensor] = {"scaled_fp8": torch.zeros(0, dtype=torch.float8_e4m3fn)}
    for key, value in sd.items():
        if value.ndim == 2 and key.endswith(".weight"):
            scale = value.abs().max().clamp(min=1e-12) / fmax
            out[key] = (value / scale).to(torch.float8_e4m3fn)
            stem = key[: -len(".weight")]
            out[f"{stem}.scale_weight"] = scale.reshape(()).to(torch.float32)
            if with_input_scale:
                out[f"{stem}.scale_input"] = torch.tensor(1.0, dtype=torch.float32)
        else:
            out[key] = value.to(torch.bfloat16)
    return _save(path, out)


def write_gguf(path: Path, sd: dict[str, torch.Tensor], qtype: str, prefix: str = "") -> Path:
    """A GGUF with the layout of the popular Kontext GGUF files (``general.architecture = flux``, BFL key names).

    ``qtype`` is a GGML type name (``"Q4_K"``); tensors that those files keep precise (1-D, small, embeddings) follow
    the writer's ``default_type_for`` policy.
    """
    from ..gguf import writer

    tensors = {}
    for key, value in sd.items():
        array = value.float().numpy()
        tensors[prefix + key] = (array, writer.default_type_for(key, array.shape, qtype))
    writer.write_gguf(Path(path), tensors, {})
    return Path(path)


# Byte offsets of the fp16 scale fields (d, and dmin where the type has one) in one block of each quantized type.
SCALE_FIELDS = {
    "Q8_0": (0,),
    "Q4_0": (0,),
    "Q4_1": (0, 2),
    "Q5_0": (0,),
    "Q5_1": (0, 2),
    "IQ4_NL": (0,),
    "IQ4_XS": (0,),
    "Q2_K": (80, 82),
    "Q3_K": (108,),
    "Q4_K": (0, 2),
    "Q5_K": (0, 2),
    "Q6_K": (208,),
}


def write_gguf_random_blocks(path: Path, shape: KontextShape, qtype: str, seed: int = 0, device="cpu") -> Path:
    """A GGUF of the full layout whose quantized tensors are random valid blocks (random quants, small finite
    scales), written tensor by tensor: seconds for the 12B model where real quantization takes minutes.

    For speed measurements only (dequantization and matmul cost do not depend on the values); outputs of such a
    file mean nothing. Tensor types follow ``default_type_for`` exactly as a real conversion would.
    """
    return write_random_gguf(path, list(layout(shape)), qtype, "flux", seed, device)


def write_random_gguf(
    path: Path, tensors: list[tuple[str, tuple[int, ...]]], qtype: str, arch: str, seed: int = 0, device="cpu"
) -> Path:
    """Random valid blocks for every (name, shape) in ``tensors`` (see ``write_gguf_random_blocks``)."""
    from ..gguf import writer
    from ..gguf.types import TYPE_INFO, GGMLType

    generator = torch.Generator(device=device).manual_seed(seed)
    plan = [(key, dims, writer.default_type_for(key, dims, qtype)) for key, dims in tensors]
    with writer.atomic_gguf(
        path,
        arch,
        {"general.file_type": writer.file_type_for([t for *_, t in plan])},
        [(key, dims, t) for key, dims, t in plan],
    ) as out:
        for key, dims, t in plan:
            if t in (GGMLType.F32, GGMLType.F16, GGMLType.BF16):
                dtype = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}[t]
                value = random_tensor(key, dims, generator, device).to(dtype).cpu()
                out.write_tensor_data(value.view(torch.uint8).numpy().reshape(-1))
                continue
            info = TYPE_INFO[t]
            n_blocks = dims[0] * dims[1] // info.block_size
            blocks = torch.randint(
                0, 256, (n_blocks, info.type_size), generator=generator, device=device, dtype=torch.uint8
            )
            # scale fields so the values have a trained weight's spread (std 1/sqrt(fan_in)), as random_tensor
            scale = torch.full((n_blocks, 1), _unit_scale(t) * dims[1] ** -0.5, device=device).half()
            for offset in SCALE_FIELDS[info.name]:
                blocks[:, offset : offset + 2] = scale.view(torch.uint8)
            out.write_tensor_data(blocks.cpu().numpy().reshape(-1))
    return Path(path)


# -- T5 encoder (Kontext's text encoder) ---------------------------------------------------------------------------


def t5_state_dict(cfg=None, seed: int = 0) -> dict[str, torch.Tensor]:
    """A float32 T5 v1.1 encoder with Hugging Face names (``atelier_core.model.text_encoders.t5_layout``)."""
    from ..model.text_encoders import T5_XXL, t5_layout

    generator = torch.Generator().manual_seed(seed)
    sd = {}
    for key, dims in t5_layout(cfg or T5_XXL):
        if key.endswith("norm.weight"):
            sd[key] = 1.0 + 0.1 * torch.randn(dims, generator=generator)
        elif key == "shared.weight" or "relative_attention_bias" in key:
            sd[key] = torch.randn(dims, generator=generator)
        else:
            sd[key] = torch.randn(dims, generator=generator) * dims[-1] ** -0.5
    return sd


def write_t5_gguf(path: Path, sd: dict[str, torch.Tensor], qtype: str, cfg=None) -> Path:
    """A T5 encoder GGUF as the popular files are: llama.cpp names, ``general.architecture = t5encoder``."""
    from ..gguf import writer
    from ..model.text_encoders import T5_XXL, gguf_name

    tensors = {}
    for key, value in sd.items():
        array = value.float().numpy()
        tensors[gguf_name(key, cfg or T5_XXL)] = (array, writer.default_type_for(key, array.shape, qtype))
    writer.write_gguf(Path(path), tensors, {"general.architecture": "t5encoder"})
    return Path(path)


def write_t5_gguf_random_blocks(path: Path, qtype: str, cfg=None, seed: int = 0) -> Path:
    """The full-size T5-XXL encoder as random valid blocks under llama.cpp names (loader and speed tests only)."""
    from ..model.text_encoders import T5_XXL, gguf_name, t5_layout

    cfg = cfg or T5_XXL
    return write_random_gguf(path, [(gguf_name(k, cfg), d) for k, d in t5_layout(cfg)], qtype, "t5encoder", seed)


def _unit_scale(ggml_type) -> float:
    """The fp16 scale that gives random blocks of this type a standard deviation of one."""
    from ..gguf.dequant import dequantize
    from ..gguf.types import TYPE_INFO

    info = TYPE_INFO[ggml_type]
    blocks = torch.randint(0, 256, (256, info.type_size), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    for offset in SCALE_FIELDS[info.name]:
        blocks[:, offset : offset + 2] = torch.ones(256, 1).half().view(torch.uint8)
    values = dequantize(blocks, ggml_type, (256 * info.block_size,))
    return float(1.0 / values.std())


# Per-tensor formats of ComfyUI's mixed precision (``<layer>.comfy_quant`` describes each layer): storage dtype and
# the largest stored value, so weight = stored * weight_scale.
MIXED_PER_TENSOR = {
    "float8_e4m3fn": (torch.float8_e4m3fn, torch.finfo(torch.float8_e4m3fn).max),
    "float8_e5m2": (torch.float8_e5m2, torch.finfo(torch.float8_e5m2).max),
    "int8_tensorwise": (torch.int8, 127.0),
}


def write_mixed_precision(path: Path, sd: dict[str, torch.Tensor], fmt: str, in_metadata: bool = False) -> Path:
    """ComfyUI's mixed-precision layout with one per-tensor scale per layer: ``<layer>.weight`` stored in ``fmt``,
    ``<layer>.weight_scale`` (float32 scalar) and the layer description, either as a ``<layer>.comfy_quant`` tensor
    (UTF-8 JSON bytes) or, with ``in_metadata``, in the header's ``_quantization_metadata`` (both are what
    ``comfy.utils.convert_old_quants`` reads). Block-scaled formats (NVFP4, MXFP8) need core's quantizer:
    ``synth_comfy.write_core_quantized``."""
    import json

    storage, top = MIXED_PER_TENSOR[fmt]
    out: dict[str, torch.Tensor] = {}
    layers: dict[str, dict] = {}
    for key, value in sd.items():
        if value.ndim == 2 and key.endswith(".weight"):
            stem = key[: -len(".weight")]
            scale = value.abs().max().clamp(min=1e-12) / top
            scaled = value / scale
            out[key] = scaled.round().clamp(-127, 127).to(storage) if storage == torch.int8 else scaled.to(storage)
            out[f"{stem}.weight_scale"] = scale.reshape(()).to(torch.float32)
            layers[stem] = {"format": fmt}
        else:
            out[key] = value.to(torch.bfloat16)
    if in_metadata:
        return _save(path, out, {"_quantization_metadata": json.dumps({"format_version": "1.0", "layers": layers})})
    for stem, conf in layers.items():
        out[f"{stem}.comfy_quant"] = torch.tensor(list(json.dumps(conf).encode("utf-8")), dtype=torch.uint8)
    return _save(path, out)
