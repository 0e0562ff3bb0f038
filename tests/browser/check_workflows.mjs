// Loads every shipped workflow into a real ComfyUI page in headless Chromium and reports what the page saw.
//
// Usage: node check_workflows.mjs CONFIG.json   (written by tests/test_browser.py)
// CONFIG: {url, chromium, profile, out, workflows: [{name, path, kind: "json" | "png"}], live?, run?}
// Prints one JSON line: {workflows: [{name, output, dialogs, missingTypes, badCombos, widgets, screenshot}], errors}
// With CONFIG.run ({name, prompt, imageNodes, views, widths, timeoutMs}) it also loads that API prompt, queues it
// from the page and reports what the executed nodes show (run_graph.mjs); the result is one more `workflows` entry.
// The comparison with the API files is done by the Python test; this only collects facts.
import { readFileSync } from "node:fs";
import path from "node:path";
import { closeDialogs, loadWorkflowFile, openComfyPage, openDialogs } from "./page.mjs";
import { runGraph } from "./run_graph.mjs";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const { browser, page, errors, startupErrors, startWork } = await openComfyPage(config);
const results = [];
try {
  startWork();
  for (const workflow of config.workflows) {
    const result = { name: workflow.name };
    try {
      await loadWorkflowFile(page, workflow);
      // Load Image previews arrive asynchronously; the live widgets need them to know the input size.
      await page.waitForFunction(
        () => window.app.graph._nodes.filter((n) => n.type === "LoadImage").every((n) => n.imgs?.[0]?.complete),
        null,
        { timeout: 15000 },
      ).catch(() => errors.push(`${workflow.name}: Load Image previews did not load`));
      await page.evaluate(() => window.app.canvas.setDirty(true, true));
      await page.waitForTimeout(300);
      Object.assign(result, await page.evaluate(async () => {
        const { app } = window;
        const LiteGraph = window.LiteGraph;
        const nodes = app.graph._nodes;
        const missingTypes = nodes.filter((n) => !LiteGraph.registered_node_types[n.type]).map((n) => n.type);
        const badCombos = [];
        for (const node of nodes) {
          for (const widget of node.widgets ?? []) {
            const values = widget.type === "combo" ? widget.options?.values : null;
            const list = typeof values === "function" ? values(widget, node) : values;
            if (Array.isArray(list) && !list.includes(widget.value)) {
              badCombos.push(`${node.type} #${node.id} ${widget.name}=${JSON.stringify(widget.value)}`);
            }
          }
        }
        app.canvas.draw(true, true); // the live widgets compute while they draw (nodes in view)
        for (const node of nodes) for (const w of node.widgets ?? []) w.atelierRefresh?.(node); // and the rest
        const widgets = nodes
          .filter((n) => n.type?.startsWith("Atelier"))
          .map((n) => ({
            id: n.id,
            type: n.type,
            values: Object.fromEntries(
              (n.widgets ?? []).filter((w) => w.name?.startsWith("atelier_")).map((w) => [w.name, w.value]),
            ),
            plan: n.atelierPlan ?? null,
            tokens: n.atelierTokens ?? null,
            images: (n.imgs ?? []).length,
          }));
        // The graph as the page drew it: node boxes (after the frontend's own sizing), groups, the view.
        const layout = {
          titleHeight: LiteGraph.NODE_TITLE_HEIGHT,
          nodes: nodes.map((n) => ({ id: n.id, type: n.type, pos: [...n.pos], size: [...n.size],
            minSize: n.type === "MarkdownNote" ? null : [...n.computeSize()] })),
          groups: (app.graph._groups ?? app.graph.groups ?? []).map((g) => ({ title: g.title,
            bounding: [...(g._bounding ?? g.bounding)] })),
          ds: { scale: app.canvas.ds.scale, offset: [...app.canvas.ds.offset] },
          canvas: [app.canvas.canvas.clientWidth, app.canvas.canvas.clientHeight],
        };
        const { output } = await app.graphToPrompt();
        return { output, missingTypes, badCombos, widgets, layout };
      }));
      result.dialogs = await openDialogs(page, 300);
      if (workflow.lookFor) {
        // A missing model: whatever the frontend shows it in (a dialog up to 1.3x, a panel later) names the file.
        await page.waitForFunction((needle) => document.body.innerText.includes(needle), workflow.lookFor,
          { timeout: 15000 }).catch(() => {});
        result.pageNames = await page.evaluate((needle) => document.body.innerText.includes(needle), workflow.lookFor);
      }
      result.screenshot = path.join(config.out, `${workflow.name}.png`);
      await page.screenshot({ path: result.screenshot });
      await closeDialogs(page);
    } catch (error) {
      result.error = String(error?.stack ?? error);
    }
    results.push(result);
  }
  if (config.live) {
    // The aspect lock follows its widgets: switch the first lock to 16:9 pad and read what it now shows.
    results.push({
      name: "live",
      ...(await page.evaluate(async ({ size, fit }) => {
        const node = window.app.graph._nodes.find((n) => n.type === "AtelierAspectLock");
        if (!node) return { error: "no AtelierAspectLock in the last workflow" };
        node.widgets.find((w) => w.name === "size").value = size;
        node.widgets.find((w) => w.name === "fit").value = fit;
        window.app.canvas.draw(true, true);
        const widget = node.widgets.find((w) => w.name === "atelier_aspect_preview");
        widget?.atelierRefresh?.(node);
        return { plan: node.atelierPlan, text: widget?.value };
      }, config.live)),
    });
    await page.screenshot({ path: path.join(config.out, "live.png") });
  }
  if (config.run) {
    await closeDialogs(page);
    results.push(await runGraph(page, config.run, config.out, closeDialogs));
  }
} finally {
  await browser.close();
}
console.log(JSON.stringify({ workflows: results, errors, startupErrors }));

