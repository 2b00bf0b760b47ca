// A job's progress as its MetricsEvents tell it: every source's report rebuilt from merge patches, and the lines a
// user wants to see (job state changes, one line per evaluated round).
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import { JobState, JobStateSchema } from "./gen/florist/v1/job_pb.js";
import { type MetricsEvent, SourceKind } from "./gen/florist/v1/training_service_pb.js";
import { EVAL_ROUND_END } from "./curves.js";
import { applyMergePatch, isObject } from "./merge-patch.js";

/** The proto name of a job state, e.g. `JOB_STATE_FINISHED_SUCCESSFULLY`. */
export function jobStateName(state: JobState): string {
  return JobStateSchema.value[state]?.name ?? `JOB_STATE_${state}`;
}

export class JobProgress {
  /** Sequence of the last event applied: resume StreamMetrics after it. */
  lastSequence = 0n;
  state: JobState = JobState.UNSPECIFIED;
  private readonly reports = new Map<string, JsonValue>();
  private readonly reportedRounds = new Set<string>();
  private readonly roundsWithMetrics = new Set<string>();

  /** Applies the next event of the job's log and returns what to print about it. */
  apply(event: MetricsEvent): string[] {
    // The log is contiguous from 1 and StreamMetrics resumes exactly after `lastSequence`: anything else would
    // rebuild wrong reports, so it is an error, not something to paper over.
    if (event.sequence !== this.lastSequence + 1n) {
      throw new Error(`expected event ${this.lastSequence + 1n}, got ${event.sequence}`);
    }
    this.lastSequence = event.sequence;
    const source = sourceKey(event);
    const patch = event.patch ?? {};
    const report = applyMergePatch(this.reports.get(source), patch);
    this.reports.set(source, report);

    const lines: string[] = [];
    if (event.source?.kind === SourceKind.SERVER && isObject(report)) {
      lines.push(...this.newlyEvaluatedRounds(report));
    }
    // The control plane tells the job something (a report set aside, a bound met): not a state change.
    if (event.source?.kind === SourceKind.JOB && typeof patch["notice"] === "string") {
      lines.push(`notice: ${patch["notice"]}`);
    }
    if (event.jobState !== this.state) {
      this.state = event.jobState;
      const why = typeof patch["error_message"] === "string" && patch["error_message"] ? `: ${patch["error_message"]}` : "";
      lines.push(`job state: ${jobStateName(this.state)}${why}`);
    }
    return lines;
  }

  /** The server's rebuilt report (FLorist layout: `rounds."<n>".eval_round_metrics_aggregated`, ...). */
  serverReport(): JsonObject {
    const report = this.reports.get("server");
    return isObject(report) ? report : {};
  }

  private newlyEvaluatedRounds(server: JsonObject): string[] {
    const rounds = server["rounds"];
    if (!isObject(rounds)) {
      return [];
    }
    const lines: string[] = [];
    for (const round of Object.keys(rounds).sort((a, b) => Number(a) - Number(b))) {
      const entry = rounds[round];
      const aggregated = isObject(entry) ? entry["eval_round_metrics_aggregated"] : undefined;
      // A round is done at `eval_round_end` (FLorist's UI); FL4Health omits the aggregated metrics of a round that
      // has none, and older layouts lack `eval_round_end`: either closes it.
      const done = isObject(entry) && (EVAL_ROUND_END in entry || isObject(aggregated));
      if (isObject(aggregated) && this.reportedRounds.has(round) && !this.roundsWithMetrics.has(round)) {
        // FL4Health reports a round's aggregated metrics after its loss: they get a line of their own.
        this.roundsWithMetrics.add(round);
        lines.push(`round ${round}: ${describeMetrics(aggregated)}`);
        continue;
      }
      if (isObject(entry) && done && !this.reportedRounds.has(round)) {
        this.reportedRounds.add(round);
        if (isObject(aggregated)) {
          this.roundsWithMetrics.add(round);
        }
        // FLorist's layout puts the aggregated loss at round level, beside the aggregated metrics.
        const loss = entry[ROUND_LOSS];
        const metrics: JsonObject = {
          ...(loss === undefined ? {} : { [ROUND_LOSS]: loss }),
          ...(isObject(aggregated) ? aggregated : {}),
        };
        lines.push(`round ${round}: ${describeMetrics(metrics)}`);
      }
    }
    return lines;
  }
}

/** The server's aggregated validation loss of a round (FLorist's layout: at round level). */
const ROUND_LOSS = "val - loss - aggregated";

function sourceKey(event: MetricsEvent): string {
  switch (event.source?.kind) {
    case SourceKind.SERVER:
      return "server";
    case SourceKind.CLIENT:
      return `client ${event.source.clientUuid || event.source.clientIndex}`;
    default:
      return "job";
  }
}

// Metric names are whatever the clients report ("val - loss - aggregated", "val - prediction - accuracy -
// aggregated", ...): show every loss and accuracy there is, by a short label when there is just one of a kind.
function describeMetrics(metrics: JsonObject): string {
  const entries = Object.entries(metrics);
  const losses = entries.filter(([name]) => /loss/i.test(name));
  const accuracies = entries.filter(([name]) => /acc/i.test(name) && !/loss/i.test(name));
  const parts = [...labelled("val loss", losses), ...labelled("val accuracy", accuracies)];
  if (parts.length === 0) {
    parts.push(...entries.map(([name, value]) => `${name} ${formatValue(value)}`));
  }
  return parts.length > 0 ? parts.join(", ") : "evaluated (no metrics reported)";
}

function labelled(label: string, entries: [string, JsonValue][]): string[] {
  const [only] = entries;
  if (entries.length === 1 && only !== undefined) {
    return [`${label} ${formatValue(only[1])}`];
  }
  return entries.map(([name, value]) => `${name} ${formatValue(value)}`);
}

// Non-finite numbers arrive as the strings "NaN", "Infinity", "-Infinity" and are shown as they are.
function formatValue(value: JsonValue): string {
  return typeof value === "number" ? value.toFixed(4) : typeof value === "string" ? value : JSON.stringify(value);
}
