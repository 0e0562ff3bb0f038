"""What a shipped workflow is: its nodes (type, inputs, title), notes and step groups, independent of how it is drawn.

``layout.py`` places the nodes (group by group, column by column) and ``ui_format.py`` writes both of ComfyUI's
formats; the workflow families (``kontext_*.py``, ``other_models.py``) only say what each graph is.
"""

from __future__ import annotations

from dataclasses import dataclass, field

PACK_ID = "kontext-atelier"
PACK_VERSION = "0.1.0"
CORE_VERSION = "0.3.64"
FRONTEND_VERSION = "1.27.10"  # the frontend ComfyUI 0.3.64 ships (comfyui-frontend-package)

EXAMPLE_IMAGE = "example.png"  # ships in every ComfyUI's input/ folder, so each workflow validates as loaded

# Kontext's own defaults (BFL, ComfyUI template): cfg 1 with the distilled guidance in FluxGuidance.
STEPS, GUIDANCE, SAMPLER, SCHEDULER = 24, 2.5, "euler", "simple"
TURBO_STEPS, TURBO_STRENGTH = 8, 0.125

# The frontend's group colours (its colour menu), one per kind of step, as core's templates use them.
STEP_COLORS = {
    "load": "#3f789e",  # blue: models and pictures in
    "prepare": "#8A8",  # green: sizes, references, prompt
    "edit": "#b06634",  # orange: guidance, sampling, decode
    "merge": "#a1309b",  # purple: restore, merge, save
}


@dataclass
class Node:
    id: int
    type: str
    inputs: dict  # widget values and links ([source id, output slot]) by input name
    title: str | None = None
    models: list[dict] | None = None
    color: str | None = None  # the frontend's node colours, as in the Kontext template ("#232"/"#353" for prompts)
    bgcolor: str | None = None


@dataclass
class Note:
    title: str
    text: str
    size: tuple[int, int] = (460, 560)


@dataclass
class Group:
    """One labelled step on the canvas: its nodes in columns (left to right, each top to bottom).

    ``cell`` is where the group sits in the grid of groups (column, row); groups of one grid column stack."""

    title: str
    kind: str  # a STEP_COLORS key
    columns: list[list[int]]
    cell: tuple[int, int]


@dataclass
class Workflow:
    name: str
    title: str
    summary: str  # one line, for the README table and the template browser
    nodes: list[Node]
    notes: list[Note] = field(default_factory=list)
    models: list[dict] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    thumbnail: str = "edit"  # the template browser's before/after illustration: a before_after.py kind


REROUTE = "Reroute"  # the frontend's own pass-through node: UI format only, graphToPrompt links through it


def reroute(node_id: int, source: list) -> Node:
    """A core Reroute: carries a shared link (model, text encoder, VAE) along a bus so that it crosses no other."""
    return Node(node_id, REROUTE, {"": source})


def link(node: int, slot: int = 0) -> list:
    return [str(node), slot]
