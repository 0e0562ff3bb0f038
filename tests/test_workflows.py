"""The shipped workflows, checked the way ComfyUI meets them.

- Every API file (``workflows/api/*.api.json``) passes ComfyUI's own ``validate_prompt`` with the model files it
  names present (tiny fixtures under the expected names), and runs end to end on the CPU with the tiny models
  (text encoding swapped for the test-only encoder; see ``workflow_fixtures.cpu_variant``).
- Every UI file (``workflows/*.json``) uses only registered node types, its links agree with the nodes' sockets, and
  the prompt the frontend would make of it (widget values by the widget order ComfyUI serves) equals the API file.
- Both formats are what ``workflows/build.py`` renders today (no hand edits drift from the source), and the
  package's copy of the API files (``atelier_core/data/workflows``, what a wheel installs) equals ``workflows/api``.
- The FLUX.2 and Qwen-Image-Edit workflows (``workflows/other_models.py``) need ComfyUI 0.3.75's nodes: on a
  ComfyUI without them (0.3.64) every check that needs the host's nodes skips for them, "not in this ComfyUI".
- Every workflow has its PNG (the workflow embedded as ComfyUI's ``workflow``/``prompt`` chunks, for drag-and-drop)
  and its template-browser thumbnail ``<name>.jpg``.
"""

from __future__ import annotations

import json

import pytest
from atelier_host import skip_unless_host_has
from PIL import Image
from workflow_fixtures import (
    API_DIR,
    EXAMPLE_IMAGE,
    PACKAGE_API_DIR,
    WORKFLOW_DIR,
    api_workflows,
    cpu_variant,
    install_models,
    reads_narrow_wan_vae,
    ui_workflows,
    write_png,
)

API = api_workflows()
UI = ui_workflows()
NOTE_TYPES = {"MarkdownNote", "Note"}
REROUTE = "Reroute"  # the frontend's pass-through node: in the UI file only, graphToPrompt links through it
WIDGET_TYPES = {"INT", "FLOAT", "STRING", "BOOLEAN", "COMBO"}
LOADERS = {
    "AtelierKontextLoader",
    "DualCLIPLoader",
    "AtelierKontextTextEncoders",
    "VAELoader",
    "LoraLoaderModelOnly",
    "UNETLoader",
    "CLIPLoader",
}
MODEL_WIDGETS = {"model_name", "clip_name1", "clip_name2", "clip_l_name", "t5_name", "vae_name", "lora_name"}
REQUIRED = {
    "kontext_edit_gguf",
    "kontext_edit_fp8",
    "kontext_edit_gguf_t5",
    "kontext_multi_reference_gguf",
    "kontext_multi_reference_fp8",
    "kontext_edit_diff_merge",
    "kontext_masked_edit",
    "kontext_outpaint",
    "kontext_iterative_edit",
    "kontext_style_transfer",
    "kontext_edit_turbo",
}
OTHER_MODELS = {"flux2_multi_reference_edit", "flux2_klein_edit", "qwen_image_edit"}  # ComfyUI 0.3.75+ (klein 0.10+)
KONTEXT = sorted(set(API) - OTHER_MODELS)


def _combo_options(spec) -> list | None:
    if isinstance(spec[0], (list, tuple)):
        return list(spec[0])
    if str(getattr(spec[0], "value", spec[0])) == "COMBO" and len(spec) > 1:
        return list(spec[1].get("options", []))
    return None


def needs_nodes(name: str, object_info: dict) -> None:
    """Skip a check of workflow ``name`` on a ComfyUI that lacks its nodes, or a (non-file) choice it makes: 0.3.64
    has CLIPLoader but no ``flux2`` type. Model-file choices are not checked here (the fixtures install them)."""
    missing = sorted({n["class_type"] for n in API[name].values()} - set(object_info))
    for node in API[name].values():
        sections = object_info.get(node["class_type"], {}).get("input", {})
        for key, value in node["inputs"].items():
            spec = sections.get("required", {}).get(key) or sections.get("optional", {}).get(key)
            options = _combo_options(spec) if spec else None
            if isinstance(value, str) and "." not in value and options is not None and value not in options:
                missing.append(f"{node['class_type']} {key} {value!r}")
    skip_unless_host_has(not missing, f"{name} needs {', '.join(missing)} (ComfyUI 0.3.75+)")
    if "klein" in name:
        skip_unless_host_has(host_loads_klein(), f"{name} needs FLUX.2 [klein] (ComfyUI 0.10.0+)")


