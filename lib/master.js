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
const EventEmitter = require('events');
const { ConsoleLogger, logDate } = require('./console_logger');
const { readJSON, assertFramework } = require('./framework');

const parseOptions = require('./options');
const { WorkerPool } = require('./pool');
const { Messenger } = require('./messenger');
const { ReadyState } = require('./ready_state');
const { ReforkPolicy } = require('./refork_policy');
const { startHealthCheck } = require('./master/health_check');
const { poolOptions } = require('./master/pool_options');
const { AgentLifecycle } = require('./master/agent');
const { AppWorkerLifecycle, getAddress } = require('./master/app_workers');
const { AppWorkerDeaths } = require('./master/app_deaths');
const { DevReload } = require('./master/dev_reload');
const { RollingReload } = require('./master/rolling_reload');
const { useThreads } = require('./master/threads');
const { ThreadTable } = require('./thread_table');
const { masterDialect } = require('./dialect');

class Master extends EventEmitter {
  /**
   * @param {Object} options - see lib/options.js; framework, baseDir, workers, port, https,
   *   sticky, require, pidFile, env, plugins, …
   */
  constructor(options, internal = {}) {
    super();
    // the framework is checked by the agent as it loads it (startAgentEarly, lib/master/agent.js)
    this.options = parseOptions(options, {
      entry: internal.entry,
      checkFramework: false,
      onDefaultWorkers: chosen => { this.defaultWorkers = chosen; },
    });
    // egg 3 or egg 4 (lib/dialect.js): `internal.entry` is 'esm' from the ESM entry
    this.dialect = masterDialect(this.options, internal.entry);
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
    // app slot (CFORK_WORKER_INDEX) → times forked: the `restarts` label of its next worker
    this.slotForks = new Map();
    this.healthTimer = null;

    this.rollingReload = new RollingReload(this);
    this.readyState = new ReadyState();
    // worker_threads mode: the workers are threads of this process (lib/master/threads.js)
    this.threadMode = this.options.startMode === 'worker_threads';
    if (this.threadMode) {
      // no agent process checks the framework here: the master does, before any thread starts
      assertFramework(this.options.framework);
      this.pool = null;
      this.threads = new ThreadTable({
        receiverWorkerIdFirst: this.dialect.receiverWorkerIdFirst,
        onError: err => this.logger.error(err),
      });
      useThreads(this);
    } else {
      this.pool = new WorkerPool(poolOptions(this.options, this.dialect));
    }
    const early = this.threadMode ? null : this.startAgentEarly();
    try {
      this.init(early);
    } catch (err) {
      this.abortEarlyAgent(early);
      throw err;
    }
  }

  init(early) {
    this.messenger = new Messenger(this, this.pool || this.threads);
    if (this.pool) this.listenPool();

    const frameworkPkg = readJSON(path.join(this.options.framework, 'package.json'));
    this.frameworkName = frameworkPkg.name;

    this.log(this.dialect.banner(frameworkPkg.name));
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
    if (this.defaultWorkers) {
      this.logger.info('[master] app workers: %s, as no workers option is given: %s', this.defaultWorkers.count, this.defaultWorkers.rule);
    }

    const startTime = Date.now();
    this.ready(() => this.onReady(startTime));

    this.on('agent-exit', this.onAgentExit.bind(this));
    this.on('agent-start', this.onAgentStart.bind(this));
    this.on('app-exit', this.onAppExit.bind(this));
    this.on('app-start', this.onAppStart.bind(this));
    // egg-development's reload stays egg-cluster's; elsewhere reload-worker is a rolling reload
    this.on('reload-worker', () => (this.isProduction ? this.reloadOn('reload-worker') : this.onReload()));
    this.once('agent-start', this.forkAppWorkers.bind(this));
    this.on('realport', ({ port, protocol } = {}) => {
      if (port) this.realPort = port;
      if (protocol) this.protocol = protocol;
    });

    process.once('SIGINT', this.onSignal.bind(this, 'SIGINT'));
    process.once('SIGQUIT', this.onSignal.bind(this, 'SIGQUIT'));
    process.once('SIGTERM', this.onSignal.bind(this, 'SIGTERM'));
    process.on('SIGUSR2', () => this.reloadOn('SIGUSR2'));
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
   * get-ready's contract: `ready(fn)` registers a callback (called with an Error on a failed
   * start), `ready()` returns a promise, `ready(true | Error)` marks the master ready.
   * @param {Function|Boolean|Error} [flagOrCallback] -
   * @return {Promise|undefined} -
   */
  ready(flagOrCallback) {
    return this.readyState.ready(flagOrCallback);
  }

