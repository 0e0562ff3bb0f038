"""The miniature prompt builder: golden prompts, grammar over random choices, variants, the CLI and the node.

Host tests (``comfy_host``) run the node inside a real ComfyUI and check its token counts against ComfyUI's own
CLIP-L and T5-XXL tokenizers.
"""

from __future__ import annotations

import json
import os
import re
import sys

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from atelier_core import cli
from atelier_core.cli import prompt as prompt_command
from atelier_core.prompts import builder, vocabulary
from atelier_core.prompts.builder import Choices, build, build_variants, indefinite_article, polish, with_article

VOCAB = vocabulary.builtin_vocabulary()
KEEP_ALL = "Keep the sculpt, pose, other colours, base, lighting, background and camera angle exactly the same."

GOLDEN = [
    (
        dict(
            material="acrylic",
            technique="wet blending",
            subject="fantasy knight",
            light_temperature="warm golden",
            light_direction="side",
            camera="macro 1:1",
            depth_of_field="shallow",
            backdrop="studio",
        ),
        "Acrylic wet-blended miniature of a fantasy knight, warm golden side lighting, macro photography 1:1, "
        "shallow depth of field, studio backdrop",
    ),
    (
        dict(
            material="oil",
            technique="glazing",
            scale="75 mm bust",
            subject="elf ranger",
            light_quality="soft",
            light_temperature="cool",
            light_direction="rim",
            focal_length="100 mm macro",
            aperture="f/8",
            backdrop="black gradient",
        ),
        "Oil glazed 75mm bust of an elf ranger, soft cool rim lighting, 100mm macro lens at f/8, "
        "black-to-grey gradient backdrop",
    ),
    (
        dict(technique="NMM", subject="orc warboss", scale="28 mm"),
        "Non-metallic-metal 28mm miniature of an orc warboss",
    ),
    (
        dict(subject="an undead champion", aperture="f/11", depth_of_field="focus stacked"),
        "Painted miniature of an undead champion, shot at f/11, focus-stacked, sharp from front to back",
    ),
    (
        dict(
            material="contrast paints", subject="space marine", extra="battle-worn, crisp freehand on the shoulder pad"
        ),
        "Contrast-paint miniature of an armoured space marine, battle-worn, crisp freehand on the shoulder pad",
    ),
    (
        dict(material="enamel", subject="tank", extra="Weathered tracks. Mud on the skirts."),
        "Enamel miniature of a tank. Weathered tracks. Mud on the skirts.",
    ),
    (
        dict(mode="edit", template="recolour", part="cloak", value="deep crimson"),
        "Change the colour of the cloak to deep crimson, with matching shading and highlights. " + KEEP_ALL,
    ),
    (
        dict(mode="edit", template="NMM armour", part="his breastplate"),
        "Repaint his breastplate as non-metallic metal gold, with smooth painted gradients from dark shadow to sharp "
        "white reflections and no metallic pigment. " + KEEP_ALL,
    ),
    (
        dict(mode="edit", template="true metallic armour", part="a sword", value="silver", keep="nothing"),
        "Repaint the sword in true metallic silver paint, with a real metallic sheen, dark washes in the recesses and "
        "bright edge highlights.",
    ),
    (
        dict(mode="edit", template="object-source lighting", part="the lantern", value="eerie green"),
        "Add object-source lighting from the lantern: an eerie green glow that lights the nearby surfaces and fades "
        "with distance. Keep the sculpt, pose, base, background and camera angle exactly the same.",
    ),
    (
        dict(mode="edit", template="edge highlights", keep="identity and pose"),
        "Add crisp, thin edge highlights in a lighter tone of each base colour along the raised edges of the armour "
        "and weapons. Keep the sculpt and pose exactly the same.",
    ),
    (
        dict(mode="edit", template="weathering", part="cloak hem", keep="identity and pose"),
        "Weather the cloak hem with chipped paint, grime and dust, heavier on the lower edges. "
        "Keep the sculpt and pose exactly the same.",
    ),
    (
        dict(mode="edit", template="battle damage", keep="nothing"),
        "Add battle damage to the armour: scratches, chips and dents that show bare metal underneath.",
    ),
    (
        dict(mode="edit", template="basing", subject="dwarf warrior", base="snow"),
        "Rebase the dwarf warrior on a snowy base with fresh snow and frost on the rocks. "
        "Keep the sculpt, pose, other colours, lighting, background and camera angle exactly the same.",
    ),
    (
        dict(mode="edit", template="basing", base="urban", keep="identity and pose"),
        "Rebase the miniature on an urban ruins base with broken bricks, rubble and a cracked paving slab. "
        "Keep the sculpt and pose exactly the same.",
    ),
    (
        dict(mode="edit", template="backdrop swap", backdrop="grey gradient", keep="identity and pose"),
        "Replace the background with a smooth grey gradient backdrop. Keep the sculpt and pose exactly the same.",
    ),
    (
        dict(
            mode="edit",
            template="lighting change",
            light_quality="dramatic",
            light_temperature="cold blue",
            light_direction="under",
        ),
        "Change the lighting to dramatic cold blue under lighting. "
        "Keep the sculpt, pose, other colours, base, background and camera angle exactly the same.",
    ),
    (
        dict(mode="edit", template="style reference", keep="nothing"),
        "Paint the miniature in the style of reference 2, matching its colour palette, contrast and brushwork.",
    ),
    (
        dict(
            mode="edit",
            template="style reference",
            reference="3",
            technique="glazing",
            subject="wizard",
            keep="nothing",
        ),
        "Paint the wizard with a glowing staff in the style of reference 3, matching its colour palette, contrast and "
        "brushwork, using translucent glazes.",
    ),
    (
        dict(mode="edit", template="banner text", text="“For the Emperor”", part="shield", value="red", keep="nothing"),
        'Add the text "For the Emperor" to the shield, painted freehand in red lettering.',
    ),
    (
        dict(mode="edit", template="rust", extra="also add verdigris to the bronze trim"),
        "Add orange-brown rust, pitting and rust streaks to the metal of the armour. "
        "Also add verdigris to the bronze trim. " + KEEP_ALL,
    ),
    (dict(mode="edit", extra="Make the eyes glow green"), "Make the eyes glow green. " + KEEP_ALL),
]


