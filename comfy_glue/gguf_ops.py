"""ComfyUI operations for GGUF-quantized linear and embedding layers.

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
from ..atelier_core.model import fp8_linear


def _is_raw(weight: torch.Tensor | None) -> bool:
    return weight is not None and weight.dtype == torch.uint8


def _hooks(module: torch.nn.Module, what: str) -> list:
    """The per-forward patches ComfyUI hangs on a layer's weight or bias: ``weight_function`` everywhere, and on
    releases with dynamic VRAM also ``weight_lowvram_function`` (one patch or None), where LoRA goes for a streamed
    layer."""
    lowvram = getattr(module, f"{what}_lowvram_function", None)
    if lowvram is None:
        lowvram = []
    elif callable(lowvram):
        lowvram = [lowvram]
    return [*lowvram, *getattr(module, f"{what}_function")]


def apply_weight_functions(module: torch.nn.Module, dense: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """Apply what ComfyUI's lowvram mode hangs on a layer for each forward (``weight_function``: LoRA patches of a
    weight kept off the device) to its dense weight; our layers' own weights are no plain parameters, so ComfyUI
    cannot cast and patch them itself."""
    for fn in _hooks(module, "weight"):
        if isinstance(fn, LowVramPatch):
            dense = comfy.lora.calculate_weight(fn.patches[fn.key], dense, fn.key, intermediate_dtype=dtype)
        else:
            dense = fn(dense)
    return dense


def patched_bias(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> torch.Tensor | None:
    """The layer's bias on `device` in `dtype`, with ComfyUI's per-forward ``bias_function`` patches applied."""
    if module.bias is None:
        return None
    bias = module.bias.to(device=device, dtype=dtype)
    for fn in _hooks(module, "bias"):
        bias = fn(bias)
    return bias


MODES = ("on_the_fly", "materialize", "materialize_fp8")


class _GGUFWeight:
    """What GGUF layers share: a weight kept as raw GGUF bytes (or dense), ComfyUI's patch hooks, lowvram patches.

    Subclasses call ``_init_weight(shape, compute_dtype)`` instead of allocating a weight.
    """

    def _init_weight(self, shape: tuple[int, int], compute_dtype: torch.dtype) -> None:
        self.weight = None
        self.bias = None
        self.ggml_type = None
        self.ggml_shape = shape
        self._compute_dtype = compute_dtype
        # (key, payload): a materialized weight and the (device, dtype, storage) it was made for
        self._cache: tuple[tuple, tuple] | None = None

    def reset_parameters(self):
        return None

    def _load_from_state_dict(
        self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys, error_msgs
    ):
        expected = self.ggml_shape
        weight = state_dict.get(prefix + "weight")
        bias = state_dict.get(prefix + "bias")
        if weight is None:
            missing_keys.append(prefix + "weight")
        else:
            self.ggml_type = getattr(weight, "ggml_type", None)
            self.ggml_shape = tuple(getattr(weight, "ggml_shape", weight.shape))
            if self.ggml_shape != expected:
                error_msgs.append(f"{prefix}weight has shape {self.ggml_shape}, expected {expected}")
            self.weight = torch.nn.Parameter(weight, requires_grad=False)
        if bias is not None:
            self.bias = torch.nn.Parameter(bias, requires_grad=False)
        self._cache = None

    def _apply(self, fn, recurse=True):
        # Moving or casting the layer (ComfyUI loading/offloading) invalidates a materialized weight.
        self._cache = None
        return super()._apply(fn, recurse)

    # -- ComfyUI's weight-patching hooks (LoRA) -----------------------------------------------------------------
    def convert_weight(self, weight, inplace=False, **kwargs):
        if not _is_raw(self.weight):
            return weight
        # ComfyUI hands us the stored bytes cast to float32 (exact for 0..255).
        return dequantize(weight.to(torch.uint8), self.ggml_type, self.ggml_shape, torch.float32)

    def set_weight(self, weight, inplace_update=False, seed=None, return_weight=False, **kwargs):
        dense = weight.to(self._compute_dtype)
        if return_weight:
            return dense
        self.weight = torch.nn.Parameter(dense, requires_grad=False)
        self._cache = None

    def dense_weight(self, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """The weight in ``dtype`` on ``device``: dequantized, with any per-forward (lowvram) patches applied."""
        weight = self.weight
        if _is_raw(weight):
            raw = weight.to(device, non_blocking=comfy.model_management.device_supports_non_blocking(device))
            dense = dequantize(raw, self.ggml_type, self.ggml_shape, dtype)
        else:
            dense = weight.to(device=device, dtype=dtype)
        return apply_weight_functions(self, dense, dtype)


def make_gguf_ops(compute_dtype: torch.dtype, mode: str):  # noqa: C901 (the layer classes' methods count here)
    """Return an operations class (ComfyUI's ``custom_operations``) for one loaded GGUF model.

    ``mode``: ``on_the_fly`` dequantizes at every forward; ``materialize`` keeps the dequantized weight on the
    device after its first use; ``materialize_fp8`` keeps an fp8 copy with per-channel scales instead and multiplies
    in fp8 where the GPU can (``atelier_core.model.fp8_linear``). A class per load keeps these settings off shared
    classes, so two loader nodes with different settings never leak into each other.
    """
    if mode not in MODES:
        raise ValueError(f"unknown GGUF mode {mode!r}; expected one of {MODES}")

    class GGUFLinear(_GGUFWeight, comfy.ops.manual_cast.Linear):
        """A Linear whose weight may be raw GGUF bytes (with ``ggml_type``/``ggml_shape``) or a dense tensor."""

        def __init__(self, in_features, out_features, bias=True, device=None, dtype=None):
            torch.nn.Module.__init__(self)
            self.in_features = in_features
            self.out_features = out_features
            self._init_weight((out_features, in_features), compute_dtype)

        def _build(self, device: torch.device, dtype: torch.dtype) -> tuple:
            dense = self.dense_weight(device, dtype)
            if mode == "materialize_fp8":
                wq, scale = fp8_linear.quantize_weight(dense)
                return ("fp8", wq, scale, fp8_linear.use_rowwise(wq, dtype))
            return ("dense", dense)

        def atelier_prepare(self, device: torch.device, dtype: torch.dtype) -> None:
            """Materialize now (eagerly), so a compiled forward finds the weight ready instead of rebuilding it."""
            # Only what `_payload` would keep: lowvram layers (patched per forward, weights off the device) stay lazy.
            if (
                mode != "on_the_fly"
                and not self.weight_function
                and self.weight is not None
                and self.weight.device == device
            ):
                self._payload(device, dtype)

        def _payload(self, device: torch.device, dtype: torch.dtype) -> tuple:
            if torch.compiler.is_compiling():
                # Inside torch.compile: no storage pointers to check; `prepare` ran eagerly before the step.
                return self._cache[1] if self._cache is not None else self._build(device, dtype)
            key = (device, dtype, self.weight.data_ptr())
            if self._cache is not None and self._cache[0] == key:
                return self._cache[1]
            payload = self._build(device, dtype)
            if mode != "on_the_fly" and not self.weight_function and device == self.weight.device:
                self._cache = (key, payload)
            return payload

        def forward(self, input, *args, **kwargs):
            dtype = compute_dtype if input.dtype not in (torch.float16, torch.bfloat16, torch.float32) else input.dtype
            payload = self._payload(input.device, dtype)
            bias = patched_bias(self, input.device, dtype)
            if payload[0] == "fp8":
                _, wq, scale, rowwise = payload
                return fp8_linear.linear(input, wq, scale, bias, dtype, rowwise)
            return torch.nn.functional.linear(input.to(dtype), payload[1], bias)

    class GGUFEmbedding(_GGUFWeight, comfy.ops.manual_cast.Embedding):
        """An Embedding (a text encoder's token table) whose rows may be raw GGUF blocks.

        Only the rows the tokens pick are dequantized: a prompt reads a few hundred of T5's 32,128 rows.
        """

        def __init__(
            self,
            num_embeddings,
            embedding_dim,
            padding_idx=None,
            max_norm=None,
            norm_type=2.0,
            scale_grad_by_freq=False,
            sparse=False,
            _weight=None,
            _freeze=False,
            device=None,
            dtype=None,
        ):
            torch.nn.Module.__init__(self)
            self.num_embeddings = num_embeddings
            self.embedding_dim = embedding_dim
            self.padding_idx = padding_idx
            # torch.nn.Embedding's attributes, read by code that calls F.embedding with this module's settings
            self.max_norm, self.norm_type = max_norm, norm_type
            self.scale_grad_by_freq, self.sparse = scale_grad_by_freq, sparse
            self._init_weight((num_embeddings, embedding_dim), compute_dtype)

        def forward(self, input, out_dtype=None):
            dtype = out_dtype or compute_dtype
            weight = self.weight
            if _is_raw(weight) and not self.weight_function:
                rows = weight.reshape(self.num_embeddings, -1)[input.reshape(-1).to(weight.device)]
                picked = dequantize(rows.to(input.device), self.ggml_type, (rows.shape[0], self.embedding_dim), dtype)
                return picked.reshape(*input.shape, self.embedding_dim)
            return torch.nn.functional.embedding(input, self.dense_weight(input.device, dtype))

    class GGUFOps(comfy.ops.manual_cast):
        Linear = GGUFLinear
        Embedding = GGUFEmbedding

    return GGUFOps


def prepare_layers(diffusion_model: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> int:
    """Let every layer of ours get ready for a (compiled) step eagerly: GGUF layers that keep materialized weights
    build them, fp8 layers probe their matmul path. Returns how many layers were visited."""
    count = 0
    for module in diffusion_model.modules():
        prepare = getattr(module, "atelier_prepare", None)
        if callable(prepare):
            prepare(device, dtype)
            count += 1
    return count
