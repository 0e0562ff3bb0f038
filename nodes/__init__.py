"""ComfyUI adapters for Kontext Atelier.

Each module here is a thin V3 wrapper (``io.ComfyNode``) around the ComfyUI-free algorithms in ``atelier_core``
and exports ``NODES``: the node classes it contributes. Add a module to ``_NODE_MODULES`` to register it.
"""

from __future__ import annotations

import importlib

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

# Module names relative to this package, in the order their nodes appear in the node library.
_NODE_MODULES: tuple[str, ...] = (
    "loader",
    "text_encoder",
    "prompt",
    "aspect",
    "diffmerge",
    "stitch",
    "compile_blocks",
)


def node_classes() -> list[type[io.ComfyNode]]:
    """Import every node module and collect its ``NODES`` list (called by ComfyUI through the extension)."""
    classes: list[type[io.ComfyNode]] = []
    for name in _NODE_MODULES:
        module = importlib.import_module(f".{name}", __name__)
        classes.extend(module.NODES)
    return classes


class AtelierExtension(ComfyExtension):
    """The one extension object ComfyUI receives from ``comfy_entrypoint``."""

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        return node_classes()
