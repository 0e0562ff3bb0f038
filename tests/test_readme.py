"""The README's examples work as written: its vocabulary file loads cleanly and its first run merges a kept edit."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image

from atelier_core.prompts import builder
from atelier_core.prompts.vocabulary import load_vocabulary

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def test_readme_vocabulary_example_loads_without_warnings(tmp_path):
    block = re.search(r"```json\n(.*?)```", README, re.S).group(1)
    path = tmp_path / "vocabulary.json"
    path.write_text(block)
    loaded = load_vocabulary(path)
    assert not loaded.warnings, loaded.warnings
    prompt = builder.build(builder.Choices(mode="edit", template="gemstone"), loaded.vocabulary)
    assert "ruby gemstone" in prompt.text and not prompt.warnings


def test_readme_first_run_merges_a_kept_edit_outside_the_checkout(tmp_path):
    """The first-run line as a user types it (after `pip install .`), with HOME in a temporary folder: the pair is
    made, merged into ~/kontext-atelier-first-run, the green cup is kept and every other pixel is the original's."""
    line = next(
        ln for ln in README.splitlines() if ln.startswith("pip install . && python docs/make_first_run_pair.py")
    )
    command = line.removeprefix("pip install . && ")
    command = command.replace("python docs/", f"{shlex.quote(sys.executable)} docs/")
    command = command.replace(
        "kontext-atelier diff-merge", f"{shlex.quote(sys.executable)} -m atelier_core.cli diff-merge"
    )
    before = set(ROOT.iterdir())
    env = dict(os.environ, HOME=str(tmp_path), PYTHONPATH=str(ROOT))
    proc = subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert set(ROOT.iterdir()) == before  # nothing written into the checkout
    out = tmp_path / "kontext-atelier-first-run"
    changed = float(re.search(r"changed: ([0-9.]+)%", proc.stdout).group(1))
    assert 2.0 < changed < 10.0, proc.stdout  # the cup, not the whole re-rendered picture
    assert "kept change at x" in proc.stdout and str(out / "merged.png") in proc.stdout, proc.stdout
    original = np.asarray(Image.open(out / "original.png").convert("RGB"), np.int16)
    edit = np.asarray(Image.open(out / "kontext_edit.png").convert("RGB"), np.int16)
    merged = np.asarray(Image.open(out / "merged.png").convert("RGB"), np.int16)
    cup = np.asarray(Image.open(out / "mask.png").convert("L")) > 127
    # The blend feathers the hard mask by 4 px (the default); beyond that every pixel is the original's, bit for bit,
    # though the re-render drifted most of them.
    rim = cv2.dilate(cup.astype(np.uint8), np.ones((9, 9), np.uint8)) > 0
    assert (merged[~rim] == original[~rim]).all()
    assert (edit[~rim] != original[~rim]).any(axis=-1).mean() > 0.5
    assert (merged[cup][:, 1] - merged[cup][:, 0]).mean() > 20  # the kept edit: green ...
    assert (original[cup][:, 1] - original[cup][:, 0]).mean() < 0  # ... where the espresso was brown
