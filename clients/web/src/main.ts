// The dashboard's entry point: the session (token from the tab or a `#token=` link), the API, and a router over
// the location's hash: #/jobs, #/jobs/ID, #/catalog, #/agents. Leaving a page aborts its calls and streams.
import type { GetCatalogResponse } from "../../typescript/src/gen/florist/v1/catalog_service_pb.js";
import { createApi } from "./api.js";
import { h } from "./dom.js";
import { describe, isAborted, needsToken } from "./errors.js";
import type { PageContext } from "./page.js";
import { agentsPage } from "./pages/agents.js";
import { catalogPage } from "./pages/catalog.js";
import { jobPage } from "./pages/job.js";
import { jobsPage } from "./pages/jobs.js";
import { loginPage } from "./pages/login.js";
import { Session } from "./session.js";
import { StreamBudget } from "./stream-budget.js";

const session = new Session(window.sessionStorage);
session.takeTokenFromLink(window.location, window.history);
const api = createApi(session, new StreamBudget(document.documentElement));

const main = h("main", { id: "main" });
const problems = h("div", { class: "problems", role: "alert", hidden: true });
const role = h("span", { class: "role", "data-role": "" });
const nav = h(
  "nav",
  { "aria-label": "pages" },
  ...[
    ["#/jobs", "Jobs"],
    ["#/catalog", "Catalog"],
    ["#/agents", "Agents"],
  ].map(([href, label]) => h("a", { href: href ?? "", "data-page": (href ?? "").slice(2) }, label ?? "")),
);
const signOut = h("button", { type: "button", class: "link", "data-action": "forget-token" }, "Forget token");
signOut.addEventListener("click", () => {
  session.setToken("");
  catalog = undefined;
  void route();
});
document.body.replaceChildren(
  h(
    "header",
    {},
    h("a", { class: "brand", href: "#/jobs" }, "florist-grpc"),
    nav,
    h("div", { class: "who" }, role, signOut),
  ),
  problems,
  main,
);

let leaving = new AbortController();
let catalog: GetCatalogResponse | undefined;

function showRole(): void {
  const name = session.role();
  role.textContent = name ?? "";
  role.dataset["role"] = name ?? "";
  signOut.hidden = !session.token();
}
session.onChange(showRole);

function fail(error: unknown): void {
  if (isAborted(error)) {
    return;
  }
  if (needsToken(error)) {
    askForToken(describe(error)[0] ?? "");
    return;
  }
  problems.replaceChildren(...describe(error).map((line) => h("div", {}, line)));
  problems.hidden = false;
}

function askForToken(why: string): void {
  leaving.abort();
  const message = session.token() ? `The server refused this token (${why}).` : "This dashboard needs a token.";
  loginPage(main, session, message, () => {
    catalog = undefined; // read again with the new token, which names its role
    void route();
  });
}

async function route(): Promise<void> {
  leaving.abort();
  leaving = new AbortController();
  const signal = leaving.signal;
  problems.hidden = true;
  main.replaceChildren();
  try {
    // Once per token: the catalog (the new-job form names its entries), and the caller's role with it.
    catalog ??= await api.catalog.getCatalog({}, { signal });
  } catch (error) {
    catalog = undefined;
    fail(error);
    return;
  }
  const [, page = "jobs", id] = /^#\/?([a-z]*)\/?(.*)$/.exec(window.location.hash) ?? [];
  for (const link of nav.querySelectorAll("a")) {
    link.toggleAttribute("aria-current", link.dataset["page"] === page);
  }
  const ctx: PageContext = {
    api,
    session,
    catalog,
    signal,
    main,
    fail,
    navigate: (hash) => {
      window.location.hash = hash;
    },
  };
  try {
    if (page === "jobs" && id) {
      await jobPage(ctx, decodeURIComponent(id));
    } else if (page === "catalog") {
      catalogPage(ctx);
    } else if (page === "agents") {
      await agentsPage(ctx);
    } else {
      jobsPage(ctx);
    }
  } catch (error) {
    fail(error);
  }
}

window.addEventListener("hashchange", () => void route());
showRole();
void route();
