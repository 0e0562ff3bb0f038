"""Make docs/diff_merge.png, the README's picture: a simulated Kontext re-render merged back with Kontext Diff-Merge.

The "edit" recolours one region of a real photograph and, as Kontext does, also shifts the whole picture by a
fraction of a pixel and tints it. Run from the repository root: ``python docs/make_readme_image.py``.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw

from atelier_core.image.diffmerge import diff_merge

ROOT = Path(__file__).resolve().parents[1]


def simulated_edit(original: np.ndarray) -> np.ndarray:
    h, w = original.shape[:2]
    edit = original.copy()
    y0, y1, x0, x1 = int(h * 0.55), int(h * 0.9), int(w * 0.15), int(w * 0.45)
    patch = edit[y0:y1, x0:x1]
    edit[y0:y1, x0:x1] = np.clip(patch[..., [2, 0, 1]] * 1.1, 0, 1)  # the edit: recolour a region
    shift = np.float32([[1, 0, 1.6], [0, 1, -0.8]])  # the drift: a sub-pixel re-render shift ...
    edit = cv2.warpAffine(edit, shift, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    return np.clip(edit * np.float32([1.04, 1.0, 0.93]) + 0.01, 0, 1)  # ... and a colour cast


def main() -> None:
    original = np.asarray(Image.open(ROOT / "tests/data/astronaut_512.jpg").convert("RGB"), np.float32) / 255
    edited = simulated_edit(original)
    result = diff_merge(original, edited)
    mask = np.repeat(result.soft_mask[..., None], 3, axis=2)
    panels = [original, edited, mask, result.merged]
    labels = ["original", "Kontext re-render (shift + tint + edit)", "detected change", "merged: only the edit"]
    tile = 256
    canvas = Image.new("RGB", (tile * 4 + 30, tile + 28), "white")
    draw = ImageDraw.Draw(canvas)
    for i, (panel, label) in enumerate(zip(panels, labels, strict=True)):
        img = Image.fromarray((np.clip(panel, 0, 1) * 255 + 0.5).astype(np.uint8)).resize((tile, tile), Image.LANCZOS)
        canvas.paste(img, (i * (tile + 10), 24))
        draw.text((i * (tile + 10) + 4, 6), label, fill="black")
    out = ROOT / "docs" / "diff_merge.png"
    canvas.save(out, optimize=True)
    print(f"wrote {out}; {result.report}")  # noqa: T201 (a script's output)


if __name__ == "__main__":
    main()
