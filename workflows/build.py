"""Source of the shipped workflows: one spec per workflow, written out in both of ComfyUI's formats.

``workflows/<name>.json`` is the UI format (what the frontend saves and what its template browser lists: ComfyUI
serves every ``*.json`` directly in this folder as a template of the pack); ``workflows/api/<name>.api.json`` is the
API format for ``POST /prompt`` and ``kontext-atelier run``. API files live in a subfolder so the template browser
does not list them as (broken) UI workflows. ``atelier_core/data/workflows/<name>.api.json`` is the same API file
inside the installed package (``kontext-atelier run NAME`` from a wheel). ``workflows/<name>.png`` shows the graph and
carries the workflow (drag it onto the canvas); ``workflows/<name>.jpg`` is the template browser's thumbnail (the
frontend asks for ``<name>.jpg`` beside each template; see ``thumbnails.py``).

Both files come from the same spec, so they cannot drift apart. What each graph is lives in one module per family
(``kontext_edits``, ``kontext_references``, ``kontext_iterative``, ``other_models``, on the pieces of
``kontext_parts`` and the classes of ``spec``); how it is drawn in ``layout`` (sizes, groups, the saved view); the two
file formats in ``ui_format``; the pictures in ``thumbnails``. Widget order, socket names and types come from the
node descriptions ComfyUI itself serves (``/object_info``), passed in by the caller::

    COMFYUI_PATH=~/ComfyUI python workflows/build.py    # rewrites every file above

``tests/test_workflows.py`` renders every spec again and checks it equals the files on disk.

Conventions that ``kontext-atelier run`` relies on (titles are matched without regard to case):
- the ``LoadImage`` titled ``Image`` receives ``--image``; those titled ``Reference 2``, ``Reference 3``... receive
  ``--reference`` in order (unused reference loaders are removed, with the optional inputs they fed);
- the text encoder titled ``Prompt`` receives ``--prompt`` in its ``text`` input;
- the sampler (``KSampler``) titled ``Sampler`` receives ``--seed``;
- ``SaveImage`` nodes write the outputs that are downloaded.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as `python workflows/build.py`: make `workflows` importable as a package
    sys.path.insert(0, str(HERE.parent))

from atelier_core.model_catalog import FP8_MODEL, GGUF_MODEL, T5_GGUF  # noqa: E402
from workflows import before_after, other_models, thumbnails  # noqa: E402
from workflows.kontext_edits import diff_merge, masked_edit, outpaint, single_reference, turbo  # noqa: E402
from workflows.kontext_iterative import iterative  # noqa: E402
from workflows.kontext_references import multi_reference, style_transfer  # noqa: E402
from workflows.spec import REROUTE, Workflow  # noqa: E402
from workflows.ui_format import dumps, to_api, to_ui  # noqa: E402

API_DIR = HERE / "api"
# The API files again, inside the installed package, so `kontext-atelier run NAME` finds them from a wheel too.
PACKAGE_DIR = HERE.parent / "atelier_core" / "data" / "workflows"


def all_workflows() -> list[Workflow]:
    return [
        single_reference("kontext_edit_gguf", GGUF_MODEL, "gguf"),
        single_reference("kontext_edit_fp8", FP8_MODEL, "fp8"),
        single_reference("kontext_edit_gguf_t5", GGUF_MODEL, "gguf", t5=T5_GGUF),
        multi_reference("kontext_multi_reference_gguf", GGUF_MODEL, "gguf"),
        multi_reference("kontext_multi_reference_fp8", FP8_MODEL, "fp8"),
        diff_merge("kontext_edit_diff_merge", GGUF_MODEL),
        masked_edit("kontext_masked_edit", GGUF_MODEL),
        outpaint("kontext_outpaint", GGUF_MODEL),
        iterative(
            "kontext_iterative_edit",
            GGUF_MODEL,
            (
                "change the knight's cloak to deep red, keep everything else the same",
                "paint a golden lion on the shield, keep everything else the same",
                "cover the base with fresh snow, keep the miniature unchanged",
            ),
        ),
        style_transfer("kontext_style_transfer", GGUF_MODEL),
        turbo("kontext_edit_turbo", GGUF_MODEL),
        *other_models.workflows(),  # FLUX.2 and Qwen-Image-Edit (ComfyUI 0.3.75+)
    ]


def renderable(object_info: dict) -> list[Workflow]:
    """The workflows whose every node type ``object_info`` describes (a ComfyUI 0.3.64 has no FLUX.2 / Qwen nodes:
    those are rendered against a newer one and left as they are)."""
    return [w for w in all_workflows() if all(n.type in object_info or n.type == REROUTE for n in w.nodes)]


# -- files ------------------------------------------------------------------------------------------------------------


def render(object_info: dict) -> dict[Path, str]:
    """Every shipped workflow file (path -> text): UI, API, and the package's copy of the API file."""
    files: dict[Path, str] = {}
    for workflow in renderable(object_info):
        files[HERE / f"{workflow.name}.json"] = dumps(to_ui(workflow, object_info))
        files[API_DIR / f"{workflow.name}.api.json"] = files[PACKAGE_DIR / f"{workflow.name}.api.json"] = dumps(
            to_api(workflow)
        )
    return files


