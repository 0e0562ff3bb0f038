"""The ``aspect-lock`` and ``restore`` commands (parsers in ``atelier_core.cli.aspect``): image files in and out at
their bit depth, and the two geometry operations between them."""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import cv2
import numpy as np
import torch

from ..errors import AtelierError
from ..image import geometry
from . import aspect
from .file_checks import image_size

logger = logging.getLogger(__name__)

LOCK_WHO = aspect.LOCK_WHO
RESTORE_WHO = aspect.RESTORE_WHO
_LOSSLESS = {".png", ".tif", ".tiff"}
_SIXTEEN_BIT_OK = {".png", ".tif", ".tiff"}


# Image files -------------------------------------------------------------------------------------------------------


def read_image(path: str | Path, who: str) -> tuple[torch.Tensor, int]:
    """Read an image as a float tensor ``[1, H, W, C]`` in 0..1 (C = 1, 3 or 4) and its bit depth (8, 16 or 32)."""
    path = Path(path)
    image_size(path, who, "image")  # the header first: a small file can describe gigabytes of pixels
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
    _save(path, encoded.tobytes(), who)


def _save(path: Path, data: bytes, who: str) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    except OSError as exc:
        raise AtelierError(f"{who}: cannot write {path} ({exc.strerror or exc}); choose another path.") from None


# Commands ----------------------------------------------------------------------------------------------------------


def run_lock(args: argparse.Namespace) -> int:
    who = LOCK_WHO
    if args.megapixels is not None and args.long_side is not None:
        raise AtelierError(f"{who}: give --megapixels or --long-side, not both.")
    geometry_path = aspect.geometry_path(args)
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

    write_image(args.output, locked, depth, who)
    _save(geometry_path, (json.dumps(geo.to_dict(), indent=2) + "\n").encode("utf-8"), who)
    if args.mask_out:
        write_image(args.mask_out, mask[..., None], 8, who)
    lw, lh = geometry.latent_size(geo)
    sys.stdout.write(f"{geo.describe()}; latent {lw}x{lh}; geometry {geometry_path}\n")
    return 0


def run_restore(args: argparse.Namespace) -> int:
    who = RESTORE_WHO
    geo = aspect.read_geometry(args.geometry, who)
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
