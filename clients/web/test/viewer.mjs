// A collaborator with a viewer token: a `#token=` link to a job opens a logged-in tab and leaves no token in the
// address bar; the pages offer no button that would mutate; the API refuses a mutation anyway; the token is the
// tab's only (a new tab asks for one, and a pasted one works).
// Environment: DASHBOARD_URL, TOKEN (a viewer's), JOB_ID (a finished job).
import { openBrowser, report } from "./browser.mjs";

const { DASHBOARD_URL, TOKEN, JOB_ID } = process.env;
const MUTATING = '[data-action]:not([data-action="forget-token"])';

await report(async () => {
  const browser = await openBrowser();
  const { page, context } = browser;
  try {
    await page.goto(`${DASHBOARD_URL}/#/jobs/${JOB_ID}&token=${encodeURIComponent(TOKEN)}`);
    await page.waitForSelector("[data-role=viewer]");
    await page.waitForSelector(".page-head [data-state=FINISHED_SUCCESSFULLY]");
    await page.waitForSelector('[data-metric="val-loss"] [data-series="aggregated"] circle');
    const jobPage = {
      address: page.url(),
      stored: await page.evaluate(() => sessionStorage.getItem("florist-token")),
      mutatingButtons: await page.locator(MUTATING).count(),
      points: await page.locator('[data-metric="val-loss"] [data-series="aggregated"] circle').count(),
    };

    await page.goto(`${DASHBOARD_URL}/#/jobs`);
    await page.waitForSelector(`tr[data-job="${JOB_ID}"]`);
    const jobsPage = {
      listedId: await page.locator(`tr[data-job="${JOB_ID}"] .job-id`).textContent(),
      mutatingButtons: await page.locator(MUTATING).count(),
    };

    // What a viewer's own script could send: the API refuses it whatever the page shows.
    const refused = await page.evaluate(async (jobId) => {
      const response = await fetch("/florist.v1.TrainingService/StartTraining", {
        method: "POST",
        headers: {
          "content-type": "application/json",
          authorization: `Bearer ${sessionStorage.getItem("florist-token")}`,
        },
        body: JSON.stringify({ jobId }),
      });
      return { status: response.status, body: await response.json() };
    }, JOB_ID);

    await page.reload();
    await page.waitForSelector("[data-role=viewer]");
    const afterReload = page.url();

    const other = await context.newPage();
    await other.goto(`${DASHBOARD_URL}/`);
    await other.waitForSelector("input[name=token]");
    const otherTabStored = await other.evaluate(() => sessionStorage.getItem("florist-token"));
    await other.fill("input[name=token]", TOKEN);
    await other.click('[data-action="use-token"]');
    await other.waitForSelector(`tr[data-job="${JOB_ID}"]`);
    const pastedRole = await other.getAttribute("[data-role]", "data-role");

    return { jobPage, jobsPage, refused, afterReload, otherTabStored, pastedRole, errors: browser.errors };
  } finally {
    await browser.close();
  }
});
