'use strict';

/**
 * The egg master: egg-cluster 2.x's process-mode orchestration over the native WorkerPool.
 *
 *   startCluster → Master → detect clusterPort → fork agent_worker
 *                        → agent-start → fork N app_worker → app-start × N → ready → egg-ready
 *
 * The pool forks, watches and routes; this file decides what happens when: when to fork,
 * when to refork (production only, cfork's limits), when to give up (a death during startup
 * exits 1), what to tell the parent, agent and app workers, and what to log. Log lines keep
 * egg-cluster's text: people and tools grep them.
 */

const os = require('os');
const fs = require('fs');
const path = require('path');
const util = require('util');
const EventEmitter = require('events');
const { ConsoleLogger, logDate } = require('./console_logger');
const { readJSON, assertFramework, judgeFramework, STARTUP_FD_ENV } = require('./framework');
const { freePort: freePortSync } = require('../binding');

const parseOptions = require('./options');
const { WorkerPool } = require('./pool');
const { Messenger } = require('./messenger');
const { ReadyState } = require('./ready_state');
const { ReforkPolicy } = require('./refork_policy');

const AGENT_WORKER_FILE = path.join(__dirname, 'agent_worker.js');
const APP_WORKER_FILE = path.join(__dirname, 'app_worker.js');

// Node's cluster gives each app worker its own inspector port when the master runs with one of these
const INSPECT_ARGV = /--inspect(?:-brk|-port)?|--debug-port/;
const HEALTH_CHECK_INTERVAL = 10000;
const HEALTH_CHECK_FAILURES = 3;
const AGENT_REFORK_DELAY = 1000;

class AppWorker {
  constructor(id, pid, workerEnv) {
    this.id = id;
    this.pid = pid;
    this.workerEnv = workerEnv;
    // Node's cluster.Worker states: none → online → listening → disconnected → dead
    this.state = 'none';
    this.inCluster = true;
    this.isDead = false;
    this.exitCode = undefined;
    this.exitedAfterDisconnect = undefined;
    // no refork until the whole cluster has started
    this.disableRefork = true;
    this.isDevReload = false;
    this.started = false;
    this.reforkedOnDisconnect = false;
    this.killSignal = null;
    this.onSettled = null;
  }

  // the first 'listening' or 'exit' of a worker forked by a reload
  settle() {
    const onSettled = this.onSettled;
    this.onSettled = null;
    if (onSettled) onSettled();
  }
}

// A port nothing listens on, as detect-port's `detectPort()` finds one (the core binds port 0
// of every address and releases it); a failure answers undefined, as detect-port does.
function freePort() {
  try {
    return freePortSync();
  } catch {
    return undefined;
  }
}

// how long the master waits for the agent to load the framework (ts-node and cold disks can
// take a while); past it, a probe process checks the framework instead
const AGENT_STARTUP_ANSWER_TIMEOUT = 120000;

function agentDebugPort() {
  return process.env.EGG_AGENT_DEBUG_PORT || 5800;
}

class Master extends EventEmitter {
  /**
   * @param {Object} options - see lib/options.js; framework, baseDir, workers, port, https,
   *   sticky, require, pidFile, env, plugins, …
   */
  constructor(options) {
    super();
    // the framework is checked by the agent as it loads it (startAgentEarly), not here
    this.options = parseOptions(options, { checkFramework: false });
    this.isProduction = isProduction(this.options);
    this.closed = false;
    this.isStarted = false;
    this.logger = new ConsoleLogger({ level: process.env.EGG_MASTER_LOGGER_LEVEL || 'INFO' });
    this.logMethod = this.options.env === 'local' || process.env.NODE_ENV === 'development' ? 'debug' : 'info';

    this.realPort = this.options.port;
    this.protocol = this.options.https ? 'https' : 'http';
    this.appAddress = undefined;

    this.agent = null; // { poolId, id, pid, status: 'starting' | 'started', startTime }
    this.agentIndex = 0;
    this.appWorkers = new Map(); // pool id → AppWorker, in fork order
    this.appArgs = null;
    this.appStartTime = 0;
    this.startSuccessCount = 0;
    this.isAllWorkerStarted = false;
    this.inspectPortOffset = 1;
    // cfork's refork budget and our backoff for slots that keep dying before they listen
    this.reforkPolicy = new ReforkPolicy({
      isProduction: this.isProduction,
      backoffInitial: this.options.reforkBackoffInitial,
      backoffMax: this.options.reforkBackoffMax,
    });
    this.backoffTimers = new Set();
    // consecutive deaths of the agent before it started
    this.agentFailures = 0;
    this.reloading = false;
    this.reloadPending = false;
    this.healthTimer = null;

    this.readyState = new ReadyState();
    this.pool = new WorkerPool(poolOptions(this.options));
    const early = this.startAgentEarly();
    try {
      this.init(early);
    } catch (err) {
      this.abortEarlyAgent(early);
      throw err;
    }
  }

