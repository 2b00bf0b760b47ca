// One job, live: its state, learning curves that grow as rounds end (StreamMetrics), each client's state, the FL
// server's and each client's log (StreamLogs), and for operators its controls and the trained model's download.
// Streams: metrics, one log, and a download while it runs: at most 3 (stream-budget.ts).
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { Code, ConnectError } from "@connectrpc/connect";
import { JobState, type Job } from "../../../typescript/src/gen/florist/v1/job_pb.js";
import type { RoundRow, RoundValues } from "../../../typescript/src/curves.js";
import { lineChart, type Series } from "../chart.js";
import { h, when } from "../dom.js";
import { downloadModel } from "../download.js";
import { describe, isAborted } from "../errors.js";
import { LiveJob } from "../job-live.js";
import { LogTail } from "../logs.js";
import { actionButton, clientStateName, type PageContext, stateBadge, table, TERMINAL_STATES } from "../page.js";
import { jobActions } from "./jobs.js";

const REFRESH_AFTER_EVENT_MS = 500; // clients' states and times come from GetJob, read once events settle
const RESUME_ATTEMPTS = 5;

const CHARTS: readonly { metric: string; title: string; value: (v: RoundValues) => number | undefined }[] = [
  { metric: "val-loss", title: "Validation loss", value: (v) => v.valLoss },
  { metric: "train-loss", title: "Training loss", value: (v) => v.trainLoss },
  { metric: "val-accuracy", title: "Validation accuracy", value: (v) => v.valAccuracy },
];

export async function jobPage(ctx: PageContext, jobId: string): Promise<void> {
  const first = (await ctx.api.jobs.getJob({ jobId }, { signal: ctx.signal })).job;
  if (first === undefined) {
    return;
  }
  const live = new LiveJob(first);
  const view = new JobView(ctx, live);
  ctx.main.append(view.element);
  view.render();
  await follow(ctx, live, view);
}

class JobView {
  readonly element: HTMLElement;
  readonly logs: LogTail;
  private readonly head = h("div", { class: "page-head" });
  private readonly facts = h("dl", { class: "facts" });
  private readonly progress = h("div", { class: "progress" });
  private readonly charts = h("div", { class: "charts" });
  private readonly clients = h("section", { class: "panel" });
  private readonly notice = h("p", { class: "notice", role: "status" });
  private chartsKey = "";
  private logsShown = false;
  private actionsKey = "";
  private readonly actions = h("div", { class: "actions" });

  constructor(
    private readonly ctx: PageContext,
    private readonly live: LiveJob,
  ) {
    this.logs = new LogTail(ctx.api, live.job.id, live.job.clients.length, ctx.signal, ctx.fail);
    this.element = h(
      "article",
      { class: "job", "data-job": live.job.id },
      this.head,
      this.notice,
      this.facts,
      this.progress,
      h("section", { class: "panel" }, h("h2", {}, "Learning curves"), this.charts),
      this.clients,
      this.logs.element,
    );
  }

  render(): void {
    const job = this.live.job;
    const rows = this.live.rounds();
    this.head.replaceChildren(
      h("h1", {}, "Job ", h("code", { title: job.id }, job.id.slice(0, 8))),
      stateBadge(job.state),
      this.actionsFor(job),
    );
    this.facts.replaceChildren(...facts(job));
    const planned = this.live.plannedRounds();
    const done = rows.filter((row) => row.valLoss !== undefined).length;
    this.progress.replaceChildren(
      h("span", { "data-rounds-done": done }, planned ? `Round ${done} of ${planned}` : `Round ${done}`),
      h("progress", { max: Math.max(planned, done, 1), value: done }),
    );
    const key = JSON.stringify(rows, (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? String(v) : v));
    if (key !== this.chartsKey) {
      this.chartsKey = key;
      const charts = CHARTS.map((c) => lineChart(c.metric, c.title, series(rows, c.value, job), planned));
      this.charts.replaceChildren(...charts);
    }
    this.clients.replaceChildren(h("h2", {}, "Clients"), clientsTable(job, rows));
    if (!this.logsShown && (job.state === JobState.IN_PROGRESS || job.startTime !== undefined)) {
      this.logsShown = true; // a job's logs exist from its start (never, for one stopped while QUEUED)
      this.logs.show(!TERMINAL_STATES.has(job.state));
    }
  }

