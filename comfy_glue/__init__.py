"""ComfyUI glue: the runtime code the nodes stand on, which needs ComfyUI's own modules.

- ``kontext_model``: the Kontext Loader's model build (file -> ``ModelPatcher``); the choice of operations it makes
  is ``atelier_core.model.model_ops.choose_operations`` (pure, tested without ComfyUI).
- ``gguf_ops`` / ``fp8_channel_ops``: the layer operations for GGUF weights and for float weights kept as fp8.
- ``model_folders``: the loaders' folder keys in ComfyUI's ``folder_paths``.
- ``host_compat``: the branches for ComfyUI releases that changed an API the pack uses.

``nodes/`` holds the adapters (schema + execute) and imports from here; nothing here defines a node.
"""