  /**
   * Rolling reload (lib/master/rolling_reload.js): every app worker replaced, one at a time,
   * each old one retired only once its successor listens.
   * @param {Object} [options] - `agent: true` replaces the agent first; `startTimeout` (ms)
   * @return {Promise<Object>} `{ ms, agent, slots: [{ oldPid, newPid, ms }] }`
   */
  reload(options) {
    return this.rollingReload.run(options);
  }

  /**
   * The core's counters now: per worker and in total, relays per second, reforks, and the
   * master's own memory and CPU (lib/pool.js `metrics()`); `/metrics` serves the same figures
   * when the `metrics` option is set.
   * @return {Object|null} the snapshot
   */
  metrics() {
    return this.pool.metrics();
  }

  /** @return {{host: string, port: number}|null} where `/metrics` is served */
  metricsAddress() {
    return this.pool.metricsAddress();
  }

  reloadOn(trigger) {
    this.logger.info('[master] reload: requested by %s', trigger);
    this.reload().catch(err => {
      // an abort is logged with its reason already
      if (err.code !== 'ERR_RELOAD_ABORTED') this.logger.warn('%s, %s ignored', err.message, trigger);
    });
  }

  log(...args) {
    this.logger[this.logMethod](...args);
  }

  listenPool() {
    const pool = this.pool;
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
        if (this.dialect.logsListening) {
          this.logger.info('[master] app_worker#%s:%s reuse-port listening on %j', worker.id, worker.pid, msg.data);
        }
        this.emit('app-start', { workerId: worker.pid, address: msg.data });
      }
    });
    pool.on('error', err => this.logger.error(err));
  }


  // ---------------------------------------------------------------- ready and sticky

  onReady(startTime) {
    this.isStarted = true;
    const sticky = this.options.sticky ? ' with STICKY MODE!' : '';
    this.logger.info('[master] %s started on %s (%sms)%s', this.frameworkName, this.appAddress, Date.now() - startTime, sticky);
    if (this.options.debugPort) {
      const debugURL = getAddress({ port: this.options.debugPort, protocol: 'http' });
      this.logger.info(this.dialect.debugPortLine, this.frameworkName, debugURL);
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

    if (this.isProduction) {
      this.healthTimer = startHealthCheck(() => ({
        agent: this.agent && this.agent.status === 'started' ? 1 : 0,
        // workers that listen: a slot crash-looping through refork backoff does not count
        worker: Array.from(this.appWorkers.values()).filter(w => w.started && !w.isDead).length,
      }), err => {
        this.logger.error(err);
        process.exit(1);
      });
    }
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
        this.logger.error(`[master] delete ${this.dialect.pidFileWord} %s fail with %s`, this.options.pidFile, err.message);
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

}

// the methods of each concern, kept in lib/master/, are Master's own
for (const Concern of [ AgentLifecycle, AppWorkerLifecycle, AppWorkerDeaths, DevReload ]) {
  for (const name of Object.getOwnPropertyNames(Concern.prototype)) {
    if (name === 'constructor') continue;
    Object.defineProperty(Master.prototype, name, Object.getOwnPropertyDescriptor(Concern.prototype, name));
  }
}

function isProduction(options) {
  if (options.env) return options.env !== 'local' && options.env !== 'unittest';
  return process.env.NODE_ENV === 'production';
}

module.exports = Master;
