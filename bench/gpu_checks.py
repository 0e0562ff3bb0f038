"""Correctness checks that need the GPU (issues 3 and 8), in one call on the GPU machine:

    python bench/gpu_checks.py --comfy ~/ComfyUI --json-out $OUT/gpu_checks.jsonl
    python bench/gpu_checks.py --tiny --checks accuracy,memory        # CPU smoke run of the script itself

``dequant``  every quantized GGUF type on a 3072x12288 tensor of random blocks: the Triton kernel against the torch
             decoders (bit-identical in fp32, fp16 and bf16 is required) and milliseconds per tensor each way.
``accuracy`` a full-width model with ``--blocks`` double+single blocks (real random weights, quantized with our
             ggml-exact quantizers) sampled at ``--res`` with one reference: every fast path's latent against the
             bf16 file's, relative L2 error; Triton and torch dequantization must give the same latent.
``memory``   ten queue-like runs that swap models (GGUF Q4_K, fp8, bf16) and unload between them: the allocated
             memory after each unload must come back to the baseline (no leak), peak VRAM per run.

Prints one JSON line per result and a verdict table; exits 1 if a required check failed.
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
sys.path.insert(0, str(ROOT / "bench"))
import bench_kontext  # noqa: E402

from atelier_core.runtime import comfy_runtime  # noqa: E402

LEAK_BOUND_MIB = 64
RESULTS: list[dict] = []


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", help="ComfyUI folder (default: the project's host finder: COMFYUI_PATH, ~/ComfyUI, ...)")
    ap.add_argument("--checks", default="dequant,accuracy,memory")
    ap.add_argument("--blocks", default="2,2", help="double,single blocks of the accuracy model (full width)")
    ap.add_argument("--res", type=int, default=512)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--tiny", action="store_true", help="CPU smoke run: 1+1 blocks, 64 px, fp32")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "atelier_gpu_checks"))
    ap.add_argument("--json-out", default=None)
    args = ap.parse_args(argv)
    args.gguf_peer = None  # bench_kontext.load's peer modes are not used here
    return args


def report(row: dict, args) -> None:
    RESULTS.append(row)
    print(json.dumps(row), flush=True)  # noqa: T201
    if args.json_out:
        with open(args.json_out, "a") as fh:
            fh.write(json.dumps(row) + "\n")


def check_dequant(args) -> None:
    import torch

    from atelier_core.gguf import dequant, triton_dequant
    from atelier_core.gguf.types import TYPE_INFO
    from atelier_core.testing import synth

    device = torch.device("cuda") if torch.cuda.is_available() else None
    if device is None or not triton_dequant.available(device):
        report({"check": "dequant", "ok": None, "why": "no CUDA device with Triton"}, args)
        return
    shape = (3072, 12288)
    gen = torch.Generator(device=device).manual_seed(0)
    for t in sorted(triton_dequant.SUPPORTED_TYPES, key=lambda t: t.name):
        info = TYPE_INFO[t]
        n_blocks = shape[0] * shape[1] // info.block_size
        raw = torch.randint(0, 256, (n_blocks, info.type_size), generator=gen, device=device, dtype=torch.uint8)
        for offset in synth.SCALE_FIELDS[info.name]:
            raw[:, offset : offset + 2] = torch.full((n_blocks, 1), 1e-3, device=device).half().view(torch.uint8)
        row = {"check": "dequant", "type": info.name}
        same = True
        for dtype in (torch.float32, torch.float16, torch.bfloat16):
            dequant.set_backend("torch")
            ref = dequant.dequantize(raw, t, shape, dtype)
            dequant.set_backend("triton")
            out = dequant.dequantize(raw, t, shape, dtype)
            same &= bool(
                torch.equal(
                    ref.view(torch.uint8) if dtype != torch.float32 else ref.view(torch.int32),
                    out.view(torch.uint8) if dtype != torch.float32 else out.view(torch.int32),
                )
            )
        for name in ("torch", "triton"):
            dequant.set_backend(name)
            row[f"{name}_ms"] = round(_time_ms(dequant.dequantize, raw, t, shape, torch.bfloat16), 3)
        dequant.set_backend(None)
        row.update({"ok": same, "bit_identical": same})
        report(row, args)


def _time_ms(fn, *fn_args, repeat: int = 20) -> float:
    import torch

    fn(*fn_args)
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn(*fn_args)
    torch.cuda.synchronize()
    return (time.perf_counter() - t0) * 1000 / repeat


def _sample(patcher, args):
    sample, _ = bench_kontext.sampler(patcher, args.res, 1, args.tiny)
    return sample(args.steps).float()


def _accuracy_files(args, shape) -> dict[str, Path]:
    import torch

    from atelier_core.testing import synth

    work = Path(args.workdir)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    sd = {k: v.cpu() for k, v in synth.kontext_state_dict(shape, seed=0, device=device).items()}
    files = {
        "bf16": synth.write_float(work / "acc_bf16.safetensors", sd, "bf16"),
        "fp8": synth.write_fp8(work / "acc_fp8.safetensors", sd, "fp8_e4m3fn"),
    }
    for qtype in ("Q8_0", "Q4_K"):
        path = work / f"acc_{qtype}.gguf"
        if path.exists():
            path.unlink()
        files[qtype.lower()] = synth.write_gguf(path, sd, qtype)
    return files


# (mode as bench_kontext spells it, file, whether a bound applies): bounds are the CPU tests' (test_loader_host.py)
ACCURACY_MODES = [
    ("q8_0", "q8_0"),
    ("q8_0:torch_dequant", "q8_0"),
    ("q8_0:materialize", "q8_0"),
    ("q4_k", "q4_k"),
    ("q4_k:materialize", "q4_k"),
    ("q4_k:materialize_fp8", "q4_k"),
    ("q4_k:materialize:compile", "q4_k"),
    ("bf16:compile", "bf16"),
    ("bf16:fp8ch", "bf16"),
    ("bf16:fp8ch:compile", "bf16"),
    ("fp8", "fp8"),
    ("fp8:fp8mm", "fp8"),
    ("comfy:fp8fast", "fp8"),
]


def check_accuracy(args) -> None:
    import torch

    from atelier_core.gguf import dequant
    from atelier_core.testing import synth

    double, single = (1, 1) if args.tiny else (int(x) for x in args.blocks.split(","))
    files = _accuracy_files(args, synth.KontextShape(depth=double, depth_single=single))
    reference, _ = _run_mode("bf16", files["bf16"], args)
    latents = {}
    for spec, fmt in ACCURACY_MODES:
        dequant.set_backend("torch" if "torch_dequant" in spec else None)
        latent, summary = _run_mode(spec.replace(":torch_dequant", ""), files[fmt], args)
        dequant.set_backend(None)
        latents[spec] = latent
        err = float((latent - reference).norm() / reference.norm())
        report(
            {
                "check": "accuracy",
                "mode": spec,
                "rel_err_vs_bf16": round(err, 5),
                "finite": bool(torch.isfinite(latent).all()),
                "ok": bool(torch.isfinite(latent).all()),
                "summary": summary,
            },
            args,
        )
    same = bool(torch.equal(latents["q8_0"], latents["q8_0:torch_dequant"]))
    report({"check": "accuracy", "mode": "triton == torch dequant (same latent)", "ok": same}, args)
    compiled = float((latents["q4_k:materialize:compile"] - latents["q4_k:materialize"]).norm() / reference.norm())
    report(
        {
            "check": "accuracy",
            "mode": "compiled vs eager (q4_k materialize)",
            "rel_diff": round(compiled, 5),
            "ok": compiled < 0.02,
        },
        args,
    )


def _run_mode(spec: str, path: Path, args):
    kind, fmt, flags = bench_kontext.split_mode(spec)
    patcher, how = bench_kontext.load(kind, fmt, flags, path, args)
    latent = _sample(patcher, args).cpu()
    bench_kontext.release(patcher)
    return latent, how


def check_memory(args) -> None:
    import torch

    from atelier_core.testing import synth

    cuda = torch.cuda.is_available()
    shape = synth.KontextShape(depth=1, depth_single=1) if args.tiny else synth.FULL
    files = {}
    for fmt in ("q4_k", "fp8", "bf16"):
        files[fmt] = bench_kontext.file_for(fmt, args)
        if not files[fmt].exists():
            bench_kontext.write_model(fmt, files[fmt], shape)
    allocated = lambda: torch.cuda.memory_allocated() / 2**20 if cuda else 0.0  # noqa: E731
    baseline = allocated()
    after = []
    for run in range(10):
        fmt = ("q4_k", "fp8", "bf16")[run % 3]
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        patcher, _ = bench_kontext.load("ours", fmt, [], files[fmt], args)
        finite = bool(torch.isfinite(_sample(patcher, args)).all())
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else None
        bench_kontext.release(patcher)
        after.append(round(allocated(), 1))
        report(
            {
                "check": "memory",
                "run": run + 1,
                "format": fmt,
                "finite": finite,
                "ok": finite,
                "peak_gib": None if peak is None else round(peak, 2),
                "allocated_after_mib": after[-1],
            },
            args,
        )
    growth = max(after) - baseline
    report(
        {
            "check": "memory",
            "mode": "10 runs, swaps and unloads",
            "baseline_mib": round(baseline, 1),
            "max_growth_mib": round(growth, 1),
            "ok": growth < LEAK_BOUND_MIB,
        },
        args,
    )


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.tiny:
        args.res, args.steps = 64, 2
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    comfy_runtime.boot(comfy_runtime.find_comfyui(args.comfy), cpu=args.tiny or None)
    checks = {"dequant": check_dequant, "accuracy": check_accuracy, "memory": check_memory}
    for name in filter(None, args.checks.split(",")):
        checks[name](args)
    failed = [r for r in RESULTS if r.get("ok") is False]
    print(f"\n{len(RESULTS)} results, {len(failed)} failed")  # noqa: T201
    for r in failed:
        print("FAILED:", json.dumps(r))  # noqa: T201
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
