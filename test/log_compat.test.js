'use strict';

const assert = require('assert');
const { once } = require('events');
const mm = require('egg-mock');
const request = require('supertest');
const { cluster, waitFor, getFilepath } = require('./utils');

// Lines people and tools grep: the master's, cfork's and the workers' own, with the variable
// parts (dates, pids, ports, durations, sizes, worker lists) masked.
function masterLines(output) {
  return new Set(output.split('\n')
    .filter(line => /\[(master|cfork:master:\d+|app_worker|agent_worker)\]/.test(line))
    .filter(line => !/system memory|process info|start with options|start appWorker with args/.test(line))
    // whether a closing worker's exit or its disconnect is seen first is a race in both
    .filter(line => !/don't fork, because worker:\d+ (will be kill soon|exit event emit before disconnect)/.test(line))
    .map(line => line
      .replace(/isDead: (true|false)/, 'isDead: ?')
      .replace(/^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} /, '')
      .replace(/\[\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}\]/g, '[date]')
      .replace(/\[[\d",]*\]/g, '[list]')
      .replace(/#\d+:\d+/g, '#i:pid')
      .replace(/\d+/g, 'n')));
}

async function run(framework, scenario) {
  const app = cluster(scenario.app, Object.assign({ framework }, scenario.options));
  // 'close' comes once the master and every worker writing to its stdio are gone (coffee forks
  // the master on the next turn of the event loop)
  const closed = new Promise(resolve => setImmediate(() => app.proc.once('close', resolve)));
  await app.end();
  await scenario.act(app);
  if (app.proc.exitCode === null && app.proc.signalCode === null) {
    app.proc.kill('SIGTERM');
  }
  await closed;
  return masterLines(app.stdout + app.stderr);
}

const scenarios = [{
  name: 'start in production, an app worker exits and is reforked, close',
  app: 'apps/app-die',
  options: { workers: 2 },
  env: 'prod',
  async act(app) {
    await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
    await waitFor(() => /\[master\] app_worker#3:\d+ started at/.test(app.stdout));
  },
}, {
  name: 'an app worker fails to start',
  app: 'apps/app-start-error',
  env: 'prod',
  async act(app) {
    if (app.proc.exitCode === null) await once(app.proc, 'exit');
  },
}, {
  name: 'the agent dies after the start and is reforked',
  app: 'apps/agent-die',
  env: 'prod',
  async act(app) {
    app.proc.send({ to: 'agent', action: 'agent-exit-now' });
    await waitFor(() => /\[master\] agent_worker#2:\d+ started/.test(app.stdout));
  },
}, {
  name: 'the master is SIGKILLed',
  app: 'apps/master-worker-started',
  options: { workers: 2 },
  env: 'local',
  async act(app) {
    app.proc.kill('SIGKILL');
  },
}];

describe('test/log_compat.test.js', () => {
  afterEach(mm.restore);

  scenarios.forEach(scenario => {
    it(`logs the lines egg-cluster 2.5 logs: ${scenario.name}`, async function() {
      this.timeout(120000);
      mm.env(scenario.env);
      mm(process.env, 'EGG_APP_WORKER_LOGGER_LEVEL', 'INFO');
      mm(process.env, 'EGG_AGENT_WORKER_LOGGER_LEVEL', 'INFO');
      const theirs = await run(getFilepath('log-compat'), scenario);
      const ours = await run(getFilepath('egg'), scenario);
      const missing = [ ...theirs ].filter(line => !ours.has(line));
      const extra = [ ...ours ].filter(line => !theirs.has(line));
      assert.deepStrictEqual({ missing, extra }, { missing: [], extra: [] });
    });
  });
});
