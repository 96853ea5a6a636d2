'use strict';

// The master process of one benchmark cluster, forked by the driver (benchmark/index.js)
// with an IPC channel: `node benchmark/master.js <egg-cluster|egg-cluster-rs> <workers> <port>`.
// Both implementations start the same egg 3 app (benchmark/app) with the same options.
const path = require('path');

const [ impl, workers, port ] = process.argv.slice(2);
const { startCluster } = impl === 'egg-cluster'
  ? require('egg-cluster') // node_modules/egg-cluster: egg-cluster 2.x, as egg 3 ships it
  : require(process.env.BENCH_RS_DIR || '..'); // this repository (the driver passes a frozen copy of it)

startCluster({
  baseDir: path.join(__dirname, 'app'),
  framework: path.dirname(require.resolve('egg')),
  workers: Number(workers),
  port: Number(port),
  env: 'prod',
  // BENCH_RS_OPTIONS='{"queueBytes":8388608}': extra startCluster options for egg-cluster-rs only,
  // to try a core setting against the same egg-cluster run
  ...(impl === 'egg-cluster' ? {} : JSON.parse(process.env.BENCH_RS_OPTIONS || '{}')),
}, err => {
  if (err) {
    console.error('[bench master] start failed: %s', err.stack || err);
    process.exit(1);
  }
});
