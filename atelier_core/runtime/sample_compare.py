"""Sample the same seeds with a reference and a quantized Kontext file through ComfyUI; report PSNR and SSIM.

Both models get identical inputs: the same noise, a seeded reference latent and seeded text conditioning of the
true shapes (T5-XXL tokens of width 4096, a CLIP-L pooled vector), so only the weights differ. With a VAE the
comparison is on decoded images (0..1); without one, on the latents scaled to their joint range.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.ndimage import gaussian_filter

from . import comfy_runtime


def psnr(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(data_range**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray, data_range: float) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window sigma 1.5, K1 0.01, K2 0.03) over all channels of HxWxC."""
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    values = []
    for ch in range(a.shape[-1]):
        x, y = a[..., ch], b[..., ch]
        mx, my = gaussian_filter(x, 1.5, truncate=3.5), gaussian_filter(y, 1.5, truncate=3.5)
        vx = gaussian_filter(x * x, 1.5, truncate=3.5) - mx * mx
        vy = gaussian_filter(y * y, 1.5, truncate=3.5) - my * my
        cov = gaussian_filter(x * y, 1.5, truncate=3.5) - mx * my
        s = ((2 * mx * my + c1) * (2 * cov + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
        values.append(s.mean())
    return float(np.mean(values))


@dataclass
class SampleComparison:
    space: str  # "image" or "latent"
    seeds: list[int]
    psnr: list[float]
    ssim: list[float]

    def as_dict(self) -> dict:
        return {
            "space": self.space,
            "seeds": self.seeds,
            "psnr_db": [round(float(v), 2) for v in self.psnr],
            "ssim": [round(float(v), 4) for v in self.ssim],
            "mean_psnr_db": round(float(np.mean(self.psnr)), 2),
            "mean_ssim": round(float(np.mean(self.ssim)), 4),
        }


def compare_sampling(
    reference: Path,
    quantized: Path,
    *,
    comfyui: str | None = None,
    vae: Path | None = None,
    seeds: tuple[int, ...] = (0, 1),
    size: int = 512,
    steps: int = 8,
    guidance: float = 2.5,
) -> SampleComparison:
    import torch

    comfy_runtime.boot(comfy_runtime.find_comfyui(comfyui))
    import comfy.model_management as mm
    import comfy.sample
    import comfy.sd
    import comfy.utils

    kontext_model = comfy_runtime.kontext_model_module()
    options = kontext_model.LoadOptions("auto", "on_the_fly", False)
    decoder = comfy.sd.VAE(sd=comfy.utils.load_torch_file(str(vae))) if vae else None
    lat = size // 8

    def sample_all(path: Path) -> list[np.ndarray]:
        patcher = kontext_model.load_kontext(Path(path), options).patcher
        outs = []
        for seed in seeds:
            gen = torch.Generator().manual_seed(seed)
            ref = torch.randn(1, 16, lat, lat, generator=gen)
            cond = torch.randn(1, 64, 4096, generator=gen) * 0.5
            pooled = torch.randn(1, 768, generator=gen) * 0.5
            positive = [[cond, {"pooled_output": pooled, "guidance": guidance, "reference_latents": [ref]}]]
            negative = [[torch.zeros_like(cond), {"pooled_output": torch.zeros_like(pooled)}]]
            latent = torch.zeros(1, 16, lat, lat)
            noise = comfy.sample.prepare_noise(latent, seed)
            out = comfy.sample.sample(
                patcher,
                noise,
                steps,
                1.0,
                "euler",
                "simple",
                positive,
                negative,
                latent,
                denoise=1.0,
                seed=seed,
                disable_pbar=True,
            )
            if decoder is not None:
                outs.append(decoder.decode(out)[0].float().cpu().numpy())
            else:
                outs.append(out[0].float().cpu().movedim(0, -1).numpy())
        del patcher
        mm.unload_all_models()
        mm.soft_empty_cache()
        return outs

    ref_out = sample_all(reference)
    q_out = sample_all(quantized)
    psnrs, ssims = [], []
    for a, b in zip(ref_out, q_out, strict=True):
        if decoder is not None:
            data_range = 1.0
        else:
            low, high = min(a.min(), b.min()), max(a.max(), b.max())
            a, b = (a - low) / (high - low), (b - low) / (high - low)
            data_range = 1.0
        psnrs.append(psnr(a, b, data_range))
        ssims.append(ssim(a, b, data_range))
    return SampleComparison("image" if decoder is not None else "latent", list(seeds), psnrs, ssims)
