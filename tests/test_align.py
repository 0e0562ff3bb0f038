"""Global shift/scale estimation and colour-drift fitting on a real photograph (tests/data/astronaut_512.jpg)."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core.image import align

DATA = Path(__file__).parent / "data"


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    rgb = cv2.imread(str(DATA / "astronaut_512.jpg"))[..., ::-1]
    return np.ascontiguousarray(rgb, dtype=np.float32) / 255.0


def _moved(img: np.ndarray, dx: float, dy: float, scale: float = 1.0) -> np.ndarray:
    """An image whose content sits (dx, dy) further right/down and is ``scale`` larger about the centre."""
    h, w = img.shape[:2]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    # output x' shows input x = (x' - c - d) / s + c
    m = np.array([[1 / scale, 0, cx - (cx + dx) / scale], [0, 1 / scale, cy - (cy + dy) / scale]], np.float64)
    out = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_CUBIC | cv2.WARP_INVERSE_MAP, borderMode=cv2.BORDER_REFLECT)
    return out.reshape(img.shape)


@pytest.mark.parametrize("dx,dy", [(3.0, -2.0), (0.0, 5.0), (1.4, -0.6), (-2.25, 0.75)])
def test_recovers_integer_and_subpixel_shifts(photo, dx, dy):
    a = align.estimate_alignment(photo, _moved(photo, dx, dy))
    assert a.ok
    assert a.dx == pytest.approx(dx, abs=0.06) and a.dy == pytest.approx(dy, abs=0.06)
    assert a.scale == pytest.approx(1.0, abs=1e-3)


def test_recovers_a_small_scale(photo):
    a = align.estimate_alignment(photo, _moved(photo, 2.0, -1.0, 1.012))
    assert a.scale == pytest.approx(1.012, abs=1e-3)
    aligned = align.warp_image(_moved(photo, 2.0, -1.0, 1.012), a)
    assert np.abs(aligned - photo)[40:-40, 40:-40].mean() < 0.01


def test_local_edit_and_exposure_do_not_pull_the_estimate(photo):
    moved = _moved(photo, 1.5, 2.5) * 0.9 + 0.03
    moved[100:260, 250:420] = [0.1, 0.8, 0.2]  # a large local edit, 10% of the frame
    a = align.estimate_alignment(photo, moved)
    assert a.dx == pytest.approx(1.5, abs=0.1) and a.dy == pytest.approx(2.5, abs=0.1)


def test_tiny_images_are_not_aligned():
    a = align.estimate_alignment(np.zeros((16, 16, 3), np.float32), np.zeros((16, 16, 3), np.float32))
    assert not a.ok and "skipped" in a.note


def test_identity_warp_is_an_exact_copy(photo):
    out = align.warp_image(photo, align.Alignment())
    assert np.array_equal(out, photo) and out is not photo


def test_colour_drift_fit_recovers_gains_and_ignores_the_edit(photo):
    from atelier_core.image.color import linear_to_srgb, srgb_to_linear

    gains = np.array([1.08, 0.97, 0.9], np.float32)
    drifted = np.clip(linear_to_srgb(srgb_to_linear(photo) * gains), 0, 1)
    drifted[50:200, 50:200] = [1.0, 0.0, 1.0]
    fix = align.fit_color_drift(photo, drifted)
    # The fit maps the drifted image back: its diagonal is about 1 / gains.
    assert np.allclose(np.diag(fix.matrix), 1 / gains, atol=0.02)
    restored = fix.apply(drifted)
    keep = np.ones(photo.shape[:2], bool)
    keep[50:200, 50:200] = False
    assert np.abs(restored - photo)[keep].mean() < 0.01


def test_colour_fit_inverse_predicts_the_drift_with_its_clipping(photo):
    gains = np.array([1.12, 1.0, 0.9])
    lin = align.srgb_to_linear(photo)
    drifted = align.linear_to_srgb(np.clip(lin * gains + 0.01, 0, 1)).astype(np.float32)
    fix = align.fit_color_drift(photo, drifted)
    assert not fix.is_identity
    predicted = fix.apply_inverse(photo)
    # Forward prediction clips where the re-render clipped; undoing the drift on the re-render cannot.
    assert np.abs(predicted - drifted).max() < 0.01
    assert np.abs(fix.apply(drifted) - photo).max() > 0.02  # the highlights the drift clipped are lost that way


def test_tone_curves_fit_a_gamma_drift_and_ignore_a_recoloured_region(photo):
    moved = np.clip(photo, 0, 1) ** 1.15
    moved[100:300, 100:300] = moved[100:300, 100:300][..., ::-1]  # 15 % of the frame recoloured
    curves = align.fit_tone_curves(photo, moved)
    assert not curves.is_identity
    out = curves.apply(moved)
    outside = np.ones(photo.shape[:2], bool)
    outside[100:300, 100:300] = False
    assert np.abs(out[outside] - photo[outside]).mean() < 0.25 * np.abs(moved[outside] - photo[outside]).mean()
    # Within MAX_CURVE_CORRECTION of identity everywhere, and monotone.
    assert np.abs(curves.values - curves.knots).max() <= align.MAX_CURVE_CORRECTION + 1e-9
    assert (np.diff(curves.values, axis=1) >= 0).all()


def test_bin_medians_match_numpy_per_bin():
    rng = np.random.default_rng(3)
    mov = rng.random(50000)
    ref = mov + rng.normal(0, 0.02, mov.size) + 0.1 * (rng.random(mov.size) < 0.2)  # 20 % outliers
    medians, counts = align._bin_medians(mov, ref, 49)
    bins = np.clip((mov * 48).round().astype(int), 0, 48)
    exact = np.array([np.median(ref[bins == k]) for k in range(49)])
    assert (counts == np.bincount(bins, minlength=49)).all()
    level = (ref.max() - ref.min()) / align._MEDIAN_LEVELS
    assert np.abs(medians - exact).max() <= level


def test_drift_prediction_lookup_equals_the_direct_prediction(photo):
    gains = np.array([1.1, 1.0, 0.88])
    lin = align.srgb_to_linear(photo)
    drifted = align.linear_to_srgb(np.clip(lin * gains + 0.004, 0, 1)).astype(np.float32) ** 1.08
    fix = align.fit_color_drift(photo, drifted)
    curves = align.fit_tone_curves(drifted, fix.apply_inverse(photo))
    assert not fix.is_identity and not curves.is_identity
    direct = curves.apply(fix.apply_inverse(photo))
    looked_up = align.drift_prediction(fix, curves).apply(photo)
    assert np.abs(looked_up - direct).max() < 3e-5
    # The lookup is only defined for the diagonal fits fit_color_drift makes.
    mixing = align.ColorTransform(np.array([[1.0, 0.1, 0], [0, 1, 0], [0, 0, 1]]), np.zeros(3))
    with pytest.raises(ValueError, match="diagonal"):
        align.drift_prediction(mixing, None)


@pytest.mark.parametrize("shape", [(40000, 1, 3), (2, 33000, 3), (300, 200, 3)])
def test_tone_curves_apply_to_any_shape_as_an_interpolation(shape):
    # cv2.remap refuses a side of 32767 or more: a long list of sampled pixels must still go through.
    knots = np.linspace(0.0, 1.0, 49)
    values = np.stack([knots**1.1, np.sqrt(knots), knots * 0.9 + 0.05])
    curves = align.ToneCurves(knots, values)
    srgb = np.random.default_rng(0).random(shape, dtype=np.float32)
    out = curves.apply(srgb)
    assert out.shape == shape
    for c in range(3):
        expected = np.interp(srgb[..., c], knots, values[c])
        assert np.abs(out[..., c] - expected).max() < 2e-3  # remap resolves 1/32 of a knot step


def test_tone_curves_on_an_8_bit_picture_give_the_interpolations_numbers():
    # An 8-bit picture (values k / 255, as loaded) is looked up in a 256-entry table; the numbers must be the
    # per-pixel interpolation's, for the whole image and for a crop of it, and one value off the 8-bit grid
    # sends the whole image through the interpolation.
    knots = np.linspace(0.0, 1.0, 49)
    curves = align.ToneCurves(knots, np.stack([knots**1.1, np.sqrt(knots), knots * 0.9 + 0.05]))
    picture = np.random.default_rng(1).integers(0, 256, (120, 90, 3)).astype(np.float32) / 255.0
    assert align._eight_bit_levels(picture) is not None
    for image in (picture, picture[10:70, 5:60]):
        assert np.array_equal(curves.apply(image), curves._interpolate(np.ascontiguousarray(image)))
    off = picture.copy()
    off[60, 40, 1] = 0.5001
    assert align._eight_bit_levels(off) is None
    assert np.array_equal(curves.apply(off), curves._interpolate(off))
    assert not np.array_equal(curves.apply(off)[60, 40], curves.apply(picture)[60, 40])
