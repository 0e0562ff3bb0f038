"""ComfyUI-free algorithms of Kontext Atelier.

Nothing in this package imports ComfyUI except ``runtime/`` (finds and boots one) and ``testing/`` (tiny-model
factories), so the command line and the tests can use it on a machine without one
(tests/test_import_boundaries.py checks it).
"""

__version__ = "0.1.0"
