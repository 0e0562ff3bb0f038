"""The iterative Kontext edit: one turn per prompt, each diff-merged into the previous turn's result; one group per
turn on the canvas, the turns stacked, each reading left to right."""

from __future__ import annotations

from dataclasses import dataclass

from atelier_core.model_catalog import CLIP_L, FLUX_VAE, T5_FP8
from workflows import kontext_parts as p
from workflows.spec import GUIDANCE, Group, Node, Workflow, link, reroute


@dataclass(frozen=True)
class TurnIds:
    """Node ids of one iterative turn. Turn 1 uses the ids of the single-edit workflows; turn N the block 10 N."""

    prompt: int
    lock: int
    encode: int
    reference: int
    guidance: int
    sampler: int
    decode: int
    merge: int
    preview: int

    @classmethod
    def of(cls, turn: int) -> TurnIds:
        if turn == 1:
            return cls(5, 6, 7, 8, 9, 11, 12, 13, 15)
        return cls(*(10 * turn + i for i in range(9)))


@dataclass(frozen=True)
class Bus:
    """Reroute ids of one turn: the shared text encoder, VAE, model and negative run down a bus left of the turns
    (each turn's Reroute fed by the one above), and the merged result returns under the turn to the next one's
    aspect lock (``back_right`` below the merge, ``back_left`` below the lock)."""

    clip: int
    vae: int
    model: int
    negative: int
    back_right: int
    back_left: int

    @classmethod
    def of(cls, turn: int) -> Bus:
        return cls(*(100 + 10 * turn + i for i in range(6)))


def _bus(turn: int, last: bool) -> list[Node]:
    """The turn's Reroutes: fed by the loaders (turn 1) or the turn above, and the way back for its result."""
    bus = Bus.of(turn)
    if turn == 1:
        feeds = {bus.clip: link(2), bus.vae: link(3), bus.model: link(1)}
    else:
        above = Bus.of(turn - 1)
        feeds = {bus.clip: link(above.clip), bus.vae: link(above.vae), bus.model: link(above.model)}
        feeds[bus.negative] = link(10) if turn == 2 else link(above.negative)
    nodes = [reroute(node_id, source) for node_id, source in feeds.items()]
    if not last:
        nodes += [
            reroute(bus.back_right, link(TurnIds.of(turn).merge)),
            reroute(bus.back_left, link(bus.back_right)),
        ]
    return nodes


def _turn(turn: int, text: str, source: list, last: bool) -> list[Node]:
    """One edit turn: prompt -> lock the previous result -> reference -> sample -> diff-merge into that result."""
    ids, bus = TurnIds.of(turn), Bus.of(turn)
    suffix = "" if turn == 1 else f" {turn}"
    merged = source if turn == 1 else link(Bus.of(turn - 1).back_left)
    prompt = p.prompt(text, ids.prompt, title=f"Prompt{suffix}")
    prompt.inputs["clip"] = link(bus.clip)
    sampler = p.ksampler(
        ids.sampler, link(bus.model), link(ids.guidance), link(ids.lock, 5), seed=turn - 1, title=f"Sampler{suffix}"
    )
    if turn > 1:
        sampler.inputs["negative"] = link(bus.negative)
    nodes = [
        prompt,
        p.lock(ids.lock, merged, title=f"Aspect lock{suffix}"),
        Node(ids.encode, "VAEEncode", {"pixels": link(ids.lock), "vae": link(bus.vae)}, f"VAE encode{suffix}"),
        Node(
            ids.reference,
            "ReferenceLatent",
            {"conditioning": link(ids.prompt), "latent": link(ids.encode)},
            f"Reference{suffix}",
        ),
        Node(
            ids.guidance,
            "FluxGuidance",
            {"conditioning": link(ids.reference), "guidance": GUIDANCE},
            f"Guidance{suffix}",
        ),
        sampler,
        Node(ids.decode, "VAEDecode", {"samples": link(ids.sampler), "vae": link(bus.vae)}, f"VAE decode{suffix}"),
        Node(
            ids.merge,
            "AtelierDiffMerge",
            p.merge_inputs(original=merged, edited=link(ids.decode), geometry=link(ids.lock, 4)),
            f"Diff-merge turn {turn}",
        ),
    ]
    if not last:
        nodes.append(Node(ids.preview, "PreviewImage", {"images": link(ids.merge)}, f"After turn {turn}"))
    return nodes + _bus(turn, last)


