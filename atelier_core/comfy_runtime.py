"""Use a ComfyUI checkout from a script (the command line's `compare --sample`, the benchmarks), headless.

ComfyUI is imported only inside these functions, so the rest of ``atelier_core`` stays usable without one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from .errors import AtelierError

PACK_DIR = Path(__file__).resolve().parents[1]


def find_comfyui(explicit: str | None = None) -> Path:
    """The ComfyUI root from ``explicit``, ``COMFYUI_PATH``, the pack's parent ``custom_nodes``, or ~/ComfyUI."""
    candidates = [explicit, os.environ.get("COMFYUI_PATH")]
    if PACK_DIR.parent.name == "custom_nodes":
        candidates.append(str(PACK_DIR.parent.parent))
    candidates.append(str(Path.home() / "ComfyUI"))
    for candidate in filter(None, candidates):
        root = Path(candidate).expanduser()
        if (root / "comfy" / "sd.py").is_file() and (root / "nodes.py").is_file():
            return root.resolve()
    raise AtelierError("no ComfyUI found: pass --comfyui PATH or set COMFYUI_PATH to a ComfyUI checkout")


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
    """The pack's ``nodes.kontext_model`` (``load_kontext``, ``LoadOptions``); ComfyUI must be booted first."""
    return importlib.import_module(pack_module().__name__ + ".nodes.kontext_model")
