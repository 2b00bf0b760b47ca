// FL4Health's documents (FLorist's RedisMetricsReporter, in BasicClient/FlServer's call order) read by the
// TypeScript client as the Python CLI reads them (florist_grpc/domain/report_layout.py): a round is done at
// `eval_round_end`, its aggregated metrics may come in a later report, and the training loss is the clients' mean
// when the FL server reports none. Runs on the compiled client: `node --test test/` after `npm run build`.
import assert from "node:assert/strict";
import { test } from "node:test";
import { create } from "@bufbuild/protobuf";
import { JobSchema, JobState } from "../dist/gen/florist/v1/job_pb.js";
import { MetricsEventSchema, SourceKind } from "../dist/gen/florist/v1/training_service_pb.js";
import { roundsTable } from "../dist/curves.js";
import { JobProgress } from "../dist/progress.js";

function serverEvent(sequence, patch) {
  return create(MetricsEventSchema, {
    sequence: BigInt(sequence),
    source: { kind: SourceKind.SERVER },
    patch,
    jobState: JobState.IN_PROGRESS,
  });
}

test("a round is told at eval_round_end, and its aggregated metrics when they come", () => {
  const progress = new JobProgress();
  const said = [
    { fit_start: "2026-01-01 00:00:00", host_type: "server" },
    { rounds: { 1: { fit_round_start: "t", fit_round_end: "t", fit_round_time_elapsed: 4 } } },
    { rounds: { 1: { fit_round_metrics: {} } } },
    { rounds: { 1: { "val - loss - aggregated": 0.5, round: 1, eval_round_start: "t", eval_round_end: "t" } } },
    { rounds: { 1: { eval_round_metrics_aggregated: { "val - prediction - accuracy": 0.25 } } } },
  ].map((patch, i) => progress.apply(serverEvent(i + 1, patch)).filter((line) => line.startsWith("round")));
  assert.deepEqual(said, [[], [], [], ["round 1: val loss 0.5000"], ["round 1: val accuracy 0.2500"]]);
});

test("a round whose clients report only losses is still told", () => {
  const progress = new JobProgress();
  const lines = progress.apply(serverEvent(1, { rounds: { 2: { "val - loss - aggregated": 0.25, eval_round_end: "t" } } }));
  assert.deepEqual(lines.filter((line) => line.startsWith("round")), ["round 2: val loss 0.2500"]);
});

function job(serverRound, clientLosses) {
  return create(JobSchema, {
    serverMetrics: { rounds: { 1: serverRound } },
    clients: clientLosses.map((backward) => ({ metrics: { rounds: { 1: { fit_round_losses: { backward } } } } })),
  });
}

test("the training loss is the clients' mean when the FL server reports none, once the fit is over", () => {
  const [row] = roundsTable(job({ fit_round_end: "t", fit_round_metrics: {} }, [1, 0.5]));
  assert.equal(row.trainLoss, 0.75);
  assert.deepEqual(row.clients.map((c) => c.trainLoss), [1, 0.5]);
  const [running] = roundsTable(job({ fit_round_start: "t" }, [1]));
  assert.equal(running.trainLoss, undefined, "no mean of whichever clients reported so far");
  const [ours] = roundsTable(job({ fit_round_metrics: { "train - loss": 0.1 } }, [1, 0.5]));
  assert.equal(ours.trainLoss, 0.1, "the server's aggregate when it reports one");
});

test("a notice of the control plane is told, as the Python CLI tells it", () => {
  const progress = new JobProgress();
  const notice = "report of FL client 0 set aside: 2 MiB, over the 1 MiB bound";
  const event = create(MetricsEventSchema, {
    sequence: 1n,
    source: { kind: SourceKind.JOB },
    patch: { notice },
    jobState: JobState.UNSPECIFIED,
  });
  assert.deepEqual(progress.apply(event), [`notice: ${notice}`]);
});
