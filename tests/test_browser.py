"""The shipped workflows in a real browser: ComfyUI served on loopback, Debian's Chromium driven by playwright-core.

For every UI workflow (``workflows/*.json``) and every workflow PNG (``workflows/*.png``) the page must load it with
every node type known, no dialog (missing nodes, missing models: placeholder files with the names the workflows list
in ``properties.models`` are put in the server's model folders, since loading never reads them), and no combo value
the server would refuse; ``app.graphToPrompt()`` must give the shipped API file (``workflows/api/<name>.api.json``)
up to node ids. The extension's live widgets must show what Python computes (the aspect lock's target size for the
loaded picture). Screenshots go to the test's tmp dir (printed); set ``ATELIER_SCREENSHOTS=DIR`` to keep them.

One graph that needs no model files is also run for real from the page (``app.queuePrompt(0)``): the prompt builder,
and two Load Images (the example and a copy with a recoloured rectangle) into the diff-merge, its merged image and
hard mask into Preview Images, its report into Preview Any. After the run the canvas must show what Python computes:
the builder's assembled prompt (its report box and the Preview Any of its prompt output), the diff-merge's preview,
merged and mask images, and its report; screenshots ``executed*.png`` are saved and checked to be real pictures.

Skips with one line when Node.js, Chromium, playwright-core (installed into ``tests/browser/node_modules`` by npm
when missing) or ComfyUI is absent.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

import pytest
from atelier_host import find_comfyui, skip_unless_host_has
from browser_setup import EXAMPLE_IMAGE, WORKFLOWS, page_server, run_driver, workflow_sources

from atelier_core.image import geometry

RUN_TIMEOUT_S = 210
EXECUTE_TIMEOUT_S = 60  # the run itself: token counting and a 451x300 merge on the CPU take a few seconds

# The graph run from the page. The edited picture is the original with this box's channels rotated (RGB -> BRG).
ORIGINAL_NAME, EDITED_NAME = "atelier_original.png", "atelier_edited.png"
EDIT_BOX = (140, 90, 320, 210)  # x0, y0, x1, y1
PROMPT_INPUTS = {
    "mode": "describe",
    "template": "(none)",
    "subject": "fantasy knight",
    "custom_subject": "",
    "scale": "32 mm",
    "material": "acrylic",
    "technique": "wet blending",
    "light_direction": "side",
    "light_temperature": "warm golden",
    "light_quality": "soft",
    "camera": "macro 1:1",
    "focal_length": "100 mm macro",
    "aperture": "f/8",
    "depth_of_field": "shallow",
    "backdrop": "grey gradient",
    "base": "(none)",
    "part": "",
    "change_to": "",
    "text": "",
    "reference": 2,
    "keep": "everything else",
    "extra": "on a round resin base",
    "guidance": 2.5,
    "variants": 3,
    "vary": "lighting",
    "seed": 7,
}
MERGE_INPUTS = {
    "threshold": 6.0,
    "formula": "ciede2000",
    "auto_threshold": False,
    "min_area": 64,
    "grow": 6,
    "feather": 12,
    "blend": "poisson",
    "align": True,
    "match_color": True,
    "mask_mode": "add",
}
# Node ids of the run graph (strings, as in API prompts).
RUN_IDS = {
    "original": "1",
    "edited": "2",
    "merge": "3",
    "merged": "4",
    "mask_image": "5",
    "mask": "6",
    "report": "7",
    "builder": "8",
    "prompt": "9",
}


MISSING_GGUF = "flux1-kontext-dev-Q3_K_S.gguf"  # a transformer no test folder holds


def _missing_gguf_workflow(base: Path) -> dict:
    """kontext_edit_gguf asking for a GGUF transformer the server does not have: the frontend must name it."""
    graph = json.loads((WORKFLOWS / "kontext_edit_gguf.json").read_text())
    old = next(n for n in graph["nodes"] if n["type"] == "AtelierKontextLoader")["widgets_values"][0]
    text = json.dumps(graph).replace(old, MISSING_GGUF)
    path = base / "missing_gguf.json"
    path.write_text(text)
    return {"name": "missing_gguf", "path": str(path), "kind": "json", "lookFor": MISSING_GGUF}


def _run_images():
    """The run graph's two pictures as uint8 arrays: the example, and a copy with a clearly recoloured box."""
    import numpy as np
    from PIL import Image

    original = np.array(Image.open(EXAMPLE_IMAGE).convert("RGB"))
    edited = original.copy()
    x0, y0, x1, y1 = EDIT_BOX
    edited[y0:y1, x0:x1] = edited[y0:y1, x0:x1][..., [2, 0, 1]]
    return original, edited


