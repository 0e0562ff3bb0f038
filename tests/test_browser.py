"""The shipped workflows in a real browser: ComfyUI served on loopback, Debian's Chromium driven by playwright-core.

For every UI workflow (``workflows/*.json``) and every workflow PNG (``workflows/*.png``) the page must load it with
every node type known, no dialog (missing nodes, missing models: placeholder files with the names the workflows list
in ``properties.models`` are put in the server's model folders, since loading never reads them), and no combo value
the server would refuse; ``app.graphToPrompt()`` must give the shipped API file (``workflows/api/<name>.api.json``)
up to node ids. The extension's live widgets must show what Python computes (the aspect lock's target size for the
loaded picture). Screenshots go to the test's tmp dir (printed); set ``ATELIER_SCREENSHOTS=DIR`` to keep them.

Skips with one line when Node.js, Chromium, playwright-core (installed into ``tests/browser/node_modules`` by npm
when missing) or ComfyUI is absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import subprocess
import urllib.request
from pathlib import Path

import pytest
from atelier_host import PACK_DIR, find_comfyui
from test_host_server import ComfyServer

from atelier_core import geometry

BROWSER_DIR = PACK_DIR / "tests" / "browser"
WORKFLOWS = PACK_DIR / "workflows"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
EXAMPLE_IMAGE = PACK_DIR / "tests" / "data" / "chelsea_451x300.jpg"
RUN_TIMEOUT_S = 150


def _chromium() -> str | None:
    explicit = os.environ.get("CHROMIUM_PATH")
    if explicit and Path(explicit).is_file():
        return explicit
    return next((found for name in CHROMIUM_NAMES if (found := shutil.which(name))), None)


def _playwright_ready() -> str:
    """'' when playwright-core is installed in tests/browser (installing it if npm can), else why not."""
    if (BROWSER_DIR / "node_modules" / "playwright-core" / "package.json").is_file():
        return ""
    npm = shutil.which("npm")
    if npm is None:
        return "no npm on PATH to install playwright-core into tests/browser"
    command = [npm, "ci" if (BROWSER_DIR / "package-lock.json").is_file() else "install", "--no-audit", "--no-fund"]
    try:
        run = subprocess.run(command, cwd=BROWSER_DIR, capture_output=True, text=True, timeout=180)
    except subprocess.TimeoutExpired:
        return "npm could not install playwright-core into tests/browser within 180 s (offline?)"
    if run.returncode != 0:
        return f"npm could not install playwright-core into tests/browser (offline?): {run.stderr.strip()[-200:]}"
    return ""


def _workflow_sources() -> list[tuple[str, Path, str]]:
    sources = [(p.stem, p, "json") for p in sorted(WORKFLOWS.glob("*.json"))]
    sources += [(f"{p.stem}.png", p, "png") for p in sorted(WORKFLOWS.glob("*.png"))]
    return sources


def _prepare_base(base: Path) -> None:
    """Placeholder model files named as the workflows list them, and the example picture they load."""
    for _, path, kind in _workflow_sources():
        if kind != "json":
            continue
        for node in json.loads(path.read_text())["nodes"]:
            properties = node.get("properties", {})
            for model in properties.get("models", []) + properties.get("atelier_downloads", []):
                target = base / "models" / model["directory"] / model["name"]
                target.parent.mkdir(parents=True, exist_ok=True)
                target.touch()
    (base / "input").mkdir(parents=True, exist_ok=True)
    from PIL import Image

    Image.open(EXAMPLE_IMAGE).convert("RGB").save(base / "input" / "example.png")


def _post_setting(url: str, key: str, value) -> None:
    request = urllib.request.Request(
        f"{url}/settings/{key}", data=json.dumps(value).encode(), method="POST",
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=10):  # loopback: the server this test started
        pass


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    """Start ComfyUI, load every workflow in Chromium once; returns the driver's report."""
    missing = []
    if shutil.which("node") is None:
        missing.append("Node.js (node)")
    chromium = _chromium()
    if chromium is None:
        missing.append("Chromium (apt-get install chromium, or CHROMIUM_PATH)")
    root, reason = find_comfyui()
    if root is None:
        missing.append(reason)
    if missing:
        pytest.skip("browser tests skipped, missing: " + "; ".join(missing))
    why = _playwright_ready()
    if why:
        pytest.skip(f"browser tests: {why}")

    base = tmp_path_factory.mktemp("browser_comfy")
    _prepare_base(base)
    out = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(root, base)
    try:
        server.wait_ready()
        _post_setting(server.url, "Comfy.TutorialCompleted", True)  # no first-run template browser over the canvas
        config = {
            "url": server.url,
            "chromium": chromium,
            "profile": str(tmp_path_factory.mktemp("chromium_profile")),
            "out": str(out),
            "workflows": [{"name": name, "path": str(path), "kind": kind} for name, path, kind in _workflow_sources()],
            "live": {"size": "16:9", "fit": "pad"},
        }
        config_path = base / "browser_config.json"
        config_path.write_text(json.dumps(config))
        run = subprocess.run(
            ["node", str(BROWSER_DIR / "check_workflows.mjs"), str(config_path)],
            cwd=BROWSER_DIR, capture_output=True, text=True, timeout=RUN_TIMEOUT_S,
        )  # fmt: skip
        assert run.returncode == 0, f"browser driver failed:\n{run.stderr[-4000:]}\n{server.log()[-2000:]}"
        report = json.loads(run.stdout.strip().splitlines()[-1])
        (out / "report.json").write_text(json.dumps(report, indent=1))
    finally:
        server.stop()
    logging.getLogger(__name__).warning("browser screenshots: %s", out)
    report["by_name"] = {r["name"]: r for r in report["workflows"]}
    return report


