"""The loader's choice of operations and dtypes (atelier_core.model.model_ops), branch by branch, with a fake device."""

from __future__ import annotations

import pytest
import torch

from atelier_core.errors import AtelierError
from atelier_core.model.model_ops import DeviceFacts, Storage, choose_operations

BF16, FP16, FP32, E4M3 = torch.bfloat16, torch.float16, torch.float32, torch.float8_e4m3fn


def device(*, cast=None, auto=BF16, fp8_compute=False, rowwise=False) -> DeviceFacts:
    """``cast``: what ComfyUI would compute a dtype in (None: the dtype itself, as on a GPU with bf16 math)."""
    return DeviceFacts(
        manual_cast=lambda dtype: (cast or {}).get(dtype),
        auto_dtype=lambda weight: auto,
        fp8_compute=fp8_compute,
        fp8_rowwise=rowwise,
    )


GGUF = Storage("gguf", None, False)


@pytest.mark.parametrize("mode", ["on_the_fly", "materialize"])
def test_gguf_uses_the_gguf_operations_in_the_compute_dtype(mode):
    choice = choose_operations(GGUF, BF16, device(), gguf_mode=mode)
    assert (choice.operations, choice.unet_dtype, choice.manual_cast) == ("gguf", BF16, BF16)
    assert (
        choice.note
        == {"on_the_fly": "dequantized on the fly", "materialize": "dequantized weights kept on the device"}[mode]
    )


def test_gguf_on_a_cpu_without_bf16_math_computes_in_fp32():
    choice = choose_operations(GGUF, BF16, device(cast={BF16: FP32}), gguf_mode="on_the_fly")
    assert (choice.unet_dtype, choice.manual_cast) == (BF16, FP32)


def test_gguf_materialize_fp8_says_whether_it_multiplies_in_fp8():
    fast = choose_operations(GGUF, BF16, device(rowwise=True), gguf_mode="materialize_fp8")
    assert fast.note.endswith(", fp8 matmul")
    slow = choose_operations(GGUF, FP16, device(rowwise=True), gguf_mode="materialize_fp8")  # row-wise needs bf16
    assert "upcast per layer" in slow.note and "fp8 matmul," not in slow.note


def test_gguf_with_an_unresolved_mode_is_refused():
    with pytest.raises(AtelierError, match="unknown gguf_mode 'auto'"):
        choose_operations(GGUF, BF16, device(), gguf_mode="auto")


def test_fp8_file_keeps_fp8_storage_and_upcasts():
    choice = choose_operations(Storage("safetensors", E4M3, False), BF16, device())
    assert (choice.operations, choice.unet_dtype, choice.manual_cast) == ("fp8_storage", E4M3, BF16)
    assert not choice.fp8_optimization and choice.note == "fp8 storage, upcast per layer" and choice.warning is None


def test_scaled_fp8_stores_in_the_compute_dtype():
    choice = choose_operations(Storage("safetensors", None, True), FP16, device())
    assert (choice.operations, choice.unet_dtype, choice.manual_cast) == ("fp8_storage", FP16, FP16)


def test_fp8_matmul_where_the_device_has_it_and_a_warning_where_not():
    fp8 = Storage("safetensors", E4M3, False)
    fast = choose_operations(fp8, BF16, device(fp8_compute=True), fp8_matmul=True)
    assert fast.fp8_optimization and fast.note == "fp8 matmul" and fast.warning is None
    slow = choose_operations(fp8, BF16, device(fp8_compute=False), fp8_matmul=True)
    assert slow.fp8_optimization and "this device has none" in slow.note and "no fp8 matmul" in slow.warning


def test_float_file_as_fp8_per_channel():
    choice = choose_operations(
        Storage("safetensors", BF16, False), BF16, device(rowwise=True), float_weights="fp8_per_channel"
    )
    assert (choice.operations, choice.manual_cast) == ("fp8_channel", BF16)
    assert choice.note == "fp8 weights (per-channel scales), fp8 matmul"


def test_float_file_keeps_comfyuis_automatic_dtype_unless_the_user_sets_one():
    fp32 = Storage("safetensors", FP32, False)
    auto = choose_operations(fp32, BF16, device(auto=FP16))
    assert (auto.operations, auto.unet_dtype, auto.manual_cast) == ("comfy", FP16, None)
    fixed = choose_operations(fp32, BF16, device(auto=FP16, cast={BF16: FP32}), fixed_compute=True)
    assert (fixed.unet_dtype, fixed.manual_cast) == (BF16, FP32)


def test_unknown_float_weights_is_refused_for_every_format():
    for storage in (GGUF, Storage("safetensors", BF16, False)):
        with pytest.raises(AtelierError, match="unknown float_weights 'fp4'"):
            choose_operations(storage, BF16, device(), gguf_mode="on_the_fly", float_weights="fp4")