def _run_prompt() -> dict:
    """The API prompt run from the page; it loads no model."""
    i = RUN_IDS
    nodes = {
        i["original"]: ("LoadImage", {"image": ORIGINAL_NAME}, "original"),
        i["edited"]: ("LoadImage", {"image": EDITED_NAME}, "edited"),
        i["merge"]: (
            "AtelierDiffMerge",
            {"original": [i["original"], 0], "edited": [i["edited"], 0], **MERGE_INPUTS},
            None,
        ),
        i["merged"]: ("PreviewImage", {"images": [i["merge"], 0]}, "merged"),
        i["mask_image"]: ("MaskToImage", {"mask": [i["merge"], 1]}, None),
        i["mask"]: ("PreviewImage", {"images": [i["mask_image"], 0]}, "hard mask"),
        i["report"]: ("PreviewAny", {"source": [i["merge"], 4]}, "diff-merge report"),
        i["builder"]: ("AtelierMiniaturePrompt", dict(PROMPT_INPUTS), None),
        i["prompt"]: ("PreviewAny", {"source": [i["builder"], 0]}, "assembled prompt"),
    }
    prompt = {}
    for nid, (class_type, inputs, title) in nodes.items():
        prompt[nid] = {"class_type": class_type, "inputs": inputs}
        if title:
            prompt[nid]["_meta"] = {"title": title}
    return prompt


@pytest.fixture(scope="module")
def browser_run(tmp_path_factory):
    """Start ComfyUI, load every workflow in Chromium once; returns the driver's report."""
    original, edited = _run_images()
    with page_server(tmp_path_factory, "browser_comfy", {ORIGINAL_NAME: original, EDITED_NAME: edited}) as (
        server,
        config,
    ):
        config.update(
            workflows=[{"name": name, "path": str(path), "kind": kind} for name, path, kind in workflow_sources()]
            + [_missing_gguf_workflow(server.base)],
            live={"size": "16:9", "fit": "pad"},
            run={
                "name": "executed",
                "prompt": _run_prompt(),
                "imageNodes": [RUN_IDS["merge"], RUN_IDS["merged"], RUN_IDS["mask"]],
                "views": {
                    "executed": None,
                    "executed_prompt": [RUN_IDS["builder"], RUN_IDS["prompt"]],
                    "executed_diffmerge": [RUN_IDS[k] for k in ("merge", "merged", "mask", "report")],
                },
                "widths": {RUN_IDS["report"]: 440, RUN_IDS["prompt"]: 440, RUN_IDS["builder"]: 520},
                "timeoutMs": EXECUTE_TIMEOUT_S * 1000,
            },
        )
        report = run_driver("check_workflows.mjs", config, server, RUN_TIMEOUT_S)
    out = Path(config["out"])
    (out / "report.json").write_text(json.dumps(report, indent=1))
    logging.getLogger(__name__).warning("browser screenshots: %s", out)
    report["by_name"] = {r["name"]: r for r in report["workflows"]}
    return report


def _canonical(prompt: dict) -> dict:
    """An API prompt with node ids replaced by names derived from the graph itself (class, title, inputs, links).

    Refined a few rounds like a Weisfeiler-Lehman hash, so nodes that differ only in what feeds them get apart.
    """

    def literal(node: dict) -> str:
        inputs = {k: _number(v) for k, v in node["inputs"].items() if not _is_link(v)}
        return json.dumps([node["class_type"], node.get("_meta", {}).get("title"), inputs], sort_keys=True)

    names = {nid: hashlib.sha1(literal(node).encode()).hexdigest()[:12] for nid, node in prompt.items()}
    for _ in range(4):
        names = {
            nid: hashlib.sha1(
                (
                    names[nid]
                    + json.dumps(
                        {k: [names.get(str(v[0]), "?"), v[1]] for k, v in node["inputs"].items() if _is_link(v)},
                        sort_keys=True,
                    )
                ).encode()
            ).hexdigest()[:12]
            for nid, node in prompt.items()
        }
    canonical = {}
    for nid, node in prompt.items():
        inputs = {
            k: ([names.get(str(v[0]), "?"), v[1]] if _is_link(v) else _number(v)) for k, v in node["inputs"].items()
        }
        canonical[names[nid]] = {
            "class_type": node["class_type"],
            "inputs": inputs,
            "title": node.get("_meta", {}).get("title"),
        }
    return canonical


