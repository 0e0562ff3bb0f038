"""Seconds per sampling step of Kontext through ComfyUI's own sampler: ComfyUI's loaders, ComfyUI-GGUF and every
mode of our Kontext Loader, on the same random full-size weights in one process, with a resolution/reference sweep.

Run on the GPU machine; the machine is shared and absolute times drift, so compare ratios within one run:

    python bench/bench_kontext.py --comfy ~/ComfyUI --gguf-peer ~/ComfyUI-GGUF \\
        --modes comfy:bf16,comfy:fp8fast,peer:q4_k,q4_k,q4_k:materialize_fp8:compile --res 1024 --refs 1
    python bench/bench_kontext.py --modes bf16 --res 512,1024,1536 --refs 0,1,2,4        # token sweep
    python bench/bench_kontext.py --tiny --modes comfy:bf16,bf16,q4_k:compile --res 128 --steps 2   # CPU smoke run

Modes: ``comfy:bf16`` / ``comfy:fp8`` / ``comfy:fp8fast`` load through ComfyUI's ``load_diffusion_model`` exactly as
core's UNETLoader does (weight_dtype default / fp8_e4m3fn / fp8_e4m3fn_fast); ``peer:q8_0`` / ``peer:q4_k`` through
ComfyUI-GGUF's loader and operations (``--gguf-peer`` checkout); anything else is ours:
``FORMAT[:on_the_fly|:materialize|:materialize_fp8][:fp8mm][:fp8ch][:compile]`` with FORMAT one of bf16, fp8,
scaled_fp8 or a GGUF type (q8_0, q4_k, ...); ``fp8ch`` loads a float file as per-channel fp8. Each model file is written once into ``--workdir`` (GGUF as random valid blocks, see
``synth.write_gguf_random_blocks``) and, unless ``--keep-files``, deleted after the last mode that reads it, so the
disk holds one full-size file at a time. One JSON line per (mode, resolution, references), then a table with the
ratio to ``comfy:bf16`` at the same size when that mode ran.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from atelier_core.runtime import comfy_runtime  # noqa: E402

CORE_MODES = {
    "bf16": ("bf16", {}),
    "fp8": ("fp8", {"dtype": "fp8"}),
    "fp8fast": ("fp8", {"dtype": "fp8", "fast": True}),
}


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", help="ComfyUI folder (default: the project's host finder: COMFYUI_PATH, ~/ComfyUI, ...)")
    ap.add_argument(
        "--gguf-peer", default=None, help="a ComfyUI-GGUF checkout, for the peer:* modes (ComfyUI-GGUF's own loader)"
    )
    ap.add_argument("--modes", default="comfy:bf16,bf16,fp8,q8_0,q4_k", help="comma list, see the module help")
    ap.add_argument("--res", default="1024", help="comma list of square resolutions")
    ap.add_argument("--refs", default="1", help="comma list of reference counts (references as large as the image)")
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--tiny", action="store_true", help="1+1 blocks on the CPU: checks the script, not the speed")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "atelier_bench"))
    ap.add_argument("--keep-files", action="store_true", help="keep the written model files for a later call")
    ap.add_argument("--json-out", default=None, help="also append the JSON lines to this file")
    return ap.parse_args(argv)


def split_mode(spec: str) -> tuple[str, str, list[str]]:
    """'comfy:fp8fast' -> ('comfy', 'fp8', ['fast']); 'q4_k:materialize:compile' -> ('ours', 'q4_k', [...])."""
    head, *flags = spec.split(":")
    if head == "comfy":
        fmt, extra = CORE_MODES[flags[0]]
        return "comfy", fmt, ["fast"] if extra.get("fast") else []
    if head == "peer":
        return "peer", flags[0], []
    return "ours", head, flags


def file_for(fmt: str, args) -> Path:
    ext = "safetensors" if fmt in ("bf16", "fp16", "fp8", "scaled_fp8") else "gguf"
    return Path(args.workdir) / f"kontext_{fmt}{'_tiny' if args.tiny else ''}.{ext}"


def write_model(fmt: str, path: Path, shape) -> None:
    import torch

    from atelier_core.testing import synth

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if fmt not in ("bf16", "fp16", "fp8", "scaled_fp8"):
        synth.write_gguf_random_blocks(path, shape, fmt.upper(), device=device)
        return
    # tensor by tensor on the device, stored in the target dtype: the 12B model never exists in float32
    keep = torch.float16 if fmt == "fp16" else torch.bfloat16
    generator = torch.Generator(device=device).manual_seed(0)
    sd = {key: synth.random_tensor(key, dims, generator, device).to(keep).cpu() for key, dims in synth.layout(shape)}
    if fmt in ("bf16", "fp16"):
        synth.write_float(path, sd, fmt)
    elif fmt == "fp8":
        synth.write_fp8(path, sd, "fp8_e4m3fn")
    else:
        synth.write_scaled_fp8(path, sd)


def load(kind: str, fmt: str, flags: list[str], path: Path, args):
    """A ModelPatcher for one mode, and a one-line description of how it was loaded."""
    import torch

    if kind == "comfy":
        import comfy.sd

        options = {}
        if fmt == "fp8":
            options = {"dtype": torch.float8_e4m3fn, "fp8_optimizations": "fast" in flags}
        return comfy.sd.load_diffusion_model(str(path), model_options=options), f"core load_diffusion_model {options}"
    if kind == "peer":
        return load_peer(path, args), "ComfyUI-GGUF loader + GGMLOps"
    kontext_model = comfy_runtime.kontext_model_module()
    gguf_mode = next((f for f in flags if f in ("on_the_fly", "materialize", "materialize_fp8")), "on_the_fly")
    float_weights = "fp8_per_channel" if "fp8ch" in flags else "as_stored"
    options = kontext_model.LoadOptions("fp32" if args.tiny else "bf16", gguf_mode, "fp8mm" in flags, float_weights)
    loaded = kontext_model.load_kontext(path, options)
    patcher = loaded.patcher
    if "compile" in flags:
        import importlib

        compile_blocks = importlib.import_module(comfy_runtime.pack_module().__name__ + ".nodes.compile_blocks")
        patcher = compile_blocks.AtelierCompileBlocks.execute(patcher, "default").args[0]
    return patcher, loaded.summary


def load_peer(path: Path, args):
    """ComfyUI-GGUF's own path: its GGUF state-dict reader, its operations and its model patcher class."""
    import importlib

    import comfy.sd

    if not args.gguf_peer:
        raise SystemExit("peer:* modes need --gguf-peer PATH (a ComfyUI-GGUF checkout)")
    peer = Path(args.gguf_peer).resolve()
    sys.path.insert(0, str(peer.parent))
    package = importlib.import_module(peer.name)
    loader = importlib.import_module(f"{package.__name__}.loader")
    ops = importlib.import_module(f"{package.__name__}.ops")
    peer_nodes = importlib.import_module(f"{package.__name__}.nodes")
    sd = loader.gguf_sd_loader(str(path))
    model = comfy.sd.load_diffusion_model_state_dict(sd, model_options={"custom_operations": ops.GGMLOps()})
    return peer_nodes.GGUFModelPatcher.clone(model)


