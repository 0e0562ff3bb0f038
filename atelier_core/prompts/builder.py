"""Turn a few vocabulary choices into a natural-English prompt for FLUX.1 Kontext.

Two modes:

* ``describe``: ``[material] [technique] [scale] miniature of [subject], [lighting], [camera], [backdrop]``, e.g.
  "Acrylic wet-blended miniature of a fantasy knight, warm golden side lighting, macro photography 1:1, shallow
  depth of field, studio backdrop".
* ``edit``: a Kontext instruction from an edit template (what to change, to what), then "Keep the ... exactly the
  same." naming what the edit must preserve. Kontext follows specific instructions with no vague pronouns best.

Every field is optional; free text in ``extra`` is appended. :func:`polish` fixes spacing, commas, doubled words
and capitals; :func:`build_variants` makes N different prompts by a seeded, repeatable shuffle. Token counting is
a callback (ComfyUI's tokenizers live in the node), so this module never imports ComfyUI.
"""

from __future__ import annotations

import difflib
import itertools
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields, replace

from .vocabulary import PLACEHOLDER, EditTemplate, Vocabulary, builtin_vocabulary

MODES: tuple[str, ...] = ("describe", "edit")
NONE = "(none)"
KEEP_OPTIONS: tuple[str, ...] = ("everything else", "identity and pose", "nothing")
VARY_OPTIONS: dict[str, tuple[str, ...]] = {
    "lighting": ("light_direction", "light_temperature", "light_quality"),
    "technique": ("technique",),
    "technique and lighting": ("technique", "light_direction", "light_temperature"),
    "backdrop": ("backdrop",),
    "camera": ("camera", "focal_length", "aperture"),
    "base": ("base",),
    "clause order": (),
}
# Which vocabulary section each choice draws from (subject also takes free text).
FIELD_SECTIONS: dict[str, str] = {
    "subject": "subjects",
    "material": "materials",
    "technique": "techniques",
    "scale": "scales",
    "light_direction": "lighting_directions",
    "light_temperature": "lighting_temperatures",
    "light_quality": "lighting_qualities",
    "camera": "camera_shots",
    "focal_length": "focal_lengths",
    "aperture": "apertures",
    "depth_of_field": "depths_of_field",
    "backdrop": "backdrops",
    "base": "bases",
    "template": "edit_templates",
}
TOKEN_LIMITS: dict[str, int] = {"clip_l": 77, "t5xxl": 512}
# Past this many characters a prompt is many times over both token limits (512 T5 tokens are ~2,500 characters), so
# exact counts add nothing: check_length estimates instead. ComfyUI's tokenizers take seconds per 100 KB (their
# weight parser is a Python loop per character); a 1 MB "extra" took 21.7 s to count.
EXACT_COUNT_MAX_CHARS = 20_000
TOKENIZER_NAMES: dict[str, str] = {"clip_l": "CLIP-L", "t5xxl": "T5-XXL"}
TokenCounter = Callable[[str], Mapping[str, int]]

# Words that already determine a noun phrase: no article goes in front of them.
_DETERMINERS = frozenset(
    "a an the this that these those his her its their my your our every each all both some any no one two three".split()
)
# Vowel letters that sound like consonants ("a unicorn", "a one-off") and silent h's ("an hour").
_CONSONANT_SOUND = re.compile(
    r"^(uni([bcdfghjklmnpqrstvwxz]?[aeiouy]|[bcdfghjklmnpqrstvwxz]?$)|us[eu]|uti|uk|ure|eu|ewe|one\b|once\b)",
    re.IGNORECASE,
)
_VOWEL_SOUND = re.compile(r"^(hour|honest|honou?r|heir)", re.IGNORECASE)
_VOWEL_LETTER_NAMES = frozenset("AEFHILMNORSX")  # an NMM, an OSL, an SUV; a BMX, a UV lamp


@dataclass(frozen=True)
class Choices:
    """What the user picked. Every field is optional: "" or "(none)" leaves it out.

    Vocabulary fields hold ids (``technique="wet blending"``); ``subject`` is an id or free text; ``part``,
    ``value``, ``reference``, ``text`` and ``extra`` are free text for the edit templates and the end of the prompt.
    """

    mode: str = "describe"
    subject: str = ""
    material: str = ""
    technique: str = ""
    scale: str = ""
    light_direction: str = ""
    light_temperature: str = ""
    light_quality: str = ""
    camera: str = ""
    focal_length: str = ""
    aperture: str = ""
    depth_of_field: str = ""
    backdrop: str = ""
    template: str = ""
    part: str = ""
    value: str = ""
    base: str = ""
    reference: str = ""
    text: str = ""
    keep: str = "everything else"
    extra: str = ""