  init(early) {
    this.messenger = new Messenger(this, this.pool);
    this.listenPool();

    const frameworkPkg = readJSON(path.join(this.options.framework, 'package.json'));
    this.frameworkName = frameworkPkg.name;

    this.log(`[master] =================== ${frameworkPkg.name} start =====================`);
    this.logger.info(`[master] node version ${process.version}`);
    if (process.alinode) this.logger.info(`[master] alinode version ${process.alinode}`);
    this.logger.info(`[master] ${frameworkPkg.name} version ${frameworkPkg.version}`);
    if (this.isProduction) {
      this.logger.info('[master] start with options:%s%s', os.EOL, JSON.stringify(this.options, null, 2));
    } else {
      this.log('[master] start with options: %j', this.options);
    }
    this.log('[master] start with env: isProduction: %s, EGG_SERVER_ENV: %s, NODE_ENV: %s',
      this.isProduction, this.options.env, process.env.NODE_ENV);

    const startTime = Date.now();
    this.ready(() => this.onReady(startTime));

    this.on('agent-exit', this.onAgentExit.bind(this));
    this.on('agent-start', this.onAgentStart.bind(this));
    this.on('app-exit', this.onAppExit.bind(this));
    this.on('app-start', this.onAppStart.bind(this));
    this.on('reload-worker', this.onReload.bind(this));
    this.once('agent-start', this.forkAppWorkers.bind(this));
    this.on('realport', ({ port, protocol } = {}) => {
      if (port) this.realPort = port;
      if (protocol) this.protocol = protocol;
    });

    process.once('SIGINT', this.onSignal.bind(this, 'SIGINT'));
    process.once('SIGQUIT', this.onSignal.bind(this, 'SIGQUIT'));
    process.once('SIGTERM', this.onSignal.bind(this, 'SIGTERM'));
    process.once('exit', this.onExit.bind(this));

    if (this.options.pidFile) {
      fs.mkdirSync(path.dirname(this.options.pidFile), { recursive: true });
      fs.writeFileSync(this.options.pidFile, process.pid.toString(), 'utf-8');
    }

    if (early) {
      // egg-cluster finds the ports and forks the agent a moment after the constructor
      Object.assign(this.options, early.ports);
      setImmediate(() => this.announceAgent());
      return;
    }
    this.detectPorts().then(() => {
      if (!this.closed) this.forkAgentWorker();
    });
  }

  /**
   * egg-cluster requires the framework in the master only to check that it exports Application
   * and Agent, then forks the agent, which loads it again. We fork the agent first: it reports
   * on the framework through a startup pipe as soon as it has loaded it (lib/agent_worker.js),
   * and goes on starting while the master carries on. A bad framework throws here, with the
   * errors parseOptions() would have thrown, and the agent is killed. When the agent cannot
   * answer (it died first), a probe process checks the framework instead (lib/framework.js).
   * @return {Object|null} `{ ports }` once the agent runs, null to start it the usual way
   */
  startAgentEarly() {
    let ports;
    try {
      ports = { clusterPort: freePortSync() };
      if (this.options.sticky) ports.stickyWorkerPort = freePortSync();
    } catch {
      assertFramework(this.options.framework);
      return null;
    }
    let agent;
    try {
      agent = this.spawnAgent({ ...this.options, ...ports }, true);
    } catch {
      // forkAgentWorker() reports spawn errors as egg-cluster does, after the constructor
      assertFramework(this.options.framework);
      return null;
    }
    const early = { ports, agent };
    let answer;
    try {
      answer = this.pool.readStartup(agent.poolId, AGENT_STARTUP_ANSWER_TIMEOUT);
    } catch {
      answer = null;
    }
    try {
      if (!judgeFramework(this.options.framework, answer)) assertFramework(this.options.framework);
    } catch (err) {
      this.abortEarlyAgent(early);
      throw err;
    }
    return early;
  }

