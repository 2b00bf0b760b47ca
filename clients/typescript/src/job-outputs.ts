// What the client leaves on disk once the job has ended: its trained model (--model-out), its learning curves as a
// PNG (--plot-out) and as CSV (--csv-out).
import { accessSync, constants, statSync } from "node:fs";
import { rename, writeFile } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import type { FloristClients } from "./connection.js";
import { curvesCsv, roundsTable } from "./curves.js";
import { drawCurves } from "./curves-chart.js";
import { downloadModel } from "./model-download.js";

const GET_JOB_TIMEOUT_MS = 30_000;

export interface JobOutputs {
  /** .safetensors file for the final global model; written only when the job succeeded. */
  readonly modelOut?: string;
  /** PNG of validation loss and accuracy per round, aggregated and per client. */
  readonly plotOut?: string;
  /** The same numbers as CSV (the columns of `florist-grpc plot --csv`). */
  readonly csvOut?: string;
}

/** An output file that cannot be written: reported before the job is created, so no training run is wasted. */
export class OutputPathError extends Error {}

/** Checks that every output's directory exists and is writable; throws an OutputPathError naming the flag. */
export function checkOutputPaths(outputs: JobOutputs): void {
  const flags: [string, string | undefined][] = [
    ["--model-out", outputs.modelOut],
    ["--plot-out", outputs.plotOut],
    ["--csv-out", outputs.csvOut],
  ];
  for (const [flag, path] of flags) {
    if (path === undefined) {
      continue;
    }
    const directory = dirname(resolve(path));
    let why: string | undefined;
    try {
      if (!statSync(directory).isDirectory()) {
        why = `${directory} is not a directory`;
      } else {
        accessSync(directory, constants.W_OK);
      }
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      why = code === "ENOENT" ? `directory ${directory} does not exist` : `directory ${directory} is not writable`;
    }
    if (why !== undefined) {
      throw new OutputPathError(`${flag} ${path}: cannot write there: ${why}`);
    }
  }
}

/** Writes the outputs asked for and returns what to print about them. */
export async function writeJobOutputs(
  clients: FloristClients,
  jobId: string,
  outputs: JobOutputs,
  succeeded: boolean,
): Promise<string[]> {
  const lines: string[] = [];
  if (outputs.modelOut !== undefined) {
    if (succeeded) {
      const { path, artifact } = await downloadModel(clients, jobId, outputs.modelOut);
      lines.push(`model: ${path} (${artifact.sizeBytes} bytes, sha256 ${artifact.sha256}, round ${artifact.round})`);
    } else {
      lines.push("model: not downloaded, the job did not succeed");
    }
  }
  if (outputs.plotOut !== undefined || outputs.csvOut !== undefined) {
    lines.push(...(await writeCurves(clients, jobId, outputs, succeeded)));
  }
  return lines;
}

async function writeCurves(
  clients: FloristClients,
  jobId: string,
  outputs: JobOutputs,
  succeeded: boolean,
): Promise<string[]> {
  // GetJob's accumulated reports, as `florist-grpc plot` reads them: the clients come in their job order there.
  const { job } = await clients.jobs.getJob({ jobId }, { timeoutMs: GET_JOB_TIMEOUT_MS });
  const rows = job === undefined ? [] : roundsTable(job);
  if (rows.length === 0) {
    // A job that failed before its first round has no curves; a successful one always has rounds.
    if (succeeded) {
      throw new Error(`job ${jobId} reported no rounds: no learning curves to write`);
    }
    return ["learning curves: not written, the job reported no rounds"];
  }
  const lines: string[] = [];
  if (outputs.plotOut !== undefined) {
    await writeWhole(outputs.plotOut, await drawCurves(rows, `job ${jobId}`));
    lines.push(`learning curves: ${outputs.plotOut} (${rows.length} rounds)`);
  }
  if (outputs.csvOut !== undefined) {
    await writeWhole(outputs.csvOut, curvesCsv(rows));
    lines.push(`learning curves: ${outputs.csvOut} (CSV)`);
  }
  return lines;
}

/** Writes through a temporary file and a rename, so a reader never sees half a PNG or CSV. */
async function writeWhole(path: string, content: Buffer | string): Promise<void> {
  const partial = join(dirname(path), `.${basename(path)}.${process.pid}.part`);
  await writeFile(partial, content);
  await rename(partial, path);
}
