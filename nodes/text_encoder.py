"""Kontext Text Encoders: CLIP-L plus a T5-XXL encoder from GGUF (or safetensors) as one ComfyUI CLIP.

A quantized T5 (4.76 B weights: Q4_K 2.7 GB, Q8_0 5.1 GB, instead of 9.5 GB in fp16) is what lets Kontext run on
8-12 GB cards.
The GGUF's tensors stay raw bytes (copied out of the file, see ``gguf_state_dict``) and are dequantized layer by layer by the same operations the
Kontext Loader uses (token embeddings row by row); ComfyUI's own FLUX text-encoder model, tokenizers and memory
management do the rest, so the CLIP output works with every core text node (CLIPTextEncode, FluxGuidance, ...).
"""

from __future__ import annotations

from pathlib import Path

import comfy.model_management as mm
import comfy.sd
import comfy.utils
import folder_paths
import torch
from comfy_api.latest import io, ui

from ..atelier_core.errors import AtelierError
from ..atelier_core.model import model_files, text_encoders
from ..comfy_glue import host_compat, model_folders
from ..comfy_glue.gguf_ops import make_gguf_ops
from ..comfy_glue.kontext_model import gguf_state_dict

NAME = "Kontext Text Encoders"
EXTENSIONS = (".safetensors", ".sft", ".gguf")
FOLDER_KEY = model_folders.register("kontext_atelier_text_encoders", "text_encoders", EXTENSIONS)


def resolve(name: str) -> Path:
    return model_folders.resolve(FOLDER_KEY, name, f"{NAME}:", "models/text_encoders")


def _load_t5(path: Path) -> tuple[dict, str]:
    model_files.check_sampled_values(path)  # NaN/inf refused, as by the Kontext Loader, inspect and quantize
    if model_files.sniff_format(path) == "gguf":
        hint = "the T5 input needs a T5 v1.1 XXL encoder GGUF (general.architecture t5encoder or t5)"
        sd, shapes, stored = gguf_state_dict(path, archs=(None, *text_encoders.T5_GGUF_ARCHS), hint=hint)
        names = text_encoders.hf_names(list(sd))
        sd = {names[k]: v for k, v in sd.items() if k in names}
        shapes = {names[k]: s for k, s in shapes.items() if k in names}
        text_encoders.check_t5_shapes(shapes, path.name)
        return sd, f"gguf ({stored})"
    # Some T5 files are saved from a ComfyUI CLIP object, with its "t5xxl.transformer." prefix: read both.
    prefix = "t5xxl.transformer."
    header = model_files.read_safetensors_header(path)
    text_encoders.check_t5_shapes({k.removeprefix(prefix): s for k, s in header.shapes().items()}, path.name)
    sd = comfy.utils.load_torch_file(str(path), safe_load=True)
    return {k.removeprefix(prefix): v for k, v in sd.items()}, "safetensors"


def _load_clip_l(path: Path) -> dict:
    if model_files.sniff_format(path) == "gguf":
        raise AtelierError(f"{NAME}: '{path.name}' is a GGUF; the clip_l input takes CLIP-L as .safetensors (246 MB)")
    header = model_files.read_safetensors_header(path)
    text_encoders.check_clip_l(header.shapes(), path.name)
    model_files.check_sampled_values(path)
    return comfy.utils.load_torch_file(str(path), safe_load=True)


class AtelierKontextTextEncoders(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        return io.Schema(
            node_id="AtelierKontextTextEncoders",
            display_name="Kontext Text Encoders (GGUF T5)",
            category="Kontext Atelier/Loaders",
            description=(
                "Loads FLUX.1 Kontext's two text encoders as one CLIP: CLIP-L (.safetensors) and the T5 v1.1 XXL "
                "encoder from a GGUF (any type the Kontext Loader reads; llama.cpp/city96 names) or a safetensors "
                "file, from models/text_encoders or models/clip. A quantized T5 needs a third to a half of the "
                "memory of fp16. Use it where DualCLIPLoader (type flux) would go."
            ),
            inputs=[
                io.Combo.Input(
                    "clip_l_name",
                    options=model_folders.list_files(FOLDER_KEY, (".safetensors", ".sft")),
                    tooltip="CLIP-L text encoder, e.g. clip_l.safetensors.",
                ),
                io.Combo.Input(
                    "t5_name",
                    options=model_folders.list_files(FOLDER_KEY),
                    tooltip="T5 v1.1 XXL encoder: a .gguf (e.g. t5-v1_1-xxl-encoder-Q5_K_M.gguf) or .safetensors.",
                ),
                io.Combo.Input(
                    "device",
                    options=["default", "cpu"],
                    default="default",
                    tooltip="cpu keeps the text encoders off the GPU (slower encoding, more VRAM for the model).",
                ),
            ],
            outputs=[io.Clip.Output(tooltip="CLIP-L + T5-XXL for CLIPTextEncode and the Kontext nodes.")],
        )

    @classmethod
    def fingerprint_inputs(cls, clip_l_name: str = "", t5_name: str = "", **kwargs):
        # Re-load when either file on disk changes (re-downloaded, replaced, truncated), not only when a name does.
        return model_folders.file_signature(FOLDER_KEY, clip_l_name, t5_name)

    @classmethod
    def execute(cls, clip_l_name: str, t5_name: str, device: str = "default"):
        try:
            clip_sd = _load_clip_l(resolve(clip_l_name))
            t5_path = resolve(t5_name)
            t5_sd, t5_kind = _load_t5(t5_path)
        except AtelierError as exc:
            message = str(exc)
            raise AtelierError(message if message.startswith(NAME) else f"{NAME}: {message}") from None
        options: dict = {}
        if device == "cpu":
            options["load_device"] = options["offload_device"] = torch.device("cpu")
        if t5_kind.startswith("gguf"):
            load_device = options.get("load_device", mm.text_encoder_device())
            options["custom_operations"] = make_gguf_ops(mm.text_encoder_dtype(load_device), "on_the_fly")
        clip = comfy.sd.load_text_encoder_state_dicts(
            [clip_sd, t5_sd],
            embedding_directory=folder_paths.get_folder_paths("embeddings"),
            clip_type=comfy.sd.CLIPType.FLUX,
            model_options=options,
            **host_compat.text_encoder_options(),
        )
        summary = f"CLIP-L {clip_l_name}; T5-XXL {t5_name}: {t5_kind}"
        return io.NodeOutput(clip, ui=ui.PreviewText(summary))


NODES = [AtelierKontextTextEncoders]
