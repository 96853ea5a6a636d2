'use strict';

/**
 * egg-cluster's production health check: every 10s, count the agent that has started and the
 * app workers that listen; when either is missing for three checks in a row (30s), log a
 * ClusterWorkerExceptionError and exit 1 instead of serving in an unknown state.
 */

const { ClusterWorkerExceptionError } = require('../errors');

const HEALTH_CHECK_INTERVAL = 10000;
const HEALTH_CHECK_FAILURES = 3;

/**
 * @param {Function} count - () => ({ agent, worker }), the live counts now
 * @param {Function} onGiveUp - (err) called once, after the last failed check
 * @return {Timeout} the interval, for clearInterval
 */
function startHealthCheck(count, onGiveUp) {
  let failures = 0;
  const timer = setInterval(() => {
    const now = count();
    if (now.agent && now.worker) {
      failures = 0;
      return;
    }
    if (++failures < HEALTH_CHECK_FAILURES) return;
    clearInterval(timer);
    onGiveUp(new ClusterWorkerExceptionError(now.agent, now.worker));
  }, HEALTH_CHECK_INTERVAL);
  return timer;
}

module.exports = { startHealthCheck };
