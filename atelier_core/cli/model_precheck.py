"""``kontext-atelier run``'s check, before it uploads or queues anything, that the server has every model file the
workflow loads.

The server's own lists decide: each loader's file choices in ``/object_info`` (what its combo offers, so
``extra_model_paths.yaml`` folders and the Kontext Loader's ``.gguf`` files count), compared with the files the
filled workflow names. One line per missing file, with its folder and download (``atelier_core.model_check``).
"""

from __future__ import annotations

from ..errors import AtelierError
from ..model_check import missing_message, missing_models, workflow_models
from .comfy_client import describe_node


def combo_options(spec) -> list | None:
    """The choices of an ``/object_info`` input spec: V1 ``[[...], {...}]`` or V3 ``["COMBO", {"options": [...]}]``;
    None when the input is not a choice."""
    if not isinstance(spec, list) or not spec:
        return None
    if isinstance(spec[0], list):
        return spec[0]
    if spec[0] == "COMBO" and len(spec) > 1 and isinstance(spec[1], dict):
        return list(spec[1].get("options") or [])
    return None


def _input_spec(info: dict, input_name: str):
    sections = info.get("input") or {}
    return (sections.get("required") or {}).get(input_name) or (sections.get("optional") or {}).get(input_name)


def server_availability(object_info, prompt: dict):
    """``available(node id, input name, file name)`` from the server's own lists: a file counts when the loader's
    choice in ``/object_info/<class_type>`` offers it. ``object_info(class_type)`` asks the server; a node it does not
    know, or an input that is not a choice, is left to ComfyUI's validation (counted as available)."""
    infos: dict[str, dict] = {}
    for node_id, *_ in workflow_models(prompt):
        class_type = prompt[node_id]["class_type"]
        if class_type not in infos:
            infos[class_type] = (object_info(class_type) or {}).get(class_type) or {}

    def available(node_id: str, input_name: str, name: str) -> bool:
        options = combo_options(_input_spec(infos[prompt[node_id]["class_type"]], input_name))
        return options is None or name in options

    return available


def missing_on_server(object_info, prompt: dict) -> list[str]:
    """One line per model file the server lacks (file, folder, download, node)."""
    available = server_availability(object_info, prompt)
    return [
        f"{missing_message(name, directory)} (node {describe_node(node_id, None, prompt)})"
        for node_id, _, name, directory in missing_models(prompt, available)
    ]


def check_server_models(client, prompt: dict) -> None:
    """Raise an AtelierError listing every missing model file; nothing has been queued then."""
    lines = missing_on_server(client.object_info, prompt)
    if lines:
        raise AtelierError(
            f"the server at {client.base} lacks {len(lines)} model file(s) this workflow loads; nothing was queued. "
            "Put the files in place, then run the same command again:\n" + "\n".join(f"  {line}" for line in lines)
        )
