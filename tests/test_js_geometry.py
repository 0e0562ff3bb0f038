"""js/aspect_lock.js's port of ``geometry.plan`` gives Python's sizes and boxes, run by Node on a table of inputs.

The browser shows the Aspect-Ratio Lock's target size, crop and padding as the widgets change, computed by a
JavaScript copy of the planning arithmetic; this keeps the copy honest. The table covers every mode (Kontext
buckets, keep, presets, custom and clamped ratios), fit, anchor and sizing, odd sizes and the rounding ties where
Python's round-half-to-even differs from JavaScript's Math.round.
"""

from __future__ import annotations

import itertools
import json
import shutil
import subprocess

import pytest
from atelier_host import PACK_DIR

from atelier_core.image import geometry, stitch

APP_STUB = "export const app = { registerExtension() {} };\n"
DRIVER = """
import { readFileSync } from "node:fs";
const { planGeometry, pyRound } = await import("./extensions/kontext-atelier/aspect_lock.js");
const cases = JSON.parse(readFileSync("cases.json", "utf8"));
const plans = cases.map(([w, h, mode, fit, anchor, sizeBy, mp, ls]) =>
  planGeometry(w, h, mode, { fit, anchor, sizeBy, megapixels: mp, longSide: ls }));
const rounds = [0.5, 1.5, 2.5, -0.5, -1.5, 3.49999, 3.5, 4.5, 1e6 + 0.5].map(pyRound);
console.log(JSON.stringify({ plans, rounds }));
"""

SIZES = [
    (512, 512),
    (451, 300),
    (300, 451),
    (1000, 1),
    (3, 1000),
    (1920, 1080),
    (1080, 1920),
    (4000, 3000),
    (1023, 769),
    (17, 16),
    (2048, 512),
    (640, 427),
    (4096, 4096),
]
MODES = ["kontext", "keep", *geometry.MODEL_MODES, *geometry.RATIO_PRESETS, "7:3", "1:9", "9:1", "100:1", "2.35"]


def _cases() -> list[tuple]:
    cases = []
    for (w, h), mode in itertools.product(SIZES, MODES):
        for fit, anchor in (
            ("crop", "center"),
            ("crop", "top-left"),
            ("pad", "center"),
            ("pad", "bottom-right"),
            ("stretch", "center"),
            ("crop", "right"),
            ("pad", "top"),
        ):
            cases.append((w, h, mode, fit, anchor, "megapixels", 1.0, 1024))
    for (w, h), mode, (size_by, mp, long_side) in itertools.product(
        SIZES[:6],
        ["keep", "16:9", "3:4", "21:9", "5:4"],
        [
            ("megapixels", 0.0625, 1024),
            ("megapixels", 0.5, 1024),
            ("megapixels", 2.25, 1024),
            ("megapixels", 1.3, 1024),
            ("long_side", 1.0, 256),
            ("long_side", 1.0, 1000),
            ("long_side", 1.0, 3072),
            ("long_side", 1.0, 1536),
            ("long_side", 1.0, 1032),
        ],
    ):
        cases.append((w, h, mode, "pad", "center", size_by, mp, long_side))
    return cases


def _python(case: tuple) -> dict:
    w, h, mode, fit, anchor, size_by, mp, long_side = case
    g = geometry.plan(w, h, mode, fit=fit, anchor=anchor, size_by=size_by, megapixels=mp, long_side=long_side)
    return {
        "target": list(g.target_size),
        "crop": list(g.crop_box),
        "resized": list(g.resized_size),
        "pad": list(g.pad_box),
        "original": list(g.original_size),
    }


def test_js_plan_matches_python_geometry(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the frontend geometry test needs Node.js")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    ours = tmp_path / "extensions" / "kontext-atelier"
    ours.mkdir(parents=True)
    shutil.copy(PACK_DIR / "js" / "aspect_lock.js", ours / "aspect_lock.js")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    (tmp_path / "driver.js").write_text(DRIVER)
    cases = _cases()
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rounds"] == [round(x) for x in (0.5, 1.5, 2.5, -0.5, -1.5, 3.49999, 3.5, 4.5, 1e6 + 0.5)]
    mismatches = []
    for case, js in zip(cases, result["plans"], strict=True):
        want = _python(case)
        got = {key: js.get(key) for key in want}
        if got != want:
            mismatches.append((case, want, got))
    assert not mismatches, f"{len(mismatches)} of {len(cases)} differ, first: {mismatches[0]}"


def test_js_plan_without_input_size_gives_ratio_targets(tmp_path):
    """Ratio modes do not depend on the input, so the node shows their size before any image is loaded."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the frontend geometry test needs Node.js")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    ours = tmp_path / "extensions" / "kontext-atelier"
    ours.mkdir(parents=True)
    shutil.copy(PACK_DIR / "js" / "aspect_lock.js", ours / "aspect_lock.js")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    (tmp_path / "driver.js").write_text(
        'const { planGeometry } = await import("./extensions/kontext-atelier/aspect_lock.js");\n'
        'console.log(JSON.stringify([planGeometry(null, null, "16:9"), planGeometry(null, null, "kontext")]));\n'
    )
    run = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    ratio, kontext = json.loads(run.stdout)
    assert ratio["target"] == list(geometry.plan(640, 480, "16:9").target_size)
    assert "crop" not in ratio
    assert kontext is None, "the Kontext bucket depends on the input, so there is nothing to show without it"


STITCH_DRIVER = """
import { readFileSync } from "node:fs";
const { planTokens } = await import("./extensions/kontext-atelier/stitcher.js");
const cases = JSON.parse(readFileSync("cases.json", "utf8"));
console.log(JSON.stringify(cases.map(([sizes, weights, sizing, budget]) => planTokens(
  sizes.map((size, i) => ({ slot: i + 1, size, weight: weights[i] })), sizing, budget))));
"""


def test_js_stitcher_tokens_match_python(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the frontend geometry test needs Node.js")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    ours = tmp_path / "extensions" / "kontext-atelier"
    ours.mkdir(parents=True)
    for name in ("aspect_lock.js", "stitcher.js"):
        shutil.copy(PACK_DIR / "js" / name, ours / name)
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    (tmp_path / "driver.js").write_text(STITCH_DRIVER)
    size_sets = [
        [(512, 512)],
        [(451, 300), (1920, 1080)],
        [(4096, 4096), (300, 451), (1000, 250), (64, 48)],
        [(3000, 17), (17, 3000)],
        [(1024, 1024)] * 8,
    ]
    cases = []
    for sizes, sizing, budget in itertools.product(size_sets, stitch.SIZINGS, (1, 700, 4096, 9000, 30000)):
        weights = [1.0, 0.0, 0.5, 2.0, 1.0, 1.0, 1.0, 1.0][: len(sizes)]
        cases.append((sizes, weights, sizing, budget))
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    run = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    for (sizes, weights, sizing, budget), js in zip(cases, json.loads(run.stdout), strict=True):
        plan, _ = stitch.plan_references(sizes, weights, sizing=sizing, token_budget=budget)
        want = [[p.slot, list(p.size), p.tokens] for p in plan.placements]
        assert [[p["slot"], p["size"], p["tokens"]] for p in js["parts"]] == want, (sizes, sizing, budget)
        assert js["tokens"] == plan.tokens
