// A viewer's jobs list follows jobs it did not touch, without a reload: another client (the test, over gRPC)
// creates a job, starts it (it queues behind a running job), stops it, and the running job ends; each change
// appears in the open page through its one stream (WatchJobs). The viewer's page offers no button that mutates,
// and the browser API refuses the viewer's StartTraining, StopTraining and DeleteJob anyway. On the way, the queued
// job's own page shows it QUEUED (no log to follow yet), then CANCELLED.
// Environment: DASHBOARD_URL, TOKEN (a viewer's), RUNNING_ID (a running job). The test's steps: conversation().
import { conversation, openBrowser, report } from "./browser.mjs";

const { DASHBOARD_URL, TOKEN, RUNNING_ID } = process.env;
const MUTATING = '[data-action]:not([data-action="forget-token"])';

await report(async () => {
  const browser = await openBrowser();
  const { page } = browser;
  const test = conversation();
  const row = (id) => page.locator(`tr[data-job="${id}"]`);
  // What the page shows once `id`'s row reaches `state`: the row's project and owner, the buttons, and whether this
  // is still the document first loaded (a reload would have dropped the mark) and how many streams it holds.
  const seen = async (id, state) => {
    await row(id).locator(`[data-state="${state}"]`).waitFor();
    return {
      project: await row(id).locator("[data-project]").textContent(),
      owner: await row(id).locator("[data-owner]").textContent(),
      mutatingButtons: await page.locator(MUTATING).count(),
      sameDocument: await page.evaluate(() => window.__firstLoad === true),
      openStreams: await page.evaluate(() => document.documentElement.dataset.openStreams),
    };
  };
  try {
    await page.goto(`${DASHBOARD_URL}/#token=${encodeURIComponent(TOKEN)}`);
    await page.waitForSelector("[data-role=viewer]");
    await page.waitForSelector(".jobs[data-feed=live]");
    await page.evaluate(() => {
      window.__firstLoad = true;
    });
    const states = { running: await seen(RUNNING_ID, "IN_PROGRESS") };
    const jobId = await test.ask("watching"); // the test creates a job
    states.created = await seen(jobId, "NOT_STARTED");
    await test.ask("created"); // the test starts it: it queues behind the running job
    states.queued = await seen(jobId, "QUEUED");
    // The queued job's own page: its facts, and no log to follow yet (it never started).
    await row(jobId).locator(".job-id").click();
    const head = `article.job[data-job="${jobId}"] .page-head`;
    await page.waitForSelector(`${head} [data-state=QUEUED]`);
    const facts = await page.$$eval("dl.facts > div", (entries) =>
      Object.fromEntries(entries.map((e) => [e.querySelector("dt").textContent, e.querySelector("dd").textContent])),
    );
    await test.ask("queued"); // the test stops it
    await page.waitForSelector(`${head} [data-state=CANCELLED]`);
    const jobPage = {
      project: facts.Project,
      owner: facts.Owner,
      queued: facts.Queued !== undefined,
      mutatingButtons: await page.locator(MUTATING).count(),
      problemsShown: await page.locator("div.problems[role=alert]").isVisible(),
      logShown: await page.locator("[data-log]").isVisible(),
    };
    await page.click('nav a[data-page="jobs"]');
    states.cancelled = await seen(jobId, "CANCELLED");
    await test.ask("cancelled"); // the test ends the running job
    states.finished = await seen(RUNNING_ID, "FINISHED_SUCCESSFULLY");
    const order = await page.$$eval("tr[data-job]", (rows) => rows.map((r) => r.dataset.job));

    // What a viewer's own script could send: the API refuses each mutation whatever the page shows.
    const refused = await page.evaluate(async (jobId) => {
      const token = sessionStorage.getItem("florist-token");
      const outcomes = {};
      for (const path of [
        "TrainingService/StartTraining",
        "TrainingService/StopTraining",
        "JobService/DeleteJob",
      ]) {
        const response = await fetch(`/florist.v1.${path}`, {
          method: "POST",
          headers: { "content-type": "application/json", authorization: `Bearer ${token}` },
          body: JSON.stringify({ jobId }),
        });
        outcomes[path] = { status: response.status, code: (await response.json()).code };
      }
      return outcomes;
    }, jobId);

    return {
      jobId,
      states,
      jobPage,
      order,
      refused,
      maxOpenStreams: await page.evaluate(() => window.__maxOpenStreams),
      errors: browser.errors,
    };
  } finally {
    await browser.close();
  }
});
