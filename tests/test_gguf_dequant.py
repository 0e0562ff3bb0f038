"""Our torch dequantizers against the `gguf` package's reference (bit-exact float32) for every supported type."""

import numpy as np
import pytest
import torch
from gguf import GGMLQuantizationType
from gguf.quants import dequantize as ref_dequantize

from atelier_core.errors import AtelierError
from atelier_core.gguf import blocks
from atelier_core.gguf.dequant import DEQUANTIZERS, dequantize, register_dequantizer
from atelier_core.gguf.types import TYPE_INFO, GGMLType

# Byte offsets of the fp16 scale fields in each block; random bytes there could be NaN/inf, which ggml never writes.
FP16_FIELDS = {
    GGMLType.Q4_0: (0,),
    GGMLType.Q4_1: (0, 2),
    GGMLType.Q5_0: (0,),
    GGMLType.Q5_1: (0, 2),
    GGMLType.Q8_0: (0,),
    GGMLType.Q2_K: (80, 82),
    GGMLType.Q3_K: (108,),
    GGMLType.Q4_K: (0, 2),
    GGMLType.Q5_K: (0, 2),
    GGMLType.Q6_K: (208,),
    GGMLType.IQ4_NL: (0,),
    GGMLType.IQ4_XS: (0,),
}


def random_blocks(t: GGMLType, n_blocks: int, seed: int = 0) -> np.ndarray:
    """Random stored bytes for `n_blocks` blocks of `t`, fp16 fields replaced by finite fp16 values."""
    rng = np.random.default_rng(seed)
    info = TYPE_INFO[t]
    raw = rng.integers(0, 256, size=(n_blocks, info.type_size), dtype=np.uint8)
    for off in FP16_FIELDS.get(t, ()):
        scale = (rng.standard_normal(n_blocks) * rng.choice([1e-4, 1e-2, 1.0, 100.0], n_blocks)).astype(np.float16)
        raw[:, off : off + 2] = scale.view(np.uint8).reshape(n_blocks, 2)
    if t == GGMLType.F16:  # float storage: keep the values finite as well
        raw = rng.standard_normal(n_blocks).astype(np.float16).view(np.uint8).reshape(n_blocks, 2)
    return raw


def n_elements(t: GGMLType, raw: np.ndarray) -> int:
    info = TYPE_INFO[t]
    return raw.size // info.type_size * info.block_size


@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_bit_exact_against_gguf_reference(t):
    raw = random_blocks(t, 2048 if TYPE_INFO[t].block_size > 1 else 8192)
    n = n_elements(t, raw)
    expected = ref_dequantize(raw.reshape(-1), GGMLQuantizationType(int(t))).reshape(-1).astype(np.float32)
    got = dequantize(torch.from_numpy(raw.reshape(-1)), t, (n,))
    assert got.dtype == torch.float32 and got.shape == (n,)
    # compare bits, so signed zeros and NaN payloads (BF16/F32 random bytes) count too
    assert np.array_equal(got.numpy().view(np.uint32), expected.view(np.uint32))


@pytest.mark.parametrize("t", [GGMLType.Q4_K, GGMLType.Q8_0, GGMLType.BF16, GGMLType.F16], ids=lambda t: t.name)
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_other_dtypes_are_the_float32_result_cast(t, dtype):
    raw = torch.from_numpy(random_blocks(t, 64, seed=1).reshape(-1))
    n = n_elements(t, raw.numpy())
    f32 = dequantize(raw, t, (n,))
    got = dequantize(raw, t, (4, n // 4), dtype=dtype)
    assert got.dtype == dtype and got.shape == (4, n // 4)
    assert torch.equal(got.reshape(-1), f32.to(dtype))


def test_multi_dim_shape_and_row_order():
    t = GGMLType.Q4_0
    raw = random_blocks(t, 6, seed=2)
    flat = dequantize(torch.from_numpy(raw.reshape(-1)), t, (192,))
    shaped = dequantize(torch.from_numpy(raw.reshape(-1)), t, (2, 3, 32))
    assert torch.equal(shaped.reshape(-1), flat)


def test_unaligned_float_storage_is_read_correctly():
    values = np.arange(10, dtype=np.float16)
    buf = np.zeros(21, dtype=np.uint8)
    buf[1:21] = values.view(np.uint8)
    raw = torch.from_numpy(buf)[1:]  # odd storage offset: cannot be viewed as fp16 in place
    got = dequantize(raw, GGMLType.F16, (10,))
    assert torch.equal(got, torch.arange(10, dtype=torch.float32))
    assert torch.equal(dequantize(raw, GGMLType.F16, (10,), dtype=torch.float16), torch.arange(10).half())


def test_wrong_sizes_and_types_are_refused():
    raw = torch.zeros(18 * 3, dtype=torch.uint8)
    with pytest.raises(AtelierError, match="do not hold"):
        dequantize(raw, GGMLType.Q4_0, (4, 32))
    with pytest.raises(AtelierError, match="uint8"):
        dequantize(raw.float(), GGMLType.Q4_0, (3, 32))
    with pytest.raises(AtelierError, match="unsupported"):
        dequantize(raw, 16, (3, 32))  # IQ2_XXS
    assert dequantize(torch.zeros(0, dtype=torch.uint8), "q4_k", (0, 256)).shape == (0, 256)


def test_every_type_has_a_swappable_decoder():
    assert set(DEQUANTIZERS) == set(GGMLType)
    raw = torch.from_numpy(random_blocks(GGMLType.Q8_0, 4, seed=3).reshape(-1))
    previous = register_dequantizer("Q8_0", lambda blocks: torch.zeros(blocks.shape[0], 32))
    try:
        assert not dequantize(raw, GGMLType.Q8_0, (128,)).any()
    finally:
        register_dequantizer(GGMLType.Q8_0, previous)
    assert dequantize(raw, GGMLType.Q8_0, (128,)).any()


def test_lookup_tables_are_built_once_per_device():
    cpu = torch.device("cpu")
    assert blocks.const("iq4nl_values", cpu) is blocks.const("iq4nl_values", cpu)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_gpu_matches_cpu_bit_for_bit(t):
    raw = torch.from_numpy(random_blocks(t, 512, seed=4).reshape(-1))
    n = n_elements(t, raw.numpy())
    cpu = dequantize(raw, t, (n,))
    gpu = dequantize(raw.cuda(), t, (n,))
    assert gpu.device.type == "cuda"
    assert torch.equal(gpu.cpu().view(torch.int32), cpu.view(torch.int32))
