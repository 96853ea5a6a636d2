'use strict';

/**
 * App workers while they live, as methods of Master: fork them (cfork's env and Node's inspector
 * ports), follow them to listening and started, count the cluster ready, and kill them as
 * cluster.Worker#kill does. Their state is the pool's record of each worker (derived from the
 * core's events); an AppWorker adds only what egg's lifecycle decides.
 */

const { EventEmitter } = require('events');
const { settleOn } = require('./settle_on');

// Node's cluster gives each app worker its own inspector port when the master runs with one of these
const INSPECT_ARGV = /--inspect(?:-brk|-port)?|--debug-port/;

// Node's cluster.Worker state names for the core's
const CLUSTER_STATE = { starting: 'none' };

class AppWorker {
  /**
   * @param {Object} record - the pool's worker (id, pid, state, exitedAfterDisconnect, exitCode)
   * @param {Object} workerEnv - the env that made this slot (CFORK_WORKER_INDEX, …)
   */
  constructor(record, workerEnv) {
    this.record = record;
    this.workerEnv = workerEnv;
    // no refork until the whole cluster has started
    this.disableRefork = true;
    this.isDevReload = false;
    this.started = false;
    this.reforkedOnDisconnect = false;
    this.killSignal = null;
    this.onSettled = null;
    // taken out by a rolling reload (lib/master/rolling_reload.js): its exit is expected
    this.retired = false;
    // 'started', 'disconnect', 'exit' (code, signal): for whoever waits on this worker
    this.events = new EventEmitter();
  }

  /**
   * Resolves once the worker has started (listens on the app port); rejects when it exits
   * first or does not start within `timeout` ms.
   * @param {number} timeout - ms
   * @return {Promise<void>} -
   */
  waitStarted(timeout) {
    if (this.started) return Promise.resolve();
    if (this.isDead) return Promise.reject(new Error('exited before it started'));
    return settleOn(this.events, {
      resolveOn: 'started',
      rejectOn: 'exit',
      rejectWith: (code, signal) => new Error(`exited (code: ${code}, signal: ${signal}) before it started`),
      timeout,
      timeoutError: () => new Error(`did not start within ${timeout}ms`),
    });
  }

  get id() {
    return this.record.id;
  }

  get pid() {
    return this.record.pid;
  }

  // Node's cluster.Worker states: none → online → listening → disconnected → dead
  get state() {
    return CLUSTER_STATE[this.record.state] || this.record.state;
  }

  get isDead() {
    return this.record.state === 'dead';
  }

  // still in Node's `cluster.workers`
  get inCluster() {
    return !this.isDead;
  }

  get exitCode() {
    return this.record.exitCode;
  }

  get exitedAfterDisconnect() {
    return this.record.exitedAfterDisconnect;
  }

  set exitedAfterDisconnect(value) {
    this.record.exitedAfterDisconnect = value;
  }

  // the first 'listening' or 'exit' of a worker forked by a reload
  settle() {
    const onSettled = this.onSettled;
    this.onSettled = null;
    if (onSettled) onSettled();
  }
}

function getAddress({ addressType, address, port, protocol }) {
  // a unix socket path
  if (addressType === -1) return address;
  // a server on every interface: egg 4's worker reports net.Server#address(), `::`
  let hostname = address === '::' ? '' : address;
  if (!hostname && process.env.HOST && process.env.HOST !== '0.0.0.0') hostname = process.env.HOST;
  if (!hostname) hostname = '127.0.0.1';
  return `${protocol}://${hostname}:${port}`;
}

class AppWorkerLifecycle {
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

    // metrics labels: egg's slot, and how many times it was forked before
    const slot = workerEnv.CFORK_WORKER_INDEX === undefined ? null : Number(workerEnv.CFORK_WORKER_INDEX);
    const restarts = slot === null ? null : (this.slotForks.get(slot) || 0);
    let forked;
    try {
      forked = this.pool.forkApp({
        exec: this.dialect.workerScript('app'),
        args: this.appArgs,
        execArgv,
        env: Object.assign({}, process.env, workerEnv),
        cwd: process.cwd(),
        slot,
        restarts,
      });
      if (slot !== null) this.slotForks.set(slot, restarts + 1);
    } catch (err) {
      err.name = 'AppWorkerError';
      this.logger.error(err);
      if (!this.isAllWorkerStarted) process.exit(1);
      return null;
    }

    const worker = new AppWorker(this.pool.get(forked.pid), workerEnv);
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
    // the shape and key order of Node's cluster 'listening' event
    address = {
      addressType: address.addressType,
      address: address.address === undefined ? null : address.address,
      port: address.port,
      fd: address.fd,
    };
    if (this.dialect.logsListening) {
      this.logger.info('[master] app_worker#%s:%s listening on %j', worker.id, worker.pid, address);
    }
    // egg 4's app worker sends app-start itself, for its app server only
    if (!this.dialect.workerSendsAppStart) this.emit('app-start', { workerId: worker.pid, address });
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
    } else if (!this.threadMode && address.addressType !== -1 && String(address.port) !== String(this.realPort)) {
      // (in worker_threads mode each app thread has its own port: any counts)
      return;
    }
    // a worker reports its app port once, however many ways it is told about
    if (worker.started) return;
    worker.started = true;
    worker.events.emit('started');
    this.reforkPolicy.slotStarted(worker.workerEnv);

    this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });
    if (this.dialect.eggPidsToStartedApp && this.agent) {
      // egg 4 tells the worker that just started the agent's pid, and it alone
      const id = String(worker.pid);
      this.messenger.send({ action: 'egg-pids', to: 'app', receiverPid: id, receiverWorkerId: id, data: [ this.agent.pid ] });
    }

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

  /**
   * Takes a worker out for good, expected by everyone (a rolling reload): it leaves the
   * listening sockets (disconnect), then gets SIGTERM, and SIGKILL after `timeout` ms.
   * @param {AppWorker} worker - the worker
   * @param {number} timeout - ms between SIGTERM and SIGKILL (and at most to disconnect)
   * @return {Promise<void>} resolves once it has exited
   */
  async retireAppWorker(worker, timeout) {
    worker.retired = true;
    worker.disableRefork = true;
    if (!worker.isDead && worker.state !== 'disconnected') {
      let timer;
      const gone = new Promise(resolve => {
        worker.events.once('disconnect', resolve);
        worker.events.once('exit', resolve);
        timer = setTimeout(resolve, timeout);
      });
      try {
        this.pool.disconnect(worker.pid);
      } catch (err) {
        this.logger.error(err);
      }
      await gone;
      clearTimeout(timer);
    }
    if (!worker.isDead) await this.pool.terminate(worker.pid, timeout);
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

module.exports = { AppWorker, AppWorkerLifecycle, getAddress };
