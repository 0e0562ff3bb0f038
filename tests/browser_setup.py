"""What every browser test needs: Chromium, Node.js and playwright-core (or one skip line saying which is missing), a
ComfyUI base folder with placeholder model files named as the shipped workflows list them, and a way to run one of
the drivers in ``tests/browser`` against a server and read its one-line JSON report."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from atelier_host import PACK_DIR, find_comfyui
from test_host_server import ComfyServer

BROWSER_DIR = PACK_DIR / "tests" / "browser"
WORKFLOWS = PACK_DIR / "workflows"
CHROMIUM_NAMES = ("chromium", "chromium-browser")
EXAMPLE_IMAGE = PACK_DIR / "tests" / "data" / "chelsea_451x300.jpg"


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


def browser_tools() -> tuple[Path, str]:
    """(ComfyUI root, Chromium path), or skip the module with one line naming what is missing."""
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
    return root, chromium


def workflow_sources() -> list[tuple[str, Path, str]]:
    """(name, path, "json" | "png") of every shipped UI workflow and workflow picture."""
    sources = [(p.stem, p, "json") for p in sorted(WORKFLOWS.glob("*.json"))]
    sources += [(f"{p.stem}.png", p, "png") for p in sorted(WORKFLOWS.glob("*.png"))]
    return sources


def listed_models(graph: dict) -> list[dict]:
    """The model files a UI workflow lists for ComfyUI's missing-models dialog (and ours, for files it cannot)."""
    found = []
    for node in graph["nodes"]:
        properties = node.get("properties", {})
        found += properties.get("models", []) + properties.get("atelier_downloads", [])
    return found


def prepare_base(base: Path, images: dict[str, np.ndarray], leave_out: set[str] = frozenset()) -> None:
    """Empty placeholder files for every model the workflows list (loading and validation never read them), but
    those named in leave_out; the example picture they load and the given extra input pictures."""
    from PIL import Image

    for _, path, kind in workflow_sources():
        if kind != "json":
            continue
        for model in listed_models(json.loads(path.read_text())):
            if model["name"] in leave_out:
                continue
            target = base / "models" / model["directory"] / model["name"]
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    (base / "input").mkdir(parents=True, exist_ok=True)
    Image.open(EXAMPLE_IMAGE).convert("RGB").save(base / "input" / "example.png")
    for name, pixels in images.items():
        Image.fromarray(pixels).save(base / "input" / name)


def post_setting(url: str, key: str, value) -> None:
    request = urllib.request.Request(
        f"{url}/settings/{key}",
        data=json.dumps(value).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10):  # loopback: the server this test started
        pass


def run_driver(script: str, config: dict, server, timeout_s: float) -> dict:
    """Run tests/browser/<script> on the config (written beside the server's files); its last stdout line."""
    config_path = server.base / f"{Path(script).stem}_config.json"
    config_path.write_text(json.dumps(config))
    run = subprocess.run(
        ["node", str(BROWSER_DIR / script), str(config_path)],
        cwd=BROWSER_DIR,
        capture_output=True,
        text=True,
        timeout=timeout_s,
    )
    assert run.returncode == 0, f"browser driver {script} failed:\n{run.stderr[-4000:]}\n{server.log()[-2000:]}"
    return json.loads(run.stdout.strip().splitlines()[-1])


@contextmanager
def page_server(tmp_path_factory, name: str, images: dict[str, np.ndarray], leave_out: set[str] = frozenset()):
    """A ComfyUI server on a fresh base folder (prepare_base) for a browser driver, stopped after the block.

    Yields (server, config): config holds what every driver reads (url, chromium, a fresh profile, the screenshot
    folder: ATELIER_SCREENSHOTS when set, else a tmp dir); the caller adds its own keys."""
    root, chromium = browser_tools()
    base = tmp_path_factory.mktemp(name)
    prepare_base(base, images, leave_out)
    out = Path(os.environ.get("ATELIER_SCREENSHOTS") or tmp_path_factory.mktemp(f"{name}_screenshots"))
    out.mkdir(parents=True, exist_ok=True)
    server = ComfyServer(root, base)
    try:
        server.wait_ready()
        post_setting(server.url, "Comfy.TutorialCompleted", True)  # no first-run template browser over the canvas
        profile = tmp_path_factory.mktemp(f"{name}_chromium_profile")
        yield server, {"url": server.url, "chromium": chromium, "profile": str(profile), "out": str(out)}
    finally:
        server.stop()
