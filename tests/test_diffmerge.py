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

from atelier_core.errors import AtelierError
from atelier_core.image import align, diffmerge

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


def test_closing_fills_gaps_to_the_outline_without_moving_it():
    from atelier_core.image.diffmerge_mask import close_mask

    mask = np.zeros((80, 120), bool)
    mask[20:60, 20:100] = True
    mask[20:45, 50:56] = False  # a 6 px wide channel from the top edge into the region: not a hole
    mask[30:50, 10:20] = True  # a tab sticking out on the left
    closed = close_mask(mask, 4)
    # The channel is closed but for its mouth (a disc of radius 4 reaches 2 px into a 6 px opening) ...
    assert closed[22:45, 50:56].all() and not closed[20, 50:56].all()
    # ... straight outlines do not move, and what is added (the channel, the tab's inner corners) lies within 4 px.
    assert not (closed[:20].any() or closed[60:].any() or closed[:, 100:].any() or closed[:, :10].any())
    assert diffmerge.grow_mask(mask, 4)[closed].all() and (closed & ~mask)[26:54, 10:20].any()
    wide = mask.copy()
    wide[20:45, 50:62] = False  # 12 px: wider than 2 x 4, stays open
    assert np.array_equal(close_mask(wide, 4)[20:40, 51:61], wide[20:40, 51:61])
    assert np.array_equal(close_mask(mask, 0), mask) and not close_mask(np.zeros_like(mask), 4).any()


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
    # The check goes block by block: a bad value in the last, partial block is found too.
    odd = np.ascontiguousarray(photo[:, :-1])
    assert odd.size % diffmerge._FINITE_BLOCK != 0
    last = odd.copy()
    last[-1, -1, -1] = -np.inf
    with pytest.raises(AtelierError, match="edited image contains NaN or infinite"):
        diffmerge.diff_merge(odd, last)
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


# Large edits: the colour-drift fit must not be pulled by them. A full 3x3 colour fit could explain a recoloured
# region (a channel permutation is a 3x3 matrix) and, once that region was ~10% of the frame, mapped the edit back
# onto the original: the detected mask covered 46% of the frame in 16 pieces and the merge showed wrong colours.
# Here the drift is a known gain in linear light, so the reported gains (edit -> original) must be 1 / tint.
LINEAR_TINT = (1.04, 1.0, 0.93)


def _rect(shape, rows, cols) -> np.ndarray:
    h, w = shape[:2]
    truth = np.zeros((h, w), bool)
    truth[int(h * rows[0]) : int(h * rows[1]), int(w * cols[0]) : int(w * cols[1])] = True
    return truth


def _rerender(clean, shift=(1.6, -0.8), tint=LINEAR_TINT) -> np.ndarray:
    """Kontext-like drift of the whole edited image: a sub-pixel shift and a colour cast in linear light."""
    from atelier_core.image.color import linear_to_srgb, srgb_to_linear

    out = np.clip(align.warp_image(clean, align.Alignment(-shift[0], -shift[1])), 0, 1)
    return np.clip(linear_to_srgb(srgb_to_linear(out) * np.float32(tint)), 0, 1).astype(np.float32)


def _check_large_edit(photo, clean, truth, edited, iou_min=0.9, options=None):
    """IoU vs the grown truth, drift gains within 0.05 of the tint, PSNR inside >= 28 dB, outside exact."""
    opts = options or diffmerge.MergeOptions()
    r = diffmerge.diff_merge(photo, edited, opts)
    hard = r.hard_mask > 0
    grown = diffmerge.grow_mask(truth, opts.grow)
    iou = (hard & grown).sum() / (hard | grown).sum()
    assert iou >= iou_min, iou
    assert r.report["color_corrected"]
    assert np.allclose(1 / np.array(r.report["color_gain"]), LINEAR_TINT, atol=0.05), r.report["color_gain"]
    assert r.report["shift_x"] == pytest.approx(1.6, abs=0.15) and r.report["shift_y"] == pytest.approx(-0.8, abs=0.15)
    outside = r.soft_mask == 0
    assert np.array_equal(r.merged[outside], photo[outside])
    assert psnr(r.merged[~grown], photo[~grown]) >= 45
    inside = diffmerge.grow_mask(truth, -3)
    assert psnr(r.merged[inside], clean[inside]) >= 28
    return r


def test_large_recolour_does_not_pull_the_colour_fit(photo):
    # The README picture's edit: a channel permutation over 10.5% of the frame, plus shift and tint.
    truth = _rect(photo.shape, (0.55, 0.9), (0.15, 0.45))
    clean = photo.copy()
    clean[truth] = np.clip(photo[truth][:, [2, 0, 1]] * 1.1, 0, 1)
    edited = _rerender(clean)
    r = _check_large_edit(photo, clean, truth, edited)
    assert r.report["regions"] == 1 and r.report["changed_fraction"] < 0.14
    # Without grow the hard mask is the recoloured rectangle itself.
    bare = diffmerge.diff_merge(photo, edited, diffmerge.MergeOptions(grow=0)).hard_mask > 0
    assert (bare & truth).sum() / (bare | truth).sum() >= 0.85
    # The fit itself: diagonal 1 / tint, no cross-talk between channels.
    fix = align.fit_color_drift(photo, align.warp_image(edited, align.Alignment(1.6, -0.8)))
    assert np.allclose(fix.matrix, np.diag(1 / np.array(LINEAR_TINT)), atol=0.02) and not fix.note


