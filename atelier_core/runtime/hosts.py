"""Where a ComfyUI is: the one host finder for the tests, ``doctor``, the runtime helper and ``.ci/run``.

The search order is ``--comfyui`` (when a command takes one), ``COMFYUI_PATH``, the ComfyUI whose ``custom_nodes/``
holds this pack, ``~/ComfyUI``, then the test hosts that ``.ci/hosts.py`` unpacked into the host cache
(``ATELIER_HOST_CACHE``, else ``$XDG_CACHE_HOME/atelier-hosts``, else ``~/.cache/atelier-hosts``). Of the cached hosts
the one set up for the running interpreter wins (0.3.75 lives in a virtual environment of its own), so a plain
``pytest tests`` finds what CI found. Standard library only: ``.ci/hosts.py`` runs before anything else is installed.
"""

from __future__ import annotations

import json
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

PACK_DIR = Path(__file__).resolve().parents[2]
COMFYUI_ENV = "COMFYUI_PATH"
CACHE_ENV = "ATELIER_HOST_CACHE"
MANIFEST = "hosts.json"


def is_comfyui(path: Path) -> bool:
    """A ComfyUI root: the files its loader, nodes and executor live in."""
    return all((path / name).is_file() for name in ("comfy/sd.py", "nodes.py", "execution.py", "main.py"))


def comfyui_version(root: Path) -> str | None:
    """The version a ComfyUI root says it is (``comfyui_version.py``), or None for a checkout without it."""
    try:
        text = (root / "comfyui_version.py").read_text()
    except OSError:
        return None
    match = re.search(r"""__version__\s*=\s*["']([^"']+)["']""", text)
    return match.group(1) if match else None


def cache_dir() -> Path:
    """Where ``.ci/hosts.py`` keeps unpacked ComfyUI releases and their virtual environments (outside the repo)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base).expanduser() / "atelier-hosts"


@dataclass(frozen=True)
class CachedHost:
    """One unpacked ComfyUI release in the host cache and the interpreter that has its requirements."""

    version: str
    root: Path
    python: Path
    prefix: str  # sys.prefix of ``python``: how a running interpreter recognises its own host


def cached_hosts(cache: Path | None = None) -> list[CachedHost]:
    """The hosts recorded in the cache's manifest whose folders still exist, oldest version first."""
    path = (cache or cache_dir()) / MANIFEST
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        return []
    hosts = []
    for version, entry in entries.items() if isinstance(entries, dict) else ():
        try:
            host = CachedHost(version, Path(entry["root"]), Path(entry["python"]), str(entry["prefix"]))
        except (KeyError, TypeError):
            continue
        if is_comfyui(host.root):
            hosts.append(host)
    return sorted(hosts, key=lambda h: version_key(h.version))


def record_cached_host(host: CachedHost, cache: Path | None = None) -> None:
    """Add or replace ``host`` in the cache's manifest (written whole, then renamed, so a reader never sees half)."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / MANIFEST
    try:
        entries = json.loads(path.read_text())
    except (OSError, ValueError):
        entries = {}
    entries[host.version] = {"root": str(host.root), "python": str(host.python), "prefix": host.prefix}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(entries, indent=2, sort_keys=True) + "\n")
    tmp.replace(path)


def version_key(version: str) -> tuple[int, ...]:
    """'0.3.75' -> (0, 3, 75); anything not numeric sorts first."""
    return tuple(int(part) if part.isdigit() else -1 for part in version.split("."))


@dataclass
class HostSearch:
    """The outcome of a search: the root (or None), why none was found, and every place that was looked at."""

    root: Path | None
    reason: str = ""
    tried: list[tuple[str, Path]] = field(default_factory=list)

    @property
    def version(self) -> str | None:
        return comfyui_version(self.root) if self.root else None


def _cached_for_this_interpreter(cache: Path | None) -> list[CachedHost]:
    hosts = cached_hosts(cache)
    mine = [h for h in hosts if os.path.realpath(h.prefix) == os.path.realpath(sys.prefix)]
    return mine + [h for h in hosts if h not in mine]


def find_comfyui(explicit: str | os.PathLike | None = None, *, use_cache: bool = True) -> HostSearch:
    """Find a ComfyUI root in the documented order.

    An explicit path or ``COMFYUI_PATH`` that is not a ComfyUI ends the search with a reason: silently falling back to
    another ComfyUI would test (or diagnose) something the user did not ask for. ``use_cache=False`` leaves out the
    test hosts (``doctor`` describes the user's own ComfyUI, not a test cache).
    """
    tried: list[tuple[str, Path]] = []
    for label, value in (("--comfyui", explicit), (COMFYUI_ENV, os.environ.get(COMFYUI_ENV))):
        if value:
            root = Path(value).expanduser()
            tried.append((label, root))
            if is_comfyui(root):
                return HostSearch(root.resolve(), tried=tried)
            return HostSearch(
                None,
                f"{label}={value} is not a ComfyUI folder (no comfy/sd.py, nodes.py, execution.py, main.py)",
                tried,
            )
    places = [("custom_nodes", parent.parent) for parent in PACK_DIR.parents if parent.name == "custom_nodes"]
    places.append(("~/ComfyUI", Path.home() / "ComfyUI"))
    if use_cache:
        places += [(f"host cache {h.version}", h.root) for h in _cached_for_this_interpreter(None)]
    for label, root in places:
        tried.append((label, root))
        if is_comfyui(root):
            return HostSearch(root.resolve(), tried=tried)
    cache_hint = (
        f", or run `python .ci/hosts.py prepare` to unpack the test hosts into {cache_dir()}" if use_cache else ""
    )
    return HostSearch(
        None,
        f"no ComfyUI: set {COMFYUI_ENV} to a ComfyUI folder, put this pack in ComfyUI/custom_nodes{cache_hint}",
        tried,
    )
