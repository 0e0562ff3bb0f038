"""``kontext-atelier run`` against a real ComfyUI server (``python main.py --cpu``) on loopback.

The server runs from a throw-away base directory with this pack symlinked into ``custom_nodes/`` (as in
``test_host_server.py``) next to a test-only pack that registers ``tests/atelier_host_nodes.py`` (the stand-in text
encoder: T5-XXL is too large for a CPU test), and the tiny model files the workflows name. The command line runs as
a user runs it, in a subprocess. Every wait is bounded in time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from atelier_host import PACK_DIR
from PIL import Image
from test_host_server import PACK_FOLDER, ComfyServer, _free_port
from workflow_fixtures import EXAMPLE_IMAGE, api_workflows, cpu_variant, install_models, write_png

from atelier_core.cli.runner import STATE_FILE

TESTS_DIR = Path(__file__).resolve().parent
CLI_TIMEOUT_S = 300
BATCH_SIZE = 4
BATCH_STEPS = 8  # a few seconds per item on a CPU, so the restart lands mid-batch
TEST_NODE_PACK = f"""
import importlib.util

_spec = importlib.util.spec_from_file_location("atelier_server_test_nodes", {str(TESTS_DIR / "atelier_host_nodes.py")!r})
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
NODE_CLASS_MAPPINGS = {{}}
_module.register(NODE_CLASS_MAPPINGS)
"""


class CliServer(ComfyServer):
    """``ComfyServer`` that can be started again on the same base directory and port (a restart)."""

    def __init__(self, root: Path, base: Path, port: int | None = None, generation: int = 0):
        self.base = base
        self.port = port or _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = base / f"server{generation}.log"
        custom = base / "custom_nodes"
        if not custom.is_dir():
            custom.mkdir(parents=True)
            (custom / PACK_FOLDER).symlink_to(PACK_DIR, target_is_directory=True)
            (custom / "atelier_test_nodes").mkdir()
            (custom / "atelier_test_nodes" / "__init__.py").write_text(TEST_NODE_PACK)
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
        self._log = open(self.log_path, "wb")
        self.process = subprocess.Popen(
            command,
            cwd=root,
            env=dict(os.environ, PYTHONUNBUFFERED="1"),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    def crash(self) -> None:
        """SIGKILL: no clean shutdown, the queue and history are gone (what a crash or a power cut does)."""
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=30)
        self._log.close()


def make_base(tmp_path_factory, vae: Path) -> Path:
    base = tmp_path_factory.mktemp("cli_server")
    install_models(base / "models", vae)
    write_png(base / "input" / EXAMPLE_IMAGE)
    return base


@pytest.fixture(scope="module")
def server_base(comfy_host, flux_vae_file, tmp_path_factory):
    return make_base(tmp_path_factory, flux_vae_file)


@pytest.fixture(scope="module")
def server(comfy_host, server_base):
    srv = CliServer(comfy_host.root, server_base)
    try:
        srv.wait_ready()
        yield srv
    finally:
        srv.stop()


def quick_workflow() -> dict:
    """Seconds on a CPU: the tiny Kontext model samples the aspect lock's latent (about 256x256; it depends on the
    image, so ComfyUI's cache never skips the sampler of a batch item), prompt and seed from the command line, and
    the input picture is saved inverted, so the downloaded file can be checked pixel by pixel."""
    return {
        "1": {
            "class_type": "AtelierKontextLoader",
            "_meta": {"title": "Kontext model"},
            "inputs": {
                "model_name": "flux1-kontext-dev-Q4_K_M.gguf",
                "compute_dtype": "fp32",
                "gguf_mode": "auto",
                "fp8_matmul": False,
            },
        },
        "4": {"class_type": "LoadImage", "_meta": {"title": "Image"}, "inputs": {"image": EXAMPLE_IMAGE}},
        "5": {
            "class_type": "AtelierTestTextEncode",
            "_meta": {"title": "Prompt"},
            "inputs": {"text": "placeholder", "tokens": 8, "guidance": 2.5},
        },
        "6": {
            "class_type": "AtelierAspectLock",
            "_meta": {"title": "Aspect lock"},
            "inputs": {
                "image": ["4", 0],
                "size": "keep input ratio",
                "fit": "crop",
                "anchor": "center",
                "size_by": "megapixels",
                "megapixels": 0.0625,
                "long_side": 1024,
                "custom_width": 3,
                "custom_height": 2,
                "pad_mode": "edge",
                "pad_color": "#000000",
            },
        },
        "11": {
            "class_type": "KSampler",
            "_meta": {"title": "Sampler"},
            "inputs": {
                "model": ["1", 0],
                "seed": 0,
                "steps": 3,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["5", 0],
                "negative": ["5", 0],
                "latent_image": ["6", 5],
                "denoise": 1.0,
            },
        },
        "12": {
            "class_type": "SaveLatent",
            "_meta": {"title": "Save latent"},
            "inputs": {"samples": ["11", 0], "filename_prefix": "cli/latent"},
        },
        "13": {"class_type": "ImageInvert", "_meta": {"title": "Invert"}, "inputs": {"image": ["4", 0]}},
        "14": {
            "class_type": "SaveImage",
            "_meta": {"title": "Save"},
            "inputs": {"images": ["13", 0], "filename_prefix": "cli/quick"},
        },
    }


def run_cli(*args: str, timeout: float = CLI_TIMEOUT_S, log: Path | None = None):
    """The command line in a subprocess; with ``log``, started in the background writing stdout+stderr there."""
    command = [sys.executable, "-m", "atelier_core.cli", "run", *args]
    env = dict(os.environ, PYTHONPATH=str(PACK_DIR))
    if log is not None:
        with open(log, "wb") as sink:  # a file, not a pipe: a full pipe would stall the command
            return subprocess.Popen(
                command, cwd=PACK_DIR, env=env, stdin=subprocess.DEVNULL, stdout=sink, stderr=subprocess.STDOUT
            )
    return subprocess.run(
        command, cwd=PACK_DIR, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture
def quick_file(tmp_path):
    path = tmp_path / "quick.api.json"
    path.write_text(json.dumps(quick_workflow()))
    return path


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def _is_inverted(produced: Path, source: Path) -> bool:
    """SaveImage truncates 255*x to 8 bits, so an inverted picture is exact to one step."""
    a, b = _pixels(produced), 255 - _pixels(source)
    return a.shape == b.shape and int(np.abs(a - b).max()) <= 1


def test_run_queues_and_downloads_the_result(server, quick_file, tmp_path):
    image = write_png(tmp_path / "knight.png", 48, 40, seed=3)
    out = tmp_path / "out"
    result = run_cli(
        str(quick_file),
        "--image",
        str(image),
        "--prompt",
        "paint the cloak red",
        "--seed",
        "5",
        "--server",
        server.url,
        "-o",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    produced = out / "knight_kontext.png"
    assert produced.is_file(), (sorted(p.name for p in out.iterdir()), result.stderr)
    assert _is_inverted(produced, image), "the download is not this job's output"
    assert "1 of 1 done" in result.stderr
    # Piped (not a terminal): nodes by title, and the sampler's steps as lines while it runs.
    assert "  Sampler (node 11)" in result.stderr and "running node" not in result.stderr, result.stderr
    assert "  Sampler (node 11): step 1/3" in result.stderr and "step 3/3" in result.stderr, result.stderr
    with urllib.request.urlopen(server.url + "/history", timeout=30) as response:  # loopback: our server
        history = json.loads(response.read())
    prompts = [entry["prompt"][2] for entry in history.values()]
    assert any(p["5"]["inputs"]["text"] == "paint the cloak red" and p["11"]["inputs"]["seed"] == 5 for p in prompts)


def test_run_shipped_workflow_by_name_with_cpu_variant(server, tmp_path):
    """The shipped single-reference GGUF edit (text encoding swapped for the CPU) through the server."""
    workflow = tmp_path / "kontext_edit_gguf_cpu.api.json"
    workflow.write_text(json.dumps(cpu_variant(api_workflows()["kontext_edit_gguf"])))
    image = write_png(tmp_path / "mini.png", 64, 64, seed=4)
    result = run_cli(
        str(workflow),
        "--image",
        str(image),
        "--prompt",
        "make it blue",
        "--seed",
        "1",
        "--server",
        server.url,
        "-o",
        str(tmp_path / "out"),
    )
    assert result.returncode == 0, result.stderr
    assert Image.open(tmp_path / "out" / "mini_kontext.png").size == (64, 64)


def test_invalid_input_prints_node_errors_and_fails(server, quick_file, tmp_path):
    image = write_png(tmp_path / "a.png")
    result = run_cli(
        str(quick_file),
        "--image",
        str(image),
        "--set",
        "Sampler.steps=0",
        "--server",
        server.url,
        "-o",
        str(tmp_path / "out"),
    )
    assert result.returncode != 0
    assert "node 11 (KSampler 'Sampler')" in result.stderr, result.stderr
    assert "smaller than min" in result.stderr and "steps" in result.stderr, result.stderr


def test_execution_error_is_printed_and_fails(server, quick_file, tmp_path):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"this is not a picture")
    result = run_cli(str(quick_file), "--image", str(broken), "--server", server.url, "-o", str(tmp_path / "out"))
    assert result.returncode != 0
    assert result.stderr.count("node 4 (LoadImage 'Image') failed") == 1, result.stderr  # explained once
    assert "Traceback" not in result.stderr


def test_missing_model_files_are_listed_before_anything_is_queued(server, tmp_path):
    """The shipped workflow names files the server does not have: one line each (file, folder, node), and nothing
    is uploaded or queued."""
    image = write_png(tmp_path / "a.png")
    with urllib.request.urlopen(server.url + "/history", timeout=30) as response:  # loopback: our server
        before = len(json.loads(response.read()))
    result = run_cli(
        "kontext_edit_gguf",
        "--image",
        str(image),
        "--set",
        "Kontext model.model_name=absent_kontext.gguf",
        "--set",
        "VAE.vae_name=absent_vae.safetensors",
        "--server",
        server.url,
        "-o",
        str(tmp_path / "out"),
    )
    assert result.returncode == 2, result.stderr
    assert "lacks 2 model file(s)" in result.stderr and "nothing was queued" in result.stderr, result.stderr
    for name, folder, node in (
        ("absent_kontext.gguf", "ComfyUI/models/diffusion_models/", "node 1 (AtelierKontextLoader 'Kontext model')"),
        ("absent_vae.safetensors", "ComfyUI/models/vae/", "node 3 (VAELoader 'VAE')"),
    ):
        line = next(ln for ln in result.stderr.splitlines() if f"model file {name} is missing" in ln)
        assert folder in line and node in line, line
        assert result.stderr.count(name) == 1, result.stderr
    assert "queued as" not in result.stderr
    with urllib.request.urlopen(server.url + "/history", timeout=30) as response:
        assert len(json.loads(response.read())) == before


@pytest.mark.parametrize("name", ["kontext_edit_gguf_t5", "kontext_multi_reference_fp8"])
def test_server_refuses_a_missing_transformer_before_anything_runs(server, server_base, name):
    """Queued straight to the server (as the browser does), the shipped workflow without its transformer file is
    answered 400 with one message on the loader naming the file, its folder and download; nothing runs."""
    prompt = api_workflows()[name]
    loader = next(i for i, n in prompt.items() if n["class_type"] == "AtelierKontextLoader")
    model = prompt[loader]["inputs"]["model_name"]
    path = server_base / "models" / "diffusion_models" / model
    hidden = path.with_name(model + ".away")
    path.rename(hidden)
    try:
        body = json.dumps({"prompt": prompt, "client_id": "missing-model-test"}).encode()
        request = urllib.request.Request(
            server.url + "/prompt", data=body, headers={"Content-Type": "application/json"}
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=60)  # loopback: our server
        answer = json.loads(info.value.read())
    finally:
        hidden.rename(path)
    assert info.value.code == 400
    assert set(answer["node_errors"]) == {loader}, answer["node_errors"]
    (error,) = answer["node_errors"][loader]["errors"]
    assert f"model file {model} is missing: download https://" in error["details"], error
    assert "ComfyUI/models/diffusion_models/" in error["details"]
    with urllib.request.urlopen(server.url + "/queue", timeout=30) as response:
        queue = json.loads(response.read())
    assert not queue["queue_running"] and not queue["queue_pending"]


def test_missing_models_on_server_name_the_download():
    """What the server's /object_info offers decides (V1 and V3 combo specs); a catalog file gets its download."""
    from atelier_core.cli.model_precheck import missing_on_server

    prompt = api_workflows()["kontext_edit_gguf_t5"]
    listed = {
        "AtelierKontextLoader": {"input": {"required": {"model_name": ["COMBO", {"options": ["other.gguf"]}]}}},
        "AtelierKontextTextEncoders": {
            "input": {
                "required": {
                    "clip_l_name": ["COMBO", {"options": ["clip_l.safetensors"]}],
                    "t5_name": ["COMBO", {"options": []}],
                }
            }
        },
        "VAELoader": {"input": {"required": {"vae_name": [["ae.safetensors", "taesd"], {}]}}},
    }
    lines = missing_on_server(lambda class_type: {class_type: listed[class_type]}, prompt)
    assert len(lines) == 2, lines
    assert "flux1-kontext-dev-Q4_K_M.gguf is missing: download https://huggingface.co/" in lines[0]
    assert "into ComfyUI/models/diffusion_models/ (or models/unet/)" in lines[0]
    assert "t5-v1_1-xxl-encoder-Q5_K_M.gguf is missing" in lines[1] and "models/text_encoders/" in lines[1]


