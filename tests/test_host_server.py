"""The pack inside a real ComfyUI server: ``python main.py`` with the pack in ``custom_nodes/``, as a user runs it.

The in-process host (``comfy_host``) says which node ids the extension registers; the server, started in a
subprocess on a free loopback port with a throw-away base directory, must serve every one of them on /object_info,
serve the frontend extension, and log no import failure or traceback from the pack. Only loopback traffic.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from atelier_host import PACK_DIR

PACK_FOLDER = "kontext-atelier"  # the folder name a git clone into custom_nodes gives
START_TIMEOUT_S = 600.0  # a bound for a hung server only: readiness is /object_info answering, on a busy machine too
STOP_TIMEOUT_S = 20.0
TEST_ONLY_IDS = {"AtelierTestCapture", "AtelierTestTextEncode"}  # registered by the in-process harness, never shipped


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _get(url: str, timeout: float = 10.0) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as response:  # loopback only: the server we started
        return response.read()


class ComfyServer:
    def __init__(self, root: Path, base: Path):
        self.base = base
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / "server.log"
        (base / "custom_nodes").mkdir(parents=True, exist_ok=True)
        (base / "custom_nodes" / PACK_FOLDER).symlink_to(PACK_DIR, target_is_directory=True)
        command = [
            sys.executable,
            "main.py",
            "--cpu",
            "--listen",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--base-directory",
            str(base),
            "--disable-auto-launch",
            "--database-url",
            "sqlite:///:memory:",
        ]
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        self._log = open(self.log_path, "wb")  # a file, not a pipe: a full pipe would stall the server
        self.process = subprocess.Popen(
            command, cwd=root, env=env, stdin=subprocess.DEVNULL, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self) -> dict:
        """Poll /object_info until it answers (bounded); return it."""
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"ComfyUI exited with {self.process.returncode} before serving:\n{self.log()[-4000:]}")
            try:
                return json.loads(_get(self.url + "/object_info", timeout=30.0))
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError):
                time.sleep(0.5)
        pytest.fail(f"ComfyUI did not serve /object_info within {START_TIMEOUT_S:.0f} s:\n{self.log()[-4000:]}")

    def stop(self) -> None:
        """Ctrl-C first (ComfyUI's clean shutdown), then SIGKILL if it hangs; always closes the log."""
        try:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGINT)
                try:
                    self.process.wait(timeout=STOP_TIMEOUT_S)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout=STOP_TIMEOUT_S)
        finally:
            self._log.close()


@pytest.fixture(scope="module")
def comfy_server(comfy_host, tmp_path_factory):
    """A running ComfyUI server with the pack symlinked into its custom_nodes, and its /object_info."""
    server = ComfyServer(comfy_host.root, tmp_path_factory.mktemp("comfy_server"))
    try:
        object_info = server.wait_ready()
        yield server, object_info
    finally:
        server.stop()


def pack_tracebacks(log: str) -> list[str]:
    """Every traceback in the log that passes through the pack's files."""
    markers = (PACK_FOLDER, str(PACK_DIR), "atelier_core")
    blocks = log.split("Traceback (most recent call last)")[1:]
    return [block[:3000] for block in blocks if any(marker in block for marker in markers)]


def test_server_loads_pack_without_import_failure(comfy_server):
    server, _ = comfy_server
    log = server.log()
    assert "IMPORT FAILED" not in log, log[-4000:]
    assert not pack_tracebacks(log), pack_tracebacks(log)[0]
    loaded = [line for line in log.splitlines() if line.rstrip().endswith(f"custom_nodes{os.sep}{PACK_FOLDER}")]
    assert loaded, f"ComfyUI did not list the pack under 'Import times for custom nodes':\n{log[-4000:]}"


def test_server_lists_every_node(comfy_host, comfy_server):
    _, object_info = comfy_server
    expected = set(comfy_host.pack_node_ids())
    served = {node_id for node_id in object_info if node_id.startswith("Atelier")} - TEST_ONLY_IDS
    assert served == expected, f"missing: {sorted(expected - served)}, unexpected: {sorted(served - expected)}"
    for node_id in sorted(expected):
        info = object_info[node_id]
        assert info["category"].startswith("Kontext Atelier"), (node_id, info["category"])
        assert info["python_module"].startswith("custom_nodes."), (node_id, info["python_module"])


def test_server_serves_frontend_extension(comfy_server):
    server, _ = comfy_server
    scripts = json.loads(_get(server.url + "/extensions"))
    ours = [path for path in scripts if path.startswith(f"/extensions/{PACK_FOLDER}/")]
    shipped = sorted(p.relative_to(PACK_DIR / "js").as_posix() for p in (PACK_DIR / "js").rglob("*.js"))
    assert sorted(path.split(f"/extensions/{PACK_FOLDER}/", 1)[1] for path in ours) == shipped
    for path in ours:
        assert b"registerExtension" in _get(server.url + path)


def _post_prompt(server: ComfyServer, prompt: dict) -> tuple[int, dict]:
    """POST /prompt as the frontend and the CLI do; (status, the server's JSON answer), a refusal included."""
    body = json.dumps({"prompt": prompt, "client_id": "atelier-test"}).encode()
    request = urllib.request.Request(
        server.url + "/prompt", data=body, headers={"Content-Type": "application/json"}, method="POST"
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # loopback only: the server we started
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read())


def test_core_loaders_missing_files_are_worded_like_ours(comfy_server):
    """With no model installed, core's DualCLIPLoader and VAELoader refuse their files with our line (file, folder,
    download) instead of a bare "Value not in list"; the error keeps core's type; other refusals keep core's words."""
    from atelier_core import model_catalog

    server, _ = comfy_server
    prompt = json.loads((PACK_DIR / "workflows" / "api" / "kontext_edit_gguf.api.json").read_text())
    sampler_id = next(i for i, n in prompt.items() if n["class_type"] == "KSampler")
    prompt[sampler_id]["inputs"]["sampler_name"] = "no_such_sampler"
    status, answer = _post_prompt(server, prompt)
    assert status == 400, answer
    errors = answer["node_errors"]
    worded = {}
    for node_id, node in prompt.items():
        if node["class_type"] in ("DualCLIPLoader", "VAELoader"):
            for error in errors[node_id]["errors"]:
                assert error["type"] == "value_not_in_list" and error["message"] == "Value not in list", error
                worded[error["extra_info"]["input_name"]] = error["details"]
    names = {
        k: prompt[i]["inputs"][k]
        for i in prompt
        for k in ("clip_name1", "clip_name2", "vae_name")
        if k in prompt[i]["inputs"]
    }
    assert set(worded) == set(names), worded
    for input_name, file_name in names.items():
        url = model_catalog.BY_NAME[file_name]["url"]
        folder = "vae/" if input_name == "vae_name" else "text_encoders/ (or models/clip/)"
        assert worded[input_name] == (
            f"{input_name}: model file {file_name} is missing: download {url} into ComfyUI/models/{folder}"
        ), worded[input_name]
    (sampler_error,) = errors[sampler_id]["errors"]
    assert "no_such_sampler" in sampler_error["details"] and "not in" in sampler_error["details"], sampler_error
