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
from ..image.geometry_record import MAX_INPUT_PIXELS
from .file_checks import IMAGE_SUFFIXES, check_outputs, image_size

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
    p.add_argument(
        "original", help=f"the image before editing (at most {MAX_INPUT_PIXELS / 1e6:.1f} million pixels, as the nodes)"
    )
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
    image_size(path, WHO, what)  # the header first: a 794 KB PNG can hold 16000x16000 pixels
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
    ok, encoded = cv2.imencode(suffix, np.ascontiguousarray(data))
    if not ok:
        raise AtelierError(f"{WHO}: cannot encode {path!r} as {suffix}")
    _save(path, encoded.tobytes())


def _save(path: str, data: bytes) -> None:
    try:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_bytes(data)
    except OSError as exc:
        raise AtelierError(f"{WHO}: cannot write {path!r} ({exc.strerror or exc}); choose another path") from None


def _check_paths(args) -> None:
    """Every output against every input and each other, before the merge runs (the merge of a large image takes
    seconds; a bad --preview-out used to fail after -o was written)."""
    inputs = [("ORIGINAL", args.original), ("EDITED", args.edited), ("--mask", args.mask)]
    outputs = [
        ("-o", args.output, IMAGE_SUFFIXES),
        ("--mask-out", args.mask_out, IMAGE_SUFFIXES),
        ("--soft-mask-out", args.soft_mask_out, IMAGE_SUFFIXES),
        ("--preview-out", args.preview_out, IMAGE_SUFFIXES),
        ("--report-out", args.report_out, None),
    ]
    check_outputs(WHO, inputs, outputs)


def _where(hard_mask: np.ndarray, args) -> str:
    """Where the kept change is (its bounding box in the original's pixels) and which files were written."""
    ys, xs = np.nonzero(hard_mask > 0.5)
    box = f"kept change at x {xs.min()}-{xs.max()}, y {ys.min()}-{ys.max()}" if xs.size else "no change kept"
    written = [args.output] + [p for p in (args.mask_out, args.soft_mask_out, args.preview_out, args.report_out) if p]
    return f"{box}; wrote {', '.join(str(Path(p).resolve()) for p in written)}"


def run(args) -> int:
    _check_paths(args)
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
        _save(args.report_out, json.dumps(result.report, indent=2).encode("utf-8"))
    sys.stdout.write(diffmerge.format_report(result.report) + "\n")
    sys.stdout.write(_where(result.hard_mask, args) + "\n")
    logger.debug("report: %s", result.report)
    return 0
