"""Where a Kontext sampling step spends its time: matmul, attention, GGUF dequantization, everything else.

Issue 8 says to profile first: in eager PyTorch about 45 % of a bf16 step is neither matmul nor attention. This
loads one mode exactly as ``bench_kontext.py`` does (same mode syntax), runs a warm-up step, profiles ``--steps``
steps with ``torch.profiler`` and sums device time (CUDA kernels; CPU operators on a CPU run) per category:

    bash bench/on_device.sh python bench/profile_step.py --mode q4_k --trace $OUT/q4_k_trace.json
    python bench/profile_step.py --tiny --mode q4_k:materialize_fp8 --res 64      # CPU smoke run

Prints a table (ms per step and share per category, then the top kernels) and optionally a Chrome trace.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))
import bench_kontext  # noqa: E402

from atelier_core.runtime import comfy_runtime  # noqa: E402

# First match wins; names are CUDA kernel names (cuBLAS/CUTLASS/cuDNN/Triton) or, on the CPU, aten operators.
CATEGORIES = (
    ("dequant", re.compile(r"_dequant_kernel|dequant", re.I)),
    ("attention", re.compile(r"flash|fmha|attention|sdpa|cudnn.*(mha|attn)", re.I)),
    ("matmul", re.compile(r"gemm|xmma|cutlass|sm90|scaled_mm|aten::(mm|addmm|bmm|linear|matmul)|nvjet", re.I)),
    ("copy/cast", re.compile(r"copy|cast|aten::to\b|aten::_to_copy|memcpy|memset", re.I)),
)


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--comfy", help="ComfyUI folder (default: the project's host finder: COMFYUI_PATH, ~/ComfyUI, ...)")
    ap.add_argument("--mode", default="bf16", help="one bench_kontext mode, e.g. q4_k, comfy:bf16, bf16:compile")
    ap.add_argument("--gguf-peer", default=None)
    ap.add_argument("--res", type=int, default=1024)
    ap.add_argument("--refs", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--tiny", action="store_true", help="1+1 blocks on the CPU: checks the script, not the GPU")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "atelier_bench"))
    ap.add_argument("--trace", default=None, help="write a Chrome trace (chrome://tracing, Perfetto) here")
    ap.add_argument("--top", type=int, default=12)
    args = ap.parse_args(argv)
    args.keep_files = True
    return args


def category(name: str) -> str:
    return next((label for label, pattern in CATEGORIES if pattern.search(name)), "other")


def main(argv=None) -> int:
    args = parse_args(argv)
    Path(args.workdir).mkdir(parents=True, exist_ok=True)
    comfy_runtime.boot(comfy_runtime.find_comfyui(args.comfy), cpu=args.tiny or None)
    import torch
    from torch.profiler import ProfilerActivity, profile

    from atelier_core.testing import synth

    cuda = torch.cuda.is_available()
    shape = synth.KontextShape(depth=1, depth_single=1) if args.tiny else synth.FULL
    kind, fmt, flags = bench_kontext.split_mode(args.mode)
    path = bench_kontext.file_for(fmt, args)
    if not path.exists():
        bench_kontext.write_model(fmt, path, shape)
    patcher, how = bench_kontext.load(kind, fmt, flags, path, args)
    sample, tokens = bench_kontext.sampler(patcher, args.res, args.refs, args.tiny)
    sample(1)  # load, compile, autotune: not part of a step
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        sample(args.steps)
    if args.trace:
        prof.export_chrome_trace(args.trace)

    events = [e for e in prof.key_averages() if (e.device_type.name == "CUDA") == cuda]
    # On the GPU every kernel is a leaf; on the CPU operators nest, so count only self time.
    time_of = (lambda e: e.self_device_time_total) if cuda else (lambda e: e.self_cpu_time_total)  # noqa: E731
    totals: dict[str, float] = {}
    for e in events:
        totals[category(e.key)] = totals.get(category(e.key), 0.0) + time_of(e)
    whole = sum(totals.values()) or 1.0
    per_step = lambda us: us / 1000 / args.steps  # noqa: E731
    print(f"{args.mode}: {how}; {args.res}px, {args.refs} reference(s), {tokens} tokens, {'GPU' if cuda else 'CPU'}")  # noqa: T201
    print(f"\n{'category':12} {'ms/step':>9} {'share':>7}")  # noqa: T201
    for label, us in sorted(totals.items(), key=lambda kv: -kv[1]):
        print(f"{label:12} {per_step(us):>9.2f} {100 * us / whole:>6.1f}%")  # noqa: T201
    print(f"{'total':12} {per_step(whole):>9.2f}")  # noqa: T201
    print(f"\n{'top kernels' if cuda else 'top operators'} (ms/step):")  # noqa: T201
    for e in sorted(events, key=lambda e: -time_of(e))[: args.top]:
        print(f"  {per_step(time_of(e)):>8.2f}  {category(e.key):10} {e.key[:110]}")  # noqa: T201
    return 0


if __name__ == "__main__":
    sys.exit(main())
