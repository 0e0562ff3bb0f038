"""The prompt vocabulary: the built-in data is complete and valid, and a user file merges in or fails softly.

Every problem in a user file must come back as a warning naming the file, never as an exception, and the
built-in vocabulary must keep working next to it.
"""

from __future__ import annotations

import json
import os

import pytest

from atelier_core.prompts import builder, vocabulary
from atelier_core.prompts.vocabulary import EditTemplate, load_vocabulary

ISSUE_TEMPLATES = (
    "recolour",
    "NMM armour",
    "true metallic armour",
    "object-source lighting",
    "edge highlights",
    "weathering",
    "rust",
    "battle damage",
    "basing",
    "backdrop swap",
    "lighting change",
    "style reference",
    "banner text",
)


def write(path, data) -> str:
    text = data if isinstance(data, str) else json.dumps(data)
    path.write_text(text, encoding="utf-8")
    return str(path)


def only_warning(loaded) -> str:
    assert len(loaded.warnings) == 1, loaded.warnings
    return loaded.warnings[0]


# --- built-in data -----------------------------------------------------------------------------------------------


def test_builtin_has_every_section_and_the_issue_vocabulary():
    vocab = vocabulary.builtin_vocabulary()
    for section in vocabulary.SECTIONS:
        assert vocab.ids(section), f"built-in section {section} is empty"
    assert {"acrylic", "oil", "enamel", "watercolour", "mixed media", "contrast paints"} <= set(vocab.ids("materials"))
    assert {"wet blending", "layering", "glazing", "drybrushing", "stippling", "zenithal priming", "NMM", "OSL"} <= set(
        vocab.ids("techniques")
    )
    assert {"28 mm", "32 mm", "54 mm", "75 mm bust"} <= set(vocab.ids("scales"))
    assert {"snow", "grass", "desert", "urban"} <= set(vocab.ids("bases"))
    assert {"studio", "grey gradient", "battlefield diorama"} <= set(vocab.ids("backdrops"))
    assert set(ISSUE_TEMPLATES) <= set(vocab.ids("edit_templates"))
    assert vocab.size() > 100


def test_builtin_templates_are_parsed_with_known_changes():
    vocab = vocabulary.builtin_vocabulary()
    preserve = set(vocab.ids("preserve"))
    for template_id in vocab.ids("edit_templates"):
        template = vocab.get("edit_templates", template_id)
        assert isinstance(template, EditTemplate)
        assert template.description
        assert set(template.changes) <= preserve
    assert "lighting" in vocab.get("edit_templates", "lighting change").changes
    assert "base" in vocab.get("edit_templates", "basing").changes


def test_builtin_phrases_hold_no_comfyui_weight_syntax():
    # "(...)" in a prompt is an emphasis weight to ComfyUI's tokenizer; built-in words must not trigger it.
    vocab = vocabulary.builtin_vocabulary()
    words = []
    for section in vocabulary.SECTIONS:
        for entry_id in vocab.ids(section):
            entry = vocab.get(section, entry_id)
            if isinstance(entry, EditTemplate):
                words += [entry.instruction, *entry.defaults.values()]
            else:
                words += [entry] if isinstance(entry, str) else list(entry.values())
    assert words and not [w for w in words if "(" in w or ")" in w]


def test_no_user_file_is_the_builtin_vocabulary(tmp_path):
    assert load_vocabulary(None).vocabulary is vocabulary.builtin_vocabulary()
    missing = load_vocabulary(tmp_path / "absent.json")
    assert missing.warnings == () and missing.signature is None
    assert missing.vocabulary is vocabulary.builtin_vocabulary()


# --- merging a good user file ------------------------------------------------------------------------------------