@pytest.mark.parametrize(("choices", "expected"), GOLDEN, ids=[str(i) for i in range(len(GOLDEN))])
def test_golden_prompts(choices, expected):
    prompt = build(Choices(**choices))
    assert prompt.warnings == ()
    assert prompt.text == expected


def test_every_template_builds_with_its_defaults():
    for template_id in VOCAB.ids("edit_templates"):
        prompt = build(Choices(mode="edit", template=template_id, text="FOR GLORY"))
        assert prompt.warnings == (), template_id
        assert prompt.text.endswith("exactly the same."), template_id


def test_none_is_the_same_as_empty():
    assert build(Choices(subject="(none)", material="acrylic", backdrop=builder.NONE)).text == "Acrylic miniature"


# --- bad input: warnings, never exceptions -----------------------------------------------------------------------


def test_empty_everything_is_an_empty_prompt_with_a_message():
    for mode in ("describe", "edit"):
        prompt = build(Choices(mode=mode))
        assert prompt.text == ""
        assert len(prompt.warnings) == 1 and "empty" in prompt.warnings[0]


def test_unknown_ids_are_left_out_with_a_suggestion():
    prompt = build(Choices(technique="wetblending", subject="elf ranger"))
    assert prompt.text == "Painted miniature of an elf ranger"
    assert 'Did you mean "wet blending"?' in prompt.warnings[0]
    edit = build(Choices(mode="edit", template="recolor"))
    assert edit.text == ""
    assert 'Did you mean "recolour"?' in edit.warnings[0]


def test_unknown_mode_and_keep_fall_back():
    prompt = build(Choices(mode="paint", subject="dragon"))
    assert prompt.text == "Painted miniature of a dragon"
    assert "Unknown mode" in prompt.warnings[0]
    edit = build(Choices(mode="edit", template="rust", keep="some"))
    assert edit.text.endswith(KEEP_ALL) and "Unknown keep option" in edit.warnings[0]


def test_banner_text_without_text_asks_for_it():
    prompt = build(Choices(mode="edit", template="banner text", keep="nothing"))
    assert prompt.text == ""
    assert prompt.warnings == (
        'The "banner text" edit needs "text"; fill it in (the instruction is left out until then).',
    )


