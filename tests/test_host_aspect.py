"""Kontext Aspect-Ratio Lock and Kontext Restore Size through ComfyUI's own validator and executor."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from atelier_host import ExecutionFailed

from atelier_core.image import geometry as G


def _capture(key: str, source: list) -> dict:
    return {"class_type": "AtelierTestCapture", "inputs": {"key": key, "value": source}}


@pytest.fixture(scope="module")
def photo_name(comfy_host) -> str:
    """A 700x460 photo in ComfyUI's input folder (chelsea, upscaled): Kontext mode crops it."""
    from pathlib import Path

    pixels = cv2.imread(str(Path(__file__).parent / "data" / "chelsea_451x300.jpg"))
    cv2.imwrite(
        str(comfy_host.input_path("aspect_photo.png")), cv2.resize(pixels, (700, 460), interpolation=cv2.INTER_CUBIC)
    )
    cv2.imwrite(str(comfy_host.input_path("aspect_other.png")), np.full((460, 700, 3), 90, np.uint8))
    return "aspect_photo.png"


def _graph(image_name: str, original_name: str | None = None, **lock_inputs) -> dict:
    original_name = original_name or image_name
    return {
        "1": {"class_type": "LoadImage", "inputs": {"image": image_name}},
        "9": {"class_type": "LoadImage", "inputs": {"image": original_name}},
        "2": {"class_type": "AtelierAspectLock", "inputs": {"image": ["1", 0], **{**G.LOCK_DEFAULTS, **lock_inputs}}},
        "3": {
            "class_type": "AtelierRestoreSize",
            "inputs": {"edited": ["2", 0], "geometry": ["2", 4], "original": ["9", 0]},
        },
        "4": {"class_type": "FluxKontextImageScale", "inputs": {"image": ["1", 0]}},
        "c0": _capture("input", ["1", 0]),
        "c1": _capture("locked", ["2", 0]),
        "c2": _capture("width", ["2", 1]),
        "c3": _capture("height", ["2", 2]),
        "c4": _capture("pad_mask", ["2", 3]),
        "c5": _capture("geometry", ["2", 4]),
        "c6": _capture("latent", ["2", 5]),
        "c7": _capture("restored", ["3", 0]),
        "c8": _capture("region", ["3", 1]),
        "c9": _capture("core", ["4", 0]),
    }


def test_lock_and_restore_in_the_executor(comfy_host, photo_name):
    comfy_host.fresh_executor()
    comfy_host.run(_graph(photo_name))
    got = comfy_host.captured
    image, locked = got["input"], got["locked"]
    geo = G.Geometry.coerce(got["geometry"])  # the pack's own copy of the class (ComfyUI imports it under its path)
    assert geo.is_cropped
    # Same bucket as core's FluxKontextImageScale, and a matching empty latent.
    assert locked.shape[1:3] == got["core"].shape[1:3] == (geo.target_height, geo.target_width)
    assert (got["width"], got["height"]) == geo.target_size
    assert got["latent"]["samples"].shape == (1, 16, geo.target_height // 8, geo.target_width // 8)
    assert got["pad_mask"].shape == (1, geo.target_height, geo.target_width) and float(got["pad_mask"].max()) == 0.0
    # Restored: exact original size, margins bit-identical, region mask marks the crop box.
    restored = got["restored"]
    assert restored.shape == image.shape
    outside = got["region"][0] == 0
    assert outside.any() and torch.equal(restored[0][outside], image[0][outside])
    assert got["region"].shape == image.shape[:3]


def test_pad_mode_through_the_executor(comfy_host, photo_name):
    comfy_host.fresh_executor()
    comfy_host.run(
        _graph(
            photo_name,
            size="custom W:H",
            custom_width=1,
            custom_height=1,
            fit="pad",
            pad_mode="color",
            pad_color="#ff0000",
            size_by="long side",
            long_side=512,
        )
    )
    got = comfy_host.captured
    assert got["locked"].shape == (1, 512, 512, 3)
    assert torch.equal(got["locked"][0, 0, 0], torch.tensor([1.0, 0.0, 0.0]))
    assert float(got["pad_mask"][0, 0, 0]) == 1.0 and float(got["pad_mask"][0, 256, 256]) == 0.0
    assert got["restored"].shape == got["input"].shape


def test_geometry_from_another_image_fails_on_the_node(comfy_host, photo_name):
    with pytest.raises(ExecutionFailed) as failure:
        comfy_host.run(_graph(photo_name, original_name="aspect_other.png"))
    message = failure.value.exception_message
    assert "Kontext Restore Size" in message and "not the image this geometry was made from" in message


def test_buckets_are_cores(comfy_host):
    import comfy_extras.nodes_flux as core_flux

    # Core fixed the spelling of its list's name (PREFERED_ up to 0.10, PREFERRED_ later); either is core's list.
    names = [n for n in ("PREFERRED_KONTEXT_RESOLUTIONS", "PREFERED_KONTEXT_RESOLUTIONS") if hasattr(core_flux, n)]
    assert names, "core's FluxKontextImageScale resolution list is gone: find where it moved"
    assert list(G.KONTEXT_RESOLUTIONS) == [tuple(r) for r in getattr(core_flux, names[0])]
