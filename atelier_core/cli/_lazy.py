"""Parser pieces that name things from heavy modules without importing them.

Building the parser (``kontext-atelier --help``, ``prompt``, ``doctor``) must not import torch, which costs seconds.
Subcommands whose options list names defined next to torch code (geometry presets, quantization recipes) take them
through :class:`LazyNames`, and their handlers through :func:`handler`; both import the module on first use.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence

_PACKAGE = __name__.rsplit(".", 2)[0]  # atelier_core


def _load(module: str):
    return importlib.import_module(module, _PACKAGE)


class LazyNames(Sequence):
    """``getattr(module, attr)`` (a tuple of strings), read the first time argparse looks at it: when an option
    with these ``choices`` is given or a subcommand's help is printed. Give such options an explicit ``metavar``
    (argparse would otherwise spell the choices out while the parser is built)."""

    def __init__(self, module: str, attr: str):
        self._module, self._attr, self._names = module, attr, None

    def _get(self) -> tuple[str, ...]:
        if self._names is None:
            self._names = tuple(getattr(_load(self._module), self._attr))
        return self._names

    def __getitem__(self, index):
        return self._get()[index]

    def __len__(self) -> int:
        return len(self._get())

    def __contains__(self, value) -> bool:
        return value in self._get()

    def __str__(self) -> str:
        return ", ".join(self._get())


def handler(module: str, function: str) -> Callable:
    """A subcommand handler that imports ``module`` (relative to ``atelier_core``) when the command runs."""

    def run(args):
        return getattr(_load(module), function)(args)

    run.__name__ = function
    return run
