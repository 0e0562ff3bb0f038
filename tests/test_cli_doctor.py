"""``kontext-atelier doctor`` on a fake ComfyUI folder and from an installed package: it finds the folder, names per
workflow the model files missing (Kontext workflows first, the others only with ``--all``), gives each missing file's
folder and download once, and says "ready" (exit 0) only when every chosen workflow has all its files."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from workflow_fixtures import api_workflows

from atelier_core import model_catalog, model_check
from atelier_core.cli import main
from atelier_core.testing import synth

ROOT = Path(__file__).resolve().parents[1]


def fake_comfyui(root):
    for name in ("comfy/sd.py", "nodes.py", "main.py", "execution.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def install(root: Path, workflow: str) -> list[str]:
    """The files ``workflow`` loads under ``root/models`` (the GGUF transformer a real tiny one, in models/unet)."""
    names = []
    for _, _, name, folder in model_check.workflow_models(api_workflows()[workflow]):
        if name.endswith(".gguf") and folder == "diffusion_models":
            (root / "models" / "unet").mkdir(parents=True, exist_ok=True)
            synth.write_gguf(root / "models" / "unet" / name, synth.kontext_state_dict(synth.TINY, seed=0), "Q4_K")
        else:
            (root / "models" / folder).mkdir(parents=True, exist_ok=True)
            (root / "models" / folder / name).write_bytes(b"x")
        names.append(name)
    return names


def doctor(capsys, *args) -> tuple[int, str]:
    code = main(["doctor", "--no-server", *args])
    return code, capsys.readouterr().out


def test_doctor_names_each_missing_file_once_with_folder_and_download(tmp_path, capsys):
    root = fake_comfyui(tmp_path / "ComfyUI")
    code, out = doctor(capsys, "--comfyui", str(root))
    assert code == 1
    assert f"ComfyUI at {root}" in out and "Loader modes" in out and "GPU (torch)" in out
    workflows = out.split("Files to fetch")[0]
    lines = [ln for ln in workflows.splitlines() if ln.startswith("  MISSING  kontext_")]
    assert lines[0].startswith("  MISSING  kontext_edit_gguf:"), lines  # the plain edit first
    assert len(lines) == len([n for n in api_workflows() if n.startswith("kontext_")])
    for entry in model_catalog.KONTEXT_MODELS:
        assert out.count(f"model file {entry['name']} is missing: download {entry['url']}") == 1, entry["name"]
    assert "ComfyUI/models/vae/" in out and "ComfyUI/models/diffusion_models/ (or models/unet/)" in out
    for entry in model_catalog.OTHER_MODELS:  # FLUX.2 and Qwen only when asked
        assert entry["name"] not in out
    assert not out.rstrip().endswith("ready")
    code, out = doctor(capsys, "--comfyui", str(root), "--all")
    assert code == 1 and all(entry["name"] in out for entry in model_catalog.OTHER_MODELS)


def test_ready_only_when_every_chosen_workflow_has_its_files(tmp_path, capsys):
    root = fake_comfyui(tmp_path / "ComfyUI")
    names = install(root, "kontext_edit_gguf")
    code, out = doctor(capsys, "--comfyui", str(root), "--workflow", "kontext_edit_gguf")
    assert code == 0, out
    assert "kontext_edit_gguf: its 4 model file(s) are there" in out
    assert f"{names[0]}: GGUF, mostly Q4_K" in out  # models/unet counts, and the file is described
    assert out.rstrip().endswith("ready")
    # Every Kontext workflow: the FP8 and GGUF-T5 ones still lack files, so not ready.
    code, out = doctor(capsys, "--comfyui", str(root))
    assert code == 1
    assert "ready for: kontext_edit_gguf," in out
    assert "missing: flux1-dev-kontext_fp8_scaled.safetensors (models/diffusion_models)" in out
    assert "missing: t5-v1_1-xxl-encoder-Q5_K_M.gguf (models/text_encoders)" in out
    assert not out.rstrip().endswith("  ready") and "not ready" in out


def test_pack_linked_into_custom_nodes_is_recognised(tmp_path, capsys):
    root = fake_comfyui(tmp_path / "ComfyUI")
    (root / "custom_nodes").mkdir()
    (root / "custom_nodes" / "kontext-atelier").symlink_to(ROOT, target_is_directory=True)
    _, out = doctor(capsys, "--comfyui", str(root))
    assert "this pack is linked as custom_nodes/kontext-atelier" in out
    (root / "custom_nodes" / "kontext-atelier").unlink()
    _, out = doctor(capsys, "--comfyui", str(root))
    assert "this pack is not in" in out


def test_help_text_has_no_markup():
    for command in ("doctor", "run"):
        proc = subprocess.run(
            [sys.executable, "-m", "atelier_core.cli", command, "--help"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
        assert proc.returncode == 0 and "``" not in proc.stdout, proc.stdout


@pytest.mark.slow  # a fresh venv and a package build: about 40 s on two cores
def test_doctor_from_an_installed_package_reports_missing_files(tmp_path):
    """What the README's `pip install .` gives: the package alone (no workflows/ folder beside it) in a fresh
    environment, no ComfyUI and no models: doctor lists what each Kontext workflow needs and exits 1."""
    source = tmp_path / "src"
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        (source / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(ROOT / name, source / name)
    shutil.copytree(ROOT / "atelier_core", source / "atelier_core", ignore=shutil.ignore_patterns("__pycache__"))
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    # The venv's own bundled setuptools (older on Python 3.11) would shadow the system's, which builds the package.
    subprocess.run([str(python), "-m", "pip", "uninstall", "-y", "-q", "setuptools"], capture_output=True, timeout=300)
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-build-isolation", "--no-index", "-q", str(source)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    shutil.rmtree(source)  # nothing may be read from the source tree
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("COMFYUI_PATH", "PYTHONPATH")}
    env["HOME"] = str(home)
    proc = subprocess.run(
        [str(venv / "bin" / "kontext-atelier"), "doctor", "--no-server"],
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )
    out = proc.stdout
    assert proc.returncode == 1, out + proc.stderr
    assert "no ComfyUI found" in out
    assert "MISSING  kontext_edit_gguf: 4 of 4 model file(s) missing" in out, out
    assert f"download {model_catalog.GGUF_MODEL['url']}" in out
    assert (
        str(venv)
        in subprocess.run(
            [str(python), "-c", "import atelier_core; print(atelier_core.__file__)"],
            cwd=home,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        ).stdout
    )
