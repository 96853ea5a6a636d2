'use strict';

const assert = require('assert');
const { once } = require('events');
const mm = require('egg-mock');
const request = require('supertest');
const coffee = require('coffee');
const { cluster, waitFor, getFilepath } = require('./utils');

describe('test/agent_worker.test.js', () => {
  let app;

  afterEach(mm.restore);
  afterEach(() => app && app.close());

  it('exits 1 when the agent fails to start, before any app worker forks', async () => {
    app = cluster('apps/agent-start-error', {
      opt: { env: Object.assign({}, process.env, { EGG_AGENT_WORKER_LOGGER_LEVEL: 'INFO' }) },
    });
    await app.expect('code', 1)
      .expect('stderr', /agent boot failed on purpose/)
      .expect('stderr', /\[agent_worker\] start error, exiting with code:1/)
      .expect('stdout', /\[agent_worker\] beforeExit success/)
      // graceful-process's SIGTERM path exits 0 (as with egg-cluster)
      .expect('stderr', /nodejs\.AgentWorkerDiedError: \[master\] agent_worker#1:\d+ died \(code: 0, signal: null\)/)
      .expect('stderr', /\[master\] agent_worker#1:\d+ start fail, exiting with code:1/)
      .expect('stderr', /\[master\] exit with code:1/)
      .notExpect('stdout', /app_worker#1/)
      .end();
  });

  it('forks a new agent 1s after the agent dies, and tells the parent', async () => {
    mm(process.env, 'EGG_MASTER_LOGGER_LEVEL', 'DEBUG');
    app = cluster('apps/agent-die');
    let agentDied = false;
    setImmediate(() => app.proc.on('message', msg => {
      if (msg && msg.action === 'agent-worker-died') agentDied = true;
    }));
    await app.ready();
    app.proc.send({ to: 'agent', action: 'agent-exit-now' });
    await waitFor(() => /\[master\] agent_worker#2:\d+ started/.test(app.stdout) &&
      app.stdout.match(/agent \d+ receive egg-ready/g).length === 2 && agentDied);
    assert.match(app.stderr, /nodejs\.AgentWorkerDiedError: \[master\] agent_worker#1:\d+ died \(code: 3, signal: null\)/);
    assert.match(app.stdout, /\[master\] try to start a new agent_worker after 1s \.\.\./);
    assert.match(app.stdout, /\[master\] new agent_worker starting\.\.\./);
    assert.match(app.stdout, /\[master\] agent_worker#2:\d+ started \(\d+ms\)/);
    // the new agent gets egg-ready as the cluster has started
    assert.strictEqual(app.stdout.match(/agent \d+ receive egg-ready/g).length, 2);
    assert.strictEqual(agentDied, true);
    assert.strictEqual(app.proc.exitCode, null);
    await request(`http://127.0.0.1:${app.port}`).get('/').expect(404);
  });

  it('starts the agent with --inspect-port=EGG_AGENT_DEBUG_PORT when debugging', async () => {
    mm(process.env, 'EGG_AGENT_DEBUG_PORT', '15800');
    app = cluster('apps/agent-debug-port', { isDebug: true });
    await app.expect('code', 0).expect('stdout', /agent execArgv: \["--inspect-port=15800"\]/).end();
  });

  it('starts the agent with --inspect-port=5800 by default when debugging', async () => {
    app = cluster('apps/agent-debug-port', { isDebug: true });
    await app.expect('code', 0).expect('stdout', /agent execArgv: \["--inspect-port=5800"\]/).end();
  });

  it('exits 1 when the agent dies while app workers start', async () => {
    app = cluster('apps/agent-die-on-forkapp');
    await app.expect('code', 1)
      .expect('stdout', /\[master\] agent_worker#1:\d+ started/)
      .expect('stderr', /nodejs\.AgentWorkerDiedError: \[master\] agent_worker#1:\d+ died \(code: 1, signal: null\)/)
      .expect('stderr', /\[master\] agent_worker#1:\d+ start fail, exiting with code:1/)
      .expect('stderr', /\[master\] exit with code:1/)
      .notExpect('stdout', /try to start a new agent_worker/)
      .end();
  });

  it('keeps reforking the agent after the parent disconnects, without IPC errors', async () => {
    app = null;
    const baseDir = getFilepath('apps/agent-exit-after-ready');
    const proc = coffee.fork(getFilepath('start-cluster.js'), [ JSON.stringify({ baseDir, workers: 1, port: 17897 }) ]);
    try {
      await waitFor(() => proc.proc && proc.proc.connected);
      await new Promise(resolve => proc.proc.on('message', msg => {
        if (msg && msg.action === 'egg-ready') resolve();
      }));
      // what egg-scripts start --daemon does once it saw egg-ready
      proc.proc.disconnect();
      await waitFor(() => /\[master\] agent_worker#3:\d+ started/.test(proc.stdout), 15000);
      assert.strictEqual(proc.proc.exitCode, null);
      assert.doesNotMatch(proc.stderr, /channel closed|ERR_IPC|EPIPE/);
    } finally {
      proc.proc.kill('SIGTERM');
      await once(proc.proc, 'exit');
    }
  });

  it('exits 110 when the master disappears', async () => {
    app = cluster('apps/agent-die');
    await app.ready();
    // 'close' comes once the agent, which writes to the master's stdio, has left too
    const closed = once(app.proc, 'close');
    app.proc.kill('SIGKILL');
    await closed;
    assert.match(app.stderr, /\[agent_worker\] receive disconnect event on child_process fork mode, exiting with code:110/);
  });
});
