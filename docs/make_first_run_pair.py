"""Make the README's first-run pair: a photo and a Kontext-like edit of it, for ``kontext-atelier diff-merge``.

The photo is the repository's own CC0 coffee cup (``tests/data/coffee_600x400.jpg``, see ``tests/data/SOURCES.md``).
The edit is a real local change (the espresso becomes a matcha latte: the crema inside the cup turns green, its
shading kept) plus what a Kontext re-render does to every other pixel: a sub-pixel shift, a slight warm tint and a
slight blur. Diff-merge should keep the green cup and give every other pixel back from the original.

    python docs/make_first_run_pair.py ~/kontext-atelier-first-run          # writes original.png, kontext_edit.png
    python docs/make_first_run_pair.py --readme-picture docs/first_run.png  # the README's picture (merges too)
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
PHOTO = ROOT / "tests" / "data" / "coffee_600x400.jpg"
# The crema's ellipse in the 600x400 photo (centre x, y; half axes), measured on the picture.
CREMA = ((288.0, 146.0), (80.0, 47.0))
SHIFT = (0.6, -0.4)  # px: Kontext re-renders a picture a fraction of a pixel off
TINT = (1.035, 1.0, 0.95)  # per-channel gain: the slight warm cast of a re-render
BLUR_SIGMA = 0.6  # px: the slight softening of a re-render


def load_photo() -> np.ndarray:
    return np.asarray(Image.open(PHOTO).convert("RGB"), np.float32) / 255


def crema_mask(h: int, w: int) -> np.ndarray:
    """1 inside the crema, a 3-pixel soft rim, 0 elsewhere."""
    (cx, cy), (ax, ay) = CREMA
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    r = np.sqrt(((x - cx) / ax) ** 2 + ((y - cy) / ay) ** 2)
    return np.clip((1.0 - r) * min(ax, ay) / 3.0, 0.0, 1.0)


def matcha(photo: np.ndarray) -> np.ndarray:
    """The local edit: the crema's brightness kept, its colour made matcha green."""
    luma = photo @ np.float32([0.299, 0.587, 0.114])
    green = np.clip(luma[..., None] * np.float32([0.8, 1.12, 0.6]), 0, 1)
    weight = crema_mask(*photo.shape[:2])[..., None]
    return photo * (1 - weight) + green * weight


def kontext_drift(image: np.ndarray) -> np.ndarray:
    """What a re-render does everywhere: sub-pixel shift, slight blur, slight tint."""
    h, w = image.shape[:2]
    moved = cv2.warpAffine(
        image,
        np.float32([[1, 0, SHIFT[0]], [0, 1, SHIFT[1]]]),
        (w, h),
        flags=cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_REFLECT,
    )
    soft = cv2.GaussianBlur(moved, (0, 0), BLUR_SIGMA)
    return np.clip(soft * np.float32(TINT), 0, 1)


def to_png(image: np.ndarray, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)
    return path


def write_pair(folder: Path) -> tuple[Path, Path]:
    photo = load_photo()
    return to_png(photo, folder / "original.png"), to_png(kontext_drift(matcha(photo)), folder / "kontext_edit.png")


def readme_picture(out: Path) -> str:
    """original | Kontext-like edit | detected change | merged, at 240 px wide each."""
    sys.path.insert(0, str(ROOT))
    from atelier_core.image.diffmerge import diff_merge, format_report

    photo = load_photo()
    edited = np.asarray(Image.open(write_pair(out.parent / "first_run_tmp")[1]), np.float32) / 255
    result = diff_merge(photo, edited)
    mask = np.repeat(result.hard_mask[..., None], 3, axis=2)
    panels = [photo, edited, mask, result.merged]
    labels = ["original", "Kontext-like edit (+shift, tint, blur)", "what changed", "merged: the edit, nothing else"]
    tile_w, tile_h = 240, 160
    canvas = Image.new("RGB", (tile_w * 4 + 30, tile_h + 24), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        tile = Image.fromarray((np.clip(panel, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((tile_w, tile_h))
        canvas.paste(tile, (i * (tile_w + 10), 22))
        draw.text((i * (tile_w + 10) + 2, 5), label, fill="black")
    canvas.save(out, optimize=True)
    for name in ("original.png", "kontext_edit.png"):
        (out.parent / "first_run_tmp" / name).unlink()
    (out.parent / "first_run_tmp").rmdir()
    return format_report(result.report)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="make the README's first-run before/after pair")
    parser.add_argument("folder", nargs="?", help="where to write original.png and kontext_edit.png")
    parser.add_argument("--readme-picture", metavar="PNG", help="write the README's four-panel picture instead")
    args = parser.parse_args(argv)
    if args.readme_picture:
        report = readme_picture(Path(args.readme_picture))
        sys.stdout.write(f"wrote {args.readme_picture}\n{report}\n")
        return 0
    if not args.folder:
        parser.error("give a folder (e.g. ~/kontext-atelier-first-run) or --readme-picture PNG")
    original, edited = write_pair(Path(args.folder).expanduser())
    sys.stdout.write(f"wrote {original} and {edited}: the espresso made matcha green, plus a re-render's drift\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
