"""The one host finder (``atelier_core.runtime.hosts``) and the host cache ``.ci/hosts.py`` fills.

Real folders, a real manifest and the real ``.ci/hosts.py`` command line; no ComfyUI needed: a ComfyUI root is
recognised by its files, so small stand-in folders show the search order.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from atelier_core.runtime import hosts

REPO = Path(__file__).resolve().parents[1]


def fake_comfyui(root: Path, version: str | None = None) -> Path:
    for name in ("comfy/sd.py", "nodes.py", "execution.py", "main.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    if version:
        (root / "comfyui_version.py").write_text(f'# generated\n__version__ = "{version}"\n')
    return root


@pytest.fixture
def clean_env(tmp_path, monkeypatch):
    """No COMFYUI_PATH, an empty home and an empty host cache: only what a test puts there is found."""
    monkeypatch.delenv(hosts.COMFYUI_ENV, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv(hosts.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(hosts, "PACK_DIR", tmp_path / "pack")  # not inside any custom_nodes
    return tmp_path


def test_nothing_found_names_every_way_to_provide_one(clean_env):
    search = hosts.find_comfyui()
    assert search.root is None
    assert "COMFYUI_PATH" in search.reason and "custom_nodes" in search.reason and ".ci/hosts.py" in search.reason
    assert ("~/ComfyUI", clean_env / "home" / "ComfyUI") in search.tried


def test_comfyui_path_wins_and_a_wrong_one_is_not_silently_replaced(clean_env, monkeypatch):
    home = fake_comfyui(clean_env / "home" / "ComfyUI")
    chosen = fake_comfyui(clean_env / "elsewhere", "0.3.75")
    monkeypatch.setenv(hosts.COMFYUI_ENV, str(chosen))
    search = hosts.find_comfyui()
    assert search.root == chosen.resolve() and search.version == "0.3.75"

    monkeypatch.setenv(hosts.COMFYUI_ENV, str(clean_env / "missing"))
    search = hosts.find_comfyui()
    assert search.root is None and f"COMFYUI_PATH={clean_env / 'missing'} is not a ComfyUI folder" in search.reason
    assert hosts.find_comfyui(str(home)).root == home.resolve()  # --comfyui comes before COMFYUI_PATH


def test_the_comfyui_holding_the_pack_comes_before_home(clean_env, monkeypatch):
    fake_comfyui(clean_env / "home" / "ComfyUI")
    outer = fake_comfyui(clean_env / "Comfy")
    monkeypatch.setattr(hosts, "PACK_DIR", outer / "custom_nodes" / "kontext-atelier")
    assert hosts.find_comfyui().root == outer.resolve()


def test_cached_host_of_this_interpreter_wins(clean_env):
    cache = clean_env / "cache"
    old = fake_comfyui(cache / "ComfyUI-0.3.64", "0.3.64")
    new = fake_comfyui(cache / "ComfyUI-0.3.75", "0.3.75")
    hosts.record_cached_host(hosts.CachedHost("0.3.75", new, Path(sys.executable), sys.prefix))
    hosts.record_cached_host(hosts.CachedHost("0.3.64", old, Path("/other/python"), "/other"))
    assert [h.version for h in hosts.cached_hosts()] == ["0.3.64", "0.3.75"]
    search = hosts.find_comfyui()
    assert search.root == new.resolve() and search.tried[-1][0] == "host cache 0.3.75"
    # doctor describes the user's ComfyUI, never a test host
    assert hosts.find_comfyui(use_cache=False).root is None


def test_manifest_entries_whose_folder_is_gone_or_broken_are_ignored(clean_env):
    cache = clean_env / "cache"
    hosts.record_cached_host(hosts.CachedHost("0.3.64", cache / "gone", Path(sys.executable), sys.prefix))
    assert hosts.cached_hosts() == []
    (cache / hosts.MANIFEST).write_text("{not json")
    assert hosts.cached_hosts() == [] and hosts.find_comfyui().root is None


def test_version_is_read_from_comfyui_version_py(tmp_path):
    assert hosts.comfyui_version(fake_comfyui(tmp_path / "a", "0.3.64")) == "0.3.64"
    assert hosts.comfyui_version(fake_comfyui(tmp_path / "b")) is None
    assert hosts.version_key("0.3.75") > hosts.version_key("0.3.64") > hosts.version_key("0.3.9")


def _hosts_cli(*args: str, env_cache: Path, shared: Path) -> subprocess.CompletedProcess:
    env = {
        "PATH": "/usr/bin:/bin",
        hosts.CACHE_ENV: str(env_cache),
        "ATELIER_SHARED": str(shared),
        "HOME": "/nonexistent",
    }
    return subprocess.run(
        [sys.executable, str(REPO / ".ci" / "hosts.py"), *args], capture_output=True, text=True, env=env
    )


def test_prepare_refuses_an_unknown_release_and_a_missing_archive(tmp_path):
    run = _hosts_cli("prepare", "0.2.0", env_cache=tmp_path / "c", shared=tmp_path / "s")
    assert (
        run.returncode == 1
        and "0.2.0 is not a supported test host" in run.stderr
        and "0.3.64, 0.3.75, 0.10.0, 0.33.0" in run.stderr
    )
    run = _hosts_cli("prepare", "0.3.64", env_cache=tmp_path / "c", shared=tmp_path / "s")
    assert run.returncode == 1 and "ComfyUI-0.3.64.tar.gz is missing" in run.stderr and "ATELIER_SHARED" in run.stderr
    assert "Traceback" not in run.stderr


def test_prepare_refuses_an_archive_that_is_not_the_tested_release(tmp_path):
    (tmp_path / "s" / "hosts").mkdir(parents=True)
    (tmp_path / "s" / "hosts" / "ComfyUI-0.3.64.tar.gz").write_bytes(b"not the release")
    run = _hosts_cli("prepare", "0.3.64", env_cache=tmp_path / "c", shared=tmp_path / "s")
    assert run.returncode == 1 and "sha256 differs" in run.stderr
    assert not (tmp_path / "c" / "ComfyUI-0.3.64").exists()


def test_satisfied_answers_for_installed_and_missing_requirements(tmp_path):
    shared = tmp_path / "s"
    assert _hosts_cli("satisfied", "pytest>=1", env_cache=tmp_path, shared=shared).returncode == 0
    assert _hosts_cli("satisfied", "pytest<1", env_cache=tmp_path, shared=shared).returncode == 1
    assert _hosts_cli("satisfied", "no-such-package-atelier", env_cache=tmp_path, shared=shared).returncode == 1