def conditioning(res: int, refs: int, tiny: bool):
    import torch

    lat = res // 8
    gen = torch.Generator().manual_seed(1)
    references = [torch.randn(1, 16, lat, lat, generator=gen) for _ in range(refs)]
    txt = 16 if tiny else 512
    extra = {"pooled_output": torch.randn(1, 768, generator=gen) * 0.1, "guidance": 2.5}
    if references:
        extra["reference_latents"] = references
    positive = [[torch.randn(1, txt, 4096, generator=gen) * 0.1, extra]]
    negative = [[torch.zeros(1, txt, 4096), {"pooled_output": torch.zeros(1, 768)}]]
    tokens = (lat // 2) ** 2 * (1 + refs) + txt
    return positive, negative, torch.zeros(1, 16, lat, lat), tokens


def sampler(patcher, res: int, refs: int, tiny: bool):
    """(sample(steps) -> latent, synchronized on the GPU; tokens): euler/simple at cfg 1 with `refs` references."""
    import comfy.sample
    import torch

    positive, negative, latent, tokens = conditioning(res, refs, tiny)
    noise = comfy.sample.prepare_noise(latent, 0)

    def sample(steps: int):
        out = comfy.sample.sample(
            patcher,
            noise,
            steps,
            1.0,
            "euler",
            "simple",
            positive,
            negative,
            latent,
            denoise=1.0,
            seed=0,
            disable_pbar=True,
        )
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return out

    return sample, tokens


def time_mode(patcher, res: int, refs: int, args) -> dict:
    import torch

    cuda = torch.cuda.is_available()
    sample, tokens = sampler(patcher, res, refs, args.tiny)

    def timed(steps: int):
        if cuda:
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        out = sample(steps)
        return time.perf_counter() - t0, out

    if cuda:
        torch.cuda.reset_peak_memory_stats()
    first_s, _ = timed(1)  # loading to the device and any compilation: the latency before the first step
    elapsed, out = timed(args.steps)
    return {
        "res": res,
        "refs": refs,
        "tokens": tokens,
        "first_step_s": round(first_s, 2),
        "s_per_step": round(elapsed / args.steps, 4),
        "peak_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
        "finite": bool(torch.isfinite(out).all()),
    }


def release(patcher) -> None:
    import comfy.model_management as mm
    import torch

    mm.unload_all_models()
    del patcher
    gc.collect()
    mm.soft_empty_cache()
    torch._dynamo.reset()  # compiled graphs of one mode must not serve (or count against) the next


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    comfy_runtime.boot(comfy_runtime.find_comfyui(args.comfy), cpu=args.tiny or None)
    import torch

    from atelier_core.testing import synth

    # --tiny: full width (ComfyUI's own loader fixes FLUX's widths) but one block of each kind
    shape = synth.KontextShape(depth=1, depth_single=1) if args.tiny else synth.FULL
    specs = [s for s in args.modes.split(",") if s]
    plans = [(spec, *split_mode(spec)) for spec in specs]
    last_use = {file_for(fmt, args): i for i, (_, _, fmt, _) in enumerate(plans)}
    sizes = [(int(r), int(n)) for r in args.res.split(",") for n in args.refs.split(",")]
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    rows = []
    for i, (spec, kind, fmt, flags) in enumerate(plans):
        path = file_for(fmt, args)
        if not path.exists():
            t0 = time.time()
            write_model(fmt, path, shape)
            took = time.time() - t0
            print(f"wrote {path.name} ({path.stat().st_size / 2**30:.1f} GiB) in {took:.1f}s", file=sys.stderr)  # noqa: T201
        t0 = time.time()
        patcher, how = load(kind, fmt, flags, path, args)
        load_s = time.time() - t0
        for res, refs in sizes:
            row = {
                "mode": spec,
                "load_s": round(load_s, 2),
                **time_mode(patcher, res, refs, args),
                "device": device,
                "how": how,
            }
            print(json.dumps(row), flush=True)  # noqa: T201
            if args.json_out:
                with open(args.json_out, "a") as fh:
                    fh.write(json.dumps(row) + "\n")
            rows.append(row)
        release(patcher)
        if last_use[path] == i and not args.keep_files:
            path.unlink()
    print_table(rows)
    return 0


def print_table(rows: list[dict]) -> None:
    base = {(r["res"], r["refs"]): r["s_per_step"] for r in rows if r["mode"] == "comfy:bf16"}
    header = f"{'mode':34} {'res':>5} {'refs':>4} {'tokens':>6} {'s/step':>8} {'vs comfy bf16':>13} {'first s':>8}"
    print(f"\n{header} {'peak GiB':>9}")  # noqa: T201
    for r in rows:
        ref = base.get((r["res"], r["refs"]))
        ratio = f"{ref / r['s_per_step']:.2f}x" if ref else "-"
        print(  # noqa: T201
            f"{r['mode']:34} {r['res']:>5} {r['refs']:>4} {r['tokens']:>6} {r['s_per_step']:>8.4f} {ratio:>13} "
            f"{r['first_step_s']:>8.2f} {str(r['peak_gib']):>9}" + ("" if r["finite"] else "  NOT FINITE")
        )


if __name__ == "__main__":
    sys.exit(main())