def test_doctor_finds_the_running_servers_comfyui_and_models(server, server_base, tmp_path):
    """No --comfyui, no COMFYUI_PATH, no ~/ComfyUI: the server says where its folders are and which files its loaders
    offer; every Kontext workflow's files are installed there, so doctor says ready."""
    env = {k: v for k, v in os.environ.items() if k != "COMFYUI_PATH"}
    env.update(HOME=str(tmp_path), PYTHONPATH=str(PACK_DIR))
    proc = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "doctor", "--server", server.url],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_S,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert f"ComfyUI at {server_base.resolve()}" in out and "(the folder of the server at" in out, out
    assert "this pack is linked as custom_nodes/kontext-atelier" in out, out
    assert f"files from the model lists of the server at {server.url}" in out, out
    assert "kontext_edit_gguf_t5: its 4 model file(s) are there" in out, out
    assert proc.returncode == 0 and out.rstrip().endswith("ready"), out + proc.stderr


def test_unknown_workflow_and_missing_server_are_clear(tmp_path):
    image = write_png(tmp_path / "a.png")
    result = run_cli("no_such_workflow", "--image", str(image), timeout=60)
    assert result.returncode == 2 and "kontext_edit_gguf" in result.stderr, result.stderr
    dead = f"http://127.0.0.1:{_free_port()}"
    result = run_cli(
        "kontext_edit_gguf", "--image", str(image), "--server", dead, "--reconnect-timeout", "1", timeout=60
    )
    assert result.returncode == 2 and "did not answer" in result.stderr, result.stderr


