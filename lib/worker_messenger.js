'use strict';

/**
 * The Messenger inside an agent or app worker: the same API as egg's own IPC
 * messenger (send, sendToApp, sendToAgent, broadcast, sendTo, sendRandom,
 * close), over the worker's Node IPC channel to our master. Every received
 * egg message is emitted as its `action` with its `data`, and as 'message'
 * with the whole envelope. `egg-pids` from the master feeds `sendRandom`.
 */

const { EventEmitter } = require('events');

class WorkerMessenger extends EventEmitter {
  constructor() {
    super();
    if (typeof process.send !== 'function') {
      throw new Error('WorkerMessenger must run in a process forked with an IPC channel');
    }
    this.pid = String(process.pid);
    this.opids = [];
    this._onMessage = message => {
      if (!message || typeof message !== 'object' || typeof message.action !== 'string') return;
      if (message.action === 'egg-pids' && Array.isArray(message.data)) this.opids = message.data;
      this.emit('message', message);
      this.emit(message.action, message.data);
    };
    process.on('message', this._onMessage);
  }

  _post(message) {
    if (!process.connected) return this;
    try {
      process.send(message);
    } catch (_) {
      // the master is gone: there is nobody to tell
    }
    return this;
  }

  send(action, data, to) {
    return this._post({ action, data, to });
  }

  sendToApp(action, data) {
    return this.send(action, data, 'app');
  }

  sendToAgent(action, data) {
    return this.send(action, data, 'agent');
  }

  sendToMaster(action, data) {
    return this.send(action, data, 'master');
  }

  sendToParent(action, data) {
    return this.send(action, data, 'parent');
  }

  broadcast(action, data) {
    this.send(action, data, 'app');
    return this.send(action, data, 'agent');
  }

  sendTo(pid, action, data) {
    return this._post({ action, data, receiverPid: String(pid) });
  }

  sendRandom(action, data) {
    if (!this.opids.length) return this;
    const pid = this.opids[Math.floor(Math.random() * this.opids.length)];
    return this.sendTo(pid, action, data);
  }

  close() {
    process.removeListener('message', this._onMessage);
    this.removeAllListeners();
  }
}

module.exports = { WorkerMessenger };