BUS_ORDER = ("model", -200, "clip", -250, "vae")  # Reroutes and the air between them (measured: fewest crossings)
BACK_DROP = -40  # air between a turn's last node and the Reroute that takes its result to the next turn


def _turn_group(turn: int, last: bool) -> Group:
    ids, bus = TurnIds.of(turn), Bus.of(turn)
    # The shared zero negative sits in turn 1 under its guidance; the later turns' Reroutes of it under theirs.
    guidance = [ids.guidance, 10 if turn == 1 else bus.negative]
    back = [] if last else [BACK_DROP]
    buses = [getattr(bus, name) if isinstance(name, str) else name for name in BUS_ORDER]
    finish = [[ids.merge], [14 if last else ids.preview, *back, *([] if last else [bus.back_right])]]
    back_left = [] if last else [BACK_DROP, bus.back_left]
    columns = [
        buses,
        [ids.prompt, ids.lock, *back_left],
        [p.ENCODE_DROP, ids.encode],
        [ids.reference],
        guidance,
        [ids.sampler],
    ]
    return Group(
        f"Turn {turn}: edit, then merge into the picture so far",
        "edit",
        [*columns, [ids.decode], *finish],
        (1, turn - 1),
    )


def iterative(name: str, model: dict, prompts: tuple[str, ...]) -> Workflow:
    """One edit turn per prompt; each turn edits the previous turn's merged result and is diff-merged into it."""
    turns = len(prompts)
    nodes = [*p.loaders(model), p.image()]
    source = link(4)  # the full-resolution picture the turn edits
    for turn, text in enumerate(prompts, start=1):
        nodes += _turn(turn, text, source, last=turn == turns)
        source = link(TurnIds.of(turn).merge)
    nodes += [
        Node(10, "ConditioningZeroOut", {"conditioning": link(5)}, title="Negative (zero)"),
        p.save(14, source, "kontext-atelier/iterative"),
    ]
    what = (
        f"## Iterative editing: {turns} turns, nothing degrades\n"
        "Each turn edits the **previous turn's result** with its own prompt (**Prompt**, **Prompt 2**, "
        "**Prompt 3**), and **Diff-merge turn N** takes only what that turn changed into the full-resolution "
        "picture. Areas no turn touched stay bit for bit the original's, however many turns you chain; a plain "
        "chain of Kontext edits would re-render (and soften) the whole picture every time.\n\n"
        "One edit per turn works best. Fewer turns: bypass (Ctrl+B) the last turn's group and connect *Save* to "
        "the previous diff-merge. More: copy a turn's group and chain its *Aspect lock* and *Diff-merge* "
        '`original` to the previous merge. Each sampler has its own seed (`--set "Sampler 2.seed=5"`).'
    )
    groups = [
        # The picture over the models: its links to turn 1 then pass above the bus the models feed (measured).
        Group("Load picture", "load", [[4]], (0, 0)),
        Group("Load models", "load", [[1, 2, 3]], (0, 1)),
        *(_turn_group(turn, turn == turns) for turn in range(1, turns + 1)),
    ]
    models = [model, CLIP_L, T5_FP8, FLUX_VAE]
    return Workflow(
        name,
        f"Kontext iterative edit ({turns} turns, diff-merged)",
        f"{turns} chained edit turns, each diff-merged into the previous result at full resolution",
        nodes,
        [p.note(name, what, models)],
        models,
        groups,
        thumbnail="iterative",
    )
