"""``kontext-atelier quantize | inspect | compare``: the GGUF toolkit, without llama.cpp.

    kontext-atelier quantize flux1-kontext-dev.safetensors kontext-Q4_K_M.gguf --type Q4_K_M
    kontext-atelier quantize my-finetune.safetensors out.gguf --type Q8_0 --lora style.safetensors --lora-strength 0.8
    kontext-atelier inspect kontext-Q4_K_M.gguf [--json]
    kontext-atelier compare flux1-kontext-dev.safetensors kontext-Q4_K_M.gguf [--worst 10] [--json]

This module builds the three parsers only; the commands live in ``atelier_core.cli.gguf_commands`` (which imports
torch) and are imported when one runs.
"""

from __future__ import annotations

from ._lazy import LazyNames, handler

_IMPL = ".cli.gguf_commands"
_RECIPES = LazyNames(".gguf.convert", "RECIPE_NAMES")


def register(subparsers) -> None:
    q = subparsers.add_parser(
        "quantize",
        help="quantize a Kontext safetensors checkpoint to GGUF (Q8_0 ... Q2_K, _S/_M recipes)",
        description=(
            "Convert a FLUX.1 Kontext [dev] transformer (bf16/fp16/fp32/fp8 safetensors, BFL or ComfyUI layout) to "
            "a GGUF that ComfyUI-GGUF and the Kontext Atelier loader read, with ggml's reference quantizers. "
            "Streams one tensor at a time; optionally merges a LoRA first."
        ),
    )
    q.add_argument("input", help="source .safetensors (bf16, fp16, fp32, fp8 or scaled fp8)")
    q.add_argument("output", help="the .gguf to write (refused if it exists, unless --force)")
    q.add_argument(
        "--type",
        "-t",
        default="Q8_0",
        type=str.upper,
        choices=_RECIPES,
        metavar="TYPE",
        help="quantization type or recipe: %(choices)s (default: Q8_0)",
    )
    q.add_argument("--lora", help="a LoRA (.safetensors) to merge into the weights before quantizing")
    q.add_argument("--lora-strength", type=float, default=1.0, help="LoRA strength (default: 1.0)")
    q.add_argument("--force", action="store_true", help="replace the output file if it exists")
    q.add_argument("--no-progress", action="store_true", help="no progress bar on standard error")
    q.add_argument("--json", action="store_true", help="print the result as JSON")
    q.set_defaults(handler=handler(_IMPL, "run_quantize"))

    i = subparsers.add_parser(
        "inspect",
        help="describe a GGUF or safetensors model file and whether the Kontext loader accepts it",
        description=(
            "Architecture, tensor count, type histogram, size, bits per weight, metadata, and whether the Kontext "
            "Atelier loader accepts the file (and why not)."
        ),
    )
    i.add_argument("file", help="a .gguf or .safetensors file")
    i.add_argument("--json", action="store_true", help="print the result as JSON")
    i.add_argument("--tensors", action="store_true", help="list every tensor with its shape and type")
    i.set_defaults(handler=handler(_IMPL, "run_inspect"))

    c = subparsers.add_parser(
        "compare",
        help="per-tensor relative error of a quantized model against its source",
        description=(
            "Dequantize every tensor of QUANT and compare it with the same tensor of REF (safetensors or GGUF): "
            "relative error ||q - r|| / ||r||, the worst tensors and the mean by type."
        ),
    )
    c.add_argument("ref", help="the reference (usually the bf16 source .safetensors)")
    c.add_argument("quant", help="the quantized file (.gguf, or another .safetensors)")
    c.add_argument("--worst", type=int, default=10, help="how many of the worst tensors to list (default: 10)")
    c.add_argument("--json", action="store_true", help="print the result as JSON")
    c.add_argument(
        "--sample",
        action="store_true",
        help="also sample the same seeds with both files through ComfyUI (GPU when present) and report PSNR/SSIM",
    )
    c.add_argument("--comfyui", help="ComfyUI checkout for --sample (default: COMFYUI_PATH, ~/ComfyUI)")
    c.add_argument("--vae", help="a FLUX VAE (.safetensors) for --sample: compare decoded images, not latents")
    c.add_argument("--seeds", type=int, default=2, help="--sample: how many seeds (default: 2)")
    c.add_argument("--size", type=int, default=512, help="--sample: square output size in pixels (default: 512)")
    c.add_argument("--steps", type=int, default=8, help="--sample: euler steps (default: 8)")
    c.set_defaults(handler=handler(_IMPL, "run_compare"))
