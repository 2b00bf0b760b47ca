// The jobs list, kept live by list-then-watch (DESIGN.md, "Watch"): ListJobs, every page, then JobService.WatchJobs
// from the first page's revision, dropping each change at or below the revision of the job held (a later page may
// already hold it). A broken watch resumes after the last revision seen (a change or a bookmark); OUT_OF_RANGE (the
// server no longer keeps that revision) lists again. One stream for the whole list, whatever the number of jobs:
// the page has 3 (stream-budget.ts), and the job page needs two of them.
import { Code, ConnectError } from "@connectrpc/connect";
import type { Job } from "../../typescript/src/gen/florist/v1/job_pb.js";
import { type JobChange, JobChangeType, JobView } from "../../typescript/src/gen/florist/v1/job_service_pb.js";
import type { Api } from "./api.js";
import { isAborted } from "./errors.js";

const PAGE_SIZE = 100;
const MAX_PAGES = 20; // a dashboard lists the newest 2,000 jobs (and adds any that change later)
const RESUME_ATTEMPTS = 6; // about a minute of waits in all before the page says the watch failed
// Errors a later try cannot change: the page shows them rather than retrying.
const FINAL_CODES: ReadonlySet<Code> = new Set([
  Code.Unauthenticated,
  Code.PermissionDenied,
  Code.InvalidArgument,
  Code.NotFound,
  Code.FailedPrecondition,
  Code.Unimplemented,
]);

/** The jobs the page holds, each at the revision of its last change seen. */
export class JobMirror {
  private readonly jobs = new Map<string, Job>();

  /** Holds exactly `jobs` (a fresh listing). */
  reset(jobs: readonly Job[]): void {
    this.jobs.clear();
    for (const job of jobs) {
      this.jobs.set(job.id, job);
    }
  }

  /** Applies a change unless the job held is already at or past it; whether the list changed. */
  apply(change: JobChange): boolean {
    const job = change.job;
    if (job === undefined || change.type === JobChangeType.BOOKMARK) {
      return false;
    }
    if (change.revision <= (this.jobs.get(job.id)?.revision ?? 0n)) {
      return false;
    }
    if (change.type === JobChangeType.DELETED) {
      return this.jobs.delete(job.id);
    }
    job.revision = change.revision;
    this.jobs.set(job.id, job);
    return true;
  }

  /** Newest first, as ListJobs orders them. */
  newestFirst(): Job[] {
    const created = (job: Job): bigint =>
      (job.createTime?.seconds ?? 0n) * 1_000_000_000n + BigInt(job.createTime?.nanos ?? 0);
    return [...this.jobs.values()].sort((a, b) => {
      const [ta, tb] = [created(a), created(b)];
      return ta !== tb ? (tb > ta ? 1 : -1) : b.id.localeCompare(a.id);
    });
  }
}

/** Every page (at most MAX_PAGES); the first page's revision, to watch from. */
async function listAll(api: Api, signal: AbortSignal, mirror: JobMirror): Promise<bigint> {
  const jobs: Job[] = [];
  let pageToken = "";
  let first: bigint | undefined;
  for (let page = 0; page < MAX_PAGES; page++) {
    const response = await api.jobs.listJobs({ pageSize: PAGE_SIZE, pageToken, view: JobView.BASIC }, { signal });
    first ??= response.revision;
    jobs.push(...response.jobs);
    pageToken = response.nextPageToken;
    if (!pageToken) {
      break;
    }
  }
  mirror.reset(jobs);
  return first ?? 0n;
}

/** `live` while the watch runs, `resuming` while it waits to reconnect; tests and the page read it. */
export type FeedState = "listing" | "live" | "resuming";

/**
 * Calls `show` with the caller's jobs, newest first, once listed and again after each change, until `signal`
 * aborts. A failure no retry can mend (or the last of RESUME_ATTEMPTS) goes to `fail`.
 */
export async function followJobs(
  api: Api,
  signal: AbortSignal,
  show: (jobs: readonly Job[]) => void,
  state: (now: FeedState) => void,
  fail: (error: unknown) => void,
): Promise<void> {
  const mirror = new JobMirror();
  let after = 0n; // 0: list (again) before watching
  let attempts = 0;
  while (!signal.aborted) {
    try {
      if (after === 0n) {
        state("listing");
        after = await listAll(api, signal, mirror);
        show(mirror.newestFirst());
      }
      state("live");
      for await (const { change } of api.jobs.watchJobs({ afterRevision: after }, { signal })) {
        if (change === undefined) {
          continue;
        }
        attempts = 0; // the stream made progress: a later break starts from the shortest wait again
        after = change.revision > after ? change.revision : after;
        if (mirror.apply(change)) {
          show(mirror.newestFirst());
        }
      }
      // The server ended the stream (it is stopping): resume like after a break.
    } catch (error) {
      if (isAborted(error) || signal.aborted) {
        return;
      }
      if (error instanceof ConnectError && error.code === Code.OutOfRange) {
        after = 0n; // that revision is no longer kept: list again (after the wait, so that this loop is bounded)
      } else if ((error instanceof ConnectError && FINAL_CODES.has(error.code)) || attempts >= RESUME_ATTEMPTS) {
        fail(error);
        return;
      }
    }
    attempts += 1;
    state("resuming");
    await new Promise((resolve) => setTimeout(resolve, 250 * 2 ** attempts));
  }
}
