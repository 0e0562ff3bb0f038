"""Kontext Text Encoders: a T5-XXL encoder GGUF (llama.cpp names) plus CLIP-L as one ComfyUI CLIP.

1. On a narrow T5 (ComfyUI's own T5 class, 2 blocks of 256): our GGUF operations give exactly what ComfyUI's
   operations give on the same weights dequantized, and the Q8_0 file stays within its error of the float weights.
   This checks the llama.cpp -> Hugging Face name table (a swapped gate/up would change the output) and the
   row-wise embedding.
2. The full-size encoder (random valid Q2_K blocks, 1.5 GB) through the node in ComfyUI's executor, with core
   CLIPTextEncode: T5's 4096-wide tokens and CLIP-L's pooled vector come out finite and prompt-dependent.
3. Wrong files are refused with the node's name and what was found.
"""

from __future__ import annotations

import sys

import pytest
import torch
from atelier_host import ExecutionFailed, PromptInvalid, run_refused
from safetensors.torch import save_file

from atelier_core.gguf.dequant import dequantize
from atelier_core.model import text_encoders
from atelier_core.testing import synth
from atelier_core.testing.synth_comfy import clip_l_state_dict, write_t5_fp8

NARROW = text_encoders.T5Config(d_model=256, d_ff=512, num_heads=4, d_kv=64, num_layers=2, vocab_size=512)


def _pack(comfy_host, name: str):
    return sys.modules[f"{comfy_host.pack_module_name}.{name}"]


def _narrow_t5(operations, sd):
    from comfy.text_encoders.t5 import T5

    model = T5(NARROW.comfy_config(), torch.float32, "cpu", operations)
    missing, unexpected = model.load_state_dict(sd, strict=False)
    assert not missing and not unexpected, (missing, unexpected)
    return model


