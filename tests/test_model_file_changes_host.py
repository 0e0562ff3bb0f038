"""A loaded model never depends on its file staying the same (issue 23).

Users re-download or ``cp`` over a model file while ComfyUI runs. A model whose tensors are views of the file's
memory map then dies with SIGBUS at the next forward (truncated file) or silently computes with other weights
(overwritten in place). Each format and GGUF mode is loaded, run, its file overwritten in place and then truncated,
and run again: the output must stay bit-identical and the process alive. This runs in a child process, so that a
SIGBUS shows up as the child's exit status rather than killing the test run.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from atelier_host import PACK_DIR

TESTS_DIR = Path(__file__).resolve().parent

CHILD = textwrap.dedent(
    """
    import json, os, sys
    from pathlib import Path

    root, pack, tests, work = sys.argv[1:5]
    sys.path.insert(0, tests)
    sys.path.insert(1, pack)
    from atelier_core.runtime import comfy_runtime

    comfy_runtime.boot(Path(root), cpu=True)
    import torch
    from kontext_graphs import forward_once
    from atelier_core.testing import synth

    km = comfy_runtime.kontext_model_module()
    first, second = (synth.kontext_state_dict(synth.TINY, seed=s) for s in (0, 1))
    writers = {
        "fp32": lambda p, sd: synth.write_float(p, sd, "fp32"),
        "fp8": lambda p, sd: synth.write_fp8(p, sd, "fp8_e4m3fn"),
        "gguf": lambda p, sd: synth.write_gguf(p, sd, "Q8_0"),
    }
    cases = [("fp32", "auto"), ("fp8", "auto")] + [("gguf", m) for m in ("on_the_fly", "materialize", "materialize_fp8")]
    for fmt, mode in cases:
        ext = ".gguf" if fmt == "gguf" else ".safetensors"
        path = writers[fmt](Path(work) / f"{fmt}_{mode}{ext}", first)
        other = writers[fmt](Path(work) / f"other_{fmt}_{mode}{ext}", second).read_bytes()
        assert len(other) == path.stat().st_size
        model = km.load_kontext(path, km.LoadOptions(compute_dtype="fp32", gguf_mode=mode)).patcher.model
        before = forward_once(model)
        with open(path, "r+b") as handle:  # in place: the same inode, as `cp new old` does
            handle.write(other)
        overwritten = forward_once(model)
        os.truncate(path, 4096)
        truncated = forward_once(model)
        print(json.dumps({
            "case": f"{fmt}/{mode}",
            "finite": bool(torch.isfinite(before).all()),
            "same_after_overwrite": bool(torch.equal(before, overwritten)),
            "same_after_truncate": bool(torch.equal(before, truncated)),
        }), flush=True)
    """
)


def test_loaded_model_survives_its_file_being_overwritten_and_truncated(comfy_host, tmp_path):
    result = subprocess.run(
        [sys.executable, "-c", CHILD, str(comfy_host.root), str(PACK_DIR), str(TESTS_DIR), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert result.returncode == 0, (
        f"the child died with status {result.returncode} after {[r['case'] for r in rows]}:\n{result.stderr[-3000:]}"
    )
    assert [r["case"] for r in rows] == [
        "fp32/auto",
        "fp8/auto",
        "gguf/on_the_fly",
        "gguf/materialize",
        "gguf/materialize_fp8",
    ]
    for row in rows:
        assert row["finite"] and row["same_after_overwrite"] and row["same_after_truncate"], row


def test_gguf_changed_while_loading_is_refused_naming_the_file(comfy_host, tmp_path):
    from atelier_core.errors import AtelierError
    from atelier_core.gguf.reader import open_gguf
    from atelier_core.testing import synth

    path = synth.write_gguf(tmp_path / "growing.gguf", synth.kontext_state_dict(synth.TINY, seed=0), "Q8_0")
    with open_gguf(path) as gf:
        os.truncate(path, path.stat().st_size - 1000)  # a download restarted between the header and the data
        with pytest.raises(AtelierError, match=r"growing\.gguf: the file changed while it was being loaded"):
            dict(gf.copy_tensors())
