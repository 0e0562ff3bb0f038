"""Model files that host tests load through ComfyUI's own loaders.

``write_flux_vae`` writes a FLUX.1 VAE (the ``ae.safetensors`` that Kontext uses) with random weights. The key set is
not typed out here: it comes from instantiating ComfyUI's own ``AutoencodingEngine`` with the ddconfig its
``comfy.sd.VAE`` picks for a 16-channel latent, so the file loads with no missing or unexpected keys and ComfyUI
detects it as the Flux VAE (``decoder.conv_in.weight`` has 16 input channels, no ``post_quant_conv``).

Only import this after ComfyUI is on ``sys.path`` (the ``comfy_host`` fixture does that).
"""

from __future__ import annotations

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


def init_tensor(key: str, shape: tuple[int, ...], generator: torch.Generator) -> torch.Tensor:
    """A sane random init: ComfyUI's ops skip weight init, so every tensor is set here.

    Conv/linear weights get std 1/sqrt(fan_in) (activations keep their scale through the net), norm scales 1,
    biases 0.
    """
    if len(shape) >= 2:
        fan_in = math.prod(shape[1:])
        return torch.randn(shape, generator=generator) / math.sqrt(fan_in)
    if key.endswith(".bias"):
        return torch.zeros(shape)
    return torch.ones(shape)


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
