"""Linear layers computed in fp8 (e4m3) with per-output-channel weight scales and per-token activation scales.

A weight is quantized once, row by row: each output channel gets its own scale (its absolute maximum / 448), which
keeps small rows as precise as large ones. Activations are scaled per token at every call for the same reason.
``torch._scaled_mm`` then multiplies in fp8 and applies both scale vectors to the float32 accumulator (row-wise
scaling; Hopper runs it on its fp8 tensor cores at about twice the bf16 rate).

Where the device has no row-wise ``_scaled_mm`` (older GPUs, fp16 output, shapes that are not multiples of 16), the
same fp8 weight is upcast and multiplied in the compute dtype: slower, the same memory, and still correct.
"""

from __future__ import annotations

import functools

import torch

FP8 = torch.float8_e4m3fn
FP8_MAX = float(torch.finfo(FP8).max)  # 448
_TINY = 1e-12  # an all-zero row or token gets a harmless scale instead of a division by zero


# A channel's largest weight is stored at 448 / WEIGHT_HEADROOM, not at 448: e4m3 is floating point, so the
# smaller values keep their 3 mantissa bits (a channel's weights stay above e4m3's subnormals down to 1/2000 of
# its maximum), and a LoRA patched in later with the scale kept fixed may grow the channel 4x before it clips.
WEIGHT_HEADROOM = 4.0


def quantize_weight(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(out, in) weight -> (fp8 weight, float32 scales of shape (out, 1)) with weight ≈ fp8 * scale."""
    w = weight.to(torch.float32)
    scale = w.abs().amax(dim=1, keepdim=True).clamp(min=_TINY) * (WEIGHT_HEADROOM / FP8_MAX)
    return (w / scale).to(FP8), scale


def dequantize_weight(wq: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    return (wq.to(torch.float32) * scale).to(dtype)


def _quantize_tokens(x2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    xf = x2.to(torch.float32)
    scale = xf.abs().amax(dim=1, keepdim=True).clamp(min=_TINY) / FP8_MAX
    return (xf / scale).to(FP8), scale


@functools.lru_cache(maxsize=8)
def rowwise_supported(device: torch.device) -> bool:
    """Whether ``torch._scaled_mm`` with row-wise scales and bf16 output runs on this device (probed once)."""
    try:
        a = torch.ones(16, 32, device=device).to(FP8)
        b = torch.ones(16, 32, device=device).to(FP8)
        out = torch._scaled_mm(
            a,
            b.t(),
            scale_a=torch.ones(16, 1, device=device),
            scale_b=torch.ones(1, 16, device=device),
            out_dtype=torch.bfloat16,
        )
        return bool(out.float().sum().item() == 16 * 16 * 32)
    except (RuntimeError, NotImplementedError, TypeError):
        return False


def use_rowwise(wq: torch.Tensor, dtype: torch.dtype, device: torch.device | None = None) -> bool:
    """Whether ``linear`` may use fp8 tensor cores for this weight on ``device`` (default: the weight's); decide
    once, outside any compiled region."""
    out_features, in_features = wq.shape
    return (
        dtype == torch.bfloat16
        and in_features % 16 == 0
        and out_features % 16 == 0
        and rowwise_supported(device if device is not None else wq.device)
    )


def linear(
    x: torch.Tensor,
    wq: torch.Tensor,
    w_scale: torch.Tensor,
    bias: torch.Tensor | None,
    dtype: torch.dtype,
    rowwise: bool,
) -> torch.Tensor:
    """``x @ W.T + bias`` with W given as fp8 + per-row scales; the result has ``dtype``.

    ``rowwise`` is ``use_rowwise(wq, dtype)``, computed by the caller once per weight.
    """
    if not rowwise:
        return torch.nn.functional.linear(
            x.to(dtype), dequantize_weight(wq, w_scale, dtype), None if bias is None else bias.to(dtype)
        )
    out_features, in_features = wq.shape
    lead = x.shape[:-1]
    xq, x_scale = _quantize_tokens(x.reshape(-1, in_features))
    y = torch._scaled_mm(xq, wq.t(), scale_a=x_scale, scale_b=w_scale.t(), out_dtype=torch.bfloat16)
    if bias is not None:
        y = y + bias.to(torch.bfloat16)
    return y.reshape(*lead, out_features)
