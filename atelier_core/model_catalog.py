"""The model files the shipped workflows load: file name, ComfyUI model folder and a download address.

One table for everything that names a model to a user: the workflows' model metadata (what ComfyUI's missing-models
dialog reads), the canvas notes, ``kontext-atelier doctor`` and the check of a workflow's files before it runs.
Each entry is a dict with ``name`` (the file name the workflow selects), ``url`` (a direct download) and
``directory`` (the ``ComfyUI/models/`` folder it goes in), the shape ComfyUI's workflow ``models`` list uses.
"""

from __future__ import annotations

GGUF_MODEL = {
    "name": "flux1-kontext-dev-Q4_K_M.gguf",
    "url": "https://huggingface.co/QuantStack/FLUX.1-Kontext-dev-GGUF/resolve/main/flux1-kontext-dev-Q4_K_M.gguf",
    "directory": "diffusion_models",
}
FP8_MODEL = {
    "name": "flux1-dev-kontext_fp8_scaled.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux1-kontext-dev_ComfyUI/resolve/main/split_files/diffusion_models/"
    "flux1-dev-kontext_fp8_scaled.safetensors",
    "directory": "diffusion_models",
}
CLIP_L = {
    "name": "clip_l.safetensors",
    "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/clip_l.safetensors",
    "directory": "text_encoders",
}
T5_FP8 = {
    "name": "t5xxl_fp8_e4m3fn_scaled.safetensors",
    "url": "https://huggingface.co/comfyanonymous/flux_text_encoders/resolve/main/t5xxl_fp8_e4m3fn_scaled.safetensors",
    "directory": "text_encoders",
}
T5_GGUF = {
    "name": "t5-v1_1-xxl-encoder-Q5_K_M.gguf",
    "url": "https://huggingface.co/city96/t5-v1_1-xxl-encoder-gguf/resolve/main/t5-v1_1-xxl-encoder-Q5_K_M.gguf",
    "directory": "text_encoders",
}
HYPER_LORA = {
    # ByteDance's Hyper-SD 8-step LoRA for FLUX.1-dev (strength 0.125 recommended); it applies to Kontext [dev],
    # which shares FLUX.1-dev's blocks.
    "name": "Hyper-FLUX.1-dev-8steps-lora.safetensors",
    "url": "https://huggingface.co/ByteDance/Hyper-SD/resolve/main/Hyper-FLUX.1-dev-8steps-lora.safetensors",
    "directory": "loras",
}
FLUX_VAE = {
    "name": "ae.safetensors",
    "url": "https://huggingface.co/Comfy-Org/Lumina_Image_2.0_Repackaged/resolve/main/split_files/vae/ae.safetensors",
    "directory": "vae",
}
FLUX2_MODEL = {
    "name": "flux2_dev_fp8mixed.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/diffusion_models/"
    "flux2_dev_fp8mixed.safetensors",
    "directory": "diffusion_models",
}
FLUX2_TEXT = {
    "name": "mistral_3_small_flux2_fp8.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/text_encoders/"
    "mistral_3_small_flux2_fp8.safetensors",
    "directory": "text_encoders",
}
FLUX2_VAE = {
    "name": "flux2-vae.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux2-dev/resolve/main/split_files/vae/flux2-vae.safetensors",
    "directory": "vae",
}
# FLUX.2 [klein] 4B (distilled, Apache-2.0; Comfy-Org's repackaging): its text encoder is Qwen3 4B, loaded by
# CLIPLoader's flux2 type; the VAE is FLUX.2's own (FLUX2_VAE).
FLUX2_KLEIN_MODEL = {
    "name": "flux-2-klein-4b.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux2-klein/resolve/main/split_files/diffusion_models/"
    "flux-2-klein-4b.safetensors",
    "directory": "diffusion_models",
}
FLUX2_KLEIN_TEXT = {
    "name": "qwen_3_4b.safetensors",
    "url": "https://huggingface.co/Comfy-Org/flux2-klein/resolve/main/split_files/text_encoders/qwen_3_4b.safetensors",
    "directory": "text_encoders",
}
QWEN_EDIT_MODEL = {
    "name": "qwen_image_edit_2509_fp8_e4m3fn.safetensors",
    "url": "https://huggingface.co/Comfy-Org/Qwen-Image-Edit_ComfyUI/resolve/main/split_files/diffusion_models/"
    "qwen_image_edit_2509_fp8_e4m3fn.safetensors",
    "directory": "diffusion_models",
}
QWEN_TEXT = {
    "name": "qwen_2.5_vl_7b_fp8_scaled.safetensors",
    "url": "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/text_encoders/"
    "qwen_2.5_vl_7b_fp8_scaled.safetensors",
    "directory": "text_encoders",
}
QWEN_VAE = {
    "name": "qwen_image_vae.safetensors",
    "url": "https://huggingface.co/Comfy-Org/Qwen-Image_ComfyUI/resolve/main/split_files/vae/qwen_image_vae.safetensors",
    "directory": "vae",
}


KONTEXT_MODELS = (GGUF_MODEL, FP8_MODEL, CLIP_L, T5_FP8, T5_GGUF, HYPER_LORA, FLUX_VAE)
OTHER_MODELS = (
    FLUX2_MODEL,
    FLUX2_TEXT,
    FLUX2_VAE,
    FLUX2_KLEIN_MODEL,
    FLUX2_KLEIN_TEXT,
    QWEN_EDIT_MODEL,
    QWEN_TEXT,
    QWEN_VAE,
)
ALL_MODELS = KONTEXT_MODELS + OTHER_MODELS
BY_NAME = {model["name"]: model for model in ALL_MODELS}
