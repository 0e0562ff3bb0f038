"""The diff-merge pipeline on synthetic edits of a real photograph (tests/data/astronaut_512.jpg).

Each case paints a local edit (an ellipse with new colour and texture) and then degrades the *whole* edited image
the way a Kontext re-render does: global shift (integer or sub-pixel), colour tint, blur, noise. Thresholds:

* the detected hard mask vs the true edit region (grown by the same ``grow``): IoU >= 0.9 (0.8 with noise);
* outside the soft mask the merged image equals the original bit for bit;
* away from the edit (outside the grown truth) PSNR(merged, original) >= 45 dB;
* inside the edit (truth shrunk by 3 px), PSNR(merged, clean edit) >= 30 dB (>= 28 dB with noise/blur);
* the reported shift is within 0.15 px of the applied one.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core import align, diffmerge
from atelier_core.errors import AtelierError

DATA = Path(__file__).parent / "data"


def load_photo() -> np.ndarray:
    rgb = cv2.imread(str(DATA / "astronaut_512.jpg"))[..., ::-1]
    return np.ascontiguousarray(rgb, dtype=np.float32) / 255.0


def make_edit(orig, shift=(0.0, 0.0), tint=(1.0, 1.0, 1.0), blur=0.0, noise=0.0, seed=0):
    """-> (degraded edited image, clean edited image, true edit region)."""
    h, w = orig.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    truth = ((yy - 0.35 * h) / (0.12 * h)) ** 2 + ((xx - 0.62 * w) / (0.16 * w)) ** 2 < 1
    clean = orig.copy()
    pattern = 0.5 + 0.4 * np.sin(xx / 7.0)[..., None] * np.array([1.0, 0.3, -0.5])
    clean[truth] = np.clip(pattern[truth] * 0.7 + np.array([0.1, 0.4, 0.8]) * 0.3, 0, 1)
    out = clean
    if shift != (0.0, 0.0):
        out = align.warp_image(out, align.Alignment(-shift[0], -shift[1]))
    out = np.clip(out * np.array(tint, np.float32), 0, 1)
    if blur:
        out = cv2.GaussianBlur(out, (0, 0), blur)
    if noise:
        out = out + np.random.default_rng(seed).normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 1).astype(np.float32), clean, truth


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(1 / mse)


@pytest.fixture(scope="module")
def photo():
    return load_photo()


CASES = {
    "local edit only": dict(),
    "integer shift": dict(shift=(2.0, -1.0)),
    "sub-pixel shift": dict(shift=(1.4, 0.6)),
    "tint": dict(tint=(1.05, 0.98, 0.93)),
    "blur": dict(blur=0.8),
    "noise": dict(noise=0.01),
    "everything": dict(shift=(1.4, -2.3), tint=(1.04, 1.0, 0.95), blur=0.7, noise=0.01),
}


@pytest.mark.parametrize("case", list(CASES))
def test_merge_keeps_the_original_outside_and_the_edit_inside(photo, case):
    kw = CASES[case]
    edited, clean, truth = make_edit(photo, **kw)
    opts = diffmerge.MergeOptions()
    r = diffmerge.diff_merge(photo, edited, opts)
    hard = r.hard_mask > 0
    grown = diffmerge.grow_mask(truth, opts.grow)
    iou = (hard & grown).sum() / (hard | grown).sum()
    assert iou >= (0.8 if "noise" in kw else 0.9), iou
    outside = r.soft_mask == 0
    assert np.array_equal(r.merged[outside], photo[outside])
    assert psnr(r.merged[~grown], photo[~grown]) >= 45
    inside = diffmerge.grow_mask(truth, -3)
    assert psnr(r.merged[inside], clean[inside]) >= (28 if ("noise" in kw or "blur" in kw) else 30)
    sx, sy = kw.get("shift", (0.0, 0.0))
    assert r.report["shift_x"] == pytest.approx(sx, abs=0.15) and r.report["shift_y"] == pytest.approx(sy, abs=0.15)
    assert r.merged.shape == photo.shape and r.preview.shape == photo.shape
    assert r.soft_mask.min() >= 0 and r.soft_mask.max() <= 1 and (r.soft_mask[hard] == 1).all()


@pytest.mark.parametrize("blend", ["multiband", "alpha"])
def test_other_blends_keep_the_outside_exact(photo, blend):
    edited, clean, truth = make_edit(photo, shift=(1.0, 1.0))
    r = diffmerge.diff_merge(photo, edited, diffmerge.MergeOptions(blend=blend))
    outside = r.soft_mask == 0
    assert np.array_equal(r.merged[outside], photo[outside])
    inside = diffmerge.grow_mask(truth, -3)
    assert psnr(r.merged[inside], clean[inside]) >= 30


def test_auto_threshold_and_cie76(photo):
    edited, _, truth = make_edit(photo, shift=(0.5, 0.5), tint=(1.03, 1.0, 0.97))
    for opts in (diffmerge.MergeOptions(auto_threshold=True), diffmerge.MergeOptions(formula="cie76", threshold=8)):
        r = diffmerge.diff_merge(photo, edited, opts)
        grown = diffmerge.grow_mask(truth, opts.grow)
        hard = r.hard_mask > 0
        assert (hard & grown).sum() / (hard | grown).sum() >= 0.9
    assert r.report["formula"] == "cie76"


def test_no_change_returns_the_original_exactly(photo):
    r = diffmerge.diff_merge(photo, photo.copy())
    assert np.array_equal(r.merged, photo) and r.hard_mask.max() == 0 and r.soft_mask.max() == 0
    assert r.report["changed_pixels"] == 0


def test_full_user_mask_returns_the_edit(photo):
    edited, _, _ = make_edit(photo, tint=(1.1, 1.0, 0.9))
    opts = diffmerge.MergeOptions(user_mask_mode="replace", align=False)
    r = diffmerge.diff_merge(photo, edited, opts, np.ones(photo.shape[:2], np.float32))
    assert np.array_equal(r.merged, edited)


def test_user_mask_add_and_subtract(photo):
    edited, _, truth = make_edit(photo)
    extra = np.zeros(photo.shape[:2], np.float32)
    extra[400:450, 20:80] = 1
    added = diffmerge.diff_merge(photo, edited, diffmerge.MergeOptions(user_mask_mode="add"), extra)
    assert added.hard_mask[400:450, 20:80].all()
    removed = diffmerge.diff_merge(photo, edited, diffmerge.MergeOptions(user_mask_mode="subtract"), truth)
    assert not (removed.hard_mask > 0)[truth].any()


def test_different_sizes_are_resized_and_reported(photo):
    edited, _, truth = make_edit(photo)
    half = cv2.resize(edited, (256, 256), interpolation=cv2.INTER_AREA)
    r = diffmerge.diff_merge(photo, half)
    assert r.merged.shape == photo.shape
    assert any("resized" in n for n in r.report["notes"])
    grown = diffmerge.grow_mask(truth, 6)
    hard = r.hard_mask > 0
    assert (hard & grown).sum() / (hard | grown).sum() >= 0.8


def test_other_aspect_is_a_centre_crop_and_margins_stay_original(photo):
    edited, _, _ = make_edit(photo)
    crop = edited[:, 64:448]  # 384 wide: a centre crop of the width
    r = diffmerge.diff_merge(photo, cv2.resize(crop, (300, 400), interpolation=cv2.INTER_AREA))
    assert any("centre crop" in n for n in r.report["notes"])
    assert np.array_equal(r.merged[:, :60], photo[:, :60]) and np.array_equal(r.merged[:, -60:], photo[:, -60:])


def test_grey_and_rgba_inputs(photo):
    grey = photo.mean(axis=2, keepdims=True)
    edited = grey.copy()
    edited[100:200, 100:200] = 1.0 - edited[100:200, 100:200]
    r = diffmerge.diff_merge(grey, edited)
    assert r.merged.shape == grey.shape and r.hard_mask[120:180, 120:180].all()
    rgba = np.concatenate([photo, np.ones((*photo.shape[:2], 1), np.float32)], axis=2)
    e_rgba = rgba.copy()
    e_rgba[300:400, 300:400, 3] = 0.0  # only the alpha changes
    r = diffmerge.diff_merge(rgba, e_rgba)
    assert r.merged.shape == rgba.shape
    assert (r.merged[320:380, 320:380, 3] == 0).all() and (r.merged[:200, :200] == rgba[:200, :200]).all()


def test_one_pixel_images():
    a = np.zeros((1, 1, 3), np.float32)
    b = np.ones((1, 1, 3), np.float32)
    same = diffmerge.diff_merge(a, a.copy())
    assert np.array_equal(same.merged, a)
    changed = diffmerge.diff_merge(a, b, diffmerge.MergeOptions(min_area=0))
    assert np.array_equal(changed.merged, b)
    assert any("alignment skipped" in n for n in changed.report["notes"])


def test_bad_inputs_raise_clear_errors(photo):
    bad = photo.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(AtelierError, match="NaN or infinite"):
        diffmerge.diff_merge(photo, bad)
    bad[0, 0, 0] = np.inf
    with pytest.raises(AtelierError, match="original"):
        diffmerge.diff_merge(bad, photo)
    with pytest.raises(AtelierError, match="1-4 channels"):
        diffmerge.diff_merge(np.zeros((8, 8, 5)), np.zeros((8, 8, 5)))
    with pytest.raises(AtelierError, match="blend"):
        diffmerge.diff_merge(photo, photo, diffmerge.MergeOptions(blend="gaussian"))
    with pytest.raises(AtelierError, match="threshold"):
        diffmerge.diff_merge(photo, photo, diffmerge.MergeOptions(threshold=0))


def test_batches_broadcast_one_original(photo):
    e1, _, _ = make_edit(photo)
    e2 = photo.copy()
    results = diffmerge.diff_merge_batch(photo[None], np.stack([e1, e2]))
    assert len(results) == 2
    assert results[0].report["changed_pixels"] > 0 and results[1].report["changed_pixels"] == 0
    with pytest.raises(AtelierError, match="batch"):
        diffmerge.diff_merge_batch(np.stack([photo] * 2), np.stack([photo] * 3))


def test_report_text_names_shift_threshold_and_area(photo):
    edited, _, _ = make_edit(photo, shift=(2.0, 0.0))
    text = diffmerge.format_report(diffmerge.diff_merge(photo, edited).report)
    assert "shift: dx=+2.00" in text and "threshold: ΔE 6.00" in text and "changed:" in text
