'use strict';

// node benchmark/http/master.js <egg-cluster|egg-cluster-rs> <rr|none|reuseport> <port> <workers>
// One egg 3 master for the HTTP benchmark, forked by benchmark/http/index.js with an IPC channel
// (egg-ready reaches the driver through it). egg-cluster 2.x takes Node's cluster policy from
// NODE_CLUSTER_SCHED_POLICY (set by the driver); ours gets `schedulingPolicy`.
const path = require('path');

const [ impl, policy, port, workers ] = process.argv.slice(2);
const { startCluster } = impl === 'egg-cluster'
  ? require('egg-cluster') // node_modules/egg-cluster: egg-cluster 2.x, as egg 3 ships it
  : require('../..'); // this repository

const options = {
  baseDir: path.join(__dirname, 'app'),
  framework: path.dirname(require.resolve('egg')),
  workers: Number(workers),
  port: Number(port),
  env: 'prod',
};
if (impl !== 'egg-cluster') options.schedulingPolicy = policy;

startCluster(options, err => {
  if (err) {
    console.error('[bench:http master] start failed: %s', err.stack || err);
    process.exit(1);
  }
});
