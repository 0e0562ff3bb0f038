// Kontext Atelier: GGUF model files in ComfyUI's missing-models check.
//
// The shipped workflows list every file they load (GGUF included) in each loader's `properties.models` and in the
// workflow's `models`, so the missing-models dialog names the file, its folder and its download address. Frontends
// 1.27-1.32 (ComfyUI 0.3.64-0.3.75) decide "missing" by looking the name up in /experiment/models/<folder>, which
// lists only .safetensors/.ckpt/.pt/... files, never a .gguf: a GGUF would always be reported missing. Before the
// frontend checks (beforeConfigureGraph runs first), this asks the server which GGUF files our loaders can see
// (/models/<key> lists a folder key with its own extensions) and drops those from the workflow's model metadata;
// a GGUF that is really missing stays listed. Newer frontends check the loader's combo instead; dropping a file
// that is present changes nothing there.
import { api } from "../../scripts/api.js";
import { app } from "../../scripts/app.js";

// The folder keys our loaders register (nodes/loader.py, nodes/text_encoder.py) per ComfyUI model folder.
const GGUF_KEYS = { diffusion_models: "kontext_atelier_transformers", text_encoders: "kontext_atelier_text_encoders" };

async function listed(key) {
  try {
    const response = await api.fetchApi(`/models/${key}`);
    return response.ok ? new Set(await response.json()) : new Set();
  } catch {
    return new Set(); // the check is only a courtesy: without an answer, the frontend's own check stands
  }
}

/** Remove from `models` every GGUF entry the server has; returns the kept list. */
export function withoutPresent(models, present) {
  return models.filter((m) => !(m?.name?.toLowerCase().endsWith(".gguf") && present[m.directory]?.has(m.name)));
}

export async function dropPresentGguf(graphData) {
  const nodes = [...(graphData?.nodes ?? []), ...(graphData?.definitions?.subgraphs ?? []).flatMap((s) => s.nodes ?? [])];
  const entries = [...(graphData?.models ?? []), ...nodes.flatMap((n) => n.properties?.models ?? [])];
  const folders = new Set(entries.filter((m) => m?.name?.toLowerCase().endsWith(".gguf")).map((m) => m.directory));
  if (!folders.size) return;
  const present = {};
  for (const folder of folders) if (GGUF_KEYS[folder]) present[folder] = await listed(GGUF_KEYS[folder]);
  if (Array.isArray(graphData.models)) graphData.models = withoutPresent(graphData.models, present);
  for (const node of nodes) {
    if (Array.isArray(node.properties?.models)) node.properties.models = withoutPresent(node.properties.models, present);
  }
}

app.registerExtension({
  name: "KontextAtelier.GgufModels",
  async beforeConfigureGraph(graphData) {
    await dropPresentGguf(graphData);
  },
});
