"""The ``kontext-atelier`` command line.

Each subcommand lives in its own module that defines ``register(subparsers)``; add it to ``_COMMANDS``.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from .. import __version__
from ..errors import AtelierError

# Modules (relative to this package) that contribute subcommands.
_COMMANDS: tuple[str, ...] = (
    "prompt",
    "aspect",
    "diffmerge",
    "gguf_tools",
    "run",
    "doctor",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kontext-atelier",
        description="Kontext Atelier: FLUX.1 Kontext editing tools that work with or without a running ComfyUI.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in _COMMANDS:
        importlib.import_module(f".{name}", __name__).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    if not getattr(args, "handler", None):
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(args.handler(args) or 0)
    except AtelierError as exc:
        sys.stderr.write(f"error: {exc}\n")
        return 2
    except KeyboardInterrupt:
        sys.stderr.write("interrupted\n")
        return 130
