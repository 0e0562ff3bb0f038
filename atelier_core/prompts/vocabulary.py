"""The prompt builder's vocabulary: built-in data plus an optional user file, merged and validated.

The vocabulary is data (``atelier_core/data/vocabulary.json``), not code, so painters can add their own paints,
techniques and backdrops without touching Python. A user file has the same shape as the built-in one; its entries
add to or replace built-in entries with the same id, and ``null`` removes one. Every problem in a user file becomes
a warning that names the file and the entry: the broken part is skipped and the built-in vocabulary keeps working.

The user file is re-read whenever its modification time or size changes, so edits apply without a restart.
"""

from __future__ import annotations

import difflib
import json
import logging
import os
import re
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType

from ..errors import AtelierError
from ..safe_json import load_json_limited

logger = logging.getLogger(__name__)

FORMAT = 1
# Found next to the package rather than through importlib.resources: ComfyUI imports this pack under a
# path-derived module name, so "atelier_core" is not always an importable top-level name.
BUILTIN_PATH = Path(__file__).resolve().parent.parent / "data" / "vocabulary.json"

# Sections whose entries are one phrase each.
PHRASE_SECTIONS: tuple[str, ...] = (
    "materials",
    "lighting_directions",
    "lighting_temperatures",
    "lighting_qualities",
    "camera_shots",
    "focal_lengths",
    "apertures",
    "depths_of_field",
    "backdrops",
    "subjects",
    "bases",
    "preserve",
)
# Sections whose entries have named forms; a plain string is shorthand for the first form (see _SHORTHAND).
FORM_SECTIONS: dict[str, tuple[str, ...]] = {
    "techniques": ("adjective", "noun"),
    "scales": ("size", "noun"),
}
TEMPLATE_SECTION = "edit_templates"
SECTIONS: tuple[str, ...] = PHRASE_SECTIONS + tuple(FORM_SECTIONS) + (TEMPLATE_SECTION,)

# Slots an edit template may name, as {slot}, {a:slot} (indefinite article), {the:slot} or {quoted:slot}.
TEMPLATE_SLOTS: tuple[str, ...] = (
    "part",
    "value",
    "subject",
    "base",
    "backdrop",
    "lighting",
    "reference",
    "text",
    "technique",
    "material",
)
TEMPLATE_FORMS: tuple[str, ...] = ("a", "the", "quoted")
_TEMPLATE_FIELDS = ("instruction", "description", "defaults", "changes")
PLACEHOLDER = re.compile(r"\{(?:(\w+):)?(\w+)\}")
MAX_ID_LENGTH = 60
MAX_PHRASE_LENGTH = 300
# Limits on the user file, far above any real vocabulary (the built-in one is ~10 KB, 4 levels deep, no numbers
# beyond "format": 1): a file past them is refused whole, with one warning, before it is parsed.
MAX_FILE_BYTES = 4 * 1024 * 1024
MAX_FILE_DEPTH = 16
MAX_NUMBER_DIGITS = 20


@dataclass(frozen=True)
class EditTemplate:
    """One edit instruction: ``instruction`` with slots, defaults for empty slots, and what the edit changes.

    ``changes`` names ``preserve`` entries that the "keep ... the same" sentence must leave out (a lighting change
    cannot keep the lighting).
    """

    instruction: str
    description: str = ""
    defaults: Mapping[str, str] = field(default_factory=dict)
    changes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Vocabulary:
    """Read-only vocabulary: ``sections[name][id]`` is a phrase, a mapping of forms, or an :class:`EditTemplate`."""

    sections: Mapping[str, Mapping[str, object]]

    def ids(self, section: str) -> list[str]:
        """The ids of one section, in file order (built-in entries first, then the user's)."""
        return list(self.sections.get(section, {}))

    def get(self, section: str, entry_id: str):
        return self.sections.get(section, {}).get(entry_id)

    def size(self) -> int:
        """How many entries in all sections together."""
        return sum(len(entries) for entries in self.sections.values())


@dataclass(frozen=True)
class LoadedVocabulary:
    """A merged vocabulary, the warnings met while reading the user file, and that file's signature."""

    vocabulary: Vocabulary
    warnings: tuple[str, ...] = ()
    signature: tuple[int, int] | None = None


def file_signature(path: str | os.PathLike | None) -> tuple[int, int] | None:
    """``(mtime_ns, size)`` of a file, or None when there is none; changes whenever the file is saved."""
    if not path:
        return None
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return (stat.st_mtime_ns, stat.st_size)


def builtin_vocabulary() -> Vocabulary:
    """The vocabulary shipped with the pack (read once; a broken built-in file is a bug, so it raises)."""
    global _BUILTIN
    with _LOCK:
        if _BUILTIN is None:
            raw = json.loads(BUILTIN_PATH.read_text(encoding="utf-8"))
            sections: dict[str, dict[str, object]] = {name: {} for name in SECTIONS}
            problems: list[str] = []
            _merge(sections, raw, "built-in vocabulary", problems)
            if problems:
                raise RuntimeError("the built-in vocabulary is invalid: " + "; ".join(problems))
            _BUILTIN = _freeze(sections)
        return _BUILTIN


