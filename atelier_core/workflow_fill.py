"""Filling an API-format workflow for ``kontext-atelier run``: find the shipped workflows, and put the image,
references, prompt, seed and ``--set`` values into a copy of one.

How the workflow is filled (titles are the nodes' ``_meta.title``, matched without regard to case; the shipped
workflows follow these conventions, see workflows/build.py):

- ``--image``: the ``LoadImage`` titled ``Image`` (or the only ``LoadImage`` whose title does not start with
  ``Reference``);
- ``--reference`` (repeatable): the ``LoadImage`` nodes titled ``Reference 2``, ``Reference 3``, ... in order; those
  left without an image are removed together with the links they fed (the Context Stitcher's extra images are
  optional inputs);
- ``--prompt``: the ``text`` input of the node titled ``Prompt`` (or of the only ``CLIPTextEncode``);
- ``--seed N|random``: the ``seed``/``noise_seed`` of the node titled ``Sampler`` (or of every KSampler / RandomNoise);
- ``--set NODE.INPUT=VALUE``: any input; NODE is a node id or title, VALUE is JSON when it parses (``24``,
  ``true``, ``2.5``) and a string otherwise.
"""

from __future__ import annotations

import copy
import json
import re
from dataclasses import dataclass
from pathlib import Path

from .errors import AtelierError
from .safe_json import load_json_limited

PACK_DIR = Path(__file__).resolve().parents[1]
# The package's own copy (written by workflows/build.py) is what an install from a wheel has; a checkout finds the
# same files in workflows/api first.
PACKAGE_WORKFLOW_DIR = Path(__file__).resolve().parent / "data" / "workflows"
WORKFLOW_DIRS = (PACK_DIR / "workflows" / "api", PACK_DIR / "workflows", PACKAGE_WORKFLOW_DIR)
SAMPLER_TYPES = {"KSampler", "KSamplerAdvanced", "RandomNoise", "SamplerCustom"}
SEED_INPUTS = ("seed", "noise_seed")
MAX_SEED = 2**32 - 1
WORKFLOW_MAX_BYTES = 16 * 1024 * 1024


def available_workflows() -> list[str]:
    names = set()
    for folder in WORKFLOW_DIRS:
        names.update(p.name[: -len(".api.json")] for p in folder.glob("*.api.json"))
    return sorted(names)


def load_workflow(spec: str) -> tuple[str, dict]:
    """(name, API prompt) from a file path or the name of a shipped workflow."""
    path = Path(spec).expanduser()
    if not path.is_file():
        stem = spec[: -len(".api.json")] if spec.endswith(".api.json") else spec.removesuffix(".json")
        candidates = [folder / f"{stem}.api.json" for folder in WORKFLOW_DIRS]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            names = ", ".join(available_workflows()) or "none found"
            raise AtelierError(f"no workflow file or shipped workflow named {spec!r}; shipped workflows: {names}")
    # A user's file: read within limits (a workflow is ~50 KB and a dozen levels deep), so a huge, deeply nested
    # or 5,000-digit-number file is one message naming it, never a RecursionError.
    try:
        data = load_json_limited(path, max_bytes=WORKFLOW_MAX_BYTES, what=f"workflow {path}")
    except AtelierError as exc:
        raise AtelierError(f"cannot read workflow {path}: {exc}") from None
    if isinstance(data, dict) and "nodes" in data and "links" in data:
        raise AtelierError(
            f"{path} is a UI-format workflow (what the browser saves). Use its API version "
            "(workflows/api/<name>.api.json, or in ComfyUI: Workflow > Export (API))."
        )
    if not isinstance(data, dict) or not all(isinstance(v, dict) and "class_type" in v for v in data.values()):
        raise AtelierError(f"{path} is not an API-format workflow (a map of node id -> class_type/inputs)")
    return path.name.removesuffix(".json").removesuffix(".api"), data


def _title(node: dict) -> str:
    return str((node.get("_meta") or {}).get("title", "")).strip().lower()


def find_nodes(prompt: dict, title: str) -> list[str]:
    return [node_id for node_id, node in prompt.items() if _title(node) == title.lower()]


