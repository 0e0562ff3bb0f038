"""``kontext-atelier prompt`` names its options as the node names its inputs: ``--change-to`` (the node's
``change_to``), with the earlier ``--value`` still accepted but not listed."""

from __future__ import annotations

from atelier_core.cli import build_parser, main

EDIT = ["prompt", "--mode", "edit", "--template", "recolour", "--part", "cloak"]


def test_change_to_and_its_old_spelling_give_the_same_prompt(capsys):
    assert main([*EDIT, "--change-to", "deep crimson"]) == 0
    new = capsys.readouterr().out
    assert main([*EDIT, "--value", "deep crimson"]) == 0
    assert capsys.readouterr().out == new and "deep crimson" in new


def test_help_lists_change_to_not_value():
    parser = build_parser()
    prompt = parser._subparsers._group_actions[0].choices["prompt"]
    text = prompt.format_help()
    assert "--change-to" in text and "--value" not in text
