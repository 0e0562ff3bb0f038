"""Ten chained edits, each re-rendered with Kontext-like drift and merged back before the next.

The guarantees (atelier_core.image.diffmerge_chain measures them against the ideal chain):

* with the default settings no pixel farther than 8 px from that turn's edit ever changes (no spurious
  detections that would then stay in the picture for good), >= 99.5 % of the pixels outside the edits grown by
  8 px are the original's bit for bit after ten turns and >= 60 dB from the ideal chain there, and the edits
  themselves were taken (PSNR to the ideal >= 30 dB); three photos, all three drift sizes, every edit kind;
* with the wider band the node's help page offers for soft edits (grow 4, feather 12) the same holds at 20 px.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core.image import diffmerge, diffmerge_chain

DATA = Path(__file__).parent / "data"


def _photo(name: str, size: int | None = None) -> np.ndarray:
    rgb = cv2.imread(str(DATA / name))[..., ::-1].astype(np.float32) / 255.0
    if size:
        rgb = cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return np.ascontiguousarray(rgb)


CASES = [
    ("astronaut_512.jpg", None, "large", 0),
    ("chelsea_451x300.jpg", None, "medium", 2),
    ("coffee_600x400.jpg", None, "large", 5),
    ("astronaut_512.jpg", 640, "small", 4),
]


@pytest.mark.parametrize("name,size,drift,seed", CASES, ids=[f"{c[0][:5]}-{c[2]}" for c in CASES])
def test_ten_turns_with_defaults_stay_exact_8_px_from_the_edits(name, size, drift, seed):
    figures = diffmerge_chain.run_chain(_photo(name, size), 10, drift, seed, far=8.0, dilate=8)
    # Nothing changes farther than 8 px from a turn's edit (so nothing farther than 20 px either) ...
    assert figures.far_changed == [0] * 10, figures.far_changed
    assert max(figures.band) <= 8.0, figures.band
    assert min(figures.band) > 3.0, figures.band  # every edit was detected and blended, not skipped
    # ... and after ten turns the pixels outside the edits grown by 8 px are the original's.
    assert figures.identical_outside >= 0.995, figures.identical_outside
    assert figures.psnr_outside >= 60.0, figures.psnr_outside
    assert figures.psnr_edits >= 30.0, figures.psnr_edits


@pytest.mark.parametrize("name,size,drift,seed", CASES[:2], ids=[f"{c[0][:5]}-{c[2]}" for c in CASES[:2]])
def test_ten_turns_with_a_wide_band_change_nothing_20_px_from_the_edits(name, size, drift, seed):
    # The wider band the help page offers for soft edits (grow 4, feather 12) is 17-19 px and still bounded.
    opts = diffmerge.MergeOptions(grow=4, feather=12)
    figures = diffmerge_chain.run_chain(_photo(name, size), 10, drift, seed, opts, far=20.0, dilate=20)
    assert figures.far_changed == [0] * 10, figures.far_changed
    assert 12.0 < min(figures.band) and max(figures.band) <= 20.0, figures.band
    assert figures.identical_outside >= 0.995, figures.identical_outside
    assert figures.psnr_outside >= 60.0, figures.psnr_outside
    assert figures.psnr_edits >= 30.0, figures.psnr_edits


def test_chain_counts_a_spurious_change():
    # The measure itself must see a far change: an options set that merges the whole frame changes everything.
    photo = _photo("chelsea_451x300.jpg")
    opts = diffmerge.MergeOptions(threshold=0.05, min_area=0, fill_holes=False)
    figures = diffmerge_chain.run_chain(photo, 1, "large", 0, opts)
    assert figures.far_changed[0] > 0.5 * photo.shape[0] * photo.shape[1]
    assert figures.identical_outside < 0.5
    picture = diffmerge_chain.spurious_picture(photo, figures)
    assert picture.shape == photo.shape and np.isclose(picture, (1.0, 0.1, 0.1)).all(axis=2).mean() > 0.5


def test_chain_picture_outlines_the_edits_and_nothing_is_red_without_spurious_changes():
    photo = _photo("chelsea_451x300.jpg")
    figures = diffmerge_chain.run_chain(photo, 2, "small", 4)
    assert sum(figures.far_changed) == 0
    picture = diffmerge_chain.spurious_picture(photo, figures)
    red = np.isclose(picture, (1.0, 0.1, 0.1)).all(axis=2)
    green = np.isclose(picture, (0.1, 1.0, 0.1)).all(axis=2)
    assert not red.any()
    # The outline sits on the edits' border: every green pixel is within 1 px of an edit and outside its core.
    assert green.sum() > 100
    assert not (green & ~diffmerge.grow_mask(figures.edits, 1)).any()
    assert not (green & diffmerge.grow_mask(figures.edits, -2)).any()
