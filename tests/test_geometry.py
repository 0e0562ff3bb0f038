"""Aspect-ratio lock and exact restore (``atelier_core.image.geometry``).

Plan-level properties run over random sizes from 1x1 to 6000x4000 without allocating images; pixel-level tests use
moderate sizes. PSNR thresholds here are the guarantees the module states (see the module docstring / report).
"""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from atelier_core.errors import AtelierError
from atelier_core.image import geometry as G

DATA = Path(__file__).parent / "data"
BIG = 6000 * 4000  # lifts the 16 MP input limit so the arithmetic is tested over the whole requested range


def psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a.double() - b.double()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1.0 / mse)


@functools.lru_cache(maxsize=8)
def photo_like(width: int, height: int, seed: int = 0, channels: int = 3) -> torch.Tensor:
    """A seeded stand-in for a photo: 1/f colour noise (the spectrum of natural images) plus hard-edged discs.

    Harsher than real photos (more energy near Nyquist), so thresholds met here hold with margin on photos.
    Cached: callers must not modify the result.
    """
    rng = np.random.default_rng(seed)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    freq = np.sqrt(fx**2 + fy**2)
    freq[0, 0] = 1.0
    planes = []
    for _ in range(channels):
        spectrum = (rng.standard_normal(freq.shape) + 1j * rng.standard_normal(freq.shape)) / freq
        spectrum[0, 0] = 0
        noise = np.fft.irfft2(spectrum, s=(height, width))
        planes.append((noise - noise.mean()) / (noise.std() + 1e-12))
    img = 0.5 + 0.12 * np.stack(planes, -1)
    yy, xx = np.ogrid[0:height, 0:width]
    for _ in range(6):
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        r = rng.uniform(0.05, 0.2) * min(width, height)
        img[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] += rng.uniform(-0.3, 0.3, channels)
    return torch.from_numpy(np.clip(img, 0, 1).astype(np.float32))[None]


def load_photo(name: str) -> torch.Tensor:
    with Image.open(DATA / name) as im:
        return torch.from_numpy(np.asarray(im.convert("RGB"), dtype=np.float32) / 255.0)[None]


# The published buckets --------------------------------------------------------------------------------------------


def test_kontext_buckets_are_the_published_seventeen():
    buckets = G.KONTEXT_RESOLUTIONS
    assert len(buckets) == 17 and len(set(buckets)) == 17
    assert buckets[8] == (1024, 1024)
    for w, h in buckets:
        assert w % 16 == 0 and h % 16 == 0
        assert 0.94 * 2**20 < w * h < 1.06 * 2**20  # about 1 MP each
        assert (h, w) in buckets  # portrait and landscape mirror each other
    ratios = [w / h for w, h in buckets]
    assert ratios == sorted(ratios)
    assert round(ratios[0], 2) == 0.43 and round(ratios[-1], 2) == 2.33


@pytest.mark.parametrize(
    ("size", "bucket"),
    [
        ((4000, 3000), (1184, 880)),
        ((1920, 1080), (1392, 752)),
        ((1080, 1920), (752, 1392)),
        ((1000, 1000), (1024, 1024)),
        ((1, 4000), (672, 1568)),
    ],
)
def test_nearest_bucket(size, bucket):
    assert G.nearest_kontext_resolution(*size) == bucket
    assert G.plan(*size).target_size == bucket


# Plan-level properties over the whole size range -----------------------------------------------------------------

sizes = st.tuples(st.integers(1, 6000), st.integers(1, 4000)).filter(lambda s: s[0] * s[1] >= 2)
modes = st.one_of(
    st.sampled_from(G.MODES),
    st.tuples(st.integers(1, 40), st.integers(1, 40)).map(lambda r: f"{r[0]}:{r[1]}"),  # custom W:H
)
plan_options = st.fixed_dictionaries(
    {
        "fit": st.sampled_from(G.FITS),
        "anchor": st.sampled_from(G.ANCHORS),
        "size_by": st.sampled_from(G.SIZE_BY),
        "megapixels": st.floats(G.MIN_MEGAPIXELS, G.MAX_MEGAPIXELS),
        "long_side": st.integers(G.MIN_LONG_SIDE, 4096),
        "pad_mode": st.sampled_from(G.PAD_MODES),
    }
)


