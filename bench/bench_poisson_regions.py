"""The diff-merge's Poisson solve on the regions real Kontext pairs give it: how its time splits into a fixed part
and a part per iteration, and how far each tolerance stops from the exact solution.

    python bench/bench_poisson_regions.py [PAIR_FOLDER ...] [--repeat 7] [--threads 1]

Each pair folder holds ``original.png`` and ``edited.png`` (see bench_realpairs.py; default: every folder under
``../shared/realpairs``, never committed). Our merge runs once with its defaults to find the region and crops it
hands to ``poisson_correction``; pairs whose merge needs no Poisson solve (global edits, no change) are skipped.
Per pair and tolerance the table gives the unknowns, the iterations (the most any channel took, as the merge
report says, and the sum over channels and parts), the median CPU time of ``--repeat`` solves (this process, all
threads; ``--threads 1`` keeps the solver on one thread) and the worst error against a solve to 1e-6, in 8-bit
levels. The fixed part is the least-squares intercept of time against the summed iterations over the tolerances:
what a solve costs before its iterations (parts, multigrid set-up, right-hand side, first V-cycle).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_realpairs import DEFAULT_PAIRS, read_rgb  # noqa: E402

from atelier_core.image import diffmerge, poisson, threads  # noqa: E402

TOLERANCES = (1.6e-2, 8e-3, 4e-3, 1e-3, 1e-5)


def merge_region(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(original crop, edit crop, region) our merge passes to poisson_correction, or None when it solves none."""
    seen: list[tuple] = []
    solve = poisson.poisson_correction

    def record(original, edit, region, **kwargs):
        seen.append((np.array(original), np.array(edit), np.array(region)))
        return solve(original, edit, region, **kwargs)

    poisson.poisson_correction = record
    try:
        diffmerge.diff_merge(read_rgb(folder / "original.png"), read_rgb(folder / "edited.png"))
    finally:
        poisson.poisson_correction = solve
    return seen[0] if seen else None


def rows_for(name: str, crops: tuple, repeat: int) -> list[str]:
    """The table's rows for one pair: one per tolerance, then the fitted fixed part and cost per iteration."""
    original, edit, region = crops
    exact, _, _ = poisson.poisson_correction(original, edit, region, tol=1e-6, max_iterations=500)
    points, rows = [], []
    for tol in TOLERANCES:
        spent = []
        for _ in range(repeat):
            t = time.process_time()
            h, _, info = poisson.poisson_correction(original, edit, region, tol=tol)
            spent.append(time.process_time() - t)
        ms = 1000 * statistics.median(spent)
        total = summed_iterations(original, edit, region, tol)
        points.append((total, ms))
        error = 255 * float(np.abs(h - exact).max())
        rows.append(f"| {name} | {info.unknowns} | {tol:g} | {info.cycles} / {total} | {ms:.1f} | {error:.2f} |")
    its, ms = np.array(points, np.float64).T
    slope, intercept = np.polyfit(its, ms, 1)
    rows.append(f"| {name} | fixed part {intercept:.1f} ms, {slope:.2f} ms per channel iteration | | | | |")
    return rows


def summed_iterations(original, edit, region, tol: float) -> int:
    """Iterations of one poisson_correction summed over its channels and parts (counted where it solves one)."""
    counted: list[int] = []
    solve = poisson._solve_channel

    def count(*args, **kwargs):
        result = solve(*args, **kwargs)
        counted.append(result[0])
        return result

    poisson._solve_channel = count
    try:
        poisson.poisson_correction(original, edit, region, tol=tol)
    finally:
        poisson._solve_channel = solve
    return sum(counted)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("pairs", nargs="*", type=Path, help=f"pair folders (default: every folder in {DEFAULT_PAIRS})")
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--threads", type=int, default=None, help="solver threads (default: the merge's own)")
    args = ap.parse_args()
    folders = args.pairs or sorted(p for p in DEFAULT_PAIRS.iterdir() if (p / "original.png").exists())
    if args.threads is not None:
        threads.WORKERS = max(1, args.threads)
    out = sys.stdout
    out.write(f"solver threads {threads.WORKERS}, CPU ms (median of {args.repeat})\n")
    out.write("| pair | unknowns | tolerance | iterations (most / sum) | ms | worst error (8-bit levels) |\n")
    out.write("|---|---|---|---|---|---|\n")
    for folder in folders:
        crops = merge_region(folder)
        rows = rows_for(folder.name, crops, args.repeat) if crops is not None else [f"| {folder.name} | no solve |"]
        out.write("\n".join(rows) + "\n")
        out.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
