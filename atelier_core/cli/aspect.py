"""``kontext-atelier aspect-lock`` and ``kontext-atelier restore``: the two geometry nodes on the command line.

    kontext-atelier aspect-lock photo.png -o locked.png --geometry-out photo.geometry.json --mode kontext --fit pad
    kontext-atelier restore edited.png --geometry photo.geometry.json --original photo.png -o final.png

Images are read with their bit depth (8- or 16-bit PNG/TIFF, grey, RGB or RGBA) and written back at the original's
depth, so the margins a crop removed come back bit-identical in a PNG or TIFF output (JPEG/WebP re-encode them).
One line describing the result goes to standard output.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from .. import geometry
from ..errors import AtelierError

logger = logging.getLogger(__name__)

LOCK_WHO = "kontext-atelier aspect-lock"
RESTORE_WHO = "kontext-atelier restore"
_LOSSLESS = {".png", ".tif", ".tiff"}
_SIXTEEN_BIT_OK = {".png", ".tif", ".tiff"}


def register(subparsers) -> None:
    lock = subparsers.add_parser(
        "aspect-lock",
        help="resize an image to a Kontext size and save the geometry needed to restore it",
        description=(
            "Resize an image to a Kontext-friendly size (multiples of 16) by cropping, padding or stretching, and "
            "write a geometry JSON that `kontext-atelier restore` uses to return an edit to the original size."
        ),
    )
    lock.add_argument("input", metavar="IN", help="image to lock (PNG, JPEG, TIFF, WebP; 8 or 16 bit)")
    lock.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the resized image")
    lock.add_argument(
        "--geometry-out",
        metavar="JSON",
        help="where to write the geometry (default: OUT with the suffix .geometry.json)",
    )
    lock.add_argument(
        "--mode",
        default="kontext",
        metavar="MODE",
        help="kontext (nearest of the 17 preferred sizes), keep (the input's ratio), a preset "
        f"({', '.join(geometry.RATIO_PRESETS)}) or any W:H (default: kontext)",
    )
    lock.add_argument(
        "--fit", default="crop", choices=geometry.FITS, help="crop, pad or stretch to the target (default: crop)"
    )
    lock.add_argument(
        "--anchor",
        default="center",
        choices=geometry.ANCHORS,
        help="what stays when cropping / where the picture sits when padding",
    )
    lock.add_argument(
        "--megapixels",
        type=float,
        default=None,
        metavar="MP",
        help="target area for ratio modes (1 MP = 1024x1024; at most 2.25)",
    )
    lock.add_argument(
        "--long-side",
        type=int,
        default=None,
        metavar="PX",
        help="target long side for ratio modes (instead of --megapixels)",
    )
    lock.add_argument(
        "--pad-mode", default="edge", choices=geometry.PAD_MODES, help="how --fit pad fills the border (default: edge)"
    )
    lock.add_argument(
        "--pad-color", default="#000000", metavar="COLOR", help="colour for --pad-mode color: #rrggbb or r,g,b"
    )
    lock.add_argument("--mask-out", metavar="PNG", help="also write the padding mask (white = padding)")
    lock.set_defaults(handler=run_lock)

    restore = subparsers.add_parser(
        "restore",
        help="return an edited image to the original's exact size using a geometry JSON",
        description=(
            "Undo `kontext-atelier aspect-lock` on an edited image: remove padding, resample back and re-insert the "
            "cropped margins from the original (bit-identical in PNG/TIFF output)."
        ),
    )
    restore.add_argument("edited", metavar="EDITED", help="the edited image at the locked size")
    restore.add_argument("--geometry", required=True, metavar="JSON", help="the geometry written by aspect-lock")
    restore.add_argument("--original", metavar="IN", help="the image given to aspect-lock (required when it cropped)")
    restore.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the restored image")
    restore.set_defaults(handler=run_restore)


# Image files -------------------------------------------------------------------------------------------------------


def read_image(path: str | Path, who: str) -> tuple[torch.Tensor, int]:
    """Read an image as a float tensor ``[1, H, W, C]`` in 0..1 (C = 1, 3 or 4) and its bit depth (8, 16 or 32)."""
    path = Path(path)
    if not path.is_file():
        raise AtelierError(f"{who}: no such image file: {path}")
    data = np.fromfile(str(path), dtype=np.uint8)  # np.fromfile + imdecode also works with non-ASCII Windows paths
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED) if data.size else None
    if pixels is None:
        raise AtelierError(f"{who}: {path} is not an image this tool can read (use PNG, JPEG, TIFF or WebP).")
    if pixels.ndim == 3 and pixels.shape[2] == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
    elif pixels.ndim == 3 and pixels.shape[2] == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.dtype == np.uint8:
        depth, scaled = 8, pixels.astype(np.float32) / 255.0
    elif pixels.dtype == np.uint16:
        depth, scaled = 16, pixels.astype(np.float32) / 65535.0
    else:
        depth, scaled = 32, pixels.astype(np.float32)
    return torch.from_numpy(np.ascontiguousarray(scaled))[None], depth


def write_image(path: str | Path, image: torch.Tensor, depth: int, who: str) -> None:
    """Write the first image of ``[B, H, W, C]`` at ``depth`` bits (16-bit only where the format allows it)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in _LOSSLESS | {".jpg", ".jpeg", ".webp"}:
        raise AtelierError(f"{who}: cannot write {path.name}; use a .png, .tif, .jpg or .webp file name.")
    if suffix not in _LOSSLESS:
        logger.warning("%s: %s is lossy; use .png to keep the original's margins bit-identical", who, path.name)
    if depth > 8 and suffix not in _SIXTEEN_BIT_OK:
        depth = 8
    plane = image[0].detach().to("cpu", torch.float32).clamp(0, 1).numpy()
    if depth > 8:
        pixels = np.rint(plane * 65535.0).astype(np.uint16)
    else:
        pixels = np.rint(plane * 255.0).astype(np.uint8)
    channels = pixels.shape[2]
    if channels == 3:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR)
    elif channels == 4:
        pixels = cv2.cvtColor(pixels, cv2.COLOR_RGBA2BGRA)
    elif channels == 1:
        pixels = pixels[:, :, 0]
    else:
        raise AtelierError(f"{who}: cannot save an image with {channels} channels; expected 1, 3 or 4.")
    ok, encoded = cv2.imencode(suffix, pixels)
    if not ok:
        raise AtelierError(f"{who}: could not encode {path.name}.")
    path.parent.mkdir(parents=True, exist_ok=True)
    encoded.tofile(str(path))