def host_loads_klein() -> bool:
    """Whether this ComfyUI loads FLUX.2 [klein]: core's klein text encoder (0.10.0+), which came with the FLUX.2
    detection that reads the heads from the width (0.3.75 has neither, though it has every node the workflow uses)."""
    import comfy.text_encoders.flux

    return hasattr(comfy.text_encoders.flux, "klein_te")


TURBO_STEPS = 8  # the 8-step LoRA workflows


@pytest.fixture(scope="session")
def workflow_host(comfy_host, flux_vae_file):
    """The host with every model file and the input picture the workflows name."""
    install_models(comfy_host.workdir / "models", flux_vae_file)
    write_png(comfy_host.input_path(EXAMPLE_IMAGE), 64, 64)
    return comfy_host


@pytest.fixture(scope="session")
def object_info(comfy_host):
    from workflows import build

    return build.object_info_from(comfy_host)


def test_every_required_workflow_ships_in_both_formats():
    assert REQUIRED | OTHER_MODELS <= set(API), sorted(REQUIRED | OTHER_MODELS - set(API))
    assert set(API) == set(UI), sorted(set(API) ^ set(UI))


@pytest.mark.parametrize("name", sorted(API))
def test_api_workflow_passes_comfyui_validation(workflow_host, object_info, name):
    needs_nodes(name, object_info)
    outputs = workflow_host.validate(API[name])
    assert outputs, f"{name}: no output node"


@pytest.mark.parametrize("name", KONTEXT)
def test_api_workflow_uses_kontext_defaults(name):
    api = API[name]
    samplers = [n["inputs"] for n in api.values() if n["class_type"] == "KSampler"]
    guidance = [n["inputs"]["guidance"] for n in api.values() if n["class_type"] == "FluxGuidance"]
    assert samplers and guidance == [2.5] * len(samplers)  # one sampler per edit turn, each with its guidance
    turbo = any(n["class_type"] == "LoraLoaderModelOnly" for n in api.values())
    for sampler in samplers:
        assert (sampler["cfg"], sampler["sampler_name"], sampler["scheduler"]) == (1.0, "euler", "simple")
        assert sampler["steps"] == TURBO_STEPS if turbo else 20 <= sampler["steps"] <= 28
        assert api[sampler["negative"][0]]["class_type"] == "ConditioningZeroOut"
    titles = {n["_meta"]["title"].lower(): n["class_type"] for n in api.values()}
    assert titles.get("image") == "LoadImage" and titles.get("sampler") == "KSampler"  # kontext-atelier run relies
    assert titles.get("prompt") == "CLIPTextEncode"
    assert any(n["class_type"] == "SaveImage" for n in api.values())


@pytest.mark.parametrize("name", sorted(API))
def test_diff_merge_nodes_ship_with_the_node_defaults(name):
    """The shipped merges use the band the node's help page documents (grow/feather), not an older default."""
    from atelier_core.image.diffmerge import MergeOptions

    defaults = MergeOptions()
    for node in (n for n in API[name].values() if n["class_type"] == "AtelierDiffMerge"):
        inputs = node["inputs"]
        assert (inputs["grow"], inputs["feather"]) == (defaults.grow, defaults.feather), name
        assert (inputs["threshold"], inputs["min_area"]) == (defaults.threshold, defaults.min_area), name


