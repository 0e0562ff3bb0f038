"""ComfyUI adapters for Kontext Atelier.

Each module here is a thin V3 wrapper (``io.ComfyNode``) around the ComfyUI-free algorithms in ``atelier_core``
and exports ``NODES``: the node classes it contributes. Add a module to ``_NODE_MODULES`` to register it.
"""

from __future__ import annotations

import importlib
import logging

from comfy_api.latest import ComfyExtension, io
from typing_extensions import override

logger = logging.getLogger(__name__)

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
        try:
            module = importlib.import_module(f".{name}", __name__)
        except Exception:
            # One broken module (a missing optional library, a bug) must not take every other node down with it:
            # ComfyUI would log IMPORT FAILED and drop the whole pack.
            logger.exception("Kontext Atelier: the %s nodes could not be loaded; the other nodes are", name)
            continue
        classes.extend(module.NODES)
    return classes


class AtelierExtension(ComfyExtension):
    """The one extension object ComfyUI receives from ``comfy_entrypoint``."""

    @override
    async def get_node_list(self) -> list[type[io.ComfyNode]]:
        # Called once per server start on every release (on_load only from 0.4 on), before the server serves.
        _explain_missing_models_in_refusals()
        return node_classes()


def _explain_missing_models_in_refusals() -> None:
    try:
        from ..comfy_glue import prompt_errors

        prompt_errors.install()
    except Exception:
        # A server that does not take it still runs every node; its refusals keep core's wording.
        logger.exception("Kontext Atelier: could not add the missing-model wording to refused prompts")
