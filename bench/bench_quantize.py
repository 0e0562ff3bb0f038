"""MB/s of bf16 source per GGUF type for `kontext-atelier quantize`'s CPU quantizers (single process and parallel).

    python bench/bench_quantize.py                                  # one full-size single block, K-quants
    python bench/bench_quantize.py --set small --types Q4_K,Q6_K    # a 4096x3072 tensor: quick
    python bench/bench_quantize.py --modes parallel --workers 2

The tensors are random bf16 weights (normal, std 0.02) of a full-size FLUX.1 Kontext single block (linear1
21504x3072, linear2 3072x15360, modulation 9216x3072: 141M values, 283 MB of bf16), rounded to bf16 and handed
over as float32 like `convert` does. "single" is `quantize.quantize` in this process, "parallel" a
`ParallelQuantizer` with ``--workers`` processes (started before timing: ~2 s once per conversion). MB/s counts
bf16 source bytes (2 per value), the unit of the 15-minute budget for the 23.8 GB model (>= 26.5 MB/s). The
machine's load average is printed next to each row: other work on the same cores slows the wall-clock numbers,
so each row also gives the CPU seconds all our processes used and the "idle" rate they imply when each of the
``--workers`` processes has a core to itself (CPU seconds / processes; slightly optimistic, as cache and memory
are still shared).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from atelier_core.gguf.quantize import ParallelQuantizer, cpu_workers, quantize  # noqa: E402

FULL_MODEL_BYTES = 23.8e9
BUDGET_S = 15 * 60
SETS = {
    "block": [(21504, 3072), (3072, 15360), (9216, 3072)],
    "small": [(4096, 3072)],
}


def bf16_like(shape: tuple[int, ...], rng: np.random.Generator) -> np.ndarray:
    x = (rng.standard_normal(shape, dtype=np.float32) * np.float32(0.02)).view(np.uint32)
    x &= np.uint32(0xFFFF0000)  # truncate to bf16 (the values `convert` sees after reading a bf16 source)
    return x.view(np.float32)


def cpu_seconds(pids: list[int]) -> float:
    """CPU seconds used so far by this process and `pids` (Linux /proc; 0 for a process it cannot read)."""
    total = time.process_time()
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            pass
    return total


def load() -> str:
    try:
        return " ".join(f"{v:.2f}" for v in os.getloadavg())
    except OSError:
        return "?"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--set", choices=sorted(SETS), default="block")
    ap.add_argument("--types", default="Q4_K,Q5_K,Q6_K,Q3_K,Q2_K")
    ap.add_argument("--modes", default="single,parallel")
    ap.add_argument("--workers", type=int, default=cpu_workers())
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    tensors = [bf16_like(s, rng) for s in SETS[args.set]]
    values = sum(t.size for t in tensors)
    modes = args.modes.split(",")
    pool = ParallelQuantizer(args.workers) if "parallel" in modes else None
    if pool is not None:
        pool.start()
    print(f"{args.set}: {values / 1e6:.0f}M values, {values * 2 / 1e6:.0f} MB bf16; {os.cpu_count()} CPUs")  # noqa: T201
    print(  # noqa: T201
        f"{'type':6} {'mode':12} {'seconds':>8} {'MB/s':>7} {'full model':>11} {'15 min?':>8} {'cpu s':>7} "
        f"{'idle MB/s':>9} {'idle full':>9}  load (1/5/15 min)"
    )
    try:
        for t in args.types.split(","):
            for mode in modes:
                before = load()
                pids = pool.worker_pids() if pool is not None else []
                cpu0 = cpu_seconds(pids)
                started = time.perf_counter()
                if mode == "single":
                    for x in tensors:
                        quantize(x, t)
                else:
                    pending = [pool.submit(x, t) for x in tensors]
                    for fetch in pending:
                        fetch()
                seconds = time.perf_counter() - started
                cpu = cpu_seconds(pids) - cpu0
                mbs = values * 2 / seconds / 1e6
                full = FULL_MODEL_BYTES / 1e6 / mbs
                # on an otherwise idle machine the processes would finish in cpu / processes seconds
                procs = 1 if mode == "single" else args.workers
                idle = values * 2 / (cpu / procs) / 1e6
                label = mode if mode == "single" else f"parallel x{args.workers}"
                print(  # noqa: T201
                    f"{t:6} {label:12} {seconds:8.1f} {mbs:7.1f} {full / 60:9.1f} m {'yes' if full <= BUDGET_S else 'NO':>8}"
                    f" {cpu:7.1f} {idle:9.1f} {FULL_MODEL_BYTES / 1e6 / idle / 60:7.1f} m  {before} -> {load()}",
                    flush=True,
                )
    finally:
        if pool is not None:
            pool.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
