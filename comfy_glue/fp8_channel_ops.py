"""ComfyUI operations that store a float checkpoint's linear weights in fp8 with one scale per output channel.

ComfyUI's "fp8_e4m3fn" weight dtype casts bf16 weights to fp8 as they are. Kontext's weights are small (about 0.02),
where e4m3 is often subnormal (below 2**-6) with fewer significant bits, and a channel whose weights are all small
loses most of its value. Scaling each output channel so that its largest weight lands on fp8's maximum (448) uses
the whole format for every channel: the same half of bf16's memory, less rounding error (tests/test_fp8_linear.py
for unequal channels, tests/test_fp8_channel_host.py for a whole model).

The weight is quantized while the state dict loads, so only the fp8 copy ever reaches the GPU. Products run
through ``atelier_core.model.fp8_linear`` (row-wise fp8 matmul where the GPU has it, the fp8 weight upcast elsewhere).
LoRA uses ComfyUI's ``convert_weight``/``set_weight`` hooks with the scale kept fixed and ComfyUI's stochastic
rounding, as its own scaled-fp8 layers do, so ComfyUI's backup restores the exact original bytes.
"""

from __future__ import annotations

import comfy.float
import comfy.model_management
import comfy.ops
import torch

from ..atelier_core.model import fp8_linear
from .gguf_ops import apply_weight_functions, patched_bias

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)


def make_fp8_channel_ops(compute_dtype: torch.dtype):  # noqa: C901 (the layer class's methods count here)
    """An operations class (ComfyUI's ``custom_operations``) for one loaded float checkpoint."""

    class Fp8ChannelLinear(comfy.ops.manual_cast.Linear):
        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            torch.nn.Module.__init__(self)
            self.in_features = in_features
            self.out_features = out_features
            self.weight = None
            self.bias = None
            self.register_buffer("weight_scale", None)
            self._rowwise: dict[tuple, bool] = {}

        def reset_parameters(self):
            return None

        def _load_from_state_dict(
            self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
        ):
            weight = state_dict.get(prefix + "weight")
            bias = state_dict.get(prefix + "bias")
            if weight is None:
                missing_keys.append(prefix + "weight")
            elif tuple(weight.shape) != (self.out_features, self.in_features):
                error_msgs.append(
                    f"{prefix}weight has shape {tuple(weight.shape)}, expected {(self.out_features, self.in_features)}"
                )
            else:
                wq, scale = fp8_linear.quantize_weight(weight)
                self.weight = torch.nn.Parameter(wq, requires_grad=False)
                self.weight_scale = scale
            if bias is not None:
                self.bias = torch.nn.Parameter(bias.to(compute_dtype), requires_grad=False)

        # -- ComfyUI's weight-patching hooks (LoRA): the scale stays, as in ComfyUI's scaled fp8 ----------------
        def convert_weight(self, weight, inplace=False, **kwargs):
            scale = self.weight_scale.to(device=weight.device, dtype=weight.dtype)
            if inplace:
                weight *= scale
                return weight
            return weight * scale

        def set_weight(self, weight, inplace_update=False, seed=None, return_weight=False, **kwargs):
            scaled = weight / self.weight_scale.to(device=weight.device, dtype=weight.dtype)
            wq = comfy.float.stochastic_rounding(
                scaled.clamp(-fp8_linear.FP8_MAX, fp8_linear.FP8_MAX), fp8_linear.FP8, seed=seed
            )
            if return_weight:
                return wq
            if inplace_update:
                self.weight.data.copy_(wq)
            else:
                self.weight = torch.nn.Parameter(wq, requires_grad=False)

        # -- forward ------------------------------------------------------------------------------------------
        def _use_rowwise(self, device: torch.device, dtype: torch.dtype) -> bool:
            key = (device, dtype)
            if key not in self._rowwise:
                self._rowwise[key] = fp8_linear.use_rowwise(self.weight, dtype, device)
            return self._rowwise[key]

        def atelier_prepare(self, device: torch.device, dtype: torch.dtype) -> None:
            """Probe the matmul path eagerly, so a compiled forward only reads the answer."""
            if self.weight is not None:
                self._use_rowwise(device, dtype)

        def forward(self, input, *args, **kwargs):
            dtype = input.dtype if input.dtype in _FLOATS else compute_dtype
            device = input.device
            weight = self.weight.to(device, non_blocking=comfy.model_management.device_supports_non_blocking(device))
            scale = self.weight_scale.to(device)
            bias = patched_bias(self, device, dtype)
            if self.weight_function:  # lowvram: ComfyUI asks each forward to apply the patches
                dense = apply_weight_functions(self, fp8_linear.dequantize_weight(weight, scale, dtype), dtype)
                return torch.nn.functional.linear(input.to(dtype), dense, bias)
            return fp8_linear.linear(input, weight, scale, bias, dtype, self._use_rowwise(device, dtype))

    class Fp8ChannelOps(comfy.ops.manual_cast):
        Linear = Fp8ChannelLinear

    return Fp8ChannelOps
