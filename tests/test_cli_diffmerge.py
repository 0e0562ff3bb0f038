"""``kontext-atelier diff-merge`` in a subprocess, without ComfyUI."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).parent / "data"


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "diff-merge", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_diff_merge_writes_merged_mask_and_report(tmp_path):
    original = cv2.imread(str(DATA / "chelsea_451x300.jpg"))
    edited = original.copy()
    edited[80:180, 150:260] = (40, 200, 60)  # BGR green patch
    m = np.float32([[1, 0, 1.0], [0, 1, -2.0]])
    edited = cv2.warpAffine(edited, m, (451, 300), borderMode=cv2.BORDER_REFLECT)
    cv2.imwrite(str(tmp_path / "o.png"), original)
    cv2.imwrite(str(tmp_path / "e.png"), edited)
    res = _run(
        str(tmp_path / "o.png"),
        str(tmp_path / "e.png"),
        "-o",
        str(tmp_path / "m.png"),
        "--mask-out",
        str(tmp_path / "mask.png"),
        "--preview-out",
        str(tmp_path / "p.png"),
        "--report-out",
        str(tmp_path / "r.json"),
    )
    assert res.returncode == 0, res.stderr
    assert "shift: dx=+1.0" in res.stdout and "threshold" in res.stdout
    merged = cv2.imread(str(tmp_path / "m.png"))
    mask = cv2.imread(str(tmp_path / "mask.png"), cv2.IMREAD_UNCHANGED)
    assert merged.shape == original.shape and mask.shape == original.shape[:2]
    assert mask[100:160, 170:240].min() == 255 and mask[:40, :40].max() == 0
    assert np.array_equal(merged[:40, :40], original[:40, :40])  # untouched pixels stay bit-identical
    assert np.abs(merged[100:160, 170:240].astype(int) - (40, 200, 60)).max() <= 6
    report = json.loads((tmp_path / "r.json").read_text())
    assert abs(report["shift_x"] - 1.0) < 0.15 and abs(report["shift_y"] + 2.0) < 0.15
    assert (tmp_path / "p.png").is_file()


def test_missing_file_is_a_clear_error(tmp_path):
    res = _run(str(tmp_path / "nope.png"), str(tmp_path / "nope2.png"), "-o", str(tmp_path / "m.png"))
    assert res.returncode == 2
    assert "does not exist" in res.stderr and "Traceback" not in res.stderr


def test_global_edit_returns_the_edit_unless_forced(tmp_path):
    original = cv2.imread(str(DATA / "chelsea_451x300.jpg"))
    other = cv2.resize(cv2.imread(str(DATA / "coffee_600x400.jpg")), (451, 300), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(tmp_path / "o.png"), original)
    cv2.imwrite(str(tmp_path / "e.png"), other)
    common = (str(tmp_path / "o.png"), str(tmp_path / "e.png"), "--report-out", str(tmp_path / "r.json"))
    res = _run(*common, "-o", str(tmp_path / "m.png"))
    assert res.returncode == 0, res.stderr
    assert "kind: global" in res.stdout and "--force-merge" in res.stdout
    assert np.array_equal(cv2.imread(str(tmp_path / "m.png")), other)  # another scene: the edit itself
    res = _run(*common, "-o", str(tmp_path / "f.png"), "--force-merge")
    assert res.returncode == 0, res.stderr
    assert "kind: global (merge forced)" in res.stdout
    assert json.loads((tmp_path / "r.json").read_text())["forced_merge"] is True
