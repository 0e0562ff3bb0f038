"""Packaging: what pip, ComfyUI-Manager and the Comfy Registry read agrees with itself and with the code."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib import import_module

import pytest
from atelier_host import PACK_DIR
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

tomllib = pytest.importorskip("tomllib", reason="tomllib needs Python 3.11+")

PYPROJECT = tomllib.loads((PACK_DIR / "pyproject.toml").read_text())
PROJECT = PYPROJECT["project"]
COMFY = PYPROJECT["tool"]["comfy"]
# semver 2.0.0, the form the Comfy Registry accepts
SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$")


def _normalized(requirement: str) -> str:
    req = Requirement(requirement)
    extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
    marker = f"; {req.marker}" if req.marker else ""
    return f"{canonicalize_name(req.name)}{extras}{req.specifier}{marker}"


def _requirements_txt() -> list[str]:
    lines = []
    for raw in (PACK_DIR / "requirements.txt").read_text().splitlines():
        line = raw.split(" #", 1)[0].strip()
        if line and not line.startswith("#"):
            lines.append(line)
    return lines


def test_requirements_txt_matches_project_dependencies():
    """ComfyUI-Manager installs only requirements.txt; pip only [project].dependencies. They must be the same."""
    listed = [_normalized(line) for line in _requirements_txt()]
    declared = [_normalized(dep) for dep in PROJECT["dependencies"]]
    assert len(listed) == len(set(listed)), f"requirements.txt repeats a line: {listed}"
    assert sorted(listed) == sorted(declared), (
        f"only in requirements.txt: {sorted(set(listed) - set(declared))}; "
        f"only in pyproject.toml: {sorted(set(declared) - set(listed))}"
    )


def test_project_table_has_registry_fields():
    name = PROJECT["name"]
    assert name == canonicalize_name(name), f"project name {name!r} is not in normalized form"
    assert "comfyui" not in name.lower(), "the Comfy Registry asks for a name without 'ComfyUI'"
    assert SEMVER.match(PROJECT["version"]), f"version {PROJECT['version']!r} is not semver"
    assert PROJECT.get("license"), "no license"
    for license_file in PROJECT.get("license-files", []):
        assert (PACK_DIR / license_file).is_file(), f"license file {license_file} is missing"
    assert PROJECT.get("description")
    urls = PROJECT.get("urls", {})
    assert urls.get("Repository", "").startswith("https://"), urls
    for label, url in urls.items():
        assert url.startswith("https://"), (label, url)
    classifiers = PROJECT.get("classifiers", [])
    assert classifiers and all(isinstance(c, str) and " :: " in c for c in classifiers), classifiers
    assert (PACK_DIR / PROJECT["readme"]).is_file(), f"readme {PROJECT['readme']} is missing"


def test_tool_comfy_table():
    for key in ("PublisherId", "DisplayName", "Icon"):
        assert isinstance(COMFY.get(key), str) and COMFY[key].strip(), f"[tool.comfy] {key} is missing"
    assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", COMFY["PublisherId"]), COMFY["PublisherId"]
    assert COMFY["Icon"].startswith("https://"), COMFY["Icon"]
    SpecifierSet(COMFY["requires-comfyui"])  # raises if it is not a version range


def test_icon_url_points_at_a_shipped_file():
    """A raw GitHub Icon URL on the main branch must name a file that is in the repository."""
    match = re.match(r"https://raw\.githubusercontent\.com/[^/]+/[^/]+/main/(.+)$", COMFY["Icon"])
    if match is None:
        pytest.skip("Icon is not a raw GitHub URL of this repository")
    assert (PACK_DIR / match.group(1)).is_file(), f"Icon {COMFY['Icon']} names {match.group(1)}, not in the repo"


def test_version_strings_agree():
    atelier_core = import_module("atelier_core")
    assert atelier_core.__version__ == PROJECT["version"]


def test_console_script_target_exists():
    target = PROJECT["scripts"]["kontext-atelier"]
    module_name, _, attr = target.partition(":")
    assert callable(getattr(import_module(module_name), attr)), target


def test_cli_help_runs():
    result = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "--help"],
        cwd=PACK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stderr
    assert "kontext-atelier" in result.stdout
    version = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "--version"],
        cwd=PACK_DIR,
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert version.returncode == 0 and PROJECT["version"] in version.stdout, (version.stdout, version.stderr)


def test_installed_console_script_runs():
    """Where the package is installed (CI does `pip install -e '.[dev]'`), the `kontext-atelier` command works."""
    script = shutil.which("kontext-atelier")
    if script is None:
        pytest.skip("kontext-atelier is not installed here (pip install -e '.[dev]')")
    result = subprocess.run([script, "--help"], capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, result.stderr
    assert "kontext-atelier" in result.stdout


def test_workflows_are_valid_json():
    for path in sorted((PACK_DIR / "workflows").rglob("*.json")):
        with path.open() as handle:
            data = json.load(handle)
        assert isinstance(data, dict) and data, f"{path.name} is not a JSON object"


def test_package_data_is_shipped():
    """Everything atelier_core reads at run time is covered by [tool.setuptools.package-data]."""
    patterns = PYPROJECT["tool"]["setuptools"].get("package-data", {}).get("atelier_core", [])
    data_dir = PACK_DIR / "atelier_core" / "data"
    for path in data_dir.rglob("*") if data_dir.is_dir() else ():
        if path.is_file() and path.name != "__init__.py" and path.suffix != ".py":
            relative = path.relative_to(PACK_DIR / "atelier_core")
            assert any(relative.match(pattern) for pattern in patterns), f"{relative} is not in package-data"


def test_readme_shows_the_ci_test_command():
    """`.ci/run` runs exactly the README's test command; the two must not drift apart."""
    match = re.search(r"^TEST_COMMAND='([^']+)'$", (PACK_DIR / ".ci" / "run").read_text(), re.MULTILINE)
    assert match, ".ci/run defines no TEST_COMMAND='...'"
    readme = (PACK_DIR / "README.md").read_text()
    assert match.group(1) in readme, f"README.md does not show the test command {match.group(1)!r}"
