"""The two-pass ΔE map (a half-size pass finds candidates, only tiles holding them are computed at full size)
must detect exactly what one pass over the whole detection copy detects, on real photographs at 1024 px."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core.image import align, color, diffmerge, diffmerge_chain, diffmerge_delta, diffmerge_kind, threads

DATA = Path(__file__).parent / "data"


def _photo(name: str, size: int) -> np.ndarray:
    rgb = cv2.imread(str(DATA / name))[..., ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1))


def _both(monkeypatch, original, edited, options=None):
    """-> (result with one pass over the whole map, result with the two passes)."""
    two = diffmerge.diff_merge(original, edited, options)
    with monkeypatch.context() as m:
        m.setattr(diffmerge_delta, "_MIN_TWO_PASS_PIXELS", 10**12)
        one = diffmerge.diff_merge(original, edited, options)
    return one, two


def _map_shapes(monkeypatch, module) -> list:
    """The shapes of the images delta_e_map is called on through ``module``, recorded in order (the maps are still
    computed)."""
    shapes = []
    real = diffmerge_delta.delta_e_map

    def recording(*args, **kwargs):
        shapes.append(args[0].shape[:2])
        return real(*args, **kwargs)

    monkeypatch.setattr(module, "delta_e_map", recording)
    return shapes


def _drifted(image, seed=3, size="large"):
    rng = np.random.default_rng(seed)
    return diffmerge_chain.drift_for(size, rng).apply(image, rng)


@pytest.mark.parametrize("kind", diffmerge_chain.EDIT_KINDS)
def test_two_passes_detect_what_one_pass_detects(monkeypatch, kind):
    photo = _photo("coffee_600x400.jpg", 1024)
    rng = np.random.default_rng(11)
    region = diffmerge_chain._region(1024, 1024, rng)
    edited = _drifted(diffmerge_chain.apply_edit(photo, region, kind, rng))
    one, two = _both(monkeypatch, photo, edited)
    assert one.hard_mask.sum() > 0.3 * region.sum()  # a removal in a smooth area changes little of it
    assert (one.hard_mask == two.hard_mask).all()
    assert (one.merged == two.merged).all()


def test_thin_strokes_and_faint_wide_changes_are_not_lost_by_the_half_size_pass(monkeypatch):
    photo = _photo("astronaut_512.jpg", 1024)
    edited = photo.copy()
    # Strokes 2-6 px wide in a colour close to the photo's, and a faint darkening over a wide area: the kinds
    # of change a 2x2 average and a blur weaken most.
    for i, width in enumerate((2, 3, 4, 6)):
        y = 120 + 60 * i
        cv2.line(edited, (80, y), (900, y + 40), (0.55, 0.35, 0.3), width)
    edited[600:850, 60:360] *= np.float32(0.75)
    edited[880:1000, 60:360] *= np.float32(0.88)  # near the threshold: partly found, the hardest case
    one, two = _both(monkeypatch, photo, _drifted(edited, seed=5, size="medium"))
    assert one.hard_mask[600:850, 60:360].mean() > 0.9  # the faint change is found
    assert 0.05 < one.hard_mask[880:1000, 60:360].mean() < 0.95
    assert one.hard_mask[100:360, 100:880].sum() > 4000  # and so are the strokes
    assert (one.hard_mask == two.hard_mask).all()


def test_a_change_all_over_the_frame_falls_back_to_one_pass(monkeypatch):
    photo = _photo("chelsea_451x300.jpg", 1024)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 0.06, photo.shape).astype(np.float32), 0, 1)
    calls = _map_shapes(monkeypatch, diffmerge_delta)
    first = diffmerge_delta.two_pass_delta_e(photo, noisy, "ciede2000", 6.0, 1.0, 1)
    # The half-size pass, then one pass over the whole frame (no tiles).
    assert calls == [(512, 512), (1024, 1024)]
    # Told beforehand (diff_merge's quick map) that the change is all over the frame: the one pass straight away.
    calls.clear()
    wide = diffmerge_delta.two_pass_delta_e(photo, noisy, "ciede2000", 6.0, 1.0, 1, wide=True)
    assert calls == [(1024, 1024)]
    assert np.array_equal(wide, first)


def test_quick_map_tells_a_change_all_over_the_frame_from_a_local_one():
    """quick_changes' second figure: near 1 for a frame re-rendered all over, small for a local edit."""
    photo = _photo("chelsea_451x300.jpg", 1024)
    noisy = np.clip(photo + np.random.default_rng(0).normal(0, 0.06, photo.shape).astype(np.float32), 0, 1)
    local = photo.copy()
    local[400:520, 300:420] = [0.9, 0.1, 0.1]
    _, spread_all = diffmerge_kind.quick_changes(photo, noisy, None, "ciede2000", 6.0, 1.0)
    share, spread_local = diffmerge_kind.quick_changes(photo, local, None, "ciede2000", 6.0, 1.0)
    assert spread_all > 0.9
    assert spread_local < 0.15 and 0.005 < share < 0.03


