#!/usr/bin/env node
// Example florist-grpc client: a live mirror of the jobs the caller sees, by list-then-watch. Lists every page
// (`listed ID STATE revision R` per job), then watches from the first page's revision and prints each change
// (`ADDED|MODIFIED|DELETED ID STATE round N revision R`), dropping changes at or below the revision of the job it
// holds, so no change is missed or shown twice. A dropped connection is resumed from the last revision seen (a
// change or a bookmark); OUT_OF_RANGE (the server no longer keeps that revision) lists again.
// Runs until interrupted, or until --max-changes changes were printed (exit 0). Exit 2 on an error.
import { parseArgs } from "node:util";
import { Code, ConnectError } from "@connectrpc/connect";
import { type ConnectionOptions, connect, type FloristClients } from "./connection.js";
import { type Job } from "./gen/florist/v1/job_pb.js";
import { type JobChange, JobChangeType, JobChangeTypeSchema } from "./gen/florist/v1/job_service_pb.js";
import { jobStateName } from "./progress.js";
import { Backoff, isTransient } from "./retry.js";
import { describeRpcError, grpcCodeName } from "./rpc-error.js";

const USAGE =
  "usage: node dist/watch.js --address HOST:PORT [--token T] [--tls-ca F] [--filter F] [--max-changes N]\n" +
  "  (or FLORIST_ADDRESS, FLORIST_TOKEN, FLORIST_TLS_CA)";
const LIST_TIMEOUT_MS = 30_000;

class UsageError extends Error {}

interface Arguments extends ConnectionOptions {
  readonly filter: string;
  readonly maxChanges: number; // 0 = no limit
}

function parseArguments(argv: string[], env: NodeJS.ProcessEnv): Arguments | undefined {
  const options = {
    address: { type: "string" },
    token: { type: "string" },
    "tls-ca": { type: "string" },
    filter: { type: "string" },
    "max-changes": { type: "string" },
    help: { type: "boolean", short: "h" },
  } as const;
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    throw new UsageError(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  }
  if (values.help) {
    return undefined;
  }
  const maxChanges = Number(values["max-changes"] ?? "0");
  if (!Number.isInteger(maxChanges) || maxChanges < 0) {
    throw new UsageError(`--max-changes must be a whole number, not ${values["max-changes"]}\n${USAGE}`);
  }
  const token = values.token ?? env["FLORIST_TOKEN"];
  const tlsCaFile = values["tls-ca"] ?? env["FLORIST_TLS_CA"];
  return {
    address: values.address ?? env["FLORIST_ADDRESS"] ?? "localhost:50051",
    filter: values.filter ?? "",
    maxChanges,
    ...(token ? { token } : {}),
    ...(tlsCaFile ? { tlsCaFile } : {}),
  };
}

/** The jobs this client holds: each one's revision, the last one shown. */
class Mirror {
  readonly revisions = new Map<string, bigint>();
  printed = 0;

  /** Prints the change unless the job held is already at or past it; whether it was printed. */
  apply(change: JobChange): boolean {
    const job = change.job;
    if (job === undefined || change.revision <= (this.revisions.get(job.id) ?? 0n)) {
      return false;
    }
    if (change.type === JobChangeType.DELETED) {
      this.revisions.delete(job.id);
    } else {
      this.revisions.set(job.id, change.revision);
    }
    const type = JobChangeTypeSchema.value[change.type]?.name.replace("JOB_CHANGE_TYPE_", "") ?? "?";
    console.log(`${type} ${line(job)} revision ${change.revision}`);
    this.printed += 1;
    return true;
  }
}

function line(job: Job): string {
  return `${job.id} ${jobStateName(job.state)} round ${job.currentRound}`;
}

/** Every page, printed; the first page's revision (watched from). */
async function listAll(clients: FloristClients, filter: string, mirror: Mirror): Promise<bigint> {
  mirror.revisions.clear();
  let pageToken = "";
  let first: bigint | undefined;
  do {
    const page = await clients.jobs.listJobs({ filter, pageToken, pageSize: 100 }, { timeoutMs: LIST_TIMEOUT_MS });
    first ??= page.revision;
    for (const job of page.jobs) {
      mirror.revisions.set(job.id, job.revision);
      console.log(`listed ${line(job)} revision ${job.revision}`);
    }
    pageToken = page.nextPageToken;
  } while (pageToken);
  console.log(`listed at revision ${first}`);
  return first ?? 0n;
}

async function run(args: Arguments): Promise<number> {
  const clients = connect(args);
  const mirror = new Mirror();
  const backoff = new Backoff();
  let after = 0n;
  for (;;) {
    try {
      if (after === 0n) {
        after = await listAll(clients, args.filter, mirror);
      }
      for await (const response of clients.jobs.watchJobs({ filter: args.filter, afterRevision: after })) {
        const change = response.change;
        if (change === undefined) {
          continue;
        }
        backoff.reset(); // the stream made progress: a later failure starts from the shortest wait again
        after = change.revision > after ? change.revision : after;
        if (mirror.apply(change) && args.maxChanges > 0 && mirror.printed >= args.maxChanges) {
          return 0;
        }
      }
    } catch (error) {
      if (error instanceof ConnectError && error.code === Code.OutOfRange) {
        console.error(`revision ${after} is no longer kept: listing again`);
        after = 0n;
        continue;
      }
      const delay = isTransient(error) ? backoff.nextDelayMs() : undefined;
      if (delay === undefined || !(error instanceof ConnectError)) {
        throw error;
      }
      console.error(`watch interrupted (${grpcCodeName(error.code)}: ${error.rawMessage}); resuming after ${after}`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

async function main(): Promise<number> {
  try {
    const args = parseArguments(process.argv.slice(2), process.env);
    if (args === undefined) {
      console.log(USAGE);
      return 0;
    }
    return await run(args);
  } catch (error) {
    if (error instanceof ConnectError) {
      for (const message of describeRpcError(error)) {
        console.error(message);
      }
    } else {
      console.error(error instanceof Error ? error.message : String(error));
    }
    return 2;
  }
}

// Exit explicitly: the HTTP/2 session to the control plane would keep the process alive after the last change.
// (On Linux, writes to a pipe or a file are synchronous: nothing printed is lost.)
process.exit(await main());
