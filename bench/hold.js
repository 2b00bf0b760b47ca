// `node bench/hold.js ADDRESS JOB_ID STREAMS [STREAMS_PER_CHANNEL]`: the Node (grpc-js) twin of
// `python -m bench.load hold`: opens STREAMS StreamMetrics calls, prints "open" once the server confirmed them
// all (initial metadata), reads them to the end (resuming with after_sequence when a call is cut) and prints a
// JSON summary. It tells whether cut streams are grpc-python's client or the server. Uses the example client's
// node_modules (clients/node: npm ci).
'use strict';
const path = require('path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const [address, jobId, streamsArg, perChannelArg] = process.argv.slice(2);
const streams = Number(streamsArg);
const perChannel = Number(perChannelArg || 100);
const root = process.env.PROTO_ROOT || path.resolve(__dirname, '..', 'protos');
const def = protoLoader.loadSync(path.join(root, 'florist/v1/training_service.proto'), { includeDirs: [root], longs: Number, defaults: true });
const pkg = grpc.loadPackageDefinition(def).florist.v1;
const clients = [];
for (let i = 0; i < Math.ceil(streams / perChannel); i++) {
  // A distinct channel per client object (grpc-js would otherwise share one subchannel).
  clients.push(new pkg.TrainingService(address, grpc.credentials.createInsecure(), { 'grpc.channel_id': i, 'grpc-node.max_session_memory': 1000 }));
}
let opened = 0, resumed = 0; const cutAfter = {}; const why = {};
function open(i, after, onMeta, done) {
  const call = clients[Math.floor(i / perChannel)].StreamMetrics({ jobId, afterSequence: after });
  let last = after;
  call.on('metadata', () => onMeta && onMeta());
  call.on('data', (r) => { last = Number(r.event.sequence); });
  call.on('error', (e) => {
    const reason = `${grpc.status[e.code]}: ${e.details}`;
    why[reason] = (why[reason] || 0) + 1;
    if (e.code === grpc.status.CANCELLED || e.code === grpc.status.UNAVAILABLE) {
      resumed++; cutAfter[last] = (cutAfter[last] || 0) + 1;
      open(i, last, null, done);
    } else { done(last, e); }
  });
  call.on('end', () => {});
  call.on('status', (s) => { if (s.code === grpc.status.OK) done(last); });
}
if (process.env.HOLD_PROGRESS) {
  setInterval(() => process.stderr.write(`opened ${opened} of ${streams}\n`), 5000).unref();
}
const results = new Array(streams);
let finished = 0;
for (let i = 0; i < streams; i++) {
  open(i, 0, () => { opened++; if (opened === streams) console.log('open'); }, (last, err) => {
    results[i] = last; finished++;
    if (finished === streams) {
      console.log(JSON.stringify({ streams, min_events: Math.min(...results), resumed, cut_after: cutAfter, why }));
      process.exit(0);
    }
  });
}
