"""The tensor layout of a Flux-family transformer (FLUX.1 / Kontext), as BFL's release names and shapes it.

Pure data, no torch: the loader's architecture checks and the command line read it without importing torch;
``synth`` builds random weights on it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

HEAD_DIM = 128  # fixed by FLUX's 3D RoPE axes (16 + 56 + 56)


@dataclass(frozen=True)
class KontextShape:
    """Widths and depths of a Flux-family transformer."""

    hidden: int = 3072
    depth: int = 19
    depth_single: int = 38
    in_channels: int = 64
    context_dim: int = 4096
    vec_dim: int = 768
    mlp_ratio: float = 4.0
    guidance_embed: bool = True

    @property
    def heads(self) -> int:
        return self.hidden // HEAD_DIM

    @property
    def mlp(self) -> int:
        return int(self.hidden * self.mlp_ratio)


FULL = KontextShape()
# The smallest shape our loader accepts: two heads, two blocks of each kind; the true T5/CLIP widths so test
# conditioning has the real shapes.
TINY = KontextShape(hidden=256, depth=2, depth_single=2)


def layout(shape: KontextShape = FULL) -> Iterator[tuple[str, tuple[int, ...]]]:
    """Yield (key, shape) for every tensor of the transformer, in BFL's order and naming."""
    h, m = shape.hidden, shape.mlp

    def linear(name: str, out_features: int, in_features: int):
        yield f"{name}.weight", (out_features, in_features)
        yield f"{name}.bias", (out_features,)

    def mlp_embedder(name: str, in_dim: int):
        yield from linear(f"{name}.in_layer", h, in_dim)
        yield from linear(f"{name}.out_layer", h, h)

    yield from linear("img_in", h, shape.in_channels)
    yield from mlp_embedder("time_in", 256)
    yield from mlp_embedder("vector_in", shape.vec_dim)
    if shape.guidance_embed:
        yield from mlp_embedder("guidance_in", 256)
    yield from linear("txt_in", h, shape.context_dim)
    for i in range(shape.depth):
        for stream in ("img", "txt"):
            prefix = f"double_blocks.{i}.{stream}"
            yield from linear(f"{prefix}_mod.lin", 6 * h, h)
            yield from linear(f"{prefix}_attn.qkv", 3 * h, h)
            yield f"{prefix}_attn.norm.query_norm.scale", (HEAD_DIM,)
            yield f"{prefix}_attn.norm.key_norm.scale", (HEAD_DIM,)
            yield from linear(f"{prefix}_attn.proj", h, h)
            yield from linear(f"{prefix}_mlp.0", m, h)
            yield from linear(f"{prefix}_mlp.2", h, m)
    for i in range(shape.depth_single):
        prefix = f"single_blocks.{i}"
        yield from linear(f"{prefix}.linear1", 3 * h + m, h)
        yield from linear(f"{prefix}.linear2", h, h + m)
        yield f"{prefix}.norm.query_norm.scale", (HEAD_DIM,)
        yield f"{prefix}.norm.key_norm.scale", (HEAD_DIM,)
        yield from linear(f"{prefix}.modulation.lin", 3 * h, h)
    yield from linear("final_layer.linear", shape.in_channels, h)
    yield from linear("final_layer.adaLN_modulation.1", 2 * h, h)


def parameter_count(shape: KontextShape = FULL) -> int:
    """How many weights the transformer of this shape has (about 11.9 B for the full model)."""
    total = 0
    for _, dims in layout(shape):
        n = 1
        for d in dims:
            n *= d
        total += n
    return total