def _requested_ratio(width: int, height: int, mode: str) -> float:
    raw = width / height if mode == "keep" else G.parse_ratio(mode)
    return min(max(raw, 1 / G.MAX_RATIO), G.MAX_RATIO)


@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(size=sizes, mode=modes, options=plan_options)
def test_plan_properties(size, mode, options):
    width, height = size
    g = G.plan(width, height, mode, max_input_pixels=BIG, **options)
    tw, th = g.target_size

    # Multiples of 16, at least 16, area capped to 1536x1536.
    assert tw % 16 == 0 and th % 16 == 0 and tw >= 16 and th >= 16
    assert tw * th <= G.MAX_TARGET_AREA

    # Target ratio error.
    if mode == "kontext":
        assert g.target_size == G.nearest_kontext_resolution(width, height)
    else:
        requested = _requested_ratio(width, height, mode)
        assert g.requested_ratio == pytest.approx(requested)
        error = abs((tw / th) / requested - 1)
        derived = max(tw, th) if options["size_by"] == "megapixels" else min(tw, th)
        assert error <= 8 / (derived - 8) + 1e-12, (tw, th, requested)
        if options["size_by"] == "megapixels":
            assert tw * th >= 0.75 * min(options["megapixels"] * 2**20, G.MAX_TARGET_AREA)

    # What each fit does, and how close the cut / fitted box is to the exact ratio.
    cx, cy, cw, ch = g.crop_box
    assert 0 <= cx and 0 <= cy and cx + cw <= width and cy + ch <= height
    px, py, pw, ph = g.pad_box
    assert (pw, ph) == g.resized_size and 0 <= px and 0 <= py and px + pw <= tw and py + ph <= th
    target_ratio = tw / th
    # A cut centred on its axis (anchor center, or top/bottom for columns, left/right for rows) keeps symmetric
    # margins like core, so it is within 1 px of the exact ratio; a cut pushed to one side within 0.5 px.
    fx, fy = G._ANCHOR_FRACTIONS[options["anchor"]]
    if options["fit"] == "crop":
        assert g.resized_size == g.target_size and not g.is_padded
        assert cw == width or ch == height  # only one direction is ever cut
        if cw < width and height * target_ratio >= 1:
            assert abs(cw - height * target_ratio) <= (1.0 if fx == 0.5 else 0.5) + 1e-9
        if ch < height and width / target_ratio >= 1:
            assert abs(ch - width / target_ratio) <= (1.0 if fy == 0.5 else 0.5) + 1e-9
        if fx == 0.5:
            assert cx == width - cx - cw or cw == 1 and abs(cx - (width - cx - cw)) <= 1
        if fy == 0.5:
            assert cy == height - cy - ch or ch == 1 and abs(cy - (height - cy - ch)) <= 1
    elif options["fit"] == "pad":
        assert g.crop_box == (0, 0, width, height)
        assert pw == tw or ph == th
        if pw == tw and ph < th and tw * height / width >= 1:
            assert abs(ph - tw * height / width) <= 0.5 + 1e-9
        if ph == th and pw < tw and th * width / height >= 1:
            assert abs(pw - th * width / height) <= 0.5 + 1e-9
    else:
        assert g.crop_box == (0, 0, width, height) and g.resized_size == g.target_size and not g.is_padded

    # Latent size and JSON round trip.
    assert tuple(8 * v for v in G.latent_size(g)) == g.target_size
    assert G.Geometry.from_dict(json.loads(json.dumps(g.to_dict())), max_original_pixels=BIG) == g


