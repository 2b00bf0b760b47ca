// Opens a dashboard link (LINK, e.g. one with `#token=T`) in a fresh tab and prints the role the page shows and
// the address left in the address bar once it has read the link.
import { openBrowser, report } from "./browser.mjs";

await report(async () => {
  const browser = await openBrowser();
  try {
    await browser.page.goto(process.env.LINK);
    const role = await browser.page.locator("[data-role]:not([data-role=''])").getAttribute("data-role");
    return { role, address: browser.page.url() };
  } finally {
    await browser.close();
  }
});