def test_runs_of_a_row():
    row = np.array([0, 1, 1, 0, 0, 1, 0, 1, 1, 1], bool)
    assert diffmerge_delta._runs(row) == [(1, 3), (5, 6), (7, 10)]
    assert diffmerge_delta._runs(np.zeros(4, bool)) == []


@pytest.mark.parametrize("radius", [1.0, 1.5, 2.83, 3.72, 6.0, 11.9, 12.0, 12.5])
def test_grow_and_shrink_keep_exactly_the_euclidean_pixels(radius):
    """Small radii go through a dilation/erosion by a disc, larger ones through the distance transform: both
    must keep exactly the pixels a brute-force Euclidean distance keeps (the image edge is not background)."""
    from atelier_core.image.diffmerge_mask import grow_mask

    rng = np.random.default_rng(int(radius * 100))
    mask = rng.random((41, 57)) < 0.04
    mask[10:30, 15:40] = True
    ys, xs = np.nonzero(mask)
    bys, bxs = np.nonzero(~mask)
    gy, gx = np.mgrid[0:41, 0:57]

    def nearest(py, px, qy, qx):
        d2 = (qy.ravel()[:, None] - py[None]) ** 2 + (qx.ravel()[:, None] - px[None]) ** 2
        return np.sqrt(d2.min(axis=1).astype(np.float32)).reshape(41, 57)

    grown = nearest(ys, xs, gy, gx) <= np.float32(radius)
    shrunk = mask & (nearest(bys, bxs, gy, gx) > np.float32(radius))
    assert np.array_equal(grow_mask(mask, radius), grown)
    assert np.array_equal(grow_mask(mask, -radius), shrunk)


def test_fill_holes_fills_exactly_the_background_that_does_not_reach_the_border():
    """Against the definition: the 4-connected background regions none of whose pixels lies on the border."""
    from atelier_core.image.diffmerge_mask import _fill_holes

    rng = np.random.default_rng(7)
    for trial in range(60):
        h, w = (int(v) for v in rng.integers(1, 70, 2))
        mask = rng.random((h, w)) < rng.uniform(0.2, 0.8)
        if trial % 2:
            mask = cv2.dilate(mask.astype(np.uint8), np.ones((2, 2), np.uint8)).astype(bool)
        n, labels = cv2.connectedComponents((~mask).astype(np.uint8), connectivity=4)
        on_border = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
        holes = ~mask & ~np.isin(labels, on_border)
        assert np.array_equal(_fill_holes(mask), mask | holes), trial
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False  # one hole, diagonally next to nothing
    assert _fill_holes(ring)[4, 4] and not _fill_holes(ring)[0, 0]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_texture_clean_up_on_the_masks_box_matches_the_whole_frame(seed):
    """clean_regions works on the mask's box plus a margin: the same mask as the same steps over the frame, with
    specks scattered around a main change (dropped as texture), in dense groups (kept) and at the frame's edge."""
    from atelier_core.image import diffmerge_mask

    rng = np.random.default_rng(seed)
    h, w = 400, 520
    mask = np.zeros((h, w), bool)
    mask[150:230, 200:300] = True  # the main change
    ys, xs = rng.integers(60, 340, 40), rng.integers(0, 420, 40)  # scattered specks, some at the left edge
    for y, x in zip(ys, xs, strict=True):
        mask[y : y + 3, x : x + int(rng.integers(2, 5))] = True
    mask[300:330:4, 100:140:4] = True  # a dense group of faint pieces
    delta_e = rng.uniform(2.0, 3.0, (h, w)).astype(np.float32)
    delta_e[150:230, 200:300] = 20.0
    whole, dropped_whole = diffmerge_mask._clean_box(mask, delta_e, 2.0, 4.0, 48.0, mask.size)
    whole = mask if whole is None else whole
    got, dropped = diffmerge_mask.clean_regions(mask, delta_e, 2.0, 4.0, 48.0)
    assert dropped == dropped_whole and dropped > 0
    assert np.array_equal(got, whole)


