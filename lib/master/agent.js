'use strict';

/**
 * The agent's lifecycle, as methods of Master: find the cluster ports, fork the agent (early,
 * so that it checks the framework while the master goes on), announce it, tell everyone when
 * it has started, and refork it after it dies (exit 1 when it dies during startup).
 */

const util = require('util');
const { assertFramework, judgeFramework, STARTUP_FD_ENV } = require('../framework');
const { freePort: freePortSync } = require('../../binding');
const { settleOn } = require('./settle_on');

const AGENT_REFORK_DELAY = 1000;
// how long the master waits for the agent to load the framework (ts-node and cold disks can
// take a while); past it, a probe process checks the framework instead
const AGENT_STARTUP_ANSWER_TIMEOUT = 120000;

// A port nothing listens on, as detect-port's `detectPort()` finds one (the core binds port 0
// of every address and releases it); a failure answers undefined, as detect-port does.
function freePort() {
  try {
    return freePortSync();
  } catch {
    return undefined;
  }
}

function agentDebugPort() {
  return process.env.EGG_AGENT_DEBUG_PORT || 5800;
}

class AgentLifecycle {
  /**
   * egg-cluster requires the framework in the master only to check that it exports Application
   * and Agent, then forks the agent, which loads it again. We fork the agent first: it reports
   * on the framework through a startup pipe as soon as it has loaded it (lib/agent_worker.js),
   * and goes on starting while the master carries on. A bad framework throws here, with the
   * errors parseOptions() would have thrown, and the agent is killed. When the agent cannot
   * answer (it died first), a probe process checks the framework instead (lib/framework.js).
   * @return {Object|null} `{ ports }` once the agent runs, null to start it the usual way
   */
  startAgentEarly() {
    let ports;
    try {
      ports = { clusterPort: freePortSync() };
      if (this.options.sticky) ports.stickyWorkerPort = freePortSync();
    } catch {
      assertFramework(this.options.framework);
      return null;
    }
    let agent;
    try {
      agent = this.spawnAgent({ ...this.options, ...ports }, true);
    } catch {
      // forkAgentWorker() reports spawn errors as egg-cluster does, after the constructor
      assertFramework(this.options.framework);
      return null;
    }
    const early = { ports, agent };
    let answer;
    try {
      answer = this.pool.readStartup(agent.poolId, AGENT_STARTUP_ANSWER_TIMEOUT);
    } catch {
      answer = null;
    }
    try {
      if (!judgeFramework(this.options.framework, answer)) assertFramework(this.options.framework);
    } catch (err) {
      this.abortEarlyAgent(early);
      throw err;
    }
    return early;
  }

  abortEarlyAgent(early) {
    if (!early) return;
    this.agent = null;
    try {
      this.pool.kill(early.agent.pid, 'SIGKILL');
    } catch {
      // gone already
    }
    this.pool.close();
  }


  // async as egg-cluster's (its callers wait for it); freePort() never throws
  async detectPorts() {
    this.options.clusterPort = freePort();
    if (this.options.sticky) this.options.stickyWorkerPort = freePort();
  }

  forkAgentWorker() {
    try {
      this.spawnAgent(this.options, false);
    } catch (err) {
      // egg 4 wraps it: `Got agent worker error: …`
      this.logger.error(this.dialect.agentForkError(err, { id: this.agentIndex + 1, pid: undefined, status: 'starting' }));
      if (!this.isStarted) process.exit(1);
      return;
    }
    this.announceAgent();
  }

  // forks agent_worker.js with `options` as its argv; with `startupPipe`, it answers on fd 4
  spawnAgent(options, startupPipe) {
    const execArgv = process.execArgv.slice();
    if (this.options.isDebug) execArgv.push(`--inspect-port=${agentDebugPort()}`);
    const startTime = Date.now();
    const forked = this.pool.forkAgent({
      exec: this.dialect.workerScript('agent'),
      args: [ JSON.stringify(options) ],
      execArgv,
      env: startupPipe ? { ...process.env, [STARTUP_FD_ENV]: '4' } : process.env,
      cwd: process.cwd(),
      startupPipe,
    });
    this.agent = {
      poolId: forked.id,
      id: ++this.agentIndex,
      pid: forked.pid,
      status: 'starting',
      startTime,
    };
    return this.agent;
  }