def test_quoted_text_is_kept_as_typed():
    prompt = build(Choices(mode="edit", template="banner text", text='the the "END" of. days', keep="nothing"))
    assert (
        prompt.text == "Add the text \"the the 'END' of. days\" to the banner, painted freehand in neat gold lettering."
    )


def test_user_text_cannot_inject_template_slots():
    prompt = build(Choices(mode="edit", template="recolour", part="{value}", value="[red]", keep="nothing"))
    assert prompt.text == "Change the colour of the {value} to [red], with matching shading and highlights."


# --- grammar helpers ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("phrase", "article"),
    [
        ("acrylic", "an"),
        ("oil", "an"),
        ("urban base", "an"),
        ("eerie glow", "an"),
        ("hour", "an"),
        ("honest look", "an"),
        ("uninspired pose", "an"),
        ("unicorn", "a"),
        ("union jack", "a"),
        ("unit", "a"),
        ("useful tool", "a"),
        ("European", "a"),
        ("one-piece cast", "a"),
        ("NMM finish", "an"),
        ("OSL glow", "an"),
        ("SUV", "an"),
        ("BMX", "a"),
        ("UV lamp", "a"),
        ("8mm base", "an"),
        ("11th legion", "an"),
        ("18000 model", "an"),
        ("28mm miniature", "a"),
        ("110 kit", "a"),
        ("snowy base", "a"),
        ("", "a"),
    ],
)
def test_indefinite_article(phrase, article):
    assert indefinite_article(phrase) == article


@pytest.mark.parametrize(
    ("phrase", "article", "expected"),
    [
        ("cloak", "the", "the cloak"),
        ("a lantern", "the", "the lantern"),
        ("an axe", "the", "the axe"),
        ("the cloak", "the", "the cloak"),
        ("his breastplate", "the", "his breastplate"),
        ("two swords", "a", "two swords"),
        ("elf", "a", "an elf"),
        ("  big   sword ", "a", "a big sword"),
        ("", "a", ""),
    ],
)
def test_with_article(phrase, article, expected):
    assert with_article(phrase, article) == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("  hello ,  world  ", "Hello, world"),
        ("a,,b , , c", "A, b, c"),
        ("one. two ! three? four", "One. Two! Three? Four"),
        ("red red cloak, the The sword", "Red cloak, the sword"),
        ("end , .", "End."),
        ("macro 1:1, f/2.8 , 28mm", "Macro 1:1, f/2.8, 28mm"),
        ('say "no no , ok" now now', 'Say "no no , ok" now'),
        (", leading comma", "Leading comma"),
        ("x.. y", "X. Y"),
    ],
)
def test_polish(raw, expected):
    assert polish(raw) == expected


# --- grammar properties over random combinations -----------------------------------------------------------------


def _pick(field: str):
    return st.sampled_from(["", builder.NONE, *VOCAB.ids(builder.FIELD_SECTIONS[field])])


_free_text = st.text(alphabet="abcdefgh ,.", max_size=25)
_random_choices = st.builds(
    Choices,
    mode=st.sampled_from(builder.MODES),
    **{field: _pick(field) for field in builder.FIELD_SECTIONS},
    part=st.sampled_from(["", "cloak", "his shield", "a lantern", "the armour plates"]),
    value=st.sampled_from(["", "deep crimson", "gold", "eerie green", "a pale blue"]),
    reference=st.sampled_from(["", "1", "2"]),
    text=st.sampled_from(["", "FOR GLORY", "Waaagh!!", "  two  spaces "]),
    keep=st.sampled_from(builder.KEEP_OPTIONS),
    extra=st.sampled_from(["", "crisp details", "Make the eyes glow.", "dusty, matte finish,"]) | _free_text,
)


def _outside_quotes(text: str) -> str:
    return re.sub(r'"[^"]*"', '"Q"', text)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_random_choices)
