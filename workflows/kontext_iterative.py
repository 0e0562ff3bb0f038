"""The iterative Kontext edit: one turn per prompt, each diff-merged into the previous turn's result; one group per
turn on the canvas, the turns stacked, each reading left to right."""

from __future__ import annotations

from dataclasses import dataclass

from atelier_core.model_catalog import CLIP_L, FLUX_VAE, T5_FP8
from workflows import kontext_parts as p
from workflows.spec import GUIDANCE, Group, Node, Workflow, link


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


def _turn(turn: int, text: str, source: list, last: bool) -> list[Node]:
    """One edit turn: prompt -> lock the previous result -> reference -> sample -> diff-merge into that result."""
    ids = TurnIds.of(turn)
    suffix = "" if turn == 1 else f" {turn}"
    nodes = [
        p.prompt(text, ids.prompt, title=f"Prompt{suffix}"),
        p.lock(ids.lock, source, title=f"Aspect lock{suffix}"),
        Node(ids.encode, "VAEEncode", {"pixels": link(ids.lock), "vae": link(3)}, f"VAE encode{suffix}"),
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
        p.ksampler(
            ids.sampler, link(1), link(ids.guidance), link(ids.lock, 5), seed=turn - 1, title=f"Sampler{suffix}"
        ),
        Node(ids.decode, "VAEDecode", {"samples": link(ids.sampler), "vae": link(3)}, f"VAE decode{suffix}"),
        Node(
            ids.merge,
            "AtelierDiffMerge",
            p.merge_inputs(original=source, edited=link(ids.decode), geometry=link(ids.lock, 4)),
            f"Diff-merge turn {turn}",
        ),
    ]
    if not last:
        nodes.append(Node(ids.preview, "PreviewImage", {"images": link(ids.merge)}, f"After turn {turn}"))
    return nodes


def _turn_group(turn: int, last: bool) -> Group:
    ids = TurnIds.of(turn)
    guidance = [ids.guidance, 10] if turn == 1 else [ids.guidance]  # the shared zero negative sits in turn 1
    finish = [[ids.merge], [14 if last else ids.preview]]
    columns = [[ids.prompt, ids.lock], [p.ENCODE_DROP, ids.encode], [ids.reference], guidance, [ids.sampler]]
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
        Group("Load models", "load", [[1, 2, 3]], (0, 0)),
        Group("Load picture", "load", [[4]], (0, 1)),
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
