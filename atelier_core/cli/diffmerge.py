"""``kontext-atelier diff-merge``: keep only what an edit changed, without ComfyUI.

    kontext-atelier diff-merge original.png edited.png -o merged.png --mask-out mask.png

Reads 8- or 16-bit images (grey, RGB, RGBA), writes the merged image at the original's bit depth (PNG/TIFF keep
the untouched pixels bit-identical), optionally the hard mask, the soft mask and a preview, and prints the merge
report (shift found, threshold used, changed area).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np

from ..errors import AtelierError
from ..image import diffmerge

logger = logging.getLogger(__name__)

WHO = "kontext-atelier diff-merge"


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "diff-merge",
        help="merge only the regions an edit changed back into the original",
        description=(
            "Align the edit to the original (global shift/scale and colour drift), find the regions it changed "
            "(CIELAB ΔE), and blend only those into the original; every other pixel stays the original's."
        ),
    )
    d = diffmerge.MergeOptions()
    p.add_argument("original", help="the image before editing")
    p.add_argument("edited", help="the edited image (another size is resized, another aspect treated as centre crop)")
    p.add_argument("-o", "--output", required=True, help="where to write the merged image")
    p.add_argument("--mask-out", help="where to write the hard mask (white = taken from the edit)")
    p.add_argument("--soft-mask-out", help="where to write the feathered mask")
    p.add_argument("--preview-out", help="where to write a preview with changed regions outlined")
    p.add_argument("--report-out", help="where to write the report as JSON")
    p.add_argument("--mask", help="optional user mask image (white = selected)")
    p.add_argument(
        "--mask-mode",
        choices=diffmerge.USER_MASK_MODES,
        default=d.user_mask_mode,
        help=f"how the user mask combines with the detected one (default: {d.user_mask_mode})",
    )
    p.add_argument("--threshold", type=float, default=d.threshold, help=f"ΔE threshold (default: {d.threshold})")
    p.add_argument(
        "--formula", choices=("ciede2000", "cie76"), default=d.formula, help=f"ΔE formula (default: {d.formula})"
    )
    p.add_argument("--auto-threshold", action="store_true", help="pick the threshold from the ΔE histogram")
    p.add_argument(
        "--min-area",
        type=int,
        default=d.min_area,
        help=f"drop changed regions smaller than this many pixels (default: {d.min_area})",
    )
    p.add_argument(
        "--grow",
        type=int,
        default=d.grow,
        help=f"grow (or, negative, shrink) the mask by this many pixels (default: {d.grow})",
    )
    p.add_argument("--feather", type=int, default=d.feather, help=f"soft edge width in pixels (default: {d.feather})")
    p.add_argument("--blend", choices=diffmerge.BLEND_MODES, default=d.blend, help=f"(default: {d.blend})")
    p.add_argument("--no-align", action="store_true", help="do not estimate/undo a global shift")
    p.add_argument("--no-color-match", action="store_true", help="do not compensate a global colour drift")
    p.add_argument(
        "--force-merge",
        action="store_true",
        help="merge even when the edit is global (most of the frame changed, or another scene) or reframed (the "
        "model moved or zoomed the picture); by default those return the edit itself at the original's size",
    )
    p.set_defaults(handler=run)


def _read(path: str, what: str) -> tuple[np.ndarray, int]:
    """-> (float32 (H, W, C) RGB(A)/grey in 0..1, bit depth)."""
    if not Path(path).is_file():
        raise AtelierError(f"{WHO}: the {what} {path!r} does not exist")
    raw = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if raw is None:
        raise AtelierError(f"{WHO}: cannot read the {what} {path!r} as an image (PNG, JPEG, TIFF, WebP)")
    depth = 16 if raw.dtype == np.uint16 else 8
    scale = 65535.0 if depth == 16 else 255.0
    if raw.dtype not in (np.uint8, np.uint16):
        raise AtelierError(f"{WHO}: the {what} {path!r} has an unsupported pixel type {raw.dtype}")
    img = raw.astype(np.float32) / scale
    if img.ndim == 2:
        img = img[..., None]
    elif img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    return np.ascontiguousarray(img), depth


def _write(path: str, image: np.ndarray, depth: int) -> None:
    img = np.clip(image, 0.0, 1.0)
    if img.ndim == 3 and img.shape[2] == 3:
        img = img[..., ::-1]
    elif img.ndim == 3 and img.shape[2] == 4:
        img = img[..., [2, 1, 0, 3]]
    elif img.ndim == 3 and img.shape[2] == 2:
        img = img[..., 0]
    suffix = Path(path).suffix.lower()
    if depth == 16 and suffix in (".png", ".tif", ".tiff"):
        data = np.round(img * 65535.0).astype(np.uint16)
    else:
        data = np.round(img * 255.0).astype(np.uint8)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(path, np.ascontiguousarray(data)):
        raise AtelierError(f"{WHO}: cannot write {path!r} (unknown extension or unwritable folder)")


def run(args) -> int:
    original, depth = _read(args.original, "original")
    edited, _ = _read(args.edited, "edited image")
    user_mask = None
    if args.mask:
        m, _ = _read(args.mask, "mask")
        user_mask = m[..., 0] if m.shape[2] in (1, 2) else m[..., :3].mean(axis=2)
    opts = diffmerge.MergeOptions(
        threshold=args.threshold,
        formula=args.formula,
        auto_threshold=args.auto_threshold,
        min_area=args.min_area,
        grow=args.grow,
        feather=args.feather,
        blend=args.blend,
        align=not args.no_align,
        match_color=not args.no_color_match,
        user_mask_mode=args.mask_mode,
        force_merge=args.force_merge,
    )
    result = diffmerge.diff_merge(original, edited, opts, user_mask)
    _write(args.output, result.merged, depth)
    if args.mask_out:
        _write(args.mask_out, result.hard_mask, 8)
    if args.soft_mask_out:
        _write(args.soft_mask_out, result.soft_mask, depth)
    if args.preview_out:
        _write(args.preview_out, result.preview, 8)
    if args.report_out:
        Path(args.report_out).write_text(json.dumps(result.report, indent=2))
    sys.stdout.write(diffmerge.format_report(result.report) + "\n")
    logger.debug("report: %s", result.report)
    return 0
