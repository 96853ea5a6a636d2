'use strict';

/**
 * egg-cluster-rs's own classes, beyond what egg-cluster and @eggjs/cluster export:
 *   const { WorkerPool, Messenger, WorkerMessenger } = require('egg-cluster-rs/core');
 */

const { WorkerPool } = require('./lib/pool');
const { Messenger } = require('./lib/messenger');
const { WorkerMessenger } = require('./lib/worker_messenger');

module.exports = { WorkerPool, Messenger, WorkerMessenger };
