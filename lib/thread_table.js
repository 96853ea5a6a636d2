'use strict';

/**
 * The threads of a worker_threads-mode master (lib/master/threads.js) and how a message reaches
 * them: what the WorkerPool is to the Messenger in process mode. Where an envelope goes is asked
 * of the core's router (`routeDecision` in src/binding.rs, the same rules and the dialect's
 * `receiverWorkerIdFirst`), with thread ids where process mode has pids; this only posts it.
 *
 * Everything runs on the master's main thread: what the master sends in one tick is posted, in
 * order, before any thread's answer is read (DESIGN.md, delivery guarantee 2, for free).
 */

const { EventEmitter } = require('events');
const { routeDecision } = require('../binding');

class ThreadTable extends EventEmitter {
  /**
   * @param {Object} [options] - `receiverWorkerIdFirst` (the dialect's); `onError(err)` for a
   *   message that cannot be posted or routed
   */
  constructor(options = {}) {
    super();
    this.receiverWorkerIdFirst = options.receiverWorkerIdFirst || false;
    this.onError = options.onError || (() => {});
    this.agent = null; // { record, thread }: record is the master's agent ({ id, pid, status })
    this.apps = new Map(); // thread id → { record, thread }: record { id, pid, state, … }
  }

  setAgent(record, thread) {
    this.agent = { record, thread };
  }

  removeAgent(thread) {
    if (this.agent && this.agent.thread === thread) this.agent = null;
  }

  addApp(record, thread) {
    this.apps.set(record.pid, { record, thread });
  }

  removeApp(record) {
    this.apps.delete(record.pid);
  }

  /**
   * Routes an egg envelope with egg's rules and posts it to the threads it names; returns the
   * `to` chosen ('master', 'parent', 'agent', 'app', or null), as WorkerPool#route does. A
   * message for the master or the parent is the caller's to deliver.
   * @param {Object} msg - the envelope, `from` set
   * @return {string|null} the `to` chosen
   */
  route(msg) {
    let decision;
    try {
      // the router reads only these members: `data` is never serialized for it
      const head = JSON.stringify({ to: msg.to, receiverPid: msg.receiverPid, receiverWorkerId: msg.receiverWorkerId });
      const agentId = this.agent ? this.agent.record.pid : undefined;
      decision = routeDecision(msg.from || 'master', head, process.pid, agentId, this.receiverWorkerIdFirst);
    } catch (err) {
      this.onError(err);
      return null;
    }
    if (decision.to) msg.to = decision.to;
    switch (decision.destination) {
      case 'agent':
        if (this.agent) this.post(this.agent.thread, msg);
        break;
      case 'apps':
        for (const { record, thread } of this.apps.values()) {
          if (record.state !== 'dead') this.post(thread, msg);
        }
        break;
      case 'app': {
        const app = this.apps.get(decision.receiver);
        if (app && app.record.state !== 'dead') this.post(app.thread, msg);
        break;
      }
      default:
        break;
    }
    return decision.to || null;
  }

  post(thread, msg) {
    try {
      thread.postMessage(msg);
    } catch (err) {
      // a value structured clone refuses (a function, a socket): that message only is lost
      this.onError(err);
    }
  }

  /** The workers, in the shape WorkerPool#workers() gives (for Messenger#sendRandom). */
  workers() {
    const list = [];
    if (this.agent) list.push({ kind: 'agent', id: this.agent.record.id, pid: this.agent.record.pid, state: 'online' });
    for (const { record } of this.apps.values()) {
      list.push({ kind: 'app', id: record.id, pid: record.pid, state: record.state });
    }
    return list;
  }
}

module.exports = { ThreadTable };
