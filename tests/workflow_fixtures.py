"""What the shipped workflows need to validate and run on a CPU: tiny model files under the names the workflows
expect, a small input picture, and the CPU variant of an API workflow.

The transformer files are tiny (``atelier_core.synth.TINY``) in the workflow's own format (GGUF Q4_K, ComfyUI
scaled fp8), the turbo LoRA a random LoRA for that tiny transformer (``synth.lora_state_dict``); the VAE is the
random full-size FLUX VAE of ``atelier_fixtures``; the text encoders are empty placeholders that only satisfy
validation, because the CPU variant swaps the T5/CLIP encode for the test-only ``AtelierTestTextEncode`` (real
T5-XXL is too large for a CPU test).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from atelier_core import synth

PACK_DIR = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = PACK_DIR / "workflows"
API_DIR = WORKFLOW_DIR / "api"
PACKAGE_API_DIR = PACK_DIR / "atelier_core" / "data" / "workflows"
EXAMPLE_IMAGE = "example.png"


def api_workflows() -> dict[str, dict]:
    return {p.name.removesuffix(".api.json"): json.loads(p.read_text()) for p in sorted(API_DIR.glob("*.api.json"))}


def ui_workflows() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(WORKFLOW_DIR.glob("*.json"))}


def expected_files() -> dict[str, set[str]]:
    """Model folder -> file names the API workflows load."""
    wanted: dict[str, set[str]] = {"diffusion_models": set(), "text_encoders": set(), "vae": set(), "loras": set()}
    for api in api_workflows().values():
        for node in api.values():
            inputs = node["inputs"]
            if node["class_type"] == "AtelierKontextLoader":
                wanted["diffusion_models"].add(inputs["model_name"])
            elif node["class_type"] == "DualCLIPLoader":
                wanted["text_encoders"].update((inputs["clip_name1"], inputs["clip_name2"]))
            elif node["class_type"] == "AtelierKontextTextEncoders":
                wanted["text_encoders"].update((inputs["clip_l_name"], inputs["t5_name"]))
            elif node["class_type"] == "VAELoader":
                wanted["vae"].add(inputs["vae_name"])
            elif node["class_type"] == "LoraLoaderModelOnly":
                wanted["loras"].add(inputs["lora_name"])
    return wanted


def write_transformer(path: Path, sd) -> Path:
    """A tiny Kontext transformer in the format the file name announces."""
    if path.suffix == ".gguf":
        qtype = next((q for q in ("Q4_K", "Q5_K", "Q6_K", "Q8_0", "Q4_0") if q in path.name.upper()), "Q8_0")
        return synth.write_gguf(path, sd, qtype)
    if "fp8_scaled" in path.name:
        return synth.write_scaled_fp8(path, sd)
    if "fp8" in path.name:
        return synth.write_fp8(path, sd)
    return synth.write_float(path, sd, "bf16")


def install_models(models_root: Path, vae_source: Path) -> dict[str, list[Path]]:
    """Put every file the workflows expect under ``models_root/<folder>/`` (idempotent)."""
    written: dict[str, list[Path]] = {}
    sd = None
    for folder, names in expected_files().items():
        for name in sorted(names):
            path = models_root / folder / name
            path.parent.mkdir(parents=True, exist_ok=True)
            written.setdefault(folder, []).append(path)
            if path.exists():
                continue
            if folder in ("diffusion_models", "loras"):
                sd = sd if sd is not None else synth.kontext_state_dict(synth.TINY, seed=0)
                if folder == "loras":
                    from safetensors.torch import save_file

                    save_file(synth.lora_state_dict(sd, rank=4, seed=3), str(path))
                else:
                    write_transformer(path, sd)
            elif folder == "vae":
                path.symlink_to(vae_source)
            else:
                path.write_bytes(b"placeholder: the CPU variant encodes text with AtelierTestTextEncode\n")
    return written


def write_png(path: Path, width: int = 64, height: int = 64, seed: int = 0) -> Path:
    """A small picture with structure (gradients and a disc), so edits and merges have something to work on."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack([x / max(width - 1, 1), y / max(height - 1, 1), 0.5 + 0.0 * x], axis=-1)
    disc = (x - width * 0.6) ** 2 + (y - height * 0.4) ** 2 < (min(width, height) * 0.2) ** 2
    rgb[disc] = rng.uniform(0.2, 0.9, size=3)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray((rgb * 255).round().astype(np.uint8)).save(path)
    return path


def cpu_variant(api: dict, *, steps: int = 2, tokens: int = 8) -> dict:
    """The workflow as a CPU test runs it: text encoded by AtelierTestTextEncode (DualCLIPLoader dropped), the
    aspect lock at its smallest target (256x256 for a square input), references at their own size, few steps.
    Everything else (loaders, VAE, sampler, our nodes, SaveImage) is the shipped workflow."""
    prompt = copy.deepcopy(api)
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("DualCLIPLoader", "AtelierKontextTextEncoders"):
            del prompt[node_id]
        elif kind == "CLIPTextEncode":
            node["class_type"] = "AtelierTestTextEncode"
            node["inputs"] = {"text": inputs["text"], "tokens": tokens, "guidance": 2.5}
        elif kind == "AtelierAspectLock":
            inputs.update(size_by="megapixels", megapixels=0.0625)
            if inputs["size"] == "Kontext preferred (17 sizes)":
                inputs["size"] = "keep input ratio"
        elif kind == "AtelierContextStitcher":
            inputs["sizing"] = "keep"
        elif kind == "KSampler":
            inputs["steps"] = steps
        elif kind == "AtelierKontextLoader":
            inputs["compute_dtype"] = "fp32"
    return prompt
