"""Seconds per sampling step of our Kontext Loader, through ComfyUI's own sampler, on random Kontext weights.

Run on the GPU machine in the same call as ``../shared/bench/peer_baseline.py`` (ComfyUI's bf16/fp8 and
ComfyUI-GGUF) and compare ratios; the machine is shared and absolute times drift.

    python bench/bench_kontext.py --comfy ~/ComfyUI --modes bf16,fp8,q8_0,q4_k,q4_k:materialize --res 1024 --refs 1
    python bench/bench_kontext.py --tiny --modes bf16,q4_k --res 256 --steps 2     # CPU smoke run

Each mode writes its model file once (full size: 24 GB bf16, 12 GB fp8, 6.8-12.7 GB GGUF) into ``--workdir``,
loads it through ``AtelierKontextLoader``'s code path, samples ``--steps`` euler steps at ``--res`` with ``--refs``
reference latents and prints one JSON line per mode, then a table.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from atelier_core import comfy_runtime  # noqa: E402


def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", default=os.environ.get("COMFYUI_PATH", str(Path.home() / "ComfyUI")))
    ap.add_argument("--modes", default="bf16,fp8,q8_0,q4_k", help="comma list of FORMAT[:gguf_mode][:fp8mm]")
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=1, help="reference latents of the same size")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="TINY shape on the CPU: checks the script, not the speed")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "atelier_bench"))
    return ap.parse_args()


def write_model(fmt: str, path: Path, shape) -> None:
    import torch

    from atelier_core import synth

    device = "cuda" if torch.cuda.is_available() else "cpu"
    sd = {k: v.cpu() for k, v in synth.kontext_state_dict(shape, seed=0, device=device).items()}
    if fmt in ("bf16", "fp16"):
        synth.write_float(path, sd, fmt)
    elif fmt == "fp8":
        synth.write_fp8(path, sd, "fp8_e4m3fn")
    elif fmt == "scaled_fp8":
        synth.write_scaled_fp8(path, sd)
    else:
        synth.write_gguf(path, sd, fmt.upper())


def run_mode(spec: str, args, shape) -> dict:
    import comfy.model_management as mm
    import comfy.sample
    import comfy.samplers
    import torch

    fmt, *flags = spec.split(":")
    gguf_mode = next((f for f in flags if f in ("on_the_fly", "materialize")), "on_the_fly")
    fp8mm = "fp8mm" in flags
    ext = "gguf" if fmt.startswith(("q", "iq")) else "safetensors"
    path = Path(args.workdir) / f"kontext_{fmt}{'_tiny' if args.tiny else ''}.{ext}"
    if not path.exists():
        t0 = time.time()
        write_model(fmt, path, shape)
        print(f"wrote {path} in {time.time() - t0:.1f}s", file=sys.stderr)  # noqa: T201

    kontext_model = comfy_runtime.kontext_model_module()
    mm.unload_all_models()
    mm.soft_empty_cache()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    loaded = kontext_model.load_kontext(path, kontext_model.LoadOptions("bf16" if not args.tiny else "fp32", gguf_mode, fp8mm))
    load_s = time.time() - t0

    lat = args.res // 8
    gen = torch.Generator().manual_seed(1)
    refs = [torch.randn(1, 16, lat, lat, generator=gen) for _ in range(args.refs)]
    txt = 16 if args.tiny else 512
    extra = {"pooled_output": torch.randn(1, 768, generator=gen) * 0.1, "guidance": 2.5}
    if refs:
        extra["reference_latents"] = refs
    positive = [[torch.randn(1, txt, 4096, generator=gen) * 0.1, extra]]
    negative = [[torch.zeros(1, txt, 4096), {"pooled_output": torch.zeros(1, 768)}]]
    latent = torch.zeros(1, 16, lat, lat)
    noise = comfy.sample.prepare_noise(latent, 0)

    def sample(steps: int):
        return comfy.sample.sample(
            loaded.patcher, noise, steps, 1.0, "euler", "simple", positive, negative, latent, denoise=1.0, seed=0
        )

    t0 = time.time()
    sample(1)  # first step: loading to the device, any compilation
    first_s = time.time() - t0
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.time()
    out = sample(args.steps)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    per_step = (time.time() - t0) / args.steps
    tokens = (lat // 2) ** 2 * (1 + len(refs)) + txt
    return {
        "mode": f"ours:{spec}",
        "res": args.res,
        "refs": len(refs),
        "tokens": tokens,
        "load_s": round(load_s, 2),
        "first_step_s": round(first_s, 2),
        "s_per_step": round(per_step, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if torch.cuda.is_available() else None,
        "finite": bool(torch.isfinite(out).all()),
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "summary": loaded.summary,
    }


def main() -> int:
    args = parse_args()
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    comfy_runtime.boot(Path(args.comfy), cpu=args.tiny or None)
    from atelier_core import synth

    shape = synth.TINY if args.tiny else synth.FULL
    rows = []
    for spec in filter(None, args.modes.split(",")):
        row = run_mode(spec, args, shape)
        print(json.dumps(row), flush=True)  # noqa: T201
        rows.append(row)
    print(f"\n{'mode':28} {'tokens':>7} {'s/step':>8} {'first':>7} {'peak GiB':>9}")  # noqa: T201
    for r in rows:
        print(f"{r['mode']:28} {r['tokens']:>7} {r['s_per_step']:>8.4f} {r['first_step_s']:>7.2f} {str(r['peak_gib']):>9}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