def test_readme_picture_case_sRGB_cast(photo):
    # docs/make_readme_image.py exactly: bilinear shift, then a cast in sRGB (gain and lift), which the linear
    # per-channel model only approximates; the mask and the merge must still be right.
    h, w = photo.shape[:2]
    truth = _rect(photo.shape, (0.55, 0.9), (0.15, 0.45))
    clean = photo.copy()
    clean[truth] = np.clip(photo[truth][:, [2, 0, 1]] * 1.1, 0, 1)
    shifted = cv2.warpAffine(clean, np.float32([[1, 0, 1.6], [0, 1, -0.8]]), (w, h), borderMode=cv2.BORDER_REFLECT)
    edited = np.clip(shifted * np.float32([1.04, 1.0, 0.93]) + 0.01, 0, 1)
    r = diffmerge.diff_merge(photo, edited)
    hard = r.hard_mask > 0
    grown = diffmerge.grow_mask(truth, 6)
    assert (hard & grown).sum() / (hard | grown).sum() >= 0.9
    assert r.report["regions"] == 1 and r.report["color_corrected"]
    assert np.array_equal(r.merged[r.soft_mask == 0], photo[r.soft_mask == 0])
    inside = diffmerge.grow_mask(truth, -3)
    assert psnr(r.merged[inside], clean[inside]) >= 28


def test_two_separate_edits(photo):
    top = _rect(photo.shape, (0.08, 0.30), (0.05, 0.28))  # 5% each
    bottom = _rect(photo.shape, (0.60, 0.82), (0.62, 0.85))
    clean = photo.copy()
    clean[top] = photo[top][:, [1, 2, 0]]
    clean[bottom] = 1.0 - photo[bottom]
    r = _check_large_edit(photo, clean, top | bottom, _rerender(clean))
    assert r.report["regions"] == 2


@pytest.mark.parametrize("gain,lift", [(1.3, 0.08), (0.6, 0.0)], ids=["brighter", "darker"])
def test_lighting_change_over_30_percent(photo, gain, lift):
    truth = _rect(photo.shape, (0.05, 0.60), (0.40, 0.95))
    assert truth.mean() > 0.3
    clean = photo.copy()
    clean[truth] = np.clip(photo[truth] * gain + lift, 0, 1)
    # Darkening by 0.6 leaves the photo's near-black areas below ΔE 6: they stay the original's (about 10k px
    # at any grow). The IoU is taken against the truth grown by ``grow``, so it depends on the band: with the
    # wide band (grow 4) it is 0.885, with the default (grow 1) 0.863 for the same undetected pixels.
    _check_large_edit(photo, clean, truth, _rerender(clean), iou_min=0.86 if gain < 1 else 0.88)
    wide = diffmerge.MergeOptions(grow=4, feather=12)
    _check_large_edit(photo, clean, truth, _rerender(clean), iou_min=0.88, options=wide)


def test_implausible_colour_fit_is_rejected_and_reported(photo):
    # An edit of the whole frame is no drift: no correction, and the report says so.
    inverted = np.ascontiguousarray(1.0 - photo)
    fix = align.fit_color_drift(photo, inverted)
    assert fix.is_identity and "no colour correction" in fix.note
    r = diffmerge.diff_merge(photo, inverted)
    assert not r.report["color_corrected"] and any("no colour correction" in n for n in r.report["notes"])


def test_envelope_absorbs_residual_misregistration_at_edges(photo):
    # A third of a pixel of misalignment left over and a softer re-render light up the photo's sharp edges
    # without the neighbourhood tolerance; with it (the default) nothing is detected, and a real edit still is.
    soft = cv2.GaussianBlur(align.warp_image(photo, align.Alignment(0.35, -0.3)), (0, 0), 0.7)
    strict = diffmerge.diff_merge(photo, soft, diffmerge.MergeOptions(align=False, envelope=0))
    tolerant = diffmerge.diff_merge(photo, soft, diffmerge.MergeOptions(align=False))
    assert strict.report["changed_pixels"] > 200
    assert tolerant.report["changed_pixels"] == 0
    edited = soft.copy()
    edited[200:260, 200:260] = (0.1, 0.7, 0.2)
    found = diffmerge.diff_merge(photo, edited, diffmerge.MergeOptions(align=False)).hard_mask > 0
    assert found[210:250, 210:250].all() and found.sum() < 2 * (60 + 2 * 4) ** 2
