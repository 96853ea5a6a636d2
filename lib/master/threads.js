'use strict';

/**
 * worker_threads mode (`startMode: 'worker_threads'`), as methods that replace the process-mode
 * ones on a master started in it (useThreads): the agent and the app workers run as threads of
 * the master process, as egg-cluster 2 and @eggjs/cluster 3 run them there.
 *
 * - The agent is one thread; one app thread per `ports` entry (default `[port]`), each listening
 *   on its own port (threads share no listen socket), and `workers` becomes `ports.length`.
 * - A thread's messages go through the Messenger, stamped `from` by the thread they came from;
 *   lib/thread_table.js asks the core's router where each goes and posts it.
 * - The events, egg-pids, egg-ready and refork rules of the agent are process mode's
 *   (lib/master/agent.js); an app thread that exits is forked again after 1s, in any env.
 * - Close terminates the threads (`worker.terminate()`): egg's close does not run in them.
 * - Not here: sticky (refused by lib/options.js) and reloads (master.reload() rejects).
 * Log lines are the upstream thread mode's.
 */

const { Worker } = require('worker_threads');
const { AppWorker } = require('./app_workers');

const APP_THREAD_REFORK_DELAY = 1000;

class ThreadLifecycle {
  forkAgentWorker() {
    const startTime = Date.now();
    let thread;
    try {
      thread = new Worker(this.dialect.workerScript('agent'), { argv: [ JSON.stringify(this.options) ] });
    } catch (err) {
      this.logger.error(this.dialect.agentThreadError(err, { id: this.agentIndex + 1, pid: undefined, status: 'starting' }));
      if (!this.isStarted) process.exit(1);
      return;
    }
    // The thread id is kept: Node answers -1 once the thread has stopped, which is what both
    // upstreams print in the agent's death line; ours names the thread that died.
    const agent = this.agent = { id: ++this.agentIndex, pid: thread.threadId, status: 'starting', startTime, thread };
    this.threads.setAgent(agent, thread);
    this.log('[master] agent_worker#%s:%s start with worker_threads', agent.id, agent.pid);

    thread.on('message', msg => this.relayThreadMessage(msg, 'agent'));
    thread.on('error', err => this.logger.error(this.dialect.agentThreadError(err, agent)));
    thread.once('exit', code => {
      this.threads.removeAgent(thread);
      this.messenger.send({ action: 'agent-exit', data: { code, signal: undefined }, to: 'master', from: 'agent' });
    });
  }

  forkAppWorkers() {
    if (this.closed) return;
    this.appStartTime = Date.now();
    this.startSuccessCount = 0;
    const ports = this.options.ports;
    if (!ports.length) ports.push(this.options.port);
    this.options.workers = ports.length;
    ports.forEach((port, i) => {
      this.forkAppThread(i + 1, [ JSON.stringify({ ...this.options, port }) ]);
    });
  }

  /**
   * One app thread for slot `id`, forked again 1s after it exits.
   * @param {number} id - the slot, 1-based (app_worker#id)
   * @param {string[]} argv - the thread's argv: the options JSON with its port
   */
  forkAppThread(id, argv) {
    let thread;
    try {
      thread = new Worker(this.dialect.workerScript('app'), { argv });
    } catch (err) {
      err.name = 'AppWorkerError';
      this.logger.error(err);
      if (!this.isAllWorkerStarted) process.exit(1);
      return;
    }
    // The record is what the process-mode lifecycle reads of a pool worker. @eggjs/cluster 3
    // reads threadId in the exit handler, after Node has set it to -1, and then fails to find
    // the worker; egg-cluster 2 keeps the id from the start, and so do we.
    const record = { id, pid: thread.threadId, state: 'starting', exitedAfterDisconnect: true, exitCode: undefined };
    const worker = new AppWorker(record, { slot: String(id) });
    worker.thread = thread;
    this.appWorkers.set(worker.id, worker);
    this.threads.addApp(record, thread);

    thread.on('message', msg => {
      msg = this.relayThreadMessage(msg, 'app');
      if (msg) this.onAppThreadMessage(worker, msg);
    });
    // an exception the thread did not catch ('exit' follows); unheard, it would end the master
    thread.on('error', err => {
      err.name = 'AppWorkerError';
      this.logger.error(err);
    });
    this.log('[master] app_worker#%s (tid:%s) start', id, record.pid);
    if (this.options.isDebug) {
      // both upstreams announce the port after the master's for every thread
      this.messenger.send({ to: 'parent', from: 'app', action: 'debug', data: { debugPort: process.debugPort + 1, pid: record.pid } });
    }

    thread.on('exit', code => {
      record.state = 'dead';
      record.exitCode = code;
      this.messenger.send({ action: 'app-exit', data: { workerId: record.pid, code }, to: 'master', from: 'app' });
      this.threads.removeApp(record);
      const timer = setTimeout(() => {
        this.backoffTimers.delete(timer);
        if (!this.closed) this.forkAppThread(id, argv);
      }, APP_THREAD_REFORK_DELAY);
      this.backoffTimers.add(timer);
    });
  }

  // a message from a thread, as egg-cluster relays it: a bare string is `{action, data}`,
  // `from` is the thread's kind whatever it said
  relayThreadMessage(msg, from) {
    if (typeof msg === 'string') msg = { action: msg, data: msg };
    if (!msg || typeof msg !== 'object' || Array.isArray(msg)) return null;
    msg.from = from;
    this.messenger.send(msg);
    return msg;
  }

  // an app thread's server listens: egg 3's thread says `listening` and the master announces
  // app-start; egg 4's sends app-start itself (relayed already). Either way it is listening now.
  onAppThreadMessage(worker, msg) {
    if (this.dialect.workerSendsAppStart) {
      if (msg.action === 'app-start') worker.record.state = 'listening';
      return;
    }
    if (msg.action !== 'listening' || !msg.data) return;
    worker.record.state = 'listening';
    const address = typeof msg.data === 'string' ? { address: msg.data, addressType: -1 } : msg.data;
    this.messenger.send({ action: 'app-start', data: { workerId: worker.pid, address }, to: 'master', from: 'app' });
  }

  async killAppWorkers() {
    const workers = Array.from(this.appWorkers.values()).filter(w => !w.isDead);
    await Promise.all(workers.map(worker => {
      // both upstreams print the `id` of Node's Worker object here, which it does not have
      this.log(`[master] kill app worker#${worker.thread.id} (worker_threads) by worker.terminate()`);
      worker.thread.removeAllListeners();
      return worker.thread.terminate();
    }));
  }

  async killAgentWorker() {
    const agent = this.agent;
    if (!agent) return;
    this.log(`[master] kill agent worker#${agent.id} (worker_threads) by worker.terminate()`);
    agent.thread.removeAllListeners();
    await agent.thread.terminate();
  }

  // egg-development's reload replaces cluster processes: there are none here
  onReload() {
    this.reloadOn('reload-worker');
  }
}

/**
 * Puts the thread-mode methods on `master` in place of the process-mode ones of its prototype.
 * @param {Master} master - a master whose options say `startMode: 'worker_threads'`
 */
function useThreads(master) {
  for (const name of Object.getOwnPropertyNames(ThreadLifecycle.prototype)) {
    if (name !== 'constructor') master[name] = ThreadLifecycle.prototype[name];
  }
}

module.exports = { useThreads, ThreadLifecycle };
