"""Kontext Loader node: a Kontext transformer file (GGUF, FP8, bf16/fp16/fp32) as a ComfyUI MODEL."""

from __future__ import annotations

from pathlib import Path

from comfy_api.latest import io, ui

from ..atelier_core.errors import AtelierError
from ..comfy_glue import model_folders
from ..comfy_glue.kontext_model import LoadOptions, load_kontext

MODEL_EXTENSIONS = (".gguf", ".safetensors", ".sft")
MODEL_KEY = model_folders.register("kontext_atelier_transformers", "diffusion_models", MODEL_EXTENSIONS)


def resolve_model_file(name: str) -> Path:
    return model_folders.resolve(
        MODEL_KEY, name, "Kontext Loader: model file", "models/diffusion_models (or models/unet)"
    )


class AtelierKontextLoader(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierKontextLoader",
            display_name="Kontext Loader (GGUF / FP8)",
            category="Kontext Atelier/Loaders",
            description=(
                "Loads a FLUX.1 Kontext [dev] transformer from models/diffusion_models or models/unet: GGUF (F32, F16, "
                "BF16, Q8_0, Q5_0/1, Q4_0/1, Q2_K-Q6_K, IQ4_NL, IQ4_XS), fp8 e4m3fn/e5m2, ComfyUI scaled fp8, or "
                "bf16/fp16/fp32 safetensors. The format is read from the file. Returns a MODEL for every core "
                "sampler and patch node, LoRA loaders included. FLUX.1-dev shares Kontext's layout and loads too."
            ),
            inputs=[
                io.Combo.Input(
                    "model_name",
                    options=model_folders.list_files(MODEL_KEY),
                    tooltip="The transformer file (.gguf or .safetensors) in models/diffusion_models or models/unet. "
                    "Kontext [dev] and FLUX.1-dev share one layout; both load.",
                ),
                io.Combo.Input(
                    "compute_dtype",
                    options=["auto", "bf16", "fp16", "fp32"],
                    default="auto",
                    tooltip="Precision of the matrix products. auto picks what ComfyUI would pick for this device "
                    "(bf16 on recent GPUs, fp32 on the CPU).",
                ),
                io.Combo.Input(
                    "gguf_mode",
                    options=["auto", "on_the_fly", "materialize", "materialize_fp8"],
                    default="auto",
                    tooltip="GGUF only. on_the_fly dequantizes each layer at every step (least VRAM); materialize "
                    "dequantizes once and keeps the result on the GPU (fast, needs VRAM for the full-precision "
                    "weights); materialize_fp8 keeps fp8 weights with per-channel scales instead and multiplies in "
                    "fp8 on GPUs that can (Hopper/Ada; fastest, half materialize's VRAM, fp8 rounding on top of the "
                    "GGUF's); auto materializes when free VRAM allows.",
                ),
                io.Boolean.Input(
                    "fp8_matmul",
                    default=False,
                    tooltip="FP8 files only: compute the matrix products in fp8 (torch._scaled_mm) on GPUs that "
                    "support it (Ada/Hopper and newer). Ignored elsewhere.",
                ),
                io.Combo.Input(
                    "float_weights",
                    options=["as_stored", "fp8_per_channel"],
                    default="as_stored",
                    optional=True,
                    tooltip="bf16/fp16/fp32 files only. fp8_per_channel stores the weights in fp8 with one scale per "
                    "output channel while loading: half the VRAM of bf16, more exact than ComfyUI's plain fp8 cast "
                    "(which loses channels of small weights), fp8 matmul on GPUs that have it. Ignored for GGUF and "
                    "fp8 files.",
                ),
            ],
            outputs=[io.Model.Output(tooltip="The Kontext transformer, managed by ComfyUI's model management.")],
        )

    @classmethod
    def fingerprint_inputs(cls, model_name: str = "", **kwargs):
        # Re-load when the file on disk changes (re-downloaded, replaced, truncated), not only when the name does.
        return model_folders.file_signature(MODEL_KEY, model_name)

    @classmethod
    def execute(
        cls,
        model_name: str,
        compute_dtype: str = "auto",
        gguf_mode: str = "auto",
        fp8_matmul: bool = False,
        float_weights: str = "as_stored",
    ):
        path = resolve_model_file(model_name)
        try:
            loaded = load_kontext(path, LoadOptions(compute_dtype, gguf_mode, fp8_matmul, float_weights))
        except AtelierError as exc:
            raise AtelierError(f"Kontext Loader: {exc}") from None
        return io.NodeOutput(loaded.patcher, ui=ui.PreviewText(loaded.summary))


NODES = [AtelierKontextLoader]
