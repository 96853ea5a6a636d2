'use strict';

const os = require('os');
const fs = require('fs');
const path = require('path');
const assert = require('assert');
const { execSync } = require('child_process');
const coffee = require('coffee');
const request = require('supertest');
const { getFilepath, sleep } = require('./utils');

const EGG_SCRIPTS = require.resolve('egg-scripts/bin/egg-scripts.js');
const TITLE = 'egg-cluster-rs-egg-scripts-test';
const PORT = 17896;

// command lines of the running processes that carry our title
function processesWithTitle() {
  return execSync('ps -wweo pid,args').toString().split('\n')
    .filter(line => line.includes(`"title":"${TITLE}"`) && !line.includes('/bin/sh'));
}

describe('test/egg_scripts.test.js', () => {
  const home = fs.mkdtempSync(path.join(os.tmpdir(), 'egg-cluster-rs-home-'));
  const env = Object.assign({}, process.env, { HOME: home, MOCK_HOME_DIR: home });
  const baseDir = getFilepath('apps/master-worker-started');

  after(async () => {
    await coffee.fork(EGG_SCRIPTS, [ 'stop', `--title=${TITLE}` ], { env }).end();
    fs.rmSync(home, { recursive: true, force: true });
  });

  it('starts as a daemon: nothing on stderr before egg-ready', async () => {
    await coffee.fork(EGG_SCRIPTS, [
      'start', '--daemon', `--title=${TITLE}`, `--port=${PORT}`, '--workers=2',
      `--framework=${getFilepath('egg')}`, baseDir,
    ], { env })
      .expect('stdout', new RegExp(`egg started on http://127\\.0\\.0\\.1:${PORT}`))
      .expect('code', 0)
      .end();
    await request(`http://127.0.0.1:${PORT}`).get('/').expect(200, 'hi egg');
    assert.strictEqual(fs.readFileSync(path.join(home, 'logs/master-stderr.log'), 'utf8'), '');
  });

  it('runs workers whose command line egg-scripts stop recognises', () => {
    const lines = processesWithTitle();
    assert.strictEqual(lines.filter(line => line.includes('/lib/app_worker.js {')).length, 2, lines.join('\n'));
    assert.strictEqual(lines.filter(line => line.includes('/lib/agent_worker.js {')).length, 1, lines.join('\n'));
    assert.strictEqual(lines.filter(line => line.includes('start-cluster {')).length, 1, lines.join('\n'));
  });

  it('stops gracefully: SIGTERM to the master closes every worker', async () => {
    await coffee.fork(EGG_SCRIPTS, [ 'stop', `--title=${TITLE}` ], { env })
      .expect('stdout', /got master pid \["?\d+"?\]/)
      .notExpect('stdout', /not killed by master/)
      .expect('code', 0)
      .end();
    await sleep(500);
    assert.deepStrictEqual(processesWithTitle(), []);
    const stdout = fs.readFileSync(path.join(home, 'logs/master-stdout.log'), 'utf8');
    assert.match(stdout, /\[master\] master is killed by signal SIGTERM, closing/);
    assert.match(stdout, /\[master\] exit with code:0/);
  });
});