def _canonical(prompt: dict) -> dict:
    """An API prompt with node ids replaced by names derived from the graph itself (class, title, inputs, links).

    Refined a few rounds like a Weisfeiler-Lehman hash, so nodes that differ only in what feeds them get apart.
    """

    def literal(node: dict) -> str:
        inputs = {k: _number(v) for k, v in node["inputs"].items() if not _is_link(v)}
        return json.dumps([node["class_type"], node.get("_meta", {}).get("title"), inputs], sort_keys=True)

    names = {nid: hashlib.sha1(literal(node).encode()).hexdigest()[:12] for nid, node in prompt.items()}
    for _ in range(4):
        names = {
            nid: hashlib.sha1(
                (
                    names[nid]
                    + json.dumps(
                        {k: [names.get(str(v[0]), "?"), v[1]] for k, v in node["inputs"].items() if _is_link(v)},
                        sort_keys=True,
                    )
                ).encode()  # fmt: skip
            ).hexdigest()[:12]
            for nid, node in prompt.items()
        }
    canonical = {}
    for nid, node in prompt.items():
        inputs = {
            k: ([names.get(str(v[0]), "?"), v[1]] if _is_link(v) else _number(v)) for k, v in node["inputs"].items()
        }
        canonical[names[nid]] = {"class_type": node["class_type"], "inputs": inputs,
                                 "title": node.get("_meta", {}).get("title")}  # fmt: skip
    return canonical


