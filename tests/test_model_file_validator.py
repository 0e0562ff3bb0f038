"""The one model-file validator (issue 23): hostile or damaged files are refused by inspect, quantize and the loader
alike, with the file named, in well under a second and 100 MB; a file one of them accepts, the others accept too."""

from __future__ import annotations

import json
import struct
import time
import tracemalloc
from pathlib import Path

import pytest
import torch

from atelier_core.cli import main
from atelier_core.errors import AtelierError
from atelier_core.gguf.reader import open_gguf
from atelier_core.model import model_files
from atelier_core.testing import synth

LIMIT_S = 1.0
LIMIT_BYTES = 100 * 1024**2


def _safetensors(path: Path, header: dict, data: bytes) -> Path:
    blob = json.dumps(header).encode()
    blob += b" " * (-len(blob) % 8)
    path.write_bytes(struct.pack("<Q", len(blob)) + blob + data)
    return path


def _entry(shape, start, end, dtype="F32"):
    return {"dtype": dtype, "shape": shape, "data_offsets": [start, end]}


def _gguf(path: Path, dims: list[int], data: bytes = b"", type_id: int = 0, tensors=None) -> Path:
    """A GGUF v3 with the tensor infos written as given, however absurd: one F32 tensor of ``dims`` at offset 0 by
    default, or ``tensors`` as (name, dims, type id, offset) tuples."""
    tensors = tensors or [("img_in.weight", dims, type_id, 0)]
    blob = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 0)
    for name, tensor_dims, tensor_type, offset in tensors:
        blob += struct.pack("<Q", len(name)) + name.encode() + struct.pack("<I", len(tensor_dims))
        blob += b"".join(struct.pack("<Q", d) for d in tensor_dims) + struct.pack("<IQ", tensor_type, offset)
    blob += b"\0" * (-len(blob) % 32)
    path.write_bytes(blob + data)
    return path


def _refused_by_validator(path: Path, expected: str) -> str:
    """The validator's refusal: names the file, says what, within the time and memory limits."""
    tracemalloc.start()
    start = time.perf_counter()
    try:
        with pytest.raises(AtelierError) as info:
            if model_files.sniff_format(path) == "gguf":
                open_gguf(path).close()
            model_files.check_sampled_values(path)
        elapsed = time.perf_counter() - start
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(info.value)
    assert path.name in message and expected in message, message
    assert elapsed < LIMIT_S and peak < LIMIT_BYTES, (elapsed, peak)
    return message


