"""File sniffing, safetensors header checks, architecture recognition: every bad input gets one clear message."""

from __future__ import annotations

import json
import struct
import time

import pytest
import torch
from safetensors.torch import save_file

from atelier_core.errors import AtelierError, UnsupportedModelError
from atelier_core.model import architecture, model_files
from atelier_core.testing import synth


def _shapes(shape=synth.TINY):
    return dict(synth.layout(shape))


def test_layout_sizes_match_flux_dev():
    # 11.9 B parameters: the published size of FLUX.1-dev / Kontext [dev].
    assert 11.8e9 < synth.parameter_count(synth.FULL) < 12.0e9
    assert synth.FULL.heads == 24 and synth.TINY.heads == 2


def test_infer_shape_reads_tiny_and_full():
    assert architecture.infer_shape(_shapes(), "tiny") == synth.TINY
    assert architecture.infer_shape(_shapes(synth.FULL), "full") == synth.FULL


def test_prefix_detection():
    names = ["model.diffusion_model." + k for k in _shapes()]
    assert architecture.strip_prefix(names) == "model.diffusion_model."
    assert architecture.strip_prefix(list(_shapes())) == ""


@pytest.mark.parametrize(
    "keys, expected",
    [
        (["input_blocks.0.0.weight", "output_blocks.0.0.weight", "middle_block.0.weight"], "UNet"),
        (["decoder.conv_in.weight", "encoder.down.0.block.0.conv1.weight"], "VAE"),
        (["encoder.block.0.layer.0.SelfAttention.q.weight", "shared.weight"], "text encoder"),
        (["diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight"], "LoRA"),
        (["transformer_blocks.0.attn.to_q.weight", "x_embedder.weight"], "diffusers"),
    ],
)
def test_other_architectures_are_named(keys, expected):
    with pytest.raises(UnsupportedModelError) as info:
        architecture.infer_shape({k: (4, 4) for k in keys}, "other.safetensors")
    assert expected in str(info.value) and "other.safetensors" in str(info.value)


def test_shape_disagreement_is_refused():
    shapes = _shapes()
    shapes["double_blocks.1.img_attn.proj.weight"] = (256, 128)
    with pytest.raises(UnsupportedModelError, match="double_blocks.1.img_attn.proj.weight"):
        architecture.infer_shape(shapes, "bad.gguf")


def test_missing_tensor_is_refused():
    shapes = _shapes()
    del shapes["single_blocks.1.linear2.weight"]
    with pytest.raises(UnsupportedModelError, match="missing 1 FLUX tensors"):
        architecture.infer_shape(shapes, "bad.gguf")


def test_fill_model_is_refused():
    shapes = _shapes()
    shapes["img_in.weight"] = (256, 384)
    with pytest.raises(UnsupportedModelError, match="384 input channels"):
        architecture.infer_shape(shapes, "fill.safetensors")


def test_sniff_detects_formats(tmp_path):
    st = tmp_path / "a.safetensors"
    save_file({"x": torch.zeros(2)}, str(st))
    assert model_files.sniff_format(st) == "safetensors"
    gg = tmp_path / "b.safetensors"  # the name lies; the bytes decide
    gg.write_bytes(b"GGUF" + b"\x03\x00\x00\x00" + b"\x00" * 16)
    assert model_files.sniff_format(gg) == "gguf"


@pytest.mark.parametrize(
    "payload, words",
    [
        (b"", "empty"),
        (b"\x80\x04\x95" + b"\x00" * 40, "pickle"),
        (b"PK\x03\x04" + b"\x00" * 40, "pickle"),
        (b"hello world, this is text", "neither"),
    ],
)
def test_sniff_refuses_non_model_files(tmp_path, payload, words):
    path = tmp_path / "model.safetensors"
    path.write_bytes(payload)
    with pytest.raises(AtelierError, match=words) as info:
        model_files.sniff_format(path)
    assert "model.safetensors" in str(info.value)


def test_truncated_safetensors_is_refused_quickly(tmp_path):
    path = tmp_path / "t.safetensors"
    save_file({"w": torch.randn(64, 64)}, str(path))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 100])
    start = time.perf_counter()
    with pytest.raises(AtelierError, match="truncated"):
        model_files.read_safetensors_header(path)
    assert time.perf_counter() - start < 0.5


def test_absurd_safetensors_header_is_refused(tmp_path):
    path = tmp_path / "h.safetensors"
    path.write_bytes(struct.pack("<Q", 2**40) + b"{" + b" " * 100)
    with pytest.raises(AtelierError):
        model_files.read_safetensors_header(path)
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**6, 10**6], "data_offsets": [0, 16]}}).encode()
    path.write_bytes(struct.pack("<Q", len(header)) + header + b"\x00" * 16)
    with pytest.raises(AtelierError, match="outside the file"):
        model_files.read_safetensors_header(path)
