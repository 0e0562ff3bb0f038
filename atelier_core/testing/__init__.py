"""Tiny-model factories for the tests and benchmarks: random Kontext / FLUX.2 / text-encoder weights written as
every supported file format (``synth``), and ComfyUI-side models (``synth_comfy``, needs ComfyUI booted). Shipped
commands never import this package (tests/test_import_boundaries.py checks it)."""
