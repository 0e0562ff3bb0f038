"""The one exception type users see.

A message says what was wrong, with which node or file, and what to do about it. Nodes let it propagate so
ComfyUI shows it on the node; the command line prints it without a traceback.
"""


class AtelierError(ValueError):
    """A bad input or an unusable file, explained for the user."""


class UnsupportedModelError(AtelierError):
    """A model file that is readable but is not something this loader can use."""