  abortEarlyAgent(early) {
    if (!early) return;
    this.agent = null;
    try {
      this.pool.kill(early.agent.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    this.pool.close();
  }

  /**
   * get-ready's contract: `ready(fn)` registers a callback (called with an Error on a failed
   * start), `ready()` returns a promise, `ready(true | Error)` marks the master ready.
   * @param {Function|Boolean|Error} [flagOrCallback] -
   * @return {Promise|undefined} -
   */
  ready(flagOrCallback) {
    return this.readyState.ready(flagOrCallback);
  }

  log(...args) {
    this.logger[this.logMethod](...args);
  }

  // async as egg-cluster's (its callers wait for it); freePort() never throws
  async detectPorts() {
    this.options.clusterPort = freePort();
    if (this.options.sticky) this.options.stickyWorkerPort = freePort();
  }

  listenPool() {
    const pool = this.pool;
    pool.on('online', info => {
      const worker = this.appWorkers.get(info.id);
      if (worker && info.kind === 'app') worker.state = 'online';
    });
    pool.on('listening', (info, address) => {
      if (info.kind === 'app') this.onAppListening(info, address);
    });
    pool.on('disconnect', info => {
      if (info.kind === 'app') this.onAppDisconnect(info);
    });
    pool.on('exit', (info, code, signal) => {
      if (info.kind === 'agent') {
        this.onAgentProcessExit(info, code, signal);
      } else {
        this.onAppProcessExit(info, code, signal);
      }
    });
    pool.on('message', (msg, from) => {
      // a reusePort server never reaches the cluster protocol, its worker reports it instead
      if (msg && msg.action === 'reuse-port-listening' && from && from.kind === 'app') {
        const worker = this.appWorkers.get(from.id);
        if (!worker) return;
        this.logger.info('[master] app_worker#%s:%s reuse-port listening on %j', worker.id, worker.pid, msg.data);
        this.emit('app-start', { workerId: worker.pid, address: msg.data });
      }
    });
    pool.on('error', err => this.logger.error(err));
  }

  // ---------------------------------------------------------------- agent worker

  forkAgentWorker() {
    try {
      this.spawnAgent(this.options, false);
    } catch (err) {
      err.name = 'AgentWorkerError';
      this.logger.error(err);
      if (!this.isStarted) process.exit(1);
      return;
    }
    this.announceAgent();
  }

  // forks agent_worker.js with `options` as its argv; with `startupPipe`, it answers on fd 4
  spawnAgent(options, startupPipe) {
    const execArgv = process.execArgv.slice();
    if (this.options.isDebug) execArgv.push(`--inspect-port=${agentDebugPort()}`);
    const startTime = Date.now();
    const forked = this.pool.forkAgent({
      exec: AGENT_WORKER_FILE,
      args: [ JSON.stringify(options) ],
      execArgv,
      env: startupPipe ? { ...process.env, [STARTUP_FD_ENV]: '4' } : process.env,
      cwd: process.cwd(),
      startupPipe,
    });
    this.agent = {
      poolId: forked.id,
      id: ++this.agentIndex,
      pid: forked.pid,
      status: 'starting',
      startTime,
    };
    return this.agent;
  }

  announceAgent() {
    const agent = this.agent;
    if (!agent || agent.announced || this.closed) return;
    agent.announced = true;
    this.log('[master] agent_worker#%s:%s start with clusterPort:%s', agent.id, agent.pid, this.options.clusterPort);

    if (this.options.isDebug) {
      const debugPort = agentDebugPort();
      this.messenger.send({ to: 'parent', from: 'agent', action: 'debug', data: { debugPort, pid: agent.pid } });
    }
  }

  onAgentProcessExit(info, code, signal) {
    if (!this.agent || this.agent.poolId !== info.id) return;
    if (this.agent.killing) return;
    // an agent forked early (startAgentEarly) that died at once is still announced first
    this.announceAgent();
    this.emit('agent-exit', { code, signal });
  }

  onAgentStart() {
    const agent = this.agent;
    if (!agent) return;
    agent.status = 'started';

    // a reforked agent missed the first egg-ready
    if (this.isAllWorkerStarted) {
      this.messenger.send({ action: 'egg-ready', to: 'agent', data: this.options });
    }
    this.messenger.send({ action: 'egg-pids', to: 'app', data: [ agent.pid ] });
    // a reforked agent needs to know the app workers
    if (this.isStarted) {
      this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });
    }
    this.messenger.send({ action: 'agent-start', to: 'app' });
    this.logger.info('[master] agent_worker#%s:%s started (%sms)', agent.id, agent.pid, Date.now() - agent.startTime);
  }

