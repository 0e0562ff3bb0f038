"""ComfyUI's two formats of a workflow spec: the API prompt (``to_api``) and the UI graph the frontend saves
(``to_ui``, schema 0.4), with the widget order, sockets and types of the node descriptions ComfyUI serves
(``/object_info``) and the placement of ``layout.py``.

Model metadata, as ComfyUI's missing-models dialog reads it: each loader's ``properties.models`` (the frontend keeps
only the entries whose ``name`` is one of the node's widget values) and the workflow-level ``models`` list, each entry
``{name, url, directory}`` with ``directory`` a ComfyUI model folder. GGUF files are listed like the others; frontends
before the missing-model scan of 2026 (1.27 to 1.32, ComfyUI 0.3.64-0.3.75) look files up in
``/experiment/models/<folder>``, which lists no ``.gguf``, so ``js/models.js`` drops a GGUF the server has from the
metadata before that check (no false "missing"), and leaves a missing one to be listed.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from workflows import layout
from workflows.spec import (
    CORE_VERSION,
    FRONTEND_VERSION,
    PACK_ID,
    PACK_VERSION,
    REROUTE,
    STEP_COLORS,
    Node,
    Note,
    Workflow,
)

WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
NOTE_COLOR, NOTE_BGCOLOR = "#432", "#653"


# -- API format -------------------------------------------------------------------------------------------------------


def _through_reroutes(value, nodes: dict[int, Node]):
    """A link as graphToPrompt sends it: to the node behind any chain of Reroutes."""
    while isinstance(value, list) and nodes[int(value[0])].type == REROUTE:
        value = nodes[int(value[0])].inputs[""]
    return value


def to_api(workflow: Workflow) -> dict:
    """The prompt the frontend's graphToPrompt makes of the UI file: every widget value and every link, Reroutes
    left out (they exist only on the canvas)."""
    api = {}
    nodes = {n.id: n for n in workflow.nodes}
    for node in sorted(workflow.nodes, key=lambda n: n.id):
        if node.type == REROUTE:
            continue
        api[str(node.id)] = {
            "inputs": {name: _through_reroutes(value, nodes) for name, value in node.inputs.items()},
            "class_type": node.type,
            "_meta": {"title": node.title or node.type},
        }
    return api


# -- node descriptions ------------------------------------------------------------------------------------------------


def _type_name(spec) -> str:
    kind = spec[0]
    if isinstance(kind, (list, tuple)):
        return "COMBO"
    return str(getattr(kind, "value", kind))


def describe(object_info: dict, node_type: str) -> dict:
    """Sockets and widgets of a node type, in the frontend's order, from its /object_info entry."""
    info = object_info[node_type]
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k in ("required", "optional")}
    slots = []
    for section in ("required", "optional"):
        specs = info["input"].get(section, {})
        for input_name in order.get(section, []):
            spec = specs[input_name]
            type_name = _type_name(spec)
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            slots.append(
                {
                    "name": input_name,
                    "type": type_name,
                    "optional": section == "optional",
                    "widget": type_name in WIDGET_TYPES and not options.get("forceInput"),
                    "control": bool(options.get("control_after_generate")),
                    "upload": bool(options.get("image_upload")),
                    "multiline": bool(options.get("multiline")),
                }
            )
    outputs = [
        {"name": str(n), "type": _type_name([t])} for n, t in zip(info["output_name"], info["output"], strict=True)
    ]
    return {"inputs": slots, "outputs": outputs, "display_name": info.get("display_name", node_type)}


def _reroute_description(workflow: Workflow, node: Node, object_info: dict) -> dict:
    """A Reroute as the frontend saves it: one untyped input, one output typed by what it carries."""
    source = _through_reroutes(node.inputs[""], {n.id: n for n in workflow.nodes})
    source_type = {n.id: n.type for n in workflow.nodes}[int(source[0])]
    carried = describe(object_info, source_type)["outputs"][int(source[1])]["type"]
    return {
        "inputs": [{"name": "", "type": "*", "optional": False, "widget": False, "control": False, "upload": False}],
        "outputs": [{"name": "", "type": carried}],
        "display_name": REROUTE,
    }


