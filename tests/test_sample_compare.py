"""`kontext-atelier compare --sample`: the same seeds sampled through the real ComfyUI with both files."""

from __future__ import annotations

import json

import numpy as np
import pytest
from atelier_host import find_comfyui

from atelier_core.cli import main
from atelier_core.runtime.sample_compare import psnr, ssim
from atelier_core.testing import synth


def test_ssim_and_psnr_basics():
    rng = np.random.default_rng(0)
    a = rng.random((48, 48, 3))
    assert ssim(a, a, 1.0) == pytest.approx(1.0) and psnr(a, a, 1.0) == float("inf")
    noisy = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    noisier = np.clip(a + rng.normal(0, 0.2, a.shape), 0, 1)
    assert 0 < ssim(a, noisier, 1.0) < ssim(a, noisy, 1.0) < 1
    assert psnr(a, noisy, 1.0) == pytest.approx(26.0, abs=1.0)  # sigma 0.05 -> about 26 dB


def test_compare_sample_ranks_quantization_levels(tmp_path, capsys):
    root, reason = find_comfyui()
    if root is None:
        pytest.skip(reason)
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    ref = synth.write_float(tmp_path / "ref.safetensors", sd, "fp32")
    results = {}
    for qtype in ("Q8_0", "Q2_K"):
        quant = synth.write_gguf(tmp_path / f"{qtype}.gguf", sd, qtype)
        argv = [
            "compare",
            str(ref),
            str(quant),
            "--sample",
            "--comfyui",
            str(root),
            "--json",
            "--seeds",
            "2",
            "--size",
            "64",
            "--steps",
            "3",
        ]
        assert main(argv) == 0
        results[qtype] = json.loads(capsys.readouterr().out)["sampling"]
    assert results["Q8_0"]["space"] == "latent" and len(results["Q8_0"]["seeds"]) == 2
    assert results["Q8_0"]["mean_ssim"] > 0.99 and results["Q8_0"]["mean_psnr_db"] > 35
    assert results["Q2_K"]["mean_ssim"] < results["Q8_0"]["mean_ssim"]
    assert results["Q2_K"]["mean_psnr_db"] < results["Q8_0"]["mean_psnr_db"]


def test_compare_sample_refuses_bad_size(tmp_path, capsys):
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    ref = synth.write_float(tmp_path / "ref.safetensors", sd, "fp32")
    assert main(["compare", str(ref), str(ref), "--sample", "--size", "50"]) == 2
    assert "multiple of 16" in capsys.readouterr().err