def test_grammar_properties(choices):
    prompt = build(choices)
    text = prompt.text
    if not text:
        assert prompt.warnings, "an empty prompt must say why"
        return
    bare = _outside_quotes(text)
    assert text == text.strip()
    assert "  " not in text
    assert ",," not in bare and ", ," not in bare and " ," not in bare and " ." not in bare
    assert not re.search(r"[,;:][.!?]|[.!?],", bare)
    assert text[0].isupper() or not text[0].isalpha()
    assert not re.search(r"[.!?] [a-z]", bare), text  # every sentence starts with a capital
    assert not re.search(r"\b([A-Za-z]+) \1\b", bare, re.IGNORECASE), text  # no doubled words
    assert not re.search(r"[{}\[\]]", bare), text  # no template syntax leaks
    assert not bare.endswith(",")
    if choices.mode == "edit":
        assert text[-1] in ".!?"
    words = re.findall(r"[A-Za-z0-9'-]+", bare)
    for article, word in zip(words, words[1:], strict=False):
        # a/an before vocabulary words; free text is the user's own
        if article in ("a", "an") and word.lower() in {
            "acrylic",
            "oil",
            "enamel",
            "urban",
            "eerie",
            "armoured",
            "orc",
            "elf",
        }:
            assert article == "an", text


@settings(max_examples=60, deadline=None)
@given(_random_choices, st.integers(1, 6), st.sampled_from(list(builder.VARY_OPTIONS)), st.integers(0, 2**32 - 1))
def test_variants_properties(choices, count, vary, seed):
    prompts, warnings = build_variants(choices, VOCAB, count, vary, seed)
    assert len(prompts) == count
    assert prompts[0] == build(choices).text
    assert (prompts, warnings) == build_variants(choices, VOCAB, count, vary, seed)  # repeatable
    if len(set(prompts)) < count:
        assert warnings
    for text in prompts:
        assert "  " not in text and ",," not in _outside_quotes(text)


# --- variants ----------------------------------------------------------------------------------------------------

KNIGHT = Choices(**GOLDEN[0][0])


def test_variants_vary_the_lighting_only():
    prompts, warnings = build_variants(KNIGHT, VOCAB, 5, "lighting", 7)
    assert warnings == []
    assert len(set(prompts)) == 5
    for text in prompts:
        assert text.startswith("Acrylic wet-blended miniature of a fantasy knight, ")
        assert text.endswith(" lighting, macro photography 1:1, shallow depth of field, studio backdrop")


def test_variants_depend_on_the_seed():
    assert build_variants(KNIGHT, VOCAB, 4, "technique", 1) != build_variants(KNIGHT, VOCAB, 4, "technique", 2)


def test_clause_order_variants_keep_the_clauses():
    prompts, _ = build_variants(KNIGHT, VOCAB, 4, "clause order", 0)
    assert len(set(prompts)) == 4
    head = "Acrylic wet-blended miniature of a fantasy knight, "
    clauses = sorted(prompts[0][len(head) :].split(", "))
    for text in prompts:
        assert text.startswith(head)
        assert sorted(text[len(head) :].split(", ")) == clauses


def test_variants_that_cannot_differ_repeat_with_a_warning():
    choices = Choices(mode="edit", template="recolour")
    prompts, warnings = build_variants(choices, VOCAB, 3, "technique", 0)
    assert prompts == [build(choices).text] * 3
    assert "gives only 1 different prompt" in warnings[0]
    bases, warnings = build_variants(Choices(mode="edit", template="basing"), VOCAB, 4, "base", 0)
    assert len(set(bases)) == 4 and warnings == []


def test_unknown_vary_falls_back_to_lighting():
    prompts, warnings = build_variants(KNIGHT, VOCAB, 2, "colour", 0)
    assert len(set(prompts)) == 2 and "Unknown variation" in warnings[0]


def test_one_variant_is_the_prompt():
    assert build_variants(KNIGHT, VOCAB, 1, "lighting", 0) == ([build(KNIGHT).text], [])


# --- token limits and the report ---------------------------------------------------------------------------------


def test_check_length_warns_past_each_limit():
    assert builder.check_length("short", lambda text: {"clip_l": 77, "t5xxl": 512}) == (
        {"clip_l": 77, "t5xxl": 512},
        [],
    )
    counts, warnings = builder.check_length("long", lambda text: {"clip_l": 78, "t5xxl": 513})
    assert counts == {"clip_l": 78, "t5xxl": 513}
    assert len(warnings) == 2 and "78 CLIP-L tokens" in warnings[0] and "513 T5-XXL tokens" in warnings[1]
    assert builder.check_length("", lambda text: 1 / 0) == ({}, [])
    assert builder.check_length("text", None) == ({}, [])