  /**
   * The agent died: refork it after 1s once the cluster has started, exit during startup.
   * @param {Object} data - { code, signal }
   */
  onAgentExit(data) {
    if (this.closed) return;
    const agent = this.agent;
    if (!agent) return;
    this.agent = null;

    this.messenger.send({ action: 'egg-pids', to: 'app', data: [] });

    const err = new Error(util.format('[master] agent_worker#%s:%s died (code: %s, signal: %s)',
      agent.id, agent.pid, data.code, data.signal));
    err.name = 'AgentWorkerDiedError';
    this.logger.error(err);

    if (this.isStarted) {
      // egg-cluster reforks after 1s; an agent that keeps dying before it starts backs off
      this.agentFailures = agent.status === 'started' ? 0 : this.agentFailures + 1;
      const delay = this.agentFailures ? Math.max(AGENT_REFORK_DELAY, this.reforkPolicy.backoffDelay(this.agentFailures + 1)) : AGENT_REFORK_DELAY;
      if (delay === AGENT_REFORK_DELAY) {
        this.log('[master] try to start a new agent_worker after 1s ...');
      } else {
        this.logger.warn('[master] agent_worker died %s time(s) in a row before starting, try to start a new agent_worker after %sms ...',
          this.agentFailures, delay);
      }
      const timer = setTimeout(() => {
        this.backoffTimers.delete(timer);
        if (this.closed) return;
        this.logger.info('[master] new agent_worker starting...');
        this.forkAgentWorker();
      }, delay);
      this.backoffTimers.add(timer);
      this.messenger.send({ action: 'agent-worker-died', to: 'parent' });
    } else {
      this.logger.error('[master] agent_worker#%s:%s start fail, exiting with code:1', agent.id, agent.pid);
      process.exit(1);
    }
  }

  // ---------------------------------------------------------------- app workers

  forkAppWorkers() {
    if (this.closed) return;
    const count = this.options.workers;
    this.appStartTime = Date.now();
    this.startSuccessCount = 0;
    this.appArgs = [ JSON.stringify(this.options) ];
    this.log('[master] start appWorker with args %j (process)', this.appArgs);

    for (let i = 0; i < count; i++) {
      this.forkAppWorker({ CFORK_WORKER_INDEX: String(i), CFORK_WORKER_COUNT: String(count) });
    }

    // egg-cluster's master keeps running through an uncaught exception (cfork's catch-all)
    setImmediate(() => {
      if (process.listenerCount('uncaughtException') === 0) {
        process.on('uncaughtException', err => this.onUncaughtException(err));
      }
    });
  }

  forkAppWorker(workerEnv) {
    const execArgv = process.execArgv.slice();
    const inspectPort = process.debugPort + this.inspectPortOffset++;
    if (execArgv.some(arg => INSPECT_ARGV.test(arg))) execArgv.push(`--inspect-port=${inspectPort}`);

    let forked;
    try {
      forked = this.pool.forkApp({
        exec: APP_WORKER_FILE,
        args: this.appArgs,
        execArgv,
        env: Object.assign({}, process.env, workerEnv),
        cwd: process.cwd(),
      });
    } catch (err) {
      err.name = 'AppWorkerError';
      this.logger.error(err);
      if (!this.isAllWorkerStarted) process.exit(1);
      return null;
    }

    const worker = new AppWorker(forked.id, forked.pid, workerEnv);
    this.appWorkers.set(worker.id, worker);
    // Node's cluster emits 'fork' on the next tick: the workers forked together are all listed
    process.nextTick(() => {
      this.log('[master] app_worker#%s:%s start, state: %s, current workers: %j',
        worker.id, worker.pid, worker.state, this.clusterWorkerIds());
      if (this.options.isDebug) {
        this.messenger.send({ to: 'parent', from: 'app', action: 'debug', data: { debugPort: inspectPort, pid: worker.pid } });
      }
    });
    return worker;
  }

