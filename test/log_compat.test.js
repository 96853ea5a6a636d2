'use strict';

const assert = require('assert');
const { once } = require('events');
const mm = require('egg-mock');
const request = require('supertest');
const { cluster, sleep, getFilepath } = require('./utils');

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

async function run(framework) {
  const app = cluster('apps/app-die', { framework, workers: 2 });
  await app.expect('code', 0).end();
  await request(`http://127.0.0.1:${app.port}`).get('/exit').expect(200);
  await sleep(4000);
  app.proc.kill('SIGTERM');
  await once(app.proc, 'exit');
  await sleep(500);
  return masterLines(app.stdout + app.stderr);
}

describe('test/log_compat.test.js', () => {
  afterEach(mm.restore);

  it('logs the same lines as egg-cluster 2.5 through start, a refork and close', async function() {
    this.timeout(120000);
    mm.env('prod');
    mm(process.env, 'EGG_APP_WORKER_LOGGER_LEVEL', 'INFO');
    mm(process.env, 'EGG_AGENT_WORKER_LOGGER_LEVEL', 'INFO');
    const theirs = await run(getFilepath('log-compat'));
    const ours = await run(getFilepath('egg'));
    const missing = [ ...theirs ].filter(line => !ours.has(line));
    const extra = [ ...ours ].filter(line => !theirs.has(line));
    assert.deepStrictEqual({ missing, extra }, { missing: [], extra: [] });
  });
});
