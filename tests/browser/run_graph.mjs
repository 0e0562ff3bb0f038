// Runs one API prompt for real from the ComfyUI page and reports what the executed nodes show on the canvas.
//
// Used by check_workflows.mjs with CONFIG.run = {name, prompt, imageNodes, views, timeoutMs}:
//   prompt      an API-format prompt (node id -> {class_type, inputs}); loaded with app.loadApiJson
//   imageNodes  ids of the nodes whose image previews must arrive after the run
//   views       {screenshot name: [node ids] | null (all nodes)}: the canvas is fitted to those nodes and
//               saved as OUT/<name>.png
//   widths      {node id: width}: nodes widened after the run, so their text reads in the screenshots
// The page queues it with app.queuePrompt(0), as the Queue button does, and listens to the api's events until
// execution_success or execution_error. Returns {name, queued, response, sent, events, status, history, nodes,
// screenshots, dialogs} or {name, error, ...}: facts only, the Python test judges them.
import path from "node:path";

export async function runGraph(page, run, out, closeDialogs) {
  const result = { name: run.name };
  try {
    // Screenshots of the whole graph are zoomed out: keep drawing widgets and text there (no level-of-detail
    // switch), and hide the minimap, which would cover the bottom right corner of the canvas.
    await page.evaluate(async () => {
      const settings = window.app.extensionManager?.setting;
      await settings?.set("LiteGraph.Canvas.MinFontSizeForLOD", 0);
      await settings?.set("Comfy.Minimap.Visible", false);
      window.app.canvas.min_font_size_for_lod = 0;
    });
    const missing = await page.evaluate(async ({ prompt, name }) => {
      const missing = Object.values(prompt)
        .map((n) => n.class_type)
        .filter((type) => !window.LiteGraph.registered_node_types[type]);
      if (!missing.length) await window.app.loadApiJson(prompt, name);
      return missing;
    }, { prompt: run.prompt, name: run.name });
    if (missing.length) {
      result.error = `node types the page does not know: ${missing.join(", ")}`;
      return result;
    }
    await page.waitForFunction(
      () => window.app.graph._nodes.filter((n) => n.type === "LoadImage").every((n) => n.imgs?.[0]?.complete),
      null,
      { timeout: 15000 },
    ).catch(() => (result.loadImageTimeout = true));
    await fitView(page, null);

    // Listen before queueing: a fast run can finish before queuePrompt's promise resolves.
    await page.evaluate(() => {
      const api = window.comfyAPI?.api?.api ?? window.app.api;
      const state = { events: [], finished: null };
      window.__atelierRun = state;
      const note = (type) => (event) => {
        const detail = event.detail ?? null;
        const summary = type === "executed" ? { node: detail?.node, keys: Object.keys(detail?.output ?? {}) } : detail;
        state.events.push({ type, detail: summary });
        if (type !== "executed") state.finished = { type, detail };
      };
      api.addEventListener("executed", note("executed"));
      for (const type of ["execution_success", "execution_error", "execution_interrupted"]) {
        api.addEventListener(type, note(type));
      }
    });
    const posted = page.waitForResponse(
      (r) => r.request().method() === "POST" && new URL(r.url()).pathname.replace(/^\/api/, "") === "/prompt",
      { timeout: 20000 },
    );
    result.queued = await page.evaluate(() => window.app.queuePrompt(0));
    const response = await posted;
    result.response = { status: response.status(), body: await response.json().catch(() => null) };
    result.sent = response.request().postDataJSON()?.prompt ?? null;
    const promptId = result.response.body?.prompt_id ?? null;

    if (promptId) {
      await page.waitForFunction(() => window.__atelierRun.finished, null, { timeout: run.timeoutMs ?? 45000 })
        .catch(() => (result.timeout = `no execution_success/error within ${run.timeoutMs ?? 45000} ms`));
      // /history has the server's own account (status messages, with the node error and traceback if any). The
      // page's execution_success can arrive before the server has written it: poll until the record has a status.
      result.history = await page.evaluate(async ({ id, timeoutMs }) => {
        const until = Date.now() + timeoutMs;
        for (;;) {
          const r = await fetch(`/api/history/${id}`);
          const record = r.ok ? (await r.json())[id] ?? null : { httpStatus: r.status };
          if (record?.status?.status_str || !r.ok || Date.now() > until) return record;
          await new Promise((resolve) => setTimeout(resolve, 200));
        }
      }, { id: promptId, timeoutMs: run.timeoutMs ?? 45000 });
      result.status = result.history?.status ?? null;
    }
    const state = await page.evaluate(() => window.__atelierRun);
    result.events = state.events;
    result.finished = state.finished;

    if (result.finished?.type === "execution_success") {
      await page.waitForFunction(
        (ids) => ids.every((id) => {
          const imgs = window.app.graph.getNodeById(id)?.imgs;
          return imgs?.length && imgs.every((img) => img.complete && img.naturalWidth > 0);
        }),
        run.imageNodes ?? [],
        { timeout: 15000 },
      ).catch(() => (result.previewTimeout = true));
    }
    await tidy(page, run.widths ?? {});
    result.screenshots = {};
    result.visible = {};
    for (const [name, ids] of Object.entries(run.views ?? {})) {
      await fitView(page, ids);
      result.visible[name] = await describeNodes(page, ids);
      const clip = await page.evaluate(() => {
        const r = window.app.canvas.canvas.getBoundingClientRect();
        return { x: r.x, y: r.y, width: r.width, height: r.height };
      });
      const file = path.join(out, `${name}.png`);
      await page.screenshot({ path: file, clip });
      result.screenshots[name] = file;
    }
    result.nodes = await describeNodes(page, null);
    result.dialogs = await page.evaluate(() =>
      [...document.querySelectorAll(".p-dialog")]
        .filter((d) => d.offsetParent !== null || d.getClientRects().length)
        .map((d) => d.innerText.slice(0, 1000)));
    await closeDialogs(page);
  } catch (error) {
    result.error = String(error?.stack ?? error);
  }
  return result;
}

