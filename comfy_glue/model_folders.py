"""Model files through ComfyUI's ``folder_paths``, for the loader nodes' combos.

Each loader registers one folder key that shares the folder list of a ComfyUI kind (``diffusion_models``, which
holds ``models/unet`` too; ``text_encoders``, which holds ``models/clip``), so ``extra_model_paths.yaml`` and
folders added later apply, but lists its own extensions (ComfyUI's kinds do not list ``.gguf``). Listing, its
cache, symlinked files and the guard against ``../`` names (ComfyUI 0.3.64 does not check V3 combo values, so
such a name reaches the node) are ``folder_paths``'s.
"""

from __future__ import annotations

from pathlib import Path

import folder_paths

from ..atelier_core.errors import AtelierError


def register(key: str, base: str, extensions: tuple[str, ...]) -> str:
    """Register ``key`` (once) as a folder kind over ``base``'s folders listing ``extensions``; return ``key``."""
    if key not in folder_paths.folder_names_and_paths:
        paths = folder_paths.folder_names_and_paths[folder_paths.map_legacy(base)][0]  # shared, not copied
        folder_paths.folder_names_and_paths[key] = (paths, set(extensions))
    return key


def list_files(key: str, extensions: tuple[str, ...] | None = None) -> list[str]:
    """The files of a registered key (subfolders included) as relative names, optionally only ``extensions``."""
    names = folder_paths.get_filename_list(key)
    return [n for n in names if n.lower().endswith(extensions)] if extensions else names


def resolve(key: str, name: str, what: str, where: str) -> Path:
    """The file ``name`` in the key's folders; else an AtelierError starting with ``what`` and telling to put it
    ``where``."""
    if not name:
        raise AtelierError(f"{what} no file name given; pick a file in the list")
    try:
        return Path(folder_paths.get_full_path_or_raise(key, name))
    except FileNotFoundError:
        searched = ", ".join(folder_paths.get_folder_paths(key)) or "any model folder"
        raise AtelierError(
            f"{what} '{name}' was not found in {searched}; put it in {where} and refresh the node list"
        ) from None


def file_signature(key: str, *names: str) -> tuple:
    """``(device, inode, size, mtime_ns)`` of each named file (None where it cannot be found): a loader's
    ``fingerprint_inputs``. A loaded model keeps its own copy of the weights, so nothing breaks when its file
    changes; this makes ComfyUI load the file again at the next run instead of going on with the old weights,
    so a replaced file is used and a truncated one is refused with a message naming it."""
    signature = []
    for name in names:
        try:
            stat = Path(folder_paths.get_full_path_or_raise(key, name)).stat()
            signature.append((stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns))
        except (OSError, TypeError, ValueError):  # a missing file is the node's error to report, not ours
            signature.append(None)
    return tuple(signature)
