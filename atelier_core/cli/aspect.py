"""``kontext-atelier aspect-lock`` and ``kontext-atelier restore``: the two geometry nodes on the command line.

    kontext-atelier aspect-lock photo.png -o locked.png --geometry-out photo.geometry.json --mode kontext --fit pad
    kontext-atelier restore edited.png --geometry photo.geometry.json --original photo.png -o final.png

Images are read with their bit depth (8- or 16-bit PNG/TIFF, grey, RGB or RGBA) and written back at the original's
depth, so the margins a crop removed come back bit-identical in a PNG or TIFF output (JPEG/WebP re-encode them).
One line describing the result goes to standard output. The commands live in ``atelier_core.cli.aspect_commands``
(which imports torch), imported when one runs.
"""

from __future__ import annotations

from pathlib import Path

from ..errors import AtelierError
from ..image.geometry_record import MAX_INPUT_PIXELS, Geometry
from ._lazy import LazyNames, handler

_IMPL = ".cli.aspect_commands"
LOCK_WHO = "kontext-atelier aspect-lock"
RESTORE_WHO = "kontext-atelier restore"
GEOMETRY_MAX_BYTES = 64 * 1024
_LIMIT = f"{MAX_INPUT_PIXELS / 1e6:.1f} million pixels, the nodes' limit"


def geometry_path(args) -> Path:
    return Path(args.geometry_out) if args.geometry_out else Path(args.output).with_suffix(".geometry.json")


def _checked(run, check):
    """Run ``check(args)`` (torch-free) before ``run`` imports torch (seconds): a refusal comes at once."""

    def checked(args):
        check(args)
        return run(args)

    checked.__name__ = run.__name__
    return checked


def _check_lock(args) -> None:
    from .file_checks import IMAGE_SUFFIXES, check_outputs, image_size

    outputs = [("-o", args.output, IMAGE_SUFFIXES), ("--geometry-out", geometry_path(args), None)]
    check_outputs(LOCK_WHO, [("IN", args.input)], [*outputs, ("--mask-out", args.mask_out, IMAGE_SUFFIXES)])
    image_size(args.input, LOCK_WHO, "image")


def read_geometry(path: str | Path, who: str) -> Geometry:
    """The geometry JSON, read within limits and validated (torch-free: restore checks it before importing torch)."""
    from ..safe_json import load_json_limited

    path = Path(path)
    if not path.is_file():
        raise AtelierError(f"{who}: no such geometry file: {path}")
    # A geometry is ~1 KB and 2 levels deep; the limits refuse a hostile file before parsing it.
    try:
        data = load_json_limited(
            path, max_bytes=GEOMETRY_MAX_BYTES, max_depth=4, max_number_digits=24, what=f"geometry file {path}"
        )
    except AtelierError as exc:
        raise AtelierError(f"{who}: {path} is not a readable geometry JSON. {exc}") from None
    try:
        return Geometry.from_dict(data)
    except AtelierError as exc:
        raise AtelierError(f"{who}: {path}: {exc}") from None


def _check_restore(args) -> None:
    from .file_checks import IMAGE_SUFFIXES, check_outputs, image_size

    inputs = [("EDITED", args.edited), ("--geometry", args.geometry), ("--original", args.original)]
    check_outputs(RESTORE_WHO, inputs, [("-o", args.output, IMAGE_SUFFIXES)])
    read_geometry(args.geometry, RESTORE_WHO)
    for name, path in (("edited image", args.edited), ("original", args.original)):
        if path:
            image_size(path, RESTORE_WHO, name)


def register(subparsers) -> None:
    lock = subparsers.add_parser(
        "aspect-lock",
        help="resize an image to a Kontext size and save the geometry needed to restore it",
        description=(
            "Resize an image to a Kontext-friendly size (multiples of 16) by cropping, padding or stretching, and "
            "write a geometry JSON that `kontext-atelier restore` uses to return an edit to the original size."
        ),
    )
    lock.add_argument(
        "input", metavar="IN", help=f"image to lock (PNG, JPEG, TIFF, WebP; 8 or 16 bit; at most {_LIMIT})"
    )
    lock.add_argument("-o", "--output", required=True, metavar="OUT", help="where to write the resized image")
    lock.add_argument(
        "--geometry-out",
        metavar="JSON",
        help="where to write the geometry (default: OUT with the suffix .geometry.json)",
    )
    mode = lock.add_argument(
        "--mode",
        default="kontext",
        metavar="MODE",
        help="kontext (nearest of the 17 preferred sizes), keep (the input's ratio), a preset "
        "(%(presets)s) or any W:H (default: kontext)",
    )
    mode.presets = LazyNames(".image.geometry", "RATIO_PRESETS")  # argparse fills %(presets)s from the action
    lock.add_argument(
        "--fit",
        default="crop",
        choices=LazyNames(".image.geometry", "FITS"),
        metavar="FIT",
        help="%(choices)s: how to reach the target (default: crop)",
    )
    lock.add_argument(
        "--anchor",
        default="center",
        choices=LazyNames(".image.geometry", "ANCHORS"),
        metavar="ANCHOR",
        help="%(choices)s: what stays when cropping / where the picture sits when padding",
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
        "--pad-mode",
        default="edge",
        choices=LazyNames(".image.geometry", "PAD_MODES"),
        metavar="PAD_MODE",
        help="%(choices)s: how --fit pad fills the border (default: edge)",
    )
    lock.add_argument(
        "--pad-color", default="#000000", metavar="COLOR", help="colour for --pad-mode color: #rrggbb or r,g,b"
    )
    lock.add_argument("--mask-out", metavar="PNG", help="also write the padding mask (white = padding)")
    lock.set_defaults(handler=_checked(handler(_IMPL, "run_lock"), _check_lock))

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
    restore.set_defaults(handler=_checked(handler(_IMPL, "run_restore"), _check_restore))
