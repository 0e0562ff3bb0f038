"""Two nodes that exist only in the test process (never shipped).

``AtelierTestCapture`` keeps whatever reaches it so a test can assert on tensors; ``AtelierTestTextEncode`` stands
in for CLIP-L + T5-XXL (T5-XXL is too large for a CPU test) and returns conditioning of the true shapes: T5 tokens
of width 4096 and a CLIP-L pooled vector of width 768, deterministic per prompt (``width`` sets another token width,
e.g. a tiny FLUX.2's). ``AtelierTestNarrowUNETLoader`` is core's UNETLoader for narrow test transformers: ComfyUI
0.3.75 detects FLUX.2 with FLUX.2 [dev]'s 48 heads and Qwen-Image with its 24 heads and 3584-wide context whatever
the file holds, so it sets those from the file (heads of 128 channels) and otherwise loads through core's own
``comfy.sd.load_diffusion_model_state_dict``. ``AtelierTestQwenEditEncode`` stands in for Qwen2.5-VL 7B in
TextEncodeQwenImageEditPlus: random text conditioning of the file's context width, and the images VAE-encoded as
reference latents at their own size (core rescales to 1 MP, minutes for a CPU test's VAE).
"""

from __future__ import annotations

import hashlib

import torch

CAPTURED: dict[str, object] = {}
ANY = "*"


class AtelierTestCapture:
    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"key": ("STRING", {"default": "out"})}, "optional": {"value": (ANY, {})}}

    RETURN_TYPES = ()
    FUNCTION = "capture"
    OUTPUT_NODE = True
    CATEGORY = "testing"

    @classmethod
    def VALIDATE_INPUTS(cls, input_types=None, **kwargs):
        return True

    def capture(self, key, value=None):
        CAPTURED[key] = value
        return {}


class AtelierTestTextEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "text": ("STRING", {"default": "", "multiline": True}),
                "tokens": ("INT", {"default": 16, "min": 1, "max": 512}),
                "guidance": ("FLOAT", {"default": 2.5, "min": 0.0, "max": 100.0}),
            },
            "optional": {"width": ("INT", {"default": 4096, "min": 1, "max": 16384})},
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, text, tokens, guidance, width=4096):
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        gen = torch.Generator().manual_seed(seed)
        cond = torch.randn(1, tokens, width, generator=gen) * 0.5
        pooled = torch.randn(1, 768, generator=gen) * 0.5
        return ([[cond, {"pooled_output": pooled, "guidance": guidance}]],)


class AtelierTestLatent:
    """A seeded random 16-channel latent (what VAEEncode of a photo would give, without a VAE)."""

    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "width": ("INT", {"default": 64, "min": 16, "max": 4096, "step": 16}),
                "height": ("INT", {"default": 64, "min": 16, "max": 4096, "step": 16}),
                "seed": ("INT", {"default": 0, "min": 0, "max": 2**31}),
            }
        }

    RETURN_TYPES = ("LATENT",)
    FUNCTION = "make"
    CATEGORY = "testing"

    def make(self, width, height, seed):
        gen = torch.Generator().manual_seed(seed)
        return ({"samples": torch.randn(1, 16, height // 8, width // 8, generator=gen)},)


class AtelierTestNarrowUNETLoader:
    HEAD_DIM = 128

    @classmethod
    def INPUT_TYPES(cls):
        import folder_paths

        return {"required": {"unet_name": (folder_paths.get_filename_list("diffusion_models"),)}}

    RETURN_TYPES = ("MODEL",)
    FUNCTION = "load"
    CATEGORY = "testing"

    def load(self, unet_name):
        from unittest import mock

        import comfy.model_detection
        import comfy.sd
        import comfy.utils
        import folder_paths

        detect = comfy.model_detection.detect_unet_config

        def narrow(state_dict, key_prefix, *args, **kwargs):
            config = detect(state_dict, key_prefix, *args, **kwargs)
            kind = (config or {}).get("image_model")
            if kind == "flux2":
                config["num_heads"] = config["hidden_size"] // self.HEAD_DIM
            elif kind == "qwen_image":
                width, context = state_dict[f"{key_prefix}txt_in.weight"].shape
                config.update(num_attention_heads=width // self.HEAD_DIM, joint_attention_dim=context)
            return config

        sd = comfy.utils.load_torch_file(folder_paths.get_full_path_or_raise("diffusion_models", unet_name))
        with mock.patch.object(comfy.model_detection, "detect_unet_config", narrow):
            model = comfy.sd.load_diffusion_model_state_dict(sd, model_options={"dtype": torch.float32})
        return (model,)


class AtelierTestQwenEditEncode:
    @classmethod
    def INPUT_TYPES(cls):
        return {
            "required": {
                "prompt": ("STRING", {"default": "", "multiline": True}),
                "tokens": ("INT", {"default": 8, "min": 1, "max": 512}),
                "width": ("INT", {"default": 64, "min": 1, "max": 16384}),
            },
            "optional": {"vae": ("VAE",), "image1": ("IMAGE",), "image2": ("IMAGE",), "image3": ("IMAGE",)},
        }

    RETURN_TYPES = ("CONDITIONING",)
    FUNCTION = "encode"
    CATEGORY = "testing"

    def encode(self, prompt, tokens, width, vae=None, image1=None, image2=None, image3=None):
        import node_helpers

        (conditioning,) = AtelierTestTextEncode().encode(prompt, tokens, 1.0, width)
        images = [i for i in (image1, image2, image3) if i is not None]
        if vae is not None and images:
            latents = [vae.encode(i[:, :, :, :3]) for i in images]
            conditioning = node_helpers.conditioning_set_values(
                conditioning, {"reference_latents": latents}, append=True
            )
        return (conditioning,)


def register(mapping: dict) -> None:
    mapping["AtelierTestQwenEditEncode"] = AtelierTestQwenEditEncode
    mapping["AtelierTestNarrowUNETLoader"] = AtelierTestNarrowUNETLoader
    mapping["AtelierTestLatent"] = AtelierTestLatent
    mapping["AtelierTestCapture"] = AtelierTestCapture
    mapping["AtelierTestTextEncode"] = AtelierTestTextEncode