  onAppListening(info, address) {
    const worker = this.appWorkers.get(info.id);
    if (!worker) return;
    worker.state = 'listening';
    // the shape and key order of Node's cluster 'listening' event
    address = {
      addressType: address.addressType,
      address: address.address === undefined ? null : address.address,
      port: address.port,
      fd: address.fd,
    };
    this.logger.info('[master] app_worker#%s:%s listening on %j', worker.id, worker.pid, address);
    this.emit('app-start', { workerId: worker.pid, address });
    worker.settle();
  }

  /**
   * An app worker listens: it counts as started when it listens on the app's port (or the
   * sticky worker port, or a unix socket); the master is ready when all of them have.
   * @param {Object} data - { workerId, address }
   */
  onAppStart(data) {
    const worker = this.findAppWorker(data.workerId);
    const address = data.address;
    if (!worker || !address) return;

    if (this.options.sticky) {
      if (String(address.port) !== String(this.options.stickyWorkerPort)) return;
    } else if (address.addressType !== -1 && String(address.port) !== String(this.realPort)) {
      return;
    }
    // a worker reports its app port once, however many ways it is told about
    if (worker.started) return;
    worker.started = true;
    this.reforkPolicy.slotStarted(worker.workerEnv);

    this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });

    this.startSuccessCount++;
    const remain = this.isAllWorkerStarted ? 0 : this.options.workers - this.startSuccessCount;
    this.log('[master] app_worker#%s:%s started at %s, remain %s (%sms)',
      worker.id, worker.pid, address.port, remain, Date.now() - this.appStartTime);

    if (this.isAllWorkerStarted) {
      // a reforked worker joins a running cluster
      this.messenger.send({ action: 'egg-ready', to: 'app', data: this.options });
      worker.disableRefork = false;
      return;
    }
    if (this.startSuccessCount < this.options.workers) return;

    this.isAllWorkerStarted = true;
    for (const w of this.appWorkers.values()) w.disableRefork = false;

    // egg-cluster completes the last app-start's address in place: later 'app-start' listeners see it
    address.protocol = this.protocol;
    if (this.options.sticky) address.port = this.realPort;
    this.appAddress = getAddress(address);

    if (this.options.sticky) {
      this.startStickyServer(err => this.ready(err || true));
    } else {
      this.ready(true);
    }
  }

  onAppDisconnect(info) {
    const worker = this.appWorkers.get(info.id);
    if (!worker) return;
    if (info.exitedAfterDisconnect) worker.exitedAfterDisconnect = true;
    if (worker.isDead) worker.inCluster = false;
    worker.exitedAfterDisconnect = !!worker.exitedAfterDisconnect;
    worker.state = 'disconnected';
    this.reforkPolicy.disconnectCount++;

    // cfork: refork as soon as a worker disconnects unexpectedly
    const print = worker.disableRefork ? console.info : console.error;
    print('[%s] [cfork:master:%s] worker:%s disconnect (exitedAfterDisconnect: %s, state: %s, isDead: %s, worker.disableRefork: %s)',
      logDate(), process.pid, worker.pid, worker.exitedAfterDisconnect, worker.state, worker.isDead, worker.disableRefork);
    if (worker.isDead) {
      print('[%s] [cfork:master:%s] don\'t fork, because worker:%s exit event emit before disconnect',
        logDate(), process.pid, worker.pid);
    } else if (worker.disableRefork) {
      print('[%s] [cfork:master:%s] don\'t fork, because worker:%s will be kill soon',
        logDate(), process.pid, worker.pid);
    } else {
      worker.reforkedOnDisconnect = true;
      this.refork(worker, print);
    }

    this.logger.info('[master] app_worker#%s:%s disconnect, suicide: %s, state: %s, current workers: %j',
      worker.id, worker.pid, worker.exitedAfterDisconnect, worker.state, this.clusterWorkerIds());

    if (worker.killSignal) this.signalAppWorker(worker, worker.killSignal);
  }

  onAppProcessExit(info, code, signal) {
    const worker = this.appWorkers.get(info.id);
    if (!worker) return;
    worker.isDead = true;
    worker.inCluster = false;
    worker.exitCode = code;
    worker.exitedAfterDisconnect = !!(info.exitedAfterDisconnect || worker.exitedAfterDisconnect);
    worker.state = 'dead';

    const print = worker.disableRefork ? console.info : console.error;
    const isExpected = worker.reforkedOnDisconnect;
    print('[%s] [cfork:master:%s] worker:%s exit (code: %s, exitedAfterDisconnect: %s, state: %s, isDead: %s, isExpected: %s, worker.disableRefork: %s)',
      logDate(), process.pid, worker.pid, code, worker.exitedAfterDisconnect, worker.state, true,
      isExpected, worker.disableRefork);
    if (!isExpected && worker.disableRefork && worker.isRefork && !worker.started &&
      !worker.isDevReload && !worker.exitedAfterDisconnect && this.isAllWorkerStarted &&
      this.isProduction && !this.closed) {
      this.reforkAfterBackoff(worker);
    }
    if (!isExpected && !worker.disableRefork) {
      this.reforkPolicy.unexpectedCount++;
      this.refork(worker, print);
      const err = new Error(util.format('worker:%s died unexpected (code: %s, signal: %s, exitedAfterDisconnect: %s, state: %s)',
        worker.pid, code, signal, worker.exitedAfterDisconnect, worker.state));
      err.name = 'WorkerDiedUnexpectedError';
      console.error('[%s] [cfork:master:%s] (total %d disconnect, %d unexpected exit) %s',
        logDate(), process.pid, this.reforkPolicy.disconnectCount, this.reforkPolicy.unexpectedCount, err.stack);
    }

    this.emit('app-exit', { workerId: worker.pid, code, signal });
    worker.settle();
    if (this.closed) this.appWorkers.delete(worker.id);
  }

  /**
   * A reforked worker died before it listened. egg-cluster gives up on the slot (eggjs/egg#4538);
   * we fork it again, backing off exponentially while the slot keeps crashing.
   * @param {AppWorker} worker - the worker that died
   */
  reforkAfterBackoff(worker) {
    const { failures, delay } = this.reforkPolicy.slotFailed(worker.workerEnv);
    this.logger.warn('[master] app_worker#%s:%s died before listening, %s failure(s) in a row, refork in %sms',
      worker.id, worker.pid, failures, delay);
    const timer = setTimeout(() => {
      this.backoffTimers.delete(timer);
      if (this.closed) return;
      this.refork(worker, console.error);
    }, delay);
    this.backoffTimers.add(timer);
  }

  refork(worker, print) {
    if (this.closed || !this.reforkPolicy.allow()) {
      print('[%s] [cfork:master:%s] don\'t fork new work (refork: %s)', logDate(), process.pid, this.isProduction);
      return;
    }
    const newWorker = this.forkAppWorker(worker.workerEnv);
    if (newWorker) {
      newWorker.isRefork = true;
      print('[%s] [cfork:master:%s] new worker:%s fork (state: %s)',
        logDate(), process.pid, newWorker.pid, newWorker.state);
    }
  }

  /**
   * An app worker died: log it, tell the agent and the parent; a death during startup exits.
   * @param {Object} data - { workerId, code, signal }
   */
  onAppExit(data) {
    if (this.closed) return;
    const worker = this.findAppWorker(data.workerId);
    if (!worker) return;

    if (!worker.isDevReload) {
      // egg-cluster prints cluster.Worker#exitCode here, a property Node never sets
      const message = util.format(
        '[master] app_worker#%s:%s died (code: %s, signal: %s, suicide: %s, state: %s), current workers: %j',
        worker.id, worker.pid, undefined, data.signal, worker.exitedAfterDisconnect, worker.state,
        this.managedWorkerPids());
      if (this.options.isDebug && data.signal === 'SIGKILL') {
        this.logger.error(message);
        this.logger.error('[master] worker kill by debugger, exiting...');
        setTimeout(() => this.close(), 10);
      } else {
        const err = new Error(message);
        err.name = 'AppWorkerDiedError';
        this.logger.error(err);
      }
    }

    this.appWorkers.delete(worker.id);
    this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });

    if (this.isAllWorkerStarted) {
      this.messenger.send({ action: 'app-worker-died', to: 'parent' });
    } else {
      this.logger.error('[master] app_worker#%s:%s start fail, exiting with code:1', worker.id, worker.pid);
      process.exit(1);
    }
  }

  // ---------------------------------------------------------------- ready, sticky, reload

  onReady(startTime) {
    this.isStarted = true;
    const sticky = this.options.sticky ? ' with STICKY MODE!' : '';
    this.logger.info('[master] %s started on %s (%sms)%s', this.frameworkName, this.appAddress, Date.now() - startTime, sticky);
    if (this.options.debugPort) {
      const debugURL = getAddress({ port: this.options.debugPort, protocol: 'http' });
      this.logger.info('[master] %s started on %s', this.frameworkName, debugURL);
    }

    this.messenger.send({
      action: 'egg-ready',
      to: 'parent',
      data: {
        port: this.realPort,
        debugPort: this.options.debugPort,
        address: this.appAddress,
        protocol: this.protocol,
      },
    });
    this.messenger.send({ action: 'egg-ready', to: 'app', data: this.options });
    this.messenger.send({ action: 'egg-ready', to: 'agent', data: this.options });

    if (this.isProduction) this.startHealthCheck();
  }

  /**
   * Production only: exit when the agent or every app worker is missing for three checks in a
   * row (30s), instead of serving in an unknown state.
   */
  startHealthCheck() {
    let failures = 0;
    this.healthTimer = setInterval(() => {
      const count = {
        agent: this.agent && this.agent.status === 'started' ? 1 : 0,
        // workers that listen: a slot crash-looping through refork backoff does not count
        worker: Array.from(this.appWorkers.values()).filter(w => w.started && !w.isDead).length,
      };
      if (count.agent && count.worker) {
        failures = 0;
        return;
      }
      if (++failures < HEALTH_CHECK_FAILURES) return;
      clearInterval(this.healthTimer);
      const err = new Error(`[master] ${count.agent} agent and ${count.worker} worker(s) alive, exit to avoid unknown state`);
      err.name = 'ClusterWorkerExceptionError';
      err.count = count;
      this.logger.error(err);
      process.exit(1);
    }, HEALTH_CHECK_INTERVAL);
  }

  // sticky mode: the Rust core accepts on the app port and hands each connection, unread, to the
  // live app worker chosen by the client's IP, which serves it on its stickyWorkerPort server
  startStickyServer(callback) {
    try {
      this.pool.listenSticky(this.realPort, null, this.options.workers);
    } catch (err) {
      callback(err);
      return;
    }
    this.stickyListening = true;
    callback();
  }

  /**
   * Development only (egg-development's file watcher asks for it): replace every app worker,
   * one new worker listening before the first old one goes.
   */
  onReload() {
    this.log('[master] reload workers...');
    for (const worker of this.appWorkers.values()) worker.isDevReload = true;
    this.reloadAppWorkers();
  }

  reloadAppWorkers() {
    if (!this.appArgs) return;
    if (this.reloading) {
      this.reloadPending = true;
      return;
    }
    this.reloading = true;
    const alive = Array.from(this.appWorkers.values()).filter(w => w.state !== 'disconnected' && !w.isDead);
    const first = alive[0];
    const replacement = this.forkAppWorker({});
    const done = () => {
      if (first) {
        this.killAppWorker(first, 'SIGTERM');
        setTimeout(() => this.signalAppWorker(first, 'SIGTERM'), 100);
      }
      this.reloading = false;
      if (this.reloadPending) {
        this.reloadPending = false;
        this.reloadAppWorkers();
      }
    };
    if (replacement) {
      replacement.onSettled = done;
    } else {
      done();
    }
    for (const worker of alive.slice(1)) this.killAppWorker(worker, 'SIGTERM');
    for (let i = 1; i < this.options.workers; i++) this.forkAppWorker({});
  }

  // cluster.Worker#kill: disconnect, then signal once disconnected
  killAppWorker(worker, signal) {
    worker.exitedAfterDisconnect = true;
    if (worker.state === 'disconnected' || worker.isDead) {
      this.signalAppWorker(worker, signal);
      return;
    }
    worker.killSignal = signal;
    try {
      this.pool.disconnect(worker.pid);
    } catch (err) {
      this.logger.error(err);
    }
  }

  signalAppWorker(worker, signal) {
    if (worker.isDead) return;
    try {
      this.pool.kill(worker.pid, signal);
    } catch (err) {
      this.logger.error(err);
    }
  }

  // ---------------------------------------------------------------- close and exit

  onSignal(signal) {
    if (this.closed) return;
    this.logger.info('[master] master is killed by signal %s, closing', signal);
    const { used_heap_size, heap_size_limit } = require('v8').getHeapStatistics();
    this.logger.info('[master] system memory: total %s, free %s', os.totalmem(), os.freemem());
    this.logger.info('[master] process info: heap_limit %s, heap_used %s', heap_size_limit, used_heap_size);
    this.close();
  }

  /**
   * Close app workers, then the agent, then exit 0 (1 on an unexpected error).
   */
  async close() {
    this.closed = true;
    try {
      await this.doClose();
      this.log('[master] close done, exiting with code:0');
      process.exit(0);
    } catch (err) {
      this.logger.error('[master] close with error: ', err);
      process.exit(1);
    }
  }

  async doClose() {
    clearInterval(this.healthTimer);
    for (const timer of this.backoffTimers) clearTimeout(timer);
    this.backoffTimers.clear();
    if (this.stickyListening) {
      this.stickyListening = false;
      this.pool.closeSticky();
    }
    const legacyTimeout = process.env.EGG_MASTER_CLOSE_TIMEOUT || 5000;
    const appTimeout = process.env.EGG_APP_CLOSE_TIMEOUT || legacyTimeout;
    const agentTimeout = process.env.EGG_AGENT_CLOSE_TIMEOUT || legacyTimeout;

    this.logger.info('[master] send kill SIGTERM to app workers, will exit with code:0 after %sms', appTimeout);
    this.logger.info('[master] wait %sms', appTimeout);
    try {
      await this.killAppWorkers(Number(appTimeout));
    } catch (err) {
      this.logger.error('[master] app workers exit error: ', err);
    }

    this.logger.info('[master] send kill SIGTERM to agent worker, will exit with code:0 after %sms', agentTimeout);
    this.logger.info('[master] wait %sms', agentTimeout);
    try {
      await this.killAgentWorker(Number(agentTimeout));
    } catch (err) {
      this.logger.error('[master] agent worker exit error: ', err);
    }
  }

  async killAppWorkers(timeout) {
    const workers = Array.from(this.appWorkers.values()).filter(w => !w.isDead);
    await Promise.all(workers.map(worker => {
      worker.disableRefork = true;
      return this.pool.terminate(worker.pid, timeout);
    }));
  }

  async killAgentWorker(timeout) {
    const agent = this.agent;
    if (!agent) return;
    this.log('[master] kill agent worker with signal SIGTERM');
    agent.killing = true;
    await this.pool.terminate(agent.pid, timeout);
  }

  onExit(code) {
    if (this.options.pidFile && fs.existsSync(this.options.pidFile)) {
      try {
        fs.unlinkSync(this.options.pidFile);
      } catch (err) {
        this.logger.error('[master] delete pidfile %s fail with %s', this.options.pidFile, err.message);
      }
    }
    const level = code === 0 ? 'info' : 'error';
    this.logger[level]('[master] exit with code:%s', code);
  }

  onUncaughtException(err) {
    if (!err) return;
    console.error('[%s] [cfork:master:%s] master uncaughtException: %s', logDate(), process.pid, err.stack);
    console.error(err);
    console.error('(total %d disconnect, %d unexpected exit)', this.reforkPolicy.disconnectCount, this.reforkPolicy.unexpectedCount);
  }

  // ---------------------------------------------------------------- worker lists

  findAppWorker(pid) {
    for (const worker of this.appWorkers.values()) {
      if (worker.pid === pid) return worker;
    }
    return null;
  }

  // `Object.keys(cluster.workers)`: ids of the workers Node's cluster would still list
  clusterWorkerIds() {
    const ids = [];
    for (const worker of this.appWorkers.values()) {
      if (worker.inCluster) ids.push(String(worker.id));
    }
    return ids;
  }

  // pids of every app worker the master still manages
  managedWorkerPids() {
    return Array.from(this.appWorkers.values(), worker => worker.pid);
  }

  listeningWorkerPids() {
    const pids = [];
    for (const worker of this.appWorkers.values()) {
      if (worker.state === 'listening') pids.push(worker.pid);
    }
    return pids;
  }
}

function isProduction(options) {
  if (options.env) return options.env !== 'local' && options.env !== 'unittest';
  return process.env.NODE_ENV === 'production';
}

function userLoadedCluster() {
  const loaded = process.moduleLoadList;
  // without the list (another runtime), load it and look
  return !Array.isArray(loaded) || loaded.includes('NativeModule cluster');
}

function poolOptions(options) {
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
  };
}

function getAddress({ addressType, address, port, protocol }) {
  // a unix socket path
  if (addressType === -1) return address;
  let hostname = address;
  if (!hostname && process.env.HOST && process.env.HOST !== '0.0.0.0') hostname = process.env.HOST;
  if (!hostname) hostname = '127.0.0.1';
  return `${protocol}://${hostname}:${port}`;
}

module.exports = Master;