def test_report_shows_prompt_counts_warnings_and_variants():
    text = builder.report("Prompt", {"clip_l": 80, "t5xxl": 20}, ["too long"], ["Prompt", "Other"])
    assert text.splitlines() == [
        "Prompt",
        "",
        "CLIP-L: 80 / 77 tokens  ⚠ over · T5-XXL: 20 / 512 tokens",
        "⚠ too long",
        "",
        "2 variants:",
        "1. Prompt",
        "2. Other",
    ]
    assert builder.report("", {}, []) == "(empty prompt)"


def test_check_length_estimates_a_huge_prompt_instead_of_tokenizing_it():
    """A 1 MB "extra" took 21.7 s in ComfyUI's tokenizers; past EXACT_COUNT_MAX_CHARS the estimate is used."""
    huge = "paint the cloak red " * 60_000
    counts, warnings = builder.check_length(huge, lambda text: 1 / 0)  # the exact counter is never called
    assert counts == builder.rough_token_counts(huge) and len(warnings) == 2
    edge = "a" * builder.EXACT_COUNT_MAX_CHARS
    assert builder.check_length(edge, lambda text: {"clip_l": 5, "t5xxl": 5}) == ({"clip_l": 5, "t5xxl": 5}, [])


def test_rough_counts_over_estimate_real_prompts():
    # ComfyUI's tokenizers count these as 30/31, 51/57 and 21/21 (CLIP-L/T5-XXL; see the host test)
    for (_, text), (clip, t5) in zip([GOLDEN[0], GOLDEN[20], GOLDEN[19]], [(30, 31), (51, 57), (21, 21)], strict=True):
        counts = builder.rough_token_counts(text)
        assert clip <= counts["clip_l"] <= clip * 1.5 and t5 <= counts["t5xxl"] <= t5 * 1.5


# --- command line ------------------------------------------------------------------------------------------------


def run_prompt_command(argv: list[str]) -> int:
    """The subcommand alone (the full ``main`` imports every subcommand, some of them slow to import)."""
    import argparse

    parser = argparse.ArgumentParser()
    prompt_command.register(parser.add_subparsers())
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_prints_the_prompt(capsys):
    assert "prompt" in cli._COMMANDS  # registered with `kontext-atelier`
    args = ["prompt", "--mode", "edit", "--template", "recolour", "--part", "cloak", "--value", "deep crimson"]
    assert run_prompt_command(args) == 0
    assert capsys.readouterr().out == GOLDEN[6][1] + "\n"


def test_cli_variants_and_user_vocabulary(tmp_path, capsys):
    user = tmp_path / "vocabulary.json"
    user.write_text(json.dumps({"materials": {"gouache": "gouache"}, "nope": {}}), encoding="utf-8")
    args = ["prompt", "--material", "gouache", "--subject", "dragon", "--vocabulary", str(user), "--variants", "3"]
    assert run_prompt_command([*args, "--vary", "backdrop", "--seed", "5", "--counts"]) == 0
    captured = capsys.readouterr()
    lines = captured.out.splitlines()
    assert lines[0] == "Gouache miniature of a dragon" and len(set(lines)) == 3
    assert 'unknown section "nope"' in captured.err and "CLIP-L" in captured.err


def test_cli_lists_the_vocabulary(capsys):
    assert run_prompt_command(["prompt", "--list", "scales"]) == 0
    assert "  75 mm bust" in capsys.readouterr().out.splitlines()
    assert run_prompt_command(["prompt", "--list", "nothing"]) == 2
    assert "no section 'nothing'" in capsys.readouterr().err


# --- in a real ComfyUI -------------------------------------------------------------------------------------------

NODE_ID = "AtelierMiniaturePrompt"


def _node_module(host):
    return sys.modules[f"{host.pack_module_name}.nodes.prompt"]


def _inputs(host, **values) -> dict:
    required = host.object_info(NODE_ID)["input"]["required"]
    inputs = {name: spec[1].get("default") for name, spec in required.items()}
    # The cases are written for the library's Choices, whose mode defaults to describe; the node defaults to edit.
    inputs["mode"] = Choices().mode
    inputs.update(values)
    return inputs


