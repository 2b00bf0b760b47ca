#!/usr/bin/env node
// Example florist-grpc client: creates a job from a JSON file, starts it, streams its metrics (resuming with
// after_sequence, so no event is lost or repeated), prints progress, writes the outputs asked for (the trained
// model, the learning curves) and finally `final state: JOB_STATE_...`.
// Exit code 0 only when the job finished successfully; 1 when it ended otherwise; 2 on an error.
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import { dirname, isAbsolute, resolve } from "node:path";
import { parseArgs } from "node:util";
import { create, fromJson, type JsonValue } from "@bufbuild/protobuf";
import { ConnectError } from "@connectrpc/connect";
import { type ConnectionOptions, connect, type FloristClients } from "./connection.js";
import { type CreateJobRequest, CreateJobRequestSchema } from "./gen/florist/v1/job_service_pb.js";
import { JobSchema, JobState } from "./gen/florist/v1/job_pb.js";
import { checkOutputPaths, type JobOutputs, OutputPathError, writeJobOutputs } from "./job-outputs.js";
import { JobProgress, jobStateName } from "./progress.js";
import { Backoff, withRetries } from "./retry.js";
import { describeRpcError, grpcCodeName } from "./rpc-error.js";

const USAGE =
  "usage: node dist/main.js --address HOST:PORT --job-file F.json [--token T] [--tls-ca F]\n" +
  "         [--model-out F.safetensors] [--plot-out F.png] [--csv-out F.csv]\n" +
  "  (or FLORIST_ADDRESS, FLORIST_TOKEN, FLORIST_TLS_CA)";
// Unary calls are bounded; StartTraining waits for the FL server to be ready (the server bounds that at 30 s).
const CREATE_TIMEOUT_MS = 30_000;
const START_TIMEOUT_MS = 120_000;

class UsageError extends Error {}

interface Arguments extends ConnectionOptions {
  readonly jobFile: string;
  readonly outputs: JobOutputs;
}

/** The command line and FLORIST_* environment; undefined when only --help was asked for. */
function parseArguments(argv: string[], env: NodeJS.ProcessEnv): Arguments | undefined {
  const options = {
    address: { type: "string" },
    "job-file": { type: "string" },
    token: { type: "string" },
    "tls-ca": { type: "string" },
    "model-out": { type: "string" },
    "plot-out": { type: "string" },
    "csv-out": { type: "string" },
    help: { type: "boolean", short: "h" },
  } as const;
  let values;
  try {
    ({ values } = parseArgs({ args: argv, options, strict: true, allowPositionals: false }));
  } catch (error) {
    // parseArgs throws a TypeError naming the unknown or malformed option.
    throw new UsageError(`${error instanceof Error ? error.message : String(error)}\n${USAGE}`);
  }
  if (values.help) {
    return undefined;
  }
  const jobFile = values["job-file"];
  if (!jobFile) {
    throw new UsageError(`--job-file is required\n${USAGE}`);
  }
  const token = values.token ?? env["FLORIST_TOKEN"];
  const tlsCaFile = values["tls-ca"] ?? env["FLORIST_TLS_CA"];
  const [modelOut, plotOut, csvOut] = [values["model-out"], values["plot-out"], values["csv-out"]];
  return {
    address: values.address ?? env["FLORIST_ADDRESS"] ?? "localhost:50051",
    jobFile,
    outputs: {
      ...(modelOut !== undefined ? { modelOut } : {}),
      ...(plotOut !== undefined ? { plotOut } : {}),
      ...(csvOut !== undefined ? { csvOut } : {}),
    },
    ...(token ? { token } : {}),
    ...(tlsCaFile ? { tlsCaFile } : {}),
  };
}

/**
 * The CreateJob request from a job file: `{"job": {...}}` (optionally with a request_id) or the bare job. Parsed
 * with the generated schemas, so a misspelt or unknown field is an error naming it, not silently dropped. A
 * relative `data_path` is resolved against the job file's directory, as the Python CLI does.
 */
