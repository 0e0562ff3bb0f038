"""The one exception type users see.

A message says what was wrong, with which node or file, and what to do about it. Nodes let it propagate so
ComfyUI shows it on the node; the command line prints it without a traceback.
"""

# ComfyUI imports the pack under a name derived from its folder's path, so the class's real module is something
# like "/home/me/ComfyUI/custom_nodes/kontext-atelier.atelier_core.errors", and ComfyUI's executor shows
# ``module + "." + qualname`` as the error's type: a file path in front of every message. A short, fixed module
# name keeps what users see to "kontext_atelier.AtelierError" (the pack and the type) however the pack was loaded.
# (Pickling these exceptions by name is not supported; nothing in ComfyUI or the pack pickles them.)
DISPLAY_MODULE = "kontext_atelier"


class AtelierError(ValueError):
    """A bad input or an unusable file, explained for the user."""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        cls.__module__ = DISPLAY_MODULE


AtelierError.__module__ = DISPLAY_MODULE


class UnsupportedModelError(AtelierError):
    """A model file that is readable but is not something this loader can use."""