def _number(value):
    """JavaScript has one number type: 1.0 in the API file is 1 in the browser's prompt (ComfyUI reads both)."""
    return int(value) if isinstance(value, float) and value.is_integer() else value


def _is_link(value) -> bool:
    return (
        isinstance(value, list) and len(value) == 2 and isinstance(value[0], (str, int)) and isinstance(value[1], int)
    )


def _api_file(name: str) -> Path:
    return WORKFLOWS / "api" / f"{name.removesuffix('.png')}.api.json"


@pytest.mark.parametrize("name", [name for name, _, _ in workflow_sources()])
def test_workflow_loads_and_matches_api_file(browser_run, name):
    if name.startswith("flux2_"):  # needs CLIPLoader type flux2 (ComfyUI 0.3.75+)
        root, _ = find_comfyui()
        source = (root / "comfy" / "latent_formats.py").read_text(errors="replace") if root else ""
        skip_unless_host_has("class Flux2(" in source, f"{name} needs FLUX.2 (ComfyUI 0.3.75+)")
    result = browser_run["by_name"][name]
    assert "error" not in result, result["error"]
    assert not result["missingTypes"], f"{name}: node types the server does not know: {result['missingTypes']}"
    assert not result["dialogs"], f"{name}: a dialog opened on load: {result['dialogs']}"
    assert not result["badCombos"], f"{name}: values the server would refuse: {result['badCombos']}"
    api = json.loads(_api_file(name).read_text())
    got, want = _canonical(result["output"]), _canonical(api)
    if got != want:
        only_ui = {v["title"] or v["class_type"]: v for k, v in got.items() if k not in want}
        only_api = {v["title"] or v["class_type"]: v for k, v in want.items() if k not in got}
        pytest.fail(f"{name}: graphToPrompt differs from {_api_file(name).name}:\nUI: {only_ui}\nAPI: {only_api}")
    assert Path(result["screenshot"]).stat().st_size > 10_000


@pytest.mark.parametrize("name", [name for name, _, kind in workflow_sources() if kind == "json"])
def test_workflow_canvas_shows_groups_without_overlaps(browser_run, name):
    """As the page drew it (the frontend's own node sizes): labelled groups holding every node, no two node boxes
    (title bar and the badge band above it) overlapping, each node at least the size the frontend computes for it,
    and the saved view showing every node on the canvas."""
    from workflows import layout

    result = browser_run["by_name"][name]
    assert "error" not in result, result["error"]
    drawn = result["layout"]
    assert len(drawn["groups"]) >= 3 and all(g["title"].strip() for g in drawn["groups"]), drawn["groups"]
    above = drawn["titleHeight"] + layout.BADGE
    boxes = {
        n["id"]: (n["pos"][0], n["pos"][1] - above, n["pos"][0] + n["size"][0], n["pos"][1] + n["size"][1])
        for n in drawn["nodes"]
    }
    ids = sorted(boxes)
    for i, a in enumerate(ids):
        for b in ids[i + 1 :]:
            x0, y0, x1, y1 = boxes[a]
            u0, v0, u1, v1 = boxes[b]
            assert not (x0 < u1 and u0 < x1 and y0 < v1 and v0 < y1), f"{name}: nodes {a} and {b} overlap on the page"
    for node in drawn["nodes"]:
        if node["minSize"]:
            assert node["size"][0] >= node["minSize"][0] - 1 and node["size"][1] >= node["minSize"][1] - 1, (
                f"{name}: {node['type']} #{node['id']} is {node['size']}, the frontend needs {node['minSize']}"
            )
    scale, (dx, dy) = drawn["ds"]["scale"], drawn["ds"]["offset"]
    width, height = drawn["canvas"]
    for node in drawn["nodes"]:
        x, y = (node["pos"][0] + dx) * scale, (node["pos"][1] - drawn["titleHeight"] + dy) * scale
        right, bottom = (node["pos"][0] + node["size"][0] + dx) * scale, (node["pos"][1] + node["size"][1] + dy) * scale
        assert 0 <= x and right <= width and 0 <= y and bottom <= height, f"{name}: node #{node['id']} is off screen"