def _user_file(host):
    return host.workdir / "user" / "default" / "kontext_atelier" / "vocabulary.json"


def test_host_schema(comfy_host):
    info = comfy_host.object_info(NODE_ID)
    assert info["display_name"] == "Kontext Miniature Prompt Builder"
    assert info["category"] == "Kontext Atelier/Prompt"
    assert info["output"] == ["STRING", "CONDITIONING", "STRING"]
    assert info["output_name"] == ["prompt", "conditioning", "variants"]
    assert info["output_is_list"] == [False, False, True]
    assert all(info["output_tooltips"])
    required, optional = info["input"]["required"], info["input"]["optional"]
    assert list(optional) == ["clip"]
    for spec in [*required.values(), *optional.values()]:
        assert spec[1].get("tooltip")
    assert required["technique"][1]["options"] == [builder.NONE, *VOCAB.ids("techniques")]
    assert required["template"][1]["options"][1:] == VOCAB.ids("edit_templates")
    assert required["mode"][1]["options"] == ["describe", "edit"]


def test_host_token_counts_match_comfyui_tokenizers(comfy_host):
    from comfy.sd1_clip import SDTokenizer
    from comfy.text_encoders.flux import T5XXLTokenizer

    clip_l, t5 = SDTokenizer(), T5XXLTokenizer()
    count = _node_module(comfy_host).count_tokens
    long_prompt = build(Choices(**GOLDEN[0][0], extra=", ".join(["crisp highlights on every raised edge"] * 12))).text
    for text in (GOLDEN[0][1], GOLDEN[6][1], long_prompt):
        expected = {
            "clip_l": len(clip_l.tokenizer(text)["input_ids"]),  # with its start and end tokens
            "t5xxl": len(t5.tokenizer(text)["input_ids"]),  # with its end token
        }
        assert count(text) == expected
    assert count(GOLDEN[0][1]) == {"clip_l": 30, "t5xxl": 31}
    assert count(GOLDEN[20][1]) == {"clip_l": 51, "t5xxl": 57}
    assert count(GOLDEN[19][1]) == {"clip_l": 21, "t5xxl": 21}
    assert count(long_prompt)["clip_l"] > builder.TOKEN_LIMITS["clip_l"]


def test_host_execution_shows_prompt_counts_and_variants(comfy_host):
    prompt = {
        "1": {"class_type": NODE_ID, "inputs": _inputs(comfy_host, **GOLDEN[0][0], variants=3, seed=4)},
        "2": {"class_type": "AtelierTestCapture", "inputs": {"key": "prompt", "value": ["1", 0]}},
        "3": {"class_type": "AtelierTestCapture", "inputs": {"key": "variant", "value": ["1", 2]}},
    }
    outputs = comfy_host.run(prompt)
    assert comfy_host.captured["prompt"] == GOLDEN[0][1]
    shown = outputs["1"]["text"][0]
    assert shown.startswith(GOLDEN[0][1] + "\n\nCLIP-L: 30 / 77 tokens · T5-XXL: 31 / 512 tokens")
    variants, _ = build_variants(Choices(**GOLDEN[0][0]), VOCAB, 3, "lighting", 4)
    assert shown.endswith("\n".join(f"{i}. {v}" for i, v in enumerate(variants, 1)))
    assert comfy_host.captured["variant"] == variants[-1]  # the capture ran once per list item


def test_host_long_prompt_warns_on_the_node(comfy_host):
    extra = ", ".join(["crisp highlights on every raised edge"] * 12)
    prompt = {
        "1": {"class_type": NODE_ID, "inputs": _inputs(comfy_host, subject="dragon", extra=extra, variants=1)},
        "2": {"class_type": "AtelierTestCapture", "inputs": {"key": "prompt", "value": ["1", 0]}},
    }
    shown = comfy_host.run(prompt)["1"]["text"][0]
    assert "⚠ over" in shown and "over CLIP-L's 77" in shown


