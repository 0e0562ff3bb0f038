"""How a shipped workflow is drawn: node sizes (estimated the way the frontend's ``LGraphNode.computeSize`` does),
positions (group by group, column by column, left to right as the graph flows), group boxes, the note beside the
graph and the saved view (``extra.ds``) that shows all of it.

Space is kept above every node for its title bar and for the node-source badge the frontend draws above the title
(``LGraphNode.drawBadges``: 2 px over the title bar), so a badge never covers the widgets of the node stacked above.
"""

from __future__ import annotations

from dataclasses import dataclass

from workflows.spec import REROUTE, Group, Note, Workflow

TITLE = 30  # LiteGraph.NODE_TITLE_HEIGHT
BADGE = 28  # the source badge above a title bar (2 px gap, ~20 px badge) and a little air
SLOT, WIDGET = 20, 20  # LiteGraph.NODE_SLOT_HEIGHT, NODE_WIDGET_HEIGHT; each widget also takes 4 px of spacing
TEXT = 14 * 0.6  # the frontend's fallback text width per character (NODE_TEXT_SIZE 14)
MULTILINE = 80  # a multiline text box's height at its smallest readable size
GAP_X, GAP_Y = 70, 12  # between node columns; between a node's bottom and the next node's badge band
PAD, GROUP_TITLE = 16, 34  # group padding; group title bar (font 24)
GROUP_GAP = 50
NOTE_GAP = 60
VIEW = (1536, 920)  # the canvas the saved view is fitted to (a 1600x1000 window, as the browser tests use)
VIEW_MARGIN = (70, 60)  # left/right (the side bar newer frontends lay over the canvas), top (the menu bar), px

# Widgets our js/ extension adds (px): the aspect lock's preview, the stitcher's token count.
EXTRA_WIDGETS = {"AtelierAspectLock": 92, "AtelierContextStitcher": 24}
# Nodes that show a picture or a text box grow past their widgets; these are the sizes core's templates give them.
PREFERRED = {
    "LoadImage": (340, 380),
    "CLIPTextEncode": (420, 200),
    "TextEncodeQwenImageEditPlus": (420, 260),
    "SaveImage": (340, 340),
    "PreviewImage": (340, 300),
}


# Widgets js/prompt_builder.js hides in each mode of the prompt builder (tests/test_workflows.py keeps them equal).
BUILDER_HIDDEN = {
    "edit": ("scale", "material", "camera", "focal_length", "aperture", "depth_of_field"),
    "describe": ("template", "base", "part", "change_to", "text", "reference", "keep"),
}
STITCHER_SLOTS = 8
REROUTE_SIZE = (75, 26)  # the frontend's Reroute node


def _text_width(text: str) -> float:
    return TEXT * len(text)


def _shown(inputs: list[dict], node) -> list[dict]:
    """The inputs the js/ extension shows: the prompt builder's mode widgets, the stitcher's connected references
    and the first free one (js/stitcher.js shownSlots)."""
    if node.type == "AtelierMiniaturePrompt":
        hidden = BUILDER_HIDDEN.get(node.inputs.get("mode"), ())
        return [s for s in inputs if s["name"] not in hidden]
    if node.type == "AtelierContextStitcher":
        connected = [i for i in range(1, STITCHER_SLOTS + 1) if isinstance(node.inputs.get(f"image_{i}"), list)]
        shown = min(STITCHER_SLOTS, max(2, max(connected, default=1) + 1))
        return [
            s
            for s in inputs
            if not s["name"].startswith(("image_", "weight_")) or int(s["name"].split("_")[1]) <= shown
        ]
    return inputs


def node_size(description: dict, node) -> tuple[int, int]:
    """The node's size: the frontend's computeSize estimate (rows of sockets, then each widget), at least the size
    core's templates give such a node."""
    if node.type == REROUTE:
        return REROUTE_SIZE
    inputs = _shown(description["inputs"], node)
    sockets = [s for s in inputs if not s["widget"]]
    widgets = [s for s in inputs if s["widget"]]
    rows = max(len(sockets), len(description["outputs"]), 1)
    height = rows * SLOT + 8 + 6
    for slot in widgets:
        height += (MULTILINE if slot.get("multiline") else WIDGET) + 4
        height += (WIDGET + 4) * (int(slot["control"]) + int(slot["upload"]))
    height += EXTRA_WIDGETS.get(node.type, 0) + (4 if node.type in EXTRA_WIDGETS else 0)
    title = TITLE + _text_width(node.title or description["display_name"]) + TITLE * 0.33
    slot_text = max((_text_width(s["name"]) for s in sockets), default=0)
    out_text = max((_text_width(o["name"]) for o in description["outputs"]), default=0)
    # A widget row holds its label and its value; values are cut to fit by the frontend, and combo options depend
    # on the host (its model files), so only the label counts: the same file from every ComfyUI.
    widget_text = max((_text_width(s["name"]) for s in widgets), default=0)
    width = max(title, slot_text + out_text + 2 * SLOT + 5, widget_text + 80, 140 * (1.5 if widgets else 1), 300)
    preferred = PREFERRED.get(node.type, (0, 0))
    return round(max(width, preferred[0])), round(max(height, preferred[1]))