@dataclass(frozen=True)
class Prompt:
    """An assembled prompt and the problems met while building it (for the node's report)."""

    text: str
    warnings: tuple[str, ...] = ()


def choice_fields() -> list[str]:
    """Names of the :class:`Choices` fields, in order (the command line makes one option per field)."""
    return [f.name for f in fields(Choices)]


def build(choices: Choices, vocabulary: Vocabulary | None = None, rng: random.Random | None = None) -> Prompt:
    """Assemble the prompt for ``choices``. Never raises for bad choices: each one becomes a warning.

    ``rng`` shuffles the order of describe-mode clauses and of the "keep" list (used by :func:`build_variants`).
    """
    vocabulary = vocabulary or builtin_vocabulary()
    resolver = _Resolver(vocabulary, choices)
    mode = (choices.mode or "describe").strip().lower()
    if mode not in MODES:
        resolver.warnings.append(f'Unknown mode "{choices.mode}"; use "describe" or "edit". Using describe.')
        mode = "describe"
    text = _describe(resolver, rng) if mode == "describe" else _edit(resolver, rng)
    if not text and not resolver.warnings:
        resolver.warnings.append('The prompt came out empty: pick a subject or an edit, or type words in "extra".')
    return Prompt(text, tuple(resolver.warnings))


def build_variants(
    choices: Choices,
    vocabulary: Vocabulary | None = None,
    count: int = 4,
    vary: str = "lighting",
    seed: int = 0,
) -> tuple[list[str], list[str]]:
    """``count`` prompts: the main prompt first, then different ones drawn by a seeded shuffle of ``vary``.

    The same seed gives the same list. When the vocabulary cannot give ``count`` different prompts the list
    repeats and a warning says so. Returns ``(prompts, warnings)``.
    """
    vocabulary = vocabulary or builtin_vocabulary()
    main = build(choices, vocabulary)
    count = max(1, int(count))
    prompts = [main.text]
    warnings: list[str] = []
    if count == 1:
        return prompts, warnings
    if vary not in VARY_OPTIONS:
        warnings.append(f'Unknown variation "{vary}" (choose from {", ".join(VARY_OPTIONS)}); using lighting.')
        vary = "lighting"
    rng = random.Random(f"{seed}:{vary}")
    seen = {main.text}
    for candidate in _candidates(choices, vocabulary, vary, rng):
        if len(prompts) == count:
            break
        text, candidate_rng = candidate
        built = build(text, vocabulary, candidate_rng).text
        if built not in seen:
            seen.add(built)
            prompts.append(built)
    if len(prompts) < count:
        distinct = len(prompts)
        warnings.append(
            f"Varying {vary} gives only {distinct} different prompt{'s' if distinct != 1 else ''} here, "
            f"so the {count} variants repeat them; vary something else or add vocabulary entries."
        )
        prompts = list(itertools.islice(itertools.cycle(prompts), count))
    return prompts, warnings


def check_length(text: str, counter: TokenCounter | None) -> tuple[dict[str, int], list[str]]:
    """Token counts from ``counter`` and a warning for each tokenizer whose limit the prompt passes."""
    if counter is None or not text:
        return {}, []
    if len(text) > EXACT_COUNT_MAX_CHARS:
        counter = rough_token_counts
    counts = {name: int(n) for name, n in counter(text).items()}
    warnings = []
    clip, t5 = counts.get("clip_l"), counts.get("t5xxl")
    if clip is not None and clip > TOKEN_LIMITS["clip_l"]:
        warnings.append(
            f"The prompt is {clip} CLIP-L tokens, over CLIP-L's {TOKEN_LIMITS['clip_l']}: Flux takes CLIP-L's summary "
            "from the first 77 only, so words past that are weaker. Shorten it or drop a clause."
        )
    if t5 is not None and t5 > TOKEN_LIMITS["t5xxl"]:
        warnings.append(
            f"The prompt is {t5} T5-XXL tokens, over the {TOKEN_LIMITS['t5xxl']} Flux was trained with; "
            "Kontext follows short, specific instructions best. Shorten it."
        )
    return counts, warnings