def render_pictures(files: dict[Path, str]) -> dict[Path, bytes]:
    """``<name>.png`` (the diagram with the workflow embedded, for drag-and-drop) and ``<name>.jpg`` (the template
    browser's thumbnail) for every workflow, drawn from the rendered UI and API files."""
    pictures: dict[Path, bytes] = {}
    for workflow in all_workflows():
        if HERE / f"{workflow.name}.json" not in files:
            continue
        ui = json.loads(files[HERE / f"{workflow.name}.json"])
        api = json.loads(files[API_DIR / f"{workflow.name}.api.json"])
        picture = thumbnails.diagram(ui, workflow.title, workflow.summary)
        pictures[HERE / f"{workflow.name}.png"] = thumbnails.png_with_workflow(picture, ui, api)
        thumbnail = before_after.thumbnail(workflow.thumbnail, workflow.title, workflow.summary)
        pictures[HERE / f"{workflow.name}.jpg"] = thumbnails.jpeg(thumbnail)
    return pictures


def host_object_info() -> dict:
    """/object_info for every node type the workflows use, from ComfyUI loaded in this process with the pack."""
    import tempfile

    sys.path.insert(0, str(HERE.parent / "tests"))
    from atelier_host import ComfyHost, find_comfyui

    root, reason = find_comfyui()
    if root is None:
        raise SystemExit(reason)
    host = ComfyHost(root, Path(tempfile.mkdtemp(prefix="atelier_workflows_")))
    return object_info_from(host)


def object_info_from(host) -> dict:
    types = {n.type for w in all_workflows() for n in w.nodes} & set(host.nodes.NODE_CLASS_MAPPINGS)
    return {t: node_info(host.node_class(t)) for t in sorted(types)}


def node_info(cls) -> dict:
    """What ComfyUI's /object_info serves for a node class (V3 classes describe themselves; V1 as server.py does)."""
    if hasattr(cls, "GET_NODE_INFO_V1"):
        return cls.GET_NODE_INFO_V1()
    info = {
        "input": cls.INPUT_TYPES(),
        "output": list(cls.RETURN_TYPES),
        "output_name": list(getattr(cls, "RETURN_NAMES", cls.RETURN_TYPES)),
        "display_name": getattr(cls, "DISPLAY_NAME", None) or cls.__name__,
    }
    try:
        import nodes

        info["display_name"] = nodes.NODE_DISPLAY_NAME_MAPPINGS.get(
            next(k for k, v in nodes.NODE_CLASS_MAPPINGS.items() if v is cls), info["display_name"]
        )
    except (ImportError, StopIteration):
        pass
    return info


def main() -> int:
    files = render(host_object_info())
    pictures = render_pictures(files)
    API_DIR.mkdir(exist_ok=True)
    PACKAGE_DIR.mkdir(parents=True, exist_ok=True)
    for path, text in files.items():
        path.write_text(text)
    for path, data in pictures.items():
        path.write_bytes(data)
    sys.stdout.write(f"wrote {len(files)} workflow files and {len(pictures)} pictures\n")
    for workflow in all_workflows():
        if HERE / f"{workflow.name}.json" not in files:
            sys.stdout.write(f"left {workflow.name} as it is: this ComfyUI lacks some of its nodes\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