def test_missing_gguf_transformer_is_named_on_load(browser_run):
    """The GGUF transformer is in the workflow's model metadata, so a missing one is named as the workflow opens
    (frontends 1.27-1.32: the missing-models dialog; js/models.js keeps it there because the server lacks it), while
    the shipped workflows with every file present open without a dialog (test above)."""
    result = browser_run["by_name"]["missing_gguf"]
    assert "error" not in result, result["error"]
    assert result["pageNames"], f"nothing on the page names {MISSING_GGUF}: dialogs {result['dialogs']}"


def test_no_page_errors(browser_run):
    assert not browser_run["errors"], browser_run["errors"]


def _python_plan(width: int, height: int, values: dict) -> geometry.Geometry:
    size = values["size"]
    mode = {
        "Kontext preferred (17 sizes)": "kontext",
        "keep input ratio": "keep",
        "FLUX.2 (input ratio, 128-ch latent)": "flux2",
        "Qwen-Image preferred (7 sizes)": "qwen",
        "custom W:H": f"{values['custom_width']}:{values['custom_height']}",
    }.get(size, size)
    size_by = {"long side": "long_side"}.get(values["size_by"], values["size_by"])
    return geometry.plan(
        width,
        height,
        mode,
        fit=values["fit"],
        anchor=values["anchor"],
        size_by=size_by,
        megapixels=values["megapixels"],
        long_side=values["long_side"],
    )


def test_aspect_lock_shows_python_target_for_loaded_picture(browser_run):
    """Each aspect lock fed by the 451x300 example shows the size and boxes Python plans for its settings."""
    from PIL import Image

    width, height = Image.open(EXAMPLE_IMAGE).size
    checked = 0
    for _, path, kind in workflow_sources():
        if kind != "json":
            continue
        api = json.loads(_api_file(path.stem).read_text())
        result = browser_run["by_name"][path.stem]
        locks = [w for w in result.get("widgets", []) if w["type"] == "AtelierAspectLock"]
        for lock in locks:
            values = api[str(lock["id"])]["inputs"] if str(lock["id"]) in api else None
            source = values and _is_link(values["image"]) and api[str(values["image"][0])]["class_type"]
            if source != "LoadImage":  # fed by a decode (a later turn): the size is known only after a run
                assert "input image" in lock["values"].get("atelier_aspect_preview", ""), lock
                continue
            assert lock["plan"], f"{path.stem}: the aspect lock shows no plan ({lock['values']})"
            text = lock["values"].get("atelier_aspect_preview", "")
            tw, th = lock["plan"]["target"]
            assert f"-> {tw}x{th}" in text, text
            if values is not None:
                g = _python_plan(width, height, values)
                assert lock["plan"]["target"] == list(g.target_size), path.stem
                assert lock["plan"]["crop"] == list(g.crop_box) and lock["plan"]["pad"] == list(g.pad_box)
                checked += 1
    assert checked, "no aspect lock with a matching API node was found in the workflows"

    live = browser_run["by_name"]["live"]
    g = geometry.plan(width, height, "16:9", fit="pad")
    assert live["plan"]["target"] == list(g.target_size), live
    assert live["plan"]["pad"] == list(g.pad_box), live
    assert f"{width}x{height} -> {g.target_width}x{g.target_height}" in live["text"]


def test_stitcher_shows_token_count(browser_run):
    from atelier_core.image import stitch

    stitchers = [
        w for r in browser_run["workflows"] for w in r.get("widgets", []) if w["type"] == "AtelierContextStitcher"
    ]
    if not stitchers:
        pytest.skip("no shipped workflow uses the Context Stitcher")
    for widget in stitchers:
        text = widget["values"].get("atelier_token_count", "")
        assert "tokens" in text or "pixel_stitch" in text, text
        if widget["tokens"] is not None:
            assert widget["tokens"] % stitch.tokens_for_pixels(1248, 832) == 0 or widget["tokens"] > 0