def _number(value):
    """JavaScript has one number type: 1.0 in the API file is 1 in the browser's prompt (ComfyUI reads both)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_link(value) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)
    )


def _api_file(name: str) -> Path:
    return WORKFLOWS / "api" / f"{name.removesuffix('.png')}.api.json"


@pytest.mark.parametrize("name", [name for name, _, _ in _workflow_sources()])
def test_workflow_loads_and_matches_api_file(browser_run, name):
    result = browser_run["by_name"][name]
    assert "error" not in result, result["error"]
    assert not result["missingTypes"], f"{name}: node types the server does not know: {result['missingTypes']}"
    assert not result["dialogs"], f"{name}: a dialog opened on load: {result['dialogs']}"
    assert not result["badCombos"], f"{name}: values the server would refuse: {result['badCombos']}"
    api = json.loads(_api_file(name).read_text())
    got, want = _canonical(result["output"]), _canonical(api)
    if got != want:
        only_ui = {v["title"] or v["class_type"]: v for k, v in got.items() if k not in want}
        only_api = {v["title"] or v["class_type"]: v for k, v in want.items() if k not in got}
        pytest.fail(f"{name}: graphToPrompt differs from {_api_file(name).name}:\nUI: {only_ui}\nAPI: {only_api}")
    assert Path(result["screenshot"]).stat().st_size > 10_000


def test_no_page_errors(browser_run):
    assert not browser_run["errors"], browser_run["errors"]


def _python_plan(width: int, height: int, values: dict) -> geometry.Geometry:
    size = values["size"]
    mode = {"Kontext preferred (17 sizes)": "kontext", "keep input ratio": "keep",
            "custom W:H": f"{values['custom_width']}:{values['custom_height']}"}.get(size, size)  # fmt: skip
    size_by = {"long side": "long_side"}.get(values["size_by"], values["size_by"])
    return geometry.plan(width, height, mode, fit=values["fit"], anchor=values["anchor"], size_by=size_by,
                         megapixels=values["megapixels"], long_side=values["long_side"])  # fmt: skip


def test_aspect_lock_shows_python_target_for_loaded_picture(browser_run):
    """Each aspect lock fed by the 451x300 example shows the size and boxes Python plans for its settings."""
    from PIL import Image

    width, height = Image.open(EXAMPLE_IMAGE).size
    checked = 0
    for _, path, kind in _workflow_sources():
        if kind != "json":
            continue
        api = json.loads(_api_file(path.stem).read_text())
        result = browser_run["by_name"][path.stem]
        locks = [w for w in result.get("widgets", []) if w["type"] == "AtelierAspectLock"]
        for lock in locks:
            values = api[str(lock["id"])]["inputs"] if str(lock["id"]) in api else None
            source = values and _is_link(values["image"]) and api[str(values["image"][0])]["class_type"]
            if source != "LoadImage":  # fed by a decode (a later turn): the size is known only after a run
                assert "input image" in lock["values"].get("atelier_aspect_preview", ""), lock
                continue
            assert lock["plan"], f"{path.stem}: the aspect lock shows no plan ({lock['values']})"
            text = lock["values"].get("atelier_aspect_preview", "")
            tw, th = lock["plan"]["target"]
            assert f"-> {tw}x{th}" in text, text
            if values is not None:
                g = _python_plan(width, height, values)
                assert lock["plan"]["target"] == list(g.target_size), path.stem
                assert lock["plan"]["crop"] == list(g.crop_box) and lock["plan"]["pad"] == list(g.pad_box)
                checked += 1
    assert checked, "no aspect lock with a matching API node was found in the workflows"

    live = browser_run["by_name"]["live"]
    g = geometry.plan(width, height, "16:9", fit="pad")
    assert live["plan"]["target"] == list(g.target_size), live
    assert live["plan"]["pad"] == list(g.pad_box), live
    assert f"{width}x{height} -> {g.target_width}x{g.target_height}" in live["text"]


def test_stitcher_shows_token_count(browser_run):
    from atelier_core import stitch

    stitchers = [
        w for r in browser_run["workflows"] for w in r.get("widgets", []) if w["type"] == "AtelierContextStitcher"
    ]
    if not stitchers:
        pytest.skip("no shipped workflow uses the Context Stitcher")
    for widget in stitchers:
        text = widget["values"].get("atelier_token_count", "")
        assert "tokens" in text or "pixel_stitch" in text, text
        if widget["tokens"] is not None:
            assert widget["tokens"] % stitch.tokens_for_pixels(1248, 832) == 0 or widget["tokens"] > 0
