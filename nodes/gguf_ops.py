"""ComfyUI operations for GGUF-quantized linear layers.

A quantized weight is kept as its raw GGUF bytes (a uint8 parameter), so ComfyUI's model management moves, counts
and offloads exactly the bytes the file holds. The layer dequantizes on the device where the matmul runs.

LoRA: ComfyUI patches a weight through the module's ``convert_weight``/``set_weight`` hooks (the same hooks its
scaled-fp8 layers use). ``convert_weight`` dequantizes, ComfyUI adds the LoRA delta, and ``set_weight`` stores the
patched result as a dense weight in the compute dtype. The LoRA is therefore applied once per load, not on every
step; ComfyUI's backup restores the raw bytes when the patch is removed. In lowvram mode ComfyUI asks each
forward to apply patches (``weight_function``); we apply them to the dequantized weight.
"""

from __future__ import annotations

import comfy.lora
import comfy.model_management
import comfy.ops
import torch
from comfy.model_patcher import LowVramPatch

from ..atelier_core.gguf.dequant import dequantize


def _is_raw(weight: torch.Tensor | None) -> bool:
    return weight is not None and weight.dtype == torch.uint8


def make_gguf_ops(compute_dtype: torch.dtype, materialize: bool):
    """Return an operations class (ComfyUI's ``custom_operations``) for one loaded GGUF model.

    A class per load keeps ``compute_dtype``/``materialize`` off shared classes, so two loader nodes with different
    settings never leak into each other.
    """

    class GGUFLinear(comfy.ops.manual_cast.Linear):
        """A Linear whose weight may be raw GGUF bytes (with ``ggml_type``/``ggml_shape``) or a dense tensor."""

        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            torch.nn.Module.__init__(self)
            self.in_features = in_features
            self.out_features = out_features
            self.weight = None
            self.bias = None
            self.ggml_type = None
            self.ggml_shape = (out_features, in_features)
            self._dense: tuple[tuple, torch.Tensor] | None = None

        def reset_parameters(self):
            return None

        def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs):
            weight = state_dict.get(prefix + "weight")
            bias = state_dict.get(prefix + "bias")
            if weight is None:
                missing_keys.append(prefix + "weight")
            else:
                self.ggml_type = getattr(weight, "ggml_type", None)
                self.ggml_shape = tuple(getattr(weight, "ggml_shape", weight.shape))
                if self.ggml_shape != (self.out_features, self.in_features):
                    error_msgs.append(f"{prefix}weight has shape {self.ggml_shape}, expected {(self.out_features, self.in_features)}")
                self.weight = torch.nn.Parameter(weight, requires_grad=False)
            if bias is not None:
                self.bias = torch.nn.Parameter(bias, requires_grad=False)
            self._dense = None

        def _apply(self, fn, recurse=True):
            # Moving or casting the layer (ComfyUI loading/offloading) invalidates a materialized weight.
            self._dense = None
            return super()._apply(fn, recurse)

        # -- ComfyUI's weight-patching hooks (LoRA) -------------------------------------------------------------
        def convert_weight(self, weight, inplace=False, **kwargs):
            if not _is_raw(self.weight):
                return weight
            # ComfyUI hands us the stored bytes cast to float32 (exact for 0..255).
            return dequantize(weight.to(torch.uint8), self.ggml_type, self.ggml_shape, torch.float32)

        def set_weight(self, weight, inplace_update=False, seed=None, return_weight=False, **kwargs):
            dense = weight.to(compute_dtype)
            if return_weight:
                return dense
            self.weight = torch.nn.Parameter(dense, requires_grad=False)
            self._dense = None

        # -- forward ------------------------------------------------------------------------------------------
        def dense_weight(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
            key = (device, dtype, self.weight.data_ptr())
            if self._dense is not None and self._dense[0] == key:
                return self._dense[1]
            weight = self.weight
            if _is_raw(weight):
                raw = weight.to(device, non_blocking=comfy.model_management.device_supports_non_blocking(device))
                dense = dequantize(raw, self.ggml_type, self.ggml_shape, dtype)
            else:
                dense = weight.to(device=device, dtype=dtype)
            for fn in self.weight_function:
                if isinstance(fn, LowVramPatch):
                    dense = comfy.lora.calculate_weight(fn.patches[fn.key], dense, fn.key, intermediate_dtype=dtype)
                else:
                    dense = fn(dense)
            if materialize and not self.weight_function and device == weight.device:
                self._dense = (key, dense)
            return dense

        def forward(self, input, *args, **kwargs):
            dtype = compute_dtype if input.dtype not in (torch.float16, torch.bfloat16, torch.float32) else input.dtype
            weight = self.dense_weight(input.device, dtype)
            bias = None
            if self.bias is not None:
                bias = self.bias.to(device=input.device, dtype=dtype)
                for fn in self.bias_function:
                    bias = fn(bias)
            return torch.nn.functional.linear(input.to(dtype), weight, bias)

    class GGUFOps(comfy.ops.manual_cast):
        Linear = GGUFLinear

    return GGUFOps
