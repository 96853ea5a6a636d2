'use strict';

/**
 * Rolling reload: replace every app worker, one slot at a time, without refusing a request.
 *
 * For each slot: fork the successor (same slot env), wait until it has started (listens on the
 * app port), then retire the old worker: it leaves the cluster's listening sockets at once (no
 * new connection goes to it), finishes what it serves (lib/app_worker.js answers the rest with
 * `Connection: close`), and gets SIGTERM, egg's own close, then SIGKILL after the app close
 * timeout. A successor that exits or does not start in time aborts the reload; the old worker
 * keeps serving. One reload at a time. With `{ agent: true }` the agent is replaced first, with
 * egg's agent lifecycle (egg-pids, agent-start, egg-ready).
 *
 * Triggers: `master.reload()`, SIGUSR2, and egg's `reload-worker` event outside development
 * (egg-development's file watcher keeps egg-cluster's all-at-once reload, lib/master/dev_reload.js).
 */

const DEFAULT_START_TIMEOUT = 120000;

function reloadError(code, message) {
  const err = new Error(message);
  err.name = 'ReloadError';
  err.code = code;
  return err;
}

function closeTimeout(kind) {
  const legacy = process.env.EGG_MASTER_CLOSE_TIMEOUT || 5000;
  return Number((kind === 'agent' ? process.env.EGG_AGENT_CLOSE_TIMEOUT : process.env.EGG_APP_CLOSE_TIMEOUT) || legacy);
}

class RollingReload {
  /**
   * @param {Master} master - the master whose workers it replaces
   */
  constructor(master) {
    this.master = master;
    this.running = null;
  }

  /**
   * @param {Object} [options] - `agent`: replace the agent first; `startTimeout`: ms a successor
   *   has to start (120000)
   * @return {Promise<Object>} `{ ms, agent, slots: [{ oldPid, newPid, ms }] }`
   */
  run(options = {}) {
    const master = this.master;
    if (this.running) {
      return Promise.reject(reloadError('ERR_RELOAD_IN_PROGRESS', '[master] reload: a reload is already running'));
    }
    if (master.threadMode) {
      return Promise.reject(reloadError('ERR_RELOAD_UNAVAILABLE',
        '[master] reload: not available with startMode "worker_threads" (app workers are threads, each on its own port)'));
    }
    if (master.closed || !master.isStarted) {
      return Promise.reject(reloadError('ERR_RELOAD_UNAVAILABLE',
        `[master] reload: the cluster is ${master.closed ? 'closing' : 'still starting'}`));
    }
    const startTimeout = options.startTimeout === undefined ? DEFAULT_START_TIMEOUT : Number(options.startTimeout);
    if (!Number.isFinite(startTimeout) || startTimeout <= 0) {
      return Promise.reject(new TypeError(`reload: startTimeout must be a positive number of ms, got ${options.startTimeout}`));
    }
    this.running = this.replaceAll(!!options.agent, startTimeout).finally(() => {
      this.running = null;
    });
    return this.running;
  }

  async replaceAll(withAgent, startTimeout) {
    const master = this.master;
    const began = Date.now();
    const olds = Array.from(master.appWorkers.values()).filter(w => w.started && !w.isDead && !w.retired);
    master.logger.info('[master] reload: start, %s app worker(s) one at a time%s', olds.length, withAgent ? ', the agent first' : '');
    const result = { ms: 0, agent: null, slots: [] };
    try {
      if (withAgent) result.agent = await this.replaceAgent(startTimeout);
      for (const old of olds) {
        if (old.isDead || old.retired) continue;
        result.slots.push(await this.replaceSlot(old, startTimeout));
      }
    } catch (err) {
      master.logger.warn('[master] reload: aborted, %s', err.message);
      throw err;
    }
    result.ms = Date.now() - began;
    master.logger.info('[master] reload: done, %s app worker(s) replaced in %sms', result.slots.length, result.ms);
    return result;
  }

  async replaceSlot(old, startTimeout) {
    const master = this.master;
    const began = Date.now();
    this.assertOpen();
    const successor = master.forkAppWorker(old.workerEnv);
    if (!successor) {
      throw reloadError('ERR_RELOAD_ABORTED', `could not fork a successor of app_worker#${old.id}:${old.pid}, which keeps serving`);
    }
    try {
      await successor.waitStarted(startTimeout);
    } catch (err) {
      if (!successor.isDead) await master.pool.terminate(successor.pid, closeTimeout('app'));
      throw reloadError('ERR_RELOAD_ABORTED',
        `the successor app_worker#${successor.id}:${successor.pid} of app_worker#${old.id}:${old.pid} ${err.message}; app_worker#${old.id}:${old.pid} keeps serving`);
    }
    await master.retireAppWorker(old, closeTimeout('app'));
    const ms = Date.now() - began;
    master.logger.info('[master] reload: app_worker#%s:%s replaced by app_worker#%s:%s (%sms)',
      old.id, old.pid, successor.id, successor.pid, ms);
    return { oldPid: old.pid, newPid: successor.pid, ms };
  }

  async replaceAgent(startTimeout) {
    const master = this.master;
    const old = master.agent;
    if (!old || old.status !== 'started') {
      throw reloadError('ERR_RELOAD_ABORTED', 'the agent has not started, nothing was replaced');
    }
    const began = Date.now();
    // lib/master/agent.js forks the successor as soon as the old agent has exited
    const successor = new Promise(resolve => { old.replacing = resolve; });
    const terminated = master.pool.terminate(old.pid, closeTimeout('agent'));
    const agent = await successor;
    await terminated;
    if (!agent) throw reloadError('ERR_RELOAD_ABORTED', 'could not fork a new agent; no app worker was replaced');
    try {
      await master.waitAgentStarted(agent, startTimeout);
    } catch (err) {
      throw reloadError('ERR_RELOAD_ABORTED', `the new ${err.message}; no app worker was replaced`);
    }
    const ms = Date.now() - began;
    master.logger.info('[master] reload: agent_worker#%s:%s replaced by agent_worker#%s:%s (%sms)',
      old.id, old.pid, agent.id, agent.pid, ms);
    return { oldPid: old.pid, newPid: agent.pid, ms };
  }

  assertOpen() {
    if (this.master.closed) throw reloadError('ERR_RELOAD_ABORTED', 'the master is closing');
  }
}

module.exports = { RollingReload };
