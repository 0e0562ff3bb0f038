// Kontext Aspect-Ratio Lock, live on the canvas: the target size (and the crop or padding) as the widgets change.
//
// The arithmetic is a port of atelier_core/geometry.py `plan()` (sizes and boxes only; no pixels), kept in step with
// it by tests/test_js_geometry.py, which compares this file's `planGeometry` with Python's `geometry.plan` on a
// table of inputs. The input image's size comes from the Load Image node feeding the lock (its preview picture);
// without one, ratio modes still show their target size, which does not depend on the input.
import { app } from "../../scripts/app.js";

export const KONTEXT_RESOLUTIONS = [
  [672, 1568], [688, 1504], [720, 1456], [752, 1392], [800, 1328], [832, 1248], [880, 1184], [944, 1104],
  [1024, 1024],
  [1104, 944], [1184, 880], [1248, 832], [1328, 800], [1392, 752], [1456, 720], [1504, 688], [1568, 672],
];
// Qwen-Image's seven sizes (atelier_core/model_families.py QWEN_IMAGE_RESOLUTIONS, from the Qwen-Image README).
export const QWEN_IMAGE_RESOLUTIONS = [
  [928, 1664], [1056, 1584], [1104, 1472], [1328, 1328], [1472, 1104], [1584, 1056], [1664, 928],
];
const MULTIPLE = 16;
const MEGAPIXEL = 1024 * 1024;
const MAX_TARGET_AREA = 1536 * 1536;
const MAX_RATIO = 4.0;
const ANCHOR_FRACTIONS = {
  center: [0.5, 0.5], top: [0.5, 0.0], bottom: [0.5, 1.0], left: [0.0, 0.5], right: [1.0, 0.5],
  "top-left": [0.0, 0.0], "top-right": [1.0, 0.0], "bottom-left": [0.0, 1.0], "bottom-right": [1.0, 1.0],
};

// The node's "size" combo (nodes/aspect.py SIZE_OPTIONS) -> geometry mode, as nodes/aspect.py `_mode` maps it.
const SIZE_KONTEXT = "Kontext preferred (17 sizes)";
const SIZE_KEEP = "keep input ratio";
const SIZE_CUSTOM = "custom W:H";
const SIZE_MODELS = { "FLUX.2 (input ratio, 128-ch latent)": "flux2", "Qwen-Image preferred (7 sizes)": "qwen" };
const SIZE_BY = { megapixels: "megapixels", "long side": "long_side" };

/** Python's round(): halves go to the even neighbour (JS Math.round sends them up). */
export function pyRound(x) {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) return floor + 1;
  if (diff < 0.5) return floor;
  return floor % 2 === 0 ? floor : floor + 1;
}

/** Lexicographic minimum of arrays of numbers, as Python's min() over tuples. */
function minTuple(items) {
  let best = null;
  for (const item of items) {
    if (best === null) { best = item; continue; }
    for (let i = 0; i < item.length; i++) {
      if (item[i] < best[i]) { best = item; break; }
      if (item[i] > best[i]) break;
    }
  }
  return best;
}

export function nearestKontextResolution(width, height, sizes = KONTEXT_RESOLUTIONS) {
  const aspect = width / height;
  const [, w, h] = minTuple(sizes.map(([rw, rh]) => [Math.abs(aspect - rw / rh), rw, rh]));
  return [w, h];
}

function round16(value) {
  return Math.max(MULTIPLE, Math.trunc(pyRound(value / MULTIPLE)) * MULTIPLE);
}

