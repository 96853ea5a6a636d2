'use strict';

/**
 * The error classes @eggjs/cluster 3 exports (egg 4 re-exports them from `egg`): the agent failed
 * (`Got agent worker error: …`, the original as `cause`), and the production health check gave up
 * (`count` holds what it saw). egg 3's master logs the same messages.
 */

class ClusterAgentWorkerError extends Error {
  /**
   * @param {number} id - the agent's index (agent_worker#id)
   * @param {number} workerId - its pid
   * @param {string} status - 'starting' | 'started'
   * @param {Error} cause - what went wrong
   */
  constructor(id, workerId, status, cause) {
    super(`Got agent worker error: ${cause && cause.message}`, { cause });
    this.name = this.constructor.name;
    this.id = id;
    this.workerId = workerId;
    this.status = status;
  }
}

class ClusterWorkerExceptionError extends Error {
  /**
   * @param {number} agent - agents alive (0 or 1)
   * @param {number} worker - app workers alive
   */
  constructor(agent, worker) {
    super(`[master] ${agent} agent and ${worker} worker(s) alive, exit to avoid unknown state`);
    this.name = this.constructor.name;
    this.count = { agent, worker };
  }
}

module.exports = { ClusterAgentWorkerError, ClusterWorkerExceptionError };
