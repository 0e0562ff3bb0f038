"""Time a 2048x2048 diff-merge (alignment + detection + Poisson) against cv2.seamlessClone on the same mask.

    python bench/bench_diffmerge.py [--size 2048] [--repeat 5]

The test photo (tests/data/astronaut_512.jpg) is upscaled, given local edits of a few sizes and then shifted,
tinted, blurred and noised as a whole, like a Kontext re-render. For each edit the table shows the median of
``--repeat`` runs of: our whole merge, our Poisson step alone, and ``cv2.seamlessClone`` (NORMAL_CLONE, uint8,
the region's bounding-box centre) on the very region our Poisson solved. Not a test: prints a table.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atelier_core.image import align, diffmerge, poisson  # noqa: E402


def _median_time(fn, repeat: int) -> tuple[float, object]:
    times, out = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def make_case(size: int, radius_frac: float, seed: int = 0):
    photo = cv2.imread(str(ROOT / "tests" / "data" / "astronaut_512.jpg"))[..., ::-1].astype(np.float32) / 255
    orig = np.ascontiguousarray(cv2.resize(photo, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1))
    yy, xx = np.mgrid[:size, :size]
    truth = ((yy - 0.45 * size) / (radius_frac * size)) ** 2 + (
        (xx - 0.55 * size) / (1.2 * radius_frac * size)
    ) ** 2 < 1
    edited = orig.copy()
    pattern = 0.5 + 0.4 * np.sin(xx / 9.0)[..., None] * np.array([1.0, 0.3, -0.5], np.float32)
    edited[truth] = np.clip(pattern[truth] * 0.7 + np.array([0.1, 0.4, 0.8]) * 0.3, 0, 1)
    edited = align.warp_image(edited, align.Alignment(-1.4, 2.3))
    edited = cv2.GaussianBlur(np.clip(edited * np.array([1.04, 1.0, 0.95], np.float32), 0, 1), (0, 0), 0.7)
    edited = edited + np.random.default_rng(seed).normal(0, 0.01, edited.shape).astype(np.float32)
    return orig, np.clip(edited, 0, 1).astype(np.float32)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=2048)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    cv2.setNumThreads(cv2.getNumThreads())
    rows = []
    for frac in (0.08, 0.15, 0.25):
        orig, edited = make_case(args.size, frac)
        opts = diffmerge.MergeOptions()
        diffmerge.diff_merge(orig, edited, opts)  # warm-up (imports, allocator)
        t_merge, result = _median_time(lambda o=orig, e=edited, op=opts: diffmerge.diff_merge(o, e, op), args.repeat)
        region = result.soft_mask > 0
        aligned = align.warp_image(edited, align.Alignment(result.report["shift_x"], result.report["shift_y"]))
        t_ours, _ = _median_time(lambda o=orig, a=aligned, r=region: poisson.poisson_blend(o, a, r), args.repeat)
        src8 = (aligned * 255).round().astype(np.uint8)[..., ::-1].copy()
        dst8 = (orig * 255).round().astype(np.uint8)[..., ::-1].copy()
        mask8 = region.astype(np.uint8) * 255
        ys, xs = np.nonzero(region)
        centre = (int((xs.min() + xs.max() + 1) // 2), int((ys.min() + ys.max() + 1) // 2))
        try:
            t_cv, _ = _median_time(
                lambda s=src8, d=dst8, m=mask8, c=centre: cv2.seamlessClone(s, d, m, c, cv2.NORMAL_CLONE), args.repeat
            )
            cv_text = f"{t_cv:8.3f}"
        except cv2.error as exc:  # flux-kontext-diff-merge's failure mode with cv2.seamlessClone: ROI assertions when the region nears a border
            t_cv, cv_text = float("nan"), f"failed ({str(exc).splitlines()[0][:30]})"
        rows.append((frac, 100 * region.mean(), result.report["poisson"]["cycles"], t_merge, t_ours, cv_text, t_cv))
    sys.stdout.write(f"{args.size}x{args.size}, median of {args.repeat} runs, cv2 threads {cv2.getNumThreads()}\n")
    sys.stdout.write(
        "| edit | region % | PCG its | our whole merge s | our Poisson s | cv2.seamlessClone s | speed-up |\n"
    )
    sys.stdout.write("|---|---|---|---|---|---|---|\n")
    for frac, pct, its, tm, tp, cv_text, tcv in rows:
        speed = f"{tcv / tp:.1f}x" if np.isfinite(tcv) else "-"
        sys.stdout.write(f"| r={frac:.2f} | {pct:6.2f} | {its} | {tm:8.3f} | {tp:8.3f} | {cv_text} | {speed} |\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
