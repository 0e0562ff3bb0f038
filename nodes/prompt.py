"""Kontext Miniature Prompt Builder: a few menu choices in, a Kontext-ready prompt out.

The assembly lives in ``atelier_core.prompts``; this adapter finds the user's vocabulary file in ComfyUI's user
directory, counts tokens with ComfyUI's own Flux tokenizers, and encodes the prompt when a CLIP is connected.
"""

from __future__ import annotations

import logging
import os
import threading

from comfy_api.latest import io, ui

try:
    from comfy_execution.graph_utils import ExecutionBlocker
except ImportError:  # where newer releases keep it
    from comfy_execution.graph import ExecutionBlocker

from ..atelier_core.errors import AtelierError
from ..atelier_core.prompts import builder, vocabulary

logger = logging.getLogger(__name__)

NODE_NAME = "Kontext Miniature Prompt Builder"
USER_VOCABULARY = os.path.join("default", "kontext_atelier", "vocabulary.json")
MAX_VARIANTS = 64
MAX_REFERENCE = 16

# Menu inputs: (input id, Choices field, tooltip). Their options come from the vocabulary each time ComfyUI asks
# for the node definition, so entries added to the user file show up after a browser refresh (no restart).
_MENUS: tuple[tuple[str, str, str], ...] = (
    ("template", "template", "Edit mode: the kind of edit. Describe mode ignores it."),
    (
        "subject",
        "subject",
        "What the miniature is (describe mode; edit templates that name it). Overridden by custom_subject.",
    ),
    ("scale", "scale", "Describe mode: the miniature's scale; a bust scale says 'bust' instead of 'miniature'."),
    ("material", "material", "Describe mode: the paint the miniature is painted with."),
    (
        "technique",
        "technique",
        "Describe mode: the painting technique. Edit mode: used by the style reference template.",
    ),
    ("light_direction", "light_direction", "Where the light comes from (describe mode; the lighting change edit)."),
    (
        "light_temperature",
        "light_temperature",
        "Colour temperature of the light (describe mode; the lighting change edit).",
    ),
    ("light_quality", "light_quality", "Soft, hard, dramatic... (describe mode; the lighting change edit)."),
    ("camera", "camera", "Describe mode: kind of photograph (macro 1:1, close-up...)."),
    ("focal_length", "focal_length", "Describe mode: lens focal length."),
    ("aperture", "aperture", "Describe mode: lens aperture."),
    ("depth_of_field", "depth_of_field", "Describe mode: depth of field."),
    ("backdrop", "backdrop", "The background (describe mode; the backdrop swap edit)."),
    ("base", "base", "Edit mode: the new base for the basing edit."),
)
_TEXTS: tuple[tuple[str, str, str, str], ...] = (
    ("custom_subject", "", "a fantasy knight", "Your own subject, in words; wins over the subject menu when filled."),
    (
        "part",
        "",
        "cloak",
        "Edit mode: the part to change (the cloak, the armour, the lantern, the banner). Empty: the template's default.",
    ),
    (
        "change_to",
        "",
        "deep crimson",
        "Edit mode: what the part becomes (a colour, a metal, a glow colour). Empty: the template's default.",
    ),
    (
        "text",
        "",
        "FOR THE EMPEROR",
        "Edit mode: the words to paint on a banner or shield; they go into the prompt in quotes, as typed.",
    ),
)


def user_vocabulary_path() -> str | None:
    """``<ComfyUI user dir>/default/kontext_atelier/vocabulary.json``; None if ComfyUI has no user directory."""
    try:
        import folder_paths

        return os.path.join(folder_paths.get_user_directory(), USER_VOCABULARY)
    except Exception as exc:  # a host without a user directory still gets the built-in vocabulary
        logger.debug("no user directory for the vocabulary file: %s", exc)
        return None


def current_vocabulary() -> vocabulary.LoadedVocabulary:
    return vocabulary.load_vocabulary(user_vocabulary_path())


_TOKENIZER = None
_TOKENIZER_LOCK = threading.Lock()


def flux_tokenizer():
    """ComfyUI's Flux tokenizer pair (CLIP-L and T5-XXL), built once: it needs only the vocab files ComfyUI ships."""
    global _TOKENIZER
    with _TOKENIZER_LOCK:
        if _TOKENIZER is None:
            from comfy.text_encoders.flux import FluxTokenizer

            _TOKENIZER = FluxTokenizer()
        return _TOKENIZER


