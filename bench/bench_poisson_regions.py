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
import contextlib
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_realpairs import DEFAULT_PAIRS, read_rgb  # noqa: E402

from atelier_core.image import diffmerge, poisson, threads  # noqa: E402

TOLERANCES = (1.6e-2, 8e-3, 4e-3, 1e-3, 1e-5)


@contextlib.contextmanager
def recorded(name: str, keep: Callable):
    """``poisson.<name>`` wrapped while the block runs (where diff_merge and the solver look it up): each call's
    ``keep(args, result)`` lands in the yielded list."""
    calls: list = []
    fn = getattr(poisson, name)

    def wrapper(*args, **kwargs):
        result = fn(*args, **kwargs)
        calls.append(keep(args, result))
        return result

    setattr(poisson, name, wrapper)
    try:
        yield calls
    finally:
        setattr(poisson, name, fn)


def merge_region(folder: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
    """(original crop, edit crop, region) our merge passes to poisson_correction, or None when it solves none."""
    with recorded("poisson_correction", lambda args, _: tuple(np.array(a) for a in args[:3])) as seen:
        diffmerge.diff_merge(read_rgb(folder / "original.png"), read_rgb(folder / "edited.png"))
    return seen[0] if seen else None


def rows_for(name: str, crops: tuple, repeat: int) -> list[str]:
    """The table's rows for one pair: one per tolerance, then the fitted fixed part and cost per iteration."""
    original, edit, region = crops
    exact, _, _ = poisson.poisson_correction(original, edit, region, tol=1e-6, max_iterations=500)
    points, rows = [], []
    for tol in TOLERANCES:
        spent = []
        # Each channel solve's iterations, summed over channels and parts (the wrapper costs a Python call each).
        with recorded("_solve_channel", lambda _, result: result[0]) as iterations:
            for _ in range(repeat):
                iterations.clear()
                t = time.process_time()
                h, _, info = poisson.poisson_correction(original, edit, region, tol=tol)
                spent.append(time.process_time() - t)
        ms, total = 1000 * statistics.median(spent), sum(iterations)
        points.append((total, ms))
        error = 255 * float(np.abs(h - exact).max())
        rows.append(f"| {name} | {info.unknowns} | {tol:g} | {info.cycles} / {total} | {ms:.1f} | {error:.2f} |")
    its, ms = np.array(points, np.float64).T
    slope, intercept = np.polyfit(its, ms, 1)
    rows.append(f"| {name} | fixed part {intercept:.1f} ms, {slope:.2f} ms per channel iteration | | | | |")
    return rows


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
