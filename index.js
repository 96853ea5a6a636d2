'use strict';

/**
 * startCluster → Master → agent_worker → new Agent        (lib/agent_worker.js)
 *                      → app_worker × N → new Application (lib/app_worker.js)
 */

const Master = require('./lib/master');
const { WorkerPool } = require('./lib/pool');
const { Messenger } = require('./lib/messenger');
const { WorkerMessenger } = require('./lib/worker_messenger');

/**
 * Start an egg cluster; `callback` runs once every app worker listens (with an Error if the
 * start failed).
 * @param {Object} options - see {@link Master}
 * @param {Function} [callback] -
 */
function startCluster(options, callback) {
  new Master(options).ready(callback);
}

module.exports = { startCluster, Master, WorkerPool, Messenger, WorkerMessenger };