def test_user_entries_add_override_and_remove(tmp_path):
    path = write(
        tmp_path / "vocabulary.json",
        {
            "_comment": "my paints",
            "format": 1,
            "materials": {"gouache": "gouache", "acrylic": "matte acrylic", "oil": None},
            "techniques": {
                "blacklining": "black-lined",
                "sponging": {"adjective": "sponged", "noun": "sponge texture"},
            },
            "scales": {"40 mm": "40mm"},
            "edit_templates": {
                "eye glow": {
                    "description": "glowing eyes",
                    "instruction": "Make the eyes of {the:subject} glow {value}",
                    "defaults": {"value": "green"},
                    "changes": ["lighting"],
                },
                "quick": "Paint {the:part} {value}",
            },
        },
    )
    loaded = load_vocabulary(path)
    assert loaded.warnings == ()
    vocab = loaded.vocabulary
    assert vocab.get("materials", "gouache") == "gouache"
    assert vocab.get("materials", "acrylic") == "matte acrylic"
    assert vocab.get("materials", "oil") is None
    assert vocab.get("techniques", "blacklining") == {"adjective": "black-lined", "noun": "blacklining"}
    assert vocab.get("scales", "40 mm") == {"size": "40mm", "noun": "miniature"}
    assert vocab.ids("materials")[-2:] == ["gouache", "acrylic"]  # user entries after the built-in ones
    assert vocabulary.builtin_vocabulary().get("materials", "oil") == "oil"  # the built-in data is not touched
    assert builder.build(builder.Choices(material="gouache", technique="blacklining", scale="40 mm"), vocab).text == (
        "Gouache black-lined 40mm miniature"
    )
    eye = builder.build(builder.Choices(mode="edit", template="eye glow", subject="dragon", keep="nothing"), vocab)
    assert eye.text == "Make the eyes of the dragon glow green."
    assert builder.build(
        builder.Choices(mode="edit", template="quick", part="cloak", value="red", keep="nothing"), vocab
    ).text == ("Paint the cloak red.")


def test_user_file_is_reread_when_it_changes(tmp_path):
    path = tmp_path / "vocabulary.json"
    write(path, {"materials": {"gouache": "gouache"}})
    first = load_vocabulary(path)
    assert load_vocabulary(path) is first  # cached while unchanged
    write(path, {"materials": {"gouache": "gouache", "casein": "casein"}})
    stat = os.stat(path)
    os.utime(path, ns=(stat.st_atime_ns, first.signature[0] + 1_000_000))
    second = load_vocabulary(path)
    assert second is not first and second.signature != first.signature
    assert "casein" in second.vocabulary.ids("materials")
    os.remove(path)
    gone = load_vocabulary(path)
    assert "casein" not in gone.vocabulary.ids("materials") and gone.signature is None


def test_file_signature_tracks_saves(tmp_path):
    path = tmp_path / "v.json"
    assert vocabulary.file_signature(path) is None
    assert vocabulary.file_signature(None) is None
    write(path, "{}")
    assert vocabulary.file_signature(path) == (os.stat(path).st_mtime_ns, 2)


# --- each error in a user file -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"materials": {"gouache": "gouache",}}', "not valid JSON (line 1, column"),
        ("", "is empty"),
        ("   \n", "is empty"),
        ("[1, 2]", "must hold a JSON object"),
        ('"just text"', "must hold a JSON object"),
    ],
)
def test_unreadable_files_fall_back_to_builtin(tmp_path, content, expected):
    path = write(tmp_path / "vocabulary.json", content)
    loaded = load_vocabulary(path)
    warning = only_warning(loaded)
    assert expected in warning
    assert path in warning
    assert loaded.vocabulary.ids("materials") == vocabulary.builtin_vocabulary().ids("materials")
    assert builder.build(builder.Choices(material="acrylic"), loaded.vocabulary).text == "Acrylic miniature"


