// Kontext Miniature Prompt Builder: only the widgets of the chosen mode.
//
// describe mode reads the photograph's menus (scale, material, camera, lens), edit mode the edit's (template, part,
// change_to, text, base, reference, keep); the subject, technique, light, backdrop and the rest serve both (the
// lighting, backdrop and style-reference edits read them). The other mode's widgets are hidden, not removed: they
// keep their values, are saved and sent as before, and come back when the mode changes.
import { app } from "../../scripts/app.js";

export const DESCRIBE_ONLY = ["scale", "material", "camera", "focal_length", "aperture", "depth_of_field"];
export const EDIT_ONLY = ["template", "base", "part", "change_to", "text", "reference", "keep"];

/** The widget names a mode hides. */
export function hiddenFor(mode) {
  return mode === "edit" ? DESCRIBE_ONLY : mode === "describe" ? EDIT_ONLY : [];
}

function showModeWidgets(node) {
  const mode = node.widgets?.find((w) => w.name === "mode")?.value;
  const hidden = new Set(hiddenFor(mode));
  for (const widget of node.widgets ?? []) widget.hidden = hidden.has(widget.name);
  node.setSize?.([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "KontextAtelier.PromptBuilderModes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== "AtelierMiniaturePrompt") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      const mode = this.widgets?.find((w) => w.name === "mode");
      if (mode) {
        const callback = mode.callback;
        mode.callback = (...args) => {
          const returned = callback?.apply(mode, args);
          showModeWidgets(this);
          return returned;
        };
      }
      showModeWidgets(this);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      showModeWidgets(this); // a loaded workflow: its saved mode is set now
      return result;
    };
  },
});
