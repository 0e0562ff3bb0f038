// Kontext Atelier frontend extension (served by ComfyUI through WEB_DIRECTORY = "./js").
//
// Atelier nodes report what they did (the prompt they built, the crop they restored, the quantisation they found)
// as `text` in their UI output. ComfyUI passes that to `onExecuted`; this shows it in a read-only multiline box on
// the node, created on the first execution and updated on each later one. Only the frontend's public API: `app`
// and the node's addDOMWidget (scripts/widgets.js is internal from frontend 1.32 on).
import { app } from "../../scripts/app.js";

const PREFIX = "Atelier";
const WIDGET_NAME = "atelier_report"; // not an input name of any Atelier node, so it cannot shadow one

function showText(node, lines) {
  let widget = node.widgets?.find((w) => w.name === WIDGET_NAME);
  if (!widget) {
    const box = document.createElement("textarea");
    box.className = "comfy-multiline-input"; // the frontend's own text box style
    box.readOnly = true;
    box.style.opacity = 0.75;
    widget = node.addDOMWidget(WIDGET_NAME, "customtext", box, {
      getValue: () => box.value,
      setValue: (value) => {
        box.value = value;
      },
      getMinHeight: () => 60,
      serialize: false, // never sent as an input in the prompt
    });
    widget.serialize = false; // not saved in the workflow: it is output, not a setting
    widget.inputEl = box; // where core's text boxes keep their element
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
