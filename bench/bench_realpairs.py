"""Our diff-merge and flux-kontext-diff-merge on real Kontext outputs: what each merge keeps, and how long it takes.

    python bench/bench_realpairs.py --peer /tmp/peers/flux-kontext-diff-merge [PAIR_FOLDER ...] [--repeat 2]
        [--clock wall|cpu] [--opencv-threads N] [--json-out FILE] [--profile]

Each pair folder holds ``original.png`` and ``edited.png`` (a real Kontext output made from it); with no folder
given, every folder under ``../shared/realpairs`` is run. The pairs are evaluation data: never commit them.
Both merges run with their defaults (ours: alignment, colour-drift fit, CIEDE2000, Poisson; the peer: its node's
INPUT_TYPES defaults, see bench_diffmerge_peer.py). Per pair and merge it prints:

* kind: our detected edit kind (local / global / reframed; "-" for the peer);
* mask %: our hard mask's share of the frame;
* changed %: pixels the merge changed (any channel more than 2/255 from the original);
* PSNR to the edit (at the original's size) and to the original, in dB;
* far regions / far %: changed regions, and the share of the frame, farther than ``--far`` px (48) from the
  largest changed region (the main change; for the pairs in FOCUS, from a hand-drawn box around the edit);
* seconds: best of ``--repeat`` (ours and the peer's in turn) for the merge call alone, wall clock or, with
  ``--clock cpu``, this process's CPU seconds (the node's preview PNG, written by ComfyUI, is not
  counted for either).

bench/out/realpairs_<pair>.png shows original | edit | ours (changed pixels outlined) | peer, 512 px high.
``--profile`` adds where our time goes per pair (each pipeline stage timed with the chosen clock).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from bench_diffmerge_peer import STAGES, load_peer  # noqa: E402

from atelier_core.image import diffmerge, diffmerge_kind  # noqa: E402

DEFAULT_PAIRS = ROOT.parent / "shared" / "realpairs"
# Where the edit is, drawn by hand, for pairs whose changes connect the edit to re-rendered parts (the inserted
# boy of the omini pair touches the re-rendered table and the old man): "far" is measured from this box
# (x0, y0, x1, y1 in the original's pixels) instead of from the largest changed region.
FOCUS = {"kdev_omini_scene01_add_boy": (270, 105, 630, 690)}


def read_rgb(path: Path) -> np.ndarray:
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise SystemExit(f"cannot read {path}")
    return np.ascontiguousarray(img[..., ::-1].astype(np.float32) / 255.0)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.clip(a, 0, 1) - np.clip(b, 0, 1)) ** 2))
    return 99.0 if mse <= 1e-12 else 10.0 * np.log10(1.0 / mse)


def far_changes(changed: np.ndarray, far: float, focus=None) -> tuple[int, float]:
    """-> (regions, share of the frame) of ``changed`` farther than ``far`` px from its largest region (or from
    the ``focus`` box)."""
    if not changed.any():
        return 0, 0.0
    n, labels, stats, _ = cv2.connectedComponentsWithStats(changed.astype(np.uint8), connectivity=8)
    main = labels == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    if focus is not None:
        main = np.zeros_like(changed)
        main[focus[1] : focus[3], focus[0] : focus[2]] = True
    dist = cv2.distanceTransform((~main).astype(np.uint8), cv2.DIST_L2, 5)
    beyond = changed & (dist > far)
    regions = len(np.unique(labels[beyond])) if beyond.any() else 0
    return regions, float(beyond.mean())


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}


def best_of_each(fns: list, repeat: int, clock=time.perf_counter) -> list[tuple[float, object]]:
    """Best time and last output of each callable, run in turn ``repeat`` times (interleaved, so a busy machine
    slows both merges alike)."""
    best, outs = [float("inf")] * len(fns), [None] * len(fns)
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t = clock()
            outs[i] = fn()
            best[i] = min(best[i], clock() - t)
    return list(zip(best, outs, strict=True))


def outlined(image: np.ndarray, changed: np.ndarray) -> np.ndarray:
    pic = np.clip(image, 0, 1).copy()
    edge = cv2.morphologyEx(changed.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((5, 5), np.uint8)) > 0
    pic[edge] = (1.0, 0.1, 0.1)
    return pic


def side_by_side(panels: list[np.ndarray], height: int = 512) -> np.ndarray:
    row = []
    for p in panels:
        w = max(1, round(p.shape[1] * height / p.shape[0]))
        row.append(cv2.resize(np.clip(p, 0, 1), (w, height), interpolation=cv2.INTER_AREA))
        row.append(np.ones((height, 6, 3), np.float32))
    return np.concatenate(row[:-1], axis=1)


def measure(merged, original, edit_fitted, far: float, focus=None) -> dict:
    changed = (np.abs(merged[..., :3] - original).max(axis=2) > 2.0 / 255) if merged is not None else None
    regions, share = far_changes(changed, far, focus)
    return {
        "changed": float(changed.mean()),
        "psnr_edit": psnr(merged[..., :3], edit_fitted),
        "psnr_orig": psnr(merged[..., :3], original),
        "far_regions": regions,
        "far_share": share,
        "changed_map": changed,
    }


def run_pair(folder: Path, peer, repeat: int, far: float, out_dir: Path, clock=time.perf_counter) -> dict:
    original, edited = read_rgb(folder / "original.png"), read_rgb(folder / "edited.png")
    h, w = original.shape[:2]
    edit_fitted = cv2.resize(edited, (w, h), interpolation=cv2.INTER_AREA) if edited.shape != original.shape else edited
    fns = [lambda: diffmerge.diff_merge(original, edited)]
    if peer is not None:
        fns.append(lambda: peer(original, edited))
    timed = best_of_each(fns, repeat, clock)
    t_ours, res = timed[0]
    ours = measure(res.merged, original, edit_fitted, far, FOCUS.get(folder.name))
    ours.update(kind=res.report.get("kind", "-"), mask=float(res.hard_mask.mean()), seconds=t_ours)
    row = {"pair": folder.name, "size": f"{w}x{h}", "ours": ours, "report": diffmerge.format_report(res.report)}
    panels = [original, edit_fitted, outlined(res.merged[..., :3], ours["changed_map"])]
    if peer is not None:
        t_peer, merged_peer = timed[1]
        theirs = measure(merged_peer, original, edit_fitted, far, FOCUS.get(folder.name))
        theirs.update(kind="-", mask=float("nan"), seconds=t_peer)
        row["peer"] = theirs
        panels.append(outlined(merged_peer[..., :3], theirs["changed_map"]))
    out_dir.mkdir(parents=True, exist_ok=True)
    pic = side_by_side(panels)
    cv2.imwrite(str(out_dir / f"realpairs_{folder.name}.png"), (pic[..., ::-1] * 255).round().astype(np.uint8))
    return row


# The stages timed by --profile: bench_diffmerge_peer's, and the kind decision's quick map.
PROFILE_STAGES = (*STAGES[:2], ("kind map", "quick_changes"), *STAGES[2:])


def profile_pair(folder: Path, clock, runs: int = 3) -> str:
    """Per stage, the least time of ``runs`` merges (``clock``: wall or CPU seconds), each stage's function wrapped
    where diff_merge looks it up."""
    original, edited = read_rgb(folder / "original.png"), read_rgb(folder / "edited.png")
    spent: dict[str, float] = {}
    saved = []
    for _, name in PROFILE_STAGES:
        module = diffmerge_kind if name == "quick_changes" else diffmerge
        if not hasattr(module, name):  # a renamed stage would otherwise show as 0.000 s
            raise SystemExit(f"diff_merge no longer calls {name}: update PROFILE_STAGES in {__file__}")
        fn = getattr(module, name)
        saved.append((module, name, fn))

        def timed(*a, _fn=fn, _name=name, **k):
            t = clock()
            try:
                return _fn(*a, **k)
            finally:
                spent[_name] = spent.get(_name, 0.0) + clock() - t

        setattr(module, name, timed)
    best: dict[str, float] = {}
    try:
        diffmerge.diff_merge(original, edited)
        for _ in range(runs):
            spent.clear()
            t = clock()
            diffmerge.diff_merge(original, edited)
            spent["whole"] = clock() - t
            for k, v in spent.items():
                best[k] = min(best.get(k, float("inf")), v)
    finally:
        for module, name, fn in saved:
            setattr(module, name, fn)
    cells = [f"{1000 * best.get(fn, 0.0):.0f}" for _, fn in PROFILE_STAGES]
    return f"| {folder.name} | " + " | ".join(cells) + f" | {1000 * best['whole']:.0f} |"


def table(rows: list[dict]) -> list[str]:
    lines = [
        "| pair | size | who | kind | mask % | changed % | PSNR to edit dB | PSNR to original dB | far regions "
        "| far % | s | ours / peer |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for who in ("ours", "peer"):
            m = r.get(who)
            if m is None:
                continue
            ratio = f"{r['ours']['seconds'] / r['peer']['seconds']:.2f}" if who == "ours" and "peer" in r else ""
            mask = "" if who == "peer" else f"{100 * m['mask']:.2f}"
            lines.append(
                f"| {r['pair']} | {r['size']} | {who} | {m['kind']} | {mask} | {100 * m['changed']:.2f} "
                f"| {m['psnr_edit']:.1f} | {m['psnr_orig']:.1f} | {m['far_regions']} | {100 * m['far_share']:.2f} "
                f"| {m['seconds']:.3f} | {ratio} |"
            )
    return lines


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pairs", nargs="*", type=Path, help=f"pair folders (default: every folder in {DEFAULT_PAIRS})")
    ap.add_argument("--peer", type=Path, help="folder of a flux-kontext-diff-merge checkout (outside this repo)")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--far", type=float, default=48.0, help="distance from the main change counted as far (px)")
    ap.add_argument(
        "--clock",
        choices=sorted(CLOCK),
        default="wall",
        help="wall: seconds waited; cpu: CPU seconds of this process, all threads (steadier on a shared machine)",
    )
    ap.add_argument(
        "--opencv-threads",
        type=int,
        help="OpenCV's thread count for both merges (default: its own, one per core); 1 measures the work without "
        "its worker threads' start-ups and spin-waits, which add CPU time to both merges' OpenCV calls",
    )
    ap.add_argument("--json-out", type=Path, help="also write the figures as JSON")
    ap.add_argument("--profile", action="store_true", help="also print where our time goes on each pair")
    ap.add_argument("--reports", action="store_true", help="also print our merge report for each pair")
    args = ap.parse_args()
    folders = args.pairs or sorted(p for p in DEFAULT_PAIRS.iterdir() if (p / "original.png").is_file())
    peer = load_peer(args.peer)[0] if args.peer else None
    out = sys.stdout
    if args.opencv_threads is not None:
        cv2.setNumThreads(args.opencv_threads)
    out.write(f"cv2 threads {cv2.getNumThreads()}, clock {args.clock}\n")
    rows = []
    for folder in folders:
        rows.append(run_pair(folder, peer, args.repeat, args.far, ROOT / "bench" / "out", CLOCK[args.clock]))
        if args.reports:
            out.write(f"{folder.name}:\n{rows[-1]['report']}\n\n")
        out.flush()
    out.write("\n".join(table(rows)) + "\n")
    if peer is not None:
        ratios = [r["ours"]["seconds"] / r["peer"]["seconds"] for r in rows]
        out.write(f"\nours / peer: median {np.median(ratios):.2f}, worst {max(ratios):.2f}\n")
    if args.profile:
        out.write(f"\nOur stages, ms ({args.clock}, least of 3 merges)\n")
        out.write("| pair | " + " | ".join(n for n, _ in PROFILE_STAGES) + " | whole merge |\n")
        out.write("|---" * (len(PROFILE_STAGES) + 2) + "|\n")
        out.write("\n".join(profile_pair(f, CLOCK[args.clock]) for f in folders) + "\n")
    if args.json_out:
        for r in rows:
            for who in ("ours", "peer"):
                if who in r:
                    r[who].pop("changed_map", None)
        args.json_out.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