  private actionsFor(job: Job): HTMLElement {
    if (!this.ctx.session.mayMutate()) {
      return this.actions; // a viewer watches
    }
    const key = `${job.state}`;
    if (key === this.actionsKey) {
      return this.actions; // keep the buttons (and their focus) while nothing they depend on changed
    }
    this.actionsKey = key;
    const refreshed = (): void => void this.refresh();
    this.actions.replaceChildren(jobActions(this.ctx, job, refreshed));
    if (job.state === JobState.FINISHED_SUCCESSFULLY) {
      this.actions.append(actionButton("Download model", "download-model", () => this.download()));
    }
    return this.actions;
  }

  private async download(): Promise<void> {
    try {
      const saved = await downloadModel(this.ctx.api, this.live.job.id, this.ctx.signal);
      this.notice.textContent = `Saved ${saved.fileName}: ${saved.sizeBytes} bytes, sha256 ${saved.sha256} (verified)`;
      this.notice.dataset["downloadSha256"] = saved.sha256;
    } catch (error) {
      if (!isAborted(error)) {
        this.notice.textContent = describe(error).join(" ");
      }
    }
  }

  async refresh(): Promise<void> {
    try {
      const fresh = (await this.ctx.api.jobs.getJob({ jobId: this.live.job.id }, { signal: this.ctx.signal })).job;
      if (fresh !== undefined) {
        this.live.refresh(fresh);
        this.render();
      }
    } catch (error) {
      this.ctx.fail(error);
    }
  }
}

function facts(job: Job): HTMLElement[] {
  const entries: [string, string][] = [
    ["Id", job.id],
    ["Project", job.project],
    ["Owner", job.owner || "–"],
    ["Model", job.model],
    ["Strategy", `${job.strategy} (clients ${job.clientType})`],
    ["Optimizer", job.optimizer],
    ["Created", when(job.createTime && timestampDate(job.createTime))],
    ...(job.queueTime ? ([["Queued", when(timestampDate(job.queueTime))]] as [string, string][]) : []),
    ["Started", when(job.startTime && timestampDate(job.startTime))],
    ["Ended", when(job.endTime && timestampDate(job.endTime))],
  ];
  if (job.errorMessage) {
    entries.push(["Error", job.errorMessage]);
  }
  return entries.map(([term, value]) => h("div", {}, h("dt", {}, term), h("dd", {}, value)));
}

function series(rows: readonly RoundRow[], value: (v: RoundValues) => number | undefined, job: Job): Series[] {
  return [
    { key: "aggregated", label: "aggregated", points: rows.map((row) => [row.round, value(row)] as const) },
    ...job.clients.map((_, i) => ({
      key: `client${i}`,
      label: `client ${i}`,
      points: rows.map((row) => [row.round, row.clients[i] && value(row.clients[i])] as const),
    })),
  ];
}

function clientsTable(job: Job, rows: readonly RoundRow[]): HTMLElement {
  const last = rows.at(-1);
  const number = (v: number | undefined): string => (v === undefined ? "–" : v.toFixed(4));
  return table(
    ["Client", "Where", "Device", "State", "Val loss", "Val accuracy"],
    job.clients.map((client, i) => [
      `client ${i}`,
      client.agent || "local",
      client.device || "auto",
      h("span", { class: "badge", "data-client-state": clientStateName(client.state) }, clientStateName(client.state)),
      number(last?.clients[i]?.valLoss),
      number(last?.clients[i]?.valAccuracy),
    ]),
  );
}

/** StreamMetrics from the job's first event, resumed after the last one applied when the stream breaks. */
async function follow(ctx: PageContext, live: LiveJob, view: JobView): Promise<void> {
  let attempts = 0;
  let refreshTimer: ReturnType<typeof setTimeout> | undefined;
  const refreshSoon = (): void => {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => void view.refresh(), REFRESH_AFTER_EVENT_MS);
  };
  while (!ctx.signal.aborted) {
    try {
      const request = { jobId: live.job.id, afterSequence: live.lastSequence };
      for await (const response of ctx.api.training.streamMetrics(request, { signal: ctx.signal })) {
        if (response.event !== undefined && !live.apply(response.event)) {
          break; // not the next event: resume after the last one applied
        }
        attempts = 0;
        view.render();
        refreshSoon();
      }
      if (TERMINAL_STATES.has(live.job.state)) {
        await view.refresh();
        return;
      }
    } catch (error) {
      if (isAborted(error) || ctx.signal.aborted) {
        return;
      }
      if (error instanceof ConnectError && error.code === Code.OutOfRange) {
        await view.refresh(); // the job had ended and every event was applied
        return;
      }
      attempts += 1;
      if (attempts > RESUME_ATTEMPTS) {
        ctx.fail(error);
        return;
      }
      await new Promise((resolve) => setTimeout(resolve, 500 * 2 ** attempts));
    }
  }
}
