// The jobs of the caller's projects, newest first, kept live by job-list-feed.ts; operators also create, start,
// stop and delete jobs here. A viewer's page has no such button (the API refuses them anyway).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { JobState, type Job } from "../../../typescript/src/gen/florist/v1/job_pb.js";
import { h, when } from "../dom.js";
import { followJobs, type JobFeed } from "../job-list-feed.js";
import { actionButton, type PageContext, stateBadge, table, TERMINAL_STATES } from "../page.js";
import { newJobForm } from "./new-job.js";

export function jobsPage(ctx: PageContext): void {
  const list = h("div", { class: "jobs", "aria-live": "polite" }, h("p", { class: "muted" }, "Loading jobs…"));
  const heading = h("div", { class: "page-head" }, h("h1", {}, "Jobs"));
  ctx.main.append(heading, list);
  let feed: JobFeed | undefined;
  if (ctx.session.mayMutate()) {
    const form = newJobForm(ctx, () => feed?.refresh());
    form.hidden = true;
    heading.append(
      h("button", { type: "button", "data-action": "new-job", onclick: () => (form.hidden = !form.hidden) }, "New job"),
    );
    heading.after(form);
  }
  const show = (jobs: readonly Job[]): void => list.replaceChildren(jobsTable(ctx, jobs, () => feed?.refresh()));
  feed = followJobs(ctx.api, ctx.signal, show, ctx.fail);
}

function jobsTable(ctx: PageContext, jobs: readonly Job[], changed: () => void): HTMLElement {
  if (jobs.length === 0) {
    return h("p", { class: "muted" }, "No jobs yet.");
  }
  const mutate = ctx.session.mayMutate();
  const columns = ["Job", "State", "Model", "Strategy", "Clients", "Rounds", "Created", ...(mutate ? ["Actions"] : [])];
  const rows = jobs.map((job) => [
    h("a", { href: `#/jobs/${job.id}`, title: job.id, class: "job-id" }, job.id.slice(0, 8)),
    stateBadge(job.state),
    job.model,
    job.strategy,
    String(job.clients.length),
    String(job.serverConfig?.["n_server_rounds"] ?? "–"),
    when(job.createTime && timestampDate(job.createTime)),
    ...(mutate ? [jobActions(ctx, job, changed)] : []),
  ]);
  return table(columns, rows, (i) => ({ "data-job": jobs[i]?.id ?? "" }));
}

/** Start, stop and delete, as the job's state allows. */
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
  if (job.state === JobState.IN_PROGRESS) {
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