def _rerendered_frame(colour) -> tuple:
    """A 1 MP frame the model re-rendered all over (260 faint 12 px patches, in most of its 64 px tiles), an
    object inserted, and four strokes 1-4 px wide of ``colour`` far from it."""
    photo = _photo("astronaut_512.jpg", 1024)
    edit = photo.copy()
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    obj = (yy - 300) ** 2 + (xx - 300) ** 2 < 120**2
    edit[obj] = np.random.default_rng(9).random((int(obj.sum()), 3)) * 0.3 + 0.4
    strokes = []
    for i, width in enumerate((1, 2, 3, 4)):
        stroke = np.zeros((h, w), bool)
        stroke[820 + 40 * i : 820 + 40 * i + width, 520:900] = True
        edit[stroke] = colour
        strokes.append(stroke)
    patches = np.zeros((h, w), bool)
    keep_off = diffmerge.grow_mask(obj | np.any(strokes, axis=0), 60)
    rng = np.random.default_rng(4)
    while patches.sum() < 260 * 144:
        y, x = rng.integers(10, h - 22), rng.integers(10, w - 22)
        if not keep_off[y : y + 12, x : x + 12].any() and not patches[y - 8 : y + 20, x - 8 : x + 20].any():
            patches[y : y + 12, x : x + 12] = True
    edit[patches] = np.clip(photo[patches] * 1.1 + 0.09, 0, 1)
    return photo, edit, obj, strokes, patches


@pytest.mark.parametrize("colour, kept", [((1.0, 0.95, 0.1), (1, 2, 3, 4)), ((0.55, 0.35, 0.3), (3, 4))])
def test_a_frame_re_rendered_all_over_is_detected_at_half_size(monkeypatch, colour, kept):
    """The quick map finds candidates in most tiles: detection runs on the half-size copies. The object is kept
    whole, thin strokes far away are kept (a bright one at every width; one close to the photo's colours, which
    the blur and the envelope weaken, from 3 px: at least as much of each as the full-size detection keeps), the
    re-rendered patches are left out, and elsewhere the mask differs from the full-size one only along its
    outline."""
    photo, edit, obj, strokes, patches = _rerendered_frame(colour)
    maps = _map_shapes(monkeypatch, diffmerge)
    r = diffmerge.diff_merge(photo, edit)
    assert maps == [(512, 512)]  # one map, on the half-size copies (the quick map is diffmerge_kind's own)
    assert r.report["detect_size"] == [512, 512]
    assert any("detected on a half-size copy (512x512)" in n for n in r.report["notes"])
    assert any("re-rendered texture" in n for n in r.report["notes"])
    hard = r.hard_mask > 0
    assert hard[diffmerge.grow_mask(obj, -3)].all() and not hard[patches].any()
    with monkeypatch.context() as m:
        m.setattr(diffmerge, "_WIDE_SPREAD", 2.0)  # never taken as changed all over: full-size detection
        full = diffmerge.diff_merge(photo, edit)
    assert full.report["detect_size"] == [1024, 1024]
    one = full.hard_mask > 0
    for width, stroke in zip((1, 2, 3, 4), strokes, strict=True):
        assert hard[stroke].mean() >= one[stroke].mean() - 0.02
        assert hard[stroke].mean() > 0.8 or width not in kept
    # Elsewhere than on the strokes (more of the faint 2 px one is kept), along the outline only.
    outline = diffmerge.grow_mask(one, 2) & ~diffmerge.grow_mask(one, -2)
    assert ((hard ^ one) & ~outline & ~diffmerge.grow_mask(np.any(strokes, axis=0), 4)).sum() < 100


