'use strict';

/**
 * The agent worker: a plain child of the master, started as
 *   node [execArgv] <dir>/lib/agent_worker.js '<options JSON>'            (egg 3)
 *   node [execArgv] <dir>/dist/<esm|commonjs>/agent_worker.js '<options JSON>'   (egg 4)
 * It boots the framework's Agent and tells the master `agent-start` once it is ready.
 * It exits on SIGTERM (code 0, after agent.close()), when the master goes away (disconnect,
 * code 110), or with code 1 when the Agent fails to start. What differs between egg 3 and
 * egg 4 is asked of lib/dialect.js. With `startMode: 'worker_threads'` it runs as a thread of the
 * master instead (lib/master/threads.js), and leaves with `process.exit()` (lib/worker_link.js).
 */

const options = JSON.parse(process.argv[2]);
const dialect = require('./dialect').workerDialect();
// the master may wait for this agent to report on the framework (lib/master/agent.js startAgentEarly)
const { verdictOf, STARTUP_FD_ENV } = require('./framework');
const startupFd = process.env[STARTUP_FD_ENV];
delete process.env[STARTUP_FD_ENV];
// egg 3 requires them first, from here; egg 4 imports them from baseDir (importFramework)
if (dialect.bootsSynchronously) for (const mod of options.require || []) require(mod);

const debug = require('util').debuglog(dialect.debugSection('agent_worker'));
const { EggConsoleLogger } = require('egg-logger');
const { loadModule } = require('./load_module');
const link = require('./worker_link');

// Tells the master, through the startup pipe, what the framework exports (or how it failed to
// load); on a bad answer the master throws and kills this process, so leave quietly instead of
// failing in front of the user.
function answerStartup(framework, failure) {
  if (!startupFd) {
    if (failure) throw failure;
    return framework;
  }
  const fs = require('fs');
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

// egg 3: require() the framework, as egg-cluster does
function requireFramework() {
  let framework;
  try {
    framework = require(options.framework);
  } catch (err) {
    return answerStartup(undefined, err === undefined ? new Error('undefined') : err);
  }
  return answerStartup(framework);
}

// egg 4: the `require` entries and the framework resolved from baseDir, with import() in ESM
async function importFramework() {
  const load = spec => loadModule(spec, { baseDir: options.baseDir, useImport: dialect.loadsWithImport });
  let framework;
  try {
    for (const mod of options.require || []) await load(mod);
    framework = await load(options.framework);
  } catch (err) {
    return answerStartup(undefined, err === undefined ? new Error('undefined') : err);
  }
  return answerStartup(framework);
}

const consoleLogger = new EggConsoleLogger({ level: process.env.EGG_AGENT_WORKER_LOGGER_LEVEL });

function boot({ Agent }) {
  debug('new Agent with options %j', options);
  let agent;
  try {
    agent = new Agent(options);
  } catch (err) {
    consoleLogger.error(err);
    throw err;
  }

  // SIGTERM runs graceful-process's exit path (agent.close()) with exit code 1; a thread exits
  function exitOnStartError(err) {
    consoleLogger.error(err);
    consoleLogger.error('[agent_worker] start error, exiting with code:1');
    link.exitSelf();
  }

  agent.once('error', exitOnStartError);
  agent.ready(err => {
    // a failed start is reported through the 'error' event
    if (err) return;
    agent.removeListener('error', exitOnStartError);
    const message = { action: 'agent-start', to: 'master' };
    if (dialect.senderWorkerId) message.senderWorkerId = String(link.workerId);
    link.send(message);
  });

  link.gracefulExit({
    logger: consoleLogger,
    label: 'agent_worker',
    beforeExit: () => agent.close(),
    // egg-cluster's graceful-process 1.x waited for agent.close() as long as it took (the master
    // SIGKILLs after its close timeout); egg 4's 2.x gives up after GRACEFUL_TIMEOUT, default 5s
    timeout: dialect.gracefulTimeout(),
  });
}

if (dialect.bootsSynchronously) {
  boot(requireFramework());
} else {
  importFramework().then(boot);
}