# --- the graph run from the page ---------------------------------------------------------------------------------


def _executed(browser_run) -> dict:
    """The run's report, failing with the server's own account when it did not run through."""
    run = browser_run["by_name"].get("executed")
    assert run is not None, "the browser driver did not report the executed graph"
    assert "error" not in run, f"running the graph from the page failed: {run['error']}"
    response = run.get("response") or {}
    body = response.get("body") or {}
    # ComfyUI runs the valid part of a prompt and answers 200 with node_errors for the rest: both are failures.
    if response.get("status") != 200 or not body.get("prompt_id") or body.get("node_errors"):
        pytest.fail(
            f"the server did not accept the queued prompt (HTTP {response.get('status')}): "
            f"{json.dumps(body.get('error'))[:1500]}\nnode errors: {json.dumps(body.get('node_errors'))[:3000]}"
        )
    finished = run.get("finished") or {}
    if finished.get("type") != "execution_success":
        # The server's account first (/history), the page's execution_error event when history has none.
        messages = ((run.get("history") or {}).get("status") or {}).get("messages") or []
        errors = [m[1] for m in messages if m[0] in ("execution_error", "execution_interrupted")]
        detail = errors[0] if errors else finished.get("detail") or {}
        pytest.fail(
            f"the graph did not run through: {run.get('timeout') or finished.get('type')}\n"
            f"node #{detail.get('node_id')} ({detail.get('node_type')}) {detail.get('exception_type', '')}: "
            f"{detail.get('exception_message')}\n{''.join(detail.get('traceback') or [])[-3000:]}\n"
            f"/history status: {[m[0] for m in messages]}\nexecuted before: {detail.get('executed')}\n"
            f"dialogs: {run.get('dialogs')}"
        )
    assert (run.get("status") or {}).get("status_str") == "success", run.get("status")
    return run


def _node(run: dict, key: str, view: str | None = None) -> dict:
    nodes = run["visible"][view] if view else run["nodes"]
    found = [n for n in nodes if n["id"] == RUN_IDS[key]]
    assert found, f"node {key} (#{RUN_IDS[key]}) is not on the canvas: {[n['id'] for n in nodes]}"
    return found[0]


def _text(node: dict, name: str) -> dict:
    # Preview Any's text box is "preview" up to frontend 1.3x, "preview_text" (a Vue component) in 1.4x.
    names = {name, "preview_text"} if name == "preview" else {name}
    found = [t for t in node["texts"] if t["name"] in names]
    assert found, f"{node['type']} #{node['id']} shows no '{name}' text box: {[t['name'] for t in node['texts']]}"
    return found[0]


def test_executed_graph_sent_what_it_loaded(browser_run):
    """The page queued the graph with the inputs the test defines (so the Python expectations below apply)."""
    run = _executed(browser_run)
    sent = run["sent"]
    builder_inputs = sent[RUN_IDS["builder"]]["inputs"]
    assert {k: builder_inputs.get(k) for k in PROMPT_INPUTS} == {k: _number(v) for k, v in PROMPT_INPUTS.items()}
    merge_inputs = sent[RUN_IDS["merge"]]["inputs"]
    assert {k: merge_inputs.get(k) for k in MERGE_INPUTS} == {k: _number(v) for k, v in MERGE_INPUTS.items()}
    executed = {e["detail"]["node"] for e in run["events"] if e["type"] == "executed"}
    wanted = {RUN_IDS[k] for k in ("merge", "merged", "mask", "report", "builder", "prompt")}
    assert wanted <= executed, f"no 'executed' event for nodes {sorted(wanted - executed)}: {run['events']}"


def _expected_prompt():
    from atelier_core.prompts import builder, vocabulary

    menus = {field: PROMPT_INPUTS[field] for field in builder.FIELD_SECTIONS}
    if PROMPT_INPUTS["custom_subject"].strip():
        menus["subject"] = PROMPT_INPUTS["custom_subject"]
    choices = builder.Choices(
        mode=PROMPT_INPUTS["mode"],
        part=PROMPT_INPUTS["part"],
        value=PROMPT_INPUTS["change_to"],
        text=PROMPT_INPUTS["text"],
        reference=str(PROMPT_INPUTS["reference"]),
        keep=PROMPT_INPUTS["keep"],
        extra=PROMPT_INPUTS["extra"],
        **menus,
    )
    loaded = vocabulary.load_vocabulary(None)  # the test server's user directory has no vocabulary file
    prompt = builder.build(choices, loaded.vocabulary)
    assert not prompt.warnings, prompt.warnings
    variants, warnings = builder.build_variants(
        choices, loaded.vocabulary, PROMPT_INPUTS["variants"], PROMPT_INPUTS["vary"], PROMPT_INPUTS["seed"]
    )
    assert not warnings, warnings
    return prompt.text, variants


