'use strict';

/**
 * WorkerPool: the JavaScript face of the Rust core. It forks the agent and the
 * app workers (real `node` processes with a Node-compatible IPC channel),
 * supervises them and routes egg messages between them in Rust. Only messages
 * for the master or the parent, and lifecycle events, cross into JavaScript.
 *
 *   master (this process) ── NativeCluster (Rust: spawn, IPC, router, listen)
 *        │ events, in batches
 *   WorkerPool ── 'fork' 'online' 'listening' 'message' 'parent'
 *                 'disconnect' 'exit' 'error'
 */

const { EventEmitter } = require('events');
const { NativeCluster } = require('../binding');

// what NODE_CLUSTER_SCHED_POLICY may pick (Node's two, and ours); anything else: round-robin
const ENV_POLICIES = [ 'rr', 'none', 'reuseport' ];

function policyFrom(options) {
  const policy = options.schedulingPolicy;
  if (policy !== undefined && policy !== null) return policy;
  const fromEnv = process.env.NODE_CLUSTER_SCHED_POLICY;
  return ENV_POLICIES.includes(fromEnv) ? fromEnv : 'rr';
}

/**
 * The core validates its options (the one place); a refused one, or one of the wrong type,
 * is a TypeError here, as Node's argument errors are.
 * @param {Error} err - what the core threw
 * @return {Error} the error to throw
 */
function optionError(err) {
  if (err.code !== 'ERR_INVALID_ARG_VALUE' && !/Expected$/.test(err.code)) return err;
  const error = new TypeError(err.message);
  error.code = 'ERR_INVALID_ARG_VALUE';
  return error;
}

function envPairs(env) {
  const pairs = [];
  for (const key of Object.keys(env)) {
    const value = env[key];
    if (value === undefined || value === null) continue;
    pairs.push([ key, String(value) ]);
  }
  return pairs;
}

/** Node's cluster `listening` address, built from the worker's message. */
function listeningAddress(message) {
  const address = {
    addressType: message.addressType,
    address: message.address,
    port: message.port,
  };
  if (message.fd !== undefined) address.fd = message.fd;
  return address;
}

class WorkerPool extends EventEmitter {
  /**
   * @param {object} [options]
   * @param {number} [options.maxLineBytes] longest line accepted from a worker (64 MiB)
   * @param {number} [options.queueBytes] bytes that may wait for one worker (2 MiB)
   * @param {number} [options.stallTimeout] ms a sender waits for room before a drop (10000)
   * @param {string} [options.schedulingPolicy] 'rr' (default), 'none' or 'reuseport'
   * @param {string} [options.deathSignal] signal children get the instant the master dies (none)
   * @param {number} [options.orphanGrace] ms the workers of a killed master get to leave on their
   *   own before the watchdog SIGKILLs them and their descendants (300; 0 disables it)
   * @param {boolean} [options.receiverWorkerIdFirst] egg 4's routing: `receiverWorkerId ??
   *   receiverPid` names the receiver (default: egg 3's, receiverPid first)
   * @param {object} [options.metrics] serve `metrics()` in Prometheus' text format on
   *   `GET /metrics`: `{ port = 9464, host = '127.0.0.1' }` (port 0: any free one)
   */
  constructor(options = {}) {
    super();
    if (options === null || typeof options !== 'object') {
      throw new TypeError('options must be an object');
    }
    this.schedulingPolicy = policyFrom(options);
    this._workers = new Map(); // pid -> worker
    this._keepAlive = null;
    this._closed = false;
    this._unitOpen = false;
    this._commitUnit = () => {
      this._unitOpen = false;
      if (!this._closed) this._native.commitUnit();
    };
    try {
      this._native = new NativeCluster({
        maxLineBytes: options.maxLineBytes === null ? undefined : options.maxLineBytes,
        queueBytes: options.queueBytes === null ? undefined : options.queueBytes,
        stallTimeoutMs: options.stallTimeout === undefined ? undefined : Number(options.stallTimeout),
        schedulingPolicy: this.schedulingPolicy,
        deathSignal: options.deathSignal,
        orphanGraceMs: options.orphanGrace === undefined ? undefined : Number(options.orphanGrace),
        receiverWorkerIdFirst: options.receiverWorkerIdFirst,
        metrics: options.metrics || undefined,
      }, events => this._onEvents(events));
    } catch (err) {
      throw optionError(err);
    }
  }