def test_host_conditioning_without_clip_blocks_with_a_message(comfy_host):
    prompt = {
        "1": {"class_type": NODE_ID, "inputs": _inputs(comfy_host, variants=1)},
        "2": {"class_type": "AtelierTestCapture", "inputs": {"key": "cond", "value": ["1", 1]}},
    }
    comfy_host.run(prompt)
    assert "cond" not in comfy_host.captured
    errors = [data for event, data in comfy_host.sink.messages if event == "execution_error"]
    assert errors and "connect the Flux CLIP" in errors[-1]["exception_message"]


def test_host_conditioning_encodes_with_guidance(comfy_host):
    class RecordingClip:
        def tokenize(self, text):
            self.text = text
            return {"l": [[(1, 1.0)]], "t5xxl": [[(2, 1.0)]]}

        def encode_from_tokens_scheduled(self, tokens, add_dict=None):
            self.tokens, self.add_dict = tokens, add_dict
            return [["cond", {"guidance": add_dict["guidance"]}]]

    clip = RecordingClip()
    node = comfy_host.node_class(NODE_ID)
    out = node.execute(**{**_inputs(comfy_host, **GOLDEN[0][0], guidance=3.5, variants=2), "clip": clip})
    assert out.args[0] == GOLDEN[0][1] and clip.text == GOLDEN[0][1]
    assert clip.add_dict == {"guidance": 3.5}
    assert out.args[1] == [["cond", {"guidance": 3.5}]]
    assert len(out.args[2]) == 2 and out.args[2][0] == GOLDEN[0][1]


def test_host_huge_extra_is_estimated_and_not_encoded(comfy_host):
    """A 1 MB "extra" took 21.7 s in the node (ComfyUI's tokenizers); now the counts are estimated and a CLIP
    encode is refused naming the node, before the tokenizer is called."""

    class RefusingClip:
        def tokenize(self, text):
            raise AssertionError("a 1 MB prompt must not reach the tokenizer")

    node = comfy_host.node_class(NODE_ID)
    inputs = _inputs(comfy_host, subject="dragon", extra="paint the cloak red " * 50_000, variants=1)
    out = node.execute(**inputs)
    assert len(out.args[0]) > 1_000_000 and "over CLIP-L's 77" in out.ui.as_dict()["text"][0]
    with pytest.raises(Exception, match="1,000,0.. characters.*Shorten the extra text") as refused:
        node.execute(**{**inputs, "clip": RefusingClip()})
    assert type(refused.value).__name__ == "AtelierError"  # the pack's class, loaded under ComfyUI's module name


def test_host_user_vocabulary_reloads_without_restart(comfy_host):
    path = _user_file(comfy_host)
    path.parent.mkdir(parents=True, exist_ok=True)
    node = comfy_host.node_class(NODE_ID)
    try:
        before = node.fingerprint_inputs()
        path.write_text(json.dumps({"techniques": {"blacklining": "black-lined"}}), encoding="utf-8")
        assert node.fingerprint_inputs() != before  # ComfyUI re-runs the node
        options = comfy_host.object_info(NODE_ID)["input"]["required"]["technique"][1]["options"]
        assert options[-1] == "blacklining"
        inputs = _inputs(comfy_host, technique="blacklining", subject="dragon", variants=1)

        def prompt():  # a fresh dict per run, as the browser sends (ComfyUI writes "is_changed" into it)
            return {
                "1": {"class_type": NODE_ID, "inputs": dict(inputs)},
                "2": {"class_type": "AtelierTestCapture", "inputs": {"key": "prompt", "value": ["1", 0]}},
            }

        comfy_host.run(prompt())
        assert comfy_host.captured["prompt"] == "Black-lined miniature of a dragon"

        # Broken file: a message on the node, the built-in vocabulary still works, and the stale id only warns.
        path.write_text('{"techniques": {"blacklining": "black-lined",}', encoding="utf-8")
        stat = os.stat(path)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000))
        outputs = comfy_host.run(prompt())
        shown = outputs["1"]["text"][0]
        assert comfy_host.captured["prompt"] == "Painted miniature of a dragon"
        assert "is not valid JSON (line 1" in shown and str(path) in shown
        assert '"blacklining" is not a technique in the vocabulary' in shown
    finally:
        path.unlink(missing_ok=True)
    assert "blacklining" not in comfy_host.object_info(NODE_ID)["input"]["required"]["technique"][1]["options"]
