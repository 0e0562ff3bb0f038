"""Fixtures shared by the test suite.

``comfy_host`` boots one real ComfyUI per session (see ``atelier_host.py``); without one, every test that asks for
it skips with a single line naming COMFYUI_PATH.
"""

from __future__ import annotations

import pytest
from atelier_host import NOT_IN_THIS_HOST, ComfyHost, find_comfyui

_HOST_STATE: dict = {}


def _host_or_skip(tmp_path_factory) -> ComfyHost:
    if "host" in _HOST_STATE:
        return _HOST_STATE["host"]
    if "skip" in _HOST_STATE:
        pytest.skip(_HOST_STATE["skip"])
    root, reason = find_comfyui()
    if root is None:
        _HOST_STATE["skip"] = reason
        pytest.skip(reason)
    host = ComfyHost(root, tmp_path_factory.mktemp("comfy_host"))
    _HOST_STATE["host"] = host
    return host


@pytest.fixture(scope="session")
def comfy_host(tmp_path_factory) -> ComfyHost:
    """ComfyUI loaded in-process with this pack, its folders pointing into a temporary directory."""
    return _host_or_skip(tmp_path_factory)


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "comfy_host" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.host)


def _skip_reason(report) -> str:
    longrepr = getattr(report, "longrepr", None)
    return str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr or "")


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    """Say how many host tests ran and skipped, and on which ComfyUI (.ci/run reads this line)."""
    ran = skipped = not_applicable = 0
    for key in ("passed", "failed", "error"):
        for rep in terminalreporter.stats.get(key, []):
            # A setup error (the pack failed to import, say) counts as a host test that ran and failed.
            if "host" in getattr(rep, "keywords", {}) and (rep.when == "call" or key == "error"):
                ran += 1
    for rep in terminalreporter.stats.get("skipped", []):
        if "host" in getattr(rep, "keywords", {}):
            if NOT_IN_THIS_HOST in _skip_reason(rep):
                not_applicable += 1
            else:
                skipped += 1
    line = f"host tests: {ran} ran, {skipped} skipped"
    if not_applicable:
        line += f", {not_applicable} not for this release"
    host = _HOST_STATE.get("host")
    if host is not None:
        line += f" (ComfyUI {host.version or 'of unknown version'} at {host.root})"
    elif _HOST_STATE.get("skip"):
        line += f" ({_HOST_STATE['skip']})"
    terminalreporter.write_line(line)


FLUX_VAE_NAME = "atelier_test_flux_vae.safetensors"


@pytest.fixture(scope="session")
def flux_vae_file(comfy_host):
    """A random-weight FLUX VAE (bf16 safetensors, ComfyUI's own key set) in the host's models/vae; written once."""
    from atelier_fixtures import write_flux_vae

    path = comfy_host.model_path("vae", FLUX_VAE_NAME)
    if not path.is_file():
        write_flux_vae(path)
    return path