@pytest.mark.parametrize("name", sorted(OTHER_MODELS))
def test_other_model_workflows_lock_edit_restore_and_merge_with_core_loaders(name):
    """FLUX.2 / Qwen-Image-Edit: core's loaders, the model's own sampling defaults, and lock -> restore -> merge."""
    api = API[name]
    kinds = {n["class_type"] for n in api.values()}
    assert {"UNETLoader", "CLIPLoader", "VAELoader"} <= kinds and "AtelierKontextLoader" not in kinds
    titles = {n["_meta"]["title"].lower(): key for key, n in api.items()}
    lock, restore, merge = (api[titles[t]] for t in ("aspect lock", "restore size", "diff-merge"))
    assert restore["inputs"]["geometry"] == [titles["aspect lock"], 4]
    assert merge["inputs"]["edited"] == [titles["restore size"], 0] and merge["inputs"]["original"] == [
        titles["image"],
        0,
    ]
    sampler = api[titles["sampler"]]["inputs"]
    assert sampler["latent_image"] == [titles["aspect lock"], 5]  # the lock's latent sizes the edit
    clip_type = next(n["inputs"]["type"] for n in api.values() if n["class_type"] == "CLIPLoader")
    if name.startswith("flux2"):
        assert clip_type == "flux2" and lock["inputs"]["size"].startswith("FLUX.2")
        stitcher = next(n["inputs"] for n in api.values() if n["class_type"] == "AtelierContextStitcher")
        assert stitcher["position_method"] == "auto" and sampler["cfg"] == 1.0
        if "klein" in name:  # distilled: 4 steps, no guidance embedding, the stitched conditioning straight in
            assert sum(k.startswith("image_") for k in stitcher) == 1 and sampler["steps"] == 4
            assert api[sampler["positive"][0]]["class_type"] == "AtelierContextStitcher" and "FluxGuidance" not in kinds
        else:
            assert sum(k.startswith("image_") for k in stitcher) == 3
            assert api[sampler["positive"][0]]["inputs"]["guidance"] == 4.0
    else:
        assert clip_type == "qwen_image" and lock["inputs"]["size"].startswith("Qwen-Image")
        assert api[titles["prompt"]]["class_type"] == "TextEncodeQwenImageEditPlus"
        assert "AtelierContextStitcher" not in kinds and sampler["cfg"] > 1.0


def test_iterative_workflow_merges_every_turn_into_the_previous_result():
    """Turn N edits turn N-1's merged picture and is diff-merged into exactly that picture, at full resolution."""
    api = API["kontext_iterative_edit"]
    merges = sorted((k for k, n in api.items() if n["class_type"] == "AtelierDiffMerge"), key=int)
    assert len(merges) >= 2 and len(merges) == sum(n["class_type"] == "KSampler" for n in api.values())
    source = next(k for k, n in api.items() if n["_meta"]["title"] == "Image")
    for merge in merges:
        inputs = api[merge]["inputs"]
        assert inputs["original"] == [source, 0], f"turn {merge} must merge into the previous result"
        lock = api[inputs["geometry"][0]]
        assert lock["class_type"] == "AtelierAspectLock" and lock["inputs"]["image"] == [source, 0]
        source = merge
    saves = [n for n in api.values() if n["class_type"] == "SaveImage"]
    assert [s["inputs"]["images"] for s in saves] == [[merges[-1], 0]]


def test_style_workflow_prompts_with_the_builder_style_template():
    api = API["kontext_style_transfer"]
    prompt = next(n for n in api.values() if n["_meta"]["title"] == "Prompt")
    builder = api[prompt["inputs"]["text"][0]]
    assert builder["class_type"] == "AtelierMiniaturePrompt"
    assert (builder["inputs"]["mode"], builder["inputs"]["template"]) == ("edit", "style reference")
    stitcher = next(n for n in api.values() if n["class_type"] == "AtelierContextStitcher")
    reference = api[stitcher["inputs"]["image_2"][0]]
    assert reference["class_type"] == "LoadImage" and reference["_meta"]["title"] == "Reference 2"
    assert builder["inputs"]["reference"] == 2


