"""``kontext-atelier prompt``: build a miniature prompt on the command line, as the node does.

    kontext-atelier prompt --material acrylic --technique "wet blending" --subject "fantasy knight"
    kontext-atelier prompt --mode edit --template recolour --part cloak --change-to "deep crimson"
    kontext-atelier prompt --list techniques

The prompt goes to standard output (one line per variant with ``--variants N``); warnings go to standard error.
"""

from __future__ import annotations

import argparse
import sys

from ..prompts import builder, vocabulary

_HELP = {
    "mode": "describe (a photo description) or edit (a Kontext instruction)",
    "subject": "a subject id from the vocabulary, or your own words",
    "template": "edit template id (edit mode)",
    "part": "the part an edit changes, e.g. cloak (edit mode)",
    "value": "what the part changes to, e.g. 'deep crimson' (edit mode; the node's change_to)",
    "reference": "reference image number for the style reference edit",
    "text": "words to paint on a banner or shield (quoted in the prompt)",
    "keep": "what an edit keeps unchanged: " + ", ".join(builder.KEEP_OPTIONS),
    "extra": "free text added at the end",
}

# Options named as the node's inputs are where the builder's field name differs (the builder's "value" is the
# node's change_to).
CLI_NAMES = {"value": "change_to"}


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "prompt",
        help="build a miniature prompt for FLUX.1 Kontext",
        description="Build a describe-mode prompt or an edit instruction from vocabulary ids (see --list).",
    )
    for name in builder.choice_fields():
        section = builder.FIELD_SECTIONS.get(name)
        help_text = _HELP.get(name) or f"id from the vocabulary section {section}"
        default = builder.Choices.__dataclass_fields__[name].default
        flag = CLI_NAMES.get(name, name).replace("_", "-")
        parser.add_argument(f"--{flag}", dest=name, default=default, metavar="TEXT", help=help_text)
        if flag != name:  # the earlier spelling keeps working, unlisted
            parser.add_argument(f"--{name}", dest=name, default=default, help=argparse.SUPPRESS)
    parser.add_argument("--vocabulary", metavar="FILE", help="your vocabulary JSON file, merged over the built-in one")
    parser.add_argument("--variants", type=int, default=1, metavar="N", help="print N variants, the main prompt first")
    parser.add_argument(
        "--vary", default="lighting", choices=list(builder.VARY_OPTIONS), help="what the variants change"
    )
    parser.add_argument("--seed", type=int, default=0, help="seed of the variant shuffle")
    parser.add_argument(
        "--list",
        nargs="?",
        const="",
        metavar="SECTION",
        help="list the vocabulary ids (of one section) instead of building a prompt",
    )
    parser.add_argument("--counts", action="store_true", help="also print rough token counts (the node counts exactly)")
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    loaded = vocabulary.load_vocabulary(args.vocabulary)
    _warn(loaded.warnings)
    if args.list is not None:
        return _list(loaded.vocabulary, args.list)
    choices = builder.Choices(**{name: getattr(args, name) for name in builder.choice_fields()})
    prompt = builder.build(choices, loaded.vocabulary)
    prompts, variant_warnings = builder.build_variants(
        choices, loaded.vocabulary, max(1, args.variants), args.vary, args.seed
    )
    counts, length_warnings = builder.check_length(prompt.text, builder.rough_token_counts)
    _warn((*prompt.warnings, *variant_warnings, *length_warnings))
    sys.stdout.write("\n".join(prompts) + "\n")
    if args.counts and counts:
        sys.stderr.write(f"about {counts['clip_l']} CLIP-L and {counts['t5xxl']} T5-XXL tokens (rough)\n")
    return 0


def _warn(warnings) -> None:
    # Straight to standard error, not through logging: the warnings are this command's output for the user.
    for warning in warnings:
        sys.stderr.write(f"warning: {warning}\n")


def _list(vocab: vocabulary.Vocabulary, section: str) -> int:
    if section and section not in vocabulary.SECTIONS:
        sys.stderr.write(f"error: no section {section!r}; sections: {', '.join(vocabulary.SECTIONS)}\n")
        return 2
    for name in [section] if section else vocabulary.SECTIONS:
        sys.stdout.write(f"{name}:\n")
        for entry_id in vocab.ids(name):
            sys.stdout.write(f"  {entry_id}\n")
    return 0