def image_node(prompt: dict) -> str:
    titled = [i for i in find_nodes(prompt, "image") if prompt[i]["class_type"].startswith("LoadImage")]
    if titled:
        return titled[0]
    loaders = [i for i, n in prompt.items() if n["class_type"] == "LoadImage" and not _title(n).startswith("reference")]
    if len(loaders) == 1:
        return loaders[0]
    raise AtelierError(
        "the workflow needs one LoadImage titled 'Image' for --image "
        f"(found {len(loaders)} LoadImage nodes without that title)"
    )


def reference_nodes(prompt: dict) -> list[str]:
    found = []
    for node_id, node in prompt.items():
        match = re.fullmatch(r"reference\s*(\d+)", _title(node))
        if match and node["class_type"].startswith("LoadImage"):
            found.append((int(match.group(1)), node_id))
    return [node_id for _, node_id in sorted(found)]


def prompt_node(prompt: dict) -> str:
    titled = [i for i in find_nodes(prompt, "prompt") if "text" in prompt[i]["inputs"]]
    if titled:
        return titled[0]
    encoders = [i for i, n in prompt.items() if n["class_type"] == "CLIPTextEncode"]
    if len(encoders) == 1:
        return encoders[0]
    raise AtelierError("--prompt needs a text encoder titled 'Prompt' in the workflow (with a 'text' input)")


def seed_targets(prompt: dict) -> list[tuple[str, str]]:
    def seeds(node_id: str) -> list[tuple[str, str]]:
        inputs = prompt[node_id]["inputs"]
        return [(node_id, k) for k in SEED_INPUTS if k in inputs and not isinstance(inputs[k], list)]

    titled = [t for i in find_nodes(prompt, "sampler") for t in seeds(i)]
    if titled:
        return titled
    return [t for i, n in prompt.items() if n["class_type"] in SAMPLER_TYPES for t in seeds(i)]


def remove_node(prompt: dict, node_id: str) -> None:
    """Drop a node and every link from it (unused reference loaders feed only optional inputs)."""
    prompt.pop(node_id, None)
    for node in prompt.values():
        for key, value in list(node["inputs"].items()):
            if isinstance(value, list) and len(value) == 2 and str(value[0]) == node_id:
                del node["inputs"][key]


def parse_value(text: str):
    try:
        return json.loads(text)
    except (ValueError, RecursionError):  # not JSON (or nested past Python's limit): the text itself
        return text


def apply_sets(prompt: dict, sets: list[str]) -> None:
    for item in sets:
        target, eq, raw = item.partition("=")
        node_ref, dot, input_name = target.rpartition(".")
        if not eq or not dot or not node_ref or not input_name:
            raise AtelierError(f"--set {item!r}: write NODE.INPUT=VALUE (NODE is a node id or title)")
        ids = [node_ref] if node_ref in prompt else find_nodes(prompt, node_ref)
        if not ids:
            titles = ", ".join(sorted({f"{i}:{(n.get('_meta') or {}).get('title', '')}" for i, n in prompt.items()}))
            raise AtelierError(f"--set {item!r}: no node with id or title {node_ref!r}; nodes: {titles}")
        for node_id in ids:
            prompt[node_id]["inputs"][input_name] = parse_value(raw)


@dataclass
class Settings:
    prompt_text: str | None
    seed: int | None
    sets: list[str]
    references: list[Path]


def fill(template: dict, image_value: str, reference_values: list[str], settings: Settings) -> dict:
    prompt = copy.deepcopy(template)
    prompt[image_node(prompt)]["inputs"]["image"] = image_value
    slots = reference_nodes(prompt)
    if len(reference_values) > len(slots):
        raise AtelierError(
            f"{len(reference_values)} --reference images given, the workflow has {len(slots)} reference slots "
            "(LoadImage nodes titled 'Reference 2', 'Reference 3', ...)"
        )
    for node_id, value in zip(slots, reference_values, strict=False):
        prompt[node_id]["inputs"]["image"] = value
    for node_id in slots[len(reference_values) :]:
        remove_node(prompt, node_id)
    if settings.prompt_text is not None:
        prompt[prompt_node(prompt)]["inputs"]["text"] = settings.prompt_text
    if settings.seed is not None:
        targets = seed_targets(prompt)
        if not targets:
            raise AtelierError("--seed: the workflow has no sampler seed (a node titled 'Sampler' or a KSampler)")
        for node_id, key in targets:
            prompt[node_id]["inputs"][key] = settings.seed
    apply_sets(prompt, settings.sets)
    return prompt
