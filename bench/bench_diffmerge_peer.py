"""Our diff-merge against flux-kontext-diff-merge (safzanpirani), side by side in one process: speed and many turns.

    python bench/bench_diffmerge_peer.py /tmp/peers/flux-kontext-diff-merge [--repeat 4] [--turns 10]

The peer's repository is not part of this project: clone it anywhere outside the repo and pass its folder. Its
node class is loaded from ``flux_kontext_diff_merge.py`` and called with the defaults its INPUT_TYPES declares
(scikit-image, which it imports for an SSIM mode its default does not use, is stubbed when missing).

1. Speed: the test photos upscaled to 1024, 2048 and 4096 (ours only) with a local edit and a Kontext-like
   re-render (sub-pixel shift, 0.4 % zoom, tint, blur, noise); best of ``--repeat`` for each merge with its
   defaults (ours: alignment, colour-drift fit, CIEDE2000, Poisson), and our peak numpy memory (tracemalloc).
2. Many turns: ``--turns`` chained edits on each photo and drift size (atelier_core.image.diffmerge_chain), each
   re-rendered and merged back before the next, for both; pixels changed farther than 20 / 50 px from the
   turn's edit, the share of pixels outside the edits (grown by 8 px) still bit-identical to the original,
   and PSNR to the ideal chain there and inside the edits. The spurious pixels (> 20 px) are drawn in red on
   bench/out/chain_<who>_<photo>_<drift>.png.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import io
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

PHOTOS = ("astronaut_512.jpg", "chelsea_451x300.jpg")


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


def best_of(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
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


def chain_table(peer, turns: int, out_dir: Path) -> list[str]:
    rows = [
        "| who | photo | drift | px > 20 px (all turns) | turns with px > 50 px | widest change px "
        "| identical outside +8 px | identical outside +20 px | PSNR outside +8 px dB | PSNR in edits dB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    out_dir.mkdir(parents=True, exist_ok=True)
    narrow_opts = diffmerge.MergeOptions(grow=1, feather=4)

    def narrow(original, render):
        return diffmerge.diff_merge(original, render, narrow_opts).merged

    for name in PHOTOS:
        for drift, seed in (("small", 1), ("medium", 2), ("large", 3)):
            img = photo(name, 1024)
            for who, merge in (("ours", None), ("ours, grow 1 feather 4", narrow), ("peer", peer)):
                f = diffmerge_chain.run_chain(img, turns, drift, seed, far=20.0, dilate=8, merge=merge)
                pic = diffmerge_chain.spurious_picture(img, f)
                cv2.imwrite(
                    str(
                        out_dir
                        / f"chain_{who.split(',')[0]}{'_narrow' if ',' in who else ''}_{name.split('_')[0]}_{drift}.png"
                    ),
                    (pic[..., ::-1] * 255).round().astype(np.uint8),
                )
                rows.append(
                    f"| {who} | {name} | {drift} | {sum(f.far_changed)} | {sum(1 for v in f.beyond50 if v)} "
                    f"| {max(f.band):.0f} | {100 * f.identical_outside:.2f} % | {100 * f.identical_beyond_far:.2f} % "
                    f"| {f.psnr_outside:.1f} | {f.psnr_edits:.1f} |"
                )
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("peer", type=Path, help="folder of a flux-kontext-diff-merge checkout (outside this repo)")
    ap.add_argument("--repeat", type=int, default=4)
    ap.add_argument("--turns", type=int, default=10)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-chain", action="store_true")
    args = ap.parse_args()
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
    if not args.skip_chain:
        rows = chain_table(peer, args.turns, ROOT / "bench" / "out")
        out.write(f"{args.turns} chained turns at 1024x1024\n" + "\n".join(rows) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