  announceAgent() {
    const agent = this.agent;
    if (!agent || agent.announced || this.closed) return;
    agent.announced = true;
    this.log('[master] agent_worker#%s:%s start with clusterPort:%s', agent.id, agent.pid, this.options.clusterPort);

    if (this.options.isDebug) {
      const debugPort = agentDebugPort();
      this.messenger.send({ to: 'parent', from: 'agent', action: 'debug', data: { debugPort, pid: agent.pid } });
    }
  }

  onAgentProcessExit(info, code, signal) {
    if (!this.agent || this.agent.poolId !== info.id) return;
    if (this.agent.killing) return;
    // an agent forked early (startAgentEarly) that died at once is still announced first
    this.announceAgent();
    this.emit('agent-exit', { code, signal });
  }

  onAgentStart() {
    const agent = this.agent;
    if (!agent) return;
    agent.status = 'started';

    // a reforked agent missed the first egg-ready
    if (this.isAllWorkerStarted) {
      this.messenger.send({ action: 'egg-ready', to: 'agent', data: this.options });
    }
    this.messenger.send({ action: 'egg-pids', to: 'app', data: [ agent.pid ] });
    // a reforked agent needs to know the app workers
    if (this.isStarted) {
      this.messenger.send({ action: 'egg-pids', to: 'agent', data: this.listeningWorkerPids() });
    }
    this.messenger.send({ action: 'agent-start', to: 'app' });
    this.logger.info('[master] agent_worker#%s:%s started (%sms)', agent.id, agent.pid, Date.now() - agent.startTime);
  }

  /**
   * Resolves once `agent` has started; rejects when an agent exits first or `timeout` ms pass.
   * @param {Object} agent - this.agent, as forkAgentWorker() set it
   * @param {number} timeout - ms
   * @return {Promise<Object>} the agent
   */
  waitAgentStarted(agent, timeout) {
    if (agent.status === 'started') return Promise.resolve(agent);
    const name = `agent_worker#${agent.id}:${agent.pid}`;
    return settleOn(this, {
      resolveOn: 'agent-start',
      accept: () => agent.status === 'started',
      rejectOn: 'agent-exit',
      rejectWith: ({ code, signal } = {}) => new Error(`${name} exited (code: ${code}, signal: ${signal}) before it started`),
      timeout,
      timeoutError: () => new Error(`${name} did not start within ${timeout}ms`),
    }).then(() => agent);
  }

  /**
   * The agent died: refork it after 1s once the cluster has started, exit during startup.
   * @param {Object} data - { code, signal }
   */
  onAgentExit(data) {
    if (this.closed) return;
    const agent = this.agent;
    if (!agent) return;
    this.agent = null;

    this.messenger.send({ action: 'egg-pids', to: 'app', data: [] });

    if (agent.replacing) {
      // a reload stopped it (lib/master/rolling_reload.js): its successor starts now
      this.logger.info('[master] reload: agent_worker#%s:%s stopped (code: %s, signal: %s), new agent_worker starting...',
        agent.id, agent.pid, data.code, data.signal);
      this.forkAgentWorker();
      agent.replacing(this.agent);
      return;
    }

    const err = new Error(util.format('[master] agent_worker#%s:%s died (code: %s, signal: %s)',
      agent.id, agent.pid, data.code, data.signal));
    err.name = 'AgentWorkerDiedError';
    this.logger.error(err);

    if (this.isStarted) {
      // egg-cluster reforks after 1s; an agent that keeps dying before it starts backs off
      this.agentFailures = agent.status === 'started' ? 0 : this.agentFailures + 1;
      const delay = this.agentFailures ? Math.max(AGENT_REFORK_DELAY, this.reforkPolicy.backoffDelay(this.agentFailures + 1)) : AGENT_REFORK_DELAY;
      if (delay === AGENT_REFORK_DELAY) {
        this.log('[master] try to start a new agent_worker after 1s ...');
      } else {
        this.logger.warn('[master] agent_worker died %s time(s) in a row before starting, try to start a new agent_worker after %sms ...',
          this.agentFailures, delay);
      }
      const timer = setTimeout(() => {
        this.backoffTimers.delete(timer);
        if (this.closed) return;
        this.logger.info('[master] new agent_worker starting...');
        this.forkAgentWorker();
      }, delay);
      this.backoffTimers.add(timer);
      this.messenger.send({ action: 'agent-worker-died', to: 'parent' });
    } else {
      this.logger.error('[master] agent_worker#%s:%s start fail, exiting with code:1', agent.id, agent.pid);
      process.exit(1);
    }
  }
}

module.exports = { AgentLifecycle };
