"""The miniature prompt builder: vocabulary data (built-in plus a user file) and the prompt assembly.

:mod:`.vocabulary` loads and validates the vocabulary; :mod:`.builder` turns :class:`~.builder.Choices` into a
prompt, its variants and a report. Neither imports ComfyUI: token counting comes in as a callback.
"""

from .builder import (
    KEEP_OPTIONS,
    MODES,
    NONE,
    TOKEN_LIMITS,
    VARY_OPTIONS,
    Choices,
    Prompt,
    build,
    build_variants,
    check_length,
    polish,
    report,
)
from .vocabulary import LoadedVocabulary, Vocabulary, builtin_vocabulary, file_signature, load_vocabulary

__all__ = [
    "KEEP_OPTIONS",
    "MODES",
    "NONE",
    "TOKEN_LIMITS",
    "VARY_OPTIONS",
    "Choices",
    "LoadedVocabulary",
    "Prompt",
    "Vocabulary",
    "build",
    "build_variants",
    "builtin_vocabulary",
    "check_length",
    "file_signature",
    "load_vocabulary",
    "polish",
    "report",
]
