"""Model files in ComfyUI's model folders (``extra_model_paths.yaml`` included), for the loader nodes' combos.

A loader names the ComfyUI folder kinds it reads (``diffusion_models`` + ``unet``, ``text_encoders`` + ``clip``):
``list_files`` fills its combo, ``resolve`` finds the chosen file again without ever leaving those folders
(``ComfyUI 0.3.64`` does not check V3 combo values, so a name with ``../`` reaches the node).
"""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ..atelier_core.errors import AtelierError
from ..atelier_core.model_files import safe_join


def folders(kinds: tuple[str, ...]) -> list[str]:
    """Every folder ComfyUI knows for these kinds, first occurrence first."""
    found: list[str] = []
    for kind in kinds:
        try:
            found += [path for path in folder_paths.get_folder_paths(kind) if path not in found]
        except KeyError:
            continue
    return found


def list_files(kinds: tuple[str, ...], extensions: tuple[str, ...]) -> list[str]:
    """The files with these extensions under the kinds' folders (subfolders included), as relative names."""
    names: set[str] = set()
    for folder in folders(kinds):
        if Path(folder).is_dir():
            files, _ = folder_paths.recursive_search(folder, excluded_dir_names=[".git"])
            names.update(f for f in files if f.lower().endswith(extensions))
    return sorted(names)


def resolve(name: str, kinds: tuple[str, ...], what: str, where: str) -> Path:
    """The file `name` in the kinds' folders; else an AtelierError starting with `what` and telling to put it
    `where`."""
    searched = folders(kinds)
    for folder in searched:
        candidate = safe_join(Path(folder), name)
        if candidate.is_file():
            return candidate
    raise AtelierError(
        f"{what} '{name}' was not found in {', '.join(searched) or 'any model folder'}; put it in {where} and "
        "refresh the node list"
    )
