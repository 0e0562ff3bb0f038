// The page every browser driver starts from: headless Chromium on a fresh profile, only loopback reachable, the
// ComfyUI page loaded with our extension registered. Shared by check_workflows.mjs and queue_missing.mjs.
import { readFileSync } from "node:fs";
import path from "node:path";
import { chromium } from "playwright-core";

// Returns {browser, page, startupErrors, errors}: page errors thrown before the caller's work go to startupErrors
// (the frontend's own, reported, not ours to fix); call startWork() to collect the rest into errors.
export async function openComfyPage(config) {
  // A persistent context is how playwright takes a fresh --user-data-dir (the test makes an empty one per run).
  const browser = await chromium.launchPersistentContext(config.profile, {
    executablePath: config.chromium,
    headless: true,
    viewport: { width: 1600, height: 1000 },
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
  const session = { browser, startupErrors: [], errors: [] };
  let phase = session.startupErrors;
  session.startWork = () => (phase = session.errors);
  try {
    const page = browser.pages()[0] ?? (await browser.newPage());
    session.page = page;
    page.on("pageerror", (error) => phase.push(`pageerror: ${String(error.stack ?? error.message).slice(0, 800)}`));
    // Only loopback: anything else the page asks for is refused, so the test never depends on the network.
    await page.route("**/*", (route) => {
      const host = new URL(route.request().url()).hostname;
      return host === "127.0.0.1" || host === "localhost" ? route.continue() : route.abort();
    });
    await page.goto(config.url, { waitUntil: "domcontentloaded", timeout: 60000 });
    await page.waitForFunction(
      () => window.app?.graph && window.app.extensions?.some((e) => e.name === "KontextAtelier.AspectPreview"),
      null,
      { timeout: 60000 },
    );
    await closeDialogs(page); // a first-run dialog, if any
  } catch (error) {
    await browser.close();
    throw error;
  }
  return session;
}

export async function closeDialogs(page) {
  // PrimeVue dialogs close on Escape, one at a time, with an animation; a dialog still closing would swallow the
  // next workflow's dialog, so wait until none is left.
  for (let i = 0; i < 20; i++) {
    const open = await page.locator(".p-dialog").count();
    if (open === 0) return;
    await page.keyboard.press("Escape");
    await page.waitForTimeout(250);
  }
}

// The text of every dialog on screen (PrimeVue's, which every frontend since 1.2x uses for its dialogs).
export async function openDialogs(page, limit = 1000) {
  return page.evaluate((limit) =>
    [...document.querySelectorAll(".p-dialog")]
      .filter((d) => d.offsetParent !== null || d.getClientRects().length)
      .map((d) => d.innerText.slice(0, limit)), limit);
}

// Opens a shipped workflow as a user does: a UI JSON through loadGraphData, a PNG by dropping the file.
export async function loadWorkflowFile(page, workflow) {
  if (workflow.kind === "png") {
    const bytes = readFileSync(workflow.path).toString("base64");
    await page.evaluate(async ({ bytes, name }) => {
      const data = Uint8Array.from(atob(bytes), (c) => c.charCodeAt(0));
      await window.app.handleFile(new File([data], name, { type: "image/png" }));
    }, { bytes, name: path.basename(workflow.path) });
  } else {
    const graph = JSON.parse(readFileSync(workflow.path, "utf8"));
    await page.evaluate(async ({ graph, name }) => {
      await window.app.loadGraphData(graph, true, true, name);
    }, { graph, name: workflow.name });
  }
}
