"""Which model files a workflow loads, and the one message a missing one gets.

The Kontext nodes' input validation (inside ComfyUI), ``kontext-atelier run`` (before it queues) and
``kontext-atelier doctor`` all word a missing file the same way: the file, the ComfyUI folder it goes in and where
to download it (from ``model_catalog``), so a user reads one kind of line wherever the check happens. Core's loaders
answer a missing file with a bare "Value not in list"; ``explain_missing_files`` words those the same way in a
refused prompt's errors (the server passes them through it, ``comfy_glue.prompt_errors``).
"""

from __future__ import annotations

from . import model_catalog

# The loader inputs of the nodes the shipped workflows use (ours and core's): class_type -> {input: model folder}.
LOADER_INPUTS: dict[str, dict[str, str]] = {
    "AtelierKontextLoader": {"model_name": "diffusion_models"},
    "AtelierKontextTextEncoders": {"clip_l_name": "text_encoders", "t5_name": "text_encoders"},
    "UNETLoader": {"unet_name": "diffusion_models"},
    "DualCLIPLoader": {"clip_name1": "text_encoders", "clip_name2": "text_encoders"},
    "CLIPLoader": {"clip_name": "text_encoders"},
    "VAELoader": {"vae_name": "vae"},
    "LoraLoaderModelOnly": {"lora_name": "loras"},
    "LoraLoader": {"lora_name": "loras"},
    "CheckpointLoaderSimple": {"ckpt_name": "checkpoints"},
}
# The older folder ComfyUI reads beside each (models/unet for diffusion_models, models/clip for text_encoders).
LEGACY_FOLDERS = {"diffusion_models": "unet", "text_encoders": "clip"}
MODEL_SUFFIXES = (".gguf", ".safetensors", ".sft", ".ckpt", ".pt", ".pth", ".bin")


def folder_text(directory: str) -> str:
    legacy = LEGACY_FOLDERS.get(directory)
    return f"ComfyUI/models/{directory}/" + (f" (or models/{legacy}/)" if legacy else "")


def missing_message(name: str, directory: str) -> str:
    """One line for a missing model file: what it is, where it goes, where it comes from."""
    entry = model_catalog.BY_NAME.get(name.replace("\\", "/").rsplit("/", 1)[-1])
    where = folder_text(entry["directory"] if entry else directory)
    if entry:
        return f"model file {name} is missing: download {entry['url']} into {where}"
    return f"model file {name} is missing: put it in {where} (or pick a file that is there)"


def workflow_models(prompt: dict) -> list[tuple[str, str, str, str]]:
    """(node id, input name, file name, model folder) for each model file an API-format workflow loads.

    Only plain file values count: a linked input is chosen at run time, and VAELoader's built-in choices (taesd,
    pixel_space) are not files.
    """
    found = []
    for node_id, node in prompt.items():
        for input_name in LOADER_INPUTS.get(node.get("class_type"), {}):
            value = (node.get("inputs") or {}).get(input_name)
            directory = _model_folder(node.get("class_type"), input_name, value)
            if directory:
                found.append((str(node_id), input_name, value, directory))
    return found


def _model_folder(class_type, input_name, value) -> str | None:
    """The model folder when ``value`` is a model file name on a loader's file input, else None."""
    if not (isinstance(class_type, str) and isinstance(input_name, str)):
        return None
    directory = LOADER_INPUTS.get(class_type, {}).get(input_name)
    if directory and isinstance(value, str) and value.lower().endswith(MODEL_SUFFIXES):
        return directory
    return None


def missing_models(prompt: dict, available) -> list[tuple[str, str, str, str]]:
    """The entries of ``workflow_models`` whose file ``available(node id, input name, file name)`` says is absent,
    each file once."""
    seen: set[str] = set()
    missing = []
    for entry in workflow_models(prompt):
        node_id, input_name, name, _ = entry
        if name not in seen and not available(node_id, input_name, name):
            seen.add(name)
            missing.append(entry)
    return missing


def _missing_file_detail(class_type: str, error: dict) -> str | None:
    """Our line for one of core's value_not_in_list errors when it is a loader's model file, else None."""
    if not isinstance(error, dict) or error.get("type") != "value_not_in_list":
        return None
    extra = error.get("extra_info")
    if not isinstance(extra, dict):
        return None
    input_name, value = extra.get("input_name"), extra.get("received_value")
    directory = _model_folder(class_type, input_name, value)
    return f"{input_name}: {missing_message(value, directory)}" if directory else None


def explain_missing_files(response: dict) -> bool:
    """Reword, in a refused prompt's answer ({"error", "node_errors"}), each core loader's "Value not in list" for a
    model file as our missing-file line (file, folder, download), in place; True when anything changed.

    Only the ``details`` text changes (it listed every file of the folder, or ``[]``): type, message and extra_info
    stay, so clients that read them see core's error."""
    node_errors = response.get("node_errors")
    if not isinstance(node_errors, dict):
        return False
    changed = False
    for node_error in node_errors.values():
        if not isinstance(node_error, dict) or not isinstance(node_error.get("errors"), list):
            continue
        for error in node_error["errors"]:
            detail = _missing_file_detail(node_error.get("class_type"), error)
            if detail is not None:
                error["details"] = detail
                changed = True
    return changed
