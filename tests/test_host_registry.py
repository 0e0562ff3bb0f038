"""The pack loads through ComfyUI's own custom-node loader and every node is registered with a full schema."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from atelier_host import PACK_DIR, HostImportFailed, check_core_imports, skip_unless_host_has


def test_import_has_no_side_effects():
    """The root __init__ only defines names: no calls, no prints, no I/O at import time."""
    tree = ast.parse((PACK_DIR / "__init__.py").read_text())
    for node in tree.body:
        assert isinstance(node, (ast.Expr, ast.Assign, ast.AsyncFunctionDef, ast.FunctionDef, ast.ImportFrom)), (
            ast.dump(node)
        )
        if isinstance(node, ast.Expr):
            assert isinstance(node.value, ast.Constant), "only a docstring may stand alone at module level"
    assert any(
        isinstance(n, ast.Assign) and n.targets[0].id == "WEB_DIRECTORY" for n in tree.body if isinstance(n, ast.Assign)
    )


def test_pack_loads_without_import_failure(comfy_host):
    assert comfy_host.pack_module_name
    assert not [line for line in comfy_host.load_log if "IMPORT FAILED" in line]


def test_core_modules_load_in_the_harness_as_under_main(comfy_host):
    """Core's node replacements (0.33.0's nodes_replacements) register on PromptServer.instance at import: the
    harness gives them one, so the module loads (the boot fails on any core IMPORT FAILED, check_core_imports)."""
    import server

    with pytest.raises(HostImportFailed, match=r"nodes_broken\.py"):
        check_core_imports(["nodes_broken.py"], comfy_host.version, [])
    manager = getattr(server.PromptServer.instance, "node_replace_manager", None)
    skip_unless_host_has(manager is not None, "node replacements (app/node_replace_manager.py)")
    assert manager.has_replacement("ResizeImagesByLongerEdge")  # registered by core's nodes_replacements


def test_every_node_registered_with_prefix_category_and_tooltips(comfy_host):
    ids = comfy_host.pack_node_ids()
    assert ids, "the extension registered no nodes"
    assert len(ids) == len(set(ids))
    for node_id in ids:
        assert node_id.startswith("Atelier"), node_id
        assert node_id not in comfy_host.core_ids
        info = comfy_host.object_info(node_id)
        assert info["category"].startswith("Kontext Atelier"), (node_id, info["category"])
        assert info["description"], f"{node_id} has no description"
        assert "Kontext" in info["display_name"], info["display_name"]
        for section in ("required", "optional"):
            for name, spec in info["input"].get(section, {}).items():
                options = spec[1] if len(spec) > 1 else {}
                assert options.get("tooltip"), f"{node_id} input {name} has no tooltip"
        assert len(info["output_tooltips"]) == len(info["output"])
        for name, tip in zip(info["output_name"], info["output_tooltips"], strict=True):
            assert tip, f"{node_id} output {name} has no tooltip"


def test_js_extension_exists():
    assert list(Path(PACK_DIR, "js").glob("*.js")), "WEB_DIRECTORY ./js holds no extension"
