"""JSON from user-editable files, read within limits.

``json.loads`` trusts its input: a file nested 100,000 deep raises ``RecursionError``, a 5,000-digit number raises
a bare ``ValueError`` (Python's int-conversion limit), ``1e999`` quietly becomes ``inf`` and a multi-GB file is read
whole. Any of these in a vocabulary, workflow, batch-state or geometry file must become one clear message naming
the file, never a library traceback (and never a pack that fails to import). :func:`load_json_limited` reads at most
``max_bytes``, lets json's C scanner stop deep nesting at the recursion limit (microseconds, nothing built), checks
each number literal in json's own hooks before ``int()``/``float()`` see it, and walks the result for its depth.

ComfyUI-free: the nodes and the command line both use it.
"""

from __future__ import annotations

import json
import math
import os

from .errors import AtelierError

# Defaults sized for the files the pack reads (a vocabulary is ~20 KB, a workflow ~50 KB, nesting < 12 deep).
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
DEFAULT_MAX_DEPTH = 64
DEFAULT_MAX_NUMBER_DIGITS = 40


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
    number = _Number(max_number_digits)
    try:
        value = json.loads(text, parse_int=number.parse_int, parse_float=number.parse_float, parse_constant=_reject)
    except json.JSONDecodeError as exc:
        raise JsonLimitError(
            f"The {what} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); fix or replace it."
        ) from None
    except RecursionError:  # json's C scanner stops at the interpreter's recursion limit, in microseconds
        raise JsonLimitError(_too_deep(what, max_depth)) from None
    except _NumberError as exc:
        raise JsonLimitError(
            f"The {what} holds {exc.args[0]} (near line {_line_of(text, exc.args[1])}); fix the value."
        ) from None
    except (ValueError, MemoryError) as exc:
        raise JsonLimitError(
            f"The {what} could not be parsed ({type(exc).__name__}: {exc}); fix or replace it."
        ) from None
    if _depth(value) > max_depth:
        raise JsonLimitError(_too_deep(what, max_depth))
    return value


def _too_deep(what: str, max_depth: int) -> str:
    return (
        f"The {what} is nested more than {max_depth} levels deep; no file of this kind needs that, fix or replace it."
    )


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


def _depth(value) -> int:
    """Nesting depth of a parsed value (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, level = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))
    return deepest


class _NumberError(Exception):
    """(what is wrong, the literal)"""


class _Number:
    """json's number hooks, refusing long literals before ``int()`` meets Python's 4,300-digit limit."""

    def __init__(self, max_digits: int) -> None:
        self.max_digits = max_digits

    def _check(self, literal: str) -> None:
        if sum(ch.isdigit() for ch in literal) > self.max_digits:
            raise _NumberError(f"a number with more than {self.max_digits} digits", literal[:20])

    def parse_int(self, literal: str) -> int:
        self._check(literal)
        return int(literal)

    def parse_float(self, literal: str) -> float:
        self._check(literal)
        value = float(literal)
        if not math.isfinite(value):
            raise _NumberError(f"{literal}, which is not a finite number", literal)
        return value


def _reject(name: str):
    raise _NumberError(f"{name}, which is not a finite number", name)


def _line_of(text: str, literal: str) -> int:
    found = text.find(literal)
    return text.count("\n", 0, found) + 1 if found >= 0 else 1