def rough_token_counts(text: str) -> dict[str, int]:
    """A quick, generous estimate of the token counts, for the command line where ComfyUI's tokenizers are absent.

    A word piece per 6 letters, one per digit or symbol, plus a quarter for the words both tokenizers split.
    """
    pieces = re.findall(r"[A-Za-z]+|\d|[^\sA-Za-z\d]", text)
    words = sum(max(1, len(p) // 6) if p.isalpha() else 1 for p in pieces)
    estimate = words + words // 4
    return {"clip_l": estimate + 2, "t5xxl": estimate + 1}


def report(prompt: str, counts: Mapping[str, int], warnings: Sequence[str], variants: Sequence[str] = ()) -> str:
    """The text the node shows: the prompt, its token counts against the limits, warnings and the variants."""
    lines = [prompt or "(empty prompt)", ""]
    if counts:
        parts = []
        for name, limit in TOKEN_LIMITS.items():
            if name in counts:
                flag = "  ⚠ over" if counts[name] > limit else ""
                parts.append(f"{TOKENIZER_NAMES[name]}: {counts[name]} / {limit} tokens{flag}")
        lines.append(" · ".join(parts))
    lines.extend(f"⚠ {warning}" for warning in warnings)
    if len(variants) > 1:
        lines.append("")
        lines.append(f"{len(variants)} variants:")
        lines.extend(f"{i}. {text}" for i, text in enumerate(variants, 1))
    return "\n".join(lines).strip()


# --- assembly ---------------------------------------------------------------------------------------------------


class _Resolver:
    """Looks choices up in the vocabulary, collecting a warning for each id it does not know."""

    def __init__(self, vocabulary: Vocabulary, choices: Choices):
        self.vocabulary = vocabulary
        self.choices = choices
        self.warnings: list[str] = []

    def raw(self, name: str) -> str:
        value = getattr(self.choices, name) or ""
        value = " ".join(str(value).split())
        # "(none)" and lone punctuation are nothing
        return value if value != NONE and re.search(r"\w", value) else ""

    def entry(self, name: str):
        """The vocabulary entry chosen for field ``name``, or None (empty, or unknown with a warning)."""
        chosen = self.raw(name)
        if not chosen:
            return None
        section = FIELD_SECTIONS[name]
        entry = self.vocabulary.get(section, chosen)
        if entry is None:
            known = self.vocabulary.ids(section)
            close = difflib.get_close_matches(chosen, known, n=1, cutoff=0.6)
            hint = f' Did you mean "{close[0]}"?' if close else ""
            label = name.replace("_", " ")
            self.warnings.append(
                f'"{chosen}" is not a {label} in the vocabulary (was it removed from your vocabulary file?); '
                f"it is left out.{hint}"
            )
        return entry

    def phrase(self, name: str) -> str:
        entry = self.entry(name)
        return entry if isinstance(entry, str) else ""

    def form(self, name: str, form: str) -> str:
        entry = self.entry(name)
        return entry[form] if isinstance(entry, Mapping) else ""

    def subject(self) -> str:
        """A vocabulary subject's phrase, or the free text the user typed."""
        chosen = self.raw("subject")
        entry = self.vocabulary.get("subjects", chosen)
        return entry if isinstance(entry, str) else chosen

    def lighting(self) -> str:
        words = [self.phrase("light_quality"), self.phrase("light_temperature"), self.phrase("light_direction")]
        words = [w for w in words if w]
        return " ".join(words + ["lighting"]) if words else ""

    def lens(self) -> str:
        focal, aperture = self.phrase("focal_length"), self.phrase("aperture")
        if focal and aperture:
            return f"{focal} at {aperture}"
        if aperture:
            return f"shot at {aperture}"
        return focal


def _describe(r: _Resolver, rng: random.Random | None) -> str:
    material = r.phrase("material")
    technique = r.form("technique", "adjective")
    size = r.form("scale", "size")
    noun = r.form("scale", "noun") or "miniature"
    subject = r.subject()
    clauses = [r.lighting(), r.phrase("camera"), r.lens(), r.phrase("depth_of_field"), r.phrase("backdrop")]
    clauses = [c for c in clauses if c]
    extra = r.raw("extra")
    if not (material or technique or size or subject or clauses or extra):
        r.warnings.append(
            'Nothing usable is chosen, so the prompt is empty: pick a subject or a few fields, or type in "extra".'
        )
        return ""
    if not (material or technique):
        material = "painted"  # "Painted miniature of an elf" reads better than "Miniature of an elf"
    head = " ".join(w for w in (material, technique, size, noun) if w)
    if subject:
        head += " of " + with_article(subject, "a")
    if rng is not None:
        rng.shuffle(clauses)
    text = ", ".join([head, *clauses])
    if extra:
        text += (". " if extra[-1] in ".!?" else ", ") + extra
    return polish(text)


def _edit(r: _Resolver, rng: random.Random | None) -> str:
    template = r.entry("template")
    instruction = ""
    changes: tuple[str, ...] = ()
    if isinstance(template, EditTemplate):
        instruction = _fill(template, r)
        changes = template.changes
    extra = r.raw("extra")
    if not instruction and not extra:
        if not r.raw("template"):
            r.warnings.append(
                'Edit mode needs an edit: pick a template or type the instruction in "extra"; the prompt is empty.'
            )
        return ""
    sentences = [_sentence(instruction), _sentence(extra), _sentence(_keep(r, changes, rng))]
    return polish(" ".join(s for s in sentences if s))


def _fill(template: EditTemplate, r: _Resolver) -> str:
    """The template's instruction with its slots filled; "" (with a warning) if a required slot is empty."""
    values = {
        "part": r.raw("part"),
        "value": r.raw("value"),
        "subject": r.subject(),
        "base": r.phrase("base"),
        "backdrop": r.phrase("backdrop"),
        "lighting": r.lighting(),
        "reference": r.raw("reference"),
        "text": _quote_body(r.raw("text")),
        "technique": r.form("technique", "noun"),
        "material": r.phrase("material"),
    }
    fallbacks = {"subject": "miniature"}
    missing: list[str] = []

    def render(chunk: str, optional: bool) -> str | None:
        """``chunk`` with its slots filled, or None when a slot is empty (defaults only fill required slots)."""
        empty = []

        def substitute(match: re.Match) -> str:
            form, slot = match.group(1), match.group(2)
            text = values.get(slot) or ("" if optional else template.defaults.get(slot) or fallbacks.get(slot, ""))
            if not text:
                empty.append(slot)
                return ""
            if form == "quoted":
                return f'"{text}"'
            return with_article(text, form) if form in ("a", "the") else text

        rendered = PLACEHOLDER.sub(substitute, chunk)
        if empty:
            if not optional:
                missing.extend(empty)
            return None
        return rendered

    # Optional parts "[, using {technique}]" vanish unless the user filled every slot in them.
    body = re.sub(r"\[([^\[\]]*)\]", lambda m: render(m.group(1), True) or "", template.instruction)
    rendered = render(body, False)
    if rendered is None:
        needs = " and ".join(f'"{m}"' for m in dict.fromkeys(missing))
        r.warnings.append(
            f'The "{r.raw("template")}" edit needs {needs}; fill it in (the instruction is left out until then).'
        )
        return ""
    return rendered


def _keep(r: _Resolver, changes: tuple[str, ...], rng: random.Random | None) -> str:
    keep = r.raw("keep") or KEEP_OPTIONS[0]
    if keep not in KEEP_OPTIONS:
        r.warnings.append(
            f'Unknown keep option "{keep}" (choose from {", ".join(KEEP_OPTIONS)}); using "{KEEP_OPTIONS[0]}".'
        )
        keep = KEEP_OPTIONS[0]
    if keep == "nothing":
        return ""
    ids = r.vocabulary.ids("preserve") if keep == "everything else" else ["identity", "pose"]
    items = [r.vocabulary.get("preserve", i) for i in ids if i not in changes]
    items = [i for i in items if isinstance(i, str)]
    if rng is not None:
        rng.shuffle(items)
    if not items:
        return ""
    return f"Keep the {join_and(items)} exactly the same"


def _candidates(choices: Choices, vocabulary: Vocabulary, vary: str, rng: random.Random):
    """Yield ``(choices, rng)`` pairs to try as variants, in a seeded order, without repeats."""
    names = VARY_OPTIONS[vary]
    if not names:  # clause order: same choices, shuffled clauses
        for i in range(200):
            yield choices, random.Random(f"{rng.random()}:{i}")
        return
    pools = [vocabulary.ids(FIELD_SECTIONS[name]) for name in names]
    total = 1
    for pool in pools:
        total *= len(pool)
    if total == 0:
        return
    # Sample indices of the product lazily: a user vocabulary can make the product very large.
    for index in rng.sample(range(total), min(total, 2000)):
        picked = {}
        for name, pool in zip(reversed(names), reversed(pools), strict=True):
            index, position = divmod(index, len(pool))
            picked[name] = pool[position]
        yield replace(choices, **picked), None


# --- grammar ----------------------------------------------------------------------------------------------------


def indefinite_article(phrase: str) -> str:
    """ "a" or "an" for the sound ``phrase`` starts with ("an acrylic", "a unicorn", "an NMM", "an 8mm", "a 28mm")."""
    word = phrase.strip().split(" ", 1)[0] if phrase.strip() else ""
    word = word.lstrip("\"'(")
    if not word:
        return "a"
    if word[0].isdigit():
        # Said aloud: "an 8mm", "an 11", "an 18,000", "an 80"; "a 28mm", "a 110", "a 1:10".
        digits = re.match(r"\d+", word).group(0)
        spoken_eleven = digits[:2] in ("11", "18") and len(digits) % 3 == 2
        return "an" if digits[0] == "8" or spoken_eleven else "a"
    letters = re.match(r"[A-Za-z]+", word)
    if letters and len(letters.group(0)) >= 2 and letters.group(0).isupper():
        return "an" if letters.group(0)[0] in _VOWEL_LETTER_NAMES else "a"
    if _VOWEL_SOUND.match(word):
        return "an"
    if _CONSONANT_SOUND.match(word):
        return "a"
    return "an" if word[0].lower() in "aeiou" else "a"


def with_article(phrase: str, article: str) -> str:
    """``phrase`` with "a"/"an" or "the" in front, unless it already starts with a determiner ("his", "the", "two").

    With ``article="the"`` an existing "a"/"an" becomes "the" ("a lantern" → "the lantern").
    """
    phrase = " ".join(phrase.split())
    if not phrase:
        return ""
    first, _, rest = phrase.partition(" ")
    lowered = first.lower()
    if lowered in ("a", "an") and article == "the" and rest:
        return "the " + rest
    if lowered in _DETERMINERS:
        return phrase
    if article == "the":
        return "the " + phrase
    return f"{indefinite_article(phrase)} {phrase}"


def join_and(items: Sequence[str]) -> str:
    """ "a", "a and b", "a, b and c" (no Oxford comma, as painters write)."""
    items = [i for i in items if i]
    if len(items) <= 1:
        return "".join(items)
    return ", ".join(items[:-1]) + " and " + items[-1]


_QUOTED = re.compile(r'"[^"]*"?')
_DOUBLED_WORD = re.compile(r"\b([A-Za-z]+)(?:\s+\1\b)+", re.IGNORECASE)


def polish(text: str) -> str:
    """Tidy a prompt: one space between words, no space before punctuation, no empty or doubled commas, no doubled
    words, capitals at sentence starts. Quoted text ("FOR THE EMPEROR") is left as the user typed it.
    """
    text = " ".join(text.split()).lstrip(",;:.!? ")
    pieces = []
    position = 0
    for match in _QUOTED.finditer(text):
        pieces.append((_tidy(text[position : match.start()]), False))
        pieces.append((match.group(0), True))
        position = match.end()
    pieces.append((_tidy(text[position:]), False))
    out = []
    sentence_start = True
    for piece, quoted in pieces:
        if not quoted:
            piece = _capitalise(piece, sentence_start)
        if piece.strip():
            sentence_start = bool(re.search(r"[.!?]\s*$", piece)) if not quoted else False
        out.append(piece)
    text = "".join(out)
    text = re.sub(r" {2,}", " ", text)
    return text.strip(" ,;:")


def _tidy(chunk: str) -> str:
    chunk = re.sub(r"\s+([,;:!?])", r"\1", chunk)  # "knight ," -> "knight,"
    chunk = re.sub(r"\s+\.(?!\d)", ".", chunk)  # "knight ." -> "knight." (keeps "f/ .5")
    chunk = re.sub(r",(\s*,)+", ",", chunk)  # ", ," -> ","
    chunk = re.sub(r"[,;:]\s*([.!?])", r"\1", chunk)  # ", ." -> "."
    chunk = re.sub(r"([.!?])\s*,", r"\1", chunk)  # ". ," -> "."
    chunk = re.sub(r"\.(\s*\.)+", ".", chunk)  # ". ." -> "."  (an ellipsis "..." is rare in prompts)
    chunk = re.sub(r",(?=[A-Za-z])", ", ", chunk)
    chunk = _DOUBLED_WORD.sub(r"\1", chunk)
    return re.sub(r" {2,}", " ", chunk)


def _capitalise(chunk: str, sentence_start: bool) -> str:
    def upper(match: re.Match) -> str:
        return match.group(1) + match.group(2).upper()

    if sentence_start:
        chunk = re.sub(r"^(\s*)([a-z])", upper, chunk)
    return re.sub(r"([.!?]\s+)([a-z])", upper, chunk)


def _sentence(text: str) -> str:
    text = text.strip().rstrip(",;:").strip()
    if not text:
        return ""
    return text if text[-1] in ".!?" else text + "."


def _quote_body(text: str) -> str:
    # The template adds the quotes; the user may have typed their own, straight or curly.
    text = text.strip().strip("\"“”'‘’").strip()
    return text.replace('"', "'")