def descriptions_of(workflow: Workflow, object_info: dict) -> dict[int, dict]:
    """Each node's sockets and widgets, by node id."""
    return {
        n.id: _reroute_description(workflow, n, object_info) if n.type == REROUTE else describe(object_info, n.type)
        for n in workflow.nodes
    }


def widget_values(description: dict, inputs: dict) -> list:
    """``widgets_values`` as the frontend writes them: widget inputs in order, plus the seed-control and upload
    widgets that the frontend adds after a seed and after an image combo."""
    values = []
    for slot in description["inputs"]:
        if not slot["widget"]:
            continue
        values.append(inputs[slot["name"]])
        if slot["control"]:
            values.append("fixed")
        if slot["upload"]:
            values.append("image")
    return values


def _topological(nodes: list[Node]) -> list[int]:
    ids = {n.id: n for n in nodes}
    done: list[int] = []
    seen: set[int] = set()

    def visit(node_id: int, depth: int = 0) -> None:
        if node_id in seen or depth > len(ids):
            return
        seen.add(node_id)
        for value in ids[node_id].inputs.values():
            if isinstance(value, list):
                visit(int(value[0]), depth + 1)
        done.append(node_id)

    for node in sorted(nodes, key=lambda n: n.id):
        visit(node.id)
    return done


# -- links ------------------------------------------------------------------------------------------------------------


@dataclass
class _Links:
    """The UI links of a graph: ``[id, source, slot, target, target slot, type]`` rows and the two lookups."""

    rows: list[list] = field(default_factory=list)
    outgoing: dict[tuple[int, int], list[int]] = field(default_factory=dict)  # (source, slot) -> link ids
    incoming: dict[tuple[int, str], int] = field(default_factory=dict)  # (target, input name) -> link id


def _socket_names(description: dict, node: Node) -> list[str]:
    """The node's input sockets in order: every non-widget input, and widgets converted to inputs by a link."""
    return [s["name"] for s in description["inputs"] if not s["widget"] or isinstance(node.inputs.get(s["name"]), list)]


def _links(workflow: Workflow, descriptions: dict[int, dict]) -> _Links:
    links = _Links()
    for target in sorted(workflow.nodes, key=lambda n: n.id):
        sockets = _socket_names(descriptions[target.id], target)
        for input_name in sockets:
            value = target.inputs.get(input_name)
            if not isinstance(value, list):
                continue
            source, slot = int(value[0]), int(value[1])
            link_type = descriptions[source]["outputs"][slot]["type"]
            link_id = len(links.rows) + 1
            links.rows.append([link_id, source, slot, target.id, sockets.index(input_name), link_type])
            links.outgoing.setdefault((source, slot), []).append(link_id)
            links.incoming[(target.id, input_name)] = link_id
    return links


def _ui_inputs(node: Node, description: dict, links: _Links) -> list[dict]:
    inputs = []
    for slot in description["inputs"]:
        linked = isinstance(node.inputs.get(slot["name"]), list)
        if slot["widget"] and not linked:
            continue
        entry = {"name": slot["name"], "type": slot["type"], "link": links.incoming.get((node.id, slot["name"]))}
        if slot["optional"]:
            entry["shape"] = 7
        if slot["widget"]:
            entry["widget"] = {"name": slot["name"]}
        inputs.append(entry)
    return inputs


def _ui_outputs(node: Node, description: dict, links: _Links) -> list[dict]:
    return [
        {"name": out["name"], "type": out["type"], "links": links.outgoing.get((node.id, i)) or None, "slot_index": i}
        for i, out in enumerate(description["outputs"])
    ]