export function targetForRatio(ratio, sizeBy = "megapixels", megapixels = 1.0, longSide = 1024) {
  const stretch = Math.max(ratio, 1.0 / ratio);
  let long, short;
  if (sizeBy === "megapixels") {
    const area = Math.min(megapixels * MEGAPIXEL, MAX_TARGET_AREA);
    const nearest = round16(Math.sqrt(area / stretch));
    const candidates = [];
    for (const s of [nearest - MULTIPLE, nearest, nearest + MULTIPLE]) {
      const l = round16(s * stretch);
      if (s >= MULTIPLE && l * s <= MAX_TARGET_AREA) {
        const cost = Math.abs(l / s / stretch - 1) + 0.1 * Math.abs((l * s) / area - 1);
        candidates.push([cost, l, s]);
      }
    }
    if (candidates.length === 0) {
      let s = nearest;
      let l = round16(s * stretch);
      while (l * s > MAX_TARGET_AREA) {
        s -= MULTIPLE;
        l = round16(s * stretch);
      }
      candidates.push([0.0, l, s]);
    }
    [, long, short] = minTuple(candidates);
  } else if (sizeBy === "long_side") {
    long = round16(longSide);
    short = round16(long / stretch);
    while (long * short > MAX_TARGET_AREA) {
      long -= MULTIPLE;
      short = round16(long / stretch);
    }
  } else {
    throw new Error(`unknown size_by ${sizeBy}`);
  }
  return ratio >= 1.0 ? [long, short] : [short, long];
}

