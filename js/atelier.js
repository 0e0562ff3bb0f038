// Kontext Atelier frontend extension (served by ComfyUI through WEB_DIRECTORY = "./js").
//
// Atelier nodes report what they did (the prompt they built, the crop they restored, the quantisation they found)
// as `text` in their UI output. ComfyUI passes that to `onExecuted`; this shows it in a read-only multiline box on
// the node, created on the first execution and updated on each later one. No other behaviour, no dependencies.
import { app } from "../../scripts/app.js";
import { ComfyWidgets } from "../../scripts/widgets.js";

const PREFIX = "Atelier";
const WIDGET_NAME = "atelier_report"; // not an input name of any Atelier node, so it cannot shadow one

function showText(node, lines) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (!widget) {
    widget = ComfyWidgets.STRING(node, WIDGET_NAME, ["STRING", { multiline: true }], app).widget;
    widget.serialize = false; // not saved in the workflow: it is output, not a setting
    widget.options = { ...widget.options, serialize: false }; // and never sent as an input in the prompt
    if (widget.inputEl) {
      widget.inputEl.readOnly = true;
      widget.inputEl.style.opacity = 0.75;
    }
  }
  widget.value = lines.join("\n");
  node.setSize?.([node.size[0], Math.max(node.size[1], node.computeSize()[1])]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "KontextAtelier.ShowText",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (!nodeData?.name?.startsWith(PREFIX)) return;
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text;
      if (text == null) return;
      showText(this, (Array.isArray(text) ? text : [text]).map(String));
    };
  },
});
