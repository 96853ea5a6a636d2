'use strict';

/**
 * get-ready 2.x semantics, without the dependency: `ready(cb)` registers a callback (called at
 * once when already ready), `ready()` returns a Promise, `ready(true | Error)` marks it ready and
 * calls the registered callbacks on the next tick, with the Error if there was one.
 */
class ReadyState {
  constructor() {
    this.isReady = false;
    this.error = undefined;
    this.callbacks = [];
  }

  ready(flagOrCallback) {
    if (flagOrCallback === undefined) {
      return new Promise((resolve, reject) => {
        this.register(err => (err ? reject(err) : resolve()));
      });
    }
    if (typeof flagOrCallback === 'function') {
      this.register(flagOrCallback);
      return;
    }
    this.isReady = flagOrCallback !== false;
    this.error = flagOrCallback instanceof Error ? flagOrCallback : undefined;
    if (!this.isReady) return;
    for (const callback of this.callbacks.splice(0)) {
      process.nextTick(() => callback(this.error));
    }
  }

  register(callback) {
    if (this.isReady) {
      callback(this.error);
    } else {
      this.callbacks.push(callback);
    }
  }
}

module.exports = { ReadyState };