def test_alpha_changes_and_uncovered_pixels_count_at_half_size_too():
    """On a re-rendered frame detected at half size, a change of the edit's alpha alone is in the mask, and the
    rows a moved edit leaves uncovered stay the original's."""
    photo, edit, obj, strokes, patches = _rerendered_frame((1.0, 0.95, 0.1))
    h, w = photo.shape[:2]
    alpha_o = np.ones((h, w, 1), np.float32)
    alpha_e = alpha_o.copy()
    alpha_e[700:760, 150:230] = 0.0  # the edit cut a hole in the alpha only
    r = diffmerge.diff_merge(np.concatenate([photo, alpha_o], 2), np.concatenate([edit, alpha_e], 2))
    assert r.report["detect_size"] == [512, 512]
    assert (r.hard_mask[704:756, 154:226] > 0).all()
    assert np.array_equal(r.merged[700:760, 150:230, 3], alpha_e[700:760, 150:230, 0])
    assert not (r.hard_mask[900:, :100] > 0).any()  # and nothing new where nothing changed
    # The edit moved 6 px down: aligned back, its bottom 6 rows have nothing behind them and stay the original's.
    moved = align.warp_image(edit, align.Alignment(0.0, 6.0))
    r = diffmerge.diff_merge(photo, moved)
    assert r.report["detect_size"] == [512, 512] and r.report["shift_y"] == pytest.approx(-6.0, abs=0.1)
    assert np.array_equal(r.merged[-6:], photo[-6:]) and not (r.hard_mask[-6:] > 0).any()


@pytest.mark.parametrize("sigma, envelope", [(1.0, 1), (0.0, 2), (1.0, 0)])
def test_sparse_pass_gives_the_one_pass_values_at_the_wanted_pixels(sigma, envelope):
    """The pixel-list pass (blur on the wanted pixels' box, Lab only at them and their envelope's neighbours)
    must give exactly the one pass's values there, the image's edges included, and 0 elsewhere."""
    photo = _photo("astronaut_512.jpg", 300)
    edited = _drifted(photo, seed=2, size="medium")
    edited[40:90, 100:180] = [0.2, 0.5, 0.9]
    wanted = np.zeros(photo.shape[:2], bool)
    wanted[30:100, 90:200] = True
    wanted[0:3, :] = True  # the top edge: the envelope repeats the edge pixels, as OpenCV's erosion does
    wanted[150:300, 297:300] = True  # the right edge and the bottom corner
    wanted[200, 5] = True  # a lone pixel

    def predict(rgb):
        return np.clip(rgb * np.float32(1.05), 0, 1)

    one = diffmerge_delta.delta_e_map(predict(photo), edited, "ciede2000", 6.0, sigma, envelope)
    got = diffmerge_delta._sparse_pass(predict(photo), edited, wanted, "ciede2000", 6.0, sigma, envelope)
    assert np.array_equal(got[wanted] > 6.0, one[wanted] > 6.0)
    assert np.allclose(got[wanted], one[wanted], atol=1e-4)
    assert (got[~wanted] == 0).all()
    assert (got[40:90, 100:180] > 6.0).mean() > 0.9


def test_a_small_local_change_takes_the_pixel_list_pass(monkeypatch):
    """A local change with a light re-render: the full-size map is computed on a list of pixels, and detects
    what one pass detects."""
    photo = _photo("coffee_600x400.jpg", 1024)
    edited = photo.copy()
    edited[500:560, 400:520] = [0.1, 0.6, 0.2]
    edited = _drifted(edited, seed=4, size="small")
    calls = []
    real = diffmerge_delta._sparse_pass

    def counting(*args, **kwargs):
        calls.append(args[2].mean())
        return real(*args, **kwargs)

    monkeypatch.setattr(diffmerge_delta, "_sparse_pass", counting)
    one, two = _both(monkeypatch, photo, edited)
    assert len(calls) == 1 and calls[0] <= diffmerge_delta._SPARSE_SHARE
    assert one.hard_mask[500:560, 400:520].mean() > 0.9
    assert (one.hard_mask == two.hard_mask).all()


