"""CIELAB conversions and colour differences against published reference values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from atelier_core.image import color

# Sharma, Wu & Dalal (2005), CIEDE2000 test data (pairs chosen to cover hue wrap, the blue rotation term and
# near-zero chroma).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, -1.3802, -84.2814), (50.0, 0.0, -82.7485), 1.0000),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0009), 7.1792),
    ((50.0, 2.49, -0.001), (50.0, -2.49, 0.0011), 7.2195),
    ((50.0, -0.001, 2.49), (50.0, 0.0009, -2.49), 4.8045),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((22.7233, 20.0904, -46.694), (23.0331, 14.973, -42.5619), 2.0373),
    ((2.0776, 0.0795, -1.135), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_sharma_reference_pairs_both_ways():
    a = np.array([p[0] for p in SHARMA])
    b = np.array([p[1] for p in SHARMA])
    want = np.array([p[2] for p in SHARMA])
    assert np.abs(color.delta_e_ciede2000(a, b) - want).max() < 1e-4
    assert np.abs(color.delta_e_ciede2000(b, a) - want).max() < 1e-4


def test_known_srgb_to_lab_values():
    assert np.allclose(color.srgb_to_lab(np.array([1.0, 1.0, 1.0])), [100.0, 0.0, 0.0], atol=1e-4)
    assert np.allclose(color.srgb_to_lab(np.array([0.0, 0.0, 0.0])), [0.0, 0.0, 0.0], atol=1e-4)
    assert np.allclose(color.srgb_to_lab(np.array([1.0, 0.0, 0.0])), [53.2408, 80.0925, 67.2032], atol=0.01)
    assert np.allclose(color.srgb_to_lab(np.array([0.0, 0.0, 1.0])), [32.2970, 79.1875, -107.8602], atol=0.01)


def test_round_trip_and_dtype():
    rgb = np.random.default_rng(1).random((64, 64, 3)).astype(np.float32)
    lab = color.srgb_to_lab(rgb)
    assert lab.dtype == np.float32
    assert np.abs(color.lab_to_srgb(lab) - rgb).max() < 1e-4
    rgb64 = rgb.astype(np.float64)
    assert color.srgb_to_lab(rgb64).dtype == np.float64
    assert np.abs(color.lab_to_srgb(color.srgb_to_lab(rgb64)) - rgb64).max() < 1e-5


def test_linear_transfer_curve_is_piecewise_and_inverse():
    x = np.linspace(0, 1, 1001, dtype=np.float64)
    lin = color.srgb_to_linear(x)
    assert lin[0] == 0 and abs(lin[-1] - 1) < 1e-6
    assert np.allclose(lin[x <= 0.04045], x[x <= 0.04045] / 12.92)
    assert np.abs(color.linear_to_srgb(lin) - x).max() < 1e-6


def test_cie76_and_formula_names():
    a = np.array([[50.0, 0.0, 0.0]])
    b = np.array([[53.0, 4.0, 0.0]])
    assert color.delta_e(a, b, "cie76")[0] == pytest.approx(5.0)
    assert color.delta_e(a, b, "CIEDE2000")[0] == pytest.approx(color.delta_e_ciede2000(a, b)[0])
    with pytest.raises(ValueError, match="unknown delta E formula"):
        color.delta_e(a, b, "cie94")


lab_value = st.tuples(
    st.floats(0, 100, allow_nan=False), st.floats(-110, 110, allow_nan=False), st.floats(-110, 110, allow_nan=False)
)


@settings(max_examples=300, deadline=None)
@given(lab_value, lab_value)
def test_ciede2000_never_exceeds_2_1_times_cie76(a, b):
    """The diff-merge skips ΔE2000 where ΔE76 < threshold / 2.1; that is only safe if this bound holds."""
    a, b = np.array(a), np.array(b)
    d00 = float(color.delta_e_ciede2000(a, b))
    d76 = float(color.delta_e_cie76(a, b))
    assert d00 <= 2.1 * d76 + 1e-9
    assert float(color.delta_e_ciede2000(a, a)) < 1e-9


def test_hue_free_ciede2000_bounds_hold_on_every_kind_of_colour_pair():
    """The bounds that settle most pixels without the hue terms must hold on every pair: grey and near-grey
    colours (G near 0.5, zero chroma), saturated blues (where the rotation term R_T is largest), small and large
    differences, in float32 as the map computes them."""
    rng = np.random.default_rng(4)
    n = 200000
    lab1 = np.stack([rng.uniform(0, 100, n), rng.uniform(-110, 110, n), rng.uniform(-110, 110, n)], axis=1)
    lab1[: n // 4, 1:] *= rng.uniform(0, 0.05, (n // 4, 1))  # near grey
    blue = slice(n // 4, n // 2)  # hue near 275 degrees, high chroma: the rotation term's home
    hue, chroma = np.radians(rng.uniform(250, 300, n // 4)), rng.uniform(20, 110, n // 4)
    lab1[blue, 1], lab1[blue, 2] = chroma * np.cos(hue), chroma * np.sin(hue)
    step = rng.normal(0, 1, (n, 3)) * rng.choice([0.5, 3.0, 10.0, 40.0], (n, 1))
    lab2 = lab1 + step
    lab2[:1000] = lab1[:1000]  # identical pairs
    lab1, lab2 = lab1.astype(np.float32), lab2.astype(np.float32)
    exact = color.delta_e_ciede2000(lab1.astype(np.float64), lab2.astype(np.float64))
    low, high = color.ciede2000_bounds(lab1, lab2)
    assert (low <= exact * (1 + 1e-5) + 1e-4).all()
    assert (high >= exact * (1 - 1e-5) - 1e-4).all()
    # And they are tight enough to be worth it: around a threshold of 6, most pairs are settled by them.
    near = (exact > 3) & (exact < 12)
    assert ((low[near] > 6) | (high[near] <= 6)).mean() > 0.5
