"""Checks every command runs on its file arguments before any work starts.

- Outputs never replace an input: each output is compared with every input by :func:`os.path.samefile` (a hard link,
  a symlink or ``./a.png`` against ``a.png`` is the same file), and two outputs of one command never share a path.
- Outputs are writable names: not a folder, no existing file where a folder of the path should be, and an extension
  the command can write; so a bad ``--mask-out`` is refused before ``-o`` was written, not after.
- Input images are measured from their header before a pixel is decoded, and refused above
  :data:`MAX_INPUT_PIXELS` (the limit the aspect lock and the stitcher nodes apply): a 16000x16000 PNG of a few
  hundred KB would otherwise decode to gigabytes.

ComfyUI-free and torch-free: ``diff-merge`` and the GGUF tools use it without importing torch.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..errors import AtelierError
from ..image.geometry_record import MAX_INPUT_PIXELS

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".tif", ".tiff", ".jpg", ".jpeg", ".webp")
READ_FORMATS = "PNG, JPEG, TIFF or WebP"

# (option as the user typed it, path or None when the option was not given)
Named = tuple[str, "str | os.PathLike[str] | None"]


def _given(items: Iterable[Named]) -> list[tuple[str, Path]]:
    return [(label, Path(path).expanduser()) for label, path in items if path not in (None, "")]


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a symlink loop (RuntimeError before Python 3.13): compare it as written
        return path.absolute()


def _same_file(a: Path, b: Path) -> bool:
    # Resolved paths catch 'missing/../a.png' (the folder made on writing would lead back to a.png); samefile
    # catches hard links and every other spelling of an existing file.
    if _resolved(a) == _resolved(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist (yet)
        return False


def _blocking_ancestor(path: Path) -> Path | None:
    """The nearest existing ancestor of ``path`` when it is not a folder (the output could never be created)."""
    for parent in path.absolute().parents:
        if parent.exists():
            return None if parent.is_dir() else parent
    return None


def _check_one_output(who: str, label: str, path: Path, suffixes: Sequence[str] | None) -> None:
    if path.is_dir():
        raise AtelierError(f"{who}: {label} {path} is a folder; give a file name (e.g. {path / 'result.png'}).")
    blocker = _blocking_ancestor(path)
    if blocker is not None:
        raise AtelierError(
            f"{who}: {label} {path} cannot be written: {blocker} is a file, not a folder. Choose another path."
        )
    if suffixes is not None and path.suffix.lower() not in suffixes:
        raise AtelierError(
            f"{who}: {label} {path} has the extension {path.suffix or '(none)'!r}; use a {', '.join(suffixes)} file name."
        )


def check_outputs(
    who: str,
    inputs: Iterable[Named],
    outputs: Iterable[tuple[str, str | os.PathLike[str] | None, Sequence[str] | None]],
) -> None:
    """Refuse, before any work, an output that would replace an input, two outputs on one path, or an output path
    that cannot be written (a folder, under a file, an extension not in its ``suffixes``; None = any)."""
    given_inputs = _given(inputs)
    given_outputs = [(label, Path(path).expanduser(), sfx) for label, path, sfx in outputs if path not in (None, "")]
    seen: dict[Path, str] = {}
    for label, path, suffixes in given_outputs:
        _check_one_output(who, label, path, suffixes)
        for input_label, input_path in given_inputs:
            if _same_file(path, input_path):
                raise AtelierError(
                    f"{who}: {label} {path} is the input {input_label} {input_path}; writing there would replace it. "
                    "Choose another output name."
                )
        key = _resolved(path)
        if key in seen:
            raise AtelierError(f"{who}: {label} and {seen[key]} are both {path}; give each output its own name.")
        seen[key] = label


def image_size(path: str | os.PathLike[str], who: str, what: str) -> tuple[int, int]:
    """(width, height) from the image header only, refused with a clear message above :data:`MAX_INPUT_PIXELS`,
    for a missing file or for a file that is not an image this tool reads."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise AtelierError(f"{who}: no such {what} file: {path} (it does not exist or is not a file).")
    guard = Image.MAX_IMAGE_PIXELS
    try:
        with warnings.catch_warnings():
            # Pillow's own bomb guard warns, or raises without the size; ours below is lower and says more.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            Image.MAX_IMAGE_PIXELS = None
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        raise AtelierError(
            f"{who}: the {what} {path} is not an image this tool can read ({READ_FORMATS}): {exc}"
        ) from None
    finally:
        Image.MAX_IMAGE_PIXELS = guard
    if width * height > MAX_INPUT_PIXELS:
        side = math.isqrt(MAX_INPUT_PIXELS)
        raise AtelierError(
            f"{who}: the {what} {path} is {width}x{height} ({width * height / 1e6:.1f} million pixels); the limit "
            f"is {MAX_INPUT_PIXELS / 1e6:.1f} million ({side}x{side}), as in the Kontext Atelier nodes. "
            "Downscale it first."
        )
    return width, height