def test_files_are_what_build_renders(comfy_host, object_info):
    """The files are rendered against ComfyUI 0.3.64's node descriptions (workflows/spec.py CORE_VERSION). Another
    host describes some core nodes differently (0.33.0's SaveImage has an `images` output), so there only the API
    files, which do not depend on the descriptions, are compared; the UI files' links and prompt are checked by the
    tests below on every host."""
    from workflows import build, spec

    rendered = build.render(object_info)
    if comfy_host.version != spec.CORE_VERSION:
        rendered = {path: text for path, text in rendered.items() if path.name.endswith(".api.json")}
        for path, text in rendered.items():
            assert path.read_text() == text, f"{path.name} differs from workflows/build.py"
        return
    on_disk = {*WORKFLOW_DIR.glob("*.json"), *API_DIR.glob("*.json"), *PACKAGE_API_DIR.glob("*.json")}
    # Workflows this ComfyUI cannot render (its node list lacks their nodes) are checked on one that can.
    later = {w.name for w in build.all_workflows()} - {w.name for w in build.renderable(object_info)}
    assert later <= OTHER_MODELS, sorted(later - OTHER_MODELS)
    on_disk = {p for p in on_disk if p.name.split(".")[0] not in later}
    assert set(rendered) == on_disk, "run: python workflows/build.py"
    for path, text in rendered.items():
        shipped = path.read_text()
        assert shipped == build.dumps(json.loads(shipped)), f"{path.name} was edited by hand; run workflows/build.py"
        assert _what_we_define(shipped) == _what_we_define(text), (
            f"{path.name} differs from workflows/build.py; run: python workflows/build.py"
        )


def _what_we_define(text: str) -> dict:
    """A rendered file less what core's node definitions alone decide: the outputs of core nodes that nothing links
    (core releases add them: SaveImage and PreviewImage return their 'images' in 0.33.0, nothing in 0.10.0). Everything the pack
    writes (nodes, widget values, links, our nodes' sockets, notes, models) is compared as it is."""
    data = json.loads(text)
    nodes = data.get("nodes")
    for node in nodes if isinstance(nodes, list) else []:
        if not node["type"].startswith("Atelier") and "outputs" in node:
            node["outputs"] = [o for o in node["outputs"] if o.get("links")]
    return data


def test_package_copies_equal_the_api_files():
    """kontext-atelier run from a wheel reads atelier_core/data/workflows; it must hold exactly workflows/api."""
    shipped = sorted(p.name for p in API_DIR.glob("*.api.json"))
    assert sorted(p.name for p in PACKAGE_API_DIR.glob("*.api.json")) == shipped
    for name in shipped:
        assert (PACKAGE_API_DIR / name).read_bytes() == (API_DIR / name).read_bytes(), f"{name}: run workflows/build.py"


def test_cli_finds_every_workflow_in_the_package(monkeypatch):
    """An install from a wheel has no workflows/ folder: the package's copy alone must serve every name."""
    from atelier_core import workflow_fill

    assert workflow_fill.PACKAGE_WORKFLOW_DIR.resolve() == PACKAGE_API_DIR.resolve()
    monkeypatch.setattr(workflow_fill, "WORKFLOW_DIRS", (workflow_fill.PACKAGE_WORKFLOW_DIR,))
    assert workflow_fill.available_workflows() == sorted(API)
    for name in API:
        assert workflow_fill.load_workflow(name) == (name, API[name])


# -- pictures ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(UI))
def test_png_carries_the_workflow(name):
    """Dropping workflows/<name>.png on the canvas opens the workflow: ComfyUI reads its workflow/prompt chunks."""
    path = WORKFLOW_DIR / f"{name}.png"
    assert path.is_file(), f"{path.name} is missing; run: python workflows/build.py"
    with Image.open(path) as image:
        image.load()
        assert image.format == "PNG" and image.width >= 400 and image.height >= 250
        chunks = dict(image.text)
    assert json.loads(chunks["workflow"]) == UI[name], f"{path.name}: embedded workflow differs; rerun build.py"
    assert json.loads(chunks["prompt"]) == API[name], f"{path.name}: embedded prompt differs; rerun build.py"
    assert chunks["workflow"].isascii() and chunks["prompt"].isascii()  # plain tEXt, as ComfyUI's SaveImage writes