@dataclass
class Box:
    x: float
    y: float
    w: float
    h: float


def _column_height(ids: list[int], sizes: dict[int, tuple[int, int]]) -> int:
    """Height of a group column: each node's badge band, title bar and body; negative entries are blank space."""
    return sum(-i if i < 0 else BADGE + TITLE + sizes[i][1] + GAP_Y for i in ids) - GAP_Y


def _group_size(group: Group, sizes: dict[int, tuple[int, int]]) -> tuple[int, int]:
    widths = [max((sizes[i][0] for i in column if i > 0), default=0) for column in group.columns]
    width = 2 * PAD + sum(widths) + GAP_X * (len(widths) - 1)
    height = GROUP_TITLE + PAD + max(_column_height(c, sizes) for c in group.columns) + PAD
    return width, height


def _grid(groups: list[Group], sizes: dict[int, tuple[int, int]]) -> dict[str, Box]:
    """Group boxes: grid columns left to right, each as wide as its widest group; groups of a column stacked."""
    measured = {g.title: _group_size(g, sizes) for g in groups}
    columns = sorted({g.cell[0] for g in groups})
    x, boxes = 0, {}
    for column in columns:
        members = sorted((g for g in groups if g.cell[0] == column), key=lambda g: g.cell[1])
        y = 0
        for group in members:
            w, h = measured[group.title]
            boxes[group.title] = Box(x, y, w, h)
            y += h + GROUP_GAP
        x += max(measured[g.title][0] for g in members) + GROUP_GAP
    return boxes


def place(workflow: Workflow, sizes: dict[int, tuple[int, int]]) -> tuple[dict[int, list[int]], dict[int, list[int]]]:
    """Positions and sizes of every node: each column of a group as wide as its widest node, nodes stacked with
    room for their badges and title bars."""
    boxes = _grid(workflow.groups, sizes)
    positions, final = {}, {}
    by_id = {n.id: n for n in workflow.nodes}
    for group in workflow.groups:
        box = boxes[group.title]
        x = box.x + PAD
        for column in group.columns:
            width = max(sizes[i][0] for i in column if i > 0)
            y = box.y + GROUP_TITLE + PAD
            for node_id in column:
                if node_id < 0:
                    y += -node_id
                    continue
                positions[node_id] = [round(x), round(y + BADGE + TITLE)]
                final[node_id] = [width if by_id[node_id].type != REROUTE else sizes[node_id][0], sizes[node_id][1]]
                y += BADGE + TITLE + sizes[node_id][1] + GAP_Y
            x += width + GAP_X
    stray = {n.id for n in workflow.nodes} ^ set(positions)
    if stray:
        raise ValueError(f"{workflow.name}: nodes {sorted(stray)} are in no group, or in a group but not the graph")
    return positions, final


def group_boxes(workflow: Workflow, sizes: dict[int, tuple[int, int]]) -> list[tuple[Group, Box]]:
    boxes = _grid(workflow.groups, sizes)
    return [(g, boxes[g.title]) for g in workflow.groups]


def note_positions(notes: list[Note]) -> list[list[int]]:
    """Notes stand left of the graph, top aligned with the first group's title."""
    positions, y = [], TITLE
    for note in notes:
        positions.append([-NOTE_GAP - note.size[0], y])
        y += note.size[1] + TITLE + GAP_Y
    return positions


def view(boxes: list[Box]) -> dict:
    """``extra.ds``: the scale and offset that show every box (title bars included) in a VIEW-sized window."""
    left = min(b.x for b in boxes)
    top = min(b.y for b in boxes)
    width = max(b.x + b.w for b in boxes) - left
    height = max(b.y + b.h for b in boxes) - top
    usable_w, usable_h = VIEW[0] - 2 * VIEW_MARGIN[0], VIEW[1] - VIEW_MARGIN[1] - VIEW_MARGIN[0]
    scale = round(min(1.0, usable_w / width, usable_h / height), 3)
    screen_left = (VIEW[0] - width * scale) / 2
    screen_top = VIEW_MARGIN[1] + (usable_h - height * scale) / 2
    return {"scale": scale, "offset": [round(screen_left / scale - left, 1), round(screen_top / scale - top, 1)]}
