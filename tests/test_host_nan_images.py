"""NaN and infinite pixels are refused by every image node with a message naming the node and input (issue 23), as
the diff-merge already does; a VAE that turns good pixels into a NaN reference latent is refused by the stitcher."""

from __future__ import annotations

import pytest
import torch

# The nodes raise the pack's AtelierError as ComfyUI imported it (another class object than this process's
# atelier_core.errors.AtelierError), so the tests catch its base class, ValueError, and check the message.
BAD = {"NaN": float("nan"), "inf": float("inf"), "-inf": float("-inf")}


def _image(bad: float | None = None, size: int = 64) -> torch.Tensor:
    image = torch.full((1, size, size, 3), 0.5)
    if bad is not None:
        image[0, size // 2, size // 3, 1] = bad
    return image


def _lock(comfy_host, image):
    cls = comfy_host.node_class("AtelierAspectLock")
    return cls.execute(image, "keep", "crop", "center", "megapixels", 1.0, 1024, 1024, 1024, "edge", "#000000")


@pytest.mark.parametrize("kind", sorted(BAD))
def test_aspect_lock_refuses_nonfinite_pixels(comfy_host, kind):
    with pytest.raises(ValueError, match=r"Kontext Aspect-Ratio Lock: 'image' contains NaN or infinite pixels"):
        _lock(comfy_host, _image(BAD[kind]))


def test_restore_refuses_nonfinite_edited_and_original(comfy_host):
    original = _image(size=80)
    geo = _lock(comfy_host, original).args[4]
    tw, th = geo.target_size
    restore = comfy_host.node_class("AtelierRestoreSize")
    edited = torch.full((1, th, tw, 3), 0.25)
    assert restore.execute(edited, geo, original).args[0].shape == original.shape  # the good case works
    edited[0, 3, 3, 0] = float("nan")
    with pytest.raises(ValueError, match=r"Kontext Restore Size: 'edited image' contains NaN"):
        restore.execute(edited, geo, original)
    bad_original = original.clone()
    bad_original[0, 1, 1, 2] = float("inf")
    with pytest.raises(ValueError, match=r"Kontext Restore Size: 'original' contains NaN or infinite"):
        restore.execute(torch.full((1, th, tw, 3), 0.25), geo, bad_original)


class _VAE:
    def __init__(self, value: float = 0.0):
        self.value = value

    def encode(self, pixels):
        return torch.full((pixels.shape[0], 16, pixels.shape[1] // 8, pixels.shape[2] // 8), self.value)


def _stitch(comfy_host, vae, **refs):
    cls = comfy_host.node_class("AtelierContextStitcher")
    text = [[torch.zeros(1, 8, 4096), {"pooled_output": torch.zeros(1, 768)}]]
    return cls.execute(object(), text, vae, "offset", "keep", "crop", 4096, **refs)


def test_stitcher_refuses_nonfinite_images_and_a_nan_reference_latent(comfy_host):
    assert _stitch(comfy_host, _VAE(), image_1=_image(), image_2=_image()).args[3] > 0  # the good case works
    with pytest.raises(ValueError, match=r"Kontext Context Stitcher.*image_2 contains NaN or infinite pixels"):
        _stitch(comfy_host, _VAE(), image_1=_image(), image_2=_image(float("nan")))
    with pytest.raises(ValueError, match=r"the reference latent the VAE made contains NaN or infinite values"):
        _stitch(comfy_host, _VAE(float("nan")), image_1=_image(size=72))