@pytest.mark.parametrize("name", sorted(UI))
def test_template_browser_thumbnail(name):
    """The frontend shows /api/workflow_templates/<pack>/<name>.jpg beside each template in workflows/."""
    path = WORKFLOW_DIR / f"{name}.jpg"
    assert path.is_file(), f"{path.name} is missing; run: python workflows/build.py"
    with Image.open(path) as image:
        image.load()
        assert image.format == "JPEG" and image.width >= 400
        # The before/after photographs (workflows/before_after.py), not a diagram of flat boxes: many colours.
        colours = image.convert("RGB").getcolors(maxcolors=1 << 18)
        assert colours is None or len(colours) > 5000, f"{path.name} looks like a diagram, not a before/after"


def test_pictures_are_what_build_renders(object_info):
    """build.py draws a PNG and a JPG for every workflow, and no picture is left over from a removed one."""
    from workflows import build

    pictures = build.render_pictures(build.render(object_info))
    later = {w.name for w in build.all_workflows()} - {w.name for w in build.renderable(object_info)}
    on_disk = {p for p in (*WORKFLOW_DIR.glob("*.png"), *WORKFLOW_DIR.glob("*.jpg")) if p.stem not in later}
    assert set(pictures) == on_disk, "run: python workflows/build.py"


# -- UI format --------------------------------------------------------------------------------------------------------


def _widget_slots(info: dict) -> list[tuple[str, int]]:
    """(input name, extra frontend widgets after it) for every widget input, in the order the frontend builds them."""
    order = info.get("input_order") or {k: list(v) for k, v in info["input"].items() if k in ("required", "optional")}
    slots = []
    for section in ("required", "optional"):
        for name in order.get(section, []):
            spec = info["input"][section][name]
            kind = "COMBO" if isinstance(spec[0], (list, tuple)) else str(getattr(spec[0], "value", spec[0]))
            options = spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}
            if kind in WIDGET_TYPES and not options.get("forceInput"):
                extra = int(bool(options.get("control_after_generate"))) + int(bool(options.get("image_upload")))
                slots.append((name, extra))
    return slots


