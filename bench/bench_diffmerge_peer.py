"""Our diff-merge against flux-kontext-diff-merge (safzanpirani), side by side in one process: speed and many turns.

    python bench/bench_diffmerge_peer.py /tmp/peers/flux-kontext-diff-merge [--repeat 4] [--turns 10] [--profile]

The peer's repository is not part of this project: clone it anywhere outside the repo and pass its folder. Its
node class is loaded from ``flux_kontext_diff_merge.py`` and called with the defaults its INPUT_TYPES declares
(scikit-image, which it imports for an SSIM mode its default does not use, is stubbed when missing).

1. Speed: the test photos upscaled to 1024, 2048 and 4096 (ours only) with a local edit and a Kontext-like
   re-render (sub-pixel shift, 0.4 % zoom, tint, blur, noise); best of ``--repeat`` for each merge with its
   defaults (ours: alignment, colour-drift fit, CIEDE2000, Poisson), and our peak numpy memory (tracemalloc).
2. Many turns: ``--turns`` chained edits on each photo and drift size (atelier_core.image.diffmerge_chain), each
   re-rendered and merged back before the next, for ours with its defaults, ours with the wide band the help
   page offers (grow 4, feather 12) and the peer; pixels changed farther than 8 / 20 / 50 px from the turn's
   edit, the share of pixels outside the edits (grown by 8 and by 20 px) still bit-identical to the original,
   and PSNR to the ideal chain there and inside the edits. The spurious pixels (> 20 px) are drawn in red on
   bench/out/chain_<who>_<photo>_<drift>.png (who: ours, ours_wide, peer), with the edits outlined in green.
3. ``--profile``: where our time goes at 1024 and 2048 (cProfile of 3 merges of the astronaut case, the
   cumulative seconds per merge of each pipeline stage).
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import importlib.util
import io
import pstats
import sys
import time
import tracemalloc
import types
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from atelier_core.image import diffmerge, diffmerge_chain  # noqa: E402

PHOTOS = ("astronaut_512.jpg", "chelsea_451x300.jpg", "coffee_600x400.jpg")


def load_peer(folder: Path):
    """-> merge(original, edited) -> merged float image, with flux-kontext-diff-merge's own node defaults."""
    try:
        import skimage.metrics  # noqa: F401
    except ImportError:
        sk, metrics = types.ModuleType("skimage"), types.ModuleType("skimage.metrics")

        def _missing(*_a, **_k):
            raise RuntimeError("scikit-image is not installed")

        metrics.structural_similarity = _missing
        sk.metrics = metrics
        sys.modules.setdefault("skimage", sk)
        sys.modules.setdefault("skimage.metrics", metrics)
    import logging

    import torch

    spec = importlib.util.spec_from_file_location("peer_fkdm", folder / "flux_kontext_diff_merge.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    node = module.FluxKontextDiffMerge()
    required = node.INPUT_TYPES()["required"]
    defaults = {k: v[1]["default"] for k, v in required.items() if len(v) > 1 and "default" in v[1]}
    logging.getLogger(__name__).info("peer defaults: %s", defaults)

    def merge(original, edited):
        with contextlib.redirect_stdout(io.StringIO()):  # it prints its own fallbacks ("Poisson blending failed")
            out = node.merge_diff(torch.from_numpy(original[None]), torch.from_numpy(edited[None]), **defaults)
        return out[0][0].numpy()

    return merge, defaults


def photo(name: str, size: int) -> np.ndarray:
    rgb = cv2.imread(str(ROOT / "tests" / "data" / name))[..., ::-1].astype(np.float32) / 255
    return np.ascontiguousarray(cv2.resize(rgb, (size, size), interpolation=cv2.INTER_CUBIC).clip(0, 1))


def speed_case(name: str, size: int) -> tuple[np.ndarray, np.ndarray]:
    orig = photo(name, size)
    rng = np.random.default_rng(7)
    region = diffmerge_chain._region(size, size, rng)
    wanted = diffmerge_chain.apply_edit(orig, region, "pattern", rng)
    drift = diffmerge_chain.Drift(dx=-1.4, dy=2.3, zoom=1.004, gains=(1.04, 1.0, 0.95), blur=0.7, noise=0.01)
    return orig, drift.apply(wanted, rng)


CLOCK = {"wall": time.perf_counter, "cpu": time.process_time}  # cpu: this process's CPU seconds, all threads
_clock = CLOCK["wall"]


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = _clock()
        fn()
        times.append(_clock() - t)
    return min(times)


def peak_mib(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def speed_table(peer, repeat: int) -> list[str]:
    rows = ["| photo | size | ours s | peer s | ours / peer | our peak numpy MiB |", "|---|---|---|---|---|---|"]
    for name in PHOTOS:
        for size in (1024, 2048, 4096):
            orig, edited = speed_case(name, size)
            ours = best_of(lambda o=orig, e=edited: diffmerge.diff_merge(o, e), repeat)
            mem = peak_mib(lambda o=orig, e=edited: diffmerge.diff_merge(o, e))
            if size <= 2048:
                theirs = best_of(lambda o=orig, e=edited: peer(o, e), repeat)
                rows.append(f"| {name} | {size} | {ours:.3f} | {theirs:.3f} | {ours / theirs:.2f} | {mem:.0f} |")
            else:
                rows.append(f"| {name} | {size} | {ours:.3f} | - | - | {mem:.0f} |")
    return rows


# The pipeline's stages, as diff_merge calls them (atelier_core/image/diffmerge.py).
STAGES = (
    ("alignment", "_align_step"),
    ("colour prediction", "_colour_step"),
    ("ΔE map", "_difference_map"),
    ("threshold, clean-up, grow", "_detect"),
    ("feather", "feather_mask"),
    ("blend (Poisson)", "_blend"),
    ("preview", "_outline_preview"),
)


def profile_table(runs: int = 3) -> list[str]:
    rows = ["| size | " + " | ".join(name for name, _ in STAGES) + " | whole merge |", "|---" * (len(STAGES) + 2) + "|"]
    for size in (1024, 2048):
        orig, edited = speed_case("astronaut_512.jpg", size)
        diffmerge.diff_merge(orig, edited)  # warm-up: first calls pay for imports and OpenCV's thread pool
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(runs):
            diffmerge.diff_merge(orig, edited)
        prof.disable()
        stats = pstats.Stats(prof).stats  # {(file, line, name): (calls, prim, tottime, cumtime, callers)}
        by_name: dict[str, float] = {}
        for (_file, _line, name), (*_, cumtime, _callers) in stats.items():
            by_name[name] = by_name.get(name, 0.0) + cumtime
        missing = [fn for _, fn in STAGES if fn not in by_name]
        if missing:  # a renamed stage would otherwise show as 0.000 s
            raise SystemExit(f"diff_merge no longer calls {', '.join(missing)}: update STAGES in {__file__}")
        cells = [f"{by_name[fn] / runs:.3f}" for _, fn in STAGES]
        rows.append(f"| {size} | " + " | ".join(cells) + f" | {by_name.get('diff_merge', 0.0) / runs:.3f} |")
    return rows


def chain_table(peer, turns: int, out_dir: Path) -> list[str]:
    rows = [
        "| who | photo | drift | px > 8 px (all turns) | px > 20 px (all turns) | turns with px > 50 px "
        "| widest change px | identical outside +8 px | identical outside +20 px | PSNR outside +8 px dB "
        "| PSNR in edits dB |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    wide_opts = diffmerge.MergeOptions(grow=4, feather=12)

    def wide(original, render):
        return diffmerge.diff_merge(original, render, wide_opts).merged

    for name in PHOTOS:
        for drift, seed in (("small", 1), ("medium", 2), ("large", 3)):
            img = photo(name, 1024)
            for who, tag, merge in (
                ("ours", "ours", None),
                ("ours, grow 4 feather 12", "ours_wide", wide),
                ("peer", "peer", peer),
            ):
                f = diffmerge_chain.run_chain(img, turns, drift, seed, far=20.0, dilate=8, merge=merge)
                pic = diffmerge_chain.spurious_picture(img, f)
                cv2.imwrite(
                    str(out_dir / f"chain_{tag}_{name.split('_')[0]}_{drift}.png"),
                    (pic[..., ::-1] * 255).round().astype(np.uint8),
                )
                rows.append(
                    f"| {who} | {name} | {drift} | {sum(f.beyond_dilate)} | {sum(f.far_changed)} "
                    f"| {sum(1 for v in f.beyond50 if v)} | {max(f.band):.0f} | {100 * f.identical_outside:.2f} % "
                    f"| {100 * f.identical_beyond_far:.2f} % | {f.psnr_outside:.1f} | {f.psnr_edits:.1f} |"
                )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peer", type=Path, help="folder of a flux-kontext-diff-merge checkout (outside this repo)")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-chain", action="store_true")
    ap.add_argument("--profile", action="store_true", help="also print where our time goes, per stage")
    ap.add_argument("--clock", choices=sorted(CLOCK), default="wall", help="cpu: CPU seconds (a busy machine)")
    args = ap.parse_args()
    global _clock
    _clock = CLOCK[args.clock]
    if not (args.peer / "flux_kontext_diff_merge.py").is_file():
        ap.error(
            f"{args.peer} has no flux_kontext_diff_merge.py; clone github.com/safzanpirani/flux-kontext-diff-merge"
        )
    peer, defaults = load_peer(args.peer)
    out = sys.stdout
    out.write(f"peer defaults: {defaults}\ncv2 threads {cv2.getNumThreads()}\n\n")
    if not args.skip_speed:
        out.write(f"Speed, best of {args.repeat}\n" + "\n".join(speed_table(peer, args.repeat)) + "\n\n")
        out.flush()
    if args.profile:
        out.write("Our stages, s per merge (cProfile, 3 merges)\n" + "\n".join(profile_table()) + "\n\n")
        out.flush()
    if not args.skip_chain:
        rows = chain_table(peer, args.turns, ROOT / "bench" / "out")
        out.write(f"{args.turns} chained turns at 1024x1024\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
