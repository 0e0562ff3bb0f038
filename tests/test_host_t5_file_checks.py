"""The GGUF T5 of Kontext Text Encoders gets the same file protections as the Kontext Loader (issue 23): its tensors
are copies, not views of the file's memory map, and a T5 holding NaN is refused naming the file."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from atelier_host import ExecutionFailed
from safetensors.torch import save_file

from atelier_core.model import text_encoders
from atelier_core.testing import synth
from atelier_core.testing.synth_comfy import clip_l_state_dict

NARROW = text_encoders.T5Config(d_model=256, d_ff=512, num_heads=4, d_kv=64, num_layers=2, vocab_size=512)


def _mapped_ranges(path: Path) -> list[tuple[int, int]]:
    """Address ranges of this process mapped from ``path`` (Linux /proc/self/maps)."""
    ranges = []
    for line in Path("/proc/self/maps").read_text().splitlines():
        if line.endswith(str(path)):
            start, end = (int(x, 16) for x in line.split()[0].split("-"))
            ranges.append((start, end))
    return ranges


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="needs Linux's /proc/self/maps")
def test_t5_gguf_tensors_are_not_views_of_the_file(comfy_host, tmp_path):
    kontext_model = sys.modules[f"{comfy_host.pack_module_name}.comfy_glue.kontext_model"]
    path = synth.write_t5_gguf(tmp_path / "t5_Q8_0.gguf", synth.t5_state_dict(NARROW, seed=1), "Q8_0", NARROW)
    sd, _, _ = kontext_model.gguf_state_dict(path, archs=("t5encoder",))
    assert _mapped_ranges(path) == []  # the reader's map is closed once the tensors are copied
    from atelier_core.gguf.reader import open_gguf

    with open_gguf(path):  # while a map of the file is open, no tensor lies inside it
        ranges = _mapped_ranges(path)
        assert ranges and sum(t.numel() for t in sd.values()) > 0
        for name, tensor in sd.items():
            ptr = tensor.data_ptr()
            assert not any(start <= ptr < end for start, end in ranges), name


def test_t5_gguf_with_nan_is_refused_naming_the_file(comfy_host):
    folder = comfy_host.model_path("text_encoders", "")
    folder.mkdir(parents=True, exist_ok=True)
    sd = synth.t5_state_dict(NARROW, seed=2)
    key = next(k for k, v in sd.items() if v.ndim == 2 and "wo" in k)
    sd[key] = sd[key].clone()
    sd[key][0, 0] = float("nan")
    t5 = synth.write_t5_gguf(folder / "nan_t5_F16.gguf", sd, "F16", NARROW)
    clip_l = folder / "clip_l_for_nan_test.safetensors"
    save_file(clip_l_state_dict(), str(clip_l))
    graph = {
        "encoders": {
            "class_type": "AtelierKontextTextEncoders",
            "inputs": {"clip_l_name": clip_l.name, "t5_name": t5.name, "device": "default"},
        },
        "encode": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["encoders", 0], "text": "x"}},
        "capture": {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": ["encode", 0]}},
    }
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(graph)
    message = info.value.exception_message
    assert message.startswith("Kontext Text Encoders:") and "nan_t5_F16.gguf" in message and "NaN" in message
