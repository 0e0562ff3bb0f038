"""The edit's kind (local / global / reframed) and the failures seen on real Kontext outputs, built synthetically.

Real pairs (bench/bench_realpairs.py) showed: alignment "found" between unrelated scenes and the edit cropped and
zoomed to fit; a zoomed-out reframe merged with its uncovered rows smeared; ghosts of the original pasted into
holes of a mostly-changed mask; re-rendered texture far from an inserted object taken from the edit; and a
featureless gradient with noise "aligned" by several pixels. Each case here reproduces one and holds the fix.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from atelier_core.image import align, diffmerge, diffmerge_kind

DATA = Path(__file__).parent / "data"


def _read(name: str, size: int = 512) -> np.ndarray:
    rgb = cv2.imread(str(DATA / name))[..., ::-1].astype(np.float32) / 255.0
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_AREA))


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return _read("astronaut_512.jpg")


def _texture(h: int, w: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    noise = cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), 3.0)
    yy, xx = np.mgrid[:h, :w]
    bricks = (((yy // 24) + (xx // 48)) % 2)[..., None] * np.float32([0.25, 0.1, 0.05])
    return np.clip(0.35 + bricks + 2.0 * (noise - 0.5), 0, 1).astype(np.float32)


def _assert_whole_edit(r, edit: np.ndarray, kind: str) -> None:
    assert r.report["kind"] == kind, diffmerge.format_report(r.report)
    assert np.array_equal(r.merged, edit)  # the edit itself: not cropped, zoomed, smeared or ghosted
    assert r.hard_mask.all() and r.soft_mask.all()
    text = diffmerge.format_report(r.report)
    assert f"kind: {kind}" in text and "force_merge" in text and "--force-merge" in text
    assert not np.array_equal(r.preview, np.clip(edit, 0, 1))  # the preview is framed and labelled


def test_re_textured_wall_returns_the_edit(photo):
    h, w = photo.shape[:2]
    yy, xx = np.mgrid[:h, :w]
    subject = ((yy - 0.55 * h) / (0.3 * h)) ** 2 + ((xx - 0.5 * w) / (0.2 * w)) ** 2 < 1  # about 19 % kept
    edit = np.where(subject[..., None], photo, _texture(h, w, 1))
    _assert_whole_edit(diffmerge.diff_merge(photo, edit), edit, "global")


def test_relit_room_returns_the_edit(photo):
    h, w = photo.shape[:2]
    light = np.linspace(0.3, 0.9, w, dtype=np.float32)[None, :, None] * np.float32([1.0, 0.72, 0.45])
    edit = np.clip(photo * light + 0.03, 0, 1).astype(np.float32)
    r = diffmerge.diff_merge(photo, edit)
    _assert_whole_edit(r, edit, "global")
    assert r.report["quick_changed_share"] >= diffmerge_kind.GLOBAL_SHARE


def test_unrelated_scene_is_not_aligned_and_returns_the_edit_at_the_originals_size(photo):
    other = cv2.imread(str(DATA / "coffee_600x400.jpg"))[..., ::-1].astype(np.float32) / 255.0
    r = diffmerge.diff_merge(photo, other)
    assert not r.report["aligned"] and r.report["match"] < align.MIN_CONFIDENCE
    expected = diffmerge_kind.fit_whole(other, *photo.shape[:2])  # stretched: neither cropped nor zoomed
    _assert_whole_edit(r, expected, "global")
    assert any("does not match" in n for n in r.report["notes"])


def _zoomed_out(photo: np.ndarray, seed: int = 3) -> np.ndarray:
    """The picture zoomed out 5.4 % and moved down 33 px (66 px at 1 MP), the uncovered band drawn anew."""
    h, w = photo.shape[:2]
    moved = align.Alignment(0.0, -33.0, 1.054)
    out = align.warp_image(photo, moved)
    inside = np.zeros((h, w), bool)
    inside[moved.covered(w, h, margin=0.0)] = True
    return np.where(inside[..., None], out, _texture(h, w, seed)).astype(np.float32)


def test_five_percent_zoom_out_reframe_returns_the_edit(photo):
    edit = _zoomed_out(photo)
    edit[300:380, 100:200] = (0.9, 0.6, 0.2)  # the local edit the prompt asked for
    r = diffmerge.diff_merge(photo, edit)
    _assert_whole_edit(r, edit, "reframed")
    assert r.report["aligned"] and r.report["match"] >= align.MIN_CONFIDENCE


def test_forced_merge_of_a_reframe_never_smears_the_uncovered_rows(photo):
    edit = _zoomed_out(photo)
    r = diffmerge.diff_merge(photo, edit, diffmerge.MergeOptions(force_merge=True))
    assert r.report["kind"] == "reframed" and r.report["forced_merge"]
    assert "(merge forced)" in diffmerge.format_report(r.report)
    a = align.Alignment(r.report["shift_x"], r.report["shift_y"], r.report["scale"])
    rows, cols = a.covered(photo.shape[1], photo.shape[0], margin=-0.5)
    end = rows.stop
    assert end <= photo.shape[0] - 15  # the picture moved down: the aligned edit leaves the bottom rows uncovered
    assert np.array_equal(r.merged[end:], photo[end:])  # ... and they stay the original's, not smeared
    assert not r.hard_mask[end:].any()


def test_a_replacing_user_mask_merges_a_global_edit(photo):
    edit = _texture(*photo.shape[:2], 5)
    mask = np.zeros(photo.shape[:2], np.float32)
    mask[100:200, 100:200] = 1
    r = diffmerge.diff_merge(photo, edit, diffmerge.MergeOptions(user_mask_mode="replace"), mask)
    assert r.report["kind"] == "global" and r.report["forced_merge"]
    assert np.array_equal(r.merged[r.soft_mask == 0], photo[r.soft_mask == 0])


def test_mostly_changed_mask_with_holes_leaves_no_ghosts(photo):
    h, w = photo.shape[:2]
    edit = _texture(h, w, 7)
    holes = np.zeros((h, w), bool)
    for y in range(40, h - 40, 90):
        for x in range(40, w - 40, 90):
            holes[y : y + 22, x : x + 22] = True  # patches the model left as they were: about 5 % of the frame
    edit[holes] = photo[holes]
    r = diffmerge.diff_merge(photo, edit)
    _assert_whole_edit(r, edit, "global")
    assert np.array_equal(r.merged[holes], edit[holes])


def test_enclosed_hole_of_a_local_edit_is_filled(photo):
    edit = photo.copy()
    ring = np.zeros(photo.shape[:2], bool)
    ring[150:300, 150:300] = True
    ring[190:260, 190:260] = False  # unchanged pixels inside the edited area
    edit[ring] = (0.1, 0.7, 0.3)
    r = diffmerge.diff_merge(photo, edit)
    assert r.report["kind"] == "local"
    assert r.hard_mask[190:260, 190:260].all()  # a region-level decision: the hole is part of the edit


def _inserted_with_rerender(photo: np.ndarray):
    """An inserted object, a thin yellow stroke far from it, and 24 faint re-rendered patches scattered around."""
    h, w = photo.shape[:2]
    edit = photo.copy()
    yy, xx = np.mgrid[:h, :w]
    obj = (yy - 150) ** 2 + (xx - 150) ** 2 < 60**2
    edit[obj] = _texture(h, w, 9)[obj]
    stroke = np.zeros((h, w), bool)
    stroke[440:444, 250:420] = True
    edit[stroke] = (1.0, 0.95, 0.1)
    patches = np.zeros((h, w), bool)
    rng = np.random.default_rng(4)
    placed = 0
    while placed < 24:
        y, x = rng.integers(10, h - 22), rng.integers(10, w - 22)
        box = np.zeros((h, w), bool)
        box[y : y + 12, x : x + 12] = True
        far_from = diffmerge.grow_mask(obj | stroke | patches, 60)
        if (box & far_from).any():
            continue
        patches |= box
        placed += 1
    edit[patches] = np.clip(photo[patches] * 1.1 + 0.09, 0, 1)
    band = np.zeros((h, w), bool)  # a faint redrawn edge joined to the object, reaching across the frame
    band[200:212, 150:500] = True
    band &= ~obj
    edit[band] = np.clip(photo[band] * 1.1 + 0.09, 0, 1)
    return edit, obj, stroke, patches, band


def test_rerendered_texture_far_from_an_inserted_object_stays_original(photo):
    edit, obj, stroke, patches, band = _inserted_with_rerender(photo)
    r = diffmerge.diff_merge(photo, edit)
    assert r.report["kind"] == "local"
    hard = r.hard_mask > 0
    assert hard[diffmerge.grow_mask(obj, -3)].all()  # the inserted object is kept whole
    assert hard[stroke].mean() > 0.95  # a thin high-contrast edit far away is kept
    assert np.array_equal(r.merged[patches], photo[patches])  # the faint scattered patches are not
    far_band = band & ~diffmerge.grow_mask(obj, 60)  # nor the faint band where it reaches far from the object
    assert far_band.sum() > 2000 and np.array_equal(r.merged[far_band], photo[far_band])
    assert any("re-rendered texture" in n for n in r.report["notes"])
    # Fewer than eight such patches are kept: one or two faint changes may be wanted.
    few = photo.copy()
    few[obj] = edit[obj]
    one = np.zeros_like(patches)
    ys, xs = np.nonzero(patches)
    one[ys[0] : ys[0] + 12, xs[0] : xs[0] + 12] = True
    few[one] = edit[one]
    assert (diffmerge.diff_merge(photo, few).hard_mask > 0)[one].mean() > 0.9


def test_featureless_gradient_with_noise_is_not_aligned():
    h = w = 512
    yy, xx = np.mgrid[:h, :w] / 512.0
    ramp = np.stack([0.2 + 0.5 * xx, 0.3 + 0.4 * yy, 0.5 + 0.2 * xx * yy], axis=-1).astype(np.float32)
    rng = np.random.default_rng(0)
    a = np.clip(ramp + rng.normal(0, 0.02, ramp.shape), 0, 1).astype(np.float32)
    b = np.clip(ramp + rng.normal(0, 0.02, ramp.shape), 0, 1).astype(np.float32)
    found = align.estimate_alignment(a, b)
    assert not found.ok and found.confidence < align.MIN_CONFIDENCE and "refused" in found.note
    r = diffmerge.diff_merge(a, b)
    assert r.report["shift_x"] == 0 and r.report["shift_y"] == 0 and r.report["scale"] == 1
    assert r.report["kind"] == "local" and r.report["changed_pixels"] == 0


def test_local_edit_is_reported_local_with_its_match(photo):
    edit = align.warp_image(photo, align.Alignment(1.2, -0.7))
    edit[200:260, 300:380] = (0.9, 0.2, 0.2)
    r = diffmerge.diff_merge(photo, edit)
    assert r.report["kind"] == "local" and r.report["match"] > 0.9
    assert diffmerge.format_report(r.report).startswith("kind: local\n")


def test_alignment_geometry_helpers():
    a = align.Alignment(3.0, -4.0, 1.0)
    assert a.corner_motion(100, 80) == pytest.approx(5.0)
    rows, cols = a.covered(100, 80, margin=-0.5)
    # moving = x + 3 must lie in [-0.5, 99.5]: x <= 96; moving = y - 4 in [-0.5, 79.5]: y >= 4
    assert (cols.start, cols.stop) == (0, 97) and (rows.start, rows.stop) == (4, 80)
    zoom = align.Alignment(0.0, 0.0, 1.05)
    assert zoom.corner_motion(101, 101) == pytest.approx(0.05 * np.hypot(50, 50))
