// A viewer's jobs list across a restart of the control plane during which the changes it last saw were trimmed
// from the changes log: the watch breaks, resumes, is told OUT_OF_RANGE, lists again, and shows every job, all in
// the same document (no reload) and with no error shown.
// Environment: DASHBOARD_URL, TOKEN (a viewer's), JOB_ID (a job listed before the restart), JOBS (how many after).
import { conversation, openBrowser, report } from "./browser.mjs";

const { DASHBOARD_URL, TOKEN, JOB_ID, JOBS } = process.env;
const BACK_MS = 60_000;

await report(async () => {
  const browser = await openBrowser();
  const { page } = browser;
  const test = conversation();
  try {
    await page.goto(`${DASHBOARD_URL}/#token=${encodeURIComponent(TOKEN)}`);
    await page.waitForSelector(`tr[data-job="${JOB_ID}"]`);
    await page.waitForSelector(".jobs[data-feed=live]");
    await page.evaluate(() => {
      window.__firstLoad = true;
      // Every state the list's feed goes through from here on.
      const list = document.querySelector(".jobs");
      window.__feed = [list.dataset.feed];
      new MutationObserver(() => window.__feed.push(list.dataset.feed)).observe(list, {
        attributes: true,
        attributeFilter: ["data-feed"],
      });
    });
    await test.ask("watching"); // the test stops the control plane, trims the log and starts it again
    try {
      await page.waitForFunction((jobs) => document.querySelectorAll("tr[data-job]").length === jobs, Number(JOBS), {
        timeout: BACK_MS,
      });
    } catch (error) {
      const seen = await page.evaluate(() => ({
        feed: window.__feed,
        rows: document.querySelectorAll("tr[data-job]").length,
        problems: document.querySelector("div.problems")?.textContent,
      }));
      throw new Error(`${error.message}; the page: ${JSON.stringify(seen)}`);
    }
    await page.waitForSelector(".jobs[data-feed=live]");
    return {
      rows: await page.locator("tr[data-job]").count(),
      feed: await page.evaluate(() => window.__feed),
      sameDocument: await page.evaluate(() => window.__firstLoad === true),
      problemsShown: await page.locator("div.problems[role=alert]").isVisible(),
      errors: browser.errors,
    };
  } finally {
    await browser.close();
  }
});
