"""``kontext-atelier doctor``'s model check: for each chosen shipped workflow, which of the files it loads are missing.

The workflows come from the package itself (``atelier_core/data/workflows``, what ``pip install .`` ships, or the
checkout's ``workflows/api``), so an installed doctor checks the same files a run needs. The files present are the
server's own lists when a ComfyUI answers (what its loaders offer, ``extra_model_paths.yaml`` folders included),
else the ComfyUI folder's ``models/`` on disk.
"""

from __future__ import annotations

from pathlib import Path

from ..model_check import LEGACY_FOLDERS, MODEL_SUFFIXES, missing_message, missing_models, workflow_models
from ..workflow_fill import available_workflows, load_workflow
from .model_precheck import server_availability

KONTEXT_PREFIX = "kontext_"
# The plain edits come first: one of them is what a new user runs first.
FIRST = ("kontext_edit_gguf", "kontext_edit_gguf_t5", "kontext_edit_fp8")


def chosen_workflows(names: list[str], include_other: bool) -> list[tuple[str, dict]]:
    """(name, API prompt) of the workflows to check: those named, else every Kontext one (then, with
    ``include_other``, the FLUX.2 and Qwen-Image ones)."""
    if names:
        return [load_workflow(name) for name in names]
    shipped = available_workflows()
    kontext = sorted(
        (n for n in shipped if n.startswith(KONTEXT_PREFIX)),
        key=lambda n: (n not in FIRST, FIRST.index(n) if n in FIRST else 0, n),
    )
    other = [n for n in shipped if not n.startswith(KONTEXT_PREFIX)] if include_other else []
    return [load_workflow(name) for name in kontext + other]


def local_folders(root: Path) -> dict[str, list[Path]]:
    """Model folder kind -> the folders ComfyUI reads it from under ``root`` (models/unet and models/clip too)."""
    kinds = {"diffusion_models", "text_encoders", "vae", "loras", "checkpoints"}
    return {
        k: [root / "models" / k] + ([root / "models" / LEGACY_FOLDERS[k]] if k in LEGACY_FOLDERS else []) for k in kinds
    }


def server_folders(folder_paths: dict) -> dict[str, list[Path]]:
    """The same from a server's ``/internal/folder_paths`` (its ``unet`` and ``clip`` are merged into
    ``diffusion_models`` and ``text_encoders`` already)."""
    return {kind: [Path(p) for p in paths] for kind, paths in folder_paths.items() if isinstance(paths, list)}


def files_in(folders: list[Path]) -> dict[str, Path]:
    """Relative name (as a loader lists it, subfolders with ``/``) -> path, for the model files in ``folders``."""
    found: dict[str, Path] = {}
    for folder in folders:
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in MODEL_SUFFIXES and path.is_file():
                found.setdefault(path.relative_to(folder).as_posix(), path)
    return found


def folder_availability(folders: dict[str, list[Path]]):
    """``available(node id, input name, file name)`` from files on disk, for the folder kind of each loader input."""
    listed: dict[str, dict[str, Path]] = {}
    kinds: dict[tuple[str, str], str] = {}

    def available(node_id: str, input_name: str, name: str) -> bool:
        kind = kinds.get((node_id, input_name), "")
        if kind not in listed:
            listed[kind] = files_in(folders.get(kind, []))
        return name.replace("\\", "/") in listed[kind]

    def for_prompt(prompt: dict):
        for node_id, input_name, _, kind in workflow_models(prompt):
            kinds[(node_id, input_name)] = kind
        return available

    return for_prompt


def cached_object_info(client):
    answers: dict[str, dict] = {}

    def object_info(class_type: str) -> dict:
        if class_type not in answers:
            answers[class_type] = client.object_info(class_type)
        return answers[class_type]

    return object_info


def check_workflows(report, workflows: list[tuple[str, dict]], availability_for) -> list[str]:
    """Report each workflow's missing files, then each missing file once with its folder and download. Return the
    names of the workflows that have all their files."""
    ready = []
    missing_files: dict[str, tuple[str, list[str]]] = {}
    for name, prompt in workflows:
        missing = missing_models(prompt, availability_for(prompt))
        count = len({entry[2] for entry in workflow_models(prompt)})
        if not missing:
            report.ok(f"{name}: its {count} model file(s) are there")
            ready.append(name)
            continue
        files = [entry[2] for entry in missing]
        report.missing_line(f"{name}: {len(files)} of {count} model file(s) missing: {', '.join(files)}")
        for _, _, file_name, directory in missing:
            missing_files.setdefault(file_name, (directory, []))[1].append(name)
    if missing_files:
        report.section("Files to fetch")
        for file_name, (directory, users) in missing_files.items():
            report.missing_line(missing_message(file_name, directory))
            report.info(f"used by {', '.join(users)}")
            report.problems.append(f"{file_name} (models/{directory})")
    return ready


def availability(client, folders: dict[str, list[Path]] | None, server_has_pack: bool):
    """The server's loader lists when it runs the pack, else the files in ``folders``."""
    if client is not None and server_has_pack:
        object_info = cached_object_info(client)
        return lambda prompt: server_availability(object_info, prompt)
    return folder_availability(folders or {})
