"""The Context Stitcher's ComfyUI runtime part: reference weights as FLUX attention bias, and the encode cache.

Weight hook, and why the node takes and returns the MODEL. A weight scales how strongly the image and text queries
attend to a reference's tokens: ``log(w)`` is added to the attention logits of that reference's keys (0 -> masked,
2 -> twice the softmax share before renormalising). That needs two things at sampling time:

1. *which* keys belong to which reference, per conditioning: the weights travel inside the conditioning as a
   ``model_conds`` entry (``CONDConstant`` of plain tuples, see ``atelier_core.image.stitch.weight_spec``). ComfyUI's
   sampler passes ``model_conds`` straight to the diffusion model as keyword arguments, batches a positive and a
   negative together only when their entries are equal, and core Flux ignores unknown keywords;
2. code that turns it into FLUX's ``attention_mask`` keyword (which core Flux already threads through every double
   and single block, block-replace patches included, into ``optimized_attention``; every attention backend accepts
   an additive mask). That is a ``DIFFUSION_MODEL`` wrapper on a clone of the model (``add_wrapper_with_key``): it
   survives LoRA loaders and other patch nodes (clones copy wrappers), works the same for every loader path (GGUF,
   fp8, bf16; it touches no weights), and builds the ``[1, 1, 1, tokens]`` bias once per model call from the real
   token layout (text, image, each reference in order), so references added later by core nodes keep weight 1.

The wrapper has to reach the sampler on the MODEL wire, so the stitcher takes the model and returns it (option (a)),
rather than a separate "reference weights" node (option (b)): the weights are set on the node that owns the
references, there is no second node to forget or to mismatch with the references, and the returned model is the
input object itself when no weight differs from 1 (nothing patched, results bit-identical to core ReferenceLatent).
A weight of 0 leaves the reference out altogether (no encode, no tokens): exactly the result of not connecting it.
For the last reference the masked limit w -> 0 is that same result (the bias at ``MASKED_BIAS`` matches the absent
reference exactly in the tests). For a middle one, ``offset`` and ``index`` give later references positions after
it; masking keeps them there while leaving it out moves them up, so w -> 0 and w = 0 differ by that shift (about 1%
of the latent on the test model). Influence grows monotonically with the weight either way.

Encode cache: a module-level LRU (:data:`ENCODE_CACHE_ENTRIES` entries, :data:`ENCODE_CACHE_BYTES` bytes) keyed by
a hash of the resized pixels, their shape and dtype, and the VAE object (held by weak reference, so a reloaded VAE
never hits an entry of the old one). It holds only latents that are pure functions of its key, so nothing leaks
between graphs; it saves the encode when a queue item changes something else (a weight, the prompt, another image).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import weakref
from collections import OrderedDict

import comfy.patcher_extension
import torch

from ..atelier_core.errors import AtelierError
from ..atelier_core.image import stitch

log = logging.getLogger(__name__)

NAME = stitch.NODE_NAME
WEIGHTS_KEY = "atelier_reference_weights"  # model_conds entry (and diffusion-model keyword) carrying the weights
WRAPPER_KEY = "atelier_reference_weights"
ENCODE_CACHE_ENTRIES = 16
ENCODE_CACHE_BYTES = 256 * 1024**2


# -- encode cache ------------------------------------------------------------------------------------------------------

_cache: OrderedDict[tuple, tuple[weakref.ref, torch.Tensor]] = OrderedDict()
_cache_lock = threading.Lock()


def _cache_key(vae, pixels: torch.Tensor) -> tuple:
    data = pixels.detach().to("cpu", torch.float32).contiguous().numpy().tobytes()
    return (hashlib.blake2b(data, digest_size=20).hexdigest(), tuple(pixels.shape), str(pixels.dtype), id(vae))


def encode_cached(vae, pixels: torch.Tensor) -> torch.Tensor:
    """``vae.encode(pixels[..., :3])`` (what core VAEEncode does), reusing the latent of identical pixels."""
    key = _cache_key(vae, pixels)
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None and hit[0]() is vae:
            _cache.move_to_end(key)
            return hit[1]
    latent = vae.encode(pixels[:, :, :, :3])
    size = latent.numel() * latent.element_size()
    if size <= ENCODE_CACHE_BYTES:
        with _cache_lock:
            _cache[key] = (weakref.ref(vae), latent)
            while len(_cache) > ENCODE_CACHE_ENTRIES or _cache_bytes() > ENCODE_CACHE_BYTES:
                _cache.popitem(last=False)
    return latent


def _cache_bytes() -> int:
    return sum(t.numel() * t.element_size() for _, t in _cache.values())


def clear_encode_cache() -> None:
    with _cache_lock:
        _cache.clear()


# -- model patch -------------------------------------------------------------------------------------------------------


def reference_weight_wrapper(executor, *args, **kwargs):
    """DIFFUSION_MODEL wrapper: turn the conditioning's reference weights into FLUX's additive attention mask.

    Arguments are core Flux's ``_forward``: ``x, timestep, context, y, guidance, ref_latents, control,
    transformer_options``. Without weights in this call's conditioning it calls straight through.
    """
    spec = kwargs.pop(WEIGHTS_KEY, None)
    if not spec or len(args) < 6 or args[5] is None:
        return executor(*args, **kwargs)
    model = executor.class_obj
    if any(getattr(block, "flipped_img_txt", False) for block in getattr(model, "double_blocks", ())):
        log.warning("%s: this model orders image before text tokens; reference weights are not applied", NAME)
        return executor(*args, **kwargs)
    x, context, ref_latents = args[0], args[2], args[5]
    patch = getattr(model, "patch_size", 2)
    img_rows, img_cols = stitch.token_grid_for_latent(x.shape[-2], x.shape[-1], patch)
    grids = [stitch.token_grid_for_latent(r.shape[-2], r.shape[-1], patch) for r in ref_latents]
    bias = stitch.reference_key_bias(context.shape[1], img_rows * img_cols, grids, spec)
    if bias is not None:
        mask = bias.to(device=x.device, dtype=x.dtype).view(1, 1, 1, -1)
        existing = kwargs.get("attention_mask")
        if existing is not None:
            if existing.shape[-1] != mask.shape[-1]:
                raise AtelierError(
                    f"{NAME}: another node set an attention mask for {existing.shape[-1]} tokens, but the model sees "
                    f"{mask.shape[-1]} (text, image and references); reference weights cannot be combined with it."
                )
            mask = existing.reshape(*([1] * (4 - existing.ndim)), *existing.shape).to(mask.dtype) + mask
        kwargs["attention_mask"] = mask
    return executor(*args, **kwargs)


def patch_model(model):
    """A clone of ``model`` with the weight wrapper (once, however many stitchers are chained)."""
    kind = comfy.patcher_extension.WrappersMP.DIFFUSION_MODEL
    if model.get_wrappers(kind, WRAPPER_KEY):
        return model
    patched = model.clone()
    patched.add_wrapper_with_key(kind, WRAPPER_KEY, reference_weight_wrapper)
    return patched
