"""The README's examples work as written: its vocabulary file loads cleanly and its standalone command runs."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

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


def test_readme_standalone_command_runs(tmp_path):
    """The set-up command's diff-merge (what `kontext-atelier` runs after `pip install .`), from the repo root."""
    line = next(ln for ln in README.splitlines() if ln.startswith("pip install . && kontext-atelier diff-merge"))
    argv = shlex.split(line.split("&& kontext-atelier ", 1)[1])
    argv = [str(tmp_path / a) if a.endswith("merged.png") or a.endswith("mask.png") else a for a in argv]
    proc = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", *argv], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "merged.png").stat().st_size > 0 and (tmp_path / "mask.png").stat().st_size > 0
