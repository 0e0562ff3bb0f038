"""JSON from user-editable files, read within limits.

``json.loads`` trusts its input: a file nested 100,000 deep raises ``RecursionError``, a 5,000-digit number raises
a bare ``ValueError`` (Python's int-conversion limit), ``1e999`` quietly becomes ``inf`` and a multi-GB file is read
whole. Any of these in a vocabulary, workflow, batch-state or geometry file must become one clear message naming
the file, never a library traceback (and never a pack that fails to import). :func:`load_json_limited` checks size,
nesting and number length on the raw text before the parser sees it, so a hostile file is refused in
milliseconds and without building the structure it describes.

ComfyUI-free: the nodes and the command line both use it.
"""

from __future__ import annotations

import json
import math
import os
import re

from .errors import AtelierError

# Defaults sized for the files the pack reads (a vocabulary is ~20 KB, a workflow ~50 KB, nesting < 12 deep).
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_NUMBER_DIGITS = 40

# A JSON string literal, escapes included; removed before counting brackets and digits so that text such as
# "[[[" or "12345678901234567890" inside a string is not mistaken for structure or a number.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class JsonLimitError(AtelierError):
    """A user JSON file that is unreadable, invalid, or beyond the size/depth/number limits."""


def load_json_limited(
    path_or_text: str | bytes | os.PathLike,
    *,
    max_bytes: int = DEFAULT_MAX_BYTES,
    max_depth: int = DEFAULT_MAX_DEPTH,
    max_number_digits: int = DEFAULT_MAX_NUMBER_DIGITS,
    what: str = "JSON file",
):
    """Parse JSON within limits and return the value; raise :class:`JsonLimitError` naming ``what`` otherwise.

    ``path_or_text``: an ``os.PathLike`` (``pathlib.Path``) is read from disk (at most ``max_bytes + 1`` bytes are
    read, so a huge file or a device costs nothing); a ``str`` or ``bytes`` is the JSON text itself. ``what``
    names the source in messages, e.g. ``"vocabulary file /home/me/vocabulary.json"``. Refused: more than
    ``max_bytes`` bytes, arrays/objects nested deeper than ``max_depth``, a number with a run of more than
    ``max_number_digits`` digits, ``NaN``/``Infinity`` and numbers that overflow to infinity, text that is not
    UTF-8 (a leading byte-order mark is accepted), and anything ``json`` rejects.
    """
    text = _read_text(path_or_text, max_bytes, what)
    if not text.strip():
        raise JsonLimitError(f"The {what} is empty; fill it in or delete it.")
    _check_structure(text, max_depth, max_number_digits, what)
    try:
        return json.loads(text, parse_constant=_reject_constant, parse_float=_finite_float)
    except json.JSONDecodeError as exc:
        raise JsonLimitError(
            f"The {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix or replace it."
        ) from None
    except _NonFinite as exc:
        raise JsonLimitError(f"The {what} holds {exc.args[0]}, which is not a finite number; fix the value.") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # the pre-checks should make these unreachable
        raise JsonLimitError(
            f"The {what} could not be parsed ({type(exc).__name__}: {exc}); fix or replace it."
        ) from None


def _read_text(path_or_text, max_bytes: int, what: str) -> str:
    if isinstance(path_or_text, os.PathLike):
        try:
            with open(path_or_text, "rb") as handle:
                data = handle.read(max_bytes + 1)
        except OSError as exc:
            raise JsonLimitError(
                f"Could not read the {what} ({exc.strerror or exc}); check that it exists and is readable."
            ) from None
    elif isinstance(path_or_text, (bytes, bytearray)):
        data = bytes(path_or_text)
    else:
        text = str(path_or_text)
        if len(text) > max_bytes and len(text.encode("utf-8")) > max_bytes:
            raise JsonLimitError(f"The {what} is larger than {max_bytes:,} bytes; it cannot be a file of this kind.")
        return text.removeprefix("\ufeff")
    if len(data) > max_bytes:
        raise JsonLimitError(f"The {what} is larger than {max_bytes:,} bytes; it cannot be a file of this kind.")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise JsonLimitError(
            f"The {what} is not UTF-8 text (byte {exc.start}: {exc.reason}); save it as UTF-8 JSON."
        ) from None


def _check_structure(text: str, max_depth: int, max_number_digits: int, what: str) -> None:
    # Strings become "" (C-level substitution, no per-string Python call); JSON strings hold no raw newline, so
    # line numbers are unchanged.
    bare = _STRING.sub('""', text)
    digits = re.search(rf"\d{{{max_number_digits + 1},}}", bare)
    if digits:
        line = bare.count("\n", 0, digits.start()) + 1
        raise JsonLimitError(
            f"The {what} holds a number with more than {max_number_digits} digits (near line {line}); "
            "no setting needs one that long, fix the value."
        )
    if _max_depth(bare) > max_depth:
        raise JsonLimitError(
            f"The {what} is nested more than {max_depth} levels deep; no file of this kind needs that, "
            "fix or replace it."
        )


def _max_depth(bare: str) -> int:
    """The deepest nesting of brackets, as a running sum over the bracket characters (vectorised: a 200,000-deep
    header takes milliseconds, where a Python loop over its brackets took a second)."""
    brackets = _NOT_BRACKET.sub("", bare)
    if not brackets:
        return 0
    import numpy as np

    codes = np.frombuffer(brackets.encode("ascii"), dtype=np.uint8)
    steps = np.where((codes == ord("[")) | (codes == ord("{")), 1, -1).astype(np.int64)
    return int(np.cumsum(steps).max())


class _NonFinite(Exception):
    pass


def _reject_constant(name: str):
    raise _NonFinite(name)


def _finite_float(literal: str) -> float:
    value = float(literal)
    if not math.isfinite(value):
        raise _NonFinite(literal)
    return value
