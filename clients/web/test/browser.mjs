// What the dashboard's browser tests share: Debian's Chromium driven by playwright-core (its own browser download
// cannot run here), with a fresh profile, background networking off (the machine's network is closed), and a
// record of what the page did that screenshots cannot show: every point count of a chart, and the most streams
// the page had open at once.
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { chromium } from "playwright-core";

export const DESKTOP = { width: 1280, height: 800 };
export const PHONE = { width: 390, height: 844 };
const CHROMIUM = process.env.CHROMIUM ?? "/usr/bin/chromium";
const ARGS = [
  "--no-sandbox",
  "--disable-gpu",
  "--disable-quic",
  "--no-first-run",
  "--disable-background-networking",
  "--disable-component-update",
  "--disable-sync",
];

// Runs in the page before its own script: records each change of the aggregated validation-loss curve's number
// of points, and the largest number of open streams (<html data-open-streams>).
function recordPage() {
  window.__curvePoints = [];
  window.__maxOpenStreams = 0;
  const count = () => document.querySelectorAll('[data-metric="val-loss"] [data-series="aggregated"] circle').length;
  new MutationObserver(() => {
    const streams = Number(document.documentElement?.dataset.openStreams ?? "0");
    window.__maxOpenStreams = Math.max(window.__maxOpenStreams, streams);
    if (document.querySelector('[data-metric="val-loss"]') === null) {
      return;
    }
    const points = count();
    if (window.__curvePoints.at(-1) !== points) {
      window.__curvePoints.push(points);
    }
  }).observe(document, { subtree: true, childList: true, attributes: true }); // documentElement may not exist yet
}

/** A browser with a fresh profile (removed by `close`), its first page at DESKTOP size, recording as above. */
export async function openBrowser() {
  const profile = mkdtempSync(join(tmpdir(), "florist-dashboard-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: ARGS,
    viewport: DESKTOP,
    acceptDownloads: true,
  });
  await context.addInitScript(recordPage);
  const page = context.pages()[0] ?? (await context.newPage());
  const errors = [];
  page.on("pageerror", (error) => errors.push(error.message));
  page.on("console", (message) => {
    // A refused call is the browser's own console line ("Failed to load resource: ... 401"); anything else the
    // page logged as an error is one.
    if (message.type() === "error" && !message.text().startsWith("Failed to load resource")) {
      errors.push(message.text());
    }
  });
  return {
    context,
    page,
    errors,
    async close() {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    },
  };
}

/** A screenshot of the whole page at desktop and at phone width, as NAME-desktop.png and NAME-phone.png. */
export async function screenshots(page, directory, name) {
  const widths = {};
  for (const [size, viewport] of [["desktop", DESKTOP], ["phone", PHONE]]) {
    await page.setViewportSize(viewport);
    await page.screenshot({ path: join(directory, `${name}-${size}.png`), fullPage: true });
    // Nothing may stick out sideways: a phone would have to scroll to read it.
    widths[size] = await page.evaluate(() => document.documentElement.scrollWidth);
  }
  await page.setViewportSize(DESKTOP);
  return widths;
}

/** Prints the scenario's result for the Python test (one JSON line), or its error, and exits. */
export async function report(run) {
  try {
    console.log(JSON.stringify(await run()));
    process.exit(0);
  } catch (error) {
    console.error(error instanceof Error ? error.stack : String(error));
    process.exit(1);
  }
}

/**
 * The scenario's conversation with its Python test, for steps the test takes outside the page (over gRPC):
 * `ask(step)` prints `step` on a line of its own and waits for the test's answer, one line on stdin.
 */
export function conversation() {
  const lines = createInterface({ input: process.stdin })[Symbol.asyncIterator]();
  return {
    async ask(step) {
      console.log(step);
      const { value, done } = await lines.next();
      if (done) {
        throw new Error(`the test went away while the page was at ${step}`);
      }
      return value;
    },
  };
}
