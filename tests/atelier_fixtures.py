"""Model files that host tests load through ComfyUI's own loaders (see ``atelier_core.testing.synth_comfy``).

Only import this after ComfyUI is on ``sys.path`` (the ``comfy_host`` fixture does that).
"""

from atelier_core.testing.synth_comfy import (  # noqa: F401 (re-exported for the tests)
    FLUX_LATENT_CHANNELS,
    FLUX_VAE_DDCONFIG,
    FLUX_VAE_DOWNSCALE,
    clip_l_state_dict,
    flux_vae_layout,
    flux_vae_state_dict,
    init_tensor,
    write_flux_vae,
)
