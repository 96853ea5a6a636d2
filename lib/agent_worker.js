'use strict';

/**
 * The agent worker: a plain child of the master, started as
 *   node [execArgv] <dir>/lib/agent_worker.js '<options JSON>'
 * It boots the framework's Agent and tells the master `agent-start` once it is ready.
 * It exits on SIGTERM (code 0, after agent.close()), when the master goes away (disconnect,
 * code 110), or with code 1 when the Agent fails to start.
 */

const options = JSON.parse(process.argv[2]);
// the master may wait for this agent to report on the framework (lib/master.js startAgentEarly)
const { verdictOf, STARTUP_FD_ENV } = require('./framework');
const startupFd = process.env[STARTUP_FD_ENV];
delete process.env[STARTUP_FD_ENV];
for (const mod of options.require || []) require(mod);

const debug = require('util').debuglog('egg-cluster:agent_worker');
const { EggConsoleLogger } = require('egg-logger');
const { graceful } = require('graceful-process');

// Requires the framework. With a startup pipe, tells the master what it exports (or how it
// failed to load) first; on a bad answer the master throws and kills this process, so leave
// quietly instead of failing in front of the user.
function loadFramework() {
  if (!startupFd) return require(options.framework);
  const fs = require('fs');
  let framework;
  let failure;
  try {
    framework = require(options.framework);
  } catch (err) {
    failure = err === undefined ? new Error('undefined') : err;
  }
  const answer = failure ? verdictOf(undefined, failure) : verdictOf(framework);
  const fd = Number(startupFd);
  try {
    fs.writeSync(fd, answer);
    fs.closeSync(fd);
  } catch (err) {
    debug('startup pipe: %s', err);
  }
  if (failure || !framework.Application || !framework.Agent) process.exit(1);
  return framework;
}

// the longest delay setTimeout accepts
const MAX_TIMER_MS = 2 ** 31 - 1;

const consoleLogger = new EggConsoleLogger({ level: process.env.EGG_AGENT_WORKER_LOGGER_LEVEL });
const { Agent } = loadFramework();

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