def test_narrow_t5_from_gguf_matches_comfyui_on_the_same_weights(comfy_host, tmp_path):
    import comfy.ops

    floats = synth.t5_state_dict(NARROW, seed=3)
    path = synth.write_t5_gguf(tmp_path / "narrow_t5_Q8_0.gguf", floats, "Q8_0", NARROW)
    kontext_model = _pack(comfy_host, "comfy_glue.kontext_model")
    gguf_ops = _pack(comfy_host, "comfy_glue.gguf_ops")
    raw, shapes, _ = kontext_model.gguf_state_dict(path, archs=("t5encoder",))
    names = text_encoders.hf_names(list(raw), NARROW)
    assert set(names) == set(raw) and "enc.blk.0.ffn_gate.weight" in names  # the file really has llama.cpp names
    quantized = {names[k]: v for k, v in raw.items()}
    dense = {
        k: dequantize(v, v.ggml_type, v.ggml_shape) if v.dtype == torch.uint8 else v.float()
        for k, v in quantized.items()
    }

    ours = _narrow_t5(gguf_ops.make_gguf_ops(torch.float32, "on_the_fly"), quantized)
    reference = _narrow_t5(comfy.ops.manual_cast, dense)
    exact = _narrow_t5(comfy.ops.manual_cast, floats)
    assert ours.shared.weight.dtype == torch.uint8  # the token table stayed quantized

    tokens = torch.randint(0, NARROW.vocab_size, (2, 19), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out_ours = ours(tokens, None)[0]
        out_reference = reference(tokens, None)[0]
        out_exact = exact(tokens, None)[0]
    assert out_ours.shape == (2, 19, NARROW.d_model)
    assert torch.allclose(out_ours, out_reference, rtol=1e-5, atol=1e-5)
    err = float((out_ours - out_exact).norm() / out_exact.norm())
    # measured 0.039: T5 does not scale its attention logits, so random weights give sharp softmaxes that
    # amplify Q8_0's 0.4 % weight error; the exactness check above is the one that tests our code
    assert err < 0.08, f"Q8_0 T5 differs from its float weights by {err:.3g}"

    swapped = dict(quantized)
    gate, up = (
        "encoder.block.1.layer.1.DenseReluDense.wi_0.weight",
        "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
    )
    swapped[gate], swapped[up] = quantized[up], quantized[gate]
    with torch.no_grad():
        out_swapped = _narrow_t5(gguf_ops.make_gguf_ops(torch.float32, "on_the_fly"), swapped)(tokens, None)[0]
    swap_err = float((out_swapped - out_exact).norm() / out_exact.norm())
    assert swap_err > 5 * err, f"gate/up swapped: {swap_err:.3g}"  # the test can tell gate from up


@pytest.fixture(scope="module")
def encoder_files(comfy_host):
    folder = comfy_host.model_path("text_encoders", "")
    folder.mkdir(parents=True, exist_ok=True)
    t5 = folder / "t5xxl_random_Q2_K.gguf"
    if not t5.exists():
        synth.write_t5_gguf_random_blocks(t5, "Q2_K")
    clip_l = folder / "clip_l_random.safetensors"
    save_file(clip_l_state_dict(), str(clip_l))
    narrow = synth.write_t5_gguf(folder / "narrow_t5.gguf", synth.t5_state_dict(NARROW), "Q8_0", NARROW)
    return {"t5": t5.name, "clip_l": clip_l.name, "narrow": narrow.name}


def _encode_graph(clip_l: str, t5: str, text: str) -> dict:
    return {
        "encoders": {
            "class_type": "AtelierKontextTextEncoders",
            "inputs": {"clip_l_name": clip_l, "t5_name": t5, "device": "default"},
        },
        "encode": {"class_type": "CLIPTextEncode", "inputs": {"clip": ["encoders", 0], "text": text}},
        "capture": {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": ["encode", 0]}},
    }


@pytest.mark.slow  # about a minute on two cores: a 1.5 GB encoder through the executor, twice
def test_full_size_t5_gguf_encodes_through_core_clip_text_encode(comfy_host, encoder_files):
    outputs = comfy_host.run(
        _encode_graph(encoder_files["clip_l"], encoder_files["t5"], "paint the cloak deep crimson")
    )
    [[tokens, extra]] = comfy_host.captured["cond"]
    assert tokens.shape[0] == 1 and tokens.shape[2] == 4096 and tokens.shape[1] >= 7
    assert extra["pooled_output"].shape == (1, 768)
    assert torch.isfinite(tokens).all() and torch.isfinite(extra["pooled_output"]).all()
    assert "gguf (" in outputs["encoders"]["text"][0] and "Q2_K" in outputs["encoders"]["text"][0]

    comfy_host.run(_encode_graph(encoder_files["clip_l"], encoder_files["t5"], "add snow to the base"))
    [[other, _]] = comfy_host.captured["cond"]
    n = min(tokens.shape[1], other.shape[1])
    assert not torch.allclose(tokens[:, :n], other[:, :n]), "the prompt did not change the T5 tokens"


@pytest.mark.slow  # about 50 s on two cores: writes and encodes a full-size fp8 T5
def test_t5_safetensors_with_comfyui_prefix_encodes(comfy_host, encoder_files):
    """The T5 input also takes safetensors, including files saved from a ComfyUI CLIP (``t5xxl.transformer.``)."""
    folder = comfy_host.model_path("text_encoders", "")
    t5 = folder / "t5xxl_random_prefixed_fp8.safetensors"
    if not t5.exists():
        write_t5_fp8(t5, prefix="t5xxl.transformer.")
    outputs = comfy_host.run(_encode_graph(encoder_files["clip_l"], t5.name, "paint the cloak deep crimson"))
    [[tokens, extra]] = comfy_host.captured["cond"]
    assert tokens.shape[2] == 4096 and torch.isfinite(tokens).all() and tokens.abs().sum() > 0
    assert outputs["encoders"]["text"][0].endswith("safetensors")


@pytest.mark.parametrize(
    "clip_l_key, t5_key, wrong_input, needle",
    [
        ("clip_l", "narrow", "t5_name", "is not a T5 v1.1 XXL encoder"),  # a T5 of the wrong size
        ("t5", "t5", "clip_l_name", "is a GGUF; the clip_l input takes CLIP-L"),  # T5 in the CLIP-L slot
        ("clip_l", "clip_l", "t5_name", "is not a T5 v1.1 XXL encoder"),  # CLIP-L in the T5 slot
    ],
)
def test_wrong_files_are_refused_by_name(comfy_host, encoder_files, clip_l_key, t5_key, wrong_input, needle):
    """The node names what is wrong with the file. A GGUF is not in the clip_l list at all, so releases that
    validate combo values refuse it before the node runs."""
    graph = _encode_graph(encoder_files[clip_l_key], encoder_files[t5_key], "x")
    by_core, message = run_refused(comfy_host, graph, "encoders", wrong_input)
    if by_core:
        assert encoder_files[clip_l_key] in message and clip_l_key == "t5", message
    else:
        assert "Kontext Text Encoders" in message and needle in message, message


def test_flux_gguf_in_the_t5_slot_is_refused(comfy_host, encoder_files):
    folder = comfy_host.model_path("text_encoders", "")
    flux = synth.write_gguf(folder / "not_a_t5.gguf", synth.kontext_state_dict(synth.TINY), "Q8_0")
    with pytest.raises(ExecutionFailed) as info:
        comfy_host.run(_encode_graph(encoder_files["clip_l"], flux.name, "x"))
    assert "architecture 'flux'" in info.value.exception_message
    assert "Kontext Text Encoders" in info.value.exception_message


@pytest.mark.parametrize("name", ["../../etc/passwd", "not_there.gguf"])
def test_unknown_or_escaping_t5_name_is_refused(comfy_host, encoder_files, name):
    """ComfyUI 0.3.64 does not check V3 combo values: the node's own validation refuses names outside its folders,
    before anything runs, naming the file and the folder it goes in."""
    with pytest.raises(PromptInvalid) as info:
        comfy_host.run(_encode_graph(encoder_files["clip_l"], name, "x"))
    message = str(info.value.node_errors)
    assert f"Kontext Text Encoders: model file {name} is missing" in message, message
    assert "ComfyUI/models/text_encoders/" in message and encoder_files["clip_l"] not in message, message
