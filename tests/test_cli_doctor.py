"""``kontext-atelier doctor`` on a fake ComfyUI folder: it finds it, lists what the workflows need, names the
download for what is missing, and exits 0 only when nothing is."""

from __future__ import annotations

from workflow_fixtures import expected_files

from atelier_core.cli import main
from atelier_core.testing import synth


def fake_comfyui(root):
    for name in ("comfy/sd.py", "nodes.py", "main.py", "execution.py"):
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


def test_one_t5_is_enough(tmp_path, capsys):
    """The GGUF-T5 workflow and the others differ only in the T5 file: either T5 makes the machine ready."""
    root = fake_comfyui(tmp_path / "ComfyUI")
    wanted = expected_files()
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    gguf = sorted(n for n in wanted["diffusion_models"] if n.endswith(".gguf"))[0]
    (root / "models" / "diffusion_models").mkdir(parents=True)
    synth.write_gguf(root / "models" / "diffusion_models" / gguf, sd, "Q4_K")
    t5_gguf = next(n for n in wanted["text_encoders"] if n.endswith(".gguf"))
    for folder in ("text_encoders", "vae"):
        (root / "models" / folder).mkdir(parents=True, exist_ok=True)
        for name in wanted[folder]:
            if "t5" not in name.lower() or name == t5_gguf:  # only the GGUF T5
                (root / "models" / folder / name).write_bytes(b"x")
    assert main(["doctor", "--comfyui", str(root)]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "t5xxl_fp8_e4m3fn_scaled.safetensors not present; only needed by" in out
