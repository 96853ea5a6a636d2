'use strict';

// The master's sends of one tick are one unit (DESIGN.md, delivery guarantee 2). The most common
// egg pattern depends on it: the agent subscribes in its egg-ready handler and every app worker
// sends to it in its own egg-ready handler, so an app's message must never reach the agent
// before the agent's egg-ready (egg drops a message that has no listener yet), and the agent's
// fan-out must never reach an app worker before that worker's egg-ready.
//
// EGG_CLUSTER_RS_TEST_TICK_PAUSE_US (test-only, read by the core) pauses the master's JavaScript
// after each send of a tick, the widest window the race can have: a design that writes a tick's
// first message before its last loses messages in nearly every start with it.

const assert = require('assert');
const path = require('path');
const { fork } = require('child_process');
const { freePort } = require('../binding');
const { getFilepath } = require('./utils');

const BASE_DIR = getFilepath('apps/egg-ready-race');
const FRAMEWORK = getFilepath('egg');
const WORKERS = 4;
const STARTS = 30;
// what one start delivers: the agent gets a hello and a ping from each app worker; each worker
// gets one ack and a pong for every worker's ping
const EXPECTED = { hello: WORKERS, ping: WORKERS, ack: WORKERS, pong: WORKERS * WORKERS };
const TOTAL = Object.values(EXPECTED).reduce((a, b) => a + b, 0);
// after egg-ready, how long a start may take to deliver everything before what is missing counts
// as lost (a loss never arrives; a healthy start needs a few ms)
const DELIVERY_DEADLINE = 10000;

function startOnce(env) {
  return new Promise((resolve, reject) => {
    const options = { baseDir: BASE_DIR, framework: FRAMEWORK, workers: WORKERS, port: freePort() };
    const child = fork(getFilepath('start-cluster.js'), [ JSON.stringify(options) ], {
      stdio: [ 'ignore', 'ignore', 'pipe', 'ipc' ],
      env: { ...process.env, ...env },
    });
    let stderr = '';
    child.stderr.on('data', chunk => { stderr += chunk; });
    const got = { hello: 0, ping: 0, ack: 0, pong: 0 };
    let received = 0;
    let timer = null;
    let result = null;
    const finish = () => {
      if (result) return;
      clearTimeout(timer);
      result = { got, lost: TOTAL - received };
      child.kill('SIGTERM');
    };
    child.on('message', msg => {
      if (msg && msg.action === 'race-report') {
        got[msg.data.what]++;
        if (++received === TOTAL) finish();
      } else if (msg && msg.action === 'egg-ready') {
        timer = setTimeout(finish, DELIVERY_DEADLINE);
      }
    });
    child.on('exit', code => {
      clearTimeout(timer);
      if (result) return resolve(result);
      reject(new Error(`the master exited (${code}) before egg-ready: ${stderr}`));
    });
  });
}

async function series(env, label) {
  const lossy = [];
  let lost = 0;
  for (let i = 0; i < STARTS; i++) {
    const { got, lost: n } = await startOnce(env);
    if (n) {
      lost += n;
      lossy.push({ start: i + 1, got });
    }
  }
  console.log('      %s: %d starts × %d messages, %d lost in %d start(s)', label, STARTS, TOTAL, lost, lossy.length);
  assert.deepStrictEqual(lossy, [], `${lost} message(s) lost; expected per start ${JSON.stringify(EXPECTED)}`);
}

describe('test/egg_ready_race.test.js', function() {
  // each series starts a real egg cluster STARTS times, one after the other
  this.timeout(STARTS * 15000);

  it(`loses no message sent in egg-ready handlers, ${STARTS} starts with the master pausing between the sends of a tick`, async () => {
    await series({ EGG_CLUSTER_RS_TEST_TICK_PAUSE_US: '20000' }, 'pause 20 ms after each send');
  });

  describe('under background IPC load', () => {
    let load;
    before(() => {
      load = fork(path.join(__dirname, 'fixtures/ipc-load.js'), [], { stdio: 'ignore' });
    });
    after(() => load && load.kill('SIGTERM'));

    it(`loses no message sent in egg-ready handlers, ${STARTS} starts`, async () => {
      await series({}, 'no pause, busy host');
    });
  });
});
