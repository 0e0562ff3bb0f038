"""Our Poisson solver against a direct sparse solve, and the multi-band / alpha blends' exactness."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.sparse import lil_matrix
from scipy.sparse.linalg import spsolve

from atelier_core.image import poisson, threads


def _reference(original: np.ndarray, edit: np.ndarray, region: np.ndarray) -> np.ndarray:
    """Textbook discrete Poisson image editing, built pixel by pixel and solved directly.

    For p in the region: sum over in-image neighbours q of (f_p - f_q) = sum (g_p - g_q), with f_q = original
    for q outside the region; no equation term across the image border (Neumann).
    """
    h, w, c = original.shape
    idx = -np.ones((h, w), int)
    pts = np.argwhere(region)
    idx[region] = np.arange(len(pts))
    a = lil_matrix((len(pts), len(pts)))
    b = np.zeros((len(pts), c))
    for k, (y, x) in enumerate(pts):
        for ny, nx in ((y - 1, x), (y + 1, x), (y, x - 1), (y, x + 1)):
            if not (0 <= ny < h and 0 <= nx < w):
                continue
            a[k, k] += 1
            b[k] += edit[y, x] - edit[ny, nx]
            if region[ny, nx]:
                a[k, idx[ny, nx]] -= 1
            else:
                b[k] += original[ny, nx]
    sol = spsolve(a.tocsr(), b)
    out = original.astype(np.float64).copy()
    out[region] = sol.reshape(len(pts), c)
    return out


def _regions(h: int, w: int, rng) -> dict:
    yy, xx = np.mgrid[:h, :w]
    return {
        "blob": (yy - h / 2) ** 2 + (xx - w / 3) ** 2 < (h / 3) ** 2,
        "touching_borders": (yy < h // 2) | (xx < 3),
        "random_speckle": rng.random((h, w)) < 0.7,
        "corner": (yy > h - 10) & (xx > w - 12),
    }


@pytest.mark.parametrize("shape", [(37, 53), (96, 130)])
def test_matches_a_direct_solve_including_border_regions(shape):
    rng = np.random.default_rng(3)
    h, w = shape
    original = rng.random((h, w, 3)).astype(np.float32)
    edit = rng.random((h, w, 3)).astype(np.float32)
    for name, region in _regions(h, w, rng).items():
        out, info = poisson.poisson_blend(original, edit, region, tol=1e-7)
        want = _reference(original, edit, region)
        assert np.abs(out - want).max() < 2e-5, name
        assert np.array_equal(out[~region], original[~region]), name
        assert info.converged


def test_default_tolerance_error_is_a_small_fraction_of_an_8bit_level():
    rng = np.random.default_rng(4)
    h, w = 160, 200
    original = rng.random((h, w, 3)).astype(np.float32)
    edit = rng.random((h, w, 3)).astype(np.float32)
    region = _regions(h, w, rng)["blob"]
    out, info = poisson.poisson_blend(original, edit, region)
    assert np.abs(out - _reference(original, edit, region)).max() < 1 / 255 / 4
    assert info.unknowns == int(region.sum()) and info.cycles >= 1


@pytest.mark.parametrize("direct_up_to", [0, 4000])
def test_correction_solves_scattered_parts_one_by_one_as_one_system(monkeypatch, direct_up_to):
    """A large part and small ones scattered over the frame (one at the image border, two touching only at a
    corner, which are separate 4-connected parts) are solved part by part: the same answer as the textbook,
    whether each part goes through the multigrid or (small parts) through one direct factorisation."""
    monkeypatch.setattr(poisson, "_DIRECT_UNKNOWNS", direct_up_to)
    rng = np.random.default_rng(5)
    h, w = 90, 120
    original = rng.random((h, w, 3)).astype(np.float32)
    edit = rng.random((h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    region = (yy - 20) ** 2 + (xx - 25) ** 2 < 15**2
    region |= (yy > 80) & (xx > 100) & (xx < 110)  # touches the bottom border
    region[50:54, 60:64] = True
    region[54:57, 64:67] = True  # meets the square above only at a corner
    region[5:8, 110:118] = True
    assert poisson._separate_parts(region[poisson._box(region)[0]]) is not None  # the per-part path is taken
    h_corr, box, info = poisson.poisson_correction(original, edit, region, tol=1e-7)
    want = _reference(original, edit, region)
    got = edit[box] + h_corr
    reg = region[box]
    assert np.abs(got[reg] - want[box][reg]).max() < 2e-5
    assert not h_corr[~reg].any()
    assert info.converged and info.unknowns == int(region.sum())


def test_parts_whose_boxes_cover_most_of_the_regions_box_are_still_solved_one_by_one(monkeypatch):
    """An inserted object with a few specks around it (the insertion pair's shape): the parts' boxes cover two
    thirds of the region's box, and solving each on its own box (a third less area) gives the one-box answer."""
    rng = np.random.default_rng(8)
    h, w = 110, 110
    original = rng.random((h, w, 3)).astype(np.float32)
    edit = rng.random((h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    region = (yy - 45) ** 2 + (xx - 45) ** 2 < 40**2  # a disc: its box is 79 x 79 px
    region[96:99, 96:99] = True  # a speck far down to the right: the region's box grows to 94 x 94
    box = poisson._box(region)[0]
    parts = poisson._separate_parts(region[box])
    assert parts is not None and len(parts) == 2
    share = sum(part.size for _, _, part in parts) / region[box].size
    assert 0.6 < share < poisson._MAX_PARTS_SHARE
    by_parts, _, _ = poisson.poisson_correction(original, edit, region, tol=1e-6)
    monkeypatch.setattr(poisson, "_MAX_PARTS_SHARE", 0.0)  # one system on the whole box
    assert poisson._separate_parts(region[box]) is None
    whole, _, _ = poisson.poisson_correction(original, edit, region, tol=1e-6)
    assert np.abs(by_parts - whole).max() < 1e-4


def test_constant_offset_is_removed_exactly():
    """An edit that only brightens a region has the original's gradients: Poisson gives back the original."""
    rng = np.random.default_rng(5)
    original = rng.random((120, 90, 3)).astype(np.float32)
    region = np.zeros((120, 90), bool)
    region[20:100, 10:60] = True
    edit = original + 0.2
    out, _ = poisson.poisson_blend(original, edit, region, tol=1e-6)
    assert np.abs(out - original).max() < 1e-4


def test_full_and_empty_regions_and_channel_counts():
    rng = np.random.default_rng(6)
    for c in (1, 2, 4):
        original = rng.random((40, 50, c)).astype(np.float32)
        edit = rng.random((40, 50, c)).astype(np.float32)
        full, _ = poisson.poisson_blend(original, edit, np.ones((40, 50), bool))
        empty, _ = poisson.poisson_blend(original, edit, np.zeros((40, 50), bool))
        assert np.array_equal(full, edit) and np.array_equal(empty, original)
        region = np.zeros((40, 50), bool)
        region[5:30, 5:45] = True
        out, _ = poisson.poisson_blend(original, edit, region)
        assert out.shape == original.shape and np.array_equal(out[~region], original[~region])


@pytest.mark.parametrize("chans", [1, 2, 5])
def test_any_channel_count_matches_a_direct_solve_on_several_levels(chans):
    """Channels are solved one after the other on one multigrid setup (five channels: more than OpenCV's
    per-pixel transforms take); odd sides and a region on two image borders give coarse grids with phantom
    cells and Neumann sides on every level."""
    rng = np.random.default_rng(7)
    h, w = 71, 93
    original = rng.random((h, w, chans)).astype(np.float32)
    edit = rng.random((h, w, chans)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    region = ((yy - 50) ** 2 + (xx - 70) ** 2 < 30**2) | ((yy > 60) & (xx > 20))
    assert region[-1].any() and region[:, -1].any() and not region[0].any()
    out, info = poisson.poisson_blend(original, edit, region, tol=1e-7)
    assert len(poisson._build_grids(region, (False, True, False, True))) >= 3
    assert np.abs(out - _reference(original, edit, region)).max() < 2e-5
    assert np.array_equal(out[~region], original[~region]) and info.converged


@pytest.mark.parametrize("chans", [1, 3, 4])
def test_a_large_regions_channels_on_the_thread_pool_give_what_one_after_the_other_gives(monkeypatch, chans):
    """From _PARALLEL_UNKNOWNS on, the channels are solved side by side, each with its own buffers: the same
    numbers as one after the other on one set of buffers (any channel count, the pool smaller or larger)."""
    rng = np.random.default_rng(9)
    h, w = 180, 240
    original = rng.random((h, w, chans)).astype(np.float32)
    edit = rng.random((h, w, chans)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    region = ((yy - 90) ** 2 / 80**2 + (xx - 130) ** 2 / 110**2 < 1) | (xx > w - 6)
    assert region.sum() >= poisson._PARALLEL_UNKNOWNS
    pooled = []
    real = threads.ThreadPoolExecutor

    def counting(*args, **kwargs):
        pooled.append(kwargs.get("max_workers"))
        return real(*args, **kwargs)

    monkeypatch.setattr(threads, "ThreadPoolExecutor", counting)
    monkeypatch.setattr(threads, "WORKERS", 2)
    parallel, box, info = poisson.poisson_correction(original, edit, region)
    monkeypatch.setattr(poisson, "_PARALLEL_UNKNOWNS", 10**9)
    serial, serial_box, serial_info = poisson.poisson_correction(original, edit, region)
    assert pooled == ([2] if chans > 1 else [])
    assert np.array_equal(parallel, serial) and box == serial_box
    assert info.converged and info.cycles == serial_info.cycles


def test_coarse_levels_couple_to_known_cells_by_their_distance_to_the_true_edge():
    """Level 1 (2x2 cells): a known neighbour whose finest pixels are all known sits 3/4 of a coarse spacing
    from the cell's centre (coupling 4/3); one whose near half is unknown sits 5/4 away (4/5)."""
    mask = np.zeros((3, 4), bool)
    mask[1, 1:3] = True
    share = np.zeros((3, 4), np.float32)
    share[1, 3] = 0.5  # right of (1, 2): half its finest pixels are unknowns
    n = poisson._coarse_diagonal(mask, share, 2)
    assert n[1, 1] == pytest.approx(1 + 3 * 4 / 3)  # unknown right neighbour, three fully known ones
    assert n[1, 2] == pytest.approx(1 + 2 * 4 / 3 + 1 / (0.75 + 0.5))
    # The finest level's plain stencil is the same rule with size 1: a known neighbour at one spacing.
    fine = poisson._coarse_diagonal(mask, mask.astype(np.float32), 1)
    assert fine[1, 1] == pytest.approx(4.0)


def test_mismatched_shapes_are_refused():
    with pytest.raises(ValueError, match="shapes differ"):
        poisson.poisson_blend(np.zeros((4, 4, 3)), np.zeros((4, 5, 3)), np.ones((4, 4), bool))


@pytest.mark.parametrize("shape", [(64, 64), (101, 77), (9, 13)])
def test_laplacian_pyramid_reconstructs_exactly(shape):
    img = np.random.default_rng(7).random((*shape, 3)).astype(np.float32)
    levels = poisson.pyramid_levels(*shape)
    assert np.abs(poisson.collapse_pyramid(poisson.laplacian_pyramid(img, levels)) - img).max() < 1e-5


def test_multiband_weights_zero_and_one_and_range():
    rng = np.random.default_rng(8)
    a = rng.random((90, 120, 3)).astype(np.float32)
    b = rng.random((90, 120, 3)).astype(np.float32)
    assert np.abs(poisson.multiband_blend(a, b, np.zeros((90, 120))) - a).max() < 1e-5
    assert np.abs(poisson.multiband_blend(a, b, np.ones((90, 120))) - b).max() < 1e-5
    w = np.zeros((90, 120), np.float32)
    w[:, 60:] = 1
    out = poisson.multiband_blend(a, b, w)
    # Far from the seam each side is its own image (flux-kontext-diff-merge's multiband returned a white frame).
    assert np.abs(out[:, :20] - a[:, :20]).max() < 0.05 and np.abs(out[:, -20:] - b[:, -20:]).max() < 0.05
    assert out.min() > -0.2 and out.max() < 1.2


def test_alpha_blend_is_exact_at_zero_and_one():
    rng = np.random.default_rng(9)
    a = rng.random((20, 30, 3)).astype(np.float32)
    b = rng.random((20, 30, 3)).astype(np.float32)
    w = rng.random((20, 30)).astype(np.float32)
    w[:5] = 0
    w[-5:] = 1
    out = poisson.alpha_blend(a, b, w)
    assert np.array_equal(out[:5], a[:5]) and np.array_equal(out[-5:], b[-5:])
    assert np.allclose(out[5:-5], a[5:-5] + w[5:-5, :, None] * (b[5:-5] - a[5:-5]))