  /** Forks the agent: a plain child like `child_process.fork`. */
  forkAgent(options) {
    return this._fork('agent', options);
  }

  /** Forks an app worker: a cluster worker (`cluster.worker.id` is the returned id). */
  forkApp(options) {
    return this._fork('app', options);
  }

  _fork(kind, options = {}) {
    if (this._closed) throw new Error('WorkerPool is closed');
    if (!options.exec || typeof options.exec !== 'string') {
      throw new TypeError('options.exec must be the path of the script to run');
    }
    let execArgv = options.execArgv || process.execArgv;
    if (process._eval != null) {
      // a master started with `node -e <code>` must not run <code> again in
      // every child (a fork bomb): drop the switch and its code, as Node's fork
      const index = execArgv.lastIndexOf(process._eval);
      if (index > 0 && /^(-e|--eval|-p|--print|-pe)$/.test(execArgv[index - 1])) {
        execArgv = execArgv.slice();
        execArgv.splice(index - 1, 2);
      }
    }
    const args = [ ...execArgv, options.exec, ...(options.args || []).map(String) ];
    const ref = this._native.spawn({
      kind,
      exec: options.execPath || process.execPath,
      args,
      env: envPairs(options.env || process.env),
      cwd: options.cwd,
      startupPipe: !!options.startupPipe,
      slot: options.slot === null ? undefined : options.slot,
      restarts: options.restarts === null ? undefined : options.restarts,
    });
    const worker = {
      id: ref.id,
      pid: ref.pid,
      kind,
      state: 'starting',
      exitedAfterDisconnect: false,
    };
    this._workers.set(ref.pid, worker);
    this._updateKeepAlive();
    return { id: ref.id, pid: ref.pid };
  }

  /**
   * Blocks until a worker forked with `startupPipe: true` closes its fd 4 and returns what
   * it wrote there, or null when `timeout` ms pass first. Once per worker.
   * @param {number} id - the pool id `fork*()` returned
   * @param {number} timeout - ms
   * @return {string|null} the answer
   */
  readStartup(id, timeout) {
    return this._native.readStartup(id, timeout);
  }

  /**
   * Routes an egg envelope `{action, data, to, receiverPid, receiverWorkerId}` with egg's rules,
   * decided by the core's router (the only one), and returns the `to` it chose: 'master',
   * 'parent', 'agent', 'app', or null when the message names nobody egg knows. Messages for
   * workers are queued; one for the master or the parent is the caller's to deliver.
   * `msg.from` says on whose behalf (default 'master').
   * @param {object} msg - the envelope
   * @return {string|null} the `to` chosen
   */
  route(msg) {
    if (this._closed) return null;
    this._openUnit();
    return this._native.route(msg.from || 'master', JSON.stringify(msg));
  }

  /** `route` for callers that only send to workers: returns this. */
  send(msg) {
    this.route(msg);
    return this;
  }

  /** Sends a message to one worker as is, without routing. False if dropped. */
  sendToWorker(pid, msg) {
    if (this._closed) return false;
    try {
      this._openUnit();
      return this._native.sendRaw(pid, JSON.stringify(msg));
    } catch (err) {
      return false;
    }
  }

  disconnect(pid) {
    const worker = this._workers.get(pid);
    if (worker) worker.exitedAfterDisconnect = true;
    try {
      this._openUnit();
      this._native.disconnect(pid);
    } catch (_) {
      // already gone
    }
  }

  /**
   * Everything this process sends to workers during one tick is one unit (DESIGN.md, delivery
   * guarantee 2): the core holds it back until the tick ends, then queues all of it for its
   * recipients before it relays anything a worker sends in answer.
   */
  _openUnit() {
    if (this._unitOpen) return;
    this._unitOpen = true;
    this._native.openUnit();
    process.nextTick(this._commitUnit);
  }

  kill(pid, signal = 'SIGTERM') {
    try {
      return this._native.kill(pid, signal);
    } catch (err) {
      if (err.code === 'ERR_INVALID_ARG_VALUE') throw err;
      return false;
    }
  }

  /** SIGTERM the worker and its descendants; SIGKILL what is left after `timeout` ms. */
  async terminate(pid, timeout) {
    if (this._closed) return;
    try {
      await this._native.terminate(pid, timeout);
    } catch (_) {
      // the worker was already gone
    }
  }