def ui_to_prompt(ui: dict, object_info: dict) -> dict:
    """What the frontend's graphToPrompt sends for a UI workflow (active nodes; notes dropped; ids as strings)."""
    links = {link[0]: link for link in ui["links"]}
    by_id = {node["id"]: node for node in ui["nodes"]}

    def origin(link: list) -> list:
        while by_id[link[1]]["type"] == REROUTE:
            link = links[by_id[link[1]]["inputs"][0]["link"]]
        return [str(link[1]), link[2]]

    prompt = {}
    for node in ui["nodes"]:
        if node["type"] in NOTE_TYPES or node["type"] == REROUTE or node.get("mode", 0) != 0:
            continue
        inputs = {}
        values = list(node.get("widgets_values") or [])
        position = 0
        for name, extra in _widget_slots(object_info[node["type"]]):
            inputs[name] = values[position]
            position += 1 + extra
        assert position == len(values), (
            f"node {node['id']} {node['type']}: {len(values)} widget values, {position} used"
        )
        for socket in node.get("inputs", []):
            if socket.get("link") is not None:
                inputs[socket["name"]] = origin(links[socket["link"]])
        prompt[str(node["id"])] = {
            "inputs": inputs,
            "class_type": node["type"],
            "_meta": {"title": node.get("title") or node["type"]},
        }
    return prompt


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_workflow_nodes_are_registered(comfy_host, object_info, name):
    needs_nodes(name, object_info)
    unknown = {n["type"] for n in UI[name]["nodes"] if n["type"] not in NOTE_TYPES | {REROUTE}} - set(
        comfy_host.nodes.NODE_CLASS_MAPPINGS
    )
    assert not unknown, f"{name}: unknown node types {sorted(unknown)}"
    assert UI[name]["version"] == 0.4


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_workflow_links_are_consistent(object_info, name):
    needs_nodes(name, object_info)
    ui = UI[name]
    nodes = {n["id"]: n for n in ui["nodes"]}
    assert len(nodes) == len(ui["nodes"]), "duplicate node ids"
    assert ui["last_node_id"] == max(nodes) and ui["last_link_id"] == max((lk[0] for lk in ui["links"]), default=0)
    link_ids = [lk[0] for lk in ui["links"]]
    assert len(set(link_ids)) == len(link_ids), "duplicate link ids"
    for link_id, origin, origin_slot, target, target_slot, link_type in ui["links"]:
        source, sink = nodes[origin], nodes[target]
        output = source["outputs"][origin_slot]
        assert link_id in (output["links"] or []), f"link {link_id} missing from node {origin} output {origin_slot}"
        assert output["type"] == link_type
        socket = sink["inputs"][target_slot]
        assert socket["link"] == link_id, f"link {link_id} missing from node {target} input {target_slot}"
        assert socket["type"] in (link_type, "*"), (link_id, socket["type"], link_type)
        if source["type"] == REROUTE:
            continue  # typed by what it carries (checked at the link into it)
        info = object_info[source["type"]]
        assert str(getattr(info["output"][origin_slot], "value", info["output"][origin_slot])) == link_type
    every = set(link_ids)
    for node in ui["nodes"]:
        for socket in node.get("inputs", []):
            assert socket.get("link") is None or socket["link"] in every
        for output in node.get("outputs", []):
            assert set(output.get("links") or []) <= every


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_and_api_agree(object_info, name):
    needs_nodes(name, object_info)
    assert ui_to_prompt(UI[name], object_info) == API[name]


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_workflow_names_its_models_and_explains_itself(name):
    """Every file a loader selects is in its properties.models (what the missing-models dialog keeps: entries named
    by a widget value), GGUF files included, with a ComfyUI model folder and a direct download; the workflow-level
    models list holds them all; the note links each."""
    ui = UI[name]
    listed = []
    for node in ui["nodes"]:
        if node["type"] not in LOADERS:
            continue
        models = node["properties"].get("models") or []
        assert models, f"{name}: {node['type']} has no properties.models"
        files = {v for v in node["widgets_values"] if isinstance(v, str) and "." in v}
        assert files == {m["name"] for m in models}, f"{name}: {node['type']} selects {files}, lists {models}"
        for model in models:
            assert model["url"].startswith("https://huggingface.co/") and model["url"].endswith(model["name"])
            assert model["directory"] in ("diffusion_models", "text_encoders", "vae", "loras")
        listed += models
    assert sorted(map(json.dumps, ui["models"])) == sorted({json.dumps(m) for m in listed}), name
    notes = [n for n in ui["nodes"] if n["type"] in NOTE_TYPES]
    assert notes and all(len(n["widgets_values"][0]) > 200 for n in notes), f"{name}: no explanatory note"
    text = notes[0]["widgets_values"][0]
    for model in ui["models"]:
        assert f"[{model['name']}]({model['url']})" in text, f"{name}: the note has no link to {model['name']}"
    assert "atelier_downloads" not in json.dumps(ui)


# -- layout -----------------------------------------------------------------------------------------------------------


