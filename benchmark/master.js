'use strict';

// The master process of one benchmark cluster, forked by the driver (benchmark/index.js)
// with an IPC channel: `node benchmark/master.js <egg-cluster|egg-cluster-rs> <workers> <port>`.
// Both implementations start the same egg app (benchmark/app) with the same options: on egg 3,
// egg-cluster 2.x against this repository; with BENCH_EGG=4 (`npm run bench -- --egg4`), on
// egg 4, @eggjs/cluster 3.x against this repository.
const path = require('path');

const [ impl, workers, port ] = process.argv.slice(2);
const EGG4 = process.env.BENCH_EGG === '4';
const upstream = () => (EGG4 ? require('@eggjs/cluster') : require('egg-cluster'));
const { startCluster } = impl === 'egg-cluster'
  ? upstream() // the cluster package the egg generation ships with, from node_modules
  : require(process.env.BENCH_RS_DIR || '..'); // this repository (the driver passes a frozen copy of it)

function fail(err) {
  console.error('[bench master] start failed: %s', err && (err.stack || err));
  process.exit(1);
}

const started = startCluster({
  baseDir: path.join(__dirname, 'app'),
  framework: path.dirname(require.resolve(EGG4 ? 'egg4/package.json' : 'egg/package.json')),
  workers: Number(workers),
  port: Number(port),
  env: 'prod',
  // BENCH_RS_OPTIONS='{"queueBytes":8388608}': extra startCluster options for egg-cluster-rs only,
  // to try a core setting against the same egg-cluster run
  ...(impl === 'egg-cluster' ? {} : JSON.parse(process.env.BENCH_RS_OPTIONS || '{}')),
}, err => {
  if (err) fail(err);
});
// @eggjs/cluster's startCluster takes no callback: it rejects instead
if (started && typeof started.catch === 'function') started.catch(fail);