  /**
   * Sticky sessions, in Rust: listen on `port` (all interfaces, or `host`) and
   * hand each connection, unread, to the live app worker chosen from the
   * client's IP (egg-cluster's rule over `workers` slots) as
   * `'sticky-session:connection'` with a `net.Socket`; a worker keeps its
   * clients while it lives. Returns the bound port; throws an Error with
   * Node's `code`.
   */
  listenSticky(port, host, workers) {
    try {
      return this._native.listenSticky(port, host || null, workers || null);
    } catch (err) {
      // a failed listen carries the errno's name as its code, as Node's do
      if (err.code && !err.code.startsWith('ERR_')) {
        err.errno = err.code;
        err.syscall = 'listen';
        err.port = port;
      }
      throw err;
    }
  }

  closeSticky() {
    if (!this._closed) this._native.closeSticky();
  }

  /** The workers that have not exited yet. */
  workers() {
    if (this._closed) return [];
    return this._native.workers();
  }

  /**
   * The core's counters now (the figures `/metrics` serves): `workers` (pid, kind, slot, state,
   * uptime, restarts, messages and bytes in and out, drops by reason, bad lines, queue bytes),
   * `total` (the same since the pool started, relays per second, forks, reforks) and `master`
   * (rss, cpu). Null once closed.
   */
  metrics() {
    if (this._closed) return null;
    return this._native.metrics();
  }

  /** `{ host, port }` where `/metrics` is served, or null. */
  metricsAddress() {
    if (this._closed) return null;
    return this._native.metricsAddress();
  }

  /** A worker by pid (the JS view, kept until its exit event). */
  get(pid) {
    return this._workers.get(pid);
  }

  close() {
    if (this._closed) return;
    this._closed = true;
    this._native.close();
    this._workers.clear();
    this._updateKeepAlive();
  }

  _updateKeepAlive() {
    const needed = !this._closed && this._workers.size > 0;
    if (needed && !this._keepAlive) {
      this._keepAlive = setInterval(() => {}, 1 << 30);
    } else if (!needed && this._keepAlive) {
      clearInterval(this._keepAlive);
      this._keepAlive = null;
    }
  }

  _onEvents(events) {
    for (const ev of events) {
      try {
        this._onEvent(ev);
      } catch (err) {
        // a listener threw: report it without losing the rest of the batch
        process.nextTick(() => { throw err; });
      }
    }
  }

  _onEvent(ev) {
    const worker = ev.pid ? this._workers.get(ev.pid) : undefined;
    switch (ev.kind) {
      case 'fork':
        if (worker) this.emit('fork', worker);
        break;
      case 'online':
        if (worker) {
          worker.state = 'online';
          this.emit('online', worker);
        }
        break;
      case 'listening': {
        if (!worker) break;
        worker.state = 'listening';
        let message;
        try {
          message = JSON.parse(ev.data);
        } catch (_) {
          break;
        }
        this.emit('listening', worker, listeningAddress(message));
        break;
      }
      case 'message': {
        let msg;
        try {
          msg = JSON.parse(ev.data);
        } catch (_) {
          break;
        }
        const from = worker || ev.worker;
        this.emit(ev.to === 'parent' ? 'parent' : 'message', msg, from);
        break;
      }
      case 'disconnect':
        if (worker) {
          if (worker.state !== 'dead') worker.state = 'disconnected';
          this.emit('disconnect', worker);
        }
        break;
      case 'exit':
        if (worker) {
          worker.state = 'dead';
          worker.exitedAfterDisconnect = worker.exitedAfterDisconnect || !!ev.exitedAfterDisconnect;
          this._workers.delete(ev.pid);
          this._updateKeepAlive();
          const code = ev.code === undefined ? null : ev.code;
          const signal = ev.signal === undefined ? null : ev.signal;
          worker.exitCode = code;
          worker.signalCode = signal;
          this.emit('exit', worker, code, signal);
        }
        break;
      case 'error': {
        const err = new Error(ev.message || 'worker error');
        err.code = ev.errorCode;
        if (ev.pid) err.pid = ev.pid;
        if (ev.id) err.id = ev.id;
        // bad input never crashes the master: without a listener it is dropped
        if (this.listenerCount('error') > 0) this.emit('error', err);
        break;
      }
      default:
        break;
    }
  }
}

module.exports = { WorkerPool, listeningAddress };