def _boxes(ui: dict) -> dict[int, tuple[float, float, float, float]]:
    """Each node's box on the canvas: its title bar and body, and the badge band above the title bar."""
    from workflows import layout

    above = layout.TITLE + layout.BADGE
    return {
        n["id"]: (n["pos"][0], n["pos"][1] - above, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        for n in ui["nodes"]
    }


def _overlap(a, b) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _inside(inner, outer) -> bool:
    return outer[0] <= inner[0] and outer[1] <= inner[1] and inner[2] <= outer[2] and inner[3] <= outer[3]


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_layout_groups_steps_without_overlaps(name):
    """Labelled groups hold every node (notes aside); no two node boxes (badge band and title bar included)
    overlap, nor two groups, nor a note and a group; links run left to right except from one turn to the next."""
    ui = UI[name]
    boxes = _boxes(ui)
    ids = sorted(boxes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            assert not _overlap(boxes[a], boxes[b]), f"{name}: nodes {a} and {b} overlap"
    groups = {
        g["title"]: (
            g["bounding"][0],
            g["bounding"][1],
            g["bounding"][0] + g["bounding"][2],
            g["bounding"][1] + g["bounding"][3],
        )
        for g in ui["groups"]
    }
    assert len(groups) >= 3 and all(title.strip() for title in groups), f"{name}: too few labelled groups"
    titles = sorted(groups)
    for i, a in enumerate(titles):
        for b in titles[i + 1 :]:
            assert not _overlap(groups[a], groups[b]), f"{name}: groups {a!r} and {b!r} overlap"
    notes = {n["id"] for n in ui["nodes"] if n["type"] in NOTE_TYPES}
    for node_id, box in boxes.items():
        holders = [t for t, g in groups.items() if _inside(box, g)]
        if node_id in notes:
            assert not any(_overlap(box, g) for g in groups.values()), f"{name}: the note covers a group"
        else:
            assert len(holders) == 1, f"{name}: node {node_id} is inside {holders}"
    nodes = {n["id"]: n for n in ui["nodes"]}
    # A link straight down one column (a Reroute bus, or a Reroute over the node it feeds) runs neither way.
    backwards = [
        lk
        for lk in ui["links"]
        if (nodes[lk[1]]["pos"][0], nodes[lk[1]]["pos"][1]) >= (nodes[lk[3]]["pos"][0], nodes[lk[3]]["pos"][1])
    ]
    allowed = 2 * (len([g for g in ui["groups"] if g["title"].startswith("Turn ")]) - 1)  # merge -> next lock, merge
    assert len(backwards) <= max(allowed, 0), f"{name}: links running right to left: {backwards}"


def test_layout_sizes_the_widgets_the_js_extension_shows():
    """workflows/layout.py estimates node heights with the widgets js/prompt_builder.js shows per mode."""
    import re

    from workflows import layout

    source = (WORKFLOW_DIR.parent / "js" / "prompt_builder.js").read_text()
    lists = {
        name: tuple(re.findall(r'"(\w+)"', body))
        for name, body in re.findall(r"export const (\w+) = \[([^\]]*)\]", source)
    }
    assert layout.BUILDER_HIDDEN == {"edit": lists["DESCRIBE_ONLY"], "describe": lists["EDIT_ONLY"]}


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_saved_view_shows_the_whole_graph(name):
    """extra.ds puts every group and node (title bars included) inside the window the view is fitted to."""
    from workflows import layout

    ui = UI[name]
    scale, (dx, dy) = ui["extra"]["ds"]["scale"], ui["extra"]["ds"]["offset"]
    width, height = layout.VIEW
    edges = [
        (g["bounding"][0], g["bounding"][1], g["bounding"][0] + g["bounding"][2], g["bounding"][1] + g["bounding"][3])
        for g in ui["groups"]
    ]
    edges += [
        (n["pos"][0], n["pos"][1] - layout.TITLE, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        for n in ui["nodes"]
    ]
    for x0, y0, x1, y1 in edges:
        sx0, sy0, sx1, sy1 = (x0 + dx) * scale, (y0 + dy) * scale, (x1 + dx) * scale, (y1 + dy) * scale
        assert 0 <= sx0 and sx1 <= width and layout.VIEW_MARGIN[1] - 1 <= sy0 and sy1 <= height, (name, x0, y0)
    assert scale >= 0.25, f"{name}: the whole graph only fits at {scale}x; too spread out"


# -- execution on the CPU ---------------------------------------------------------------------------------------------


def _saved_images(host, outputs: dict) -> list[Image.Image]:
    images = []
    for ui in outputs.values():
        for item in ui.get("images", []):
            if item.get("type") == "output":
                path = host.workdir / "output" / item.get("subfolder", "") / item["filename"]
                images.append(Image.open(path))
    return images


@pytest.mark.parametrize("name", sorted(API))
def test_workflow_runs_end_to_end_on_cpu(workflow_host, object_info, name):
    """Loaders, VAE, sampler, our nodes and SaveImage as shipped; tiny transformer, 2 steps, 64x64 input."""
    needs_nodes(name, object_info)
    if name == "qwen_image_edit":
        skip_unless_host_has(reads_narrow_wan_vae(), "a test-size Wan 2.1 VAE (its VAELoader builds every one 96 wide)")
    outputs = workflow_host.run(cpu_variant(API[name]))
    images = _saved_images(workflow_host, outputs)
    assert len(images) == 1, outputs
    if name == "kontext_outpaint":
        width, height = images[0].size
        assert width > height, "outpainting to 16:9 must widen the picture"
    else:
        assert images[0].size == (64, 64), "the edit must come back at the input's exact size"


# Link crossings per shipped workflow (tests/link_crossings.py), measured 2026-12-06 after the layout with Reroute
# buses (issue 24); the layout before the step groups (553d1f2^) had, by the same count: iterative 81, turbo 8,
# outpaint 8, diff-merge 8, fp8/gguf/gguf_t5 8, masked 10, multi-reference 19, style 17, FLUX.2 multi 25, Qwen 23.
CROSSING_BOUNDS = {
    "flux2_klein_edit": 9,
    "flux2_multi_reference_edit": 17,
    "kontext_edit_diff_merge": 7,
    "kontext_edit_fp8": 5,
    "kontext_edit_gguf": 5,
    "kontext_edit_gguf_t5": 5,
    "kontext_edit_turbo": 4,
    "kontext_iterative_edit": 24,
    "kontext_masked_edit": 8,
    "kontext_multi_reference_fp8": 9,
    "kontext_multi_reference_gguf": 9,
    "kontext_outpaint": 5,
    "kontext_style_transfer": 9,
    "qwen_image_edit": 27,
}


def test_crossing_counter_sees_crossings_and_reroutes():
    """Two links drawn as an X cross once; parallel links and links sharing an output do not; a link through
    Reroutes counts each straight piece of its polyline."""
    from link_crossings import crossings

    def node(node_id, x, y, kind="N"):
        return {"id": node_id, "type": kind, "pos": [x, y], "size": [100, 60]}

    nodes = [node(1, 0, 0), node(2, 0, 200), node(3, 400, 0), node(4, 400, 200)]
    assert crossings({"nodes": nodes, "links": [[1, 1, 0, 4, 0, "X"], [2, 2, 0, 3, 0, "X"]]}) == 1
    assert crossings({"nodes": nodes, "links": [[1, 1, 0, 3, 0, "X"], [2, 2, 0, 4, 0, "X"]]}) == 0
    assert crossings({"nodes": nodes, "links": [[1, 1, 0, 3, 0, "X"], [2, 1, 0, 4, 0, "X"]]}) == 0
    rerouted = [*nodes, node(5, 200, -150, "Reroute"), node(6, 300, -150, "Reroute")]
    links = [[1, 1, 0, 4, 0, "X"], [2, 2, 0, 5, 0, "X"], [3, 5, 0, 6, 0, "X"], [4, 6, 0, 3, 0, "X"]]
    assert crossings({"nodes": rerouted, "links": links}) == 1  # 2 -> 5 cuts 1 -> 4; 5 -> 6 -> 3 pass above it
    links[1] = [2, 2, 0, 5, 0, "X"]
    rerouted[1] = node(2, 0, -300)  # now the whole polyline runs above 1 -> 4
    assert crossings({"nodes": rerouted, "links": links}) == 0


@pytest.mark.parametrize("name", sorted(UI))
def test_ui_links_cross_no_more_than_measured(name):
    """No more link crossings than the layout had when last measured: a change that tangles the wires fails."""
    from link_crossings import crossings

    assert name in CROSSING_BOUNDS, f"{name}: measure its crossings and add a bound"
    assert crossings(UI[name]) <= CROSSING_BOUNDS[name], f"{name}: {crossings(UI[name])} link crossings"
