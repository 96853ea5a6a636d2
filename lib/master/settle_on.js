'use strict';

/**
 * Waits on an EventEmitter for the first of: an event that settles it (`resolveOn`, when `accept`
 * agrees), an event that fails it (`rejectOn`, its arguments turned into an Error by
 * `rejectWith`), or `timeout` ms (`timeoutError()`). Listeners and timer are removed either way.
 * @param {EventEmitter} emitter - what to listen on
 * @param {Object} on - `{ resolveOn, accept, rejectOn, rejectWith, timeout, timeoutError }`
 * @return {Promise<void>} -
 */
function settleOn(emitter, on) {
  const accept = on.accept || (() => true);
  return new Promise((resolve, reject) => {
    const listeners = {};
    let timer = null;
    function finish(err) {
      clearTimeout(timer);
      emitter.removeListener(on.resolveOn, listeners.resolve);
      emitter.removeListener(on.rejectOn, listeners.reject);
      if (err) reject(err);
      else resolve();
    }
    listeners.resolve = (...args) => {
      if (accept(...args)) finish(null);
    };
    listeners.reject = (...args) => finish(on.rejectWith(...args));
    timer = setTimeout(() => finish(on.timeoutError()), on.timeout);
    emitter.on(on.resolveOn, listeners.resolve);
    emitter.on(on.rejectOn, listeners.reject);
  });
}

module.exports = { settleOn };
