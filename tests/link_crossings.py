"""Link crossings of a UI workflow as a person sees them on the canvas.

Each link is drawn from its output slot to its input slot at the positions the frontend gives slots
(``LGraphNode.getConnectionPos``: half a slot height in from the node's edge, ``(slot + 0.7) * NODE_SLOT_HEIGHT``
below the node's top); a link into or out of a core ``Reroute`` node is one straight piece of the polyline through it.
Two pieces cross when they intersect anywhere but at a shared end (one output feeding two inputs is not a crossing).
"""

from __future__ import annotations

SLOT_HEIGHT = 20  # LiteGraph.NODE_SLOT_HEIGHT


def _point(node: dict, slot: int, output: bool) -> tuple[float, float]:
    x = node["pos"][0] + (node["size"][0] + 1 - SLOT_HEIGHT / 2 if output else SLOT_HEIGHT / 2)
    return x, node["pos"][1] + (slot + 0.7) * SLOT_HEIGHT


def segments(ui: dict) -> list[tuple[tuple[float, float], tuple[float, float]]]:
    nodes = {n["id"]: n for n in ui["nodes"]}
    return [
        (_point(nodes[source], slot, True), _point(nodes[target], target_slot, False))
        for _, source, slot, target, target_slot, _ in ui["links"]
    ]


def _side(a, b, c) -> float:
    return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])


def _cross(first, second) -> bool:
    (a, b), (c, d) = first, second
    if {a, b} & {c, d}:
        return False  # pieces from one output (or into one reroute) meet at their end; that is no crossing
    return _side(a, b, c) * _side(a, b, d) < 0 and _side(c, d, a) * _side(c, d, b) < 0


def crossings(ui: dict) -> int:
    pieces = segments(ui)
    return sum(_cross(p, q) for i, p in enumerate(pieces) for q in pieces[i + 1 :])