def load_vocabulary(user_path: str | os.PathLike | None = None) -> LoadedVocabulary:
    """The built-in vocabulary merged with the user file at ``user_path`` (optional; absent is fine).

    Never raises for a bad user file: each problem is a warning and the rest is used. Results are cached per path
    and re-read when the file's modification time or size changes.
    """
    builtin = builtin_vocabulary()
    if not user_path:
        return LoadedVocabulary(builtin)
    path = os.fspath(user_path)
    signature = file_signature(path)
    with _LOCK:
        cached = _CACHE.get(path)
        if cached is not None and cached.signature == signature:
            return cached
    try:
        loaded = _load_user(path, signature, builtin)
    except Exception as exc:  # a user file must never take the node (or the pack's registration) down
        logger.exception("reading the vocabulary file %s failed", path)
        warning = (
            f"The vocabulary file {path} could not be used ({type(exc).__name__}: {exc}); the built-in vocabulary "
            "is used on its own until it is fixed."
        )
        loaded = LoadedVocabulary(builtin, (warning,), signature)
    with _LOCK:
        _CACHE[path] = loaded
    return loaded


def _load_user(path: str, signature, builtin: Vocabulary) -> LoadedVocabulary:
    if signature is None:
        return LoadedVocabulary(builtin, (), None)
    name = f"vocabulary file {path}"
    try:
        raw = load_json_limited(
            Path(path),
            max_bytes=MAX_FILE_BYTES,
            max_depth=MAX_FILE_DEPTH,
            max_number_digits=MAX_NUMBER_DIGITS,
            what=name,
        )
    except AtelierError as exc:
        return LoadedVocabulary(builtin, (f"{exc} Until then the built-in vocabulary is used on its own.",), signature)
    sections = {section: dict(entries) for section, entries in builtin.sections.items()}
    problems: list[str] = []
    _merge(sections, raw, name, problems)
    return LoadedVocabulary(_freeze(sections), tuple(problems), signature)


def _merge(sections: dict[str, dict[str, object]], raw: object, name: str, problems: list[str]) -> None:
    """Validate ``raw`` (a parsed vocabulary file) and merge its good entries into ``sections``."""
    if not isinstance(raw, dict):
        problems.append(
            f'The {name} must hold a JSON object with sections such as "techniques", not {_kind(raw)}; it is ignored.'
        )
        return
    for key, value in raw.items():
        if key.startswith("_"):
            continue  # comments
        if key == "format":
            if value != FORMAT:
                problems.append(f"The {name} says format {value!r}; this version reads format {FORMAT}.")
            continue
        if key not in SECTIONS:
            problems.append(f'The {name} has an unknown section "{key}"{_did_you_mean(key, SECTIONS)}; it is ignored.')
            continue
        if not isinstance(value, dict):
            problems.append(f'Section "{key}" of the {name} must be an object of id: entry, not {_kind(value)}.')
            continue
        _merge_section(sections, key, value, name, problems)


def _merge_section(sections: dict[str, dict[str, object]], key: str, value: dict, name: str, problems: list[str]):
    """Merge one section's entries: ``null`` removes a built-in entry, a good entry replaces or adds one."""
    for entry_id, entry in value.items():
        where = f'"{key}" → "{entry_id}" in the {name}'
        if entry_id.startswith("_"):
            continue
        if not entry_id.strip() or len(entry_id) > MAX_ID_LENGTH:
            problems.append(f"Entry ids must be 1 to {MAX_ID_LENGTH} characters: {where}; skipped.")
            continue
        if entry is None:
            sections[key].pop(entry_id, None)
            continue
        parsed = _parse_entry(key, entry_id, entry, where, problems, sections)
        if parsed is not None:
            sections[key].pop(entry_id, None)  # a replaced entry moves to the end, after the built-in ones
            sections[key][entry_id] = parsed


def _parse_entry(section, entry_id, entry, where, problems, sections):
    if section in PHRASE_SECTIONS:
        return _phrase(entry, where, problems)
    if section in FORM_SECTIONS:
        forms = FORM_SECTIONS[section]
        if isinstance(entry, str):
            entry = _shorthand(section, entry_id, entry)
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a string or an object with {_names(forms)}, not {_kind(entry)}; skipped.")
            return None
        unknown = [k for k in entry if k not in forms]
        if unknown:
            problems.append(
                f"{where} has unknown field(s) {_names(unknown)} (expected {_names(forms)}); they are ignored."
            )
        parsed = {}
        for form in forms:
            phrase = _phrase(entry.get(form), f'{where}, field "{form}"', problems)
            if phrase is None:
                return None
            parsed[form] = phrase
        return MappingProxyType(parsed)
    return _template(entry, where, problems, sections)


