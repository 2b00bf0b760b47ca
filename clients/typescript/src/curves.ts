// A job's learning curves as numbers: validation loss and accuracy (and training loss) per round, aggregated by
// the server and each client's own, read from the accumulated reports GetJob returns. The keys are FLorist's
// report layout and the same ones the Python CLI's `florist-grpc plot` reads (florist_grpc/progress.py), so both
// clients draw the same data; `--csv-out` writes it with the same columns as `florist-grpc plot --csv`.
import type { JsonObject, JsonValue } from "@bufbuild/protobuf";
import type { Job } from "./gen/florist/v1/job_pb.js";
import { isObject } from "./merge-patch.js";

// --- FLorist's report layout: the key names read here, all in one place ----------------------------------------
const ROUNDS = "rounds";
// Server, per round. The aggregated loss sits at round level (FLorist) or inside the aggregated metrics.
const ROUND_LOSS = "val - loss - aggregated";
const EVAL_METRICS_AGGREGATED = "eval_round_metrics_aggregated";
const FIT_ROUND_METRICS = "fit_round_metrics";
const FIT_ROUND_END = "fit_round_end";
// FLorist's UI counts a server round as done from it; FL4Health omits the aggregated metrics of a round that has
// none, so that key alone would never close such a round.
export const EVAL_ROUND_END = "eval_round_end";
// Metric names as clients report them; the server's aggregate carries the same name (older layout: + suffix).
const ACCURACY = "val - prediction - accuracy";
const VAL_LOSS = "val - loss";
const TRAIN_LOSS = "train - loss";
const AGGREGATED_SUFFIX = " - aggregated";
// Client, per round.
const EVAL_ROUND_LOSS = "eval_round_loss"; // a number (FLorist) or {"checkpoint": number}
const EVAL_ROUND_METRICS = "eval_round_metrics";
const FIT_ROUND_LOSSES = "fit_round_losses";
const BACKWARD = "backward";

/** One source's numbers for one round; undefined = not reported. NaN and ±Infinity are kept as they came. */
export interface RoundValues {
  readonly valLoss: number | undefined;
  readonly valAccuracy: number | undefined;
  readonly trainLoss: number | undefined;
}

/** One round: the server's aggregate and each client's own values, by client index. */
export interface RoundRow extends RoundValues {
  readonly round: number;
  readonly clients: readonly RoundValues[];
}

/**
 * Every round the server reported, in order, with each client's evaluation of it (the Python
 * `JobProgress.rounds_table`). A running job gives the rounds so far.
 */
export function roundsTable(job: Job): RoundRow[] {
  const clientRounds = job.clients.map((client) => roundsOf(client.metrics));
  return [...roundsOf(job.serverMetrics)].map(([round, data]) => {
    const clients = clientRounds.map((rounds) => clientValues(rounds.get(round) ?? {}));
    const server = serverValues(data);
    return { round, ...server, trainLoss: server.trainLoss ?? clientsTrainLoss(data, clients), clients };
  });
}

/**
 * A round's training loss when the server reports none (FL4Health's layout: each client's
 * `fit_round_losses.backward`): the clients' mean, unweighted (the reports hold no sample counts), once the server
 * says the round's fit is over, so never a mean of whichever clients reported so far. As the Python
 * `round_train_loss` (florist_grpc/domain/report_layout.py).
 */
function clientsTrainLoss(server: JsonObject, clients: readonly RoundValues[]): number | undefined {
  const fitOver =
    FIT_ROUND_END in server || FIT_ROUND_METRICS in server || EVAL_ROUND_END in server || EVAL_METRICS_AGGREGATED in server;
  const losses = clients.map((c) => c.trainLoss).filter((loss): loss is number => loss !== undefined);
  if (!fitOver || losses.length === 0) {
    return undefined;
  }
  return losses.reduce((sum, loss) => sum + loss, 0) / losses.length;
}

/**
 * A reported metric as a number: numbers, and the strings "NaN"/"Infinity"/"-Infinity" that the reports use for
 * non-finite ones (JSON has no such numbers). Anything else (booleans, text) is not a metric.
 */
export function metricValue(value: JsonValue | undefined): number | undefined {
  if (typeof value === "number") {
    return value;
  }
  if (value === "NaN" || value === "Infinity" || value === "-Infinity") {
    return Number(value);
  }
  return undefined;
}

function first(...values: (JsonValue | undefined)[]): number | undefined {
  return values.map(metricValue).find((value) => value !== undefined);
}

function objectAt(data: JsonObject, key: string): JsonObject {
  const value = data[key];
  return isObject(value) ? value : {};
}

function serverValues(data: JsonObject): RoundValues {
  const aggregated = objectAt(data, EVAL_METRICS_AGGREGATED);
  return {
    valLoss: first(data[ROUND_LOSS], aggregated[ROUND_LOSS]),
    valAccuracy: first(aggregated[ACCURACY], aggregated[ACCURACY + AGGREGATED_SUFFIX]),
    trainLoss: metricValue(objectAt(data, FIT_ROUND_METRICS)[TRAIN_LOSS]),
  };
}

function clientValues(data: JsonObject): RoundValues {
  const loss = data[EVAL_ROUND_LOSS];
  const checkpoint = isObject(loss) ? loss["checkpoint"] : undefined;
  const metrics = objectAt(data, EVAL_ROUND_METRICS);
  return {
    valLoss: first(loss, checkpoint, metrics[VAL_LOSS]),
    valAccuracy: metricValue(metrics[ACCURACY]),
    trainLoss: metricValue(objectAt(data, FIT_ROUND_LOSSES)[BACKWARD]),
  };
}

/** A report's `rounds."<n>"` entries by round number, in order; keys that are not round numbers are skipped. */
function roundsOf(report: JsonObject | undefined): Map<number, JsonObject> {
  const rounds = isObject(report) ? objectAt(report, ROUNDS) : {};
  const entries: [number, JsonObject][] = [];
  for (const [key, value] of Object.entries(rounds)) {
    if (/^\d+$/.test(key) && isObject(value)) {
      entries.push([Number(key), value]);
    }
  }
  return new Map(entries.sort(([a], [b]) => a - b));
}

// --- CSV: the columns of `florist-grpc plot --csv` -----------------------------------------------------------

export const CSV_COLUMNS = ["round", "source", "val_loss", "val_accuracy", "train_loss"] as const;

/** One line per round and source (`aggregated`, `client0`, ...); empty cells for what was not reported. */
export function curvesCsv(rows: readonly RoundRow[]): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) {
    lines.push(csvLine(row.round, "aggregated", row));
    row.clients.forEach((values, index) => lines.push(csvLine(row.round, `client${index}`, values)));
  }
  // CRLF line ends, as Python's csv module writes them: the two CLIs' files differ only in how a few floats are
  // spelt (1e-05 there, 0.00001 here).
  return lines.map((line) => `${line}\r\n`).join("");
}

function csvLine(round: number, source: string, values: RoundValues): string {
  const numbers = [values.valLoss, values.valAccuracy, values.trainLoss].map(csvNumber);
  return [String(round), source, ...numbers].join(",");
}

// Numbers as Python's str(float) spells most of them (1.0, nan, inf), so tools reading either CSV agree.
function csvNumber(value: number | undefined): string {
  if (value === undefined) {
    return "";
  }
  if (Number.isNaN(value)) {
    return "nan";
  }
  if (!Number.isFinite(value)) {
    return value > 0 ? "inf" : "-inf";
  }
  return Number.isInteger(value) ? value.toFixed(1) : String(value);
}
