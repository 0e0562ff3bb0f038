"""Kontext's text encoders as files: the T5-XXL encoder's layout, GGUF names, and the checks a loader needs.

FLUX.1 Kontext conditions on CLIP-L (pooled) and the T5 v1.1 XXL *encoder*. GGUF files of T5 (city96's
``t5-v1_1-xxl-encoder-*.gguf`` and llama.cpp conversions) use llama.cpp's tensor names (``enc.blk.3.ffn_gate``);
ComfyUI's T5 uses Hugging Face's (``encoder.block.3.layer.1.DenseReluDense.wi_0``). The translation is taken from
the ``gguf`` package's own name table for the T5 encoder, so it is the converter's mapping, not a copy of it.

Everything here is ComfyUI-free: shapes in, names and clear errors out.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from dataclasses import dataclass

from ..errors import AtelierError

T5_GGUF_ARCHS = ("t5", "t5encoder")


@dataclass(frozen=True)
class T5Config:
    """The widths of a T5 v1.1 encoder (gated GELU feed-forward, relative attention bias in block 0)."""

    d_model: int = 4096
    d_ff: int = 10240
    num_heads: int = 64
    d_kv: int = 64
    num_layers: int = 24
    vocab_size: int = 32128
    buckets: int = 32

    def comfy_config(self) -> dict:
        """The config dict ComfyUI's ``comfy.text_encoders.t5.T5`` takes."""
        return {
            "d_ff": self.d_ff,
            "d_kv": self.d_kv,
            "d_model": self.d_model,
            "num_heads": self.num_heads,
            "num_layers": self.num_layers,
            "vocab_size": self.vocab_size,
            "dense_act_fn": "gelu_pytorch_tanh",
            "is_gated_act": True,
            "model_type": "t5",
            "relative_attention_num_buckets": self.buckets,
            "relative_attention_max_distance": 128,
        }


T5_XXL = T5Config()


def t5_layout(cfg: T5Config = T5_XXL) -> Iterator[tuple[str, tuple[int, ...]]]:
    """(Hugging Face key, shape) of every tensor of the encoder, as ComfyUI's T5 loads them."""
    inner = cfg.num_heads * cfg.d_kv
    yield "shared.weight", (cfg.vocab_size, cfg.d_model)
    for i in range(cfg.num_layers):
        block = f"encoder.block.{i}.layer"
        for name in ("q", "k", "v"):
            yield f"{block}.0.SelfAttention.{name}.weight", (inner, cfg.d_model)
        yield f"{block}.0.SelfAttention.o.weight", (cfg.d_model, inner)
        if i == 0:
            yield f"{block}.0.SelfAttention.relative_attention_bias.weight", (cfg.buckets, cfg.num_heads)
        yield f"{block}.0.layer_norm.weight", (cfg.d_model,)
        yield f"{block}.1.DenseReluDense.wi_0.weight", (cfg.d_ff, cfg.d_model)
        yield f"{block}.1.DenseReluDense.wi_1.weight", (cfg.d_ff, cfg.d_model)
        yield f"{block}.1.DenseReluDense.wo.weight", (cfg.d_model, cfg.d_ff)
        yield f"{block}.1.layer_norm.weight", (cfg.d_model,)
    yield "encoder.final_layer_norm.weight", (cfg.d_model,)


@functools.lru_cache(maxsize=4)
def _gguf_names(cfg: T5Config) -> dict[str, str]:
    """llama.cpp name -> Hugging Face name for every tensor of the encoder, from the ``gguf`` package's table."""
    import gguf

    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, cfg.num_layers)
    names = {}
    for key, _ in t5_layout(cfg):
        name = table.get_name(key, try_suffixes=(".weight", ".bias"))
        if name is None:
            raise AtelierError(f"the gguf package has no T5 encoder name for {key!r}")
        names[name] = key
    return names


def gguf_name(hf_key: str, cfg: T5Config = T5_XXL) -> str:
    """llama.cpp's name for a Hugging Face T5 encoder key (``shared.weight`` -> ``token_embd.weight``)."""
    for name, key in _gguf_names(cfg).items():
        if key == hf_key:
            return name
    raise AtelierError(f"{hf_key!r} is not a tensor of the T5 encoder")


def hf_names(names: list[str], cfg: T5Config = T5_XXL) -> dict[str, str]:
    """Map the tensor names of a T5 GGUF to ComfyUI's (HF) names; names already in HF form map to themselves.

    Decoder tensors (``dec.*``, full T5 conversions) are dropped; a name that is neither is refused.
    """
    expected = {key for key, _ in t5_layout(cfg)}
    from_gguf = _gguf_names(cfg)
    mapping: dict[str, str] = {}
    unknown: list[str] = []
    for name in names:
        if name in expected:
            mapping[name] = name
        elif name in from_gguf:
            mapping[name] = from_gguf[name]
        elif not name.startswith(("dec.", "decoder.", "output.", "lm_head")):
            unknown.append(name)
    if unknown:
        raise AtelierError(
            f"{len(unknown)} tensors are not part of a T5 encoder (first: {unknown[:3]}); is this a T5-XXL encoder GGUF?"
        )
    return mapping


def check_t5_shapes(shapes: dict[str, tuple[int, ...]], file_name: str, cfg: T5Config = T5_XXL) -> None:
    """Refuse, with what was found, a state dict (HF names) that is not a complete T5 v1.1 XXL encoder."""
    missing, wrong = [], []
    for key, shape in t5_layout(cfg):
        found = shapes.get(key)
        if found is None:
            missing.append(key)
        elif tuple(found) != shape:
            wrong.append(f"{key} {list(found)} (expected {list(shape)})")
    if missing or wrong:
        found_layers = sum(1 for k in shapes if k.endswith("layer.0.layer_norm.weight"))
        width = shapes.get("encoder.final_layer_norm.weight", ("?",))[0]
        raise AtelierError(
            f"'{file_name}' is not a T5 v1.1 XXL encoder (found {found_layers} blocks of width {width}; "
            f"Kontext needs 24 blocks of 4096): "
            + "; ".join(
                (
                    [f"missing {missing[:2]} (+{len(missing) - 2} more)" if len(missing) > 2 else f"missing {missing}"]
                    if missing
                    else []
                )
                + wrong[:2]
            )
        )


def check_clip_l(shapes: dict[str, tuple[int, ...]], file_name: str) -> None:
    """Refuse a file that is not CLIP-L's text model (12 layers of 768)."""
    key = "text_model.encoder.layers.0.mlp.fc1.weight"
    layers = sum(1 for k in shapes if k.startswith("text_model.encoder.layers.") and k.endswith(".mlp.fc1.weight"))
    if key not in shapes or tuple(shapes[key]) != (3072, 768) or layers != 12:
        raise AtelierError(
            f"'{file_name}' is not CLIP-L's text encoder (expected 12 layers of width 768, found {layers} layers"
            + (f", {list(shapes[key])} for the first MLP" if key in shapes else "")
            + "); choose clip_l.safetensors"
        )
