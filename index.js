'use strict';

/**
 * startCluster → Master → agent_worker → new Agent        (lib/agent_worker.js)
 *                      → app_worker × N → new Application (lib/app_worker.js)
 *
 * The entry egg 3 (`require('egg-cluster')`) and egg 4 (`require('@eggjs/cluster')`, and through
 * it `egg`) load. egg 4 re-exports every name from here and checks its own export list, so this
 * exports exactly @eggjs/cluster's four; the core's classes are in `egg-cluster-rs/core`.
 * Which generation a master serves is decided from its framework (lib/dialect.js).
 */

const Master = require('./lib/master');
const { ClusterAgentWorkerError, ClusterWorkerExceptionError } = require('./lib/errors');

/**
 * Start an egg cluster. Resolves once every app worker listens, rejects when the start fails
 * (egg 4). With `callback` (egg 3's form), the callback gets the outcome and the promise resolves.
 * @param {Object} options - see {@link Master}
 * @param {Function} [callback] - (err) once the cluster is ready or has failed
 * @return {Promise<void>} -
 */
async function startCluster(options, callback) {
  const master = new Master(options);
  if (typeof callback !== 'function') return master.ready();
  await new Promise(resolve => master.ready(err => {
    resolve();
    callback(err);
  }));
}

module.exports = { startCluster, Master, ClusterAgentWorkerError, ClusterWorkerExceptionError };