SAFETENSORS_CASES = {
    "two names on the same bytes": (
        {"a.weight": _entry([1], 0, 4), "b.weight": _entry([1], 0, 4)},
        b"\0" * 4,
        "tensors 'a.weight' and 'b.weight' share bytes",
    ),
    "overlapping offsets": (
        {"a.weight": _entry([2], 0, 8), "b.weight": _entry([2], 4, 12)},
        b"\0" * 12,
        "share bytes",
    ),
    "a gap between tensors": ({"a.weight": _entry([1], 4, 8)}, b"\0" * 8, "4 unused bytes before tensor 'a.weight'"),
    "bytes after the last tensor": ({"a.weight": _entry([1], 0, 4)}, b"\0" * 8, "4 bytes after the last tensor"),
    "float dims": ({"a.weight": _entry([1.0], 0, 4)}, b"\0" * 4, "malformed header entry"),
    "bool dims": ({"a.weight": _entry([True], 0, 4)}, b"\0" * 4, "malformed header entry"),
    "an object in __metadata__": (
        {"__metadata__": {"x": {"y": 1}}, "a.weight": _entry([1], 0, 4)},
        b"\0" * 4,
        "__metadata__ must map names to text",
    ),
    "a layer of width 0": (
        {"a.weight": _entry([3072, 0], 0, 0), "b.weight": _entry([1], 0, 4)},
        b"\0" * 4,
        "a layer of width 0",
    ),
    "NaN weights": ({"a.weight": _entry([2, 2], 0, 16)}, struct.pack("<4f", 1, 2, float("nan"), 4), "NaN or infinite"),
    "infinite weights": ({"a.weight": _entry([1, 2], 0, 8)}, struct.pack("<2f", 1, float("inf")), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(SAFETENSORS_CASES))
def test_hostile_safetensors_refused_by_validator_inspect_and_quantize(tmp_path, capsys, case):
    header, data, expected = SAFETENSORS_CASES[case]
    path = _safetensors(tmp_path / "hostile.safetensors", header, data)
    _refused_by_validator(path, expected)
    out = tmp_path / "out.gguf"
    assert main(["quantize", str(path), str(out), "--type", "Q8_0", "--no-progress"]) == 2
    assert not out.exists()
    err = capsys.readouterr().err
    assert "hostile.safetensors" in err and "Traceback" not in err
    # inspect may describe the file, but never says the loader accepts it
    code = main(["inspect", str(path), "--json"])
    captured = capsys.readouterr()
    if code == 0:
        assert json.loads(captured.out)["loader"]["accepted"] is False
    else:
        assert code == 2 and "hostile.safetensors" in captured.err


def test_header_nested_200000_deep_is_refused_without_recursion(tmp_path, capsys):
    blob = b"{" + b'"a":{' * 200_000 + b"}" * 200_001
    path = tmp_path / "deep.safetensors"
    path.write_bytes(struct.pack("<Q", len(blob)) + blob)
    _refused_by_validator(path, "nested more than 4 levels")
    for command in (["inspect", str(path)], ["quantize", str(path), str(tmp_path / "o.gguf"), "--no-progress"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "deep.safetensors" in err and "RecursionError" not in err


def test_a_valid_file_passes_and_scaled_fp8_marker_is_not_a_zero_width_layer(tmp_path):
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    for path in (
        synth.write_float(tmp_path / "bf16.safetensors", sd, "bf16"),
        synth.write_scaled_fp8(tmp_path / "scaled.safetensors", sd),
        synth.write_gguf(tmp_path / "q4k.gguf", sd, "Q4_K"),
    ):
        assert model_files.check_sampled_values(path) > 100  # rows actually read
    header = model_files.read_safetensors_header(tmp_path / "scaled.safetensors")
    assert header.tensors["scaled_fp8"][1] == (0,)


@pytest.mark.parametrize(
    ("dims", "expected"),
    [
        ([2**40, 2**40, 0], "has a dimension of 0"),  # zero elements: once overflowed torch's numel
        ([0, 3072], "has a dimension of 0"),
        ([2**32, 2**32], "it is truncated"),
    ],
)
def test_gguf_overflowing_or_zero_width_shapes(tmp_path, capsys, dims, expected):
    path = _gguf(tmp_path / "shape.gguf", dims)
    _refused_by_validator(path, expected)
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err
    assert "shape.gguf" in err and expected in err and "multiplication overflow" not in err


@pytest.mark.parametrize(
    ("tensors", "expected"),
    [
        ([("a.weight", [8], 0, 0), ("b.weight", [8], 0, 0)], "overlap in the file"),
        ([("a.weight", [16], 0, 0), ("b.weight", [8], 0, 32)], "overlap in the file"),
        ([("a.weight", [8], 0, 4)], "not a multiple of the alignment 32"),
    ],
)
def test_gguf_overlapping_or_unaligned_offsets(tmp_path, capsys, tensors, expected):
    path = _gguf(tmp_path / "offsets.gguf", [], b"\0" * 128, tensors=tensors)
    _refused_by_validator(path, expected)
    assert main(["inspect", str(path)]) == 2
    assert "offsets.gguf" in capsys.readouterr().err


def test_gguf_nan_weights_and_nan_block_scales(tmp_path, capsys):
    rows = torch.ones(4, 32)
    rows[2, 5] = float("nan")
    path = _gguf(tmp_path / "nan_f32.gguf", [32, 4], rows.numpy().tobytes())
    _refused_by_validator(path, "tensor 'img_in.weight' holds NaN")
    # A Q8_0 block whose f16 scale is NaN: every value of the block dequantizes to NaN.
    block = struct.pack("<e", float("nan")) + bytes(32)
    good = struct.pack("<e", 1.0) + bytes(32)
    path = _gguf(tmp_path / "nan_q8.gguf", [32, 3], good + good + block, type_id=8)
    _refused_by_validator(path, "holds NaN")
    assert main(["inspect", str(path), "--json"]) in (0, 2)
    captured = capsys.readouterr()
    assert '"accepted": true' not in captured.out


def test_quantize_source_uses_the_shared_validator(monkeypatch, tmp_path):
    """quantize's source reader calls this very validator (not a copy of it)."""
    from atelier_core.gguf import convert

    calls = []
    monkeypatch.setattr(model_files, "check_sampled_values", lambda p: calls.append(Path(p).name) or 0)
    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    convert.SafetensorsSource(synth.write_float(tmp_path / "x.safetensors", sd, "bf16"))
    assert calls == ["x.safetensors"]


@pytest.mark.parametrize("fmt", ["bf16", "gguf"])
def test_kontext_loader_refuses_nan_weights_naming_the_file(comfy_host, fmt):
    from atelier_host import ExecutionFailed
    from kontext_graphs import edit_graph

    sd = synth.kontext_state_dict(synth.TINY, seed=0)
    weight = sd["double_blocks.0.img_mlp.0.weight"].clone()
    weight[0, 7] = float("nan")
    sd["double_blocks.0.img_mlp.0.weight"] = weight
    folder = comfy_host.model_path("diffusion_models", "")
    if fmt == "gguf":
        name = synth.write_gguf(folder / "nan_weights_F16.gguf", sd, "F16").name
    else:
        name = synth.write_float(folder / "nan_weights.safetensors", sd, "bf16").name
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(edit_graph(name, steps=1))
    message = info.value.exception_message
    assert message.startswith("Kontext Loader:") and name in message and "NaN" in message, message
