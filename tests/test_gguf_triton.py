"""The fused Triton dequantizers against the torch path, bit for bit, for every quantized type and output dtype.

Without a GPU the kernels run in Triton's interpreter, which is chosen when `triton.jit` wraps them, that is when
`triton_dequant` is first imported with `TRITON_INTERPRET=1`. So the checks run in a child process (this file run
as a script) started with that variable; each test reads its verdict from the child's JSON report. With a CUDA
device the same checks also run compiled, in this process.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton", reason="triton is not installed: the fused Triton dequantizer is not tested")

from test_gguf_dequant import random_blocks  # noqa: E402 (after the skip: same random blocks as the torch tests)

from atelier_core.errors import AtelierError  # noqa: E402
from atelier_core.gguf import dequant, triton_dequant  # noqa: E402
from atelier_core.gguf.types import TYPE_INFO, GGMLType  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
QUANT_TYPES = sorted(triton_dequant.SUPPORTED_TYPES)
OUT_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# 1 block, a partial program, and several programs with a partial last one (64 or 8 blocks per program); kept
# small because the interpreter runs each program in Python
BLOCK_COUNTS = (1, 7, 300)


def _bits(x: torch.Tensor) -> torch.Tensor:
    """The bit patterns of a float tensor, so signed zeros and NaN payloads count in a comparison."""
    return x.view({8: torch.int64, 4: torch.int32, 2: torch.int16}[x.element_size()])


def _reference(raw: torch.Tensor, t: GGMLType, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    dequant.set_backend("torch")
    try:
        return dequant.dequantize(raw, t, shape, dtype)
    finally:
        dequant.set_backend(None)


def _raw(t: GGMLType, n_blocks: int, seed: int, device: str) -> tuple[torch.Tensor, int]:
    raw = torch.from_numpy(random_blocks(t, n_blocks, seed=seed).reshape(-1)).to(device)
    return raw, n_blocks * TYPE_INFO[t].block_size


def _compare(got: torch.Tensor, want: torch.Tensor, what: str) -> None:
    if got.dtype != want.dtype or got.shape != want.shape or got.device != want.device:
        raise AssertionError(
            f"{what}: got {got.dtype} {tuple(got.shape)} on {got.device}, want {want.dtype} "
            f"{tuple(want.shape)} on {want.device}"
        )
    if not torch.equal(_bits(got), _bits(want)):
        bad = (_bits(got) != _bits(want)).reshape(-1).nonzero().reshape(-1)
        i = int(bad[0])
        raise AssertionError(
            f"{what}: {bad.numel()} of {got.numel()} values differ, first at {i}: "
            f"{got.reshape(-1)[i].item()!r} != {want.reshape(-1)[i].item()!r}"
        )


def check_type(t: GGMLType, device: str) -> None:
    """Every block count and output dtype of one type, bit-identical to the torch path."""
    for n_blocks in BLOCK_COUNTS:
        raw, n = _raw(t, n_blocks, seed=n_blocks, device=device)
        for dtype in OUT_DTYPES:
            got = triton_dequant.dequantize_triton(raw, t, (n,), dtype)
            _compare(got, _reference(raw, t, (n,), dtype), f"{t.name} x{n_blocks} -> {dtype}")


def check_layouts(device: str) -> None:
    """Raw bytes at an odd storage offset (as in a memory map) and non-contiguous ones, plus other output dtypes."""
    for t in QUANT_TYPES:
        info = TYPE_INFO[t]
        packed, n = _raw(t, 7, seed=11, device=device)
        buf = torch.zeros(packed.numel() + 1, dtype=torch.uint8, device=device)
        buf[1:] = packed
        odd = buf[1:]
        assert odd.storage_offset() == 1
        want = _reference(packed, t, (n,), torch.bfloat16)
        _compare(triton_dequant.dequantize_triton(odd, t, (n,), torch.bfloat16), want, f"{t.name} odd offset")
        strided = torch.stack([packed, torch.zeros_like(packed)], dim=1)[:, 0]  # every other byte of a buffer
        assert not strided.is_contiguous()
        shape = (7, info.block_size)
        got = triton_dequant.dequantize_triton(strided, t, shape, torch.float16)
        _compare(got, _reference(packed, t, shape, torch.float16), f"{t.name} strided")
    raw, n = _raw(GGMLType.Q4_K, 3, seed=12, device=device)
    got = triton_dequant.dequantize_triton(raw, GGMLType.Q4_K, (n,), torch.float64)  # written as f32, cast by torch
    _compare(got, _reference(raw, GGMLType.Q4_K, (n,), torch.float64), "float64 output")
    empty = triton_dequant.dequantize_triton(torch.zeros(0, dtype=torch.uint8, device=device), "q8_0", (0, 32))
    assert empty.shape == (0, 32)


def check_dispatch(device: str) -> None:
    """`dequantize` sends quantized tensors to Triton when the backend says so, and only then."""
    calls = []
    original = triton_dequant.dequantize_triton

    def counting(*args, **kwargs):
        calls.append(args[1])
        return original(*args, **kwargs)

    triton_dequant.dequantize_triton = counting
    try:
        raw, n = _raw(GGMLType.Q5_K, 9, seed=13, device=device)
        want = _reference(raw, GGMLType.Q5_K, (3, n // 3), torch.bfloat16)
        for backend, env in (("triton", None), (None, "triton")):
            dequant.set_backend(backend)
            if env is None:
                os.environ.pop("ATELIER_DEQUANT", None)
            else:
                os.environ["ATELIER_DEQUANT"] = env
            calls.clear()
            got = dequant.dequantize(raw, GGMLType.Q5_K, (3, n // 3), torch.bfloat16)
            assert calls == [GGMLType.Q5_K], f"backend={backend} ATELIER_DEQUANT={env}: Triton was not used"
            _compare(got, want, f"dispatch backend={backend} ATELIER_DEQUANT={env}")
        dequant.set_backend(None)
        os.environ["ATELIER_DEQUANT"] = "triton"
        calls.clear()
        dequant.dequantize(torch.zeros(4, dtype=torch.uint8, device=device), GGMLType.F16, (2,), torch.float32)
        assert not calls, "float storage types stay on the torch path"
        previous = dequant.register_dequantizer(GGMLType.Q5_K, lambda blocks: torch.zeros(blocks.shape[0], 256))
        try:
            assert not dequant.dequantize(raw, GGMLType.Q5_K, (n,)).any() and not calls, "a registered decoder wins"
        finally:
            dequant.register_dequantizer(GGMLType.Q5_K, previous)
        os.environ["ATELIER_DEQUANT"] = "torch"
        dequant.dequantize(raw, GGMLType.Q5_K, (n,))
        assert not calls, "ATELIER_DEQUANT=torch must keep the torch path"
        os.environ.pop("ATELIER_DEQUANT")
        dequant.dequantize(raw.cpu(), GGMLType.Q5_K, (n,))
        assert not calls, "auto uses Triton for CUDA tensors only"
        if raw.device.type == "cuda":
            _compare(dequant.dequantize(raw, GGMLType.Q5_K, (3, n // 3), torch.bfloat16), want, "auto on CUDA")
            assert calls == [GGMLType.Q5_K], "auto must use Triton for CUDA tensors"
    finally:
        triton_dequant.dequantize_triton = original
        dequant.set_backend(None)
        os.environ.pop("ATELIER_DEQUANT", None)


def _run_checks(device: str) -> dict[str, str]:
    """Run every check on `device`; the verdict of each is "ok" or its error."""
    checks = {t.name: (lambda t=t: check_type(t, device)) for t in QUANT_TYPES}
    checks["layouts"] = lambda: check_layouts(device)
    checks["dispatch"] = lambda: check_dispatch(device)
    verdicts = {}
    for name, check in checks.items():
        try:
            check()
            verdicts[name] = "ok"
        except Exception as exc:  # report every failure, not only the first
            verdicts[name] = f"{type(exc).__name__}: {exc}"
    return verdicts


@pytest.fixture(scope="module")
def interpreted() -> dict[str, str]:
    """The verdicts of all checks, run once in Triton's interpreter on CPU tensors in a child process."""
    env = {k: v for k, v in os.environ.items() if k != "ATELIER_DEQUANT"}
    env["TRITON_INTERPRET"] = "1"
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), str(REPO / "tests"), env.get("PYTHONPATH", "")])
    run = subprocess.run([sys.executable, __file__], cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    if run.returncode != 0:
        pytest.fail(f"the interpreter run failed ({run.returncode}):\n{run.stderr[-4000:]}")
    return json.loads(run.stdout)


@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_interpreted_kernel_is_bit_identical_to_torch(interpreted, t):
    assert interpreted[t.name] == "ok"


def test_interpreted_odd_offsets_strides_and_dtypes(interpreted):
    assert interpreted["layouts"] == "ok"


def test_interpreted_dispatch_through_dequantize(interpreted):
    assert interpreted["dispatch"] == "ok"


def test_supported_types_are_all_quantized_types():
    assert triton_dequant.SUPPORTED_TYPES == {t for t, info in TYPE_INFO.items() if not info.is_float}


@pytest.mark.skipif(triton_dequant._interpreted(), reason="TRITON_INTERPRET=1 is set for the whole run")
def test_compiled_kernels_do_not_claim_cpu_tensors():
    # in this process TRITON_INTERPRET is unset, so the kernels are compiled ones: CUDA only
    assert not triton_dequant.available("cpu")
    assert triton_dequant.available("cuda")


def test_backend_names_are_checked(monkeypatch):
    with pytest.raises(AtelierError, match="unknown dequantization backend"):
        dequant.set_backend("cuda")
    monkeypatch.setenv("ATELIER_DEQUANT", "fast")
    with pytest.raises(AtelierError, match="ATELIER_DEQUANT"):
        dequant.dequantize(torch.zeros(18, dtype=torch.uint8), GGMLType.Q4_0, (32,))
    monkeypatch.setenv("ATELIER_DEQUANT", " Torch ")
    assert dequant.backend() == "torch"


def test_failed_automatic_launch_falls_back_to_torch_once(monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("no kernel image for this GPU")

    raw, n = _raw(GGMLType.Q4_K, 2, seed=14, device="cpu")
    want = _reference(raw, GGMLType.Q4_K, (n,), torch.float16)
    monkeypatch.setattr(dequant, "_triton_failed", False)
    monkeypatch.setattr(triton_dequant, "dequantize_triton", broken)
    monkeypatch.setattr(dequant, "_triton_for", lambda t, raw, chosen: chosen != "torch" and not dequant._triton_failed)
    monkeypatch.delenv("ATELIER_DEQUANT", raising=False)
    with caplog.at_level("WARNING", logger=dequant.__name__):
        _compare(dequant.dequantize(raw, GGMLType.Q4_K, (n,), torch.float16), want, "fallback")
        dequant.dequantize(raw, GGMLType.Q4_K, (n,))
    assert dequant._triton_failed
    assert len([r for r in caplog.records if "Triton dequantization failed" in r.getMessage()]) == 1
    monkeypatch.setattr(dequant, "_triton_failed", False)
    monkeypatch.setenv("ATELIER_DEQUANT", "triton")  # a forced backend shows the error instead
    with pytest.raises(RuntimeError, match="no kernel image"):
        dequant.dequantize(raw, GGMLType.Q4_K, (n,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("check", ["types", "layouts", "dispatch"])
def test_compiled_on_gpu(check):
    if check == "types":
        for t in QUANT_TYPES:
            check_type(t, "cuda")
    elif check == "layouts":
        check_layouts("cuda")
    else:
        check_dispatch("cuda")


if __name__ == "__main__":
    # the child process of `interpreted`: TRITON_INTERPRET=1 was set before triton_dequant was imported above
    if not triton_dequant._interpreted():
        sys.exit("TRITON_INTERPRET=1 did not take effect: the kernels were compiled, not interpreted")
    # numpy warns when a float16 output overflows to inf, which the torch path does silently
    warnings.filterwarnings("ignore", "overflow encountered in cast", RuntimeWarning)
    sys.stdout.write(json.dumps(_run_checks("cpu")))


# -- ahead-of-time compilation for real GPUs (no GPU needed) --------------------------------------------------------

# Hopper (H100/H200), Ampere (A100, RTX 30xx), Turing (T4, RTX 20xx), Ada (RTX 40xx), Blackwell (RTX 50xx):
# Triton's bundled ptxas compiles for them without a device.
GPU_TARGETS = (90, 80, 75, 89, 120)


def _compile(t: GGMLType, out: str, arch: int, fusion: bool):
    from triton.backends.compiler import GPUTarget
    from triton.compiler import ASTSource

    kernel = triton_dequant._dequant_kernel
    info = TYPE_INFO[t]
    signature = {"raw_ptr": "*u8", "out_ptr": out, "table_ptr": "*fp32", "n_blocks": "i64"}
    constants = {
        "TYPE": int(t),
        "TYPE_SIZE": info.type_size,
        "BLOCK_SIZE": info.block_size,
        "BLOCKS": triton_dequant._BLOCKS_PER_PROGRAM[info.block_size],
        "OUT_BF16": out == "*bf16",
    }
    signature.update(dict.fromkeys(constants, "constexpr"))
    source = ASTSource(
        fn=kernel, signature=signature, constexprs={(kernel.arg_names.index(k),): v for k, v in constants.items()}
    )
    import triton

    return triton.compile(source, target=GPUTarget("cuda", arch, 32), options={"enable_fp_fusion": fusion})


@pytest.fixture(scope="module")
def gpu_compiler():
    if triton_dequant._interpreted():
        pytest.skip("TRITON_INTERPRET=1 is set for the whole run: the kernels are not compiled")
    try:
        _compile(GGMLType.Q8_0, "*fp32", 90, False)
    except Exception as exc:  # no CUDA backend or ptxas in this Triton build
        pytest.skip(f"Triton cannot compile for CUDA here ({type(exc).__name__}: {str(exc)[:120]})")


@pytest.mark.parametrize("arch", GPU_TARGETS)
@pytest.mark.parametrize("t", QUANT_TYPES, ids=lambda t: t.name)
def test_kernels_compile_for_gpus_without_fused_multiply_add(gpu_compiler, t, arch):
    """Every specialisation compiles to a cubin, and the PTX has no fma: `d * q + m` rounds twice on the GPU as
    in ggml and on the CPU, so the compiled kernels can be bit-exact (the interpreter cannot show this)."""
    for out in ("*bf16", "*fp16", "*fp32") if arch == 90 else ("*bf16",):
        compiled = _compile(t, out, arch, fusion=False)
        assert compiled.asm.get("cubin"), f"{t.name} {out}: no cubin for sm_{arch}"
        ptx = compiled.asm["ptx"]
        assert " fma." not in ptx and "\tfma." not in ptx, f"{t.name} {out} sm_{arch}: the PTX fuses multiply-adds"


def test_fma_check_can_fail(gpu_compiler):
    """The check above would see contraction: with fusion allowed, Q4_K's `dl * q - ml` becomes an fma."""
    assert "fma." in _compile(GGMLType.Q4_K, "*fp32", 90, fusion=True).asm["ptx"]
