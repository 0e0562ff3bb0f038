"""js/atelier.js and js/models.js against stand-ins of the frontend's public API, run by Node.

The stand-ins give ``app.registerExtension``, ``api.fetchApi`` and a node's ``addDOMWidget`` the shapes the ComfyUI
frontend has; the test then plays what the frontend does: register the node types, execute a node twice, look at
the widget; load a workflow whose GGUF files the server has or lacks.
"""

from __future__ import annotations

import json
import shutil
import subprocess

import pytest
from atelier_host import PACK_DIR

APP_STUB = """
export const registered = [];
export const app = { registerExtension(ext) { registered.push(ext); } };
"""
DRIVER = """
import { registered } from "./scripts/app.js";
globalThis.document = { createElement: (tag) => ({ tag, value: "", readOnly: false, style: {} }) };
await import("./extensions/kontext-atelier/atelier.js");
const ext = registered[0];
const result = { name: ext.name };
function makeType() {
  function Node() { this.size = [200, 80]; }
  Node.prototype.computeSize = function () { return [200, 160]; };
  Node.prototype.setSize = function (s) { this.size = s; };
  Node.prototype.setDirtyCanvas = function () {};
  Node.prototype.onExecuted = function (m) { this.previous = m; };
  Node.prototype.addDOMWidget = function (name, type, element, options) {
    const widget = { name, type, element, options,
      get value() { return options.getValue(); }, set value(v) { options.setValue(v); } };
    this.widgets = this.widgets || [];
    this.widgets.push(widget);
    return widget;
  };
  return Node;
}
const Ours = makeType(), Theirs = makeType();
await ext.beforeRegisterNodeDef(Ours, { name: "AtelierKontextPromptBuilder" });
await ext.beforeRegisterNodeDef(Theirs, { name: "KSampler" });
const node = new Ours();
node.onExecuted({ text: ["first line", "second line"] });
node.onExecuted({ text: ["updated"] });
const other = new Theirs();
other.onExecuted({ text: ["ignored"] });
const silent = new Ours();
silent.onExecuted({ images: [] });
result.widgets = node.widgets.map((w) => ({ name: w.name, value: w.value, readOnly: w.inputEl.readOnly,
  serialize: w.serialize, optionsSerialize: w.options.serialize, multiline: w.element.tag === "textarea" }));
result.size = node.size;
result.chained = node.previous;
result.otherWidgets = other.widgets ? other.widgets.length : 0;
result.silentWidgets = silent.widgets ? silent.widgets.length : 0;
console.log(JSON.stringify(result));
"""


def _run_extension(tmp_path, script: str, driver: str, stubs: dict[str, str]) -> dict:
    """Run ``driver`` with js/``script`` where the frontend serves extensions and ``stubs`` as its scripts/ modules;
    return the JSON the driver prints last."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the frontend extension test needs Node.js")
    (tmp_path / "scripts").mkdir()
    for name, text in stubs.items():
        (tmp_path / "scripts" / name).write_text(text)
    ours = tmp_path / "extensions" / "kontext-atelier"
    ours.mkdir(parents=True)
    shutil.copy(PACK_DIR / "js" / script, ours / script)
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    (tmp_path / "driver.js").write_text(driver)
    run = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_executed_text_shows_in_one_read_only_widget(tmp_path):
    result = _run_extension(tmp_path, "atelier.js", DRIVER, {"app.js": APP_STUB})
    assert result["widgets"] == [
        {
            "name": "atelier_report",
            "value": "updated",
            "readOnly": True,
            "serialize": False,
            "optionsSerialize": False,
            "multiline": True,
        }
    ]
    assert result["size"] == [200, 160], "the node grows to show the text"
    assert result["chained"] == {"text": ["updated"]}, "an earlier onExecuted still runs"
    assert result["otherWidgets"] == 0, "nodes of other packs are left alone"
    assert result["silentWidgets"] == 0, "no widget until there is text to show"


API_STUB = """
export const api = {
  routes: [],
  async fetchApi(route) {
    this.routes.push(route);
    const files = { "/models/kontext_atelier_transformers": ["flux1-kontext-dev-Q4_K_M.gguf"],
                    "/models/kontext_atelier_text_encoders": [] };
    return { ok: route in files, json: async () => files[route] };
  },
};
"""
MODELS_DRIVER = """
import { registered } from "./scripts/app.js";
import { api } from "./scripts/api.js";
await import("./extensions/kontext-atelier/models.js");
const ext = registered[0];
const model = (name, directory) => ({ name, directory, url: `https://huggingface.co/x/resolve/main/${name}` });
const graph = {
  nodes: [
    { type: "AtelierKontextLoader", properties: { models: [model("flux1-kontext-dev-Q4_K_M.gguf", "diffusion_models")] } },
    { type: "AtelierKontextTextEncoders", properties: { models: [model("clip_l.safetensors", "text_encoders"),
      model("t5-v1_1-xxl-encoder-Q5_K_M.gguf", "text_encoders")] } },
    { type: "VAELoader", properties: {} },
  ],
  models: [model("flux1-kontext-dev-Q4_K_M.gguf", "diffusion_models"), model("ae.safetensors", "vae"),
    model("t5-v1_1-xxl-encoder-Q5_K_M.gguf", "text_encoders")],
};
await ext.beforeConfigureGraph(graph, []);
console.log(JSON.stringify({ name: ext.name, graph, routes: api.routes }));
"""


def test_models_extension_drops_only_gguf_files_the_server_has(tmp_path):
    """A GGUF the server lists is taken out of the metadata the old frontends check by folder listing (which never
    lists .gguf); a missing GGUF and every .safetensors stay for the missing-models dialog."""
    result = _run_extension(tmp_path, "models.js", MODELS_DRIVER, {"app.js": APP_STUB, "api.js": API_STUB})
    graph = result["graph"]
    names = [[m["name"] for m in n["properties"].get("models", [])] for n in graph["nodes"]]
    assert names == [[], ["clip_l.safetensors", "t5-v1_1-xxl-encoder-Q5_K_M.gguf"], []]
    assert [m["name"] for m in graph["models"]] == ["ae.safetensors", "t5-v1_1-xxl-encoder-Q5_K_M.gguf"]
    assert sorted(result["routes"]) == ["/models/kontext_atelier_text_encoders", "/models/kontext_atelier_transformers"]


def test_extension_imports_only_the_public_frontend_api():
    """Frontend 1.32+ warns that scripts/widgets.js (and every scripts/ module but app.js, api.js, ui.js) is
    internal; our files import only the public ones and each other."""
    import re

    public = {"../../scripts/app.js", "../../scripts/api.js"}
    for path in sorted((PACK_DIR / "js").glob("*.js")):
        imported = set(re.findall(r'^import .* from "([^"]+)";', path.read_text(), flags=re.M))
        internal = {m for m in imported if not m.startswith("./")} - public
        assert not internal, f"{path.name} imports {sorted(internal)}"