@settings(max_examples=200, deadline=None)
@given(
    size=st.integers(4195, 6000).flatmap(
        lambda w: st.tuples(st.just(w), st.integers(G.MAX_INPUT_PIXELS // w + 1, 4000))
    ),
    portrait=st.booleans(),
)
def test_over_16_megapixels_is_refused_with_advice(size, portrait):
    assert size[0] * size[1] > G.MAX_INPUT_PIXELS
    if portrait:
        size = size[::-1]
    with pytest.raises(AtelierError, match=r"Kontext Aspect-Ratio Lock: .*limit is 16\.8 million.*Downscale"):
        G.plan(*size)


@pytest.mark.parametrize("size", [(0, 100), (100, 0), (0, 0), (1, 1), (-3, 10)])
def test_empty_and_single_pixel_images_are_refused(size):
    with pytest.raises(AtelierError, match="Kontext Aspect-Ratio Lock: the image is"):
        G.plan(*size)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fit": "squash"}, "unknown fit"),
        ({"anchor": "middle"}, "unknown anchor"),
        ({"pad_mode": "wrap"}, "unknown padding"),
        ({"megapixels": 4.0}, "megapixels must be between"),
        ({"size_by": "long_side", "long_side": 8}, "long side must be at least"),
        ({"pad_color": (float("nan"),)}, "padding colour"),
    ],
)
def test_bad_options_are_explained(kwargs, message):
    with pytest.raises(AtelierError, match=message):
        G.plan(800, 600, "4:3", **kwargs)


def test_ratio_and_colour_parsing():
    assert G.parse_ratio("16:9") == pytest.approx(16 / 9)
    assert G.parse_ratio("21x9") == pytest.approx(21 / 9)
    assert G.parse_ratio("1.5") == 1.5
    for bad in ("16:0", "abc", "-1:2", "1:2:3"):
        with pytest.raises(AtelierError, match="ratio"):
            G.parse_ratio(bad)
    assert G.parse_color("#ff0080") == pytest.approx((1.0, 0.0, 128 / 255))
    assert G.parse_color("#fff") == (1.0, 1.0, 1.0)
    assert G.parse_color("#00000080")[3] == pytest.approx(128 / 255)
    assert G.parse_color("255,0,0") == (1.0, 0.0, 0.0)
    assert G.parse_color("0.5,0.5,0.5") == (0.5, 0.5, 0.5)
    for bad in ("#12", "#gggggg", "red", "300,0,0"):
        with pytest.raises(AtelierError, match="colour"):
            G.parse_color(bad)


def test_ratio_presets_at_one_megapixel():
    expected = {
        "1:1": (1024, 1024),
        "4:3": (1152, 864),
        "3:2": (1248, 832),
        "16:9": (1360, 768),
        "21:9": (1568, 672),
        "9:16": (768, 1360),
    }
    for mode, size in expected.items():
        assert G.plan(3000, 2000, mode).target_size == size
    assert G.plan(3000, 2000, "4:3", size_by="long_side", long_side=1024).target_size == (1024, 768)
    # The long side is capped by the 1536x1536 area.
    assert G.plan(3000, 3000, "1:1", size_by="long_side", long_side=2048).target_size == (1536, 1536)
    # Ratios beyond 4:1 are clamped.
    g = G.plan(8000, 100, "keep", max_input_pixels=BIG)
    assert g.requested_ratio == 4.0 and g.target_size == (2048, 512)


def test_centre_crop_matches_core_crop_box():
    """Core's FluxKontextImageScale crops symmetric margins of round((w - w*new/old)/2); so do we."""
    for width, height in [(4000, 3000), (1920, 1080), (1080, 1920), (3000, 3001), (999, 1000), (5000, 2000)]:
        tw, th = G.nearest_kontext_resolution(width, height)
        old, new = width / height, tw / th
        x = round((width - width * (new / old)) / 2) if old > new else 0
        y = round((height - height * (old / new)) / 2) if old < new else 0
        assert G.plan(width, height).crop_box == (x, y, width - 2 * x, height - 2 * y)


# Geometry serialisation and validation ------------------------------------------------------------------------------


