// The jobs list's source of changes, kept in this one module so that how the list stays live can change alone.
//
// Today: ListJobs (every page, basic view), listed again after the page's own changes and every few seconds.
// JobService.WatchJobs (list-then-watch from the listing's revision) replaces the timer once it is on main; the
// list page only sees `followJobs` and its `refresh`.
import type { Job } from "../../typescript/src/gen/florist/v1/job_pb.js";
import { JobView } from "../../typescript/src/gen/florist/v1/job_service_pb.js";
import type { Api } from "./api.js";
import { isAborted } from "./errors.js";

const PAGE_SIZE = 100;
const MAX_PAGES = 20; // a dashboard shows the newest 2,000 jobs
const RELIST_MS = 5_000;

export interface JobFeed {
  /** List again now (after this page created, started, stopped or deleted a job). */
  refresh(): void;
}

async function listAll(api: Api, signal: AbortSignal): Promise<Job[]> {
  const jobs: Job[] = [];
  let pageToken = "";
  for (let page = 0; page < MAX_PAGES; page++) {
    const response = await api.jobs.listJobs({ pageSize: PAGE_SIZE, pageToken, view: JobView.BASIC }, { signal });
    jobs.push(...response.jobs);
    pageToken = response.nextPageToken;
    if (!pageToken) {
      break;
    }
  }
  return jobs;
}

/** Calls `show` with the caller's jobs, newest first, and again as they change, until `signal` aborts. */
export function followJobs(
  api: Api,
  signal: AbortSignal,
  show: (jobs: readonly Job[]) => void,
  fail: (error: unknown) => void,
): JobFeed {
  let wake: (() => void) | undefined;
  const refresh = (): void => wake?.();
  void (async () => {
    while (!signal.aborted) {
      try {
        show(await listAll(api, signal));
      } catch (error) {
        if (isAborted(error) || signal.aborted) {
          return;
        }
        fail(error);
        return;
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, RELIST_MS);
        wake = () => {
          clearTimeout(timer);
          resolve();
        };
        signal.addEventListener("abort", () => wake?.(), { once: true });
      });
    }
  })();
  return { refresh };
}