/** "16:9", "16x9", "16/9" or a plain number -> width / height; null when it cannot be read. */
export function parseRatio(text) {
  const cleaned = String(text).trim().toLowerCase().replace(/x/g, ":").replace(/\//g, ":");
  const parts = cleaned.includes(":") ? cleaned.split(":") : [cleaned, "1"];
  if (parts.length !== 2 || parts.some((p) => p.trim() === "")) return null;
  const [a, b] = parts.map(Number);
  if (!(a > 0 && b > 0 && Number.isFinite(a) && Number.isFinite(b))) return null;
  return a / b;
}

function isClose(a, b, relTol) {
  return Math.abs(a - b) <= relTol * Math.max(Math.abs(a), Math.abs(b));
}

function cropBox(width, height, targetRatio, anchor) {
  const [fx, fy] = ANCHOR_FRACTIONS[anchor];
  const aspect = width / height;
  if (isClose(aspect, targetRatio, 1e-12)) return [0, 0, width, height];
  if (aspect > targetRatio) {
    const ideal = height * targetRatio;
    if (fx === 0.5) {
      const margin = Math.min(pyRound((width - ideal) / 2), Math.floor((width - 1) / 2));
      return [margin, 0, width - 2 * margin, height];
    }
    const cw = Math.min(width, Math.max(1, pyRound(ideal)));
    return [pyRound((width - cw) * fx), 0, cw, height];
  }
  const ideal = width / targetRatio;
  if (fy === 0.5) {
    const margin = Math.min(pyRound((height - ideal) / 2), Math.floor((height - 1) / 2));
    return [0, margin, width, height - 2 * margin];
  }
  const ch = Math.min(height, Math.max(1, pyRound(ideal)));
  return [0, pyRound((height - ch) * fy), width, ch];
}

function fitInside(width, height, tw, th) {
  if (width * th >= height * tw) return [tw, Math.min(th, Math.max(1, pyRound((tw * height) / width)))];
  return [Math.min(tw, Math.max(1, pyRound((th * width) / height))), th];
}

/**
 * geometry.plan() without pixels: {original, crop, resized, pad, target, requested} for a width x height image.
 * `mode` is "kontext", "keep" or a ratio "W:H"; width/height may be null for ratio modes (then only `target`).
 * Throws an Error with a short message for input the Python side refuses.
 */
export function planGeometry(width, height, mode = "kontext", options = {}) {
  const { fit = "crop", anchor = "center", sizeBy = "megapixels", megapixels = 1.0, longSide = 1024 } = options;
  const known = width > 0 && height > 0;
  mode = String(mode).trim().toLowerCase();
  let tw, th, requested;
  if (mode === "kontext" || mode === "qwen") {
    if (!known) return null;
    [tw, th] = nearestKontextResolution(width, height, mode === "qwen" ? QWEN_IMAGE_RESOLUTIONS : KONTEXT_RESOLUTIONS);
    requested = tw / th;
  } else {
    const own = mode === "keep" || mode === "flux2"; // FLUX.2 has no size list: the input's ratio at the set size
    if (own && !known) return null;
    requested = own ? width / height : parseRatio(mode);
    if (requested === null) throw new Error(`cannot read the ratio ${mode}; write it as W:H`);
    requested = Math.min(Math.max(requested, 1.0 / MAX_RATIO), MAX_RATIO);
    [tw, th] = targetForRatio(requested, sizeBy, megapixels, longSide);
  }
  const result = { target: [tw, th], requested, fit, anchor };
  if (!known) return result;
  result.original = [width, height];
  if (fit === "crop") {
    result.crop = cropBox(width, height, tw / th, anchor);
    result.resized = [tw, th];
    result.pad = [0, 0, tw, th];
  } else if (fit === "pad") {
    result.crop = [0, 0, width, height];
    result.resized = fitInside(width, height, tw, th);
    const [fx, fy] = ANCHOR_FRACTIONS[anchor];
    result.pad = [pyRound((tw - result.resized[0]) * fx), pyRound((th - result.resized[1]) * fy), ...result.resized];
  } else {
    result.crop = [0, 0, width, height];
    result.resized = [tw, th];
    result.pad = [0, 0, tw, th];
  }
  return result;
}

/** One line, in the words of Geometry.describe(). */
export function describePlan(plan) {
  if (!plan.original) return `-> ${plan.target[0]}x${plan.target[1]} (any input)`;
  const [ow, oh] = plan.original;
  const parts = [`${ow}x${oh} -> ${plan.target[0]}x${plan.target[1]}`];
  const [cx, cy, cw, ch] = plan.crop;
  if (cx !== 0 || cy !== 0 || cw !== ow || ch !== oh) parts.push(`crop ${cw}x${ch} at (${cx},${cy})`);
  const [px, py, pw, ph] = plan.pad;
  if (px !== 0 || py !== 0 || pw !== plan.target[0] || ph !== plan.target[1]) {
    parts.push(`content ${pw}x${ph} at (${px},${py}), padded`);
  }
  return parts.join("; ");
}

// -- canvas -----------------------------------------------------------------------------------------------------------

const PREVIEW_NAME = "atelier_aspect_preview"; // not an input name: it never shadows one
const PREVIEW_HEIGHT = 92;

function widgetValue(node, name, fallback) {
  const widget = node.widgets?.find((w) => w.name === name);
  return widget === undefined ? fallback : widget.value;
}

/** The pixel size of the picture feeding `inputName`, when a Load Image (or anything with a preview) feeds it. */
export function upstreamImageSize(node, inputName) {
  const slot = node.inputs?.findIndex((input) => input.name === inputName) ?? -1;
  if (slot < 0 || node.inputs[slot].link == null) return null;
  const source = node.getInputNode?.(slot);
  if (source?.type === "AtelierAspectLock" && (node.getInputLink?.(slot)?.origin_slot ?? 0) === 0) {
    return nodePlan(source).plan?.target ?? null; // a lock's image output is its target size
  }
  const img = source?.imgs?.[0];
  if (img?.naturalWidth > 0 && img?.naturalHeight > 0) return [img.naturalWidth, img.naturalHeight];
  return null;
}

function modeOf(node) {
  const size = widgetValue(node, "size", SIZE_KONTEXT);
  if (size === SIZE_KONTEXT) return "kontext";
  if (size === SIZE_KEEP) return "keep";
  if (size === SIZE_CUSTOM) return `${widgetValue(node, "custom_width", 3)}:${widgetValue(node, "custom_height", 2)}`;
  return SIZE_MODELS[size] ?? size;
}

/** Plan from the node's current widgets; {plan, text} (plan null with an explanation when it cannot be known). */
export function nodePlan(node) {
  const size = upstreamImageSize(node, "image");
  const sizeBy = widgetValue(node, "size_by", "megapixels");
  try {
    const plan = planGeometry(size?.[0] ?? null, size?.[1] ?? null, modeOf(node), {
      fit: widgetValue(node, "fit", "crop"),
      anchor: widgetValue(node, "anchor", "center"),
      sizeBy: SIZE_BY[sizeBy] ?? sizeBy,
      megapixels: Number(widgetValue(node, "megapixels", 1.0)),
      longSide: Number(widgetValue(node, "long_side", 1024)),
    });
    if (plan === null) return { plan, text: "target: from the input image (load it to see the size)" };
    return { plan, text: describePlan(plan) };
  } catch (error) {
    return { plan: null, text: String(error.message ?? error) };
  }
}

function drawPreview(ctx, plan, x, y, w, h) {
  // Target canvas scaled into the box; for crop, the whole original around it (dashed) with the cut shaded.
  const [tw, th] = plan.target;
  let frameW = tw, frameH = th, offX = 0, offY = 0;
  if (plan.original && plan.fit === "crop") {
    const [ow, oh] = plan.original;
    const [cx, cy, cw, ch] = plan.crop;
    const sx = tw / cw, sy = th / ch; // original pixels -> target pixels
    frameW = ow * sx; frameH = oh * sy; offX = -cx * sx; offY = -cy * sy;
  }
  const scale = Math.min(w / frameW, h / frameH);
  const ox = x + (w - frameW * scale) / 2, oy = y + (h - frameH * scale) / 2;
  const tx = ox - offX * scale, ty = oy - offY * scale;
  ctx.save();
  if (plan.original && plan.fit === "crop") {
    ctx.fillStyle = "rgba(200,80,80,0.35)"; // cut away (restored from the original later)
    ctx.fillRect(ox, oy, frameW * scale, frameH * scale);
  }
  ctx.fillStyle = plan.original && plan.fit === "pad" ? "rgba(230,170,60,0.45)" : "rgba(90,160,90,0.55)";
  ctx.fillRect(tx, ty, tw * scale, th * scale);
  if (plan.original && plan.fit === "pad") {
    const [px, py, pw, ph] = plan.pad;
    ctx.fillStyle = "rgba(90,160,90,0.75)";
    ctx.fillRect(tx + px * scale, ty + py * scale, pw * scale, ph * scale);
  }
  ctx.strokeStyle = "#ddd";
  ctx.lineWidth = 1;
  ctx.strokeRect(tx, ty, tw * scale, th * scale);
  ctx.restore();
}

function addPreview(node) {
  const widget = {
    name: PREVIEW_NAME,
    type: "atelier_aspect_preview",
    value: "",
    serialize: false, // not saved in the workflow, never sent in the prompt: it is a view of the other widgets
    options: { serialize: false },
    computeSize(width) {
      return [width, PREVIEW_HEIGHT];
    },
    atelierRefresh(node) {
      const { plan, text } = nodePlan(node);
      this.value = text;
      node.atelierPlan = plan; // for tests and other extensions
      return { plan, text };
    },
    draw(ctx, node, widgetWidth, y) {
      const { plan, text } = this.atelierRefresh(node);
      const margin = 10;
      ctx.save();
      ctx.fillStyle = "#bbb";
      ctx.font = "12px sans-serif";
      ctx.textAlign = "left";
      const title = plan ? `Kontext target ${plan.target[0]} x ${plan.target[1]}` : "Kontext target";
      ctx.fillText(title, margin, y + 14);
      ctx.fillStyle = "#999";
      ctx.font = "11px sans-serif";
      ctx.fillText(text.length > 70 ? text.slice(0, 69) + "…" : text, margin, y + 30);
      if (plan) drawPreview(ctx, plan, margin, y + 38, widgetWidth - 2 * margin, PREVIEW_HEIGHT - 44);
      ctx.restore();
    },
  };
  node.addCustomWidget(widget);
  return widget;
}

app.registerExtension({
  name: "KontextAtelier.AspectPreview",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    if (nodeData?.name !== "AtelierAspectLock") return;
    const onNodeCreated = nodeType.prototype.onNodeCreated;
    nodeType.prototype.onNodeCreated = function () {
      const result = onNodeCreated?.apply(this, arguments);
      addPreview(this);
      this.setSize?.([this.size[0], Math.max(this.size[1], this.computeSize()[1])]);
      return result;
    };
  },
});
