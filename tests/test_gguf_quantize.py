"""Quantizers (ggml reference algorithms), their error bounds, and the GGUF writer's policy and file safety.

Golden digests: SHA-256 of the blocks that ggml itself produced (ggml-python 0.0.45, built from source with
GGML_NATIVE=OFF, `ggml_quantize_chunk` without an importance matrix - what llama-quantize runs) for
`golden_input()`. The input is made with integer arithmetic only, so it is the same on every platform.
"""

import hashlib
import os

import gguf
import numpy as np
import pytest
import torch

from atelier_core.errors import AtelierError
from atelier_core.gguf import GGMLType, dequantize, open_gguf, quantize
from atelier_core.gguf.types import TYPE_INFO
from atelier_core.gguf.writer import LLAMA_FILE_TYPE, default_type_for, write_gguf

GGML_DIGESTS = {
    "F32": "8b8c9ae3c840131672c4da2703b4d3a365e84b1f4352a2d51d9ca7a05738023e",
    "F16": "ce50230962b1e15c00fed1aea397f04c71fcaf59b0c3d1ddda11b0234e211906",
    "Q4_0": "a3880b91410f5f28b881565bb3e38780576778993cc553bee9191020017a48b8",
    "Q4_1": "dc7883bde355019214c07ee16b9735ff2a3bf1e9d5d094e811da33a0d2c1d8c4",
    "Q5_0": "764c7e12f2d3dae55e58664ee431038e45dcec341b07364f8130e186dcdfd724",
    "Q5_1": "7cf1b11d891e7903ef58ab20606466128943e032140e6dc46fa50bb1027cc9b8",
    "Q8_0": "e5f196fb25bf2101876d3341d23a1274534570fb6d4ace51108d675b088f655b",
    "Q2_K": "ff78a57664d37a4dc140e8bf4e169a3a0dc38d230bab6a55ce06363a7b716643",
    "Q3_K": "ec3a00d3f86905740d84caf2e21f5d25952f9ae289b0435ad118eaba8c9921ff",
    "Q4_K": "1a653e2fc5f3285375ba4ece92cba0575d27d3b349d3195e4fe5dc196ec56789",
    "Q5_K": "1aa381bafdae1b7c6b9a8b0c47226263ab1ee22f3ac6081896dd6a754b2090f1",
    "Q6_K": "6a877eab8ad3278137148727f2e6c83e46b4fb7dffb08895b95340823bc5617c",
    "IQ4_NL": "7df373b97bf8871d4aa73a383465f884b5d05794d1e45c8e9f876898b4880dff",
    "IQ4_XS": "154a13fb2d428a14e833a323c64c285405b7bea3f6c31a61d2830cbdc98b2772",
    "BF16": "a0430cae34d9a60396447ba1ff46ffd96cc1da8c245a0128a78332f38ea47cd5",
}


def golden_input(rows: int = 48, n: int = 512) -> np.ndarray:
    """Deterministic float32 data from integer arithmetic only (same bits on every platform)."""
    mask = np.uint64((1 << 64) - 1)
    i = np.arange(rows * n, dtype=np.uint64)
    h = (i * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)) & mask
    h ^= h >> np.uint64(29)
    h = (h * np.uint64(0xBF58476D1CE4E5B9)) & mask
    h ^= h >> np.uint64(32)
    u = ((h >> np.uint64(40)).astype(np.float32) / np.float32(1 << 24)) - np.float32(0.5)  # [-0.5, 0.5), exact
    x = u.reshape(rows, n)
    x[1::4] = x[1::4] * x[1::4] * x[1::4] * np.float32(8)  # heavier tails
    x[2::4] = np.abs(x[2::4])  # one-signed rows
    x *= (np.float32(2) ** -(np.arange(rows, dtype=np.float32) % 9)).reshape(rows, 1)  # scales 1 .. 1/256
    x[3, :] = 0  # zero row
    x[5, :256] = np.float32(-0.0)  # signed zeros
    x[7, :] = np.float32(0.25)  # constant row
    x[9, ::7] = 0  # sparse zeros
    x[11, 100] = np.float32(30)  # an outlier
    return x