def test_from_dict_refuses_garbage_and_tampering():
    good = G.plan(1500, 1000, "kontext").to_dict()
    with pytest.raises(AtelierError, match="not a Kontext Atelier geometry"):
        G.Geometry.from_dict({"hello": 1})
    with pytest.raises(AtelierError, match="not a Kontext Atelier geometry"):
        G.Geometry.from_dict([1, 2])
    with pytest.raises(AtelierError, match="version"):
        G.Geometry.from_dict({**good, "version": 7})
    with pytest.raises(AtelierError, match="incomplete or damaged"):
        G.Geometry.from_dict({k: v for k, v in good.items() if k != "crop_box"})
    with pytest.raises(AtelierError, match="incomplete or damaged"):
        G.Geometry.from_dict({**good, "crop_box": [0, 0, 1.5, 7]})
    with pytest.raises(AtelierError, match="outside"):
        G.Geometry.from_dict({**good, "crop_box": [10, 0, 1500, 1000]})
    with pytest.raises(AtelierError, match="multiple of 16"):
        G.Geometry.from_dict(
            {**good, "target_size": [1250, 832], "resized_size": [1250, 832], "pad_box": [0, 0, 1250, 832]}
        )


# Pixels -----------------------------------------------------------------------------------------------------------


def _margins_identical(restored: torch.Tensor, original: torch.Tensor, g: G.Geometry) -> bool:
    outside = G.region_mask(g)[0] == 0
    return torch.equal(restored[:, outside], original.expand_as(restored)[:, outside])


@settings(max_examples=25, deadline=None)
@given(
    size=st.tuples(st.integers(1, 700), st.integers(1, 500)).filter(lambda s: s[0] * s[1] >= 2),
    mode=st.sampled_from(["kontext", "keep", "1:1", "21:9", "9:16", "5:2"]),
    fit=st.sampled_from(G.FITS),
    anchor=st.sampled_from(G.ANCHORS),
    pad_mode=st.sampled_from(G.PAD_MODES),
)
def test_real_tensor_round_trip_properties(size, mode, fit, anchor, pad_mode):
    width, height = size
    image = torch.rand(1, height, width, 1)
    locked, mask, g = G.lock(
        image, mode, fit=fit, anchor=anchor, pad_mode=pad_mode, megapixels=0.0625, size_by="megapixels"
    )
    tw, th = g.target_size
    assert locked.shape == (1, th, tw, 1) and mask.shape == (1, th, tw)
    assert float(mask.sum()) == tw * th - g.pad_box[2] * g.pad_box[3]
    restored = G.restore(locked, g, image)
    assert restored.shape == image.shape
    assert _margins_identical(restored, image, g)


def test_crop_round_trip_keeps_margins_bit_identical_and_picture_close():
    image = photo_like(900, 600, seed=3)
    for anchor in ("center", "top-left", "bottom-right"):
        locked, _, g = G.lock(image, "1:1", fit="crop", anchor=anchor)
        assert g.is_cropped
        restored = G.restore(locked, g, image)
        assert restored.shape == image.shape
        assert _margins_identical(restored, image, g)
        x, y, w, h = g.crop_box
        assert torch.equal(restored[:, :, :x], image[:, :, :x])
        assert torch.equal(restored[:, :, x + w :], image[:, :, x + w :])
        assert psnr(restored, image) > 37.0


def test_no_resample_needed_is_bit_identical():
    image = torch.rand(2, 1024, 1024, 3)
    for fit in G.FITS:
        locked, mask, g = G.lock(image, "kontext", fit=fit)
        assert not g.needs_resample and torch.equal(locked, image) and float(mask.sum()) == 0
        assert torch.equal(G.restore(locked, g, image), image)
    # An already-bucketed size with a crop of nothing: identical too.
    image = torch.rand(1, 880, 1184, 3)
    locked, _, g = G.lock(image, "kontext")
    assert torch.equal(G.restore(locked, g), image)


