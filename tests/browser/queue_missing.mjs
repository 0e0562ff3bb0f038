// Queues workflows from a real ComfyUI page, as the Queue button does, while a model file they need is absent from
// the server, and reports what the server answered and what the page showed. Facts only: the Python test judges them.
//
// Usage: node queue_missing.mjs CONFIG.json   (written by tests/test_browser_missing_models.py)
// CONFIG: {url, chromium, profile, out, timeoutMs, workflows: [{name, path, kind: "json" | "png", lookFor}]}
//   lookFor  the text the page is expected to show once the server refuses the prompt (waited for, then recorded)
// Prints one JSON line: {workflows: [{name, response, shown, pageText, dialogs, nodeErrors, events, screenshot}], queue,
// history, errors, startupErrors}. `events` are the api events of a run (execution_start, executing, executed, ...)
// seen from the moment the workflow was queued: a prompt refused at validation has none.
import { readFileSync } from "node:fs";
import path from "node:path";
import { closeDialogs, loadWorkflowFile, openComfyPage, openDialogs } from "./page.mjs";

const RUN_EVENTS = ["execution_start", "executing", "executed", "execution_cached", "execution_success",
  "execution_error"];
const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const timeoutMs = config.timeoutMs ?? 15000;
const { browser, page, errors, startupErrors, startWork } = await openComfyPage(config);
const results = [];
let queue = null;
let history = null;
try {
  startWork();
  await page.evaluate((types) => {
    const api = window.comfyAPI?.api?.api ?? window.app.api;
    window.__atelierEvents = [];
    for (const type of types) {
      api.addEventListener(type, (event) => window.__atelierEvents.push({ type, node: event.detail?.node ?? null }));
    }
  }, RUN_EVENTS);
  for (const workflow of config.workflows) {
    results.push(await queueOne(workflow));
  }
  // The server's own account: nothing waits in its queue and nothing ran.
  [queue, history] = await page.evaluate(async () => {
    const get = async (route) => (await fetch(`/api${route}`)).json();
    return [await get("/queue"), await get("/history")];
  });
} finally {
  await browser.close();
}
console.log(JSON.stringify({ workflows: results, queue, history, errors, startupErrors }));

async function queueOne(workflow) {
  const result = { name: workflow.name };
  try {
    await loadWorkflowFile(page, workflow);
    // The missing-models dialog (or panel) a frontend shows on load is tested elsewhere: close it and queue.
    await page.waitForTimeout(300);
    await closeDialogs(page);
    await page.evaluate(() => (window.__atelierEvents = []));
    const posted = page.waitForResponse(
      (r) => r.request().method() === "POST" && new URL(r.url()).pathname.replace(/^\/api/, "") === "/prompt",
      { timeout: timeoutMs },
    );
    // queuePrompt reports a refusal on the page and resolves; an exception would be the frontend's failure.
    result.queued = await page.evaluate(async () => {
      try {
        return { value: await window.app.queuePrompt(0) };
      } catch (error) {
        return { thrown: String(error?.message ?? error) };
      }
    });
    const response = await posted;
    result.response = { status: response.status(), body: await response.json().catch(() => null) };
    await revealErrors(workflow.lookFor, result);
    result.shown = await page.evaluate((needle) => {
      const text = document.body.innerText;
      return { found: text.includes(needle), count: text.split(needle).length - 1 };
    }, workflow.lookFor);
    result.pageText = await page.evaluate(() => document.body.innerText.slice(0, 20000));
    result.dialogs = await openDialogs(page, 2000);
    result.nodeErrors = await page.evaluate(() => window.app.lastNodeErrors ?? null);
    result.screenshot = path.join(config.out, `queued_${workflow.name}.png`);
    await page.screenshot({ path: result.screenshot });
    result.events = await page.evaluate(() => window.__atelierEvents);
    await closeDialogs(page);
  } catch (error) {
    result.error = String(error?.stack ?? error);
  }
  return result;
}

// Frontends up to 1.3x show the refusal in a dialog. 1.4x shows "N errors found" with a "View details" button that
// opens the errors panel, where each node's message sits behind an "Info for <node> - <input>" button: press them as
// a user would, then wait for the message.
async function revealErrors(needle, result) {
  const shows = () => page.evaluate((needle) => document.body.innerText.includes(needle), needle);
  await page.waitForFunction((needle) => document.body.innerText.includes(needle) ||
    [...document.querySelectorAll("button")].some((b) => /view details/i.test(b.innerText)), needle,
  { timeout: timeoutMs }).catch(() => {});
  result.pressed = [];
  if (await shows()) return;
  const details = page.getByRole("button", { name: /view details/i });
  if (await details.count()) {
    await details.first().click();
    result.pressed.push("View details");
    await page.locator('button[aria-label^="Info for"]').first().waitFor({ timeout: timeoutMs }).catch(() => {});
  }
  // One locator for all of them: pressing one changes its aria-expanded, which must not renumber the rest.
  for (const info of await page.locator('button[aria-label^="Info for"]').all()) {
    if ((await info.getAttribute("aria-expanded")) !== "false") continue;
    result.pressed.push(await info.getAttribute("aria-label"));
    await info.click();
  }
  await page.waitForFunction((needle) => document.body.innerText.includes(needle), needle, { timeout: timeoutMs })
    .catch(() => {});
}
