"""ComfyUI-free algorithms of Kontext Atelier.

Nothing in this package imports ComfyUI, so the command line and the tests can use it on a machine without one.
"""

__version__ = "0.1.0"