@pytest.mark.parametrize("name", ["astronaut_512.jpg", "chelsea_451x300.jpg"])
@pytest.mark.parametrize("fit", G.FITS)
def test_real_photo_round_trip_psnr(name, fit):
    """Photos smaller than the target (upscaled for Kontext): guaranteed >= 43 dB (measured 44.6 / 47.0 dB)."""
    image = load_photo(name)
    for mode in ("kontext", "9:16") if fit == "pad" else ("kontext",):
        locked, _, g = G.lock(image, mode, fit=fit)
        restored = G.restore(locked, g, image)
        assert restored.shape == image.shape
        assert psnr(restored, image) >= 43.0, (name, mode, fit)


@pytest.mark.parametrize(
    ("size", "mode", "fit", "floor"),
    [
        ((800, 600), "kontext", "pad", 37.5),  # upscaled 1.48x: measured 38.6 dB
        ((800, 600), "kontext", "stretch", 37.5),
        ((1500, 1000), "kontext", "pad", 31.5),  # downscaled to 0.83x: measured 32.4 dB
        ((1500, 1000), "kontext", "stretch", 31.5),
        ((1500, 1000), "1:1", "pad", 29.0),  # downscaled to 0.68x: measured 29.9 dB
        ((1500, 1000), "9:16", "pad", 27.0),  # downscaled to 0.51x: measured 27.7 dB
    ],
)
def test_photo_like_round_trip_psnr(size, mode, fit, floor):
    """The guarantee on the 1/f photo-like image. Downscaled round trips lose the detail above the target's
    resolution, so their PSNR depends on the scale; the diff-merge is what pastes unchanged original pixels back."""
    image = photo_like(*size, seed=1)
    locked, _, g = G.lock(image, mode, fit=fit)
    assert psnr(G.restore(locked, g, image), image) >= floor


def test_channels_batches_and_dtypes():
    rgba = photo_like(451, 300, seed=4, channels=4).expand(2, -1, -1, -1)
    locked, mask, g = G.lock(rgba, "1:1", fit="pad", pad_mode="color", pad_color=(1.0, 0.0, 0.0), megapixels=0.25)
    assert locked.shape == (2, 512, 512, 4) and mask.shape == (2, 512, 512)
    assert torch.equal(locked[0, 0, 0], torch.tensor([1.0, 0.0, 0.0, 1.0]))  # missing alpha entry -> opaque
    restored = G.restore(locked, g, rgba)
    assert restored.shape == rgba.shape and psnr(restored, rgba) > 35

    half = torch.rand(1, 200, 300, 3).half()
    locked, _, g = G.lock(half, "3:2", megapixels=0.25)
    assert locked.dtype == torch.float16
    assert G.restore(locked, g, half).dtype == torch.float16

    # An RGB edit of an RGBA original: margins take the edit's channel count.
    image = torch.rand(1, 300, 500, 4)
    locked, _, g = G.lock(image, "1:1")
    restored = G.restore(locked[..., :3], g, image)
    assert restored.shape == (1, 300, 500, 3)
    assert torch.equal(restored[:, :, :50], image[:, :, :50, :3])

    # A one-image original serves a batch of edits; a grey original is widened to RGB.
    grey = torch.rand(1, 300, 500, 1)
    locked, _, g = G.lock(grey, "1:1")
    restored = G.restore(locked.expand(4, -1, -1, 3), g, grey)
    assert restored.shape == (4, 300, 500, 3)
    assert torch.equal(restored[:, :, :50], grey[:, :, :50].expand(4, -1, -1, 3))