def round_trip(x: np.ndarray, t: GGMLType) -> np.ndarray:
    q = quantize(x, t)
    return dequantize(torch.from_numpy(q.reshape(-1)), t, x.shape).numpy()


def test_golden_input_is_the_one_the_digests_were_made_from():
    assert hashlib.sha256(golden_input().tobytes()).hexdigest() == GGML_DIGESTS["F32"]


@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_blocks_equal_ggml_reference_quantizer(t):
    q = quantize(golden_input(), t)
    assert q.dtype == np.uint8 and q.shape == (48, 512 // TYPE_INFO[t].block_size * TYPE_INFO[t].type_size)
    assert hashlib.sha256(q.tobytes()).hexdigest() == GGML_DIGESTS[t.name]


@pytest.mark.parametrize(
    "t",
    [GGMLType.Q8_0, GGMLType.Q5_1, GGMLType.Q5_0, GGMLType.Q4_1, GGMLType.Q4_0, GGMLType.BF16, GGMLType.F16],
    ids=lambda t: t.name,
)
def test_bit_exact_with_gguf_package_quantizer(t):
    # (the gguf package differs from ggml only on all-zero blocks holding -0.0, which this data does not have)
    rng = np.random.default_rng(5)
    x = (rng.standard_normal((64, 1024)) * rng.choice([1e-3, 1.0, 50.0], (64, 1))).astype(np.float32)
    x[0, :64] = np.round(x[0, :64] * 8) / 8  # exact ties for the rounding rules
    expected = gguf.quants.quantize(x, gguf.GGMLQuantizationType(int(t)))
    assert np.array_equal(quantize(x, t), expected.view(np.uint8).reshape(quantize(x, t).shape))


# ggml's own tests/test-quantize-fns.cpp: data 0.1 + 2 cos(i + offset), error = sqrt(sum d^2) / n
GGML_TEST_THRESHOLDS = {GGMLType.Q2_K: 0.0075, GGMLType.Q3_K: 0.0040}


@pytest.mark.parametrize("t", [t for t in GGMLType if not TYPE_INFO[t].is_float], ids=lambda t: t.name)
def test_error_within_ggml_test_thresholds(t):
    n = 32 * 128
    x = (0.1 + 2 * np.cos(np.arange(n, dtype=np.float64) + 0.5)).astype(np.float32)
    y = round_trip(x, t)
    error = np.sqrt(np.sum((y.astype(np.float64) - x) ** 2)) / n
    assert error < GGML_TEST_THRESHOLDS.get(t, 0.002)


# Relative RMSE (rmse / std) of a round trip on Gaussian weights. Measured (256 x 4096 values): Q8_0 0.0054,
# Q6_K 0.0177, Q5_K 0.0361, Q5_1 0.0379, Q5_0 0.0428, Q4_K 0.0714, IQ4_NL 0.0762, IQ4_XS 0.0768, Q4_1 0.0782,
# Q4_0 0.0860, Q3_K 0.151, Q2_K 0.297, BF16 0.0017, F16 0.0002. Bounds are ~10% above.
RELATIVE_RMSE_BOUND = {
    GGMLType.F32: 0.0,
    GGMLType.F16: 0.0003,
    GGMLType.BF16: 0.002,
    GGMLType.Q8_0: 0.006,
    GGMLType.Q6_K: 0.020,
    GGMLType.Q5_K: 0.040,
    GGMLType.Q5_1: 0.042,
    GGMLType.Q5_0: 0.047,
    GGMLType.Q4_K: 0.079,
    GGMLType.IQ4_NL: 0.084,
    GGMLType.IQ4_XS: 0.085,
    GGMLType.Q4_1: 0.086,
    GGMLType.Q4_0: 0.095,
    GGMLType.Q3_K: 0.167,
    GGMLType.Q2_K: 0.327,
}


@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_relative_rmse_on_gaussian_weights(t):
    x = (np.random.default_rng(6).standard_normal((64, 2048)) * 0.02).astype(np.float32)
    rel = np.sqrt(np.mean((round_trip(x, t) - x) ** 2)) / x.std()
    assert rel <= RELATIVE_RMSE_BOUND[t]
    # better types are better: the K-quant ladder is ordered
    if t in (GGMLType.Q3_K, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K):
        lower = {
            GGMLType.Q3_K: GGMLType.Q2_K,
            GGMLType.Q4_K: GGMLType.Q3_K,
            GGMLType.Q5_K: GGMLType.Q4_K,
            GGMLType.Q6_K: GGMLType.Q5_K,
        }[t]
        assert rel < np.sqrt(np.mean((round_trip(x, lower) - x) ** 2)) / x.std()


@pytest.mark.parametrize("t", list(GGMLType), ids=lambda t: t.name)
def test_zero_and_constant_tensors_round_trip(t):
    assert not round_trip(np.zeros((2, 256), np.float32), t).any()
    const = round_trip(np.full((2, 256), 0.75, np.float32), t)
    assert np.allclose(const, 0.75, rtol=0.01)


def test_float_types_are_bit_exact():
    x = np.random.default_rng(7).standard_normal((4, 64)).astype(np.float32)
    assert np.array_equal(round_trip(x, GGMLType.F32), x)
    bf = torch.from_numpy(x).bfloat16().float().numpy()
    assert np.array_equal(round_trip(bf, GGMLType.BF16), bf)
    f16 = x.astype(np.float16).astype(np.float32)
    assert np.array_equal(round_trip(f16, GGMLType.F16), f16)


def test_shapes_and_bad_input():
    x = np.random.default_rng(8).standard_normal((2, 3, 256)).astype(np.float32)
    q = quantize(x, "q4_k")
    assert q.shape == (2, 3, 144)
    assert np.array_equal(round_trip(x, GGMLType.Q4_K), round_trip(x.reshape(6, 256), GGMLType.Q4_K).reshape(x.shape))
    assert quantize(x[0, 0], GGMLType.Q8_0).shape == (8 * 34,)
    with pytest.raises(AtelierError, match="not a whole number"):
        quantize(np.zeros((4, 100), np.float32), GGMLType.Q4_K)
    bad = x.copy()
    bad[1, 1, 7] = np.nan
    with pytest.raises(AtelierError, match="NaN"):
        quantize(bad, GGMLType.Q6_K)
    with pytest.raises(AtelierError, match="unsupported"):
        quantize(x, "IQ2_XXS")


def test_large_tensor_is_quantized_in_chunks(monkeypatch):
    import importlib

    quantize_module = importlib.import_module("atelier_core.gguf.quantize")  # the package exports the function

    x = np.random.default_rng(9).standard_normal((12, 1024)).astype(np.float32)
    whole = quantize(x, GGMLType.Q4_K)
    monkeypatch.setattr(quantize_module, "CHUNK_ELEMENTS", 5 * 256)  # chunks that cut rows
    assert np.array_equal(quantize(x, GGMLType.Q4_K), whole)


@pytest.mark.parametrize("t", [t for t in GGMLType if not TYPE_INFO[t].is_float], ids=lambda t: t.name)
def test_blocks_do_not_depend_on_their_neighbours(t, monkeypatch):
    """A block's bytes are the same quantized alone, in a chunk of any size or as the last block of a chunk.

    The searches run over many blocks at once with sums whose order must stay ggml's whatever the batch; this
    catches a batch shape under which numpy would reduce in another order (e.g. one block of 32 values).
    """
    import importlib

    qm = importlib.import_module("atelier_core.gguf.quantize")
    bs = TYPE_INFO[t].block_size
    rng = np.random.default_rng(int(t) + 100)
    x = (rng.standard_normal((9, bs)) * 10.0 ** rng.integers(-6, 4, (9, 1))).astype(np.float32)
    x[2, : bs // 2] = 0
    whole = quantize(x, t)
    for i in range(9):
        assert np.array_equal(quantize(x[i : i + 1], t), whole[i : i + 1]), (t.name, i)
    for chunk_blocks in (2, 4):  # chunks that leave a single block at the end
        monkeypatch.setattr(qm, "CHUNK_ELEMENTS", chunk_blocks * bs)
        assert np.array_equal(quantize(x, t), whole), (t.name, chunk_blocks)


def test_row_sums_keep_ggml_order():
    import importlib

    qm = importlib.import_module("atelier_core.gguf.quantize")
    rng = np.random.default_rng(3)
    for shape in [(32, 1), (16, 2), (32, 7), (32, 1000)]:
        a = (rng.standard_normal(shape) * 10.0 ** rng.integers(-8, 8, shape)).astype(np.float32)
        a[0, 0] = -0.0
        for arr in (a, np.asfortranarray(a)):
            s = np.zeros(shape[1], np.float32)
            for row in arr:
                s += row
            assert np.array_equal(qm._sum_rows(arr).view(np.uint32), s.view(np.uint32)), shape


def test_parallel_quantizer_makes_the_same_bytes():
    """Worker processes quantize row chunks of a tensor; the assembled bytes are `quantize`'s."""
    import importlib

    qm = importlib.import_module("atelier_core.gguf.quantize")
    rng = np.random.default_rng(17)
    x = (rng.standard_normal((37, 1024)) * rng.choice([1e-6, 0.02, 3.0], (37, 1))).astype(np.float32)
    x[3] = 0
    x[4, :300] = -0.0
    with qm.ParallelQuantizer(2, task_elements=3 * 1024) as pool:  # tasks of 3 rows: 13 tasks, the last short
        pool.start()
        for t in sorted(qm.PARALLEL_TYPES) + [GGMLType.Q8_0, GGMLType.F16]:
            fetch = pool.submit(x.reshape(37, 4, 256), t)  # 3-D: rows are the last axis
            assert np.array_equal(fetch(), quantize(x.reshape(37, 4, 256), t)), t.name
        with pytest.raises(AtelierError, match="NaN"):
            bad = x.copy()
            bad[30, 5] = np.nan
            pool.submit(bad, GGMLType.Q4_K)
        with pytest.raises(AtelierError, match="not a whole number"):
            pool.submit(np.zeros((40, 100), np.float32), GGMLType.Q4_K)


def test_cpu_workers_env(monkeypatch):
    import importlib

    qm = importlib.import_module("atelier_core.gguf.quantize")
    monkeypatch.setenv("ATELIER_QUANT_WORKERS", "3")
    assert qm.cpu_workers() == 3
    monkeypatch.setenv("ATELIER_QUANT_WORKERS", "many")
    with pytest.raises(AtelierError, match="ATELIER_QUANT_WORKERS"):
        qm.cpu_workers()
    monkeypatch.delenv("ATELIER_QUANT_WORKERS")
    assert qm.cpu_workers() >= 1


# ------------------------------------------------------------------------------------------ writer


@pytest.mark.parametrize(
    "name, shape, requested, expected",
    [
        ("double_blocks.0.img_attn.qkv.weight", (9216, 3072), "Q4_K", GGMLType.Q4_K),
        ("double_blocks.0.img_attn.qkv.bias", (9216,), "Q4_K", GGMLType.F32),
        ("double_blocks.0.img_attn.norm.query_norm.scale", (128,), "Q8_0", GGMLType.F32),
        ("img_in.weight", (3072, 64), "Q4_K", GGMLType.F32),
        ("final_layer.linear.weight", (64, 3072), "Q5_K", GGMLType.F32),
        ("time_in.in_layer.weight", (3072, 256), "Q4_0", GGMLType.F32),
        ("time_in.out_layer.weight", (3072, 3072), "Q4_K", GGMLType.F16),
        ("txt_in.weight", (3072, 4096), "Q6_K", GGMLType.F16),
        ("final_layer.adaLN_modulation.1.weight", (6144, 3072), "Q4_K", GGMLType.F16),
        ("txt_in.weight", (3072, 4096), "BF16", GGMLType.F32),
        ("model.diffusion_model.img_in.weight", (3072, 64), "Q8_0", GGMLType.F32),
        ("single_blocks.0.linear2.weight", (3072, 15360), "Q4_K", GGMLType.Q4_K),
        ("single_blocks.0.linear2.weight", (3072, 15360), "BF16", GGMLType.BF16),
        ("some.weight", (64, 96), "Q4_K", GGMLType.F32),  # small
        ("some.weight", (512, 96), "Q4_K", GGMLType.F16),  # row not a whole number of 256-blocks
        ("conv.weight", (128, 64, 3, 3), "Q4_K", GGMLType.F32),
    ],
)
def test_default_type_policy(name, shape, requested, expected):
    assert default_type_for(name, shape, requested) == expected


def flux_like_tensors(rng):
    return {
        "img_in.weight": (rng.standard_normal((128, 64)).astype(np.float32), GGMLType.F32),
        "img_in.bias": (rng.standard_normal(128).astype(np.float32), GGMLType.F32),
        "double_blocks.0.img_attn.qkv.weight": (rng.standard_normal((96, 512)).astype(np.float32), GGMLType.Q4_K),
        "double_blocks.0.img_mlp.2.weight": (rng.standard_normal((64, 512)).astype(np.float32), GGMLType.Q6_K),
        "txt_in.weight": (rng.standard_normal((128, 256)).astype(np.float32), GGMLType.F16),
    }


def test_written_file_has_the_popular_layout_and_reads_in_gguf_package(tmp_path):
    path = tmp_path / "kontext-Q4_K.gguf"
    src = flux_like_tensors(np.random.default_rng(10))
    calls = []
    write_gguf(path, src, {"general.name": "Kontext test"}, progress=lambda d, n, name: calls.append((d, n, name)))
    assert calls[-1][:2] == (len(src), len(src))
    with open_gguf(path) as f:
        assert f.metadata["general.architecture"] == "flux"
        assert f.metadata["general.quantization_version"] == 2
        assert f.metadata_types["general.file_type"] == "UINT32"
        assert f.metadata["general.file_type"] in LLAMA_FILE_TYPE.values()
        assert list(f.tensors) == list(src)
    reader = gguf.GGUFReader(str(path))
    for rt in reader.tensors:
        arr, t = src[rt.name]
        assert int(rt.tensor_type) == int(t)
        ref = gguf.quants.dequantize(rt.data, rt.tensor_type).reshape(arr.shape)
        assert np.array_equal(ref, round_trip(arr, t))
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


def test_existing_output_is_refused_unless_overwrite(tmp_path):
    path = tmp_path / "out.gguf"
    path.write_bytes(b"keep me")
    src = {"w": (np.ones((2, 32), np.float32), GGMLType.Q8_0)}
    with pytest.raises(AtelierError, match="already exists"):
        write_gguf(path, src)
    assert path.read_bytes() == b"keep me"
    write_gguf(path, src, overwrite=True)
    with open_gguf(path) as f:
        assert f.tensors["w"].ggml_type == GGMLType.Q8_0


class Exploding:
    shape = (4, 64)

    def __array__(self, dtype=None, copy=None):
        raise KeyboardInterrupt  # the user pressing Ctrl-C half way


def test_interrupted_or_failed_write_leaves_no_file(tmp_path):
    path = tmp_path / "out.gguf"
    src = {"a": (np.ones((4, 64), np.float32), GGMLType.Q8_0), "b": (Exploding(), GGMLType.Q8_0)}
    with pytest.raises(KeyboardInterrupt):
        write_gguf(path, src)
    assert os.listdir(tmp_path) == []
    big = np.full((2, 32), 1e6, np.float32)
    with pytest.raises(AtelierError, match="F16 range") as err:
        write_gguf(path, {"w": (big, GGMLType.F16)})
    assert str(path) in str(err.value)
    assert os.listdir(tmp_path) == []
    with pytest.raises(AtelierError, match="not a whole number"):
        write_gguf(path, {"w": (np.ones((2, 100), np.float32), GGMLType.Q4_K)})
    with pytest.raises(AtelierError, match="does not exist"):
        write_gguf(tmp_path / "missing" / "x.gguf", {})
    assert os.listdir(tmp_path) == []
