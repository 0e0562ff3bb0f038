// Kontext Context Stitcher, live on the canvas: the reference token count (what every sampling step pays for) as
// references, weights, sizing and budget change.
//
// A port of atelier_core/stitch.py's sizing for the `offset` and `index` position methods (tested against
// `stitch.plan_references` by tests/test_js_geometry.py). Image sizes come from the Load Image nodes feeding the
// references; a reference whose size is not known yet is named, not guessed. After a run, the node's report (shown
// by atelier.js) gives the exact plan, pixel_stitch included.
import { app } from "../../scripts/app.js";
import { nearestKontextResolution, upstreamImageSize } from "./aspect_lock.js";

const TOKEN_PIXELS = 16;
const MAX_REFERENCES = 8;
const MAX_RATIO = 4.0;
const KEEP_MAX_TOKENS = (1536 * 1536) / (TOKEN_PIXELS * TOKEN_PIXELS);

export function tokensForPixels(width, height) {
  return Math.ceil(width / TOKEN_PIXELS) * Math.ceil(height / TOKEN_PIXELS);
}

function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff !== 0.5) return diff > 0.5 ? floor + 1 : floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

export function budgetSize(width, height, tokens) {
  const ratio = Math.min(Math.max(width / height, 1.0 / MAX_RATIO), MAX_RATIO);
  const own = Math.max(1, pyRound(width / TOKEN_PIXELS)) * Math.max(1, pyRound(height / TOKEN_PIXELS));
  const cap = Math.max(1, Math.min(tokens, own));
  let best = null;
  const rowsMax = Math.max(1, Math.floor(Math.sqrt(cap * 4)) + 1);
  for (let rows = 1; rows <= Math.min(cap, rowsMax); rows++) {
    const ideal = rows * ratio;
    for (const start of new Set([Math.max(1, Math.floor(ideal)), Math.max(1, Math.ceil(ideal))])) {
      let cols = start;
      if (cols * rows > cap) {
        cols = Math.floor(cap / rows);
        if (cols < 1) continue;
      }
      const cost = Math.abs(Math.log(cols / rows / ratio)) + 0.1 * (1 - (cols * rows) / cap);
      if (best === null || cost < best[0] - 1e-12) best = [cost, cols, rows];
    }
  }
  return [best[1] * TOKEN_PIXELS, best[2] * TOKEN_PIXELS];
}

export function keepSize(width, height) {
  const cols = Math.max(1, pyRound(width / TOKEN_PIXELS));
  const rows = Math.max(1, pyRound(height / TOKEN_PIXELS));
  if (cols * rows <= KEEP_MAX_TOKENS) {
    return [Math.max(16, pyRound(width / 16) * 16), Math.max(16, pyRound(height / 16) * 16)];
  }
  return budgetSize(width, height, KEEP_MAX_TOKENS);
}

/**
 * References as [{slot, size: [w, h] | null, weight}] -> {tokens, parts, unknown} for offset/index layouts;
 * tokens is null when a size is unknown (those slots are listed in `unknown`).
 */
export function planTokens(references, sizing = "bucket", tokenBudget = 4096) {
  const active = references.filter((r) => r.weight > 0);
  const share = Math.max(1, Math.floor(tokenBudget / Math.max(1, active.length)));
  const parts = [];
  const unknown = [];
  for (const ref of active) {
    if (!ref.size) {
      unknown.push(ref.slot);
      continue;
    }
    const [w, h] = ref.size;
    const size =
      sizing === "bucket" ? nearestKontextResolution(w, h) : sizing === "keep" ? keepSize(w, h) : budgetSize(w, h, share);
    parts.push({ slot: ref.slot, size, tokens: tokensForPixels(...size), weight: ref.weight });
  }
  const tokens = unknown.length ? null : parts.reduce((sum, p) => sum + p.tokens, 0);
  return { tokens, parts, unknown };
}

const WIDGET_NAME = "atelier_token_count";

function widgetValue(node, name, fallback) {
  const widget = node.widgets?.find((w) => w.name === name);
  return widget === undefined ? fallback : widget.value;
}

