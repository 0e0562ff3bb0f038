"""Which models the pack serves and their preferred sizes (atelier_core.model.model_families, geometry's model modes)."""

from __future__ import annotations

import pytest

from atelier_core.errors import AtelierError
from atelier_core.image import geometry, stitch
from atelier_core.model import model_families


def test_families_by_comfyui_image_model():
    assert model_families.family("flux") is model_families.KONTEXT
    assert model_families.family("flux2") is model_families.FLUX2
    assert model_families.family("qwen_image") is model_families.QWEN_IMAGE
    assert model_families.family("wan2.1") is None and model_families.family(None) is None
    assert (model_families.FLUX2.latent_channels, model_families.FLUX2.downscale) == (128, 16)
    assert model_families.FLUX2.default_method == "index" and model_families.KONTEXT.default_method == "offset"


def test_stitcher_refuses_qwen_and_unknown_models_saying_what_to_use():
    assert model_families.stitcher_family("flux2", "Stitcher") is model_families.FLUX2
    with pytest.raises(AtelierError, match="Qwen-Image-Edit.*TextEncodeQwenImageEditPlus"):
        model_families.stitcher_family("qwen_image", "Stitcher")
    with pytest.raises(AtelierError, match=r"'hidream' model.*FLUX.1 Kontext, FLUX.2.*ReferenceLatent"):
        model_families.stitcher_family("hidream", "Stitcher")


def test_vae_latent_must_match_the_model():
    model_families.check_latent_channels(model_families.FLUX2, 128, "S")
    model_families.check_latent_channels(model_families.FLUX2, None, "S")  # a VAE that does not say: not checked
    with pytest.raises(AtelierError, match="16-channel latents but FLUX.2 samples 128-channel"):
        model_families.check_latent_channels(model_families.FLUX2, 16, "S")
    with pytest.raises(AtelierError, match="128-channel latents but FLUX.1 Kontext samples 16"):
        model_families.check_latent_channels(model_families.KONTEXT, 128, "S")


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((1000, 1000), (1328, 1328)),
        ((1920, 1080), (1664, 928)),
        ((1080, 1920), (928, 1664)),
        ((640, 480), (1472, 1104)),
        ((600, 400), (1584, 1056)),
        ((4000, 1000), (1664, 928)),
    ],
)
def test_qwen_mode_snaps_to_the_nearest_published_size(size, expected):
    geo = geometry.plan(*size, "qwen")
    assert geo.target_size == expected and geo.mode == "qwen"
    assert all(v % 16 == 0 for v in expected)


@pytest.mark.parametrize("size", [(1000, 1000), (1920, 1080), (451, 300), (300, 1200), (5000, 500)])
def test_flux2_mode_keeps_the_ratio_at_one_megapixel(size):
    geo = geometry.plan(*size, "flux2")
    tw, th = geo.target_size
    assert tw % 16 == 0 and th % 16 == 0
    assert abs(tw * th / geometry.MEGAPIXEL - 1) < 0.05
    ratio = min(max(size[0] / size[1], 0.25), 4.0)
    assert abs(tw / th / ratio - 1) < 0.03
    assert geo.target_size == geometry.plan(*size, "keep").target_size  # the input's ratio at the 1 MP default
    small = geometry.plan(*size, "flux2", megapixels=0.25)
    assert small.target_size == geometry.plan(*size, "keep", megapixels=0.25).target_size


def test_model_modes_round_trip_through_restore():
    import torch

    image = torch.rand(1, 300, 451, 3, generator=torch.Generator().manual_seed(0))
    for mode in geometry.MODEL_MODES:
        locked, _, geo = geometry.lock(image, mode, fit="crop")
        restored = geometry.restore(locked, geo, image)
        assert restored.shape == image.shape
        assert geometry.Geometry.from_dict(geo.to_dict()) == geo


def test_stitcher_bucket_sizing_follows_the_model():
    kontext, _ = stitch.plan_references([(700, 460)], [1.0])
    flux2, _ = stitch.plan_references([(700, 460)], [1.0], size_mode="flux2")
    assert kontext.placements[0].size == (1248, 832)  # Kontext's bucket, as core's FluxKontextImageScale
    assert flux2.placements[0].size == geometry.target_for_ratio(700 / 460)
    stitched, _ = stitch.plan_references([(700, 460), (64, 64)], [1.0, 1.0], layout="pixel_stitch", size_mode="flux2")
    assert stitched.canvas[1] == flux2.placements[0].size[1]
