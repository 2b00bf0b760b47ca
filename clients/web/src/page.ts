// What every page gets: the API, the session, a signal that aborts when the reader leaves the page (ending the
// page's streams), the element to draw into, and one way to report a failed call.
import type { GetCatalogResponse } from "../../typescript/src/gen/florist/v1/catalog_service_pb.js";
import { ClientState, ClientStateSchema, JobState } from "../../typescript/src/gen/florist/v1/job_pb.js";
import { jobStateName } from "../../typescript/src/progress.js";
import type { Api } from "./api.js";
import { h } from "./dom.js";
import type { Session } from "./session.js";

export interface PageContext {
  readonly api: Api;
  readonly session: Session;
  readonly catalog: GetCatalogResponse;
  readonly signal: AbortSignal;
  readonly main: HTMLElement;
  /** Shows the error of a call above the page (or asks for a token); ignores calls the page itself ended. */
  fail(error: unknown): void;
  navigate(hash: string): void;
}

/** `FINISHED_SUCCESSFULLY` for JOB_STATE_FINISHED_SUCCESSFULLY. */
export function stateName(state: JobState): string {
  return jobStateName(state).replace(/^JOB_STATE_/, "");
}

export function stateBadge(state: JobState): HTMLElement {
  const name = stateName(state);
  return h("span", { class: `badge state-${name.toLowerCase()}`, "data-state": name }, name.replaceAll("_", " "));
}

export function clientStateName(state: ClientState): string {
  return (ClientStateSchema.value[state]?.name ?? String(state)).replace(/^CLIENT_STATE_/, "");
}

export const RUNNING_STATES: ReadonlySet<JobState> = new Set([JobState.IN_PROGRESS]);
export const TERMINAL_STATES: ReadonlySet<JobState> = new Set([
  JobState.FINISHED_SUCCESSFULLY,
  JobState.FINISHED_WITH_ERROR,
  JobState.CANCELLED,
]);

/** A button that runs `act` once at a time (disabled meanwhile); `data-action` names what it does. */
export function actionButton(
  label: string,
  action: string,
  act: () => Promise<void>,
  danger = false,
): HTMLButtonElement {
  const button = h("button", { type: "button", class: danger ? "danger" : "", "data-action": action }, label);
  button.addEventListener("click", () => {
    button.disabled = true;
    void act().finally(() => {
      button.disabled = false;
    });
  });
  return button;
}

/** A table that becomes one card per row on a phone: each cell carries its column's name. */
export function table(
  columns: readonly string[],
  rows: readonly (readonly (Node | string)[])[],
  rowAttributes?: (i: number) => Record<string, string>,
): HTMLTableElement {
  return h(
    "table",
    { class: "cards" },
    h("thead", {}, h("tr", {}, ...columns.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      ...rows.map((cells, i) =>
        h("tr", rowAttributes?.(i) ?? {}, ...cells.map((cell, j) => h("td", { "data-label": columns[j] ?? "" }, cell))),
      ),
    ),
  );
}