def read_geometry(path: str | Path, who: str) -> geometry.Geometry:
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise AtelierError(f"{who}: no such geometry file: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AtelierError(f"{who}: {path} is not a readable geometry JSON ({exc}).") from None
    return geometry.Geometry.from_dict(data)


# Commands ----------------------------------------------------------------------------------------------------------


def run_lock(args: argparse.Namespace) -> int:
    who = LOCK_WHO
    if args.megapixels is not None and args.long_side is not None:
        raise AtelierError(f"{who}: give --megapixels or --long-side, not both.")
    image, depth = read_image(args.input, who)
    options = {
        "fit": args.fit,
        "anchor": args.anchor,
        "pad_mode": args.pad_mode,
        "pad_color": geometry.parse_color(args.pad_color, who),
        "who": who,
    }
    if args.long_side is not None:
        options.update(size_by="long_side", long_side=args.long_side)
    elif args.megapixels is not None:
        options.update(size_by="megapixels", megapixels=args.megapixels)
    locked, mask, geo = geometry.lock(image, args.mode, **options)

    geometry_path = Path(args.geometry_out) if args.geometry_out else Path(args.output).with_suffix(".geometry.json")
    write_image(args.output, locked, depth, who)
    geometry_path.parent.mkdir(parents=True, exist_ok=True)
    geometry_path.write_text(json.dumps(geo.to_dict(), indent=2) + "\n", encoding="utf-8")
    if args.mask_out:
        write_image(args.mask_out, mask[..., None], 8, who)
    lw, lh = geometry.latent_size(geo)
    sys.stdout.write(f"{geo.describe()}; latent {lw}x{lh}; geometry {geometry_path}\n")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    who = RESTORE_WHO
    geo = read_geometry(args.geometry, who)
    edited, depth = read_image(args.edited, who)
    original = None
    if args.original:
        original, depth = read_image(args.original, who)
    elif geo.is_cropped:
        raise AtelierError(
            f"{who}: the geometry cropped the image ({geo.describe()}); pass --original with the image given to "
            "aspect-lock so the cropped margins can be put back."
        )
    restored = geometry.restore(edited, geo, original, who=who)
    write_image(args.output, restored, depth, who)
    height, width = restored.shape[1:3]
    sys.stdout.write(f"restored {width}x{height} -> {args.output}\n")
    return 0