def _state(out: Path) -> dict:
    try:
        return json.loads((out / STATE_FILE).read_text()).get("items", {})
    except (OSError, ValueError):
        return {}


def test_batch_survives_a_server_restart(comfy_host, flux_vae_file, tmp_path_factory, quick_file, tmp_path):
    server_base = make_base(tmp_path_factory, flux_vae_file)
    folder = tmp_path / "photos"
    images = [write_png(folder / f"p{i}.png", 40 + 8 * i, 48, seed=10 + i) for i in range(BATCH_SIZE)]
    out = tmp_path / "edited"
    cli_log = tmp_path / "cli.log"
    first = CliServer(comfy_host.root, server_base, generation=1)
    servers = [first]
    try:
        first.wait_ready()
        cli = run_cli(
            str(quick_file),
            "--batch",
            str(folder),
            "--prompt",
            "gild the armour",
            "--server",
            first.url,
            "-o",
            str(out),
            "--reconnect-timeout",
            "180",
            "--set",
            f"Sampler.steps={BATCH_STEPS}",
            log=cli_log,
        )
        deadline = time.monotonic() + 180
        done_at_crash = None
        while time.monotonic() < deadline and cli.poll() is None:
            done = [k for k, v in _state(out).items() if v["status"] == "done"]
            if done:
                done_at_crash = len(done)
                first.crash()
                break
            time.sleep(0.05)
        assert done_at_crash is not None, "no item finished before the deadline"
        assert done_at_crash < BATCH_SIZE, "every item finished before the restart; nothing was tested"
        second = CliServer(comfy_host.root, server_base, port=first.port, generation=2)
        servers.append(second)
        second.wait_ready()
        try:
            cli.wait(timeout=CLI_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            cli.kill()
            cli.wait(timeout=30)
            pytest.fail(f"the batch did not finish after the restart:\n{cli_log.read_text()[-4000:]}")
        stderr = cli_log.read_text()
        assert cli.returncode == 0, stderr[-4000:]
        assert "queueing it again" in stderr, stderr[-4000:]
        assert f"item {BATCH_SIZE} of {BATCH_SIZE} (p{BATCH_SIZE - 1}.png): running" in stderr, stderr[-4000:]
        state = _state(out)
        assert sorted(state) == sorted(p.name for p in images)
        assert all(v["status"] == "done" for v in state.values()), state
        for image in images:
            produced = out / f"{image.stem}_kontext.png"
            assert _is_inverted(produced, image), produced.name
        assert len(list(out.glob("*.png"))) == BATCH_SIZE

        again = run_cli(
            str(quick_file),
            "--batch",
            str(folder),
            "--prompt",
            "gild the armour",
            "--server",
            second.url,
            "-o",
            str(out),
            "--set",
            f"Sampler.steps={BATCH_STEPS}",
        )
        assert again.returncode == 0, again.stderr
        assert f"{BATCH_SIZE} of {BATCH_SIZE} already done" in again.stderr, again.stderr
        assert "queued as" not in again.stderr
    finally:
        for srv in servers:
            if srv.process.poll() is None:
                srv.stop()
            elif not srv._log.closed:
                srv._log.close()
