'use strict';

const assert = require('assert');
const { once } = require('events');
const mm = require('egg-mock');
const request = require('supertest');
const { cluster, sleep } = require('./utils');

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
    await sleep(4000);
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

  it('exits 110 when the master disappears', async () => {
    app = cluster('apps/agent-die');
    await app.ready();
    app.proc.kill('SIGKILL');
    await once(app.proc, 'exit');
    await sleep(2000);
    assert.match(app.stderr, /\[agent_worker\] receive disconnect event on child_process fork mode, exiting with code:110/);
  });
});
