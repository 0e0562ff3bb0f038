"""Build a ComfyUI MODEL (a ``ModelPatcher`` around ComfyUI's own Flux model) from a Kontext transformer file.

The file is checked first (format from its bytes, header bounds, architecture and every tensor shape), so a bad
file fails in milliseconds with a message instead of deep inside a library. The model config is read from the
tensor shapes rather than ComfyUI's fixed FLUX widths; everything after that is ComfyUI's: its Flux class, its
fp8/manual-cast operations, its model management and its LoRA patching.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import comfy.model_management as mm
import comfy.model_patcher
import comfy.supported_models
import comfy.utils
import torch

from ..atelier_core.errors import AtelierError
from ..atelier_core.gguf import reader as gguf_reader
from ..atelier_core.gguf.types import GGMLType
from ..atelier_core.model import architecture, fp8_linear, model_files, model_ops
from . import core_quant, host_compat
from .fp8_channel_ops import make_fp8_channel_ops
from .gguf_ops import make_gguf_ops
from .lora_guard import KontextModelPatcher

log = logging.getLogger(__name__)

COMPUTE_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_FLOAT_GGML = {GGMLType.F32: torch.float32, GGMLType.F16: torch.float16, GGMLType.BF16: torch.bfloat16}
_FP8 = model_ops.FP8


@dataclass(frozen=True)
class LoadOptions:
    compute_dtype: str = "auto"  # auto | bf16 | fp16 | fp32
    gguf_mode: str = "auto"  # auto | on_the_fly | materialize | materialize_fp8
    fp8_matmul: bool = False
    float_weights: str = "as_stored"  # as_stored | fp8_per_channel (bf16/fp16/fp32 files)


@dataclass
class LoadedKontext:
    patcher: comfy.model_patcher.ModelPatcher
    summary: str


_FLUX_ARCH_HINT = (
    "the Kontext loader needs a FLUX/Kontext transformer (general.architecture = flux). Text-encoder GGUFs go to "
    "the Kontext Text Encoders node."
)


def gguf_state_dict(
    path: Path, archs: tuple[str | None, ...] = (None, "flux"), hint: str = _FLUX_ARCH_HINT
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, ...]], str]:
    """Tensors of a GGUF file, copied into memory of their own; quantized ones stay raw bytes.

    Returns (state dict, shapes, a "Q4_K×200, F32×30" summary); refuses other architectures than ``archs``.

    Why a copy and not views of the memory map: a loaded model outlives its file. If the file is truncated later
    (a re-download, ``cp new.gguf old.gguf``) a view of the map raises SIGBUS at the next forward and kills
    ComfyUI; if it is overwritten in place, the next image silently uses other weights. A copy costs the file's
    size in RAM while the model sits on the CPU, which is what core's loaders hold for a safetensors model too (its
    ``load_state_dict`` copies the mapped tensors into the model's parameters); the peak is that one copy, since
    ``copy_tensors`` reads into fresh arrays with ``readinto`` instead of faulting the map's pages in, and the
    copies move to the GPU (freeing the RAM) when ComfyUI loads the model there.
    """
    with gguf_reader.open_gguf(path) as gf:
        arch = gf.architecture
        if arch not in archs:
            raise AtelierError(f"'{path.name}' is a GGUF of architecture '{arch}'; {hint}")
        infos = dict(gf.tensors)
        copies = dict(gf.copy_tensors())
    sd: dict[str, torch.Tensor] = {}
    shapes: dict[str, tuple[int, ...]] = {}
    counts: dict[str, int] = {}
    for name, info in infos.items():
        raw = torch.from_numpy(copies.pop(name))
        shapes[name] = tuple(info.shape)
        counts[info.ggml_type.name] = counts.get(info.ggml_type.name, 0) + 1
        float_dtype = _FLOAT_GGML.get(info.ggml_type)
        if float_dtype is not None:
            sd[name] = raw.view(float_dtype).reshape(info.shape)
        else:
            raw.ggml_type = info.ggml_type
            raw.ggml_shape = tuple(info.shape)
            sd[name] = raw
    types = ", ".join(f"{k}×{v}" for k, v in sorted(counts.items(), key=lambda kv: -kv[1]))
    return sd, shapes, types


def _safetensors_state_dict(
    path: Path, header: model_files.SafetensorsHeader
) -> tuple[dict[str, torch.Tensor], dict[str, tuple[int, ...]], str, dict]:
    # The header's metadata too: ComfyUI's mixed-precision files describe their layers there.
    sd, metadata = comfy.utils.load_torch_file(str(path), safe_load=True, return_metadata=True)
    dtypes: dict[str, int] = {}
    for _, (dtype, _shape) in header.tensors.items():
        dtypes[dtype] = dtypes.get(dtype, 0) + 1
    stored = ", ".join(f"{k}×{v}" for k, v in sorted(dtypes.items(), key=lambda kv: -kv[1]))
    return sd, header.shapes(), stored, metadata or {}


def _strip(sd: dict, shapes: dict) -> tuple[dict, dict]:
    prefix = architecture.strip_prefix(list(shapes))
    if not prefix:
        return sd, shapes
    n = len(prefix)
    return (
        {k[n:]: v for k, v in sd.items() if k.startswith(prefix)},
        {k[n:]: v for k, v in shapes.items() if k.startswith(prefix)},
    )


def _weight_dtype(sd: dict) -> torch.dtype | None:
    """The storage dtype of the 2-D weights (what ComfyUI calls the weight dtype), None for GGUF bytes."""
    dtypes = {v.dtype for k, v in sd.items() if k.endswith(".weight") and v.ndim == 2}
    if torch.uint8 in dtypes:
        return None
    return max(dtypes, key=lambda d: sum(1 for v in sd.values() if v.dtype == d)) if dtypes else None


def _dense_bytes(shapes: dict, dtype: torch.dtype) -> int:
    size = torch.finfo(dtype).bits // 8
    total = 0
    for dims in shapes.values():
        n = 1
        for d in dims:
            n *= d
        total += n * size
    return total


def _read(path: Path) -> tuple[str, dict, dict, str, dict]:
    """(format, state dict without prefix, shapes, stored-types summary, the safetensors header's metadata)."""
    fmt = model_files.sniff_format(path)
    # The same value check as inspect and quantize (NaN/inf refused); a safetensors header is parsed once for both.
    if fmt == "gguf":
        model_files.check_sampled_values(path)
        sd, shapes, stored = gguf_state_dict(path)
        metadata = {}
    else:
        header = model_files.read_safetensors_header(path)
        model_files.check_sampled_values(path, header)
        sd, shapes, stored, metadata = _safetensors_state_dict(path, header)
    sd, shapes = _strip(sd, shapes)
    return fmt, sd, shapes, stored, metadata


def _compute_dtype(options: LoadOptions, params: int, supported: list, load_device) -> torch.dtype:
    if options.compute_dtype != "auto":
        return COMPUTE_DTYPES[options.compute_dtype]
    compute = mm.unet_dtype(model_params=params, supported_dtypes=supported)
    if compute in _FP8:
        compute = torch.bfloat16 if mm.should_use_bf16(load_device) else torch.float16
    return compute


def _device_facts(load_device, params: int, supported: list) -> model_ops.DeviceFacts:
    return model_ops.DeviceFacts(
        manual_cast=lambda dtype: mm.unet_manual_cast(dtype, load_device, supported),
        auto_dtype=lambda weight: mm.unet_dtype(model_params=params, supported_dtypes=supported, weight_dtype=weight),
        fp8_compute=mm.supports_fp8_compute(load_device),
        fp8_rowwise=fp8_linear.rowwise_supported(load_device),
    )


def _apply(model_config, choice: model_ops.OpsChoice, gguf_mode: str | None) -> None:
    if choice.operations == "gguf":
        model_config.custom_operations = make_gguf_ops(choice.manual_cast, gguf_mode)
    elif choice.operations == "fp8_channel":
        model_config.custom_operations = make_fp8_channel_ops(choice.manual_cast)
    if choice.fp8_optimization:
        model_config.optimizations["fp8"] = True
    if choice.warning:
        log.warning("%s", choice.warning)
    model_config.set_inference_dtype(choice.unet_dtype, choice.manual_cast)


def _build_model(model_config, sd: dict, path: Path, offload_device):
    model = model_config.get_model(sd, "").to(offload_device)
    # Core's own key conversion for this release, the call its BaseModel.load_model_weights makes before loading
    # (since 0.14 FLUX's QK norms are RMSNorm layers whose `.scale` keys it renames to `.weight`); following it
    # rather than copying it lets a later rename in core reach us unchanged.
    sd = model_config.process_unet_state_dict(sd)
    missing, unexpected = model.diffusion_model.load_state_dict(sd, strict=False)
    missing = [k for k in missing if not k.endswith((".scale_weight", ".scale_input"))]
    if missing:
        raise AtelierError(f"'{path.name}': the model could not take tensors {missing[:3]} (of {len(missing)})")
    if unexpected:
        log.info("Kontext Loader: %d tensors in '%s' were not used: %s", len(unexpected), path.name, unexpected[:5])
    return model


def load_kontext(path: Path, options: LoadOptions) -> LoadedKontext:
    """Load a Kontext/FLUX.1 transformer (GGUF, fp8, scaled fp8, bf16/fp16/fp32) as a ComfyUI MODEL."""
    path = Path(path)
    model_ops.check_float_weights(options.float_weights)
    fmt, sd, shapes, stored, metadata = _read(path)
    family = core_quant.quant_family(sd, metadata) if fmt == "safetensors" else None
    if family is not None:
        core_quant.check_loadable(path.name, family, sd, metadata)
    if core_quant.uses_core_loader(family):
        return _load_core_quantized(path, sd, shapes, stored, metadata, options, family)
    scaled_fp8 = sd.pop("scaled_fp8", None)
    shapes.pop("scaled_fp8", None)
    arch_shapes = {k: v for k, v in shapes.items() if not core_quant.is_quant_key(k)}
    shape = architecture.infer_shape(arch_shapes, path.name)

    load_device, offload_device = mm.get_torch_device(), mm.unet_offload_device()
    model_config = comfy.supported_models.Flux(host_compat.complete_flux_config(architecture.unet_config(shape)))
    supported = list(model_config.supported_inference_dtypes)
    quantized = {k: s for k, s in shapes.items() if sd[k].dtype == torch.uint8}
    params = sum(v.numel() for v in sd.values() if v.dtype != torch.uint8) + sum(map(_numel, quantized.values()))
    if scaled_fp8 is not None:
        host_compat.check_scaled_fp8_supported(path.name)
        model_config.scaled_fp8 = scaled_fp8.dtype if scaled_fp8.dtype in _FP8 else torch.float8_e4m3fn
    compute = _compute_dtype(options, params, supported, load_device)
    gguf_mode = _gguf_mode(options.gguf_mode, shapes, compute, load_device) if fmt == "gguf" else None
    storage = model_ops.Storage(fmt, None if scaled_fp8 is not None else _weight_dtype(sd), scaled_fp8 is not None)
    choice = model_ops.choose_operations(
        storage,
        compute,
        _device_facts(load_device, params, supported),
        gguf_mode=gguf_mode,
        fp8_matmul=options.fp8_matmul,
        float_weights=options.float_weights,
        fixed_compute=options.compute_dtype != "auto",
    )
    _apply(model_config, choice, gguf_mode)

    model = _build_model(model_config, sd, path, offload_device)
    patcher = KontextModelPatcher(model, load_device=load_device, offload_device=offload_device)
    if gguf_mode in ("materialize", "materialize_fp8"):
        kept = torch.float8_e4m3fn if gguf_mode == "materialize_fp8" else choice.manual_cast
        _reserve_dense_memory(model, _dense_bytes(quantized, kept))
    summary = (
        f"{path.name}: {fmt}, {shape.depth}+{shape.depth_single} blocks, hidden {shape.hidden}; stored {stored}; "
        f"compute {str(choice.manual_cast or choice.unet_dtype).replace('torch.', '')}"
        + (f"; {choice.note}" if choice.note else "")
    )
    log.info("Kontext Loader: %s", summary)
    return LoadedKontext(patcher, summary)


def _load_core_quantized(path: Path, sd: dict, shapes: dict, stored: str, metadata: dict, options, family: str):
    """A file in one of ComfyUI's own quantized formats, built by core's loader (see ``core_quant``)."""
    ignored = [
        name
        for name, on in (("fp8_matmul", options.fp8_matmul), ("float_weights", options.float_weights != "as_stored"))
        if on
    ]
    if ignored:
        log.warning("Kontext Loader: %s ignored for %s (ComfyUI's own %s operations)", ignored, path.name, family)
    architecture.check_flux_keys([k for k in shapes if not core_quant.is_quant_key(k)], path.name)
    dtype = COMPUTE_DTYPES.get(options.compute_dtype)
    patcher = core_quant.load_with_core(path, sd, metadata, dtype)
    model, flux = patcher.model, patcher.model.diffusion_model
    summary = (
        f"{path.name}: ComfyUI {family}, {len(flux.double_blocks)}+{len(flux.single_blocks)} blocks, hidden "
        f"{flux.hidden_size}; stored {stored}; loaded by ComfyUI's own quantized operations; compute "
        f"{str(model.manual_cast_dtype or model.get_dtype()).replace('torch.', '')}"
    )
    log.info("Kontext Loader: %s", summary)
    return LoadedKontext(patcher, summary)


def _numel(dims) -> int:
    n = 1
    for d in dims:
        n *= d
    return n


def _gguf_mode(mode: str, shapes: dict, compute: torch.dtype, device: torch.device) -> str:
    if mode == "materialize_fp8" and device.type not in ("cuda", "cpu"):
        # torch has no fp8 tensors on Apple (mps) and other backends: keep the weights in the compute dtype instead
        log.warning("Kontext Loader: fp8 weights are not available on %s; materializing in %s", device.type, compute)
        return "materialize"
    if mode in ("on_the_fly", "materialize", "materialize_fp8"):
        return mode
    if mode != "auto":
        raise AtelierError(f"unknown gguf_mode '{mode}'; use auto, on_the_fly, materialize or materialize_fp8")
    if device.type == "cpu":
        return "on_the_fly"  # RAM is the scarce resource on a CPU run; dequantizing costs little there
    dense = _dense_bytes(shapes, compute)
    return "materialize" if mm.get_free_memory(device) > dense * 1.15 + 2 * 1024**3 else "on_the_fly"


def _reserve_dense_memory(model, extra: int) -> None:
    """Count the materialized weights as inference memory, so ComfyUI frees room for them before sampling."""
    base = model.memory_required

    def memory_required(input_shape, cond_shapes={}, **kwargs):  # noqa: B006 (ComfyUI's signature)
        # **kwargs: newer releases pass more (model options); hand them on untouched.
        return base(input_shape, cond_shapes=cond_shapes, **kwargs) + extra

    model.memory_required = memory_required
