// A job as the page shows it while it runs: GetJob's job, with every source's report rebuilt from the events of
// StreamMetrics (each event's merge patch applied in order), so the curves grow as rounds end. The report layout is
// read by clients/typescript's curves.ts, the same numbers `florist-grpc plot` draws.
import type { JsonObject } from "@bufbuild/protobuf";
import { type Job } from "../../typescript/src/gen/florist/v1/job_pb.js";
import { type MetricsEvent, SourceKind } from "../../typescript/src/gen/florist/v1/training_service_pb.js";
import { roundsTable, type RoundRow } from "../../typescript/src/curves.js";
import { applyMergePatch, isObject } from "../../typescript/src/merge-patch.js";

export class LiveJob {
  /** Sequence of the last event applied: StreamMetrics resumes after it. */
  lastSequence = 0n;

  constructor(public job: Job) {
    // Reports are rebuilt from the events, from the first one on.
    job.serverMetrics = {};
    for (const client of job.clients) {
      client.metrics = {};
    }
  }

  /** Applies the next event; false if it is not the next one (a gap: the caller resumes after lastSequence). */
  apply(event: MetricsEvent): boolean {
    if (event.sequence !== this.lastSequence + 1n) {
      return false;
    }
    this.lastSequence = event.sequence;
    const patch: JsonObject = event.patch ?? {};
    const source = event.source;
    if (source?.kind === SourceKind.SERVER) {
      this.job.serverMetrics = patched(this.job.serverMetrics, patch);
    } else if (source?.kind === SourceKind.CLIENT) {
      const client = this.job.clients[source.clientIndex];
      if (client !== undefined) {
        client.metrics = patched(client.metrics, patch);
      }
    } else if (typeof patch["error_message"] === "string") {
      this.job.errorMessage = patch["error_message"];
    }
    this.job.state = event.jobState;
    return true;
  }

  /** Takes what the events do not carry (clients' states, times, uuids) from a fresh GetJob. */
  refresh(fresh: Job): void {
    const { serverMetrics } = this.job;
    const metrics = this.job.clients.map((c) => c.metrics);
    const state = this.job.state;
    this.job = fresh;
    this.job.serverMetrics = serverMetrics;
    this.job.clients.forEach((client, index) => {
      client.metrics = metrics[index] ?? {};
    });
    // The events are the order of record for the state: a GetJob read before the last event may be older.
    if (this.lastSequence > 0n) {
      this.job.state = state;
    }
  }

  rounds(): RoundRow[] {
    return roundsTable(this.job);
  }

  /** The number of rounds the job runs (its server_config), 0 if it does not say. */
  plannedRounds(): number {
    const n = this.job.serverConfig?.["n_server_rounds"];
    return typeof n === "number" ? n : 0;
  }
}

function patched(report: JsonObject | undefined, patch: JsonObject): JsonObject {
  const result = applyMergePatch(report, patch);
  return isObject(result) ? result : {};
}