def test_prompt_builder_shows_assembled_prompt_after_run(browser_run):
    run = _executed(browser_run)
    expected, variants = _expected_prompt()
    assert expected.startswith("Acrylic") and "on a round resin base" in expected, expected  # the inputs took effect

    report = _text(_node(run, "builder", "executed_prompt"), "atelier_report")
    assert report["value"] == report["shown"], "the report box shows another text than its widget holds"
    assert report["visible"], "the prompt builder's report box is not on screen in executed_prompt.png"
    shown = report["shown"].splitlines()
    assert shown[0] == expected, f"the prompt builder shows\n{shown[0]!r}\nPython builds\n{expected!r}"
    assert any(line.startswith("CLIP-L: ") and "T5-XXL: " in line for line in shown), report["shown"]
    assert f"{len(variants)} variants:" in shown, report["shown"]
    for n, variant in enumerate(variants, 1):
        assert f"{n}. {variant}" in shown, f"variant {n} missing:\n{report['shown']}"

    preview = _text(_node(run, "prompt", "executed_prompt"), "preview")
    assert preview["shown"] == expected, f"Preview Any of the prompt output shows {preview['shown']!r}"
    assert preview["visible"], "the Preview Any of the prompt is not on screen in executed_prompt.png"


def test_diff_merge_shows_previews_and_report_after_run(browser_run):
    import numpy as np

    from atelier_core.image import diffmerge

    run = _executed(browser_run)
    assert not run.get("previewTimeout"), "the image previews did not all load within 15 s"
    original, edited = _run_images()
    height, width = original.shape[:2]
    for key in ("merge", "merged", "mask"):
        node = _node(run, key, "executed_diffmerge")
        assert node["imgs"], f"{key} (#{node['id']} {node['type']}) shows no image after the run"
        assert node["imageIndex"] in (None, 0), node
        for img in node["imgs"]:
            assert img["complete"] and (img["width"], img["height"]) == (width, height), f"{key}: {img}"
            assert img["src"].startswith("/api/view?") or img["src"].startswith("/view?"), img
            assert "type=temp" in img["src"], img

    options = diffmerge.MergeOptions(
        **{k: v for k, v in MERGE_INPUTS.items() if k != "mask_mode"}, user_mask_mode=MERGE_INPUTS["mask_mode"]
    )
    result = diffmerge.diff_merge(original.astype(np.float32) / 255, edited.astype(np.float32) / 255, options)
    x0, y0, x1, y1 = EDIT_BOX
    assert result.hard_mask[y0:y1, x0:x1].mean() > 0.9, "Python's merge missed the recoloured box"
    expected = [line for line in diffmerge.format_report(result.report).splitlines() if not line.startswith("time:")]
    report = _text(_node(run, "report", "executed_diffmerge"), "preview")
    assert report["visible"], "the diff-merge report box is not on screen in executed_diffmerge.png"
    shown = [line for line in report["shown"].splitlines() if not line.startswith("time:")]
    assert shown == expected, "the diff-merge report on the canvas differs from Python's:\n" + report["shown"]


def test_executed_screenshots_are_pictures(browser_run):
    from PIL import Image

    run = _executed(browser_run)
    assert set(run["screenshots"]) == {"executed", "executed_prompt", "executed_diffmerge"}, run["screenshots"]
    for name, file in run["screenshots"].items():
        path = Path(file)
        assert path.is_file(), f"screenshot {name} was not saved: {path}"
        assert path.stat().st_size > 10_000, f"{path.name} is only {path.stat().st_size} bytes"
        with Image.open(path) as image:
            colours = image.convert("RGB").getcolors(maxcolors=1 << 16)
        assert colours is None or len(colours) > 256, f"{path.name} has only {len(colours)} colours"
