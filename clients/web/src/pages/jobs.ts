// The jobs of the caller's projects, newest first, live (job-list-feed.ts: list-then-watch, one stream), with each
// job's project and owner; operators also create, start, stop and delete jobs here. A viewer's page has no such
// button (the API refuses them anyway). Changes made anywhere (this page, the CLI, another client) arrive through
// the watch, so no action lists again.
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { JobState, type Job } from "../../../typescript/src/gen/florist/v1/job_pb.js";
import { h, when } from "../dom.js";
import { followJobs } from "../job-list-feed.js";
import { actionButton, type PageContext, stateBadge, table, TERMINAL_STATES } from "../page.js";
import { newJobForm } from "./new-job.js";

export function jobsPage(ctx: PageContext): void {
  const list = h("div", { class: "jobs", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading jobs…"));
  const heading = h("div", { class: "page-head" }, h("h1", {}, "Jobs"));
  ctx.main.append(heading, list);
  if (ctx.session.mayMutate()) {
    const form = newJobForm(ctx);
    form.hidden = true;
    heading.append(
      h("button", { type: "button", "data-action": "new-job", onclick: () => (form.hidden = !form.hidden) }, "New job"),
    );
    heading.after(form);
  }
  // One drawing per frame however many changes arrive in it (a burst of state changes redraws once).
  let latest: readonly Job[] | undefined;
  const draw = (): void => {
    if (latest !== undefined) {
      list.replaceChildren(jobsTable(ctx, latest));
      latest = undefined;
    }
  };
  const show = (jobs: readonly Job[]): void => {
    if (latest === undefined) {
      requestAnimationFrame(draw);
    }
    latest = jobs;
  };
  void followJobs(ctx.api, ctx.signal, show, (now) => (list.dataset["feed"] = now), ctx.fail);
}

function jobsTable(ctx: PageContext, jobs: readonly Job[]): HTMLElement {
  if (jobs.length === 0) {
    return h("p", { class: "muted" }, "No jobs yet.");
  }
  const mutate = ctx.session.mayMutate();
  const columns = ["Job", "State", "Project", "Owner", "Model", "Strategy", "Clients", "Rounds", "Created"];
  if (mutate) {
    columns.push("Actions");
  }
  const rows = jobs.map((job) => [
    h("a", { href: `#/jobs/${job.id}`, title: job.id, class: "job-id" }, job.id.slice(0, 8)),
    stateBadge(job.state),
    h("span", { "data-project": job.project }, job.project),
    h("span", { "data-owner": job.owner }, job.owner || "–"),
    job.model,
    job.strategy,
    String(job.clients.length),
    String(job.serverConfig?.["n_server_rounds"] ?? "–"),
    when(job.createTime && timestampDate(job.createTime)),
    ...(mutate ? [jobActions(ctx, job, () => undefined)] : []),
  ]);
  return table(columns, rows, (i) => ({ "data-job": jobs[i]?.id ?? "" }));
}

/** Start, stop and delete, as the job's state allows; `changed` after each (the jobs list needs nothing: its watch
 * brings the change). A QUEUED job may be stopped (it ends CANCELLED), not started or deleted. */
export function jobActions(ctx: PageContext, job: Job, changed: () => void): HTMLElement {
  const actions = h("div", { class: "actions" });
  const run = (call: () => Promise<unknown>) => async (): Promise<void> => {
    try {
      await call();
    } catch (error) {
      ctx.fail(error);
    }
    changed();
  };
  if (job.state === JobState.NOT_STARTED) {
    actions.append(actionButton("Start", "start", run(() => ctx.api.training.startTraining({ jobId: job.id }))));
  }
  if (job.state === JobState.IN_PROGRESS || job.state === JobState.QUEUED) {
    actions.append(
      actionButton("Stop", "stop", run(async () => {
        if (window.confirm(`Stop job ${job.id.slice(0, 8)}? It ends CANCELLED.`)) {
          await ctx.api.training.stopTraining({ jobId: job.id });
        }
      }), true),
    );
  }
  if (job.state === JobState.NOT_STARTED || TERMINAL_STATES.has(job.state)) {
    actions.append(
      actionButton("Delete", "delete", run(async () => {
        if (window.confirm(`Delete job ${job.id.slice(0, 8)} with its events and logs?`)) {
          await ctx.api.jobs.deleteJob({ jobId: job.id });
        }
      }), true),
    );
  }
  return actions;
}
