"""Random weights in ComfyUI's own layouts, for files ComfyUI's loaders detect by their keys and shapes.

The key sets are not typed out: they come from instantiating ComfyUI's own classes on the meta device (no memory,
no init), so the files load with no missing or unexpected keys: the FLUX VAE (``ae.safetensors``) and CLIP-L's
text model. The T5-XXL encoder's layout is ``text_encoders.t5_layout``. Tests and the GPU scripts use these.

Needs ComfyUI importable (``comfy_runtime.boot`` or the test host); nothing is imported at module level.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

# What comfy/sd.py VAE.__init__ uses for a "decoder.conv_in.weight" VAE without post_quant_conv; z_channels is read
# from the file (16 for FLUX). Same widths as BFL's ae.safetensors (about 84M parameters).
FLUX_VAE_DDCONFIG = {
    "double_z": True,
    "z_channels": 16,
    "resolution": 256,
    "in_channels": 3,
    "out_ch": 3,
    "ch": 128,
    "ch_mult": [1, 2, 4, 4],
    "num_res_blocks": 2,
    "attn_resolutions": [],
    "dropout": 0.0,
}
FLUX_LATENT_CHANNELS = 16
FLUX_VAE_DOWNSCALE = 8


def flux_vae_layout() -> dict[str, tuple[int, ...]]:
    """Key -> shape of the FLUX VAE as ComfyUI builds it (on the meta device: no memory, no init)."""
    from comfy.ldm.models.autoencoder import AutoencodingEngine

    regularizer = {"target": "comfy.ldm.models.autoencoder.DiagonalGaussianRegularizer"}
    encoder = {"target": "comfy.ldm.modules.diffusionmodules.model.Encoder", "params": FLUX_VAE_DDCONFIG}
    decoder = {"target": "comfy.ldm.modules.diffusionmodules.model.Decoder", "params": FLUX_VAE_DDCONFIG}
    with torch.device("meta"):
        model = AutoencodingEngine(regularizer_config=regularizer, encoder_config=encoder, decoder_config=decoder)
    return {key: tuple(t.shape) for key, t in model.state_dict().items()}


def init_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator, device="cpu") -> torch.Tensor:
    """A sane random init: ComfyUI's ops skip weight init, so every tensor is set here.

    Conv/linear weights get std 1/sqrt(fan_in) (activations keep their scale through the net), norm scales 1,
    biases 0.
    """
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=generator, device=device) / math.sqrt(fan_in)
    if key.endswith(".bias"):
        return torch.zeros(shape, device=device)
    return torch.ones(shape, device=device)


def flux_vae_state_dict(seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    return {key: init_tensor(key, shape, generator).to(dtype) for key, shape in flux_vae_layout().items()}


def write_flux_vae(path: Path, seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> Path:
    """Write a random-weight FLUX VAE as safetensors (bf16 by default, like BFL's release) and return its path."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file(flux_vae_state_dict(seed, dtype), str(tmp), metadata={"format": "pt"})
    tmp.replace(path)  # never leave a half-written model where the loader looks
    return path


def clip_l_state_dict(seed: int = 0, dtype: torch.dtype = torch.float16) -> dict[str, torch.Tensor]:
    """CLIP-L's text model as ComfyUI's ``CLIPTextModel`` lays it out (``clip_l.safetensors``), random weights."""
    import comfy.clip_model
    import comfy.ops
    import comfy.sd1_clip

    config = json.loads((Path(comfy.sd1_clip.__file__).parent / "sd1_clip_config.json").read_text())
    with torch.device("meta"):
        model = comfy.clip_model.CLIPTextModel(config, dtype, "meta", comfy.ops.manual_cast)
    generator = torch.Generator().manual_seed(seed)
    return {key: init_tensor(key, tuple(t.shape), generator).to(dtype) for key, t in model.state_dict().items()}


def write_t5_fp8(path: Path, seed: int = 0, device="cpu", prefix: str = "") -> Path:
    """The T5-XXL encoder as fp8 e4m3fn safetensors (HF names, ``t5xxl_fp8_e4m3fn.safetensors``), random weights;
    ``prefix`` as files saved from a ComfyUI CLIP have it (``t5xxl.transformer.``)."""
    from safetensors.torch import save_file

    from ..model.text_encoders import t5_layout

    generator = torch.Generator(device=device).manual_seed(seed)
    out = {}
    for key, shape in t5_layout():
        value = init_tensor(key, shape, generator, device)
        out[prefix + key] = value.to(torch.float8_e4m3fn if len(shape) == 2 else torch.float32).cpu()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(out, str(path))
    return path


# -- FLUX.2 ------------------------------------------------------------------------------------------------------------
# FLUX.2 as ComfyUI detects it (comfy/model_detection.py, the "flux2" branch keyed on
# double_stream_modulation_img.lin.weight): 128 latent channels, patch 1, four RoPE axes of 32, global modulation,
# SiLU-gated MLP of ratio 3, no biases; [dev] has a guidance embedding (guidance_in), [klein] (4B/9B, distilled)
# none. Widths and depths below are the tiny test shape; the text width is free (read from txt_in.weight; the real
# contexts are Mistral-3's 15360 for [dev], three Qwen3 layers for [klein]: 3 x 2560 = 7680 (4B), 3 x 4096 = 12288
# (9B)).
FLUX2_HEAD_DIM = 128  # sum of the four RoPE axes
FLUX2_LATENT_CHANNELS = 128
FLUX2_VAE_DOWNSCALE = 16
# Fields FluxParams gained without a default after 0.3.75, with the value core's FLUX.2 detection sets (0.10.0 and
# 0.33.0: txt_ids_dims = [3], the text tokens' position axis). Only fields the running release declares are passed.
FLUX2_DETECTED_FIELDS = {"txt_ids_dims": [3]}


def _flux_params_fields() -> dict[str, bool]:
    """The running ComfyUI's FluxParams fields, each with whether it is required (no default)."""
    import dataclasses

    from comfy.ldm.flux.model import FluxParams

    return {
        f.name: f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        for f in dataclasses.fields(FluxParams)
    }


def flux2_unet_config(
    hidden: int = 256, depth: int = 1, depth_single: int = 1, context_dim: int = 64, guidance: bool = True
) -> dict:
    """The ``unet_config`` of a FLUX.2 transformer of this width (heads of 128 channels), as the running ComfyUI's
    model detection builds it; ``guidance=False`` is [klein]'s shape (no guidance embedding)."""
    config = {
        "image_model": "flux2",
        "in_channels": FLUX2_LATENT_CHANNELS,
        "out_channels": FLUX2_LATENT_CHANNELS,
        "vec_in_dim": None,
        "context_in_dim": context_dim,
        "hidden_size": hidden,
        "mlp_ratio": 3.0,
        "num_heads": hidden // FLUX2_HEAD_DIM,
        "depth": depth,
        "depth_single_blocks": depth_single,
        "axes_dim": [32, 32, 32, 32],
        "theta": 2000,
        "patch_size": 1,
        "qkv_bias": False,
        "guidance_embed": guidance,
        "global_modulation": True,
        "mlp_silu_act": True,
        "ops_bias": False,
        "default_ref_method": "index",
        "ref_index_scale": 10.0,
    }
    fields = _flux_params_fields()
    config.update({k: v for k, v in FLUX2_DETECTED_FIELDS.items() if k in fields})
    unknown = [name for name, required in fields.items() if required and name not in config]
    if unknown:
        raise RuntimeError(
            f"this ComfyUI's FluxParams requires {unknown}, which the FLUX.2 test factory does not know: read its "
            "comfy/model_detection.py (the flux2 branch) and add them to FLUX2_DETECTED_FIELDS"
        )
    return config


def flux2_state_dict(seed: int = 0, **shape) -> dict[str, torch.Tensor]:
    """Random float32 weights with the key names of ComfyUI's FLUX.2 transformer (built on the meta device);
    ``shape`` is :func:`flux2_unet_config`'s (``guidance=False`` for a [klein]-shaped one)."""
    import comfy.ldm.flux.model
    import comfy.ops

    config = flux2_unet_config(**shape)
    with torch.device("meta"):
        model = comfy.ldm.flux.model.Flux(operations=comfy.ops.disable_weight_init, device="meta", **config)
    generator = torch.Generator().manual_seed(seed)
    return {key: init_tensor(key, tuple(t.shape), generator) for key, t in model.state_dict().items()}


def flux2_vae_state_dict(seed: int = 0, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """A random FLUX.2 VAE as ComfyUI 0.3.75 detects it: the FLUX VAE widths with 32 latent channels, quant convs
    and a batch-norm over 2x2-patchified latents (``bn.running_mean``), hence 128 channels at 1/16."""
    from comfy.ldm.models.autoencoder import AutoencoderKL

    ddconfig = dict(FLUX_VAE_DDCONFIG, z_channels=32, batch_norm_latent=True)
    with torch.device("meta"):
        model = AutoencoderKL(ddconfig=ddconfig, embed_dim=32)
    generator = torch.Generator().manual_seed(seed)
    out = {}
    for key, t in model.state_dict().items():
        if key.endswith("num_batches_tracked"):
            out[key] = torch.zeros((), dtype=torch.long)
        elif key == "bn.running_var":
            out[key] = torch.ones(t.shape, dtype=dtype)
        elif key == "bn.running_mean":
            out[key] = torch.zeros(t.shape, dtype=dtype)
        else:
            out[key] = init_tensor(key, tuple(t.shape), generator).to(dtype)
    return out


def write_state_dict(path: Path, tensors: dict[str, torch.Tensor]) -> Path:
    """Save ``tensors`` as safetensors at ``path`` atomically (never a half-written file where a loader looks)."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".partial")
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata={"format": "pt"})
    tmp.replace(path)
    return path


# -- Qwen-Image ---------------------------------------------------------------------------------------------------------
# ComfyUI 0.3.75 detects Qwen-Image by txt_norm.weight and reads only the input channels and the block count; the
# widths are Qwen-Image's (24 heads of 128, Qwen2.5-VL context of 3584), so narrow test files load through the test
# harness's AtelierTestNarrowUNETLoader, which reads them from img_in / txt_in.


def qwen_image_state_dict(
    seed: int = 0, heads: int = 2, layers: int = 1, context_dim: int = 64
) -> dict[str, torch.Tensor]:
    """Random float32 weights with the key names of ComfyUI's Qwen-Image transformer (16-channel latents, patch 2)."""
    import comfy.ldm.qwen_image.model
    import comfy.ops

    with torch.device("meta"):
        model = comfy.ldm.qwen_image.model.QwenImageTransformer2DModel(
            num_layers=layers,
            num_attention_heads=heads,
            joint_attention_dim=context_dim,
            operations=comfy.ops.disable_weight_init,
            device="meta",
        )
    generator = torch.Generator().manual_seed(seed)
    return {key: init_tensor(key, tuple(t.shape), generator) for key, t in model.state_dict().items()}


def wan21_vae_state_dict(seed: int = 0, dim: int = 16, dtype: torch.dtype = torch.bfloat16) -> dict[str, torch.Tensor]:
    """A random Wan 2.1 VAE (what Qwen-Image uses: 16 channels at 1/8), ``dim`` wide; ComfyUI reads the width from
    ``decoder.head.0.gamma``."""
    import comfy.ldm.wan.vae

    with torch.device("meta"):
        model = comfy.ldm.wan.vae.WanVAE(
            dim=dim,
            z_dim=16,
            dim_mult=[1, 2, 4, 4],
            num_res_blocks=2,
            attn_scales=[],
            temperal_downsample=[False, True, True],
        )
    generator = torch.Generator().manual_seed(seed)
    return {key: init_tensor(key, tuple(t.shape), generator).to(dtype) for key, t in model.state_dict().items()}


# -- ComfyUI's block-scaled quantized formats ---------------------------------------------------------------------------


def write_core_quantized(path: Path, sd: dict[str, torch.Tensor], fmt: str) -> Path:
    """A mixed-precision file whose linear weights core's own quantizer packed in ``fmt`` (``nvfp4``, ``mxfp8``, or
    any format of the running release's ``comfy.quant_ops.QUANT_ALGOS``), with the keys its ``QuantizedTensor``
    saves (packed weight, block scales, ``weight_scale_2``...) and a ``comfy_quant`` description per layer."""
    from comfy.quant_ops import QUANT_ALGOS, QuantizedTensor

    layout = QUANT_ALGOS[fmt]["comfy_tensor_layout"]
    out: dict[str, torch.Tensor] = {}
    for key, value in sd.items():
        if value.ndim == 2 and key.endswith(".weight"):
            stem = key[: -len(".weight")]
            quantized = QuantizedTensor.from_float(value.to(torch.bfloat16), layout, scale="recalculate")
            out.update(quantized.state_dict(key))
            out[f"{stem}.comfy_quant"] = torch.tensor(list(json.dumps({"format": fmt}).encode()), dtype=torch.uint8)
        else:
            out[key] = value.to(torch.bfloat16)
    return write_state_dict(path, out)
