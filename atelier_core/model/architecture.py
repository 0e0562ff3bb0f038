"""Recognise a FLUX.1 / Kontext transformer from tensor names and shapes, and say clearly when it is not one.

Kontext [dev] and FLUX.1-dev share one layout, so both load; the shape (widths, depths) is read from the tensors
rather than assumed, which is what lets the tests use narrow models.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..errors import UnsupportedModelError
from .kontext_layout import HEAD_DIM, KontextShape, layout

PREFIXES = ("model.diffusion_model.", "diffusion_model.", "model.")
Shapes = Mapping[str, tuple[int, ...]]


def strip_prefix(names: list[str]) -> str:
    """The common prefix (ComfyUI checkpoints use ``model.diffusion_model.``) to remove, or ''."""
    for prefix in PREFIXES:
        hits = sum(1 for n in names if n.startswith(prefix))
        if hits and hits >= len(names) // 2 and any(n == f"{prefix}img_in.weight" for n in names):
            return prefix
    return ""


def _what_else(names: list[str]) -> str:
    joined = " ".join(names[:4000])
    if any(".lora_" in n or "lora_up" in n or "lora_down" in n or n.endswith(".alpha") for n in names[:4000]):
        return "a LoRA (load it with LoraLoaderModelOnly after the Kontext loader)"
    if "input_blocks." in joined and "output_blocks." in joined:
        return "a UNet (SD1.x/SDXL-style), not a FLUX transformer"
    if "decoder.conv_in" in joined or "encoder.down" in joined:
        return "a VAE (load it with VAELoader)"
    if "encoder.block." in joined or "text_model." in joined or "shared.weight" in joined:
        return "a text encoder (load it with DualCLIPLoader)"
    if "transformer_blocks." in joined and "x_embedder" in joined:
        return "a diffusers-format FLUX transformer (convert it to the BFL/ComfyUI layout first)"
    if "joint_blocks." in joined:
        return "an SD3 MMDiT"
    return f"an unknown model ({len(names)} tensors, e.g. {', '.join(names[:3])})"


def _count(names: list[str], stem: str) -> int:
    indices = set()
    for n in names:
        if n.startswith(stem):
            head = n[len(stem) :].split(".", 1)[0]
            if head.isdigit():
                indices.add(int(head))
    if indices and indices != set(range(len(indices))):
        raise UnsupportedModelError(f"the {stem[:-1]} are not numbered 0..N-1 (found {sorted(indices)[:8]}...)")
    return len(indices)


def check_flux_keys(names: list[str], file_label: str) -> None:
    """Refuse a file that is no FLUX transformer, from its tensor names alone (keys without prefix).

    Enough for files whose weights ComfyUI's quantized formats pack (their shapes are not the layer's), where core's
    loader reads the widths; ``infer_shape`` checks every shape where we build the model ourselves.
    """
    norm = "double_blocks.0.img_attn.norm.key_norm."
    if not any(n in (f"{norm}scale", f"{norm}weight") for n in names) or "img_in.weight" not in names:
        raise UnsupportedModelError(
            f"'{file_label}' is {_what_else(names)}. The Kontext loader expects a FLUX.1 Kontext [dev] (or FLUX.1-dev, "
            "same layout) transformer with 'double_blocks.*' and 'img_in.weight' tensors."
        )


def infer_shape(shapes: Shapes, file_label: str) -> KontextShape:
    """Read a KontextShape from tensor shapes (keys without prefix) and verify every tensor against it."""
    names = list(shapes)
    check_flux_keys(names, file_label)
    try:
        hidden, in_channels = shapes["img_in.weight"]
        context_dim = shapes["txt_in.weight"][1]
        vec_dim = shapes["vector_in.in_layer.weight"][1]
        mlp = shapes["double_blocks.0.img_mlp.0.weight"][0]
    except (KeyError, ValueError, IndexError) as exc:
        raise UnsupportedModelError(f"'{file_label}' lacks a FLUX tensor or has a wrong rank: {exc}") from None
    if hidden % HEAD_DIM or hidden <= 0:
        raise UnsupportedModelError(
            f"'{file_label}': hidden size {hidden} is not a multiple of the head size {HEAD_DIM}"
        )
    if in_channels != 64:
        raise UnsupportedModelError(
            f"'{file_label}' takes {in_channels} input channels; Kontext/FLUX.1-dev take 64 (Fill/Depth/Canny "
            "variants are not Kontext models)"
        )
    shape = KontextShape(
        hidden=hidden,
        depth=_count(names, "double_blocks."),
        depth_single=_count(names, "single_blocks."),
        in_channels=in_channels,
        context_dim=context_dim,
        vec_dim=vec_dim,
        mlp_ratio=mlp / hidden,
        guidance_embed="guidance_in.in_layer.weight" in shapes,
    )
    if shape.depth == 0 or shape.depth_single == 0:
        raise UnsupportedModelError(f"'{file_label}' has no double or single blocks")
    expected = dict(layout(shape))
    missing = [k for k in expected if k not in shapes]
    if missing:
        raise UnsupportedModelError(
            f"'{file_label}' is missing {len(missing)} FLUX tensors (e.g. {', '.join(missing[:3])}); the file is "
            "incomplete or not a Kontext transformer"
        )
    wrong = [(k, shapes[k], expected[k]) for k in expected if tuple(shapes[k]) != expected[k]]
    if wrong:
        k, got, want = wrong[0]
        raise UnsupportedModelError(
            f"'{file_label}': tensor '{k}' has shape {tuple(got)} but the architecture needs {want} "
            f"({len(wrong)} tensors disagree); the file is corrupt or from another model"
        )
    return shape


def unet_config(shape: KontextShape) -> dict:
    """The ``unet_config`` ComfyUI's Flux model class is built from."""
    return {
        "image_model": "flux",
        "in_channels": shape.in_channels // 4,
        "out_channels": shape.in_channels // 4,
        "patch_size": 2,
        "vec_in_dim": shape.vec_dim,
        "context_in_dim": shape.context_dim,
        "hidden_size": shape.hidden,
        "mlp_ratio": shape.mlp_ratio,
        "num_heads": shape.heads,
        "depth": shape.depth,
        "depth_single_blocks": shape.depth_single,
        "axes_dim": [16, 56, 56],
        "theta": 10000,
        "qkv_bias": True,
        "guidance_embed": shape.guidance_embed,
    }
