"""The command line builds its parser without torch: ``kontext-atelier --help``, ``prompt`` and ``doctor`` must not
pay seconds importing it. Heavy modules are imported by the handler of the command that needs them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from atelier_core.cli import _lazy, build_parser, main
from atelier_core.gguf import convert

ROOT = Path(__file__).resolve().parents[1]


def _modules_after(code: str) -> set[str]:
    script = code + "\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True, timeout=120
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


def test_building_the_parser_leaves_torch_unimported():
    loaded = _modules_after("from atelier_core.cli import build_parser\nbuild_parser()")
    assert "atelier_core.cli.gguf_tools" in loaded  # the parsers were built ...
    assert "torch" not in loaded  # ... without torch
    assert not {m for m in loaded if m.startswith(("comfy", "atelier_core.cli.gguf_commands"))}


def test_help_and_prompt_leave_torch_unimported():
    code = (
        "import contextlib, io\nfrom atelier_core.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n        main(['--help'])\n    except SystemExit:\n        pass\n"
        "    main(['prompt', '--list', 'techniques'])\n"
    )
    assert "torch" not in _modules_after(code)


def test_lazy_choices_still_check_and_list_the_names(capsys):
    with pytest.raises(SystemExit):
        main(["quantize", "in.safetensors", "out.gguf", "--type", "Q9_9"])
    err = capsys.readouterr().err
    assert "invalid choice: 'Q9_9'" in err and "Q4_K_M" in err
    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["quantize", "--help"])
    assert ", ".join(convert.RECIPE_NAMES) in " ".join(capsys.readouterr().out.split())
    names = _lazy.LazyNames(".gguf.convert", "RECIPE_NAMES")
    assert tuple(names) == convert.RECIPE_NAMES and "Q8_0" in names and "Q9_9" not in names
    assert str(names) == ", ".join(convert.RECIPE_NAMES)


def test_lazy_handler_imports_its_module_when_run(monkeypatch):
    calls = []
    monkeypatch.setattr("atelier_core.cli.gguf_commands.run_inspect", lambda args: calls.append(args) or 7)
    run = _lazy.handler(".cli.gguf_commands", "run_inspect")
    assert run.__name__ == "run_inspect" and run("ns") == 7 and calls == ["ns"]
