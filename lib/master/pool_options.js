'use strict';

/**
 * What the master asks of the WorkerPool: the scheduling policy (cluster.schedulingPolicy or
 * NODE_CLUSTER_SCHED_POLICY, as Node's cluster reads them), no death signal, and the core's
 * bounds from startCluster's options. The core validates them.
 */

function userLoadedCluster() {
  const loaded = process.moduleLoadList;
  // without the list (another runtime), load it and look
  return !Array.isArray(loaded) || loaded.includes('NativeModule cluster');
}

function poolOptions(options, dialect) {
  let schedulingPolicy = options.schedulingPolicy;
  // cluster.schedulingPolicy set by the user before startCluster; else the pool reads
  // NODE_CLUSTER_SCHED_POLICY. Only a master that loaded `cluster` itself can have set it, and
  // loading it here would cost every master ~2 MiB for nothing.
  if (!schedulingPolicy && userLoadedCluster()) {
    const cluster = require('cluster');
    if (cluster.schedulingPolicy === cluster.SCHED_NONE) schedulingPolicy = 'none';
  }
  return {
    schedulingPolicy,
    // no death signal: when the master dies, workers see their channel close, as with egg-cluster
    // (the agent logs `receive disconnect event on child_process fork mode` and exits 110, app
    // workers log `receive disconnect event in cluster fork mode` and exit)
    deathSignal: '',
    // the core's bounds, tunable from startCluster options (defaults in lib/pool.js)
    maxLineBytes: options.maxLineBytes,
    queueBytes: options.queueBytes,
    stallTimeout: options.stallTimeout,
    orphanGrace: options.orphanGrace,
    // who a message names: egg 3 and egg 4 read receiverPid and receiverWorkerId in opposite order
    receiverWorkerIdFirst: dialect.receiverWorkerIdFirst,
    metrics: options.metrics,
  };
}

module.exports = { poolOptions };
