"""js/atelier.js against stand-ins of the two frontend modules it imports, run by Node.

The stand-ins give ``app.registerExtension`` and ``ComfyWidgets.STRING`` the shapes the ComfyUI frontend has; the
test then plays what the frontend does: register the node types, execute a node twice, look at the widget.
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
WIDGETS_STUB = """
export const ComfyWidgets = {
  STRING(node, name, spec, app) {
    const widget = { name, value: "", options: {}, inputEl: { readOnly: false, style: {} }, spec };
    node.widgets = node.widgets || [];
    node.widgets.push(widget);
    return { widget };
  },
};
"""
DRIVER = """
import { registered } from "./scripts/app.js";
await import("./extensions/kontext-atelier/atelier.js");
const ext = registered[0];
const result = { name: ext.name };
function makeType() {
  function Node() { this.size = [200, 80]; }
  Node.prototype.computeSize = function () { return [200, 160]; };
  Node.prototype.setSize = function (s) { this.size = s; };
  Node.prototype.setDirtyCanvas = function () {};
  Node.prototype.onExecuted = function (m) { this.previous = m; };
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
  serialize: w.serialize, optionsSerialize: w.options.serialize, multiline: w.spec[1].multiline }));
result.size = node.size;
result.chained = node.previous;
result.otherWidgets = other.widgets ? other.widgets.length : 0;
result.silentWidgets = silent.widgets ? silent.widgets.length : 0;
console.log(JSON.stringify(result));
"""


def test_executed_text_shows_in_one_read_only_widget(tmp_path):
    node = shutil.which("node")
    if node is None:
        pytest.skip("no node on PATH: the frontend extension test needs Node.js")
    (tmp_path / "scripts").mkdir()
    (tmp_path / "scripts" / "app.js").write_text(APP_STUB)
    (tmp_path / "scripts" / "widgets.js").write_text(WIDGETS_STUB)
    ours = tmp_path / "extensions" / "kontext-atelier"
    ours.mkdir(parents=True)
    shutil.copy(PACK_DIR / "js" / "atelier.js", ours / "atelier.js")
    (tmp_path / "package.json").write_text(json.dumps({"type": "module"}))
    (tmp_path / "driver.js").write_text(DRIVER)
    run = subprocess.run([node, "driver.js"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    result = json.loads(run.stdout.strip().splitlines()[-1])
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
