"""What the shipped workflows need to validate and run on a CPU: tiny model files under the names the workflows
expect, a small input picture, and the CPU variant of an API workflow.

The transformer files are tiny (``atelier_core.testing.synth.TINY``) in the workflow's own format (GGUF Q4_K, ComfyUI
scaled fp8), the turbo LoRA a random LoRA for that tiny transformer (``synth.lora_state_dict``); the VAE is the
random full-size FLUX VAE of ``atelier_fixtures``; the text encoders are empty placeholders that only satisfy
validation, because the CPU variant swaps the T5/CLIP encode for the test-only ``AtelierTestTextEncode`` (real
T5-XXL is too large for a CPU test).

The FLUX.2 ([dev], [klein]) and Qwen-Image-Edit workflows (ComfyUI 0.3.75+) get a tiny random transformer of their architecture
(``synth_comfy.flux2_state_dict`` / ``qwen_image_state_dict``, loaded by the test harness's
``AtelierTestNarrowUNETLoader``), their own random VAE (FLUX.2's 128-channel one, a narrow Wan 2.1 VAE for
Qwen-Image), and test-only text encoding (``AtelierTestTextEncode`` / ``AtelierTestQwenEditEncode``).
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np

from atelier_core.testing import synth

PACK_DIR = Path(__file__).resolve().parents[1]
WORKFLOW_DIR = PACK_DIR / "workflows"
API_DIR = WORKFLOW_DIR / "api"
PACKAGE_API_DIR = PACK_DIR / "atelier_core" / "data" / "workflows"
EXAMPLE_IMAGE = "example.png"
TINY_CONTEXT = 64  # text width of the tiny FLUX.2 and Qwen-Image transformers
KONTEXT_SIZE, QWEN_SIZE = "Kontext preferred (17 sizes)", "Qwen-Image preferred (7 sizes)"


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
            elif node["class_type"] == "UNETLoader":
                wanted["diffusion_models"].add(inputs["unet_name"])
            elif node["class_type"] == "CLIPLoader":
                wanted["text_encoders"].add(inputs["clip_name"])
            elif node["class_type"] == "DualCLIPLoader":
                wanted["text_encoders"].update((inputs["clip_name1"], inputs["clip_name2"]))
            elif node["class_type"] == "AtelierKontextTextEncoders":
                wanted["text_encoders"].update((inputs["clip_l_name"], inputs["t5_name"]))
            elif node["class_type"] == "VAELoader":
                wanted["vae"].add(inputs["vae_name"])
            elif node["class_type"] == "LoraLoaderModelOnly":
                wanted["loras"].add(inputs["lora_name"])
    return wanted


def other_model_file(path: Path) -> dict | None:
    """The tiny FLUX.2 / Qwen-Image transformer or VAE a file of that model's name stands for (None: a Kontext file)."""
    from atelier_core.testing import synth_comfy

    name = path.name.lower()
    if "flux2" in name or "klein" in name:
        import comfy.latent_formats

        if not hasattr(comfy.latent_formats, "Flux2"):  # ComfyUI 0.3.64: no FLUX.2, its workflow checks skip
            import torch

            return {"placeholder": torch.zeros(1)}
        if "vae" in name:
            return synth_comfy.flux2_vae_state_dict(seed=0)
        # FLUX.2 [klein] has no guidance embedding ([dev] has one).
        return synth_comfy.flux2_state_dict(seed=0, context_dim=TINY_CONTEXT, guidance="klein" not in name)
    if "qwen" in name:
        if "vae" in name:
            return synth_comfy.wan21_vae_state_dict(seed=0)
        return synth_comfy.qwen_image_state_dict(seed=0, context_dim=TINY_CONTEXT)
    return None


def reads_narrow_wan_vae() -> bool:
    """Whether this ComfyUI's VAE loader reads the Wan 2.1 VAE's width from the file (0.3.75 does; 0.3.64 builds
    every Wan 2.1 VAE 96 wide, minutes per encode on a CPU), so the Qwen-Image fixture's narrow VAE loads."""
    import comfy.sd

    return 'sd["decoder.head.0.gamma"].shape[0]' in Path(comfy.sd.__file__).read_text()


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
            other = other_model_file(path) if folder in ("diffusion_models", "vae") else None
            if other is not None:
                from atelier_core.testing import synth_comfy

                synth_comfy.write_state_dict(path, other)
            elif folder in ("diffusion_models", "loras"):
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
    Everything else (loaders, VAE, sampler, our nodes, SaveImage) is the shipped workflow; FLUX.2 and Qwen-Image
    transformers load through the narrow-width stand-in of core's UNETLoader."""
    prompt = copy.deepcopy(api)
    flux2 = any(n["class_type"] == "CLIPLoader" and n["inputs"]["type"] == "flux2" for n in api.values())
    for node_id, node in list(prompt.items()):
        kind, inputs = node["class_type"], node["inputs"]
        if kind in ("DualCLIPLoader", "AtelierKontextTextEncoders", "CLIPLoader"):
            del prompt[node_id]
        elif kind in ("UNETLoader", "TextEncodeQwenImageEditPlus"):
            _other_model_stand_in(node, tokens)
        elif kind == "CLIPTextEncode":
            node["class_type"] = "AtelierTestTextEncode"
            width = {"width": TINY_CONTEXT} if flux2 else {}  # the tiny FLUX.2's text width
            node["inputs"] = {"text": inputs["text"], "tokens": tokens, "guidance": 2.5, **width}
        elif kind == "AtelierAspectLock":
            inputs.update(size_by="megapixels", megapixels=0.0625)
            if inputs["size"] in (KONTEXT_SIZE, QWEN_SIZE):
                inputs["size"] = "keep input ratio"
        elif kind == "AtelierContextStitcher":
            inputs["sizing"] = "keep"
        elif kind == "KSampler":
            inputs["steps"] = steps
        elif kind == "AtelierKontextLoader":
            inputs["compute_dtype"] = "fp32"
    return prompt


def _other_model_stand_in(node: dict, tokens: int) -> None:
    """Core's UNETLoader -> its narrow-width stand-in; TextEncodeQwenImageEditPlus -> the Qwen2.5-VL stand-in."""
    inputs = node["inputs"]
    if node["class_type"] == "UNETLoader":
        node["class_type"] = "AtelierTestNarrowUNETLoader"
        node["inputs"] = {"unet_name": inputs["unet_name"]}
        return
    node["class_type"] = "AtelierTestQwenEditEncode"
    images = {k: v for k, v in inputs.items() if k in ("vae", "image1", "image2", "image3")}
    node["inputs"] = {"prompt": inputs["prompt"], "tokens": tokens, "width": TINY_CONTEXT, **images}
