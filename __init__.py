"""Kontext Atelier: FLUX.1 Kontext [dev] editing nodes for ComfyUI.

ComfyUI loads this folder from ``custom_nodes/`` and calls :func:`comfy_entrypoint`. Importing this module does
nothing else: node modules are imported only when ComfyUI asks for the extension.
"""

WEB_DIRECTORY = "./js"


async def comfy_entrypoint():
    """Return the V3 extension that lists every Atelier node (called once by ComfyUI's custom-node loader)."""
    from .nodes import AtelierExtension

    return AtelierExtension()


__all__ = ["WEB_DIRECTORY", "comfy_entrypoint"]
