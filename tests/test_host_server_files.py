"""User files that change or break under a running ComfyUI server (issue 23), checked on a real ``main.py`` process.

- A GGUF truncated on disk after it was loaded (a re-download, ``cp new.gguf old.gguf``): the server must survive
  (no SIGBUS from a memory-mapped weight) and answer the next run with a message naming the file.
- A vocabulary file with a 5,000-digit number: the pack must still register every node, and the prompt node shows
  a warning naming the file.
- The error type the server reports for our errors is short (``kontext_atelier.AtelierError``), not a path.
"""

from __future__ import annotations

import json
import time
import urllib.request
import uuid
from pathlib import Path

import pytest
from test_host_server import PACK_FOLDER, ComfyServer, _get

from atelier_core.testing import synth

TESTS_DIR = Path(__file__).resolve().parent
MODEL = "tiny_Q8_0.gguf"
RUN_TIMEOUT_S = 300.0  # a bound on a hung server only: each wait ends as soon as the history has the run
HOSTILE_VOCABULARY = '{"format": 1, "materials": {"x": ' + "9" * 5000 + "}}"
TEST_NODES = f"""
import sys
sys.path.insert(0, {str(TESTS_DIR)!r})
import atelier_host_nodes

NODE_CLASS_MAPPINGS = {{}}
atelier_host_nodes.register(NODE_CLASS_MAPPINGS)
"""


@pytest.fixture(scope="module")
def file_server(comfy_host, tmp_path_factory):
    """A server whose base directory holds a tiny GGUF, a hostile vocabulary file and the test-only nodes."""
    base = tmp_path_factory.mktemp("comfy_server_files")
    (base / "models" / "diffusion_models").mkdir(parents=True)
    synth.write_gguf(base / "models" / "diffusion_models" / MODEL, synth.kontext_state_dict(synth.TINY, seed=0), "Q8_0")
    vocabulary = base / "user" / "default" / "kontext_atelier" / "vocabulary.json"
    vocabulary.parent.mkdir(parents=True)
    vocabulary.write_text(HOSTILE_VOCABULARY, encoding="utf-8")
    (base / "custom_nodes" / "atelier_test_nodes").mkdir(parents=True)
    (base / "custom_nodes" / "atelier_test_nodes" / "__init__.py").write_text(TEST_NODES)
    server = ComfyServer(comfy_host.root, base)
    try:
        object_info = server.wait_ready()
        yield server, object_info
    finally:
        server.stop()


def _run(server: ComfyServer, graph: dict) -> dict:
    """Queue ``graph`` and wait until the server's history has it; return that history entry."""
    body = json.dumps({"prompt": graph, "client_id": uuid.uuid4().hex}).encode()
    request = urllib.request.Request(
        server.url + "/prompt", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    with urllib.request.urlopen(request, timeout=30) as response:  # loopback only: the server we started
        prompt_id = json.loads(response.read())["prompt_id"]
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        assert server.process.poll() is None, f"the server died ({server.process.returncode}):\n{server.log()[-3000:]}"
        history = json.loads(_get(f"{server.url}/history/{prompt_id}", timeout=30))
        entry = history.get(prompt_id)
        if entry and entry.get("status", {}).get("completed") is not None and entry["status"].get("status_str"):
            return entry
        time.sleep(0.2)
    pytest.fail(f"run {prompt_id} did not finish within {RUN_TIMEOUT_S:.0f} s:\n{server.log()[-3000:]}")


def _errors(entry: dict) -> list[dict]:
    return [data for event, data in entry["status"]["messages"] if event == "execution_error"]


def _sample_graph(mode: str, seed: int) -> dict:
    return {
        "loader": {
            "class_type": "AtelierKontextLoader",
            "inputs": {"model_name": MODEL, "compute_dtype": "fp32", "gguf_mode": mode, "fp8_matmul": False},
        },
        "text": {"class_type": "AtelierTestTextEncode", "inputs": {"text": "red cloak", "tokens": 8, "guidance": 2.5}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": 32, "height": 32, "batch_size": 1}},
        "sampler": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["loader", 0],
                "seed": seed,
                "steps": 1,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["text", 0],
                "negative": ["text", 0],
                "latent_image": ["empty", 0],
                "denoise": 1.0,
            },
        },
        "save": {"class_type": "SaveLatent", "inputs": {"samples": ["sampler", 0], "filename_prefix": f"t_{mode}"}},
    }


def test_pack_registers_every_node_despite_a_hostile_vocabulary(comfy_host, file_server):
    server, object_info = file_server
    assert "IMPORT FAILED" not in server.log(), server.log()[-3000:]
    served = {node_id for node_id, info in object_info.items() if info["python_module"].endswith(PACK_FOLDER)}
    assert served == set(comfy_host.pack_node_ids())
    defaults = {
        name: spec[1].get("default")
        for name, spec in object_info["AtelierMiniaturePrompt"]["input"]["required"].items()
    }
    graph = {
        "prompt": {"class_type": "AtelierMiniaturePrompt", "inputs": {**defaults, "variants": 1}},
        "capture": {"class_type": "AtelierTestCapture", "inputs": {"key": "p", "value": ["prompt", 0]}},
    }
    entry = _run(server, graph)
    assert entry["status"]["status_str"] == "success", entry["status"]
    shown = entry["outputs"]["prompt"]["text"][0]
    assert "vocabulary.json holds a number with more than" in shown, shown
    assert "built-in vocabulary is used" in shown


@pytest.mark.parametrize("mode", ["on_the_fly", "materialize"])
def test_gguf_truncated_after_loading_is_answered_with_a_message(file_server, mode):
    server, _ = file_server
    path = server.base / "models" / "diffusion_models" / MODEL
    good = path.read_bytes()
    try:
        assert _run(server, _sample_graph(mode, seed=1))["status"]["status_str"] == "success"
        path.write_bytes(good[: len(good) // 2])  # what an interrupted re-download leaves
        entry = _run(server, _sample_graph(mode, seed=2))
        assert server.process.poll() is None
        errors = _errors(entry)
        assert errors, entry["status"]
        assert errors[0]["node_type"] == "AtelierKontextLoader"
        assert errors[0]["exception_type"] == "kontext_atelier.AtelierError"
        message = errors[0]["exception_message"]
        assert message.startswith("Kontext Loader:") and MODEL in message and "truncated" in message, message
        assert "Kontext Loader: Kontext Loader" not in message
    finally:
        path.write_bytes(good)
    assert _run(server, _sample_graph(mode, seed=3))["status"]["status_str"] == "success"


def test_one_broken_node_module_leaves_the_other_nodes_registered(comfy_host, monkeypatch):
    import asyncio
    import sys

    nodes_package = sys.modules[f"{comfy_host.pack_module_name}.nodes"]
    monkeypatch.setattr(nodes_package, "_NODE_MODULES", ("no_such_module", "aspect"))
    extension = asyncio.run(sys.modules[comfy_host.pack_module_name].comfy_entrypoint())
    ids = [cls.GET_SCHEMA().node_id for cls in asyncio.run(extension.get_node_list())]
    aspect = sys.modules[f"{comfy_host.pack_module_name}.nodes.aspect"]
    assert ids == [cls.GET_SCHEMA().node_id for cls in aspect.NODES] and ids
