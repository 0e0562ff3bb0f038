"""``kontext-atelier doctor`` on a fake ComfyUI folder: it finds it, lists what the workflows need, names the
download for what is missing, and exits 0 only when nothing is."""

from __future__ import annotations

from workflow_fixtures import expected_files

from atelier_core import synth
from atelier_core.cli import main


def fake_comfyui(root):
    for name in ("comfy/sd.py", "nodes.py", "main.py"):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text("")
    return root


def test_doctor_names_missing_models_with_their_download(tmp_path, capsys):
    root = fake_comfyui(tmp_path / "ComfyUI")
    assert main(["doctor", "--comfyui", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"ComfyUI at {root}" in out
    assert "MISSING  models/vae/ae.safetensors" in out
    assert "https://huggingface.co/" in out and "flux1-kontext-dev-Q4_K_M.gguf" in out
    assert "Loader modes" in out and "GPU (torch)" in out


def test_doctor_is_ready_when_every_file_is_there(tmp_path, capsys):
    root = fake_comfyui(tmp_path / "ComfyUI")
    wanted = expected_files()
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    gguf = sorted(n for n in wanted["diffusion_models"] if n.endswith(".gguf"))[0]
    (root / "models" / "unet").mkdir(parents=True)
    synth.write_gguf(root / "models" / "unet" / gguf, sd, "Q4_K")  # models/unet counts as well
    for folder in ("text_encoders", "vae"):
        for name in wanted[folder]:
            (root / "models" / folder).mkdir(parents=True, exist_ok=True)
            (root / "models" / folder / name).write_bytes(b"x")
    assert main(["doctor", "--comfyui", str(root)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert f"{gguf}: GGUF, mostly Q4_K" in out
    assert "only needed by" in out  # the FP8 transformer is optional once a GGUF one is there
    assert out.rstrip().endswith("ready")