# -- nodes, notes, groups ---------------------------------------------------------------------------------------------


def _properties(node: Node) -> dict:
    if node.type == REROUTE:
        return {"showOutputText": False, "horizontal": False}
    ours = node.type.startswith("Atelier")
    properties = {
        "Node name for S&R": node.type,
        "cnr_id": PACK_ID if ours else "comfy-core",
        "ver": PACK_VERSION if ours else CORE_VERSION,
    }
    if node.models:
        properties["models"] = [dict(m) for m in node.models]
    return properties


def _ui_node(node: Node, description: dict, order: int, links: _Links, pos: list, size: list) -> dict:
    entry = {
        "id": node.id,
        "type": node.type,
        "pos": pos,
        "size": size,
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": _ui_inputs(node, description, links),
        "outputs": _ui_outputs(node, description, links),
        "title": node.title or description["display_name"],
        "properties": _properties(node),
        "widgets_values": widget_values(description, node.inputs),
    }
    if node.color:
        entry["color"], entry["bgcolor"] = node.color, node.bgcolor
    return entry


def _ui_note(note: Note, node_id: int, order: int, pos: list) -> dict:
    return {
        "id": node_id,
        "type": "MarkdownNote",
        "pos": pos,
        "size": list(note.size),
        "flags": {},
        "order": order,
        "mode": 0,
        "inputs": [],
        "outputs": [],
        "title": note.title,
        "properties": {},
        "widgets_values": [note.text],
        "color": NOTE_COLOR,
        "bgcolor": NOTE_BGCOLOR,
    }


def _ui_groups(workflow: Workflow, sizes: dict) -> list[dict]:
    return [
        {
            "id": index,
            "title": group.title,
            "bounding": [box.x, box.y, box.w, box.h],
            "color": STEP_COLORS[group.kind],
            "font_size": 24,
            "flags": {},
        }
        for index, (group, box) in enumerate(layout.group_boxes(workflow, sizes), start=1)
    ]


def to_ui(workflow: Workflow, object_info: dict) -> dict:
    """The drag-and-drop workflow (schema version 0.4) the frontend would save for this graph."""
    descriptions = descriptions_of(workflow, object_info)
    links = _links(workflow, descriptions)
    order = {node_id: i for i, node_id in enumerate(_topological(workflow.nodes))}
    sizes = {n.id: layout.node_size(descriptions[n.id], n) for n in workflow.nodes}
    positions, final_sizes = layout.place(workflow, sizes)
    ui_nodes = [
        _ui_node(node, descriptions[node.id], order[node.id], links, positions[node.id], final_sizes[node.id])
        for node in sorted(workflow.nodes, key=lambda n: n.id)
    ]
    next_id = max(n.id for n in workflow.nodes) + 1
    note_positions = layout.note_positions(workflow.notes)
    ui_nodes += [
        _ui_note(note, next_id + i, len(order) + i, note_positions[i]) for i, note in enumerate(workflow.notes)
    ]
    groups = _ui_groups(workflow, sizes)
    boxes = [layout.Box(*g["bounding"]) for g in groups] + [
        layout.Box(n["pos"][0], n["pos"][1] - layout.TITLE, n["size"][0], n["size"][1] + layout.TITLE) for n in ui_nodes
    ]
    return {
        "id": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{PACK_ID}/workflows/{workflow.name}")),
        "revision": 0,
        "last_node_id": max(n["id"] for n in ui_nodes),
        "last_link_id": len(links.rows),
        "nodes": ui_nodes,
        "links": links.rows,
        "groups": groups,
        "config": {},
        "extra": {"ds": layout.view(boxes), "frontendVersion": FRONTEND_VERSION},
        "models": [dict(m) for m in workflow.models],
        "version": 0.4,
    }


def dumps(data: dict) -> str:
    return json.dumps(data, indent=2, ensure_ascii=False) + "\n"
