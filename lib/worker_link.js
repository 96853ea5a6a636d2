'use strict';

/**
 * How a worker script (lib/agent_worker.js, lib/app_worker.js) talks to its master and leaves,
 * in the two ways egg starts workers:
 * - a child process (the default): Node's IPC channel, graceful-process on SIGTERM and on the
 *   master's disconnect, a self-kill by SIGTERM;
 * - a thread of the master (`startMode: 'worker_threads'`): the thread's parentPort; no signal
 *   reaches a thread and `process.exit()` ends the thread only, so leaving is `process.exit(1)`
 *   and egg's close runs from an 'exit' handler, as egg-cluster 2 and @eggjs/cluster 3 do there.
 */

const workerThreads = require('worker_threads');

const inThread = !workerThreads.isMainThread;

// the id egg's messages name this worker by: its pid, or its thread id in worker_threads mode
const workerId = inThread ? workerThreads.threadId : process.pid;

/**
 * A message to the master.
 * @param {Object} message - an egg envelope
 */
function send(message) {
  if (inThread) {
    workerThreads.parentPort.postMessage(message);
  } else {
    process.send(message);
  }
}

/**
 * Leave with code 1 through the exit path `gracefulExit` installed: a process SIGTERMs itself
 * (graceful-process closes egg, then exits), a thread exits.
 */
function exitSelf() {
  if (inThread) {
    process.exit(1);
    return;
  }
  process.exitCode = 1;
  process.kill(process.pid);
}

/**
 * Runs `options.beforeExit` (egg's close) when the worker leaves: graceful-process in a process
 * (`logger`, `label`, `timeout` are its options); in a thread, an 'exit' handler, as both
 * upstream cluster managers install there (a terminated thread runs none of it).
 * @param {Object} options - { logger, label, beforeExit, timeout }
 */
function gracefulExit(options) {
  if (!inThread) {
    require('graceful-process').graceful(options);
    return;
  }
  process.on('exit', async code => {
    await options.beforeExit();
    process.exit(code);
  });
}

module.exports = { inThread, workerId, send, exitSelf, gracefulExit };