// After a run the nodes have grown (images, report boxes) and overlap: widen the text nodes asked for, grow every
// node whose text box scrolls until the whole text shows, and lay the graph out again in columns.
async function tidy(page, widths) {
  await page.evaluate((widths) => {
    for (const [id, width] of Object.entries(widths)) {
      const node = window.app.graph.getNodeById(id);
      node?.setSize([Math.max(node.size[0], width), node.size[1]]);
    }
  }, widths);
  for (let pass = 0; pass < 3; pass++) {
    await fitView(page, null);
    const grown = await page.evaluate(() => {
      const { app } = window;
      let grown = 0;
      for (const node of app.graph._nodes) {
        for (const w of node.widgets ?? []) {
          const el = w.element ?? w.inputEl;
          const scrolls = el instanceof HTMLTextAreaElement && el.clientHeight && el.scrollHeight > el.clientHeight + 2;
          if (!scrolls) continue;
          const extra = (el.scrollHeight - el.clientHeight) / app.canvas.ds.scale + 8;
          node.setSize([node.size[0], node.size[1] + extra]);
          grown++;
        }
      }
      return grown;
    });
    if (!grown) break;
  }
  await page.evaluate(() => {
    window.app.graph.arrange(60);
    window.app.canvas.setDirty(true, true);
  });
}

// Centre the canvas on the given nodes (all when ids is null), as large as fits, and let it draw.
async function fitView(page, ids) {
  await page.evaluate((ids) => {
    const { app } = window;
    const nodes = ids ? ids.map((id) => app.graph.getNodeById(id)).filter(Boolean) : app.graph._nodes;
    const title = window.LiteGraph.NODE_TITLE_HEIGHT ?? 30;
    let [x0, y0, x1, y1] = [Infinity, Infinity, -Infinity, -Infinity];
    for (const n of nodes) {
      x0 = Math.min(x0, n.pos[0]);
      y0 = Math.min(y0, n.pos[1] - title);
      x1 = Math.max(x1, n.pos[0] + n.size[0]);
      y1 = Math.max(y1, n.pos[1] + n.size[1]);
    }
    app.canvas.ds.fitToBounds([x0, y0, x1 - x0, y1 - y0], { zoom: 0.95 });
    app.canvas.setDirty(true, true);
    app.canvas.draw(true, true);
  }, ids);
  await page.waitForTimeout(400); // DOM widgets (the text boxes) follow the canvas on the next frames
  await page.evaluate(() => window.app.canvas.draw(true, true));
}

// What each node shows: its image previews and its text boxes (value, and whether the box is on screen).
async function describeNodes(page, ids) {
  return page.evaluate((ids) => {
    const { app } = window;
    const nodes = ids ? ids.map((id) => app.graph.getNodeById(id)).filter(Boolean) : app.graph._nodes;
    const canvasRect = app.canvas.canvas.getBoundingClientRect();
    return nodes.map((n) => ({
      id: String(n.id),
      type: n.type,
      size: [...n.size],
      imageIndex: n.imageIndex ?? null,
      imgs: (n.imgs ?? []).map((img) => ({
        src: img.src?.replace(/^https?:\/\/[^/]+/, ""),
        complete: img.complete,
        width: img.naturalWidth,
        height: img.naturalHeight,
      })),
      texts: (n.widgets ?? [])
        .filter((w) => w.element instanceof HTMLTextAreaElement || w.inputEl instanceof HTMLTextAreaElement ||
          w.type === "textPreview" || (n.type === "PreviewAny" && w.name === "preview"))
        .map((w) => {
          if (!(w.element instanceof HTMLTextAreaElement || w.inputEl instanceof HTMLTextAreaElement)) {
            // Preview Any's text is a markdown view (frontend 1.3x) or a Vue component (1.4x), not a text box:
            // its value, and whether the node's body is on screen.
            const [x, y] = app.canvas.ds.convertOffsetToCanvas([n.pos[0], n.pos[1]]);
            const [x1, y1] = app.canvas.ds.convertOffsetToCanvas([n.pos[0] + n.size[0], n.pos[1] + n.size[1]]);
            const onScreen = x1 > 0 && y1 > 0 && x < canvasRect.width && y < canvasRect.height;
            return { name: w.name, value: w.value, shown: w.value, visible: onScreen };
          }
          const el = w.element ?? w.inputEl;
          const r = el.getBoundingClientRect();
          const style = getComputedStyle(el);
          const onScreen = r.width > 0 && r.height > 0 && r.right > canvasRect.left && r.left < canvasRect.right &&
            r.bottom > canvasRect.top && r.top < canvasRect.bottom;
          return {
            name: w.name,
            value: w.value,
            shown: el.value,
            visible: onScreen && style.display !== "none" && style.visibility !== "hidden" && el.isConnected,
          };
        }),
    }));
  }, ids);
}
