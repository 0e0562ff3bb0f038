"""Use a ComfyUI checkout from a script (the command line's `compare --sample`, the benchmarks), headless.

ComfyUI is imported only inside these functions, so the rest of ``atelier_core`` stays usable without one.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

from ..errors import AtelierError
from . import hosts

PACK_DIR = Path(__file__).resolve().parents[2]


def find_comfyui(explicit: str | None = None) -> Path:
    """The ComfyUI root the project's one host finder picks (``runtime.hosts``), or an error saying where to point."""
    search = hosts.find_comfyui(explicit)
    if search.root is None:
        raise AtelierError(f"{search.reason} (or pass --comfyui PATH)")
    return search.root


def boot(root: Path, cpu: bool | None = None) -> None:
    """Import ComfyUI from ``root`` the way its main.py does (``--cpu`` where no GPU is usable or ``cpu``)."""
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    import torch
    from comfy.cli_args import args

    if cpu or (cpu is None and not torch.cuda.is_available()):
        args.cpu = True
    import utils.extra_config  # noqa: F401, I001  (main.py's order: its `utils` package before `nodes`)
    import nodes  # noqa: F401


def pack_module() -> ModuleType:
    """This pack imported as ComfyUI imports it (a path-named package), so its node modules load."""
    name = str(PACK_DIR).replace(".", "_x_")
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, PACK_DIR / "__init__.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    return sys.modules[name]


def kontext_model_module() -> ModuleType:
    """The pack's ``comfy_glue.kontext_model`` (``load_kontext``, ``LoadOptions``); ComfyUI must be booted first."""
    return importlib.import_module(pack_module().__name__ + ".comfy_glue.kontext_model")
