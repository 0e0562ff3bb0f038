"""The bounds-checked GGUF reader: round trips, and one clear, fast, cheap error for every kind of bad file."""

import os
import struct
import time
import tracemalloc

import gguf
import numpy as np
import pytest
import torch

from atelier_core.errors import AtelierError
from atelier_core.gguf import GGMLType, SkippedArray, dequantize, open_gguf, read_architecture, write_gguf
from atelier_core.gguf.reader import MAX_KEPT_ARRAY_ITEMS, ValueType

# ------------------------------------------------------------------------------------------ round trips


def write_with_gguf_package(path, alignment=None):
    rng = np.random.default_rng(0)
    w = gguf.GGUFWriter(str(path), arch="flux")
    if alignment:
        w.add_custom_alignment(alignment)
    w.add_quantization_version(2)
    w.add_file_type(15)
    w.add_uint8("t.u8", 7)
    w.add_int8("t.i8", -7)
    w.add_uint16("t.u16", 65535)
    w.add_int16("t.i16", -300)
    w.add_int32("t.i32", -(1 << 31))
    w.add_uint64("t.u64", (1 << 64) - 1)
    w.add_int64("t.i64", -(1 << 63))
    w.add_float32("t.f32", 0.5)
    w.add_float64("t.f64", 1e300)
    w.add_bool("t.bool", True)
    w.add_string("t.str", "Kontext ✓")
    w.add_array("t.ints", [1, 2, 3])
    w.add_array("t.strs", ["a", "bc", ""])
    tensors = {
        "img_in.weight": rng.standard_normal((16, 64)).astype(np.float32),
        "img_in.bias": rng.standard_normal(16).astype(np.float32),
        "double_blocks.0.img_attn.qkv.weight": rng.standard_normal((8, 256)).astype(np.float16),
    }
    for name, arr in tensors.items():
        w.add_tensor(name, arr)
    q = rng.standard_normal((4, 64)).astype(np.float32)
    q8 = gguf.quants.quantize(q, gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("q8", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return tensors, q8


@pytest.mark.parametrize("alignment", [None, 64])
def test_round_trip_with_gguf_writer(tmp_path, alignment):
    path = tmp_path / "a.gguf"
    tensors, q8 = write_with_gguf_package(path, alignment)
    with open_gguf(path) as f:
        md = f.metadata
        assert f.architecture == "flux" and f.version == 3
        assert md["general.quantization_version"] == 2 and md["general.file_type"] == 15
        assert (md["t.u8"], md["t.i8"], md["t.u16"], md["t.i16"]) == (7, -7, 65535, -300)
        assert (md["t.i32"], md["t.u64"], md["t.i64"]) == (-(1 << 31), (1 << 64) - 1, -(1 << 63))
        assert md["t.f32"] == 0.5 and md["t.f64"] == 1e300 and md["t.bool"] is True
        assert md["t.str"] == "Kontext ✓" and md["t.ints"] == [1, 2, 3] and md["t.strs"] == ["a", "bc", ""]
        assert f.metadata_types["t.u16"] == "UINT16" and f.metadata_types["t.strs"] == "ARRAY"
        assert f.alignment == (alignment or 32)
        assert list(f.tensors) == [*tensors, "q8"]
        ref = gguf.GGUFReader(str(path))
        for rt in ref.tensors:
            info = f.tensors[rt.name]
            assert info.offset == rt.data_offset and info.offset % f.alignment == 0
            assert info.nbytes == rt.n_bytes and int(info.ggml_type) == int(rt.tensor_type)
        for name, arr in tensors.items():
            info = f.tensors[name]
            assert info.shape == arr.shape  # torch order
            assert np.array_equal(f.raw(name), arr.view(np.uint8).reshape(-1))
        assert f.tensors["q8"].shape == (4, 64) and f.tensors["q8"].ggml_type == GGMLType.Q8_0
        assert np.array_equal(f.raw("q8"), q8.reshape(-1))
        out = dequantize(f.raw_torch("img_in.weight"), GGMLType.F32, f.tensors["img_in.weight"].shape)
        assert torch.equal(out, torch.from_numpy(tensors["img_in.weight"]))


def test_raw_is_a_read_only_view_of_the_memory_map(tmp_path):
    path = tmp_path / "a.gguf"
    write_with_gguf_package(path)
    f = open_gguf(path)
    raw = f.raw("img_in.weight")
    assert raw.dtype == np.uint8 and not raw.flags.writeable and not raw.flags.owndata
    base = raw
    while getattr(base, "base", None) is not None and not isinstance(base, np.memmap):
        base = base.base
    assert isinstance(base, np.memmap)
    f.close()
    with pytest.raises(AtelierError, match="closed"):
        f.raw("img_in.weight")
    with pytest.raises(AtelierError, match="no tensor named"):
        open_gguf(path).raw("nope")


def test_round_trip_with_our_writer(tmp_path):
    rng = np.random.default_rng(1)
    path = tmp_path / "ours.gguf"
    src = {
        "double_blocks.0.img_mlp.0.weight": (rng.standard_normal((4, 512)).astype(np.float32), GGMLType.Q4_K),
        "double_blocks.0.img_mlp.0.bias": (rng.standard_normal(4).astype(np.float32), GGMLType.F32),
        "txt_in.weight": (rng.standard_normal((3, 64)).astype(np.float32), GGMLType.BF16),
    }
    write_gguf(path, src, {"general.name": "tiny"})
    assert read_architecture(path) == "flux"
    with open_gguf(path) as f:
        assert f.metadata_types["general.quantization_version"] == "UINT32"
        assert f.metadata["general.name"] == "tiny"
        for name, (arr, t) in src.items():
            info = f.tensors[name]
            assert info.shape == arr.shape and info.ggml_type == t
            ref = gguf.quants.dequantize(f.raw(name), gguf.GGMLQuantizationType(int(t))).reshape(arr.shape)
            ours = dequantize(f.raw_torch(name), t, info.shape).numpy()
            assert np.array_equal(ours, ref)


def test_large_metadata_arrays_are_skipped_not_loaded(tmp_path):
    path = tmp_path / "big.gguf"
    w = gguf.GGUFWriter(str(path), arch="t5")
    w.add_array("tokenizer.scores", np.zeros(MAX_KEPT_ARRAY_ITEMS + 1, dtype=np.float32).tolist())
    w.add_array("tokenizer.tokens", ["x"] * (MAX_KEPT_ARRAY_ITEMS + 1))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with open_gguf(path) as f:
        assert f.architecture == "t5"
        assert f.metadata["tokenizer.scores"] == SkippedArray("FLOAT32", MAX_KEPT_ARRAY_ITEMS + 1)
        assert isinstance(f.metadata["tokenizer.tokens"], SkippedArray)


# ------------------------------------------------------------------------------------------ hand-made bad files


def s(text: str | bytes) -> bytes:
    b = text.encode() if isinstance(text, str) else text
    return struct.pack("<Q", len(b)) + b


def kv(key: str, vtype: int, payload: bytes) -> bytes:
    return s(key) + struct.pack("<I", vtype) + payload


def ti(name: str, dims, type_id: int, offset: int) -> bytes:
    return (
        s(name)
        + struct.pack("<I", len(dims))
        + b"".join(struct.pack("<Q", d) for d in dims)
        + struct.pack("<IQ", type_id, offset)
    )


def gguf_bytes(kvs=(), tis=(), data=b"", n_tensors=None, n_kv=None, version=3, magic=b"GGUF", alignment=32):
    head = magic + struct.pack(
        "<IQQ", version, len(tis) if n_tensors is None else n_tensors, len(kvs) if n_kv is None else n_kv
    )
    body = head + b"".join(kvs) + b"".join(tis)
    body += b"\0" * (-len(body) % alignment)
    return body + data


ARCH = kv("general.architecture", ValueType.STRING, s("flux"))
F32_TENSOR = ti("w", [4, 2], 0, 0)  # 2 rows of 4 float32 = 32 bytes
GOOD = gguf_bytes([ARCH], [F32_TENSOR], b"\0" * 32)

BAD_FILES = {
    "truncated header": (GOOD[:20], "too few|ends inside"),
    "wrong magic": (b"GGML" + GOOD[4:], "magic"),
    "safetensors": (struct.pack("<Q", 20) + b'{"a": {}}' + b" " * 30, "safetensors"),
    "pickle": (b"\x80\x02" + b"\0" * 40, "pickle"),
    "zip checkpoint": (b"PK\x03\x04" + b"\0" * 40, "zip"),
    "version 1": (gguf_bytes(version=1), "version 1"),
    "version 99": (gguf_bytes(version=99), "version 99"),
    "big endian": (gguf_bytes(version=3 << 24), "big-endian"),
    "absurd tensor count": (gguf_bytes(n_tensors=1 << 62), "tensors"),
    "absurd kv count": (gguf_bytes(n_kv=(1 << 64) - 1), "metadata entries"),
    "more tensors than bytes": (gguf_bytes(n_tensors=50_000), "tensors"),
    "huge key length": (gguf_bytes([struct.pack("<Q", 1 << 60) + b"k"], n_kv=1), "claims"),
    "huge string value": (gguf_bytes([s("k") + struct.pack("<IQ", ValueType.STRING, 1 << 40)]), "claims"),
    "string past the end": (gguf_bytes([s("k") + struct.pack("<IQ", ValueType.STRING, 1000) + b"ab"]), "ends inside"),
    "huge numeric array": (
        gguf_bytes([kv("a", ValueType.ARRAY, struct.pack("<IQ", ValueType.UINT8, 1 << 60))]),
        "claims",
    ),
    "huge string array": (
        gguf_bytes([kv("a", ValueType.ARRAY, struct.pack("<IQ", ValueType.STRING, 1 << 59))]),
        "claims",
    ),
    "too many strings": (
        gguf_bytes(
            [
                kv(
                    "a",
                    ValueType.ARRAY,
                    struct.pack("<IQ", ValueType.STRING, 1_100_000) + struct.pack("<Q", 0) * 1_100_000,
                )
            ]
        ),
        "variable-size items",
    ),
    "unknown value type": (gguf_bytes([kv("a", 77, b"\0" * 8)]), "unknown value type"),
    "unknown array item type": (gguf_bytes([kv("a", ValueType.ARRAY, struct.pack("<IQ", 99, 1))]), "unknown item"),
    "nested arrays": (
        gguf_bytes(
            [
                kv(
                    "a",
                    ValueType.ARRAY,
                    struct.pack("<IQ", ValueType.ARRAY, 1)
                    + struct.pack("<IQ", ValueType.ARRAY, 1)
                    + struct.pack("<IQ", 0, 0),
                )
            ]
        ),
        "nests",
    ),
    "invalid utf-8 key": (gguf_bytes([s(b"\xff\xfe") + struct.pack("<IB", ValueType.UINT8, 0)]), "UTF-8"),
    "invalid utf-8 in a string array": (
        gguf_bytes([kv("a", ValueType.ARRAY, struct.pack("<IQ", ValueType.STRING, 1) + s(b"\xff"))]),
        "UTF-8",
    ),
    "string array past the end": (
        gguf_bytes(
            [kv("a", ValueType.ARRAY, struct.pack("<IQ", ValueType.STRING, 2) + s(b"ab") + struct.pack("<Q", 99))]
        ),
        "past the end",
    ),
    "duplicate key": (gguf_bytes([ARCH, ARCH]), "twice"),
    "bad alignment value": (gguf_bytes([kv("general.alignment", ValueType.UINT32, struct.pack("<I", 3))]), "alignment"),
    "alignment of wrong type": (
        gguf_bytes([kv("general.alignment", ValueType.UINT64, struct.pack("<Q", 32))]),
        "alignment",
    ),
    "unknown tensor type 16": (
        gguf_bytes([ARCH], [ti("double_blocks.0.x.weight", [256, 1], 16, 0)], b"\0" * 66),
        r"double_blocks\.0\.x\.weight.*IQ2_XXS \(id 16\).*Q4_K",
    ),
    "unknown tensor type 99": (gguf_bytes([ARCH], [ti("w", [32, 1], 99, 0)], b"\0" * 64), r"'w'.*id 99.*supported"),
    "five dimensions": (gguf_bytes([ARCH], [ti("w", [1, 1, 1, 1, 1], 0, 0)], b"\0" * 32), "5 dimensions"),
    "huge dimensions": (gguf_bytes([ARCH], [ti("w", [1 << 40, 1 << 40], 0, 0)], b"\0" * 32), "truncated"),
    "truncated data": (GOOD[:-8], "truncated"),
    "offset past the end": (gguf_bytes([ARCH], [ti("w", [4, 2], 0, 1 << 50)], b"\0" * 32), "truncated"),
    "misaligned offset": (gguf_bytes([ARCH], [ti("w", [4], 0, 4)], b"\0" * 64), "alignment"),
    "duplicate tensor": (gguf_bytes([ARCH], [ti("w", [4], 0, 0), ti("w", [4], 0, 32)], b"\0" * 64), "twice"),
    "overlapping tensors": (gguf_bytes([ARCH], [ti("a", [16], 0, 0), ti("b", [8], 0, 32)], b"\0" * 64), "overlap"),
    "partial block row": (gguf_bytes([ARCH], [ti("w", [48, 1], 8, 0)], b"\0" * 64), "not a whole number"),
    "long tensor name": (gguf_bytes([ARCH], [ti("n" * 5000, [4], 0, 0)], b"\0" * 32), "claims"),
    "too many dims for bytes": (gguf_bytes([ARCH], [s("w") + struct.pack("<I", 4) + b"\0" * 8]), "ends inside"),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_file_gives_one_clear_fast_cheap_error(tmp_path, case):
    data, pattern = BAD_FILES[case]
    path = tmp_path / "model.gguf"
    path.write_bytes(data)
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(AtelierError, match=pattern) as err:
            open_gguf(path)
    finally:
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    message = str(err.value)
    assert str(path) in message
    assert message.rstrip().endswith(".")  # a whole sentence saying what to do
    assert elapsed < 1.0, f"took {elapsed:.2f}s"
    assert peak < 100 << 20, f"peak {peak >> 20} MiB"


def test_a_header_at_every_limit_still_parses_fast(tmp_path):
    """The caps bound the work a hostile header can cause: 16k tensors, 16k keys and a 600k-string array."""
    from atelier_core.gguf.reader import MAX_KV, MAX_TENSORS, MAX_WALKED_ITEMS

    n_strings = MAX_WALKED_ITEMS - 1
    kvs = [kv(f"k{i}", ValueType.UINT8, b"\1") for i in range(MAX_KV - 1)]
    kvs.append(kv("vocab", ValueType.ARRAY, struct.pack("<IQ", ValueType.STRING, n_strings) + s("") * n_strings))
    tis = [ti(f"t{i}", [8], 0, 32 * i) for i in range(MAX_TENSORS)]
    path = tmp_path / "limits.gguf"
    path.write_bytes(gguf_bytes(kvs, tis, b"\0" * (32 * MAX_TENSORS)))
    t0 = time.perf_counter()
    with open_gguf(path) as f:
        elapsed = time.perf_counter() - t0
        assert len(f.tensors) == MAX_TENSORS and f.metadata["vocab"] == SkippedArray("STRING", n_strings)
    assert elapsed < 2.0, f"took {elapsed:.2f}s"  # ~0.5 s measured on a 2-core machine


def test_good_hand_made_file_opens(tmp_path):
    path = tmp_path / "good.gguf"
    path.write_bytes(GOOD)
    with open_gguf(path) as f:
        assert f.tensors["w"].shape == (2, 4) and f.tensors["w"].nbytes == 32
        assert f.raw("w").shape == (32,)


@pytest.mark.parametrize("what", ["missing", "directory", "empty"])
def test_paths_that_are_not_files(tmp_path, what):
    path = tmp_path / "x.gguf"
    if what == "directory":
        path.mkdir()
    elif what == "empty":
        path.write_bytes(b"")
    with pytest.raises(AtelierError) as err:
        open_gguf(path)
    assert str(path) in str(err.value)


def test_a_failed_open_does_not_keep_the_file_open(tmp_path):
    path = tmp_path / "bad.gguf"
    path.write_bytes(GOOD[:-8])
    with pytest.raises(AtelierError):
        open_gguf(path)
    os.remove(path)  # would fail on Windows if a map were still open
    assert not path.exists()
