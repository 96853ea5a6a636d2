'use strict';

/**
 * The master's Messenger, with egg-cluster's API and routing rules.
 *
 *             ┌────────┐
 *             │ parent │
 *            /└────────┘\
 *           /     |      \
 *          /  ┌────────┐  \
 *         /   │ master │   \
 *        /    └────────┘    \
 *       /     /         \    \
 *     ┌───────┐         ┌───────┐
 *     │ agent │ ─────── │  app  │
 *     └───────┘         └───────┘
 *
 * Messages between workers never come up here: the Rust core routes them.
 * What reaches this object is what egg sends to the master (emitted on the
 * Master as `master.emit(action, data)`) and to the parent (`process.send`).
 * Every envelope, the master's own included, is routed by the core (the one
 * router); what it sends to the master or the parent is delivered here,
 * synchronously, as egg-cluster does.
 */

function normalize(msg) {
  if (typeof msg === 'string') return { action: msg, data: msg };
  if (msg === null || typeof msg !== 'object' || Array.isArray(msg)) return null;
  return msg;
}

class Messenger {
  /**
   * @param {EventEmitter} master - where messages to the master are emitted
   * @param {import('./pool').WorkerPool} pool - the core
   */
  constructor(master, pool) {
    this.master = master;
    this.pool = pool;
    this.hasParent = typeof process.send === 'function' && process.connected !== false;
    this._onParentMessage = msg => {
      const envelope = normalize(msg);
      if (!envelope) return;
      envelope.from = 'parent';
      this.send(envelope);
    };
    this._onParentDisconnect = () => {
      this.hasParent = false;
    };
    process.on('message', this._onParentMessage);
    process.once('disconnect', this._onParentDisconnect);
    pool.on('message', msg => this.sendToMaster(msg));
    pool.on('parent', msg => this.sendToParent(msg));
  }

  /**
   * Sends `{action, data, to, from, receiverPid}`. Where it goes is decided by the core's router
   * with egg's rules (`receiverPid` decides `to`; without `to`, agent → app, app → agent,
   * parent → master); this stamps `from`, writes the chosen `to` back as egg-cluster does, and
   * delivers what the router sends to the master or the parent.
   */
  send(data) {
    if (!data.from) data.from = 'master';
    const to = this.pool.route(data);
    if (to) data.to = to;
    if (to === 'master') {
      this.sendToMaster(data);
    } else if (to === 'parent') {
      this.sendToParent(data);
    }
    return this;
  }

  sendToMaster(data) {
    this.master.emit(data.action, data.data);
    return this;
  }

  sendToParent(data) {
    if (!this.hasParent || typeof process.send !== 'function' || !process.connected) return this;
    try {
      process.send(data, undefined, undefined, () => {});
    } catch (_) {
      // the parent went away between the check and the send: nothing to do
    }
    return this;
  }

  sendToApp(action, data) {
    return this.send({ action, data, to: 'app' });
  }

  sendToAgent(action, data) {
    return this.send({ action, data, to: 'agent' });
  }

  /** To every app worker and the agent. */
  broadcast(action, data) {
    this.send({ action, data, to: 'app' });
    this.send({ action, data, to: 'agent' });
    return this;
  }

  /** To one process by pid (the agent, an app worker, or the master itself). */
  sendTo(pid, action, data) {
    return this.send({ action, data, receiverPid: String(pid) });
  }

  /** To one app worker picked at random among the live ones. */
  sendRandom(action, data) {
    const apps = this.pool.workers().filter(w => w.kind === 'app' &&
      (w.state === 'online' || w.state === 'listening' || w.state === 'starting'));
    if (!apps.length) return this;
    const pick = apps[Math.floor(Math.random() * apps.length)];
    return this.sendTo(pick.pid, action, data);
  }

  close() {
    process.removeListener('message', this._onParentMessage);
    process.removeListener('disconnect', this._onParentDisconnect);
  }
}

module.exports = { Messenger };
