"""Every shipped Kontext workflow queued from a real ComfyUI page (headless Chromium, as the Queue button does) while
its transformer is absent from the server: the server refuses the prompt at validation, before any node runs, with
one message on the loader naming the file, the folder it goes in and where to download it, and the page shows that
message. Every other file the workflows list is there (empty placeholders: validation only looks for the file).
One more copy of the GGUF edit asks core's VAELoader for a VAE the server lacks: its refusal on the page is worded
the same way (comfy_glue/prompt_errors.py), not as core's bare "Value not in list".

CI runs this on every ComfyUI of the matrix (frontends 1.27 to 1.49); it skips with one line, like test_browser.py,
when Node.js, Chromium, playwright-core or ComfyUI is absent."""

from __future__ import annotations

import functools
import json

import pytest
from browser_setup import WORKFLOWS, page_server, run_driver
from test_host_server import pack_tracebacks

from atelier_core import model_catalog

KONTEXT = sorted(p.stem for p in WORKFLOWS.glob("kontext_*.json"))
DRIVER_TIMEOUT_S = 300  # a page load and eleven refusals; the driver's own waits are for events, not for a clock


@functools.cache
def _transformer(name: str) -> tuple[str, str]:
    """(node id, file name) of the workflow's Kontext loader."""
    graph = json.loads((WORKFLOWS / f"{name}.json").read_text())
    (loader,) = [n for n in graph["nodes"] if n["type"] == "AtelierKontextLoader"]
    return str(loader["id"]), loader["widgets_values"][0]


def _expected(name: str) -> str:
    return f"model file {_transformer(name)[1]} is missing"


MISSING_VAE = "ae_not_installed.safetensors"
VAE_MESSAGE = f"vae_name: model file {MISSING_VAE} is missing: put it in ComfyUI/models/vae/"


def _missing_vae_workflow(base) -> dict:
    """kontext_edit_gguf with its VAE file renamed to one the server does not have."""
    text = (WORKFLOWS / "kontext_edit_gguf.json").read_text().replace('"ae.safetensors"', f'"{MISSING_VAE}"')
    path = base / "missing_vae.json"
    path.write_text(text)
    return {"name": "missing_vae", "path": str(path), "kind": "json", "lookFor": VAE_MESSAGE}


@pytest.fixture(scope="module")
def queued(tmp_path_factory):
    """Start ComfyUI without the Kontext transformers, queue each Kontext workflow from the page; the report."""
    leave_out = {_transformer(name)[1] for name in KONTEXT}
    with page_server(tmp_path_factory, "browser_missing", {}, leave_out) as (server, config):
        config["workflows"] = [
            {"name": name, "path": str(WORKFLOWS / f"{name}.json"), "kind": "json", "lookFor": _expected(name)}
            for name in KONTEXT
        ] + [_missing_vae_workflow(server.base)]
        report = run_driver("queue_missing.mjs", config, server, DRIVER_TIMEOUT_S)
        report["log"] = server.log()
    report["by_name"] = {r["name"]: r for r in report["workflows"]}
    return report


def test_every_kontext_workflow_is_queued():
    assert len(KONTEXT) >= 11, KONTEXT  # edit (fp8, gguf, gguf_t5, turbo, diff-merge), references, masked, ...


@pytest.mark.parametrize("name", KONTEXT)
def test_missing_transformer_refused_with_its_message(queued, name):
    result = queued["by_name"][name]
    assert "error" not in result, result["error"]
    assert "thrown" not in result["queued"], f"{name}: the frontend failed to queue: {result['queued']}"
    loader_id, model = _transformer(name)
    entry = model_catalog.BY_NAME[model]
    response = result["response"]
    assert response["status"] == 400, f"{name}: the server accepted the prompt: {response}"
    node_errors = response["body"]["node_errors"]
    assert set(node_errors) == {loader_id}, f"{name}: other nodes blamed: {sorted(node_errors)}"
    (detail,) = [e["details"] for e in node_errors[loader_id]["errors"]]
    assert detail.count(_expected(name)) == 1, detail
    assert entry["url"] in detail and "ComfyUI/models/diffusion_models/" in detail, detail
    assert model not in response["body"]["error"].get("details", ""), "said again in the prompt-level error"


@pytest.mark.parametrize("name", KONTEXT)
def test_page_shows_the_message_and_nothing_runs(queued, name):
    result = queued["by_name"][name]
    assert result["shown"]["found"], (
        f"{name}: the page does not show '{_expected(name)}' after queueing; dialogs: {result['dialogs']}, "
        f"screenshot {result.get('screenshot')}"
    )
    assert result["events"] == [], f"{name}: the server ran nodes: {result['events']}"


def test_core_loader_missing_file_worded_like_ours_on_the_page(queued):
    result = queued["by_name"]["missing_vae"]
    assert "error" not in result, result["error"]
    node_errors = result["response"]["body"]["node_errors"]
    (vae_error,) = [e for n in node_errors.values() if n["class_type"] == "VAELoader" for e in n["errors"]]
    assert vae_error["type"] == "value_not_in_list" and vae_error["details"].startswith(VAE_MESSAGE), vae_error
    # Frontends up to 1.3x show the error's details (ours); 1.4x words value_not_in_list itself and lists the file
    # under "Missing Models" with its folder and a Download button (the workflow's model metadata).
    text = result["pageText"]
    panel = "Missing Models" in text and MISSING_VAE in text and "\nvae\n" in text and "Download" in text
    assert result["shown"]["found"] or panel, f"the page names neither '{VAE_MESSAGE}' nor a download:\n{text[-3000:]}"
    assert result["events"] == [], result["events"]


def test_server_queued_and_ran_nothing(queued):
    queue = queued["queue"]
    assert queue["queue_running"] == [] and queue["queue_pending"] == [], queue
    assert queued["history"] == {}, sorted(queued["history"])
    # Tracebacks through the pack only: the release's own background work may log tracebacks of its own (0.10.0's
    # asset scanner on an in-memory database), which are not this test's concern.
    ours = pack_tracebacks(queued["log"])
    assert not ours, ours[0]


def test_no_page_errors(queued):
    assert not queued["errors"], queued["errors"]