/** The node's current references and the text shown for them. */
export function nodeTokens(node) {
  const references = [];
  for (let slot = 1; slot <= MAX_REFERENCES; slot++) {
    const input = node.inputs?.find((i) => i.name === `image_${slot}`);
    if (!input || input.link == null) continue;
    references.push({ slot, size: upstreamImageSize(node, `image_${slot}`), weight: Number(widgetValue(node, `weight_${slot}`, 1)) });
  }
  const method = widgetValue(node, "position_method", "offset");
  if (!references.length) return { tokens: null, text: "no reference connected" };
  if (method === "pixel_stitch") return { tokens: null, text: "pixel_stitch: token count shown after a run" };
  const sizing = widgetValue(node, "sizing", "bucket");
  const plan = planTokens(references, sizing, Number(widgetValue(node, "token_budget", 4096)));
  if (!plan.parts.length && !plan.unknown.length) return { tokens: 0, text: "every weight is 0: no tokens" };
  const listed = plan.parts.map((p) => `#${p.slot} ${p.size[0]}x${p.size[1]}`).join(", ");
  if (plan.tokens === null) {
    const missing = plan.unknown.map((s) => `#${s}`).join(", ");
    return { tokens: null, text: `size of ${missing} not known yet${listed ? `; ${listed}` : ""}` };
  }
  return { tokens: plan.tokens, text: `${plan.tokens} reference tokens: ${listed}` };
}

function addTokenWidget(node) {
  node.addCustomWidget({
    name: WIDGET_NAME,
    type: "atelier_token_count",
    value: "",
    serialize: false,
    options: { serialize: false },
    computeSize(width) {
      return [width, 24];
    },
    atelierRefresh(node) {
      const { tokens, text } = nodeTokens(node);
      this.value = text;
      node.atelierTokens = tokens;
      return { tokens, text };
    },
    draw(ctx, node, widgetWidth, y) {
      const { tokens, text } = this.atelierRefresh(node);
      ctx.save();
      ctx.fillStyle = tokens !== null && tokens > 8192 ? "#e9a" : "#bbb"; // warn past two 1 MP references
      ctx.font = "12px sans-serif";
      ctx.textAlign = "left";
      ctx.fillText(text.length > 75 ? text.slice(0, 74) + "…" : text, 10, y + 16);
      ctx.restore();
    },
  });
}

/**
 * The reference slots to show: every connected image_N and the first free one after the last connected (image_1 and
 * image_2 at least), each with its weight; the rest are hidden until the one before them is connected.
 */
export function shownSlots(connected) {
  const last = connected.length ? Math.max(...connected) : 1;
  return Math.min(MAX_REFERENCES, Math.max(2, last + 1));
}

// Sockets are removed (litegraph has no hidden input) and added back in order; weights are hidden. Hidden weights
// keep their values and are still sent, so the prompt is the same as with every slot shown.
function showConnectedSlots(node) {
  if (!node.inputs) return;
  const connected = [];
  for (let slot = 1; slot <= MAX_REFERENCES; slot++) {
    if (node.inputs.find((i) => i.name === `image_${slot}`)?.link != null) connected.push(slot);
  }
  const shown = shownSlots(connected);
  for (let slot = MAX_REFERENCES; slot >= 1; slot--) {
    const index = node.inputs.findIndex((i) => i.name === `image_${slot}`);
    if (slot > shown && index >= 0 && node.inputs[index].link == null) node.removeInput(index);
  }
  for (let slot = 1; slot <= shown; slot++) {
    if (!node.inputs.some((i) => i.name === `image_${slot}`)) node.addInput(`image_${slot}`, "IMAGE", { shape: 7 });
  }
  for (const widget of node.widgets ?? []) {
    const match = /^weight_(\d+)$/.exec(widget.name ?? "");
    if (match) widget.hidden = Number(match[1]) > shown;
  }
  node.setSize?.([node.size[0], node.computeSize()[1]]);
  node.setDirtyCanvas?.(true, true);
}

app.registerExtension({
  name: "KontextAtelier.StitcherTokens",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== "AtelierContextStitcher") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addTokenWidget(this);
      showConnectedSlots(this);
      return result;
    };
    const onConfigure = nodeType.prototype.onConfigure;
    nodeType.prototype.onConfigure = function () {
      const result = onConfigure?.apply(this, arguments);
      showConnectedSlots(this); // a loaded workflow: its links are in place now
      return result;
    };
    const onConnectionsChange = nodeType.prototype.onConnectionsChange;
    nodeType.prototype.onConnectionsChange = function (type, index, connected, link, slot) {
      const result = onConnectionsChange?.apply(this, arguments);
      if (slot?.name?.startsWith("image_")) queueMicrotask(() => showConnectedSlots(this)); // after litegraph is done
      return result;
    };
  },
});
