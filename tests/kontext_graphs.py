"""What host tests run and compare: API-format graphs (Kontext loader -> reference latent -> core KSampler), one
direct forward pass of a loaded model, and the relative error between two results."""

from __future__ import annotations

import torch


def rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """Relative L2 distance of `a` from the reference `b`, in float32."""
    return float((a.float() - b.float()).norm() / b.float().norm())


def forward_once(model, seed: int = 0) -> torch.Tensor:
    """One call of a loaded model's diffusion model (a ComfyUI BaseModel) on fixed random inputs, 8x8 latent."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 16, 8, 8, generator=gen)
    ctx = torch.randn(1, 8, 4096, generator=gen) * 0.5
    y = torch.randn(1, 768, generator=gen) * 0.5
    with torch.no_grad():
        return model.diffusion_model(x, torch.tensor([0.6]), ctx, y=y, guidance=torch.tensor([2.5])).clone()


def edit_graph(
    model_name: str,
    *,
    steps: int = 3,
    size: int = 64,
    compute_dtype: str = "fp32",
    gguf_mode: str = "auto",
    loras: tuple[tuple[str, float], ...] = (),
    seed: int = 7,
    compile_mode: str | None = None,
    float_weights: str | None = None,
) -> dict:
    """A Kontext edit with one reference latent, sampled with ComfyUI's KSampler; the result is captured."""
    graph: dict = {
        "loader": {
            "class_type": "AtelierKontextLoader",
            "inputs": {
                "model_name": model_name,
                "compute_dtype": compute_dtype,
                "gguf_mode": gguf_mode,
                "fp8_matmul": False,
            },
        },
        "text": {
            "class_type": "AtelierTestTextEncode",
            "inputs": {"text": "make the cloak red", "tokens": 8, "guidance": 2.5},
        },
        "ref": {"class_type": "AtelierTestLatent", "inputs": {"width": size, "height": size, "seed": 3}},
        "reference": {"class_type": "ReferenceLatent", "inputs": {"conditioning": ["text", 0], "latent": ["ref", 0]}},
        "guidance": {"class_type": "FluxGuidance", "inputs": {"conditioning": ["reference", 0], "guidance": 2.5}},
        "negative": {"class_type": "ConditioningZeroOut", "inputs": {"conditioning": ["text", 0]}},
        "empty": {"class_type": "EmptySD3LatentImage", "inputs": {"width": size, "height": size, "batch_size": 1}},
        "sampler": {
            "class_type": "KSampler",
            "inputs": {
                "model": ["loader", 0],
                "seed": seed,
                "steps": steps,
                "cfg": 1.0,
                "sampler_name": "euler",
                "scheduler": "simple",
                "positive": ["guidance", 0],
                "negative": ["negative", 0],
                "latent_image": ["empty", 0],
                "denoise": 1.0,
            },
        },
        "capture": {"class_type": "AtelierTestCapture", "inputs": {"key": "latent", "value": ["sampler", 0]}},
    }
    if float_weights is not None:
        graph["loader"]["inputs"]["float_weights"] = float_weights
    model_ref = ["loader", 0]
    for i, (lora_name, strength) in enumerate(loras):
        node = f"lora{i}"
        graph[node] = {
            "class_type": "LoraLoaderModelOnly",
            "inputs": {"model": model_ref, "lora_name": lora_name, "strength_model": strength},
        }
        model_ref = [node, 0]
    if compile_mode is not None:
        graph["compile"] = {"class_type": "AtelierCompileBlocks", "inputs": {"model": model_ref, "mode": compile_mode}}
        model_ref = ["compile", 0]
    graph["sampler"]["inputs"]["model"] = model_ref
    return graph
