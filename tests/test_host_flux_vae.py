"""The test FLUX VAE loads with ComfyUI's core VAELoader and round-trips an image through the real executor."""

from __future__ import annotations

import logging

import numpy as np
import torch
from atelier_fixtures import FLUX_LATENT_CHANNELS, FLUX_VAE_DOWNSCALE
from PIL import Image

SIZE = 64


def _probe_image(path) -> None:
    """A smooth colour gradient: real image statistics, deterministic."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / (SIZE - 1)
    rgb = np.stack([x, y, 1.0 - (x + y) / 2], axis=-1)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)


def test_flux_vae_round_trip(comfy_host, flux_vae_file, caplog):
    _probe_image(comfy_host.input_path("atelier_vae_probe.png"))
    prompt = {
        "vae": {"class_type": "VAELoader", "inputs": {"vae_name": flux_vae_file.name}},
        "image": {"class_type": "LoadImage", "inputs": {"image": "atelier_vae_probe.png"}},
        "encode": {"class_type": "VAEEncode", "inputs": {"pixels": ["image", 0], "vae": ["vae", 0]}},
        "decode": {"class_type": "VAEDecode", "inputs": {"samples": ["encode", 0], "vae": ["vae", 0]}},
        "keep_vae": {"class_type": "AtelierTestCapture", "inputs": {"key": "vae", "value": ["vae", 0]}},
        "keep_latent": {"class_type": "AtelierTestCapture", "inputs": {"key": "latent", "value": ["encode", 0]}},
        "keep_image": {"class_type": "AtelierTestCapture", "inputs": {"key": "image", "value": ["decode", 0]}},
    }
    with caplog.at_level(logging.WARNING):
        comfy_host.run(prompt)
    assert not [r.getMessage() for r in caplog.records if "VAE keys" in r.getMessage()], (
        "key set differs from ComfyUI's"
    )

    vae = comfy_host.captured["vae"]
    assert vae.latent_channels == FLUX_LATENT_CHANNELS  # detected as the 16-channel FLUX VAE
    latent = comfy_host.captured["latent"]["samples"]
    side = SIZE // FLUX_VAE_DOWNSCALE
    assert list(latent.shape) == [1, FLUX_LATENT_CHANNELS, side, side]
    assert torch.isfinite(latent).all() and latent.float().std() > 0
    image = comfy_host.captured["image"]
    assert list(image.shape) == [1, SIZE, SIZE, 3]
    assert torch.isfinite(image).all()
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert image.float().std() > 0.01, "decoded image is flat: the random init saturated"
