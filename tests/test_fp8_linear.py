"""fp8 linear layers with per-channel weight and per-token activation scales (``atelier_core.model.fp8_linear``).

The row-wise ``torch._scaled_mm`` runs on the CPU in this torch, so the fast path is checked here as well as the
upcast fallback; on a GPU the same function runs on fp8 tensor cores.
"""

from __future__ import annotations

import pytest
import torch

from atelier_core.model import fp8_linear

CPU = torch.device("cpu")


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm())


def _case(seed: int, m: int = 48, k: int = 256, n: int = 128):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(2, m, k, generator=gen)
    # rows of very different magnitude: a per-tensor scale would flush the small rows to zero
    w = torch.randn(n, k, generator=gen) * torch.logspace(-3, 0, n).unsqueeze(1)
    bias = torch.randn(n, generator=gen)
    return x, w, bias


def test_weight_quantization_is_per_channel():
    _, w, _ = _case(0)
    wq, scale = fp8_linear.quantize_weight(w)
    assert wq.dtype == torch.float8_e4m3fn and scale.shape == (w.shape[0], 1)
    back = fp8_linear.dequantize_weight(wq, scale, torch.float32)
    row_err = (back - w).norm(dim=1) / w.norm(dim=1)
    # e4m3 keeps 3 mantissa bits: about 2-3 % per row, the smallest rows included
    assert float(row_err.max()) < 0.05


def test_per_channel_keeps_small_channels_that_a_plain_cast_loses():
    """Rows three decades apart: a plain e4m3 cast (ComfyUI's fp8 weight dtype) flushes the small ones towards
    zero, a scale per channel keeps every row to e4m3's few percent."""
    _, w, _ = _case(4)
    w = w * 0.02  # Kontext's weight scale
    wq, scale = fp8_linear.quantize_weight(w)
    ours = (fp8_linear.dequantize_weight(wq, scale, torch.float32) - w).norm(dim=1) / w.norm(dim=1)
    plain = (w.to(torch.float8_e4m3fn).float() - w).norm(dim=1) / w.norm(dim=1)
    assert float(ours.max()) < 0.05
    assert float(plain.max()) > 0.5  # the smallest channels lose most of their value
    assert float(plain.median()) > 2 * float(ours.median())


def test_zero_rows_and_tokens_stay_zero():
    w = torch.zeros(32, 64)
    w[1] = 1.0
    wq, scale = fp8_linear.quantize_weight(w)
    x = torch.zeros(3, 64, dtype=torch.bfloat16)
    y = fp8_linear.linear(x, wq, scale, None, torch.bfloat16, fp8_linear.use_rowwise(wq, torch.bfloat16))
    assert torch.isfinite(y).all() and not y.any()


@pytest.mark.skipif(not fp8_linear.rowwise_supported(CPU), reason="this torch has no row-wise _scaled_mm on the CPU")
def test_rowwise_fp8_matmul_close_to_float():
    x, w, bias = _case(1)
    wq, scale = fp8_linear.quantize_weight(w)
    assert fp8_linear.use_rowwise(wq, torch.bfloat16)
    y = fp8_linear.linear(x.to(torch.bfloat16), wq, scale, bias, torch.bfloat16, rowwise=True)
    ref = torch.nn.functional.linear(x, w, bias)
    assert y.dtype == torch.bfloat16 and y.shape == ref.shape
    # measured 0.03: e4m3 rounding of both operands; a wrong scale layout gives errors of order 1
    assert _rel(y, ref) < 0.06
    # the same fp8 weight through the upcast path: only the activation rounding differs
    slow = fp8_linear.linear(x.to(torch.bfloat16), wq, scale, bias, torch.bfloat16, rowwise=False)
    assert _rel(y, slow) < 0.05


def test_fallback_when_shapes_or_dtype_do_not_fit():
    x, w, bias = _case(2, k=40, n=24)  # not multiples of 16
    wq, scale = fp8_linear.quantize_weight(w)
    assert not fp8_linear.use_rowwise(wq, torch.bfloat16)
    assert not fp8_linear.use_rowwise(fp8_linear.quantize_weight(torch.randn(32, 32))[0], torch.float32)
    y = fp8_linear.linear(x, wq, scale, bias, torch.float32, rowwise=False)
    assert y.dtype == torch.float32
    assert _rel(y, torch.nn.functional.linear(x, w, bias)) < 0.05
