"""Run every shipped workflow, unmodified, on a real ComfyUI server with full-size random weights.

Every model file the workflows name (``properties.models`` and ``atelier_downloads``) is written under the name the
workflow expects, at full size, in the real layout and format: the Kontext transformer as a Q4_K GGUF of random
valid blocks and as ComfyUI scaled fp8, CLIP-L and the Flux VAE from ComfyUI's own classes, the T5-XXL encoder as
fp8 safetensors and as a GGUF, the Hyper-SD LoRA as a rank-8 LoRA of FLUX's layout. Then ComfyUI's ``main.py``
serves them with this pack in ``custom_nodes`` and ``kontext-atelier run`` queues each API workflow over HTTP with
the workflow's own settings (1024-class sizes, 24 steps; the turbo one 8), downloads the results and reports.

    bash bench/on_device.sh python bench/run_workflows.py --base /tmp/wf --json-out $OUT/workflows.jsonl
    python bench/run_workflows.py --only kontext_edit_gguf --cpu --set Sampler.steps=1   # CPU smoke (slow)

The images mean nothing (random weights); what is checked is that each workflow runs as shipped, what it costs, and
that the outputs are images of the expected size. Prints one JSON line per workflow and a table.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_kontext  # noqa: E402

from atelier_core.runtime import comfy_runtime  # noqa: E402

WORKFLOWS = ROOT / "workflows"
EXAMPLE = ROOT / "tests" / "data" / "chelsea_451x300.jpg"
REFERENCES = (ROOT / "tests" / "data" / "astronaut_512.jpg",)
PROMPT = "paint the cloak deep crimson, keep everything else the same"


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", help="ComfyUI folder (default: the project's host finder: COMFYUI_PATH, ~/ComfyUI, ...)")
    ap.add_argument("--base", default="/tmp/atelier_workflows", help="ComfyUI base directory (models, input, output)")
    ap.add_argument("--only", default="", help="comma list of workflow names (default: all)")
    ap.add_argument("--set", action="append", default=[], help="passed to every `run` (e.g. Sampler.steps=1)")
    ap.add_argument("--cpu", action="store_true", help="serve with --cpu (a smoke run; full-size models are slow)")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per workflow")
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="passed to ComfyUI's main.py (e.g. --server-arg=--disable-dynamic-vram); repeatable",
    )
    ap.add_argument("--json-out", default=None)
    return ap.parse_args(argv)


def workflow_models() -> dict[str, dict]:
    """name -> {directory, name, workflows} for every file a shipped UI workflow names."""
    models: dict[str, dict] = {}
    for path in sorted(WORKFLOWS.glob("*.json")):
        for node in json.loads(path.read_text())["nodes"]:
            properties = node.get("properties", {})
            for model in (properties.get("models") or []) + (properties.get("atelier_downloads") or []):
                entry = models.setdefault(model["name"], {**model, "workflows": []})
                entry["workflows"].append(path.stem)
    return models


def write_models(models_dir: Path, workflows: list[str]) -> list[str]:
    """Write each file these workflows expect that is not there yet; returns what was written (size, seconds)."""
    import torch

    from atelier_core.testing import synth, synth_comfy

    device = "cuda" if torch.cuda.is_available() else "cpu"
    written = []
    for model in workflow_models().values():
        if not set(model["workflows"]) & set(workflows):
            continue
        path = models_dir / model["directory"] / model["name"]
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        name = model["name"].lower()
        if model["directory"] == "diffusion_models":
            fmt = "q4_k" if name.endswith(".gguf") else "scaled_fp8" if "scaled" in name else "fp8"
            bench_kontext.write_model(fmt, path, synth.FULL)
        elif model["directory"] == "text_encoders" and name.endswith(".gguf"):
            synth.write_t5_gguf_random_blocks(path, "Q5_K")
        elif model["directory"] == "text_encoders" and "t5" in name:
            synth_comfy.write_t5_fp8(path, device=device)
        elif model["directory"] == "text_encoders":
            from safetensors.torch import save_file

            save_file(synth_comfy.clip_l_state_dict(), str(path))
        elif model["directory"] == "vae":
            synth_comfy.write_flux_vae(path)
        elif model["directory"] == "loras":
            from safetensors.torch import save_file

            shapes = {k: torch.empty(d, device="meta") for k, d in synth.layout(synth.FULL)}
            save_file(synth.lora_state_dict(shapes, rank=8, seed=1), str(path))
        else:
            raise SystemExit(f"run_workflows: no writer for {model['directory']}/{model['name']}")
        written.append(
            f"{model['directory']}/{model['name']} ({path.stat().st_size / 2**30:.2f} GiB, {time.time() - t0:.0f} s)"
        )
    return written


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(comfy: Path, base: Path, cpu: bool, extra: tuple[str, ...] = ()) -> tuple[subprocess.Popen, str]:
    custom = base / "custom_nodes"
    custom.mkdir(parents=True, exist_ok=True)
    link = custom / "kontext-atelier"
    if not link.exists():
        link.symlink_to(ROOT, target_is_directory=True)
    port = _free_port()
    command = (
        [
            sys.executable,
            "main.py",
            "--listen",
            "127.0.0.1",
            "--port",
            str(port),
            "--base-directory",
            str(base),
            "--disable-auto-launch",
            "--database-url",
            "sqlite:///:memory:",
        ]
        + (["--cpu"] if cpu else [])
        + list(extra)
    )
    log = open(base / "server.log", "wb")  # a file, not a pipe: a full pipe would stall the server
    process = subprocess.Popen(command, cwd=comfy, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"ComfyUI exited ({process.returncode}):\n{(base / 'server.log').read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url + "/system_stats", timeout=10):  # loopback: the server started above
                return process, url
        except OSError:
            time.sleep(1)
    process.kill()
    raise SystemExit("ComfyUI did not answer within 300 s")


def run_one(name: str, url: str, out: Path, args) -> dict:
    api = json.loads((WORKFLOWS / "api" / f"{name}.api.json").read_text())
    from atelier_core.workflow_fill import reference_nodes

    references = [str(p) for p in REFERENCES][: len(reference_nodes(api))]
    command = [
        sys.executable,
        "-m",
        "atelier_core.cli",
        "run",
        name,
        "--image",
        str(EXAMPLE),
        "--prompt",
        PROMPT,
        "--server",
        url,
        "-o",
        str(out / name),
        "--seed",
        "1",
    ]
    for ref in references:
        command += ["--reference", ref]
    for setting in args.set:
        command += ["--set", setting]
    t0 = time.time()
    try:
        done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=args.timeout)
        code, tail = done.returncode, (done.stderr or "")[-600:]
    except subprocess.TimeoutExpired:
        code, tail = -1, f"timed out after {args.timeout} s"
    images = sorted((out / name).glob("*.png")) if (out / name).is_dir() else []
    sizes = []
    for image in images:
        from PIL import Image

        with Image.open(image) as im:
            sizes.append(list(im.size))
    return {
        "workflow": name,
        "ok": code == 0 and bool(images),
        "exit": code,
        "seconds": round(time.time() - t0, 1),
        "images": [p.name for p in images],
        "sizes": sizes,
        "tail": "" if code == 0 else tail,
    }


def run_all(args) -> list[dict]:
    """Write the models, serve them, run each chosen workflow; one row per workflow (the server's log is kept)."""
    comfy = comfy_runtime.find_comfyui(args.comfy)
    comfy_runtime.boot(comfy, cpu=args.cpu or None)  # for ComfyUI's own layouts (CLIP-L, VAE)
    base = Path(args.base)
    shipped = sorted(p.stem.removesuffix(".api") for p in (WORKFLOWS / "api").glob("*.api.json"))
    names = [n for n in args.only.split(",") if n] or shipped
    unknown = sorted(set(names) - set(shipped))
    if unknown:
        raise SystemExit(f"run_workflows: no shipped workflow named {unknown}; choose from {shipped}")
    for line in write_models(base / "models", names):
        print("wrote", line, file=sys.stderr, flush=True)  # noqa: T201
    process, url = start_server(comfy, base, args.cpu, tuple(args.server_arg))
    rows = []
    try:
        for name in names:
            row = run_one(name, url, base / "results", args)
            rows.append(row)
            print(json.dumps(row), flush=True)  # noqa: T201
            if args.json_out:
                with open(args.json_out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
        shutil.copy(base / "server.log", base / "results" / "server.log") if (base / "results").is_dir() else None
    return rows


def main(argv=None) -> int:
    rows = run_all(parse_args(argv))
    print(f"\n{'workflow':32} {'ok':>3} {'seconds':>8}  outputs")  # noqa: T201
    for r in rows:
        print(f"{r['workflow']:32} {'yes' if r['ok'] else 'NO':>3} {r['seconds']:>8.1f}  {r['sizes']}")  # noqa: T201
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
