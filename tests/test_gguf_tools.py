"""The `kontext-atelier quantize | inspect | compare` commands, in-process and once as a subprocess."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from atelier_core.cli import main
from atelier_core.gguf import GGMLType, open_gguf
from atelier_core.gguf.writer import write_gguf
from atelier_core.testing import synth

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    return synth.write_float(tmp_path_factory.mktemp("cli") / "tiny.safetensors", synth.kontext_state_dict(synth.TINY))


@pytest.fixture(scope="module")
def tiny_q8(tiny) -> Path:
    out = tiny.parent / "tiny-Q8_0.gguf"
    assert main(["quantize", str(tiny), str(out), "--type", "Q8_0", "--no-progress"]) == 0
    return out


def test_quantize_reports_and_writes(tiny, tmp_path, capsys):
    out = tmp_path / "t.gguf"
    assert main(["quantize", str(tiny), str(out), "-t", "q4_k_m"]) == 0
    captured = capsys.readouterr()
    assert f"wrote {out}" in captured.out and "type Q4_K_M" in captured.out and "peak memory (RSS)" in captured.out
    assert "100.0%" in captured.err and "84/84 tensors" in captured.err  # the progress bar
    with open_gguf(out) as gf:
        types = {ti.ggml_type for ti in gf.tensors.values()}
    assert {GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.F16, GGMLType.F32} == types


def test_quantize_json_and_lora(tiny, tmp_path, capsys):
    lora = tmp_path / "l.safetensors"
    save_file(synth.lora_state_dict(synth.kontext_state_dict(synth.TINY)), str(lora))
    out = tmp_path / "t.gguf"
    code = main(
        [
            "quantize",
            str(tiny),
            str(out),
            "--type",
            "BF16",
            "--lora",
            str(lora),
            "--lora-strength",
            "0.7",
            "--json",
            "--no-progress",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["type"] == "BF16" and result["lora_targets"] == 4 and result["tensors"] == 84
    assert result["peak_rss_bytes"] > 0 and result["output_bytes"] == out.stat().st_size


def test_quantize_refuses_existing_output_unless_forced(tiny, tiny_q8, tmp_path, capsys):
    before = tiny_q8.read_bytes()
    assert main(["quantize", str(tiny), str(tiny_q8), "--type", "Q4_0", "--no-progress"]) == 2
    assert "error:" in capsys.readouterr().err and tiny_q8.read_bytes() == before
    copy = tmp_path / "c.gguf"
    copy.write_bytes(b"old")
    assert main(["quantize", str(tiny), str(copy), "--type", "Q4_0", "--force", "--no-progress"]) == 0
    assert copy.read_bytes()[:4] == b"GGUF"


def test_quantize_bad_inputs_exit_2_without_files(tmp_path, capsys):
    sd = synth.kontext_state_dict(synth.TINY)
    sd["img_in.bias"] = torch.arange(256, dtype=torch.int64)
    save_file(sd, str(tmp_path / "int.safetensors"))
    assert main(["quantize", str(tmp_path / "int.safetensors"), str(tmp_path / "o.gguf"), "--no-progress"]) == 2
    assert "holds I64 values" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "missing.safetensors"), str(tmp_path / "o.gguf")]) == 2
    assert "does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["quantize", "a", "b", "--type", "Q9_K"])  # argparse names the choices
    assert not list(tmp_path.glob("*.gguf")) and not list(tmp_path.glob("*.part"))


def test_inspect_gguf(tiny_q8, capsys):
    assert main(["inspect", str(tiny_q8)]) == 0
    out = capsys.readouterr().out
    assert "general.architecture = flux" in out and "hidden 256, 2 double + 2 single blocks" in out
    assert "Kontext loader: accepts it" in out and "Q8_0" in out and "bits per weight" in out
    assert main(["inspect", str(tiny_q8), "--json", "--tensors"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["loader"]["accepted"] and info["tensor_count"] == 84 and len(info["tensors"]) == 84
    assert info["types"]["Q8_0"]["tensors"] > 0 and info["metadata"]["general.file_type"] == 7
    assert 8.0 < info["bits_per_weight"] < 20.0


def test_inspect_safetensors_and_refusals(tiny, tmp_path, capsys):
    assert main(["inspect", str(tiny), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["format"] == "safetensors" and info["loader"]["accepted"] and info["types"]["BF16"]["tensors"] == 84
    assert info["bits_per_weight"] == 16.0
    lora = tmp_path / "l.safetensors"
    save_file(synth.lora_state_dict(synth.kontext_state_dict(synth.TINY)), str(lora))
    assert main(["inspect", str(lora)]) == 0
    assert "refuses it" in (out := capsys.readouterr().out) and "a LoRA" in out
    other = tmp_path / "t5.gguf"
    write_gguf(other, {"enc.weight": (np.zeros((4, 32), np.float32), "F32")}, {"general.architecture": "t5"})
    assert main(["inspect", str(other), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert not info["loader"]["accepted"] and "'t5'" in info["loader"]["reason"]
    (tmp_path / "junk.gguf").write_bytes(b"\x80\x04junk")
    assert main(["inspect", str(tmp_path / "junk.gguf")]) == 2
    assert "pickle" in capsys.readouterr().err


def test_compare_reports_errors_by_type(tiny, tiny_q8, tmp_path, capsys):
    assert main(["compare", str(tiny), str(tiny_q8), "--worst", "3"]) == 0
    out = capsys.readouterr().out
    assert "84 tensors compared" in out and "worst 3 tensors" in out and "Q8_0" in out
    assert main(["compare", str(tiny), str(tiny_q8), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    q8 = result["by_type"]["Q8_0"]
    assert 0 < q8["mean_relative_error"] < 0.006 and result["by_type"]["F32"]["max_relative_error"] == 0
    assert 0 < result["overall_relative_error"] < 0.006
    # GGUF against GGUF works too, and a foreign file shares no names
    q4 = tmp_path / "q4.gguf"
    assert main(["quantize", str(tiny), str(q4), "--type", "Q4_0", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["compare", str(tiny_q8), str(q4), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["by_type"]["Q4_0"]["mean_relative_error"] < 0.1
    other = tmp_path / "o.gguf"
    write_gguf(other, {"x.weight": (np.zeros((4, 32), np.float32), "F32")}, {})
    assert main(["compare", str(tiny), str(other)]) == 2
    assert "share no tensor names" in capsys.readouterr().err


def test_quantize_as_a_subprocess(tiny, tmp_path):
    out = tmp_path / "sub.gguf"
    proc = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "quantize", str(tiny), str(out), "--type", "Q5_0"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and "Q5_0" in proc.stdout and "tensors" in proc.stderr
    with open_gguf(out) as gf:
        assert gf.architecture == "flux" and gf.metadata["general.file_type"] == 8
    again = subprocess.run(
        [sys.executable, "-m", "atelier_core.cli", "quantize", str(tiny), str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert again.returncode == 2 and again.stderr.startswith("error:") and "already exists" in again.stderr


@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux's /proc")
def test_peak_rss_is_the_commands_own_not_its_parents():
    """getrusage's ru_maxrss survives exec: a command started from a big process (a test runner, a ComfyUI server)
    would report its parent's size. The converter's memory report must be its own."""
    ballast = bytearray(2 * 1024**3)  # this process: at least 2 GB resident while the child starts
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1
    code = "from atelier_core.cli.gguf_commands import peak_rss_bytes; print(peak_rss_bytes())"
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1]
    )
    del ballast
    assert run.returncode == 0, run.stderr
    assert int(run.stdout) < 1.5 * 1024**3, f"the child reported {int(run.stdout) / 1e9:.2f} GB"
