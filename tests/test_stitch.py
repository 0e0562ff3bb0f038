"""Context stitcher planning (ComfyUI-free): token counts, per-reference sizing, pixel-stitch layout, weight bias."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from atelier_core.errors import AtelierError
from atelier_core.image import geometry, stitch

SIDES_W = st.integers(min_value=1, max_value=6000)
SIDES_H = st.integers(min_value=1, max_value=4000)
FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _size_ok(w: int, h: int) -> bool:
    """Sizes the stitcher accepts: at least 2 pixels, at most 16 MP (larger ones are refused, tested below)."""
    return 2 <= w * h <= geometry.MAX_INPUT_PIXELS


def _log_ratio_error(size: tuple[int, int], w: int, h: int) -> float:
    return abs(math.log(size[0] / size[1] / stitch._clamped_ratio(w, h)))


# -- tokens ------------------------------------------------------------------------------------------------------------


def test_token_counts():
    assert stitch.tokens_for_pixels(1024, 1024) == 4096
    assert stitch.tokens_for_pixels(1024, 1024 + 8) == 64 * 65  # a partial row of tokens still costs a row
    assert stitch.token_grid_for_latent(128, 96) == (64, 48)
    assert stitch.token_grid_for_latent(3, 5) == (2, 3)  # FLUX pads the latent to its 2x2 patch


# -- sizing ------------------------------------------------------------------------------------------------------------


@FAST
@given(w=SIDES_W, h=SIDES_H, budget=st.integers(min_value=1, max_value=20000))
@example(w=217, h=344, budget=305)  # once sized 192x304: 228 of 305 tokens for a truer ratio
def test_budget_size_properties(w, h, budget):
    if not _size_ok(w, h):
        return
    tw, th = stitch.budget_size(w, h, budget)
    assert tw % 16 == 0 and th % 16 == 0 and tw >= 16 and th >= 16
    tokens = stitch.tokens_for_pixels(tw, th)
    assert tokens <= budget
    own = max(1, round(w / 16)) * max(1, round(h / 16))
    assert tokens <= max(1, own), "enlarged beyond the image"
    cap = min(budget, own)
    if cap >= 16:  # room for a 1:4 shape: ratio error (log) below one token of the short side
        assert _log_ratio_error((tw, th), w, h) <= 1.0 / min(tw // 16, th // 16) + 1e-9
    if cap >= 256:
        assert tokens >= 0.75 * cap, f"{w}x{h}, budget {budget}: only {tokens} of {cap} tokens used"


def test_budget_size_examples():
    assert stitch.budget_size(1024, 1024, 4096) == (1024, 1024)
    assert stitch.budget_size(2048, 2048, 1024) == (512, 512)
    assert stitch.budget_size(300, 200, 4096) == (288, 192)  # no upscaling beyond the image itself
    w, h = stitch.budget_size(1, 4000, 4096)  # extreme ratios are clamped to 1:4
    assert h == 4 * w
    with pytest.raises(AtelierError):
        stitch.budget_size(64, 64, 0)


@FAST
@given(w=SIDES_W, h=SIDES_H)
def test_keep_size_properties(w, h):
    if not _size_ok(w, h):
        return
    tw, th = stitch.keep_size(w, h)
    assert tw % 16 == 0 and th % 16 == 0
    assert stitch.tokens_for_pixels(tw, th) <= stitch.KEEP_MAX_TOKENS
    if max(1, round(w / 16)) * max(1, round(h / 16)) <= stitch.KEEP_MAX_TOKENS:
        assert abs(tw - w) <= 8 or tw == 16
        assert abs(th - h) <= 8 or th == 16


@FAST
@given(w=SIDES_W, h=SIDES_H, sizing=st.sampled_from(stitch.SIZINGS), fit=st.sampled_from(stitch.FITS))
def test_reference_geometry_is_a_valid_restorable_geometry(w, h, sizing, fit):
    if not _size_ok(w, h):
        return
    g = stitch.reference_geometry(w, h, sizing, fit, tokens=2048)
    assert g.original_size == (w, h)
    tw, th = g.target_size
    assert tw % 16 == 0 and th % 16 == 0
    if sizing == "bucket":
        assert g.target_size in geometry.KONTEXT_RESOLUTIONS
    if sizing == "token budget":
        assert stitch.tokens_for_pixels(tw, th) <= 2048
    if fit == "crop":  # a centred crop of the exact target ratio, within a pixel
        _, _, cw, ch = g.crop_box
        assert abs(cw * th - ch * tw) <= max(tw, th)
    assert geometry.Geometry.from_dict(g.to_dict()) == g


def test_reference_geometry_round_trips_through_restore():
    gen = torch.Generator().manual_seed(0)
    image = torch.rand(1, 70, 130, 3, generator=gen)
    for sizing in stitch.SIZINGS:
        for fit in stitch.FITS:
            g = stitch.reference_geometry(130, 70, sizing, fit, tokens=64, fingerprint=geometry.fingerprint(image))
            resized, _ = geometry.apply(image, g)
            assert tuple(resized.shape[1:3]) == (g.target_size[1], g.target_size[0])
            back = geometry.restore(resized, g, image)
            assert back.shape == image.shape
            if g.is_cropped:  # the cropped margins come back from the original, bit for bit
                x, _, cw, _ = g.crop_box
                assert torch.equal(back[:, :, :x], image[:, :, :x])


def test_bucket_matches_core_choice():
    for w, h in ((1920, 1080), (1080, 1920), (1000, 1000), (700, 460)):
        g = stitch.reference_geometry(w, h, "bucket")
        assert g.target_size == geometry.nearest_kontext_resolution(w, h)


@pytest.mark.parametrize(
    ("w", "h", "message"),
    [(0, 64, "empty"), (64, 0, "empty"), (1, 1, "single pixel"), (4097, 4097, "million pixels")],
)
def test_bad_sizes_are_refused_with_the_node_name(w, h, message):
    with pytest.raises(AtelierError) as info:
        stitch.plan_references([(w, h)], [1.0])
    assert stitch.NODE_NAME in str(info.value) and message in str(info.value)


# -- plans -------------------------------------------------------------------------------------------------------------


@FAST
@given(
    sizes=st.lists(st.tuples(st.integers(1, 4000), st.integers(2, 4000)), min_size=1, max_size=8),
    weights=st.lists(st.sampled_from([0.0, 0.5, 1.0, 2.0]), min_size=8, max_size=8),
    budget=st.integers(min_value=64, max_value=40000),
    layout=st.sampled_from(["offset", "index"]),
)
def test_token_budget_plan_never_exceeds_the_budget(sizes, weights, budget, layout):
    weights = weights[: len(sizes)]
    plan, first = stitch.plan_references(sizes, weights, sizing="token budget", token_budget=budget, layout=layout)
    assert plan.tokens <= budget
    assert [p.slot for p in plan.placements] == [i + 1 for i, w in enumerate(weights) if w > 0]
    assert first.original_size == sizes[0]
    assert plan.weighted == any(w not in (0.0, 1.0) for w in weights)


def test_weight_zero_leaves_the_reference_out():
    plan, first = stitch.plan_references([(512, 512), (800, 600), (600, 800)], [0.0, 1.0, 0.5])
    assert [p.slot for p in plan.placements] == [2, 3]
    assert first.original_size == (512, 512)  # image_1's geometry even when it is not attached
    assert plan.tokens == sum(stitch.tokens_for_pixels(*p.size) for p in plan.placements)
    assert "#2" in plan.describe() and "#1" not in plan.describe()
    empty, _ = stitch.plan_references([(512, 512)], [0.0])
    assert empty.tokens == 0 and not empty.placements and "0 tokens" in empty.describe()


def test_plan_refuses_bad_inputs():
    with pytest.raises(AtelierError, match="at most 8"):
        stitch.plan_references([(64, 64)] * 9, [1.0] * 9)
    with pytest.raises(AtelierError, match="image_1"):
        stitch.plan_references([], [])
    with pytest.raises(AtelierError, match="weight_2"):
        stitch.plan_references([(64, 64)] * 2, [1.0, 2.5])
    with pytest.raises(AtelierError, match="position method"):
        stitch.plan_references([(64, 64)], [1.0], layout="uxo")
    with pytest.raises(AtelierError, match="sizing"):
        stitch.plan_references([(64, 64)], [1.0], sizing="huge")
    with pytest.raises(AtelierError, match="token budget"):
        stitch.plan_references([(64, 64)], [1.0], token_budget=0)


@FAST
@given(
    sizes=st.lists(st.tuples(st.integers(16, 3000), st.integers(16, 3000)), min_size=1, max_size=8),
    sizing=st.sampled_from(stitch.SIZINGS),
    budget=st.integers(min_value=2048, max_value=40000),
)
def test_pixel_stitch_layout(sizes, sizing, budget):
    plan, first = stitch.plan_references(
        sizes, [1.0] * len(sizes), sizing=sizing, token_budget=budget, layout="pixel_stitch"
    )
    cw, ch = plan.canvas
    assert cw % 16 == 0 and ch % 16 == 0
    x = 0
    for p in plan.placements:  # one row, left to right, no gaps or overlaps, one common height
        assert p.offset == (x, 0) and p.size[1] == ch and p.size[0] % 16 == 0
        x += p.size[0]
    assert x == cw
    assert plan.tokens == stitch.tokens_for_pixels(cw, ch) == sum(p.tokens for p in plan.placements)
    if sizing == "token budget":
        assert plan.tokens <= budget
    assert first is plan.placements[0].geometry


def test_pixel_stitch_budget_too_small_is_explained():
    with pytest.raises(AtelierError, match="cannot hold"):
        stitch.plan_references([(64, 256)] * 8, [1.0] * 8, sizing="token budget", token_budget=4, layout="pixel_stitch")


# -- weights -----------------------------------------------------------------------------------------------------------


def test_log_weight():
    assert stitch.log_weight(1.0) == 0.0
    assert stitch.log_weight(2.0) == pytest.approx(math.log(2))
    assert stitch.log_weight(0.0) == stitch.MASKED_BIAS
    assert stitch.log_weight(1e-300) == pytest.approx(math.log(1e-300))  # tiny weights stay continuous
    weights = [0.0, 1e-6, 0.25, 0.5, 1.0, 1.5, 2.0]
    biases = [stitch.log_weight(w) for w in weights]
    assert biases == sorted(biases) and len(set(biases)) == len(biases)


def test_weight_spec_and_bias_layout():
    plan, _ = stitch.plan_references([(64, 32), (32, 32), (48, 16)], [1.0, 0.5, 2.0], sizing="keep")
    spec = stitch.weight_spec(plan)
    assert spec == ((), ((0, 0, 2, 2, 0.5),), ((0, 0, 1, 3, 2.0),))
    # 5 text tokens, a 4x4-token image, then the three references (8 + 4 + 3 tokens) in order.
    grids = [(2, 4), (2, 2), (1, 3)]
    bias = stitch.reference_key_bias(5, 16, grids, spec)
    assert bias.shape == (5 + 16 + 8 + 4 + 3,)
    assert torch.all(bias[: 5 + 16 + 8] == 0)
    assert torch.allclose(bias[29:33], torch.full((4,), math.log(0.5)))
    assert torch.allclose(bias[33:], torch.full((3,), math.log(2.0)))
    # A reference attached later by another node (beyond the spec) keeps weight 1.
    longer = stitch.reference_key_bias(5, 16, [*grids, (2, 2)], spec)
    assert torch.equal(longer[: bias.shape[0]], bias) and torch.all(longer[bias.shape[0] :] == 0)
    assert stitch.reference_key_bias(5, 16, grids, ((), (), ())) is None


def test_pixel_stitch_weight_spec_marks_each_piece():
    plan, _ = stitch.plan_references(
        [(64, 64), (32, 64), (64, 64)], [1.0, 0.0, 2.0], sizing="keep", layout="pixel_stitch"
    )
    assert plan.canvas == (128, 64)  # the weight-0 image is left out of the stitch
    (rects,) = stitch.weight_spec(plan)
    assert rects == ((0, 4, 4, 8, 2.0),)
    bias = stitch.reference_key_bias(1, 1, [(4, 8)], (rects,))
    grid = bias[2:].view(4, 8)
    assert torch.all(grid[:, :4] == 0) and torch.allclose(grid[:, 4:], torch.full((4, 4), math.log(2.0)))