function readCreateJobRequest(path: string): CreateJobRequest {
  let json: JsonValue;
  try {
    json = JSON.parse(readFileSync(path, "utf8")) as JsonValue;
  } catch (error) {
    throw new UsageError(`cannot read job file ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
  const wrapped = typeof json === "object" && json !== null && !Array.isArray(json) && "job" in json;
  try {
    const request = wrapped
      ? fromJson(CreateJobRequestSchema, json)
      : create(CreateJobRequestSchema, { job: fromJson(JobSchema, json) });
    // A random request_id per run: retrying CreateJob below can then never create the job twice.
    request.requestId ||= randomUUID();
    resolveDataPaths(request, dirname(path));
    return request;
  } catch (error) {
    throw new UsageError(`invalid job file ${path}: ${error instanceof Error ? error.message : String(error)}`);
  }
}

/**
 * The control plane needs absolute data paths and never guesses; for a client it launches on this machine (no
 * `agent`) the job file's directory is the obvious base, so example job files run as is. An agent's client keeps
 * its path as written: it is read on the agent's machine, under its data root.
 */
function resolveDataPaths(request: CreateJobRequest, base: string): void {
  for (const client of request.job?.clients ?? []) {
    if (!client.agent && client.dataPath && !isAbsolute(client.dataPath)) {
      client.dataPath = resolve(base, client.dataPath);
    }
  }
}

async function createJob(clients: FloristClients, request: CreateJobRequest): Promise<string> {
  const response = await withRetries(
    new Backoff(),
    () => clients.jobs.createJob(request, { timeoutMs: CREATE_TIMEOUT_MS }),
    (error) => console.error(`CreateJob failed (${grpcCodeName(error.code)}: ${error.rawMessage}); retrying`),
  );
  return response.job?.id ?? "";
}

/** Streams the job's events until the stream ends after the terminal one, resuming after transient failures. */
async function followJob(clients: FloristClients, jobId: string, progress: JobProgress): Promise<void> {
  const backoff = new Backoff();
  const streamOnce = async (): Promise<void> => {
    const stream = clients.training.streamMetrics({ jobId, afterSequence: progress.lastSequence });
    for await (const response of stream) {
      if (response.event !== undefined) {
        for (const line of progress.apply(response.event)) {
          console.log(line);
        }
        backoff.reset(); // the stream made progress: a later failure starts from the shortest wait again
      }
    }
  };
  await withRetries(backoff, streamOnce, (error) =>
    console.error(
      `stream interrupted (${grpcCodeName(error.code)}: ${error.rawMessage}); ` +
        `resuming after sequence ${progress.lastSequence}`,
    ),
  );
}

async function run(args: Arguments): Promise<number> {
  const request = readCreateJobRequest(args.jobFile);
  checkOutputPaths(args.outputs);
  const clients = connect(args);
  const jobId = await createJob(clients, request);
  console.log(`created job ${jobId}`);
  const started = await clients.training.startTraining({ jobId }, { timeoutMs: START_TIMEOUT_MS });
  console.log(
    started.queued
      ? "queued: it starts as soon as it fits"
      : `started: server ${started.serverUuid}, ${started.clientUuids.length} client(s)`,
  );
  const progress = new JobProgress();
  await followJob(clients, jobId, progress);
  const succeeded = progress.state === JobState.FINISHED_SUCCESSFULLY;
  // `final state` stays the last line of the output even when writing an output fails: scripts read it there.
  let failure: unknown;
  try {
    for (const line of await writeJobOutputs(clients, jobId, args.outputs, succeeded)) {
      console.log(line);
    }
  } catch (error) {
    failure = error;
  }
  console.log(`final state: ${jobStateName(progress.state)}`);
  if (failure !== undefined) {
    throw failure;
  }
  return succeeded ? 0 : 1;
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
      for (const line of describeRpcError(error)) {
        console.error(line);
      }
    } else if (error instanceof UsageError || error instanceof OutputPathError) {
      console.error(error.message);
    } else {
      console.error(`error: ${error instanceof Error ? error.message : String(error)}`);
    }
    return 2;
  }
}

process.exitCode = await main();
