"""The layout's import rules (DEVELOPING.md, "Layout"), read from the source of every module.

- ComfyUI (``comfy``, ``comfy_api``, ``comfy_extras``, ``folder_paths``, ComfyUI's ``nodes``, ``execution``,
  ``server``) is imported only by ``nodes/``, ``comfy_glue/``, ``atelier_core/runtime/`` and ``atelier_core/testing/``
  (at module level or inside a function: both count).
- The tiny-model factories (``atelier_core.testing``) are imported by nothing the pack ships: not by ``nodes/``,
  ``comfy_glue/`` or the rest of ``atelier_core`` (the command line included).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COMFY_MODULES = {"comfy", "comfy_api", "comfy_extras", "folder_paths", "nodes", "execution", "server"}
MAY_IMPORT_COMFY = ("nodes/", "comfy_glue/", "atelier_core/runtime/", "atelier_core/testing/")
SHIPPED = ("nodes/", "comfy_glue/", "atelier_core/", "__init__.py")


def _package_of(rel: str) -> list[str]:
    """The dotted package a file's relative imports start from (the pack root is ``""``)."""
    parts = rel.split("/")[:-1]
    return parts


def imported_modules(path: Path) -> set[str]:
    """Absolute names of everything ``path`` imports; relative imports resolved against the pack root."""
    rel = path.relative_to(ROOT).as_posix()
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                package = _package_of(rel)
                package = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                base = ".".join([*package, *([node.module] if node.module else [])])
                base = "pack:" + base  # a module of this pack, never ComfyUI's
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def _shipped_files() -> list[Path]:
    files = [ROOT / "__init__.py"]
    for folder in ("nodes", "comfy_glue", "atelier_core"):
        files += sorted((ROOT / folder).rglob("*.py"))
    return files


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@pytest.mark.parametrize("path", _shipped_files(), ids=_rel)
def test_only_the_glue_runtime_and_testing_import_comfyui(path):
    if _rel(path).startswith(MAY_IMPORT_COMFY):
        return
    comfy = sorted(m for m in imported_modules(path) if m.split(".")[0] in COMFY_MODULES)
    assert not comfy, f"{_rel(path)} imports ComfyUI ({comfy}); move that code to comfy_glue/ or atelier_core/runtime/"


@pytest.mark.parametrize("path", _shipped_files(), ids=_rel)
def test_nothing_shipped_imports_the_test_model_factories(path):
    if _rel(path).startswith("atelier_core/testing/"):
        return
    testing = sorted(
        m for m in imported_modules(path) if m.startswith(("atelier_core.testing", "pack:atelier_core.testing"))
    )
    assert not testing, f"{_rel(path)} imports the test-model factories ({testing})"


def test_the_checker_sees_relative_and_function_level_imports():
    """The rules above would pass vacuously if imports inside functions or relative ones were missed."""
    module = ROOT / "atelier_core" / "cli" / "gguf_commands.py"
    names = imported_modules(module)
    assert "pack:atelier_core.runtime.sample_compare" in names  # imported inside run_compare
    assert "pack:atelier_core.gguf.convert" in names or "pack:atelier_core.gguf" in names
    loader = imported_modules(ROOT / "nodes" / "loader.py")
    assert "comfy_api.latest" in loader and "pack:comfy_glue.kontext_model" in loader
