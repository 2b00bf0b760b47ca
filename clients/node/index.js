#!/usr/bin/env node
// Example florist-grpc client: creates a job from a JSON file, starts it, streams its metrics (reconnecting with
// after_sequence, so no event is lost or repeated), prints progress and finally `final state: JOB_STATE_...`.
// Exit code 0 only when the job finished successfully.
'use strict';

const path = require('path');
const fs = require('fs');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');

const PROTO_ROOT = path.resolve(__dirname, '..', '..', 'protos');
const MAX_RECONNECTS = 30;

function parseArgs(argv) {
  const args = { address: process.env.FLORIST_ADDRESS || 'localhost:50051', token: process.env.FLORIST_TOKEN || '' };
  for (let i = 0; i < argv.length; i += 1) {
    const flag = argv[i];
    if (flag === '--address') args.address = argv[++i];
    else if (flag === '--job-file') args.jobFile = argv[++i];
    else if (flag === '--token') args.token = argv[++i];
    else throw new Error(`unknown argument ${flag}`);
  }
  if (!args.jobFile) throw new Error('usage: node index.js --address HOST:PORT --job-file F.json [--token T]');
  return args;
}

// google.protobuf.Struct <-> plain JavaScript values.
function toValue(v) {
  if (v === null || v === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof v === 'number') return { numberValue: v };
  if (typeof v === 'string') return { stringValue: v };
  if (typeof v === 'boolean') return { boolValue: v };
  if (Array.isArray(v)) return { listValue: { values: v.map(toValue) } };
  return { structValue: toStruct(v) };
}
function toStruct(obj) {
  const fields = {};
  for (const [k, v] of Object.entries(obj || {})) fields[k] = toValue(v);
  return { fields };
}
function fromValue(v) {
  if (v.structValue) return fromStruct(v.structValue);
  if (v.listValue) return (v.listValue.values || []).map(fromValue);
  if (v.kind === 'nullValue' || 'nullValue' in v) return null;
  if ('numberValue' in v) return v.numberValue;
  if ('stringValue' in v) return v.stringValue;
  if ('boolValue' in v) return v.boolValue;
  return null;
}
function fromStruct(s) {
  const out = {};
  for (const [k, v] of Object.entries((s && s.fields) || {})) out[k] = fromValue(v);
  return out;
}

// RFC 7386 merge patch: applying a source's patches in order rebuilds its report.
function mergePatch(target, patch) {
  if (patch === null || typeof patch !== 'object' || Array.isArray(patch)) return patch;
  const result = target && typeof target === 'object' && !Array.isArray(target) ? { ...target } : {};
  for (const [k, v] of Object.entries(patch)) {
    if (v === null) delete result[k];
    else result[k] = mergePatch(result[k], v);
  }
  return result;
}

function loadServices() {
  const definition = protoLoader.loadSync(
    ['florist/v1/job_service.proto', 'florist/v1/training_service.proto'],
    { includeDirs: [PROTO_ROOT], keepCase: true, longs: Number, enums: String, defaults: true, oneofs: true },
  );
  const florist = grpc.loadPackageDefinition(definition).florist.v1;
  return florist;
}

function unary(client, method, request, metadata) {
  return new Promise((resolve, reject) => {
    client[method](request, metadata, { deadline: Date.now() + 120000 }, (err, response) => (err ? reject(err) : resolve(response)));
  });
}

function streamOnce(training, jobId, after, metadata, onEvent) {
  return new Promise((resolve, reject) => {
    const call = training.StreamMetrics({ job_id: jobId, after_sequence: after }, metadata);
    call.on('data', (response) => onEvent(response.event));
    call.on('error', reject);
    call.on('end', resolve);
  });
}

async function main() {
  const args = parseArgs(process.argv.slice(2));
  const body = JSON.parse(fs.readFileSync(args.jobFile, 'utf8'));
  const job = body.job || body;
  const florist = loadServices();
  const credentials = grpc.credentials.createInsecure();
  const jobs = new florist.JobService(args.address, credentials);
  const training = new florist.TrainingService(args.address, credentials);
  const metadata = new grpc.Metadata();
  if (args.token) metadata.set('authorization', `Bearer ${args.token}`);

  const request = { job: { ...job, server_config: toStruct(job.server_config) }, request_id: body.request_id || '' };
  const created = (await unary(jobs, 'CreateJob', request, metadata)).job;
  console.log(`created job ${created.id}`);
  const started = await unary(training, 'StartTraining', { job_id: created.id }, metadata);
  console.log(`started: server ${started.server_uuid}, ${started.client_uuids.length} client(s)`);

  const reports = {};
  let last = 0;
  let state = 'JOB_STATE_UNSPECIFIED';
  const printed = new Set();
  const onEvent = (event) => {
    if (event.sequence !== last + 1) throw new Error(`gap or duplicate: got ${event.sequence} after ${last}`);
    last = event.sequence;
    state = event.job_state;
    const source = event.source.kind === 'SOURCE_KIND_CLIENT' ? `client${event.source.client_index}`
      : event.source.kind === 'SOURCE_KIND_SERVER' ? 'server' : 'job';
    const patch = fromStruct(event.patch);
    reports[source] = mergePatch(reports[source] || {}, patch);
    if (source === 'job') {
      console.log(`[${event.sequence}] ${state}${patch.error_message ? `: ${patch.error_message}` : ''}`);
      return;
    }
    const rounds = (reports.server && reports.server.rounds) || {};
    for (const [n, round] of Object.entries(rounds)) {
      // FL4Health's layout: the aggregated loss in the round, the aggregated metrics under their client names.
      const evalMetrics = round.eval_round_metrics_aggregated;
      const loss = round['val - loss - aggregated'];
      if (source === 'server' && evalMetrics && loss !== undefined && !printed.has(n)) {
        printed.add(n);
        console.log(`[${event.sequence}] round ${n}: val loss ${Number(loss).toFixed(4)}, `
          + `val accuracy ${Number(evalMetrics['val - prediction - accuracy']).toFixed(4)}`);
      }
    }
  };

  for (let attempt = 0; ; attempt += 1) {
    try {
      await streamOnce(training, created.id, last, metadata, onEvent);
      break;
    } catch (err) {
      if (err.code !== grpc.status.UNAVAILABLE || attempt >= MAX_RECONNECTS) throw err;
      console.log(`stream interrupted (${err.details}); resuming after sequence ${last}`);
      await new Promise((r) => setTimeout(r, 500));
    }
  }
  console.log(`final state: ${state}`);
  jobs.close();
  training.close();
  process.exitCode = state === 'JOB_STATE_FINISHED_SUCCESSFULLY' ? 0 : 1;
}

main().catch((err) => {
  console.error(`error: ${err.code !== undefined ? `${grpc.status[err.code]}: ${err.details}` : err.message}`);
  process.exitCode = 2;
});