def count_tokens(text: str) -> dict[str, int]:
    """Tokens the prompt takes in CLIP-L (with its start and end tokens) and T5-XXL (with its end token).

    Counted with ``tokenize_with_weights`` as CLIPTextEncode does, so ComfyUI's (word:1.2) weights count right.
    """
    tokens = flux_tokenizer().tokenize_with_weights(text, return_word_ids=True)

    def words(batches) -> int:
        return sum(1 for batch in batches for token in batch if token[2] != 0)

    return {"clip_l": words(tokens["l"]) + 2, "t5xxl": words(tokens["t5xxl"]) + 1}


def _menu_options(loaded: vocabulary.LoadedVocabulary, field: str) -> list[str]:
    return [builder.NONE, *loaded.vocabulary.ids(builder.FIELD_SECTIONS[field])]


class AtelierMiniaturePrompt(io.ComfyNode):
    @classmethod
    def define_schema(cls) -> io.Schema:
        loaded = current_vocabulary()
        defaults = {"template": "recolour", "subject": "fantasy knight"}
        menus = []
        for input_id, field, tooltip in _MENUS:
            options = _menu_options(loaded, field)
            default = defaults.get(input_id, builder.NONE)
            menus.append(
                io.Combo.Input(
                    input_id, options=options, default=default if default in options else builder.NONE, tooltip=tooltip
                )
            )
        texts = [
            io.String.Input(input_id, default=default, placeholder=placeholder, tooltip=tooltip)
            for input_id, default, placeholder, tooltip in _TEXTS
        ]
        return io.Schema(
            node_id="AtelierMiniaturePrompt",
            display_name=NODE_NAME,
            category="Kontext Atelier/Prompt",
            description=(
                "Builds a FLUX.1 Kontext prompt for miniature photos from menu choices. Describe mode writes "
                "'[material] [technique] miniature of [subject], [lighting], [camera], [backdrop]'; edit mode writes "
                "an instruction (what to change, to what) and what to keep unchanged. Shows the prompt and its CLIP-L "
                "and T5 token counts. Add your own entries in <user dir>/default/kontext_atelier/vocabulary.json."
            ),
            inputs=[
                io.Combo.Input(
                    "mode",
                    options=list(builder.MODES),
                    default="edit",  # Kontext edits: with the default template (recolour), a working instruction
                    tooltip="describe: a description of the photo (for generating). edit: an instruction for Kontext to change the input image.",
                ),
                *menus[:2],
                texts[0],
                *menus[2:],
                *texts[1:],
                io.Int.Input(
                    "reference",
                    default=2,
                    min=1,
                    max=MAX_REFERENCE,
                    tooltip="Edit mode, style reference: which reference image to copy the style of ('reference 2').",
                ),
                io.Combo.Input(
                    "keep",
                    options=list(builder.KEEP_OPTIONS),
                    default=builder.KEEP_OPTIONS[0],
                    tooltip="Edit mode: what the prompt tells Kontext to keep the same. 'everything else' names all "
                    "that the edit does not change (sculpt, pose, base, lighting, background, camera angle).",
                ),
                io.String.Input(
                    "extra",
                    default="",
                    multiline=True,
                    placeholder="anything else, in your words",
                    tooltip="Free text added at the end of the prompt (describe: after a comma; edit: as its own sentence).",
                ),
                io.Float.Input(
                    "guidance",
                    default=2.5,
                    min=0.0,
                    max=100.0,
                    step=0.1,
                    tooltip="Flux guidance stored in the conditioning, as CLIPTextEncodeFlux does (2.5 suits Kontext).",
                ),
                io.Int.Input(
                    "variants",
                    default=4,
                    min=1,
                    max=MAX_VARIANTS,
                    tooltip="How many prompts the variants output lists (the first is the main prompt).",
                ),
                io.Combo.Input(
                    "vary",
                    options=list(builder.VARY_OPTIONS),
                    default="lighting",
                    tooltip="What changes between variants: picked by a seeded shuffle of the vocabulary, or, for "
                    "'clause order', a reordering of the prompt's clauses.",
                ),
                io.Int.Input(
                    "seed",
                    default=0,
                    min=0,
                    max=0xFFFFFFFF,
                    control_after_generate=False,
                    tooltip="Seed of the variant shuffle: the same seed gives the same variants.",
                ),
                io.Clip.Input(
                    "clip",
                    optional=True,
                    tooltip="Optional: connect the Flux CLIP (CLIP-L + T5-XXL) to also get the encoded conditioning.",
                ),
            ],
            outputs=[
                io.String.Output(display_name="prompt", tooltip="The assembled prompt."),
                io.Conditioning.Output(
                    display_name="conditioning",
                    tooltip="The prompt encoded by the connected CLIP with Flux guidance set (needs the clip input).",
                ),
                io.String.Output(
                    display_name="variants",
                    is_output_list=True,
                    tooltip="A list of prompts (the main one first), for batch runs: nodes after it run once per prompt.",
                ),
            ],
        )

    @classmethod
    def validate_inputs(cls, **kwargs) -> bool:
        # Menu values are checked in execute instead of by ComfyUI: an entry deleted from the user's vocabulary
        # file then becomes a warning on the node rather than a refused prompt.
        return True

    @classmethod
    def fingerprint_inputs(cls, **kwargs):
        # Re-run when the user's vocabulary file changes, even if no input did.
        return vocabulary.file_signature(user_vocabulary_path())

    @classmethod
    def execute(
        cls,
        mode="describe",
        custom_subject="",
        part="",
        change_to="",
        text="",
        reference=2,
        keep="everything else",
        extra="",
        guidance=2.5,
        variants=4,
        vary="lighting",
        seed=0,
        clip=None,
        **menus,
    ) -> io.NodeOutput:
        loaded = current_vocabulary()
        chosen = {field: menus.get(input_id, "") for input_id, field, _ in _MENUS}
        if str(custom_subject or "").strip():
            chosen["subject"] = custom_subject
        choices = builder.Choices(
            mode=mode,
            part=part,
            value=change_to,
            text=text,
            reference=str(_clamp(reference, 1, MAX_REFERENCE, 2)),
            keep=keep,
            extra=extra,
            **chosen,
        )
        prompt = builder.build(choices, loaded.vocabulary)
        count = _clamp(variants, 1, MAX_VARIANTS, 4)
        prompts, variant_warnings = builder.build_variants(
            choices, loaded.vocabulary, count, vary, _clamp(seed, 0, 2**32 - 1, 0)
        )
        warnings = [*loaded.warnings, *prompt.warnings, *variant_warnings]
        try:
            counts, length_warnings = builder.check_length(prompt.text, count_tokens)
        except Exception as exc:  # counting is a courtesy: never fail the prompt for it
            logger.warning("%s: could not count tokens: %s", NODE_NAME, exc)
            counts, length_warnings = {}, [f"Token counts unavailable ({exc})."]
        warnings.extend(length_warnings)
        for warning in warnings:
            logger.warning("%s: %s", NODE_NAME, warning)

        if clip is not None:
            _check_encodable(prompt.text)
            tokens = clip.tokenize(prompt.text)
            guidance = min(max(float(guidance), 0.0), 100.0)  # validate_inputs skips ComfyUI's range check
            conditioning = clip.encode_from_tokens_scheduled(tokens, add_dict={"guidance": guidance})
        else:
            conditioning = ExecutionBlocker(
                f"{NODE_NAME}: its conditioning output needs a CLIP: connect the Flux CLIP to its clip input "
                "(or take the prompt output into a text encode node)."
            )
        shown = builder.report(prompt.text, counts, warnings, prompts)
        return io.NodeOutput(prompt.text, conditioning, prompts, ui=ui.PreviewText(shown))


def _check_encodable(text: str) -> None:
    # ComfyUI's tokenizers take about 90 s for 1 MB (their weight parser is quadratic); the text is far past what
    # Flux reads long before that, so say so instead of stalling the queue.
    if len(text) > builder.EXACT_COUNT_MAX_CHARS:
        raise AtelierError(
            f"{NODE_NAME}: the prompt is {len(text):,} characters; Flux reads about 512 T5-XXL tokens (some 2,500 "
            f"characters) and this node encodes at most {builder.EXACT_COUNT_MAX_CHARS:,}. Shorten the extra text."
        )


def _clamp(value, low: int, high: int, default: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        return default
    return min(max(number, low), high)


NODES = [AtelierMiniaturePrompt]