def _shorthand(section: str, entry_id: str, text: str) -> dict[str, str]:
    # "techniques": {"blacklining": "black-lined"} and "scales": {"40 mm": "40mm"} are the common cases.
    if section == "techniques":
        return {"adjective": text, "noun": entry_id}
    return {"size": text, "noun": "miniature"}


def _template(entry, where, problems, sections) -> EditTemplate | None:
    if isinstance(entry, str):
        entry = {"instruction": entry}
    if not isinstance(entry, dict):
        problems.append(f'{where} must be an object with an "instruction", not {_kind(entry)}; skipped.')
        return None
    unknown = [k for k in entry if k not in _TEMPLATE_FIELDS]
    if unknown:
        problems.append(
            f"{where} has unknown field(s) {_names(unknown)} (expected {_names(_TEMPLATE_FIELDS)}); they are ignored."
        )
    instruction = _phrase(entry.get("instruction"), f'{where}, field "instruction"', problems)
    if instruction is None:
        return None
    if not _template_syntax_ok(instruction, where, problems):
        return None
    description = entry.get("description", "")
    if not isinstance(description, str):
        problems.append(f'{where}: "description" must be a string; it is ignored.')
        description = ""
    defaults = entry.get("defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(v, str) for v in defaults.values()):
        problems.append(f'{where}: "defaults" must be an object of slot: text; it is ignored.')
        defaults = {}
    bad_slots = [k for k in defaults if k not in TEMPLATE_SLOTS]
    if bad_slots:
        problems.append(f"{where}: unknown default slot(s) {_names(bad_slots)} (slots: {_names(TEMPLATE_SLOTS)}).")
        defaults = {k: v for k, v in defaults.items() if k in TEMPLATE_SLOTS}
    changes = entry.get("changes", [])
    if not isinstance(changes, list) or not all(isinstance(c, str) for c in changes):
        problems.append(f'{where}: "changes" must be a list of "preserve" ids; it is ignored.')
        changes = []
    preserve_ids = list(sections.get("preserve", {}))
    bad_changes = [c for c in changes if c not in preserve_ids]
    if bad_changes:
        problems.append(
            f'{where}: "changes" names unknown "preserve" id(s) {_names(bad_changes)} (known: {_names(preserve_ids)}).'
        )
        changes = [c for c in changes if c in preserve_ids]
    return EditTemplate(instruction, description.strip(), MappingProxyType(dict(defaults)), tuple(changes))


def _template_syntax_ok(instruction: str, where: str, problems: list[str]) -> bool:
    depth = 0
    for char in instruction:
        depth += {"[": 1, "]": -1}.get(char, 0)
        if depth not in (0, 1):
            problems.append(f"{where}: optional parts [...] must not nest or close before they open; skipped.")
            return False
    if depth:
        problems.append(f'{where}: an optional part "[" is never closed with "]"; skipped.')
        return False
    for match in PLACEHOLDER.finditer(instruction):
        form, slot = match.group(1), match.group(2)
        if slot not in TEMPLATE_SLOTS:
            problems.append(
                f"{where}: unknown slot {{{slot}}}{_did_you_mean(slot, TEMPLATE_SLOTS)} (slots: {_names(TEMPLATE_SLOTS)}); skipped."
            )
            return False
        if form is not None and form not in TEMPLATE_FORMS:
            problems.append(f'{where}: unknown form "{form}:" in {match.group(0)} (forms: a:, the:, quoted:); skipped.')
            return False
    leftover = PLACEHOLDER.sub("", instruction)
    if "{" in leftover or "}" in leftover:
        problems.append(f"{where}: a brace is not part of a {{slot}}; skipped.")
        return False
    return True


def _phrase(value, where: str, problems: list[str]) -> str | None:
    if not isinstance(value, str):
        problems.append(f"{where} must be text, not {_kind(value)}; skipped.")
        return None
    text = " ".join(value.split())
    if not text:
        problems.append(f"{where} is empty; skipped.")
        return None
    if len(text) > MAX_PHRASE_LENGTH:
        problems.append(f"{where} is longer than {MAX_PHRASE_LENGTH} characters; skipped.")
        return None
    return text


def _freeze(sections: dict[str, dict[str, object]]) -> Vocabulary:
    return Vocabulary(MappingProxyType({k: MappingProxyType(dict(v)) for k, v in sections.items()}))


def _kind(value: object) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "text",
        bool: "true/false",
        int: "a number",
        float: "a number",
        type(None): "null",
    }.get(type(value), type(value).__name__)


def _names(items) -> str:
    return ", ".join(f'"{item}"' for item in items)


def _did_you_mean(word: str, choices) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f' (did you mean "{close[0]}"?)' if close else ""


_LOCK = threading.RLock()
_BUILTIN: Vocabulary | None = None
_CACHE: dict[str, LoadedVocabulary] = {}