def test_undecodable_file(tmp_path):
    path = tmp_path / "vocabulary.json"
    path.write_bytes(b'{"materials": {"gouache": "\xff\xfe"}}')
    warning = only_warning(load_vocabulary(path))
    assert "is not UTF-8 text" in warning and str(path) in warning


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"techiques": {"x": "y"}}, 'unknown section "techiques" (did you mean "techniques"?)'),
        ({"format": 2}, "format 2; this version reads format 1"),
        ({"materials": ["gouache"]}, 'Section "materials" of the vocabulary file'),
        ({"materials": {"gouache": 3}}, '"materials" → "gouache"'),
        ({"materials": {"gouache": ""}}, "is empty"),
        ({"materials": {"gouache": "x" * 400}}, "longer than 300 characters"),
        ({"materials": {" ": "gouache"}}, "Entry ids must be 1 to 60 characters"),
        ({"techniques": {"sponging": ["sponged"]}}, "must be a string or an object"),
        ({"techniques": {"sponging": {"adjective": "sponged"}}}, 'field "noun" must be text, not null'),
        ({"edit_templates": {"x": 5}}, 'must be an object with an "instruction"'),
        ({"edit_templates": {"x": {"defaults": {}}}}, 'field "instruction" must be text'),
        ({"edit_templates": {"x": {"instruction": "Paint {the:prat}"}}}, 'unknown slot {prat} (did you mean "part"?)'),
        ({"edit_templates": {"x": {"instruction": "Paint {an:part}"}}}, 'unknown form "an:"'),
        ({"edit_templates": {"x": {"instruction": "Paint [the {part}"}}}, "never closed"),
        ({"edit_templates": {"x": {"instruction": "Paint ]the {part}["}}}, "must not nest"),
        ({"edit_templates": {"x": {"instruction": "Paint {the:part"}}}, "brace is not part of a {slot}"),
    ],
)
def test_each_bad_entry_is_a_warning_and_skipped(tmp_path, data, expected):
    path = write(tmp_path / "vocabulary.json", data)
    loaded = load_vocabulary(path)
    warning = only_warning(loaded)
    assert expected in warning, warning
    assert path in warning
    assert "gouache" not in loaded.vocabulary.ids("materials")
    assert "x" not in loaded.vocabulary.ids("edit_templates")
    assert "sponging" not in loaded.vocabulary.ids("techniques")


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"instruction": "Paint {the:part}", "colour": "red"}, 'unknown field(s) "colour"'),
        ({"instruction": "Paint {the:part}", "defaults": {"part": 1}}, '"defaults" must be an object'),
        ({"instruction": "Paint {the:part}", "defaults": {"colour": "red"}}, 'unknown default slot(s) "colour"'),
        ({"instruction": "Paint {the:part}", "changes": "paint"}, '"changes" must be a list'),
        ({"instruction": "Paint {the:part}", "changes": ["hair"]}, 'unknown "preserve" id(s) "hair"'),
        ({"instruction": "Paint {the:part}", "description": 7}, '"description" must be a string'),
    ],
)
def test_template_field_problems_keep_the_template(tmp_path, entry, expected):
    loaded = load_vocabulary(write(tmp_path / "vocabulary.json", {"edit_templates": {"x": entry}}))
    assert expected in only_warning(loaded)
    assert isinstance(loaded.vocabulary.get("edit_templates", "x"), EditTemplate)


def test_unknown_form_fields_warn_but_keep_the_entry(tmp_path):
    data = {"techniques": {"sponging": {"adjective": "sponged", "noun": "sponging", "verb": "sponge"}}}
    loaded = load_vocabulary(write(tmp_path / "vocabulary.json", data))
    assert 'unknown field(s) "verb"' in only_warning(loaded)
    assert loaded.vocabulary.get("techniques", "sponging")["adjective"] == "sponged"


def test_good_entries_survive_next_to_bad_ones(tmp_path):
    data = {
        "materials": {"gouache": "gouache", "bad": 1},
        "lightning": {},
        "bases": {"moon": "lunar base with craters"},
    }
    loaded = load_vocabulary(write(tmp_path / "vocabulary.json", data))
    assert len(loaded.warnings) == 2
    assert "gouache" in loaded.vocabulary.ids("materials")
    assert "moon" in loaded.vocabulary.ids("bases")
    text = builder.build(
        builder.Choices(mode="edit", template="basing", base="moon", keep="nothing"), loaded.vocabulary
    ).text
    assert text == "Rebase the miniature on a lunar base with craters."


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ('{"materials": {"x": ' + "9" * 5000 + "}}", "holds a number with more than"),
        ('{"materials": ' + "[" * 100_000 + "]" * 100_000 + "}", "is nested more than"),
        ('{"materials": {"gouache": "gouache"}, "format": 1e999}', "not a finite number"),
        ('{"materials": {"gouache": "gouache"}, "x": ' + " " * (5 * 1024 * 1024) + "1}", "larger than"),
    ],
)
def test_hostile_file_is_one_warning_never_an_exception(tmp_path, content, expected):
    path = write(tmp_path / "vocabulary.json", content)
    loaded = load_vocabulary(path)
    warning = only_warning(loaded)
    assert expected in warning and path in warning and "built-in vocabulary is used" in warning
    assert loaded.vocabulary.ids("materials") == vocabulary.builtin_vocabulary().ids("materials")


def test_an_unexpected_failure_is_a_warning_too(tmp_path, monkeypatch):
    path = write(tmp_path / "vocabulary.json", {"materials": {"gouache": "gouache"}})

    def broken(*args, **kwargs):
        raise KeyError("something nobody foresaw")

    vocabulary.builtin_vocabulary()  # read before the patch: only the user file meets the failure
    monkeypatch.setattr(vocabulary, "_merge", broken)
    warning = only_warning(load_vocabulary(path))
    assert path in warning and "KeyError" in warning and "built-in vocabulary is used" in warning
