'use strict';

/**
 * The agent worker: a plain child of the master, started as
 *   node [execArgv] <dir>/lib/agent_worker.js '<options JSON>'
 * It boots the framework's Agent and tells the master `agent-start` once it is ready.
 * It exits on SIGTERM (code 0, after agent.close()), when the master goes away (disconnect,
 * code 110), or with code 1 when the Agent fails to start.
 */

const options = JSON.parse(process.argv[2]);
for (const mod of options.require || []) require(mod);

const debug = require('util').debuglog('egg-cluster:agent_worker');
const { EggConsoleLogger } = require('egg-logger');
const { graceful } = require('graceful-process');

// the longest delay setTimeout accepts
const MAX_TIMER_MS = 2 ** 31 - 1;

const consoleLogger = new EggConsoleLogger({ level: process.env.EGG_AGENT_WORKER_LOGGER_LEVEL });
const { Agent } = require(options.framework);

debug('new Agent with options %j', options);
let agent;
try {
  agent = new Agent(options);
} catch (err) {
  consoleLogger.error(err);
  throw err;
}

// SIGTERM runs graceful-process's exit path (agent.close()) with exit code 1
function exitOnStartError(err) {
  consoleLogger.error(err);
  consoleLogger.error('[agent_worker] start error, exiting with code:1');
  process.exitCode = 1;
  process.kill(process.pid);
}

agent.once('error', exitOnStartError);
agent.ready(err => {
  // a failed start is reported through the 'error' event
  if (err) return;
  agent.removeListener('error', exitOnStartError);
  process.send({ action: 'agent-start', to: 'master' });
});

graceful({
  logger: consoleLogger,
  label: 'agent_worker',
  beforeExit: () => agent.close(),
  // egg-cluster's graceful-process 1.x waited for agent.close() as long as it took (the master
  // SIGKILLs after its close timeout); 2.x gives up after GRACEFUL_TIMEOUT, default 5s
  timeout: Number(process.env.GRACEFUL_TIMEOUT) || MAX_TIMER_MS,
});
