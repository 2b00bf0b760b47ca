// A job followed live in the page, from its creation to FINISHED_SUCCESSFULLY: an operator opens a `#token=` link,
// creates the job from the New job form, starts it on its page, watches the curves grow as rounds end and the FL
// server's log, then downloads the trained model; screenshots of every page at desktop and phone width. Then a
// second job, of one round, goes through "Create and start" and is deleted from the jobs list.
// Environment: DASHBOARD_URL, TOKEN, JOB_JSON (a CreateJobRequest), ROUNDS, SCREENSHOTS and DOWNLOADS (directories),
// AGENT (the name of a connected agent, for the agents page).
import { join } from "node:path";
import { openBrowser, report, screenshots } from "./browser.mjs";

const { DASHBOARD_URL, TOKEN, JOB_JSON, ROUNDS, SCREENSHOTS, DOWNLOADS, AGENT } = process.env;
const TRAINING_MS = 240_000;

await report(async () => {
  const browser = await openBrowser();
  const { page } = browser;
  try {
    page.on("dialog", (dialog) => void dialog.accept());
    await page.goto(`${DASHBOARD_URL}/#token=${encodeURIComponent(TOKEN)}`);
    await page.waitForSelector('[data-role="admin"], [data-role="operator"]');
    const addressAfterLink = page.url();

    await page.click('[data-action="new-job"]');
    await page.fill('textarea[name="job"]', JOB_JSON);
    await page.click('[data-action="create"]');
    await page.waitForSelector(".page-head [data-state=NOT_STARTED]");
    const jobId = await page.getAttribute("article.job", "data-job");
    await page.click('[data-action="start"]');
    await page.waitForSelector(".page-head [data-state=FINISHED_SUCCESSFULLY]", { timeout: TRAINING_MS });
    const aggregatedPoints = '[data-metric="val-loss"] [data-series="aggregated"] circle';
    await page.waitForFunction(
      ([selector, rounds]) => document.querySelectorAll(selector).length === rounds,
      [aggregatedPoints, Number(ROUNDS)],
    );
    // The log streams in while the page shows it, and the job can end before its last lines arrive: wait for the
    // FL server's last ones (Flower's end-of-run summary) rather than take the text as it is at that moment.
    await page.waitForFunction(() => (document.querySelector("[data-log]")?.textContent ?? "").includes("[SUMMARY]"));
    const curvePoints = await page.evaluate(() => window.__curvePoints);
    // One log at a time: choosing client 0's replaces the FL server's (and its stream).
    const serverLog = await page.textContent("[data-log]");
    await page.selectOption('select[aria-label="log source"]', "0");
    await page.waitForFunction((before) => {
      const text = document.querySelector("[data-log]")?.textContent ?? "";
      return text.length > 0 && text !== before;
    }, serverLog);
    const clientLog = await page.textContent("[data-log]");
    const clientStates = await page.$$eval("[data-client-state]", (cells) => cells.map((c) => c.dataset.clientState));
    const curves = await page.$$eval("svg[data-metric]", (charts) =>
      Object.fromEntries(charts.map((c) => [c.dataset.metric, Object.fromEntries(
        [...c.querySelectorAll("[data-series]")].map((s) => [s.dataset.series, s.querySelectorAll("circle").length]),
      )])),
    );

    const [download] = await Promise.all([page.waitForEvent("download"), page.click('[data-action="download-model"]')]);
    const modelPath = join(DOWNLOADS, download.suggestedFilename());
    await download.saveAs(modelPath);
    await page.waitForSelector(".notice[data-download-sha256]");
    const shownSha256 = await page.getAttribute(".notice", "data-download-sha256");
    const widths = { job: await screenshots(page, SCREENSHOTS, "job") };

    await page.goto(`${DASHBOARD_URL}/#/jobs`);
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.locator("[data-state=FINISHED_SUCCESSFULLY]").waitFor();
    const listedId = await row.locator(".job-id").textContent();
    widths.jobs = await screenshots(page, SCREENSHOTS, "jobs");
    await page.goto(`${DASHBOARD_URL}/#/catalog`);
    await page.waitForSelector("h2 >> text=Strategies");
    widths.catalog = await screenshots(page, SCREENSHOTS, "catalog");
    await page.goto(`${DASHBOARD_URL}/#/agents`);
    await page.waitForSelector(AGENT ? `[data-agent="${AGENT}"]` : "main p");
    widths.agents = await screenshots(page, SCREENSHOTS, "agents");

    await page.goto(`${DASHBOARD_URL}/#/jobs`);
    await page.click('[data-action="new-job"]');
    const oneRound = JSON.parse(JOB_JSON);
    oneRound.job.server_config.n_server_rounds = 1;
    await page.fill('textarea[name="job"]', JSON.stringify(oneRound));
    await page.click('[data-action="create-and-start"]');
    await page.waitForSelector(".page-head [data-state=FINISHED_SUCCESSFULLY]", { timeout: TRAINING_MS });
    const secondJobId = await page.getAttribute("article.job", "data-job");
    await page.goto(`${DASHBOARD_URL}/#/jobs`);
    await page.locator(`tr[data-job="${secondJobId}"] [data-action="delete"]`).click(); // confirmed by the dialog
    await page.locator(`tr[data-job="${secondJobId}"]`).waitFor({ state: "detached" });

    return {
      jobId,
      secondJobId,
      addressAfterLink,
      listedId,
      clientStates,
      curves,
      curvePoints,
      logs: { server: serverLog.slice(-2000), client0: clientLog.slice(-2000) },
      maxOpenStreams: await page.evaluate(() => window.__maxOpenStreams),
      modelPath,
      shownSha256,
      widths,
      errors: browser.errors,
    };
  } finally {
    await browser.close();
  }
});