def test_padding_modes_fill_correctly():
    image = torch.arange(12, dtype=torch.float32).reshape(1, 3, 4, 1) / 12  # 4 wide, 3 tall
    g = G.plan(4, 3, "1:1", fit="pad", pad_mode="reflect", anchor="top", megapixels=0.0625)
    assert g.pad_box == (0, 0, 256, 192)
    locked, mask = G.apply(image, g)
    assert mask[0, :192].sum() == 0 and mask[0, 192:].eq(1).all()
    # Reflection folds back and forth for a pad wider than the picture; every padded row copies a picture row.
    rows = {tuple(locked[0, r, :, 0].tolist()) for r in range(192)}
    for r in range(192, 256):
        assert tuple(locked[0, r, :, 0].tolist()) in rows
    assert torch.equal(locked[0, 192], locked[0, 190])  # mirror without repeating the edge row

    g = G.plan(4, 3, "1:1", fit="pad", pad_mode="edge", anchor="bottom", megapixels=0.0625)
    locked, mask = G.apply(image, g)
    assert g.pad_box == (0, 64, 256, 192)
    assert torch.equal(locked[0, 0], locked[0, 64]) and mask[0, :64].eq(1).all()

    line = torch.rand(1, 4000, 1, 3)  # a 1-pixel-wide picture padded to 1024 wide
    locked, mask = G.apply(line, G.plan(1, 4000, "1:1", fit="pad", pad_mode="reflect"))
    assert locked.shape == (1, 1024, 1024, 3) and torch.equal(locked[0, :, 0], locked[0, :, 1023])


def test_resample_is_identity_at_same_size_and_clips_ringing():
    image = torch.rand(1, 50, 60, 3)
    assert G.resample(image, 60, 50) is image
    step = torch.zeros(1, 40, 40, 1)
    step[:, :, 20:] = 1.0
    up = G.resample(step, 160, 160)
    assert float(up.min()) >= 0.0 and float(up.max()) <= 1.0


# Refusals -----------------------------------------------------------------------------------------------------------


def test_geometry_from_another_image_is_refused():
    image, other = photo_like(600, 400, seed=1), photo_like(600, 400, seed=2)
    locked, _, g = G.lock(image, "1:1")
    with pytest.raises(
        AtelierError, match="Kontext Restore Size: 'original' is not the image this geometry was made from"
    ):
        G.restore(locked, g, other)
    with pytest.raises(AtelierError, match=r"'original' is 400x600 but the geometry was made for a 600x400"):
        G.restore(locked, g, image.transpose(1, 2))
    with pytest.raises(AtelierError, match="Kontext Aspect-Ratio Lock: 'image' is not the image"):
        G.apply(other, g)
    # The fingerprint survives an 8-bit round trip and an fp16 cast of the same image.
    eight_bit = (image * 255).round() / 255
    assert G.restore(locked, g, eight_bit).shape == image.shape
    assert G.restore(locked, g, image.half()).shape == image.shape


def test_restore_refusals_name_the_node_and_the_fix():
    image = torch.rand(1, 400, 600, 3)
    locked, _, g = G.lock(image, "1:1")
    with pytest.raises(AtelierError, match="Kontext Restore Size: this geometry cropped.*Connect the image"):
        G.restore(locked, g)
    with pytest.raises(AtelierError, match="empty batch"):
        G.restore(locked[:0], g, image)
    with pytest.raises(AtelierError, match="empty batch"):
        G.lock(image[:0])
    with pytest.raises(AtelierError, match="a different shape"):
        G.restore(torch.rand(1, 512, 1024, 3), g, image)
    with pytest.raises(AtelierError, match="IMAGE batch"):
        G.restore(locked[0], g, image)
    with pytest.raises(AtelierError, match="original batch has 2 images and the edited batch 3"):
        G.restore(locked.expand(3, -1, -1, -1), g, image.expand(2, -1, -1, -1))
    with pytest.raises(AtelierError, match="over 16|limit is 16.8 million"):
        G.lock(torch.zeros(1, 4100, 4100, 1))
    # Another size of nearly the target ratio (a latent rounded differently) is resampled, not refused.
    assert G.restore(torch.rand(1, 1008, 1008, 3), g, image).shape == image.shape


def test_coerce_accepts_geometry_dicts_and_refuses_other_things():
    g = G.plan(1500, 1000)
    assert G.Geometry.coerce(g) is g
    assert G.Geometry.coerce(g.to_dict()) == g
    with pytest.raises(
        AtelierError, match="Kontext Restore Size: 'geometry' must come from a Kontext Aspect-Ratio Lock"
    ):
        G.Geometry.coerce(torch.zeros(3))