def test_the_map_keeps_float64_precision_through_its_gathers():
    """delta_e_map on float64 images computes in float64 (its pixel gathers keep the type): the pixels that need
    the whole formula get the float64 value of a float64 CIEDE2000."""
    rng = np.random.default_rng(12)
    original = rng.random((40, 50, 3))
    edited = np.clip(original + rng.normal(0, 0.04, original.shape), 0, 1)
    got = diffmerge_delta.delta_e_map(original, edited, "ciede2000", 6.0, 0.0, 0)
    assert got.dtype == np.float64
    exact = color.delta_e_ciede2000(color.srgb_to_lab(original), color.srgb_to_lab(edited))
    decided = (got > 6.0) == (exact > 6.0)
    assert decided.all()
    open_ = (got == exact) & (exact > 3)
    assert open_.any() and np.array_equal(got[open_], exact[open_])


def test_bands_and_strips_shared_by_threads_give_the_serial_values(monkeypatch):
    """A megapixel map's bands (and the tile pass's strips) are computed on a few threads: each writes only its
    own rows, so the map is bit for bit the one computed one band after the other."""
    photo = _photo("astronaut_512.jpg", 1024)
    edited = _drifted(photo, seed=4, size="medium")
    edited[100:400, 200:700] = [0.8, 0.3, 0.2]
    tiles = np.zeros((16, 16), bool)
    tiles[1:8, 2:12] = True  # with the two below, more tiles than _PARALLEL_PIXELS holds
    tiles[12, 0] = tiles[15, 15] = True
    calls = []
    real_pool = threads.ThreadPoolExecutor

    def counting_pool(*args, **kwargs):
        calls.append(kwargs.get("max_workers"))
        return real_pool(*args, **kwargs)

    monkeypatch.setattr(threads, "WORKERS", 2)
    monkeypatch.setattr(threads, "ThreadPoolExecutor", counting_pool)
    shared = diffmerge_delta.delta_e_map(photo, edited, "ciede2000", 6.0, 1.0, 1)
    shared_tiles = diffmerge_delta._tile_pass(photo, edited, tiles, "ciede2000", 6.0, 1.0, 1)
    assert calls == [2, 2]  # both went through the pool
    monkeypatch.setattr(threads, "WORKERS", 1)
    assert np.array_equal(shared, diffmerge_delta.delta_e_map(photo, edited, "ciede2000", 6.0, 1.0, 1))
    assert np.array_equal(shared_tiles, diffmerge_delta._tile_pass(photo, edited, tiles, "ciede2000", 6.0, 1.0, 1))
    assert calls == [2, 2]  # one thread: no pool
    assert (shared[100:400, 200:700] > 6.0).mean() > 0.9


@pytest.mark.parametrize("sigma, envelope", [(1.0, 1), (2.5, 0), (0.6, 2)])
def test_the_blur_on_bands_of_rows_gives_the_whole_frames_blur(sigma, envelope):
    """Each band blurs its own rows plus the blur's reach: the map is bit for bit the one from the whole frame
    blurred first, at the bands' cuts, the image's edges and with the envelope's extra rows."""
    photo = _photo("astronaut_512.jpg", 700)  # 700 px rows: bands of 187 rows, the last one shorter
    edited = _drifted(photo, seed=6, size="medium")
    edited[300:420, 100:600] = [0.1, 0.6, 0.3]  # across a band's cut
    got = diffmerge_delta.delta_e_map(photo, edited, "ciede2000", 6.0, sigma, envelope)
    blurred = [cv2.GaussianBlur(img, (0, 0), sigma) for img in (photo, edited)]
    assert np.array_equal(got, diffmerge_delta.delta_e_map(*blurred, "ciede2000", 6.0, 0.0, envelope))
    assert (got[300:420, 100:600] > 6.0).mean() > 0.9
