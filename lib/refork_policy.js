'use strict';

/**
 * When a dead app worker is forked again: cfork's budget, which egg-cluster inherits (production
 * only, at most 59 reforks in any 60 s), and our backoff for a slot or an agent that keeps dying
 * before it starts (1 s, 2 s, 4 s, … up to 30 s by default). Pure bookkeeping: it forks and logs
 * nothing but cfork's "worker died too fast" line.
 */

const { logDate } = require('./console_logger');

// cfork's defaults: at most 60 reforks in any minute
const REFORK_LIMIT = 60;
const REFORK_WINDOW = 60000;
const BACKOFF_INITIAL = 1000;
const BACKOFF_MAX = 30000;

class ReforkPolicy {
  /**
   * @param {Object} options - isProduction; backoffInitial, backoffMax (ms, egg-cluster-rs'
   *   reforkBackoffInitial / reforkBackoffMax); now (a clock, for tests)
   */
  constructor({ isProduction, backoffInitial, backoffMax, now = Date.now }) {
    this.isProduction = !!isProduction;
    this.backoffInitial = Number(backoffInitial) || BACKOFF_INITIAL;
    this.backoffMax = Number(backoffMax) || BACKOFF_MAX;
    this.now = now;
    this.times = [];
    // consecutive deaths before listening, per cfork slot (its env object)
    this.slotFailures = new Map();
    // cfork's counters, printed in its log lines
    this.disconnectCount = 0;
    this.unexpectedCount = 0;
  }

  /**
   * Records a refork attempt: false outside production, and (saying so, as cfork does) when
   * it would be the 60th within a minute.
   * @return {boolean} whether to refork
   */
  allow() {
    if (!this.isProduction) return false;
    const times = this.times;
    times.push(this.now());
    if (times.length > REFORK_LIMIT) times.shift();
    const allowed = times.length < REFORK_LIMIT || times[times.length - 1] - times[0] > REFORK_WINDOW;
    if (!allowed) {
      console.error('[%s] [cfork:master:%s] worker died too fast (total %d disconnect, %d unexpected exit)',
        logDate(), process.pid, this.disconnectCount, this.unexpectedCount);
    }
    return allowed;
  }

  /**
   * @param {number} failures - deaths before starting, in a row
   * @return {number} ms to wait before the next fork
   */
  backoffDelay(failures) {
    return Math.min(this.backoffInitial * Math.pow(2, Math.max(0, failures - 1)), this.backoffMax);
  }

  /**
   * A reforked worker of `slot` died before it listened.
   * @param {Object} slot - the cfork slot (the worker's env object)
   * @return {{failures: number, delay: number}} deaths in a row and the wait before the next fork
   */
  slotFailed(slot) {
    const failures = (this.slotFailures.get(slot) || 0) + 1;
    this.slotFailures.set(slot, failures);
    return { failures, delay: this.backoffDelay(failures) };
  }

  /** A worker of `slot` listens: its failures are forgotten. */
  slotStarted(slot) {
    this.slotFailures.delete(slot);
  }
}

module.exports = { ReforkPolicy };
